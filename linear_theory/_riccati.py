"""Gradient flow from any λ-balanced init in closed form: the matrix Riccati solution
(Fukumizu 1998; Braun et al. 2022; Dominé et al. 2024), derived from the ODE. Whitened inputs.

Stack Q = [W1ᵀ; W2] ((d_in + d_out) × h). Gradient flow reads dW1ᵀ/dt = AᵀW2 − W1ᵀW1W1ᵀ and
dW2/dt = AW1ᵀ − W2W1W1ᵀ. With W2ᵀW2 − W1W1ᵀ = λI
(conserved) write W1W1ᵀ = ½QᵀQ − ½λI and W2ᵀW2 = ½QᵀQ + ½λI; then

    dQ/dt = F_λ Q − ½ Q QᵀQ,   F_λ = [[−½λ I, Aᵀ], [A, ½λ I]],

and P = QQᵀ = [[W1ᵀW1, W1ᵀW2ᵀ], [W2W1, W2W2ᵀ]] obeys dP/dt = F_λP + PF_λ − P², solved by

    P(t) = e^{F_λ t} Q0 (I + Q0ᵀ K(t) Q0)⁻¹ Q0ᵀ e^{F_λ t},   K(t) = ∫₀ᵗ e^{2F_λ τ} dτ.

Stable factored evaluation. In the eigenbasis F_λ = E diag(f) Eᵀ let C = EᵀQ0,
Y = diag(√k) C with k = (e^{2ft} − 1)/(2f), and g = e^{ft}/√k (bounded: → √(2f) for growing
directions, → 0 for decaying ones). If [I; Y] = Z R (QR), then Y R⁻¹ = Z_bottom and

    P(t) = E diag(g) Z_bottom Z_bottomᵀ diag(g) Eᵀ,

so Q(t) ∝ E diag(g) Z_bottom is a factor of P with no inverse and no cancellation; the rows
of [I; Y] are sorted by norm before the Householder QR (row-wise stable for graded rows).
Only √k must stay representable, so one application covers f_max·Δt ≤ 300 (e^{300} ≈ 1e130):
the cost is ⌈f_max·Δt/300⌉ tiny solves per gap between recorded times, flat in practice
(t = 2000 at s = 2 is 14 solves instead of the 8000 sub-steps of 0.5/s_max used before).
Accuracy is absolute, about machine epsilon × ‖P‖: with |λ| large (entries of P ~ |λ|) a
tiny mode strength has a correspondingly larger relative error than the scalar closed form
`_lambda_balanced.lambda_flow_modes`, which has none of this cancellation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ._teacher import Teacher
from ._trajectory import FLOW_TIME, Trajectory, mode_strengths_of, population_loss

MAX_GROWTH = 300.0  # f_max · Δt per application: √k ≤ e^{300} stays finite


def _stable_step(f, C, dt):
    """Factor (in F's eigenbasis) of P(dt) from a factor C of P(0); dt > 0."""
    pos = f > 0
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        # κ = (1 − e^{−2|f|dt})/(2|f|) (= dt at f = 0); k = e^{2f dt}κ for f > 0, κ otherwise.
        kap = np.where(f != 0, np.expm1(-2.0 * np.abs(f) * dt) / (-2.0 * np.abs(f)), dt)
    root_k = np.where(pos, np.exp(np.where(pos, f, 0.0) * dt), 1.0) * np.sqrt(kap)
    g = np.where(pos, 1.0, np.exp(np.where(pos, 0.0, f) * dt)) / np.sqrt(kap)
    h = C.shape[1]
    M = np.concatenate([np.eye(h), root_k[:, None] * C])
    order = np.argsort(-np.linalg.norm(M, axis=1), kind="stable")
    Z = np.empty_like(M)
    Z[order] = np.linalg.qr(M[order])[0]
    return g[:, None] * Z[h:]


@dataclasses.dataclass(frozen=True, eq=False)
class RiccatiSolution:
    """Closed-form gradient flow from λ-balanced weights, at flow times `times`.

    Attributes:
      times: (T,) flow times.
      lam: λ of the init (W2ᵀW2 − W1W1ᵀ = λI), conserved.
      network_map: (T, d_out, d_in) W2W1.
      w1_gram: (T, d_in, d_in) W1ᵀW1, the input-side representation (hidden-rotation invariant).
      w2_gram: (T, d_out, d_out) W2W2ᵀ, the output-side representation.
      factor: (T, d_in + d_out, h) a factor Q̃ of P = QQᵀ: [W1ᵀ; W2] up to an h × h rotation.
      trajectory: the usual Trajectory (mode strengths, loss, ‖W1‖² = tr W1ᵀW1, ‖W2‖²).

    NTK. For f(x) = W2W1x (whitened inputs) gradient flow moves the end-to-end map by
    dW/dt = −Θ[W − A] with Θ[M] = W2W2ᵀM + MW1ᵀW1, i.e. the neural tangent kernel
    Θ(x, x') = (xᵀW1ᵀW1x') I_{d_out} + (xᵀx') W2W2ᵀ. As a matrix on row-major vec(M)
    (index i·d_in + j for M_ij) it is W2W2ᵀ ⊗ I_{d_in} + I_{d_out} ⊗ W1ᵀW1 (`ntk_matrix`).
    Its trace is d_in‖W2‖² + d_out‖W1‖², the Hessian trace of THEORY.md §4 (`ntk_trace`);
    `ntk_change` is ‖Θ(t) − Θ(0)‖_F / ‖Θ(0)‖_F: ≈ 0 in the lazy regime, O(1) in the rich one.
    """

    times: np.ndarray
    lam: float
    network_map: np.ndarray
    w1_gram: np.ndarray
    w2_gram: np.ndarray
    factor: np.ndarray
    trajectory: Trajectory

    def ntk_matrix(self, k: int) -> np.ndarray:
        """Θ at time index k: (d_out·d_in) × (d_out·d_in), row-major vec."""
        return ntk_matrix(self.w1_gram[k], self.w2_gram[k])

    @property
    def ntk_trace(self) -> np.ndarray:
        d_out, d_in = self.network_map.shape[-2:]
        return d_in * np.trace(self.w2_gram, axis1=-2, axis2=-1) + d_out * np.trace(self.w1_gram, axis1=-2, axis2=-1)

    @property
    def ntk_change(self) -> np.ndarray:
        return _kron_sum_norm(self.w1_gram - self.w1_gram[0], self.w2_gram - self.w2_gram[0]) / np.maximum(
            _kron_sum_norm(self.w1_gram[0], self.w2_gram[0]), 1e-300)


def ntk_matrix(w1_gram, w2_gram) -> np.ndarray:
    """W2W2ᵀ ⊗ I_{d_in} + I_{d_out} ⊗ W1ᵀW1 (row-major vec of the d_out × d_in map)."""
    d_in, d_out = w1_gram.shape[-1], w2_gram.shape[-1]
    return np.kron(w2_gram, np.eye(d_in)) + np.kron(np.eye(d_out), w1_gram)


def _kron_sum_norm(X1, X2):
    """‖X2 ⊗ I + I ⊗ X1‖_F for symmetric X1 (d_in), X2 (d_out), without forming it."""
    d_in, d_out = X1.shape[-1], X2.shape[-1]
    sq = lambda X: np.sum(X**2, axis=(-2, -1))
    tr = lambda X: np.trace(X, axis1=-2, axis2=-1)
    return np.sqrt(np.maximum(d_in * sq(X2) + d_out * sq(X1) + 2 * tr(X1) * tr(X2), 0.0))


def riccati_flow(teacher: Teacher, W1_0, W2_0, times, balance_tol: float = 1e-10) -> RiccatiSolution:
    """Closed-form gradient flow from λ-balanced (W1_0, W2_0) at flow times `times`.

    Args:
      teacher: whitened teacher A.
      W1_0, W2_0: (h, d_in), (d_out, h) with W2ᵀW2 − W1W1ᵀ = λI for some λ (to
        `balance_tol`, relative); any h, d_in, d_out allowed by the dimension rules of
        `_lambda_balanced`; W1_0 = W2_0 = 0 and rank-deficient weights work too.
      times: finite flow times ≥ 0.
    Returns:
      A RiccatiSolution (representations, network map, NTK, and a Trajectory).
    """
    from ._lambda_balanced import lambda_of

    if teacher.input_variances is not None:
        raise ValueError("the Riccati solution here assumes whitened inputs")
    W1_0, W2_0 = np.asarray(W1_0, np.float64), np.asarray(W2_0, np.float64)
    lam = lambda_of(W1_0, W2_0, balance_tol)
    t = np.atleast_1d(np.asarray(times, np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("times must be finite and non-negative")
    d_in, d_out = teacher.d_in, teacher.d_out
    A = teacher.matrix
    F = np.block([[-0.5 * lam * np.eye(d_in), A.T], [A, 0.5 * lam * np.eye(d_out)]])
    f, E = np.linalg.eigh(F)
    dt_max = MAX_GROWTH / max(np.abs(f).max(), 1e-300)
    C, now = E.T @ np.concatenate([W1_0.T, W2_0]), 0.0
    factors = np.empty((t.size,) + C.shape)
    for idx in np.argsort(t):
        gap = t[idx] - now
        if gap > 0:
            n = int(np.ceil(gap / dt_max))
            for _ in range(n):
                C = _stable_step(f, C, gap / n)
        now = t[idx]
        factors[idx] = C
    Q = E @ factors  # (T, d_in + d_out, h)
    Q1t, Q2 = Q[:, :d_in], Q[:, d_in:]
    W = Q2 @ Q1t.swapaxes(-1, -2)
    g1, g2 = Q1t @ Q1t.swapaxes(-1, -2), Q2 @ Q2.swapaxes(-1, -2)
    n1, n2 = np.trace(g1, axis1=1, axis2=2), np.trace(g2, axis1=1, axis2=2)
    traj = Trajectory(
        times=t,
        time_unit=FLOW_TIME,
        mode_strengths=mode_strengths_of(W, teacher.U, teacher.V),
        loss=population_loss(Q1t.swapaxes(-1, -2), Q2, A),
        w1_sq_norm=n1,
        w2_sq_norm=n2,
        teacher=teacher,
        d_hidden=Q.shape[-1],
        method=f"closed-form gradient flow, λ-balanced init (λ = {lam:g}; matrix Riccati, stable factored form)",
    )
    return RiccatiSolution(times=t, lam=lam, network_map=W, w1_gram=g1, w2_gram=g2, factor=Q, trajectory=traj)


def balanced_flow(teacher: Teacher, W1_0, W2_0, times, balance_tol: float = 1e-10) -> Trajectory:
    """The Trajectory of `riccati_flow` (kept for callers that want mode strengths only).

    Weights are not returned: P fixes them only up to a rotation of the hidden units; the
    representations W1ᵀW1, W2W2ᵀ and the network map are in `riccati_flow`'s result.
    """
    return riccati_flow(teacher, W1_0, W2_0, times, balance_tol).trajectory
