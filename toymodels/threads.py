"""Torch's intra-op thread count, set for a block of code and restored afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["torch_threads"]


@contextmanager
def torch_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(num_threads)``, then restore the old count.

    Toy models' tensors are tiny: splitting them over threads costs more than it saves (one
    thread was ~100× faster than two for a 5-parameter potential with 2000 chains on a busy
    2-core machine), so samplers and experiments on them use one thread.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
        raise ValueError(f"num_threads must be a positive integer, got {num_threads!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
