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
from ._inflection import ESTIMATE_BAND_TEXT, STEP0_REASON, inflection_estimate, starts_at_step_0
from ._thresholds import critical_singular_value, harmful_modes, rise_bound_terms
from ._schedules import CONSTANT, Schedule
from ._sweep import NoiseGrid, noise_grid, sweep
from ._teacher import Teacher
from ._trajectory import modal_loss
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
      argmin_strengths: (n, r) a at each setting's inflection step.
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
    argmin_strengths: np.ndarray | None = None


def roundoff_tolerance(n_modes: int) -> float:
    """Relative round-off of E[L_pert] summed over n modes in float64, 8(n + 1)ε: a rise after
    the minimum no larger than this × |E[L_pert]| is not a turn (the path only converges)."""
    return 8 * (int(n_modes) + 1) * float(np.finfo(np.float64).eps)


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
    weight_decay: float = 0.0,
) -> PathSummary:
    """One fused sweep over every GD step (`_sweep.sweep`), reducing to learning steps and
    exact argmins of the expected perturbed loss for every σ at once (the trajectory does
    not depend on σ), and keeping the strengths at `record_steps` (integers in
    0 … max_steps) on the way. Memory does not grow with max_steps.

    noise: "absolute" (σ1, σ2 are stds per entry), "init" or "rms" (σ1, σ2 are factors γ of
    the layer's RMS at init, or its current RMS along the path; see `_sweep`).

    weight_decay: λ on both matrices (the path of GD on L + (λ/2)(‖W1‖² + ‖W2‖²), still
    balanced); a mode is then learned when it reaches half its decayed target (s − λ)/(2d).
    Per-matrix decay λ1 ≠ λ2 unbalances the weights: `predict_lambda` with lam=0 takes it.
    """
    from ._weight_decay import check_weight_decay, decayed_fixed_point

    l1, l2 = check_weight_decay(weight_decay)
    if l1 != l2:
        raise ValueError("per-matrix weight decay λ1 ≠ λ2 unbalances the weights: use predict_lambda(lam=0, "
                         "weight_decay=(λ1, λ2))")
    lr = float(check_lr(teacher, lr, d_hidden))
    max_steps = _check_max_steps(max_steps)
    h = teacher.rank if d_hidden is None else d_hidden
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    grid = noise_grid(teacher, h, _check_sigma(sigma1), None if sigma2 is None else _check_sigma(sigma2), noise, a0)
    thresholds = None
    if l1:
        half = decayed_fixed_point(teacher, l1, d_hidden)[0] / 2
        thresholds = np.where(half > 0, half, np.inf)[None]
    res = sweep(teacher, lr, max_steps, a0, grid, h, schedule, thresholds=thresholds, record_steps=record_steps,
                progress=progress, weight_decay=l1)
    return PathSummary(grid.scale1, grid.scale2, res.first_crossing[0], res.argmin, res.min_value, res.final_value,
                       res.final_strengths, res.recorded_strengths, grid, res.argmin_strengths)


def inflection_step_estimate(s_star, init_strength, lr):
    """t* ≈ ln(s*/a0)/(2 s*) in flow time, ÷ lr for GD steps: when the modes being learned
    approach s*. Undefined (nan) when s* ≤ a0 (every mode is already past s*)."""
    s_star = np.asarray(s_star, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.log(s_star / init_strength) / (2.0 * s_star)
    return np.where(s_star > init_strength, t / lr, np.nan)


NOISE_UNITS = {
    "absolute": "σ1, σ2: std of each added N(0, σ²) entry of W1, W2 (weight units)",
    "init": "σ1, σ2 = γ: std = γ × the layer's RMS at init, √(‖W_l(0)‖²/size) (fixed along the path)",
    "rms": "σ1, σ2 = γ: std = γ × the layer's current RMS, √(‖W_l‖²/size) = γ √(Σa/size) for aligned "
    "balanced weights (grows with training)",
}


@dataclasses.dataclass(frozen=True, eq=False)
class Prediction:
    """The predictions for one noise level, all times in GD steps (see `predict`).

    `critical_singular_value` and `harmful_modes` use the noise stds in force at the
    inflection step (constant along the path except for RMS-relative noise).
    `inflection_step_estimate` is None for a non-constant schedule (the estimate assumes
    a constant rate); `inflection_estimate_note` says why it is what it is.
    """

    critical_singular_value: float | list
    harmful_modes: list
    mode_learning_steps: list
    inflection_step: int
    inflection_step_estimate: int | None
    min_expected_perturbed_loss: float
    expected_perturbed_loss_at_max_steps: float
    rise: float
    rise_bound_at_convergence: float
    max_steps: int
    noise: str = "absolute"
    noise_std_at_step_0: list | None = None
    noise_std_at_inflection: list | None = None
    noise_std_at_max_steps: list | None = None
    inflection_estimate_error_band: str = ESTIMATE_BAND_TEXT
    inflection_estimate_note: str = ""
    weight_decay: float = 0.0
    clean_loss_at_max_steps: float | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["units"] = {
            "steps": "GD steps (flow time = lr × steps)",
            "loss": "expected population loss ½E‖(W2+σ2Z2)(W1+σ1Z1)x − Ax‖² over the noise",
            "critical_singular_value": "s* = σ1²·tr(Σx) + σ2²·d_out·d_i (whitened: σ1²·d_in + σ2²·d_out; one per "
            "mode for co-diagonal inputs), with the stds at the inflection step; units of the singular values",
            "noise": NOISE_UNITS[self.noise],
            "noise_std": "[std on W1 entries, std on W2 entries] (weight units)",
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
    noise: str = "absolute",
    weight_decay: float = 0.0,
) -> Prediction:
    """Everything the theory predicts for Gaussian weight noise along exact GD from aligned
    balanced init. σ1 = sigma, σ2 = sigma2 or sigma: the std per entry of W1, W2 (noise
    "absolute"), or the factors γ of the layer's init RMS ("init") or current RMS ("rms").

    Returns the critical singular value s*, the harmful modes (0-based, s_i < s*, among the
    modes the hidden width can learn, `kept_modes`), each
    mode's learning step (None if not learned by max_steps), the exact inflection step
    (argmin of E[L_pert] over all steps 0 … max_steps) and its estimate (`_inflection.py`:
    within ESTIMATE_BAND_TEXT on the family documented there; 0 when no mode has
    s_i > s*/2), the minimum and final E[L_pert], the rise (final − min) and the bound Σ g_i
    on the rise at convergence (modes within the hidden width; constant-std noise only,
    None for "rms"). Zero noise is refused: without noise E[L_pert] = L only falls and there
    is no inflection to predict.

    weight_decay: λ on both matrices during training (equal decay keeps the path balanced;
    see `summarize_path`). The estimate and the rise bound are plain-GD results: None with decay.
    """
    if not np.any(_check_sigma(sigma) > 0) and (sigma2 is None or not np.any(_check_sigma(sigma2) > 0)):
        raise ValueError("sigma = 0: without noise the loss only falls and there is no inflection to predict")
    summary = summarize_path(teacher, lr, max_steps, sigma, sigma2, init_strength, d_hidden, schedule, noise=noise,
                             weight_decay=weight_decay)
    decay = float(np.atleast_1d(weight_decay)[0])
    if summary.sigma1.size != 1:
        raise ValueError("predict takes one noise level (use summarize_path or phase_diagram for a list)")
    grid = summary.noise
    a0 = initial_strengths(teacher, init_strength, d_hidden)
    std0, std_turn, std_end = (np.concatenate(grid.stds(np.sum(a))) for a in
                               (a0, summary.argmin_strengths[0], summary.final_strengths))
    # One threshold per mode for co-diagonal inputs; a scalar when whitened.
    s_star = critical_singular_value(teacher.d_in, teacher.d_out, float(std_turn[0]), float(std_turn[1]),
                                     input_variances=teacher.input_variances)
    h = teacher.rank if d_hidden is None else d_hidden
    keep = kept_modes(teacher, d_hidden)  # the modes the width can learn
    star_h = np.broadcast_to(s_star, teacher.s.shape)[keep]
    bound = None
    if grid.kind != "rms" and not decay:
        bound = float(np.sum(rise_bound_terms(teacher.s[keep], star_h, teacher.variances[keep])))
    estimate, note = None, "the estimate assumes a constant rate; none for a decaying schedule"
    if decay:
        note = "the estimate is for plain GD; none with weight decay"
    elif schedule.kind == "constant":
        estimate = int(inflection_estimate(teacher, lr, a0, grid, h, int(max_steps))[0])
        note = STEP0_REASON if starts_at_step_0(teacher, grid, h)[0] else (
            "closed-form flow on per-mode clocks k·ln(1 + lr s_i)/s_i, E[L_pert] minimised over steps")
    return Prediction(
        critical_singular_value=float(s_star) if np.ndim(s_star) == 0 else [float(x) for x in s_star],
        harmful_modes=[int(k) for k in harmful_modes(teacher.s, s_star, learnable=keep)],
        mode_learning_steps=[int(k) if k >= 0 else None for k in summary.mode_learning_steps],
        inflection_step=int(summary.inflection_step[0]),
        inflection_step_estimate=estimate,
        min_expected_perturbed_loss=float(summary.min_value[0]),
        expected_perturbed_loss_at_max_steps=float(summary.final_value[0]),
        rise=float(summary.final_value[0] - summary.min_value[0]),
        rise_bound_at_convergence=bound,
        max_steps=int(max_steps),
        noise=grid.kind,
        noise_std_at_step_0=[float(x) for x in std0],
        noise_std_at_inflection=[float(x) for x in std_turn],
        noise_std_at_max_steps=[float(x) for x in std_end],
        inflection_estimate_note=note,
        weight_decay=decay,
        clean_loss_at_max_steps=float(modal_loss(teacher, summary.final_strengths)),
    )

