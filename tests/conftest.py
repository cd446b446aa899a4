import os

import matplotlib
import torch

matplotlib.use("Agg")
os.environ.setdefault("MPLBACKEND", "Agg")
# The tests' tensors are small: one intra-op thread is faster than two and keeps parallel test
# workers from oversubscribing the cores. (Library code never changes this setting globally.)
torch.set_num_threads(1)
