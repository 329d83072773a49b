"""Fine-tuning as a perturbation (THEORY.md §5).

From pre-training checkpoints (W1(T), W2(T)) on teacher A, run K GD steps at a fixed rate
η_ft on a second target B, optionally with ½λ‖W − W(T)‖² per layer, and measure the
pre-training loss L_A ("out of domain") and the fine-tuning loss L_B ("in domain").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
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
                      seed=seed, schedule=schedule, record_weights=True)
    Sxx = teacher.input_covariance
    whitened = teacher.input_variances is None
    run = jax.vmap(lambda w1, w2: _finetune(w1, w2, B, Sxx, finetune_lr, finetune_l2, int(finetune_steps), whitened))
    W1f, W2f = (np.asarray(x) for x in run(jnp.asarray(pre.W1), jnp.asarray(pre.W2)))

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
