"""Predictions: when noise exceeds the learned singular values, and when the perturbed
loss turns up (THEORY.md §4). Time is in GD steps; the exact per-mode GD map from aligned
balanced init is the reference trajectory.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._closed_form import initial_strengths
from ._fixed_point import kept_modes
from ._gd_map import check_lr
from ._thresholds import critical_singular_value, harmful_modes, modal_expected_perturbed_loss, rise_bound_terms
from ._schedules import CONSTANT, Schedule
from ._sweep import NoiseGrid, noise_grid, sweep
from ._teacher import Teacher
from ._x64 import x64


def _check_sigma(sigma):
    sigma = np.atleast_1d(np.asarray(sigma, dtype=np.float64))
    if sigma.ndim != 1 or not np.all(np.isfinite(sigma)) or np.any(sigma < 0):
        raise ValueError("noise scale sigma must be a non-negative finite number")
    return sigma


def _check_max_steps(max_steps):
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max steps must be an integer ≥ 1 (got {max_steps})")
    return int(max_steps)


@dataclasses.dataclass(frozen=True, eq=False)
class PathSummary:
    """What one pass over the exact GD trajectory gives, for each noise setting in a list.

    Attributes:
      sigma1, sigma2: (n,) per-layer noise scales as given (absolute stds, or the factors γ
        of relative noise).
      mode_learning_steps: (r,) first step with a_i ≥ target_i/2, −1 if never (≤ max_steps).
      inflection_step: (n,) exact argmin over steps 0 … max_steps of E[L_pert].
      min_value: (n,) E[L_pert] at that step.
      final_value: (n,) E[L_pert] at max_steps.
      final_strengths: (r,) a at max_steps.
      recorded_strengths: (K, r) a at the requested `record_steps` (None if none asked).
      noise: the noise settings (`_sweep.NoiseGrid`: kind and per-layer variances).
    """

    sigma1: np.ndarray
    sigma2: np.ndarray
    mode_learning_steps: np.ndarray
    inflection_step: np.ndarray
    min_value: np.ndarray
    final_value: np.ndarray
    final_strengths: np.ndarray
    recorded_strengths: np.ndarray | None = None
    noise: NoiseGrid | None = None


@x64
def summarize_path(
    teacher: Teacher,
    lr: float,
    max_steps: int,
    sigma1,
    sigma2=None,
    init_strength=1e-6,
    d_hidden: int | None = None,
    schedule: Schedule = CONSTANT,
    record_steps=None,
    noise: str = "absolute",
    progress: bool | None = None,
) -> PathSummary:
    """One fused sweep over every GD step (`_sweep.sweep`), reducing to learning steps and
    exact argmins of the expected perturbed loss for every σ at once (the trajectory does
    not depend on σ), and keeping the strengths at `record_steps` (integers in
    0 … max_steps) on the way. Memory does not grow with max_steps.

    noise: "absolute" (σ1, σ2 are stds per entry), "init" or "rms" (σ1, σ2 are factors γ of
    the layer's RMS at init, or its current RMS along the path; see `_sweep`).
    """
    lr = float(check_lr(teacher, lr, d_hidden))
    max_steps = _check_max_steps(max_steps)
    h = teacher.rank if d_hidden is None else d_hidden
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    grid = noise_grid(teacher, h, _check_sigma(sigma1), None if sigma2 is None else _check_sigma(sigma2), noise, a0)
    res = sweep(teacher, lr, max_steps, a0, grid, h, schedule, record_steps=record_steps, progress=progress)
    return PathSummary(grid.scale1, grid.scale2, res.first_crossing[0], res.argmin, res.min_value, res.final_value,
                       res.final_strengths, res.recorded_strengths, grid)


def inflection_step_estimate(s_star, init_strength, lr):
    """t* ≈ ln(s*/a0)/(2 s*) in flow time, ÷ lr for GD steps: when the modes being learned
    approach s*. Undefined (nan) when s* ≤ a0 (every mode is already past s*)."""
    s_star = np.asarray(s_star, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(s_star / init_strength) / (2.0 * s_star)
    return np.where(s_star > init_strength, t / lr, np.nan)


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """The predictions for one noise level, all times in GD steps (see `predict`)."""

    critical_singular_value: float | list
    harmful_modes: list
    mode_learning_steps: list
    inflection_step: int
    inflection_step_estimate: float
    min_expected_perturbed_loss: float
    expected_perturbed_loss_at_max_steps: float
    rise: float
    rise_bound_at_convergence: float
    max_steps: int

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["units"] = {
            "steps": "GD steps (flow time = lr × steps)",
            "loss": "expected population loss ½E‖(W2+σ2Z2)(W1+σ1Z1)x − Ax‖² over the noise",
            "critical_singular_value": "s* = σ1²·d_in + σ2²·d_out (whitened; one per mode for co-diagonal "
            "inputs), same units as the singular values",
        }
        return d


def predict(
    teacher: Teacher,
    lr: float,
    sigma: float,
    max_steps: int,
    init_strength: float = 1e-6,
    d_hidden: int | None = None,
    sigma2: float | None = None,
    schedule: Schedule = CONSTANT,
) -> Prediction:
    """Everything the theory predicts for absolute Gaussian noise of std σ (σ1 = sigma,
    σ2 = sigma2 or sigma) along exact GD from aligned balanced init.

    Returns the critical singular value s*, the harmful modes (0-based, s_i < s*, among the
    modes the hidden width can learn, `kept_modes`), each
    mode's learning step (None if not learned by max_steps), the exact inflection step
    (argmin of E[L_pert] over all steps 0 … max_steps) and its analytic estimate
    ln(s*/a0)/(2 s* lr), the minimum and final E[L_pert], the rise (final − min) and the
    bound Σ g_i on the rise at convergence (modes within the hidden width).
    """
    summary = summarize_path(teacher, lr, max_steps, sigma, sigma2, init_strength, d_hidden, schedule)
    s1, s2 = float(summary.sigma1[0]), float(summary.sigma2[0])
    # One threshold per mode for co-diagonal inputs; a scalar when whitened.
    s_star = critical_singular_value(teacher.d_in, teacher.d_out, s1, s2, input_variances=teacher.input_variances)
    keep = kept_modes(teacher, d_hidden)  # the modes the width can learn
    star_h = np.broadcast_to(s_star, teacher.s.shape)[keep]
    bound = float(np.sum(rise_bound_terms(teacher.s[keep], star_h, teacher.variances[keep])))
    a0 = initial_strengths(teacher, init_strength, d_hidden)[keep]
    # The estimate uses the a0 and s* of the mode nearest its threshold (in log s).
    i = int(np.argmin(np.abs(np.log(teacher.s[keep] / np.maximum(star_h, 1e-300)))))
    return Prediction(
        critical_singular_value=float(s_star) if np.ndim(s_star) == 0 else [float(x) for x in s_star],
        harmful_modes=[int(k) for k in harmful_modes(teacher.s, s_star, learnable=keep)],
        mode_learning_steps=[int(k) if k >= 0 else None for k in summary.mode_learning_steps],
        inflection_step=int(summary.inflection_step[0]),
        inflection_step_estimate=float(inflection_step_estimate(star_h[i], a0[i], lr)),
        min_expected_perturbed_loss=float(summary.min_value[0]),
        expected_perturbed_loss_at_max_steps=float(summary.final_value[0]),
        rise=float(summary.final_value[0] - summary.min_value[0]),
        rise_bound_at_convergence=bound,
        max_steps=int(max_steps),
    )
