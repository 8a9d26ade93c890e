"""Scale-out with torch.distributed: the few lines at the edges of the training loop.

Launched by ``torchrun`` (RANK, WORLD_SIZE and LOCAL_RANK in the environment), a run joins the
process group: NCCL with one GPU per process (``cuda:LOCAL_RANK``) on CUDA, Gloo on the CPU.
``fit`` then trains data-parallel (``DataParallel``): every process draws the same batch order,
takes its share of each global batch, and the all-reduce sums the gradients weighted by the
shares, so that each step is the one a single process takes. The sweep divides its grid's models
among the processes instead. Process 0 writes the run folder; the others compute
the same figures and write nothing. Without torchrun, ``World()`` is one process and every
method below does nothing.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

_MARK = ".torchelastic-run-id"  # in a run folder: which torchrun invocation made it


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def share(self, t: torch.Tensor) -> torch.Tensor:
        """This process's part of a global batch (contiguous, sizes differing by at most 1)."""
        return t.tensor_split(self.size)[self.rank] if self.size > 1 else t

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """The sum of ``t`` over the processes."""
        if self.size > 1:
            t = t.clone()
            dist.all_reduce(t)
        return t

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (any picklable object)."""
        out = [obj] * self.size
        if self.size > 1:
            dist.all_gather_object(out, obj)
        return out

    def from_main(self, obj):
        """Process 0's ``obj``, on every process (the run folder's name, say)."""
        return self.gather(obj)[0]

    def first_on_each_node(self, load):
        """``load()`` on each node's first process, then on the others: the first may download
        while the others wait. Its error is raised on every process, so none waits forever."""
        if self.size == 1:
            return load()
        result, error = None, None
        if self.local_rank == 0:
            try:
                result = load()
            except Exception as e:  # raised below, once every process knows
                error = e
        failed = [e for e in self.gather(None if error is None else str(error)) if e]
        if error is not None:
            raise error
        if failed:
            raise RuntimeError(f"another process could not load the data: {failed[0]}")
        return result if self.local_rank == 0 else load()


class DataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` around ``module`` for lintorch's step, which stays the one of
    a single process: its loss is the mean over the examples it sees, this process's share of
    the batch (``share``). DDP's all-reduce would average the processes' gradients, weighing
    every share alike; this one weighs each by its share of the batch, so that the sum is the
    gradient of the whole batch's mean loss also when the batch does not split evenly."""

    def __init__(self, module: nn.Module, device: torch.device, world: World) -> None:
        super().__init__(module, device_ids=[device] if device.type == "cuda" else None)
        self.world, self.weight = world, 1.0
        self.register_comm_hook(None, self.weighted_sum)

    def share(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """This process's part of the batch (x, y); its gradient will count by its size."""
        mine = self.world.share(y)
        self.weight = len(mine) / len(y)
        return self.world.share(x), mine

    # unannotated: DDP checks the annotations, and postponed ones (strings) fail its check
    def weighted_sum(self, state, bucket):
        grads = bucket.buffer().mul_(self.weight)
        return dist.all_reduce(grads, async_op=True).get_future().then(lambda f: f.value()[0])


def pick_device(name: str) -> torch.device:
    """The device ``--device`` names: ``auto`` is cuda when torch sees a GPU, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but torch sees no CUDA GPU; "
                         "use --device cpu (or auto)")
    return torch.device(name)


def environment(device: torch.device, world: World) -> dict:
    """Where a run ran, for its JSON: the device, torch and Python, the processes."""
    return {"device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
            "torch_version": torch.__version__, "python_version": platform.python_version(),
            "world_size": world.size, "backend": world.backend}


def join(device_name: str) -> tuple[World, torch.device]:
    """This process's place in torchrun's process group (joined here), and its device."""
    device = pick_device(device_name)
    if not {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= set(os.environ):
        return World(), device
    rank, size, local_rank = (env_int(k) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    for name in ("MASTER_ADDR", "MASTER_PORT") if not dist.is_initialized() else ():
        if not os.environ.get(name):
            raise ValueError(f"RANK, WORLD_SIZE and LOCAL_RANK are set, as torchrun sets them, "
                             f"but {name} is not: launch with torchrun, set {name}, or unset "
                             "RANK, WORLD_SIZE and LOCAL_RANK to run as one process")
        env_int("MASTER_PORT")
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, store=_store(), rank=rank, world_size=size)
    return World(dist.get_rank(), dist.get_world_size(), local_rank, backend), device


def env_int(name: str, default: int | None = None) -> int:
    """The environment variable ``name`` as an integer (``default`` if unset), or a ValueError
    of one line that names it."""
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(f"the environment variable {name} is {text!r}, not an integer; "
                         "torchrun sets it: unset it, or launch with torchrun") from None


def _store() -> dist.Store:
    """The key-value store the processes meet in: torchrun's own, under a prefix of this
    attempt's.

    torchrun keeps one store for all the attempts of a run, and when it restarts the workers
    after one died, the new ones read what the old ones wrote there: the dead worker's address
    among it (pytorch/pytorch#167288). With Gloo's default start about one restart in three
    failed with "connectFullMesh ... Connection refused" to that address, and with its lazy
    start (TORCH_GLOO_LAZY_INIT=1) the new workers hung waiting for it. Keys under a prefix of
    the attempt's number are new at every restart.
    """
    # torchrun's agent serves the store; under another launcher, process 0 does
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]),
                          is_master=not agent and os.environ["RANK"] == "0")
    return dist.PrefixStore(f"lintorch/attempt-{env_int('TORCHELASTIC_RESTART_COUNT', 0)}", store)


def exit(code: int) -> NoReturn:
    """End a command-line run. A process that joined a group leaves at once, skipping Python's
    finalization: Gloo's worker threads may still be releasing the tensors of the last
    collective then, and one that takes the GIL while the interpreter finalizes aborts the
    process ("terminate called without an active exception"; about one torchrun run in four
    here, torch 2.14). Everything lintorch writes is closed and in place by then."""
    if dist.is_initialized():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def mark(run_dir: Path) -> None:
    """Note in the run folder which torchrun invocation made it (see ``restarted_run``)."""
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    if run_id:
        (run_dir / _MARK).write_text(run_id)


def restarted_run(logdir: str, run_name: str | None) -> Path | None:
    """The checkpoint to continue from when torchrun has restarted the workers (after a worker
    died): the one in the run folder this torchrun invocation made."""
    if env_int("TORCHELASTIC_RESTART_COUNT", 0) == 0:
        return None
    run_id = os.environ.get("TORCHELASTIC_RUN_ID")
    folders = sorted(Path(logdir).glob(f"{run_name or ''}*/{_MARK}"),
                     key=lambda p: p.stat().st_mtime)
    for marker in reversed(folders):
        checkpoint = marker.parent / "checkpoint.pt"
        if marker.read_text() == run_id and checkpoint.exists():
            return checkpoint
    return None
