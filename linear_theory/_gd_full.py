"""Full-matrix gradient descent on W1, W2 in JAX (jit + lax.scan, vmap over a batch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ._closed_form import initial_strengths
from ._fixed_point import fixed_point_strengths, kept_modes
from ._gd_map import check_checkpoints, check_lr, finite_gaps, segment_scan
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher, random_orthonormal
from ._trajectory import STEPS, Trajectory, mode_strengths_of
from ._weight_decay import check_weight_decay, decayed_fixed_point
from ._x64 import x64

INITS = ("aligned", "random")


def init_weights(
    teacher: Teacher,
    d_hidden: int,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed: int = 0,
):
    """Initial (W1, W2) as float64 numpy arrays.

    "aligned": W1 = R diag(√a0) Vᵀ, W2 = U diag(√a0) Rᵀ with R (h × r) orthonormal from
    `seed` (when h < r, only the h modes of the best rank-h fixed point, `kept_modes`).
    "random": i.i.d. N(0, init_std²) entries.
    """
    if d_hidden < 1:
        raise ValueError("hidden width must be at least 1")
    rng = np.random.default_rng(seed)
    if init == "aligned":
        keep = kept_modes(teacher, d_hidden)
        a0 = initial_strengths(teacher, init_strength, d_hidden)[keep]
        R = random_orthonormal(rng, d_hidden, int(keep.sum()))
        W1 = (R * np.sqrt(a0)) @ teacher.V[:, keep].T
        W2 = (teacher.U[:, keep] * np.sqrt(a0)) @ R.T
        return W1, W2
    if init == "random":
        if init_std is None or not np.isfinite(init_std) or init_std <= 0:
            raise ValueError("random init needs a positive finite --init-std")
        W1 = init_std * rng.standard_normal((d_hidden, teacher.d_in))
        W2 = init_std * rng.standard_normal((teacher.d_out, d_hidden))
        return W1, W2
    raise ValueError(f"unknown init {init!r}; known: {', '.join(INITS)}")


def loss_and_grads(W1, W2, A, Sxx, Syx, whitened: bool):
    """Population loss ½ tr((W−A) Σx (W−A)ᵀ) and its gradients, W = W2 W1.

    G = W Σx − Σyx;  ∇W2 = G W1ᵀ,  ∇W1 = W2ᵀ G.
    """
    W = W2 @ W1
    E = W - A
    G = E if whitened else W @ Sxx - Syx  # = E Σx, since Σyx = A Σx
    loss = 0.5 * jnp.sum(G * E)  # population_loss, sharing W and G with the gradients
    return loss, G @ W1.T, W2.T @ G


@jax.jit(static_argnames=("schedule", "whitened", "record_weights"))
def _run(W1, W2, lrs, wd1, wd2, gaps, A, Sxx, Syx, U, V, schedule, whitened, record_weights):
    """GD from each of B initial weights (B, h, d_in), (B, d_out, h) at each of L rates (L,):
    the recorded values with leading axes (B, L) (vmapped inside one compiled program, so no
    eager re-layout of the outputs follows)."""
    run = lambda w1, w2, eta: _run_one(w1, w2, eta, wd1, wd2, gaps, A, Sxx, Syx, U, V,  # noqa: E731
                                       schedule, whitened, record_weights)
    return jax.vmap(jax.vmap(run, in_axes=(None, None, 0)), in_axes=(0, 0, None))(W1, W2, lrs)


def _run_one(W1, W2, lr, wd1, wd2, gaps, A, Sxx, Syx, U, V, schedule, whitened, record_weights):
    def step(state, k):
        W1, W2 = state
        _, g2, g1 = loss_and_grads(W1, W2, A, Sxx, Syx, whitened)
        eta = lr * schedule(k)
        return W1 - eta * (g1 + wd1 * W1), W2 - eta * (g2 + wd2 * W2)

    def record(state):
        W1, W2 = state
        loss, _, _ = loss_and_grads(W1, W2, A, Sxx, Syx, whitened)
        a = mode_strengths_of(W2 @ W1, U, V)
        out = dict(a=a, loss=loss, n1=jnp.sum(W1**2), n2=jnp.sum(W2**2))
        if record_weights:
            out.update(W1=W1, W2=W2)
        return out

    return segment_scan(step, record, (W1, W2), gaps)


def _fixed_point(teacher: Teacher, d_hidden: int, weight_decay):
    """(a, ‖W1‖², ‖W2‖²) at the global minimum: the best rank-h approximation in the input
    metric (`fixed_point_strengths`), shrunk to (s − √(λ1λ2))₊/d with weight decay
    (`decayed_fixed_point`, unbalanced when λ1 ≠ λ2)."""
    if weight_decay == (0.0, 0.0):
        a = fixed_point_strengths(teacher, d_hidden)
        return a, a.sum(), a.sum()
    a, b1sq, b2sq = decayed_fixed_point(teacher, weight_decay, d_hidden)
    return a, b1sq.sum(), b2sq.sum()


def _given_weights(teacher: Teacher, d_hidden: int, W1, W2):
    """Given initial weights as (B, h, d_in), (B, d_out, h) float64 JAX arrays, and a stand-in
    for the seed axis (an index array, 0-d when no batch axis was given)."""
    W1, W2 = np.asarray(W1, np.float64), np.asarray(W2, np.float64)
    if W1.ndim not in (2, 3) or W2.ndim != W1.ndim or (W1.ndim == 3 and W1.shape[0] != W2.shape[0]):
        raise ValueError(f"W1, W2 must be (h, d_in), (d_out, h), optionally with one shared batch axis; "
                         f"got {W1.shape}, {W2.shape}")
    if W1.shape[-2:] != (d_hidden, teacher.d_in) or W2.shape[-2:] != (teacher.d_out, d_hidden):
        raise ValueError(f"W1 must be ({d_hidden}, {teacher.d_in}) and W2 ({teacher.d_out}, {d_hidden}); "
                         f"got {W1.shape[-2:]}, {W2.shape[-2:]}")
    if not (np.all(np.isfinite(W1)) and np.all(np.isfinite(W2))):
        raise ValueError("initial weights must be finite")
    index = np.arange(W1.shape[0]) if W1.ndim == 3 else np.asarray(0)
    return jax.device_put(W1.reshape((-1,) + W1.shape[-2:])), jax.device_put(W2.reshape((-1,) + W2.shape[-2:])), index


@x64
def simulate_gd(
    teacher: Teacher,
    d_hidden: int,
    lr,
    checkpoints,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed=0,
    schedule: Schedule = CONSTANT,
    weight_decay=0.0,
    record_weights: bool = False,
    W1=None,
    W2=None,
) -> Trajectory:
    """Gradient descent on the full matrices W1 (h × d_in), W2 (d_out × h).

    W_l ← W_l − η_k (∇L + λ_l W_l), both layers from the same iterate, with
    η_k = lr × schedule(k). Mode strengths are projections on the teacher's fixed pairs.

    Args:
      teacher, d_hidden: the problem; h may be smaller or larger than the rank.
      lr: peak rate, scalar or 1-d array (vmapped).
      checkpoints: steps to record at; inf is the theoretical fixed point (the best rank-h
        approximation in the input metric, `fixed_point_strengths`, balanced; with weight
        decay `decayed_fixed_point`).
      init, init_strength, init_std: see `init_weights`.
      seed: int or 1-d list of ints (vmapped); seeds init (R or the Gaussian entries).
      schedule: a `Schedule` multiplying lr per step.
      weight_decay: λ, coefficient of ½‖W‖² added to the loss of each layer, or a pair
        (λ1 on W1, λ2 on W2).
      record_weights: also return W1, W2 at every finite checkpoint.
      W1, W2: start from these weights instead of `init` ((h, d_in), (d_out, h), or with
        a leading batch axis that takes the place of the seed axis); init, init_strength,
        init_std and seed are then unused, and t = inf is refused (the fixed point depends
        on the init when it is not aligned).
    Returns:
      A Trajectory in steps with batch axes (seed, lr) for each of seed/lr given as a list.
    """
    lrs = check_lr(teacher, lr, d_hidden)
    wd1, wd2 = weight_decay = check_weight_decay(weight_decay)
    c = check_checkpoints(checkpoints)
    if (W1 is None) != (W2 is None):
        raise ValueError("give both W1 and W2, or neither")
    if W1 is not None:
        W1_0, W2_0, seeds = _given_weights(teacher, d_hidden, W1, W2)
        if np.any(np.isinf(c)):
            raise ValueError("checkpoint inf (the fixed point) is not available from given weights")
        init = "given"
    else:
        seeds = np.asarray(seed)
        inits = [init_weights(teacher, d_hidden, init, init_strength, init_std, int(sd)) for sd in seeds.reshape(-1)]
        W1_0 = jax.device_put(np.stack([w[0] for w in inits]))
        W2_0 = jax.device_put(np.stack([w[1] for w in inits]))
    whitened = teacher.input_variances is None
    consts = [jax.device_put(x) for x in (teacher.matrix, teacher.input_covariance, teacher.correlation, teacher.U, teacher.V)]
    gaps = jax.device_put(finite_gaps(c))
    fin = np.isfinite(c)
    out = {}
    if fin.any():  # vmapped over seeds (outer) and learning rates (inner)
        res = _run(W1_0, W2_0, lrs.reshape(-1), wd1, wd2, gaps, *consts, schedule, whitened, record_weights)
        out = {k: np.asarray(v) for k, v in res.items()}

    batch = (seeds.size, lrs.size)
    T = c.size
    a = np.full(batch + (T, teacher.rank), np.nan)
    loss = np.full(batch + (T,), np.nan)
    n1 = np.full(batch + (T,), np.nan)
    n2 = np.full(batch + (T,), np.nan)
    if fin.any():
        a[..., fin, :], loss[..., fin], n1[..., fin], n2[..., fin] = out["a"], out["loss"], out["n1"], out["n2"]
    if (~fin).any():
        a_inf, n1_inf, n2_inf = _fixed_point(teacher, d_hidden, weight_decay)
        a[..., ~fin, :] = a_inf
        loss[..., ~fin] = 0.5 * np.sum(teacher.variances * (a_inf - teacher.targets) ** 2)
        n1[..., ~fin], n2[..., ~fin] = n1_inf, n2_inf
    squeeze = tuple(ax for ax, arr in enumerate((seeds, lrs)) if arr.ndim == 0)
    W1 = W2 = None
    if record_weights:
        if (~fin).any():
            raise ValueError("record_weights needs finite checkpoints")
        W1, W2 = np.squeeze(out["W1"], squeeze), np.squeeze(out["W2"], squeeze)
    return Trajectory(
        times=c,
        time_unit=STEPS,
        mode_strengths=np.squeeze(a, squeeze),
        loss=np.squeeze(loss, squeeze),
        w1_sq_norm=np.squeeze(n1, squeeze),
        w2_sq_norm=np.squeeze(n2, squeeze),
        teacher=teacher,
        d_hidden=d_hidden,
        method=f"full-matrix GD ({init} init)",
        lr=lrs if lrs.ndim else float(lrs),
        W1=W1,
        W2=W2,
        schedule=schedule,
    )
