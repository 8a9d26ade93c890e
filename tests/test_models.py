"""Models: the bias trick, the visual viewpoint, the sigmoid MLP, the lecture's sanity checks."""

import math

import pytest
import torch

import lintorch


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
