from __future__ import annotations

import math

import pytest
import torch

import lintorch
from lintorch import search
from lintorch.search import (
    SearchResult,
    genetic_algorithm,
    population_loss,
    random_local_search,
    random_search,
)

METHODS = {
    "random": lambda x1, y, budget, g, **kw: random_search(
        x1, y, 3, budget, scale=1.0, generator=g, **kw),
    "local": lambda x1, y, budget, g, **kw: random_local_search(
        x1, y, 3, budget, step_size=0.1, generator=g, **kw),
    "ga": lambda x1, y, budget, g, **kw: genetic_algorithm(
        x1, y, 3, budget, mutation_std=0.1, generator=g, **kw),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def blobs(n: int = 300, seed: int = 0, dtype: torch.dtype = torch.float32):
    """Three overlapping Gaussian blobs in 2-D, bias column appended: (N, 3) inputs, (N,) labels.

    The overlap keeps the best weights at a finite norm (loss ~0.195), so a search has to home
    in on them rather than just scale any separating W up.
    """
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 2.0], [-1.73, -1.0], [1.73, -1.0]], dtype=dtype)
    y = torch.arange(3).repeat_interleave(n // 3)
    x = centers[y] + torch.randn(n, 2, generator=g, dtype=dtype)
    return lintorch.append_ones(x), y


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- population_loss --------------------------------------------------------------------------


@pytest.mark.parametrize("loss, fn", [("softmax", lintorch.cross_entropy),
                                      ("svm", lintorch.svm_loss)])
def test_population_loss_matches_loop_over_candidates(loss, fn):
    g = gen(1)
    x1 = lintorch.append_ones(torch.randn(50, 6, generator=g, dtype=torch.float64))
    y = torch.randint(0, 4, (50,), generator=g)
    W = torch.randn(7, 4, 7, generator=g, dtype=torch.float64)
    expected = torch.stack([fn(x1 @ W[p].T, y) for p in range(W.shape[0])])
    got = population_loss(W, x1, y, loss)
    assert got.shape == (7,) and got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-10)


def test_population_loss_of_zero_weights_is_the_sanity_check_value():
    x1, y = blobs(dtype=torch.float64)
    W = torch.zeros(2, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(population_loss(W, x1, y, "softmax"),
                               torch.full((2,), math.log(3), dtype=torch.float64))
    torch.testing.assert_close(population_loss(W, x1, y, "svm"),
                               torch.full((2,), 2.0, dtype=torch.float64))  # C - 1


def test_population_loss_rejects_bad_arguments():
    x1, y = blobs()
    with pytest.raises(ValueError, match="loss"):
        population_loss(torch.zeros(2, 3, 3), x1, y, "hinge")
    with pytest.raises(ValueError, match="W must be"):
        population_loss(torch.zeros(3, 3), x1, y)
    with pytest.raises(ValueError, match="W must be"):
        population_loss(torch.zeros(2, 3, 4), x1, y)


# --- shared contract of the three optimizers --------------------------------------------------


@pytest.mark.parametrize("loss", ["softmax", "svm"])
@pytest.mark.parametrize("method", METHODS)
def test_deterministic_budgeted_and_monotone(method, loss):
    x1, y = blobs()
    run = METHODS[method]
    a = run(x1, y, 550, gen(3), loss=loss)
    b = run(x1, y, 550, gen(3), loss=loss)
    assert isinstance(a, SearchResult)
    assert torch.equal(a.weight, b.weight) and a.history == b.history

    evals, best, acc = zip(*a.history)
    assert evals[-1] == 550  # spends the whole budget, and no more
    assert all(e1 < e2 for e1, e2 in zip(evals, evals[1:]))
    assert all(l2 <= l1 for l1, l2 in zip(best, best[1:]))
    assert all(0.0 <= v <= 1.0 for v in acc)

    # the reported loss and accuracy are those of the returned weights
    assert a.weight.shape == (3, 3) and a.loss == best[-1]
    assert population_loss(a.weight[None], x1, y, loss).item() == pytest.approx(a.loss, rel=1e-6)
    assert (x1 @ a.weight.T).argmax(1).eq(y).float().mean().item() == pytest.approx(acc[-1])


@pytest.mark.parametrize("method", METHODS)
def test_other_seed_gives_other_result(method):
    x1, y = blobs()
    a = METHODS[method](x1, y, 300, gen(0))
    b = METHODS[method](x1, y, 300, gen(1))
    assert not torch.equal(a.weight, b.weight)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("budget", [1, 7, 100, 101])
def test_budget_smaller_than_or_not_a_multiple_of_population(method, budget):
    x1, y = blobs()
    result = METHODS[method](x1, y, budget, gen(), population=20)
    assert result.history[-1][0] == budget


@pytest.mark.parametrize("method", METHODS)
def test_dtype_follows_the_data(method):
    x1, y = blobs(dtype=torch.float64)
    result = METHODS[method](x1, y, 50, gen(), population=20)
    assert result.weight.dtype == torch.float64


# --- it actually searches: the toy problem ----------------------------------------------------


@pytest.mark.parametrize("method", ["local", "ga"])
def test_finds_good_weights_on_blobs(method):
    x1, y = blobs()
    result = METHODS[method](x1, y, 2000, gen())
    # W = 0 gives log 3 ~ 1.10; the optimum of this problem is ~0.195 at ~94% accuracy
    assert result.loss < 0.25
    assert result.history[-1][2] > 0.85  # chance is 1/3


def test_genetic_algorithm_beats_random_search_at_equal_budget():
    x1, y = blobs()
    budget = 3000
    # random search at its best scale among several, so the comparison is a fair one
    rs = min(random_search(x1, y, 3, budget, scale=s, generator=gen()).loss
             for s in (0.3, 1.0, 3.0))
    ga = genetic_algorithm(x1, y, 3, budget, mutation_std=0.1, generator=gen()).loss
    # over seeds 0-19 the GA/random-search ratio is at most 0.90 (0.84 for seed 0)
    assert ga < 0.95 * rs


@pytest.mark.parametrize("crossover", search.CROSSOVERS)
@pytest.mark.parametrize("selection", search.SELECTIONS)
def test_genetic_algorithm_variants_improve(crossover, selection):
    x1, y = blobs()
    result = genetic_algorithm(x1, y, 3, 1000, population=50, elite=5, mutation_std=0.1,
                               crossover=crossover, selection=selection, generator=gen())
    first, last = result.history[0][1], result.history[-1][1]
    assert last < 0.6 * first


def test_random_local_search_starts_from_init():
    x1, y = blobs()
    init = torch.zeros(3, 3)
    result = random_local_search(x1, y, 3, 201, step_size=0.1, population=50, init=init,
                                 generator=gen())
    assert result.history[0] == (1, pytest.approx(math.log(3)), pytest.approx(1 / 3))
    assert result.loss < math.log(3)
    assert torch.equal(init, torch.zeros(3, 3))  # the caller's tensor is left alone


def test_crossover_takes_every_entry_from_a_parent():
    g = gen()
    a, b = torch.zeros(20, 3, 5), torch.ones(20, 3, 5)
    uniform = search._crossover(a, b, "uniform", g)
    assert ((uniform == 0) | (uniform == 1)).all()
    assert 0.3 < uniform.mean() < 0.7  # about half of each parent
    row = search._crossover(a, b, "row", g)
    assert (row.amin(2) == row.amax(2)).all()  # a class template comes whole from one parent
    assert torch.equal(search._crossover(a, b, "none", g), a)


# --- argument checks --------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_bad_common_arguments(method):
    x1, y = blobs()
    run = METHODS[method]
    with pytest.raises(ValueError, match="budget"):
        run(x1, y, 0, gen())
    with pytest.raises(ValueError, match="population"):
        run(x1, y, 10, gen(), population=0)
    with pytest.raises(ValueError, match="loss"):
        run(x1, y, 10, gen(), loss="hinge")
    with pytest.raises(ValueError, match="outside"):
        run(x1, y + 1, 10, gen())  # label 3 with num_classes = 3


def test_bad_method_arguments():
    x1, y = blobs()
    with pytest.raises(ValueError, match="elite"):
        genetic_algorithm(x1, y, 3, 10, population=10, elite=10)
    with pytest.raises(ValueError, match="crossover"):
        genetic_algorithm(x1, y, 3, 10, crossover="one-point")
    with pytest.raises(ValueError, match="selection"):
        genetic_algorithm(x1, y, 3, 10, selection="roulette")
    with pytest.raises(ValueError, match="elite"):
        genetic_algorithm(x1, y, 3, 10, elite=0, selection="truncation")
    with pytest.raises(ValueError, match="mutation_std"):
        genetic_algorithm(x1, y, 3, 10, mutation_std=0.0)
    with pytest.raises(ValueError, match="scale"):
        random_search(x1, y, 3, 10, scale=-1.0)
    with pytest.raises(ValueError, match="step_size"):
        random_local_search(x1, y, 3, 10, step_size=0.0)
    with pytest.raises(ValueError, match="init"):
        random_local_search(x1, y, 3, 10, init=torch.zeros(3, 4))


# --- CUDA -------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("method", METHODS)
def test_runs_on_cuda(method):
    x1, y = (t.cuda() for t in blobs())
    run = METHODS[method]
    a = run(x1, y, 2000, torch.Generator(device="cuda").manual_seed(0))
    b = run(x1, y, 2000, torch.Generator(device="cuda").manual_seed(0))
    assert a.weight.device.type == "cuda" and torch.equal(a.weight, b.weight)
    assert a.history == b.history
    if method != "random":
        assert a.loss < 0.25
    with pytest.raises(ValueError, match="generator"):
        run(x1, y, 10, gen())  # a CPU generator for CUDA data
