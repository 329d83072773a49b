"""Predictions: learning steps, the inflection step, rise bounds, phase diagram, schedules;
each against an independent computation (spectral detectability: test_spectral.py)."""

import numpy as np
import pytest

from linear_theory import gd_modes, make_teacher, power_law_spectrum, simulate_gd
from linear_theory import (
    critical_singular_value,
    expected_perturbed_loss,
    modal_expected_perturbed_loss,
    monte_carlo_perturbed_loss,
    rise_bound_terms,
    sensitivity,
)
from linear_theory._phase import log_steps, phase_diagram, schedule_inflections
from linear_theory._predict import inflection_step_estimate, predict, summarize_path
from linear_theory._spectral import aligned_weights

EXAMPLE = dict(s=[2.0, 1.0, 0.5, 0.2, 0.1], d_in=24, d_out=16, h=20, lr=0.05, sigma=0.05)


@pytest.fixture(scope="module")
def example():
    e = EXAMPLE
    return make_teacher(e["s"], e["d_in"], e["d_out"], seed=0)


def test_inflection_and_learning_steps_against_dense_full_matrix_run(example):
    """Exact argmin from the per-mode scan vs full-matrix GD recorded at every step and
    scored with the any-weights formula: two independent code paths."""
    e = EXAMPLE
    n = 1500
    p = predict(example, e["lr"], e["sigma"], n, d_hidden=e["h"])
    f = simulate_gd(example, e["h"], e["lr"], np.arange(n + 1), record_weights=True)
    epl = expected_perturbed_loss(f.W1, f.W2, example, e["sigma"])
    assert p.inflection_step == int(np.argmin(epl))
    np.testing.assert_allclose(p.min_expected_perturbed_loss, epl.min(), rtol=1e-10)
    np.testing.assert_allclose(p.expected_perturbed_loss_at_max_steps, epl[-1], rtol=1e-10)
    half = f.mode_strengths >= example.s / 2
    assert p.mode_learning_steps == [int(np.argmax(c)) if c.any() else None for c in half.T]
    assert p.mode_learning_steps[-1] is not None  # all learned within 1500 steps here


def test_predict_example_values(example):
    e = EXAMPLE
    p = predict(example, e["lr"], e["sigma"], 20000, d_hidden=e["h"])
    assert p.critical_singular_value == pytest.approx(e["sigma"] ** 2 * (24 + 16))
    # s* = 0.05² · 40 = 0.1 is exactly the last singular value: learning it changes
    # E[L_pert] by zero, so no mode is harmful; a slightly larger σ makes it harmful.
    assert p.harmful_modes == []
    assert predict(example, e["lr"], 0.0501, 2000, d_hidden=e["h"]).harmful_modes == [4]
    assert predict(example, e["lr"], 0.08, 2000, d_hidden=e["h"]).harmful_modes == [3, 4]
    assert 0 < p.inflection_step < 20000
    assert p.rise > 0
    assert p.rise <= p.rise_bound_at_convergence + 1e-12
    # Learning steps follow the flow estimate ln(s/a0)/(2 s lr) to within a few %.
    est = np.log(np.array(e["s"]) / 1e-6) / (2 * np.array(e["s"]) * e["lr"])
    np.testing.assert_allclose(p.mode_learning_steps, est, rtol=0.06)
    # Mode not learned within a short horizon is reported as None.
    short = predict(example, e["lr"], e["sigma"], 300, d_hidden=e["h"])
    assert short.mode_learning_steps[-1] is None and short.mode_learning_steps[0] is not None


def test_sensitivity_non_decreasing_along_aligned_trajectories():
    """Monotone for gradient flow and for GD with lr·s_max ≤ ½ (each a_i rises to s_i
    without overshoot); with lr·s_max in (½, 1) modes overshoot and it need not be."""
    for s, lr in (([2.0, 1.0, 0.5, 0.2, 0.1], 0.05), (power_law_spectrum(12, 1.0, 0.7), 0.5)):
        t = make_teacher(s, 20, 14, seed=2)
        traj = gd_modes(t, lr, np.arange(0, 4001, 3))
        W1, W2 = aligned_weights(t, traj.mode_strengths, 16)
        sens = sensitivity(W1, W2, 0.03)
        assert np.all(np.diff(sens) >= -1e-15)
        assert sens[-1] > sens[0] * 10
    t = make_teacher(power_law_spectrum(12, 1.0, 0.7), 20, 14, seed=2)
    a = gd_modes(t, 0.9, np.arange(0, 4001)).mode_strengths
    assert np.any(np.diff(a.sum(1)) < 0)  # the overshooting case really does go down


@pytest.mark.parametrize("s, sigma", [
    ([2.0, 1.0, 0.5, 0.2, 0.1], 0.05),
    ([2.0, 1.0, 0.5, 0.2, 0.1], 0.1),
    (list(power_law_spectrum(16, 1.0, 1.0)), 0.08),
    ([1.0, 0.9, 0.8], 0.1),
])
def test_rise_at_convergence_bounded(s, sigma):
    """Rise of E[L_pert] above its minimum at convergence ≤ Σ g_i; ≤ r s*²/8 when all
    s_i ≥ s*. The converged value is evaluated at a = s exactly (fixed point)."""
    t = make_teacher(s, 24, 16, seed=1)
    sm = summarize_path(t, 0.4 / max(s), 30000, sigma, d_hidden=16)
    converged = modal_expected_perturbed_loss(t, t.s[None], 16, sigma)[0]
    rise = converged - sm.min_value[0]
    s_star = critical_singular_value(24, 16, sigma)
    bound = rise_bound_terms(t.s, s_star).sum()
    assert 0 < rise <= bound * (1 + 1e-12)
    if min(s) >= s_star:
        assert rise <= len(s) * s_star**2 / 8


def test_rise_grows_with_number_of_modes_below_threshold():
    """Heavy tail s_i = i^-1: adding modes below s* at fixed s* raises the rise."""
    sigma, rises = 0.1, []  # s* = 4.0 · 0.1² · ... = 0.4 with d_in + d_out = 40
    for rank in (4, 8, 16, 32):
        t = make_teacher(power_law_spectrum(rank, 1.0, 1.0), 40, 40, seed=0)
        sm = summarize_path(t, 0.5, 40000, sigma, d_hidden=40)
        rises.append(modal_expected_perturbed_loss(t, t.s[None], 40, sigma)[0] - sm.min_value[0])
    assert np.all(np.diff(rises) > 0), rises


def test_inflection_agrees_with_monte_carlo_random_init():
    """Inflection from the exact map vs the argmin over a log grid of the Monte Carlo
    perturbed loss of full-matrix GD from random small init. The theory's a0 is read off
    the clean run (the top mode's measured learning step), not off the noisy one."""
    t = make_teacher([1.0, 0.1, 0.05, 0.02], 24, 16, seed=0)
    lr, sigma, h = 0.1, 0.1, 20
    grid = log_steps(20000, 50)
    for seed in (0, 1):
        f = simulate_gd(t, h, lr, grid, init="random", init_std=1e-3, seed=seed, record_weights=True)
        k_half = grid[np.argmax(f.mode_strengths[:, 0] >= t.s[0] / 2)]
        a0 = t.s[0] / (1 + np.exp(2 * t.s[0] * lr * k_half))
        p = predict(t, lr, sigma, 20000, init_strength=a0, d_hidden=h)
        mean, err = monte_carlo_perturbed_loss(f.W1, f.W2, t, sigma, sigma, 2000, seed)
        i = int(np.argmin(mean))
        assert 0 < i < grid.size - 1
        assert mean[-1] - mean[i] > 10 * err[i]  # a real U, not MC noise
        spacing = np.log(grid[i + 1] / grid[i - 1]) / 2
        assert abs(np.log(p.inflection_step / grid[i])) <= spacing


def test_phase_diagram_inflection_moves_earlier_with_sigma():
    t = make_teacher(power_law_spectrum(16, 1.0, 1.0), 24, 16, seed=0)
    sigmas = np.array([0.03, 0.05, 0.08, 0.12])
    pd = phase_diagram(t, 0.5, sigmas, 20000, n_steps=40)
    assert pd.expected_perturbed_loss.shape == (4, pd.steps.size)
    np.testing.assert_allclose(pd.critical_singular_value, sigmas**2 * 40)
    assert np.all(np.diff(pd.inflection_step) < 0), pd.inflection_step
    assert np.all(np.diff(pd.inflection_step_estimate) < 0)
    # The grid and the exact argmin against full-matrix GD: test_audit_options.py.
    # σ = 0 row equals the clean loss.
    pd0 = phase_diagram(t, 0.5, [0.0], 2000, n_steps=10)
    np.testing.assert_allclose(pd0.expected_perturbed_loss[0], pd0.clean_loss, rtol=1e-14)


def test_estimate_formula():
    np.testing.assert_allclose(inflection_step_estimate(0.1, 1e-6, 0.05), np.log(1e5) / (2 * 0.1 * 0.05))
    assert np.isnan(inflection_step_estimate(1e-7, 1e-6, 0.05))


def test_decaying_schedules_delay_the_turn():
    """Annealed rates slow the late learning of weak modes: the turn comes later (cosine
    decays through it) or not earlier (WSD decays only after it), the rise by the end of
    the run is smaller, and the turn is still there (interior argmin)."""
    t = make_teacher(power_law_spectrum(16, 1.0, 1.0), 24, 16, seed=0)
    n = 1500
    res = schedule_inflections(t, 0.05, 0.08, n, warmup_steps=0, decay_fraction=0.5)
    k = {kind: r["inflection_step"] for kind, r in res.items()}
    rise = {kind: r["expected_perturbed_loss_at_max_steps"] - r["min_expected_perturbed_loss"] for kind, r in res.items()}
    assert k["cosine"] > k["constant"] and k["wsd"] >= k["constant"], k
    assert rise["cosine"] < rise["constant"] and rise["wsd"] < rise["constant"], rise
    assert all(0 < v < n for v in k.values()) and all(r > 1e-3 for r in rise.values())


def test_predict_co_diagonal_inputs():
    """Per-mode thresholds s*_i = σ²(tr Σx + d_out d_i); the exact argmin still matches a
    dense full-matrix run scored with the any-weights formula."""
    t = make_teacher([2.0, 1.0, 0.3], 12, 9, seed=1, input_variances=[0.5, 2.0, 1.0])
    p = predict(t, 0.1, 0.1, 800, d_hidden=6)
    trace = 12 - 3 + 3.5
    np.testing.assert_allclose(p.critical_singular_value, 0.01 * (trace + 9 * np.array([0.5, 2.0, 1.0])))
    f = simulate_gd(t, 6, 0.1, np.arange(801), record_weights=True)
    assert p.inflection_step == int(np.argmin(expected_perturbed_loss(f.W1, f.W2, t, 0.1)))


@pytest.mark.parametrize("bad", [dict(sigma=-0.1), dict(sigma=np.nan), dict(max_steps=0), dict(max_steps=2.5),
                                 dict(lr=0.6)])
def test_predict_bad_input(example, bad):
    kw = dict(lr=0.05, sigma=0.05, max_steps=100) | bad
    with pytest.raises(ValueError):
        predict(example, kw["lr"], kw["sigma"], kw["max_steps"])


def test_recorded_strengths_equal_the_gd_map():
    t = make_teacher([2.0, 1.0, 0.5, 0.2, 0.1], 24, 16, seed=0)
    steps = np.array([0, 1, 5, 16383, 16384, 16385, 30000])  # across block boundaries
    sm = summarize_path(t, 0.05, 30000, 0.05, record_steps=steps)
    np.testing.assert_allclose(sm.recorded_strengths, gd_modes(t, 0.05, steps).mode_strengths, rtol=1e-12)
    with pytest.raises(ValueError):
        summarize_path(t, 0.05, 100, 0.05, record_steps=[200])
