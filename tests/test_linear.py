"""The linear map S = X W^T + b with its derivatives written by hand (models.LinearFunction):
against torch's own linear map, gradcheck, torch.func, and the graph of a training step."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

from lintorch import data, train
from lintorch.models import linear


def problem(n: int = 7, d: int = 5, c: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, w, b = (torch.randn(*shape, generator=g, dtype=torch.float64)
               for shape in ((n, d), (c, d), (c,)))
    return x.requires_grad_(), w.requires_grad_(), b.requires_grad_()


@pytest.mark.parametrize("with_bias", [True, False])
def test_values_and_gradients_equal_torch_linear(with_bias):
    x, w, b = problem()
    b = b if with_bias else None
    inputs = [t for t in (x, w, b) if t is not None]
    upstream = torch.randn(7, 4, dtype=torch.float64)
    ours, theirs = linear(x, w, b), F.linear(x, w, b)
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=1e-14)
    for g, h in zip(torch.autograd.grad(ours, inputs, upstream),
                    torch.autograd.grad(theirs, inputs, upstream)):
        torch.testing.assert_close(g, h, rtol=1e-14, atol=1e-14)
    assert type(ours.grad_fn).__name__ == "LinearFunctionBackward"


@pytest.mark.parametrize("with_bias", [True, False])
def test_gradcheck_and_gradgradcheck(with_bias):
    x, w, b = problem()
    inputs = (x, w, b) if with_bias else (x, w)
    assert gradcheck(linear, inputs)
    assert gradgradcheck(linear, inputs)


def test_the_backward_is_the_three_rules_of_the_derivation():
    x, w, b = problem()
    G = torch.randn(7, 4, dtype=torch.float64)  # dL/dS
    dx, dw, db = torch.autograd.grad(linear(x, w, b), (x, w, b), G)
    assert torch.equal(dw, G.T @ x) and torch.equal(dx, G @ w)
    torch.testing.assert_close(db, G.sum(0), rtol=1e-15, atol=1e-15)  # computed as 1^T G


def test_torch_func_grad_and_vmap_see_through_it():
    x, w, b = (t.detach() for t in problem())

    def loss(fn, w, b):
        return fn(x, w, b).sin().sum()

    for argnum in (0, 1):
        ours = torch.func.grad(lambda w, b: loss(linear, w, b), argnums=argnum)(w, b)
        theirs = torch.func.grad(lambda w, b: loss(F.linear, w, b), argnums=argnum)(w, b)
        torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=1e-14)
    W, B = torch.randn(3, 4, 5, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    stacked = torch.func.vmap(linear, in_dims=(None, 0, 0))(x, W, B)  # K models, one data set
    torch.testing.assert_close(stacked, torch.stack([F.linear(x, W[k], B[k]) for k in range(3)]))
    X = torch.randn(2, 7, 5, dtype=torch.float64)  # one model, two batches
    torch.testing.assert_close(torch.func.vmap(linear, in_dims=(0, None, None))(X, w, b),
                               F.linear(X, w, b))
    per_model = torch.func.vmap(torch.func.grad(lambda w, b: loss(linear, w, b)))(W, B)
    torch.testing.assert_close(per_model, torch.func.vmap(
        torch.func.grad(lambda w, b: loss(F.linear, w, b)))(W, B))


@pytest.mark.parametrize("args, error, message", [
    ((torch.zeros(5), torch.zeros(4, 5)), ValueError, r"x of shape \(N, D\).*got x \(5,\)"),
    ((torch.zeros(7, 6), torch.zeros(4, 5)), ValueError, r"got x \(7, 6\) and weight \(4, 5\)"),
    ((torch.zeros(7, 5), torch.zeros(4, 5), torch.zeros(5)), ValueError,
     r"bias of shape \(4,\).*got \(5,\)"),
    ((torch.zeros(7, 5, dtype=torch.int64), torch.zeros(4, 5)), TypeError,
     "x must be a floating-point torch.Tensor, got torch.int64"),
    ((torch.zeros(7, 5), [[0.0] * 5] * 4), TypeError, "weight must be .* got list"),
    ((torch.zeros(7, 5), torch.zeros(4, 5, dtype=torch.float64)), TypeError, "share one dtype"),
])
def test_bad_input_is_one_clear_error(args, error, message):
    with pytest.raises(error, match=message):
        linear(*args)


# The graph of a training step's objective L + lambda R: with --impl lintorch every backward
# node on it is lintorch's own; with --impl torch the built-ins' nodes are there.

TORCH_NODES = re.compile(r"(Mm|Mv|Bmm|Addmm|Addmv|Baddbmm|Matmul|Dot|Linear|T|Transpose|Permute"
                         r"|Sigmoid|Softmax|LogSoftmax|NllLoss|MultiMarginLoss)Backward\d*")


def tiny_data(n: int = 40) -> data.Prepared:
    g = torch.Generator().manual_seed(0)

    def split(n):
        return torch.randn(n, 1, 2, 3, generator=g, dtype=torch.float64), torch.arange(n) % 3

    (tx, ty), (vx, vy), (sx, sy) = split(n), split(9), split(9)
    return data.Prepared(classes=["a", "b", "c"], image_shape=(1, 2, 3), train_x=tx, train_y=ty,
                         val_x=vx, val_y=vy, test_x=sx, test_y=sy,
                         mean=torch.zeros(1, 1, 1, 1), std=torch.ones(1, 1, 1, 1))


def backward_nodes(t: torch.Tensor) -> list[str]:
    """The class names of every node of t's autograd graph, from t.grad_fn down."""
    names, seen, todo = [], set(), [t.grad_fn]
    while todo:
        fn = todo.pop()
        if fn is None or fn in seen:
            continue
        seen.add(fn)
        names.append(type(fn).__name__)
        todo.extend(f for f, _ in fn.next_functions)
    return names


def objective_graph(tmp_path, impl: str, model: str, loss: str) -> list[str]:
    """The nodes of L + lambda R for one mini-batch, built as train.train_step builds it."""
    cfg = train.TrainConfig(model=model, loss=loss, impl=impl, hidden=[4, 3], reg=1e-2,
                            dtype="float64", device="cpu", epochs=1, batch_size=8, quiet=True,
                            tensorboard=False, logdir=str(tmp_path / "runs"),
                            run_name=f"{impl}-{model}-{loss}")
    run = train.start(cfg, tiny_data())
    x, y = train.minibatch(run.data, torch.arange(8))
    L = run.loss(run.net(x), y)
    R = run.penalty()
    return backward_nodes(L + run.cfg.reg * R)


@pytest.mark.parametrize("model", ["linear", "mlp"])
@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_the_training_objective_has_no_torch_matmul_or_sigmoid_backward(tmp_path, model, loss):
    ours = objective_graph(tmp_path, "lintorch", model, loss)
    assert [n for n in ours if TORCH_NODES.fullmatch(n)] == []
    layers = 1 if model == "linear" else 3
    assert ours.count("LinearFunctionBackward") == layers
    assert ours.count("SigmoidFunctionBackward") == layers - 1
    theirs = objective_graph(tmp_path, "torch", model, loss)
    assert "AddmmBackward0" in theirs and "TBackward0" in theirs  # so the test can fail
    assert ("SigmoidBackward0" in theirs) == (model == "mlp")
