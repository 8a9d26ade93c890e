"""Numerical gradients and the gradient check, as the lecture does them by hand.

The lecture's advice: derive the analytic gradient, then check it against the numerical one.
``check_entries`` does that for any analytic gradient (autograd's by default, or one derived
elsewhere, such as a student's numpy dW), at every entry or, for a large W, at ``num_checks``
entries drawn at random with ``seed``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor


class GradEntry(NamedTuple):
    """One checked entry: its index in x, both gradients there, and their relative error."""

    index: tuple[int, ...]
    analytic: float
    numeric: float
    relative_error: float


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


def _entries(x: Tensor, num_checks: int | None, seed: int) -> list[int]:
    """The flat indices to check: all of them, or ``num_checks`` distinct ones drawn with seed."""
    if num_checks is None:
        return list(range(x.numel()))
    if num_checks < 1:
        raise ValueError(f"num_checks must be a positive number of entries (or None for every "
                         f"entry), got {num_checks}")
    draw = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(seed))
    return draw[:num_checks].tolist()


def numerical_gradient(f: Callable[[Tensor], Tensor], x: Tensor, h: float = 1e-5,
                       method: str = "central", num_checks: int | None = None,
                       seed: int = 0) -> Tensor:
    """``df/dx`` by finite differences, one coordinate at a time: ``method="forward"`` is
    ``(f(x + h) - f(x)) / h``, the lecture's walk-through; ``method="central"`` is
    ``(f(x + h) - f(x - h)) / 2h``, error O(h^2) instead of O(h). Each coordinate of ``x`` is
    perturbed in place and restored, so ``f`` may close over ``x``.

    With ``num_checks=k`` only k random entries (``check_entries``'s, for the same seed) are
    computed; the others are NaN."""
    if method not in ("central", "forward"):
        raise ValueError(f"method must be 'central' or 'forward', got {method!r}")
    entries = _entries(x, num_checks, seed)
    grad = torch.zeros_like(x) if num_checks is None else torch.full_like(x, float("nan"))
    with torch.no_grad():
        fx = float(f(x)) if method == "forward" else None
        for i in entries:
            grad.view(-1)[i] = _difference(f, x, i, h, fx)
    return grad


def relative_error(a: Tensor, n: Tensor) -> Tensor:
    """``|a - n| / max(|a| + |n|, 1e-12)``, elementwise."""
    return (a - n).abs() / (a.abs() + n.abs()).clamp(min=1e-12)


def check_entries(f: Callable[[Tensor], Tensor], x: Tensor, analytic=None,
                  num_checks: int | None = None, h: float = 1e-5,
                  seed: int = 0) -> list[GradEntry]:
    """The analytic gradient of ``f`` at ``x`` beside the centred numerical one, entry by entry.

    ``analytic`` is a gradient of x's shape (a tensor, or anything ``torch.as_tensor`` takes,
    such as a numpy array); None means autograd's. ``num_checks=k`` checks k distinct entries
    drawn at random with ``seed``, as for a large W; None checks every entry."""
    if analytic is None:
        x_req = x.detach().clone().requires_grad_(True)
        (analytic,) = torch.autograd.grad(f(x_req), x_req)
    analytic = torch.as_tensor(analytic)
    if analytic.shape != x.shape:
        raise ValueError(f"analytic must have x's shape {tuple(x.shape)}, got "
                         f"{tuple(analytic.shape)}")
    entries, probe = _entries(x, num_checks, seed), x.detach().clone()
    flat = analytic.detach().reshape(-1).cpu().double()
    checked = []
    with torch.no_grad():
        for i in entries:
            a, n = float(flat[i]), _difference(f, probe, i, h)
            index = tuple(int(j) for j in torch.unravel_index(torch.tensor(i), x.shape))
            checked.append(GradEntry(index, a, n, abs(a - n) / max(abs(a) + abs(n), 1e-12)))
    return checked


def grad_check(f: Callable[[Tensor], Tensor], x: Tensor, analytic=None,
               num_checks: int | None = None, h: float = 1e-5, seed: int = 0) -> float:
    """The largest relative error of :func:`check_entries`: below ~1e-7 in float64 for a correct
    gradient of a smooth ``f``."""
    return max((e.relative_error for e in check_entries(f, x, analytic, num_checks, h, seed)),
               default=0.0)
