"""A (learning rate x regularization) grid of linear classifiers, trained in one pass over the data.

    python -m lintorch.sweep --dataset fashion-mnist --lr 1e-3 1e-2 1e-1 --reg 0 1e-4 1e-3

The K = |lr| x |reg| models share every mini-batch: their weights are stacked into one (K, C, D)
tensor, one matrix product scores the batch under all of them, the hand-written loss is applied
once to all K * B rows of scores (lintorch/stacked.py), and each model takes its own SGD step
with its own learning rate, schedule and penalty: the updates ``lintorch.train.fit`` would give
it alone, so in float64 its final weights agree with fit's to rounding. A model whose loss turns
NaN or infinite stops with its last good weights; the others go on. ``run(config, lrs, regs)``
returns what ``sweep.json`` holds; the CLI also prints the grid of validation accuracies and
writes one TensorBoard run per model (``runs/sweep-<time>/lr=...,reg=...``, with hparams).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from . import board, console, data, distributed, files, losses, stacked, train
from .cuda_graph import GraphedStep
from .models import LinearClassifier
from .update_rules import sgd_step


def check_grid(lrs, regs) -> tuple[list[float], list[float]]:
    """The grid as two lists of floats; ValueError if one is empty, holds a repeat, a learning
    rate that is not positive or a strength that is negative (or either not finite)."""
    checked = []
    for name, values, ok, rule in [("lr", lrs, lambda v: v > 0, "> 0"),
                                   ("reg", regs, lambda v: v >= 0, ">= 0")]:
        values = [float(v) for v in values]
        if not values:
            raise ValueError(f"the --{name} grid is empty; give at least one value")
        for v in values:
            if not (math.isfinite(v) and ok(v)):
                raise ValueError(f"--{name} values must be finite and {rule}, got {v:g}")
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} lists a value twice: {' '.join(f'{v:g}' for v in values)}")
        checked.append(values)
    return checked[0], checked[1]


def grid_configs(config: train.TrainConfig, lrs, regs) -> list[train.TrainConfig]:
    """One resolved config per model, learning rate major: (lr_0, reg_0), (lr_0, reg_1), ...

    The grid's values replace ``config.lr`` and ``config.reg``; every other field is shared.
    """
    lrs, regs = check_grid(lrs, regs)
    if config.model != "linear":
        raise ValueError(f"the sweep trains linear classifiers only, not --model {config.model}")
    if config.resume:
        raise ValueError("a sweep cannot resume a run; start it again")
    base = dataclasses.replace(config, lr=lrs[0], reg=regs[0]).resolved()
    if base.val_size == 0:
        raise ValueError("the sweep chooses its model on the validation split: "
                         "--val-size must be at least 1")
    return [dataclasses.replace(base, lr=lr, reg=reg) for lr in lrs for reg in regs]


def model_name(lr: float, reg: float) -> str:
    """``lr=0.001,reg=0.0001``: short, and distinct for distinct values."""
    def short(v: float) -> str:
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    return f"lr={short(lr)},reg={short(reg)}"


@torch.no_grad()
def evaluate_stack(W: Tensor, b: Tensor, x: Tensor, y: Tensor, per_example_loss,
                   max_scores: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) of every model on (x, y), each ``(K,)`` float64 on the device."""
    k, c, _ = W.shape
    loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(k, device=x.device, dtype=torch.long)
    rows = max(1, max_scores // (k * c))  # scores of at most max_scores numbers at a time
    for i in range(0, x.shape[0], rows):
        s, t = stacked.scores(W, x[i:i + rows], b), y[i:i + rows]
        loss_sum += stacked.data_losses(per_example_loss, s, t).double() * t.shape[0]
        correct += stacked.correct(s, t)
    n = x.shape[0] if x.shape[0] else float("nan")  # no examples: NaN, as train.evaluate
    return loss_sum / n, correct.double() / n


class Stack:
    """The models still training, stacked: weights W (A, C, D), biases b (A, C), their SGD
    velocities (with momentum), their learning rates ``lr`` (A,) and ``ids``, which grid models
    they are.

    Every tensor a step reads or writes is updated in place, so a CUDA graph captured once
    replays the step for the whole run (lintorch/cuda_graph.py).
    """

    def __init__(self, W: Tensor, b: Tensor, regs: list[float], ids: list[int]):
        self.W, self.b = W.requires_grad_(), b.requires_grad_()
        self.ids = ids
        self.reg = torch.tensor(regs, device=W.device, dtype=W.dtype)
        self.lr = torch.zeros(len(ids), device=W.device, dtype=W.dtype)
        self.velocity: list[Tensor | None] = [None, None]  # of W and b, with momentum

    def step(self, x: Tensor, y: Tensor, per_example_loss, penalty, momentum: float
             ) -> tuple[Tensor, Tensor, Tensor]:
        """One SGD step of every model on the batch (x, y); returns the data losses L (A,),
        the penalties R (A,) and the scores, detached.

        The objective is sum_k (L_k + reg_k R_k): model k's gradient is that of its own loss.
        """
        s = stacked.scores(self.W, x, self.b)
        L = stacked.data_losses(per_example_loss, s, y)
        # fit leaves R out at reg = 0, so an overflowing R cannot make such a model diverge
        R = torch.where(self.reg > 0, penalty(self.W), 0.0)
        self.W.grad = self.b.grad = None
        (L + self.reg * R).sum().backward()
        # each model's SGD step, fit's, with its own learning rate
        for i, (p, lr) in enumerate([(self.W, self.lr.view(-1, 1, 1)),
                                     (self.b, self.lr.view(-1, 1))]):
            self.velocity[i] = sgd_step(p, p.grad, lr, momentum, self.velocity[i])
        return L.detach(), R.detach(), s.detach()

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows only (the others diverged)."""
        index = torch.tensor(rows, device=self.W.device, dtype=torch.long)
        self.W = self.W.detach().index_select(0, index).requires_grad_()
        self.b = self.b.detach().index_select(0, index).requires_grad_()
        self.velocity = [v if v is None else v.index_select(0, index) for v in self.velocity]
        self.ids = [self.ids[r] for r in rows]
        self.reg, self.lr = self.reg.index_select(0, index), self.lr.index_select(0, index)


@dataclass
class Sweep:
    """Everything one sweep holds. Under torchrun each process trains the grid models
    ``mine`` (every size-th one), and every process keeps every model's history."""

    cfgs: list[train.TrainConfig]
    lrs: list[float]
    regs: list[float]
    world: distributed.World
    device: torch.device
    data: data.Prepared
    stack: Stack
    per_example_loss: object
    sweep_dir: Path
    names: list[str]
    data_load_s: float
    writers: list | None = None
    step: object = None  # (x, y) -> sweep_step's results: sweep_step, or its CUDA graph
    histories: list = field(default_factory=list)
    diverged: list = field(default_factory=list)
    final_W: Tensor | None = None
    final_b: Tensor | None = None

    @property
    def cfg(self) -> train.TrainConfig:
        return self.cfgs[0]

    @property
    def quiet(self) -> bool:
        return self.cfg.quiet or not self.world.main


def run(config: train.TrainConfig, lrs, regs, prepared: data.Prepared | None = None) -> dict:
    """Train the linear classifier of ``config`` for every (lr, reg) of the grid, all at once;
    returns what ``sweep.json`` holds."""
    return train_sweep(config, lrs, regs, prepared)[1]


def train_sweep(config: train.TrainConfig, lrs, regs, prepared: data.Prepared | None = None
                ) -> tuple[list[LinearClassifier], dict]:
    """``run``, also returning the K trained models in grid order (lr major). ``prepared``
    replaces the data set named in the config by tensors already in memory.

    A model whose loss turns NaN or infinite during an epoch is dropped from the stack at the
    end of that epoch and keeps the weights it had at the epoch's start (its last good ones).
    Until then its NaNs cannot reach the others: every score, loss and gradient entry belongs
    to one model.
    """
    t_start = time.perf_counter()
    sw = start(config, lrs, regs, prepared)
    try:
        for epoch in range(1, sw.cfg.epochs + 1):
            if not train_epoch(sw, epoch):
                break
        train_time_s = time.perf_counter() - t_start - sw.data_load_s
        return finish(sw, train_time_s, time.perf_counter() - t_start)
    finally:
        for writer in sw.writers or []:
            writer.close()


def start(config: train.TrainConfig, lrs, regs, prepared: data.Prepared | None) -> Sweep:
    """Data, the models stacked with fit's initial weights, the sweep folder."""
    lrs, regs = check_grid(lrs, regs)
    cfgs = grid_configs(config, lrs, regs)
    cfg, K = cfgs[0], len(cfgs)
    world, device = distributed.join(cfg.device)
    d, data_load_s, loaded = train.open_data(cfg, world, device, prepared)
    if len(d.val_y) == 0:
        raise data.DataError(f"{loaded}, and the sweep chooses its model on the validation "
                             "split: give --val-size of at least 1")
    for c in cfgs:
        c.val_size = len(d.val_y)

    # Every model starts from the weights fit() would draw for it: the same seed, the same model.
    torch.manual_seed(cfg.seed)
    init = train.build_model(cfg, math.prod(d.image_shape), len(d.classes))
    W, b = (p.detach().to(device, getattr(torch, cfg.dtype)) for p in (init.weight, init.bias))
    mine = list(range(K))[world.rank::world.size]
    stack = Stack(W.expand(len(mine), -1, -1).clone(), b.expand(len(mine), -1).clone(),
                  [cfgs[k].reg for k in mine], mine)
    sweep_dir = train.run_folder(world, cfg.logdir,
                                 cfg.run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    names = [model_name(c.lr, c.reg) for c in cfgs]
    sw = Sweep(cfgs, lrs, regs, world, device, d, stack,
               losses.loss_fn(cfg.loss, cfg.impl, "none"), sweep_dir, names,
               data_load_s, histories=[[] for _ in cfgs], diverged=[None] * K,
               final_W=W.expand(K, -1, -1).clone(), final_b=b.expand(K, -1).clone())
    sw.step = lambda x, y: sweep_step(sw, x, y)
    if cfg.tensorboard and world.main:
        sw.writers = open_writers(cfgs, sw.sweep_dir, names)
    # On a GPU each step is replayed from a CUDA graph, as in fit, captured again only when
    # models drop out (the stack's tensors are new then).
    if device.type == "cuda" and cfg.cuda_graphs and not cfg.augment:
        sw.step = GraphedStep(sw.step, cfg.batch_size, device, key=lambda: tuple(stack.ids))
    processes = f" x {world.size} processes" if world.size > 1 else ""
    console.say(sw.quiet, f"{loaded}; {K} linear models ({len(lrs)} lr x {len(regs)} reg), "
                          f"{cfg.loss} loss ({cfg.impl}), device {device}{processes}; sweep "
                          f"folder {sw.sweep_dir}")
    return sw


def sweep_step(sw: Sweep, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One SGD step of every model still training, on the batch (x, y): the data losses L,
    the penalties R and how many examples each model classified right, (A,) each."""
    L, R, s = sw.stack.step(x, y, sw.per_example_loss, losses.STACKED_PENALTIES[sw.cfg.reg_type],
                            sw.cfg.momentum)
    return L, R, stacked.correct(s, y)


def train_epoch(sw: Sweep, epoch: int) -> int:
    """One pass over the training split for every model; then drop those that diverged and
    evaluate the others on the validation split. Returns how many models still train."""
    cfg, d, stack = sw.cfg, sw.data, sw.stack
    t_epoch = time.perf_counter()
    lrs = [train.lr_at(c, epoch) for c in sw.cfgs]
    diverged, sums = {}, None
    if stack.ids:
        stack.lr.copy_(torch.tensor([lrs[k] for k in stack.ids], dtype=torch.float64))
        start_W, start_b = stack.W.detach().clone(), stack.b.detach().clone()
        gen = train.epoch_generator(cfg.seed, epoch, sw.device)
        batches = data.batch_indices(len(d.train_y), cfg.batch_size, gen, sw.device)
        desc = f"epoch {epoch}/{cfg.epochs}, {len(stack.ids)} models"
        steps = []
        for idx in console.progress(batches, desc, sw.quiet):
            x, y = train.minibatch(d, idx, gen if cfg.augment else None)
            L, R, correct = sw.step(x, y)
            steps.append(torch.stack((L * len(y), R * len(y), correct.to(L.dtype))))

        # Once per epoch the host reads what happened: drop the models that diverged.
        loss_sums, penalty_sums, corrects = torch.stack(steps).double().unbind(1)  # (steps, A)
        bad = ~torch.isfinite(loss_sums + penalty_sums)
        bad_steps = torch.where(bad.any(0), bad.int().argmax(0) + 1, 0).tolist()  # 1, 2, ...
        good = [j for j, step in enumerate(bad_steps) if not step]
        for j, k in enumerate(stack.ids):
            if bad_steps[j]:
                diverged[k] = {"epoch": epoch, "step": bad_steps[j]}
                sw.final_W[k], sw.final_b[k] = start_W[j], start_b[j]
        sums = torch.stack([loss_sums.sum(0), corrects.sum(0), penalty_sums.sum(0)])[:, good]
        if len(good) < len(bad_steps):
            stack.keep(good)
    training = gather_epoch(sw, epoch, epoch_rows(sw, epoch, sums, lrs, t_epoch), diverged)
    if training:
        best = max(training, key=lambda k: sw.histories[k][-1]["val_accuracy"])
        console.say(sw.quiet, f"epoch {epoch:3d}/{cfg.epochs} | best val acc "
                              f"{100 * sw.histories[best][-1]['val_accuracy']:6.2f}% "
                              f"({sw.names[best]}) | {len(training)}/{len(sw.cfgs)} models "
                              f"training | {time.perf_counter() - t_epoch:.2f}s")
    return len(training)


def epoch_rows(sw: Sweep, epoch: int, sums: Tensor | None, lrs: list[float], t_epoch: float
               ) -> dict[int, dict]:
    """The epoch's history row of each model this process still trains, validation included."""
    stack, d = sw.stack, sw.data
    if not stack.ids:
        return {}
    val_loss, val_acc = evaluate_stack(stack.W, stack.b, d.val_x, d.val_y, sw.per_example_loss)
    stats = torch.cat([sums / len(d.train_y), torch.stack([val_loss, val_acc])]).cpu().tolist()
    return {k: {"epoch": epoch, "train_loss": stats[0][j], "train_accuracy": stats[1][j],
                "val_loss": stats[3][j], "val_accuracy": stats[4][j], "lr": lrs[k],
                "penalty": stats[2][j], "epoch_time_s": time.perf_counter() - t_epoch}
            for j, k in enumerate(stack.ids)}


def gather_epoch(sw: Sweep, epoch: int, rows: dict, diverged: dict) -> list[int]:
    """Every process learns every model's epoch (under torchrun); process 0 shows it. Returns
    the grid models that trained this epoch."""
    for mine_rows, mine_diverged in sw.world.gather((rows, diverged)):
        for k, row in mine_rows.items():
            sw.histories[k].append(row)
            if sw.writers is not None:
                board.log_epoch(sw.writers[k], row)
        for k, where in mine_diverged.items():
            sw.diverged[k] = where
    return [k for k in range(len(sw.cfgs))
            if sw.histories[k] and sw.histories[k][-1]["epoch"] == epoch]


def finish(sw: Sweep, train_time_s: float, wall_time_s: float
           ) -> tuple[list[LinearClassifier], dict]:
    """Every model on the validation and test splits; ``sweep.json``; the table."""
    cfg, d, stack = sw.cfg, sw.data, sw.stack
    final = {}
    if stack.ids:
        index = torch.tensor(stack.ids, device=sw.device)
        sw.final_W.index_copy_(0, index, stack.W.detach())
        sw.final_b.index_copy_(0, index, stack.b.detach())
        # No final pass over the training split: for K models it costs half an epoch, and the
        # history already holds each epoch's training loss and accuracy.
        for split, x, y in [("val", d.val_x, d.val_y), ("test", d.test_x, d.test_y)]:
            loss, acc = evaluate_stack(stack.W, stack.b, x, y, sw.per_example_loss)
            for k, values in zip(stack.ids, zip(loss.tolist(), acc.tolist())):
                final.setdefault(k, {})[split] = values
    mine = list(range(len(sw.cfgs)))[sw.world.rank::sw.world.size]
    for part in sw.world.gather(
            [(k, final.get(k), sw.final_W[k].cpu(), sw.final_b[k].cpu()) for k in mine]):
        for k, values, W, b in part:  # every process's models, on every process
            final[k] = values
            sw.final_W[k], sw.final_b[k] = W, b
    models = []
    for k, c in enumerate(sw.cfgs):
        entry = {"lr": c.lr, "reg": c.reg, "name": sw.names[k],
                 "run_dir": str(sw.sweep_dir / sw.names[k]) if cfg.tensorboard else None,
                 "diverged": sw.diverged[k] is not None, "diverged_at": sw.diverged[k],
                 "history": sw.histories[k]}
        for split in ("val", "test"):
            loss, acc = final[k][split] if final[k] else (None, None)
            entry[split] = {"loss": loss if loss is not None and math.isfinite(loss) else None,
                            "accuracy": acc}
        models.append(entry)
    device = sw.device
    result = {"config": {**dataclasses.asdict(cfg), "lr": None, "reg": None},
              "grid": {"lr": sw.lrs, "reg": sw.regs},
              "models": models, "best": best_model(models),
              "data_load_s": sw.data_load_s, "train_time_s": train_time_s,
              **distributed.environment(device, sw.world),
              "sweep_dir": str(sw.sweep_dir), "wall_time_s": wall_time_s}
    if sw.world.main:
        files.write_json(sw.sweep_dir / "sweep.json", result)
    for k, writer in enumerate(sw.writers or []):
        log_final(writer, sw.cfgs[k], models[k])

    trained = []
    for W, b in zip(sw.final_W, sw.final_b):
        model = LinearClassifier(W.shape[1], W.shape[0]).to(device=device, dtype=W.dtype)
        with torch.no_grad():
            model.weight.copy_(W)
            model.bias.copy_(b)
        trained.append(model)
    if not sw.quiet:
        print(format_table(result))
    return trained, result


def best_model(models: list[dict]) -> dict | None:
    """The model with the highest validation accuracy (then the lowest validation loss)."""
    candidates = [m for m in models if not m["diverged"] and m["val"]["accuracy"] is not None]
    if not candidates:
        return None

    def key(m):
        loss = m["val"]["loss"]
        return (m["val"]["accuracy"], -(loss if loss is not None else math.inf))

    m = max(candidates, key=key)
    return {"lr": m["lr"], "reg": m["reg"], "name": m["name"],
            "val_accuracy": m["val"]["accuracy"], "test_accuracy": m["test"]["accuracy"],
            "test_loss": m["test"]["loss"]}


def format_table(result: dict) -> str:
    """Validation accuracy over the grid, one row per learning rate, the best marked with *."""
    by_point = {(m["lr"], m["reg"]): m for m in result["models"]}
    best, cfg = result["best"], result["config"]

    def cell(lr: float, reg: float) -> str:
        m = by_point[(lr, reg)]
        if m["diverged"]:
            return "diverged"
        mark = "*" if best and (best["lr"], best["reg"]) == (lr, reg) else " "
        return f"{100 * m['val']['accuracy']:.2f}{mark}"

    regs = result["grid"]["reg"]
    lines = [console.format_table(
        f"validation accuracy (%) of {len(result['models'])} models, {cfg['loss']} loss, "
        f"{cfg['epochs']} epochs:", ["lr \\ reg", *(f"{reg:g} " for reg in regs)],
        [[f"{lr:g}", *(cell(lr, reg) for reg in regs)] for lr in result["grid"]["lr"]])]
    if best is None:
        lines.append("every model diverged: try smaller learning rates")
    else:
        lines.append(f"best on validation (*): lr={best['lr']:g}, reg={best['reg']:g}: "
                     f"val {100 * best['val_accuracy']:.2f}%, "
                     f"test {100 * best['test_accuracy']:.2f}%")
    if cfg["tensorboard"]:
        lines.append(f"sweep.json and TensorBoard runs in {result['sweep_dir']} "
                     f"(view with: tensorboard --logdir {shlex.quote(cfg['logdir'])})")
    else:  # as train's summary: no runs were written, so none are named
        lines.append(f"sweep.json in {result['sweep_dir']}")
    return "\n".join(lines)


def open_writers(cfgs, sweep_dir: Path, names: list[str]) -> list:
    from torch.utils.tensorboard import SummaryWriter

    writers = []
    for c, name in zip(cfgs, names):
        writer = SummaryWriter(str(sweep_dir / name))
        board.log_config_text(writer, dataclasses.asdict(c))
        writers.append(writer)
    return writers


def log_final(writer, cfg: train.TrainConfig, model: dict) -> None:
    e = model["history"][-1]["epoch"] if model["history"] else 0
    val = model["val"]["accuracy"]
    board.log_final(writer, {**train.recipe(cfg), "diverged": model["diverged"]}, e,
                    model["test"]["accuracy"], {"hparam/val_accuracy": math.nan if val is None
                                                else val})


def build_parser() -> argparse.ArgumentParser:
    from . import cli
    from .config import defaults_epilog

    parser = argparse.ArgumentParser(
        prog="python -m lintorch.sweep",
        description="Train a linear classifier for every (learning rate, regularization) pair "
                    "of a grid, all in one pass over the data; print the grid of validation "
                    "accuracies and the test accuracy of the best model.",
        formatter_class=cli.HelpFormatter, epilog=defaults_epilog("linear"))
    parser.add_argument("--lr", type=cli.positive(float), nargs="+", required=True,
                        metavar="LR", help="learning rates alpha of the grid (each > 0)")
    parser.add_argument("--reg", type=cli.non_negative(float), nargs="+", required=True,
                        metavar="REG", help="regularization strengths lambda of the grid "
                                            "(each >= 0)")
    cli.add_training_flags(parser, skip=("lr", "reg", "resume"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from . import cli

    parser = build_parser()
    args = parser.parse_args(argv)
    lrs, regs = args.lr, args.reg
    try:
        cfg = dataclasses.replace(train.config_from_args(args), lr=None, reg=None)
        grid_configs(cfg, lrs, regs)  # a bad grid or combination is a usage error, before any data
    except ValueError as e:
        parser.error(str(e))

    def work() -> None:
        run(cfg, lrs, regs)

    return cli.run_main(work)


if __name__ == "__main__":
    distributed.exit(main())
