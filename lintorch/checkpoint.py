"""A run's checkpoint: saved after every epoch, read without running code, and checked to fit
before a resumed run writes anything.

A checkpoint is a dict of tensors and plain data: the model's and the optimizer's state, the
epoch, the history of the epochs so far, the random state, and the run's config.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import TrainConfig, wrong_kind
from .files import one_line, write_atomic

# What ``save`` writes under each key
KINDS = {"model": dict, "optimizer": dict, "epoch": int, "history": list, "rng": dict,
         "config": dict}


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit; str(e) is one line."""


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
         history: list, cfg: TrainConfig, device: torch.device) -> None:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history, "rng": rng, "config": dataclasses.asdict(cfg)}
    write_atomic(path, lambda tmp: torch.save(state, tmp))


def load(path: str | Path) -> dict:
    """The checkpoint at ``path``, read with ``weights_only``: torch refuses any pickle that names
    a function or class beyond tensors and plain containers. Checked as ``check`` says."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}; give the path of a run's checkpoint.pt, "
                              "e.g. --resume runs/<run-name>/checkpoint.pt")
    try:
        checkpoint = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # damage shows up as any of UnpicklingError, KeyError, IndexError, ...
        try:  # torch's message spans many lines of advice; the refused names are the reason
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(p)
        except Exception:
            refused = []
        reason = (f"unpickling it would call {', '.join(refused)}, and lintorch loads tensors "
                  "and plain data only" if refused
                  else f"it is damaged or not a checkpoint ({one_line(e)})")
        raise CheckpointError(f"cannot read checkpoint {p}: {reason}") from None
    check(checkpoint, p)
    return checkpoint


def check(checkpoint, p: Path) -> None:
    """Refuse a checkpoint whose entries are not what ``save`` writes, in one line, before any of
    it is used: else a wrong kind surfaces as a traceback, maybe after files were written.
    Whether the weights fit the data is for ``restore`` to say."""
    if not isinstance(checkpoint, dict) or not {"model", "epoch", "config"} <= set(checkpoint):
        raise CheckpointError(f"{p} is not a lintorch checkpoint (no model, epoch and config)")
    for key, kind in KINDS.items():
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
    if wrong := wrong_kind(checkpoint["config"]):
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
                              f"({one_line(e)})") from None
    # momentum buffers are loaded unchecked; a wrong shape would fail at the first step
    if any(isinstance(v, Tensor) and v.shape != p.shape
           for p, state in optimizer.state.items() for v in state.values()):
        raise CheckpointError(f"{path}'s optimizer state does not fit its model (momentum "
                              "buffers of other shapes than the weights)")
    try:
        torch.set_rng_state(checkpoint["rng"]["torch"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}'s random state (rng) is damaged ({one_line(e)})") from None


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
