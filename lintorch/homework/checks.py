"""The checks of each function a student writes, run in the grader's child process.

Each check calls the student's function on the lecture's worked numbers and on random data and
compares it with lintorch's reference (``reference.py``, lintorch's own losses and backwards),
with the sampled gradient check (``lintorch.gradcheck.check_entries``) and, for a vectorized
loss, with the student's naive one, in value and in time. A check returns a note (or None) when
the function passes and raises ``Fail`` with a reason the student can act on when it does not.
When a gradient is wrong, the reason names the likely bug: the student's result is compared
with the results of the usual mistakes (the penalty's gradient left out, the -x_i term left out,
...), computed here from the lecture's formulas.
"""

from __future__ import annotations

import math
import time
import traceback

import numpy as np
import torch
from torch import Tensor

from lintorch.gradcheck import check_entries
from lintorch.update_rules import least_squares_step

from . import reference as ref


class Fail(Exception):
    """The function fails its item; the message, one line, says why."""


STUDENT_PATH = None  # the student's file, set by the child process: where errors point

# The lecture's three images, one row each (cat, car, frog); its table shows them as columns,
# the scores f(x, W) = W x of each image. Columns here: the scores of the classes cat, car, frog.
LECTURE_SCORES = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
LECTURE_LABELS = np.array([0, 1, 2])
LECTURE_NAMES = ("cat", "car", "frog")
LECTURE_SVM_LOSSES = (2.9, 0.0, 12.9)


# Calling the student's code: arguments copied, exceptions and results turned into one line


def call(fn, *args, copy: bool = True):
    """``fn(*args)``, on copies of the arrays unless ``copy=False``; an error is ``Fail``."""
    try:
        return fn(*[a.copy() if copy and isinstance(a, np.ndarray) else a for a in args])
    except NotImplementedError:
        raise Fail("not written yet (it raises NotImplementedError)") from None
    except (Exception, SystemExit) as e:
        raise Fail(f"raised {one_line(e)}{where(e)}") from None


def one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def where(e: BaseException) -> str:
    """`` at line 42`` of the student's file, where the error was raised, if it was there."""
    lines = [f.lineno for f in traceback.extract_tb(e.__traceback__) if f.filename == STUDENT_PATH]
    return f" at line {lines[-1]} of your file" if lines else ""


def array(value, what: str, shape: tuple) -> Tensor:
    """``value`` (numpy, torch or a number) as a float64 tensor of ``shape``, or Fail."""
    if value is None:
        raise Fail(f"{what} is None: return it (a function without a return gives None)")
    try:
        t = value.detach().cpu() if isinstance(value, Tensor) else torch.as_tensor(
            np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise Fail(f"{what} should be an array of numbers, got {type(value).__name__}") from None
    if tuple(t.shape) != tuple(shape) and not (shape == () and t.numel() == 1):
        raise Fail(f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}"
                   + hint_shape(tuple(t.shape), tuple(shape)))
    return t.double().reshape(shape)


def hint_shape(got: tuple, want: tuple) -> str:
    if len(want) == 2 and got == want[::-1]:
        return ": transposed (here W is (C, D), not cs231n's (D, C); dW has W's shape)"
    return ""


def results(value, names: tuple[str, ...]) -> tuple:
    if not isinstance(value, (tuple, list)) or len(value) != len(names):
        raise Fail(f"should return ({', '.join(names)}), got {type(value).__name__}"
                   + (f" of length {len(value)}" if isinstance(value, (tuple, list)) else ""))
    return tuple(value)


def loss_and_dW(fn, W, X, y, reg) -> tuple[float, Tensor]:
    loss, dW = results(call(fn, W, X, y, reg), ("loss", "dW"))
    return float(array(loss, "the loss", ())), array(dW, "dW", W.shape)


def at(t: Tensor, i: int) -> str:
    return f"[{', '.join(map(str, np.unravel_index(i, tuple(t.shape))))}]"


def differs(name: str, got: Tensor, want: Tensor, entry: str | None = None) -> str:
    """Where ``got`` is farthest from the reference ``want``, in words: the entry named as
    ``entry`` (``W[3, 17]`` for a dW)."""
    i = int((got - want).abs().nan_to_num(math.inf).flatten().argmax())
    return (f"{name} differs from the reference at {entry or name}{at(got, i)}: "
            f"{float(got.flatten()[i]):.6g} against {float(want.flatten()[i]):.6g}")


def close(got, want, rtol: float = 1e-6, atol: float = 1e-8) -> bool:
    got, want = torch.as_tensor(got, dtype=torch.float64), torch.as_tensor(want,
                                                                           dtype=torch.float64)
    return bool(torch.isfinite(got).all()) and torch.allclose(got, want, rtol, atol)


def first_match(got, candidates) -> str | None:
    return next((why for value, why in candidates if close(got, value)), None)


# The losses: SVM and softmax, naive and vectorized


def random_case(seed: int, n: int = 40, d: int = 30, c: int = 10, reg: float = 0.1):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((c, d)), rng.standard_normal((n, d)),
            rng.integers(0, c, n), reg)


def reference(kind: str):
    return ref.svm_loss_vectorized if kind == "svm" else ref.softmax_loss_vectorized


def loss_bugs(kind: str, W, X, y, reg) -> list[tuple[float, str]]:
    """The loss of each usual mistake, beside its name."""
    N, C = len(y), W.shape[0]
    R = float((W * W).sum())
    data = reference(kind)(W, X, y, 0.0)[0]
    bugs = [(N * data + reg * R, "the data loss is summed over the examples: divide it by N"),
            (data, "the penalty reg * sum W^2 is missing from the loss"),
            (data + 0.5 * reg * R, "the penalty is 0.5 * reg * sum W^2; here it is "
                                   "reg * sum W^2")]
    if kind == "svm":
        bugs[:0] = [(data + 1 + reg * R, "the margin of the correct class is counted: "
                                         "s_{y_i} - s_{y_i} + 1 = 1 adds 1 to every L_i; sum "
                                         "over j != y_i only"),
                    (data / C + reg * R, "the loss is divided by C, as torch's "
                                         "multi_margin_loss does; the lecture sums over j != y_i")]
    return bugs


def dW_bugs(kind: str, W, X, y, reg) -> list[tuple[np.ndarray, str]]:
    """dW of each usual mistake, beside its name, from the lecture's formulas."""
    S, N = X @ W.T, len(y)
    Y = np.eye(W.shape[0])[y]                      # one-hot labels
    if kind == "svm":
        A = ((S - S[np.arange(N), y][:, None] + 1 > 0) & (Y == 0)).astype(float)
        G, G_no_xi = A - Y * A.sum(1, keepdims=True), A   # dL_i/ds: +1 per margin, -count at y_i
        no_xi = ("the -x_i term is missing: each positive margin also subtracts x_i from the "
                 "correct class's row dW[y_i]")
    else:
        P = np.exp(S - S.max(1, keepdims=True))
        P /= P.sum(1, keepdims=True)
        G, G_no_xi = P - Y, P                      # dL_i/ds_k = p_k - 1[k = y_i]
        no_xi = ("the -x_i term is missing: dL_i/ds_{y_i} = p_{y_i} - 1, and the -1 subtracts "
                 "x_i from the correct class's row dW[y_i]")
    dW_data = G.T @ X / N
    return [(dW_data, "the loss matches, so look at the gradient of the regularization: "
                      "reg * sum W^2 adds 2 * reg * W to dW, and it is missing"),
            (dW_data + reg * W, "the loss matches, so look at the gradient of the "
                                "regularization: it is 2 * reg * W, not reg * W"),
            (G_no_xi.T @ X / N + 2 * reg * W, no_xi),
            (G.T @ X + 2 * reg * W, "dW is not divided by N, as the loss is"),
            (-(dW_data + 2 * reg * W), "dW has the wrong sign")]


def check_lecture(kind: str, fn) -> None:
    """The lecture's worked numbers: the three images, and the loss at W = 0."""
    eye = np.eye(3)
    W = LECTURE_SCORES.T.copy()  # with x_n = e_n, the scores W x_n are image n's, as in the table
    if kind == "svm":
        for n, name in enumerate(LECTURE_NAMES):
            got, _ = loss_and_dW(fn, W, eye[n:n + 1], LECTURE_LABELS[n:n + 1], 0.0)
            if not close(got, LECTURE_SVM_LOSSES[n]):
                raise Fail(f"on the lecture's {name} image (scores cat, car, frog "
                           f"{', '.join(map(str, LECTURE_SCORES[n]))}) the loss should be "
                           f"{LECTURE_SVM_LOSSES[n]}, got {got:.6g}"
                           + because(got, loss_bugs(kind, W, eye[n:n + 1],
                                                    LECTURE_LABELS[n:n + 1], 0.0)))
    else:
        got, _ = loss_and_dW(fn, W, eye[:1], LECTURE_LABELS[:1], 0.0)
        want = ref.softmax_loss_vectorized(W, eye[:1], LECTURE_LABELS[:1], 0.0)[0]
        if not close(got, want):
            raise Fail(f"on the lecture's cat image (scores 3.2, 5.1, -1.7; p = 0.13, 0.87, "
                       f"0.00) the loss should be -log(0.13) = {want:.6g}, got {got:.6g}"
                       + because(got, loss_bugs(kind, W, eye[:1], LECTURE_LABELS[:1], 0.0)))
    got, _ = loss_and_dW(fn, W, eye, LECTURE_LABELS, 0.0)
    want = ref.svm_loss_vectorized(W, eye, LECTURE_LABELS, 0.0)[0] if kind == "svm" else (
        ref.softmax_loss_vectorized(W, eye, LECTURE_LABELS, 0.0)[0])
    if not close(got, want):
        raise Fail(f"on the lecture's three images together the loss should be the mean of "
                   f"theirs, {want:.6g}, got {got:.6g}"
                   + because(got, loss_bugs(kind, W, eye, LECTURE_LABELS, 0.0)))
    c, zeros = 10, np.zeros((10, 5))
    X, y = np.random.default_rng(1).standard_normal((7, 5)), np.arange(7) % c
    got, _ = loss_and_dW(fn, zeros, X, y, 0.0)
    want, what = (c - 1, "C - 1 = 9 (every margin is 1)") if kind == "svm" else (
        math.log(c), f"log C = {math.log(c):.6g} (every p_k is 1/C)")
    if not close(got, want):
        raise Fail(f"at W = 0 every score is 0 and the loss should be {what}, got {got:.6g}")


def because(got, candidates) -> str:
    """``: <the bug>`` if ``got`` (a number or an array) is the result of one of the
    ``candidates``' bugs."""
    if not bool(torch.isfinite(torch.as_tensor(got)).all()):
        return ": not a finite number"
    why = first_match(got, candidates)
    return f": {why}" if why else ""


def check_random(kind: str, fn, seed: int) -> None:
    """Loss and dW on random data against the reference; a wrong dW's likely bug named."""
    W, X, y, reg = random_case(seed)
    loss, dW = loss_and_dW(fn, W, X, y, reg)
    want_loss, want_dW = reference(kind)(W, X, y, reg)
    if not close(loss, want_loss):
        raise Fail(f"on random data (N=40, D=30, C=10, reg=0.1) the loss is {loss:.6g}, the "
                   f"reference's {want_loss:.6g}" + because(loss, loss_bugs(kind, W, X, y, reg)))
    if not close(dW, want_dW):
        why = first_match(dW, dW_bugs(kind, W, X, y, reg))
        raise Fail(differs("dW", dW, torch.as_tensor(want_dW), "W") + (
            f"; {why}" if why else "; the loss matches, so the gradient's formula is off: "
                                   "check it entry by entry with numerical_gradient"))


def check_overflow(fn) -> None:
    """The lecture's three images with 1000 added to every score: the same probabilities."""
    eye, W = np.eye(3), LECTURE_SCORES.T + 1000
    got, dW = loss_and_dW(fn, W, eye, LECTURE_LABELS, 0.0)
    want, want_dW = ref.softmax_loss_vectorized(W, eye, LECTURE_LABELS, 0.0)
    if not (math.isfinite(got) and bool(torch.isfinite(dW).all())):
        raise Fail(f"scores near 1000 overflow: e^1000 is inf, and the loss is {got:.6g} "
                   f"(should be {want:.6g}); the softmax is unshifted: subtract each example's "
                   f"largest score before exp, which leaves the probabilities unchanged")
    if not (close(got, want) and close(dW, want_dW)):
        raise Fail(f"on the lecture's three images with 1000 added to every score the loss is "
                   f"{got:.6g} and should be {want:.6g}, as without the 1000 (the softmax does "
                   f"not change when a constant is added to every score)")


def check_gradient(fn, seed: int) -> None:
    """The sampled gradient check of the student's own loss against its own dW."""
    W, X, y, reg = random_case(seed)
    _, dW = loss_and_dW(fn, W, X, y, reg)
    W_t = torch.from_numpy(W.copy())
    entries = check_entries(lambda w: loss_and_dW(fn, w.numpy(), X, y, reg)[0], W_t,
                            analytic=dW, num_checks=10, seed=seed)
    bad = [e for e in entries if e.relative_error > 1e-5 and abs(e.analytic - e.numeric) > 1e-7]
    if bad:
        e = max(bad, key=lambda e: e.relative_error)
        raise Fail(f"the gradient check disagrees: dW[{', '.join(map(str, e.index))}] = "
                   f"{e.analytic:.6g}, the numerical gradient of your loss {e.numeric:.6g} "
                   f"(relative error {e.relative_error:.1e})")


def check_against_naive(student, kind: str, fn) -> str:
    """The vectorized loss against the naive one: the same values, and faster."""
    naive = getattr(student, f"{kind}_loss_naive", None)
    W, X, y, reg = random_case(7, n=400, d=100)
    try:
        loss_n, dW_n = loss_and_dW(naive, W, X, y, reg)
    except Fail:
        return "not compared with your naive version, which does not run yet"
    loss_v, dW_v = loss_and_dW(fn, W, X, y, reg)
    if not (close(loss_v, loss_n) and close(dW_v, dW_n)):
        return ("your naive version gives other values on 400 examples (this one agrees with "
                "the reference): see its item")
    t_naive = timed(naive, W, X, y, reg, repeat=1)
    t_vec = timed(fn, W, X, y, reg, repeat=3)
    ratio = t_naive / max(t_vec, 1e-9)
    if ratio < 2:
        raise Fail(f"not faster than your naive version: {1e3 * t_vec:.1f} ms against "
                   f"{1e3 * t_naive:.1f} ms on 400 examples (it should take at most half as "
                   f"long: replace the loops by array operations)")
    return f"{ratio:.0f}x as fast as your naive version on 400 examples"


def timed(fn, *args, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        call(fn, *args)
        best = min(best, time.perf_counter() - t0)
    return best


def check_loss(student, kind: str, version: str) -> str | None:
    fn = getattr(student, f"{kind}_loss_{version}")
    check_lecture(kind, fn)
    check_random(kind, fn, seed=0)
    if kind == "softmax":
        check_overflow(fn)
    check_gradient(fn, seed=1)
    return check_against_naive(student, kind, fn) if version == "vectorized" else None


# The linear layer, the sigmoid, the numerical gradient, the SGD step


def check_linear_backward(student) -> None:
    # The lecture's d(w . x)/dw_j = x_j: one example, one class, dL/ds = 1 gives dW = x^T
    x, w = np.array([[0.5, -1.0, 2.0]]), np.array([[0.2, 0.3, -0.1]])
    got = results(call(student.linear_backward, np.ones((1, 1)), x, w), ("dX", "dW", "db"))
    if not close(array(got[1], "dW", w.shape), x):
        raise Fail(f"for s = w . x with dL/ds = 1, dW should be x = [0.5, -1, 2] (the "
                   f"lecture's d(w . x)/dw_j = x_j), got {array(got[1], 'dW', w.shape).tolist()}")
    rng = np.random.default_rng(2)
    N, D, C = 6, 5, 4
    dS, X, W = rng.standard_normal((N, C)), rng.standard_normal((N, D)), rng.standard_normal((C, D))
    got = results(call(student.linear_backward, dS, X, W), ("dX", "dW", "db"))
    want = ref.linear_backward(dS, X, W)
    rules = {"dX": "dL/dX = dS W", "dW": "dL/dW = dS^T X", "db": "dL/db = dS summed over the "
                                                                 "examples (not averaged)"}
    for name, g, w in zip(("dX", "dW", "db"), got, want):
        g = array(g, name, w.shape)
        if not close(g, w):
            raise Fail(f"{differs(name, g, torch.as_tensor(w))}; {rules[name]}")
    # The gradient check: dW against the numerical gradient of L(W) = sum(S * dS)
    entries = check_entries(lambda w: (torch.from_numpy(X) @ w.T * torch.from_numpy(dS)).sum(),
                            torch.from_numpy(W.copy()), analytic=array(got[1], "dW", W.shape),
                            num_checks=8)
    worst = max(entries, key=lambda e: e.relative_error)
    if worst.relative_error > 1e-6:
        raise Fail(f"the gradient check of L(W) = sum(S * dS) disagrees at dW{list(worst.index)}: "
                   f"{worst.analytic:.6g} against {worst.numeric:.6g}")


def check_sigmoid_grad(student) -> None:
    x = np.array([[-1000.0, -40.0, -3.0, -0.5], [0.0, 0.5, 3.0, 1000.0]])
    got = array(call(student.sigmoid_grad, x), "sigma'(x)", x.shape)
    want = torch.as_tensor(ref.sigmoid_grad(x))
    if not close(got[1, 0], 0.25):
        raise Fail(f"sigma'(0) should be sigma(0) (1 - sigma(0)) = 0.25, got "
                   f"{float(got[1, 0]):.6g}" + because(float(got[1, 0]), [
                       (0.5, "you returned sigma(x), not its derivative"),
                       (0.0, "you computed x (1 - x); apply sigma first: "
                             "sigma(x) (1 - sigma(x))")]))
    if not bool(torch.isfinite(got).all()):
        i = int((~torch.isfinite(got)).flatten().nonzero()[0])
        raise Fail(f"sigma'({x.flatten()[i]:g}) is {float(got.flatten()[i])}: e^{{-x}} "
                   f"overflows there; compute sigma without e of a large positive number")
    if not close(got, want):
        raise Fail(differs("sigma'(x)", got, want) + " (x = " + ", ".join(
            f"{v:g}" for v in x.flatten()) + ")")
    x_t = torch.linspace(-4, 4, 9, dtype=torch.float64)
    g = array(call(student.sigmoid_grad, x_t.numpy()), "sigma'(x)", x_t.shape)
    entries = check_entries(lambda t: torch.sigmoid(t).sum(), x_t.clone(), analytic=g)
    worst = max(entries, key=lambda e: e.relative_error)
    if worst.relative_error > 1e-6:
        raise Fail(f"the gradient check disagrees at x = {float(x_t[worst.index]):g}: "
                   f"{worst.analytic:.6g} against {worst.numeric:.6g}")


def check_numerical_gradient(student) -> None:
    # The lecture's walk-through: loss 1.25347 at W, 1.25322 at W[0] + 0.0001 -> dW[0] = -2.5,
    # and so on; here as a function that is linear near W, so that any step h gives them exactly.
    w0, slope = np.array([0.34, -1.11, 0.78]), np.array([-2.5, 0.6, 0.0])
    got = array(call(student.numerical_gradient, lambda w: 1.25347 + slope @ (w - w0), w0, 1e-4),
                "the gradient", w0.shape)
    if not close(got, slope, rtol=1e-4, atol=1e-6):
        raise Fail(f"on the lecture's walk-through (loss 1.25347, 1.25322 after W[0] + 0.0001: "
                   f"dW[0] = -2.5) it gives {', '.join(f'{v:.6g}' for v in got)}, expected "
                   f"-2.5, 0.6, 0" + because_numeric(got, torch.as_tensor(slope)))
    # The lecture's least squares, L(w) = sum_i (y_i - w^T x_i)^2, dL/dw_j = -2 sum_i delta_i x_ij
    rng = np.random.default_rng(3)
    X, t, w = rng.standard_normal((8, 4)), rng.standard_normal(8), rng.standard_normal((2, 2))
    seen = w.copy()
    f = lambda v: float(((t - X @ v.reshape(-1)) ** 2).sum())  # noqa: E731
    got = array(call(student.numerical_gradient, f, seen, 1e-5, copy=False), "the gradient",
                w.shape)
    if not np.array_equal(seen, w):
        raise Fail("x is left changed: after perturbing an entry, put its old value back")
    want = torch.as_tensor(ref.numerical_gradient(f, w, 1e-5))
    formula = torch.as_tensor((-2 * (t - X @ w.reshape(-1)) @ X).reshape(w.shape))
    assert close(want, formula, rtol=1e-6)  # lintorch's reference agrees with the lecture's formula
    if not close(got, want, rtol=1e-3, atol=1e-5):
        raise Fail(differs("the gradient", got, want) + " of the lecture's least squares "
                   "sum_i (y_i - w^T x_i)^2" + because_numeric(got, want))


def because_numeric(got: Tensor, want: Tensor) -> str:
    return because(got, [(2 * want, "twice the gradient: the central difference divides by 2h"),
                         (-want, "the sign is flipped: (f(x + h) - f(x - h)) / 2h")])


def stepped(student, W, dW, lr) -> Tensor:
    """The student's new W: returned, or (returning None) W changed in place."""
    given = W.copy()
    new = call(student.sgd_step, given, dW.copy(), lr, copy=False)
    return array(given if new is None else new, "the new W", W.shape)


def check_sgd_step(student) -> None:
    rng = np.random.default_rng(4)
    W, dW, lr = rng.standard_normal((3, 4)), rng.standard_normal((3, 4)), 0.1
    got, want = stepped(student, W, dW, lr), torch.as_tensor(ref.sgd_step(W, dW, lr))
    if not close(got, want):
        raise Fail(differs("W", got, want) + because(got, [
            (W + lr * dW, "the update's sign is flipped: it climbs the gradient; "
                          "W <- W - lr * dW goes down"),
            (W - dW, "the learning rate is missing: W - lr * dW"),
            (-lr * dW, "it returns the step -lr * dW, not the new weights W - lr * dW")]))
    # The lecture's least-squares rule w_j <- w_j + 2 alpha sum_i delta_i x_ij is this step
    # with dL/dw = -2 sum_i delta_i x_i
    w, X, t = rng.standard_normal(4), rng.standard_normal((6, 4)), rng.standard_normal(6)
    got = stepped(student, w, -2 * (t - X @ w) @ X, lr)
    if not close(got, least_squares_step(*(torch.from_numpy(a) for a in (w, X, t)), lr)):
        raise Fail("on the lecture's least squares the step is not "
                   "w_j + 2 alpha sum_i delta_i x_ij")


CHECKS = {
    "svm_loss_naive": lambda s: check_loss(s, "svm", "naive"),
    "svm_loss_vectorized": lambda s: check_loss(s, "svm", "vectorized"),
    "softmax_loss_naive": lambda s: check_loss(s, "softmax", "naive"),
    "softmax_loss_vectorized": lambda s: check_loss(s, "softmax", "vectorized"),
    "linear_backward": check_linear_backward,
    "sigmoid_grad": check_sigmoid_grad,
    "numerical_gradient": check_numerical_gradient,
    "sgd_step": check_sgd_step,
}
