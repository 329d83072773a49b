"""The one result type every solver returns."""

from __future__ import annotations

import dataclasses

import typing

import numpy as np

from ._teacher import Teacher

if typing.TYPE_CHECKING:  # only for the annotation: keeps this module free of jax/optax imports
    from ._schedules import Schedule

STEPS = "steps"
FLOW_TIME = "flow time"


@dataclasses.dataclass(frozen=True, eq=False)
class Trajectory:
    """Learning dynamics recorded at a set of times.

    Time is either gradient-descent steps (`time_unit == "steps"`) or gradient-flow time
    (`time_unit == "flow time"`); for GD, flow time = lr × steps (with a schedule, the sum
    of the per-step rates, Σ_{k<n} lr × schedule(k): see `flow_time`). `times` may contain inf, which stands for the fixed point.
    Leading batch axes (seeds, learning rates) come before the time axis.

    Attributes:
      times: (T,) recorded times, in `time_unit`.
      time_unit: "steps" or "flow time".
      mode_strengths: (..., T, r) a_i = u_iᵀ W2 W1 v_i on the teacher's fixed pairs.
      loss: (..., T) population loss ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ).
      w1_sq_norm, w2_sq_norm: (..., T) squared Frobenius norms ‖W1‖², ‖W2‖².
      teacher: the teacher trained on.
      d_hidden: hidden width h.
      lr: peak learning rate per step (None for gradient flow); array if batched.
      method: which solver produced it.
      W1, W2: (..., T, h, d_in) and (..., T, d_out, h) weights, when recorded.
      schedule: the learning-rate schedule of a GD run (None: constant rate).
    """

    times: np.ndarray
    time_unit: str
    mode_strengths: np.ndarray
    loss: np.ndarray
    w1_sq_norm: np.ndarray
    w2_sq_norm: np.ndarray
    teacher: Teacher
    d_hidden: int
    method: str
    lr: float | np.ndarray | None = None
    W1: np.ndarray | None = None
    W2: np.ndarray | None = None
    schedule: Schedule | None = None

    @property
    def flow_time(self) -> np.ndarray:
        """Times in gradient-flow units: Σ_{k<n} lr × schedule(k) after n steps (lr × n for a
        constant rate); shape (T,), or (L, T) for a batch of learning rates; inf stays inf."""
        if self.time_unit == FLOW_TIME:
            return self.times
        if self.schedule is None or self.schedule.kind == "constant":
            return np.multiply.outer(np.asarray(self.lr), self.times)
        return np.multiply.outer(np.asarray(self.lr), cumulative_rate(self.schedule, self.times))

    def to_dict(self) -> dict:
        """A JSON-ready summary (no weights); inf times become the string "inf"."""
        return {
            "method": self.method,
            "units": {
                "time": self.time_unit,
                "loss": "1/2 E||W2 W1 x - A x||^2 (population, whitened unless an input covariance is given)",
                "mode_strengths": "u_i^T W2 W1 v_i on the teacher's fixed singular pairs",
                "weight_sq_norms": "squared Frobenius norm",
            },
            "steps" if self.time_unit == STEPS else "times": [
                "inf" if np.isinf(t) else (int(t) if self.time_unit == STEPS else float(t))
                for t in self.times
            ],
            "loss": np.asarray(self.loss).tolist(),
            "mode_strengths": np.asarray(self.mode_strengths).tolist(),
            "weight_sq_norms": {
                "W1": np.asarray(self.w1_sq_norm).tolist(),
                "W2": np.asarray(self.w2_sq_norm).tolist(),
            },
        }


def cumulative_rate(schedule: Schedule, steps) -> np.ndarray:
    """Σ_{k<n} schedule(k) for each n in `steps` (non-negative integers or inf → inf), in
    float64: the flow time per unit of peak rate after n steps."""
    steps = np.asarray(steps, dtype=np.float64)
    finite = np.isfinite(steps)
    n = int(steps[finite].max()) if finite.any() else 0
    cum = np.concatenate([[0.0], np.cumsum(schedule.values(np.arange(n)))])
    out = np.full(steps.shape, np.inf)
    out[finite] = cum[steps[finite].astype(np.int64)]
    return out


def population_loss(W1, W2, A, Sx=None):
    """½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ) over the last two axes; Sx = None means whitened.

    Array-generic (numpy, JAX, numpy object arrays of sympy symbols): the one place the
    loss of full weights is written."""
    E = W2 @ W1 - A
    G = E if Sx is None else E @ Sx
    return 0.5 * (G * E).sum(axis=(-2, -1))


def mode_strengths_of(W, U, V):
    """a_i = u_iᵀ W v_i for end-to-end maps W (..., d_out, d_in): shape (..., r)."""
    return (U * (W @ V)).sum(axis=-2)


def modal_loss(teacher: Teacher, a) -> np.ndarray:
    """Loss of a network aligned with the teacher: ½ Σ_i d_i (a_i − s_i/d_i)²."""
    a = np.asarray(a)
    return 0.5 * np.sum(teacher.variances * (a - teacher.targets) ** 2, axis=-1)
