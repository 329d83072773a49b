"""Symbolic derivation (sympy) of the Gaussian-weight-noise results in `_noise.py`.

Nothing here is assumed: for small concrete shapes every weight, teacher and covariance
entry is a symbol, the perturbed loss is expanded as a polynomial in the noise entries,
and the Gaussian expectation is taken monomial by monomial with the moments of N(0, 1)
(E z^k = (k − 1)!! for even k, 0 for odd k). The critical singular value, each mode's
optimum under noise and its rise bound are then solved for on aligned weights.

The tests compare these derivations with the closed forms that `_noise.py` evaluates.
"""

from __future__ import annotations

import dataclasses

import sympy as sp


def gaussian_moment(k: int) -> sp.Integer:
    """E[z^k] for z ~ N(0, 1): (k − 1)!! for even k, 0 for odd k."""
    if k % 2:
        return sp.Integer(0)
    return sp.factorial2(k - 1) if k else sp.Integer(1)


def gaussian_expectation(expr: sp.Expr, noise) -> sp.Expr:
    """E over independent standard normal `noise` symbols of a polynomial `expr` in them.

    Args:
      expr: a sympy expression polynomial in the noise symbols (other symbols are kept as
        coefficients).
      noise: the noise symbols, each N(0, 1), mutually independent.
    Returns:
      The expanded expectation, free of the noise symbols.
    """
    noise = list(noise)
    poly = sp.Poly(sp.expand(expr), *noise)
    total = sp.Integer(0)
    for powers, coeff in poly.terms():
        weight = sp.Integer(1)
        for k in powers:
            weight *= gaussian_moment(k)
            if weight == 0:
                break
        total += coeff * weight
    return sp.expand(total)


def _matrix(name: str, rows: int, cols: int, **assumptions) -> sp.Matrix:
    return sp.Matrix(rows, cols, lambda i, j: sp.Symbol(f"{name}_{i}{j}", **assumptions))


def _symmetric(name: str, n: int) -> sp.Matrix:
    return sp.Matrix(n, n, lambda i, j: sp.Symbol(f"{name}_{min(i, j)}{max(i, j)}", real=True))


def _half_trace_quadratic(E: sp.Matrix, Sx: sp.Matrix) -> sp.Expr:
    """½ tr(E Σx Eᵀ)."""
    return sp.Rational(1, 2) * (E * Sx * E.T).trace()


def _perturbed_expectation(W1, W2, A, Sx, sigma1, sigma2):
    """E over Z1, Z2 of ½ tr(E' Σx E'ᵀ), E' = (W2 + σ2 Z2)(W1 + σ1 Z1) − A."""
    Z1 = _matrix("z1", *W1.shape, real=True)
    Z2 = _matrix("z2", *W2.shape, real=True)
    E = (W2 + sigma2 * Z2) * (W1 + sigma1 * Z1) - A
    return gaussian_expectation(_half_trace_quadratic(E, Sx), list(Z1) + list(Z2))


@dataclasses.dataclass(frozen=True)
class DerivedLoss:
    """A derived E[L_pert] and the symbols it is written in.

    Attributes:
      expected: E[L_pert], expanded polynomial in the symbols below.
      loss: the unperturbed loss L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ), expanded.
      W1, W2, A, Sx: symbol matrices, shapes (h, d_in), (d_out, h), (d_out, d_in),
        (d_in, d_in) (Sx symmetric, or the identity when whitened).
      sigma1, sigma2: the noise std symbols (non-negative).
    """

    expected: sp.Expr
    loss: sp.Expr
    W1: sp.Matrix
    W2: sp.Matrix
    A: sp.Matrix
    Sx: sp.Matrix
    sigma1: sp.Symbol
    sigma2: sp.Symbol

    @property
    def sensitivity(self) -> sp.Expr:
        """E[L_pert] − L."""
        return sp.expand(self.expected - self.loss)


def derive_expected_perturbed_loss(d_in: int, d_hidden: int, d_out: int, whitened: bool = False) -> DerivedLoss:
    """Derive E[L_pert] for symbolic weights of a concrete shape.

    Every entry of W1, W2, A and (unless whitened) of a symmetric Σx is a symbol; the
    noise Z1, Z2 has one N(0, 1) symbol per weight, and its expectation is taken by moments.

    Args:
      d_in, d_hidden, d_out: the shape (keep it small: the expansion has
        O((h d_in + d_out h)²) noise monomials per entry pair).
      whitened: Σx = I instead of a general symmetric Σx.
    Returns:
      A DerivedLoss.
    """
    if min(d_in, d_hidden, d_out) < 1:
        raise ValueError("shapes must be positive")
    W1 = _matrix("w1", d_hidden, d_in, real=True)
    W2 = _matrix("w2", d_out, d_hidden, real=True)
    A = _matrix("a", d_out, d_in, real=True)
    Sx = sp.eye(d_in) if whitened else _symmetric("c", d_in)
    s1, s2 = sp.symbols("sigma1 sigma2", nonnegative=True)
    expected = _perturbed_expectation(W1, W2, A, Sx, s1, s2)
    loss = sp.expand(_half_trace_quadratic(W2 * W1 - A, Sx))
    return DerivedLoss(expected, loss, W1, W2, A, Sx, s1, s2)


# --------------------------------------------------------------------------------------
# Aligned weights: one mode learned or not.
#
# Coordinates in which the teacher is diagonal: d_in = 3, h = 2, d_out = 4; input
# covariance diag(d1, d2, 1) (mode 1 along coordinate 1, mode 2 along coordinate 2, one
# unit-variance input direction outside the teacher); W1 = [diag(b1, b2) | 0],
# W2 = [diag(c1, c2); 0]; A = [diag(t1, t2) | 0; 0] with t_i = s_i / d_i.

ALIGNED_SHAPE = (3, 2, 4)  # (d_in, h, d_out)


@dataclasses.dataclass(frozen=True)
class AlignedModel:
    """Symbols of the aligned model and its derived E[L_pert](b1, c1; s1)."""

    expected: sp.Expr
    b1: sp.Symbol
    c1: sp.Symbol
    s1: sp.Symbol
    d1: sp.Symbol
    d2: sp.Symbol
    sigma1: sp.Symbol
    sigma2: sp.Symbol


def derive_aligned_model() -> AlignedModel:
    """E[L_pert] of aligned weights as a function of mode 1's layer values (b1, c1).

    Mode 2 (values b2, c2, target s2) stays symbolic and must drop out of every
    comparison between two states of mode 1.
    """
    d_in, h, d_out = ALIGNED_SHAPE
    b1, b2, c1, c2 = sp.symbols("b1 b2 c1 c2", real=True)
    s1, s2, d1, d2 = sp.symbols("s1 s2 d1 d2", positive=True)
    sigma1, sigma2 = sp.symbols("sigma1 sigma2", nonnegative=True)
    W1 = sp.zeros(h, d_in)
    W1[0, 0], W1[1, 1] = b1, b2
    W2 = sp.zeros(d_out, h)
    W2[0, 0], W2[1, 1] = c1, c2
    A = sp.zeros(d_out, d_in)
    A[0, 0], A[1, 1] = s1 / d1, s2 / d2
    Sx = sp.diag(d1, d2, 1)
    expected = _perturbed_expectation(W1, W2, A, Sx, sigma1, sigma2)
    return AlignedModel(expected, b1, c1, s1, d1, d2, sigma1, sigma2)


def derive_critical_singular_value(model: AlignedModel | None = None, larger_layer: str = "W2"):
    """Solve for the s at which fully learning mode 1 leaves E[L_pert] unchanged.

    λ-balanced weights, W2ᵀW2 − W1W1ᵀ = λ I with λ = ±μ, μ ≥ 0 (μ = 0: balanced).
    larger_layer "W2" (λ = μ): the unlearned mode has (b, c) = (0, √μ) and the learned one
    (β, √(β² + μ)) with strength β√(β² + μ) = s/d1. "W1" (λ = −μ): the roles swap.
    E(learned) − E(unlearned) = 0 is solved for β² > 0, and s* = d1 × the learned strength.

    Args:
      model: a derived AlignedModel (derived here when None).
      larger_layer: "W2" for λ ≥ 0, "W1" for λ ≤ 0.
    Returns:
      (s_star, mu, model): s* as a sympy expression in σ1, σ2, d1, d2 and μ = |λ| (valid
      while positive), the symbol μ, and the model used.
    """
    model = derive_aligned_model() if model is None else model
    mu = sp.Symbol("mu", nonnegative=True)
    beta_sq = sp.Symbol("beta_sq", positive=True)
    small, large = sp.sqrt(beta_sq), sp.sqrt(beta_sq + mu)
    strength = small * large
    if larger_layer == "W2":
        learned, unlearned = {model.b1: small, model.c1: large}, {model.b1: 0, model.c1: sp.sqrt(mu)}
    elif larger_layer == "W1":
        learned, unlearned = {model.b1: large, model.c1: small}, {model.b1: sp.sqrt(mu), model.c1: 0}
    else:
        raise ValueError("larger_layer must be 'W1' or 'W2'")
    target = {model.s1: model.d1 * strength}
    gain = sp.expand(model.expected.subs(learned).subs(target) - model.expected.subs(unlearned).subs(target))
    roots = [r for r in sp.solve(gain, beta_sq) if r != 0]
    if len(roots) != 1:
        raise ArithmeticError(f"expected one non-zero root for the learned strength, got {roots}")
    s_star = sp.simplify(model.d1 * sp.sqrt(roots[0]) * sp.sqrt(roots[0] + mu))
    return s_star, mu, model


def derive_noisy_optimum(model: AlignedModel | None = None):
    """Mode 1's optimal strength under noise and the rise from there to full learning.

    Balanced weights, b1 = c1 = √a. E[L_pert] is quadratic in a; its stationary point is
    solved for, and the rises E(s1/d1) − E(a_opt) and E(s1/d1) − E(0) are computed.

    Returns:
      dict with "a" (the symbol a), "optimum" (stationary a), "rise_interior"
      (E(target) − E(optimum)), "rise_boundary" (E(target) − E(0)), and "model".
    """
    model = derive_aligned_model() if model is None else model
    a = sp.Symbol("a", nonnegative=True)
    E = sp.expand(model.expected.subs({model.b1: sp.sqrt(a), model.c1: sp.sqrt(a)}))
    (optimum,) = sp.solve(sp.diff(E, a), a)
    target = model.s1 / model.d1
    return {
        "a": a,
        "optimum": sp.simplify(optimum),
        "rise_interior": sp.simplify(E.subs(a, target) - E.subs(a, optimum)),
        "rise_boundary": sp.simplify(E.subs(a, target) - E.subs(a, 0)),
        "model": model,
    }
