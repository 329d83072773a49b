"""Spectral detectability: which learned singular values the noise hides (THEORY.md §4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._fixed_point import kept_modes
from ._teacher import Teacher, random_orthonormal
from ._x64 import x64


def bbp_threshold(sigma_e, d_in: int, d_out: int):
    """Benaych-Georges–Nadakuditi threshold for a rank-few signal plus i.i.d. noise of std
    σe on a d_out × d_in matrix: a singular value a is visible in the noisy matrix's
    spectrum (outlier, with a correlated singular vector) iff a > σe (d_in d_out)^{1/4}."""
    return np.asarray(sigma_e, dtype=np.float64) * (d_in * d_out) ** 0.25


def end_to_end_detectable(mode_strengths, sigma_e, d_in: int, d_out: int) -> np.ndarray:
    """Mask (…, r): which strengths lie above the threshold for end-to-end noise σe."""
    return np.asarray(mode_strengths) > bbp_threshold(sigma_e, d_in, d_out)


def aligned_weights(teacher: Teacher, a, d_hidden: int, seed: int = 0):
    """Balanced weights aligned with the teacher holding strengths `a` on the min(h, r) modes a
    width-h network keeps (`kept_modes`): W1 = R diag(√a) Vᵀ, W2 = U diag(√a) Rᵀ."""
    a = np.asarray(a, dtype=np.float64)
    keep = kept_modes(teacher, d_hidden)
    R = random_orthonormal(np.random.default_rng(seed), d_hidden, int(keep.sum()))
    root = np.sqrt(np.maximum(a[..., keep], 0.0))
    W1 = np.einsum("hk,...k,ik->...hi", R, root, teacher.V[:, keep])
    W2 = np.einsum("ok,...k,hk->...oh", teacher.U[:, keep], root, R)
    return W1, W2


@jax.jit
def _perturbation_norms(W1, W2, s1, s2, keys):
    """‖E‖₂ and ‖E‖_F for each key (axis 0) and each weight pair (leading axes of W1, W2)."""

    def one(key):
        k1, k2 = jax.random.split(key)
        Z1 = jax.random.normal(k1, W1.shape[-2:], W1.dtype)
        Z2 = jax.random.normal(k2, W2.shape[-2:], W2.dtype)
        E = s2 * Z2 @ W1 + s1 * W2 @ Z1 + s1 * s2 * Z2 @ Z1
        return jnp.linalg.norm(E, ord=2, axis=(-2, -1)), jnp.sqrt(jnp.sum(E**2, axis=(-2, -1)))

    return jax.vmap(one)(keys)


@x64
def factor_noise_floor(W1, W2, sigma1: float, sigma2: float | None = None, n_samples: int = 64, seed: int = 0):
    """Monte Carlo noise floor for noise on the factors: the perturbation of the end-to-end
    map is E = σ2 Z2 W1 + σ1 W2 Z1 + σ1σ2 Z2 Z1 (not i.i.d.). Returns a dict with the mean
    and standard error of its spectral norm ‖E‖₂ (the floor a learned singular value must
    clear to stand out) and the RMS entry std σe,eff = ‖E‖_F/√(d_in d_out), whose BBP
    threshold is the i.i.d.-equivalent floor. W1 (..., h, d_in), W2 (..., d_out, h): every
    entry is (...)-shaped; the same noise draws serve every weight pair."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    if min(sigma1, sigma2) < 0 or n_samples < 2:
        raise ValueError("need σ ≥ 0 and at least 2 samples")
    keys = jax.random.split(jax.random.key(seed), n_samples)
    spec, frob = (np.asarray(x) for x in _perturbation_norms(jnp.asarray(W1), jnp.asarray(W2), sigma1, sigma2, keys))
    d_out, d_in = np.shape(W2)[-2], np.shape(W1)[-1]
    sigma_e = np.sqrt(np.mean(frob**2, axis=0) / (d_in * d_out))
    return dict(
        spectral_norm=spec.mean(0),
        spectral_norm_stderr=spec.std(0, ddof=1) / np.sqrt(n_samples),
        sigma_e_equivalent=sigma_e,
        bbp_threshold_equivalent=bbp_threshold(sigma_e, d_in, d_out),
    )


def detectability_along(teacher: Teacher, mode_strengths, d_hidden: int, sigma: float, n_samples: int = 64, seed: int = 0):
    """For each recorded time (rows of mode_strengths, aligned balanced weights): the factor
    noise floor by Monte Carlo and which modes lie above it, and the i.i.d. end-to-end view
    with σe = σ. Returns a dict of arrays over time."""
    a = np.atleast_2d(mode_strengths)
    W1, W2 = aligned_weights(teacher, a, d_hidden, seed)
    floor = factor_noise_floor(W1, W2, sigma, sigma, n_samples, seed)["spectral_norm"]
    return dict(
        factor_noise_floor=floor,
        modes_above_factor_floor=np.sum(a > floor[:, None], axis=1),
        end_to_end_threshold=float(bbp_threshold(sigma, teacher.d_in, teacher.d_out)),
        modes_above_end_to_end_threshold=np.sum(end_to_end_detectable(a, sigma, teacher.d_in, teacher.d_out), axis=1),
    )
