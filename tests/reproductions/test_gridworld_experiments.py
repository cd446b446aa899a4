"""Smoke test of experiments/gridworld_stagewise.py: the quick budget runs and writes the JSON in
the schema of issue 16 and a figure."""

import json
import math

import numpy as np

from experiments.gridworld_stagewise import Config, find_plateaus, main

STAGE_KEYS = {"regret", "llc", "llc_mcse", "subset_llc", "subset_llc_mcse"}


def test_gridworld_stagewise_quick_writes_the_schema(tmp_path):
    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "g.png"))
    assert (tmp_path / "g.png").stat().st_size > 0
    saved = json.loads((tmp_path / "gridworld_stagewise.json").read_text())
    assert isinstance(saved["seeds"], list) and len(saved["seeds"]) == Config.QUICK["num_seeds"]
    for entry in saved["seeds"]:
        assert isinstance(entry["seed"], int)
        assert isinstance(entry["stages"], list)
        for stage in entry["stages"]:
            assert STAGE_KEYS <= set(stage)
            assert all(isinstance(stage[k], float) and math.isfinite(stage[k]) for k in STAGE_KEYS)
            assert stage["llc_mcse"] >= 0 and stage["subset_llc_mcse"] >= 0
            assert 0 <= stage["regret"] <= 1
    assert saved["seeds_with_two_or_more_plateaus"] == sum(
        len(s["stages"]) >= 2 for s in saved["seeds"])
    assert report["summary"] == saved["summary"]


def test_find_plateaus_separates_two_steps_and_merges_a_slow_slope():
    steps = [0.5] * 10 + [0.3, 0.15] + [0.1] * 10
    assert find_plateaus(np.asarray(steps), 3, 0.02, 3, 0.1) == [(0, 6), (12, 21)]  # flat = no change over the next 3
    slow = np.linspace(0.5, 0.49, 20)
    assert find_plateaus(slow, 3, 0.02, 3, 0.1) == [(0, 19)]
