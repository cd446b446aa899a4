"""experiments/gridworld_susceptibilities.py: the component masks, the behaviour measure and the
steering edit are checked exactly; the quick budget runs and writes its JSON and figure."""

import json
import math

import torch

from experiments.gridworld_susceptibilities import (
    DIRECTIONS,
    Config,
    component_masks,
    corner_preference,
    main,
    scaled_group,
)
from toymodels.models.gridworld import MLPPolicy, dfs_maze, flat_parameters, sample_levels


def _policy(hidden=8):
    return MLPPolicy(5, 5, hidden=(hidden,), generator=torch.Generator().manual_seed(1),
                     dtype=torch.float64)


def test_component_masks_partition_the_hidden_units_weights():
    policy = _policy(8)
    masks = component_masks(policy, 4)
    d = flat_parameters(policy).numel()
    stacked = torch.stack(masks)
    assert stacked.shape == (4, d)
    assert int(stacked.sum(0).max()) == 1  # disjoint
    # every parameter but the output bias belongs to exactly one group
    assert int(stacked.sum()) == d - 4
    per_group = 3 * 25 * 2 + 2 + 4 * 2  # 2 units: incoming weights and biases, outgoing weights
    assert all(int(m.sum()) == per_group for m in masks)


def test_scaling_a_group_scales_its_activations_only():
    policy = _policy(8)
    obs = torch.rand(6, 75, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    hidden = policy.net[1](policy.net[0](obs))
    hidden[:, 2:4] *= 0.0
    expected = policy.net[2](hidden)
    assert torch.allclose(scaled_group(policy, 1, 4, 0.0)(obs), expected, rtol=0, atol=1e-14)
    assert torch.equal(scaled_group(policy, 1, 4, 1.0)(obs), policy(obs))


def test_corner_preference_is_zero_when_the_cheese_is_in_the_corner():
    g = torch.Generator().manual_seed(0)
    levels = sample_levels(12, g, alpha=0.0, height=5, width=5, maze=dfs_maze(5, 5, g))
    assert bool(levels.cheese_in_corner.all())
    assert corner_preference(_policy(4), levels, 0.9) == 0.0
    away = sample_levels(12, g, alpha=1.0, height=5, width=5, maze=dfs_maze(5, 5, g))
    away = away[~away.cheese_in_corner]
    assert abs(corner_preference(_policy(4), away, 0.9)) > 0


def test_smoke_gridworld_susceptibilities_quick_writes_json_and_figure(tmp_path):
    report = main(Config.quick_config(out_dir=tmp_path, figure=tmp_path / "s.png"))
    assert (tmp_path / "s.png").stat().st_size > 0
    saved = json.loads((tmp_path / "gridworld_susceptibilities.json").read_text())
    assert saved["summary"] == report["summary"]
    groups = Config.QUICK["num_groups"]
    assert [r["step"] for r in saved["checkpoints"]] == sorted(Config.QUICK["checkpoints"])
    for record in saved["checkpoints"]:
        assert len(record["components"]) == groups
        for row in record["components"]:
            for b in DIRECTIONS:
                assert math.isfinite(row["chi"][b]) and row["chi_mcse"][b] >= 0
    assert len(saved["steering"]["table"]) == groups
