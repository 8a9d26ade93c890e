"""``TrainConfig``: every setting of a training run, each declared once, with the per-data-set
defaults.

A field carries its default, its help text and its role: "recipe" (it changes what is trained,
so TensorBoard's HPARAMS tab shows it and a resumed run keeps it), "io" (where the run reads and
writes) or "run" (how fast or how loudly it runs); ``free_on_resume`` marks what a resumed run may
change. The command-line flags (``lintorch/cli.py``), the HPARAMS recipe, the resume rule and the
checks of a config, given or saved in a checkpoint, are all derived from the fields; a bound is
checked by ``out_of_bounds``, wherever lintorch takes a number.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import typing
from dataclasses import dataclass, field

from . import rawdata
from .losses import CLASSIFIERS, PENALTIES

MODELS = ("linear", "mlp")
LOSSES = CLASSIFIERS
IMPLS = ("lintorch", "torch")
LR_DECAYS = ("none", "step", "exp", "cosine")
REG_TYPES = tuple(PENALTIES)
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")

# Per-data-set defaults for the fields left at None, chosen on the validation split (how: see
# experiments/README.md).
DATASET_DEFAULTS = {
    "cifar10": {
        "linear": dict(epochs=20, batch_size=200, lr=0.03, lr_decay="cosine", momentum=0.0,
                       reg=0.03),
        "mlp": dict(epochs=40, batch_size=200, lr=0.1, lr_decay="cosine", momentum=0.9,
                    reg=1e-3, hidden=[512]),
    },
    "fashion-mnist": {
        "linear": dict(epochs=15, batch_size=128, lr=0.1, lr_decay="cosine", momentum=0.0,
                       reg=1e-3),
        # Momentum: the only change that moved the MLP's validation accuracy past the
        # plain-SGD plateau.
        "mlp": dict(epochs=30, batch_size=128, lr=0.2, lr_decay="cosine", momentum=0.9,
                    reg=5e-5, hidden=[512]),
    },
    # Your own features (an .npz file): a starting point for standardized features.
    "npz": {
        "linear": dict(epochs=10, batch_size=256, lr=0.05, lr_decay="cosine", momentum=0.0,
                       reg=1e-4),
        "mlp": dict(epochs=20, batch_size=256, lr=0.1, lr_decay="cosine", momentum=0.9,
                    reg=5e-5, hidden=[512]),
    },
}
DATASET_DEFAULTS["mnist"] = DATASET_DEFAULTS["fashion-mnist"]
# A folder of images of your own: the defaults chosen on CIFAR-10, the natural images.
DATASET_DEFAULTS["folder"] = DATASET_DEFAULTS["cifar10"]
# Rates (and strengths) for the SVM where its validation accuracy preferred others.
SVM_OVERRIDES = {"fashion-mnist": {"linear": dict(lr=0.01)}, "mnist": {"linear": dict(lr=0.01)},
                 "cifar10": {"linear": dict(lr=1e-3, reg=0.1)}}
SVM_OVERRIDES["folder"] = SVM_OVERRIDES["cifar10"]
# Epoch e's batches are drawn with the seed seed * SEED_STRIDE + e (train.epoch_generator), and
# torch takes seeds in [-2^63, 2^64): so are the seeds of a run's first SEED_STRIDE epochs.
SEED_STRIDE = 100_003
SEED_RANGE = (-(2**63) // SEED_STRIDE + 1, (2**64 - 1) // SEED_STRIDE - 1)
PER_DATASET = ("epochs", "batch_size", "lr", "lr_decay", "momentum", "reg", "hidden")
_PER = "default: per data set, listed below"


class ResumeConflict(ValueError):
    """A setting given with --resume that differs from the checkpoint's."""


def flag(name: str) -> str:
    """The command-line flag of field ``name``: ``batch_size`` is ``--batch-size``."""
    return "--" + name.replace("_", "-")


def setting(default, help: str, role: str, *, free_on_resume: bool = False, **for_argparse):
    """A field of TrainConfig: its default, its help, its role, whether a resumed run may change
    it, and for its flag ``choices``, ``bound`` ("positive" or "non_negative") or ``metavar``."""
    return field(default=default, metadata={"help": help, "role": role,
                                            "free_on_resume": free_on_resume, **for_argparse})


@dataclass
class TrainConfig:
    """Every setting of a run; the CLI's flags map to these fields one to one.

    Fields left at None take the data set's default (``DATASET_DEFAULTS``). ``dataset`` is one
    of ``rawdata.DATASETS``, the path of an .npz file of your own features, or the path of a folder
    of images (``train/<class>/<image>``, ``test/<class>/<image>``).
    """

    dataset: str = setting(
        "cifar10", "data set to train on, an .npz file of your own features (x_train, y_train, "
        "x_test, y_test, optionally classes), or a folder of images (FOLDER/train/<class>/<image>,"
        " FOLDER/test/<class>/<image>; decoded once, then read from a cache in $LINTORCH_CACHE, "
        "else $XDG_CACHE_HOME/lintorch, else ~/.cache/lintorch)", "recipe")
    model: str = setting("linear", "linear classifier or sigmoid MLP", "recipe", choices=MODELS)
    hidden: list[int] | None = setting(None, f"hidden layer sizes of the MLP ({_PER})", "recipe",
                                       bound="positive")
    loss: str = setting("softmax", "multiclass SVM or softmax cross-entropy", "recipe",
                        choices=LOSSES)
    impl: str = setting("lintorch", "lintorch's hand-written losses, sigmoid and SGD step, or "
                        "torch's built-ins (for comparison)", "recipe", choices=IMPLS)
    epochs: int | None = setting(None, f"epochs to train ({_PER}); with --resume, a longer run",
                                 "recipe", free_on_resume=True, bound="positive")
    batch_size: int | None = setting(None, f"mini-batch size ({_PER})", "recipe", bound="positive")
    lr: float | None = setting(None, f"learning rate alpha ({_PER})", "recipe", bound="positive")
    lr_decay: str | None = setting(None, f"learning-rate schedule, stepped once per epoch ({_PER})",
                                   "recipe", choices=LR_DECAYS)
    lr_step: int = setting(5, "epochs between decays for --lr-decay step", "recipe",
                           bound="positive")
    lr_gamma: float = setting(0.5, "decay factor for step and exp", "recipe", bound="positive")
    momentum: float | None = setting(
        None, f"SGD momentum, 0 being the lecture's plain SGD ({_PER})", "recipe",
        bound="non_negative")
    reg: float | None = setting(None, f"regularization strength lambda ({_PER})", "recipe",
                                bound="non_negative")
    reg_type: str = setting("l2", "penalty R(W) on weights, not biases", "recipe",
                            choices=REG_TYPES)
    seed: int = setting(0, "random seed (data split, init, batch order)", "recipe", bound="seed")
    device: str = setting("auto", "auto = cuda when available", "run", free_on_resume=True,
                          choices=DEVICES)
    dtype: str = setting("float32", "floating-point type of data and model", "recipe",
                         choices=DTYPES)
    data_root: str | None = setting(
        None, "folder holding the data set (unset: $LINTORCH_DATA, else ./data, else where "
        "Debian's dataset packages install it)", "io", free_on_resume=True)
    no_download: bool = setting(False, "never download missing data", "io", free_on_resume=True)
    val_size: int | None = setting(
        None, "training images held out for validation (unset: 1000, or a tenth of the "
        "training images when that is fewer)", "recipe", bound="non_negative")
    preprocess: str = setting(
        "standardize", "none, center (subtract the mean image), standardize (per-channel mean, "
        "std) or pixel (each pixel's own mean, std)", "recipe", choices=rawdata.PREPROCESS)
    augment: bool = setting(False, "random flips and padded crops, on the device", "recipe")
    logdir: str = setting("runs", "folder for the run folders", "io")
    run_name: str | None = setting(None, "run folder name (unset: the model, loss and time)", "io")
    resume: str | None = setting(
        None, "continue the run saved in PATH (runs/<name>/checkpoint.pt): the run's own command "
        "with --resume PATH appended, or --resume PATH alone", "io", free_on_resume=True,
        metavar="PATH")
    limit: int | None = setting(
        None, "train on N images of the training split only, drawn with the seed after the "
        "validation images are held out (quick runs; unset: all of them)", "recipe",
        bound="positive", metavar="N")
    quiet: bool = setting(False, "no progress bar or per-epoch lines", "run", free_on_resume=True)
    tensorboard: bool = setting(True, "write TensorBoard events (metrics.json and the checkpoint "
                                "are written either way)", "run", free_on_resume=True)
    cuda_graphs: bool = setting(True, "on a GPU, replay each step from a captured CUDA graph: "
                                "the same arithmetic, launched at once (not with --augment)", "run",
                                free_on_resume=True)
    refresh_cache: bool = setting(False, "decode an image folder again, though its cache is "
                                  "current", "io", free_on_resume=True)

    def resolved(self) -> TrainConfig:
        """A copy with the per-data-set defaults filled in and every value checked."""
        cfg = dataclasses.replace(self, **{f.name: os.fspath(getattr(self, f.name))
                                           for f in _PATHS if getattr(self, f.name) is not None})
        named = rawdata.kind(cfg.dataset)
        defaults = dict(DATASET_DEFAULTS[named][cfg.model if cfg.model in MODELS else "linear"])
        if cfg.loss == "svm":
            defaults.update(SVM_OVERRIDES.get(named, {}).get(cfg.model, {}))
        cfg = dataclasses.replace(
            cfg, **{k: defaults.get(k) for k in PER_DATASET if getattr(cfg, k) is None})
        cfg.hidden = [int(h) for h in cfg.hidden or [512]]
        for f in dataclasses.fields(cfg):
            if problem := _out_of_bounds(getattr(cfg, f.name), f.metadata,
                                           value_type(f.name)[0]):
                raise ValueError(f"{f.name} must be {problem}, got {getattr(cfg, f.name)!r}")
        if problem := _schedule_overflows(cfg):
            raise ValueError(problem)
        return cfg

    @classmethod
    def from_saved(cls, saved: dict) -> TrainConfig:
        """The config a checkpoint saved (``dataclasses.asdict``), fields it does not know
        (an older or newer lintorch's) left out."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in known})

    def resumed_from(self, saved: dict, given: typing.Iterable[str] | None = None
                     ) -> TrainConfig:
        """The run a checkpoint saved (``saved``: its config), continued as this config says.

        ``given``: the fields set on purpose (the CLI's flags); unset, those that differ from
        TrainConfig's defaults. A given field that a resumed run keeps must equal the saved one
        (ResumeConflict, naming both, if not); the free ones replace it where set (not None).
        """
        base, defaults = TrainConfig.from_saved(saved), TrainConfig()
        if given is None:
            given = {f.name for f in dataclasses.fields(self)
                     if getattr(self, f.name) != getattr(defaults, f.name)}
        for f in dataclasses.fields(self):
            mine, theirs = getattr(self, f.name), getattr(base, f.name)
            if f.name in given and not f.metadata["free_on_resume"] and not _same(f, mine, theirs):
                if f in _PATHS and isinstance(mine, (str, os.PathLike)):
                    mine = _realpath(mine)  # a relative path: where it leads from here
                raise ResumeConflict(
                    f"{f.name} cannot change when resuming: the checkpoint's is {theirs!r}, "
                    f"{flag(f.name)} gives {mine!r}; leave {flag(f.name)} out or start a new run")
        return dataclasses.replace(base, **{
            f.name: getattr(self, f.name) for f in dataclasses.fields(self)
            if f.metadata["free_on_resume"] and getattr(self, f.name) is not None})


_FIELDS = dataclasses.fields(TrainConfig)
_PATHS = [f for f in _FIELDS if f.name in ("dataset", "data_root", "logdir", "resume")]
RECIPE = tuple(f.name for f in _FIELDS if f.metadata["role"] == "recipe")
NOT_RECIPE = tuple(f.name for f in _FIELDS if f.metadata["role"] != "recipe")
FREE_ON_RESUME = tuple(f.name for f in _FIELDS if f.metadata["free_on_resume"])
_HINTS = typing.get_type_hints(TrainConfig)


def value_type(name: str) -> tuple[type, bool]:
    """Field ``name``'s type of value (int, float, str or bool) and whether it holds a list of
    them: ``list[int] | None`` is (int, True)."""
    kind = (typing.get_args(_HINTS[name]) or (_HINTS[name],))[0]  # X | None -> X
    many = typing.get_origin(kind) is list
    return (typing.get_args(kind)[0] if many else kind), many


def _out_of_bounds(value, meta, kind: type) -> str | None:
    """What ``value`` (of a field whose numbers are ``kind``) must be, in words, if it is not;
    None if it is (or is unset)."""
    if value is None:
        return None
    if "choices" in meta and value not in meta["choices"]:
        return f"one of {meta['choices']}"
    if meta.get("bound") == "seed":
        ok = isinstance(value, int) and SEED_RANGE[0] <= value <= SEED_RANGE[1]
        return None if ok else seed_range()
    for v in value if isinstance(value, list) else [value]:
        if problem := out_of_bounds(v, meta.get("bound"), kind):
            return problem
    return None


def out_of_bounds(value: float, bound: str | None, kind: type = float) -> str | None:
    """What a number under ``bound`` ("positive", "non_negative" or None: any) must be, in
    words, if ``value`` is not; None if it is. The one rule of every bounded number lintorch
    takes: a field, its flag (``cli.positive``), a grid, a search's or an update's step size."""
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if bound is None or (real and math.isfinite(value) and (value > 0 if bound == "positive"
                                                            else value >= 0)):
        return None
    if bound == "positive":
        return "a positive integer" if kind is int else "a finite number > 0"
    return "an integer >= 0" if kind is int else "a finite number >= 0"


def seed_range() -> str:
    return (f"an integer from {SEED_RANGE[0]} to {SEED_RANGE[1]} (torch takes seeds in "
            f"[-2^63, 2^64), and epoch e draws with seed x {SEED_STRIDE} + e)")


def _schedule_overflows(cfg: TrainConfig) -> str | None:
    """Why the learning rate of some epoch is not a finite number, or None: checked over the
    whole schedule when the config is made, not at the epoch where it would overflow."""
    if cfg.lr_decay not in ("step", "exp"):
        return None  # none and cosine stay within [0, lr]
    last = cfg.epochs - 1 if cfg.lr_decay == "exp" else (cfg.epochs - 1) // cfg.lr_step
    try:  # gamma^k is monotonic in k: the last epoch's is the largest or the smallest
        lr = cfg.lr * cfg.lr_gamma ** last
    except OverflowError:
        lr = math.inf
    if math.isfinite(lr):
        return None
    return (f"the learning rate overflows: --lr {cfg.lr:g} x --lr-gamma {cfg.lr_gamma:g}^{last} "
            f"(--lr-decay {cfg.lr_decay}, --epochs {cfg.epochs}) is beyond float range; give a "
            "smaller --lr-gamma, --lr or --epochs")


def _realpath(path) -> str:
    return os.path.realpath(os.path.expanduser(path))


def _same(f: dataclasses.Field, a, b) -> bool:
    """Whether two values of field ``f`` are the same; paths are the same file or folder (seen
    from this working folder, links followed)."""
    if f in _PATHS and isinstance(a, (str, os.PathLike)) and isinstance(b, (str, os.PathLike)):
        return _realpath(a) == _realpath(b)
    return a == b


def recipe(cfg: TrainConfig) -> dict:
    """The recipe fields that this (resolved) run uses, for the HPARAMS tab: ``hidden`` for the
    MLP only, ``lr_step`` for the step decay only, ``lr_gamma`` for step and exp only, ``limit``
    only when set (unset, the run trains on the whole training split)."""
    # An unused field would show a value that changed nothing, and two runs that differ only
    # there would look like two recipes. An unset limit would also be the string "None" in a
    # column of numbers.
    unused = {"hidden": cfg.model != "mlp", "lr_step": cfg.lr_decay != "step",
              "lr_gamma": cfg.lr_decay not in ("step", "exp"), "limit": cfg.limit is None,
              "val_size": cfg.val_size is None}
    return {k: getattr(cfg, k) for k in RECIPE if not unused.get(k)}


def wrong_kind(values: dict) -> str | None:
    """The first of ``values`` (a saved config: field -> value) whose value is not of its field's
    type, in words (``lr is 'fast', not float or None``); None when every one is. Unknown fields
    are left to ``TrainConfig.from_saved``, which ignores them."""
    for name, value in values.items():
        if name not in _HINTS:
            continue
        kinds = typing.get_args(_HINTS[name]) or (_HINTS[name],)  # list[int] | None -> its parts
        if any(_is_kind(value, kind) for kind in kinds):
            continue
        names = ["None" if kind is type(None) else kind.__name__ if isinstance(kind, type)
                 else str(kind) for kind in kinds]  # list[int] has no name of its own
        return f"{name} is {value!r:.40}, not {' or '.join(names)}"
    return None


def _is_kind(value, kind) -> bool:
    if typing.get_origin(kind) is list:
        return isinstance(value, list) and all(_is_kind(v, *typing.get_args(kind)) for v in value)
    if kind is float:  # JSON and Python alike write 1.0 as 1 at times
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def defaults_epilog(model: str | None = None) -> str:
    """The per-data-set defaults as a table for --help (``model``: that model's only)."""
    lines = ["per-data-set defaults (for flags left unset; 'npz' is your own .npz file, "
             "'folder' your own folder of images):"]
    for name, by_model in DATASET_DEFAULTS.items():
        for m, values in by_model.items():
            if model in (None, m):
                shown = ", ".join(f"{k}={v}" for k, v in values.items())
                if svm := SVM_OVERRIDES.get(name, {}).get(m):
                    shown += " (--loss svm: " + ", ".join(f"{k}={v}" for k, v in svm.items()) + ")"
                lines.append(f"  {name} {m}: {shown}")
    return "\n".join(lines)


def model_parameters(cfg: TrainConfig, in_features: int, num_classes: int) -> int:
    """How many numbers the config's model holds: W and b of each layer."""
    sizes = [in_features, *(cfg.hidden if cfg.model == "mlp" else []), num_classes]
    return sum(a * b + b for a, b in zip(sizes, sizes[1:]))


def allocated(cfg: TrainConfig, in_features: int, num_classes: int, device, build):
    """``build()`` (the config's model on ``device``), or a ValueError of one line that states
    the model's size: refused before allocating when its weights alone exceed the device's
    memory, or when allocating them fails."""
    import torch

    n = model_parameters(cfg, in_features, num_classes)
    size = n * getattr(torch, cfg.dtype).itemsize
    if device.type == "cuda":
        memory = torch.cuda.mem_get_info(device)[1]
    else:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    what = (f"the {cfg.model} model ({in_features} inputs, hidden {cfg.hidden}, {num_classes} "
            f"classes)" if cfg.model == "mlp" else f"the linear model ({in_features} inputs, "
            f"{num_classes} classes)")
    fix = "give a smaller --hidden" if cfg.model == "mlp" else "use fewer features"
    if size > memory:
        raise ValueError(f"{what} has {n:,} parameters, {size / 2**30:,.1f} GiB in {cfg.dtype}, "
                         f"more than the {memory / 2**30:,.1f} GiB of {device.type} memory; {fix}")
    try:
        return build()
    except (RuntimeError, MemoryError) as e:
        reason = " ".join(str(e).split())[:120]
        raise ValueError(f"{what} has {n:,} parameters, {size / 2**30:,.1f} GiB in {cfg.dtype}, "
                         f"and cannot be allocated on {device.type} ({reason}); {fix}") from None
