"""The lecture's losses, each a ``torch.autograd.Function`` with its gradient written by hand.

Notation follows the lecture: scores ``s = f(x, W)`` of shape ``(N, C)``, integer labels ``y``,
per-example losses ``L_i`` and the data loss ``L = 1/N sum_i L_i``.

Each Function's ``forward`` computes the per-example losses L_i (or the penalty R(W)) and its
``backward`` derives the gradient from the saved inputs, with the derivative written beside it.
The reduction over examples (``mean``, ``sum``, ``none``) happens outside, in plain torch, so
the chain rule through it is autograd's. Every ``backward`` is built from differentiable tensor
operations (never ``once_differentiable``), so gradients can themselves be differentiated
(``gradgradcheck``), and ``generate_vmap_rule = True`` lets ``torch.func.grad`` and
``torch.func.vmap`` see through the Functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REDUCTIONS = ("none", "mean", "sum")


# Input checks: one clear message each, and never a silent broadcast.


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_scores(scores: Tensor) -> None:
    if not isinstance(scores, Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if not scores.is_floating_point():
        raise TypeError(f"scores must be a floating-point tensor, got dtype {scores.dtype}")
    if scores.dim() != 2:
        raise ValueError(
            f"scores must be 2-D (N, C), got shape {tuple(scores.shape)}; "
            "flatten extra dimensions or add a batch dimension with scores.unsqueeze(0)"
        )


def check_target(scores: Tensor, target: Tensor) -> None:
    """Raise if ``target`` is not N integer labels in ``[0, C)`` for scores of shape ``(N, C)``."""
    _check_scores(scores)
    n, c = scores.shape
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor of labels, got {type(target).__name__}")
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise TypeError(f"target must hold integer class labels (int64), got dtype {target.dtype}")
    if target.dim() != 1 or target.shape[0] != n:
        raise ValueError(
            f"target must be 1-D with one label per row of scores (length {n}), "
            f"got shape {tuple(target.shape)}"
        )
    if n > 0:
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= c:
            raise ValueError(
                f"target holds label {lo if lo < 0 else hi}, outside [0, {c}) for C={c} classes"
            )


def reduce(losses: Tensor, reduction: str) -> Tensor:
    """torch's reduction convention: the mean or the sum of the losses, or them as they are."""
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    _check_reduction(reduction)
    return losses


# Multiclass SVM (hinge) loss:  L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)


def _margins(s: Tensor, y: Tensor, margin: float) -> Tensor:
    """``s_j - s_{y_i} + margin`` for every j != y_i, and 0 in the j = y_i column."""
    y1 = y.unsqueeze(1)
    return (s - s.gather(1, y1) + margin).scatter(1, y1, 0.0)


class SVMLossFunction(torch.autograd.Function):
    """The hinge loss of each row of scores: ``(N, C)`` scores, ``(N,)`` labels -> ``(N,)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, y: Tensor, margin: float) -> Tensor:
        return _margins(s, y, margin).clamp(min=0).sum(1)

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, y, margin = inputs
        ctx.save_for_backward(s, y)
        ctx.margin = margin

    @staticmethod
    def backward(ctx, grad_L: Tensor):
        s, y = ctx.saved_tensors
        # dL_i/ds_j     = 1[s_j - s_{y_i} + margin > 0]              for j != y_i
        # dL_i/ds_{y_i} = -(the number of j != y_i with a positive margin)
        active = (_margins(s, y, ctx.margin) > 0).to(s.dtype)
        dL_ds = active.scatter(1, y.unsqueeze(1), -active.sum(1, keepdim=True))
        # The hinge is piecewise linear: dL_ds is constant in s between kinks, so its own
        # derivative is 0, which is what autograd finds when it differentiates this backward.
        return dL_ds * grad_L.unsqueeze(1), None, None


def svm_loss(scores: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean",
             check: bool = True) -> Tensor:
    """Multiclass SVM loss ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)``.

    Unlike ``F.multi_margin_loss``, rows are not divided by C (the lecture's form), so
    ``svm_loss(s, y, reduction="none") == C * F.multi_margin_loss(s, y, reduction="none")``.
    ``check=False`` skips the input checks, for loops whose labels were checked once (the
    check of the labels' range waits for the device).
    """
    if check:
        check_target(scores, target)
        _check_reduction(reduction)
    return reduce(SVMLossFunction.apply(scores, target, float(margin)), reduction)


# Softmax and cross-entropy:  p_k = e^{s_k} / sum_j e^{s_j},   L_i = -log p_{y_i}


def _shifted(s: Tensor) -> Tensor:
    """``s - max_j s_j`` per row: the softmax is unchanged by the shift, and exp() can no longer
    overflow. The maximum is a constant of the shift, so it is detached."""
    return s - s.amax(1, keepdim=True).detach()


def _probabilities(s: Tensor) -> Tensor:
    e = _shifted(s).exp()
    return e / e.sum(1, keepdim=True)


class SoftmaxFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor) -> Tensor:
        return _probabilities(s)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad_p: Tensor):
        (p,) = ctx.saved_tensors
        # dp_k/ds_j = p_k (1[k = j] - p_j), so
        # sum_k grad_k dp_k/ds_j = p_j (grad_j - sum_k grad_k p_k)
        return p * (grad_p - (grad_p * p).sum(1, keepdim=True))


def softmax(scores: Tensor) -> Tensor:
    """Class probabilities ``P(Y = k | x) = e^{s_k} / sum_j e^{s_j}`` over dim 1, stable."""
    _check_scores(scores)
    return SoftmaxFunction.apply(scores)


class CrossEntropyFunction(torch.autograd.Function):
    """The cross-entropy of each row of scores, and the probabilities it came from:
    ``(N, C)`` scores, ``(N,)`` labels -> ``L`` ``(N,)``, ``p`` ``(N, C)``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        # L_i = -log p_{y_i} = log sum_j e^{s_j} - s_{y_i}, both terms taken after the shift
        shifted = _shifted(s)
        e = shifted.exp()
        z = e.sum(1, keepdim=True)
        L = z.log().squeeze(1) - shifted.gather(1, y.unsqueeze(1)).squeeze(1)
        return L, e / z  # p, kept for the backward: it need not exponentiate again

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, y = inputs
        _, p = output
        ctx.save_for_backward(p, y)
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros

    @staticmethod
    def backward(ctx, grad_L: Tensor | None, grad_p: Tensor | None):
        p, y = ctx.saved_tensors
        grad_s = None
        if grad_L is not None:
            # dL_i/ds_j = p_j - 1[j = y_i]:  dL_i/ds = p - onehot(y_i)
            onehot = torch.zeros_like(p).scatter(1, y.unsqueeze(1), 1.0)
            grad_s = (p - onehot) * grad_L.unsqueeze(1)
        if grad_p is not None:
            # p's own gradient reaches s through the softmax (as SoftmaxFunction's backward);
            # a gradient of the gradient above, built from p, arrives here this way
            dp = p * (grad_p - (grad_p * p).sum(1, keepdim=True))
            grad_s = dp if grad_s is None else grad_s + dp
        return grad_s, None


def cross_entropy(scores: Tensor, target: Tensor, reduction: str = "mean",
                  check: bool = True) -> Tensor:
    """Softmax cross-entropy ``L_i = -log(e^{s_{y_i}} / sum_j e^{s_j})``; equals F.cross_entropy.
    ``check=False`` skips the input checks, as in :func:`svm_loss`."""
    if check:
        check_target(scores, target)
        _check_reduction(reduction)
    return reduce(CrossEntropyFunction.apply(scores, target)[0], reduction)


# Squared error:  L_i = (y_i - f(x_i))^2, elementwise like F.mse_loss


class MSELossFunction(torch.autograd.Function):
    """``(x - t)^2`` elementwise; x and t of the same shape."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, t: Tensor) -> Tensor:
        diff = x - t
        return diff * diff

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    @staticmethod
    def backward(ctx, grad_L: Tensor):
        x, t = ctx.saved_tensors
        # d/dx (x - t)^2 = 2 (x - t) = -2 delta, with the lecture's delta = t - x;  d/dt = -d/dx
        dx = (x - t) * (2 * grad_L)
        return dx, (-dx if ctx.needs_input_grad[1] else None)


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean",
             check: bool = True) -> Tensor:
    """Squared error ``(input - target)^2``, reduced like ``F.mse_loss``; shapes must match."""
    if check:
        for name, t in (("input", input), ("target", target)):
            if not isinstance(t, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
            if not t.is_floating_point():
                raise TypeError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
        if input.shape != target.shape:
            raise ValueError(
                f"input and target must have the same shape, got {tuple(input.shape)} and "
                f"{tuple(target.shape)} (no broadcasting: reshape one of them explicitly)"
            )
        _check_reduction(reduction)
    return reduce(MSELossFunction.apply(input, target), reduction)


# Weight penalties R(W): L2 = sum w^2, L1 = sum |w|


class L2PenaltyFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(w: Tensor) -> Tensor:
        return (w * w).sum()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_R: Tensor):
        (w,) = ctx.saved_tensors
        # dR/dw = 2 w
        return 2 * w * grad_R


class L1PenaltyFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(w: Tensor) -> Tensor:
        return w.abs().sum()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad_R: Tensor):
        (w,) = ctx.saved_tensors
        # dR/dw = sign(w); |w| has no derivative at 0, and sign(0) = 0 is the subgradient chosen
        return w.sign() * grad_R


def _check_weight(weight: Tensor) -> None:
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError("weight must be a floating-point torch.Tensor")


def l2_penalty(weight: Tensor) -> Tensor:
    """``R(W) = sum_k sum_l W_kl^2``."""
    _check_weight(weight)
    return L2PenaltyFunction.apply(weight)


def l1_penalty(weight: Tensor) -> Tensor:
    """``R(W) = sum_k sum_l |W_kl|`` (subgradient 0 at 0)."""
    _check_weight(weight)
    return L1PenaltyFunction.apply(weight)


# Every loss and penalty by name, lintorch's and torch's built-in beside it (``--impl torch``,
# ``lintorch.compare``): a loss maps (scores or predictions, target, reduction) to L, a penalty
# W to R(W). The classification losses a model trains with are CLASSIFIERS.
LOSSES = {"svm": svm_loss, "softmax": cross_entropy, "mse": mse_loss}
PENALTIES = {"l2": l2_penalty, "l1": l1_penalty}
CLASSIFIERS = ("svm", "softmax")
BUILTIN_LOSSES = {
    # torch divides each row's hinge loss by C, the lecture does not
    "svm": lambda s, y, reduction="mean": s.shape[1] * F.multi_margin_loss(s, y,
                                                                            reduction=reduction),
    "softmax": F.cross_entropy,
    "mse": F.mse_loss,
}
BUILTIN_PENALTIES = {"l2": lambda W: (W * W).sum(), "l1": lambda W: W.abs().sum()}
# R(W_k) of each of K stacked weight matrices, (K,), from W (K, C, D), for the sweep. Autograd's
# gradients of these forms are the hand-written ones to the bit (tested against the vmapped
# Functions); vmapping the Functions themselves costs ~0.6 ms a step on a 2-core CPU.
STACKED_PENALTIES = {"l2": lambda W: (W * W).sum((1, 2)), "l1": lambda W: W.abs().sum((1, 2))}


def loss_fn(name: str, impl: str = "lintorch", reduction: str = "mean"):
    """``(scores, target) -> L``: the loss ``name`` of ``impl`` ("lintorch" or "torch"), reduced.
    lintorch's skip their per-call input checks: for loops whose labels were checked once (the
    check of the labels' range waits for the device)."""
    if impl == "torch":
        return lambda s, y: BUILTIN_LOSSES[name](s, y, reduction=reduction)
    return lambda s, y: LOSSES[name](s, y, reduction=reduction, check=False)


# nn.Module wrappers, in the shape of torch.nn's losses


class _Loss(nn.Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class SVMLoss(_Loss):
    """Multiclass SVM (hinge) loss module; see :func:`svm_loss`."""

    def __init__(self, margin: float = 1.0, reduction: str = "mean") -> None:
        super().__init__(reduction)
        self.margin = margin

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return svm_loss(scores, target, self.margin, self.reduction)

    def extra_repr(self) -> str:
        return f"margin={self.margin}, reduction={self.reduction!r}"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy loss module; see :func:`cross_entropy`."""

    def forward(self, scores: Tensor, target: Tensor) -> Tensor:
        return cross_entropy(scores, target, self.reduction)


class MSELoss(_Loss):
    """Squared-error loss module; see :func:`mse_loss`."""

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return mse_loss(input, target, self.reduction)
