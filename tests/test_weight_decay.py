"""Weight decay per matrix (`_weight_decay`): the per-mode map against full-matrix GD, the
fixed point against long runs, the closed-form flow against an ODE solver, and the
noise-optimal decay against a numerical argmin of E[L_pert] over the decay."""

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import minimize, minimize_scalar

from linear_theory import expected_perturbed_loss, gd_modes, gradient_flow, make_teacher, simulate_gd
from linear_theory._lambda_balanced import predict_lambda
from linear_theory._weight_decay import (balanced_noise_optimal_weight_decay, decayed_fixed_point,
                                         noise_optimal_weight_decay)


@pytest.fixture(scope="module")
def teacher():
    return make_teacher([1.0, 0.6, 0.3, 0.05], d_in=6, d_out=4, seed=3)


def test_zero_decay_is_the_plain_map(teacher):
    """λ = 0 runs the plain map a ← a(1 + η(s − a))², here written out in numpy (same IEEE
    operations, so equal to the last bit or within a few ulps if the compiler fuses)."""
    steps = np.arange(0, 301, 50)
    got = gd_modes(teacher, 0.3, steps, init_strength=1e-3, weight_decay=0.0).mode_strengths
    a, want = np.full(4, 1e-3), []
    for k in range(301):
        if k % 50 == 0:
            want.append(a.copy())
        a = a * (1.0 + 0.3 * (teacher.s - a)) ** 2
    np.testing.assert_allclose(got, np.array(want), rtol=4e-15, atol=0)


@pytest.mark.parametrize("wd", [0.1, (0.05, 0.2), (0.3, 0.02)])
def test_mode_map_equals_full_gd(teacher, wd):
    """The exact per-mode map (equal λ: s − λ; else the two-factor map) against GD on the
    full matrices from the aligned balanced init: the same iteration in another basis, so
    equal to round-off (rtol 1e-9 over 400 steps of O(1) numbers)."""
    steps = [0, 20, 80, 400]
    m = gd_modes(teacher, 0.3, steps, init_strength=1e-3, d_hidden=4, weight_decay=wd)
    f = simulate_gd(teacher, 4, 0.3, steps, init_strength=1e-3, weight_decay=wd)
    np.testing.assert_allclose(m.mode_strengths, f.mode_strengths, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(m.w1_sq_norm, f.w1_sq_norm, rtol=1e-9)
    np.testing.assert_allclose(m.w2_sq_norm, f.w2_sq_norm, rtol=1e-9)


@pytest.mark.parametrize("wd", [0.1, (0.05, 0.2)])
def test_fixed_point_against_long_run(teacher, wd):
    """a = (s − √(λ1λ2))₊, ‖W1‖² = Σa√(λ2/λ1), ‖W2‖² = Σa√(λ1/λ2): full GD after 20000 steps at
    η = 0.3 (slowest learned mode converges at rate ≈ 2η(s − μ) ≥ 0.06 per step; the mode with
    s < μ decays geometrically to 0)."""
    a, n1, n2 = decayed_fixed_point(teacher, wd)
    mu = np.sqrt(np.prod(np.broadcast_to(wd, 2)))
    np.testing.assert_allclose(a, np.maximum(teacher.s - mu, 0))
    f = simulate_gd(teacher, 4, 0.3, [20000, np.inf], init_strength=1e-3, weight_decay=wd)
    np.testing.assert_allclose(f.mode_strengths[0], f.mode_strengths[1], atol=1e-10)
    np.testing.assert_allclose([f.w1_sq_norm[0], f.w2_sq_norm[0]], [n1.sum(), n2.sum()], rtol=1e-9)


def test_one_sided_decay_has_no_fixed_point(teacher):
    with pytest.raises(ValueError, match="no fixed point"):
        decayed_fixed_point(teacher, (0.1, 0.0))


def test_flow_with_decay_against_ode(teacher):
    """Closed form with s − λ (including the modes with s < λ, which decay) against an
    adaptive ODE solve of da/dt = 2a(s − λ − a) (rtol 1e-11 → agreement to ~1e-9)."""
    lam, a0, T = 0.2, 1e-2, np.array([0.0, 2.0, 10.0, 40.0])
    got = gradient_flow(teacher, T, init_strength=a0, weight_decay=lam).mode_strengths
    sol = solve_ivp(lambda t, a: 2 * a * (teacher.s - lam - a), (0, T[-1]), np.full(4, a0), t_eval=T,
                    rtol=1e-11, atol=1e-14, method="DOP853")
    np.testing.assert_allclose(got, sol.y.T, rtol=1e-8, atol=1e-12)


def _fixed_point_weights(teacher, h, l1, l2):
    """The minimiser of L + (λ1/2)‖W1‖² + (λ2/2)‖W2‖² over the full matrices, by L-BFGS from
    an aligned small init (independent of the mode formulas)."""
    d_in, d_out, A = teacher.d_in, teacher.d_out, teacher.matrix
    n1 = h * d_in
    rng = np.random.default_rng(0)
    x0 = 0.3 * rng.standard_normal(n1 + d_out * h)

    def f(x):
        W1, W2 = x[:n1].reshape(h, d_in), x[n1:].reshape(d_out, h)
        E = W2 @ W1 - A
        val = 0.5 * np.sum(E * E) + 0.5 * l1 * np.sum(W1 * W1) + 0.5 * l2 * np.sum(W2 * W2)
        return val, np.concatenate([(W2.T @ E + l1 * W1).ravel(), (E @ W1.T + l2 * W2).ravel()])

    x = minimize(f, x0, jac=True, method="L-BFGS-B", options=dict(gtol=1e-13, ftol=1e-16, maxiter=20000)).x
    return x[:n1].reshape(h, d_in), x[n1:].reshape(d_out, h)


def test_noise_optimal_decay_is_the_numerical_argmin(teacher):
    """argmin over (λ1, λ2) of E[L_pert] at the regularised minimum, found by Nelder–Mead on
    top of L-BFGS on the full matrices, equals (σ2²d_out, σ1²d_in). E is quadratic in the
    decay near its minimum (curvature ~ number of learned modes ~ 1), so an f-tolerance of
    1e-13 pins the argmin to ~1e-6: rtol 1e-3 on λ ~ 0.05 leaves a wide margin."""
    s1, s2, h = 0.1, 0.08, 4
    want = noise_optimal_weight_decay(teacher, s1, s2)
    np.testing.assert_allclose(want, [s2**2 * 4, s1**2 * 6])

    def E(log_wd):
        W1, W2 = _fixed_point_weights(teacher, h, *np.exp(log_wd))
        return float(expected_perturbed_loss(W1, W2, teacher, s1, s2))

    res = minimize(E, np.log([0.02, 0.1]), method="Nelder-Mead", options=dict(xatol=1e-7, fatol=1e-15))
    np.testing.assert_allclose(np.exp(res.x), want, rtol=1e-3)
    # one λ on both: the balanced optimum s*/2
    one = minimize_scalar(lambda x: E(np.log([x, x])), bounds=(0.01, 0.2), method="bounded",
                          options=dict(xatol=1e-8))
    np.testing.assert_allclose(one.x, balanced_noise_optimal_weight_decay(teacher, s1, s2), rtol=1e-3)


def test_no_turn_at_the_noise_optimal_decay(teacher):
    """GD with the noise-optimal decay is GD on E[L_pert] (up to a constant), so with η below
    the smoothness limit E[L_pert] never rises along the path: the exact path (factor map,
    every step) has no turn beyond round-off, while plain GD has one."""
    s1 = 0.1
    wd = noise_optimal_weight_decay(teacher, s1)
    p = predict_lambda(teacher, 0.3, s1, 3000, 0.0, init_strength=1e-4, d_hidden=4, weight_decay=wd)
    assert abs(p.rise) <= 1e-14 * p.min_expected_perturbed_loss
    plain = predict_lambda(teacher, 0.3, s1, 3000, 0.0, init_strength=1e-4, d_hidden=4)
    assert plain.rise > 1e-4  # s_4 = 0.05 < s* = 0.1: a harmful mode is learned
