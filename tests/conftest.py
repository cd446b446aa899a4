import os

import matplotlib
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests' tensors are small: one intra-op thread is faster than two and keeps parallel test
# workers from oversubscribing the cores. (Library code never changes this setting globally.)
torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here: the CUDA half of the device tests"))])
def device(request) -> torch.device:
    """Each device the exact-invariant tests run on: the CPU, and CUDA when one is present."""
    return torch.device(request.param)
