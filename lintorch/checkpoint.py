"""A run's checkpoint: saved after every epoch, read without running code, and checked to fit
before a resumed run writes anything.

A checkpoint is a dict of tensors and plain data: the model's and the optimizer's state, the
epoch, the history of the epochs so far, the random state, the run's config, and its record
(``Record``): which run it is (an id), its folder, the data it trains on and the time spent.

A resumed run continues the run the checkpoint holds, on the data it trained on, with the recipe
it used, in its own folder (``continue_in``), one process at a time (``files.lock_folder``);
otherwise it refuses in one line before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
import os
import pickletools
import re
import sys
import time
import typing
import uuid
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from . import rawdata
from .config import FREE_ON_RESUME, PER_DATASET, ResumeConflict, TrainConfig, wrong_kind
from .files import lock_folder, one_line, unique_dir, write_atomic

if TYPE_CHECKING:  # for the annotations only: importing data loads the readers
    from .data import Prepared

# What ``save`` writes under each key
KINDS = {"model": dict, "optimizer": dict, "epoch": int, "history": list, "rng": dict,
         "config": dict}
# What ``Record.saved`` writes under "run" (a checkpoint of an older lintorch has none)
RUN_KINDS = {"run_id": str, "run_dir": str, "data": dict, "wall_time_s": float}


class CheckpointError(ValueError):
    """A checkpoint that is missing, damaged, or does not fit; str(e) is one line."""


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
         history: list, cfg: TrainConfig, device: torch.device,
         record: Record | None = None) -> None:
    rng = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(device)
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
             "history": history, "rng": rng, "config": dataclasses.asdict(cfg)}
    if record is not None:
        state["run"] = record.saved()
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
    except PermissionError:
        raise CheckpointError(f"cannot read checkpoint {p}: permission denied; make it readable "
                              f"(chmod u+r) or resume as its owner") from None
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {p} ({one_line(e)})") from None
    except Exception as e:  # damage shows up as any of UnpicklingError, KeyError, IndexError, ...
        # torch's message spans many lines of advice (to load with weights_only=False, which
        # would run the code); the reason is the names it would call
        refused = code_named(p, e)
        reason = (f"loading it would run code ({', '.join(refused)}), and lintorch loads "
                  "tensors and plain data only; resume from a checkpoint lintorch wrote"
                  if refused else f"it is damaged or not a checkpoint ({torch_reason(e)})")
        raise CheckpointError(f"cannot read checkpoint {p}: {reason}") from None
    check(checkpoint, p)
    return checkpoint


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_SAFE = ("torch.", "collections.OrderedDict", "_codecs.encode")  # what torch.save writes


def code_named(p: Path, error: Exception) -> list[str]:
    """The functions or classes a refused pickle at ``p`` names (those torch's weights-only
    loader does not allow), as ``module.name``; [] if none can be found (damage)."""
    if zipfile.is_zipfile(p):
        try:
            return torch.serialization.get_unsafe_globals_in_checkpoint(p)
        except Exception:
            return []
    if named := re.findall(r"GLOBAL ([\w.]+)", _ANSI.sub("", str(error))):
        return named
    names, strings = [], []
    try:  # a plain pickle, which torch does not scan: its GLOBAL and STACK_GLOBAL opcodes
        with open(p, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if op.name == "GLOBAL":
                    names.append(".".join(str(arg).split(" ", 1)))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(".".join(strings[-2:]))
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:
        pass
    return [n for n in dict.fromkeys(names) if not n.startswith(_SAFE)]


def torch_reason(error: Exception) -> str:
    """torch's reason for refusing a file, as one line without its advice or colour codes."""
    text = _ANSI.sub("", str(error))
    if "Weights only load failed" in text:
        found = re.search(r"WeightsUnpickler error:(.*?)(?:Check the documentation|$)", text,
                          re.S)
        text = found.group(1) if found else ""
    return one_line(type(error)(text)) if text.strip() else type(error).__name__


def check(checkpoint, p: Path) -> None:
    """Refuse a checkpoint whose entries are not what ``save`` writes, in one line, before any of
    it is used: else a wrong kind surfaces as a traceback, maybe after files were written, or a
    missing setting silently takes a default. Whether the weights and the optimizer state fit
    the model is for ``restore`` to say."""
    if not isinstance(checkpoint, dict) or not {"model", "epoch", "config"} <= set(checkpoint):
        raise CheckpointError(f"{p} is not a lintorch checkpoint (no model, epoch and config)")
    if problem := damage(checkpoint):
        raise CheckpointError(f"{p} is damaged: {problem}")
    try:
        TrainConfig.from_saved(checkpoint["config"]).resolved()
    except ValueError as e:
        raise CheckpointError(f"{p} holds a config lintorch cannot run: {e}") from None


def damage(checkpoint: dict) -> str | None:
    """What is wrong with the entries of ``checkpoint``, in words; None if nothing is."""
    for key, kind in KINDS.items():
        value = checkpoint.get(key)
        if key not in checkpoint:
            return f"it has no {key}"
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"its {key} is of type {type(value).__name__}, not {kind.__name__}"
    epoch, history, cfg = checkpoint["epoch"], checkpoint["history"], checkpoint["config"]
    if not 0 <= epoch <= len(history):
        return f"its epoch is {epoch}, not between 0 and its {len(history)} history rows"
    if [row.get("epoch") if isinstance(row, dict) else None for row in history] != [
            *range(1, epoch + 1)]:
        return f"its history is not one row for each of its {epoch} epochs"
    if missing := [f.name for f in dataclasses.fields(TrainConfig) if f.name not in cfg]:
        return f"its config has no {', '.join(missing)}"
    if wrong := wrong_kind(cfg):
        return f"its config's {wrong}"
    if unset := [k for k in (*PER_DATASET, "val_size") if cfg[k] is None]:  # saved resolved
        return f"its config's {unset[0]} is None, and a run saves every setting resolved"
    if cfg["epochs"] < epoch:
        return f"it has done {epoch} epochs, and its config's epochs is {cfg['epochs']}"
    for key, value in checkpoint["model"].items():
        if not isinstance(value, Tensor):
            return f"its model's {key} is of type {type(value).__name__}, not a tensor"
        if value.dtype != getattr(torch, cfg["dtype"], None):
            return f"its model's {key} is {value.dtype}, and its config's dtype {cfg['dtype']}"
        if not torch.isfinite(value).all():
            return f"its model's {key} holds NaN or infinite values"
    return run_damage(checkpoint.get("run"))


def run_damage(run) -> str | None:
    """What is wrong with a checkpoint's record of its run (``Record.saved``); None if it is
    sound or absent (an older lintorch's checkpoint)."""
    if run is None:
        return None
    if not isinstance(run, dict):
        return f"its run is of type {type(run).__name__}, not dict"
    for key, kind in RUN_KINDS.items():
        if not isinstance(run.get(key), (int, kind) if kind is float else kind) or isinstance(
                run.get(key), bool):
            return f"its run's {key} is {run.get(key)!r:.40}, not {kind.__name__}"
    if not (math.isfinite(run["wall_time_s"]) and run["wall_time_s"] >= 0):
        return f"its run's wall_time_s is {run['wall_time_s']}, not a time"
    counts = [run["data"].get(k) for k in ("train", "val", "test")]
    if not all(isinstance(n, int) and n >= 0 for n in counts):
        return f"its run's data counts {counts} are not numbers of examples"
    return None


def restore(model: nn.Module, optimizer: torch.optim.Optimizer, checkpoint: dict,
            path: str, data_now: dict | None = None) -> None:
    """Load the checkpoint's weights, optimizer state and random state, or say in one line what
    does not fit (a data set regenerated since, other data, a file edited), before the run
    writes anything. ``data_now``: the ``data_identity`` of the data this run has read."""
    if misfit := model_misfit(model, checkpoint["model"]):
        raise CheckpointError(f"{path} does not fit: {misfit}; resume on the data it was "
                              "trained on, or start a new run")
    was = (checkpoint.get("run") or {}).get("data")
    if was is not None and data_now is not None and (misfit := data_misfit(was, data_now)):
        raise CheckpointError(f"{path} was trained on other data: {misfit}; resume on the data "
                              "it was trained on, or start a new run")
    model.load_state_dict(checkpoint["model"])
    if misfit := optimizer_misfit(optimizer, checkpoint["optimizer"]):
        raise CheckpointError(f"{path} is damaged: its optimizer state {misfit}")
    try:
        optimizer.load_state_dict(checkpoint["optimizer"])
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{path}'s optimizer state does not fit its model "
                              f"({one_line(e)})") from None
    try:
        torch.set_rng_state(checkpoint["rng"]["torch"])
    except (TypeError, KeyError, RuntimeError) as e:
        raise CheckpointError(f"{path}'s random state (rng) is damaged ({one_line(e)})") from None


def optimizer_misfit(optimizer, saved: dict) -> str | None:
    """What keeps the optimizer state ``saved`` out of ``optimizer`` (built for the checkpoint's
    recipe and the model's weights), in words; None if it fits. Its settings must be those the
    recipe gives (momentum, and the others of its --impl), its momentum buffers tensors of each
    weight's shape and dtype: else training would use values the config does not record, or fail
    with a traceback at the first step."""
    params = optimizer.param_groups[0]["params"]
    fresh = optimizer.state_dict()["param_groups"][0]
    groups, state = saved.get("param_groups"), saved.get("state")
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)
            and isinstance(state, dict)):
        return "is not one group of settings and a state"
    group = groups[0]
    if set(group) != set(fresh):
        return (f"has the settings {sorted(group)}, and the optimizer of its --impl "
                f"{sorted(fresh)}")
    if group["params"] != fresh["params"]:
        return f"is of {len(group['params'])} parameters, the model has {len(params)}"
    lr = group["lr"]
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr):
        return f"has the learning rate {lr!r:.40}, not a number"
    for key, value in group.items():
        if key not in ("lr", "params") and (type(value) is not type(fresh[key])
                                            or value != fresh[key]):
            return f"has {key} {value!r:.40}, and its config gives {fresh[key]!r}"
    for i, entry in state.items():
        if i not in fresh["params"] or not isinstance(entry, dict) or set(entry) - {
                "momentum_buffer"}:
            return f"has an entry {i!r:.20} that is not a momentum buffer of a weight"
        buffer, W = entry.get("momentum_buffer"), params[i] if isinstance(i, int) else None
        if buffer is None:
            continue
        if not isinstance(buffer, Tensor) or buffer.shape != W.shape or (
                buffer.dtype != W.dtype):
            kind = (f"{buffer.dtype} of shape {tuple(buffer.shape)}"
                    if isinstance(buffer, Tensor) else type(buffer).__name__)
            return (f"has a momentum buffer {kind} for a weight {W.dtype} of shape "
                    f"{tuple(W.shape)}")
        if not torch.isfinite(buffer).all():
            return "has a momentum buffer holding NaN or infinite values"
    return None


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


# Which run a checkpoint holds: its id, its folder, its data, its time


@dataclasses.dataclass
class Record:
    """What a checkpoint holds of its run besides the weights: an id of its own, the folder it
    writes (absolute, symlinks resolved), the data it trains on (``data_identity``) and the
    seconds spent in the processes before this one."""

    run_id: str
    data: dict
    wall_time_s: float = 0.0
    run_dir: Path | None = None
    finished: bool = False  # resumed after its last epoch, with its final figures written
    t_start: float = dataclasses.field(default_factory=time.perf_counter)

    def saved(self) -> dict:
        """The record as ``save`` writes it, the time of this process added."""
        return {"run_id": self.run_id, "run_dir": str(self.run_dir), "data": self.data,
                "wall_time_s": self.wall_time_s + time.perf_counter() - self.t_start}


def record(cfg: TrainConfig, d: Prepared, saved: dict | None,
           in_memory: bool = False) -> Record:
    """The record of a new run on ``d``, or of the run ``saved`` holds (whether ``d`` is the data
    it trained on is for ``restore`` to say)."""
    now = data_identity(cfg, d, in_memory)
    run = (saved or {}).get("run")
    if run is None:  # a new run, or a checkpoint of an older lintorch, which names no data
        return Record(uuid.uuid4().hex, now)
    return Record(run["run_id"], now, float(run["wall_time_s"]))


def data_identity(cfg: TrainConfig, d: Prepared, in_memory: bool = False) -> dict:
    """The data set in a form that does not depend on the working folder (the absolute path of a
    file or folder, a built-in's name and data root), with enough to recognise it cheaply: the
    examples of each split and an .npz file's size (no hash: that would read it all again)."""
    kind, where, root, size = rawdata.kind(cfg.dataset), cfg.dataset, None, None
    if in_memory:
        where = None
    elif kind in ("npz", "folder"):
        where = str(Path(cfg.dataset).expanduser().resolve())
        size = os.path.getsize(where) if kind == "npz" else None
    elif cfg.data_root is not None or os.environ.get("LINTORCH_DATA"):
        root = str(rawdata.resolve_root(cfg.data_root).resolve())
    return {"dataset": where, "data_root": root, "bytes": size, "train": len(d.train_y),
            "val": len(d.val_y), "test": len(d.test_y)}


def data_misfit(was: dict, now: dict) -> str | None:
    """How the data ``now`` differs from the data a run trained on (``was``); None if alike."""
    def described(d: dict) -> str:
        size = f"{d['bytes']:,} bytes, " if d.get("bytes") is not None else ""
        return (f"{d.get('dataset')} ({size}{d['train']} train / {d['val']} val / {d['test']} "
                "test examples)")

    keys = ("dataset", "bytes", "train", "val", "test")
    if any(was.get(k) != now.get(k) for k in keys):
        return f"it was {described(was)}, and this resume would read {described(now)}"
    return None


def continue_in(rec: Record, saved: dict, path) -> Path:
    """The folder a resumed run writes: the run's own (recorded, or where the checkpoint was
    moved with its folder), else a new one, said on stderr and given a new id. Never a folder
    that holds another run: its checkpoint.pt and metrics.json are that run's."""
    given = Path(path).expanduser().resolve()  # a symlink's target: the checkpoint itself
    run = saved.get("run")
    recorded = Path(run["run_dir"]) if run else None
    for folder in ([recorded] if recorded else []) + [given.parent]:
        if holds(folder, rec.run_id if run else None, given):
            return folder
    if recorded is not None and recorded.parent.is_dir():
        base, name = recorded.parent, recorded.name
    else:
        base, name = given.parent, (recorded or given.parent).name
    if recorded is None:  # an older lintorch's checkpoint, away from its folder's checkpoint.pt
        why = f"{path} names no run folder of its own, and {given.parent} holds another run"
    else:
        why = (f"{path} belongs to run folder {recorded}, which "
               f"{'holds another run' if recorded.exists() else 'is gone'}")
    new = unique_dir(base, name)
    print(f"{why}; continuing the run in a new folder, {new}", file=sys.stderr)
    rec.run_id = uuid.uuid4().hex  # a copy of the run from here on
    return new


def holds(folder: Path, run_id: str | None, given: Path) -> bool:
    """Whether ``folder`` holds the run ``run_id`` (its checkpoint.pt records that id), or, for a
    checkpoint that records none, whether its checkpoint.pt is the file ``given`` itself."""
    mine = folder / "checkpoint.pt"
    if not mine.is_file():
        return False
    if mine.resolve() == given:
        return True
    if run_id is None:
        return False
    try:
        theirs = torch.load(mine, map_location="cpu", weights_only=True).get("run") or {}
    except Exception:  # damaged, or not lintorch's: not this run's, so not to be replaced
        return False
    return theirs.get("run_id") == run_id


def hold(rec: Record, run_dir: Path, main: bool, saved: dict | None, cfg: TrainConfig) -> None:
    """Make ``run_dir`` the run's folder; process 0 locks it (``files.lock_folder``: one process
    at a time, and a folder it cannot write is refused now, before an epoch is trained)."""
    rec.run_dir = Path(run_dir).resolve()
    rec.finished = bool(saved) and saved["epoch"] >= cfg.epochs and (
        run_dir / "metrics.json").is_file()
    if main:
        lock_folder(run_dir)


def resumed_config(config: TrainConfig, saved: dict,
                   given: typing.Iterable[str] | None = None) -> TrainConfig:
    """``config.resumed_from`` the checkpoint ``saved``, with its data where the run found it
    (its record's absolute paths, not paths relative to today's working folder); --epochs below
    the epochs done is a ResumeConflict naming both."""
    cfg = dict(saved["config"])
    where = (saved.get("run") or {}).get("data") or {}
    if where.get("dataset") and rawdata.kind(cfg["dataset"]) in ("npz", "folder"):
        cfg["dataset"] = where["dataset"]
    if where.get("data_root") and cfg.get("data_root") is not None:
        cfg["data_root"] = where["data_root"]
    resumed = config.resumed_from(cfg, given)
    if resumed.epochs < saved["epoch"]:
        raise ResumeConflict(f"--epochs {resumed.epochs} is fewer than the {saved['epoch']} "
                             f"epochs the checkpoint has done; give --epochs {saved['epoch']} "
                             "or more, or leave it out")
    return resumed


def keep_unset(config: TrainConfig, given: typing.Iterable[str]) -> TrainConfig:
    """``config`` with the settings a resumed run may change set to None unless ``given`` (the
    flags on the command line): ``--resume PATH`` alone keeps the run's device, TensorBoard,
    quiet, ... rather than taking the flags' defaults."""
    return dataclasses.replace(config, **{k: None for k in FREE_ON_RESUME if k not in set(given)})
