"""The main job: mini-batch SGD with learning-rate decay, logged to TensorBoard.

    python -m lintorch.train --dataset fashion-mnist --data-root /usr/share/datasets/fashion-mnist

``fit(config)`` is the one training loop; the CLI, the experiments and the tests all call it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import board, data, losses
from .cuda_graph import GraphedStep
from .models import LinearClassifier, SigmoidMLP

MODELS = ("linear", "mlp")
LOSSES = ("svm", "softmax")
IMPLS = ("lintorch", "torch")
LR_DECAYS = ("none", "step", "exp", "cosine")
REG_TYPES = ("l2", "l1")
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")

# Per-data-set defaults for the fields left at None, chosen on the validation split
# (README, "Choosing the defaults"). CIFAR-10's come from the course's published settings.
DATASET_DEFAULTS = {
    "cifar10": {
        # The course's lr 1e-7 and reg 2.5e4 on raw 0..255 pixels, rescaled to standardized
        # inputs (std ~ 64 per channel): lr x 64^2, reg / 64^2; 1,500 steps of 200 ~ 6 epochs.
        "linear": dict(epochs=6, batch_size=200, lr=4e-4, lr_decay="none", momentum=0.0,
                       reg=6.0),
        "mlp": dict(epochs=20, batch_size=200, lr=0.2, lr_decay="cosine", momentum=0.0,
                    reg=5e-5, hidden=[512]),
    },
    "fashion-mnist": {
        "linear": dict(epochs=15, batch_size=128, lr=0.05, lr_decay="cosine", momentum=0.0,
                       reg=1e-3),
        # Momentum: the only change that moved the MLP's validation accuracy past the
        # plain-SGD plateau (89.0-89.3% on a 10,000-image split; README, Results).
        "mlp": dict(epochs=30, batch_size=128, lr=0.2, lr_decay="cosine", momentum=0.9,
                    reg=5e-5, hidden=[512]),
    },
}
DATASET_DEFAULTS["mnist"] = DATASET_DEFAULTS["fashion-mnist"]
# Rates for the SVM where its validation accuracy preferred another one.
SVM_OVERRIDES = {
    "fashion-mnist": {"linear": dict(lr=0.01)},
}
SVM_OVERRIDES["mnist"] = SVM_OVERRIDES["fashion-mnist"]
PER_DATASET = ("epochs", "batch_size", "lr", "lr_decay", "momentum", "reg", "hidden")


@dataclass
class TrainConfig:
    """Every knob of a run; the CLI's flags map to these fields one to one.

    Fields left at None take the data set's default (``DATASET_DEFAULTS``).
    """

    dataset: str = "cifar10"
    model: str = "linear"
    hidden: list[int] | None = None
    loss: str = "softmax"
    impl: str = "lintorch"
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    lr_decay: str | None = None
    lr_step: int = 5
    lr_gamma: float = 0.5
    momentum: float | None = None
    reg: float | None = None
    reg_type: str = "l2"
    seed: int = 0
    device: str = "auto"
    dtype: str = "float32"
    data_root: str | None = None
    no_download: bool = False
    val_size: int = 1000
    preprocess: str = "standardize"
    augment: bool = False
    logdir: str = "runs"
    run_name: str | None = None
    resume: str | None = None
    limit: int | None = None
    quiet: bool = False
    tensorboard: bool = True
    cuda_graphs: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with the per-data-set defaults filled in and every choice validated."""
        for name, choices in [("dataset", data.DATASETS), ("model", MODELS), ("loss", LOSSES),
                              ("impl", IMPLS), ("reg_type", REG_TYPES), ("device", DEVICES),
                              ("dtype", DTYPES), ("preprocess", data.PREPROCESS)]:
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        defaults = dict(DATASET_DEFAULTS[self.dataset][self.model])
        if self.loss == "svm":
            defaults.update(SVM_OVERRIDES.get(self.dataset, {}).get(self.model, {}))
        filled = {k: defaults.get(k) for k in PER_DATASET if getattr(self, k) is None}
        cfg = dataclasses.replace(self, **filled)
        if cfg.hidden is None:
            cfg.hidden = [512]
        cfg.hidden = [int(h) for h in cfg.hidden]
        if cfg.lr_decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be one of {LR_DECAYS}, got {cfg.lr_decay!r}")
        for name in ("epochs", "batch_size", "lr_step"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(cfg, name)}")
        if not cfg.lr > 0 or not math.isfinite(cfg.lr):
            raise ValueError(f"lr must be a positive number, got {cfg.lr}")
        if cfg.reg < 0 or cfg.momentum < 0 or cfg.lr_gamma <= 0:
            raise ValueError("reg and momentum must be >= 0 and lr_gamma > 0")
        if any(h < 1 for h in cfg.hidden):
            raise ValueError(f"hidden sizes must be positive, got {cfg.hidden}")
        if cfg.limit is not None and cfg.limit < 1:
            raise ValueError(f"limit must be at least 1, got {cfg.limit}")
        return cfg


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left as it was."""

    def __init__(self, epoch: int, step: int, checkpoint: Path | None):
        self.epoch, self.step, self.checkpoint = epoch, step, checkpoint
        kept = f"; the last good checkpoint is {checkpoint}" if checkpoint else ""
        super().__init__(
            f"loss became NaN or infinite at epoch {epoch}, step {step}: "
            f"try a smaller --lr{kept}"
        )


class Interrupted(RuntimeError):
    """Ctrl-C during training; a checkpoint was saved to resume from."""

    def __init__(self, checkpoint: Path):
        self.checkpoint = checkpoint
        super().__init__(f"interrupted; resume with: python -m lintorch.train --resume "
                         f"{checkpoint}")


# ---------------------------------------------------------------------------------------------
# The pieces a run is built from


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    return torch.device(name)


def load_data(cfg: TrainConfig, device: torch.device) -> tuple[data.Prepared, str]:
    """The config's data set, split and preprocessed, on ``device``; and its name."""
    raw = data.load_dataset(cfg.dataset, cfg.data_root, download=not cfg.no_download)
    d = data.prepare(raw, val_size=cfg.val_size, preprocess=cfg.preprocess, seed=cfg.seed,
                     device=device, dtype=getattr(torch, cfg.dtype), limit=cfg.limit)
    return d, raw.name


def build_model(cfg: TrainConfig, in_features: int, num_classes: int) -> nn.Module:
    if cfg.model == "linear":
        return LinearClassifier(in_features, num_classes)
    return SigmoidMLP(in_features, cfg.hidden, num_classes)


def penalized_weights(model: nn.Module) -> list[Tensor]:
    """The weights R(W) applies to: every weight matrix, never a bias."""
    return [model.weight] if isinstance(model, LinearClassifier) else model.weights


def data_loss_fn(loss: str, impl: str):
    """(scores, y) -> mean data loss. Labels were checked once when the data was prepared,
    so lintorch's Functions are applied directly: no per-step check, no host sync on a GPU."""
    if impl == "lintorch":
        return losses.UNCHECKED[loss]
    if loss == "svm":  # torch's rows are divided by C; the lecture's are not
        return lambda s, y: s.shape[1] * F.multi_margin_loss(s, y)
    return F.cross_entropy


def penalty_fn(reg_type: str, impl: str):
    if impl == "lintorch":
        return losses.PENALTIES[reg_type]
    return (lambda w: (w * w).sum()) if reg_type == "l2" else (lambda w: w.abs().sum())


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    sched = torch.optim.lr_scheduler
    if cfg.lr_decay == "step":
        return sched.StepLR(optimizer, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    if cfg.lr_decay == "exp":
        return sched.ExponentialLR(optimizer, gamma=cfg.lr_gamma)
    if cfg.lr_decay == "cosine":
        return sched.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return sched.LambdaLR(optimizer, lambda epoch: 1.0)


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


def save_checkpoint(path: Path, state: dict) -> None:
    """Write to a temporary file, then rename: a crash never leaves a half-written checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def unique_dir(logdir: Path, name: str) -> Path:
    """``logdir/name``, or ``name-2``, ``name-3``, ... if taken; not created."""
    path, k = logdir / name, 1
    while path.exists():
        k += 1
        path = logdir / f"{name}-{k}"
    return path


def default_run_name(cfg: TrainConfig) -> str:
    return f"{cfg.dataset}-{cfg.model}-{cfg.loss}-{time.strftime('%Y%m%d-%H%M%S')}"


def _progress(total: int, desc: str, quiet: bool):
    if quiet or not sys.stdout.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, unit="batch", dynamic_ncols=True)


def _say(cfg: TrainConfig, *args) -> None:
    if not cfg.quiet:
        print(*args, flush=True)


# ---------------------------------------------------------------------------------------------
# The training loop


def fit(config: TrainConfig, prepared: data.Prepared | None = None) -> dict:
    """Train one model as ``config`` says; returns what ``metrics.json`` holds."""
    return train_model(config, prepared)[1]


def train_model(config: TrainConfig, prepared: data.Prepared | None = None
                ) -> tuple[nn.Module, dict]:
    """``fit``, also returning the trained model. ``prepared`` replaces the data set named in
    the config by tensors already in memory (the experiments' toy data)."""
    t_start = time.perf_counter()
    checkpoint = None
    if config.resume:
        checkpoint = _load_checkpoint(config.resume)
        saved = TrainConfig(**checkpoint["config"])
        # A resumed run keeps its recipe; only how long, where and how loudly may change.
        config = dataclasses.replace(
            saved, resume=config.resume, epochs=config.epochs or saved.epochs,
            quiet=config.quiet, data_root=config.data_root or saved.data_root,
            no_download=config.no_download, device=config.device,
            tensorboard=config.tensorboard, cuda_graphs=config.cuda_graphs)
    cfg = config.resolved()
    device = pick_device(cfg.device)
    dtype = getattr(torch, cfg.dtype)

    t0 = time.perf_counter()
    if prepared is None:
        d, source = load_data(cfg, device)
    else:
        d, source = prepared, "in-memory data"
    data_load_s = time.perf_counter() - t0
    num_classes, in_features = len(d.classes), math.prod(d.image_shape)

    torch.manual_seed(cfg.seed)
    model = build_model(cfg, in_features, num_classes).to(device=device, dtype=dtype)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scheduler = make_scheduler(cfg, optimizer)
    loss_fn = data_loss_fn(cfg.loss, cfg.impl)
    penalty = penalty_fn(cfg.reg_type, cfg.impl)
    weights = penalized_weights(model)
    reg = torch.tensor(cfg.reg, device=device, dtype=dtype)

    if checkpoint:
        run_dir = Path(cfg.resume).parent
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if cfg.lr_decay == "cosine":  # an extended run stretches its cosine to the new length
            scheduler.T_max = cfg.epochs
        start_epoch, history = checkpoint["epoch"], checkpoint["history"]
        torch.set_rng_state(checkpoint["rng"]["torch"])
    else:
        run_dir = unique_dir(Path(cfg.logdir), cfg.run_name or default_run_name(cfg))
        start_epoch, history = 0, []
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "checkpoint.pt"

    def state(epoch: int) -> dict:
        rng = {"torch": torch.get_rng_state()}
        if device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(device)
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch, "history": history,
                "rng": rng, "config": dataclasses.asdict(cfg)}

    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir), purge_step=start_epoch + 1 if checkpoint else None)
        if not checkpoint:
            board.log_config_text(writer, dataclasses.asdict(cfg))

    _say(cfg, f"{source}: {d.train_x.shape[0]} train / {d.val_x.shape[0]} val / "
              f"{d.test_x.shape[0]} test images, loaded in {data_load_s:.2f}s; "
              f"{cfg.model} model, {cfg.loss} loss ({cfg.impl}), device {device}; "
              f"run folder {run_dir}")
    if not checkpoint or not ckpt_path.exists():
        save_checkpoint(ckpt_path, state(start_epoch))

    n = d.train_x.shape[0]
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    zero = torch.zeros((), device=device, dtype=dtype)

    def train_step(idx: Tensor, gen: torch.Generator | None = None) -> Tensor:
        """One SGD step on the batch ``idx``: (data loss, penalty, correct count), left on
        the device, so that the loop never waits for the host."""
        # index_select is a plain gather, several times faster than x[idx] on a CPU
        x, y = d.train_x.index_select(0, idx), d.train_y.index_select(0, idx)
        if cfg.augment:
            x = data.augment(x, gen)
        scores = model(x)
        L = loss_fn(scores, y)
        optimizer.zero_grad(set_to_none=True)
        if cfg.reg > 0:
            R = penalty(weights[0]) if len(weights) == 1 else sum(map(penalty, weights))
            # the gradient of L + reg R, from both roots at once (no sum node built)
            torch.autograd.backward((L, R), (None, reg))
        else:
            L.backward()
            R = zero
        optimizer.step()
        # max().indices: argmax's first maximum, at half its cost on a CPU
        correct = (scores.max(1).indices == y).sum()
        return torch.stack((L.detach(), R.detach(), correct.to(dtype)))

    # On a GPU the step is replayed from a CUDA graph (lintorch/cuda_graph.py); augmentation
    # draws random numbers from the epoch's own generator, which a graph cannot replay.
    graphed = None
    if device.type == "cuda" and cfg.cuda_graphs and not cfg.augment:
        graphed = GraphedStep(train_step, cfg.batch_size, device)
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            t_epoch = time.perf_counter()
            gen = epoch_generator(cfg.seed, epoch, device)
            lr = optimizer.param_groups[0]["lr"]
            stats, sizes = [], []
            bar = _progress(steps_per_epoch, f"epoch {epoch}/{cfg.epochs}", cfg.quiet)
            model.train()
            for idx in data.batch_indices(n, cfg.batch_size, gen, device):
                stats.append(train_step(idx, gen) if graphed is None else graphed(idx, key=lr))
                sizes.append(idx.shape[0])
                if bar is not None:
                    bar.update(1)
            if bar is not None:
                bar.close()
            weight = torch.tensor(sizes, device=device, dtype=torch.float64)
            step_losses, step_penalties, corrects = torch.stack(stats).double().unbind(1)
            bad = (~torch.isfinite(step_losses + step_penalties)).nonzero()
            if bad.numel():
                raise TrainingDiverged(epoch, int(bad[0]) + 1,
                                       ckpt_path if ckpt_path.exists() else None)
            loss_sum = (step_losses * weight).sum()
            penalty_sum = (step_penalties * weight).sum()
            correct = corrects.sum()
            val_loss, val_acc, _ = evaluate(model, d.val_x, d.val_y, loss_fn)
            scheduler.step()
            row = {"epoch": epoch, "train_loss": float(loss_sum) / n,
                   "train_accuracy": int(correct) / n, "val_loss": float(val_loss),
                   "val_accuracy": float(val_acc), "lr": lr,
                   "penalty": float(penalty_sum) / n,
                   "epoch_time_s": time.perf_counter() - t_epoch}
            history.append(row)
            save_checkpoint(ckpt_path, state(epoch))
            if writer is not None:
                _log_epoch(writer, model, row, d)
            _say(cfg, f"epoch {epoch:3d}/{cfg.epochs} | train loss {row['train_loss']:.4f} "
                      f"acc {100 * row['train_accuracy']:6.2f}% | val loss {row['val_loss']:.4f} "
                      f"acc {100 * row['val_accuracy']:6.2f}% | lr {lr:.3g} | "
                      f"{row['epoch_time_s']:.2f}s")
    except KeyboardInterrupt:
        if writer is not None:
            writer.close()
        raise Interrupted(ckpt_path) from None

    result = _final_metrics(cfg, model, d, loss_fn, history, run_dir, device)
    result["data_load_s"] = data_load_s
    result["wall_time_s"] = time.perf_counter() - t_start
    (run_dir / "metrics.json").write_text(json.dumps(result, indent=2))
    if writer is not None:
        _log_final(writer, cfg, result, d, run_dir)
        writer.close()
    _print_summary(cfg, result)
    return model, result


def _load_checkpoint(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no checkpoint at {p}; give the path of a run's checkpoint.pt, "
                                "e.g. --resume runs/<run-name>/checkpoint.pt")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: say which, not how pickle failed
        raise ValueError(f"cannot read checkpoint {p}: {type(e).__name__}") from e


def _log_epoch(writer, model: nn.Module, row: dict, d: data.Prepared) -> None:
    e = row["epoch"]
    writer.add_scalar("loss/train", row["train_loss"], e)
    writer.add_scalar("loss/val", row["val_loss"], e)
    writer.add_scalar("loss/penalty", row["penalty"], e)
    writer.add_scalar("accuracy/train", row["train_accuracy"], e)
    writer.add_scalar("accuracy/val", row["val_accuracy"], e)
    writer.add_scalar("lr", row["lr"], e)
    board.log_epoch_histograms(writer, model, e)
    if isinstance(model, LinearClassifier) and len(d.image_shape) == 3:
        writer.add_image("templates", board.template_grid(model.templates(d.image_shape),
                                                          d.classes), e)
    writer.flush()


def _final_metrics(cfg, model, d, loss_fn, history, run_dir, device) -> dict:
    result = {"config": dataclasses.asdict(cfg), "history": history}
    for split, x, y in [("train", d.train_x, d.train_y), ("val", d.val_x, d.val_y),
                        ("test", d.test_x, d.test_y)]:
        loss, acc, pred = evaluate(model, x, y, loss_fn)
        result[split] = {"loss": float(loss), "accuracy": float(acc)}
    cm = board.confusion_matrix(pred, d.test_y, len(d.classes)).cpu()
    per_class = (cm.diag().double() / cm.sum(1).clamp(min=1).double()).tolist()
    result["per_class_test_accuracy"] = dict(zip(d.classes, per_class))
    result["confusion_matrix"] = cm.tolist()
    result["device"] = str(device) if device.type == "cpu" else torch.cuda.get_device_name(device)
    result["torch_version"] = torch.__version__
    result["python_version"] = platform.python_version()
    result["run_dir"] = str(run_dir)
    return result


def _log_final(writer, cfg: TrainConfig, result: dict, d: data.Prepared, run_dir: Path) -> None:
    e = result["history"][-1]["epoch"] if result["history"] else 0
    writer.add_scalar("accuracy/test", result["test"]["accuracy"], e)
    writer.add_image("confusion", board.confusion_image(
        torch.tensor(result["confusion_matrix"]), d.classes), e)
    board.log_hparams(writer, dataclasses.asdict(cfg), {
        "hparam/test_accuracy": result["test"]["accuracy"],
        "hparam/val_accuracy": result["val"]["accuracy"],
        "hparam/train_loss": result["train"]["loss"],
    })


def _print_summary(cfg: TrainConfig, result: dict) -> None:
    if cfg.quiet:
        return
    print(f"test accuracy {100 * result['test']['accuracy']:.2f}% "
          f"(val {100 * result['val']['accuracy']:.2f}%, train "
          f"{100 * result['train']['accuracy']:.2f}%) in {result['wall_time_s']:.1f}s")
    width = max(len(c) for c in result["per_class_test_accuracy"])
    print(f"{'class':<{width}}  test accuracy")
    for name, acc in result["per_class_test_accuracy"].items():
        print(f"{name:<{width}}  {100 * acc:6.2f}%")
    print(f"metrics, checkpoint and TensorBoard events in {result['run_dir']} "
          "(view with: tensorboard --logdir runs)")


# ---------------------------------------------------------------------------------------------
# The command line


def _parsed_number(kind, accept, wanted: str):
    """An argparse type: ``kind(text)``, refused with a one-line reason unless ``accept``s."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not accept(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    return parse


def positive(kind):
    """argparse type for numbers > 0 (and finite): ``positive(int)``, ``positive(float)``."""
    parse = _parsed_number(kind, lambda v: v > 0 and (kind is not float or math.isfinite(v)),
                           f"a positive {kind.__name__}")
    parse.__name__ = f"positive {kind.__name__}"
    return parse


def non_negative(kind):
    """argparse type for numbers >= 0."""
    return _parsed_number(kind, lambda v: v >= 0, ">= 0")


def add_training_flags(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The flags of TrainConfig, shared by ``lintorch.train`` and ``lintorch.sweep``."""
    per = "default: per data set, listed below"
    a = parser.add_argument
    a("--dataset", default="cifar10", choices=data.DATASETS, help="data set to train on")
    a("--model", default="linear", choices=MODELS, help="linear classifier or sigmoid MLP")
    a("--hidden", type=positive(int), nargs="+", default=None,
      help=f"hidden layer sizes of the MLP ({per})")
    a("--loss", default="softmax", choices=LOSSES, help="multiclass SVM or softmax cross-entropy")
    a("--impl", default="lintorch", choices=IMPLS,
      help="lintorch's hand-written losses, or torch's built-ins (for comparison)")
    a("--epochs", type=positive(int), default=None, help=f"epochs to train ({per})")
    a("--batch-size", type=positive(int), default=None, help=f"mini-batch size ({per})")
    if not sweep:
        a("--lr", type=positive(float), default=None, help=f"learning rate alpha ({per})")
    a("--lr-decay", choices=LR_DECAYS, default=None,
      help=f"learning-rate schedule, stepped once per epoch ({per})")
    a("--lr-step", type=positive(int), default=5, help="epochs between decays for --lr-decay step")
    a("--lr-gamma", type=positive(float), default=0.5, help="decay factor for step and exp")
    a("--momentum", type=non_negative(float), default=None,
      help=f"SGD momentum, 0 being the lecture's plain SGD ({per})")
    if not sweep:
        a("--reg", type=non_negative(float), default=None,
          help=f"regularization strength lambda ({per})")
    a("--reg-type", choices=REG_TYPES, default="l2", help="penalty R(W) on weights, not biases")
    a("--seed", type=int, default=0, help="random seed (data split, init, batch order)")
    a("--device", choices=DEVICES, default="auto", help="auto = cuda when available")
    a("--dtype", choices=DTYPES, default="float32", help="floating-point type of data and model")
    a("--data-root", default=None,
      help="folder holding the data set (default: $LINTORCH_DATA, else ./data)")
    a("--no-download", action="store_true", help="never download missing data")
    a("--val-size", type=non_negative(int), default=1000,
      help="training images held out for validation")
    a("--preprocess", choices=data.PREPROCESS, default="standardize",
      help="none, center (subtract the mean image) or standardize (per-channel mean, std)")
    a("--augment", action="store_true", help="random flips and padded crops, on the device")
    a("--logdir", default="runs", help="folder for the run folders")
    a("--run-name", default=None, help="run folder name (default: model, loss and time)")
    a("--limit", type=positive(int), default=None,
      help="use only the first N training images (quick runs)")
    a("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    a("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
      help="write TensorBoard events (metrics.json and the checkpoint are written either way)")
    a("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
      help="on a GPU, replay each step from a captured CUDA graph: the same arithmetic, "
           "launched at once (not with --augment)")


def _defaults_epilog() -> str:
    lines = ["per-data-set defaults (for flags left unset):"]
    for name, by_model in DATASET_DEFAULTS.items():
        for model, values in by_model.items():
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            lines.append(f"  {name} {model}: {shown}")
    return "\n".join(lines)


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, and the epilog's table kept as written."""

    def _get_help_string(self, action):
        if action.default is None:  # per-data-set defaults say so in their own help text
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lintorch.train",
        description="Train a linear classifier or sigmoid MLP with mini-batch SGD, "
                    "logging to TensorBoard (tensorboard --logdir runs).",
        formatter_class=_HelpFormatter, epilog=_defaults_epilog())
    add_training_flags(parser)
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue the run saved in PATH (runs/<name>/checkpoint.pt)")
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
        if not cfg.resume:
            cfg.resolved()  # a bad combination is a usage error, before any data is read
    except ValueError as e:
        parser.error(str(e))
    try:
        fit(cfg)
    except (data.DataError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
