"""The lecture's losses, each a ``torch.autograd.Function`` with its gradient written by hand.

Notation follows the lecture: scores ``s = f(x, W)`` of shape ``(N, C)``, integer labels ``y``,
per-example losses ``L_i`` and the data loss ``L = 1/N sum_i L_i``.

Every backward pass is built from differentiable tensor operations on saved inputs or outputs
(never ``once_differentiable``), so the gradients can themselves be differentiated
(``gradgradcheck``), and ``generate_vmap_rule = True`` lets ``torch.func.grad`` and
``torch.func.vmap`` see through them. Where backward reuses something forward computed (the
probabilities p, the SVM's dL/ds, MSE's x - t), ``Function.apply`` returns it as a second
output, PyTorch's pattern for saving an intermediate result; the functionals and ``UNCHECKED``
return the loss alone.
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn

REDUCTIONS = ("none", "mean", "sum")


# ---------------------------------------------------------------------------------------------
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


def check_target(scores: Tensor, target: Tensor, check_values: bool = True) -> None:
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
    if check_values and n > 0:
        lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= c:
            raise ValueError(
                f"target holds label {lo if lo < 0 else hi}, outside [0, {c}) for C={c} classes"
            )


def _reduce(losses: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _chain(dL_ds: Tensor, grad: Tensor, reduction: str) -> Tensor:
    """Chain rule through the reduction: dL/ds = dL/dL_i * dL_i/ds, with dL/dL_i = 1/N for
    mean, 1 for sum, and the incoming vector for none."""
    if reduction == "none":
        return dL_ds * grad.unsqueeze(1)
    if reduction == "mean":
        return dL_ds * (grad / dL_ds.shape[0])
    return dL_ds * grad


# ---------------------------------------------------------------------------------------------
# Multiclass SVM (hinge) loss:  L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)


def _hinge_margins(s: Tensor, y1: Tensor, margin: float) -> Tensor:
    """margins_ij = s_j - s_{y_i} + margin, over every j: the j = y_i column equals margin.
    ``y1``: the labels as a column (N, 1)."""
    return s - (s.gather(1, y1) - margin)  # the margin added to N numbers, not N C


class SVMLossFunction(torch.autograd.Function):
    """Returns ``(L, dL_ds)``: the loss and its gradient, which is piecewise constant in s, so
    backward reuses it as it is. ``svm_loss`` returns L alone."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, y: Tensor, margin: float, reduction: str) -> tuple[Tensor, Tensor]:
        y1 = y.unsqueeze(1)
        hinge = _hinge_margins(s, y1, margin).clamp(min=0)
        # Summing over all j includes the constant max(0, margin) from j = y_i (the lecture's
        # "no difference: adds a constant"); subtracting it back gives the sum over j != y_i.
        constant = max(margin, 0.0)
        if reduction == "none":
            L = hinge.sum(1) - constant
        else:
            L = hinge.sum() - constant * s.shape[0]
        # dL_i/ds_j = 1[margin_ij > 0] for j != y_i, and dL_i/ds_{y_i} = -(number of such j).
        # The j = y_i column of `active` is 1[margin > 0]; it cancels in active - rowsum below.
        active = hinge.sign()  # 1[margin_ij > 0], since hinge >= 0
        dL_ds = active.scatter_add_(1, y1, -active.sum(1, keepdim=True))
        if reduction == "mean":  # dL/ds of the mean: 1/N of the sum's
            L, dL_ds = L / s.shape[0], dL_ds.div_(s.shape[0])
        return L, dL_ds

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.reduction = inputs[3]

    @staticmethod
    def backward(ctx, grad: Tensor, _):
        # The hinge is piecewise linear: its second derivative is 0, which is what autograd
        # finds when it differentiates this backward, since dL_ds is a constant to it.
        (dL_ds,) = ctx.saved_tensors
        return dL_ds * (grad.unsqueeze(1) if ctx.reduction == "none" else grad), None, None, None


def svm_loss(
    scores: Tensor, target: Tensor, margin: float = 1.0, reduction: str = "mean"
) -> Tensor:
    """Multiclass SVM loss ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)``.

    Unlike ``F.multi_margin_loss``, rows are not divided by C (the lecture's form), so
    ``svm_loss(s, y, reduction="none") == C * F.multi_margin_loss(s, y, reduction="none")``.
    """
    check_target(scores, target)
    _check_reduction(reduction)
    return SVMLossFunction.apply(scores, target, float(margin), reduction)[0]


# ---------------------------------------------------------------------------------------------
# Softmax and cross-entropy:  p_k = e^{s_k} / sum_j e^{s_j},   L_i = -log p_{y_i}


def _shift_exp(s: Tensor) -> tuple[Tensor, Tensor]:
    """``s - m`` and ``e^{s - m}`` for the row maximum m.

    Subtracting m leaves the softmax unchanged and keeps exp() from overflowing (log-sum-exp);
    the shift is a constant, so it is detached from the graph.
    """
    shifted = s - s.amax(1, keepdim=True).detach()
    e = shifted.exp()
    return shifted, e


def _softmax_backward(p: Tensor, grad: Tensor) -> Tensor:
    """grad^T dp/ds, from dp_k/ds_j = p_k (1[k = j] - p_j)."""
    return p * (grad - (grad * p).sum(1, keepdim=True))


class SoftmaxFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor) -> Tensor:
        _, e = _shift_exp(s)
        return e / e.sum(1, keepdim=True)

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (p,) = ctx.saved_tensors
        return _softmax_backward(p, grad)


def softmax(scores: Tensor) -> Tensor:
    """Class probabilities ``P(Y = k | x) = e^{s_k} / sum_j e^{s_j}`` over dim 1, stable."""
    _check_scores(scores)
    return SoftmaxFunction.apply(scores)


class CrossEntropyFunction(torch.autograd.Function):
    """Returns ``(L, p)``: the loss and the probabilities it was computed from. Backward reuses
    p; returning it as an output (PyTorch's pattern for saving an intermediate result) keeps
    that backward differentiable. ``cross_entropy`` returns L alone."""

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, y: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
        # L_i = -log p_{y_i} = log sum_j e^{s_j} - s_{y_i}, both terms taken after the shift.
        shifted, e = _shift_exp(s)
        sum_e = e.sum(1, keepdim=True)
        L_i = (sum_e.log() - shifted.gather(1, y.unsqueeze(1))).squeeze(1)
        return _reduce(L_i, reduction), e / sum_e

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, y, reduction = inputs
        ctx.save_for_backward(y, output[1])
        ctx.reduction = reduction
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad: Tensor | None, grad_p: Tensor | None):
        y, p = ctx.saved_tensors
        ds = None
        if grad is not None:
            # dL_i/ds = p - onehot(y_i)
            dL_ds = p.scatter_add(1, y.unsqueeze(1), p.new_full((p.shape[0], 1), -1.0))
            ds = _chain(dL_ds, grad, ctx.reduction)
        if grad_p is not None:  # p was used too, as in a second derivative of L
            ds_p = _softmax_backward(p, grad_p)
            ds = ds_p if ds is None else ds + ds_p
        return ds, None, None


def cross_entropy(scores: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Softmax cross-entropy ``L_i = -log(e^{s_{y_i}} / sum_j e^{s_j})``; equals F.cross_entropy."""
    check_target(scores, target)
    _check_reduction(reduction)
    return CrossEntropyFunction.apply(scores, target, reduction)[0]


# ---------------------------------------------------------------------------------------------
# Squared error:  L_i = (y_i - f(x_i))^2, elementwise like F.mse_loss


class MSELossFunction(torch.autograd.Function):
    """Returns ``(L, x - t)``: the loss and the difference backward reuses (the lecture's
    -delta), so that backward is one pass over memory. ``mse_loss`` returns L alone."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, t: Tensor, reduction: str) -> tuple[Tensor, Tensor]:
        diff = x - t
        if reduction == "none":
            return diff * diff, diff
        flat = diff.reshape(-1)
        L = torch.dot(flat, flat)  # sum (x - t)^2 in one pass
        return (L / diff.numel() if reduction == "mean" else L), diff

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(output[1])
        ctx.reduction = inputs[2]
        ctx.set_materialize_grads(False)  # no zeros the size of x for an unused x - t

    @staticmethod
    def backward(ctx, grad: Tensor | None, grad_diff: Tensor | None):
        (diff,) = ctx.saved_tensors
        dx = None
        if grad is not None:
            # d/dx (x - t)^2 = 2 (x - t) = -2 delta, with the lecture's delta = t - x.
            if ctx.reduction == "none":
                dx = diff * (2 * grad)
            else:
                dx = diff * (grad * (2 / diff.numel() if ctx.reduction == "mean" else 2))
        if grad_diff is not None:  # x - t was used too, as in a second derivative of L
            dx = grad_diff if dx is None else dx + grad_diff
        if dx is None:
            return None, None, None
        return dx, (-dx if ctx.needs_input_grad[1] else None), None


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:
    """Squared error ``(input - target)^2``, reduced like ``F.mse_loss``; shapes must match."""
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
    return MSELossFunction.apply(input, target, reduction)[0]


# ---------------------------------------------------------------------------------------------
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
    def backward(ctx, grad: Tensor):
        (w,) = ctx.saved_tensors
        return w * (2 * grad)  # the scalar first: one pass over w, not two


class L1PenaltyFunction(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(w: Tensor) -> Tensor:
        return w.abs().sum()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (w,) = ctx.saved_tensors
        # |w| has no derivative at 0; sign(0) = 0 is the subgradient we choose there.
        return w.sign() * grad


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


PENALTIES = {"l2": l2_penalty, "l1": l1_penalty}


# For loops whose labels were checked once up front (training, the sweep, compare's timing):
# the loss alone, straight from the Functions, with no per-call check (which would cost a host
# sync on a GPU). Same signatures as the functionals, the SVM's margin fixed at 1.
UNCHECKED = {
    "svm": lambda s, y, reduction="mean": SVMLossFunction.apply(s, y, 1.0, reduction)[0],
    "softmax": lambda s, y, reduction="mean": CrossEntropyFunction.apply(s, y, reduction)[0],
    "mse": lambda x, t, reduction="mean": MSELossFunction.apply(x, t, reduction)[0],
}


# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Each apply of a setup_context-style Function binds its arguments to forward's signature to
# fill in defaults: inspect.signature(forward).bind(...).apply_defaults(), ~4.6 µs of pure
# Python on a 2-core CPU, as long as half a dozen small kernels. lintorch's forwards have no
# defaults and their callers pass every argument by position, so a signature stored once, whose
# bind maps positions to names without inspect's general search, gives torch the same bound
# arguments in a fraction of the time. Any other call (keywords, a wrong count) takes
# inspect's own path, with its own error messages.


class _PositionalBound(inspect.BoundArguments):
    __slots__ = ("_args",)

    @property
    def args(self) -> tuple:
        return self._args

    @property
    def kwargs(self) -> dict:
        return {}

    def apply_defaults(self) -> None:  # every parameter is already bound
        pass


class _PositionalSignature(inspect.Signature):
    __slots__ = ("_names",)

    def __init__(self, signature: inspect.Signature) -> None:
        super().__init__(list(signature.parameters.values()),
                         return_annotation=signature.return_annotation)
        kinds = {p.kind for p in self.parameters.values()}
        # Positions map to names one to one only when every parameter is positional-or-keyword.
        self._names = (tuple(self.parameters)
                       if kinds <= {inspect.Parameter.POSITIONAL_OR_KEYWORD} else None)

    def bind(self, *args, **kwargs):
        if kwargs or self._names is None or len(args) != len(self._names):
            return super().bind(*args, **kwargs)
        bound = _PositionalBound(self, dict(zip(self._names, args)))
        bound._args = args
        return bound


for _function in (SVMLossFunction, SoftmaxFunction, CrossEntropyFunction, MSELossFunction,
                  L2PenaltyFunction, L1PenaltyFunction):
    _function.forward.__signature__ = _PositionalSignature(inspect.signature(_function.forward))
