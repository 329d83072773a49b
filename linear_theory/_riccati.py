"""Gradient flow from any balanced init in closed form: the matrix Riccati solution
(Fukumizu 1998; Braun et al. 2022). Whitened inputs.

Stack Q = [W1ᵀ; W2] ((d_in + d_out) × h). With balanced weights (W1W1ᵀ = W2ᵀW2, kept by
the flow) P = QQᵀ obeys dP/dt = FP + PF − P², F = [[0, Aᵀ], [A, 0]], whose solution is

    P(t) = e^{Ft} Q0 (I + Q0ᵀ K(t) Q0)⁻¹ Q0ᵀ e^{Ft},   K(t) = ∫₀ᵗ e^{2Fτ} dτ,

and the network map W2W1 is the lower-left block of P. A factor of P propagates as
Q(t + dt) = e^{F dt} Q(t) (I + Q(t)ᵀ K(dt) Q(t))^{-1/2}.
"""

from __future__ import annotations

import numpy as np

from ._teacher import Teacher
from ._trajectory import FLOW_TIME, Trajectory, mode_strengths_of, population_loss


def _propagator(F_eig, E, dt):
    """e^{F dt} and K(dt) = ∫₀^dt e^{2Fτ}dτ from F = E diag(f) Eᵀ."""
    f = F_eig
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.where(np.abs(f) * dt > 1e-8, np.expm1(2 * f * dt) / (2 * f), dt * (1 + f * dt))
    return (E * np.exp(f * dt)) @ E.T, (E * k) @ E.T


def _advance(Q, expF, K):
    """A factor of P(t + dt) from a factor Q of P(t): e^{F dt} Q (I + QᵀKQ)^{-1/2}."""
    lam, S = np.linalg.eigh(np.eye(Q.shape[1]) + Q.T @ K @ Q)
    return expF @ Q @ (S / np.sqrt(lam)) @ S.T


def balanced_flow(teacher: Teacher, W1_0, W2_0, times, balance_tol: float = 1e-10, max_growth: float = 0.5) -> Trajectory:
    """Closed-form gradient flow from balanced (W1_0, W2_0) at flow times `times`.

    The closed form is applied over sub-intervals dt with s_max·dt ≤ `max_growth`
    (the solution is a semigroup, so composing is exact); one application over a long
    interval is ill-conditioned (e^{2 s_1 t} against e^{2 s_r t} in one solve).

    Args:
      teacher: whitened teacher A.
      W1_0, W2_0: (h, d_in), (d_out, h) with W1W1ᵀ = W2ᵀW2 (to `balance_tol`, relative).
      times: finite flow times ≥ 0.
    Returns:
      A Trajectory in flow time with mode strengths, loss and ‖W1‖² = ‖W2‖² = ½ tr(P)
      (no weights: P fixes them only up to a rotation of the hidden units).
    """
    if teacher.input_variances is not None:
        raise ValueError("the Riccati solution here assumes whitened inputs")
    W1_0, W2_0 = np.asarray(W1_0, np.float64), np.asarray(W2_0, np.float64)
    M1, M2 = W1_0 @ W1_0.T, W2_0.T @ W2_0
    if np.linalg.norm(M1 - M2) > balance_tol * max(np.linalg.norm(M1), 1e-300):
        raise ValueError("initial weights are not balanced (W1W1ᵀ ≠ W2ᵀW2)")
    t = np.atleast_1d(np.asarray(times, np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be finite and non-negative")
    d_in = teacher.d_in
    A = teacher.matrix
    F = np.block([[np.zeros((d_in, d_in)), A.T], [A, np.zeros((teacher.d_out, teacher.d_out))]])
    f, E = np.linalg.eigh(F)
    dt_max = max_growth / teacher.s.max()
    Q, now = np.concatenate([W1_0.T, W2_0]), 0.0
    order = np.argsort(t)
    a = np.empty((t.size, teacher.rank))
    loss, norm = np.empty(t.size), np.empty(t.size)
    for idx in order:
        n = int(np.ceil((t[idx] - now) / dt_max))
        if n > 0:
            expF, K = _propagator(f, E, (t[idx] - now) / n)
            for _ in range(n):
                Q = _advance(Q, expF, K)
        now = t[idx]
        a[idx] = mode_strengths_of(Q[d_in:] @ Q[:d_in].T, teacher.U, teacher.V)
        loss[idx] = population_loss(Q[:d_in].T, Q[d_in:], A)
        norm[idx] = 0.5 * np.sum(Q**2)
    return Trajectory(
        times=t,
        time_unit=FLOW_TIME,
        mode_strengths=a,
        loss=loss,
        w1_sq_norm=norm,
        w2_sq_norm=norm.copy(),
        teacher=teacher,
        d_hidden=Q.shape[1],
        method="closed-form gradient flow, balanced init (matrix Riccati, composed)",
    )
