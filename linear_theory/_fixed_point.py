"""Which modes a width-h network keeps: the best rank-h fixed point in the input metric.

The loss ½ tr((W − A) Σx (W − A)ᵀ) = ½‖(W − A) Σx^{1/2}‖²_F is a Frobenius distance after the
change of variables W ↦ W Σx^{1/2}. With co-diagonal inputs (Σx = V diag(d) Vᵀ + I − VVᵀ) and
A = U diag(s/d) Vᵀ, A Σx^{1/2} = U diag(s/√d) Vᵀ: its singular values are s_i/√d_i on the same
pairs. By Eckart–Young the best rank-h W keeps the h largest s_i/√d_i at their full strength
s_i/d_i (mapped back through Σx^{-1/2}), and keeping mode i lowers the loss by ½ s_i²/d_i.
Whitened (d = 1) that is the h largest s_i, whatever the order the singular values are given in.
"""

from __future__ import annotations

import numpy as np

from ._teacher import Teacher


def kept_modes(teacher: Teacher, d_hidden: int | None = None) -> np.ndarray:
    """Mask (r,) of the modes held at the global minimum by a network of hidden width h.

    The min(h, r) modes with the largest s_i/√d_i (singular values of A Σx^{1/2}); ties are
    broken by the order the modes are given in. d_hidden None means h ≥ r (every mode).
    """
    r = teacher.rank
    if d_hidden is None:
        return np.ones(r, dtype=bool)
    if int(d_hidden) != d_hidden or d_hidden < 1:
        raise ValueError("hidden width must be an integer ≥ 1")
    order = np.argsort(-teacher.s / np.sqrt(teacher.variances), kind="stable")
    mask = np.zeros(r, dtype=bool)
    mask[order[: min(int(d_hidden), r)]] = True
    return mask


def fixed_point_strengths(teacher: Teacher, d_hidden: int | None = None) -> np.ndarray:
    """Mode strengths (r,) at the best rank-h fixed point: s_i/d_i on the kept modes, 0 elsewhere."""
    return np.where(kept_modes(teacher, d_hidden), teacher.targets, 0.0)
