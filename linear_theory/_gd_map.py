"""The exact per-mode map of gradient descent from aligned balanced init."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._closed_form import initial_strengths
from ._stability import stability_limit
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher
from ._trajectory import STEPS, Trajectory, modal_loss
from ._x64 import x64


def check_checkpoints(checkpoints, allow_inf: bool = True) -> np.ndarray:
    """Sorted unique step counts (non-negative integers, and inf if allowed)."""
    c = np.atleast_1d(np.asarray(checkpoints, dtype=np.float64))
    if c.ndim != 1 or c.size == 0:
        raise ValueError("need a non-empty 1-d list of checkpoint steps")
    finite = c[np.isfinite(c)]
    if np.any(np.isnan(c)) or np.any(c < 0) or np.any(finite != np.round(finite)):
        raise ValueError("checkpoint steps must be non-negative integers")
    if not allow_inf and np.any(np.isinf(c)):
        raise ValueError("checkpoint steps must be finite here")
    return np.unique(c)


def check_lr(teacher: Teacher, lr, d_hidden: int | None = None) -> np.ndarray:
    """The per-step rate must be below the stability limit 2/λ_max of the Hessian at the
    balanced fixed point (`stability_limit`: 1/s_max when whitened, 2/max d_n(a_j + a_n)
    with co-diagonal inputs); beyond it GD leaves the aligned balanced path or diverges."""
    lr = np.asarray(lr, dtype=np.float64)
    if not np.all(np.isfinite(lr)) or np.any(lr <= 0):
        raise ValueError("learning rate must be a positive finite number")
    limit = stability_limit(teacher, d_hidden)
    if np.any(lr >= limit):
        what = ("1/s_max" if teacher.input_variances is None
                else "2/λ_max, λ_max = max d_k(a_j + a_k) over the learned modes")
        raise ValueError(
            f"learning rate {lr.max():g} is at or beyond the stability limit {what} = {limit:g} "
            "(the balanced fixed point is unstable there: GD diverges, oscillates or leaves the balanced path)"
        )
    return lr


def segment_scan(step_fn, record_fn, state, gaps):
    """Advance `state` by each gap of steps in turn and record after each gap.

    step_fn(state, k) -> state does one step k (global 0-based index); the recording is
    one lax.scan over the gaps with a lax.fori_loop of the gap's length inside, so there is
    no Python loop per step and the checkpoints are data, not a cause of recompilation.
    """

    def segment(carry, gap):
        state, k = carry
        state = jax.lax.fori_loop(k, k + gap, lambda i, st: step_fn(st, i), state)
        return (state, k + gap), record_fn(state)

    (_, _), out = jax.lax.scan(segment, (state, jnp.asarray(0, gaps.dtype)), gaps)
    return out


def factor_step(b1, b2, eta, s, d, l1=0.0, l2=0.0):
    """One exact GD step on aligned factors (W1 value b1, W2 value b2 per mode) with weight
    decay λ1, λ2: b1 ← b1(1 − ηλ1) + η b2 r, b2 ← b2(1 − ηλ2) + η b1 r, r = s − d b1 b2
    (both from the same iterate; λ = 0 multiplies by exactly 1)."""
    r = s - d * b1 * b2
    return b1 * (1.0 - eta * l1) + eta * b2 * r, b2 * (1.0 - eta * l2) + eta * b1 * r


@jax.jit(static_argnames=("schedule",))
def _factor_scan(b1, b2, s, d, lr, l1, l2, gaps, schedule):
    def step(b, k):
        return factor_step(*b, lr * schedule(k), s, d, l1, l2)

    return segment_scan(step, lambda b: b, (b1, b2), gaps)


@jax.jit(static_argnames=("schedule",))
def _map_scan(a0, s, d, lr, gaps, schedule):
    def step(a, k):
        eta = lr * schedule(k)
        return a * (1.0 + eta * (s - d * a)) ** 2

    return segment_scan(step, lambda a: a, a0, gaps)


def finite_gaps(c: np.ndarray) -> np.ndarray:
    """Gaps between consecutive finite checkpoints, starting from step 0."""
    finite = c[np.isfinite(c)].astype(np.int64)
    return np.diff(np.concatenate([[0], finite]))


@x64
def gd_modes(
    teacher: Teacher,
    lr,
    checkpoints,
    init_strength=1e-6,
    d_hidden: int | None = None,
    schedule: Schedule = CONSTANT,
    weight_decay=0.0,
) -> Trajectory:
    """Exact GD from aligned balanced init: a_{k+1} = a_k (1 + η_k (s − d·a_k))².

    With weight decay (λ1/2)‖W1‖² + (λ2/2)‖W2‖² (`_weight_decay`): equal λ gives the same map
    with s − λ in place of s (weights stay balanced); λ1 ≠ λ2 runs the exact map on the two
    factors per mode (`factor_step`), and the norms are then Σ b1², Σ b2².

    Args:
      teacher: the teacher.
      lr: peak per-step learning rate η (below `stability_limit`: η·s_max < 1 when whitened).
      checkpoints: steps at which to record (non-negative integers; inf = fixed point).
      init_strength: a0, scalar or one per mode.
      d_hidden: hidden width; modes beyond it stay at zero.
      schedule: learning-rate multiplier per step (constant by default).
      weight_decay: λ on both matrices, or (λ1 on W1, λ2 on W2); default 0.
    Returns:
      A Trajectory in steps. With equal decay balance is conserved exactly, so
      ‖W1‖² = ‖W2‖² = Σ a_i. inf is the fixed point (`decayed_fixed_point` with decay).
    """
    from ._weight_decay import check_weight_decay, decayed_fixed_point

    lr = float(check_lr(teacher, lr, d_hidden))
    l1, l2 = check_weight_decay(weight_decay)
    c = check_checkpoints(checkpoints)
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    a = np.empty((c.size, teacher.rank))
    n1, n2 = np.empty(c.size), np.empty(c.size)  # ‖W1‖², ‖W2‖² (= Σa when the decay is equal)
    fin = np.isfinite(c)
    s, d, gaps = (jax.device_put(x) for x in (teacher.s - l1, teacher.variances, finite_gaps(c)))
    if fin.any() and l1 == l2:
        a[fin] = np.asarray(_map_scan(jax.device_put(a0), s, d, lr, gaps, schedule))
        n1[fin] = n2[fin] = a[fin].sum(-1)
    elif fin.any():
        b = np.sqrt(a0)
        b1, b2 = (np.asarray(x) for x in _factor_scan(b, b, jax.device_put(teacher.s), d, lr, l1, l2, gaps, schedule))
        a[fin], n1[fin], n2[fin] = b1 * b2, (b1**2).sum(-1), (b2**2).sum(-1)
    if (~fin).any():
        if l1 == l2 == 0:
            fp = fp1 = fp2 = np.where(a0 > 0, teacher.targets, 0.0)
        else:
            fp, fp1, fp2 = (np.where(a0 > 0, x, 0.0) for x in decayed_fixed_point(teacher, (l1, l2), d_hidden))
        a[~fin], n1[~fin], n2[~fin] = fp, fp1.sum(), fp2.sum()
    return Trajectory(
        times=c,
        time_unit=STEPS,
        mode_strengths=a,
        loss=modal_loss(teacher, a),
        w1_sq_norm=n1,
        w2_sq_norm=n2,
        teacher=teacher,
        d_hidden=teacher.rank if d_hidden is None else d_hidden,
        method="exact per-mode GD map (aligned balanced init)" + (
            "" if l1 == l2 == 0 else f", weight decay λ1 = {l1:g}, λ2 = {l2:g}"),
        lr=lr,
        schedule=schedule,
    )
