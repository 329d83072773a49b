"""The phase diagram of the perturbed loss over (σ, steps), and schedules compared."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._closed_form import initial_strengths
from ._inflection import inflection_estimate
from ._thresholds import critical_singular_value
from ._predict import summarize_path
from ._schedules import KINDS, Schedule
from ._sweep import _values
from ._teacher import Teacher
from ._trajectory import modal_loss


def log_steps(max_steps: int, n: int = 60) -> np.ndarray:
    """0 and about n log-spaced integer steps from 1 to max_steps (unique, sorted)."""
    return np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(max_steps), n))]).astype(np.int64))


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseDiagram:
    """E[L_pert] over a (σ, step) grid for σ1 = σ2 = σ, whitened or co-diagonal inputs.

    Attributes:
      sigmas: (S,) noise std per weight entry ("absolute"), or the factor γ of the layer's
        RMS at init ("init") or its current RMS ("rms").
      steps: (T,) GD steps of the grid (log-spaced).
      expected_perturbed_loss: (S, T).
      clean_loss: (T,) the loss without noise.
      mode_strengths: (T, r) along the exact GD map.
      critical_singular_value: (S,) s*(σ) = σ²(d_in + d_out) when whitened; (S, r) with
        co-diagonal inputs, s*_i(σ) = σ²(tr Σx + d_out d_i), one per mode; with the noise stds at
        the inflection step (they change along the path for "rms" only).
      inflection_step: (S,) exact argmin over all steps 0 … max_steps (not only the grid).
      inflection_step_estimate: (S,) the estimate of `_inflection.py` (constant rate; −1 for
        a decaying schedule).
      mode_learning_steps: (r,) first step with a_i ≥ target/2, −1 if not by max_steps.
      noise: "absolute", "init" or "rms".
      noise_std: (S, T, 2) the stds on W1 and W2 entries at each grid point.
    """

    sigmas: np.ndarray
    steps: np.ndarray
    expected_perturbed_loss: np.ndarray
    clean_loss: np.ndarray
    mode_strengths: np.ndarray
    critical_singular_value: np.ndarray
    inflection_step: np.ndarray
    inflection_step_estimate: np.ndarray
    mode_learning_steps: np.ndarray
    noise: str = "absolute"
    noise_std: np.ndarray | None = None


def phase_diagram(
    teacher: Teacher,
    lr: float,
    sigmas,
    max_steps: int,
    n_steps: int = 60,
    init_strength: float = 1e-6,
    d_hidden: int | None = None,
    schedule: Schedule | None = None,
    noise: str = "absolute",
) -> PhaseDiagram:
    """Expected perturbed loss for every σ in `sigmas` along one exact GD trajectory (one
    fused pass, `_sweep.py`). noise: "absolute" (σ is the std per entry), "init" or "rms"
    (σ is the factor γ of the layer's RMS at init or along the path; exact)."""
    schedule = schedule or Schedule()
    sigmas = np.asarray(sigmas, dtype=np.float64)
    h = teacher.rank if d_hidden is None else d_hidden
    steps = log_steps(max_steps, n_steps)
    summary = summarize_path(teacher, lr, max_steps, sigmas, None, init_strength, d_hidden, schedule, steps,
                             noise=noise)
    a, grid = summary.recorded_strengths, summary.noise
    trace = float(teacher.d_in - teacher.rank + teacher.variances.sum())
    epl = _values(a, teacher.s, teacher.variances, teacher.targets, grid.p1, grid.q1, grid.p2, grid.q2, trace,
                  teacher.d_out, h)
    total = summary.argmin_strengths.sum(1)
    std1, std2 = np.sqrt(grid.p1 + grid.q1 * total), np.sqrt(grid.p2 + grid.q2 * total)
    s_star = np.array([critical_singular_value(teacher.d_in, teacher.d_out, x, y,
                                               input_variances=teacher.input_variances)
                       for x, y in zip(std1, std2)])
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    estimate = np.full(sigmas.shape, -1, dtype=np.int64)
    if schedule.kind == "constant":
        estimate = inflection_estimate(teacher, lr, a0, grid, h, max_steps)
    return PhaseDiagram(
        sigmas=sigmas,
        steps=steps,
        expected_perturbed_loss=epl,
        clean_loss=modal_loss(teacher, a),
        mode_strengths=a,
        critical_singular_value=np.asarray(s_star),
        inflection_step=summary.inflection_step,
        inflection_step_estimate=estimate,
        mode_learning_steps=summary.mode_learning_steps,
        noise=grid.kind,
        noise_std=np.stack(grid.stds(a.sum(1)), axis=-1),
    )


def schedule_inflections(
    teacher: Teacher,
    lr: float,
    sigma: float,
    max_steps: int,
    warmup_steps: int = 0,
    decay_fraction: float = 0.2,
    init_strength: float = 1e-6,
    d_hidden: int | None = None,
) -> dict:
    """Inflection step and perturbed-loss values under each schedule kind, at the same
    peak rate, over a run of max_steps (the decays end at max_steps).

    Returns {kind: {"schedule", "inflection_step", "min_expected_perturbed_loss",
    "expected_perturbed_loss_at_max_steps", "mode_learning_steps"}}.
    """
    out = {}
    for kind in KINDS:
        sched = Schedule() if kind == "constant" else Schedule(
            kind, total_steps=max_steps, warmup_steps=warmup_steps, decay_fraction=decay_fraction)
        sm = summarize_path(teacher, lr, max_steps, sigma, None, init_strength, d_hidden, sched)
        out[kind] = dict(
            schedule=sched,
            inflection_step=int(sm.inflection_step[0]),
            min_expected_perturbed_loss=float(sm.min_value[0]),
            expected_perturbed_loss_at_max_steps=float(sm.final_value[0]),
            mode_learning_steps=[int(k) if k >= 0 else None for k in sm.mode_learning_steps],
        )
    return out
