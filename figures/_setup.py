"""What the figure makers share: building the teacher of a config, reading crossings."""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import make_teacher, parse_spectrum


def build_teacher(spectrum: str, d_in: int, d_out: int, seed: int = 0):
    """A teacher from a spectrum string: "2,1,0.5" (the values) or a named spectrum
    such as "power:16:1:1" (s_i = 1/i, as in `linear-theory --spectrum`)."""
    if ":" in spectrum:
        s = parse_spectrum(spectrum)
    else:
        s = [float(x) for x in spectrum.split(",") if x.strip()]
    return make_teacher(s, d_in, d_out, seed=seed)


@dataclasses.dataclass(frozen=True)
class Problem:
    """Teacher and network that the figure configs share (each may override a default):
    the predict example of the README; GD steps, lr per step."""

    spectrum: str = "2,1,0.5,0.2,0.1"
    d_in: int = 24
    d_hidden: int = 20
    d_out: int = 16
    teacher_seed: int = 0
    lr: float = 0.05


def first_crossing(steps, values, level) -> int | None:
    """First recorded step at which values ≥ level (None if never)."""
    hit = np.flatnonzero(np.asarray(values) >= level)
    return int(np.asarray(steps)[hit[0]]) if hit.size else None
