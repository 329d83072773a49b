"""Spectral view of factor noise: the size of the noise matrix, its i.i.d.-equivalent
threshold, and the Monte Carlo detection threshold, each against an independent computation
(the exact noise expectation, a closed form for width 1, a separate numpy recovery run)."""

import numpy as np
import pytest

from linear_theory import make_teacher, sensitivity
from linear_theory._spectral import (
    aligned_weights,
    bbp_threshold,
    detectability_along,
    factor_noise_detection_threshold,
    factor_noise_norms,
    half_recovery_strength,
)
from linear_theory._teacher import random_orthonormal


def test_noise_norms_against_exact_expectation_and_numpy():
    t = make_teacher([2.0, 1.0, 0.5, 0.2, 0.1], 24, 16, seed=0)
    assert bbp_threshold(0.01, 24, 16) == pytest.approx(0.01 * (24 * 16) ** 0.25)
    W1, W2 = aligned_weights(t, t.s, 20)
    n = 200
    norms = factor_noise_norms(W1, W2, 0.05, n_samples=n, seed=3)
    # E‖E‖_F² = 2 × sensitivity exactly (whitened): each draw of ‖E‖_F² has relative std
    # ≈ √(2/384) ≈ 7 %, so 200 draws give ≈ 0.5 %; 3 % is 6 standard errors.
    two_sens = 2 * sensitivity(W1, W2, 0.05)
    np.testing.assert_allclose(norms["iid_equivalent_std"] ** 2 * 24 * 16, two_sens, rtol=0.03)
    np.testing.assert_allclose(norms["iid_equivalent_threshold"],
                               np.sqrt(two_sens / (24 * 16)) * (24 * 16) ** 0.25, rtol=0.03)
    # ‖E‖₂ against an independent numpy draw: the two means agree within 5 combined errors.
    rng = np.random.default_rng(7)
    spec = []
    for _ in range(n):
        Z1, Z2 = rng.standard_normal(W1.shape), rng.standard_normal(W2.shape)
        spec.append(np.linalg.norm(0.05 * Z2 @ W1 + 0.05 * W2 @ Z1 + 0.05**2 * Z2 @ Z1, 2))
    spec = np.array(spec)
    err = np.hypot(norms["operator_norm_stderr"], spec.std(ddof=1) / np.sqrt(n))
    assert abs(norms["operator_norm"] - spec.mean()) < 5 * err
    # Batched weights (same draws for every pair) equal one call per pair.
    Wb1, Wb2 = aligned_weights(t, np.stack([t.s, t.s / 2]), 20)
    both = factor_noise_norms(Wb1, Wb2, 0.05, n_samples=50, seed=1)["operator_norm"]
    half = factor_noise_norms(Wb1[1], Wb2[1], 0.05, n_samples=50, seed=1)["operator_norm"]
    np.testing.assert_allclose(both[1], half, rtol=1e-12)
    with pytest.raises(ValueError):
        factor_noise_norms(W1, W2, -0.1)


@pytest.mark.parametrize("d_in, d_out, sigma", [(24, 16, 0.05), (16, 16, 0.1)])
def test_width_one_threshold_matches_the_derived_half_recovery(d_in, d_out, sigma):
    """h = 1: the perturbed product is rank one and the half-recovery strength is derived in
    closed form (‖z‖² replaced by its mean). The Monte Carlo threshold (512 draws) agrees
    within 6 % (measured 1.5 % and 0.7 %): the recovery rises by ≈ 0.2 per factor 2 in a, so a 0.01 error in the mean
    (≈ 2 standard errors) moves a by ≈ 3.5 %, and the mean-field step is worth ≈ 1 %."""
    mc = factor_noise_detection_threshold(d_in, d_out, 1, sigma, n_samples=512, seed=0)
    assert mc == pytest.approx(half_recovery_strength(d_in, d_out, sigma), rel=0.06)
    if d_in == d_out:
        assert half_recovery_strength(d_in, d_out, sigma) == pytest.approx(sigma**2 * d_in)


def _recovery(a, d_in, d_out, h, sigma, n, seed):
    """Independent recovery run: a width-h network holding one mode along random u, v, r."""
    rng = np.random.default_rng(seed)
    score = []
    for _ in range(n):
        u = random_orthonormal(rng, d_out, 1)[:, 0]
        v = random_orthonormal(rng, d_in, 1)[:, 0]
        r = random_orthonormal(rng, h, 1)[:, 0]
        W1 = np.sqrt(a) * np.outer(r, v) + sigma * rng.standard_normal((h, d_in))
        W2 = np.sqrt(a) * np.outer(u, r) + sigma * rng.standard_normal((d_out, h))
        U, _, Vt = np.linalg.svd(W2 @ W1)
        score.append(abs(U[:, 0] @ u) * abs(Vt[0] @ v))
    score = np.array(score)
    return score.mean(), score.std(ddof=1) / np.sqrt(n)


def test_mode_just_above_the_threshold_is_recovered_and_just_below_is_not():
    """Width 20 (the empty hidden units add σ²Z2Z1 and raise the threshold ≈ 1.8× above the
    width-1 value). With fresh draws, random mode directions and an independent implementation,
    a mode at 1.25 × the threshold has mean recovery above ½ and one at 0.8 × below it, each by
    more than 4 standard errors (measured ≈ 0.6 and ≈ 0.4 with errors ≈ 0.01 over 300 draws)."""
    d_in, d_out, h, sigma = 24, 16, 20, 0.05
    theta = factor_noise_detection_threshold(d_in, d_out, h, sigma, n_samples=256, seed=0)
    assert theta > 1.3 * half_recovery_strength(d_in, d_out, sigma)
    above, err_a = _recovery(1.25 * theta, d_in, d_out, h, sigma, 300, seed=11)
    below, err_b = _recovery(0.8 * theta, d_in, d_out, h, sigma, 300, seed=12)
    assert above - 0.5 > 4 * err_a, (above, err_a)
    assert 0.5 - below > 4 * err_b, (below, err_b)


def test_detectability_along_a_trajectory():
    t = make_teacher([2.0, 1.0, 0.5, 0.2, 0.1], 24, 16, seed=0)
    a = np.stack([1e-3 * t.s, 0.5 * t.s, t.s])
    det = detectability_along(t, a, 20, 0.05, n_samples=64)
    theta = det["detection_threshold"]
    np.testing.assert_array_equal(det["modes_above_detection_threshold"], np.sum(a > theta, axis=1))
    assert np.all(np.diff(det["noise_operator_norm"]) > 0)  # the noise matrix grows with the weights
    assert np.all(np.diff(det["modes_above_detection_threshold"]) >= 0)
