"""The main job: mini-batch SGD with learning-rate decay, logged to TensorBoard.

    python -m lintorch.train --dataset fashion-mnist

``fit(config)`` is the one training loop; the CLI, the experiments and the tests all call it.
A run is ``start`` (data, model, optimizer, run folder, or the checkpoint to resume),
``train_epoch`` for each epoch (``train_step`` per batch, then ``evaluate`` on the validation
split), and ``finish`` (the final metrics, ``metrics.json``, the pictures).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from . import board, cli, config, console, data, distributed, files, losses
from .config import (  # noqa: F401  (re-exported: lintorch.train.TrainConfig is the API)
    DATASET_DEFAULTS,
    FREE_ON_RESUME,
    IMPLS,
    LOSSES,
    LR_DECAYS,
    MODELS,
    TrainConfig,
    recipe,
)
from .cuda_graph import GraphedStep
from .models import LinearClassifier, SigmoidMLP


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""

    def __init__(self, epoch: int, step: int, checkpoint: Path | None):
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        kept = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        super().__init__(f"loss became NaN or infinite at epoch {epoch}, step {step}: "
                         f"try a smaller --lr{kept}")


class Interrupted(RuntimeError):
    """Ctrl-C or SIGTERM; the checkpoint of the last finished epoch, if any, is kept."""

    def __init__(self, checkpoint: Path | None, exit_code: int):
        self.checkpoint, self.exit_code = checkpoint, exit_code
        how = (f"; resume with: python -m lintorch.train --resume {checkpoint}"
               if checkpoint and checkpoint.exists() else "")
        super().__init__(f"interrupted{how}")


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or not lintorch's to load."""


def load_data(cfg: TrainConfig, device: torch.device) -> tuple[data.Prepared, str]:
    """The config's data set, split and preprocessed, on ``device``; and its name."""
    raw = data.load_dataset(cfg.dataset, cfg.data_root, download=not cfg.no_download,
                            progress=not cfg.quiet)
    d = data.prepare(raw, val_size=cfg.val_size, preprocess=cfg.preprocess, seed=cfg.seed,
                     device=device, dtype=getattr(torch, cfg.dtype), limit=cfg.limit)
    if cfg.augment and len(d.image_shape) != 3:
        raise ValueError(f"--augment flips and crops images, and {raw.name}'s examples are "
                         f"features of shape {tuple(d.image_shape)}; leave it out")
    return d, raw.name


def build_model(cfg: TrainConfig, in_features: int, num_classes: int) -> nn.Module:
    """The config's model; ``--impl torch`` gives the MLP torch's built-in sigmoid."""
    if cfg.model == "linear":
        return LinearClassifier(in_features, num_classes)
    if cfg.impl == "torch":
        return SigmoidMLP(in_features, cfg.hidden, num_classes, sigmoid=torch.sigmoid)
    return SigmoidMLP(in_features, cfg.hidden, num_classes)


def penalized_weights(model: nn.Module) -> list[Tensor]:
    """The weights R(W) applies to: every weight matrix, never a bias."""
    return [model.weight] if isinstance(model, LinearClassifier) else model.weights


def data_loss_fn(loss: str, impl: str, reduction: str = "mean"):
    """(scores, y) -> the data loss. Labels were checked once when the data was prepared, so
    lintorch's losses skip the per-call check (a host sync on a GPU)."""
    if impl == "lintorch":
        fn = losses.svm_loss if loss == "svm" else losses.cross_entropy
        return lambda s, y: fn(s, y, reduction=reduction, check=False)
    if loss == "svm":  # torch's rows are divided by C; the lecture's are not
        return lambda s, y: s.shape[1] * F.multi_margin_loss(s, y, reduction=reduction)
    return lambda s, y: F.cross_entropy(s, y, reduction=reduction)


def penalty_fn(reg_type: str, impl: str):
    if impl == "lintorch":
        return losses.PENALTIES[reg_type]
    return (lambda w: (w * w).sum()) if reg_type == "l2" else (lambda w: w.abs().sum())


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of epoch ``epoch`` (1, 2, ..., cfg.epochs), in closed form.

    step: lr gamma^floor((epoch - 1) / lr_step);  exp: lr gamma^(epoch - 1);
    cosine: lr (1 + cos(pi (epoch - 1) / epochs)) / 2, which a longer run stretches.
    """
    e = epoch - 1
    if cfg.lr_decay == "step":
        return cfg.lr * cfg.lr_gamma ** (e // cfg.lr_step)
    if cfg.lr_decay == "exp":
        return cfg.lr * cfg.lr_gamma ** e
    if cfg.lr_decay == "cosine":
        return cfg.lr * (1 + math.cos(math.pi * e / cfg.epochs)) / 2
    return cfg.lr


def epoch_generator(seed: int, epoch: int, device: torch.device) -> torch.Generator:
    # One generator per epoch, seeded from (seed, epoch): batch order and augmentation of any
    # epoch are known without replaying the ones before it, which makes resuming exact.
    return torch.Generator(device=device).manual_seed(seed * 100_003 + epoch)


@torch.no_grad()
def evaluate(model: nn.Module, x: Tensor, y: Tensor, loss_fn, batch_size: int = 8192
             ) -> tuple[Tensor, Tensor, Tensor]:
    """(mean loss, accuracy, predictions) of ``model`` on (x, y), left on the device."""
    was_training = model.training
    model.eval()
    preds, loss_sum = [], torch.zeros((), device=x.device, dtype=torch.float64)
    for i in range(0, x.shape[0], batch_size):
        s = model(x[i:i + batch_size])
        loss_sum += loss_fn(s, y[i:i + batch_size]).double() * s.shape[0]
        preds.append(s.argmax(1))
    model.train(was_training)
    if x.shape[0] == 0:
        nan = torch.tensor(float("nan"), device=x.device)
        return nan, nan, y
    pred = torch.cat(preds)
    return loss_sum / x.shape[0], (pred == y).double().mean(), pred


def load_checkpoint(path: str) -> dict:
    """A run's checkpoint, read without running code: ``weights_only`` refuses any pickle that
    names a function or class beyond tensors and plain containers."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}; give the path of a run's checkpoint.pt, "
                              "e.g. --resume runs/<run-name>/checkpoint.pt")
    try:
        checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # damage shows up as any of UnpicklingError, KeyError, IndexError, ...
        text = str(e)
        refused = re.search(r"GLOBAL ([\w.]+)", text)
        if refused:  # torch's message spans many lines of advice; the name is the reason
            reason = (f"unpickling it would call {refused.group(1)}, and lintorch loads "
                      "tensors and plain data only")
        elif "WeightsUnpickler error:" in text:
            reason = text.split("WeightsUnpickler error:")[-1].strip().splitlines()[0]
        else:
            reason = f"it is damaged or not a checkpoint ({files.one_line(e)})"
        raise CheckpointError(f"cannot read checkpoint {p}: {reason}") from None
    if not isinstance(checkpoint, dict) or not {"model", "epoch", "config"} <= set(checkpoint):
        raise CheckpointError(f"{p} is not a lintorch checkpoint (no model, epoch and config)")
    check_checkpoint(checkpoint, p)
    return checkpoint


# What Run.save writes under each key of a checkpoint
CHECKPOINT_KINDS = {"model": dict, "optimizer": dict, "epoch": int, "history": list, "rng": dict,
                    "config": dict}


def check_checkpoint(checkpoint: dict, p: Path) -> None:
    """Refuse a checkpoint whose entries are not what ``Run.save`` writes, in one line, before
    any of it is used: else a wrong kind surfaces as a traceback, maybe after files were written.
    Whether the weights fit the data is for ``restore`` to say."""
    for key, kind in CHECKPOINT_KINDS.items():
        if key not in checkpoint:
            raise CheckpointError(f"{p} has no {key}; it is not a whole lintorch checkpoint")
        value = checkpoint[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CheckpointError(f"{p} is damaged: its {key} is of type {type(value).__name__}, "
                                  f"not {kind.__name__}")
    for key, value in checkpoint["model"].items():
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{p} is damaged: its model's {key} is of type "
                                  f"{type(value).__name__}, not a tensor")
    epoch, history = checkpoint["epoch"], checkpoint["history"]
    if [row.get("epoch") if isinstance(row, dict) else None for row in history] != [
            *range(1, epoch + 1)]:
        raise CheckpointError(f"{p} is damaged: its history is not one row for each of its "
                              f"{epoch} epochs")
    if wrong := config.wrong_kind(checkpoint["config"]):
        raise CheckpointError(f"{p} is damaged: its config's {wrong}")
    try:
        TrainConfig.from_saved(checkpoint["config"]).resolved()
    except ValueError as e:
        raise CheckpointError(f"{p} holds a config lintorch cannot run: {e}") from None


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: dict,
            path: str) -> None:
    """Load the checkpoint's weights, optimizer state and random state, or say in one line what
    does not fit (a data set regenerated since, a file edited), before the run writes anything."""
    if misfit := model_misfit(model, checkpoint["model"]):
        raise CheckpointError(f"{path} does not fit: {misfit}; resume on the data it was "
                              "trained on, or start a new run")
    model.load_state_dict(checkpoint["model"])
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}'s optimizer state does not fit its model "
                              f"({files.one_line(e)})") from None
    # SGD's momentum buffers are loaded unchecked; a wrong shape would fail at the first step
    if any(isinstance(v, Tensor) and v.shape != p.shape
           for p, state in optimizer.state.items() for v in state.values()):
        raise CheckpointError(f"{path}'s optimizer state does not fit its model (momentum "
                              "buffers of other shapes than the weights)")
    try:
        torch.set_rng_state(checkpoint["rng"]["torch"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}'s random state (rng) is damaged ({files.one_line(e)})"
                              ) from None


def model_misfit(model: nn.Module, saved: dict) -> str | None:
    """What keeps the weights ``saved`` out of ``model``, in words; None if they fit."""
    mine = model.state_dict()
    if missing := [k for k in mine if k not in saved]:
        return f"the checkpoint's model has no {', '.join(missing)}"
    if extra := [k for k in saved if k not in mine]:
        return f"the checkpoint's model has {', '.join(extra)}, which a {type(model).__name__} " \
               "has not"
    weights = [k for k in mine if k.endswith("weight")]  # the first layer's first
    for key, t in mine.items():
        s = saved[key]
        if s.shape == t.shape:
            continue
        if key == weights[0] and s.ndim == 2 and s.shape[0] == t.shape[0]:
            return (f"the checkpoint's model has {s.shape[1]} input features, the data set "
                    f"{t.shape[1]}")
        if key == weights[-1] and s.ndim == 2 and s.shape[1] == t.shape[1]:
            return f"the checkpoint's model has {s.shape[0]} classes, the data set {t.shape[0]}"
        return (f"the checkpoint's {key} has shape {tuple(s.shape)}, the model for this data "
                f"set {tuple(t.shape)}")
    return None


def default_run_name(cfg: TrainConfig) -> str:
    return (f"{data.short_name(cfg.dataset)}-{cfg.model}-{cfg.loss}-"
            f"{time.strftime('%Y%m%d-%H%M%S')}")


@dataclass
class Run:
    """Everything one training run holds."""

    cfg: TrainConfig
    world: distributed.World
    device: torch.device
    data: data.Prepared
    model: nn.Module  # net computes its scores: the model itself, or DDP around it
    net: nn.Module
    optimizer: torch.optim.Optimizer
    loss_sum: object  # (scores, y) -> sum_i L_i
    penalty: object  # W -> R(W)
    run_dir: Path
    history: list
    start_epoch: int
    data_load_s: float
    writer: object = None
    graphed: GraphedStep | None = None

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def quiet(self) -> bool:
        return self.cfg.quiet or not self.world.main

    def save(self, epoch: int) -> None:
        if not self.world.main:
            return
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "epoch": epoch, "history": self.history, "rng": rng,
                 "config": dataclasses.asdict(self.cfg)}
        files.write_atomic(self.checkpoint, lambda tmp: torch.save(state, tmp))


def fit(config: TrainConfig, prepared: data.Prepared | None = None) -> dict:
    """Train one model as ``config`` says; returns what ``metrics.json`` holds."""
    return train_model(config, prepared)[1]


def train_model(config: TrainConfig, prepared: data.Prepared | None = None
                ) -> tuple[nn.Module, dict]:
    """``fit``, also returning the trained model. ``prepared`` replaces the data set named in
    the config by tensors already in memory (the experiments' toy data)."""
    t_start = time.perf_counter()
    run = None
    try:
        run = start(config, prepared)
        for epoch in range(run.start_epoch + 1, run.cfg.epochs + 1):
            train_epoch(run, epoch)
        return run.model, finish(run, time.perf_counter() - t_start)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as cli.Terminated
        raise Interrupted(run.checkpoint if run else None, cli.exit_code(e)) from None
    finally:
        if run is not None and run.writer is not None:
            run.writer.close()


def start(config: TrainConfig, prepared: data.Prepared | None = None) -> Run:
    """Data, model, optimizer and run folder of a new run, or of the run a checkpoint holds.
    Under torchrun: the process group joined, and after a restart the run's last checkpoint."""
    world, device = distributed.join(config.device)
    resume = config.resume or distributed.restarted_run(config.logdir, config.run_name)
    checkpoint = None
    if resume:
        checkpoint = load_checkpoint(resume)
        config = dataclasses.replace(config, resume=resume).resumed_from(checkpoint["config"])
    cfg = config.resolved()

    t0 = time.perf_counter()
    d, source = (world.first_on_each_node(lambda: load_data(cfg, device)) if prepared is None
                 else (prepared, "in-memory data"))
    data_load_s = time.perf_counter() - t0

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, math.prod(d.image_shape), len(d.classes))
    model = model.to(device, getattr(torch, cfg.dtype))
    net = model if world.size == 1 else DistributedDataParallel(
        model, device_ids=[device] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    if checkpoint:
        restore(model, optimizer, checkpoint, cfg.resume)
        run_dir = Path(cfg.resume).parent
        start_epoch, history = checkpoint["epoch"], checkpoint["history"]
    else:  # process 0 names the folder, the others take its name
        name = cfg.run_name or default_run_name(cfg)
        run_dir = Path(world.from_main(str(files.unique_dir(cfg.logdir, name)) if world.main
                                       else None))
        if world.main:
            distributed.mark(run_dir)
        start_epoch, history = 0, []
    run = Run(cfg, world, device, d, model, net, optimizer, data_loss_fn(cfg.loss, cfg.impl, "sum"),
              penalty_fn(cfg.reg_type, cfg.impl), run_dir, history, start_epoch, data_load_s)
    if cfg.tensorboard and world.main:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops what an interrupted run logged after its checkpoint
        run.writer = SummaryWriter(str(run_dir), purge_step=start_epoch + 1 if checkpoint else None)
        if not checkpoint:
            board.log_config_text(run.writer, dataclasses.asdict(cfg))
    if not run.checkpoint.exists():
        run.save(start_epoch)
    # On a GPU each full batch's step is replayed from a CUDA graph (lintorch/cuda_graph.py);
    # augmentation draws from the epoch's own generator, which a graph cannot replay, and under
    # DDP its all-reduce would have to be captured too (README, Scaling out).
    if device.type == "cuda" and cfg.cuda_graphs and not cfg.augment and world.size == 1:
        run.graphed = GraphedStep(lambda idx: train_step(run, idx), cfg.batch_size, device)
    console.say(run.quiet, f"{source}: {d.train_x.shape[0]} train / {d.val_x.shape[0]} val / "
                       f"{d.test_x.shape[0]} test examples, loaded in {data_load_s:.2f}s; "
                       f"{cfg.model} model, {cfg.loss} loss ({cfg.impl}), device {device}"
                       f"{f' x {world.size} processes' if world.size > 1 else ''}; "
                       f"run folder {run_dir}")
    return run


def train_step(run: Run, idx: Tensor, gen: torch.Generator | None = None) -> Tensor:
    """One SGD step on the examples ``idx``: W <- W - lr dL/dW for L = data loss + reg R(W).

    Returns (data loss, penalty, correct count), left on the device so that the loop never
    waits for the host.
    """
    cfg, d, world = run.cfg, run.data, run.world
    mine = world.share(idx)  # under torchrun, this process's share of the batch
    # x[idx] would read better; index_select gathers the same rows and makes a CPU epoch ~15%
    # shorter (Fashion-MNIST and CIFAR-10 sizes, 2-core CPU, measured side by side)
    y = d.train_y.index_select(0, mine)
    if cfg.augment:  # flips and crops drawn for the whole batch, alike in every process
        x = world.share(data.augment(d.train_x.index_select(0, idx), gen))
    else:
        x = d.train_x.index_select(0, mine)
    scores = run.net(x)
    # L = (1/B) sum_i L_i over the batch's B examples, as this process's share of the sum;
    # DDP averages the processes' gradients, so each share counts world.size times below.
    L = run.loss_sum(scores, y) / len(idx)
    if cfg.reg > 0:
        R = sum(run.penalty(w) for w in penalized_weights(run.model))
    else:  # no R at all: an overflowing R cannot turn a run without a penalty into NaN
        R = torch.zeros_like(L)
    run.optimizer.zero_grad()
    (world.size * L + cfg.reg * R).backward()
    run.optimizer.step()
    correct = (scores.argmax(1) == y).sum()
    return torch.stack((L.detach(), R.detach(), correct.to(L.dtype)))


def train_epoch(run: Run, epoch: int) -> dict:
    """One pass over the training split in random mini-batches, then the validation split."""
    cfg, d = run.cfg, run.data
    t_epoch = time.perf_counter()
    lr = lr_at(cfg, epoch)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    gen = epoch_generator(cfg.seed, epoch, run.device)
    n = d.train_x.shape[0]
    batches = data.batch_indices(n, cfg.batch_size, gen, run.device)
    run.model.train()
    stats = [train_step(run, idx, gen) if run.graphed is None else run.graphed(idx, key=lr)
             for idx in console.progress(batches, f"epoch {epoch}/{cfg.epochs}", run.quiet)]

    # Once per epoch the host reads the steps' numbers: stop at a NaN, sum the rest.
    sizes = torch.tensor([len(idx) for idx in batches], device=run.device, dtype=torch.float64)
    step_losses, step_penalties, corrects = torch.stack(stats).double().unbind(1)
    step_losses, corrects = run.world.sum(step_losses), run.world.sum(corrects)  # all shares
    bad = (~torch.isfinite(step_losses + step_penalties)).nonzero()
    if bad.numel():
        raise TrainingDiverged(epoch, int(bad[0]) + 1,
                               run.checkpoint if run.checkpoint.exists() else None)
    loss_fn = data_loss_fn(cfg.loss, cfg.impl)
    val_loss, val_acc, _ = evaluate(run.model, d.val_x, d.val_y, loss_fn)
    row = {"epoch": epoch, "train_loss": float(step_losses @ sizes) / n,
           "train_accuracy": float(corrects.sum()) / n, "val_loss": float(val_loss),
           "val_accuracy": float(val_acc), "lr": lr, "penalty": float(step_penalties @ sizes) / n,
           "epoch_time_s": time.perf_counter() - t_epoch}
    run.history.append(row)
    run.save(epoch)
    if run.writer is not None:
        board.log_epoch(run.writer, row, run.model, d.image_shape, d.classes)
    console.say(run.quiet, f"epoch {epoch:3d}/{cfg.epochs} | train loss {row['train_loss']:.4f} "
                       f"acc {100 * row['train_accuracy']:6.2f}% | val loss "
                       f"{row['val_loss']:.4f} acc {100 * row['val_accuracy']:6.2f}% | lr "
                       f"{lr:.3g} | {row['epoch_time_s']:.2f}s")
    return row


def finish(run: Run, elapsed_s: float) -> dict:
    """The final model on every split, the test confusion matrix; ``metrics.json``."""
    cfg, d = run.cfg, run.data
    loss_fn = data_loss_fn(cfg.loss, cfg.impl)
    result, predictions = {"config": dataclasses.asdict(cfg), "history": run.history}, {}
    for split, x, y in [("train", d.train_x, d.train_y), ("val", d.val_x, d.val_y),
                        ("test", d.test_x, d.test_y)]:
        loss, acc, predictions[split] = evaluate(run.model, x, y, loss_fn)
        result[split] = {"loss": float(loss), "accuracy": float(acc)}
    cm = board.confusion_matrix(predictions["test"], d.test_y, len(d.classes)).cpu()
    per_class = (cm.diag().double() / cm.sum(1).clamp(min=1).double()).tolist()
    result.update({"per_class_test_accuracy": dict(zip(d.classes, per_class)),
                   "confusion_matrix": cm.tolist(),
                   **distributed.environment(run.device, run.world),
                   "run_dir": str(run.run_dir), "data_load_s": run.data_load_s,
                   "wall_time_s": elapsed_s})
    if run.world.main:
        files.write_json(run.run_dir / "metrics.json", result)
    if run.writer is not None:
        log_final(run.writer, cfg, result, d)
    if not run.quiet:
        print_summary(result)
    return result


def log_final(writer, cfg: TrainConfig, result: dict, d: data.Prepared) -> None:
    e = result["history"][-1]["epoch"] if result["history"] else 0
    writer.add_figure("confusion", board.confusion_figure(
        torch.tensor(result["confusion_matrix"]), d.classes), e)
    board.log_final(writer, recipe(cfg), e, result["test"]["accuracy"], {
        "hparam/val_accuracy": result["val"]["accuracy"],
        "hparam/train_loss": result["train"]["loss"]})


def print_summary(result: dict) -> None:
    print(f"test accuracy {100 * result['test']['accuracy']:.2f}% "
          f"(val {100 * result['val']['accuracy']:.2f}%, train "
          f"{100 * result['train']['accuracy']:.2f}%) in {result['wall_time_s']:.1f}s")
    width = max(len(c) for c in result["per_class_test_accuracy"])
    print(f"{'class':<{width}}  test accuracy")
    for name, acc in result["per_class_test_accuracy"].items():
        print(f"{name:<{width}}  {100 * acc:6.2f}%")
    print(f"metrics, checkpoint and TensorBoard events in {result['run_dir']} "
          f"(view with: tensorboard --logdir {shlex.quote(result['config']['logdir'])})")


def build_parser() -> argparse.ArgumentParser:
    from .config import defaults_epilog

    parser = argparse.ArgumentParser(
        prog="python -m lintorch.train",
        description="Train a linear classifier or sigmoid MLP with mini-batch SGD, "
                    "logging to TensorBoard (tensorboard --logdir runs).",
        formatter_class=cli.HelpFormatter, epilog=defaults_epilog())
    cli.add_training_flags(parser)
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue the run saved in PATH (runs/<name>/checkpoint.pt); "
                             "--epochs extends it; the recipe flags cannot change")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if cfg.resume:
            changed = sorted(cli.explicit_flags(parser, args, argv) - set(FREE_ON_RESUME))
            if changed:
                flag = "--" + changed[0].replace("_", "-")
                raise ValueError(f"{flag} cannot be given with --resume: a resumed run keeps "
                                 "the recipe saved in its checkpoint (only --epochs, --device, "
                                 "--data-root, --no-download, --quiet, --tensorboard and "
                                 "--cuda-graphs may change); start a new run to change it")
        else:
            cfg.resolved()  # a bad combination is a usage error, before any data is read
    except ValueError as e:
        parser.error(str(e))
    cli.handle_sigterm()
    try:
        fit(cfg)
    except (data.DataError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    distributed.exit(main())
