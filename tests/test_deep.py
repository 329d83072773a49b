"""Deep linear chains W_N⋯W_1: per-mode map vs full-matrix GD, flow vs an ODE of the full
matrices, the noise recursion vs a sympy brute-force expectation, vs Monte Carlo and vs the
two-layer formula, the critical singular value vs explicit weights."""

import json

import numpy as np
import pytest

from linear_theory import make_teacher
from linear_theory._closed_form import flow_strengths
from linear_theory._deep import (
    deep_aligned_weights,
    deep_critical_singular_value,
    deep_expected_perturbed_loss,
    deep_flow_strengths,
    deep_gd_modes,
    deep_init,
    deep_modal_sensitivity,
    deep_monte_carlo_perturbed_loss,
    predict_deep,
    simulate_deep_gd,
    symbolic_deep_expected_loss,
)
from linear_theory._noise import expected_perturbed_loss
from linear_theory._predict import predict


@pytest.mark.parametrize("depth, h, variances", [(3, 4, None), (4, 2, None), (3, 5, [2.0, 1.0, 0.5])])
def test_mode_map_equals_full_matrix_gd(depth, h, variances):
    """Aligned balanced layers stay aligned and balanced under GD, so the per-mode map is
    exact: equal up to round-off accumulated over 2000 steps."""
    t = make_teacher([2.0, 1.0, 0.3], 5, 4, seed=0, input_variances=variances)
    steps = [0, 10, 300, 2000]
    run = simulate_deep_gd(t, depth, h, 0.04, steps, init_strength=1e-2)
    modes = deep_gd_modes(t, 0.04, steps, depth, 1e-2, h)
    np.testing.assert_allclose(run.trajectory.mode_strengths, modes.mode_strengths, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(run.layer_sq_norms, np.repeat(modes.w1_sq_norm[:, None], depth, 1), rtol=1e-10)
    np.testing.assert_allclose(run.trajectory.loss, modes.loss, rtol=1e-9, atol=1e-20)


def test_flow_matches_full_matrix_ode_and_saxe():
    """a(t) from the implicit closed form vs scipy DOP853 on all N = 3 layers (rtol 1e-12:
    1e-8 leaves the bisection and hyp2f1 room); N = 2 is Saxe's logistic."""
    from scipy.integrate import solve_ivp

    t = make_teacher([2.0, 1.0, 0.3], 4, 3, seed=1)
    depth, h, a0 = 3, 3, 1e-3
    Ws = deep_init(t, h, depth, "aligned", a0, seed=2)
    shapes = [W.shape for W in Ws]
    sizes = np.cumsum([0] + [W.size for W in Ws])

    def field(_, y):
        L = [y[sizes[k]:sizes[k + 1]].reshape(shapes[k]) for k in range(depth)]
        E = L[2] @ L[1] @ L[0] - t.matrix
        g = [(L[2] @ L[1]).T @ E, L[2].T @ E @ L[0].T, E @ (L[1] @ L[0]).T]
        return -np.concatenate([x.ravel() for x in g])

    times = np.array([0.0, 2.0, 10.0, 40.0, 200.0])
    sol = solve_ivp(field, (0, times[-1]), np.concatenate([W.ravel() for W in Ws]), method="DOP853",
                    t_eval=times, rtol=1e-12, atol=1e-15)
    a_ode = []
    for y in sol.y.T:
        L = [y[sizes[k]:sizes[k + 1]].reshape(shapes[k]) for k in range(depth)]
        a_ode.append(np.einsum("oj,oi,ij->j", t.U, L[2] @ L[1] @ L[0], t.V))
    a = deep_flow_strengths(t.s, a0, times[:, None], depth)
    np.testing.assert_allclose(a, np.array(a_ode), rtol=1e-8)
    s, tt = np.array([3.0, 0.5]), np.array([[0.0], [1.0], [10.0], [100.0]])
    np.testing.assert_allclose(deep_flow_strengths(s, 1e-6, tt, 2), flow_strengths(s, 1e-6, tt), rtol=1e-12)


def test_noise_recursion_equals_sympy_expectation():
    """The brute-force sympy expectation (polynomial in the noise, Gaussian moments) and the
    recursion agree at random real points (a polynomial identity: equality at random points
    fails with probability 0 if the polynomials differ)."""
    import sympy as sp

    sizes = [2, 2, 1, 2]  # d_in, h, h, d_out for N = 3 (a width-1 middle layer)
    expr, Ws, A, sig = symbolic_deep_expected_loss(3, sizes)
    f = sp.lambdify([*(w for W in Ws for w in W), *A, *sig], expr)
    rng = np.random.default_rng(0)
    for _ in range(3):
        Wn = [rng.standard_normal(W.shape) for W in Ws]
        An, sn = rng.standard_normal(A.shape), rng.uniform(0.1, 1.0, 3)
        sym = f(*np.concatenate([W.ravel() for W in Wn]), *An.ravel(), *sn)
        num = _recursion_with_matrix(Wn, An, sn)
        assert num == pytest.approx(sym, rel=1e-12)


def _recursion_with_matrix(Ws, A, sig):
    """deep_expected_perturbed_loss for an arbitrary matrix A (whitened)."""

    class Fixed:  # the recursion reads only .matrix and .input_variances
        matrix = A
        input_variances = None

    return float(deep_expected_perturbed_loss(Ws, Fixed, sig))


def test_noise_recursion_depth_two_is_the_two_layer_formula():
    t = make_teacher([2.0, 0.5], 6, 4, seed=3)
    rng = np.random.default_rng(1)
    W1, W2 = rng.standard_normal((3, 5, 6)), rng.standard_normal((3, 4, 5))
    np.testing.assert_allclose(deep_expected_perturbed_loss([W1, W2], t, [0.3, 0.2]),
                               expected_perturbed_loss(W1, W2, t, 0.3, 0.2), rtol=1e-13)


@pytest.mark.parametrize("depth", [3, 4])
def test_noise_recursion_matches_monte_carlo(depth):
    """4000 draws; the exact value must lie within 4 standard errors of the MC mean."""
    t = make_teacher([1.5, 0.7], 5, 4, seed=2)
    Ws = deep_init(t, 3, depth, "random", init_std=0.6, seed=depth)
    exact = deep_expected_perturbed_loss(Ws, t, 0.2)
    mean, err = deep_monte_carlo_perturbed_loss(Ws, t, 0.2, 4000, seed=7)
    assert abs(exact - mean) < 4 * err
    assert exact - float(deep_expected_perturbed_loss(Ws, t, 0.0)) > 10 * err  # the noise term is resolved


@pytest.mark.parametrize("h, variances", [(2, None), (5, None), (4, [2.0, 0.5, 1.5])])
def test_modal_sensitivity_equals_matrix_recursion(h, variances):
    t = make_teacher([2.0, 1.0, 0.3], 6, 4, seed=0, input_variances=variances)
    a = np.array([[0.0, 0.0, 0.0], [1.5, 0.2, 0.01], [2.0, 1.0, 0.3]])
    for depth in (2, 3, 5):
        Ws = deep_aligned_weights(t, a ** (1 / depth), h, depth, seed=1)
        k = min(h, 3)
        a_h = np.where(np.arange(3) < k, a, 0.0)
        loss = 0.5 * np.sum(t.variances * (a_h - t.targets) ** 2, axis=-1)
        np.testing.assert_allclose(loss + deep_modal_sensitivity(t, a, depth, h, [0.1] * (depth - 1) + [0.2]),
                                   deep_expected_perturbed_loss(Ws, t, [0.1] * (depth - 1) + [0.2]), rtol=1e-12)


@pytest.mark.parametrize("depth", [2, 3, 4])
def test_critical_singular_value_against_explicit_weights(depth):
    d_in, d_out, h, sigma = 5, 4, 3, 0.15
    s_c, first = deep_critical_singular_value(d_in, d_out, h, depth, sigma)
    if depth == 2:
        assert s_c == pytest.approx(sigma**2 * (d_in + d_out), rel=1e-12)
    for s, harmful in ((0.99 * s_c, True), (1.01 * s_c, False)):
        t = make_teacher([s], d_in, d_out, seed=0)
        e = [float(deep_expected_perturbed_loss(deep_aligned_weights(t, np.array([a ** (1 / depth)]), h, depth),
                                                t, sigma)) for a in (0.0, s)]
        assert (e[1] > e[0]) == harmful
    # homogeneity (module doc): s*_N = κ σ^N exactly, with the first-order value below it
    kappas = [deep_critical_singular_value(d_in, d_out, h, depth, sg)[0] / sg**depth for sg in (1e-3, 0.15, 2.0)]
    np.testing.assert_allclose(kappas, kappas[0], rtol=1e-9)
    assert s_c >= first * (1 - 1e-12)


def test_predict_deep_against_full_gd():
    t = make_teacher([2.0, 1.0, 0.3, 0.1], 6, 5, seed=1)
    depth, h, lr, n, sigma = 3, 4, 0.05, 300, 0.12
    run = simulate_deep_gd(t, depth, h, lr, np.arange(n + 1), init_strength=1e-2)
    epl = deep_expected_perturbed_loss(run.weights, t, sigma)
    p = predict_deep(t, lr, sigma, n, depth, 1e-2, h)
    assert p.inflection_step == int(np.argmin(epl))
    assert p.min_expected_perturbed_loss == pytest.approx(epl.min(), rel=1e-10)
    assert p.expected_perturbed_loss_at_max_steps == pytest.approx(epl[-1], rel=1e-10)
    p2, ref = predict_deep(t, lr, sigma, 1000, 2, 1e-4, h), predict(t, lr, sigma, 1000, 1e-4, h)
    assert p2.inflection_step == ref.inflection_step
    assert p2.min_expected_perturbed_loss == pytest.approx(ref.min_expected_perturbed_loss, rel=1e-10)


def test_cli_depth(run_cli):
    base = ["simulate", "--d-in", "6", "--d-hidden", "4", "--d-out", "5", "--singular-values", "2,1,0.5",
            "--depth", "3", "--init-strength", "1e-2", "--checkpoints", "0,50,500", "--lr", "0.05",
            "--sigma", "0.1", "--mc-samples", "64", "--json"]
    out = {}
    for m in ("gd", "modes", "flow"):
        code, stdout, err = run_cli(base + ["--method", m])
        assert code == 0, err
        out[m] = json.loads(stdout)
    np.testing.assert_allclose(out["gd"]["mode_strengths"], out["modes"]["mode_strengths"], rtol=1e-10)
    np.testing.assert_allclose(out["gd"]["expected_perturbed_loss"], out["modes"]["expected_perturbed_loss"],
                               rtol=1e-10)
    assert out["gd"]["depth"] == 3
    code, _, err = run_cli(["simulate", "--depth", "1"])
    assert code == 2 and err.count("\n") == 1
    code, stdout, _ = run_cli(["predict", "--depth", "3", "--sigma", "0.1", "--max-steps", "2000", "--json"])
    p = json.loads(stdout)
    assert code == 0 and p["depth"] == 3 and p["critical_singular_value"] > 0
