"""Where a training step's time goes: ``torch.profiler`` over lintorch's own loop (``fit``).

    python experiments/profile_step.py --dataset fashion-mnist \\
        --data-root /usr/share/datasets/fashion-mnist --device cuda

The benchmark (``experiments/benchmark.py``) says how much slower an epoch of ``fit`` is than a
bare loop of the same matrix multiplies; this says why. It trains the data set's default linear
softmax classifier (batch ``--batch-size``, 256 like the benchmark's) on the first ``--limit``
training images: one epoch as a warm-up, then one epoch under the profiler, and prints

- the wall time per step, and the share of it spent in the operators the bare loop runs too
  (``index_select`` for the batch, ``mm`` for the scores and for dL/dW);
- torch.profiler's table of operators by their own time ("self"), which puts everything else
  in view: the Python autograd.Functions, the autograd engine, the optimizer, the per-step
  bookkeeping. On a GPU the CPU column is what the host spends launching kernels, which is
  what a small model waits for; the CUDA column is the kernels themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from lintorch import cli, data
from lintorch.train import TrainConfig, fit

import common

FLOOR_OPS = ("aten::index_select", "aten::mm")  # what the bare loop runs too


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python experiments/profile_step.py", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common.add_data_flags(p)
    common.add_compute_flags(p)
    p.set_defaults(threads=0)  # torch's own choice, as in the benchmark
    flags = cli.add_training_flags(p, only=("loss", "limit", "cuda_graphs"), limit=25_600)
    flags["limit"].help += " (here 25,600: 100 steps of 256)"
    flags["cuda_graphs"].help += "; --no-cuda-graphs shows what each eager step launches"
    p.add_argument("--batch-size", type=cli.positive(int), default=256, help="mini-batch size")
    p.add_argument("--rows", type=cli.positive(int), default=25,
                   help="operators shown in the table")
    return p.parse_args(argv)


def profile_epoch(cfg: TrainConfig, prepared: data.Prepared) -> tuple[float, object]:
    """Two epochs unprofiled (the first a warm-up), then one under the profiler: (seconds of
    the second epoch, the profiler)."""
    warm = fit(dataclasses.replace(cfg, epochs=2), prepared=prepared)
    activities = [ProfilerActivity.CPU]
    if prepared.train_x.is_cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        fit(cfg, prepared=prepared)
    return warm["history"][-1]["epoch_time_s"], prof


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    args.dataset = common.chosen_dataset(args)
    args.seed, args.quick = 0, False
    with common.torch_threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        try:
            d = common.load_prepared(args, limit=args.limit)
        except data.DataError as e:
            sys.exit(f"error: {e}")
        # The per-epoch validation and the final test pass see 256 images each: next to the
        # steps they cost next to nothing, so the table is the steps'.
        d = dataclasses.replace(d, val_x=d.val_x[:256], val_y=d.val_y[:256],
                                test_x=d.test_x[:256], test_y=d.test_y[:256])
        device = d.train_x.device.type  # TrainConfig takes "cuda", not "cuda:0"
        cfg = TrainConfig(dataset=args.dataset, loss=args.loss, batch_size=args.batch_size,
                          epochs=1, device=device, logdir=tmp, tensorboard=False, quiet=True,
                          cuda_graphs=args.cuda_graphs)
        epoch_s, prof = profile_epoch(cfg, d)
    events = prof.key_averages()
    steps = -(-d.train_x.shape[0] // args.batch_size)
    # Self times add up to the whole host time without counting anything twice.
    self_us = sum(e.self_cpu_time_total for e in events)
    floor_us = sum(e.self_cpu_time_total for e in events if e.key in FLOOR_OPS)
    sort = "self_cuda_time_total" if device.startswith("cuda") else "self_cpu_time_total"
    print(f"{data.short_name(args.dataset)}, linear {args.loss}, batch {args.batch_size}, "
          f"{steps} steps, {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"wall time per step {1e6 * epoch_s / steps:.0f} us unprofiled; under the profiler, "
          f"host time {self_us / steps:.0f} us, of which index_select + mm (the bare "
          f"loop's work) {floor_us / steps:.0f} us ({100 * floor_us / self_us:.0f}%)")
    print(events.table(sort_by=sort, row_limit=args.rows))
    return {"dataset": data.short_name(args.dataset), "device": device, "steps": steps,
            "wall_us_per_step": 1e6 * epoch_s / steps, "host_us_per_step": self_us / steps,
            "floor_ops_us_per_step": floor_us / steps,
            "ops": {e.key: e.self_cpu_time_total / steps for e in events}}


if __name__ == "__main__":
    main()
