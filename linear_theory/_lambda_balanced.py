"""λ-balanced two-layer networks: W2ᵀW2 − W1W1ᵀ = λ I_h (Dominé et al. 2024, "From lazy to
rich"), derived here from the gradient-flow ODE. Whitened inputs unless stated.

Conservation. Gradient flow keeps W2ᵀW2 − W1W1ᵀ fixed (both derivatives equal
W2ᵀ(A − W2W1)W1ᵀ + its transpose), so a λ-balanced init stays λ-balanced. λ = 0 is the
balanced (rich) case; |λ| → ∞ the lazy one.

Dimension rules. W2ᵀW2 has rank ≤ min(d_out, h) and W1W1ᵀ rank ≤ min(d_in, h):
  λ > 0 needs W2ᵀW2 = W1W1ᵀ + λI ≻ 0, i.e. h ≤ d_out;
  λ < 0 needs W1W1ᵀ = W2ᵀW2 + |λ|I ≻ 0, i.e. h ≤ d_in;
  λ = 0 is possible for every (d_in, h, d_out).

Aligned modes. W1 = R diag(b1) Vᵀ (+ …), W2 = U diag(b2) Rᵀ (+ …): each mode holds
a = b1·b2 with b2² − b1² = λ, so b1² + b2² = √(λ² + 4a²) and
  b1² = (√(λ²+4a²) − λ)/2,  b2² = (√(λ²+4a²) + λ)/2,
and gradient flow gives db1/dt = b2(s − a), db2/dt = b1(s − a), hence
  da/dt = √(λ² + 4a²) (s − a)      (λ = 0: 2a(s − a), Saxe et al.).
Hidden units beyond the r teacher modes (h > r) carry √|λ| on a direction orthogonal to
every teacher singular vector: on W2 (a unit output vector ⊥ U) for λ > 0, on W1 for λ < 0.
Such a unit never touches W2W1 and receives zero gradient, so it stays put.

Closed form per mode. With q = (b1, b2), F = [[−λ/2, s], [s, λ/2]] (ω = √(s² + λ²/4)),
the flow is dq/dt = Fq − ½q(qᵀq) and P = qqᵀ solves the Riccati equation
dP/dt = FP + PF − P², so P(t) = x xᵀ / D with x = e^{Ft}q, D = 1 + qᵀK(t)q,
K(t) = ∫₀ᵗe^{2Fτ}dτ = sinh(2ωt)/(2ω) I + sinh²(ωt)/ω² F. Hence
  D = 1 + sinh(2ωt)/(2ω) √(λ²+4a0²) + sinh²(ωt)/ω² (λ²/2 + 2 s a0),
  x1 = cosh(ωt) b1 + sinh(ωt)/ω (s b2 − λ b1/2),  x2 = cosh(ωt) b2 + sinh(ωt)/ω (s b1 + λ b2/2),
  a = x1 x2 / D,  b1² = x1²/D,  b2² = x2²/D.
Every term is ≥ 0 for 0 ≤ a0 < 2s (no cancellation), and dividing through by e^{2ωt}
removes the overflow (`lambda_flow_modes`).

Noise (THEORY.md §4, σ1 = σ2 = σ, whitened): a mode's share of E[L_pert] − L is
½σ²(d_out b1² + d_in b2²). Learning a mode fully (a: 0 → s) changes E[L_pert] by
−½s² + ½ (s*/2)(√(λ² + 4s²) − |λ|) with s* = σ1²d_in + σ2²d_out, so it is harmful iff
  s < s_λ* = √(s*(s* − |λ|))   (no mode is harmful once |λ| ≥ s*).
λ = 0 gives back s*.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._closed_form import initial_strengths
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher, random_orthonormal
from ._trajectory import FLOW_TIME, STEPS, Trajectory, modal_loss
from ._gd_map import factor_step
from ._x64 import x64


def check_lambda_dims(d_in: int, d_out: int, d_hidden: int, lam: float) -> float:
    """λ as a float, or ValueError when no λ-balanced weights of these sizes exist."""
    lam = float(lam)
    if not np.isfinite(lam):
        raise ValueError(f"lambda must be finite (got {lam})")
    if lam > 0 and d_hidden > d_out:
        raise ValueError(f"lambda > 0 needs W2ᵀW2 = W1W1ᵀ + λI of full rank h, i.e. d_hidden ≤ d_out "
                         f"(got h = {d_hidden}, d_out = {d_out}); use lambda ≤ 0 or a narrower network")
    if lam < 0 and d_hidden > d_in:
        raise ValueError(f"lambda < 0 needs W1W1ᵀ = W2ᵀW2 + |λ|I of full rank h, i.e. d_hidden ≤ d_in "
                         f"(got h = {d_hidden}, d_in = {d_in}); use lambda ≥ 0 or a narrower network")
    return lam


def mode_factors(a, lam):
    """(b1, b2) ≥ 0 with b1·b2 = a and b2² − b1² = λ, without cancellation."""
    a, lam = np.broadcast_arrays(np.asarray(a, np.float64), np.asarray(lam, np.float64))
    big = np.sqrt(0.5 * (np.hypot(lam, 2 * a) + np.abs(lam)))  # the larger factor
    with np.errstate(divide="ignore", invalid="ignore"):
        small = np.where(big > 0, a / big, 0.0)  # the smaller one, a / big (no underflow of a²)
    return np.where(lam > 0, small, big), np.where(lam > 0, big, small)


def lambda_aligned_weights(teacher: Teacher, b1, b2, d_hidden: int, lam: float, seed: int = 0):
    """Weights with per-mode factors b1, b2 (..., r) on the first k = min(h, r) modes,
    plus h − k idle units holding √|λ| orthogonally to the teacher (see module doc).

    W1 = R_k diag(b1) V_kᵀ + √max(−λ,0) R_⊥ P_⊥ᵀ,  W2 = U_k diag(b2) R_kᵀ + √max(λ,0) Q_⊥ R_⊥ᵀ,
    R = [R_k R_⊥] an h × h orthogonal matrix from `seed`; P_⊥ (Q_⊥) orthonormal columns
    orthogonal to V (U). Returns W1 (..., h, d_in), W2 (..., d_out, h).
    """
    lam = check_lambda_dims(teacher.d_in, teacher.d_out, d_hidden, lam)
    b1, b2 = np.asarray(b1, np.float64), np.asarray(b2, np.float64)
    k, extra = min(d_hidden, teacher.rank), max(d_hidden - teacher.rank, 0)
    rng = np.random.default_rng(seed)
    R = random_orthonormal(rng, d_hidden, d_hidden)
    Rk, Rx = R[:, :k], R[:, k:]
    W1 = np.einsum("hk,...k,ik->...hi", Rk, b1[..., :k], teacher.V[:, :k])
    W2 = np.einsum("ok,...k,hk->...oh", teacher.U[:, :k], b2[..., :k], Rk)
    if extra and lam != 0:
        side = teacher.V if lam < 0 else teacher.U
        basis = _orthogonal_complement(side, extra, rng)
        if lam < 0:
            W1 = W1 + np.sqrt(-lam) * (Rx @ basis.T)
        else:
            W2 = W2 + np.sqrt(lam) * (basis @ Rx.T)
    return W1, W2


def _orthogonal_complement(B, m, rng):
    """m orthonormal columns orthogonal to the columns of B (n × r); needs n − r ≥ m."""
    n = B.shape[0]
    if n - B.shape[1] < m:
        raise ValueError("not enough dimensions for the idle hidden units")
    X = rng.standard_normal((n, m))
    X -= B @ (B.T @ X)
    X -= B @ (B.T @ X)  # twice is enough in float64
    return np.linalg.qr(X)[0]


def lambda_balanced_init(
    teacher: Teacher,
    d_hidden: int,
    lam: float,
    init: str = "aligned",
    init_strength=1e-6,
    init_std: float | None = None,
    seed: int = 0,
):
    """λ-balanced initial weights (W1 (h, d_in), W2 (d_out, h)), W2ᵀW2 − W1W1ᵀ = λI.

    "aligned": every mode within the width at strength a0 = `init_strength`, split as
    `mode_factors(a0, λ)`; idle units as in `lambda_aligned_weights`.
    "random": not aligned with the teacher. For λ ≥ 0 (and d_in ≤ d_out at λ = 0),
    W1 has i.i.d. N(0, init_std²) entries and W2 = O diag(√(μ + λ)) Sᵀ from the eigenpairs
    (μ, S) of W1W1ᵀ (only the nonzero ones) and random orthonormal O; otherwise the roles of
    W1 and W2 swap. Dimension rules: see `check_lambda_dims`.
    """
    lam = check_lambda_dims(teacher.d_in, teacher.d_out, d_hidden, lam)
    if init == "aligned":
        a0 = initial_strengths(teacher, init_strength, d_hidden)
        b1, b2 = mode_factors(a0, lam)
        return lambda_aligned_weights(teacher, b1, b2, d_hidden, lam, seed)
    if init != "random":
        raise ValueError(f"unknown init {init!r} for lambda-balanced weights; known: aligned, random")
    if init_std is None or not np.isfinite(init_std) or init_std <= 0:
        raise ValueError("random lambda-balanced init needs a positive finite init_std")
    rng = np.random.default_rng(seed)
    h, d_in, d_out = d_hidden, teacher.d_in, teacher.d_out
    first_w1 = lam > 0 or (lam == 0 and min(h, d_in) <= d_out)
    free = init_std * rng.standard_normal((h, d_in) if first_w1 else (d_out, h))
    gram = free @ free.T if first_w1 else free.T @ free
    mu, S = np.linalg.eigh(gram)
    nu = np.maximum(mu + (lam if first_w1 else -lam), 0.0)
    keep = nu > 1e-14 * max(nu.max(), 1e-300)
    O = random_orthonormal(rng, d_out if first_w1 else d_in, int(keep.sum()))
    other = (O * np.sqrt(nu[keep])) @ S[:, keep].T  # (d_out, h) or (d_in, h)
    return (free, other) if first_w1 else (other.T, free)


def lambda_of(W1, W2, tol: float = 1e-10) -> float:
    """λ of λ-balanced weights (W2ᵀW2 − W1W1ᵀ = λI), or ValueError if they are not."""
    W1, W2 = np.asarray(W1, np.float64), np.asarray(W2, np.float64)
    D = W2.T @ W2 - W1 @ W1.T
    lam = float(np.trace(D) / D.shape[0])
    scale = max(np.linalg.norm(W1 @ W1.T), np.linalg.norm(W2.T @ W2), 1e-300)
    if np.linalg.norm(D - lam * np.eye(D.shape[0])) > tol * scale:
        raise ValueError("initial weights are not λ-balanced (W2ᵀW2 − W1W1ᵀ is not a multiple of I)")
    return lam


def lambda_flow_modes(s, a0, lam, t):
    """Closed-form gradient flow of one λ-balanced aligned mode (whitened), see module doc.

    Args:
      s, a0, lam, t: singular value > 0, initial strength 0 ≤ a0 < 2s, λ, flow time ≥ 0
        (t = inf allowed); broadcast together.
    Returns:
      (a, b1², b2²) at time t: strength and the mode's squared weights in W1 and W2.
    """
    s, a0, lam, t = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (s, a0, lam, t)))
    b1, b2 = mode_factors(a0, lam)
    w = np.sqrt(s**2 + lam**2 / 4)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(-2 * w * t)  # e^{−2ωt}; 0 at t = inf
        g = -np.expm1(-2 * w * t)  # 1 − e
    x1 = 0.5 * ((1 + e) * b1 + g * (s * b2 - lam * b1 / 2) / w)
    x2 = 0.5 * ((1 + e) * b2 + g * (s * b1 + lam * b2 / 2) / w)
    D = e + g * (1 + e) / (4 * w) * np.sqrt(lam**2 + 4 * a0**2) + g**2 / (4 * w**2) * (lam**2 / 2 + 2 * s * a0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = x1 * x2 / D, x1**2 / D, x2**2 / D
    # a0 = 0 and λ = 0: nothing moves (D = e = 0 only at t = inf).
    zero = (b1 == 0) & (b2 == 0)
    return tuple(np.where(zero, 0.0, v) for v in out)


def _idle_norms(teacher: Teacher, d_hidden: int, lam: float):
    """‖·‖² that the idle units add to W1 and W2."""
    extra = max(d_hidden - teacher.rank, 0)
    return extra * max(-lam, 0.0), extra * max(lam, 0.0)


def _factors_trajectory(teacher, d_hidden, lam, times, unit, a, b1sq, b2sq, method, lr=None, seed=0):
    n1, n2 = _idle_norms(teacher, d_hidden, lam)
    W1, W2 = lambda_aligned_weights(teacher, np.sqrt(b1sq), np.sqrt(b2sq), d_hidden, lam, seed)
    return Trajectory(
        times=times, time_unit=unit, mode_strengths=a, loss=modal_loss(teacher, a),
        w1_sq_norm=b1sq.sum(-1) + n1, w2_sq_norm=b2sq.sum(-1) + n2, teacher=teacher, d_hidden=d_hidden,
        method=method, lr=lr, W1=W1, W2=W2,
    )


def lambda_gradient_flow(teacher: Teacher, times, lam: float, init_strength=1e-6, d_hidden: int | None = None,
                         seed: int = 0) -> Trajectory:
    """Closed-form gradient flow from the aligned λ-balanced init at flow times `times`
    (whitened). Modes beyond the width stay at 0. Weights (rebuilt exactly, the hidden
    rotation from `seed`) are included. inf gives the fixed point."""
    if teacher.input_variances is not None:
        raise ValueError("the λ-balanced closed form here assumes whitened inputs")
    h = teacher.rank if d_hidden is None else d_hidden
    lam = check_lambda_dims(teacher.d_in, teacher.d_out, h, lam)
    t = np.atleast_1d(np.asarray(times, np.float64))
    if t.ndim != 1 or np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError("times must be a 1-d list of non-negative numbers")
    a0 = initial_strengths(teacher, init_strength, h)
    if np.any(a0 >= 2 * teacher.s):
        raise ValueError("the closed form needs init strength below 2 s_i")
    inside = np.arange(teacher.rank) < h
    a, b1sq, b2sq = lambda_flow_modes(teacher.s, a0, lam, t[:, None])
    a, b1sq, b2sq = (np.where(inside, v, 0.0) for v in (a, b1sq, b2sq))
    return _factors_trajectory(teacher, h, lam, t, FLOW_TIME, a, b1sq, b2sq,
                               f"closed-form gradient flow, aligned λ-balanced init (λ = {lam:g})", seed=seed)


def _gd_factor_path(teacher: Teacher, lr: float, b1, b2, steps, schedule: Schedule = CONSTANT):
    """Exact GD on aligned factors: b1 ← b1 + η b2 (s − d a), b2 ← b2 + η b1 (s − d a),
    both from the same iterate. Yields (b1, b2) after each step in `steps` (sorted ints)."""
    s, d = teacher.s, teacher.variances
    k = 0
    for target in steps:
        while k < target:
            eta = lr * float(schedule(k))
            r = s - d * b1 * b2
            b1, b2 = b1 + eta * b2 * r, b2 + eta * b1 * r
            k += 1
        yield b1, b2


def lambda_gd_modes(teacher: Teacher, lr: float, checkpoints, lam: float, init_strength=1e-6,
                    d_hidden: int | None = None, schedule: Schedule = CONSTANT, seed: int = 0) -> Trajectory:
    """Exact per-mode GD from the aligned λ-balanced init (the map on (b1, b2) per mode;
    GD keeps the weights aligned but changes b2² − b1² by O(η²)). Finite checkpoints only."""
    from ._gd_map import check_checkpoints

    c = check_checkpoints(checkpoints, allow_inf=False)
    h = teacher.rank if d_hidden is None else d_hidden
    lam = check_lambda_dims(teacher.d_in, teacher.d_out, h, lam)
    lr = check_lambda_lr(teacher, lr, lam)
    a0 = initial_strengths(teacher, init_strength, h)
    b1, b2 = mode_factors(a0, lam)
    inside = np.arange(teacher.rank) < h
    b1, b2 = np.where(inside, b1, 0.0), np.where(inside, b2, 0.0)
    path = list(_gd_factor_path(teacher, lr, b1, b2, c.astype(np.int64), schedule))
    B1, B2 = np.array([p[0] for p in path]), np.array([p[1] for p in path])
    return _factors_trajectory(teacher, h, lam, c, STEPS, B1 * B2, B1**2, B2**2,
                               f"exact per-mode GD map, aligned λ-balanced init (λ = {lam:g})", lr=lr, seed=seed)


def lambda_critical_singular_value(s_star, lam):
    """s_λ* = √(s*(s* − |λ|)) (0 when |λ| ≥ s*): learning a mode with s < s_λ* fully raises
    E[L_pert] for λ-balanced aligned weights (module doc); s* = σ1²d_in + σ2²d_out."""
    s_star, lam = np.asarray(s_star, np.float64), np.abs(np.asarray(lam, np.float64))
    return np.sqrt(np.maximum(s_star * (s_star - lam), 0.0))


def check_lambda_lr(teacher: Teacher, lr, lam: float) -> float:
    """GD near the fixed point of λ-balanced weights is stable iff lr·√(λ² + 4 s_max²) < 2:
    at a = s the largest Hessian (= NTK) eigenvalue is b2² + b1² = √(λ² + 4s²) (λ = 0: the
    usual lr·s_max < 1, which is also required)."""
    from ._gd_map import check_lr

    lr = float(check_lr(teacher, lr))
    limit = 2.0 / np.sqrt(lam**2 + 4 * teacher.s.max() ** 2)
    if lr >= limit:
        raise ValueError(f"learning rate {lr:g} is at or beyond the stability limit 2/√(λ² + 4 s_max²) = {limit:g} "
                         f"for λ = {lam:g}")
    return lr


@dataclasses.dataclass(frozen=True, eq=False)
class LambdaPrediction:
    """Noise predictions along exact GD from the aligned λ-balanced init (steps; whitened)."""

    lam: float
    critical_singular_value: float
    lambda_critical_singular_value: float
    harmful_modes: list
    mode_learning_steps: list
    inflection_step: int
    min_expected_perturbed_loss: float
    expected_perturbed_loss_at_max_steps: float
    rise: float
    sensitivity_at_step_0: float
    sensitivity_at_max_steps: float
    max_steps: int
    clean_loss_at_max_steps: float | None = None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["lambda"] = d.pop("lam")
        d["units"] = {
            "steps": "GD steps (flow time = lr × steps)",
            "loss": "expected population loss ½E‖(W2+σ2Z2)(W1+σ1Z1)x − Ax‖² over the noise",
            "critical_singular_value": "s* = σ1²·d_in + σ2²·d_out (the λ = 0 threshold)",
            "lambda_critical_singular_value": "√(s*(s* − |λ|)): learning a mode with s_i below it fully raises "
            "E[L_pert] (0: no mode is harmful)",
            "sensitivity": "E[L_pert] − L",
        }
        return d


BLOCK = 1 << 14  # GD steps per scanned block: memory O(BLOCK · r) for any max_steps


@jax.jit(static_argnames=("n", "schedule"))
def _factor_block(b1, b2, k0, s, lr, n, schedule, l1=0.0, l2=0.0):
    """(b1, b2) after each of the steps k0+1 … k0+n of the per-mode GD map (weight decay
    λ1, λ2 on W1, W2: `_gd_map.factor_step`)."""

    def step(b, k):
        b = factor_step(*b, lr * schedule(k), s, 1.0, l1, l2)
        return b, b

    return jax.lax.scan(step, (b1, b2), k0 + jnp.arange(n))[1]


@x64
def predict_lambda(teacher: Teacher, lr: float, sigma: float, max_steps: int, lam: float,
                   init_strength=1e-6, d_hidden: int | None = None, sigma2: float | None = None,
                   schedule: Schedule = CONSTANT, weight_decay=0.0) -> LambdaPrediction:
    """Absolute Gaussian noise (σ1 = sigma, σ2 = sigma2 or sigma) along exact GD from the
    aligned λ-balanced init: E[L_pert] at every step 0 … max_steps from the exact per-mode
    map on (b1, b2) and the exact noise formula on those weights (idle units included),
    its argmin (the turn), the λ-dependent critical singular value and harmful modes.
    weight_decay: λ or (λ1 on W1, λ2 on W2) added to the training loss (`_weight_decay`);
    a mode is then learned when it reaches half its decayed fixed point (s − √(λ1λ2))/2."""
    from ._weight_decay import check_weight_decay, decayed_fixed_point

    l1, l2 = check_weight_decay(weight_decay)
    if teacher.input_variances is not None:
        raise ValueError("the λ-balanced prediction assumes whitened inputs")
    h = teacher.rank if d_hidden is None else d_hidden
    lam = check_lambda_dims(teacher.d_in, teacher.d_out, h, lam)
    lr = check_lambda_lr(teacher, lr, lam)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max steps must be an integer ≥ 1 (got {max_steps})")
    max_steps = int(max_steps)
    s1 = float(sigma)
    s2 = s1 if sigma2 is None else float(sigma2)
    if not (np.isfinite(s1) and np.isfinite(s2)) or min(s1, s2) < 0:
        raise ValueError("noise stds must be finite and non-negative")
    a0 = initial_strengths(teacher, init_strength, h)
    inside = np.arange(teacher.rank) < h
    b1, b2 = (np.where(inside, b, 0.0) for b in mode_factors(a0, lam))
    i1, i2 = _idle_norms(teacher, h, lam)
    d_in, d_out = teacher.d_in, teacher.d_out

    def evaluate(B1, B2):  # E[L_pert] and E[L_pert] − L on rows of factors
        sens = 0.5 * (s2**2 * d_out * ((B1**2).sum(-1) + i1) + s1**2 * d_in * ((B2**2).sum(-1) + i2)
                      + s1**2 * s2**2 * d_in * h * d_out)
        return modal_loss(teacher, B1 * B2) + sens, sens

    epl, sens = evaluate(b1[None], b2[None])
    best, k, sens0 = float(epl[0]), 0, float(sens[0])
    half = teacher.s / 2 if l1 == l2 == 0 else decayed_fixed_point(teacher, (l1, l2), h)[0] / 2
    half = np.where(half > 0, half, np.inf)  # a mode decayed to 0 is never learned
    learned = np.where(b1 * b2 >= half, 0, -1)
    x1, x2, done = jax.device_put(b1), jax.device_put(b2), 0
    while done < max_steps:
        n = min(BLOCK, max_steps - done)
        X1, X2 = (np.asarray(x) for x in _factor_block(x1, x2, done, jax.device_put(teacher.s), lr, BLOCK, schedule,
                                                        l1, l2))
        B1, B2 = X1[:n], X2[:n]
        epl, sens = evaluate(B1, B2)
        i = int(np.argmin(epl))
        if epl[i] < best:
            best, k = float(epl[i]), done + 1 + i
        hit = (B1 * B2 >= half)
        new = (learned < 0) & hit.any(0)
        learned[new] = done + 1 + hit.argmax(0)[new]
        x1, x2, done = X1[n - 1], X2[n - 1], done + n
    s_star = s1**2 * d_in + s2**2 * d_out
    s_lam = float(lambda_critical_singular_value(s_star, lam))
    return LambdaPrediction(
        lam=lam, critical_singular_value=float(s_star), lambda_critical_singular_value=s_lam,
        harmful_modes=[i for i in range(min(h, teacher.rank)) if teacher.s[i] < s_lam],
        mode_learning_steps=[int(x) if x >= 0 else None for x in learned], inflection_step=k,
        min_expected_perturbed_loss=best, expected_perturbed_loss_at_max_steps=float(epl[-1]),
        rise=float(epl[-1] - best), sensitivity_at_step_0=sens0, sensitivity_at_max_steps=float(sens[-1]),
        max_steps=max_steps, clean_loss_at_max_steps=float(epl[-1] - sens[-1]),
    )
