"""The fused sweep (`_sweep.py`) against a plain numpy loop written here, and relative
noise against full-matrix evaluation and Monte Carlo.

The reference loop is the obvious one: a Python loop over steps updating a vector of
modes and keeping the minimum of the perturbed loss, written from THEORY.md §3–4 without
any code of the package (only the schedule's multipliers come from `Schedule`).
Tolerances: the two compute the same floating-point operations except the order of the
sums over modes (pairwise in numpy, blocked in XLA), so values agree to a few ulps of the
loss (rtol 1e-12), and the strengths, which need no sums, agree to 1e-13 (XLA may fuse a
multiply-add).
"""

import jax
import numpy as np
import pytest

from linear_theory import Schedule, expected_perturbed_loss, make_teacher, monte_carlo_perturbed_loss, noise_stds
from linear_theory import power_law_spectrum, simulate_gd
from linear_theory._phase import log_steps, phase_diagram
from linear_theory._predict import predict, summarize_path
from linear_theory._spectral import aligned_weights


def numpy_reference(s, d, d_in, d_out, h, lr, n, a0, gamma1, gamma2, kind="absolute", multipliers=None):
    """Loop over steps 0 … n: exact GD map, E[L_pert] per noise setting, running argmin,
    first step each mode reaches half its target, final value and strengths."""
    s, d = np.asarray(s, float), np.asarray(d, float)
    target, trace = s / d, d_in - s.size + d.sum()
    size1, size2 = h * d_in, d_out * h
    a = np.array(a0, float)
    a[h:] = 0.0
    total0 = a.sum()
    g1, g2 = np.asarray(gamma1, float), np.asarray(gamma2, float)

    def value(a):
        if kind == "absolute":
            v1, v2 = g1**2, g2**2
        elif kind == "init":
            v1, v2 = g1**2 * total0 / size1, g2**2 * total0 / size2
        else:  # rms: ‖W1‖² = ‖W2‖² = Σa for aligned balanced weights
            v1, v2 = g1**2 * a.sum() / size1, g2**2 * a.sum() / size2
        loss = 0.5 * np.sum(d * (a - target) ** 2)
        return loss + 0.5 * (v2 * d_out * np.sum(d * a) + v1 * trace * np.sum(a) + v1 * v2 * trace * h * d_out)

    best, best_k = value(a), np.zeros(g1.shape, int)
    learned = np.where(a >= target / 2, 0, -1)
    for k in range(n):
        m = 1.0 if multipliers is None else multipliers[k]
        a = a * (1.0 + lr * m * (s - d * a)) ** 2
        v = value(a)
        better = v < best
        best, best_k = np.where(better, v, best), np.where(better, k + 1, best_k)
        learned = np.where((learned < 0) & (a >= target / 2), k + 1, learned)
    return dict(min_value=best, inflection_step=best_k, final_value=v, final_strengths=a, learned=learned)


CASES = [
    # s, d_in, d_out, h, input variances, lr, steps, sigmas, kind, schedule
    ([2.0, 1.0, 0.5, 0.2, 0.1], 24, 16, 20, None, 0.05, 3000, [0.03, 0.05, 0.08], "absolute", None),
    ([2.0, 1.0, 0.3], 12, 9, 6, [0.5, 2.0, 1.0], 0.1, 800, [0.1], "absolute", None),
    (list(power_law_spectrum(16, 1.0, 1.0)), 24, 16, 10, None, 0.05, 1500, [0.08], "absolute", "cosine"),
    ([1.0, 0.5, 0.2, 0.1], 10, 8, 4, None, 0.3, 700, [0.3, 0.6], "rms", None),
    ([1.0, 0.5, 0.2, 0.1], 10, 8, 6, [1.5, 0.5, 1.0, 2.0], 0.3, 700, [5.0, 20.0], "init", None),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{c[8]}-{c[9]}-{i}" for i, c in enumerate(CASES)])
def test_sweep_equals_the_numpy_loop(case):
    s, d_in, d_out, h, var, lr, n, sigmas, kind, sched = case
    t = make_teacher(s, d_in, d_out, seed=3, input_variances=var)
    schedule = Schedule() if sched is None else Schedule(sched, total_steps=n)
    with jax.enable_x64(True):  # the multipliers in float64, as the theory computes them
        mult = None if sched is None else np.asarray(schedule(np.arange(n)), dtype=float)
    a0 = np.full(len(s), 1e-6)
    ref = numpy_reference(s, t.variances, d_in, d_out, h, lr, n, a0, sigmas, sigmas, kind, mult)
    record = [0, 1, 31, 32, 33, n // 2, n]  # across block boundaries
    sm = summarize_path(t, lr, n, sigmas, None, 1e-6, h, schedule, record, noise=kind)
    np.testing.assert_array_equal(sm.inflection_step, ref["inflection_step"])
    np.testing.assert_allclose(sm.min_value, ref["min_value"], rtol=1e-12)
    np.testing.assert_allclose(sm.final_value, ref["final_value"], rtol=1e-12)
    np.testing.assert_allclose(sm.final_strengths, ref["final_strengths"], rtol=1e-13, atol=1e-300)
    np.testing.assert_array_equal(sm.mode_learning_steps, ref["learned"])
    assert np.all(sm.inflection_step > 0) and np.all(sm.inflection_step < n)  # interior: a real test of the argmin
    # The recorded strengths are the loop's at those steps (rerun the loop to each one).
    for k in (33, n // 2):
        part = numpy_reference(s, t.variances, d_in, d_out, h, lr, k, a0, sigmas[:1], sigmas[:1], kind, mult)
        np.testing.assert_allclose(sm.recorded_strengths[record.index(k)], part["final_strengths"], rtol=1e-13)


def test_sweep_edge_cases_one_step_and_minimum_at_step_0():
    """max_steps = 1 (a block that runs past the end), and noise so large that the
    minimum is at step 0."""
    t = make_teacher([1.0, 0.5], 6, 5, seed=0)
    for n in (1, 2, 31, 32, 33):
        ref = numpy_reference([1.0, 0.5], np.ones(2), 6, 5, 4, 0.2, n, [1e-3, 1e-3], [0.0, 0.5], [0.0, 0.5])
        sm = summarize_path(t, 0.2, n, [0.0, 0.5], init_strength=1e-3, d_hidden=4)
        np.testing.assert_array_equal(sm.inflection_step, ref["inflection_step"])
        np.testing.assert_allclose(sm.final_value, ref["final_value"], rtol=1e-12)
    assert sm.inflection_step[1] == 0 and sm.inflection_step[0] == 33


def test_relative_rms_noise_against_full_matrix_gd():
    """predict(noise="rms"): exact argmin against full-matrix GD recorded at every step and
    scored with the any-weights formula, the stds taken from the weights by
    `noise_stds(γ, "rms", W1, W2)` (the RMS of each full matrix): independent code paths."""
    t = make_teacher([2.0, 1.0, 0.5, 0.2], 12, 10, seed=2)
    gamma, h, lr, n = 0.6, 8, 0.05, 1200
    p = predict(t, lr, gamma, n, d_hidden=h, noise="rms")
    f = simulate_gd(t, h, lr, np.arange(n + 1), record_weights=True)
    s1, s2 = noise_stds(gamma, "rms", W1=f.W1, W2=f.W2)
    epl = expected_perturbed_loss(f.W1, f.W2, t, s1, s2)
    assert 0 < p.inflection_step < n
    assert p.inflection_step == int(np.argmin(epl))
    np.testing.assert_allclose(p.min_expected_perturbed_loss, epl.min(), rtol=1e-10)
    np.testing.assert_allclose(p.noise_std_at_inflection, [s1[p.inflection_step], s2[p.inflection_step]], rtol=1e-10)
    np.testing.assert_allclose(p.noise_std_at_step_0, [s1[0], s2[0]], rtol=1e-10)


@pytest.mark.parametrize("kind", ["rms", "init"])
def test_relative_noise_phase_diagram_against_monte_carlo(kind):
    """The (γ, step) grid of E[L_pert] for relative noise against Monte Carlo draws on the
    rebuilt aligned weights, with the stds measured from those weights (4 standard errors)."""
    t = make_teacher([1.0, 0.4, 0.1], 8, 6, seed=1)
    h, gammas = 5, np.array([0.5, 2.0])
    pd = phase_diagram(t, 0.2, gammas, 600, n_steps=12, init_strength=1e-3, d_hidden=h, noise=kind)
    cols = [0, pd.steps.size // 2, pd.steps.size - 1]
    W1, W2 = aligned_weights(t, pd.mode_strengths[cols], h)
    for j, g in enumerate(gammas):
        if kind == "rms":
            s1, s2 = noise_stds(g, "rms", W1=W1, W2=W2)
        else:
            W10, W20 = aligned_weights(t, pd.mode_strengths[:1], h)
            stds = (np.sqrt(np.mean(W10**2)), np.sqrt(np.mean(W20**2)))
            s1, s2 = noise_stds(g, "init", init_stds=stds)
            s1, s2 = np.full(len(cols), s1), np.full(len(cols), s2)
        np.testing.assert_allclose(pd.noise_std[j, cols, 0], s1, rtol=1e-12)
        np.testing.assert_allclose(pd.noise_std[j, cols, 1], s2, rtol=1e-12)
        mean, err = monte_carlo_perturbed_loss(W1, W2, t, s1, s2, 4000, seed=j)
        assert np.all(np.abs(pd.expected_perturbed_loss[j, cols] - mean) <= 4 * err)
        np.testing.assert_allclose(pd.expected_perturbed_loss[j, cols], expected_perturbed_loss(W1, W2, t, s1, s2),
                                   rtol=1e-10)


def test_absolute_phase_diagram_unchanged_by_the_noise_option():
    t = make_teacher(power_law_spectrum(6, 1.0, 1.0), 10, 8, seed=0)
    a = phase_diagram(t, 0.3, [0.05, 0.1], 500, n_steps=10)
    b = phase_diagram(t, 0.3, [0.05, 0.1], 500, n_steps=10, noise="absolute")
    np.testing.assert_array_equal(a.expected_perturbed_loss, b.expected_perturbed_loss)
    assert np.all(a.noise_std == np.array([0.05, 0.1])[:, None, None])
    np.testing.assert_array_equal(a.steps, log_steps(500, 10))


def test_zero_noise_is_refused_by_predict():
    t = make_teacher([1.0, 0.5], 6, 5, seed=0)
    with pytest.raises(ValueError, match="no inflection"):
        predict(t, 0.1, 0.0, 100)
    with pytest.raises(ValueError):
        summarize_path(t, 0.1, 100, 0.1, noise="relative")


@pytest.mark.parametrize("block_max", [16, 256])
def test_chunked_sweep_with_progress_equals_one_pass(monkeypatch, block_max):
    """The progress-bar path advances in chunks of whole blocks: with chunks of one block, any
    block size and recorded steps inside blocks, every output equals the single-pass sweep's
    bit for bit (chunk and block boundaries change nothing)."""
    import linear_theory._sweep as sw
    from linear_theory import Teacher, initial_strengths

    t = Teacher(np.eye(7), power_law_spectrum(7, 1.0, 1.2), np.eye(7))
    a0 = initial_strengths(t, 1e-6, 7)
    grid = sw.noise_grid(t, 7, np.array([0.02, 0.05, 0.1]), kind="absolute")
    monkeypatch.setattr(sw, "BLOCK", block_max)
    with jax.enable_x64(True):
        one = sw.sweep(t, 0.3, 3001, a0, grid, 7, record_steps=[0, 5, 17, 1000, 3001], progress=False)
        monkeypatch.setattr(sw, "CHUNK_MODE_STEPS", 1)
        chunked = sw.sweep(t, 0.3, 3001, a0, grid, 7, record_steps=[0, 5, 17, 1000, 3001], progress=True)
    for name in ("min_value", "argmin", "final_value", "first_crossing", "final_strengths", "recorded_strengths",
                 "argmin_strengths"):
        np.testing.assert_array_equal(getattr(chunked, name), getattr(one, name), err_msg=name)
    assert np.all(one.argmin > 0) and np.all(one.first_crossing > 0)
