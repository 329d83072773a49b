"""Audit item 3: options that were accepted and ignored, or answered another question.
Each check is against an independent computation (full-matrix GD with the any-weights noise
formula, a schedule sum written out by hand, a fresh draw of the init)."""

import json

import numpy as np
import pytest

from linear_theory._gd_full import init_weights, simulate_gd
from linear_theory._gd_map import gd_modes
from linear_theory._noise import expected_perturbed_loss
from linear_theory._phase import phase_diagram
from linear_theory._predict import predict
from linear_theory._schedules import Schedule
from linear_theory._teacher import make_teacher
from linear_theory._thresholds import harmful_modes
from linear_theory.cli import main


def test_phase_diagram_co_diagonal_against_full_matrix_gd():
    """Co-diagonal inputs: s*_i(σ) = σ²(tr Σx + d_out d_i) per mode (by hand), the grid of
    E[L_pert] equals full-matrix GD weights scored with the any-weights formula (rtol 1e-9:
    the two agree to round-off, ~1e-12, over 600 steps), and the exact inflection step is the
    argmin of that dense full-matrix curve over every step."""
    d = np.array([0.5, 2.0, 1.0])
    t = make_teacher([2.0, 1.0, 0.3], 12, 9, seed=1, input_variances=d)
    sigmas = np.array([0.05, 0.1])
    pd = phase_diagram(t, 0.1, sigmas, 600, n_steps=20, d_hidden=6)
    trace = 12 - 3 + d.sum()
    np.testing.assert_allclose(pd.critical_singular_value, sigmas[:, None] ** 2 * (trace + 9 * d[None, :]), rtol=1e-14)
    f = simulate_gd(t, 6, 0.1, np.arange(601), record_weights=True)
    for k, sigma in enumerate(sigmas):
        dense = expected_perturbed_loss(f.W1, f.W2, t, sigma)
        np.testing.assert_allclose(pd.expected_perturbed_loss[k], dense[pd.steps], rtol=1e-9)
        assert pd.inflection_step[k] == int(np.argmin(dense))
    assert np.all(np.isfinite(pd.inflection_step_estimate))


@pytest.mark.parametrize("command", [["predict", "--sigma", "0.05"], ["finetune"]])
def test_weight_decay_is_used_not_ignored(command, run_cli):
    """--weight-decay (once refused here) now trains with the decay: the clean loss at the last
    step is no longer ~0 (predict: the decayed fixed point; finetune: L_A before fine-tuning)."""
    args = command + ["--max-steps", "3000", "--json"]
    runs = [run_cli(args + ["--weight-decay", wd]) for wd in ("0", "0.1")]
    assert all(code == 0 for code, _, _ in runs)
    got = [json.loads(out) for _, out, _ in runs]
    key = "clean_loss_at_max_steps" if command[0] == "predict" else "pretrain_loss_before_finetune"
    last = [np.ravel(g[key])[-1] for g in got]
    assert last[0] < 1e-6 < last[1]


def _cosine(k, total, warmup):
    """Hand-written multiplier: linear warmup 0 → 1, then ½(1 + cos(π (k − w)/(T − w)))."""
    if k < warmup:
        return k / warmup
    x = min(k - warmup, total - warmup) / (total - warmup)
    return 0.5 * (1 + np.cos(np.pi * x))


def _wsd(k, total, warmup, decay_fraction):
    """Hand-written warmup-stable-decay: linear warmup, flat at 1, linear to 0 over the end."""
    n_decay = int(round(decay_fraction * total))
    start = max(total - n_decay, warmup)
    if k < warmup:
        return k / warmup
    if k < start:
        return 1.0
    return max(1.0 - (k - start) / n_decay, 0.0)


@pytest.mark.parametrize("kind", ["cosine", "wsd"])
def test_flow_time_is_the_sum_of_the_per_step_rates(kind):
    """flow time after n steps = Σ_{k<n} lr · m(k), m written out by hand (float64 sums of
    ≤ 1200 terms of size ≤ 1: the two sums differ only by round-off, ~1e-13 relative)."""
    t = make_teacher([2.0, 1.0, 0.5], 6, 5, seed=0)
    total, warmup = 1000, 40
    sched = Schedule(kind, total_steps=total, warmup_steps=warmup, decay_fraction=0.3)
    m = [_cosine(k, total, warmup) if kind == "cosine" else _wsd(k, total, warmup, 0.3) for k in range(1200)]
    steps = [0, 1, 17, 40, 500, 999, 1000, 1200]
    by_hand = np.array([sum(m[:n]) for n in steps])
    g = gd_modes(t, 0.1, steps + [np.inf], schedule=sched)
    np.testing.assert_allclose(g.flow_time[:-1], 0.1 * by_hand, rtol=1e-12, atol=1e-15)
    assert np.isinf(g.flow_time[-1])
    f = simulate_gd(t, 3, [0.1, 0.2], steps, schedule=sched)
    np.testing.assert_allclose(f.flow_time, np.outer([0.1, 0.2], by_hand), rtol=1e-12, atol=1e-15)
    # constant rate: lr × steps, as before
    np.testing.assert_array_equal(gd_modes(t, 0.1, steps).flow_time, 0.1 * np.array(steps))


def test_harmful_modes_only_among_modes_the_width_can_learn():
    """s* = 0.05²·40 = 0.1: modes 0.05 and 0.02 are below it, but a width-2 network keeps only
    the two largest (given unsorted), so it never learns them: nothing harmful. Full GD agrees
    that those modes stay at zero (|a| < 1e-8 after 3000 steps from a 1e-3 random init)."""
    t = make_teacher([0.05, 2.0, 0.02, 1.0], 24, 16, seed=0)
    assert predict(t, 0.05, 0.05, 200).harmful_modes == [0, 2]
    assert predict(t, 0.05, 0.05, 200, d_hidden=2).harmful_modes == []
    assert predict(t, 0.05, 0.05, 200, d_hidden=3).harmful_modes == [0]
    f = simulate_gd(t, 2, 0.2, [3000], init="random", init_std=1e-3)
    assert np.max(np.abs(f.mode_strengths[0, [0, 2]])) < 1e-8
    np.testing.assert_array_equal(harmful_modes([0.05, 2.0], 0.1, learnable=[False, True]), [])
    with pytest.raises(ValueError):
        harmful_modes([0.05, 2.0], 0.1, learnable=[True])


def test_relative_init_noise_uses_the_actual_init_rms(capsys):
    """--noise relative-init with --init random: std = γ × the RMS of the weights actually drawn
    (redrawn here from the same seed), not γ × the nominal --init-std; the two differ by the
    sampling error of 480 and 320 entries (~3-4 %), far above the 1e-12 compared at."""
    args = ["simulate", "--checkpoints", "0,50", "--sigma", "0.5", "--noise", "relative-init", "--init", "random",
            "--init-std", "0.01", "--seed", "3", "--mc-samples", "0", "--json"]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    t = make_teacher([2.0, 1.5, 1.0, 0.5], 24, 16, seed=3)
    W1, W2 = init_weights(t, 20, "random", init_std=0.01, seed=3)
    rms1, rms2 = np.sqrt(np.mean(W1**2)), np.sqrt(np.mean(W2**2))
    np.testing.assert_allclose(out["noise_std_W1"], 0.5 * rms1, rtol=1e-12)
    np.testing.assert_allclose(out["noise_std_W2"], 0.5 * rms2, rtol=1e-12)
    assert abs(rms1 / 0.01 - 1) > 1e-4  # so the test tells the two apart


def test_predict_help_states_the_co_diagonal_formulas(run_cli):
    code, out, _ = run_cli(["predict", "--help"])
    assert code == 0
    text = " ".join(out.split())
    for needle in ("s*_i = σ1² tr(Σx) + σ2² d_out d_i", "s_i/d_i", "s_i/√d_i", "2/max d_k(a_j + a_k)"):
        assert needle in text, needle
