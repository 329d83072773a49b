"""Learning-rate schedules as multipliers of a peak rate, built from optax schedules.

The rate at step k (0-based, the step that produces iterate k+1) is lr × schedule(k).
"""

from __future__ import annotations

import dataclasses

KINDS = ("constant", "cosine", "wsd")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A named schedule; hashable, so it can be a static argument of a jitted function.

    kind: "constant"; "cosine" (cosine decay from 1 to `final_fraction` over
      `total_steps`, after an optional linear warmup); "wsd" (warmup-stable-decay: linear
      warmup over `warmup_steps`, flat, then linear decay to `final_fraction` over the
      last `decay_fraction` of `total_steps`).
    """

    kind: str = "constant"
    total_steps: int = 0
    warmup_steps: int = 0
    decay_fraction: float = 0.2
    final_fraction: float = 0.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown schedule {self.kind!r}; known: {', '.join(KINDS)}")
        if self.kind != "constant" and self.total_steps < 1:
            raise ValueError(f"schedule {self.kind!r} needs total_steps ≥ 1")
        if self.warmup_steps < 0 or self.warmup_steps > max(self.total_steps, 0) and self.kind != "constant":
            raise ValueError("warmup_steps must be in [0, total_steps]")
        if not 0 <= self.decay_fraction <= 1 or not 0 <= self.final_fraction <= 1:
            raise ValueError("decay_fraction and final_fraction must be in [0, 1]")

    def optax(self):
        """The multiplier as an optax schedule (a function of the step count)."""
        import optax  # only when a schedule is used: keeps `import linear_theory` light

        if self.kind == "constant":
            return optax.constant_schedule(1.0)
        w = self.warmup_steps
        if self.kind == "cosine":
            decay = optax.cosine_decay_schedule(1.0, max(self.total_steps - w, 1), self.final_fraction)
            if w == 0:
                return decay
            return optax.join_schedules([optax.linear_schedule(0.0, 1.0, w), decay], [w])
        n_decay = int(round(self.decay_fraction * self.total_steps))
        start_decay = max(self.total_steps - n_decay, w)
        pieces = [optax.constant_schedule(1.0), optax.linear_schedule(1.0, self.final_fraction, max(n_decay, 1))]
        bounds = [start_decay]
        if w > 0:
            pieces.insert(0, optax.linear_schedule(0.0, 1.0, w))
            bounds.insert(0, w)
        return optax.join_schedules(pieces, bounds)

    def __call__(self, step):
        if self.kind == "constant":
            return 1.0  # what optax.constant_schedule(1.0) gives, without importing optax
        return self.optax()(step)

    def values(self, steps):
        """The multipliers at integer `steps` as a float64 numpy array: one compiled, vectorised
        evaluation in float64 with int64 steps, as inside the theory's loops (calling the
        schedule step by step outside them runs each operation eagerly, and in float32 unless
        x64 is on)."""
        import numpy as np

        k = np.asarray(steps, dtype=np.int64)
        if self.kind == "constant":
            return np.ones(k.shape)
        import jax

        with jax.enable_x64(True):
            return np.asarray(_evaluate(self, k), dtype=np.float64)


def _evaluate(schedule: Schedule, steps):
    """schedule(steps) compiled once per schedule (steps: int64 array)."""
    global _evaluate_jit
    if _evaluate_jit is None:
        import jax
        import jax.numpy as jnp

        _evaluate_jit = jax.jit(lambda sched, k: jnp.asarray(sched(k), jnp.float64) * jnp.ones(k.shape),
                                static_argnums=0)
    return _evaluate_jit(schedule, steps)


_evaluate_jit = None


CONSTANT = Schedule()
