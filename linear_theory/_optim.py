"""Full-matrix training of W2·W1 with optax optimisers, and the exact perturbed loss on the way.

Optimisers (all from optax, the rate η_k = lr × schedule(k) of `_schedules`):
  sgd       optax.sgd                              W ← W − η g
  momentum  optax.sgd(momentum=β)                  heavy ball, v ← βv + g, W ← W − η v
  adam      optax.adam(b1, b2, eps)
  adamw     optax.adamw(…, weight_decay)           decoupled decay W ← W − η λ W
  sign      optax.sign_sgd                         W ← W − η sign(g)  (per entry)
  sam       optax.contrib.sam(sgd(η), normalize → sgd(ρ), opaque_mode=True): one step is
            g' = ∇L(W + ρ g/‖g‖), W ← W − η g' (‖g‖ over both matrices together; Foret et al.)
Weight decay for the others is the coupled ℓ2 term (optax.add_decayed_weights before the
optimiser), i.e. (λ/2)‖W‖² added to the loss as in `simulate_gd`.

Gradients: the population loss (whitened or co-diagonal Σx) by default; with `batch_size`,
a fresh minibatch of B inputs x ~ N(0, Σx) per step, targets y = Ax + label_noise·ε, loss
½ mean ‖W2W1x − y‖² (an unbiased estimate of L + const). Every step records the mode
strengths, the population loss, ‖W1‖², ‖W2‖² (so tr(H) and the exact E[L_pert] for absolute
noise, `_noise.noise_penalty`, at every step: the turn is an exact argmin over steps); the
weights at a few checkpoints give the largest Hessian eigenvalue of L (dense, exact).
Sign descent and Adam are not rotation-invariant: the per-mode picture holds for them only
when the teacher's singular vectors are coordinate axes (`axis_teacher`).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._gd_full import init_weights
from ._noise import noise_penalty
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher
from ._trajectory import mode_strengths_of, population_loss
from ._x64 import x64

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "sign", "sam")


def make_optimizer(name: str, lr: float, schedule: Schedule = CONSTANT, *, momentum: float = 0.9,
                   b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                   rho: float = 0.05):
    """The optax GradientTransformation for `name` at peak rate lr (module docstring)."""
    import optax

    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    for what, v in (("learning rate", lr), ("rho", rho)):
        if not np.isfinite(v) or v < 0 or (what == "learning rate" and v == 0):
            raise ValueError(f"{what} must be a positive finite number")
    if not 0 <= momentum < 1 or not 0 <= b1 < 1 or not 0 <= b2 < 1:
        raise ValueError("momentum, b1 and b2 must be in [0, 1)")
    if not np.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError("weight decay must be a non-negative number")
    sched = lambda k: lr * schedule(k)  # noqa: E731
    if name == "adamw":
        return optax.adamw(sched, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay)

    def coupled(opt):  # (λ/2)‖W‖² in the loss: λW added to the gradient the optimiser sees
        return optax.chain(optax.add_decayed_weights(weight_decay), opt) if weight_decay else opt

    if name == "sam":  # the decay goes with the outer step (the ascent direction is the plain gradient)
        return optax.contrib.sam(coupled(optax.sgd(sched)), optax.chain(optax.contrib.normalize(), optax.sgd(rho)),
                                 sync_period=2, opaque_mode=True)
    return coupled({
        "sgd": lambda: optax.sgd(sched),
        "momentum": lambda: optax.sgd(sched, momentum=momentum),
        "adam": lambda: optax.adam(sched, b1=b1, b2=b2, eps=eps),
        "sign": lambda: optax.sign_sgd(sched),
    }[name]())


@dataclasses.dataclass(frozen=True, eq=False)
class OptimRun:
    """One optax run, recorded at every step 0 … n (GD steps).

    mode_strengths (n+1, r); loss (n+1,) population L; w1_sq_norm, w2_sq_norm (n+1,);
    hessian_trace (n+1,) exact tr(H) = tr(Σx)‖W2‖² + d_out tr(W1ΣxW1ᵀ);
    expected_perturbed_loss (S, n+1) for each σ in `sigmas` (absolute noise, exact);
    checkpoint_steps (K,), sharpness (K,) largest Hessian eigenvalue of L there, rate (K,)
    η at those steps (2/η is the GD stability limit to compare with).
    """

    optimizer: str
    steps: np.ndarray
    mode_strengths: np.ndarray
    loss: np.ndarray
    w1_sq_norm: np.ndarray
    w2_sq_norm: np.ndarray
    hessian_trace: np.ndarray
    sigmas: np.ndarray
    expected_perturbed_loss: np.ndarray
    checkpoint_steps: np.ndarray
    sharpness: np.ndarray
    rate: np.ndarray
    W1: np.ndarray
    W2: np.ndarray

    def learning_steps(self, targets) -> list:
        """First step with a_i ≥ targets_i/2 (None: not by the last step)."""
        hit = self.mode_strengths >= np.asarray(targets) / 2
        return [int(np.argmax(h)) if h.any() else None for h in hit.T]

    def turn(self):
        """(step, min, rise = last − min) of E[L_pert] for each σ."""
        k = np.argmin(self.expected_perturbed_loss, axis=1)
        m = self.expected_perturbed_loss.min(axis=1)
        return k, m, self.expected_perturbed_loss[:, -1] - m


@jax.jit
def _hessian_top(W1, W2, A, Sxx):
    """Largest eigenvalue of the Hessian of L in (W1, W2), dense (small networks); compiled
    once and called per checkpoint (run eagerly it was about 70 one-operation compilations)."""
    n1 = W1.size

    def f(x):
        return population_loss(x[:n1].reshape(W1.shape), x[n1:].reshape(W2.shape), A, Sxx)

    x = jnp.concatenate([W1.ravel(), W2.ravel()])
    return jnp.linalg.eigvalsh(jax.hessian(f)(x))[-1]


@x64
def train_optax(
    teacher: Teacher,
    d_hidden: int,
    optimizer: str,
    lr: float,
    max_steps: int,
    sigmas=(),
    schedule: Schedule = CONSTANT,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    label_noise: float = 0.0,
    checkpoints=None,
    weights=None,
    **opt_kwargs,
) -> OptimRun:
    """Train with an optax optimiser (`make_optimizer(optimizer, lr, schedule, **opt_kwargs)`)
    for max_steps steps; see the module docstring for what is recorded.

    checkpoints: steps at which the dense Hessian's top eigenvalue is computed (default: 12
    log-spaced steps; [] for none); keep the network small (the Hessian is (h(d_in+d_out))²).
    weights: (W1, W2) to start from instead of `init`.
    """
    import optax

    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError("max steps must be an integer ≥ 1")
    if batch_size is not None and (int(batch_size) != batch_size or batch_size < 1):
        raise ValueError("batch size must be a positive integer")
    if not np.isfinite(label_noise) or label_noise < 0 or (label_noise and batch_size is None):
        raise ValueError("label noise must be a non-negative number, and needs a batch size (sampled inputs)")
    sig = np.atleast_1d(np.asarray(sigmas, dtype=np.float64))
    if np.any(~np.isfinite(sig)) or np.any(sig < 0):
        raise ValueError("noise stds must be finite and non-negative")
    n = int(max_steps)
    ck = np.unique(np.round(np.geomspace(1, n, 12)).astype(int)) if checkpoints is None else np.unique(checkpoints)
    ck = ck.astype(np.int64)
    if ck.size and (ck.min() < 0 or ck.max() > n):
        raise ValueError("checkpoints must lie in 0 … max_steps")
    opt = make_optimizer(optimizer, lr, schedule, **opt_kwargs)
    if weights is None:
        weights = init_weights(teacher, d_hidden, init, init_strength, init_std, seed)
    W1, W2 = (jax.device_put(np.asarray(w, dtype=np.float64)) for w in weights)
    if W1.shape != (d_hidden, teacher.d_in) or W2.shape != (teacher.d_out, d_hidden):
        raise ValueError("weights must be (d_hidden, d_in) and (d_out, d_hidden)")
    A, Sxx, U, V = (jax.device_put(x) for x in (teacher.matrix, teacher.input_covariance, teacher.U, teacher.V))
    root = jax.device_put(np.linalg.cholesky(teacher.input_covariance))
    key = jax.random.key(seed)

    def batch_loss(p, k):
        if batch_size is None:
            return population_loss(p[0], p[1], A, Sxx)
        kx, ky = jax.random.split(jax.random.fold_in(key, k))
        X = jax.random.normal(kx, (teacher.d_in, int(batch_size)), jnp.float64)
        X = root @ X
        Y = A @ X + label_noise * jax.random.normal(ky, (teacher.d_out, int(batch_size)), jnp.float64)
        R = p[1] @ (p[0] @ X) - Y
        return 0.5 * jnp.sum(R * R) / batch_size

    def record(p):
        w = p[1] @ p[0]
        return (mode_strengths_of(w, U, V), population_loss(p[0], p[1], A, Sxx),
                jnp.sum((p[0] @ Sxx) * p[0]), jnp.sum(p[0] ** 2), jnp.sum(p[1] ** 2))

    @jax.jit
    def run(params):
        state = opt.init(params)
        ckj = jnp.asarray(ck)
        buf = (jnp.zeros((ck.size,) + W1.shape), jnp.zeros((ck.size,) + W2.shape))

        def put(buf, p, k):
            hit = ckj == k
            return tuple(jnp.where(hit[:, None, None], x[None], b) for b, x in zip(buf, p))

        def step(carry, k):
            p, st, buf = carry
            g = jax.grad(batch_loss)(p, k)
            upd, st = opt.update(g, st, p, grad_fn=lambda q, _: jax.grad(batch_loss)(q, k))
            p = optax.apply_updates(p, upd)
            buf = put(buf, p, k + 1)
            return (p, st, buf), record(p)

        buf = put(buf, params, 0)
        (_, _, buf), rec = jax.lax.scan(step, (params, state, buf), jnp.arange(n))
        return record(params), rec, buf

    first, rec, buf = run((W1, W2))
    a, loss, w1m, n1, n2 = (np.concatenate([np.asarray(f)[None], np.asarray(r)]) for f, r in zip(first, rec))
    trace = float(np.trace(teacher.input_covariance))
    h = d_hidden
    B1, B2 = np.asarray(buf[0]), np.asarray(buf[1])
    top = np.array([float(_hessian_top(jax.device_put(b1), jax.device_put(b2), A, Sxx)) for b1, b2 in zip(B1, B2)])
    epl = np.array([loss + noise_penalty(w1m, n2, trace, teacher.d_out, h, s**2, s**2) for s in sig]).reshape(
        sig.size, n + 1)
    return OptimRun(
        optimizer=optimizer, steps=np.arange(n + 1), mode_strengths=a, loss=loss, w1_sq_norm=n1,
        w2_sq_norm=n2, hessian_trace=trace * n2 + teacher.d_out * w1m, sigmas=sig, expected_perturbed_loss=epl,
        checkpoint_steps=ck, sharpness=top, rate=lr * schedule.values(ck), W1=B1, W2=B2,
    )


def axis_teacher(singular_values, d_in: int, d_out: int) -> Teacher:
    """A teacher whose singular vectors are the first coordinate axes (U = I[:, :r],
    V = I[:, :r]): the case where per-entry optimisers (sign descent, Adam) act mode by mode."""
    s = np.asarray(singular_values, dtype=np.float64)
    r = s.size
    return Teacher(np.eye(d_out)[:, :r], s, np.eye(d_in)[:, :r])


def sign_descent_modes(s, a0, lr, steps):
    """Sign descent on an axis-aligned teacher from aligned balanced init with R = I (each mode
    one entry b of W1 and c of W2, b = c = √a0): while a < s both entries grow by η per step,
    so a_k = (√a0 + ηk)² until the first step that reaches or passes s; after that the entries
    flip between two values (b ± η steps around √s): the closed form is exact up to the
    crossing, k_i = ⌈(√s_i − √a0)/η⌉, and the mode is learned (a ≥ s/2) at step
    ⌈(√(s/2) − √a0)/η⌉ — a time ∝ √s, not ∝ ln(s/a0)/s as for GD."""
    s, a0, k = (np.asarray(x, dtype=np.float64) for x in (s, a0, steps))
    return (np.sqrt(a0) + lr * k[..., None]) ** 2 * np.ones_like(s)
