"""A (learning rate x regularization) grid of linear classifiers, trained in one pass over the data.

    python -m lintorch.sweep --dataset fashion-mnist --lr 1e-3 1e-2 1e-1 --reg 0 1e-4 1e-3

The K = |lr| x |reg| models train through ``lintorch.train``'s own loop as one model: their
weights stacked into one (K, C, D) tensor (``stacked.StackedLinear``), one matrix product scores
the batch under all of them, the hand-written loss is applied once to all K * B rows of scores,
and each model takes its own SGD step with its own learning rate, schedule and penalty: the
updates ``lintorch.train.fit`` would give it alone, so in float64 its final weights agree with
fit's to rounding. What a grid adds is ``Grid``'s: a model whose loss turns NaN or infinite
stops with its last good weights while the others go on; under torchrun the processes divide
the models; ``run(config, lrs, regs)`` returns what ``sweep.json`` holds; the CLI also prints
the grid of validation accuracies and writes one TensorBoard run per model
(``runs/sweep-<time>/lr=...,reg=...``, with hparams).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import time

import torch
from torch import Tensor

from . import board, console, data, distributed, files, losses, stacked, train
from .config import out_of_bounds
from .models import LinearClassifier


def check_grid(lrs, regs) -> tuple[list[float], list[float]]:
    """The grid as two lists of floats; ValueError if one is empty, holds a repeat, a learning
    rate that is not positive or a strength that is negative (or either not finite)."""
    checked = []
    for name, values, bound in [("lr", lrs, "positive"), ("reg", regs, "non_negative")]:
        values = [float(v) for v in values]
        if not values:
            raise ValueError(f"the --{name} grid is empty; give at least one value")
        for v in values:
            if problem := out_of_bounds(v, bound):  # the one rule of every bounded number
                raise ValueError(f"--{name} values must each be {problem}, got {v:g}")
        if len(set(values)) != len(values):
            raise ValueError(f"--{name} lists a value twice: {' '.join(f'{v:g}' for v in values)}")
        checked.append(values)
    return checked[0], checked[1]


def model_name(lr: float, reg: float) -> str:
    """``lr=0.001,reg=0.0001``: short, and distinct for distinct values."""
    def short(v: float) -> str:
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    return f"lr={short(lr)},reg={short(reg)}"


def run(config: train.TrainConfig, lrs, regs, prepared: data.Prepared | None = None, *,
        loss=None) -> dict:
    """Train the linear classifier of ``config`` for every (lr, reg) of the grid, all at once;
    returns what ``sweep.json`` holds. ``loss``: as ``train.fit``'s, applied to each model's
    own (N, C) scores."""
    return train_sweep(config, lrs, regs, prepared, loss=loss)[1]


def train_sweep(config: train.TrainConfig, lrs, regs, prepared: data.Prepared | None = None, *,
                loss=None) -> tuple[list[LinearClassifier], dict]:
    """``run``, also returning the K trained models in grid order (lr major). ``prepared``
    replaces the data set named in the config by tensors already in memory."""
    grid = Grid(config, lrs, regs)
    result = train.train_model(grid.config, prepared, loss=loss, grid=grid)[1]
    return grid.classifiers(), result


class Grid:
    """What a grid adds to ``train``'s run, whose model is the grid's models stacked: each
    model's learning rate and lambda; dropping a model that diverged; under torchrun, which
    models are this process's (every size-th one); each model's history and TensorBoard run;
    the final figures, ``sweep.json`` and the table.

    A model whose loss turns NaN or infinite during an epoch is dropped from the stack at the
    end of that epoch and keeps the weights it had at the epoch's start (its last good ones).
    Until then its NaNs cannot reach the others: every score, loss and gradient entry belongs
    to one model.
    """

    def __init__(self, config: train.TrainConfig, lrs, regs) -> None:
        """The grid, checked (ValueError): learning rate major, (lr_0, reg_0), (lr_0, reg_1), ...
        Its values replace ``config.lr`` and ``config.reg``; every other field is shared."""
        self.lrs, self.regs = check_grid(lrs, regs)
        if config.model != "linear":
            raise ValueError("the sweep trains linear classifiers only, not --model "
                             f"{config.model}")
        if config.resume:
            raise ValueError("a sweep cannot resume a run; start it again")
        self.config = dataclasses.replace(config, lr=self.lrs[0], reg=self.regs[0])
        if self.config.resolved().val_size == 0:
            raise ValueError("the sweep chooses its model on the validation split: "
                             "--val-size must be at least 1")
        self.names = [model_name(lr, reg) for lr in self.lrs for reg in self.regs]
        self.writers: list | None = None

    def stack(self, cfg: train.TrainConfig, model: LinearClassifier, world: distributed.World,
              loaded: str) -> stacked.StackedLinear:
        """This process's models of the grid, stacked, each starting from ``model``'s weights
        (those fit draws for it)."""
        if cfg.val_size == 0:
            raise data.DataError(f"{loaded}, and the sweep chooses its model on the validation "
                                 "split: give --val-size of at least 1")
        self.cfgs = [dataclasses.replace(cfg, lr=lr, reg=reg) for lr in self.lrs
                     for reg in self.regs]
        K, self.world = len(self.cfgs), world
        self.mine = list(range(K))[world.rank::world.size]
        self.ids = list(self.mine)  # the models still training here
        self.histories, self.diverged = [[] for _ in range(K)], [None] * K
        W, b = model.weight.detach(), model.bias.detach()
        self.final_W, self.final_b = W.expand(K, -1, -1).clone(), b.expand(K, -1).clone()
        self.reg = torch.tensor([self.cfgs[k].reg for k in self.ids], device=W.device,
                                dtype=W.dtype)
        self.lr, self.epoch_lrs = torch.zeros_like(self.reg), []
        self.model = stacked.StackedLinear(W.expand(len(self.ids), -1, -1).clone(),
                                           b.expand(len(self.ids), -1).clone())
        return self.model

    def attach(self, run: train.Run) -> None:
        """The models' TensorBoard runs (process 0's); a process without models idles."""
        if run.cfg.tensorboard and self.world.main:
            from torch.utils.tensorboard import SummaryWriter

            self.writers = []
            for c, name in zip(self.cfgs, self.names):
                self.writers.append(SummaryWriter(str(run.run_dir / name)))
                board.log_config_text(self.writers[-1], dataclasses.asdict(c))
        if not self.ids:
            self.idle(run)

    def describe(self) -> str:
        return f"{len(self.names)} linear models ({len(self.lrs)} lr x {len(self.regs)} reg)"

    def lr_at(self, epoch: int) -> Tensor:
        """Each model's learning rate of the epoch, (A,), in place (a captured step reads it)."""
        self.epoch_lrs = [train.lr_at(c, epoch) for c in self.cfgs]
        self.lr.copy_(torch.tensor([self.epoch_lrs[k] for k in self.ids], dtype=torch.float64))
        return self.lr

    def penalty(self) -> Tensor:
        """R(W_k) of each model, (A,); 0 where lambda_k = 0, as fit leaves R out there: an R that
        overflows cannot make such a model diverge."""
        R = losses.STACKED_PENALTIES[self.config.reg_type](self.model.weight)
        return torch.where(self.reg > 0, R, 0.0)

    def end_epoch(self, run: train.Run, epoch: int, steps: list[Tensor], t_epoch: float
                  ) -> list[int]:
        """The steps' figures read once: the models that diverged dropped, the others
        validated; every process learns every model's epoch. Returns the models that trained
        this epoch (none: the sweep is over)."""
        rows, diverged = {}, {}
        if self.ids:
            loss_sums, penalty_sums, corrects = torch.stack(steps).double().unbind(1)  # (S, A)
            bad = ~torch.isfinite(loss_sums + penalty_sums)
            bad_steps = torch.where(bad.any(0), bad.int().argmax(0) + 1, 0).tolist()  # 1, 2, ...
            diverged = {k: {"epoch": epoch, "step": step}
                        for k, step in zip(self.ids, bad_steps) if step}
            sums = torch.stack([loss_sums.sum(0), corrects.sum(0), penalty_sums.sum(0)])
            good = [j for j, step in enumerate(bad_steps) if not step]
            if len(good) < len(self.ids):
                self.keep(run, good)
                sums = sums[:, good]
            if self.ids:
                rows = self.epoch_rows(run, epoch, sums, t_epoch)
        training = self.gather_epoch(epoch, rows, diverged)
        if training:
            best = max(training, key=lambda k: self.histories[k][-1]["val_accuracy"])
            console.say(run.quiet, f"epoch {epoch:3d}/{run.cfg.epochs} | best val acc "
                                   f"{100 * self.histories[best][-1]['val_accuracy']:6.2f}% "
                                   f"({self.names[best]}) | {len(training)}/{len(self.names)} "
                                   f"models training | {time.perf_counter() - t_epoch:.2f}s")
        return training

    def keep(self, run: train.Run, rows: list[int]) -> None:
        """Go on with these models only (the others diverged); their momentum goes with them."""
        index = torch.tensor(rows, device=self.reg.device, dtype=torch.long)
        state = run.optimizer.state_dict()
        for buffers in state["state"].values():
            buffers["momentum_buffer"] = buffers["momentum_buffer"].index_select(0, index)
        self.model.select(index)
        run.optimizer = type(run.optimizer)(self.model.parameters(), lr=0.0,
                                            momentum=run.cfg.momentum)
        run.optimizer.load_state_dict(state)
        self.ids = [self.ids[r] for r in rows]
        self.reg, self.lr = self.reg.index_select(0, index), self.lr.index_select(0, index)
        if not self.ids:
            self.idle(run)

    def idle(self, run: train.Run) -> None:
        """No models left here: take no steps, but meet the other processes at each epoch's end."""
        none = self.reg.new_zeros(0)
        run.step = lambda x, y: (none, none, none)

    def epoch_rows(self, run: train.Run, epoch: int, sums: Tensor, t_epoch: float
                   ) -> dict[int, dict]:
        """The epoch's history row of each model this process still trains, validation
        included; their weights are now the last good ones."""
        d, index = run.data, torch.tensor(self.ids, device=self.reg.device)
        self.final_W.index_copy_(0, index, self.model.weight.detach())
        self.final_b.index_copy_(0, index, self.model.bias.detach())
        val_loss, val_acc, _ = train.evaluate(self.model, d.val_x, d.val_y, run.loss, self.rows())
        stats = torch.cat([sums / len(d.train_y), torch.stack([val_loss, val_acc])]).cpu().tolist()
        return {k: {"epoch": epoch, "train_loss": stats[0][j], "train_accuracy": stats[1][j],
                    "val_loss": stats[3][j], "val_accuracy": stats[4][j],
                    "lr": self.epoch_lrs[k], "penalty": stats[2][j],
                    "epoch_time_s": time.perf_counter() - t_epoch}
                for j, k in enumerate(self.ids)}

    def rows(self, max_scores: int = 1 << 22) -> int:
        """Examples to score at a time: scores of at most ``max_scores`` numbers."""
        _, c, _ = self.model.weight.shape
        return max(1, max_scores // (len(self.ids) * c))

    def gather_epoch(self, epoch: int, rows: dict, diverged: dict) -> list[int]:
        """Every process learns every model's epoch (under torchrun); process 0 logs it.
        Returns the grid models that trained this epoch."""
        for mine_rows, mine_diverged in self.world.gather((rows, diverged)):
            for k, row in mine_rows.items():
                self.histories[k].append(row)
                if self.writers is not None:
                    board.log_epoch(self.writers[k], row)
            for k, where in mine_diverged.items():
                self.diverged[k] = where
        return [k for k in range(len(self.names))
                if self.histories[k] and self.histories[k][-1]["epoch"] == epoch]

    def results(self, run: train.Run, config: dict, elapsed_s: float) -> dict:
        """Every model on the validation and test splits; ``sweep.json``; the table."""
        final = self.final_figures(run)
        models = []
        for k, c in enumerate(self.cfgs):
            entry = {"lr": c.lr, "reg": c.reg, "name": self.names[k],
                     "run_dir": str(run.run_dir / self.names[k]) if c.tensorboard else None,
                     "diverged": self.diverged[k] is not None, "diverged_at": self.diverged[k],
                     "history": self.histories[k]}
            for split in ("val", "test"):
                loss, acc = final[k][split] if final[k] else (None, None)
                entry[split] = {"loss": loss if loss is not None and math.isfinite(loss)
                                else None, "accuracy": acc}
            models.append(entry)
        result = {"config": {**config, "lr": None, "reg": None},
                  "grid": {"lr": self.lrs, "reg": self.regs},
                  "models": models, "best": best_model(models),
                  "data_load_s": run.data_load_s, "train_time_s": elapsed_s - run.data_load_s,
                  **distributed.environment(run.device, self.world),
                  "sweep_dir": str(run.run_dir), "wall_time_s": elapsed_s}
        if self.world.main:
            files.write_json(run.run_dir / "sweep.json", result)
        for k, writer in enumerate(self.writers or []):
            log_final(writer, self.cfgs[k], models[k])
        if not run.quiet:
            print(format_table(result))
        return result

    def final_figures(self, run: train.Run) -> list:
        """Each model's (loss, accuracy) on the validation and test splits, on every process,
        and its final weights; None for a model that diverged in its first epoch."""
        final, d = {}, run.data
        if self.ids:  # their final weights are in final_W and final_b since their last epoch
            # No final pass over the training split: for K models it costs half an epoch, and
            # the history already holds each epoch's training loss and accuracy.
            for split, x, y in [("val", d.val_x, d.val_y), ("test", d.test_x, d.test_y)]:
                loss, acc, _ = train.evaluate(self.model, x, y, run.loss, self.rows())
                for k, values in zip(self.ids, zip(loss.tolist(), acc.tolist())):
                    final.setdefault(k, {})[split] = values
        for part in self.world.gather([(k, final.get(k), self.final_W[k].cpu(),
                                        self.final_b[k].cpu()) for k in self.mine]):
            for k, values, W, b in part:  # every process's models, on every process
                final[k] = values
                self.final_W[k], self.final_b[k] = W, b
        return [final[k] for k in range(len(self.names))]

    def classifiers(self) -> list[LinearClassifier]:
        """The K trained models, in grid order."""
        trained = []
        for W, b in zip(self.final_W, self.final_b):
            model = LinearClassifier(W.shape[1], W.shape[0]).to(device=W.device, dtype=W.dtype)
            with torch.no_grad():
                model.weight.copy_(W)
                model.bias.copy_(b)
            trained.append(model)
        return trained

    def close(self) -> None:
        for writer in self.writers or []:
            writer.close()


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
    try:  # a bad grid or combination is a usage error, before any data is read
        grid = Grid(dataclasses.replace(train.config_from_args(args), lr=None, reg=None),
                    args.lr, args.reg)
    except ValueError as e:
        parser.error(str(e))

    def work() -> None:
        train.train_model(grid.config, grid=grid)

    return cli.run_main(work)


if __name__ == "__main__":
    distributed.exit(main())
