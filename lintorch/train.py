"""The main job: mini-batch SGD with learning-rate decay, logged to TensorBoard.

    python -m lintorch.train --dataset fashion-mnist

The lecture's algorithm is two functions. ``train_epoch`` is its loop: for each random mini-batch,
take one step. ``train_step`` is its step: the scores, the loss L = 1/N sum_i L_i + lambda R(W),
its gradient, and the update W <- W - alpha dL/dW (``update_rules.sgd_step``).

``fit(config)`` runs them; the CLI, the experiments and the tests all call it. Around the two,
``start`` loads the data, builds the model and the run folder (or reads the checkpoint to resume)
and ``finish`` scores the final model and writes ``metrics.json``. Scale-out (``distributed.py``)
and the GPU's replayed step (``cuda_graph.py``) wrap the step from outside.

The sweep (``sweep.py``) trains a grid of K linear classifiers through the same functions: its
model is the K stacked (scores (N, K, C)), its learning rate and lambda one per model. What a
grid adds (dropping a model that diverges, its histories and table) is ``run.grid``'s, called
where an epoch ends and where the run finishes.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from . import board, checkpoint, console, data, distributed, files, losses, models, stacked
from .checkpoint import CheckpointError  # noqa: F401  (where users of train have found it)
from .config import (  # noqa: F401  (re-exported: lintorch.train.TrainConfig is the API)
    DATASET_DEFAULTS,
    FREE_ON_RESUME,
    IMPLS,
    LOSSES,
    LR_DECAYS,
    MODELS,
    ResumeConflict,
    TrainConfig,
    allocated,
    flag,
    recipe,
)
from .cuda_graph import GraphedStep
from .distributed import DataParallel
from .models import LinearClassifier, SigmoidMLP
from .update_rules import SGD


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""

    exit_code = 3

    def __init__(self, epoch: int, step: int, checkpoint: Path | None):
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        kept = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        super().__init__(f"loss became NaN or infinite at epoch {epoch}, step {step}: "
                         f"try a smaller --lr or --reg{kept}")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM; the checkpoint of the last finished epoch, if any, is kept."""

    def __init__(self, checkpoint: Path | None, exit_code: int):
        self.checkpoint, self.exit_code = checkpoint, exit_code
        how = (f"; resume with: python -m lintorch.train --resume {shlex.quote(str(checkpoint))}"
               if checkpoint and checkpoint.exists() else "")
        super().__init__(f"interrupted{how}")


# The lecture's step and loop


def train_step(run: Run, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """One step of mini-batch SGD on the batch (x, y). Returns the data loss L, the penalty
    R(W) and how many examples the scores classified right, left on the device.

    A grid's K models take theirs at once: K of each, one lambda and one alpha per model."""
    scores = run.net(x)                   # s = f(x, W)
    L = run.loss(scores, y)               # L = 1/N sum_i L_i, each L_i a hand-written Function
    R = run.penalty()                     # R(W), of the weights, never the biases
    run.optimizer.zero_grad()
    # dL/dW + lambda dR/dW, by the hand-written backwards; of a grid's sum_k (L_k + lambda_k R_k),
    # model k's gradient is that of its own L_k + lambda_k R_k
    (L + run.reg * R).sum().backward()
    run.optimizer.step()                  # W <- W - alpha (dL/dW + lambda dR/dW)
    return L.detach(), R.detach(), count_correct(scores.argmax(-1), y)


def count_correct(predictions: Tensor, y: Tensor) -> Tensor:
    """How many of the N predictions (N,) are right; of a grid's (N, K), how many of each
    model's, (K,)."""
    return (predictions == (y if predictions.dim() == 1 else y.unsqueeze(1))).sum(0)


def train_epoch(run: Run, epoch: int) -> object:
    """One pass over the training split in random mini-batches, then the validation split.
    Returns the epoch's history row (a grid's: the models still training, none at the end)."""
    t_epoch, cfg = time.perf_counter(), run.cfg
    lr = lr_at(cfg, epoch) if run.grid is None else run.grid.lr_at(epoch)  # a grid's: (K,)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    gen = epoch_generator(cfg.seed, epoch, run.device)
    batches = data.batch_indices(len(run.data.train_y), cfg.batch_size, gen, run.device)
    steps = []
    for idx in console.progress(batches, f"epoch {epoch}/{cfg.epochs}", run.quiet):
        x, y = sample(run, idx, gen)      # a random mini-batch
        L, R, correct = run.step(x, y)    # its loss, gradient and update: train_step
        # sums over the batch: L is the mean over this process's examples (y), which end_epoch
        # adds up over the processes; R, the same in every process, counts for the whole batch
        steps.append(torch.stack((L * len(y), R * len(idx), correct.to(L.dtype))))
    if run.grid is not None:  # each model's figures, a diverged one dropped (lintorch/sweep.py)
        return run.grid.end_epoch(run, epoch, steps, t_epoch)
    return end_epoch(run, epoch, lr, steps, t_epoch)


def sample(run: Run, idx: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """The training examples ``idx`` and their labels, flipped and cropped with --augment;
    under torchrun, this process's share of them."""
    x, y = minibatch(run.data, idx, gen if run.cfg.augment else None)
    return run.net.share(x, y) if isinstance(run.net, DataParallel) else (x, y)


def minibatch(d: data.Prepared, idx: Tensor, gen: torch.Generator | None = None
              ) -> tuple[Tensor, Tensor]:
    """The training examples ``idx`` and their labels; flipped and cropped with ``gen``'s draws
    (for the whole batch, alike in every process) if it is given."""
    # x[idx] would read better; index_select gathers the same rows and makes a CPU epoch ~15%
    # shorter (Fashion-MNIST and CIFAR-10 sizes, 2-core CPU, measured side by side)
    x, y = d.train_x.index_select(0, idx), d.train_y.index_select(0, idx)
    return (x if gen is None else data.augment(x, gen)), y


def end_epoch(run: Run, epoch: int, lr: float, steps: list[Tensor], t_epoch: float) -> dict:
    """The epoch's figures, saved, logged and shown. The steps left their numbers on the
    device, so the host reads them once here: stop at a NaN, sum the rest (over every process's
    examples), then validate."""
    loss_sums, penalty_sums, corrects = torch.stack(steps).double().unbind(1)
    loss_sums, corrects = run.world.sum(loss_sums), run.world.sum(corrects)
    if (bad := (~torch.isfinite(loss_sums + penalty_sums)).nonzero()).numel():
        raise TrainingDiverged(epoch, int(bad[0]) + 1,
                               run.checkpoint if run.checkpoint.exists() else None)
    n, d = len(run.data.train_y), run.data
    val_loss, val_acc, _ = evaluate(run.model, d.val_x, d.val_y, run.loss)
    row = {"epoch": epoch, "train_loss": float(loss_sums.sum()) / n,
           "train_accuracy": float(corrects.sum()) / n, "val_loss": float(val_loss),
           "val_accuracy": float(val_acc), "lr": lr, "penalty": float(penalty_sums.sum()) / n,
           "epoch_time_s": time.perf_counter() - t_epoch}
    run.history.append(row)
    run.save(epoch)
    if run.writer is not None:
        board.log_epoch(run.writer, row, run.model, d.image_shape, d.classes)
    console.say(run.quiet, f"epoch {epoch:3d}/{run.cfg.epochs} | train loss "
                           f"{row['train_loss']:.4f} acc {100 * row['train_accuracy']:6.2f}% | "
                           f"val loss {row['val_loss']:.4f} acc {100 * row['val_accuracy']:6.2f}%"
                           f" | lr {lr:.3g} | {row['epoch_time_s']:.2f}s")
    return row


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
    """(mean loss, accuracy, predictions) of ``model`` on (x, y), left on the device; the
    loss and accuracy of no examples are NaN (null in JSON). A grid's model gives (K,) of each
    and predictions (N, K)."""
    was_training = model.training
    model.eval()
    preds, loss_sum, correct = [], 0, 0
    for i in range(0, x.shape[0], batch_size):
        s, t = model(x[i:i + batch_size]), y[i:i + batch_size]
        loss_sum = loss_sum + loss_fn(s, t).double() * s.shape[0]
        preds.append(s.argmax(-1))
        correct = correct + count_correct(preds[-1], t)
    if x.shape[0] == 0:  # one NaN per model
        nan = torch.full(model(x).shape[1:-1], math.nan, device=x.device, dtype=torch.float64)
        model.train(was_training)
        return nan, nan, y
    model.train(was_training)
    return loss_sum / x.shape[0], correct.double() / x.shape[0], torch.cat(preds)


# A run: what it holds, how it starts and finishes


@dataclass
class Run:
    """Everything one training run holds."""

    cfg: TrainConfig
    world: distributed.World
    device: torch.device
    data: data.Prepared
    model: nn.Module
    net: nn.Module          # what computes the scores: the model, or DataParallel around it
    optimizer: torch.optim.Optimizer
    loss: object            # (scores, y) -> L = 1/N sum_i L_i
    penalty: object         # () -> R(W)
    run_dir: Path
    history: list
    start_epoch: int
    data_load_s: float
    step: object = None     # (x, y) -> train_step's results: train_step, or its CUDA graph
    writer: object = None
    record: checkpoint.Record | None = None  # which run, where, on what data, for how long
    custom_loss: object = None  # fit's ``loss``, which ``loss`` applies in place of cfg.loss
    grid: object = None     # a sweep's grid (lintorch/sweep.py), whose models ``model`` stacks

    @property
    def reg(self) -> float | Tensor:
        """lambda: the config's, or the grid's one per model still training (K,)."""
        return self.cfg.reg if self.grid is None else self.grid.reg

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    @property
    def quiet(self) -> bool:
        return self.cfg.quiet or not self.world.main

    def save(self, epoch: int) -> None:
        if self.world.main:
            checkpoint.save(self.checkpoint, self.model, self.optimizer, epoch, self.history,
                            self.cfg, self.device, self.record)


def fit(config: TrainConfig, prepared: data.Prepared | None = None, *, loss=None) -> dict:
    """Train one model as ``config`` says; returns what ``metrics.json`` holds. ``loss``, a
    callable (scores (N, C), y (N,)) -> the batch's mean loss L, replaces ``config.loss``."""
    return train_model(config, prepared, loss=loss)[1]


def train_model(config: TrainConfig, prepared: data.Prepared | None = None, *, loss=None,
                grid=None) -> tuple[nn.Module, dict]:
    """``fit``, also returning the trained model. ``prepared`` replaces the data set named in
    the config by tensors already in memory (the experiments' toy data). ``grid``: train a
    sweep's grid of models instead (``lintorch.sweep.run``)."""
    t_start = time.perf_counter()
    run = None
    try:
        run = start(config, prepared, loss=loss, grid=grid)
        for epoch in range(run.start_epoch + 1, run.cfg.epochs + 1):
            if not train_epoch(run, epoch):  # a grid whose every model diverged
                break
        return run.model, finish(run, time.perf_counter() - t_start)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM as cli.Terminated (exit code 143)
        raise Interrupted(run.checkpoint if run else None,
                          getattr(e, "exit_code", 130)) from None
    finally:
        if run is not None and run.writer is not None:
            run.writer.close()
        if run is not None and run.grid is not None:  # its models' TensorBoard runs
            run.grid.close()
        files.release_folders()


def start(config: TrainConfig, prepared: data.Prepared | None = None, *, loss=None,
          grid=None) -> Run:
    """Data, model, optimizer and run folder of a new run, or of the run a checkpoint holds.
    Under torchrun: the process group joined, and after a restart the run's last checkpoint.
    ``loss``: as fit's. ``grid``: the model is the grid's models stacked (lintorch/sweep.py)."""
    resume = config.resume or distributed.restarted_run(config.logdir, config.run_name)
    saved = None
    if resume:
        saved = checkpoint.load(resume)
        config = checkpoint.resumed_config(dataclasses.replace(config, resume=resume), saved)
    cfg = config.resolved()
    world, device = distributed.join(cfg.device)
    d, data_load_s, loaded = open_data(cfg, world, device, prepared)
    cfg.val_size = len(d.val_y)
    record = checkpoint.record(cfg, d, saved, in_memory=prepared is not None)

    torch.manual_seed(cfg.seed)
    size = math.prod(d.image_shape), len(d.classes)
    model = allocated(cfg, *size, device, lambda: build_model(cfg, *size).to(
        device, getattr(torch, cfg.dtype)))
    if grid is None:
        net = model if world.size == 1 else DataParallel(model, device, world)
        penalty = penalty_fn(cfg, model)
    else:  # every grid model starts from these weights; the processes divide the models
        model = net = grid.stack(cfg, model, world, loaded)
        penalty = grid.penalty  # R(W_k) of each model
    # a grid's rates are a tensor, one per model, which lintorch's SGD step takes
    optimizer = (SGD if cfg.impl == "lintorch" or grid is not None else torch.optim.SGD)(
        model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    if saved:
        checkpoint.restore(model, optimizer, saved, cfg.resume, record.data)
        run_dir = Path(world.from_main(
            str(checkpoint.continue_in(record, saved, cfg.resume)) if world.main else None))
    else:
        run_dir = run_folder(world, cfg.logdir, cfg.run_name or default_run_name(cfg, grid))
        if world.main and grid is None:  # a sweep leaves no checkpoint to restart from
            distributed.mark(run_dir)
    if grid is None:  # a sweep's folder is not locked: it is not resumed
        checkpoint.hold(record, run_dir, world.main, saved, cfg)
    run = Run(cfg, world, device, d, model, net, optimizer, mean_loss(cfg, loss), penalty,
              run_dir, saved["history"] if saved else [], saved["epoch"] if saved else 0,
              data_load_s, record=record, custom_loss=loss, grid=grid)
    run.step = lambda x, y: train_step(run, x, y)
    # On a GPU each full batch's step is replayed from a CUDA graph (lintorch/cuda_graph.py);
    # augmentation draws from the epoch's own generator, which a graph cannot replay, and under
    # DDP its all-reduce would have to be captured too (a grid's processes share no step).
    if device.type == "cuda" and cfg.cuda_graphs and not cfg.augment and (
            world.size == 1 or grid is not None):
        # captured again when fit's rate changes (a number), or a grid's models drop out
        run.step = GraphedStep(run.step, cfg.batch_size, device, key=lambda: (
            run.optimizer.param_groups[0]["lr"] if grid is None else tuple(grid.ids)))
    if grid is not None:  # its models' TensorBoard runs; no checkpoint: a sweep is not resumed
        grid.attach(run)
    elif cfg.tensorboard and world.main:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops what an interrupted run logged after its checkpoint
        run.writer = SummaryWriter(str(run_dir), purge_step=run.start_epoch + 1 if saved else None)
        if not saved:
            board.log_config_text(run.writer, dataclasses.asdict(cfg))
    if grid is None and not run.checkpoint.exists():
        run.save(run.start_epoch)
    processes = f" x {world.size} processes" if world.size > 1 else ""
    what = f"{cfg.model} model" if grid is None else grid.describe()
    loss_name = f"{cfg.loss} loss ({cfg.impl})" if loss is None else f"loss {qualified_name(loss)}"
    console.say(run.quiet, f"{loaded}; {what}, {loss_name}, device {device}{processes}; "
                           f"{'run' if grid is None else 'sweep'} folder {run_dir}")
    return run


def open_data(cfg: TrainConfig, world: distributed.World, device: torch.device,
              prepared: data.Prepared | None) -> tuple[data.Prepared, float, str]:
    """The config's data set (or ``prepared``), split and preprocessed on ``device``; the
    seconds it took; and a line that says what was loaded."""
    t0 = time.perf_counter()
    if prepared is None:  # the first process of a node decodes again; the others read its cache
        refresh = cfg.refresh_cache and world.local_rank == 0
        d, source = world.first_on_each_node(lambda: load_data(cfg, device, refresh))
    else:
        d, source = prepared, "in-memory data"
    seconds = time.perf_counter() - t0
    return d, seconds, (f"{source}: {len(d.train_y)} train / {len(d.val_y)} val / "
                        f"{len(d.test_y)} test examples, loaded in {seconds:.2f}s")


def load_data(cfg: TrainConfig, device: torch.device, refresh: bool = False
              ) -> tuple[data.Prepared, str]:
    """The config's data set, split and preprocessed, on ``device``; and its name. ``refresh``:
    decode an image folder again though it is cached (``--refresh-cache``)."""
    raw = data.load_dataset(cfg.dataset, cfg.data_root, download=not cfg.no_download,
                            progress=not cfg.quiet, refresh=refresh)
    d = data.prepare(raw, val_size=cfg.val_size, preprocess=cfg.preprocess, seed=cfg.seed,
                     device=device, dtype=getattr(torch, cfg.dtype), limit=cfg.limit)
    if cfg.augment and len(d.image_shape) != 3:
        raise ValueError(f"--augment flips and crops images, and {raw.name}'s examples are "
                         f"features of shape {tuple(d.image_shape)}; leave it out")
    return d, raw.name


def build_model(cfg: TrainConfig, in_features: int, num_classes: int) -> nn.Module:
    """The config's model; ``--impl torch`` gives it torch's built-in linear map and sigmoid."""
    torch_impl = cfg.impl == "torch"
    linear = torch.nn.functional.linear if torch_impl else models.linear
    if cfg.model == "linear":
        return LinearClassifier(in_features, num_classes, linear=linear)
    sigmoid = torch.sigmoid if torch_impl else models.sigmoid
    return SigmoidMLP(in_features, cfg.hidden, num_classes, sigmoid=sigmoid, linear=linear)


def mean_loss(cfg: TrainConfig, custom=None):
    """``(scores, y) -> L = 1/N sum_i L_i``, of the config's loss or ``custom`` (fit's ``loss``,
    a mean already), and 0 for no examples: under torchrun a process's share of a small last
    batch can be empty, and its gradient then adds nothing. A grid's scores (N, K, C) give each
    model's own L, (K,)."""
    loss_sum = losses.loss_fn(cfg.loss, cfg.impl, reduction="sum")
    per_example = losses.loss_fn(cfg.loss, cfg.impl, reduction="none")

    def L(s: Tensor, y: Tensor) -> Tensor:
        if s.dim() == 3 and custom is None:  # one call for all the grid's N * K rows of scores
            return stacked.data_losses(per_example, s, y)
        if s.dim() == 3:  # a custom loss sees one model's (N, C) scores at a time
            return torch.stack([custom(s[:, k], y) for k in range(s.shape[1])])
        if custom is None:
            return loss_sum(s, y) / max(len(y), 1)
        return custom(s, y) if len(y) else s.sum()
    return L


def qualified_name(f) -> str:
    """``lintorch.losses.svm_loss``: where a callable (a function, a Function's ``apply``, an
    nn.Module) is defined, for metrics.json."""
    owner = getattr(f, "__self__", None)  # MyLoss.apply: named for MyLoss, not Function
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}.{f.__name__}"
    named = f if hasattr(f, "__qualname__") else type(f)
    return f"{named.__module__}.{named.__qualname__}"


def penalty_fn(cfg: TrainConfig, model: nn.Module):
    """``() -> R(W)``, summed over the model's weight matrices (never its biases). Without a
    penalty (reg 0) it is 0, and not R: an R that overflows cannot turn such a run into NaN."""
    weights = [model.weight] if isinstance(model, LinearClassifier) else model.weights
    R = (losses.PENALTIES if cfg.impl == "lintorch" else losses.BUILTIN_PENALTIES)[cfg.reg_type]
    if cfg.reg == 0:
        return lambda: torch.zeros((), device=weights[0].device, dtype=weights[0].dtype)
    return lambda: sum(R(W) for W in weights)


def run_folder(world: distributed.World, logdir: str, name: str) -> Path:
    """A new folder ``logdir/name`` (``name-2``, ... if taken), made by process 0 and named to
    every process."""
    return Path(world.from_main(str(files.unique_dir(logdir, name)) if world.main else None))


def default_run_name(cfg: TrainConfig, grid=None) -> str:
    if grid is not None:
        return f"sweep-{time.strftime('%Y%m%d-%H%M%S')}"
    return (f"{data.short_name(cfg.dataset)}-{cfg.model}-{cfg.loss}-"
            f"{time.strftime('%Y%m%d-%H%M%S')}")


def finish(run: Run, elapsed_s: float) -> dict:
    """The final model on every split, the test confusion matrix; ``metrics.json``. A grid's
    models on the validation and test splits, its table; ``sweep.json``."""
    cfg, d = run.cfg, run.data
    custom = run.custom_loss
    config = {**dataclasses.asdict(cfg),
              "loss_fn": None if custom is None else qualified_name(custom)}
    if run.grid is not None:
        return run.grid.results(run, config, elapsed_s)
    result, predictions = {"config": config, "history": run.history}, {}
    for split, x, y in [("train", d.train_x, d.train_y), ("val", d.val_x, d.val_y),
                        ("test", d.test_x, d.test_y)]:
        loss, acc, predictions[split] = evaluate(run.model, x, y, run.loss)
        result[split] = {"loss": float(loss), "accuracy": float(acc)}
    cm = board.confusion_matrix(predictions["test"], d.test_y, len(d.classes)).cpu()
    # a class without test images has no accuracy: NaN here, null in metrics.json
    per_class = (cm.diag().double() / cm.sum(1).double()).tolist()
    result.update({"per_class_test_accuracy": dict(zip(d.classes, per_class)),
                   "confusion_matrix": cm.tolist(),
                   **distributed.environment(run.device, run.world),
                   "run_dir": str(run.run_dir), "data_load_s": run.data_load_s,
                   "wall_time_s": elapsed_s + (run.record.wall_time_s if run.record else 0)})
    if run.world.main:
        files.write_json(run.run_dir / "metrics.json", result)
    if run.writer is not None and not (run.record and run.record.finished):  # logged already
        log_final(run.writer, cfg, result, run)
    if not run.quiet:
        print_summary(result)
    return files.strict(result)


def log_final(writer, cfg: TrainConfig, result: dict, run: Run) -> None:
    e, d = (result["history"][-1]["epoch"] if result["history"] else 0), run.data
    board.log_figure(writer, "confusion", board.confusion_figure(
        torch.tensor(result["confusion_matrix"]), d.classes), e)
    board.log_templates_figure(writer, run.model, d.image_shape, d.classes, e)
    board.log_final(writer, recipe(cfg), e, result["test"]["accuracy"], {
        "hparam/val_accuracy": result["val"]["accuracy"],
        "hparam/train_loss": result["train"]["loss"]})


def print_summary(result: dict) -> None:
    def percent(x: float) -> str:
        return "—" if math.isnan(x) else f"{100 * x:.2f}%"

    print(f"test accuracy {percent(result['test']['accuracy'])} (val "
          f"{percent(result['val']['accuracy'])}, train {percent(result['train']['accuracy'])}) "
          f"in {result['wall_time_s']:.1f}s")
    print(console.format_table(None, ["class", "test accuracy"], [
        [name, percent(acc)] for name, acc in result["per_class_test_accuracy"].items()]))
    cfg = result["config"]
    written = "metrics, checkpoint and TensorBoard events" if cfg["tensorboard"] else (
        "metrics and checkpoint")
    view = f" (view with: tensorboard --logdir {shlex.quote(cfg['logdir'])})" if (
        cfg["tensorboard"]) else ""
    print(f"{written} in {result['run_dir']}{view}")


# The command line


def build_parser() -> argparse.ArgumentParser:
    from . import cli
    from .config import defaults_epilog

    free = ", ".join(map(flag, FREE_ON_RESUME))
    parser = argparse.ArgumentParser(
        prog="python -m lintorch.train",
        description="Train a linear classifier or sigmoid MLP with mini-batch SGD, "
                    "logging to TensorBoard (tensorboard --logdir runs).",
        formatter_class=cli.HelpFormatter,
        epilog=f"{defaults_epilog()}\n\nresuming: a run resumed with --resume keeps its recipe; "
               f"a flag given with it must equal the checkpoint's, except {free}.")
    cli.add_training_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> int:
    from . import cli

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if not cfg.resume:
            cfg.resolved()  # a bad combination is a usage error, before any data is read
    except ValueError as e:
        parser.error(str(e))

    def work() -> None:
        nonlocal cfg
        if cfg.resume:  # a flag that differs from the checkpoint's is a usage error
            given = cli.explicit_flags(parser, args, argv)
            saved = checkpoint.load(cfg.resume)
            try:
                checkpoint.resumed_config(cfg, saved, given).resolved()
            except ValueError as e:  # ResumeConflict, or --epochs that overflow the schedule
                parser.error(str(e))
            cfg = checkpoint.keep_unset(cfg, given)  # --resume PATH alone: the run's own
        fit(cfg)

    return cli.run_main(work, also=(TrainingDiverged,))


if __name__ == "__main__":
    distributed.exit(main())
