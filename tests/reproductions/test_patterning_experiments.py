"""Smoke tests of experiments/parentheses_patterning.py and experiments/tms_patterning.py on their
quick budgets: the JSON of issue 17's schema, a figure, and the numbers they report hang together
(algorithm verdicts from the accuracies, the predicted change is J dh of the chosen step)."""

import json
import math

import numpy as np

from experiments import parentheses_patterning, tms_patterning
from toymodels.models.parentheses import classify_algorithm

ROW_KEYS = {"seed": int, "algorithm": str, "train_accuracy": float,
            "discriminating_accuracy": float, "llc": float, "llc_mcse": float}


def test_smoke_parentheses_patterning_quick_writes_the_schema(tmp_path):
    cfg = parentheses_patterning.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "p.png")
    report = parentheses_patterning.main(cfg)
    assert (tmp_path / "p.png").stat().st_size > 0
    saved = json.loads((tmp_path / "parentheses_patterning.json").read_text())
    for arm in ("base", "patterned"):
        assert len(saved[arm]) == cfg.num_seeds
        for row in saved[arm]:
            assert set(row) == set(ROW_KEYS)
            assert all(isinstance(row[k], t) for k, t in ROW_KEYS.items())
            assert row["algorithm"] in ("nested", "equal_count", "other")
            assert row["algorithm"] == classify_algorithm(row["train_accuracy"],
                                                          row["discriminating_accuracy"])
            assert 0 <= row["train_accuracy"] <= 1 and 0 <= row["discriminating_accuracy"] <= 1
    for key in ("predicted_change", "measured_change"):
        assert isinstance(saved[key], float) and math.isfinite(saved[key])
    # the prediction is J dh of the step taken, for the nested-agreement row
    J = np.asarray(saved["jacobian"])
    dh = np.asarray(saved["intervention"]["dh"])
    assert saved["predicted_change"] == report["predicted_change"]
    assert math.isclose(saved["predicted_change"], float(J[0] @ dh), rel_tol=1e-9, abs_tol=1e-12)
    weights = saved["mixture"]
    assert all(w >= 0 for w in weights.values()) and math.isclose(sum(weights.values()), 1.0)


def test_smoke_tms_patterning_quick(tmp_path):
    cfg = tms_patterning.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "t.png")
    report = tms_patterning.main(cfg)
    assert (tmp_path / "t.png").stat().st_size > 0
    saved = json.loads((tmp_path / "tms_patterning.json").read_text())
    p = np.asarray(saved["feature_probabilities"])
    assert np.all(p >= -1e-12) and math.isclose(p.sum(), 1.0)
    J, dh = np.asarray(saved["jacobian"]), np.asarray(saved["intervention"]["dh"])
    np.testing.assert_allclose(saved["predicted_change"], J @ dh, rtol=1e-6, atol=1e-10)
    assert len(saved["finite_difference"]) == cfg.num_features
    assert sum(saved["kgons_before"]["labels"].values()) == cfg.num_inits
    assert report["max_abs_z"] == saved["max_abs_z"]


def test_per_feature_losses_add_up_to_the_exact_population_loss():
    """The midpoint rule's per-feature terms average to toymodels' exact population loss (the
    uniform mixture), with the error of the rule (O(1/points²))."""
    import torch

    from toymodels.models.tms import population_loss

    w = torch.randn(16, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    errors = []
    for points in (256, 1024):
        uniform = torch.full((6,), 1 / 6, dtype=torch.float64)
        errors.append(float((tms_patterning.mixture_loss(6, points, uniform)(w)
                             - population_loss(w)).abs().max()))
    assert errors[1] < 1e-4 and errors[1] < errors[0] / 8  # second order: ×4 points, ÷16 error
