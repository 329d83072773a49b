"""The learning-rate limit of gradient descent along the aligned balanced path.

Hessian of L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ) in (W1, W2), at aligned balanced weights with
strengths a (W1 = R diag(√a) Vᵀ, W2 = U diag(√a) Rᵀ, co-diagonal Σx = V diag(d) Vᵀ + I − VVᵀ).
The second derivative along (Δ1, Δ2) is

    tr((Δ2W1 + W2Δ1) Σx (Δ2W1 + W2Δ1)ᵀ) + 2 tr(Δ2 Δ1 Σx Eᵀ),   E = W2W1 − A.

Write Δ2 in (output direction o, hidden unit j) and Δ1 in (hidden unit j, input direction n)
coordinates, with hidden unit j carrying mode j. Entry (o, n) of Δ2W1 + W2Δ1 is
y_{on}√a_n + √a_o x_{on}, weighted by the input variance d_n, and E is diagonal with
e_o = a_o − s_o/d_o. So the Hessian splits into small blocks: a rank-one Gauss–Newton block
d_n (√a_n, √a_o)(√a_n, √a_o)ᵀ per (o, n), coupled only through the residual terms
2 e_o d_o y_{oj} x_{jo}. At the fixed point (e = 0, a = s/d on the kept modes) the residual
vanishes on the kept modes and the eigenvalues are d_n (a_o + a_n) for o, n kept modes,
a_o for n an input direction outside span V (d_n = 1), d_o a_o = s_o for an output direction
outside the kept ones, and, when h < r, for each kept j and left-out mode k (e_k d_k = −s_k)
the 2×2 block [[d_j a_j, −s_k], [−s_k, d_k a_j]] of (Δ2 entry (k, j), Δ1 entry (j, k)):
a_j (d_j + d_k)/2 + √((a_j (d_j − d_k)/2)² + s_k²). λ_max* is the largest of these,
e.g. d_k (a_j + a_k) for two learned modes j, k. Whitened it is 2 s_max (max s_j + s_k ≤
2 s_j when k is left out), the per-mode limit η s_max < 1 of the exact map. Along the path from small init (0 ≤ a ≤ s/d) the largest
eigenvalue stays below its fixed-point value (checked against jax.hessian in the tests),
so GD is linearly stable all along the aligned balanced path iff η < 2/λ_max*.

Beyond that limit the balanced fixed point is unstable: whitened, GD does not converge;
with co-diagonal inputs GD may still find an unbalanced minimum, but it leaves the
balanced path (W1W1ᵀ ≠ W2ᵀW2), so every balanced-weight prediction (norms, noise cost)
no longer describes it. Either way, rates at or beyond 2/λ_max* are refused.
"""

from __future__ import annotations

import numpy as np

from ._fixed_point import fixed_point_strengths, kept_modes
from ._teacher import Teacher


def fixed_point_sharpness(teacher: Teacher, d_hidden: int | None = None) -> float:
    """λ_max of the Hessian of L at the balanced best rank-h fixed point (module docstring).

    Args:
      teacher: the teacher (whitened or co-diagonal inputs).
      d_hidden: hidden width h (None: h ≥ r).
    Returns:
      λ_max* in loss units per squared weight unit.
    """
    keep = kept_modes(teacher, d_hidden)
    a = fixed_point_strengths(teacher, d_hidden)
    d = teacher.variances
    # max over kept o and all n of d_n (a_o + a_n): d_n > 0, so for each n the largest a_o
    # wins; O(r), and the same floating-point value as the (kept × r) table's maximum.
    lam = float(np.max(d * (a[keep].max() + a)))
    if teacher.d_in > teacher.rank:  # input directions outside span V: d_n = 1, a_n = 0
        lam = max(lam, float(a[keep].max()))
    if (~keep).any():  # kept j (rows) against left-out k (columns), residual −s_k
        aj, dj = a[keep][:, None], d[keep][:, None]
        dk, sk = d[~keep][None, :], teacher.s[~keep][None, :]
        block = aj * (dj + dk) / 2 + np.sqrt((aj * (dj - dk) / 2) ** 2 + sk**2)
        lam = max(lam, float(block.max()))
    return lam


def stability_limit(teacher: Teacher, d_hidden: int | None = None) -> float:
    """Largest stable per-step rate of GD on the aligned balanced path: 2 / λ_max*.

    Whitened: 1/s_max. Co-diagonal: 2 / λ_max*, λ_max* = max d_n (a_o + a_n) over kept modes
    o, n when every mode is kept (see the module docstring for the other blocks).
    """
    return 2.0 / fixed_point_sharpness(teacher, d_hidden)
