"""K stacked linear models (lintorch.stacked), as the sweep trains them: their batched forms
give the hand-written Functions' gradients to the bit."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lintorch import losses, stacked
from lintorch.models import linear


@pytest.mark.parametrize("with_bias", [True, False])
def test_stacked_scores_backward_is_each_models_own_linear_backward_to_the_bit(with_bias):
    g = torch.Generator().manual_seed(0)
    K, C, D, N = 5, 4, 6, 30
    W = torch.randn(K, C, D, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, C, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(N, 2, 3, generator=g, dtype=torch.float64)
    G = torch.randn(N, K, C, generator=g, dtype=torch.float64)  # dL/ds of every model
    s = stacked.scores(W, x, b if with_bias else None)
    assert type(s.grad_fn.next_functions[0][0]).__name__ == "LinearFunctionBackward"
    params = (W, b) if with_bias else (W,)
    grads = torch.autograd.grad(s, params, G)
    # Bit for bit at this size. At CIFAR-10's (N = 256, D = 3072, 12 models) MKL's GEMM sums
    # some of the 120 rows' products in another order than of 10 rows: dW then differs from
    # the K separate calls in ~16% of its entries, by at most ~4e-16 of its largest.
    for k in range(K):  # K separate calls of linear, one per model, each given its own dL/ds
        W_k, b_k = W[k].detach().requires_grad_(), b[k].detach().requires_grad_()
        s_k = linear(x.flatten(1), W_k, b_k if with_bias else None)
        torch.testing.assert_close(s[:, k], s_k, rtol=1e-13, atol=1e-14)  # GEMMs round apart
        s_k.backward(G[:, k])
        assert torch.equal(grads[0][k], W_k.grad), k
        if with_bias:
            assert torch.equal(grads[1][k], b_k.grad), k


@pytest.mark.parametrize("loss", ["softmax", "svm"])
def test_stacked_models_train_on_their_own_losses_gradients(loss):
    g = torch.Generator().manual_seed(1)
    K, C, D, N = 4, 3, 5, 20
    W = torch.randn(K, C, D, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(K, C, generator=g, dtype=torch.float64, requires_grad=True)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = torch.randint(C, (N,), generator=g)
    per_example = losses.loss_fn(loss, "lintorch", "none")
    L = stacked.data_losses(per_example, stacked.scores(W, x, b), y)
    dW, db = torch.autograd.grad(L.sum(), (W, b))
    for k in range(K):
        W_k, b_k = W[k].detach().requires_grad_(), b[k].detach().requires_grad_()
        per_example(linear(x, W_k, b_k), y).mean().backward()
        # equal up to the rounding of the scores, which one GEMM of K*C columns and K GEMMs
        # of C columns may sum in different orders
        torch.testing.assert_close(dW[k], W_k.grad, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(db[k], b_k.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reg_type", ["l2", "l1"])
def test_stacked_penalties_give_the_penalty_functions_gradients_to_the_bit(reg_type):
    W = torch.randn(5, 3, 7, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        W[1, 2, 3] = 0  # L1's subgradient at 0
    lam = torch.rand(5, dtype=torch.float64)  # each model's own lambda
    (grad,) = torch.autograd.grad((lam * losses.STACKED_PENALTIES[reg_type](W)).sum(), W)
    for k in range(5):
        W_k = W[k].detach().clone().requires_grad_()
        (lam[k] * losses.PENALTIES[reg_type](W_k)).backward()
        assert torch.equal(grad[k], W_k.grad), k


def test_stacked_linear_scores_each_model_as_f_linear_and_keeps_the_models_selected():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64)
    x = torch.randn(7, 1, 5, generator=g, dtype=torch.float64)  # flattened, as a model's input
    model = stacked.StackedLinear(W.clone(), b.clone())
    s = model(x)
    assert s.shape == (7, 4, 3)
    for k in range(4):
        torch.testing.assert_close(s[:, k], F.linear(x.flatten(1), W[k], b[k]), rtol=1e-14, atol=0)
    model.select(torch.tensor([3, 1]))
    assert torch.equal(model.weight, W[[3, 1]]) and torch.equal(model.bias, b[[3, 1]])
    assert [p.shape for p in model.parameters()] == [(2, 3, 5), (2, 3)]
