"""`linear-theory study mitigations`: the weight-decay mapping, the verdict logic, bad input, resume."""

import dataclasses
import json
import math

import numpy as np
import pytest

from experiments.study import (forgetting_verdict, grid, noise_optimal_decay, run_mitigations, turn_verdict)
from linear_theory import cli

from test_transformer import tiny_config


def ci(mean, lo, hi):
    return {"mean": mean, "lo": lo, "hi": hi, "n": 2, "dropped": 0, "how": "constructed"}


# ---------------------------------------------------------------- the weight-decay mapping


def test_decay_equals_the_noise_penalty_of_the_direct_path_by_monte_carlo():
    """E over absolute noise (std σ on every entry of W1 = wteᵀ, W2 = lm_headᵀ) of ½‖(W2+E2)(W1+E1)/V − A‖²
    is L + (λ/2)(‖W1‖² + ‖W2‖²) + ½σ⁴d with λ = σ²/V: checked by Monte Carlo, not by the formula."""
    rng = np.random.default_rng(0)
    v, d, sigma, n = 6, 3, 0.3, 200_000
    w1, w2 = rng.normal(size=(d, v)), rng.normal(size=(v, d))
    a = rng.normal(size=(v, v)) * 0.1
    e1 = rng.normal(scale=sigma, size=(n, d, v))
    e2 = rng.normal(scale=sigma, size=(n, v, d))
    lp = 0.5 * np.sum(((w2 + e2) @ (w1 + e1) / v - a) ** 2, axis=(1, 2))
    clean = 0.5 * np.sum((w2 @ w1 / v - a) ** 2)
    lam = noise_optimal_decay(sigma, v)["lambda"]
    expected = clean + 0.5 * lam * (np.sum(w1**2) + np.sum(w2**2)) + 0.5 * sigma**4 * d
    se = lp.std(ddof=1) / math.sqrt(n)
    assert abs(lp.mean() - expected) < 5 * se  # Monte Carlo: 5 standard errors
    assert lam == pytest.approx(sigma**2 / v, rel=1e-15)


def test_decay_in_theory_units_is_linear_theorys_best_single_decay():
    """λ̃ = λ·V equals linear_theory's balanced noise-optimal decay s*/2 for the rescaled weights W̃ = W/√V
    (noise σ/√V on W̃, d_in = d_out = V), and one SGD step with the ℓ2 gradient λW on W is the theory step
    at rate η/V with decay λ·V on W̃ (numpy, same numbers)."""
    from linear_theory import balanced_noise_optimal_weight_decay, make_teacher

    v, sigma = 16, 0.1
    m = noise_optimal_decay(sigma, v)
    teacher = make_teacher(np.array([0.5, 0.3]), v, v, seed=0)
    assert m["lambda"] * v == pytest.approx(balanced_noise_optimal_weight_decay(teacher, sigma / math.sqrt(v)),
                                            rel=1e-12)
    rng = np.random.default_rng(1)
    d, eta = 4, 0.3
    w1, w2, a = rng.normal(size=(d, v)), rng.normal(size=(v, d)), rng.normal(size=(v, v))
    lam = m["lambda"]
    r = w2 @ w1 / v - a  # L = ½‖W2W1/V − A‖²
    g1, g2 = w2.T @ r / v, r @ w1.T / v
    new1, new2 = w1 - eta * (g1 + lam * w1), w2 - eta * (g2 + lam * w2)
    t1, t2 = w1 / math.sqrt(v), w2 / math.sqrt(v)  # W̃: L = ½‖W̃2W̃1 − A‖²
    rt = t2 @ t1 - a
    tnew1 = t1 - eta / v * (t2.T @ rt + lam * v * t1)
    tnew2 = t2 - eta / v * (rt @ t1.T + lam * v * t2)
    np.testing.assert_allclose(new1 / math.sqrt(v), tnew1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(new2 / math.sqrt(v), tnew2, rtol=1e-12, atol=1e-14)


def test_grid_is_fixed_overrides_of_the_baseline():
    base = tiny_config()
    g = grid(base)
    assert list(g) == ["baseline", "weight-decay", "sam", "cosine", "z-loss", "adamw"]
    assert g["baseline"][0] == base
    assert g["weight-decay"][0].train.weight_decay == pytest.approx(0.05**2 / 16)  # tiny: abs σ 0.05, V 16
    assert g["sam"][0].train.sam_rho == 0.05 and g["z-loss"][0].train.z_loss == 1e-3
    assert g["cosine"][0].train.schedule == "cosine"
    assert (g["adamw"][0].train.optimizer, g["adamw"][0].train.lr, g["adamw"][0].train.weight_decay) == ("adamw", 1e-3,
                                                                                                         0.1)
    for name, (cfg, _) in g.items():  # everything else as the baseline: the same language, probes, seed
        assert (cfg.language, cfg.probe, cfg.seed, cfg.model) == (base.language, base.probe, base.seed, base.model)
    with pytest.raises(ValueError, match="SGD"):
        grid(g["adamw"][0])


# ---------------------------------------------------------------- verdicts on constructed intervals


FLOOR_CLEAR = ci(0.05, 0.03, 0.07)  # a rise whose interval clears the 0.002-nat floor


@pytest.mark.parametrize("mit, ratio, want", [
    (ci(0.0005, -0.001, 0.0015), ci(0.0, -1, 1), "disappears"),  # wholly below the floor
    (ci(0.002, -0.001, 0.005), ci(0.0, -0.01, 0.01), "inconclusive"),  # rise straddles the floor
    (FLOOR_CLEAR, ci(0.5, 0.3, 0.7), "later"),  # 1.35×–2.0× later
    (FLOOR_CLEAR, ci(-0.5, -0.7, -0.3), "earlier"),
    (FLOOR_CLEAR, ci(0.05, -0.1, 0.15), "stays"),  # within ±log 1.2 = ±0.182
    (FLOOR_CLEAR, ci(0.3, -0.1, 0.7), "inconclusive"),  # straddles 0 and the margin
    (FLOOR_CLEAR, ci(0.2, 0.1, 0.3), "later"),  # above 0, beyond the margin
])
def test_turn_verdicts(mit, ratio, want):
    assert turn_verdict(FLOOR_CLEAR, mit, ratio) == want


def test_nothing_disappears_when_the_baseline_shows_no_turn():
    no_turn = ci(0.001, -0.002, 0.004)
    assert turn_verdict(no_turn, ci(0.0, 0.0, 0.0), ci(0.0, -0.1, 0.1)) == "inconclusive"


@pytest.mark.parametrize("mit, diff, want", [
    (ci(0.0005, 0.0, 0.001), ci(-0.05, -0.07, -0.03), "disappears"),
    (ci(0.02, 0.01, 0.03), ci(-0.03, -0.04, -0.02), "less"),
    (ci(0.08, 0.07, 0.09), ci(0.03, 0.02, 0.04), "more"),
    (ci(0.05, 0.04, 0.06), ci(0.0, -0.001, 0.001), "same"),
    (ci(0.05, 0.0, 0.1), ci(0.0, -0.05, 0.05), "inconclusive"),
])
def test_forgetting_verdicts(mit, diff, want):
    assert forgetting_verdict(FLOOR_CLEAR, mit, diff) == want


# ---------------------------------------------------------------- the command


def test_bad_input_exits_2(tmp_path, capsys):
    out = str(tmp_path / "s")
    for argv in (["--seeds", "0"], ["--seeds", "0,0"], ["--only", "dropout"], ["--preset", "nope"]):
        with pytest.raises(SystemExit) as e:
            cli.main(["study", "mitigations", "--out", out, *argv])
        assert e.value.code == 2
    (tmp_path / "s" / "baseline" / "seed-0").mkdir(parents=True)  # a different run already in a cell's folder
    (tmp_path / "s" / "baseline" / "seed-0" / "config.json").write_text(json.dumps({"preset": "other"}))
    assert cli.main(["study", "mitigations", "--out", out, "--seeds", "0,1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "different configuration" in err and "Traceback" not in err


def tiny(base):
    return dataclasses.replace(tiny_config(), seed=base.seed)


def test_two_by_two_grid_then_resume_gives_the_same_result(tmp_path, capsys):
    """baseline + weight decay × seeds 0, 1 on the tiny config; a rerun reads every cell back (no training:
    the checkpoints are not rewritten) and prints the same study."""
    argv = ["study", "mitigations", "--out", str(tmp_path), "--seeds", "0,1", "--only", "weight-decay", "--json",
            "--no-progress"]
    run_mitigations(cli.build_parser().parse_args(argv), config_override=tiny)
    first = json.loads(capsys.readouterr().out)
    ckpt = sorted((tmp_path / "weight-decay" / "seed-1" / "checkpoints").glob("*.npz"))
    mtimes = [p.stat().st_mtime_ns for p in ckpt]
    run_mitigations(cli.build_parser().parse_args(argv), config_override=tiny)
    second = json.loads(capsys.readouterr().out)
    assert [p.stat().st_mtime_ns for p in ckpt] == mtimes
    drop = ("wall_s", "figure")
    assert {k: v for k, v in first.items() if k not in drop} == {k: v for k, v in second.items() if k not in drop}
    assert json.loads((tmp_path / "study.json").read_text())["mitigations"].keys() == {"weight-decay"}
    m = first["mitigations"]["weight-decay"]
    assert len(m["turn"]) == 2 and m["forgetting"]["minus_baseline"]["n"] == 2  # 1 relative + 1 absolute σ
    assert first["predictions"]["weight-decay"]["mapping"].startswith("λ̃ = λ·V")
    assert (tmp_path / "study.png").stat().st_size > 0
    argv_table = [a for a in argv if a != "--json"] + ["--no-figure"]
    run_mitigations(cli.build_parser().parse_args(argv_table), config_override=tiny)  # read back, as a table
    table = capsys.readouterr().out
    assert "weight-decay" in table and max(len(line) for line in table.splitlines()) <= 100
