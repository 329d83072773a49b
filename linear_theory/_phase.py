"""The phase diagram of the perturbed loss over (σ, steps), and schedules compared."""

from __future__ import annotations

import dataclasses

import numpy as np

from ._closed_form import initial_strengths
from ._fixed_point import kept_modes
from ._thresholds import critical_singular_value, modal_expected_perturbed_loss
from ._predict import inflection_step_estimate, summarize_path
from ._schedules import KINDS, Schedule
from ._teacher import Teacher
from ._trajectory import modal_loss


def log_steps(max_steps: int, n: int = 60) -> np.ndarray:
    """0 and about n log-spaced integer steps from 1 to max_steps (unique, sorted)."""
    return np.unique(np.concatenate([[0], np.round(np.logspace(0, np.log10(max_steps), n))]).astype(np.int64))


@dataclasses.dataclass(frozen=True, eq=False)
class PhaseDiagram:
    """E[L_pert] over a (σ, step) grid for σ1 = σ2 = σ, whitened or co-diagonal inputs.

    Attributes:
      sigmas: (S,) absolute noise std per weight entry.
      steps: (T,) GD steps of the grid (log-spaced).
      expected_perturbed_loss: (S, T).
      clean_loss: (T,) the loss without noise.
      mode_strengths: (T, r) along the exact GD map.
      critical_singular_value: (S,) s*(σ) = σ²(d_in + d_out) when whitened; (S, r) with
        co-diagonal inputs, s*_i(σ) = σ²(tr Σx + d_out d_i), one per mode.
      inflection_step: (S,) exact argmin over all steps 0 … max_steps (not only the grid).
      inflection_step_estimate: (S,) ln(s*/a0)/(2 s* lr) (co-diagonal: s* and a0 of the kept
        mode nearest its threshold, as in `predict`).
      mode_learning_steps: (r,) first step with a_i ≥ target/2, −1 if not by max_steps.
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


def _thresholds_and_estimates(teacher: Teacher, sigmas, init_strength, lr, d_hidden):
    """s*(σ) for each σ ((S,) whitened, (S, r) co-diagonal: one per mode) and the inflection
    estimate, for co-diagonal inputs from the kept mode nearest its threshold (as `predict`)."""
    s_star = np.array([critical_singular_value(teacher.d_in, teacher.d_out, x,
                                               input_variances=teacher.input_variances) for x in sigmas])
    if teacher.input_variances is None:
        return s_star, inflection_step_estimate(s_star, init_strength, lr)
    keep = kept_modes(teacher, d_hidden)
    a0 = initial_strengths(teacher, init_strength, d_hidden)[keep]
    star = s_star[:, keep]
    i = np.argmin(np.abs(np.log(teacher.s[keep] / np.maximum(star, 1e-300))), axis=1)
    rows = np.arange(star.shape[0])
    return s_star, inflection_step_estimate(star[rows, i], a0[i], lr)


def phase_diagram(
    teacher: Teacher,
    lr: float,
    sigmas,
    max_steps: int,
    n_steps: int = 60,
    init_strength: float = 1e-6,
    d_hidden: int | None = None,
    schedule: Schedule | None = None,
) -> PhaseDiagram:
    """Expected perturbed loss for every σ in `sigmas` along one exact GD trajectory."""
    schedule = schedule or Schedule()
    sigmas = np.asarray(sigmas, dtype=np.float64)
    h = teacher.rank if d_hidden is None else d_hidden
    steps = log_steps(max_steps, n_steps)
    summary = summarize_path(teacher, lr, max_steps, sigmas, None, init_strength, d_hidden, schedule, steps)
    a = summary.recorded_strengths
    epl = modal_expected_perturbed_loss(teacher, a[None], h, sigmas[:, None])
    s_star, estimate = _thresholds_and_estimates(teacher, sigmas, init_strength, lr, d_hidden)
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
