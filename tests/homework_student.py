"""A student's answers to lintorch's homework, in numpy, written from the lecture without lintorch:
the independent solution the grader must pass, and where tests/test_homework.py plants its bugs
(each planted bug replaces one marked line)."""

import numpy as np


def svm_loss_naive(W, X, y, reg):
    C, N = W.shape[0], X.shape[0]
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(N):
        s = W @ X[i]
        for j in range(C):
            if j == y[i]:  # skip the correct class
                continue  # skip the correct class
            margin = s[j] - s[y[i]] + 1
            if margin > 0:
                loss += margin
                dW[j] += X[i]
                dW[y[i]] -= X[i]  # the -x_i term
    loss = loss / N + reg * np.sum(W * W)
    dW = dW / N + 2 * reg * W
    return loss, dW


def svm_loss_vectorized(W, X, y, reg):
    N = X.shape[0]
    S = X @ W.T
    margins = np.maximum(0, S - S[np.arange(N), y][:, None] + 1)
    margins[np.arange(N), y] = 0
    loss = margins.sum() / N + reg * np.sum(W * W)
    G = (margins > 0).astype(float)
    G[np.arange(N), y] = -G.sum(1)
    dW = G.T @ X / N + 2 * reg * W  # the penalty's gradient
    return loss, dW  # the results


def softmax_loss_naive(W, X, y, reg):
    C, N = W.shape[0], X.shape[0]
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(N):
        s = W @ X[i]
        s = s - s.max()
        p = np.exp(s) / np.exp(s).sum()
        loss -= np.log(p[y[i]])
        for k in range(C):
            dW[k] += (p[k] - (k == y[i])) * X[i]
    return loss / N + reg * np.sum(W * W), dW / N + 2 * reg * W


def softmax_loss_vectorized(W, X, y, reg):
    N = X.shape[0]
    S = X @ W.T
    S = S - S.max(1, keepdims=True)  # the shift
    P = np.exp(S) / np.exp(S).sum(1, keepdims=True)
    loss = -np.log(P[np.arange(N), y]).sum() / N + reg * np.sum(W * W)
    P[np.arange(N), y] -= 1
    return loss, P.T @ X / N + 2 * reg * W


def linear_backward(dS, X, W):
    return dS @ W, dS.T @ X, dS.sum(0)


def sigmoid_grad(x):
    s = np.exp(-np.logaddexp(0, -x))  # 1 / (1 + e^{-x}) without overflow
    return s * (1 - s)


def numerical_gradient(f, x, h=1e-5):
    grad = np.zeros_like(x)
    for k in np.ndindex(x.shape):
        old = x[k]
        x[k] = old + h
        plus = f(x)
        x[k] = old - h
        minus = f(x)
        x[k] = old
        grad[k] = (plus - minus) / (2 * h)
    return grad


def sgd_step(W, dW, lr):
    return W - lr * dW  # the step
