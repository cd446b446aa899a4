"""Smoke tests of experiments/compressibility.py and experiments/dln_resolution_dial.py: the quick
budgets (two models of each family, no worker processes; a few seconds each) run and write the
JSON schemas of issue 18 and a figure; the dial's thresholds and plateau points follow from the
loss."""

import json
import math

from experiments import compressibility, dln_resolution_dial


def test_smoke_compressibility_quick_writes_the_schema(tmp_path):
    cfg = compressibility.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "c.png")
    compressibility.main(cfg)
    assert (tmp_path / "c.png").stat().st_size > 0
    saved = json.loads((tmp_path / "compressibility.json").read_text())
    assert saved["exponents"]
    for e in saved["exponents"]:
        assert isinstance(e["model"], str) and isinstance(e["exact_volume"], bool)
        assert all(isinstance(e[k], float) for k in ("lambda", "exponent", "exponent_se"))
    assert set(saved["schemes"]) == {"quantize", "rank", "noise"}
    for c in saved["schemes"].values():
        assert isinstance(c["spearman_vs_lambda"], float) and isinstance(c["spearman_vs_llc"], float)
    # every model of the critical-strength table has a λ̂ with its Monte-Carlo error
    for r in saved["critical_strengths"]:
        assert math.isfinite(r["llc"]) and r["llc_mcse"] > 0
    # the exact cases' exponents are meaningful even on the quick budget
    exact = [e for e in saved["exponents"] if e["exact_volume"]]
    assert all(abs(e["exponent"] - e["lambda"]) < 5 * e["exponent_se"] + 0.05 * e["lambda"] for e in exact)


def test_smoke_dln_resolution_dial_quick_writes_the_schema(tmp_path):
    cfg = dln_resolution_dial.Config.quick_config(out_dir=tmp_path, figure=tmp_path / "d.png")
    dln_resolution_dial.main(cfg)
    assert (tmp_path / "d.png").stat().st_size > 0
    saved = json.loads((tmp_path / "dln_resolution_dial.json").read_text())
    assert len(saved["plateaus"]) == 3
    for p in saved["plateaus"]:
        assert isinstance(p["nbeta"], float) and isinstance(p["effective_rank"], int)
        assert all(isinstance(p[k], float) and math.isfinite(p[k]) for k in ("lambda", "llc", "llc_mcse"))


def test_dial_thresholds_and_plateaus_follow_from_the_loss():
    cfg = dln_resolution_dial.Config()
    # mode k costs s_k² v/(2σ²) in K: thresholds 2/s_k² at σ = v = 1
    assert dln_resolution_dial.thresholds(cfg) == [2.0, 2e4]
    points = dln_resolution_dial.plateau_points(cfg)
    assert [r for r, _ in points] == [0, 1, 2]
    for r, nb in points:
        assert dln_resolution_dial.effective_rank(nb, cfg) == r
        assert all(max(nb / t, t / nb) >= cfg.plateau_margin for t in dln_resolution_dial.thresholds(cfg))
    # no plateau between thresholds closer than margin² apart
    close = dln_resolution_dial.Config(singular_values=(1.0, 0.05))
    assert [r for r, _ in dln_resolution_dial.plateau_points(close)] == [0, 2]
