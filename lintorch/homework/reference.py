"""Linear classification by hand: the functions of the lecture, for you to write.

Check your work at any time (each function is graded on its own, so write them one by one):

    python -m lintorch.homework check .

Conventions. They follow the lecture, and differ from cs231n's assignment 1 in places:
- One example is a column: its scores are s = W x, with W of shape (C, D) (C classes, D
  features), not cs231n's (D, C). A batch X holds the N examples as rows, (N, D), so the scores
  of the whole batch are S = X W^T, shape (N, C), row i being (W x_i)^T. This is also torch's
  layout (nn.Linear's weight is (out, in)). dW always has W's shape, (C, D).
- Labels y are N integers in [0, C).
- The SVM loss of one example sums the margins over the wrong classes,
  L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1); it is not divided by C (torch's
  multi_margin_loss divides by C).
- The loss of a batch is the mean over its N examples plus the L2 penalty:
  L = 1/N sum_i L_i + reg * sum_{k,l} W_kl^2 (the penalty is reg * sum W^2, not 0.5 * reg * ...).
- Inputs are numpy float64 arrays (y is int64). Return numpy arrays or Python floats; torch
  tensors are accepted too (the grader converts them), so you may compute in either.
- Never change the arrays you are given, except where a docstring allows it.
"""

import numpy as np

# The reference solution: every function calls lintorch's own code (its losses, its linear
# Function, sigmoid, numerical gradient and SGD step; dW from lintorch's hand-written backwards
# through torch.autograd.grad). The student's copy has the docstrings above and below only.
import torch

import lintorch
from lintorch.models import linear


def _tensors(*arrays):
    return [torch.from_numpy(np.array(a)) for a in arrays]


@torch.enable_grad()  # also when called from inside torch.no_grad (a gradient check's)
def _loss_and_dW(data_loss, W, X, y, reg, naive):
    W_t, X_t, y_t = _tensors(W, X, y)
    W_t.requires_grad_(True)
    if naive:  # one example at a time, as loops over the batch compute it
        L = sum(data_loss(linear(X_t[i:i + 1], W_t), y_t[i:i + 1]) for i in range(len(y_t)))
        L = L / len(y_t)
    else:
        L = data_loss(linear(X_t, W_t), y_t)
    loss = L + reg * lintorch.l2_penalty(W_t)
    (dW,) = torch.autograd.grad(loss, W_t)
    return float(loss.detach()), dW.numpy()


def svm_loss_naive(W, X, y, reg):
    """The multiclass SVM loss and its gradient, with loops.

    W: (C, D) weights; X: (N, D) examples as rows; y: (N,) labels; reg: the strength lambda.
    Returns (loss, dW): loss = 1/N sum_i L_i + reg * sum W^2, a float, with the hinge loss
    L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + 1) of the scores s = W x_i; and dW = dloss/dW,
    of shape (C, D).

    Loop over the examples i and the classes j. Each positive margin s_j - s_{y_i} + 1 adds
    x_i to the row dW[j] and subtracts x_i from the correct class's row dW[y_i]. Then average
    over N and add the penalty's gradient.
    """
    return _loss_and_dW(lambda s, t: lintorch.svm_loss(s, t, reduction="sum"), W, X, y, reg,
                        naive=True)


def svm_loss_vectorized(W, X, y, reg):
    """The same loss and gradient as svm_loss_naive, without a Python loop.

    Compute all scores at once, S = X W^T (N, C); the margins of every example and class; the
    loss from them. For dW, build the (N, C) matrix G = dL/dS of each score's coefficient
    (1 for each positive margin, minus their count at the correct class, divided by N); then
    dW = G^T X + the penalty's gradient. Must agree with your naive version, and run faster
    than it on a batch of a few hundred examples.
    """
    return _loss_and_dW(lintorch.svm_loss, W, X, y, reg, naive=False)


def softmax_loss_naive(W, X, y, reg):
    """The softmax (cross-entropy) loss and its gradient, with loops.

    W: (C, D); X: (N, D); y: (N,); reg: lambda. Returns (loss, dW): loss = 1/N sum_i L_i +
    reg * sum W^2 with L_i = -log p_{y_i}, the probabilities p_k = e^{s_k} / sum_j e^{s_j} of
    the scores s = W x_i; and dW of shape (C, D).

    dL_i/ds_k = p_k - 1[k = y_i], so each example adds p_k x_i to the row dW[k], and subtracts
    x_i from dW[y_i]. Scores can be large: e^{1000} overflows, so subtract the largest score of
    each example before exp (the probabilities do not change).
    """
    return _loss_and_dW(lambda s, t: lintorch.cross_entropy(s, t, reduction="sum"), W, X, y,
                        reg, naive=True)


def softmax_loss_vectorized(W, X, y, reg):
    """The same loss and gradient as softmax_loss_naive, without a Python loop.

    With P the (N, C) probabilities and Y the one-hot labels, dL/dS = (P - Y) / N and
    dW = (P - Y)^T X / N + the penalty's gradient. Must agree with your naive version, and run
    faster than it on a batch of a few hundred examples.
    """
    return _loss_and_dW(lintorch.cross_entropy, W, X, y, reg, naive=False)


@torch.enable_grad()
def linear_backward(dS, X, W):
    """The backward pass of the linear layer S = X W^T + b.

    dS: (N, C), the gradient dL/dS of some loss L with respect to the scores; X: (N, D);
    W: (C, D). Returns (dX, dW, db) = (dL/dX (N, D), dL/dW (C, D), dL/db (C,)).

    The score s_ik = sum_j W_kj x_ij + b_k depends on W_kj through x_ij alone (the lecture's
    d(w . x)/dw_j = x_j), on b_k with slope 1 and on x_ij through W_kj.
    """
    dS_t, X_t, W_t = _tensors(dS, X, W)
    X_t.requires_grad_(True)
    W_t.requires_grad_(True)
    b_t = torch.zeros(W_t.shape[0], dtype=W_t.dtype, requires_grad=True)
    dX, dW, db = torch.autograd.grad(linear(X_t, W_t, b_t), (X_t, W_t, b_t), dS_t)
    return dX.numpy(), dW.numpy(), db.numpy()


@torch.enable_grad()
def sigmoid_grad(x):
    """The sigmoid's derivative, elementwise: sigma'(x) = sigma(x) (1 - sigma(x)), with
    sigma(x) = 1 / (1 + e^{-x}).

    x: an array of any shape. Returns an array of the same shape. It must stay finite for
    large |x| (x = -1000 included): e^{1000} overflows.
    """
    (x_t,) = _tensors(x)
    x_t.requires_grad_(True)
    (g,) = torch.autograd.grad(lintorch.sigmoid(x_t).sum(), x_t)
    return g.numpy()


def numerical_gradient(f, x, h=1e-5):
    """df/dx by finite differences, one entry of x at a time.

    f: a function of an array of x's shape, returning a float; x: a float64 array. Returns an
    array of x's shape. Use the central difference (f(x + h e_k) - f(x - h e_k)) / 2h for each
    entry k (the forward difference (f(x + h e_k) - f(x)) / h of the lecture's walk-through
    also passes, less accurately). You may change x in place while you work, but give it back
    as it was.
    """
    (x_t,) = _tensors(x)
    return lintorch.numerical_gradient(lambda t: f(t.numpy()), x_t, h=h).numpy()


def sgd_step(W, dW, lr):
    """One step of gradient descent: returns the new weights W - lr * dW.

    W and dW: arrays of one shape; lr: the learning rate alpha > 0.
    """
    W_t, dW_t = _tensors(W, dW)
    lintorch.sgd_step(W_t, dW_t, lr)
    return W_t.numpy()
