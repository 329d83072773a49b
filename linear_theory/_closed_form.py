"""Gradient flow from aligned balanced init, in closed form (Saxe et al. 2014)."""

from __future__ import annotations

import numpy as np

from ._fixed_point import kept_modes
from ._teacher import Teacher
from ._trajectory import FLOW_TIME, Trajectory, modal_loss


def initial_strengths(teacher: Teacher, init_strength, d_hidden: int | None = None) -> np.ndarray:
    """Per-mode initial strength a0: `init_strength` on the min(h, r) modes a width-h network
    keeps at its best fixed point (`kept_modes`: the largest s_i/√d_i), 0 on the others.

    Aligned init can only place h modes (R is h × r with orthonormal columns); it places
    them on the modes of the best rank-h approximation in the input metric, so the aligned
    dynamics converge to the global minimum. The other modes start, and stay, at zero.
    """
    a0 = np.broadcast_to(np.asarray(init_strength, dtype=np.float64), teacher.s.shape).copy()
    if not np.all(np.isfinite(a0)) or np.any(a0 < 0):
        raise ValueError("init strength must be finite and non-negative")
    if d_hidden is not None:
        if d_hidden < 1:
            raise ValueError("hidden width must be at least 1")
        a0[~kept_modes(teacher, d_hidden)] = 0.0
    return a0


def flow_strengths(s, a0, t, d=1.0):
    """Mode strength a(t) solving da/dt = 2a(s − d·a), a(0) = a0, for flow time t ≥ 0.

    a(t) = c·a0 / (a0 + (c − a0) e^{−2st}) with c = s/d, evaluated as
    c·a0 / (−a0·expm1(−2st) + c·e^{−2st}): both terms of the denominator are ≥ 0, so there is
    no cancellation for a0 on either side of c, no overflow for large s·t (the exponentials
    only underflow to 0, giving a = c) and full relative precision for tiny a0.
    Broadcasts over s, a0, t, d; t = inf gives the fixed point c (0 when a0 = 0).
    s ≤ 0 (weight decay λ ≥ s: s − λ in place of s) decays to 0: for s < 0 both terms of the
    denominator are ≤ 0 (again no cancellation); s = 0 is da/dt = −2d a², a = a0/(1 + 2d a0 t).
    """
    s, a0, t, d = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (s, a0, t, d)))
    c = s / d
    with np.errstate(over="ignore", invalid="ignore"):
        x = 2.0 * s * t
        denom = -a0 * np.expm1(-x) + c * np.exp(-x)
    with np.errstate(invalid="ignore", divide="ignore"):
        a = c * a0 / denom
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        a = np.where(s == 0.0, a0 / (1.0 + 2.0 * d * a0 * t), a)
    return np.where(a0 == 0.0, 0.0, a)


def gradient_flow(
    teacher: Teacher, times, init_strength=1e-6, d_hidden: int | None = None, weight_decay: float = 0.0
) -> Trajectory:
    """Closed-form gradient flow from aligned balanced init, at flow times `times`.

    With weight decay λ on both matrices the flow is the same with s − λ in place of s
    (`_weight_decay`); per-matrix λ1 ≠ λ2 has no closed form here (ValueError).

    Args:
      teacher: the teacher (whitened or co-diagonal inputs).
      times: flow times t = lr × steps, ≥ 0; inf gives the fixed point.
      init_strength: a0, scalar or one per mode.
      d_hidden: hidden width h; modes beyond it are never learned.
    Returns:
      A Trajectory in flow-time units. Balance is conserved, so ‖W1‖² = ‖W2‖² = Σ a_i.
    """
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if t.ndim != 1 or np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError("times must be a 1-d list of non-negative numbers")
    from ._weight_decay import check_weight_decay

    l1, l2 = check_weight_decay(weight_decay)
    if l1 != l2:
        raise ValueError("no closed form for per-matrix weight decay λ1 ≠ λ2 (balance is not conserved); "
                         "use gd_modes(weight_decay=(λ1, λ2))")
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    a = flow_strengths(teacher.s - l1, a0, t[:, None], teacher.variances)
    norm = a.sum(-1)
    return Trajectory(
        times=t,
        time_unit=FLOW_TIME,
        mode_strengths=a,
        loss=modal_loss(teacher, a),
        w1_sq_norm=norm,
        w2_sq_norm=norm.copy(),
        teacher=teacher,
        d_hidden=teacher.rank if d_hidden is None else d_hidden,
        method="closed-form gradient flow (aligned balanced init)",
    )


def learning_time(s, a0, d=1.0):
    """Flow time at which a mode reaches half its target, ln(c/a0 − 1)/(2s), c = s/d."""
    s, a0, d = (np.asarray(x, dtype=np.float64) for x in (s, a0, d))
    return np.log(s / (d * a0) - 1.0) / (2.0 * s)
