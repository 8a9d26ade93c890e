"""Gradient descent's update, written by hand like the losses.

``sgd_step`` is the step mini-batch SGD takes: ``W <- W - alpha dL/dW``, with momentum as a marked
extension of the lecture's rule. ``SGD`` applies it to a model's parameters behind
``torch.optim.SGD``'s interface; ``lintorch.train`` trains with it (``--impl torch`` with torch's),
and the sweep trains its stacked models with it, one learning rate each.

Then the lecture's two update rules, derived by hand: one step of gradient descent on the summed
squared error ``L(w) = sum_i (y_i - f(x_i))^2`` of a single unit, linear or sigmoid.

Least squares, ``f(x) = w^T x``. Write ``delta_i = y_i - w^T x_i``, so ``L = sum_i delta_i^2``.
Since ``d delta_i / d w_j = -x_ij``, ``dL/dw_j = -2 sum_i delta_i x_ij``, and the step
``w_j <- w_j - alpha dL/dw_j`` becomes

    w_j <- w_j + 2 alpha sum_i delta_i x_ij

The sigmoid unit, ``f(x) = sigma(w^T x)``. Now ``delta_i = y_i - sigma_i`` with
``sigma_i = sigma(w^T x_i)``, and the chain rule puts the sigmoid's own derivative
``sigma'(w^T x_i) = sigma_i (1 - sigma_i)`` into every term:

    w_j <- w_j + 2 alpha sum_i delta_i sigma_i (1 - sigma_i) x_ij

Each is the step ``torch.optim.SGD(lr=alpha)`` takes on that L (the tests check it, with torch's
built-ins and with lintorch's own losses). Both return the new w and leave the old one as it was.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import out_of_bounds
from .models import sigmoid


@torch.no_grad()
def sgd_step(W: Tensor, dW: Tensor, lr: float | Tensor, momentum: float = 0.0,
             v: Tensor | None = None) -> Tensor | None:
    """One step of gradient descent on ``W``, in place: ``W <- W - lr dW``, ``dW = dL/dW``.

    ``lr`` is a number, or a tensor that broadcasts against ``W`` (the sweep's one rate per
    model). Returns the velocity ``v`` to pass to the next step (None without momentum).

    Momentum, an extension of the lecture's rule: the step follows a running sum of gradients,
    ``v <- momentum v + dW`` (``v = dW`` at the first step), then ``W <- W - lr v``. This is
    ``torch.optim.SGD``'s form (no dampening), so both give the same weights.
    """
    if momentum:
        v = dW.clone() if v is None else v.mul_(momentum).add_(dW)
        dW = v
    W.sub_(lr * dW)
    return v


class SGD:
    """``torch.optim.SGD(params, lr, momentum)``'s interface and state (``param_groups``, a
    ``momentum_buffer`` per parameter, ``state_dict``), stepping with :func:`sgd_step`. ``lr``
    may also be a tensor (K,): one rate per model of parameters stacked along their first axis.

    Not a ``torch.optim.Optimizer``: making one imports ``torch._dynamo``, 1.5-2.8 s of the
    Fashion-MNIST linear default run's 7-8.5 s (2-core CPU, measured side by side)."""

    def __init__(self, params, lr: float, momentum: float = 0.0) -> None:
        self.param_groups = [{"params": list(params), "lr": lr, "momentum": momentum}]
        self.state: dict[Tensor, dict] = {}

    def zero_grad(self) -> None:
        for W in self.param_groups[0]["params"]:
            W.grad = None

    @torch.no_grad()
    def step(self) -> None:
        group = self.param_groups[0]
        for W in group["params"]:
            if W.grad is not None:
                lr = group["lr"]
                if isinstance(lr, Tensor) and lr.dim() == 1:  # the sweep's rate for each model
                    lr = lr.view(-1, *[1] * (W.dim() - 1))  # of a stacked W (K, ...)
                v = sgd_step(W, W.grad, lr, group["momentum"],
                             self.state.get(W, {}).get("momentum_buffer"))
                if v is not None:
                    self.state[W] = {"momentum_buffer": v}

    def state_dict(self) -> dict:
        """torch's layout: parameters by their index."""
        group = self.param_groups[0]
        params = group["params"]
        return {"state": {i: dict(self.state[W]) for i, W in enumerate(params) if W in self.state},
                "param_groups": [{"lr": group["lr"], "momentum": group["momentum"],
                                  "params": list(range(len(params)))}]}

    def load_state_dict(self, saved: dict) -> None:
        params = self.param_groups[0]["params"]
        (group,) = saved["param_groups"]  # ValueError unless there is just one
        if group["params"] != list(range(len(params))):
            raise ValueError(f"the saved state is of {len(group['params'])} parameters, the "
                             f"model has {len(params)}")
        self.state = {params[i]: dict(state) for i, state in saved["state"].items()}
        self.param_groups[0].update(lr=group["lr"], momentum=group["momentum"])


def _check(w: Tensor, X: Tensor, y: Tensor, alpha: float) -> None:
    for name, t in (("w", w), ("X", X), ("y", y)):
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a floating-point torch.Tensor")
    if not w.dtype == X.dtype == y.dtype:
        raise TypeError(f"w, X and y must share one dtype, got {w.dtype}, {X.dtype}, {y.dtype}")
    if not (w.dim() == 1 and X.dim() == 2 and y.dim() == 1
            and X.shape == (y.shape[0], w.shape[0])):
        raise ValueError(f"expected w of shape (D,), X (N, D) and y (N,), got w "
                         f"{tuple(w.shape)}, X {tuple(X.shape)} and y {tuple(y.shape)}")
    if problem := out_of_bounds(alpha, "positive"):
        raise ValueError(f"alpha must be {problem}, got {alpha!r}")


def least_squares_step(w: Tensor, X: Tensor, y: Tensor, alpha: float) -> Tensor:
    """One step on ``L(w) = sum_i (y_i - w^T x_i)^2``: ``w_j + 2 alpha sum_i delta_i x_ij``."""
    _check(w, X, y, alpha)
    delta = y - X @ w
    return w + 2 * alpha * (delta[:, None] * X).sum(0)


def sigmoid_unit_step(w: Tensor, X: Tensor, y: Tensor, alpha: float) -> Tensor:
    """One step on ``L(w) = sum_i (y_i - sigma(w^T x_i))^2``:
    ``w_j + 2 alpha sum_i delta_i sigma_i (1 - sigma_i) x_ij``."""
    _check(w, X, y, alpha)
    s = sigmoid(X @ w)  # sigma_i
    delta = y - s
    return w + 2 * alpha * ((delta * s * (1 - s))[:, None] * X).sum(0)
