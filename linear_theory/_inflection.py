"""An estimate of the inflection step that needs no pass over the steps.

The exact inflection step (argmin over all GD steps of E[L_pert]) comes from the fused
sweep (`_sweep.py`). The estimate replaces the exact GD trajectory by the closed-form
gradient flow with each mode's clock rescaled so that its early growth matches GD:
a_{k+1} ≈ a_k (1 + η s_i)² while a_k ≪ s_i, i.e. flow time t_i(k) = k ln(1 + η s_i)/s_i
instead of η k. E[L_pert] is evaluated along that curve (the same exact expectation the
sweep uses, any noise kind) and minimised over integer steps by a log grid refined twice.

Error band (tested in tests/test_inflection.py, measured in benchmarks/bench_inflection.py):
on power-law spectra s_k = s1 k^−α with α ∈ [0.5, 3], r ≤ 64, lr·s1 ≤ 0.5, a0 ∈ [1e−8, 1e−3],
whitened inputs, constant rate, absolute noise with s* = σ²(d_in + d_out) in [s1/20, 0.9 s1], |estimate − exact| ≤ 5% of the exact step + 2 steps (ESTIMATE_BAND_TEXT;
measured on a 144-case grid of that family: at most 2.3% + 2 steps).
The older one-line estimate ln(s*/a0)/(2 s* lr) (`inflection_step_estimate`) can be off
by a factor of 3 on the same family; it is kept as a formula.

Step 0: when no mode within the hidden width has s_i > s*_i/2, learning any mode only
raises E[L_pert] (each mode's noisy optimum is a_i = 0), so the best model under noise is
the initial one: the estimate is 0, with that reason (absolute or init-relative noise).
"""

from __future__ import annotations

import numpy as np

from ._closed_form import flow_strengths
from ._sweep import NoiseGrid, _values
from ._teacher import Teacher

ESTIMATE_BAND = (0.05, 2)  # |estimate − exact| ≤ 0.05 × exact + 2 steps on the documented family
ESTIMATE_BAND_TEXT = ("±(5% + 2 steps) of the exact argmin on power-law spectra s_k = s1 k^−α, α ∈ [0.5, 3], "
                      "r ≤ 64, lr·s1 ≤ 0.5, a0 ∈ [1e−8, 1e−3], whitened inputs, constant rate, absolute noise "
                      "with s1/20 ≤ s* ≤ 0.9 s1 (tests/test_inflection.py)")
STEP0_REASON = ("no mode within the hidden width has s_i > s*_i/2: every mode's noisy optimum is a_i = 0, so "
                "learning anything raises E[L_pert] and the best model under noise is the initial one")


def approximate_strengths(teacher: Teacher, lr: float, a0, steps) -> np.ndarray:
    """Closed-form flow on a per-mode clock t_i = k ln(1 + lr s_i)/s_i, shape (K, r)."""
    k = np.asarray(steps, dtype=np.float64)[:, None]
    s, d = teacher.s, teacher.variances
    return flow_strengths(s, a0, k * np.log1p(lr * s) / s, d)


def _energy(teacher, lr, a0, noise, d_hidden, steps, chunk: int = 32):
    """E[L_pert] (S, K) of the approximate strengths at `steps`, `chunk` steps at a time (work
    memory O(chunk × r), not O(K × r))."""
    steps = np.asarray(steps)
    trace = float(teacher.d_in - teacher.rank + teacher.variances.sum())
    parts = [_values(approximate_strengths(teacher, lr, a0, steps[i : i + chunk]), teacher.s, teacher.variances,
                     teacher.targets, noise.p1, noise.q1, noise.p2, noise.q2, trace, teacher.d_out, d_hidden)
             for i in range(0, steps.size, chunk)]
    return np.concatenate(parts, axis=1)


def starts_at_step_0(teacher: Teacher, noise: NoiseGrid, d_hidden: int) -> np.ndarray:
    """(S,) True where no mode within the hidden width has s_i > s*_i / 2 (constant-std
    noise only; False for RMS-relative noise, whose std changes along the path)."""
    if noise.kind == "rms":
        return np.zeros(noise.p1.shape, dtype=bool)
    trace = float(teacher.d_in - teacher.rank + teacher.variances.sum())
    d = teacher.variances[:d_hidden]
    kappa = noise.p1[:, None] * trace + noise.p2[:, None] * teacher.d_out * d[None]  # s*_i per setting
    return ~np.any(teacher.s[None, :d_hidden] > kappa / 2, axis=1)


def inflection_estimate(teacher: Teacher, lr: float, a0, noise: NoiseGrid, d_hidden: int, max_steps: int,
                        n_grid: int = 256) -> np.ndarray:
    """Estimated inflection step (integer GD steps in 0 … max_steps) for each noise setting.

    Args:
      teacher, lr: the problem (constant rate lr per step).
      a0: (r,) initial strengths.
      noise: the noise settings (S of them).
      d_hidden: hidden width h.
      max_steps: the horizon; the estimate is the argmin over 0 … max_steps.
      n_grid: points per refinement level.
    Returns:
      (S,) int64 steps; 0 where `starts_at_step_0`.
    """
    grid = np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(max_steps), n_grid))])).astype(np.int64)
    out = np.empty(noise.p1.shape, dtype=np.int64)
    energy = _energy(teacher, lr, a0, noise, d_hidden, grid)
    for j in range(out.size):
        one = NoiseGrid(noise.kind, *(x[j : j + 1] for x in (noise.scale1, noise.scale2, noise.p1, noise.q1,
                                                              noise.p2, noise.q2)))
        g, e = grid, energy[j]
        for _ in range(4):  # each level narrows the bracket around the minimum by ~n_grid/2
            i = int(np.argmin(e))
            lo, hi = int(g[max(i - 1, 0)]), int(g[min(i + 1, g.size - 1)])
            dense = hi - lo + 1 <= n_grid
            g = np.arange(lo, hi + 1) if dense else np.unique(np.round(np.linspace(lo, hi, n_grid))).astype(np.int64)
            e = _energy(teacher, lr, a0, one, d_hidden, g)[0]
            if dense:
                break
        out[j] = g[int(np.argmin(e))]
    out[starts_at_step_0(teacher, noise, d_hidden)] = 0
    return out
