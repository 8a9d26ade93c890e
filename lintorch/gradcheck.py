"""Numerical gradients and the gradient check, as the lecture does them by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def _difference(f: Callable[[Tensor], Tensor], x: Tensor, i: int, h: float,
                fx: float | None = None) -> float:
    """``df/dx_i``: forward from ``fx = f(x)`` if given, else central."""
    flat = x.data.view(-1)
    old = flat[i].item()
    flat[i] = old + h
    f_plus = float(f(x))
    if fx is None:
        flat[i] = old - h
        f_minus = float(f(x))
    flat[i] = old
    return (f_plus - fx) / h if fx is not None else (f_plus - f_minus) / (2 * h)


def numerical_gradient(f: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-5,
                       method: str = "central") -> Tensor:
    """``df/dx`` by finite differences, one coordinate at a time: ``method="forward"`` is
    ``(f(x + h) - f(x)) / h``, the lecture's walk-through; ``method="central"`` is
    ``(f(x + h) - f(x - h)) / 2h``, error O(h^2) instead of O(h). Each coordinate of ``x`` is
    perturbed in place and restored, so ``f`` may close over ``x``."""
    if method not in ("central", "forward"):
        raise ValueError(f"method must be 'central' or 'forward', got {method!r}")
    grad = torch.zeros_like(x)
    with torch.no_grad():
        fx = float(f(x)) if method == "forward" else None
        for i in range(x.numel()):
            grad.view(-1)[i] = _difference(f, x, i, h, fx)
    return grad


def relative_error(a: Tensor, n: Tensor) -> Tensor:
    """``|a - n| / max(|a| + |n|, 1e-12)``, elementwise."""
    return (a - n).abs() / (a.abs() + n.abs()).clamp(min=1e-12)


def grad_check(f: Callable[[Tensor], Tensor], x: Tensor, num_checks: int | None = None,
               h: float = 1e-5, seed: int = 0) -> float:
    """The largest relative error between autograd's gradient of ``f`` at ``x`` and the
    numerical one, over every coordinate or over ``num_checks`` random ones (for a large W)."""
    x_req = x.detach().clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(f(x_req), x_req)
    analytic, probe = analytic.reshape(-1), x.detach().clone()
    idx = range(x.numel()) if num_checks is None else torch.randint(
        x.numel(), (num_checks,), generator=torch.Generator().manual_seed(seed)).tolist()
    worst = 0.0
    with torch.no_grad():
        for i in idx:
            numeric = torch.tensor(_difference(f, probe, i, h), dtype=analytic.dtype)
            worst = max(worst, float(relative_error(analytic[i].cpu(), numeric)))
    return worst
