"""Spectral detectability: which learned singular values the noise hides (THEORY.md §4)."""

from __future__ import annotations

import numpy as np

from ._fixed_point import kept_modes
from ._teacher import Teacher, random_orthonormal


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


def factor_noise_norms(W1, W2, sigma1: float, sigma2: float | None = None, n_samples: int = 64, seed: int = 0):
    """Size of the end-to-end perturbation made by noise on the factors, by Monte Carlo.

    E = σ2 Z2 W1 + σ1 W2 Z1 + σ1σ2 Z2 Z1 (not i.i.d.: it grows with the weights). Returns a
    dict with the mean and standard error of its operator norm ‖E‖₂ ("operator_norm": how
    large the noise matrix is, not a detection threshold, see
    `factor_noise_detection_threshold`), its per-entry RMS σe,eff = √(E‖E‖²_F/(d_in d_out))
    ("iid_equivalent_std"), and the BBP threshold σe,eff (d_in d_out)^{1/4} that i.i.d.
    end-to-end noise of that std would have ("iid_equivalent_threshold"). W1 (..., h, d_in),
    W2 (..., d_out, h): every entry is (...)-shaped; the same draws (numpy, from `seed`)
    serve every weight pair."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    if min(sigma1, sigma2) < 0 or n_samples < 2:
        raise ValueError("need σ ≥ 0 and at least 2 samples")
    W1, W2 = np.asarray(W1, dtype=np.float64), np.asarray(W2, dtype=np.float64)
    rng = np.random.default_rng(seed)
    (h, d_in), d_out = W1.shape[-2:], W2.shape[-2]
    batch = (n_samples,) + (1,) * (W1.ndim - 2)
    Z1 = rng.standard_normal(batch + (h, d_in))
    Z2 = rng.standard_normal(batch + (d_out, h))
    E = sigma2 * Z2 @ W1 + sigma1 * W2 @ Z1 + sigma1 * sigma2 * Z2 @ Z1  # (n, ..., d_out, d_in)
    spec = np.linalg.norm(E, ord=2, axis=(-2, -1))
    frob_sq = np.sum(E**2, axis=(-2, -1))
    sigma_e = np.sqrt(frob_sq.mean(0) / (d_in * d_out))
    return dict(
        operator_norm=spec.mean(0),
        operator_norm_stderr=spec.std(0, ddof=1) / np.sqrt(n_samples),
        iid_equivalent_std=sigma_e,
        iid_equivalent_threshold=bbp_threshold(sigma_e, d_in, d_out),
    )


def half_recovery_strength(d_in: int, d_out: int, sigma1: float, sigma2: float | None = None):
    """Derived strength at which one mode of a width-1 network is half recovered under factor noise.

    With h = 1 the perturbed product is exactly rank one, (√a u + σ2 z2)(√a v + σ1 z1)ᵀ with
    z2 ~ N(0, I_dout), z1 ~ N(0, I_din), so its singular vectors are the two noisy factors and
    |uᵀũ||vᵀṽ| ≈ a / √((a + p)(a + q)), p = σ2² d_out, q = σ1² d_in (‖z‖² replaced by its
    mean). Setting that to ½: 3a² − (p + q) a − pq = 0, a½ = [(p + q) + √((p + q)² + 12pq)]/6
    (= σ² d for a square d × d map). A wider network adds σ1σ2 Z2Z1 from its empty hidden
    units, which raises the threshold (`factor_noise_detection_threshold` measures it)."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    p, q = sigma2**2 * d_out, sigma1**2 * d_in
    return ((p + q) + np.sqrt((p + q) ** 2 + 12 * p * q)) / 6


def top_pair_overlap(a, d_in: int, d_out: int, d_hidden: int, sigma1: float, sigma2: float | None = None,
                     n_samples: int = 256, seed: int = 0):
    """Monte Carlo recovery of one learned mode of strength a under factor noise.

    A width-h network holding one mode, W1 = √a e₁e₁ᵀ, W2 = √a e₁e₁ᵀ (the noise is rotation
    invariant, so the mode's directions do not matter), perturbed to (W2 + σ2Z2)(W1 + σ1Z1);
    the recovery is |uᵀũ₁||vᵀṽ₁| for the top singular pair (ũ₁, ṽ₁) of the perturbed product:
    1 when the mode is the top pair untouched, ~1/√(d_in d_out) when the noise is. Returns
    (mean, standard error) over `n_samples` draws; a may be an array (same draws for each)."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    rng = np.random.default_rng(seed)
    Z1 = rng.standard_normal((n_samples, d_hidden, d_in))
    Z2 = rng.standard_normal((n_samples, d_out, d_hidden))
    return _top_pair_overlap(np.asarray(a, dtype=np.float64), Z1, Z2, sigma1, sigma2)


def _top_pair_overlap(a, Z1, Z2, sigma1, sigma2):
    a = np.atleast_1d(a)
    mean, err = np.empty(a.shape), np.empty(a.shape)
    for i, x in enumerate(a.ravel()):
        M1, M2 = sigma1 * Z1, sigma2 * Z2
        M1[:, 0, 0] += np.sqrt(x)
        M2[:, 0, 0] += np.sqrt(x)
        u, _, vt = np.linalg.svd(M2 @ M1)
        o = np.abs(u[:, 0, 0]) * np.abs(vt[:, 0, 0])
        mean.flat[i], err.flat[i] = o.mean(), o.std(ddof=1) / np.sqrt(o.size)
    return mean, err


def factor_noise_detection_threshold(d_in: int, d_out: int, d_hidden: int, sigma1: float, sigma2: float | None = None,
                                     level: float = 0.5, n_samples: int = 256, seed: int = 0) -> float:
    """Detection threshold for factor noise σ(Z2W1 + W2Z1) + σ²Z2Z1, measured by Monte Carlo.

    Method: the strength a at which the mean top-pair recovery |uᵀũ₁||vᵀṽ₁| of a single
    learned mode (`top_pair_overlap`) equals `level` (default ½), found by bisection in log a
    over one fixed set of `n_samples` noise draws (common random numbers, so the mean is a
    smooth increasing function of a). Recovery rises smoothly with a (no sharp BBP edge:
    the noise lives mostly in the mode's own row and column spaces), so the threshold is a
    half-recovery point. For h = 1 it agrees with the derived `half_recovery_strength`.
    It is a single-mode threshold: other learned modes are not included.

    Returns:
      a_c in the units of the mode strengths (singular values).
    """
    sigma2 = sigma1 if sigma2 is None else sigma2
    if min(d_in, d_out, d_hidden) < 1 or min(sigma1, sigma2) <= 0 or not 0 < level < 1 or n_samples < 2:
        raise ValueError("need positive sizes, σ > 0, 0 < level < 1 and at least 2 samples")
    rng = np.random.default_rng(seed)
    Z1 = rng.standard_normal((n_samples, d_hidden, d_in))
    Z2 = rng.standard_normal((n_samples, d_out, d_hidden))
    score = lambda x: _top_pair_overlap(np.array([x]), Z1, Z2, sigma1, sigma2)[0][0]
    lo = hi = float(half_recovery_strength(d_in, d_out, sigma1, sigma2))
    for _ in range(60):
        if score(lo) < level:
            break
        lo /= 2
    for _ in range(60):
        if score(hi) >= level:
            break
        hi *= 2
    for _ in range(40):  # relative width 2^(log2(hi/lo)/2^40): far below the MC error
        mid = np.sqrt(lo * hi)
        lo, hi = (mid, hi) if score(mid) < level else (lo, mid)
    return float(np.sqrt(lo * hi))


def detectability_along(teacher: Teacher, mode_strengths, d_hidden: int, sigma: float, n_samples: int = 64, seed: int = 0):
    """For each recorded time (rows of mode_strengths, aligned balanced weights), with noise
    of std σ on every weight entry: the operator norm of the factor noise ‖E‖₂ and its i.i.d.
    equivalent BBP threshold (Monte Carlo, `factor_noise_norms`), the single-mode detection
    threshold for factor noise (`factor_noise_detection_threshold`, independent of time) and
    how many modes lie above each threshold. Returns a dict of arrays over time."""
    a = np.atleast_2d(mode_strengths)
    W1, W2 = aligned_weights(teacher, a, d_hidden, seed)
    norms = factor_noise_norms(W1, W2, sigma, sigma, n_samples, seed)
    threshold = factor_noise_detection_threshold(teacher.d_in, teacher.d_out, d_hidden, sigma, sigma,
                                                 n_samples=max(n_samples, 64), seed=seed)
    iid = norms["iid_equivalent_threshold"]
    return dict(
        noise_operator_norm=norms["operator_norm"],
        detection_threshold=threshold,
        modes_above_detection_threshold=np.sum(a > threshold, axis=1),
        iid_equivalent_threshold=iid,
        modes_above_iid_equivalent_threshold=np.sum(a > iid[:, None], axis=1),
    )
