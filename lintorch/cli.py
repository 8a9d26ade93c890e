"""What the command-line entry points share: the training flags, argparse number types and help
formatter, and SIGTERM. Only the ``main()`` functions import it."""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from . import config, rawdata


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


def run_main(work: Callable[[], int | None], also: tuple[type[Exception], ...] = (),
             error_code: int = 1) -> int:
    """A command's exit code: ``work()``'s, 0 if it returns None; a user's mistake (bad data, a
    bad checkpoint, an unwritable folder, or one of ``also``) is one line on stderr and
    ``error_code`` (or the error's own ``exit_code``); Ctrl-C is 130 and SIGTERM 143, saying
    what was kept."""
    handle_sigterm()
    try:
        return work() or 0
    except KeyboardInterrupt as e:
        print(f"\n{str(e) or 'interrupted'}", file=sys.stderr)
        return exit_code(e)
    except (rawdata.DataError, ValueError, OSError, *also) as e:
        print(f"error: {e}", file=sys.stderr)
        return getattr(e, "exit_code", error_code)


# argparse


def _parsed_number(kind, bound: str):
    """An argparse type: ``kind(text)``, refused with a one-line reason unless it is within
    ``bound``, by the rule of every bounded number (``config.out_of_bounds``)."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if problem := config.out_of_bounds(value, bound, kind):
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value
    return parse


def positive(kind):
    """argparse type for finite numbers > 0: ``positive(int)``, ``positive(float)``."""
    return _parsed_number(kind, "positive")


def non_negative(kind):
    """argparse type for finite numbers >= 0."""
    return _parsed_number(kind, "non_negative")


def seed(text: str) -> int:
    """argparse type of --seed: an integer in the range torch's generators take."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not config.SEED_RANGE[0] <= value <= config.SEED_RANGE[1]:
        raise argparse.ArgumentTypeError(f"must be {config.seed_range()}, got {text}")
    return value


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """The epilog's table kept as written. A training flag's help states its default itself
    (``add_training_flags``), where it has one: unset ones say what unset means."""


def explicit_flags(parser: argparse.ArgumentParser, args: argparse.Namespace,
                   argv: list[str] | None) -> set[str]:
    """The destinations of the flags given on the command line (not left at their default)."""
    unset = object()
    probe = argparse.Namespace(**{dest: unset for dest in vars(args)})
    parser.parse_args(argv, namespace=probe)  # argparse sets defaults only where nothing is set
    return {dest for dest, value in vars(probe).items() if value is not unset}


DATASET_METAVAR = "{" + ",".join(rawdata.DATASETS) + "} or PATH.npz or FOLDER"  # --dataset's


def dataset_name(text: str) -> str:
    """argparse type of --dataset: a built-in data set's name, the path of an .npz file, or an
    existing folder (of images)."""
    if rawdata.kind(text) != "folder" or Path(text).expanduser().is_dir():
        return text
    raise argparse.ArgumentTypeError(
        f"must be one of {', '.join(rawdata.DATASETS)}, the path of an .npz file or of a folder of "
        f"images, got {text!r} (no such folder)")


def add_training_flags(parser: argparse.ArgumentParser, skip: tuple[str, ...] = (),
                       only: tuple[str, ...] | None = None, **defaults
                       ) -> dict[str, argparse.Action]:
    """A flag for each field of ``TrainConfig`` (``only`` those, if given) but ``skip``, from the
    field's declaration: its default, help, choices and bound; booleans that default to True get
    a --no- form. ``defaults``: a tool's own default for a field, where it differs (the tool adds
    what it means to the flag's help: the actions are returned by field name)."""
    actions = {}
    for f in dataclasses.fields(config.TrainConfig):
        if f.name in skip or (only is not None and f.name not in only):
            continue
        meta, (kind, many) = f.metadata, config.value_type(f.name)
        default = defaults.get(f.name, f.default)
        kw = {"default": default, "help": meta["help"]}
        if kind is bool:
            kw["action"] = argparse.BooleanOptionalAction if default else "store_true"
        else:
            bound = meta.get("bound")
            number_type = seed if bound == "seed" else (
                _parsed_number(kind, bound) if bound else kind)
            kw.update(type=number_type, nargs="+" if many else None, choices=meta.get("choices"),
                      metavar=meta.get("metavar"))
        if f.name == "dataset":
            kw.update(type=dataset_name, metavar=DATASET_METAVAR)
        action = actions[f.name] = parser.add_argument(config.flag(f.name), **kw)
        if default is not None and "%(default)" not in action.help:  # (3.9's --no- forms)
            action.help += " (default: %(default)s)"
    return actions
