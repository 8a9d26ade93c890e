"""The hand-written losses against the lecture's numbers, gradcheck and torch's built-ins."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck, gradgradcheck

import lintorch
from lintorch import losses

# The lecture's table: columns are the cat, car and frog images, rows their class scores.
LECTURE_SCORES = torch.tensor(
    [[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]], dtype=torch.float64
)
LECTURE_LABELS = torch.tensor([0, 1, 2])
REDUCTIONS = ("none", "mean", "sum")


def random_problem(n, c, dtype=torch.float64, seed=0, scale=3.0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    s = (scale * torch.randn(n, c, generator=g, dtype=dtype)).to(device)
    y = torch.randint(c, (n,), generator=g).to(device)
    return s, y


def away_from_kinks(s, y, margin=1.0):
    """Nudge scores so no hinge margin sits within 0.05 of its kink at 0 (gradcheck needs it)."""
    m = s - s.gather(1, y[:, None]) + margin
    m.scatter_(1, y[:, None], 1.0)
    bump = torch.where(m.abs() < 0.05, torch.full_like(m, 0.2), torch.zeros_like(m))
    bump.scatter_(1, y[:, None], 0.0)
    return s + bump


def svm_builtin(s, y, margin=1.0, reduction="mean"):
    per_row = s.shape[1] * F.multi_margin_loss(s, y, margin=margin, reduction="none")
    return losses.reduce(per_row, reduction)


# --- the lecture's worked numbers -------------------------------------------------------------


def test_svm_matches_the_lecture_table():
    L = lintorch.svm_loss(LECTURE_SCORES, LECTURE_LABELS, reduction="none")
    torch.testing.assert_close(L, torch.tensor([2.9, 0.0, 12.9], dtype=torch.float64))
    assert round(lintorch.svm_loss(LECTURE_SCORES, LECTURE_LABELS).item(), 2) == 5.27


def test_softmax_matches_the_lecture_example():
    s = LECTURE_SCORES[:1]  # cat image: cat 3.2, car 5.1, frog -1.7
    assert [round(v, 1) for v in s.exp()[0].tolist()] == [24.5, 164.0, 0.2]
    p = lintorch.softmax(s)[0]
    assert [round(v, 2) for v in p.tolist()] == [0.13, 0.87, 0.00]
    L = lintorch.cross_entropy(s, LECTURE_LABELS[:1])
    assert round(L.item(), 2) == 2.04 == round(-math.log(p[0].item()), 2)


@pytest.mark.parametrize("c", [2, 3, 10, 1000])
def test_zero_scores_give_the_lectures_sanity_values(c):
    s = torch.zeros(7, c, dtype=torch.float64)
    y = torch.arange(7) % c
    assert lintorch.svm_loss(s, y).item() == pytest.approx(c - 1)
    assert lintorch.cross_entropy(s, y).item() == pytest.approx(math.log(c))


def test_summing_over_all_classes_adds_the_margin():
    s, y = LECTURE_SCORES, LECTURE_LABELS
    over_all = (s - s.gather(1, y[:, None]) + 1.0).clamp(min=0).sum(1)
    torch.testing.assert_close(over_all, lintorch.svm_loss(s, y, reduction="none") + 1.0)


@pytest.mark.parametrize("loss", ["svm", "ce"])
def test_sum_and_mean_differ_by_n(loss):
    s, y = random_problem(13, 5)
    fn = lintorch.svm_loss if loss == "svm" else lintorch.cross_entropy
    torch.testing.assert_close(fn(s, y, reduction="sum"), 13 * fn(s, y, reduction="mean"))


def test_losses_are_bounded_below_by_zero():
    s, y = random_problem(50, 10)
    assert (lintorch.svm_loss(s, y, reduction="none") >= 0).all()
    assert (lintorch.cross_entropy(s, y, reduction="none") >= 0).all()


# --- against torch's built-ins, float64 -------------------------------------------------------

SHAPES = [(1, 2), (1, 10), (2, 2), (64, 10), (17, 1000), (300, 3)]


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [1.0, 0.5])
def test_svm_equals_c_times_multi_margin_loss(n, c, reduction, margin):
    s, y = random_problem(n, c, seed=n * c)
    s = away_from_kinks(s, y, margin)
    a = s.clone().requires_grad_()
    b = s.clone().requires_grad_()
    La = lintorch.svm_loss(a, y, margin=margin, reduction=reduction)
    Lb = svm_builtin(b, y, margin, reduction)
    torch.testing.assert_close(La, Lb, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(La)
    La.backward(g)
    Lb.backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("n,c", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_equals_builtin(n, c, reduction):
    s, y = random_problem(n, c, seed=n + c)
    a = s.clone().requires_grad_()
    b = s.clone().requires_grad_()
    La = lintorch.cross_entropy(a, y, reduction=reduction)
    Lb = F.cross_entropy(b, y, reduction=reduction)
    torch.testing.assert_close(La, Lb, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(La)
    La.backward(g)
    Lb.backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(1,), (5, 3), (64, 10), (4, 3, 2)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_equals_builtin(shape, reduction):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.randn(shape, generator=g, dtype=torch.float64)
    xa, ta = x.clone().requires_grad_(), t.clone().requires_grad_()
    xb, tb = x.clone().requires_grad_(), t.clone().requires_grad_()
    La, Lb = lintorch.mse_loss(xa, ta, reduction), F.mse_loss(xb, tb, reduction=reduction)
    torch.testing.assert_close(La, Lb, rtol=1e-10, atol=1e-12)
    w = torch.randn_like(La)
    La.backward(w)
    Lb.backward(w)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(ta.grad, tb.grad, rtol=1e-10, atol=1e-12)


def test_softmax_equals_builtin():
    s, _ = random_problem(20, 7)
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    pa, pb = lintorch.softmax(a), torch.softmax(b, dim=1)
    torch.testing.assert_close(pa, pb, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(pa)
    pa.backward(g)
    pb.backward(g)
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("penalty,reference", [
    (lintorch.l2_penalty, lambda w: (w ** 2).sum()),
    (lintorch.l1_penalty, lambda w: w.abs().sum()),
])
def test_penalties_equal_their_formula(penalty, reference):
    w = torch.randn(10, 785, dtype=torch.float64)
    a, b = w.clone().requires_grad_(), w.clone().requires_grad_()
    torch.testing.assert_close(penalty(a), reference(b), rtol=1e-10, atol=1e-12)
    penalty(a).backward()
    reference(b).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


def test_l1_subgradient_is_zero_at_zero():
    w = torch.tensor([-2.0, 0.0, 3.0], dtype=torch.float64, requires_grad=True)
    lintorch.l1_penalty(w).backward()
    assert w.grad.tolist() == [-1.0, 0.0, 1.0]


@pytest.mark.parametrize("magnitude", [1e4, -1e4])
def test_huge_scores_stay_finite_and_match_builtin(magnitude):
    s, y = random_problem(32, 10, scale=1.0)
    s = s * magnitude
    a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
    La, Lb = lintorch.cross_entropy(a, y), F.cross_entropy(b, y)
    assert torch.isfinite(La)
    torch.testing.assert_close(La, Lb, rtol=1e-10, atol=1e-8)
    La.backward()
    Lb.backward()
    assert torch.isfinite(a.grad).all()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)
    p = lintorch.softmax(s)
    assert torch.isfinite(p).all()
    torch.testing.assert_close(p.sum(1), torch.ones(32, dtype=torch.float64))


def test_float32_matches_builtin_closely():
    s, y = random_problem(256, 10, dtype=torch.float32)
    torch.testing.assert_close(lintorch.cross_entropy(s, y), F.cross_entropy(s, y))


# --- gradcheck and gradgradcheck, float64 -----------------------------------------------------


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_svm_gradcheck(reduction):
    s, y = random_problem(6, 4, seed=3)
    s = away_from_kinks(s, y).requires_grad_()
    f = lambda s: lintorch.svm_loss(s, y, reduction=reduction)  # noqa: E731
    assert gradcheck(f, (s,))
    assert gradgradcheck(f, (s,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_gradcheck(reduction):
    s, y = random_problem(6, 4, seed=4)
    s.requires_grad_()
    f = lambda s: lintorch.cross_entropy(s, y, reduction=reduction)  # noqa: E731
    assert gradcheck(f, (s,))
    assert gradgradcheck(f, (s,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse_gradcheck(reduction):
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    f = lambda x, t: lintorch.mse_loss(x, t, reduction=reduction)  # noqa: E731
    assert gradcheck(f, (x, t))
    assert gradgradcheck(f, (x, t))


def test_cross_entropy_backward_reuses_the_forwards_probabilities():
    s, y = random_problem(50, 10, seed=6)
    s.requires_grad_()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        lintorch.cross_entropy(s, y).backward()
    assert [e.name for e in prof.events()].count("aten::exp") == 1  # the forward's e^{s_j}
    L, p = losses.CrossEntropyFunction.apply(s, y)
    torch.testing.assert_close(p, torch.softmax(s, 1), rtol=1e-14, atol=0)
    torch.testing.assert_close(s.grad, (p - F.one_hot(y, 10)) / 50, rtol=1e-14, atol=0)
    # both outputs: p's gradient is the softmax's, and the gradient's gradient flows through it
    small, y_small = s[:6, :4].detach().clone().requires_grad_(), y[:6] % 4
    f = lambda s: losses.CrossEntropyFunction.apply(s, y_small)  # noqa: E731
    assert gradcheck(f, (small,)) and gradgradcheck(f, (small,))


def test_softmax_gradcheck():
    s = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    assert gradcheck(lintorch.softmax, (s,))
    assert gradgradcheck(lintorch.softmax, (s,))


@pytest.mark.parametrize("penalty", [lintorch.l2_penalty, lintorch.l1_penalty])
def test_penalty_gradcheck(penalty):
    w = torch.randn(4, 6, dtype=torch.float64)
    w = (w + 0.1 * w.sign()).requires_grad_()  # keep |w| off its kink at 0
    assert gradcheck(penalty, (w,))
    assert gradgradcheck(penalty, (w,))


# --- torch.func ---------------------------------------------------------------------------------


def test_torch_func_grad_matches_builtin():
    s, y = random_problem(8, 5)
    s = away_from_kinks(s, y)
    for ours, ref in [
        (lambda s: lintorch.cross_entropy(s, y), lambda s: F.cross_entropy(s, y)),
        (lambda s: lintorch.svm_loss(s, y), lambda s: svm_builtin(s, y)),
        (lambda s: lintorch.l2_penalty(s), lambda s: (s ** 2).sum()),
        (lambda s: lintorch.mse_loss(s, s.detach().flip(0)),
         lambda s: F.mse_loss(s, s.detach().flip(0))),
    ]:
        torch.testing.assert_close(torch.func.grad(ours)(s), torch.func.grad(ref)(s))


def test_vmap_over_a_batch_of_problems():
    g = torch.Generator().manual_seed(5)
    s = torch.randn(4, 8, 5, generator=g, dtype=torch.float64)  # 4 problems of (N=8, C=5)
    y = torch.randint(5, (4, 8), generator=g)
    got = torch.func.vmap(lambda s, y: losses.CrossEntropyFunction.apply(s, y)[0].mean())(s, y)
    want = torch.stack([F.cross_entropy(s[k], y[k]) for k in range(4)])
    torch.testing.assert_close(got, want)
    got = torch.func.vmap(lambda s: lintorch.softmax(s))(s)
    torch.testing.assert_close(got, torch.softmax(s, dim=2))
    per_problem_grads = torch.func.vmap(torch.func.grad(
        lambda s, y: losses.SVMLossFunction.apply(s, y, 1.0).sum()))(s, y)
    want = torch.stack([torch.func.grad(svm_builtin)(s[k], y[k], reduction="sum")
                        for k in range(4)])
    torch.testing.assert_close(per_problem_grads, want)


# --- bad input --------------------------------------------------------------------------------

LOSS_FNS = [lintorch.svm_loss, lintorch.cross_entropy]


@pytest.mark.parametrize("fn", LOSS_FNS)
def test_scores_must_be_2d(fn):
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.zeros(5), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="2-D"):
        fn(torch.zeros(2, 3, 4), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("fn", LOSS_FNS)
def test_target_must_be_integer_labels(fn):
    with pytest.raises(TypeError, match="integer"):
        fn(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(ValueError, match="length 3"):
        fn(torch.zeros(3, 4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="1-D"):
        fn(torch.zeros(3, 4), torch.zeros(3, 1, dtype=torch.long))


@pytest.mark.parametrize("fn", LOSS_FNS)
@pytest.mark.parametrize("bad", [4, -1, 99])
def test_labels_outside_range_name_the_value_and_c(fn, bad):
    y = torch.tensor([0, bad, 1])
    with pytest.raises(ValueError, match=rf"label {bad}\b.*C=4"):
        fn(torch.zeros(3, 4), y)


@pytest.mark.parametrize("fn", LOSS_FNS)
def test_scores_must_be_floating(fn):
    with pytest.raises(TypeError, match="floating"):
        fn(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("fn", LOSS_FNS)
def test_unknown_reduction(fn):
    with pytest.raises(ValueError, match="reduction"):
        fn(torch.zeros(3, 4), torch.zeros(3, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="reduction"):
        lintorch.CrossEntropyLoss(reduction="avg")


def test_mse_refuses_to_broadcast():
    with pytest.raises(ValueError, match="same shape"):
        lintorch.mse_loss(torch.zeros(4, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="reduction"):
        lintorch.mse_loss(torch.zeros(4), torch.zeros(4), reduction="avg")


# --- modules ----------------------------------------------------------------------------------


def test_modules_follow_torch_conventions():
    s, y = random_problem(9, 4)
    assert lintorch.SVMLoss().reduction == "mean"
    torch.testing.assert_close(lintorch.SVMLoss(margin=2.0, reduction="sum")(s, y),
                               lintorch.svm_loss(s, y, margin=2.0, reduction="sum"))
    torch.testing.assert_close(lintorch.CrossEntropyLoss(reduction="none")(s, y),
                               torch.nn.CrossEntropyLoss(reduction="none")(s, y))
    x, t = torch.randn(3, 2, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(lintorch.MSELoss()(x, t), torch.nn.MSELoss()(x, t))
    assert "margin=2.0" in repr(lintorch.SVMLoss(margin=2.0))


# --- CUDA ---------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cuda_losses_match_builtins(reduction):
    s, y = random_problem(512, 10, device="cuda")
    s = away_from_kinks(s, y)
    for ours, ref in [(lintorch.cross_entropy, F.cross_entropy),
                      (lintorch.svm_loss, svm_builtin)]:
        a, b = s.clone().requires_grad_(), s.clone().requires_grad_()
        La, Lb = ours(a, y, reduction=reduction), ref(b, y, reduction=reduction)
        torch.testing.assert_close(La, Lb, rtol=1e-10, atol=1e-12)
        g = torch.randn_like(La)
        La.backward(g)
        Lb.backward(g)
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-12)


@pytest.mark.cuda
def test_cuda_gradcheck():
    s, y = random_problem(6, 4, seed=3, device="cuda")
    s = away_from_kinks(s, y).requires_grad_()
    assert gradcheck(lambda s: lintorch.svm_loss(s, y), (s,))
    assert gradcheck(lambda s: lintorch.cross_entropy(s, y), (s,))
    assert gradgradcheck(lambda s: lintorch.cross_entropy(s, y), (s,))


@pytest.mark.parametrize("function, builtin", [
    (lambda s, y: losses.SVMLossFunction.apply(s, y, 1.0),
     lambda s, y: svm_builtin(s, y, reduction="none")),
    (lambda s, y: losses.CrossEntropyFunction.apply(s, y)[0],  # (L, p): L
     lambda s, y: F.cross_entropy(s, y, reduction="none")),
])
def test_functions_give_the_per_example_losses_alone(function, builtin):
    s, y = random_problem(6, 4, seed=1)
    s = away_from_kinks(s, y).requires_grad_(True)
    L_i = function(s, y)
    assert isinstance(L_i, torch.Tensor) and L_i.shape == (6,)  # one L_i per row
    torch.testing.assert_close(L_i, builtin(s, y), rtol=1e-10, atol=0)
    v = torch.randn(6, dtype=s.dtype)  # each row's own upstream gradient, as "none" passes on
    torch.testing.assert_close(torch.autograd.grad(L_i, s, v)[0],
                               torch.autograd.grad(builtin(s, y), s, v)[0], rtol=1e-10, atol=0)


def test_mse_function_gives_the_elementwise_losses_and_both_gradients():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    L = losses.MSELossFunction.apply(x, t)
    torch.testing.assert_close(L, F.mse_loss(x, t, reduction="none"))
    v = torch.randn(5, 3, generator=g, dtype=torch.float64)
    torch.testing.assert_close(torch.autograd.grad(L, (x, t), v),
                               torch.autograd.grad(F.mse_loss(x, t, reduction="none"), (x, t), v))
    assert gradgradcheck(losses.MSELossFunction.apply, (x, t))


@pytest.mark.parametrize("loss", ["svm", "softmax", "mse"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_unchecked_calls_equal_the_checked_ones(loss, reduction):
    s, y = random_problem(6, 4, seed=5)
    fn = {"svm": lintorch.svm_loss, "softmax": lintorch.cross_entropy,
          "mse": lintorch.mse_loss}[loss]
    target = torch.randn_like(s) if loss == "mse" else y
    torch.testing.assert_close(fn(s, target, reduction=reduction, check=False),
                               fn(s, target, reduction=reduction))


def test_unchecked_calls_skip_the_label_check(monkeypatch):
    s, y = random_problem(6, 4, seed=5)

    def refuse(*args):
        raise AssertionError("check_target was called")

    monkeypatch.setattr(losses, "check_target", refuse)
    with pytest.raises(AssertionError, match="called"):
        lintorch.cross_entropy(s, y)
    lintorch.cross_entropy(s, y, check=False)
    lintorch.svm_loss(s, y, check=False)


def test_unknown_reduction_is_refused_even_unchecked():
    s, y = random_problem(6, 4, seed=5)
    with pytest.raises(ValueError, match="reduction"):
        lintorch.svm_loss(s, y, reduction="avg", check=False)
