"""Weight decay, per matrix: L + (λ1/2)‖W1‖² + (λ2/2)‖W2‖², and the decay that Gaussian
weight noise asks for.

Per mode (aligned weights W1 = R diag(b) Vᵀ, W2 = U diag(c) Rᵀ, co-diagonal Σx, r = s − d·bc):

    GD:   b ← b(1 − ηλ1) + η c r,   c ← c(1 − ηλ2) + η b r   (both from the same iterate).

Equal decay λ1 = λ2 = λ keeps b = c = √a, and the map is the plain one with s → s − λ:

    a ← a (1 + η (s − λ − d a))²,   flow  da/dt = 2a(s − λ − d a),

so the closed form of gradient flow is Saxe's with s − λ in place of s (a mode with s ≤ λ
decays to 0). For λ1 ≠ λ2 balance is not conserved (d/dt(b² − c²) = −2λ1b² + 2λ2c²) and no
closed form is known to us: the exact per-mode map on (b, c) is the reference.

Fixed point (any λ1, λ2 > 0). Stationarity: c(d a − s) = −λ1 b, b(d a − s) = −λ2 c, a = bc.
Multiplying, (d a − s)² = λ1 λ2, so with μ = √(λ1 λ2)

    a = max(s − μ, 0)/d,   b² = a √(λ2/λ1),   c² = a √(λ1/λ2)    (λ1 b² = λ2 c²).

It is the global minimum of the regularised loss: by AM–GM (λ1b² + λ2c²)/2 ≥ μ|bc| with
equality iff λ1b² = λ2c², leaving ½d(a − s/d)² + μa per mode; a mode is worth keeping by
(s − μ)₊²/(2d), so a width-h network keeps the h largest (s_i − μ)₊/√d_i. With exactly one
of λ1, λ2 zero the infimum is not attained (the decayed factor shrinks to 0 while the other
grows): there is no fixed point.

Noise-optimal decay (whitened inputs, absolute noise). THEORY §4: E[L_pert] = L
+ ½[σ2² d_out ‖W1‖² + σ1² d_in ‖W2‖²] + const, i.e. exactly the ℓ2 penalty with

    λ1* = σ2² d_out  (on W1),   λ2* = σ1² d_in  (on W2).

GD with (λ1*, λ2*) is GD on E[L_pert] itself, and its fixed point a = s − σ1σ2√(d_in d_out) is
the minimiser of E[L_pert] over all weights. Among (λ1, λ2) this is the unique minimiser of
E[L_pert] at the fixed point: there E[L_pert] = Σ ½(a − s)² + ½a(λ1*/ρ + λ2*ρ), ρ = √(λ1/λ2),
least at ρ = √(λ1*/λ2*) and then at μ = √(λ1*λ2*). With one shared λ (balanced fixed point)
the best is λ = s*/2 = (σ1² d_in + σ2² d_out)/2, giving a = s − s*/2, the balanced noisy
optimum of THEORY §4 (= the per-matrix optimum when σ1² d_in = σ2² d_out). With co-diagonal
inputs the noise penalises tr(W1ΣxW1ᵀ), not ‖W1‖²: no plain weight decay equals it.
"""

from __future__ import annotations

import numpy as np

from ._teacher import Teacher


def check_weight_decay(weight_decay) -> tuple[float, float]:
    """(λ1, λ2) from λ (both matrices) or a pair (λ1 on W1, λ2 on W2); finite, ≥ 0."""
    wd = np.atleast_1d(np.asarray(weight_decay, dtype=np.float64))
    if wd.ndim != 1 or wd.size not in (1, 2):
        raise ValueError("weight decay must be one number λ or a pair (λ1 on W1, λ2 on W2)")
    if not np.all(np.isfinite(wd)) or np.any(wd < 0):
        raise ValueError("weight decay must be a non-negative number")
    return float(wd[0]), float(wd[-1])


def is_equal(weight_decay) -> bool:
    l1, l2 = check_weight_decay(weight_decay)
    return l1 == l2


def effective_decay(weight_decay) -> float:
    """μ = √(λ1 λ2): the shrinkage of every mode at the fixed point, a = (s − μ)/d."""
    l1, l2 = check_weight_decay(weight_decay)
    return float(np.sqrt(l1 * l2))


def decayed_fixed_point(teacher: Teacher, weight_decay=0.0, d_hidden: int | None = None):
    """(a, b², c²) per mode (r,) at the global minimum of the regularised loss (module doc).

    a = max(s − μ, 0)/d on the min(h, r) modes with the largest (s − μ)₊/√d (ties in the
    given order); b² (on W1) = a√(λ2/λ1), c² (on W2) = a√(λ1/λ2); balanced when λ1 = λ2.
    Raises ValueError when exactly one of λ1, λ2 is zero (no minimum is attained).
    """
    l1, l2 = check_weight_decay(weight_decay)
    if (l1 == 0) != (l2 == 0):
        raise ValueError("with weight decay on one matrix only there is no fixed point (the decayed factor "
                         "shrinks to 0 while the other grows without bound)")
    mu = np.sqrt(l1 * l2)
    d = teacher.variances
    gain = np.maximum(teacher.s - mu, 0.0) / np.sqrt(d)
    r = teacher.rank
    keep = np.zeros(r, dtype=bool)
    h = r if d_hidden is None else int(d_hidden)
    keep[np.argsort(-gain, kind="stable")[: min(h, r)]] = True
    a = np.where(keep, np.maximum(teacher.s - mu, 0.0) / d, 0.0)
    ratio = 1.0 if l1 == l2 else np.sqrt(l2 / l1)
    return a, a * ratio, a / ratio


def noise_optimal_weight_decay(teacher: Teacher, sigma1, sigma2=None) -> tuple[float, float]:
    """(λ1*, λ2*) = (σ2² d_out, σ1² d_in): the per-matrix weight decay that equals absolute
    Gaussian weight noise of stds σ1 (W1), σ2 (W2) in expectation (whitened inputs), so that
    GD's fixed point minimises E[L_pert]. Squared weight units⁻¹ × loss units (like λ)."""
    if teacher.input_variances is not None:
        raise ValueError("the noise penalty equals a plain weight decay only for whitened inputs "
                         "(with Σx it penalises tr(W1ΣxW1ᵀ))")
    s1 = float(sigma1)
    s2 = s1 if sigma2 is None else float(sigma2)
    if not (np.isfinite(s1) and np.isfinite(s2)) or min(s1, s2) < 0:
        raise ValueError("noise stds must be finite and non-negative")
    return s2**2 * teacher.d_out, s1**2 * teacher.d_in


def balanced_noise_optimal_weight_decay(teacher: Teacher, sigma1, sigma2=None) -> float:
    """The best single λ on both matrices: s*/2 = (σ1² d_in + σ2² d_out)/2 (whitened)."""
    l1, l2 = noise_optimal_weight_decay(teacher, sigma1, sigma2)
    return 0.5 * (l1 + l2)
