"""K linear classifiers scored at once: stacked weights W (K, C, D), biases b (K, C).

The sweep trains K models on the same mini-batches, and the search methods score a population
of K candidate weight matrices on the same data; both score every model with one matrix product
and one call of a per-example loss.
"""

from __future__ import annotations

from torch import Tensor

from .models import linear


def scores(W: Tensor, x: Tensor, b: Tensor | None = None) -> Tensor:
    """``s[n, k] = W_k x_n + b_k`` for every model k, shape (N, K, C).

    The K models stacked are one linear map with K*C outputs: one call of lintorch's
    hand-written :func:`~lintorch.models.linear` rather than K of them, so each model's gradient
    is that Function's. Its (N, K, C) layout flattens to the N*K rows of scores that one loss
    call takes, without a copy.
    """
    k, c, d = W.shape
    s = linear(x.flatten(1), W.reshape(k * c, d), None if b is None else b.reshape(k * c))
    return s.view(-1, k, c)


def data_losses(per_example_loss, s: Tensor, y: Tensor) -> Tensor:
    """``L = 1/N sum_i L_i`` of each model, (K,), from scores (N, K, C) and labels (N,).

    ``per_example_loss(scores (M, C), labels (M,))`` gives the M losses L_i; it is applied once,
    to all N*K rows (row n*K + k is example n under model k). The gradient of ``L.sum()`` with
    respect to model k's scores is that of its own L alone.
    """
    n, k, c = s.shape
    return per_example_loss(s.reshape(n * k, c), y.repeat_interleave(k)).view(n, k).mean(0)


def correct(s: Tensor, y: Tensor) -> Tensor:
    """How many of the N examples each model classifies right, (K,), from scores (N, K, C)."""
    return (s.argmax(2) == y.unsqueeze(1)).sum(0)
