"""Numerical gradients and the gradient check (the update rules: tests/test_update_rules.py)."""

import time

import pytest
import torch

import lintorch


def test_forward_difference_is_the_lectures_formula():
    # The lecture: loss 1.25347, W[0] + 0.0001 gives 1.25322, so dW[0] = -2.5.
    x = torch.tensor([0.34, -1.11, 0.78], dtype=torch.float64)
    slopes = torch.tensor([-2.5, 0.6, 0.0], dtype=torch.float64)

    def f(w):
        return 1.25347 + (slopes * (w - torch.tensor([0.34, -1.11, 0.78],
                                                      dtype=torch.float64))).sum()

    g = lintorch.numerical_gradient(f, x, h=1e-4, method="forward")
    torch.testing.assert_close(g, slopes)
    assert x.tolist() == [0.34, -1.11, 0.78]  # every coordinate restored


def test_central_difference_is_more_accurate_than_forward():
    x = torch.tensor([0.3, -0.7, 1.1], dtype=torch.float64)
    f = lambda w: (w.sin() * w.exp()).sum()  # noqa: E731
    exact = x.cos() * x.exp() + x.sin() * x.exp()
    central = lintorch.numerical_gradient(f, x, h=1e-4)
    forward = lintorch.numerical_gradient(f, x, h=1e-4, method="forward")
    assert (central - exact).abs().max() < 1e-8
    assert (forward - exact).abs().max() > 10 * (central - exact).abs().max()


def test_numerical_gradient_agrees_with_autograd_on_the_losses():
    g = torch.Generator().manual_seed(0)
    X = torch.randn(20, 8, generator=g, dtype=torch.float64)
    y = torch.randint(4, (20,), generator=g)
    W = torch.randn(4, 8, generator=g, dtype=torch.float64) * 0.1
    f = lambda W: lintorch.cross_entropy(X @ W.T, y) + 0.1 * lintorch.l2_penalty(W)  # noqa: E731
    Wr = W.clone().requires_grad_()
    f(Wr).backward()
    torch.testing.assert_close(lintorch.numerical_gradient(f, W), Wr.grad, rtol=1e-6, atol=1e-8)


def test_grad_check_is_tiny_for_correct_gradients_and_large_for_wrong_ones():
    g = torch.Generator().manual_seed(1)
    X = torch.randn(30, 10, generator=g, dtype=torch.float64)
    y = torch.randint(5, (30,), generator=g)
    W = torch.randn(5, 10, generator=g, dtype=torch.float64)
    assert lintorch.grad_check(lambda W: lintorch.cross_entropy(X @ W.T, y), W) < 1e-7
    assert lintorch.grad_check(lambda W: lintorch.svm_loss(X @ W.T, y), W, num_checks=20) < 1e-7

    class WrongGrad(torch.autograd.Function):  # d/dw w^2 claimed to be w: off by a factor 2
        @staticmethod
        def forward(ctx, w):
            ctx.save_for_backward(w)
            return (w * w).sum()

        @staticmethod
        def backward(ctx, grad):
            (w,) = ctx.saved_tensors
            return w * grad

    assert lintorch.grad_check(WrongGrad.apply, W) > 0.3


def test_grad_check_samples_num_checks_coordinates_reproducibly():
    W = torch.randn(10, 3073, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = lambda W: lintorch.l2_penalty(W)  # noqa: E731
    a = lintorch.grad_check(f, W, num_checks=10, seed=3)
    b = lintorch.grad_check(f, W, num_checks=10, seed=3)
    assert a == b < 1e-6


def softmax_objective(C: int = 5, D: int = 10, N: int = 30, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(C, (N,), generator=g)
    W = torch.randn(C, D, generator=g, dtype=torch.float64) * 0.1
    return (lambda W: torch.nn.functional.cross_entropy(X @ W.T, y)), W


def test_a_given_gradient_is_checked_and_one_wrong_entry_is_caught_where_sampled():
    f, W = softmax_objective()
    Wr = W.clone().requires_grad_()
    f(Wr).backward()
    dW = Wr.grad.numpy().copy()  # a gradient derived elsewhere: a student's numpy dW
    assert lintorch.grad_check(f, W, dW) < 1e-7
    sampled = lintorch.check_entries(f, W, dW, num_checks=6, seed=4)
    wrong = sampled[2].index
    dW[wrong] *= 1.5
    entries = lintorch.check_entries(f, W, dW, num_checks=6, seed=4)
    assert [e.index for e in entries] == [e.index for e in sampled]  # the same seeded draw
    for e in entries:
        assert e.analytic == pytest.approx(dW[e.index])
        assert e.numeric == pytest.approx(float(Wr.grad[e.index]), rel=1e-7)
        assert (e.relative_error > 0.1) == (e.index == wrong)
    assert lintorch.grad_check(f, W, dW, num_checks=6, seed=4) > 0.1
    missed = next(s for s in range(100) if wrong not in
                  [e.index for e in lintorch.check_entries(f, W, dW, num_checks=6, seed=s)])
    assert lintorch.grad_check(f, W, dW, num_checks=6, seed=missed) < 1e-7


def test_sampled_numerical_gradient_is_the_full_one_at_its_entries():
    f, W = softmax_objective()
    full = lintorch.numerical_gradient(f, W)
    sampled = lintorch.numerical_gradient(f, W, num_checks=7, seed=2)
    done = ~sampled.isnan()
    assert int(done.sum()) == 7
    assert torch.equal(sampled[done], full[done])
    entries = lintorch.check_entries(f, W, num_checks=7, seed=2)
    assert sorted(e.index for e in entries) == sorted(map(tuple, done.nonzero().tolist()))


def test_sampled_check_of_a_cifar_sized_weight_takes_well_under_a_second():
    f, W = softmax_objective(C=10, D=3073, N=50)
    t0 = time.perf_counter()
    entries = lintorch.check_entries(f, W, num_checks=20)
    assert time.perf_counter() - t0 < 0.5
    assert len({e.index for e in entries}) == 20
    assert max(e.relative_error for e in entries) < 1e-6


def test_bad_input_is_one_clear_value_error():
    f, W = softmax_objective()
    with pytest.raises(ValueError, match=r"analytic must have x's shape \(5, 10\), got \(10, 5\)"):
        lintorch.grad_check(f, W, torch.zeros(10, 5))
    for bad in (lambda: lintorch.grad_check(f, W, num_checks=0),
                lambda: lintorch.numerical_gradient(f, W, num_checks=-1)):
        with pytest.raises(ValueError, match="num_checks must be a positive number"):
            bad()


def test_bad_method():
    with pytest.raises(ValueError, match="central"):
        lintorch.numerical_gradient(lambda w: w.sum(), torch.zeros(2), method="backward")
