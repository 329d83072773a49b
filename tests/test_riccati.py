import numpy as np
import pytest

from linear_theory import make_teacher
from linear_theory._ode import gradient_flow_ode
from linear_theory._riccati import balanced_flow
from linear_theory._teacher import random_orthonormal


def balanced_random(rng, h, d_in, d_out, scale):
    """Balanced but not aligned with the teacher: W1 = R diag(c) Pᵀ, W2 = Q diag(c) Rᵀ."""
    k = min(h, d_in, d_out)
    c = scale * rng.uniform(0.5, 2.0, k)
    R = random_orthonormal(rng, h, k)
    return (R * c) @ random_orthonormal(rng, d_in, k).T, (random_orthonormal(rng, d_out, k) * c) @ R.T


@pytest.mark.parametrize("h, scale", [(6, 1e-3), (3, 0.3), (9, 1.0)])
def test_riccati_matches_ode(h, scale):
    rng = np.random.default_rng(h)
    t = make_teacher([2.0, 1.0, 0.4, 0.1], d_in=7, d_out=5, seed=4)
    W1, W2 = balanced_random(rng, h, 7, 5, scale)
    times = np.array([0.0, 0.3, 1.0, 3.0, 8.0, 20.0])
    ric = balanced_flow(t, W1, W2, times)
    ode = gradient_flow_ode(t, W1, W2, times)
    np.testing.assert_allclose(ric.mode_strengths, ode.mode_strengths, rtol=1e-8, atol=1e-12 * scale**2)
    np.testing.assert_allclose(ric.w1_sq_norm, ode.w1_sq_norm, rtol=1e-8)
    np.testing.assert_allclose(ric.w2_sq_norm, ode.w2_sq_norm, rtol=1e-8)


def test_riccati_rejects_unbalanced():
    t = make_teacher([2.0, 1.0], 4, 3, seed=0)
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="balanced"):
        balanced_flow(t, rng.standard_normal((3, 4)), rng.standard_normal((3, 3)), [1.0])
    with pytest.raises(ValueError, match="whitened"):
        balanced_flow(make_teacher([1.0], 2, 2, input_variances=[2.0]), np.eye(1, 2), np.eye(2, 1), [1.0])


def test_riccati_aligned_init_equals_saxe_closed_form():
    from linear_theory import gradient_flow, init_weights

    t = make_teacher([2.0, 1.0, 0.4, 0.1], d_in=7, d_out=5, seed=4)
    W1, W2 = init_weights(t, 4, "aligned", 1e-6)
    times = np.array([0.0, 5.0, 20.0, 80.0])
    np.testing.assert_allclose(balanced_flow(t, W1, W2, times).mode_strengths,
                               gradient_flow(t, times, 1e-6).mode_strengths, rtol=1e-8)
