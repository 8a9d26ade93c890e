"""What the command-line entry points share: the training flags, argparse number types and help
formatter, and SIGTERM. Only the ``main()`` functions import it."""

from __future__ import annotations

import argparse
import math
import signal
from pathlib import Path

from . import config, data


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (a KeyboardInterrupt): what was saved is kept."""

    exit_code = 143  # 128 + SIGTERM, the shell's convention


def handle_sigterm() -> None:
    """Turn SIGTERM (a scheduler's or torchrun's stop) into ``Terminated`` in the main thread."""
    def stop(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, stop)


def exit_code(interrupt: KeyboardInterrupt) -> int:
    return getattr(interrupt, "exit_code", 130)  # 130 = 128 + SIGINT


# argparse


def _parsed_number(kind, accept, wanted: str):
    """An argparse type: ``kind(text)``, refused with a one-line reason unless ``accept``ed."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not (math.isfinite(value) and accept(value)):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    return parse


def positive(kind):
    """argparse type for finite numbers > 0: ``positive(int)``, ``positive(float)``."""
    return _parsed_number(kind, lambda v: v > 0,
                          "a positive integer" if kind is int else "a finite number > 0")


def non_negative(kind):
    """argparse type for finite numbers >= 0."""
    return _parsed_number(kind, lambda v: v >= 0,
                          "an integer >= 0" if kind is int else "a finite number >= 0")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, except None (such flags say what unset means in their help),
    and the epilog's table kept as written."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def explicit_flags(parser: argparse.ArgumentParser, args: argparse.Namespace,
                   argv: list[str] | None) -> set[str]:
    """The destinations of the flags given on the command line (not left at their default)."""
    unset = object()
    probe = argparse.Namespace(**{dest: unset for dest in vars(args)})
    parser.parse_args(argv, namespace=probe)  # argparse sets defaults only where nothing is set
    return {dest for dest, value in vars(probe).items() if value is not unset}


DATASET_METAVAR = "{" + ",".join(data.DATASETS) + "} or PATH.npz or FOLDER"  # --dataset's


def dataset_name(text: str) -> str:
    """argparse type of --dataset: a built-in data set's name, the path of an .npz file, or an
    existing folder (of images)."""
    if data.kind(text) != "folder" or Path(text).expanduser().is_dir():
        return text
    raise argparse.ArgumentTypeError(
        f"must be one of {', '.join(data.DATASETS)}, the path of an .npz file or of a folder of "
        f"images, got {text!r} (no such folder)")


def add_training_flags(parser: argparse.ArgumentParser, sweep: bool = False) -> None:
    """The flags of TrainConfig, shared by ``lintorch.train`` and ``lintorch.sweep``."""
    per = "default: per data set, listed below"
    a = parser.add_argument
    a("--dataset", default="cifar10", type=dataset_name, metavar=DATASET_METAVAR,
      help="data set to train on, an .npz file of your own features "
      "(x_train, y_train, x_test, y_test, optionally classes), or a folder of images "
      "(FOLDER/train/<class>/<image>, FOLDER/test/<class>/<image>; decoded once, then read "
      "from a cache in $LINTORCH_CACHE, else $XDG_CACHE_HOME/lintorch, else "
      "~/.cache/lintorch)")
    a("--model", default="linear", choices=config.MODELS, help="linear classifier or sigmoid MLP")
    a("--hidden", type=positive(int), nargs="+", default=None,
      help=f"hidden layer sizes of the MLP ({per})")
    a("--loss", default="softmax", choices=config.LOSSES,
      help="multiclass SVM or softmax cross-entropy")
    a("--impl", default="lintorch", choices=config.IMPLS,
      help="lintorch's hand-written losses and sigmoid, or torch's built-ins (for comparison)")
    a("--epochs", type=positive(int), default=None, help=f"epochs to train ({per})")
    a("--batch-size", type=positive(int), default=None, help=f"mini-batch size ({per})")
    if not sweep:
        a("--lr", type=positive(float), default=None, help=f"learning rate alpha ({per})")
    a("--lr-decay", choices=config.LR_DECAYS, default=None,
      help=f"learning-rate schedule, stepped once per epoch ({per})")
    a("--lr-step", type=positive(int), default=5, help="epochs between decays for --lr-decay step")
    a("--lr-gamma", type=positive(float), default=0.5, help="decay factor for step and exp")
    a("--momentum", type=non_negative(float), default=None,
      help=f"SGD momentum, 0 being the lecture's plain SGD ({per})")
    if not sweep:
        a("--reg", type=non_negative(float), default=None,
          help=f"regularization strength lambda ({per})")
    a("--reg-type", choices=config.REG_TYPES, default="l2",
      help="penalty R(W) on weights, not biases")
    a("--seed", type=int, default=0, help="random seed (data split, init, batch order)")
    a("--device", choices=config.DEVICES, default="auto", help="auto = cuda when available")
    a("--dtype", choices=config.DTYPES, default="float32",
      help="floating-point type of data and model")
    a("--data-root", default=None,
      help="folder holding the data set (unset: $LINTORCH_DATA, else ./data, else where "
           "Debian's dataset packages install it)")
    a("--no-download", action="store_true", help="never download missing data")
    a("--val-size", type=non_negative(int), default=1000,
      help="training images held out for validation")
    a("--preprocess", choices=data.PREPROCESS, default="standardize",
      help="none, center (subtract the mean image), standardize (per-channel mean, std) or "
           "pixel (each pixel's own mean, std)")
    a("--augment", action="store_true", help="random flips and padded crops, on the device")
    a("--logdir", default="runs", help="folder for the run folders")
    a("--run-name", default=None, help="run folder name (unset: the model, loss and time)")
    a("--limit", type=positive(int), default=None, metavar="N",
      help="train on N images of the training split only, drawn with the seed after the "
           "validation images are held out (quick runs; unset: all of them)")
    a("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    a("--tensorboard", action=argparse.BooleanOptionalAction, default=True,
      help="write TensorBoard events (metrics.json and the checkpoint are written either way)")
    a("--cuda-graphs", action=argparse.BooleanOptionalAction, default=True,
      help="on a GPU, replay each step from a captured CUDA graph: the same arithmetic, "
           "launched at once (not with --augment)")
