"""Gaussian weight noise on a two-layer linear network: exact expectation and its pieces.

Perturbation (THEORY.md §4): W1 → W1 + σ1 Z1, W2 → W2 + σ2 Z2 with Z1, Z2 independent
i.i.d. N(0, 1) entries. For ANY weights and an input covariance Σx (Σx = I when whitened),
with L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ),

    E[L_pert] = L + ½ [ σ2² d_out tr(W1 Σx W1ᵀ) + σ1² tr(Σx) ‖W2‖² + σ1² σ2² tr(Σx) h d_out ].

Whitened, tr(Σx) = d_in and tr(W1 Σx W1ᵀ) = ‖W1‖². The exact Hessian trace of L is
tr(H) = tr(Σx)‖W2‖² + d_out tr(W1 Σx W1ᵀ), so with σ1 = σ2 = σ the sensitivity
E[L_pert] − L equals ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out. The formula is derived symbolically
in `_symbolic.py`, and checked there and by Monte Carlo (`_noise_estimates.py`) in the
tests. What it implies mode by mode (thresholds, optima) is in `_thresholds.py`.

Shapes: W1 (..., h, d_in), W2 (..., d_out, h); leading batch axes (seeds, learning
rates, checkpoints) must agree between the two and are kept in every output. Loss
values are in the units of L (½ × squared error); noise stds in weight units.
"""

from __future__ import annotations

import jax
import numpy as np

from ._teacher import Teacher
from ._trajectory import population_loss as _loss

NOISE_KINDS = ("absolute", "init", "rms")


# --------------------------------------------------------------------------------------
# Formula cores. They use only `@`, `*`, `.swapaxes`, `.sum` and `.trace`, so the same
# code runs on numpy float arrays, numpy object arrays of sympy symbols (the symbolic
# check in tests/test_symbolic.py) and JAX arrays (Monte Carlo, Hutchinson).


def _sq_norm(X):
    """Squared Frobenius norm over the last two axes."""
    return (X * X).sum(axis=(-2, -1))



def _w1_metric_norm(W1, Sx):
    """tr(W1 Σx W1ᵀ) (= ‖W1‖² when whitened)."""
    if Sx is None:
        return _sq_norm(W1)
    return ((W1 @ Sx) * W1).sum(axis=(-2, -1))


def _input_trace(W1, Sx):
    """tr(Σx) (= d_in when whitened)."""
    return W1.shape[-1] if Sx is None else Sx.trace()


def noise_penalty(w1_metric_sq, w2_sq, input_trace, d_out, h, var1, var2):
    """½ [v2 d_out tr(W1ΣxW1ᵀ) + v1 tr(Σx)‖W2‖² + v1 v2 tr(Σx) h d_out] in the noise variances
    v = σ² of the entries of W1, W2 (numpy or JAX arrays; the sweep passes variances that
    follow the weights' RMS)."""
    return 0.5 * (var2 * d_out * w1_metric_sq + var1 * input_trace * w2_sq + var1 * var2 * input_trace * h * d_out)


def _penalty(w1_metric_sq, w2_sq, input_trace, d_out, h, sigma1, sigma2):
    """½ [σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out]."""
    return noise_penalty(w1_metric_sq, w2_sq, input_trace, d_out, h, sigma1**2, sigma2**2)


def _sensitivity(W1, W2, Sx, sigma1, sigma2):
    """E[L_pert] − L for any weights (formula core)."""
    return _penalty(
        _w1_metric_norm(W1, Sx), _sq_norm(W2), _input_trace(W1, Sx), W2.shape[-2], W1.shape[-2], sigma1, sigma2
    )


def _expected_perturbed_loss(W1, W2, A, Sx, sigma1, sigma2):
    """E[L_pert] for any weights (formula core)."""
    return _loss(W1, W2, A, Sx) + _sensitivity(W1, W2, Sx, sigma1, sigma2)


def _hessian_trace(W1, W2, Sx):
    """tr(H) = tr(Σx)‖W2‖² + d_out tr(W1ΣxW1ᵀ) (formula core)."""
    return _input_trace(W1, Sx) * _sq_norm(W2) + W2.shape[-2] * _w1_metric_norm(W1, Sx)


# --------------------------------------------------------------------------------------
# Input checks.


def _check_weights(W1, W2, teacher: Teacher | None = None):
    """W1, W2 as float64 arrays with matching inner and batch shapes."""
    W1 = np.asarray(W1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    if W1.ndim < 2 or W2.ndim < 2:
        raise ValueError(f"W1 and W2 must be (..., h, d_in) and (..., d_out, h); got shapes {W1.shape}, {W2.shape}")
    if W1.shape[:-2] != W2.shape[:-2]:
        raise ValueError(f"W1 {W1.shape} and W2 {W2.shape} must have the same leading batch axes")
    if W2.shape[-1] != W1.shape[-2]:
        raise ValueError(f"hidden widths differ: W1 {W1.shape} has h = {W1.shape[-2]}, W2 {W2.shape} has {W2.shape[-1]}")
    if teacher is not None and (W1.shape[-1] != teacher.d_in or W2.shape[-2] != teacher.d_out):
        raise ValueError(
            f"weights map {W1.shape[-1]} → {W2.shape[-2]} but the teacher maps {teacher.d_in} → {teacher.d_out}"
        )
    if not (np.all(np.isfinite(W1)) and np.all(np.isfinite(W2))):
        raise ValueError("weights must be finite")
    return W1, W2


def _check_sigmas(sigma1, sigma2, batch_shape=None):
    """Noise stds (σ2 defaults to σ1) as float64 arrays, finite and non-negative."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    out = []
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        s = np.asarray(s, dtype=np.float64)
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"{name} must be finite and non-negative (got {s})")
        if batch_shape is not None:
            try:
                s = np.broadcast_to(s, batch_shape)
            except ValueError:
                raise ValueError(f"{name} of shape {s.shape} does not broadcast to the batch shape {batch_shape}") from None
        out.append(s)
    return tuple(out)


def _covariance(teacher: Teacher | None):
    """Σx of the teacher, or None when its inputs are whitened."""
    if teacher is None or teacher.input_variances is None:
        return None
    return teacher.input_covariance


def _check_count(n, name):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"{name} must be an integer ≥ 2 (got {n!r})")
    return int(n)


def _key(seed):
    """A JAX PRNG key from an int seed, or the key itself."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, jax.Array):
        return seed
    raise ValueError(f"seed must be an int or a JAX PRNG key (got {type(seed).__name__})")


# --------------------------------------------------------------------------------------
# Exact expectation, sensitivity, Hessian trace.


def expected_perturbed_loss(W1, W2, teacher: Teacher, sigma1, sigma2=None) -> np.ndarray:
    """Exact E[L_pert] after Gaussian weight noise, for any weights.

    E[L_pert] = L + ½[σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out],
    L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ), A = teacher.matrix, Σx = teacher.input_covariance
    (I when whitened).

    Args:
      W1: (..., h, d_in) first-layer weights.
      W2: (..., d_out, h) second-layer weights, same leading batch axes.
      teacher: the teacher (A and Σx).
      sigma1, sigma2: noise std on W1 and W2 entries (weight units), ≥ 0; scalars or
        arrays broadcasting to the batch shape. sigma2 defaults to sigma1.
    Returns:
      (...) expected perturbed loss, in loss units (½ × squared error).
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    s1, s2 = _check_sigmas(sigma1, sigma2, W1.shape[:-2])
    return np.asarray(_expected_perturbed_loss(W1, W2, teacher.matrix, _covariance(teacher), s1, s2))


def sensitivity(W1, W2, sigma1, sigma2=None, *, teacher: Teacher | None = None) -> np.ndarray:
    """E[L_pert] − L, the expected loss increase from Gaussian weight noise (exact).

    ½[σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out]; it does not depend
    on the teacher map A, only on Σx. With σ1 = σ2 = σ it equals ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out.

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0.
      teacher: supplies Σx; None (default) or a whitened teacher means Σx = I.
    Returns:
      (...) sensitivity in loss units.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    s1, s2 = _check_sigmas(sigma1, sigma2, W1.shape[:-2])
    return np.asarray(_sensitivity(W1, W2, _covariance(teacher), s1, s2))


def sensitivity_from_norms(w1_sq_norm, w2_sq_norm, d_in, d_out, d_hidden, sigma1, sigma2=None) -> np.ndarray:
    """Sensitivity from recorded squared norms (whitened inputs), e.g. a Trajectory's.

    ½[σ2² d_out ‖W1‖² + σ1² d_in ‖W2‖² + σ1²σ2² d_in h d_out]. For a co-diagonal Σx pass
    tr(W1ΣxW1ᵀ) as `w1_sq_norm` and tr(Σx) as `d_in`.

    Args:
      w1_sq_norm, w2_sq_norm: (...) ‖W1‖², ‖W2‖² (broadcast together).
      d_in, d_out, d_hidden: layer sizes.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0.
    Returns:
      (...) sensitivity in loss units.
    """
    n1, n2 = (np.asarray(x, dtype=np.float64) for x in (w1_sq_norm, w2_sq_norm))
    if np.any(n1 < 0) or np.any(n2 < 0):
        raise ValueError("squared norms must be non-negative")
    if min(d_in, d_out, d_hidden) <= 0:
        raise ValueError("layer sizes must be positive")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    return np.asarray(_penalty(n1, n2, d_in, d_out, d_hidden, s1, s2))


def hessian_trace(W1, W2, *, teacher: Teacher | None = None) -> np.ndarray:
    """Exact trace of the Hessian of L in (W1, W2): tr(Σx)‖W2‖² + d_out tr(W1ΣxW1ᵀ).

    Whitened: d_in‖W2‖² + d_out‖W1‖². It does not depend on A (the residual term of the
    Hessian, tr(Δ2Δ1ΣxEᵀ), has zero trace).

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights.
      teacher: supplies Σx; None or a whitened teacher means Σx = I.
    Returns:
      (...) tr(H), in loss units per squared weight unit.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    return np.asarray(_hessian_trace(W1, W2, _covariance(teacher)))


# --------------------------------------------------------------------------------------
# Relative noise.


def noise_stds(gamma, kind: str = "absolute", W1=None, W2=None, init_stds=None):
    """Per-layer noise stds (σ1, σ2) for a named noise scaling.

    "absolute" (default): σ1 = σ2 = γ.
    "init": σ_l = γ × init std of layer l (`init_stds` = (std1, std2)).
    "rms": σ_l = γ × current RMS of layer l, √(‖W_l‖² / size); grows with training.

    Args:
      gamma: noise scale γ ≥ 0 (weight units for "absolute", dimensionless otherwise).
      kind: one of NOISE_KINDS.
      W1, W2: (..., h, d_in), (..., d_out, h) weights ("rms" only).
      init_stds: (std1, std2) > 0, the layers' init stds ("init" only).
    Returns:
      (σ1, σ2): floats, or (...) arrays over the weights' batch axes for "rms".
    """
    g = np.asarray(gamma, dtype=np.float64)
    if g.ndim != 0 or not np.isfinite(g) or g < 0:
        raise ValueError(f"gamma must be a finite non-negative scalar (got {gamma!r})")
    g = float(g)
    if kind == "absolute":
        return g, g
    if kind == "init":
        if init_stds is None:
            raise ValueError("relative-to-init noise needs init_stds = (std1, std2)")
        stds = np.asarray(init_stds, dtype=np.float64)
        if stds.shape != (2,) or not np.all(np.isfinite(stds)) or np.any(stds <= 0):
            raise ValueError(f"init_stds must be two positive finite stds (got {init_stds!r})")
        return g * float(stds[0]), g * float(stds[1])
    if kind == "rms":
        if W1 is None or W2 is None:
            raise ValueError("RMS-relative noise needs the current weights W1, W2")
        W1, W2 = _check_weights(W1, W2)
        rms1 = np.sqrt(_sq_norm(W1) / (W1.shape[-2] * W1.shape[-1]))
        rms2 = np.sqrt(_sq_norm(W2) / (W2.shape[-2] * W2.shape[-1]))
        return g * rms1, g * rms2
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
