"""The lecture's models: the linear classifier f(x, W) = Wx + b and the sigmoid MLP."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


def append_ones(x: Tensor) -> Tensor:
    """The bias trick: ``[x_1 ... x_m 1]``, so that ``[W | b] @ [x; 1] = Wx + b``."""
    x = x.flatten(1)
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


def _small_init(layer: nn.Linear, std: float) -> None:
    # Small weights make every score near 0 at initialisation, which is what the lecture's
    # sanity checks rely on: SVM loss ~ C - 1, cross-entropy ~ log C.
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class LinearClassifier(nn.Module):
    """``f(x, W) = Wx + b``: one score per class, ``weight`` of shape (C, D), ``bias`` (C,).

    ``forward`` takes vectors (N, D) or images (N, channels, H, W), which it flattens.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True,
                 init_std: float = 1e-3) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 1:
            raise ValueError("in_features and num_classes must be positive")
        self.in_features, self.num_classes = in_features, num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.bias = nn.Parameter(torch.empty(num_classes)) if bias else None
        self.init_std = init_std
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.weight, mean=0.0, std=self.init_std)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(
                f"expected {self.in_features} features per example, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)})"
            )
        s = x @ self.weight.T
        return s if self.bias is None else s + self.bias

    def as_single_matrix(self) -> Tensor:
        """``[W | b]`` of shape (C, D + 1), for ``append_ones(x) @ W_b.T == self(x)``."""
        b = self.bias if self.bias is not None else self.weight.new_zeros(self.num_classes)
        return torch.cat([self.weight, b.unsqueeze(1)], dim=1)

    def templates(self, shape: Sequence[int] = (3, 32, 32)) -> Tensor:
        """The visual viewpoint: each row of W as an image (C, *shape), rescaled to [0, 1]."""
        if math.prod(shape) != self.in_features:
            raise ValueError(f"shape {tuple(shape)} does not hold {self.in_features} weights")
        w = self.weight.detach().flatten(1)
        lo = w.amin(1, keepdim=True)
        span = w.amax(1, keepdim=True) - lo
        # A constant row has no contrast to show; map it to mid-grey rather than divide by 0.
        img = torch.where(span > 0, (w - lo) / span.clamp(min=1e-30), torch.full_like(w, 0.5))
        return img.reshape(self.num_classes, *shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, "
                f"bias={self.bias is not None}")


class SigmoidMLP(nn.Module):
    """``f = W_k sigma(... sigma(W_1 x + b_1) ...) + b_k``: sigmoid hidden layers, linear scores."""

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int,
                 init_std: float | None = None) -> None:
        super().__init__()
        hidden_sizes = [int(h) for h in hidden_sizes]
        if any(h < 1 for h in hidden_sizes):
            raise ValueError(f"hidden sizes must be positive, got {hidden_sizes}")
        self.in_features, self.num_classes = in_features, num_classes
        sizes = [in_features, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        for layer in self.hidden:
            # A 1/sqrt(fan-in) scale keeps sigmoid units out of saturation at the start.
            std = init_std if init_std is not None else math.sqrt(1.0 / layer.in_features)
            _small_init(layer, std)
        _small_init(self.out, 1e-3)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = torch.sigmoid(layer(h))
        return self.out(h)

    @property
    def weights(self) -> list[Tensor]:
        """The weight matrices W_1 ... W_k (the ones a weight penalty applies to; not biases)."""
        return [layer.weight for layer in self.hidden] + [self.out.weight]
