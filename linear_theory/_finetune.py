"""Fine-tuning as a perturbation (THEORY.md §5).

From pre-training checkpoints (W1(T), W2(T)) on teacher A, run K GD steps at a fixed rate
η_ft on a second target B, optionally with ½λ‖W − W(T)‖² per layer, and measure the
pre-training loss L_A ("out of domain") and the fine-tuning loss L_B ("in domain").
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np

from ._gd_full import loss_and_grads, simulate_gd
from ._gd_map import check_checkpoints
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher, random_orthonormal
from ._trajectory import population_loss
from ._x64 import x64

CHANGES = ("rank", "rotate")


def finetune_target(teacher: Teacher, kind: str = "rank", size: float = 0.5, rank: int = 1, seed: int = 1) -> np.ndarray:
    """The fine-tuning teacher matrix B (d_out × d_in), seeded.

    kind "rank": B = A + size · P Qᵀ with P (d_out × k), Q (d_in × k) random orthonormal
      columns, so the change has k singular values equal to `size`.
    kind "rotate": B = U' diag(s/d) V'ᵀ with every singular vector turned by the angle
      `size` (radians) towards a random direction orthogonal to all of them:
      u' = u cos θ + u⊥ sin θ (needs d ≥ 2r in that space).
    """
    if not np.isfinite(size):
        raise ValueError("size of the change must be finite")
    rng = np.random.default_rng(seed)
    if kind == "rank":
        if not 1 <= rank <= min(teacher.d_in, teacher.d_out):
            raise ValueError(f"rank of the change must be in [1, {min(teacher.d_in, teacher.d_out)}]")
        P = random_orthonormal(rng, teacher.d_out, rank)
        Q = random_orthonormal(rng, teacher.d_in, rank)
        return teacher.matrix + size * P @ Q.T
    if kind == "rotate":

        def turn(M):
            n, r = M.shape
            if n < 2 * r:
                raise ValueError(f"rotating {r} singular vectors needs dimension ≥ {2 * r} (got {n})")
            perp = rng.standard_normal((n, r))
            perp -= M @ (M.T @ perp)
            perp = np.linalg.qr(perp)[0]
            return M * np.cos(size) + perp * np.sin(size)

        return (turn(teacher.U) * teacher.targets) @ turn(teacher.V).T
    raise ValueError(f"unknown change {kind!r}; known: {', '.join(CHANGES)}")


@jax.jit(static_argnames=("steps", "whitened"))
def _finetune(W1, W2, B, Sxx, lr, l2, steps, whitened):
    anchor1, anchor2 = W1, W2
    BS = B if whitened else B @ Sxx

    def step(state, _):
        w1, w2 = state
        _, g2, g1 = loss_and_grads(w1, w2, B, Sxx, BS, whitened)
        return (w1 - lr * (g1 + l2 * (w1 - anchor1)), w2 - lr * (g2 + l2 * (w2 - anchor2))), None

    (W1, W2), _ = jax.lax.scan(step, (W1, W2), None, length=steps)
    return W1, W2


@jax.jit(static_argnames=("steps", "whitened"))
def _finetune_many(W1, W2, B, Sxx, lrs, l2s, steps, whitened):
    """`_finetune` from every checkpoint (T, h, d_in), (T, d_out, h) at every (η_ft, λ) pair
    (G,), vmapped inside one compiled program: weights (G, T, ...)."""
    one = lambda w1, w2, lr, l2: _finetune(w1, w2, B, Sxx, lr, l2, steps, whitened)  # noqa: E731
    over_checkpoints = jax.vmap(one, in_axes=(0, 0, None, None))
    return jax.vmap(over_checkpoints, in_axes=(None, None, 0, 0))(W1, W2, lrs, l2s)


@dataclasses.dataclass(frozen=True, eq=False)
class FinetuneSweep:
    """Losses after fine-tuning each pre-training checkpoint; time in GD steps.

    Attributes:
      pretrain_steps: (T,) pre-training steps of the checkpoints.
      pretrain_loss_before / _after: (T,) L_A = ½ tr((W−A)Σx(W−A)ᵀ) before / after fine-tuning.
      finetune_loss_before / _after: (T,) L_B, the same with B.
      turning_step: argmin over T of L_A after fine-tuning.
      turning_is_interior: whether that argmin lies strictly inside the sweep (a U).
      delta_f_first_order_rel_error: (T,) ‖ΔF_pred − ΔF_sim‖ / ‖ΔF_sim‖ with
        ΔF_pred = −η_ft K (W2W2ᵀG + G W1ᵀW1), G = (W2W1 − B)Σx at the checkpoint.
      delta_f_norm: (T,) ‖ΔF_sim‖_F, how far fine-tuning moved the end-to-end map.
    """

    pretrain_steps: np.ndarray
    pretrain_loss_before: np.ndarray
    pretrain_loss_after: np.ndarray
    finetune_loss_before: np.ndarray
    finetune_loss_after: np.ndarray
    turning_step: int
    turning_is_interior: bool
    delta_f_first_order_rel_error: np.ndarray
    delta_f_norm: np.ndarray
    finetune_lr: float
    finetune_steps: int
    finetune_l2: float


def _gauss_newton_sharpness(M: np.ndarray, Sxx: np.ndarray) -> float:
    """Top eigenvalue of the Gauss–Newton Hessian of ½tr((W2W1 − M)Σx(W2W1 − M)ᵀ) at the
    balanced factorisation W1 = S^½Vᵀ, W2 = US^½ of M = USVᵀ (= its full Hessian there, the
    residual being zero). Power-free: scipy's Lanczos on the operator
    (dW1, dW2) ↦ (W2ᵀE, EW1ᵀ), E = (W2 dW1 + dW2 W1)Σx."""
    from scipy.sparse.linalg import LinearOperator, eigsh

    U, S, Vt = np.linalg.svd(M, full_matrices=False)
    keep = S > S.max() * 1e-12 if S.size and S.max() > 0 else np.zeros(S.shape, bool)
    if not keep.any():
        return 0.0
    W1 = np.sqrt(S[keep])[:, None] * Vt[keep]
    W2 = U[:, keep] * np.sqrt(S[keep])
    k, (d_out, d_in) = int(keep.sum()), M.shape
    n1 = k * d_in

    def apply(x):
        x = np.asarray(x, dtype=np.float64).ravel()
        d1, d2 = x[:n1].reshape(k, d_in), x[n1:].reshape(d_out, k)
        E = (W2 @ d1 + d2 @ W1) @ Sxx
        return np.concatenate([(W2.T @ E).ravel(), (E @ W1.T).ravel()])

    n = n1 + d_out * k
    if n <= 400:  # small: the dense matrix, exactly
        H = np.stack([apply(e) for e in np.eye(n)], 1)
        return float(np.linalg.eigvalsh((H + H.T) / 2)[-1])
    op = LinearOperator((n, n), matvec=apply, dtype=np.float64)
    return float(eigsh(op, k=1, which="LA", return_eigenvectors=False, tol=1e-10)[0])


def finetune_lr_limit(teacher: Teacher, target: np.ndarray, finetune_l2: float = 0.0) -> float:
    """The largest stable fixed fine-tuning rate: 2 / (sharpness + λ).

    GD at rate η is stable at a minimum only while η·λ_max(H) < 2. Fine-tuning starts near
    the pre-training solution A (late checkpoints) and ends near B, so the sharpness is the
    larger of the Hessian tops of the fine-tuning loss at the balanced factorisations of A
    and of B (the Gauss–Newton part depends on the weights only); the L2 term ½λ‖W − W(T)‖²
    adds λ to every eigenvalue. Whitened inputs: λ_max = 2σ_max(M), so the limit is
    1/(max(s_1(A), σ_1(B)) + λ/2) — the pre-training limit 1/s_max at λ = 0 and B = A.
    """
    Sxx = teacher.input_covariance
    sharp = max(_gauss_newton_sharpness(teacher.matrix, Sxx),
                _gauss_newton_sharpness(np.asarray(target, dtype=np.float64), Sxx))
    return 2.0 / (sharp + float(finetune_l2))


@x64
def finetune_sweep(
    teacher: Teacher,
    target: np.ndarray,
    d_hidden: int,
    lr: float,
    pretrain_steps,
    finetune_lr: float,
    finetune_steps: int,
    finetune_l2: float = 0.0,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed: int = 0,
    schedule: Schedule = CONSTANT,
    weight_decay=0.0,
) -> FinetuneSweep:
    """Pre-train on A (full-matrix GD), then fine-tune every checkpoint on B.

    Args:
      teacher: pre-training teacher A (its input covariance is used for both tasks).
      target: B, (d_out, d_in), e.g. from `finetune_target`.
      d_hidden, lr, init, init_strength, init_std, seed, schedule: pre-training, as in
        `simulate_gd`.
      pretrain_steps: checkpoints T (finite, non-negative integers).
      finetune_lr: η_ft, fixed per-step rate of fine-tuning (no stability check: a rate
        that diverges at large weights is part of what is studied; non-finite losses are
        reported as inf).
      finetune_steps: K ≥ 1.
      finetune_l2: λ ≥ 0, coefficient of ½‖W − W(T)‖² per layer.
      weight_decay: weight decay of pre-training (λ or (λ1, λ2), `simulate_gd`).
    """
    T = check_checkpoints(pretrain_steps, allow_inf=False)
    B = np.asarray(target, dtype=np.float64)
    if B.shape != (teacher.d_out, teacher.d_in):
        raise ValueError(f"fine-tuning target must have shape {(teacher.d_out, teacher.d_in)}")
    if not np.isfinite(finetune_lr) or finetune_lr <= 0:
        raise ValueError("fine-tuning rate must be positive and finite")
    if int(finetune_steps) != finetune_steps or finetune_steps < 1:
        raise ValueError("fine-tuning steps must be a positive integer")
    if not np.isfinite(finetune_l2) or finetune_l2 < 0:
        raise ValueError("fine-tuning L2 coefficient must be non-negative")
    pre = simulate_gd(teacher, d_hidden, lr, T, init=init, init_strength=init_strength, init_std=init_std,
                      seed=seed, schedule=schedule, record_weights=True,
                      weight_decay=weight_decay)
    return _finetune_checkpoints(teacher, B, pre, [finetune_lr], int(finetune_steps), [finetune_l2])[0]


def _finetune_checkpoints(teacher: Teacher, B, pre, finetune_lrs, finetune_steps: int, finetune_l2s) -> list:
    """Fine-tune every checkpoint of a pre-training run `pre` (recorded weights) on B with K =
    finetune_steps at each pair (finetune_lrs[g], finetune_l2s[g]): one `FinetuneSweep` per pair."""
    Sxx = teacher.input_covariance
    whitened = teacher.input_variances is None
    lrs, l2s = np.asarray(finetune_lrs, np.float64), np.asarray(finetune_l2s, np.float64)
    W1f, W2f = (np.asarray(x) for x in _finetune_many(pre.W1, pre.W2, B, Sxx, lrs, l2s, int(finetune_steps),
                                                       whitened))
    return [_finetune_summary(teacher, B, pre, W1f[g], W2f[g], float(lrs[g]), int(finetune_steps), float(l2s[g]))
            for g in range(lrs.size)]


def _finetune_summary(teacher: Teacher, B, pre, W1f, W2f, finetune_lr: float, finetune_steps: int,
                      finetune_l2: float) -> FinetuneSweep:
    """Losses and the first-order check of one fine-tuning of every checkpoint (weights W1f, W2f)."""
    T = pre.times
    Sxx = teacher.input_covariance
    A = teacher.matrix

    def loss(W1, W2, M):
        with np.errstate(over="ignore", invalid="ignore"):
            v = population_loss(W1, W2, M, Sxx)
        return np.where(np.isfinite(v), v, np.inf)

    la_after = loss(W1f, W2f, A)
    W1, W2 = pre.W1, pre.W2
    G = (W2 @ W1 - B) @ Sxx
    pred = -finetune_lr * finetune_steps * (W2 @ np.swapaxes(W2, -1, -2) @ G + G @ np.swapaxes(W1, -1, -2) @ W1)
    with np.errstate(over="ignore", invalid="ignore"):
        sim = W2f @ W1f - W2 @ W1
        sim_norm = np.linalg.norm(sim, axis=(-2, -1))
        rel = np.linalg.norm(pred - sim, axis=(-2, -1)) / sim_norm
    k = int(np.argmin(la_after))
    return FinetuneSweep(
        pretrain_steps=T,
        pretrain_loss_before=pre.loss,
        pretrain_loss_after=la_after,
        finetune_loss_before=loss(W1, W2, B),
        finetune_loss_after=loss(W1f, W2f, B),
        turning_step=int(T[k]),
        turning_is_interior=bool(0 < k < T.size - 1),
        delta_f_first_order_rel_error=rel,
        delta_f_norm=sim_norm,
        finetune_lr=float(finetune_lr),
        finetune_steps=int(finetune_steps),
        finetune_l2=float(finetune_l2),
    )


@dataclasses.dataclass(frozen=True, eq=False)
class FinetuneGrid:
    """Fine-tuning knobs on a grid (every combination), each a `FinetuneSweep` over the same
    pre-training checkpoints: rows (schedule, finetune_lr, finetune_steps, finetune_l2)."""

    rows: list
    sweeps: list


@x64
def finetune_grid(
    teacher: Teacher,
    target: np.ndarray,
    d_hidden: int,
    lr: float,
    pretrain_steps,
    finetune_lrs,
    finetune_steps,
    finetune_l2s,
    schedules: dict,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed: int = 0,
    weight_decay=0.0,
) -> FinetuneGrid:
    """`finetune_sweep` for every (pre-training schedule, η_ft, K, λ) in the product of the
    lists; each schedule (name → `Schedule`) is pre-trained once and its checkpoints reused."""
    T = check_checkpoints(pretrain_steps, allow_inf=False)
    B = np.asarray(target, dtype=np.float64)
    lrs, ks, l2s = [float(x) for x in finetune_lrs], list(finetune_steps), [float(x) for x in finetune_l2s]
    if not (all(np.isfinite(x) and x > 0 for x in lrs) and all(int(k) == k and k >= 1 for k in ks)
            and all(np.isfinite(x) and x >= 0 for x in l2s)):
        raise ValueError("fine-tuning rates must be positive, steps positive integers, L2 ≥ 0")
    rows, sweeps = [], []
    for name, schedule in schedules.items():
        pre = simulate_gd(teacher, d_hidden, lr, T, init=init, init_strength=init_strength, init_std=init_std,
                          seed=seed, schedule=schedule, record_weights=True, weight_decay=weight_decay)
        # every (η_ft, λ) pair at once (index i·len(l2s) + j), one compiled program per K
        by_k = {int(k): _finetune_checkpoints(teacher, B, pre, np.repeat(lrs, len(l2s)), int(k),
                                              np.tile(l2s, len(lrs))) for k in ks}
        for i, k, j in itertools.product(range(len(lrs)), ks, range(len(l2s))):  # rows: η_ft, K, λ
            rows.append((name, lrs[i], int(k), l2s[j]))
            sweeps.append(by_k[int(k)][i * len(l2s) + j])
    return FinetuneGrid(rows, sweeps)
