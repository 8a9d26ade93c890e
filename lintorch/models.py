"""The lecture's models: the linear classifier f(x, W) = Wx + b and the sigmoid MLP. The linear
map and the sigmoid are ``torch.autograd.Function``s with their derivatives written by hand,
like the losses, and every layer computes through them (unless given torch's own)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


def append_ones(x: Tensor) -> Tensor:
    """The bias trick: ``[x_1 ... x_m 1]``, so that ``[W | b] @ [x; 1] = Wx + b``."""
    x = x.flatten(1)
    return torch.cat([x, x.new_ones(x.shape[0], 1)], dim=1)


# The linear (affine) map. The lecture writes one example as a column, s = Wx + b, with W of
# shape (C, D). A batch of N examples as the rows of X (N, D) gives the scores' rows at once:
# S = X W^T + b, row i being (W x_i + b)^T. torch's nn.Linear keeps the same (out, in) layout.
#
# Its derivatives, from the lecture's d(w . x)/dw_j = x_j: score s_ik = sum_j W_kj x_ij + b_k
# depends on W_kj through x_ij alone, on b_k with slope 1, and on x_ij through W_kj. So with
# G = dL/dS (N, C), the upstream gradient,
#     dL/dW_kj = sum_i G_ik x_ij        dL/dW = G^T X        (C, D)
#     dL/db_k  = sum_i G_ik             dL/db = sum_i G_i     (C,)
#     dL/dx_ij = sum_k G_ik W_kj        dL/dX = G W           (N, D)


class LinearFunction(torch.autograd.Function):
    """``S = X W^T + b`` for a batch of rows X (N, D), W (C, D), b (C,) or None -> S (N, C)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        s = x @ weight.T
        return s if bias is None else s + bias

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, weight, bias = inputs
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx, grad_s: Tensor):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad
        # Each product only where asked for: the first layer's dL/dX (N x C x D multiply-adds)
        # is wanted by nobody, the data being no parameter.
        dx = grad_s @ weight if need_x else None        # dL/dX = G W
        dw = grad_s.T @ x if need_w else None           # dL/dW = G^T X
        # dL/db = sum_i G_i, as the product 1^T G: BLAS then sums each column in one order
        # however many columns G has, so K models stacked side by side (lintorch.stacked) get
        # each model's own db to the bit, which G.sum(0) does not give
        db = grad_s.new_ones(grad_s.shape[0]) @ grad_s if need_b and ctx.has_bias else None
        return dx, dw, db


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``S = X W^T + b``: the scores of a batch of rows X (N, D) under W (C, D) and b (C,), as
    ``torch.nn.functional.linear``, with the derivatives written by hand (``LinearFunction``)."""
    for name, t in (("x", x), ("weight", weight), *([("bias", bias)] if bias is not None else [])):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor, got "
                            f"{getattr(t, 'dtype', type(t).__name__)}")
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"expected x of shape (N, D) and weight (C, D), got x "
                         f"{tuple(x.shape)} and weight {tuple(weight.shape)}")
    if bias is not None and bias.shape != weight.shape[:1]:
        raise ValueError(f"expected bias of shape ({weight.shape[0]},) for weight "
                         f"{tuple(weight.shape)}, got {tuple(bias.shape)}")
    if not x.dtype == weight.dtype == (weight.dtype if bias is None else bias.dtype):
        raise TypeError(f"x, weight and bias must share one dtype, got {x.dtype}, "
                        f"{weight.dtype}{'' if bias is None else ', ' + str(bias.dtype)}")
    return LinearFunction.apply(x, weight, bias)


def _qualname(fn: Callable) -> str:
    # torch's built-ins report the C module they live in; name them as a user calls them
    public = {torch.nn.functional.linear: "torch.nn.functional.linear"}
    return public.get(fn) or f"{fn.__module__}.{getattr(fn, '__name__', type(fn).__name__)}"


def _small_init(layer: nn.Module, std: float) -> None:
    # Every score near 0 at first, as the lecture's sanity checks expect: SVM ~ C - 1, CE ~ log C
    nn.init.normal_(layer.weight, mean=0.0, std=std)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class LinearClassifier(nn.Module):
    """``f(x, W) = Wx + b``: ``weight`` (C, D), ``bias`` (C,); takes (N, D) or flattens images.

    The lecture's column form s = Wx + b scores one example; ``forward`` scores a batch of N
    examples as the rows of X (N, D), S = X W^T + b, row i being (W x_i + b)^T. It computes that
    through ``linear``: lintorch's hand-written :func:`linear` unless given
    (``torch.nn.functional.linear`` for ``--impl torch``).
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True,
                 init_std: float = 1e-3,
                 linear: Callable[[Tensor, Tensor, Tensor | None], Tensor] = linear) -> None:
        super().__init__()
        self.linear = linear
        if in_features < 1 or num_classes < 1:
            raise ValueError("in_features and num_classes must be positive")
        self.in_features, self.num_classes, self.init_std = in_features, num_classes, init_std
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        self.bias = nn.Parameter(torch.empty(num_classes)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _small_init(self, self.init_std)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"expected {self.in_features} features per example, got "
                             f"{x.shape[1]} (input shape {tuple(x.shape)})")
        return self.linear(x, self.weight, self.bias)  # S = X W^T + b

    def as_single_matrix(self) -> Tensor:
        """``[W | b]`` of shape (C, D + 1), for ``append_ones(x) @ W_b.T == self(x)``."""
        b = self.bias if self.bias is not None else self.weight.new_zeros(self.num_classes)
        return torch.cat([self.weight, b.unsqueeze(1)], dim=1)

    def templates(self, shape: Sequence[int] = (3, 32, 32)) -> Tensor:
        """The visual viewpoint: each row of W as an image (C, *shape), rescaled to [0, 1]."""
        if math.prod(shape) != self.in_features:
            raise ValueError(f"shape {tuple(shape)} does not hold {self.in_features} weights")
        w = self.weight.detach().flatten(1)
        lo, hi = w.amin(1, keepdim=True), w.amax(1, keepdim=True)
        # A constant row has no contrast to show; map it to mid-grey rather than divide by 0.
        img = torch.where(hi > lo, (w - lo) / (hi - lo).clamp(min=1e-30), torch.full_like(w, 0.5))
        return img.reshape(self.num_classes, *shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, num_classes={self.num_classes}, "
                f"bias={self.bias is not None}, linear={_qualname(self.linear)}")


# The sigmoid:  sigma(x) = 1 / (1 + e^{-x}),   sigma'(x) = sigma(x) (1 - sigma(x))


class SigmoidFunction(torch.autograd.Function):
    """The logistic sigmoid, elementwise, any shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor) -> Tensor:
        # e^{-|x|} <= 1 never overflows. For x >= 0 this is the lecture's 1 / (1 + e^{-x}); for
        # x < 0 it is that fraction times e^{x} / e^{x}, where 1 / (1 + e^{-x}) itself would
        # pass through e^{800} = inf on its way to sigma(-800) = 0.
        e = torch.exp(-x.abs())
        return torch.where(x >= 0, 1.0, e) / (1 + e)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_sigma: Tensor):
        (sigma,) = ctx.saved_tensors
        # dsigma/dx = sigma (1 - sigma). Past x ~ 37 (float64) 1 - sigma rounds to 0, and so does
        # this gradient, as torch.sigmoid's: the true e^{-x} is below sigma's own resolution.
        return grad_sigma * sigma * (1 - sigma)


def sigmoid(x: Tensor) -> Tensor:
    """``sigma(x) = 1 / (1 + e^{-x})`` elementwise, stable for any x, as ``torch.sigmoid``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    return SigmoidFunction.apply(x)


class SigmoidMLP(nn.Module):
    """``f = W_k sigma(... sigma(W_1 x + b_1) ...) + b_k``: sigmoid hidden layers, linear scores.

    Every layer is ``linear(h, W, b)`` and every hidden unit ``sigmoid``: lintorch's
    hand-written :func:`linear` and :func:`sigmoid` unless given (``torch.nn.functional.linear``
    and ``torch.sigmoid`` for ``--impl torch``). The ``nn.Linear`` modules only hold W and b.
    """

    def __init__(self, in_features: int, hidden_sizes: Sequence[int], num_classes: int,
                 init_std: float | None = None,
                 sigmoid: Callable[[Tensor], Tensor] = sigmoid,
                 linear: Callable[[Tensor, Tensor, Tensor | None], Tensor] = linear) -> None:
        super().__init__()
        self.sigmoid, self.linear = sigmoid, linear
        hidden_sizes = [int(h) for h in hidden_sizes]
        if any(h < 1 for h in hidden_sizes):
            raise ValueError(f"hidden sizes must be positive, got {hidden_sizes}")
        self.in_features, self.num_classes = in_features, num_classes
        sizes = [in_features, *hidden_sizes]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], num_classes)
        for layer in self.hidden:  # 1/sqrt(fan-in): sigmoid units start out of saturation
            _small_init(layer, math.sqrt(1.0 / layer.in_features) if init_std is None else init_std)
        _small_init(self.out, 1e-3)

    def forward(self, x: Tensor) -> Tensor:
        h = x.flatten(1)
        for layer in self.hidden:
            h = self.sigmoid(self.linear(h, layer.weight, layer.bias))
        return self.linear(h, self.out.weight, self.out.bias)

    def extra_repr(self) -> str:
        return f"sigmoid={_qualname(self.sigmoid)}, linear={_qualname(self.linear)}"

    @property
    def weights(self) -> list[Tensor]:
        """The weight matrices W_1 ... W_k (the ones a weight penalty applies to; not biases)."""
        return [layer.weight for layer in self.hidden] + [self.out.weight]
