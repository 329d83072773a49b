"""Gaussian weight noise: exact expectation vs Monte Carlo and exact enumeration, Hessian
trace vs jax.hessian and Hutchinson, relative noise, s* and the per-mode optimum."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linear_theory._gd_full import init_weights, simulate_gd
from linear_theory import (
    critical_singular_value,
    expected_perturbed_loss,
    harmful_modes,
    hessian_trace,
    hutchinson_hessian_trace,
    modal_expected_perturbed_loss,
    monte_carlo_perturbed_loss,
    noise_stds,
    noisy_optimum,
    rise_bound_terms,
    sensitivity,
    sensitivity_from_norms,
)
from linear_theory._teacher import make_teacher, random_orthonormal


def _loss(W1, W2, teacher):
    """½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ), written independently of the package."""
    E = W2 @ W1 - teacher.matrix
    return 0.5 * np.einsum("...ij,jk,...ik->...", E, teacher.input_covariance, E)


def _random_weights(rng, batch, h, d_in, d_out, scale=0.7):
    return scale * rng.standard_normal(batch + (h, d_in)), scale * rng.standard_normal(batch + (d_out, h))


# ---------------------------------------------------------------- exact expectation


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 2),
    d_in=st.integers(1, 3),
    d_out=st.integers(1, 3),
    codiagonal=st.booleans(),
    sigmas=st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 2.0)),
    seed=st.integers(0, 2**16),
)
def test_expectation_equals_exact_enumeration(h, d_in, d_out, codiagonal, sigmas, seed):
    """The perturbed loss has degree ≤ 2 in each noise entry (each entry of the perturbed
    map is multilinear in them), so its Gaussian mean equals its mean over ±1 entries:
    an exact average over all 2^n sign vectors, independent of the formula."""
    rng = np.random.default_rng(seed)
    variances = rng.uniform(0.2, 3.0, 1) if codiagonal else None
    teacher = make_teacher([rng.uniform(0.1, 3.0)], d_in, d_out, seed=seed, input_variances=variances)
    W1, W2 = _random_weights(rng, (), h, d_in, d_out)
    s1, s2 = sigmas
    n1, n2 = h * d_in, d_out * h
    signs = np.array(list(itertools.product((-1.0, 1.0), repeat=n1 + n2)))
    Z1 = signs[:, :n1].reshape(-1, h, d_in)
    Z2 = signs[:, n1:].reshape(-1, d_out, h)
    exact = _loss(W1 + s1 * Z1, W2 + s2 * Z2, teacher).mean()
    assert expected_perturbed_loss(W1, W2, teacher, s1, s2) == pytest.approx(exact, rel=1e-10, abs=1e-12)


def test_zero_noise_gives_the_loss(rng):
    teacher = make_teacher([2.0, 0.5], 5, 4, seed=0, input_variances=[1.5, 0.4])
    W1, W2 = _random_weights(rng, (3,), 6, 5, 4)
    np.testing.assert_allclose(expected_perturbed_loss(W1, W2, teacher, 0.0), _loss(W1, W2, teacher), rtol=1e-13)
    np.testing.assert_array_equal(sensitivity(W1, W2, 0.0, teacher=teacher), 0.0)


def test_per_entry_sigmas_broadcast_over_batch(rng):
    """Array σ's are applied entry by entry across the batch axes."""
    teacher = make_teacher([1.0], 3, 2, seed=1)
    W1, W2 = _random_weights(rng, (4,), 2, 3, 2)
    sig1 = np.array([0.0, 0.1, 0.2, 0.3])
    batched = expected_perturbed_loss(W1, W2, teacher, sig1, 0.5)
    one_by_one = [expected_perturbed_loss(W1[k], W2[k], teacher, sig1[k], 0.5) for k in range(4)]
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-14)


# ---------------------------------------------------------------- Monte Carlo


@pytest.mark.parametrize(
    "batch, h, d_in, d_out, variances, sigmas",
    [
        ((), 3, 5, 4, None, (0.3, 0.1)),
        ((2,), 6, 4, 3, [2.0, 0.5], (0.05, 0.4)),
        ((2, 3), 1, 2, 7, [0.3], (0.5, 0.2)),
    ],
)
def test_monte_carlo_agrees_with_exact(rng, batch, h, d_in, d_out, variances, sigmas):
    """Within 4 standard errors (two-sided normal tail ≈ 6e-5 per entry; fixed seed)."""
    r = 1 if variances is None else len(variances)
    teacher = make_teacher(np.linspace(2.0, 0.5, r), d_in, d_out, seed=2, input_variances=variances)
    W1, W2 = _random_weights(rng, batch, h, d_in, d_out)
    mean, se = monte_carlo_perturbed_loss(W1, W2, teacher, *sigmas, n_draws=4000, seed=7)
    exact = expected_perturbed_loss(W1, W2, teacher, *sigmas)
    assert mean.shape == se.shape == batch
    assert np.all(se > 0)
    assert np.all(np.abs(mean - exact) < 4 * se)


def test_monte_carlo_seed_and_key(rng):
    """An int seed and the key it names give the same draws; draw k does not depend on
    n_draws; zero noise gives the loss with zero spread."""
    teacher = make_teacher([2.0], 5, 4, seed=2)
    W1, W2 = _random_weights(rng, (), 3, 5, 4)
    a = monte_carlo_perturbed_loss(W1, W2, teacher, 0.2, n_draws=900, seed=3)
    b = monte_carlo_perturbed_loss(W1, W2, teacher, 0.2, n_draws=900, seed=jax.random.key(3))
    c = monte_carlo_perturbed_loss(W1, W2, teacher, 0.2, n_draws=900, seed=4)
    assert a[0] == b[0] and a[0] != c[0]
    m0, se0 = monte_carlo_perturbed_loss(W1, W2, teacher, 0.0, n_draws=1000)
    assert m0 == pytest.approx(_loss(W1, W2, teacher), rel=1e-13) and se0 < 1e-14


# ---------------------------------------------------------------- Hessian trace


def _exact_hessians(W1, W2, teacher):
    """Full Hessians of L in (vec W1, vec W2) by jax.hessian, float64; batch (B, h, d_in)."""
    B, h, d_in = W1.shape

    def loss(w):
        w1 = w[: h * d_in].reshape(h, d_in)
        w2 = w[h * d_in :].reshape(-1, h)
        E = w2 @ w1 - teacher.matrix
        return 0.5 * jnp.trace(E @ teacher.input_covariance @ E.T)

    with jax.enable_x64(True):
        w = jnp.concatenate([W1.reshape(B, -1), W2.reshape(B, -1)], axis=1)
        return np.asarray(jax.jit(jax.vmap(jax.hessian(loss)))(w))


@pytest.mark.parametrize("variances", [None, [2.5, 0.3]])
def test_hessian_trace_formula_and_hutchinson(rng, variances):
    """tr(H) by formula = trace of the jax.hessian matrix; Hutchinson (batched weights)
    within 5 of its exact standard errors, Var(vᵀHv) = 2 Σ_{i≠j} H_ij² for Rademacher v."""
    teacher = make_teacher([1.5, 0.7], 3, 2, seed=5, input_variances=variances)
    W1, W2 = _random_weights(rng, (2,), 4, 3, 2)
    n = 400
    est, se = hutchinson_hessian_trace(W1, W2, teacher, n_probes=n, seed=11)
    formula = hessian_trace(W1, W2, teacher=teacher)
    assert est.shape == se.shape == formula.shape == (2,)
    for k, H in enumerate(_exact_hessians(W1, W2, teacher)):
        assert formula[k] == pytest.approx(np.trace(H), rel=1e-12)
        se_exact = np.sqrt(2 * (np.sum(H**2) - np.sum(np.diag(H) ** 2)) / n)
        assert abs(est[k] - np.trace(H)) < 5 * se_exact
        assert 0.5 < se[k] / se_exact < 2.0


@pytest.mark.parametrize("variances", [None, [2.5, 0.3]])
def test_sensitivity_is_sharpness(rng, variances):
    """σ1 = σ2 = σ: E[L_pert] − L = ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out, with tr(H) the trace of the
    full Hessian matrix from jax.hessian (not the package's trace formula); rtol 1e-12 for a
    sum of ~50 float64 terms."""
    teacher = make_teacher([1.5, 0.7], 6, 3, seed=5, input_variances=variances)
    h = 4
    W1, W2 = _random_weights(rng, (3,), h, 6, 3)
    sigma = 0.23
    trace_sx = np.trace(teacher.input_covariance)
    tr_h = np.trace(_exact_hessians(W1, W2, teacher), axis1=-2, axis2=-1)
    expected = 0.5 * sigma**2 * tr_h + 0.5 * sigma**4 * trace_sx * h * 3
    np.testing.assert_allclose(sensitivity(W1, W2, sigma, teacher=teacher), expected, rtol=1e-12)
    diff = expected_perturbed_loss(W1, W2, teacher, sigma) - _loss(W1, W2, teacher)
    np.testing.assert_allclose(diff, expected, rtol=1e-10)


def test_whitened_hessian_trace_by_hand():
    W1 = np.ones((2, 3))  # ‖W1‖² = 6
    W2 = 2 * np.ones((4, 2))  # ‖W2‖² = 32
    assert hessian_trace(W1, W2) == pytest.approx(3 * 32 + 4 * 6)
    # ½[σ2² d_out ‖W1‖² + σ1² d_in ‖W2‖² + σ1²σ2² d_in h d_out] with σ1 = 0.1, σ2 = 0.2
    by_hand = 0.5 * (0.04 * 4 * 6 + 0.01 * 3 * 32 + 0.0004 * 3 * 2 * 4)
    assert sensitivity(W1, W2, 0.1, 0.2) == pytest.approx(by_hand, rel=1e-14)
    assert sensitivity_from_norms(6.0, 32.0, 3, 4, 2, 0.1, 0.2) == pytest.approx(by_hand, rel=1e-14)


# ---------------------------------------------------------------- relative noise


def test_noise_stds():
    assert noise_stds(0.3) == (0.3, 0.3)
    assert noise_stds(0.5, "init", init_stds=(0.02, 0.1)) == pytest.approx((0.01, 0.05))
    W1 = np.stack([0.2 * np.ones((3, 4)), -0.4 * np.ones((3, 4))])  # RMS 0.2, 0.4
    W2 = np.stack([np.tile([1.0, -1.0, 1.0], (2, 1)), 3.0 * np.ones((2, 3))])  # RMS 1, 3
    s1, s2 = noise_stds(0.1, "rms", W1, W2)
    np.testing.assert_allclose(s1, [0.02, 0.04], rtol=1e-14)
    np.testing.assert_allclose(s2, [0.1, 0.3], rtol=1e-14)


@pytest.mark.parametrize(
    "call",
    [
        lambda: noise_stds(-0.1),
        lambda: noise_stds(0.1, "relative"),
        lambda: noise_stds(0.1, "init"),
        lambda: noise_stds(0.1, "init", init_stds=(0.1, 0.0)),
        lambda: noise_stds(0.1, "rms"),
        lambda: noise_stds([0.1, 0.2]),
    ],
)
def test_noise_stds_bad_input(call):
    with pytest.raises(ValueError):
        call()


# ---------------------------------------------------------------- s* on actual weights


def _mode_gain(teacher, h, i, base, sigma1, sigma2, seed=0):
    """E[L_pert] with mode i at its target minus with mode i at 0, other modes at `base`,
    on full matrices built by init_weights (aligned balanced)."""
    learned, unlearned = base.copy(), base.copy()
    learned[i], unlearned[i] = teacher.targets[i], 0.0
    on = init_weights(teacher, h, "aligned", init_strength=learned, seed=seed)
    off = init_weights(teacher, h, "aligned", init_strength=unlearned, seed=seed)
    return float(expected_perturbed_loss(*on, teacher, sigma1, sigma2) - expected_perturbed_loss(*off, teacher, sigma1, sigma2))


def test_critical_value_by_hand():
    assert critical_singular_value(30, 20, 0.1) == pytest.approx(0.5)  # σ²(d_in + d_out)
    assert critical_singular_value(6, 4, 0.2, 0.35) == pytest.approx(0.24 + 0.49)
    assert critical_singular_value(6, 4, 0.2, 0.35, balance=0.5) == pytest.approx(np.sqrt(0.73 * 0.23))
    assert critical_singular_value(6, 4, 0.2, 0.35, balance=-0.8) == 0.0
    # co-diagonal: σ1² tr(Σx) + σ2² d_out d_i, tr(Σx) = 6 − 2 + 2 + 0.5
    np.testing.assert_allclose(
        critical_singular_value(6, 4, 0.2, 0.35, input_variances=[2.0, 0.5]),
        [0.04 * 6.5 + 0.1225 * 4 * 2.0, 0.04 * 6.5 + 0.1225 * 4 * 0.5],
    )


@pytest.mark.parametrize("variances", [None, [2.0, 0.5, 1.3]])
def test_critical_value_on_full_matrices(variances):
    """Learning a mode with s = 1.3 s* lowers E[L_pert], with s = s* leaves it unchanged,
    with s = 0.7 s* raises it; the change is ½ (s/d)(s* − s) (THEORY.md §4)."""
    d_in, d_out, h, sigma1, sigma2 = 6, 4, 5, 0.2, 0.35
    star = np.broadcast_to(critical_singular_value(d_in, d_out, sigma1, sigma2, input_variances=variances), (3,))
    s = star * np.array([1.3, 1.0, 0.7])
    teacher = make_teacher(s, d_in, d_out, seed=1, input_variances=variances)
    d = teacher.variances
    base = 0.5 * teacher.targets  # other modes half learned
    gains = np.array([_mode_gain(teacher, h, i, base, sigma1, sigma2) for i in range(3)])
    np.testing.assert_allclose(gains, 0.5 * (s / d) * (star - s), atol=1e-12)
    assert gains[0] < 0 < gains[2] and abs(gains[1]) < 1e-12
    np.testing.assert_array_equal(harmful_modes(s, star), [2])


def _lambda_balanced(teacher, a, lam, seed=0):
    """Aligned λ-balanced weights (h = r): b c = a, c² − b² = λ."""
    m = np.sqrt(lam**2 + 4 * a**2)
    b, c = np.sqrt((m - lam) / 2), np.sqrt((m + lam) / 2)
    R = random_orthonormal(np.random.default_rng(seed), teacher.rank, teacher.rank)
    return (R * b) @ teacher.V.T, (teacher.U * c) @ R.T


@pytest.mark.parametrize("variances", [None, [2.0, 0.5, 1.3]])
@pytest.mark.parametrize("fraction", [0.4, -0.6])
def test_critical_value_lambda_balanced(variances, fraction):
    """W2ᵀW2 − W1W1ᵀ = λI: at s = s*(λ) learning a mode is neutral, above it pays, below it
    costs; evaluated on full matrices with the exact expectation."""
    d_in, d_out, sigma1, sigma2 = 6, 4, 0.2, 0.35
    kappa = critical_singular_value(d_in, d_out, sigma1, sigma2, input_variances=variances)
    lam = fraction * float(np.min(kappa / (np.ones(3) if variances is None else np.array(variances))))
    star = np.broadcast_to(critical_singular_value(d_in, d_out, sigma1, sigma2, balance=lam, input_variances=variances), (3,))
    assert np.all(star > 0) and np.all(star < kappa)  # imbalance lowers s*
    s = star * np.array([1.05, 1.0, 0.95])
    teacher = make_teacher(s, d_in, d_out, seed=2, input_variances=variances)
    base = 0.3 * teacher.targets
    gains = []
    for i in range(3):
        on, off = base.copy(), base.copy()
        on[i], off[i] = teacher.targets[i], 0.0
        W_on, W_off = _lambda_balanced(teacher, on, lam), _lambda_balanced(teacher, off, lam)
        np.testing.assert_allclose(W_on[1].T @ W_on[1] - W_on[0] @ W_on[0].T, lam * np.eye(3), atol=1e-12)
        gains.append(float(expected_perturbed_loss(*W_on, teacher, sigma1, sigma2) - expected_perturbed_loss(*W_off, teacher, sigma1, sigma2)))
    assert gains[0] < -1e-6 and abs(gains[1]) < 1e-12 and gains[2] > 1e-6


def test_strong_imbalance_makes_no_mode_harmful():
    """|λ| ≥ κ: s* = 0, and even a tiny mode is worth learning."""
    d_in, d_out, sigma = 6, 4, 0.3
    lam = 2.0 * sigma**2 * (d_in + d_out)
    assert critical_singular_value(d_in, d_out, sigma, balance=lam) == 0.0
    teacher = make_teacher([1e-3], d_in, d_out, seed=3)
    on, off = _lambda_balanced(teacher, np.array([1e-3]), lam), _lambda_balanced(teacher, np.array([0.0]), lam)
    assert expected_perturbed_loss(*on, teacher, sigma) < expected_perturbed_loss(*off, teacher, sigma)


# ---------------------------------------------------------------- per-mode optimum, rise


def test_optimum_and_rise_by_hand():
    np.testing.assert_array_equal(harmful_modes([1.0, 0.6, 0.5, 0.49, 0.1], 0.5), [3, 4])
    np.testing.assert_allclose(noisy_optimum([1.0, 0.6, 0.2], 0.5), [0.75, 0.35, 0.0])
    np.testing.assert_allclose(rise_bound_terms([1.0, 0.3, 0.2], 0.5), [0.5**2 / 8, 0.5**2 / 8, 0.5 * 0.2 * 0.3])


@pytest.mark.parametrize("variances", [None, [2.0, 0.5, 1.3]])
def test_optimum_and_rise_on_full_matrices(variances):
    """On full matrices: E[L_pert] is stationary (interior) or increasing (at 0) at the
    noisy optimum of each mode, and rises by g_i from there to full learning."""
    d_in, d_out, h, sigma1, sigma2 = 6, 4, 3, 0.2, 0.35
    star = np.broadcast_to(critical_singular_value(d_in, d_out, sigma1, sigma2, input_variances=variances), (3,))
    s = star * np.array([2.0, 0.8, 0.3])  # interior, interior, boundary (s < s*/2)
    teacher = make_teacher(s, d_in, d_out, seed=4, input_variances=variances)
    opt = noisy_optimum(s, star, variances)
    g = rise_bound_terms(s, star, variances)
    assert opt[2] == 0.0 and np.all(opt[:2] > 0)

    def E(i, a):
        strengths = 0.5 * teacher.targets
        strengths[i] = a
        return float(expected_perturbed_loss(*init_weights(teacher, h, "aligned", init_strength=strengths), teacher, sigma1, sigma2))

    delta = 1e-3
    for i in range(3):
        if opt[i] > 0:  # E is quadratic in a_i: the central difference is exact
            assert abs(E(i, opt[i] + delta) - E(i, opt[i] - delta)) < 1e-11
        else:
            assert E(i, delta) > E(i, 0.0)
        assert E(i, teacher.targets[i]) - E(i, opt[i]) == pytest.approx(g[i], rel=1e-9)


# ---------------------------------------------------------------- along a trajectory


def test_modal_expectation_along_gd_trajectory():
    """Aligned balanced GD: E[L_pert] from mode strengths, from recorded norms and from the
    full-matrix formula agree at every checkpoint; Monte Carlo at every checkpoint (one
    call) agrees within 4 SE."""
    teacher = make_teacher([2.0, 0.6], 5, 4, seed=0)
    h, sigma1, sigma2 = 3, 0.15, 0.25
    traj = simulate_gd(teacher, h, 0.05, [0, 50, 200, 1000], init_strength=1e-3, record_weights=True)
    modal = modal_expected_perturbed_loss(teacher, traj.mode_strengths, h, sigma1, sigma2)
    full = expected_perturbed_loss(traj.W1, traj.W2, teacher, sigma1, sigma2)
    assert modal.shape == (4,)
    np.testing.assert_allclose(modal, full, rtol=1e-10)
    from_norms = traj.loss + sensitivity_from_norms(traj.w1_sq_norm, traj.w2_sq_norm, 5, 4, h, sigma1, sigma2)
    np.testing.assert_allclose(from_norms, full, rtol=1e-10)
    mean, se = monte_carlo_perturbed_loss(traj.W1, traj.W2, teacher, sigma1, sigma2, n_draws=2000, seed=1)
    assert np.all(np.abs(mean - full) < 4 * se)


def test_modal_expectation_codiagonal_on_full_matrices(rng):
    """Co-diagonal Σx: the modal formula equals the full-matrix one on aligned balanced
    weights of random strengths (batched (2, T, r))."""
    teacher = make_teacher([2.0, 0.6, 0.3], 6, 4, seed=0, input_variances=[2.0, 0.5, 1.4])
    h = 5
    a = rng.uniform(0, 2.0, (2, 3, 3))
    weights = [init_weights(teacher, h, "aligned", init_strength=a[i, t], seed=1) for i in range(2) for t in range(3)]
    W1 = np.stack([w[0] for w in weights]).reshape(2, 3, h, 6)
    W2 = np.stack([w[1] for w in weights]).reshape(2, 3, 4, h)
    modal = modal_expected_perturbed_loss(teacher, a, h, 0.3, 0.1)
    assert modal.shape == (2, 3)
    np.testing.assert_allclose(modal, expected_perturbed_loss(W1, W2, teacher, 0.3, 0.1), rtol=1e-12)


def test_modal_expectation_batched_and_by_hand():
    teacher = make_teacher([1.0, 0.5], 3, 2, seed=0)
    a = np.array([[[0.0, 0.0], [1.0, 0.5]], [[0.5, 0.0], [1.0, 0.0]]])  # (2, T=2, r=2)
    sigma = 0.1
    out = modal_expected_perturbed_loss(teacher, a, 4, sigma)
    # ½Σ(a − s)² + ½σ²(d_in + d_out)Σa + ½σ⁴ d_in h d_out
    const = 0.5 * sigma**4 * 3 * 4 * 2
    by_hand = np.array([[0.625, 0.0 + 0.5 * 0.05 * 1.5], [0.125 + 0.125 + 0.5 * 0.05 * 0.5, 0.125 + 0.5 * 0.05]]) + const
    np.testing.assert_allclose(out, by_hand, rtol=1e-13)


# ---------------------------------------------------------------- bad input


_T = make_teacher([1.0], 3, 2, seed=0)
_W1, _W2 = np.ones((4, 3)), np.ones((2, 4))


@pytest.mark.parametrize(
    "call",
    [
        lambda: expected_perturbed_loss(_W1, _W2, _T, -0.1),
        lambda: expected_perturbed_loss(_W1, _W2, _T, 0.1, np.nan),
        lambda: expected_perturbed_loss(_W1, _W2[:, :3], _T, 0.1),  # hidden widths differ
        lambda: expected_perturbed_loss(_W1[:, :2], _W2, _T, 0.1),  # d_in ≠ teacher's
        lambda: expected_perturbed_loss(np.stack([_W1, _W1]), _W2, _T, 0.1),  # batch axes differ
        lambda: expected_perturbed_loss(_W1[0], _W2, _T, 0.1),  # not a matrix
        lambda: expected_perturbed_loss(np.stack([_W1] * 2), np.stack([_W2] * 2), _T, [0.1, 0.2, 0.3]),
        lambda: sensitivity(_W1, _W2, -1.0),
        lambda: hessian_trace(_W1, np.ones((2, 5))),
        lambda: monte_carlo_perturbed_loss(_W1, _W2, _T, -0.1),
        lambda: monte_carlo_perturbed_loss(_W1, _W2, _T, 0.1, n_draws=1),
        lambda: monte_carlo_perturbed_loss(_W1, _W2, _T, 0.1, seed=1.5),
        lambda: hutchinson_hessian_trace(_W1, _W2[:, :3], _T),
        lambda: critical_singular_value(3, 2, -0.1),
        lambda: critical_singular_value(0, 2, 0.1),
        lambda: critical_singular_value(3, 2, 0.1, input_variances=[1.0, -1.0]),
        lambda: harmful_modes([1.0, 0.5], [0.1, 0.2, 0.3]),
        lambda: noisy_optimum([1.0, -0.5], 0.1),
        lambda: rise_bound_terms([1.0], -0.1),
        lambda: modal_expected_perturbed_loss(_T, np.ones((3, 2)), 4, 0.1),  # r = 1, not 2
        lambda: modal_expected_perturbed_loss(_T, np.ones((3, 1)), 4, -0.1),
        lambda: sensitivity_from_norms(1.0, 1.0, 3, 2, 4, -0.1),
    ],
)
def test_bad_input_raises(call):
    with pytest.raises(ValueError):
        call()
