"""Numerical gradients and the gradient check, as the lecture does them by hand."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def numerical_gradient(f: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-5,
                       method: str = "central") -> Tensor:
    """``df/dx`` by finite differences, one coordinate at a time.

    ``method="forward"``: ``(f(x + h) - f(x)) / h``, the lecture's walk-through;
    ``method="central"``: ``(f(x + h) - f(x - h)) / 2h``, error O(h^2) instead of O(h).
    Each coordinate of ``x`` is perturbed in place and restored, so ``f`` may close over ``x``.
    """
    if method not in ("central", "forward"):
        raise ValueError(f"method must be 'central' or 'forward', got {method!r}")
    grad = torch.zeros_like(x)
    flat, g = x.data.view(-1), grad.view(-1)
    with torch.no_grad():
        fx = float(f(x)) if method == "forward" else None
        for i in range(flat.numel()):
            old = flat[i].item()
            flat[i] = old + h
            f_plus = float(f(x))
            if method == "forward":
                g[i] = (f_plus - fx) / h
            else:
                flat[i] = old - h
                g[i] = (f_plus - float(f(x))) / (2 * h)
            flat[i] = old
    return grad


def relative_error(a: Tensor, n: Tensor) -> Tensor:
    """``|a - n| / max(|a| + |n|, 1e-12)``, elementwise."""
    return (a - n).abs() / (a.abs() + n.abs()).clamp(min=1e-12)


def grad_check(f: Callable[[Tensor], Tensor], x: Tensor, num_checks: int | None = None,
               h: float = 1e-5, seed: int = 0) -> float:
    """The largest relative error between autograd's gradient of ``f`` at ``x`` and the
    numerical one, over every coordinate or over ``num_checks`` random ones (for a large W).
    """
    x_req = x.detach().clone().requires_grad_(True)
    (analytic,) = torch.autograd.grad(f(x_req), x_req)
    analytic = analytic.reshape(-1)
    probe = x.detach().clone()
    flat = probe.view(-1)
    if num_checks is None:
        idx = torch.arange(flat.numel())
    else:
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randint(flat.numel(), (num_checks,), generator=gen)
    worst = 0.0
    with torch.no_grad():
        for i in idx.tolist():
            old = flat[i].item()
            flat[i] = old + h
            f_plus = float(f(probe))
            flat[i] = old - h
            f_minus = float(f(probe))
            flat[i] = old
            numeric = torch.tensor((f_plus - f_minus) / (2 * h), dtype=analytic.dtype)
            err = float(relative_error(analytic[i].cpu(), numeric))
            worst = max(worst, err)
    return worst
