"""What the exact noise expectation implies mode by mode, for aligned weights.

Aligned balanced weights (co-diagonal Σx = V diag(d) Vᵀ + I − VVᵀ): learning mode i fully
(strength 0 → s_i/d_i) lowers L by ½ s_i²/d_i and costs ½ κ_i s_i/d_i in noise, with
κ_i = σ1² tr(Σx) + σ2² d_out d_i, so the mode is harmful iff s_i < s*_i = κ_i
(whitened: s* = σ1² d_in + σ2² d_out; = σ²(d_in + d_out) for σ1 = σ2 = σ).
"""

from __future__ import annotations

import numpy as np

from ._noise import _check_sigmas, _penalty
from ._teacher import Teacher
from ._trajectory import modal_loss


def _trace_and_variances(d_in, input_variances):
    """tr(Σx) and the per-mode variances d_i (1.0 when whitened)."""
    if input_variances is None:
        return float(d_in), np.float64(1.0)
    d = np.asarray(input_variances, dtype=np.float64)
    if d.ndim != 1 or not np.all(np.isfinite(d)) or np.any(d <= 0) or d.size > d_in:
        raise ValueError("input_variances must be a 1-d list of positive values, at most d_in of them")
    return float(d_in - d.size + d.sum()), d


def critical_singular_value(d_in: int, d_out: int, sigma1, sigma2=None, *, balance=0.0, input_variances=None):
    """The singular value s* below which fully learning a mode raises E[L_pert].

    Aligned weights, mode i taken from strength 0 to its target s_i/d_i. The noise cost of
    the mode is ½ κ_i m_i with κ_i = σ1² tr(Σx) + σ2² d_out d_i and m_i the increase of both
    ‖W1‖² (measured as tr(W1ΣxW1ᵀ)/d_i on that mode) and ‖W2‖²; the loss drops by ½ s_i²/d_i.

    - Balanced (balance λ = 0): m_i = s_i/d_i, harmful iff s_i < s*_i = κ_i.
      Whitened: s* = σ1² d_in + σ2² d_out (= σ²(d_in + d_out) for σ1 = σ2 = σ).
    - λ-balanced, W2ᵀW2 − W1W1ᵀ = λ I (conserved by gradient flow): a mode of strength a has
      W1 value b and W2 value c with bc = a, c² − b² = λ, so learning it raises ‖W1‖² and
      ‖W2‖² by the same m(a) = (√(λ² + 4a²) − |λ|)/2 ≤ a (the larger layer already carries
      |λ|). Since m(a)/a² falls with a, the mode is harmful iff
      s_i < s*_i = √(κ_i (κ_i − d_i|λ|)) when κ_i > d_i|λ|; otherwise no mode is harmful
      (s* = 0). Imbalance lowers s*. Hidden units outside the learned modes carry a
      constant norm that does not change the comparison.

    Args:
      d_in, d_out: input and output sizes.
      sigma1, sigma2: noise stds on W1, W2 entries (σ2 defaults to σ1), ≥ 0 scalars.
      balance: λ in W2ᵀW2 − W1W1ᵀ = λ I (0: balanced); either sign.
      input_variances: (r,) input variances d_i along the teacher's v_i (co-diagonal Σx,
        unit variance elsewhere), or None for whitened inputs.
    Returns:
      s* as a float64 scalar (whitened) or an (r,) array, one threshold per mode, in the
      units of the singular values of Σyx (teacher.s).
    """
    if min(d_in, d_out) <= 0:
        raise ValueError("d_in and d_out must be positive")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    if s1.ndim or s2.ndim:
        raise ValueError("sigma1 and sigma2 must be scalars")
    lam = np.asarray(balance, dtype=np.float64)
    if lam.ndim or not np.isfinite(lam):
        raise ValueError("balance must be a finite scalar")
    trace, d = _trace_and_variances(d_in, input_variances)
    kappa = s1**2 * trace + s2**2 * d_out * d
    excess = kappa * (kappa - d * abs(lam))
    return np.sqrt(np.maximum(excess, 0.0))


def _check_spectrum(s, s_star, input_variances=None):
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("singular values must be a 1-d list of finite non-negative numbers")
    star = np.asarray(s_star, dtype=np.float64)
    if not np.all(np.isfinite(star)) or np.any(star < 0):
        raise ValueError("s_star must be finite and non-negative")
    try:
        star = np.broadcast_to(star, s.shape)
    except ValueError:
        raise ValueError(f"s_star of shape {star.shape} does not match {s.size} singular values") from None
    d = np.ones_like(s)
    if input_variances is not None:
        d = np.asarray(input_variances, dtype=np.float64)
        if d.shape != s.shape or not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError("input_variances must be one positive value per singular value")
    return s, star, d


def harmful_modes(s, s_star, learnable=None) -> np.ndarray:
    """0-based indices of the modes that fully learned raise E[L_pert]: s_i < s*, among the
    modes the network can learn (a mode a width-h network never learns cannot harm it).

    A mode at the threshold changes E[L_pert] by exactly zero and is not harmful; s* is
    usually computed in floating point (0.05²·40 = 0.10000000000000002), so the comparison
    allows a relative 1e-12 for rounding.

    Args:
      s: (r,) singular values (any order).
      s_star: scalar or (r,) threshold(s) from `critical_singular_value`.
      learnable: (r,) bool mask of the modes the network can learn (`kept_modes(teacher,
        d_hidden)`), or None (every mode).
    Returns:
      (k,) int array of indices, increasing.
    """
    s, star, _ = _check_spectrum(s, s_star)
    harmful = s < star * (1 - 1e-12)
    if learnable is not None:
        learnable = np.asarray(learnable)
        if learnable.shape != s.shape or learnable.dtype != bool:
            raise ValueError("learnable must be a boolean mask, one entry per singular value")
        harmful &= learnable
    return np.flatnonzero(harmful)


def noisy_optimum(s, s_star, input_variances=None) -> np.ndarray:
    """Each mode's strength minimising E[L_pert] (balanced aligned weights).

    Per mode E = ½ d_i (a − s_i/d_i)² + ½ s*_i a + const, so
    a_i = (s_i − s*_i/2)/d_i, or 0 when s_i < s*_i/2. Whitened: a_i = max(s_i − s*/2, 0).

    Args:
      s: (r,) singular values of Σyx.
      s_star: scalar or (r,) balanced threshold(s) from `critical_singular_value`.
      input_variances: (r,) d_i, or None (whitened).
    Returns:
      (r,) optimal mode strengths a_i.
    """
    s, star, d = _check_spectrum(s, s_star, input_variances)
    return np.maximum(s - 0.5 * star, 0.0) / d


def rise_bound_terms(s, s_star, input_variances=None) -> np.ndarray:
    """Per-mode rise g_i of E[L_pert] from the mode's noisy optimum to full learning.

    g_i = s*²/8 when s_i ≥ s*/2, ½ s_i (s* − s_i) otherwise (THEORY.md §4), each divided
    by d_i for co-diagonal inputs. At convergence E[L_pert] exceeds its minimum over
    a trajectory by at most Σ_i g_i. Balanced aligned weights.

    Args:
      s: (r,) singular values of Σyx.
      s_star: scalar or (r,) balanced threshold(s) from `critical_singular_value`.
      input_variances: (r,) d_i, or None (whitened).
    Returns:
      (r,) g_i in loss units.
    """
    s, star, d = _check_spectrum(s, s_star, input_variances)
    return np.where(s >= 0.5 * star, star**2 / 8.0, 0.5 * s * (star - s)) / d


def modal_expected_perturbed_loss(teacher: Teacher, mode_strengths, d_hidden: int, sigma1, sigma2=None) -> np.ndarray:
    """E[L_pert] of aligned balanced weights from their mode strengths alone.

    ‖W2‖² = Σ a_i and tr(W1ΣxW1ᵀ) = Σ d_i a_i, so
    E[L_pert] = ½ Σ d_i (a_i − s_i/d_i)² + ½[σ2² d_out Σ d_i a_i + σ1² tr(Σx) Σ a_i
    + σ1²σ2² tr(Σx) h d_out]. Exact for aligned balanced init under gradient flow or GD.

    Args:
      teacher: the teacher (s, d_i, d_in, d_out).
      mode_strengths: (..., T, r) mode strengths a_i (any leading axes, e.g. a
        Trajectory's `mode_strengths`).
      d_hidden: hidden width h.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0, broadcasting to (..., T).
    Returns:
      (..., T) expected perturbed loss in loss units.
    """
    a = np.asarray(mode_strengths, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != teacher.rank:
        raise ValueError(f"mode strengths must end in an axis of {teacher.rank} modes (got shape {a.shape})")
    if np.any(a < 0):
        raise ValueError("aligned balanced mode strengths are non-negative")
    if d_hidden < 1:
        raise ValueError("hidden width must be at least 1")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    d = teacher.variances
    trace = teacher.d_in - teacher.rank + d.sum()
    penalty = _penalty((a * d).sum(-1), a.sum(-1), trace, teacher.d_out, d_hidden, s1, s2)
    return modal_loss(teacher, a) + penalty
