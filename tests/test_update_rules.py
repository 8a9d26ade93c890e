"""The lecture's hand-derived update rules against an autograd SGD step on the same data."""

import pytest
import torch
import torch.nn.functional as F

import lintorch
from lintorch.update_rules import least_squares_step, sigmoid_unit_step


def _data(seed=0, n=16, d=5):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = torch.rand(n, generator=g, dtype=torch.float64)
    w = torch.randn(d, generator=g, dtype=torch.float64) * 0.3
    return X, y, w


def _sgd_step(loss_fn, w, alpha):
    """The independent reference: autograd's gradient of L, one step of torch.optim.SGD."""
    w = w.clone().requires_grad_()
    opt = torch.optim.SGD([w], lr=alpha)
    loss_fn(w).backward()
    opt.step()
    return w.detach()


# L = sum_i (y_i - f(x_i))^2, from torch's built-ins and from lintorch's own Functions
LEAST_SQUARES = {
    "torch": lambda X, y: lambda w: F.mse_loss(X @ w, y, reduction="sum"),
    "lintorch": lambda X, y: lambda w: lintorch.mse_loss(X @ w, y, reduction="sum"),
}
SIGMOID_UNIT = {
    "torch": lambda X, y: lambda w: F.mse_loss(torch.sigmoid(X @ w), y, reduction="sum"),
    "lintorch": lambda X, y: lambda w: lintorch.mse_loss(lintorch.sigmoid(X @ w), y,
                                                         reduction="sum"),
}


@pytest.mark.parametrize("impl", LEAST_SQUARES)
def test_least_squares_step_is_one_sgd_step(impl):
    X, y, w = _data()
    w0 = w.clone()
    by_hand = least_squares_step(w, X, y, alpha=0.01)
    torch.testing.assert_close(by_hand, _sgd_step(LEAST_SQUARES[impl](X, y), w, 0.01))
    assert torch.equal(w, w0)  # a new w; the old one is left as it was


@pytest.mark.parametrize("impl", SIGMOID_UNIT)
def test_sigmoid_unit_step_is_one_sgd_step(impl):
    X, y, w = _data(1)
    by_hand = sigmoid_unit_step(w, X, y, alpha=0.05)
    torch.testing.assert_close(by_hand, _sgd_step(SIGMOID_UNIT[impl](X, y), w, 0.05))


def test_repeated_least_squares_steps_converge_to_lstsq():
    X, y, w = _data(2, n=50, d=4)
    # 2 X^T X is L's curvature: a step below 1 / its largest eigenvalue cannot overshoot.
    alpha = 0.4 / torch.linalg.matrix_norm(X, 2).item() ** 2
    for _ in range(500):
        w = least_squares_step(w, X, y, alpha)
    torch.testing.assert_close(w, torch.linalg.lstsq(X, y).solution, rtol=1e-10, atol=1e-12)


def test_repeated_sigmoid_unit_steps_recover_the_weights_that_made_the_data():
    X, _, _ = _data(3, n=200, d=3)
    w_true = torch.tensor([1.5, -2.0, 0.5], dtype=torch.float64)
    y = torch.sigmoid(X @ w_true)
    w = torch.zeros(3, dtype=torch.float64)
    for _ in range(3000):
        w = sigmoid_unit_step(w, X, y, alpha=0.02)
    torch.testing.assert_close(w, w_true, rtol=1e-6, atol=1e-6)


W, X, Y = torch.zeros(3), torch.zeros(4, 3), torch.zeros(4)


@pytest.mark.parametrize("step", [least_squares_step, sigmoid_unit_step])
@pytest.mark.parametrize("args,error,match", [
    ((W, X, Y, 0.0), ValueError, "alpha must be a finite number > 0, got 0.0"),
    ((W, X, Y, -0.1), ValueError, "alpha must be a finite number > 0"),
    ((W, X, Y, float("nan")), ValueError, "alpha must be a finite number > 0"),
    ((W, X, Y, True), ValueError, "alpha must be a finite number > 0"),
    ((W[:2], X, Y, 0.1), ValueError, r"expected w of shape \(D,\), X \(N, D\) and y \(N,\), "
                                     r"got w \(2,\), X \(4, 3\) and y \(4,\)"),
    ((W, X, Y[:3], 0.1), ValueError, "got w"),
    ((W, X.flatten(), Y, 0.1), ValueError, "got w"),
    ((W, X, Y[:, None], 0.1), ValueError, "got w"),
    ((W, X.long(), Y, 0.1), TypeError, "X must be a floating-point torch.Tensor"),
    ((W.tolist(), X, Y, 0.1), TypeError, "w must be a floating-point torch.Tensor"),
    ((W, X.double(), Y, 0.1), TypeError, "share one dtype"),
])
def test_bad_input_is_one_clear_error(step, args, error, match):
    with pytest.raises(error, match=match):
        step(*args)


# --- the SGD step of training, against torch.optim.SGD --------------------------------------


def _trained(optimizer_class, momentum: float, steps: int = 5, lrs=(0.1, 0.1, 0.05, 0.05, 0.02)):
    """A small model's parameters after ``steps`` steps of ``optimizer_class`` on fixed data,
    the learning rate changed between steps as a schedule does."""
    torch.manual_seed(0)  # the same initial weights for both optimizers
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Sigmoid(), torch.nn.Linear(5, 3))
    model.double()
    x, y = torch.randn(20, 6, dtype=torch.float64), torch.randint(3, (20,))
    opt = optimizer_class(model.parameters(), lr=lrs[0], momentum=momentum)
    for lr in lrs[:steps]:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return [p.detach() for p in model.parameters()], opt


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_lintorchs_sgd_gives_torchs_weights(momentum):
    from lintorch.update_rules import SGD

    mine, _ = _trained(SGD, momentum)
    torchs, _ = _trained(torch.optim.SGD, momentum)
    for a, b in zip(mine, torchs):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)


def test_lintorchs_sgd_keeps_torchs_state_so_checkpoints_are_alike():
    from lintorch.update_rules import SGD

    _, mine = _trained(SGD, 0.9)
    _, torchs = _trained(torch.optim.SGD, 0.9)
    a, b = mine.state_dict(), torchs.state_dict()
    assert a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        torch.testing.assert_close(a["state"][k]["momentum_buffer"],
                                   b["state"][k]["momentum_buffer"], rtol=1e-12, atol=0)


def test_sgd_step_takes_one_rate_per_model_of_a_stack():
    from lintorch.update_rules import sgd_step

    g = torch.Generator().manual_seed(0)
    W, dW = torch.randn(3, 4, 5, generator=g), torch.randn(3, 4, 5, generator=g)
    lr = torch.tensor([0.1, 0.01, 1.0])
    one_by_one = torch.stack([W[k] - lr[k] * dW[k] for k in range(3)])
    sgd_step(W, dW, lr.view(-1, 1, 1))
    torch.testing.assert_close(W, one_by_one, rtol=0, atol=0)


def test_lintorchs_sgd_with_one_rate_per_model_steps_each_as_torchs_sgd_would_alone():
    from lintorch.update_rules import SGD

    g = torch.Generator().manual_seed(0)
    W, b = torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.zeros(3, 4,
                                                                                dtype=torch.float64)
    grads = [(torch.randn(3, 4, 5, generator=g, dtype=torch.float64),
              torch.randn(3, 4, generator=g, dtype=torch.float64)) for _ in range(3)]
    lrs = [0.1, 0.01, 1.0]
    stack = [W.clone().requires_grad_(), b.clone().requires_grad_()]
    opt = SGD(stack, lr=torch.tensor(lrs, dtype=torch.float64), momentum=0.9)
    for dW, db in grads:
        stack[0].grad, stack[1].grad = dW.clone(), db.clone()
        opt.step()
    for k, lr in enumerate(lrs):  # model k alone, under torch's SGD
        alone = [W[k].clone().requires_grad_(), b[k].clone().requires_grad_()]
        reference = torch.optim.SGD(alone, lr=lr, momentum=0.9)
        for dW, db in grads:
            alone[0].grad, alone[1].grad = dW[k].clone(), db[k].clone()
            reference.step()
        torch.testing.assert_close(stack[0][k], alone[0], rtol=1e-14, atol=0)
        torch.testing.assert_close(stack[1][k], alone[1], rtol=1e-14, atol=0)


def test_lintorchs_sgd_does_not_import_torchs_compiler():
    # torch.optim.Optimizer imports torch._dynamo, seconds of a short run
    import subprocess
    import sys

    code = ("import sys, torch; from lintorch.update_rules import SGD; "
            "SGD([torch.zeros(1, requires_grad=True)], lr=0.1).state_dict(); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
