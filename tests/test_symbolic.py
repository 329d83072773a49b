"""The sympy derivation (`_symbolic.py`) against the closed forms of `_noise.py`."""

import numpy as np
import pytest
import sympy as sp

from linear_theory import _noise
from linear_theory import (
    critical_singular_value,
    expected_perturbed_loss,
    noisy_optimum,
    rise_bound_terms,
)
from linear_theory._symbolic import (
    ALIGNED_SHAPE,
    derive_aligned_model,
    derive_critical_singular_value,
    derive_expected_perturbed_loss,
    derive_noisy_optimum,
    gaussian_expectation,
)
from linear_theory._teacher import make_teacher


def _objects(M: sp.Matrix) -> np.ndarray:
    """A sympy Matrix as a numpy object array (what the `_noise` formula cores accept)."""
    return np.array(M.tolist(), dtype=object)


@pytest.fixture(scope="module")
def aligned():
    return derive_aligned_model()


@pytest.fixture(scope="module")
def general_322():
    """The derivation for d_in = 3, h = 2, d_out = 2 with a general Σx (shared: ~0.7 s)."""
    return derive_expected_perturbed_loss(3, 2, 2)


def test_gaussian_moments():
    x, y, a = sp.symbols("x y a")
    assert gaussian_expectation(x**4, [x]) == 3
    assert gaussian_expectation(x**6 * y**2, [x, y]) == 15
    assert gaussian_expectation(x**3 * y**2 + x * y, [x, y]) == 0
    assert sp.expand(gaussian_expectation((a + x) ** 2, [x]) - (a**2 + 1)) == 0


@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 2, 3), (1, 2, 3)])
def test_derived_expectation_equals_formula_general_covariance(shape, general_322):
    """Symbolic W1, W2, A and a general symmetric Σx: the derivation and the numeric
    formula (its own code, run on symbol arrays) agree identically."""
    D = general_322 if shape == (3, 2, 2) else derive_expected_perturbed_loss(*shape)
    W1, W2, A, Sx = (_objects(M) for M in (D.W1, D.W2, D.A, D.Sx))
    formula = _noise._expected_perturbed_loss(W1, W2, A, Sx, D.sigma1, D.sigma2)
    assert sp.expand(D.expected - formula) == 0
    assert sp.expand(D.loss - _noise._loss(W1, W2, A, Sx)) == 0
    assert not (D.sensitivity.free_symbols & set(D.A))  # the noise cost ignores the teacher


def test_derived_expectation_whitened_matches_theory():
    """THEORY.md §4 written out by hand: L + ½[σ2² d_out‖W1‖² + σ1² d_in‖W2‖² + σ1²σ2² d_in h d_out]."""
    d_in, h, d_out = 2, 3, 4
    D = derive_expected_perturbed_loss(d_in, h, d_out, whitened=True)
    n1 = sum(w**2 for w in D.W1)
    n2 = sum(w**2 for w in D.W2)
    s1, s2 = D.sigma1, D.sigma2
    theory = D.loss + sp.Rational(1, 2) * (s2**2 * d_out * n1 + s1**2 * d_in * n2 + s1**2 * s2**2 * d_in * h * d_out)
    assert sp.expand(D.expected - theory) == 0


def test_derived_hessian_trace_identity(general_322):
    """With σ1 = σ2 = σ the sensitivity is ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out, tr(H) being the
    sum of the loss's second derivatives in every weight (computed here by sympy)."""
    h, d_out = 2, 2
    D = general_322
    sigma = sp.Symbol("sigma", nonnegative=True)
    sens = sp.expand(D.sensitivity.subs({D.sigma1: sigma, D.sigma2: sigma}))
    trace_h = sum(sp.diff(D.loss, w, 2) for w in list(D.W1) + list(D.W2))
    expected = sp.Rational(1, 2) * sigma**2 * trace_h + sp.Rational(1, 2) * sigma**4 * D.Sx.trace() * h * d_out
    assert sp.expand(sens - expected) == 0
    formula = _noise._hessian_trace(_objects(D.W1), _objects(D.W2), _objects(D.Sx))
    assert sp.expand(trace_h - formula) == 0


def test_derived_expectation_numeric_against_public_function(general_322):
    """Numbers substituted into the derived expression equal `expected_perturbed_loss`
    on a co-diagonal teacher, σ1 ≠ σ2 (float64 rounding only)."""
    d_in, h, d_out = 3, 2, 2
    D = general_322
    teacher = make_teacher([1.5, 0.4], d_in, d_out, seed=3, input_variances=[2.0, 0.3])
    rng = np.random.default_rng(0)
    W1, W2 = rng.standard_normal((h, d_in)), rng.standard_normal((d_out, h))
    sigma1, sigma2 = 0.37, 0.11
    subs = {D.sigma1: sigma1, D.sigma2: sigma2}
    for M, val in ((D.W1, W1), (D.W2, W2), (D.A, teacher.matrix), (D.Sx, teacher.input_covariance)):
        subs.update({M[i, j]: val[i, j] for i in range(M.rows) for j in range(M.cols)})
    derived = float(D.expected.subs(subs))
    numeric = float(expected_perturbed_loss(W1, W2, teacher, sigma1, sigma2))
    assert numeric == pytest.approx(derived, rel=1e-12)


def _kappa(sigma1, sigma2, d1, d2):
    """σ1² tr(Σx) + σ2² d_out d1 for the aligned model's shape (Σx = diag(d1, d2, 1))."""
    d_in, _, d_out = ALIGNED_SHAPE
    return sigma1**2 * (d1 + d2 + d_in - 2) + sigma2**2 * d_out * d1


def test_derived_critical_value_balanced_whitened(aligned):
    """Whitened, balanced: s* = σ1² d_in + σ2² d_out exactly (THEORY.md §4)."""
    d_in, _, d_out = ALIGNED_SHAPE
    s_star, mu, m = derive_critical_singular_value(aligned)
    whitened = s_star.subs({m.d1: 1, m.d2: 1, mu: 0})
    assert sp.simplify(whitened - (m.sigma1**2 * d_in + m.sigma2**2 * d_out)) == 0
    sigma = sp.Symbol("sigma", positive=True)
    assert sp.simplify(whitened.subs({m.sigma1: sigma, m.sigma2: sigma}) - sigma**2 * (d_in + d_out)) == 0


@pytest.mark.parametrize("larger_layer, sign", [("W2", 1.0), ("W1", -1.0)])
def test_derived_critical_value_unbalanced_codiagonal(aligned, larger_layer, sign):
    """λ-balanced, co-diagonal: the solved s* equals `critical_singular_value` at random
    parameter values (with λ = +μ when W2 is the larger layer, −μ when W1 is)."""
    d_in, _, d_out = ALIGNED_SHAPE
    s_star, mu, m = derive_critical_singular_value(aligned, larger_layer)
    f = sp.lambdify((m.sigma1, m.sigma2, m.d1, m.d2, mu), s_star)
    rng = np.random.default_rng(1)
    for _ in range(5):
        s1, s2 = rng.uniform(0.05, 0.5, 2)
        d1, d2 = rng.uniform(0.2, 3.0, 2)
        lam = rng.uniform(0, 0.9) * _kappa(s1, s2, d1, d2) / d1  # keep s* real and positive
        numeric = critical_singular_value(d_in, d_out, s1, s2, balance=sign * lam, input_variances=[d1, d2])
        assert numeric[0] == pytest.approx(f(s1, s2, d1, d2, lam), rel=1e-12)


def test_derived_noisy_optimum_and_rise(aligned):
    """Balanced: the stationary strength and the rises to full learning agree with
    `noisy_optimum` and `rise_bound_terms` in both regimes (s ≥ s*/2 and s < s*/2)."""
    d_in, _, d_out = ALIGNED_SHAPE
    out = derive_noisy_optimum(aligned)
    m = out["model"]
    args = (m.s1, m.sigma1, m.sigma2, m.d1, m.d2)
    opt, interior, boundary = (sp.lambdify(args, out[k]) for k in ("optimum", "rise_interior", "rise_boundary"))
    rng = np.random.default_rng(2)
    for regime in ("interior", "boundary"):
        s1, s2 = rng.uniform(0.05, 0.4, 2)
        d1, d2 = rng.uniform(0.3, 2.0, 2)
        star = critical_singular_value(d_in, d_out, s1, s2, input_variances=[d1, d2])[0]
        s = star * (1.7 if regime == "interior" else 0.3)
        a = noisy_optimum([s], star, [d1])[0]
        g = rise_bound_terms([s], star, [d1])[0]
        if regime == "interior":
            assert a == pytest.approx(opt(s, s1, s2, d1, d2), rel=1e-12)
            assert g == pytest.approx(interior(s, s1, s2, d1, d2), rel=1e-12)
        else:
            assert opt(s, s1, s2, d1, d2) < 0 and a == 0.0  # stationary point infeasible
            assert g == pytest.approx(boundary(s, s1, s2, d1, d2), rel=1e-12)
