"""Models: the bias trick, the visual viewpoint, the hand-written sigmoid, the sigmoid MLP, the
lecture's sanity checks."""

import math

import pytest
import torch
from torch.autograd import gradcheck, gradgradcheck

import lintorch
from lintorch.models import SigmoidFunction


def test_linear_classifier_is_wx_plus_b():
    model = lintorch.LinearClassifier(12, 3).double()
    torch.nn.init.normal_(model.bias)
    x = torch.randn(5, 12, dtype=torch.float64)
    torch.testing.assert_close(model(x), x @ model.weight.T + model.bias)
    torch.testing.assert_close(model(x), torch.nn.functional.linear(x, model.weight, model.bias))
    assert model.weight.shape == (3, 12) and model.bias.shape == (3,)


def test_images_are_flattened():
    model = lintorch.LinearClassifier(3 * 4 * 4, 10)
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(model(x), model(x.reshape(2, -1)))


def test_bias_trick_is_one_matrix_multiplication():
    model = lintorch.LinearClassifier(4, 3).double()  # the lecture's 4 pixels, 3 classes
    torch.nn.init.normal_(model.bias)
    x = torch.randn(6, 4, dtype=torch.float64)
    W_b = model.as_single_matrix()
    assert W_b.shape == (3, 5)
    torch.testing.assert_close(lintorch.append_ones(x) @ W_b.T, model(x))
    assert lintorch.append_ones(x)[:, -1].eq(1).all()


def test_without_bias():
    model = lintorch.LinearClassifier(4, 3, bias=False)
    assert model.bias is None
    x = torch.randn(2, 4)
    torch.testing.assert_close(model(x), x @ model.weight.T)
    assert model.as_single_matrix()[:, -1].eq(0).all()


def test_templates_are_rows_of_w_rescaled_to_unit_range():
    model = lintorch.LinearClassifier(3 * 32 * 32, 10)
    t = model.templates((3, 32, 32))
    assert t.shape == (10, 3, 32, 32)
    assert t.amin(dim=(1, 2, 3)).eq(0).all() and t.amax(dim=(1, 2, 3)).eq(1).all()
    w = model.weight.detach()[4]
    torch.testing.assert_close(t[4].flatten(), (w - w.min()) / (w.max() - w.min()))
    with pytest.raises(ValueError):
        model.templates((1, 28, 28))


def test_constant_template_is_mid_grey():
    model = lintorch.LinearClassifier(4, 2)
    with torch.no_grad():
        model.weight[0] = 3.0
        model.weight[1] = torch.tensor([0.0, 2.0, 4.0, -4.0])
    t = model.templates((1, 2, 2)).reshape(2, 4)
    torch.testing.assert_close(t, torch.tensor([[0.5] * 4, [0.5, 0.75, 1.0, 0.0]]))


def test_wrong_feature_count_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 10 features"):
        lintorch.LinearClassifier(10, 3)(torch.zeros(2, 11))


# --- the sigmoid, against torch.sigmoid in float64 ---------------------------------------------

# Out to where 1 / (1 + e^{-x}) would overflow (x < -709) and sigma rounds to 0 or 1.
BIG = torch.tensor([-800.0, -700.0, -40.0, -5.0, 0.0, 5.0, 40.0, 700.0, 800.0],
                   dtype=torch.float64)


def value_and_grad(f, x):
    x = x.clone().requires_grad_()
    y = f(x)
    (g,) = torch.autograd.grad(y.sum(), x)
    return y.detach(), g


def test_sigmoid_and_its_gradient_equal_torch_sigmoid():
    x = 6 * torch.randn(40, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for got, want in zip(value_and_grad(lintorch.sigmoid, x), value_and_grad(torch.sigmoid, x)):
        torch.testing.assert_close(got, want, rtol=1e-14, atol=0)


def test_sigmoid_is_stable_for_large_x():
    got, want = value_and_grad(lintorch.sigmoid, BIG), value_and_grad(torch.sigmoid, BIG)
    for g, w in zip(got, want):
        assert g.isfinite().all()
        torch.testing.assert_close(g, w, rtol=1e-14, atol=0)
    value, grad = got
    assert value[0] == 0 and value[-1] == 1 and grad[0] == 0 and grad[-1] == 0


def test_sigmoid_tail_is_e_to_the_x_to_full_precision():
    # For x << 0, sigma(x) = e^x / (1 + e^x) = e^x in float64, and sigma'(x) too: an independent
    # reference, reaching past -709 where torch.sigmoid's 1 / (1 + e^{-x}) has underflowed to 0.
    x = torch.tensor([-40.0, -100.0, -700.0, -720.0], dtype=torch.float64)
    value, grad = value_and_grad(lintorch.sigmoid, x)
    torch.testing.assert_close(value, x.exp(), rtol=1e-15, atol=0)
    torch.testing.assert_close(grad, x.exp(), rtol=1e-15, atol=0)


def test_sigmoid_gradcheck_and_gradgradcheck():
    x = 3 * torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x.requires_grad_()
    assert gradcheck(lintorch.sigmoid, (x,))
    assert gradgradcheck(lintorch.sigmoid, (x,))
    # sigma''(x) = sigma (1 - sigma) (1 - 2 sigma): second derivatives, by hand, at 0 and beyond
    x = torch.cat([BIG, torch.linspace(-6, 6, 13, dtype=torch.float64)]).requires_grad_()
    (g,) = torch.autograd.grad(lintorch.sigmoid(x).sum(), x, create_graph=True)
    (gg,) = torch.autograd.grad(g.sum(), x)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(gg, s * (1 - s) * (1 - 2 * s), rtol=1e-12, atol=1e-300)


def test_torch_func_grad_and_vmap_see_through_the_sigmoid():
    x = torch.randn(4, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s = torch.sigmoid(x)
    torch.testing.assert_close(torch.func.vmap(SigmoidFunction.apply)(x), s)
    per_row = torch.func.vmap(torch.func.grad(lambda r: lintorch.sigmoid(r).sum()))(x)
    torch.testing.assert_close(per_row, s * (1 - s))
    second = torch.func.grad(lambda r: torch.func.grad(lambda t: lintorch.sigmoid(t).sum())(r)
                             .sum())(x)
    torch.testing.assert_close(second, s * (1 - s) * (1 - 2 * s))


def test_sigmoid_in_float32_the_training_dtype_matches_torch_and_stays_finite():
    x = torch.cat([BIG, torch.linspace(-20, 20, 41, dtype=torch.float64)]).float()
    got, want = value_and_grad(lintorch.sigmoid, x), value_and_grad(torch.sigmoid, x)
    for g, w in zip(got, want):
        assert g.dtype == torch.float32 and g.isfinite().all()
        torch.testing.assert_close(g, w)


def test_sigmoid_rejects_what_is_not_a_floating_tensor():
    with pytest.raises(TypeError, match="floating-point"):
        lintorch.sigmoid(torch.arange(3))
    with pytest.raises(TypeError, match="torch.Tensor"):
        lintorch.sigmoid([0.0, 1.0])


# --- the sigmoid MLP ----------------------------------------------------------------------------


@pytest.mark.parametrize("hidden", [[], [7], [7, 5], [9, 8, 6]])
def test_sigmoid_mlp_is_nested_sigmoids(hidden):
    torch.manual_seed(0)
    mlp = lintorch.SigmoidMLP(6, hidden, 4).double()
    x = torch.randn(3, 6, dtype=torch.float64)
    h = x
    for layer in mlp.hidden:
        h = torch.sigmoid(h @ layer.weight.T + layer.bias)
    torch.testing.assert_close(mlp(x), h @ mlp.out.weight.T + mlp.out.bias)
    assert len(mlp.weights) == len(hidden) + 1


def test_sigmoid_mlp_runs_lintorchs_sigmoid_unless_given_torchs():
    torch.manual_seed(0)
    ours = lintorch.SigmoidMLP(6, [5, 4], 3).double()
    theirs = lintorch.SigmoidMLP(6, [5, 4], 3, sigmoid=torch.sigmoid).double()
    theirs.load_state_dict(ours.state_dict())
    assert ours.sigmoid is lintorch.sigmoid and "sigmoid=torch.sigmoid" in repr(theirs)
    x = torch.randn(8, 6, dtype=torch.float64)
    s = ours(x)
    assert "SigmoidFunctionBackward" in str(s.grad_fn.next_functions)  # the out layer's input
    s.square().sum().backward()
    theirs(x).square().sum().backward()
    for p, q in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-13, atol=1e-15)


def test_sigmoid_mlp_rejects_non_positive_sizes():
    with pytest.raises(ValueError, match="positive"):
        lintorch.SigmoidMLP(6, [5, 0], 3)


@pytest.mark.parametrize("make", [
    lambda: lintorch.LinearClassifier(3072, 10),
    lambda: lintorch.SigmoidMLP(3072, [100], 10),
    lambda: lintorch.SigmoidMLP(3072, [100, 50, 20], 10),
])
def test_fresh_model_passes_the_lectures_sanity_checks(make):
    torch.manual_seed(0)
    model = make()
    x = torch.randn(256, 3072)  # standardized-image scale
    y = torch.randint(10, (256,))
    with torch.no_grad():
        s = model(x)
    assert lintorch.svm_loss(s, y).item() == pytest.approx(10 - 1, abs=0.05)
    assert lintorch.cross_entropy(s, y).item() == pytest.approx(math.log(10), abs=0.01)


def test_initialisation_is_seedable():
    torch.manual_seed(3)
    a = lintorch.SigmoidMLP(5, [4], 3)
    torch.manual_seed(3)
    b = lintorch.SigmoidMLP(5, [4], 3)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
