"""experiments/dln_at_scale.py: the quick budget runs end to end (one tiny size, a few seconds) and
writes its schema and figure; the point it measures at is a critical point of the empirical loss,
below the teacher's loss; a bad configuration fails before anything runs."""

import json
import math

import pytest
import torch

from experiments import dln_at_scale
from theory.dln import learning_coefficient
from toymodels.models.dln import make_data, teacher_from_product


def test_smoke_dln_at_scale_quick_writes_the_schema(tmp_path):
    cfg = dln_at_scale.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "f.png")
    assert cfg.progress is False
    dln_at_scale.main(cfg)
    assert (tmp_path / "f.png").stat().st_size > 0
    saved = json.loads((tmp_path / "dln_at_scale.json").read_text())
    (row,) = saved["sizes"]
    lam, m = learning_coefficient(row["widths"], row["rank"])
    assert row["llc_exact"] == str(lam) and row["multiplicity"] == m
    assert row["num_parameters"] == cfg.depth * cfg.hidden_widths[0] ** 2
    for key in ("llc", "mcse", "rel_error", "seconds", "step_size", "diffusion_time"):
        assert isinstance(row[key], float) and math.isfinite(row[key]), key
    assert row["steps_per_chain"] == min(row["steps_wanted"], cfg.max_steps_per_chain[0])
    assert math.isclose(row["diffusion_time"], row["step_size"] * row["steps_per_chain"])
    assert len(row["window_llc"]) == cfg.num_windows
    assert row["gradient_norm_at_w_star"] < 1e-8  # w* is a critical point of L_n
    assert row["nbeta_teacher_minus_w_star"] > 0  # and lower than the teacher
    for key in ("reference_w_star", "reference_teacher", "reference_w_star_long"):
        assert math.isfinite(row[key]["llc"]) and row[key]["steps"] >= 4, key
    assert math.isclose(row["reference_w_star"]["diffusion_time"], row["diffusion_time"], rel_tol=0.5)
    assert isinstance(saved["summary"]["all_within_10_percent"], bool)


def test_empirical_minimiser_is_the_best_rank_r_product():
    widths, rank = (5, 5, 5), 2
    P_star = dln_at_scale.teacher_product(5, rank, 4.0, seed=3)
    X, Y = make_data(P_star, 400, seed=4)
    P_hat = dln_at_scale.empirical_minimiser(X, Y, rank)
    assert int(torch.linalg.matrix_rank(P_hat)) == rank
    best = dln_at_scale.nll(P_hat, X, Y, 1.0)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # nearby rank-r products are all worse
        U, s, Vh = torch.linalg.svd(P_hat + 0.05 * torch.randn(5, 5, generator=g, dtype=torch.float64))
        assert dln_at_scale.nll((U[:, :rank] * s[:rank]) @ Vh[:rank], X, Y, 1.0) > best
    layers = teacher_from_product(P_hat, widths, rank=rank).layers
    assert dln_at_scale.full_batch_gradient_norm(layers, X, Y, 1.0) < 1e-10


def test_bad_configurations_fail_before_running(tmp_path):
    with pytest.raises(ValueError, match="one value per size"):
        dln_at_scale.main(dln_at_scale.Config.quick_config(hidden_widths=(6, 8), out_dir=tmp_path))
    with pytest.raises(ValueError, match="num_chains"):
        dln_at_scale.main(dln_at_scale.Config.quick_config(num_chains=1, out_dir=tmp_path))
