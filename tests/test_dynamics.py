"""Learning dynamics: closed form vs ODE vs exact GD map vs full-matrix GD."""

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from linear_theory._closed_form import flow_strengths, gradient_flow, learning_time
from linear_theory._gd_full import init_weights, simulate_gd
from linear_theory._gd_map import gd_modes
from linear_theory._ode import gradient_flow_ode
from linear_theory._schedules import Schedule
from linear_theory._teacher import make_teacher

S = [2.0, 1.5, 1.0, 0.5]


@pytest.fixture(scope="module")
def teacher():
    return make_teacher(S, d_in=12, d_out=9, seed=3)


@pytest.mark.parametrize("variances", [None, [0.5, 2.0, 1.5, 0.8]])
def test_closed_form_matches_ode(variances):
    """Closed form vs an 8th-order adaptive integration of the full matrix flow (rtol 1e-12)."""
    t = make_teacher(S, d_in=12, d_out=9, seed=3, input_variances=variances)
    W1, W2 = init_weights(t, d_hidden=7, init="aligned", init_strength=1e-6, seed=1)
    times = np.array([0.0, 0.5, 2.0, 4.0, 6.0, 9.0, 15.0, 30.0])
    ode = gradient_flow_ode(t, W1, W2, times)
    cf = gradient_flow(t, times, init_strength=1e-6)
    rel = np.abs(ode.mode_strengths - cf.mode_strengths) / np.abs(cf.mode_strengths)
    assert rel.max() < 1e-8
    np.testing.assert_allclose(ode.w1_sq_norm, cf.w1_sq_norm, rtol=1e-8)
    np.testing.assert_allclose(ode.w2_sq_norm, cf.w2_sq_norm, rtol=1e-8)


@pytest.mark.parametrize("variances", [None, [0.5, 2.0, 1.5, 0.8]])
def test_gd_map_matches_full_matrix_gd(variances):
    t = make_teacher(S, d_in=12, d_out=9, seed=3, input_variances=variances)
    steps = [0, 1, 7, 50, 120, 300, 2000]
    for schedule in (Schedule(), Schedule("cosine", total_steps=2000, warmup_steps=20),
                     Schedule("wsd", total_steps=2000, warmup_steps=20)):
        m = gd_modes(t, 0.2, steps, init_strength=1e-6, schedule=schedule)
        f = simulate_gd(t, 6, 0.2, steps, init="aligned", init_strength=1e-6, schedule=schedule)
        rel = np.abs(m.mode_strengths - f.mode_strengths) / np.abs(m.mode_strengths)
        assert rel.max() < 1e-10
        np.testing.assert_allclose(f.loss, m.loss, rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(f.w1_sq_norm, m.w1_sq_norm, rtol=1e-10)


def test_full_gd_converges_to_flow_first_order(teacher):
    """Error of GD at flow time T against the closed form is O(η): log-log slope ≈ 1."""
    T = 6.0
    lrs = np.array([0.08, 0.04, 0.02, 0.01, 0.005])
    errs = []
    for lr in lrs:
        n = int(round(T / lr))
        f = simulate_gd(teacher, 5, float(lr), [n], init="aligned", init_strength=1e-3)
        cf = gradient_flow(teacher, [n * lr], init_strength=1e-3)
        errs.append(np.max(np.abs(f.mode_strengths - cf.mode_strengths)))
    slope = np.polyfit(np.log(lrs), np.log(errs), 1)[0]
    assert abs(slope - 1.0) < 0.05, (slope, errs)


def test_limits_at_zero_and_infinity(teacher):
    a0 = np.array([1e-4, 2e-4, 3e-4, 4e-4])
    for traj in (gradient_flow(teacher, [0, np.inf], a0), gd_modes(teacher, 0.1, [0, np.inf], a0)):
        np.testing.assert_array_equal(traj.mode_strengths[0], a0)
        np.testing.assert_array_equal(traj.mode_strengths[1], teacher.s)
        assert traj.loss[1] == 0.0
    # At t = inf a width-2 network holds the best rank-2 approximation.
    f = simulate_gd(teacher, 2, 0.1, [0, np.inf], init="random", init_std=1e-3)
    np.testing.assert_array_equal(f.mode_strengths[1], [2.0, 1.5, 0.0, 0.0])
    np.testing.assert_allclose(f.loss[1], 0.5 * (1.0**2 + 0.5**2))
    # A long finite run agrees with the fixed point.
    long = gd_modes(teacher, 0.1, [20000])
    np.testing.assert_allclose(long.mode_strengths[0], teacher.s, rtol=1e-12)


def _half_step(a, s):
    """First recorded index where a mode reaches half its target."""
    reached = a >= s / 2
    return np.where(reached.any(0), reached.argmax(0), np.iinfo(int).max)


def test_random_init_learns_in_order_and_tracks_closed_form(teacher):
    lr = 0.02
    steps = np.arange(0, 3001, 5)
    f = simulate_gd(teacher, 10, lr, steps, init="random", init_std=1e-3, seed=[0, 1, 2])
    for a in f.mode_strengths:  # one seed at a time
        half = _half_step(a, teacher.s)
        assert np.all(np.diff(half) > 0), half  # larger s learned first
        # Effective a0 per mode from the measured half-time: t_half = ln(s/a0 − 1)/(2s).
        t_half = steps[half] * lr
        a0_eff = teacher.s / (1.0 + np.exp(2 * teacher.s * t_half))
        cf = gradient_flow(teacher, steps * lr, a0_eff)
        # The sigmoid shape then matches to within a few % of s (GD discretisation,
        # the half-step grid and the early non-aligned transient account for it).
        assert np.max(np.abs(a - cf.mode_strengths) / teacher.s) < 0.1


def test_modes_beyond_width_never_learned(teacher):
    f = simulate_gd(teacher, 2, 0.05, [0, 500, 5000, 20000], init="random", init_std=1e-3, seed=4)
    a = f.mode_strengths
    np.testing.assert_allclose(a[-1, :2], teacher.s[:2], rtol=1e-6)
    assert np.max(np.abs(a[:, 2:])) < 1e-5
    m = gd_modes(teacher, 0.05, [0, 20000], d_hidden=2)
    np.testing.assert_array_equal(m.mode_strengths[:, 2:], 0.0)


def test_width_larger_than_rank_and_unequal_dims():
    t = make_teacher([1.0, 0.3], d_in=3, d_out=7, seed=0)
    f = simulate_gd(t, 11, 0.2, [0, 3000], init="random", init_std=1e-2)
    np.testing.assert_allclose(f.mode_strengths[-1], t.s, rtol=1e-6)
    # What remains is the init's product outside the teacher's modes, which decays only
    # algebraically (da/dt = −2a² for a mode with s = 0): ~ (init_std² · h)² / t.
    assert f.loss[-1] < 1e-6


def test_vmap_over_seeds_and_lrs_matches_single_runs(teacher):
    f = simulate_gd(teacher, 5, [0.05, 0.1], [0, 40, 300], init="random", init_std=1e-2, seed=[0, 1])
    assert f.mode_strengths.shape == (2, 2, 3, 4)
    single = simulate_gd(teacher, 5, 0.1, [0, 40, 300], init="random", init_std=1e-2, seed=1)
    np.testing.assert_allclose(f.mode_strengths[1, 1], single.mode_strengths, rtol=1e-12)


def test_weight_decay_shrinks_fixed_point(teacher):
    """With decay λ the aligned balanced fixed point solves a = s − λ (whitened): mode ODE
    da/dt = 2a(s − a) − 2λa for balanced weights."""
    m = simulate_gd(teacher, 4, 0.1, [30000], weight_decay=0.1)
    np.testing.assert_allclose(m.mode_strengths[0], teacher.s - 0.1, rtol=1e-8)


@settings(max_examples=60, deadline=None)
@given(
    s=st.floats(1e-3, 1e3),
    log_a0=st.floats(-30, 2),
    st_product=st.floats(0, 1e6),
)
def test_closed_form_extreme_inputs_against_mpmath(s, log_a0, st_product):
    """No overflow, NaN or cancellation for s·t up to 1e6 and a0 down to 1e-30:
    compare against 50-digit arithmetic of the textbook formula."""
    a0 = 10.0**log_a0
    t = st_product / s
    got = flow_strengths(s, a0, t)
    mpmath.mp.dps = 50
    S_, A0, T_ = mpmath.mpf(s), mpmath.mpf(a0), mpmath.mpf(t)
    want = S_ / (1 + (S_ / A0 - 1) * mpmath.exp(-2 * S_ * T_))
    assert np.isfinite(got)
    assert abs(got - float(want)) <= 1e-13 * float(want)


def test_learning_time_is_half_point(teacher):
    a0 = 1e-8
    t_half = learning_time(teacher.s, a0)
    a = flow_strengths(teacher.s, a0, t_half)
    np.testing.assert_allclose(a, teacher.s / 2, rtol=1e-12)
    assert np.all(np.diff(t_half) > 0)  # larger s learned first


@settings(max_examples=40, deadline=None)
@given(
    s=st.lists(st.floats(1e-3, 1e3), min_size=1, max_size=5),
    log_a0=st.floats(-30, -1),
    lr_frac=st.floats(0.01, 0.999),
)
def test_gd_map_extreme_inputs_stay_finite_and_converge(s, log_a0, lr_frac):
    """Exact GD map for tiny a0 and rates up to just below the stability limit: finite,
    positive, and at the fixed point once every mode had time to grow (the slowest mode
    needs ≈ ln(s/a0)/(lr s) steps, the last approach ≈ 1/|ln|1 − 2 lr s|| per e-fold)."""
    s = sorted(s, reverse=True)
    t = make_teacher(s, 5, 5, seed=0)
    lr = lr_frac / max(s)
    a0 = min(10.0**log_a0, min(s) / 4)
    contraction = np.abs(1 - 2 * lr * np.array(s))
    settle = np.log(np.array(s) / a0) / (lr * np.array(s)) + 60 / -np.log(np.maximum(contraction, 1e-300))
    n = int(min(settle.max(), 5e6)) + 10
    a = gd_modes(t, lr, [0, 1, n], a0).mode_strengths
    assert np.all(np.isfinite(a)) and np.all(a > 0)
    if settle.max() < 5e6:
        np.testing.assert_allclose(a[-1], s, rtol=1e-8)


@pytest.mark.parametrize("sched", [Schedule(), Schedule("cosine", total_steps=300, warmup_steps=40, final_fraction=0.1),
                                   Schedule("wsd", total_steps=300, warmup_steps=25, decay_fraction=0.3)])
def test_schedule_values_match_stepwise_float64(sched):
    """Schedule.values (one compiled vectorised call) against the schedule called step by step
    with x64 on, as the theory's loops see it; the closed forms at a few steps."""
    import jax

    steps = np.arange(0, 301, 7)
    with jax.enable_x64(True):
        stepwise = np.array([float(sched(np.int64(k))) for k in steps])
    np.testing.assert_allclose(sched.values(steps), stepwise, rtol=1e-14, atol=1e-16)
    if sched.kind == "cosine":  # warmup 40 linear from 0, then 0.1 + 0.9 · ½(1 + cos(π (k − 40)/260))
        k = np.array([20, 40, 170, 300])
        ref = np.where(k < 40, k / 40, 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * (k - 40) / 260)))
        np.testing.assert_allclose(sched.values(k), ref, rtol=1e-13, atol=1e-15)
