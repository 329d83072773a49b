"""One fused pass over every step of the exact per-mode GD map, reduced on the fly.

Every sweep over a whole trajectory (predictions, phase diagrams, schedules, figures)
goes through `sweep`: it advances the exact map a_{k+1} = a_k (1 + η_k (s − d·a_k))²
(THEORY.md §3, the same step as `gd_modes`) and, inside the jitted loop, keeps

- the expected perturbed loss E[L_pert] at the current step for every noise setting of a
  grid (exact formula of `_noise.py` for aligned balanced weights), its running minimum,
  the first step that reaches it (the exact argmin) and its value at the last step;
- the first step at which each mode reaches each of a list of thresholds;
- the strengths at a few requested steps.

The state is O(r × (grid + thresholds)); nothing grows with the number of steps. Steps
are computed in blocks (`block_size`: a (block, r) buffer of at most 4 MiB, or of 16 steps
when the modes are more than 32 768) so that the
per-step work is one fused elementwise update and the reductions over modes are
matrix–vector products over the whole block (vectorised), not one small reduction per
step; a block that runs past the last step repeats that step's strengths, which changes
neither a first minimum nor a first crossing.

Noise settings. Per grid point the per-layer noise variance is affine in the total
strength Σa: σ_l² = p_l + q_l Σa. Absolute noise: p = σ², q = 0. Relative to the layer's
RMS: for aligned balanced weights ‖W1‖² = ‖W2‖² = Σa, so RMS_l² = Σa / size_l and
σ_l² = γ² Σa / size_l (q = γ²/size_l). Relative to the init RMS: p = γ² Σa0 / size_l.
The expectation formula is exact for any weights, so it stays exact when the std is a
function of the weights (the noise is drawn after the weights are fixed).
"""

from __future__ import annotations

import dataclasses
import sys

import jax
import jax.numpy as jnp
import numpy as np

from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher
from ._noise import noise_penalty

# Steps per block of the fused loop: the most steps (BLOCK) whose (steps × modes) float64
# buffer stays within BLOCK_BYTES, at least 16 (`block_size`). On this 2-core machine
# (2 MiB L2 per core, 32 MiB L3), 2048 modes × 2·10⁵-step sweeps ran at 5.1-5.6e8 mode-steps/s
# with 64-step blocks, 6.0-6.9e8 with 256 (4 MiB), 5.1-5.5e8 with 512 and 3.6e8 with 1024
# (benchmarks/bench_core.py prints the rate per block size). The inner scan is not
# unrolled: unroll 2 was 10-20% slower and unroll 4-64 (with optimisation barriers between
# steps) 1.5-10× slower (10⁵ steps); stacking the block and reducing it with three matrix-vector
# products beat per-step sums (1.7×) and one matrix-matrix product (1.3×).
BLOCK = 256
BLOCK_BYTES = 4 * 2**20
CHUNK_MODE_STEPS = 2**28  # mode-steps per jitted call when a progress bar is shown (≈ 0.5 s)
PROGRESS_MODE_STEPS = 5e9  # show a progress bar (stderr) above this many mode-steps

NOISE_KINDS = ("absolute", "init", "rms")


@dataclasses.dataclass(frozen=True, eq=False)
class NoiseGrid:
    """Per-layer noise variances σ_l² = p_l + q_l · Σa for each of S grid points.

    Attributes:
      kind: "absolute", "init" or "rms" (see the module docstring).
      scale1, scale2: (S,) σ (absolute, weight units) or γ (relative, dimensionless).
      p1, q1, p2, q2: (S,) coefficients of the variances of W1 and W2 noise.
    """

    kind: str
    scale1: np.ndarray
    scale2: np.ndarray
    p1: np.ndarray
    q1: np.ndarray
    p2: np.ndarray
    q2: np.ndarray

    def variances(self, total_strength):
        """(σ1², σ2²) broadcast over (S, ...) for total strengths Σa of shape (...)."""
        sa = np.asarray(total_strength, dtype=np.float64)
        ex = (slice(None),) + (None,) * sa.ndim
        return self.p1[ex] + self.q1[ex] * sa, self.p2[ex] + self.q2[ex] * sa

    def stds(self, total_strength):
        """(σ1, σ2): the noise stds per weight entry, (S, ...)."""
        v1, v2 = self.variances(total_strength)
        return np.sqrt(v1), np.sqrt(v2)


def noise_grid(teacher: Teacher, d_hidden: int, scale1, scale2=None, kind: str = "absolute", a0=None) -> NoiseGrid:
    """The noise settings of a sweep: absolute σ, or γ relative to the init or current RMS.

    Args:
      teacher: gives d_in and d_out (layer sizes h·d_in and d_out·h).
      d_hidden: hidden width h.
      scale1, scale2: scalars or (S,) arrays, ≥ 0; scale2 defaults to scale1.
      kind: one of NOISE_KINDS.
      a0: (r,) initial strengths (needed for "init").
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")
    g1 = _check_scale(scale1)
    g2 = g1 if scale2 is None else _check_scale(scale2)
    g1, g2 = (np.array(x, dtype=np.float64) for x in np.broadcast_arrays(g1, g2))
    size1, size2 = d_hidden * teacher.d_in, teacher.d_out * d_hidden
    zero = np.zeros_like(g1)
    if kind == "absolute":
        return NoiseGrid(kind, g1, g2, g1**2, zero, g2**2, zero)
    if kind == "rms":
        return NoiseGrid(kind, g1, g2, zero, g1**2 / size1, zero, g2**2 / size2)
    total0 = float(np.sum(a0))
    return NoiseGrid(kind, g1, g2, g1**2 * total0 / size1, zero, g2**2 * total0 / size2, zero)


def _check_scale(x):
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    if x.ndim != 1 or not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError("noise scale sigma must be a non-negative finite number (or a 1-d list of them)")
    return x


@dataclasses.dataclass(frozen=True, eq=False)
class SweepResult:
    """What one fused pass gives (steps are GD steps 0 … max_steps).

    Attributes:
      min_value: (S,) minimum over all steps of E[L_pert] for each noise setting.
      argmin: (S,) first step at which it is reached (the exact inflection step).
      final_value: (S,) E[L_pert] at max_steps.
      first_crossing: (M, r) first step with a_i ≥ thresholds[m, i], −1 if never.
      final_strengths: (r,) a at max_steps.
      recorded_strengths: (K, r) a at the requested steps, or None.
      argmin_strengths: (S, r) a at each setting's argmin step.
    """

    min_value: np.ndarray
    argmin: np.ndarray
    final_value: np.ndarray
    first_crossing: np.ndarray
    final_strengths: np.ndarray
    recorded_strengths: np.ndarray | None
    argmin_strengths: np.ndarray


def _values(A, s, d, t, p1, q1, p2, q2, trace, d_out, h):
    """E[L_pert] (S, n) of the strengths A (n, r) for every noise setting (numpy or JAX)."""
    u = A - t
    loss = 0.5 * ((u * u) @ d)
    sum_a = A @ (0.0 * d + 1.0)
    sum_da = A @ d
    v1 = p1[:, None] + q1[:, None] * sum_a[None]
    v2 = p2[:, None] + q2[:, None] * sum_a[None]
    return loss[None] + noise_penalty(sum_da[None], sum_a[None], trace, d_out, h, v1, v2)


@jax.jit(static_argnames=("schedule", "block"))
def _advance(state, k_end, n_blocks, s, d, t, lr, noise, thresholds, trace, d_out, h, schedule, block):
    """Advance `state` by n_blocks blocks of steps, freezing the map after step k_end."""
    p1, q1, p2, q2 = noise
    rows = jnp.arange(block)

    def step(carry, k):  # k: 0-based index of the step, producing iterate k + 1
        a, peak = carry
        eta = jnp.where(k < k_end, lr * schedule(k), 0.0)
        a = a * (1.0 + eta * (s - d * a)) ** 2
        return (a, jnp.maximum(peak, a)), a

    def crossings(A, k0, first):
        hit = jnp.min(jnp.where(A[:, None, :] >= thresholds[None], rows[:, None, None], block), 0)
        return jnp.where((first < 0) & (hit < block), k0 + 1 + hit, first)

    def one_block(_, st):
        a, peak, k0, best, best_k, best_a, first, _last = st
        (a, peak), A = jax.lax.scan(step, (a, peak), k0 + rows)
        v = _values(A, s, d, t, p1, q1, p2, q2, trace, d_out, h)  # (S, block)
        vmin = v.min(1)
        at = jnp.min(jnp.where(v == vmin[:, None], rows, block), 1)
        better = vmin < best
        # The running maximum tells whether a mode not yet past a threshold crossed it in
        # this block; only then is the block searched for the first step (rare after the
        # modes are learned).
        new = jnp.any((first < 0) & (peak[None] >= thresholds))
        first = jax.lax.cond(new, crossings, lambda A, k0, first: first, A, k0, first)
        return (a, peak, k0 + block, jnp.where(better, vmin, best), jnp.where(better, k0 + 1 + at, best_k),
                jnp.where(better[:, None], A[at], best_a), first, v[:, -1])

    return jax.lax.fori_loop(0, n_blocks, one_block, state)


def block_size(modes: int) -> int:
    """Steps per block for `modes` (padded) modes: the largest power of two ≤ BLOCK whose
    (steps × modes) float64 buffer fits in BLOCK_BYTES, at least 16."""
    block = BLOCK
    while block > 16 and block * modes * 8 > BLOCK_BYTES:
        block //= 2
    return block


def _bucket(n: int, smallest: int) -> int:
    """n rounded up to a size from a short list (≤ 25% larger), so that problems of similar
    size share one compiled loop: padded modes have s = a = 0 and add exact zeros."""
    if n <= smallest:
        return smallest
    step = 1 << max(int(n - 1).bit_length() - 3, 0)
    return -(-n // step) * step


def sweep(
    teacher: Teacher,
    lr: float,
    max_steps: int,
    a0,
    noise: NoiseGrid,
    d_hidden: int,
    schedule: Schedule = CONSTANT,
    thresholds=None,
    record_steps=None,
    progress: bool | None = None,
    weight_decay: float = 0.0,
) -> SweepResult:
    """One pass over steps 0 … max_steps of the exact GD map from a0 (x64 must be on).

    Args:
      teacher: s, d_i, d_in, d_out.
      lr: peak rate per step (checked by the caller).
      max_steps: last step (≥ 1).
      a0: (r,) initial strengths.
      noise: the noise grid (S settings).
      d_hidden: hidden width h (enters the σ1²σ2² term).
      schedule: rate multiplier per step.
      thresholds: (M, r) strengths whose first crossing is wanted (default: targets / 2).
      record_steps: steps in 0 … max_steps at which to keep the strengths.
      progress: show a progress bar on stderr (default: only for long sweeps).
      weight_decay: λ on both matrices: the map runs with s − λ in place of s
        (`_weight_decay`); the loss and the noise terms keep the teacher's targets.
    """
    r = teacher.rank
    thr = teacher.targets[None] / 2 if thresholds is None else np.asarray(thresholds, dtype=np.float64)
    if thr.ndim != 2 or thr.shape[1] != r:
        raise ValueError(f"thresholds must have shape (M, {r})")
    record = np.zeros(0, dtype=np.int64) if record_steps is None else np.asarray(record_steps, dtype=np.int64)
    if record.ndim != 1 or np.any(record < 0) or np.any(record > max_steps):
        raise ValueError("record_steps must be a 1-d list of steps in 0 … max_steps")
    trace = float(teacher.d_in - r + teacher.variances.sum())
    n_noise = noise.p1.size
    rp, sp = _bucket(r, 16), _bucket(n_noise, 4)

    def pad(x, size, value):
        x = np.asarray(x, dtype=np.float64)
        return np.concatenate([x, np.full(x.shape[:-1] + (size - x.shape[-1],), value)], axis=-1)

    s, d, t = pad(teacher.s - weight_decay, rp, 0.0), pad(teacher.variances, rp, 1.0), pad(teacher.targets, rp, 0.0)
    thr = pad(thr, rp, np.inf)
    grid = tuple(pad(x, sp, 0.0) for x in (noise.p1, noise.q1, noise.p2, noise.q2))
    # numpy arguments go straight to the compiled loop (jnp.asarray here would compile and run
    # a conversion per array: ~0.1 s of a cold start)
    consts = (s, d, t, np.float64(lr), grid, thr, np.float64(trace), np.float64(teacher.d_out), np.float64(d_hidden))
    a = pad(a0, rp, 0.0)
    v0 = _values(a[None], s, d, t, *grid, trace, teacher.d_out, d_hidden)[:, 0]
    state = (a, a, np.int64(0), v0, np.zeros(sp, np.int64), np.repeat(a[None], sp, 0),
             np.where(a[None] >= thr, 0, -1).astype(np.int64), v0)

    stops = np.unique(np.concatenate([record, [max_steps]]))
    recorded = np.empty((record.size, rp))
    if progress is None:
        progress = float(max_steps) * r * max(1, noise.p1.size) ** 0.25 > PROGRESS_MODE_STEPS
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=max_steps, unit="step", unit_scale=True, desc="GD-map sweep", file=sys.stderr, leave=False)
    k, block = 0, block_size(rp)
    for stop in stops:
        while k < stop:
            n = -(-(int(stop) - k) // block)
            if bar is not None:
                n = min(n, max(1, CHUNK_MODE_STEPS // (block * rp)))
            state = _advance(state, np.int64(stop), np.int64(n), *consts, schedule=schedule, block=block)
            k = min(k + n * block, int(stop))
            state = state[:2] + (np.int64(k),) + state[3:]
            if bar is not None:
                jax.block_until_ready(state[0])
                bar.update(k - bar.n)
        if record.size:
            recorded[record == stop] = np.asarray(state[0])
    if bar is not None:
        bar.close()
    a, _, _, best, best_k, best_a, first, last = (np.asarray(x) for x in state)
    S = n_noise
    return SweepResult(best[:S], best_k[:S], last[:S], first[:, :r], a[:r],
                       recorded[:, :r] if record_steps is not None else None, best_a[:S, :r])
