"""The theory figures by name, in order. Light to import: a figure's module (matplotlib,
JAX) is loaded only when the figure is made, so `linear-theory --help` stays fast."""

from __future__ import annotations

import dataclasses
import importlib


@dataclasses.dataclass(frozen=True)
class FigureSpec:
    """A figure: `module.make(config) -> (Figure, data)` with `module.config()` its defaults."""

    name: str
    description: str
    module: str
    make: str
    config: str

    def load(self):
        """(make function, config class)."""
        m = importlib.import_module(f"figures.{self.module}")
        return getattr(m, self.make), getattr(m, self.config)

    def build(self, small: bool = False):
        """Make the figure with its default config (or the small test config)."""
        make, config = self.load()
        return make(config.small() if small else config())


FIGURES = {
    spec.name: spec
    for spec in (
        FigureSpec("dynamics", "mode strengths a_i vs steps (closed form vs full-matrix GD, random init) and the "
                   "staircase loss", "dynamics", "make_dynamics", "DynamicsConfig"),
        FigureSpec("sensitivity", "expected loss increase under fixed-σ weight noise vs steps, exact and Monte Carlo",
                   "noise", "make_sensitivity", "SensitivityConfig"),
        FigureSpec("u_shape", "the U: expected perturbed loss vs steps for several σ, inflection exact and estimated",
                   "noise", "make_u_shape", "UShapeConfig"),
        FigureSpec("phase", "phase diagram of E[L_pert] over (σ, steps) with inflection curve, learning steps, s*(σ)",
                   "phase", "make_phase", "PhaseConfig"),
        FigureSpec("threshold", "learned a_i(t) against the noise thresholds (s*, factor noise floor, i.i.d. BBP)",
                   "threshold", "make_threshold", "ThresholdConfig"),
        FigureSpec("finetune", "L_A and L_B after fine-tuning vs pre-training steps, for several rates and λ",
                   "finetune", "make_finetune", "FinetuneConfig"),
        FigureSpec("schedules", "perturbed loss and its turn under constant, cosine and WSD pre-training",
                   "schedules", "make_schedules", "SchedulesConfig"),
        FigureSpec("sharpness", "expected loss increase under noise against tr(H) along random-init training",
                   "sharpness", "make_sharpness", "SharpnessConfig"),
        FigureSpec("mitigations", "E[L_pert] and clean loss per optimiser and regulariser (weight decay with the "
                   "noise-optimal λ marked, schedule, momentum, Adam, sign descent, SAM)",
                   "mitigations", "make_mitigations", "MitigationsConfig"),
    )
}


def names() -> list[str]:
    return list(FIGURES)


def select(requested) -> list[FigureSpec]:
    """The specs for `requested` names (all when empty), in the order asked, duplicates
    dropped. Raises ValueError naming the valid figures for an unknown name."""
    if not requested:
        return list(FIGURES.values())
    unknown = [n for n in requested if n not in FIGURES]
    if unknown:
        raise ValueError(f"unknown figure {', '.join(map(repr, unknown))}; valid names: {', '.join(FIGURES)}")
    return [FIGURES[n] for n in dict.fromkeys(requested)]
