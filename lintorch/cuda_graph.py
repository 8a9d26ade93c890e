"""A training step captured once as a CUDA graph and replayed for every full batch.

On a GPU a linear classifier's step is ~70 small kernels, each costing the host more time to
launch than the device takes to run it: the step waits on Python, the dispatcher and the
autograd engine, not on the GPU (``experiments/profile_step.py``). Replaying a captured graph
launches all of them at once. The step itself is unchanged: the same ``autograd.Function``s,
the same SGD step, captured as they run (PyTorch's "whole-network capture").

What capture bakes in, and how this copes:
- addresses: the step reads its batch from fixed input buffers, which each replay refills;
  parameters, gradients and momentum buffers keep their storage;
- Python numbers: ``optimizer.step()`` passes the learning rate as a number, so a new rate
  (the schedule steps once per epoch) means a new capture (``key``);
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
    """``step(*inputs) -> tuple of tensors``, replayed from a graph for batches of
    ``batch_size`` (the inputs' first dimension); other batches run ``step`` eagerly.

    ``key()`` names what the capture baked in besides addresses (fit's learning rate, the
    sweep's models still training): a call while it names something else captures again.
    """

    def __init__(self, step: Callable[..., tuple[Tensor, ...]], batch_size: int,
                 device: torch.device, key: Callable[[], object] = lambda: None) -> None:
        self.step, self.batch_size, self.key = step, batch_size, key
        self.stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: list[Tensor] = []
        self.out: tuple[Tensor, ...] = ()
        self.captured_key = None
        self.eager_steps = 0
        self.captures = 0

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if inputs[0].shape[0] != self.batch_size:
            return self.step(*inputs)
        if self.eager_steps < WARMUP:
            return self._warm_up(inputs)
        if self.graph is None or self.key() != self.captured_key:
            self._capture(inputs)
        for buffer, t in zip(self.inputs, inputs):
            buffer.copy_(t)
        self.graph.replay()
        return tuple(t.clone() for t in self.out)  # the next replay overwrites out

    def _warm_up(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """An eager step on the stream that captures will use."""
        main = torch.cuda.current_stream()
        self.stream.wait_stream(main)
        with torch.cuda.stream(self.stream):
            out = self.step(*inputs)
        main.wait_stream(self.stream)
        for t in out:
            t.record_stream(main)  # used on the main stream from here on
        self.eager_steps += 1
        return out

    def _capture(self, inputs: tuple[Tensor, ...]) -> None:
        # Dropping the old graph first returns its memory before the new one takes some.
        self.graph, self.out = None, ()
        self.inputs = [t.clone() for t in inputs]
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        try:
            with torch.cuda.stream(self.stream):
                graph.capture_begin()
                try:
                    out = self.step(*self.inputs)
                finally:
                    graph.capture_end()
        except RuntimeError as e:  # an operation that waits for the host, say
            raise RuntimeError(f"capturing the training step as a CUDA graph failed: {e} "
                               "(--no-cuda-graphs runs every step eagerly)") from e
        torch.cuda.current_stream().wait_stream(self.stream)
        self.graph, self.out, self.captured_key = graph, tuple(out), self.key()
        self.captures += 1
