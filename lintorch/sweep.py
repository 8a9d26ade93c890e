"""A (learning rate x regularization) grid of linear classifiers, trained in one pass over the data.

    python -m lintorch.sweep --dataset fashion-mnist --lr 1e-3 1e-2 1e-1 --reg 0 1e-4 1e-3

Choosing the learning rate and the regularization strength on the validation split is usually
done one model at a time. Here the K = |lr| x |reg| models share every mini-batch: their weights
are stacked into one (K, C, D) tensor, one matrix product scores the batch under all of them,
lintorch's hand-written loss is applied once to all K * B rows of scores, and each model takes
its own SGD step with its own learning rate, schedule and penalty. The batch order, indexing and
per-step overhead are paid once instead of K times; the arithmetic is K times one model's
(nearly free on a GPU, the bulk of a step on a CPU).

Each model gets the updates ``lintorch.train.fit`` would give it alone: the same initial
weights, batch order, learning-rate schedule and gradient, so in float64 its final weights agree
with fit's to rounding. A model whose loss turns NaN or infinite is marked diverged and stops
training with its last good weights; the others go on. ``run(config, lrs, regs)`` is the API;
the CLI prints the grid of validation accuracies and the test accuracy of the model chosen on
validation, and writes ``sweep.json`` and one TensorBoard run per model
(``runs/sweep-<time>/lr=...,reg=...``, shown together in the HPARAMS tab).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from . import board, data, losses, train
from .cuda_graph import GraphedStep
from .models import LinearClassifier

# ---------------------------------------------------------------------------------------------
# The grid


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
    if base.val_size < 1:
        raise ValueError("the sweep chooses its model on the validation split: "
                         "--val-size must be at least 1")
    return [dataclasses.replace(base, lr=lr, reg=reg) for lr in lrs for reg in regs]


def model_name(lr: float, reg: float) -> str:
    """``lr=0.001,reg=0.0001``: short, and distinct for distinct values."""
    def short(v: float) -> str:
        return f"{v:g}" if float(f"{v:g}") == v else repr(v)
    return f"lr={short(lr)},reg={short(reg)}"


# ---------------------------------------------------------------------------------------------
# K models at once: stacked weights W (K, C, D), biases b (K, C)


def stacked_scores(W: Tensor, b: Tensor, x: Tensor) -> Tensor:
    """Scores of every model, ``(N, K, C)``: ``s[n, k] = W_k x_n + b_k``.

    One (N, D) x (D, K*C) matrix product: faster than a batched (K, N, C) one, which would copy
    x K times. The (N, K, C) layout flattens to K*N rows of scores without a copy.
    """
    k, c, d = W.shape
    return torch.addmm(b.reshape(k * c), x.flatten(1), W.reshape(k * c, d).T).view(-1, k, c)


def per_example_loss(loss: str, impl: str):
    """(scores (M, C), labels (M,)) -> the M losses L_i, unreduced."""
    if impl == "lintorch":
        return lambda s, y, unchecked=losses.UNCHECKED[loss]: unchecked(s, y, "none")
    if loss == "svm":  # torch's rows are divided by C; the lecture's are not
        return lambda s, y: s.shape[1] * F.multi_margin_loss(s, y, reduction="none")
    return lambda s, y: F.cross_entropy(s, y, reduction="none")


def data_losses(loss_fn, scores: Tensor, y: Tensor) -> Tensor:
    """Mean data loss ``L = 1/N sum_i L_i`` of each model, ``(K,)``, from ``(N, K, C)`` scores.

    The loss is applied once, to all N*K rows (row n*K + k is example n under model k). The
    gradient of ``L.sum()`` with respect to model k's scores is that of its own L alone.
    """
    n, k, c = scores.shape
    return loss_fn(scores.reshape(n * k, c), y.repeat_interleave(k)).view(n, k).mean(0)


# R(W_k) of each model, (K,), from W (K, C, D): the penalties of losses.PENALTIES batched over
# the first dimension. Autograd's gradients of these forms are the hand-written ones to the bit
# (d(w*w) = g*w + g*w = 2*w*g; d|w| = sign(w)*g; tested against the vmapped Functions), at a
# third of the cost of vmapping them: vmap's per-call overhead alone is ~0.6 ms a step on a CPU.
BATCHED_PENALTIES = {
    "l2": lambda W: (W * W).sum((1, 2)),
    "l1": lambda W: W.abs().sum((1, 2)),
}


@torch.no_grad()
def evaluate_stack(W: Tensor, b: Tensor, x: Tensor, y: Tensor, loss_fn,
                   max_scores: int = 1 << 22) -> tuple[Tensor, Tensor]:
    """(mean loss, accuracy) of every model on (x, y), each ``(K,)`` float64 on the device."""
    k, c, _ = W.shape
    loss_sum = torch.zeros(k, device=x.device, dtype=torch.float64)
    correct = torch.zeros(k, device=x.device, dtype=torch.long)
    rows = max(1, max_scores // (k * c))
    for i in range(0, x.shape[0], rows):
        s, t = stacked_scores(W, b, x[i:i + rows]), y[i:i + rows]
        loss_sum += loss_fn(s.reshape(-1, c), t.repeat_interleave(k)).view(-1, k).double().sum(0)
        correct += (s.argmax(2) == t.unsqueeze(1)).sum(0)
    n = x.shape[0] if x.shape[0] else float("nan")  # no examples: NaN, as train.evaluate
    return loss_sum / n, correct.double() / n


class _Schedules:
    """Each model's learning rate per epoch, from ``train.make_scheduler`` itself: one param
    group per model on a dummy optimizer, so every value equals the one ``fit`` would use."""

    def __init__(self, cfgs: list[train.TrainConfig]):
        groups = [{"params": [torch.zeros(())], "lr": cfg.lr} for cfg in cfgs]
        self.optimizer = torch.optim.SGD(groups, lr=cfgs[0].lr)
        self.scheduler = train.make_scheduler(cfgs[0], self.optimizer)

    def lrs(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def step(self) -> None:
        self.optimizer.step()  # no gradients: a no-op that keeps the scheduler's order check quiet
        self.scheduler.step()


class _Stack:
    """The models still training, stacked: weights W (A, C, D), biases b (A, C), their SGD
    momentum buffers, their learning rates (negated, ``neg_lr`` (A,)) and ``ids``, which of
    the K grid models each row is."""

    def __init__(self, W: Tensor, b: Tensor, regs: list[float], ids: list[int]):
        self.W, self.b = W.requires_grad_(), b.requires_grad_()
        self.ids, self.regs = ids, regs
        self.reg = torch.tensor(regs, device=W.device, dtype=W.dtype)
        self.neg_lr = torch.zeros(len(ids), device=W.device, dtype=W.dtype)
        self.buffers: tuple[Tensor, Tensor] | None = None

    def set_lrs(self, lrs: list[float]) -> None:
        """This epoch's rates, ``lrs[k]`` for grid model k, written in place (a captured step
        reads them from where they are)."""
        self.neg_lr.copy_(torch.tensor([-lrs[k] for k in self.ids], dtype=self.neg_lr.dtype))

    def step(self, x: Tensor, y: Tensor, loss_fn, penalty, momentum: float
             ) -> tuple[Tensor, Tensor, Tensor]:
        """One SGD step of every model on the batch (x, y), each with its own learning rate;
        returns the detached data losses L (A,), penalties R (A,) and scores.

        The objective is sum_k (L_k + reg_k R_k): model k's gradient is that of its own loss.
        """
        scores = stacked_scores(self.W, self.b, x)
        L = data_losses(loss_fn, scores, y)
        if any(self.regs):
            # fit() leaves R out at reg = 0, so an overflowing R cannot make such a model diverge
            R = torch.where(self.reg > 0, penalty(self.W), 0.0)
            objective = (L + self.reg * R).sum()
        else:
            R, objective = torch.zeros_like(L), L.sum()
        self.W.grad = self.b.grad = None
        objective.backward()
        with torch.no_grad():
            self._update(self.neg_lr, momentum)
        return L.detach(), R.detach(), scores.detach()

    def _update(self, neg_lr: Tensor, momentum: float) -> None:
        """``torch.optim.SGD``'s rule: buf = momentum * buf + grad (buf = grad at the first
        step), then p -= lr * buf."""
        grads = (self.W.grad, self.b.grad)
        if momentum:
            if self.buffers is None:
                self.buffers = tuple(g.clone() for g in grads)
            else:
                for buf, g in zip(self.buffers, grads):
                    buf.mul_(momentum).add_(g)
            grads = self.buffers
        self.W.addcmul_(grads[0], neg_lr.view(-1, 1, 1))
        self.b.addcmul_(grads[1], neg_lr.view(-1, 1))

    def keep(self, rows: list[int]) -> None:
        """Go on with these rows only (the others diverged)."""
        index = torch.tensor(rows, device=self.W.device, dtype=torch.long)
        self.W = self.W.detach().index_select(0, index).requires_grad_()
        self.b = self.b.detach().index_select(0, index).requires_grad_()
        if self.buffers is not None:
            self.buffers = tuple(buf.index_select(0, index) for buf in self.buffers)
        self.ids, self.regs = [self.ids[r] for r in rows], [self.regs[r] for r in rows]
        self.reg = self.reg.index_select(0, index)
        self.neg_lr = self.neg_lr.index_select(0, index)


class _Totals:
    """Each model's sums over one epoch's steps, on the device and updated in place (a captured
    graph writes to the same tensors at every replay), read by the host once per epoch."""

    def __init__(self, models: int, device: torch.device):
        self.loss = torch.zeros(models, device=device, dtype=torch.float64)
        self.penalty = torch.zeros(models, device=device, dtype=torch.float64)
        self.correct = torch.zeros(models, device=device, dtype=torch.long)
        self.first_bad = torch.full((models,), -1, device=device, dtype=torch.long)
        self.steps = torch.zeros((), device=device, dtype=torch.long)

    def reset(self) -> None:
        for t in (self.loss, self.penalty, self.correct, self.steps):
            t.zero_()
        self.first_bad.fill_(-1)

    @torch.no_grad()
    def add(self, L: Tensor, R: Tensor, scores: Tensor, y: Tensor) -> None:
        """One step's losses L (A,), penalties R (A,), scores (B, A, C) and labels y (B,)."""
        self.steps.add_(1)
        self.loss.add_(L * y.shape[0])
        self.penalty.add_(R * y.shape[0])
        # max().indices: argmax's first maximum, at half its cost here
        self.correct.add_((scores.max(2).indices == y.unsqueeze(1)).sum(0))
        bad = ~torch.isfinite(L + R) & (self.first_bad < 0)
        self.first_bad.copy_(torch.where(bad, self.steps, self.first_bad))


# ---------------------------------------------------------------------------------------------
# The training loop


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
    lrs, regs = check_grid(lrs, regs)
    cfgs = grid_configs(config, lrs, regs)
    cfg, K = cfgs[0], len(cfgs)
    device = train.pick_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)

    t0 = time.perf_counter()
    if prepared is None:
        d, source = train.load_data(cfg, device)
    else:
        d, source = prepared, "in-memory data"
    data_load_s = time.perf_counter() - t0
    num_classes, in_features = len(d.classes), math.prod(d.image_shape)

    # Every model starts from the weights fit() would draw for it: the same seed, the same model.
    torch.manual_seed(cfg.seed)
    init = train.build_model(cfg, in_features, num_classes).to(device=device, dtype=dtype)
    stack = _Stack(init.weight.detach().expand(K, -1, -1).clone(),
                   init.bias.detach().expand(K, -1).clone(), [c.reg for c in cfgs], list(range(K)))
    final_W, final_b = torch.empty_like(stack.W.detach()), torch.empty_like(stack.b.detach())
    loss_fn = per_example_loss(cfg.loss, cfg.impl)
    penalty = BATCHED_PENALTIES[cfg.reg_type]
    schedules = _Schedules(cfgs)

    sweep_dir = train.unique_dir(Path(cfg.logdir),
                           cfg.run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}")
    sweep_dir.mkdir(parents=True, exist_ok=True)
    names = [model_name(c.lr, c.reg) for c in cfgs]
    writers = _open_writers(cfgs, sweep_dir, names) if cfg.tensorboard else None

    n = d.train_x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    _say(cfg, f"{source}: {n} train / {d.val_x.shape[0]} val / {d.test_x.shape[0]} test images, "
              f"loaded in {data_load_s:.2f}s; {K} linear models ({len(lrs)} lr x "
              f"{len(regs)} reg), {cfg.loss} loss ({cfg.impl}), device {device}; "
              f"sweep folder {sweep_dir}")
    histories: list[list[dict]] = [[] for _ in cfgs]
    diverged: list[dict | None] = [None] * K
    bar = None
    # Sums stay on the device and are read once per epoch: no host sync in the loop.
    totals = _Totals(K, device)

    def sweep_step(idx: Tensor, gen: torch.Generator | None = None) -> Tensor:
        # index_select: the same rows as fit's train_x[idx], in half the time on a CPU
        x, y = d.train_x.index_select(0, idx), d.train_y.index_select(0, idx)
        if cfg.augment:
            x = data.augment(x, gen)
        L, R, scores = stack.step(x, y, loss_fn, penalty, cfg.momentum)
        totals.add(L, R, scores, y)
        return totals.steps

    # On a GPU each step is replayed from a CUDA graph, as in fit (lintorch/cuda_graph.py),
    # captured again only when models drop out (the stack's tensors are new then).
    graphed = None
    if device.type == "cuda" and cfg.cuda_graphs and not cfg.augment:
        graphed = GraphedStep(sweep_step, cfg.batch_size, device)
    t_train = time.perf_counter()
    try:
        for epoch in range(1, cfg.epochs + 1):
            if not stack.ids:
                break
            t_epoch = time.perf_counter()
            epoch_lrs = schedules.lrs()
            stack.set_lrs(epoch_lrs)
            if len(totals.loss) == len(stack.ids):
                totals.reset()
            else:
                totals = _Totals(len(stack.ids), device)
            start_W, start_b = stack.W.detach().clone(), stack.b.detach().clone()
            gen = train.epoch_generator(cfg.seed, epoch, device)
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{cfg.epochs}, {len(stack.ids)} models",
                            cfg.quiet)
            for idx in data.batch_indices(n, cfg.batch_size, gen, device):
                if graphed is None:
                    sweep_step(idx, gen)
                else:
                    graphed(idx, key=tuple(stack.ids))
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()

            # Once per epoch the host reads what happened: drop the models that diverged.
            bad_steps = totals.first_bad.tolist()
            good = [j for j, s in enumerate(bad_steps) if s < 0]
            for j, k in enumerate(stack.ids):
                if bad_steps[j] >= 0:
                    diverged[k] = {"epoch": epoch, "step": bad_steps[j]}
                    final_W[k], final_b[k] = start_W[j], start_b[j]
            loss_sum, penalty_sum, correct = totals.loss, totals.penalty, totals.correct
            if len(good) < len(bad_steps):
                loss_sum, penalty_sum, correct = (t[good] for t in (loss_sum, penalty_sum, correct))
                stack.keep(good)
            schedules.step()
            if not stack.ids:
                continue
            val_loss, val_acc = evaluate_stack(stack.W, stack.b, d.val_x, d.val_y, loss_fn)
            stats = torch.stack([loss_sum / n, correct.double() / n, val_loss, val_acc,
                                 penalty_sum / n]).cpu().tolist()
            epoch_time = time.perf_counter() - t_epoch
            for j, k in enumerate(stack.ids):
                row = {"epoch": epoch, "train_loss": stats[0][j], "train_accuracy": stats[1][j],
                       "val_loss": stats[2][j], "val_accuracy": stats[3][j],
                       "lr": epoch_lrs[k], "penalty": stats[4][j], "epoch_time_s": epoch_time}
                histories[k].append(row)
                if writers is not None:
                    _log_epoch(writers[k], row)
            _say(cfg, _epoch_line(cfg, epoch, [names[k] for k in stack.ids], stats[3], K,
                                  epoch_time))
    except KeyboardInterrupt:
        if writers is not None:
            for writer in writers:
                writer.close()
        raise
    finally:
        if bar is not None:
            bar.close()
    train_time_s = time.perf_counter() - t_train

    final = {}
    if stack.ids:
        with torch.no_grad():
            index = torch.tensor(stack.ids, device=device)
            final_W.index_copy_(0, index, stack.W.detach())
            final_b.index_copy_(0, index, stack.b.detach())
        # No final pass over the training split: for K models it costs half an epoch, and
        # the history already holds each epoch's training loss and accuracy.
        for split, x, y in [("val", d.val_x, d.val_y), ("test", d.test_x, d.test_y)]:
            loss, acc = evaluate_stack(stack.W, stack.b, x, y, loss_fn)
            final[split] = dict(zip(stack.ids, zip(loss.tolist(), acc.tolist())))
    models = []
    for k, c in enumerate(cfgs):
        entry = {"lr": c.lr, "reg": c.reg, "name": names[k],
                 "run_dir": str(sweep_dir / names[k]) if writers is not None else None,
                 "diverged": diverged[k] is not None, "diverged_at": diverged[k],
                 "history": histories[k]}
        for split in ("val", "test"):
            loss, acc = final[split][k] if diverged[k] is None else (None, None)
            entry[split] = {"loss": _finite(loss), "accuracy": acc}
        models.append(entry)

    result = {"config": {**dataclasses.asdict(cfg), "lr": None, "reg": None},
              "grid": {"lr": lrs, "reg": regs},
              "models": models, "best": _best(models),
              "data_load_s": data_load_s, "train_time_s": train_time_s,
              "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
              "torch_version": torch.__version__, "python_version": platform.python_version(),
              "sweep_dir": str(sweep_dir)}
    result["wall_time_s"] = time.perf_counter() - t_start
    (sweep_dir / "sweep.json").write_text(json.dumps(result, indent=2))
    if writers is not None:
        for k, writer in enumerate(writers):
            _log_final(writer, cfgs[k], models[k])
            writer.close()

    trained = []
    for k in range(K):
        model = LinearClassifier(in_features, num_classes).to(device=device, dtype=dtype)
        with torch.no_grad():
            model.weight.copy_(final_W[k])
            model.bias.copy_(final_b[k])
        trained.append(model)
    if not cfg.quiet:
        print(format_table(result))
    return trained, result


def _best(models: list[dict]) -> dict | None:
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


def _finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------
# What a sweep shows: a progress bar, per-epoch lines, the table, one TensorBoard run per model


def _say(cfg: train.TrainConfig, *args) -> None:
    if not cfg.quiet:
        print(*args, flush=True)


def _progress(total: int, desc: str, quiet: bool):
    if quiet or not sys.stdout.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _epoch_line(cfg, epoch: int, names: list[str], val_acc: list[float], total: int,
                seconds: float) -> str:
    """One line per epoch: the best model so far on validation, and how many still train."""
    j = max(range(len(names)), key=lambda j: val_acc[j])
    return (f"epoch {epoch:3d}/{cfg.epochs} | best val acc {100 * val_acc[j]:6.2f}% "
            f"({names[j]}) | {len(names)}/{total} models training | {seconds:.2f}s")


def format_table(result: dict) -> str:
    """Validation accuracy over the grid, one row per learning rate, the best marked with *."""
    lrs, regs = result["grid"]["lr"], result["grid"]["reg"]
    by_point = {(m["lr"], m["reg"]): m for m in result["models"]}
    best = result["best"]

    def cell(lr: float, reg: float) -> str:
        m = by_point[(lr, reg)]
        if m["diverged"]:
            return "diverged"
        mark = "*" if best and (best["lr"], best["reg"]) == (lr, reg) else " "
        return f"{100 * m['val']['accuracy']:.2f}{mark}"

    rows = [["lr \\ reg ", *(f"{reg:g} " for reg in regs)]]
    rows += [[f"{lr:g} ", *(cell(lr, reg) for reg in regs)] for lr in lrs]
    width = max(len(text) for row in rows for text in row)
    cfg = result["config"]
    lines = [f"validation accuracy (%) of {len(result['models'])} models, {cfg['loss']} loss, "
             f"{cfg['epochs']} epochs:"]
    lines += ["  ".join(f"{text:>{width}}" for text in row) for row in rows]
    if best is None:
        lines.append("every model diverged: try smaller learning rates")
    else:
        lines.append(f"best on validation (*): lr={best['lr']:g}, reg={best['reg']:g}: "
                     f"val {100 * best['val_accuracy']:.2f}%, "
                     f"test {100 * best['test_accuracy']:.2f}%")
    lines.append(f"sweep.json and TensorBoard runs in {result['sweep_dir']} "
                 "(view with: tensorboard --logdir runs)")
    return "\n".join(lines)


def _open_writers(cfgs, sweep_dir: Path, names: list[str]) -> list:
    from torch.utils.tensorboard import SummaryWriter

    writers = []
    for c, name in zip(cfgs, names):
        writer = SummaryWriter(str(sweep_dir / name))
        board.log_config_text(writer, dataclasses.asdict(c))
        writers.append(writer)
    return writers


def _log_epoch(writer, row: dict) -> None:
    e = row["epoch"]
    for tag, key in [("loss/train", "train_loss"), ("loss/val", "val_loss"),
                     ("accuracy/train", "train_accuracy"), ("accuracy/val", "val_accuracy"),
                     ("loss/penalty", "penalty"), ("lr", "lr")]:
        if row[key] is not None and math.isfinite(row[key]):
            writer.add_scalar(tag, row[key], e)


def _log_final(writer, cfg: train.TrainConfig, model: dict) -> None:
    e = model["history"][-1]["epoch"] if model["history"] else 0
    nan = float("nan")
    val, test = model["val"]["accuracy"], model["test"]["accuracy"]
    if test is not None:
        writer.add_scalar("accuracy/test", test, e)
    board.log_hparams(writer, {**dataclasses.asdict(cfg), "diverged": model["diverged"]}, {
        "hparam/val_accuracy": nan if val is None else val,
        "hparam/test_accuracy": nan if test is None else test,
    })


# ---------------------------------------------------------------------------------------------
# The command line


def _grid_value(minimum: float, strict: bool):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value) or value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be a finite number {'>' if strict else '>='} {minimum:g}, got {text}")
        return value
    parse.__name__ = "learning rate" if strict else "regularization strength"
    return parse


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, and the epilog's table kept as written."""


def _defaults_epilog() -> str:
    lines = ["per-data-set defaults of the linear model (for flags left unset):"]
    for name, by_model in train.DATASET_DEFAULTS.items():
        shown = ", ".join(f"{k}={v}" for k, v in by_model["linear"].items()
                          if k not in ("lr", "reg"))
        lines.append(f"  {name}: {shown}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lintorch.sweep",
        description="Train a linear classifier for every (learning rate, regularization) pair "
                    "of a grid, all in one pass over the data; print the grid of validation "
                    "accuracies and the test accuracy of the best model.",
        formatter_class=_HelpFormatter, epilog=_defaults_epilog())
    parser.add_argument("--lr", type=_grid_value(0.0, strict=True), nargs="+", required=True,
                        metavar="LR", help="learning rates alpha of the grid (each > 0)")
    parser.add_argument("--reg", type=_grid_value(0.0, strict=False), nargs="+", required=True,
                        metavar="REG", help="regularization strengths lambda of the grid "
                                            "(each >= 0)")
    train.add_training_flags(parser, sweep=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    lrs, regs = args.lr, args.reg
    try:
        cfg = dataclasses.replace(train.config_from_args(args), lr=None, reg=None)
        grid_configs(cfg, lrs, regs)  # a bad grid or combination is a usage error, before any data
    except ValueError as e:
        parser.error(str(e))
    try:
        run(cfg, lrs, regs)
    except (data.DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
