"""K linear classifiers scored at once: stacked weights W (K, C, D), biases b (K, C).

The sweep trains K models on the same mini-batches, as one model (``StackedLinear``), and the
search methods score a population of K candidate weight matrices on the same data; both score
every model with one matrix product and one call of a per-example loss.
"""

from __future__ import annotations

from torch import Tensor, nn

from .models import linear


class StackedLinear(nn.Module):
    """K linear classifiers as one model: ``weight`` (K, C, D), ``bias`` (K, C); the scores of a
    batch carry the models' axis, (N, K, C)."""

    def __init__(self, weight: Tensor, bias: Tensor) -> None:
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:
        return scores(self.weight, x, self.bias)

    def select(self, index: Tensor) -> None:
        """Keep the models ``index`` only, as new parameters (an optimizer needs them anew)."""
        self.weight = nn.Parameter(self.weight.detach().index_select(0, index))
        self.bias = nn.Parameter(self.bias.detach().index_select(0, index))

    def extra_repr(self) -> str:
        k, c, d = self.weight.shape
        return f"models={k}, in_features={d}, num_classes={c}"


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
