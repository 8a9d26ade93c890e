"""How a linear probe on 1.28 M x 2,048 features (1,000 classes) and a 10 x 10 (lr x lambda) grid
would scale over 8 and 64 GPUs: a PROJECTION, from what a step and an all-reduce cost here.

    python experiments/scaling.py --json scaling.json
    python experiments/scaling.py --device-speedup 200 --alpha-us 10 --beta-gbps 100
    python experiments/scaling.py --quick             # every size shrunk: a smoke run

Measured on this machine, in float32:

- the compute of one training step of the probe at the per-device batch b: lintorch's
  ``LinearClassifier``, ``cross_entropy`` and ``l2_penalty``, ``torch.optim.SGD``;
- one step of the sweep's stack (``train.train_step`` on a ``stacked.StackedLinear``: K models
  scored, and each updated, at once) for each number of models K a device would hold;
- all-reduces between 2 Gloo processes on this machine, of a few sizes and of the probe's
  gradient (D C + C floats), fitted to the ring all-reduce's cost t = alpha + 2 (P - 1) / P *
  bytes / beta (at P = 2: alpha + bytes / beta).

Projected from those, with every assumption printed beside the tables:

- data parallel: epoch(P) = steps(P) * (step compute / speed-up + all-reduce(P)), with
  steps(P) = ceil(N / (P b)): each device takes b examples of every step, so the global batch
  grows with P;
- the grid: its M models divided among the P devices, which do not communicate until one
  all-gather of every model's weights at the end; a device trains its ceil(M / P) models
  stacked, over all N examples: ceil(N / b) stacked steps.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lintorch import (
    LinearClassifier,
    cli,
    compare,
    console,
    cross_entropy,
    l2_penalty,
    losses,
    stacked,
    train,
)
from lintorch.update_rules import SGD


@dataclasses.dataclass(frozen=True)
class Problem:
    """What is projected: N examples of D features, C classes, an M-model grid, batch b."""

    examples: int
    features: int
    classes: int
    grid: tuple[int, int]
    batch_size: int  # per device

    @property
    def models(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def model_bytes(self) -> int:
        """One model's weights and biases (the size of its gradient), float32."""
        return 4 * (self.features * self.classes + self.classes)


# ImageNet-1k's training set as ResNet-50's pooled features; --quick shrinks every size
FULL = Problem(examples=1_281_167, features=2048, classes=1000, grid=(10, 10), batch_size=256)
QUICK = Problem(examples=100_000, features=256, classes=100, grid=(10, 10), batch_size=64)
LR, REG = 0.01, 1e-4  # the step's cost does not depend on them
# All-reduces of up to this many bytes cost their latency alpha, nearly all (at the ~2 GB/s of
# Gloo between two processes here, 64 KB take 30 us of a ~250 us all-reduce).
LATENCY_BOUND = 1 << 16


# ---------------------------------------------------------------------------------------------
# The model: a ring all-reduce, and what P devices do with it


def ring_allreduce_s(nbytes: float, devices: int, alpha: float, beta: float) -> float:
    """t = alpha + 2 (P - 1) / P * bytes / beta: a ring all-reduce passes 2 (P - 1) chunks of
    bytes / P through each link (reduce-scatter, then all-gather). One device sends nothing."""
    return 0.0 if devices == 1 else alpha + 2 * (devices - 1) / devices * nbytes / beta


def ring_allgather_s(nbytes: float, devices: int, alpha: float, beta: float) -> float:
    """t = alpha + (P - 1) / P * bytes / beta for gathering ``bytes`` in all: the all-gather
    half of a ring all-reduce."""
    return 0.0 if devices == 1 else alpha + (devices - 1) / devices * nbytes / beta


def project_data_parallel(problem: Problem, devices: int, step_s: float, speedup: float,
                          alpha: float, beta: float) -> dict:
    """One epoch of data-parallel training on ``devices`` devices: every step, each computes
    its b examples' gradient, then they all-reduce it; no overlap of the two."""
    steps = math.ceil(problem.examples / (devices * problem.batch_size))
    compute = steps * step_s / speedup
    allreduce = steps * ring_allreduce_s(problem.model_bytes, devices, alpha, beta)
    return {"devices": devices, "batch_per_device": problem.batch_size, "steps": steps,
            "compute_s": compute, "allreduce_s": allreduce, "epoch_s": compute + allreduce}


def project_grid(problem: Problem, devices: int, stack_step_s: float, speedup: float,
                 alpha: float, beta: float) -> dict:
    """One epoch of the grid on ``devices`` devices, each training its ceil(M / P) models
    stacked (``stack_step_s``: one step of that many), then one gather of every model."""
    steps = math.ceil(problem.examples / problem.batch_size)
    compute = steps * stack_step_s / speedup
    gather = ring_allgather_s(problem.models * problem.model_bytes, devices, alpha, beta)
    return {"devices": devices, "models_per_device": math.ceil(problem.models / devices),
            "steps": steps, "compute_s": compute, "gather_s": gather, "total_s": compute + gather}


def with_speedups(rows: list[dict], time_key: str) -> list[dict]:
    """Each row's speed-up over the first (one device)."""
    return [{**row, "speedup": rows[0][time_key] / row[time_key]} for row in rows]


def fit_ring(points: list[dict], processes: int = 2) -> tuple[float, float]:
    """alpha (s) and beta (bytes/s) of t = alpha + 2 (P - 1) / P * bytes / beta, from all-reduces
    of ``processes`` processes: beta from how the large ones' time grows with their size (least
    squares), alpha from what the small ones cost, which is almost all latency (their median,
    less their bytes' share: one slow call does not set it). A negative alpha, which noise can
    produce, is taken as 0."""
    factor = 2 * (processes - 1) / processes
    small = [p for p in points if p["bytes"] <= LATENCY_BOUND]
    large = [p for p in points if p["bytes"] > LATENCY_BOUND]
    if not small or len(large) < 2:
        raise ValueError(f"need all-reduces of at most {LATENCY_BOUND:,} bytes and two larger")
    slope = np.polyfit([factor * p["bytes"] for p in large], [p["seconds"] for p in large], 1)[0]
    if slope <= 0:
        raise ValueError("the all-reduce did not take longer for more bytes: measure larger "
                         "sizes, or give --alpha-us and --beta-gbps")
    beta = 1.0 / float(slope)
    alpha = statistics.median(p["seconds"] - factor * p["bytes"] / beta for p in small)
    return max(alpha, 0.0), beta


# ---------------------------------------------------------------------------------------------
# Measured here


def probe_step(problem: Problem):
    """One SGD step of the probe on a batch of b examples, as a call to time."""
    torch.manual_seed(0)
    model = LinearClassifier(problem.features, problem.classes)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    x = torch.randn(problem.batch_size, problem.features)
    y = torch.randint(problem.classes, (problem.batch_size,))

    def step():
        L = cross_entropy(model(x), y, check=False) + REG * l2_penalty(model.weight)
        optimizer.zero_grad()
        L.backward()
        optimizer.step()

    return step


def stack_step(problem: Problem, models: int):
    """One step of the sweep's stack of ``models`` models on b examples, as a call to time:
    ``train.train_step`` on the pieces a sweep's run holds."""
    torch.manual_seed(0)
    model = stacked.StackedLinear(1e-3 * torch.randn(models, problem.classes, problem.features),
                                  torch.zeros(models, problem.classes))
    run = SimpleNamespace(net=model, loss=train.mean_loss(train.TrainConfig(loss="softmax")),
                          penalty=lambda: losses.STACKED_PENALTIES["l2"](model.weight),
                          optimizer=SGD(model.parameters(), lr=torch.full((models,), LR)),
                          reg=torch.full((models,), REG))
    x = torch.randn(problem.batch_size, problem.features)
    y = torch.randint(problem.classes, (problem.batch_size,))
    return lambda: train.train_step(run, x, y)


def _allreduce_worker(rank: int, world: int, store: str, floats: list[int], repeats: int,
                      calls: int, out: str) -> None:
    """One of the Gloo processes: median seconds of an all-reduce of each size, over
    ``repeats`` blocks of ``calls`` in a row, the processes starting each block together."""
    torch.set_num_threads(1)  # one core each, as torchrun gives a process on this machine
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    points = []
    for n in floats:
        t = torch.zeros(n)  # zeros stay zeros: no overflow however often they are summed
        for _ in range(3):  # warm-up: Gloo's buffers and connections for this size
            dist.all_reduce(t)
        times = []
        for _ in range(repeats):
            dist.barrier()
            t0 = time.perf_counter()
            for _ in range(calls):
                dist.all_reduce(t)
            times.append((time.perf_counter() - t0) / calls)
        points.append({"floats": n, "bytes": 4 * n, "seconds": statistics.median(times)})
    if rank == 0:
        Path(out).write_text(json.dumps(points))
    dist.destroy_process_group()


def allreduce_seconds(floats: list[int], repeats: int, calls: int, processes: int = 2
                      ) -> list[dict]:
    """All-reduces of each size between ``processes`` Gloo processes on this machine."""
    with tempfile.TemporaryDirectory(prefix="lintorch-allreduce-") as tmp:
        out = Path(tmp) / "points.json"
        mp.spawn(_allreduce_worker, args=(processes, str(Path(tmp) / "store"), floats, repeats,
                                          calls, str(out)), nprocs=processes, join=True)
        return json.loads(out.read_text())


# ---------------------------------------------------------------------------------------------
# The projection and its report


def projection(problem: Problem, measured: dict, assumptions: dict, devices: list[int]) -> dict:
    """The data-parallel and the grid tables, from what was measured and what is assumed."""
    speedup, alpha, beta = (assumptions[k] for k in ("device_speedup", "alpha_s",
                                                     "beta_bytes_per_s"))
    stack = {row["models"]: row["seconds"] for row in measured["stack_step_s"]}
    return {
        "data_parallel": with_speedups([project_data_parallel(
            problem, p, measured["step_s"], speedup, alpha, beta) for p in devices], "epoch_s"),
        "grid": with_speedups([project_grid(
            problem, p, stack[math.ceil(problem.models / p)], speedup, alpha, beta)
            for p in devices], "total_s"),
    }


def measure(problem: Problem, devices: list[int], args: argparse.Namespace) -> dict:
    """Everything the projection takes from this machine."""
    repeats, min_block_s = (3, 0.005) if args.quick else (5, 0.05)
    stacks = sorted({math.ceil(problem.models / p) for p in devices}, reverse=True)
    # timed by turns, so that a machine slowing down weighs on every figure alike
    steps = compare.time_alternating(
        {"probe": probe_step(problem), **{k: stack_step(problem, k) for k in stacks}},
        repeats, min_block_s)
    measured = {"threads": torch.get_num_threads(), "step_s": steps["probe"],
                "stack_step_s": [{"models": k, "seconds": steps[k]} for k in stacks],
                "allreduce": None, "gradient_allreduce_s": None, "fit": None}
    if args.alpha_us is None or args.beta_gbps is None:
        gradient = problem.model_bytes // 4
        # up to 16 MB at the least: on a busy machine, all-reduces of 0.1 to 1 MB (--quick's
        # gradient) took the same time within noise, and the fit found no slope
        floats = sorted({1 << 8, 1 << 10, 1 << 14, 1 << 18, 1 << 22, gradient, 4 * gradient})
        points = allreduce_seconds(floats, repeats, 5 if args.quick else 20)
        alpha, beta = fit_ring(points)
        measured["allreduce"] = points
        measured["gradient_allreduce_s"] = next(p["seconds"] for p in points
                                                if p["floats"] == gradient)
        measured["fit"] = {"alpha_s": alpha, "beta_bytes_per_s": beta, "processes": 2,
                           "backend": "gloo"}
    return measured


def assumptions_text(result: dict) -> list[str]:
    a, p, m = result["assumptions"], result["problem"], result["measured"]
    here = "as measured between 2 Gloo processes on this machine"
    return [
        f"one device computes a step {a['device_speedup']:g}x as fast as this CPU with "
        f"{m['threads']} threads (--device-speedup)",
        f"links: alpha = {1e6 * a['alpha_s']:.1f} us {a['alpha_from'].replace('measured', here)}"
        f", beta = {a['beta_bytes_per_s'] / 1e9:.2f} GB/s "
        f"{a['beta_from'].replace('measured', here)} (--alpha-us, --beta-gbps)",
        "an all-reduce over P devices costs alpha + 2 (P - 1) / P * bytes / beta (a ring) at "
        "any P, and gathering costs alpha + (P - 1) / P * bytes / beta",
        "a step's compute and its all-reduce do not overlap",
        f"each device takes {p['batch_per_device']} examples of every step: the global batch "
        "grows with P, the compute of a step does not",
        "the grid's devices train their models stacked and do not communicate until one "
        "all-gather of every model's weights at the end",
        "reading the data and evaluating are not counted",
    ]


def _table(header: list[str], rows: list[list[str]]) -> str:
    return console.format_table(None, header, rows, left=0)


def format_report(result: dict) -> str:
    p, m = result["problem"], result["measured"]
    lines = [f"PROJECTED, not measured: {p['examples']:,} examples x {p['features']:,} features, "
             f"{p['classes']:,} classes, float32{' (--quick: sizes shrunk)' * result['quick']}",
             "", "measured here:",
             f"  one step of the probe, batch {p['batch_per_device']}: "
             f"{1e3 * m['step_s']:.2f} ms"]
    lines += [f"  one step of {row['models']} stacked models, batch {p['batch_per_device']}: "
              f"{1e3 * row['seconds']:.2f} ms" for row in m["stack_step_s"]]
    if m["allreduce"]:
        fit = m["fit"]
        for point in m["allreduce"]:
            model = ring_allreduce_s(point["bytes"], 2, fit["alpha_s"], fit["beta_bytes_per_s"])
            gradient = " (the probe's gradient)" * (point["bytes"] == p["model_bytes"])
            lines.append(f"  all-reduce of {point['bytes']:,} bytes{gradient}, 2 Gloo "
                         f"processes: {1e3 * point['seconds']:.3f} ms (fitted: "
                         f"{1e3 * model:.3f} ms)")
    lines += ["", "assumed:"] + [f"  {text}" for text in assumptions_text(result)]
    lines += ["", "projected: one epoch of data-parallel training of the probe"]
    lines.append(_table(
        ["P", "batch/device", "steps", "compute s", "all-reduce s", "epoch s", "speed-up"],
        [[str(r["devices"]), str(r["batch_per_device"]), f"{r['steps']:,}",
          f"{r['compute_s']:.2f}", f"{r['allreduce_s']:.2f}", f"{r['epoch_s']:.2f}",
          f"{r['speedup']:.1f}x"] for r in result["data_parallel"]]))
    lines += ["", f"projected: one epoch of the {p['grid'][0]} x {p['grid'][1]} grid "
                  f"({p['models']} models), then one gather of every model"]
    lines.append(_table(
        ["P", "models/device", "steps", "compute s", "gather s", "total s", "speed-up"],
        [[str(r["devices"]), str(r["models_per_device"]), f"{r['steps']:,}",
          f"{r['compute_s']:.2f}", f"{r['gather_s']:.3f}", f"{r['total_s']:.2f}",
          f"{r['speedup']:.1f}x"] for r in result["grid"]]))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    problem = QUICK if args.quick else FULL
    devices = sorted({1, *args.devices})  # speed-ups are over one device
    if args.threads:
        torch.set_num_threads(args.threads)
    measured = measure(problem, devices, args)
    fit = measured["fit"] or {}
    assumptions = {
        "device_speedup": args.device_speedup,
        "alpha_s": 1e-6 * args.alpha_us if args.alpha_us is not None else fit["alpha_s"],
        "alpha_from": "as given" if args.alpha_us is not None else "measured",
        "beta_bytes_per_s": (1e9 * args.beta_gbps if args.beta_gbps is not None
                             else fit["beta_bytes_per_s"]),
        "beta_from": "as given" if args.beta_gbps is not None else "measured",
    }
    result = {"projected": True, "quick": args.quick,
              "problem": {"examples": problem.examples, "features": problem.features,
                          "classes": problem.classes, "grid": list(problem.grid),
                          "models": problem.models, "batch_per_device": problem.batch_size,
                          "model_bytes": problem.model_bytes},
              "devices": devices, "measured": measured, "assumptions": assumptions}
    result["assumptions"]["text"] = assumptions_text(result)
    result.update(projection(problem, measured, assumptions, devices))
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python experiments/scaling.py",
        description="Project how a linear probe on 1.28 M x 2,048 features (1,000 classes) and "
                    "a 10 x 10 (lr x lambda) grid would scale over 8 and 64 GPUs, from a step "
                    "and an all-reduce measured here.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--devices", type=cli.positive(int), nargs="+", default=[1, 8, 64],
                        help="device counts P to project (1 is always included)")
    parser.add_argument("--device-speedup", type=cli.positive(float), default=100.0,
                        help="how many times faster one device computes a step than this CPU "
                             "(an assumption: no GPU is measured)")
    parser.add_argument("--alpha-us", type=cli.non_negative(float), default=None,
                        help="all-reduce latency alpha in microseconds (unset: measured here)")
    parser.add_argument("--beta-gbps", type=cli.positive(float), default=None,
                        help="link bandwidth beta in GB/s (unset: measured here)")
    parser.add_argument("--threads", type=cli.positive(int), default=None,
                        help="torch threads for the step measurements (unset: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="shrink every size: a smoke run")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write JSON to PATH")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = run(args)
    except ValueError as e:
        sys.exit(f"error: {e}")
    print(format_report(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
