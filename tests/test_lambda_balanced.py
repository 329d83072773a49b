"""λ-balanced init, its closed forms (scalar and matrix Riccati with F_λ), NTK, GD from given
weights and the λ-dependent noise prediction, each against an independent computation:
diffrax ODE integration, full-matrix GD, jax.jacobian, the λ = 0 Saxe closed form, the
noise formula on explicit weights."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linear_theory import make_teacher
from linear_theory._closed_form import flow_strengths
from linear_theory._gd_full import init_weights, simulate_gd
from linear_theory._lambda_balanced import (
    lambda_aligned_weights,
    lambda_balanced_init,
    lambda_critical_singular_value,
    lambda_flow_modes,
    lambda_gd_modes,
    lambda_gradient_flow,
    mode_factors,
    predict_lambda,
)
from linear_theory._noise import expected_perturbed_loss
from linear_theory._predict import predict
from linear_theory._riccati import ntk_matrix, riccati_flow


def ode(teacher, W1, W2, times):
    """Gradient flow of ½‖W2W1 − A‖² integrated by scipy's DOP853 (rtol 1e-12, atol 1e-14),
    gradients written out here: independent of the package's solvers. Returns
    (W1, W2) stacked over `times`."""
    from scipy.integrate import solve_ivp

    A, (h, d_in) = teacher.matrix, W1.shape

    def field(_, y):
        w1, w2 = y[: h * d_in].reshape(h, d_in), y[h * d_in:].reshape(-1, h)
        E = w2 @ w1 - A
        return np.concatenate([-(w2.T @ E).ravel(), -(E @ w1.T).ravel()])

    times = np.asarray(times, float)
    sol = solve_ivp(field, (0.0, times.max()), np.concatenate([W1.ravel(), W2.ravel()]), method="DOP853",
                    t_eval=times, rtol=1e-12, atol=1e-14)
    assert sol.success
    y = sol.y.T
    return y[:, : h * d_in].reshape(-1, h, d_in), y[:, h * d_in:].reshape(-1, W2.shape[0], h)


def lam_residual(W1, W2, lam):
    D = W2.T @ W2 - W1 @ W1.T - lam * np.eye(W1.shape[0])
    return np.abs(D).max() / max(1.0, abs(lam), np.abs(W1).max() ** 2, np.abs(W2).max() ** 2)


# ---------------------------------------------------------------- init and dimension rules


@pytest.mark.parametrize("d_in, h, d_out, lam", [
    (7, 5, 6, 0.8), (7, 5, 6, -0.8), (7, 9, 6, 0.0), (4, 9, 3, 0.0), (3, 5, 8, 0.5), (8, 5, 3, -0.5),
])
@pytest.mark.parametrize("init", ["aligned", "random"])
def test_init_is_lambda_balanced(d_in, h, d_out, lam, init):
    t = make_teacher([2.0, 1.0, 0.4], d_in, d_out, seed=1)
    W1, W2 = lambda_balanced_init(t, h, lam, init, init_strength=1e-3, init_std=0.3, seed=2)
    assert W1.shape == (h, d_in) and W2.shape == (d_out, h)
    assert lam_residual(W1, W2, lam) < 1e-13  # a few ulps of the largest entry squared
    if init == "aligned":  # every mode within the width at a0, the idle units invisible in W2W1
        k = min(h, 3)
        a = np.einsum("oj,oi,ij->j", t.U, W2 @ W1, t.V)
        np.testing.assert_allclose(a[:k], 1e-3, rtol=1e-12)
        np.testing.assert_allclose(W2 @ W1, (t.U[:, :k] * a[:k]) @ t.V[:, :k].T, atol=1e-15)


@pytest.mark.parametrize("d_in, h, d_out, lam, side", [(7, 7, 6, 0.1, "d_out"), (5, 6, 8, -0.1, "d_in")])
def test_dimension_rules_refused(d_in, h, d_out, lam, side):
    t = make_teacher([1.0], d_in, d_out, seed=0)
    with pytest.raises(ValueError, match=side):
        lambda_balanced_init(t, h, lam)


def test_mode_factors_exact_and_stable():
    a = np.array([0.0, 1e-300, 1e-8, 1.0, 3.0])
    for lam in (-5.0, 0.0, 1e-12, 2.0, 1e8):
        b1, b2 = mode_factors(a, lam)
        np.testing.assert_allclose(b1 * b2, a, rtol=1e-14, atol=0)
        np.testing.assert_allclose(b2**2 - b1**2, lam, rtol=1e-12, atol=1e-15 * max(1, a.max() ** 2))
        assert np.all(np.isfinite(b1)) and np.all(b1 >= 0) and np.all(b2 >= 0)


# ---------------------------------------------------------------- scalar closed form


@pytest.mark.parametrize("lam", [-1.5, 0.0, 0.5, 4.0])
def test_scalar_closed_form_matches_ode(lam):
    """Closed-form a, ‖W1‖², ‖W2‖² and the rebuilt weights vs the ODE on the full matrices
    (ODE tolerance rtol 1e-12: agreement to 1e-9 leaves a 1000× margin)."""
    t = make_teacher([2.0, 1.0, 0.4, 0.1], d_in=7, d_out=6, seed=4)
    h = 6  # two idle units: on W2 for λ > 0, on W1 for λ < 0
    W1, W2 = lambda_balanced_init(t, h, lam, "aligned", init_strength=1e-3, seed=3)
    times = np.array([0.0, 0.5, 2.0, 6.0, 20.0])
    cf = lambda_gradient_flow(t, times, lam, 1e-3, h, seed=3)
    O1, O2 = ode(t, W1, W2, times)
    np.testing.assert_allclose(cf.mode_strengths, np.einsum("oj,toi,ij->tj", t.U, O2 @ O1, t.V), rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(cf.w1_sq_norm, (O1**2).sum((1, 2)), rtol=1e-9)
    np.testing.assert_allclose(cf.w2_sq_norm, (O2**2).sum((1, 2)), rtol=1e-9)
    np.testing.assert_allclose(cf.W1, O1, atol=1e-9)
    np.testing.assert_allclose(cf.W2, O2, atol=1e-9)


def test_scalar_closed_form_lambda_zero_is_saxe_and_large_times_are_finite():
    s, a0 = np.array([3.0, 1.0, 0.01]), np.array([1e-12, 1e-6, 1e-3])
    t = np.array([[0.0], [1.0], [10.0], [1e3], [1e6], [np.inf]])
    a, b1sq, b2sq = lambda_flow_modes(s, a0, 0.0, t)
    np.testing.assert_allclose(a, flow_strengths(s, a0, t), rtol=1e-13)
    np.testing.assert_allclose(b1sq, a, rtol=1e-13)
    a_lam, _, _ = lambda_flow_modes(s, a0, 1e-9, t)  # continuous in λ
    assert np.all(np.isfinite(a_lam))
    np.testing.assert_allclose(a_lam[-1], s, rtol=1e-14)
    # ... and the fixed point for every λ: a → s, b2² − b1² = λ kept.
    for lam in (-3.0, 0.7, 50.0):
        a, b1sq, b2sq = lambda_flow_modes(s, a0, lam, np.inf)
        np.testing.assert_allclose(a, s, rtol=1e-13)
        np.testing.assert_allclose(b2sq - b1sq, lam, rtol=1e-12)


# ---------------------------------------------------------------- matrix Riccati with F_λ


@pytest.mark.parametrize("d_in, h, d_out, lam, std", [
    (7, 5, 6, 0.8, 0.3),      # λ > 0, h ≤ d_out
    (6, 5, 8, -1.2, 0.3),     # λ < 0, h ≤ d_in < d_out
    (4, 6, 3, 0.0, 1e-3),     # balanced, h above both dims (rank-deficient Q)
    (8, 5, 3, -0.4, 0.5),     # λ < 0 with h > d_out: W2ᵀW2 singular
])
def test_riccati_matches_ode(d_in, h, d_out, lam, std):
    t = make_teacher([2.0, 1.0, 0.4], d_in, d_out, seed=5)
    W1, W2 = lambda_balanced_init(t, h, lam, "random", init_std=std, seed=7)
    times = np.array([0.0, 0.3, 1.0, 4.0, 15.0])
    sol = riccati_flow(t, W1, W2, times)
    O1, O2 = ode(t, W1, W2, times)
    assert sol.lam == pytest.approx(lam, abs=1e-12)
    scale = max(1.0, abs(lam))
    np.testing.assert_allclose(sol.network_map, O2 @ O1, atol=1e-9 * scale)
    np.testing.assert_allclose(sol.w1_gram, np.swapaxes(O1, 1, 2) @ O1, atol=1e-9 * scale)
    np.testing.assert_allclose(sol.w2_gram, O2 @ np.swapaxes(O2, 1, 2), atol=1e-9 * scale)
    loss = 0.5 * ((O2 @ O1 - t.matrix) ** 2).sum((1, 2))
    np.testing.assert_allclose(sol.trajectory.loss, loss, rtol=1e-8, atol=1e-14)


def test_riccati_degenerate_cases_have_no_nan():
    t = make_teacher([2.0, 1.0], 5, 4, seed=0)
    zero = riccati_flow(t, np.zeros((3, 5)), np.zeros((4, 3)), [0.0, 1.0, 100.0])  # exact balance at 0
    assert np.all(zero.network_map == 0)
    # λ > 0 with W1 = 0: only W2 = √λ O; the flow must still learn (db1/dt = b2 s ≠ 0).
    W1, W2 = lambda_aligned_weights(t, np.zeros(2), np.sqrt([0.5, 0.5]), 2, 0.5)
    sol = riccati_flow(t, W1, W2, [0.0, 2.0, 1e4])
    O1, O2 = ode(t, W1, W2, [0.0, 2.0])
    np.testing.assert_allclose(sol.network_map[:2], O2 @ O1, atol=1e-10)
    np.testing.assert_allclose(sol.network_map[-1], t.matrix, atol=1e-12)  # converged, finite


def test_riccati_long_times_reach_best_rank_h_and_match_composition():
    """t up to 5000 (s·t = 1e4): the map must be the best rank-h approximation; one solve per
    gap agrees with many short ones (MAX_GROWTH = 1, the old regime) to 1e-12."""
    import linear_theory._riccati as ric

    t = make_teacher([2.0, 1.0, 0.3, 0.05], 6, 5, seed=2)
    W1, W2 = lambda_balanced_init(t, 3, 0.0, "random", init_std=1e-4, seed=1)
    sol = riccati_flow(t, W1, W2, [50.0, 5000.0])
    best = (t.U[:, :3] * t.s[:3]) @ t.V[:, :3].T
    np.testing.assert_allclose(sol.network_map[-1], best, atol=1e-12)
    old = ric.MAX_GROWTH
    try:
        ric.MAX_GROWTH = 1.0
        short = riccati_flow(t, W1, W2, [50.0])
    finally:
        ric.MAX_GROWTH = old
    np.testing.assert_allclose(sol.network_map[0], short.network_map[0], atol=1e-12)


def test_ntk_against_jacobian_and_lazy_vs_rich():
    t = make_teacher([2.0, 1.0, 0.4], 4, 3, seed=1)
    W1, W2 = lambda_balanced_init(t, 3, 0.6, "random", init_std=0.4, seed=0)
    sol = riccati_flow(t, W1, W2, [0.0, 2.0])
    O1, O2 = ode(t, W1, W2, [2.0])

    def vec_map(w1, w2):
        return (w2 @ w1).reshape(-1)  # row-major vec

    with jax.enable_x64(True):
        J1, J2 = jax.jacobian(vec_map, argnums=(0, 1))(jnp.asarray(O1[0]), jnp.asarray(O2[0]))
        J = np.concatenate([np.asarray(J1).reshape(12, -1), np.asarray(J2).reshape(12, -1)], axis=1)
    theta = J @ J.T
    np.testing.assert_allclose(sol.ntk_matrix(1), theta, atol=1e-10)
    np.testing.assert_allclose(sol.ntk_trace[1], np.trace(theta), rtol=1e-10)
    full = [ntk_matrix(sol.w1_gram[k], sol.w2_gram[k]) for k in range(2)]
    np.testing.assert_allclose(sol.ntk_change[1], np.linalg.norm(full[1] - full[0]) / np.linalg.norm(full[0]),
                               rtol=1e-10)
    # Rich (λ = 0, small init) vs lazy (λ = 50): the kernel moves O(1) vs ≲ s/λ.
    changes = {}
    for lam in (0.0, 50.0):
        Wa, Wb = lambda_balanced_init(t, 3, lam, "aligned", init_strength=1e-4, seed=0)
        changes[lam] = riccati_flow(t, Wa, Wb, [0.0, 20.0]).ntk_change[-1]
    assert changes[0.0] > 0.5 and changes[50.0] < 0.05


# ---------------------------------------------------------------- GD


def test_simulate_gd_from_given_weights_equals_builtin_init():
    t = make_teacher([2.0, 1.0], 5, 4, seed=0)
    ref = simulate_gd(t, 3, 0.1, [0, 10, 50], init="random", init_std=0.1, seed=[1, 2])
    W = [init_weights(t, 3, "random", init_std=0.1, seed=s) for s in (1, 2)]
    got = simulate_gd(t, 3, 0.1, [0, 10, 50], W1=np.stack([w[0] for w in W]), W2=np.stack([w[1] for w in W]))
    np.testing.assert_array_equal(got.mode_strengths, ref.mode_strengths)
    with pytest.raises(ValueError, match="W1 must be"):
        simulate_gd(t, 3, 0.1, [0, 10], W1=W[0][0].T, W2=W[0][1])
    with pytest.raises(ValueError, match="inf"):
        simulate_gd(t, 3, 0.1, [0, np.inf], W1=W[0][0], W2=W[0][1])


@pytest.mark.parametrize("lam", [-2.0, 0.0, 3.0])
def test_lambda_mode_map_equals_full_matrix_gd(lam):
    """The per-mode map on (b1, b2) is exact for aligned λ-balanced weights: equal to full
    GD up to round-off accumulated over the steps."""
    t = make_teacher([2.0, 1.0, 0.4, 0.1], d_in=7, d_out=6, seed=4)
    h, lr, steps = 6, 0.04, [0, 5, 50, 400]
    W1, W2 = lambda_balanced_init(t, h, lam, "aligned", init_strength=1e-3, seed=1)
    full = simulate_gd(t, h, lr, steps, W1=W1, W2=W2)
    modes = lambda_gd_modes(t, lr, steps, lam, 1e-3, h)
    np.testing.assert_allclose(modes.mode_strengths, full.mode_strengths, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(modes.w1_sq_norm, full.w1_sq_norm, rtol=1e-10)
    np.testing.assert_allclose(modes.w2_sq_norm, full.w2_sq_norm, rtol=1e-10)


def test_small_lr_gd_converges_to_the_flow_at_first_order():
    """Full-matrix GD at lr and lr/2 against the closed-form flow at the same flow time:
    GD's error is O(lr), so halving lr must halve it (ratio 2 within 10%)."""
    t = make_teacher([2.0, 1.0], 4, 5, seed=0)
    lam, T = 1.5, 3.0
    W1, W2 = lambda_balanced_init(t, 4, lam, "aligned", init_strength=1e-2, seed=0)
    flow = lambda_gradient_flow(t, [T], lam, 1e-2, 4).mode_strengths[0]
    errs = []
    for lr in (4e-3, 2e-3):
        gd = simulate_gd(t, 4, lr, [int(round(T / lr))], W1=W1, W2=W2).mode_strengths[0]
        errs.append(np.abs(gd - flow).max())
    assert errs[1] < 1e-2 and 1.8 < errs[0] / errs[1] < 2.2


# ---------------------------------------------------------------- noise


def test_lambda_threshold_against_the_noise_formula_on_weights():
    """Harmful iff s < √(s*(s* − |λ|)): the exact noise formula on explicit weights with
    the mode at 0 and at s (one mode, no idle units), just above and below the threshold."""
    sigma, d_in, d_out = 0.1, 6, 5
    s_star = sigma**2 * (d_in + d_out)
    for lam in (-0.05, 0.0, 0.04):
        s_c = float(lambda_critical_singular_value(s_star, lam))
        for s, harmful in ((s_c * 0.99, True), (s_c * 1.01, False)):
            t = make_teacher([s], d_in, d_out, seed=0)
            e = []
            for a in (0.0, s):
                b1, b2 = mode_factors(np.array([a]), lam)
                W1, W2 = lambda_aligned_weights(t, b1, b2, 1, lam)
                e.append(float(expected_perturbed_loss(W1, W2, t, sigma)))
            assert (e[1] > e[0]) == harmful
    assert lambda_critical_singular_value(s_star, 2 * s_star) == 0.0


def test_predict_lambda_against_full_gd_weights():
    """E[L_pert] along the exact per-mode path vs the noise formula on full-matrix GD
    weights at every step; λ = 0 gives the balanced `predict` inflection."""
    t = make_teacher([2.0, 1.0, 0.3, 0.1], d_in=7, d_out=6, seed=1)
    h, lr, n, sigma = 6, 0.05, 300, 0.08
    for lam in (0.7, -0.3):
        W1, W2 = lambda_balanced_init(t, h, lam, "aligned", init_strength=1e-4, seed=0)
        gd = simulate_gd(t, h, lr, np.arange(n + 1), W1=W1, W2=W2, record_weights=True)
        epl = expected_perturbed_loss(gd.W1, gd.W2, t, sigma)
        p = predict_lambda(t, lr, sigma, n, lam, 1e-4, h)
        assert p.inflection_step == int(np.argmin(epl))
        assert p.min_expected_perturbed_loss == pytest.approx(epl.min(), rel=1e-10)
        assert p.expected_perturbed_loss_at_max_steps == pytest.approx(epl[-1], rel=1e-10)
    p0 = predict_lambda(t, lr, sigma, 2000, 0.0, 1e-4, h)
    ref = predict(t, lr, sigma, 2000, 1e-4, h)
    assert p0.inflection_step == ref.inflection_step
    assert p0.min_expected_perturbed_loss == pytest.approx(ref.min_expected_perturbed_loss, rel=1e-10)


# ---------------------------------------------------------------- command line


def test_cli_lambda(run_cli):
    base = ["simulate", "--d-in", "7", "--d-hidden", "6", "--d-out", "6", "--singular-values", "2,1,0.5",
            "--init", "lambda-balanced", "--lambda", "1.5", "--checkpoints", "0,20,200", "--lr", "0.05", "--json"]
    out = {}
    for m in ("gd", "modes", "flow"):
        code, stdout, _ = run_cli(base + ["--method", m])
        assert code == 0
        out[m] = json.loads(stdout)
    np.testing.assert_allclose(out["gd"]["mode_strengths"], out["modes"]["mode_strengths"], rtol=1e-10)
    assert out["gd"]["lambda"] == 1.5
    code, _, err = run_cli(base[:3] + ["--d-hidden", "7"] + base[5:])  # h = 7 > d_out = 6 with λ > 0
    assert code == 2 and "d_out" in err and err.count("\n") == 1
    code, _, err = run_cli(["simulate", "--lambda", "1"])
    assert code == 2 and "lambda-balanced" in err
    # default sizes d_in 24, h 20, d_out 16: λ < 0 is possible, λ > 0 is not
    code, stdout, _ = run_cli(["predict", "--lambda", "-0.05", "--sigma", "0.05", "--max-steps", "500", "--json"])
    p = json.loads(stdout)
    assert code == 0 and p["lambda"] == -0.05
    assert p["lambda_critical_singular_value"] == pytest.approx(np.sqrt(p["critical_singular_value"]
                                                                        * (p["critical_singular_value"] - 0.05)))
