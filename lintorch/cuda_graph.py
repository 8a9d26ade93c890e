"""A training step captured once as a CUDA graph and replayed for every full batch.

On a GPU a linear classifier's step is ~70 small kernels, each costing the host more time to
launch than the device takes to run it: the step waits on Python, the dispatcher and the
autograd engine, not on the GPU (``experiments/profile_step.py``). Replaying a captured graph
launches all of them at once. The step itself is unchanged: the same ``autograd.Function``s,
the same ``torch.optim.SGD``, captured as they run (PyTorch's "whole-network capture").

What capture bakes in, and how this copes:
- addresses: the batch is gathered inside the graph from a fixed index buffer, which each
  replay refills; parameters, gradients and momentum buffers keep their storage;
- Python numbers: ``optimizer.step()`` passes the learning rate as a number, so a new rate
  (the schedule steps once per epoch) means a new capture;
- shapes: the last, smaller batch of an epoch runs eagerly;
- lazy set-up (cuBLAS workspaces, momentum buffers): the first ``WARMUP`` steps run eagerly on
  the capture's own stream, as torch's docs prescribe.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

WARMUP = 3


class GraphedStep:
    """``step(idx) -> Tensor`` for batches of ``batch_size`` indices, replayed from a graph.

    ``key`` names what the capture baked in besides addresses (fit's learning rate, the
    sweep's models still training): a call with another key captures again. Calls with
    another batch size run ``step`` eagerly.
    """

    def __init__(self, step: Callable[[Tensor], Tensor], batch_size: int,
                 device: torch.device) -> None:
        self.step, self.batch_size = step, batch_size
        self.idx = torch.zeros(batch_size, dtype=torch.long, device=device)
        self.stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Tensor | None = None
        self.key = None
        self.eager_steps = 0
        self.captures = 0

    def __call__(self, idx: Tensor, key) -> Tensor:
        if idx.shape[0] != self.batch_size:
            return self.step(idx)
        if self.eager_steps < WARMUP:
            return self._warm_up(idx)
        if self.graph is None or key != self.key:
            self._capture(key)
        self.idx.copy_(idx)
        self.graph.replay()
        return self.out.clone()  # the next replay overwrites out

    def _warm_up(self, idx: Tensor) -> Tensor:
        """An eager step on the stream that captures will use."""
        main = torch.cuda.current_stream()
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            out = self.step(idx)
        main.wait_stream(self.stream)
        out.record_stream(main)  # used on the main stream from here on
        self.eager_steps += 1
        return out

    def _capture(self, key) -> None:
        # Dropping the old graph first returns its memory before the new one takes some.
        self.graph = self.out = None
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(self.stream):
                graph.capture_begin()
                try:
                    out = self.step(self.idx)
                finally:
                    graph.capture_end()
        except RuntimeError as e:  # an operation that waits for the host, say
            raise RuntimeError(f"capturing the training step as a CUDA graph failed: {e} "
                               "(--no-cuda-graphs runs every step eagerly)") from e
        torch.cuda.current_stream().wait_stream(self.stream)
        self.graph, self.out, self.key = graph, out, key
        self.captures += 1
