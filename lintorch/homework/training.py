"""A student's loss in lintorch's training loop and sweep.

The student writes the cs231n interface, ``loss_fn(W, X, y, reg) -> (loss, dW)`` for a linear
classifier; lintorch's loop wants ``(scores, y) -> L``, differentiable in the scores. One exact
bridge: a linear classifier on identity features. With X = I_N (one feature per example) and
W = S^T (C, N), the student's scores are X W^T = S, its loss is L(S), and its dW is
dL/dW = (dL/dS)^T X = (dL/dS)^T. So ``StudentLoss`` gives lintorch the student's L, and
back-propagates the student's dW^T. The identity's N x N products cost N^2 C multiply-adds each
(164K at a batch of 128, 655K at 256, beside the 1M of the batch's own X W^T on Fashion-MNIST's
784 features); evaluation's larger batches are cut into ``CHUNK`` rows, so N stays at most 256.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

CHUNK = 256


class StudentLossFunction(torch.autograd.Function):
    """L = the student's mean data loss of scores (N, C) and labels (N,); dL/dS = its dW^T."""

    @staticmethod
    def forward(ctx, s: Tensor, y: Tensor, loss_fn) -> Tensor:
        # The student's function computes the loss and dW together (cs231n's interface), so the
        # forward keeps the dW it was given rather than calling the function again in backward.
        S, labels, n = s.detach().cpu().double().numpy(), y.cpu().numpy(), len(y)
        total, dS = 0.0, np.empty_like(S)
        for i in range(0, n, CHUNK):  # the mean of the chunks' means, each weighed by its size
            rows = slice(i, i + CHUNK)
            L, dW = loss_fn(S[rows].T.copy(), np.eye(len(S[rows])), labels[rows], 0.0)
            share = len(S[rows]) / n
            total += float(L) * share
            dS[rows] = np.asarray(dW, dtype=np.float64).T * share
        ctx.save_for_backward(torch.from_numpy(dS).to(s))
        return torch.tensor(total, dtype=s.dtype, device=s.device)

    @staticmethod
    def backward(ctx, grad_L: Tensor):
        (dS,) = ctx.saved_tensors
        return grad_L * dS, None, None


def student_loss(loss_fn):
    """``(scores, y) -> L`` for lintorch's loop (``fit(..., loss=)``, ``sweep.run(..., loss=)``),
    named after the student's function."""
    def loss(s: Tensor, y: Tensor) -> Tensor:
        return StudentLossFunction.apply(s, y, loss_fn)

    loss.__name__ = loss.__qualname__ = getattr(loss_fn, "__qualname__", "student_loss")
    loss.__module__ = getattr(loss_fn, "__module__", __name__)
    return loss


def checked_loss(path, kind: str):
    """The student's vectorized loss ``kind`` from the file ``path``, as ``student_loss``; a
    ValueError (one line) if it is missing or fails on a small batch."""
    from . import checks, grade

    name = f"{kind}_loss_vectorized"
    try:
        fn = getattr(grade.load(str(path)), name)
    except (Exception, SystemExit) as e:
        raise ValueError(f"{path} has no usable {name}: {checks.one_line(e)}") from None
    loss = student_loss(fn)
    s = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    try:
        loss(s, torch.tensor([0, 1, 2, 0, 1])).backward()
    except (Exception, SystemExit) as e:
        raise ValueError(f"your {name} fails on 5 examples ({checks.one_line(e)}): run "
                         f"python -m lintorch.homework check first") from None
    return loss
