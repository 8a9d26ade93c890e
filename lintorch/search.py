"""Finding the best weights without gradients: the lecture's random search and genetic algorithm
for the linear classifier ``s = W x`` with the bias trick (``W`` (C, D+1), ``x1 = append_ones(x)``
(N, D+1)). One matrix product scores all P candidates, ``(N, P, C)``, one loss call gives their
P data losses. ``budget`` counts loss evaluations (one candidate on the whole data set is one),
so the methods compare with gradient descent at equal cost."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import stacked
from .config import out_of_bounds
from .losses import CLASSIFIERS, check_target, loss_fn

CROSSOVERS = ("uniform", "row", "none")
SELECTIONS = ("tournament", "truncation")
# The lecture's starting point for local search: small random weights, so every score is near 0.
INIT_SCALE = 1e-3
# Three entrants per tournament: moderate selection pressure, so good candidates breed often
# yet a middling one still wins sometimes, which keeps the population diverse.
TOURNAMENT_SIZE = 3


@dataclass
class SearchResult:
    """The best weights found, their loss, and ``history``: ``(loss evaluations used so far,
    best loss, accuracy of the best)`` after each step, measured on the search data."""

    weight: Tensor
    loss: float
    history: list[tuple[int, float, float]] = field(default_factory=list)


def population_loss(W: Tensor, x1: Tensor, y: Tensor, loss: str = "softmax") -> Tensor:
    """Mean data loss of each candidate: ``W (P, C, D+1)``, ``x1 (N, D+1)`` -> ``(P,)``;
    ``loss`` is ``"svm"`` (multiclass hinge) or ``"softmax"`` (cross-entropy)."""
    _check_choice("loss", loss, CLASSIFIERS)
    _check_data(x1, y)
    if W.dim() != 3 or W.shape[2] != x1.shape[1]:
        raise ValueError(f"W must be (P, C, D+1) = (P, C, {x1.shape[1]}) to match x1, "
                         f"got {tuple(W.shape)}")
    _check_data(x1, y, num_classes=W.shape[1])
    return stacked.data_losses(loss_fn(loss, reduction="none"), stacked.scores(W, x1), y)


class _Evaluator:
    """Scores candidates against the budget, keeps the best one seen and logs each step, so the
    count in ``history`` is exactly the candidates evaluated and its best loss only goes down."""

    def __init__(self, x1: Tensor, y: Tensor, loss: str, budget: int) -> None:
        self.x1, self.y = x1, y
        self.per_example_loss = loss_fn(loss, reduction="none")
        self.budget, self.used = budget, 0
        self.best_weight: Tensor | None = None
        self.best_loss, self.best_acc = math.inf, 0.0
        self.history: list[tuple[int, float, float]] = []

    @property
    def left(self) -> int:
        return self.budget - self.used

    def __call__(self, W: Tensor) -> Tensor:
        """Losses ``(P,)`` of the candidates ``W (P, C, D+1)``: P evaluations, one step."""
        if W.shape[0] > self.left:
            raise RuntimeError("search asked for more evaluations than its budget")  # a bug
        scores = stacked.scores(W, self.x1)
        losses = stacked.data_losses(self.per_example_loss, scores, self.y)
        self.used += W.shape[0]
        best = int(losses.argmin())
        best_loss = float(losses[best])
        if best_loss < self.best_loss:
            self.best_weight, self.best_loss = W[best].clone(), best_loss
            self.best_acc = float(stacked.correct(scores[:, best:best + 1], self.y)) / len(self.y)
        self.history.append((self.used, self.best_loss, self.best_acc))
        return losses

    def result(self) -> SearchResult:
        return SearchResult(self.best_weight, self.best_loss, self.history)


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


def _check_data(x1: Tensor, y: Tensor, num_classes: int | None = None) -> None:
    if not isinstance(x1, Tensor) or not x1.is_floating_point() or x1.dim() != 2:
        raise ValueError("x1 must be a 2-D floating-point tensor (N, D+1); use append_ones(x)")
    if num_classes is not None:
        if problem := out_of_bounds(num_classes, "positive", int):
            raise ValueError(f"num_classes must be {problem}, got {num_classes}")
        # labels in [0, C), one per row: checked once here, not at every step
        check_target(x1.new_empty(x1.shape[0], num_classes), y)
    if isinstance(y, Tensor) and y.device != x1.device:
        raise ValueError(f"x1 is on {x1.device} but y is on {y.device}")


def _check_common(x1: Tensor, y: Tensor, num_classes: int, budget: int, loss: str,
                  population: int, generator: torch.Generator | None, **positive: float) -> None:
    """The checks every method shares; ``positive`` names its step sizes and scales."""
    _check_choice("loss", loss, CLASSIFIERS)
    _check_data(x1, y, num_classes)
    for name, value in (("budget (loss evaluations)", budget), ("population", population)):
        if problem := out_of_bounds(value, "positive", int):
            raise ValueError(f"{name} must be {problem}, got {value}")
    if generator is not None and generator.device.type != x1.device.type:
        raise ValueError(f"generator is on {generator.device} but the data is on {x1.device}; "
                         "use torch.Generator(device=x1.device)")
    for name, value in positive.items():
        if problem := out_of_bounds(value, "positive"):
            raise ValueError(f"{name} must be {problem}, got {value}")


def _randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)


def random_search(x1: Tensor, y: Tensor, num_classes: int, budget: int, loss: str = "softmax",
                  population: int = 100, scale: float = 1e-3,
                  generator: torch.Generator | None = None) -> SearchResult:
    """Try ``budget`` random weights ``W ~ scale * N(0, 1)`` and keep the best. Each step scores
    ``population`` independent candidates in one batch; they never build on each other, which
    is why this is the lecture's baseline."""
    _check_common(x1, y, num_classes, budget, loss, population, generator, scale=scale)
    evaluate = _Evaluator(x1, y, loss, budget)
    while evaluate.left > 0:
        p = min(population, evaluate.left)
        evaluate(scale * _randn((p, num_classes, x1.shape[1]), x1, generator))
    return evaluate.result()


def random_local_search(x1: Tensor, y: Tensor, num_classes: int, budget: int,
                        loss: str = "softmax", step_size: float = 1e-3, population: int = 100,
                        generator: torch.Generator | None = None,
                        init: Tensor | None = None) -> SearchResult:
    """From the current ``W``, try ``W + step_size * N(0, 1)`` and move only if the loss drops.
    Each step tries ``population`` perturbations at once and moves to the best of them. The
    first evaluation is the starting point, ``init`` or ``1e-3 * N(0, 1)`` as in the notes."""
    _check_common(x1, y, num_classes, budget, loss, population, generator, step_size=step_size)
    shape = (num_classes, x1.shape[1])
    if init is not None and tuple(init.shape) != shape:
        raise ValueError(f"init must have shape (C, D+1) = {shape}, got {tuple(init.shape)}")
    W = (INIT_SCALE * _randn(shape, x1, generator) if init is None
         else init.detach().to(device=x1.device, dtype=x1.dtype))
    evaluate = _Evaluator(x1, y, loss, budget)
    evaluate(W.unsqueeze(0))
    while evaluate.left > 0:
        p = min(population, evaluate.left)
        evaluate(W + step_size * _randn((p, *shape), x1, generator))
        # The evaluator keeps the best candidate only if it beat every earlier one, which is
        # exactly the "move if it lowers the loss" rule: the current W is always the best so far.
        W = evaluate.best_weight
    return evaluate.result()


def _select_parents(losses: Tensor, count: int, selection: str, elite: int,
                    generator: torch.Generator | None) -> Tensor:
    """Indices ``(count, 2)`` of two parents for each child; low loss means high fitness.
    Tournament: each parent is the fittest of ``TOURNAMENT_SIZE`` individuals drawn at random.
    Truncation: parents are drawn uniformly from the ``elite`` fittest."""
    if selection == "truncation":
        pick = torch.randint(elite, (count, 2), generator=generator, device=losses.device)
        return losses.argsort()[:elite][pick]
    entrants = torch.randint(losses.shape[0], (count, 2, TOURNAMENT_SIZE), generator=generator,
                             device=losses.device)
    return entrants.gather(-1, losses[entrants].argmin(-1, keepdim=True)).squeeze(-1)


def _crossover(a: Tensor, b: Tensor, crossover: str, generator: torch.Generator | None) -> Tensor:
    """Children of parents ``a, b`` (both ``(K, C, D+1)``). ``uniform``: each weight comes from
    either parent with probability 1/2; ``row``: each class template (row of W) comes whole from
    one parent; ``none``: the child is a copy of the first parent (mutation only)."""
    if crossover == "none":
        return a.clone()
    k, c, d = a.shape
    mask = torch.rand((k, c, d if crossover == "uniform" else 1), generator=generator,
                      device=a.device) < 0.5
    return torch.where(mask, a, b)


def genetic_algorithm(x1: Tensor, y: Tensor, num_classes: int, budget: int, loss: str = "softmax",
                      population: int = 100, elite: int = 10, mutation_std: float = 1e-3,
                      crossover: str = "uniform", generator: torch.Generator | None = None,
                      selection: str = "tournament") -> SearchResult:
    """Evolve ``population`` weight matrices: select, cross over, mutate, repeat. Generation 0 is
    ``mutation_std * N(0, 1)``. Each later generation keeps the ``elite`` best unchanged (their
    losses are known, so they cost no evaluations) and fills the rest with children: two parents
    chosen by ``selection`` ("tournament" or "truncation"), combined by ``crossover`` ("uniform",
    "row" or "none"), plus Gaussian mutation ``mutation_std * N(0, 1)``. All children of a
    generation are scored in one batch; the last one is cut short if the budget runs out."""
    _check_common(x1, y, num_classes, budget, loss, population, generator,
                  mutation_std=mutation_std)
    if not 0 <= elite < population:
        raise ValueError(f"elite must be in [0, population) = [0, {population}), got {elite}")
    _check_choice("crossover", crossover, CROSSOVERS)
    _check_choice("selection", selection, SELECTIONS)
    if selection == "truncation" and elite < 1:
        raise ValueError("truncation selection draws parents from the elite: elite must be >= 1")
    evaluate = _Evaluator(x1, y, loss, budget)
    pop = mutation_std * _randn((min(population, budget), num_classes, x1.shape[1]), x1, generator)
    losses = evaluate(pop)
    while evaluate.left > 0:
        keep = losses.argsort()[:elite]
        count = min(population - elite, evaluate.left)
        parents = _select_parents(losses, count, selection, elite, generator)
        children = _crossover(pop[parents[:, 0]], pop[parents[:, 1]], crossover, generator)
        children += mutation_std * _randn(children.shape, x1, generator)
        pop = torch.cat([pop[keep], children])
        losses = torch.cat([losses[keep], evaluate(children)])
    return evaluate.result()
