"""Deep linear chains W_N ⋯ W_1 (N ≥ 2 layers; Saxe et al. 2014/2019). Whitened inputs
unless an input covariance is given.

Sizes: W_1 (h × d_in), W_k (h × h) for 1 < k < N, W_N (d_out × h). Loss ½‖W_N⋯W_1 − A‖²_F;
GD on every layer from the same iterate, ∇_{W_k} L = (W_N⋯W_{k+1})ᵀ G (W_{k−1}⋯W_1)ᵀ with
G = W Σx − Σyx (= W − A when whitened).

Aligned balanced init: every layer holds b per mode, W_1 = R_1 diag(b) Vᵀ,
W_k = R_k diag(b) R_{k−1}ᵀ, W_N = U diag(b) R_{N−1}ᵀ (R_k orthonormal h × k), so the mode
strength is a = b^N. The gradient keeps this form, and per mode
  flow: db/dt = b^{N−1}(s − d·b^N),  i.e. da/dt = N a^{2−2/N}(s − d·a);
  GD (exact): b ← b + η b^{N−1}(s − d·b^N).
Flow time to go from b0 to b (d = 1), by partial fractions
1/(b^{N−1}(s − b^N)) = (1/s)(b^{1−N} + b/(s − b^N)):
  t(b) = (1/s)[(b^{2−N} − b0^{2−N})/(2 − N) + H(b) − H(b0)],  H(x) = x²/(2s) ₂F₁(1, 2/N; 1 + 2/N; x^N/s)
(N = 2: the first bracket is ln(b/b0), H(x) = −½ln(1 − x²/s), Saxe's logistic). a(t) inverts it.
GD near a = s is stable iff η N s^{2−2/N} < 2 (N = 2: η s < 1).

Gaussian noise on every layer, W_k → W_k + σ_k Z_k (independent i.i.d. N(0,1) entries).
Since the factors are independent with means W_k, E[Π] = W_N⋯W_1 and
E[L_pert] = L + ½(E‖Π(W_k + σ_kZ_k)‖²_Σ − ‖W_N⋯W_1‖²_Σ). The second moment follows from
E[Zᵀ G Z] = tr(G) I, layer by layer from the output:
  G_N = I_{d_out},  G_{k−1} = W_kᵀ G_k W_k + σ_k² tr(G_k) I,  E‖Π‖²_Σ = tr(G_0 Σx).
(derived symbolically in `symbolic_deep_expected_loss`, checked by Monte Carlo in the tests).
For aligned balanced weights G_k = R_k diag(p_k) R_kᵀ + c_k I with
  p_N = 0, c_N = 1;  p_{k−1} = b²(p_k + c_k),  c_{k−1} = σ_k²(Σ_i p_{k,i} + c_k d_k)
(d_k = d_out, h, …, h, d_in the row count of G_k), and E‖Π‖² = Σ_i d_i p_{0,i} + c_0 tr(Σx).
For N = 2 this is THEORY.md §4. To first order in σ² one mode's share is
½σ²(d_in + d_out + N − 2) a^{2−2/N}, which alone would make learning a lone mode harmful iff
s < (σ²(d_in + d_out + N − 2))^{N/2}. But that is not the small-σ limit for N ≥ 3: a term
with m noisy layers is σ^{2m} b^{2(N−m)} × (sizes) (each clean layer gives b², an empty run
of clean layers a dimension), so with x = b²/σ² the whole gain is σ^{2N} × a polynomial in
x, and the threshold is exactly
  s*_N = κ_N(d_in, d_out, h) σ^N,
κ_N^{2/N} being the root x of ½x^N = (gain polynomial); the first-order value is a lower
bound (every higher term adds sensitivity). N = 2: κ = d_in + d_out.
`deep_critical_singular_value` finds the exact root.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from ._closed_form import initial_strengths
from ._gd_map import check_checkpoints, finite_gaps, segment_scan
from ._schedules import CONSTANT, Schedule
from ._teacher import Teacher, random_orthonormal
from ._trajectory import FLOW_TIME, STEPS, Trajectory, mode_strengths_of
from ._x64 import x64


def check_depth(depth) -> int:
    if isinstance(depth, bool) or int(depth) != depth or depth < 2:
        raise ValueError(f"depth must be an integer ≥ 2 (got {depth!r})")
    return int(depth)


def check_deep_lr(teacher: Teacher, lr, depth: int) -> float:
    """η N d (s/d)^{2−2/N} < 2 for every mode: the per-mode map's stability at its fixed point
    b^N = s/d (d = input variance along the mode; whitened: η N s^{2−2/N} < 2)."""
    lr = float(lr)
    if not np.isfinite(lr) or lr <= 0:
        raise ValueError("learning rate must be a positive finite number")
    curv = depth * np.max(teacher.variances * teacher.targets ** (2 - 2.0 / depth))
    if lr * curv >= 2:
        raise ValueError(f"learning rate {lr:g} is at or beyond the stability limit 2/(N s_max^(2−2/N)) = "
                         f"{2 / curv:g} for depth {depth}")
    return lr


def layer_sizes(teacher: Teacher, d_hidden: int, depth: int):
    """[(rows, cols)] of W_1 … W_N."""
    return [(d_hidden, teacher.d_in)] + [(d_hidden, d_hidden)] * (depth - 2) + [(teacher.d_out, d_hidden)]


def deep_aligned_weights(teacher: Teacher, b, d_hidden: int, depth: int, seed: int = 0):
    """Aligned balanced layers with per-mode factor b (..., r) on the first min(h, r) modes."""
    depth = check_depth(depth)
    b = np.asarray(b, np.float64)
    k = min(d_hidden, teacher.rank)
    rng = np.random.default_rng(seed)
    R = [random_orthonormal(rng, d_hidden, k) for _ in range(depth - 1)]
    left = [R[0]] + R[1:] + [teacher.U[:, :k]]
    right = [teacher.V[:, :k]] + R[:-1] + [R[-1]]
    bk = b[..., :k]
    return [np.einsum("ok,...k,ik->...oi", L, bk, Rt) for L, Rt in zip(left, right)]


def deep_init(teacher: Teacher, d_hidden: int, depth: int, init: str = "aligned", init_strength=1e-6,
              init_std: float | None = None, seed: int = 0):
    """Initial layers [W_1, …, W_N]: aligned balanced (a0 = init_strength, b0 = a0^{1/N})
    or i.i.d. N(0, init_std²) entries."""
    depth = check_depth(depth)
    if d_hidden < 1:
        raise ValueError("hidden width must be at least 1")
    if init == "aligned":
        a0 = initial_strengths(teacher, init_strength, d_hidden)
        return deep_aligned_weights(teacher, a0 ** (1.0 / depth), d_hidden, depth, seed)
    if init == "random":
        if init_std is None or not np.isfinite(init_std) or init_std <= 0:
            raise ValueError("random init needs a positive finite init_std")
        rng = np.random.default_rng(seed)
        return [init_std * rng.standard_normal(shape) for shape in layer_sizes(teacher, d_hidden, depth)]
    raise ValueError(f"unknown init {init!r}; known: aligned, random")


def _product(Ws):
    P = Ws[0]
    for W in Ws[1:]:
        P = W @ P
    return P


# ---------------------------------------------------------------- dynamics


def deep_flow_time(s, b0, b, depth):
    """Flow time for one aligned mode (whitened) to go from factor b0 to b (b0 ≤ b < s^{1/N})."""
    from scipy.special import hyp2f1

    s, b0, b = (np.asarray(x, np.float64) for x in (s, b0, b))
    N = depth

    def H(x):
        if N == 2:
            return -0.5 * np.log1p(-(x**2) / s)
        return x**2 / (2 * s) * hyp2f1(1.0, 2.0 / N, 1.0 + 2.0 / N, x**N / s)

    first = np.log(b / b0) if N == 2 else (b ** (2.0 - N) - b0 ** (2.0 - N)) / (2.0 - N)
    return (first + H(b) - H(b0)) / s


def deep_flow_strengths(s, a0, t, depth, iters: int = 200):
    """a(t) for one aligned mode (whitened): inverts `deep_flow_time` by bisection on b in
    [b0, s^{1/N}] (monotone); t = inf gives s (0 when a0 = 0). Broadcasts over s, a0, t."""
    depth = check_depth(depth)
    s, a0, t = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (s, a0, t)))
    b0, top = a0 ** (1.0 / depth), s ** (1.0 / depth)
    lo, hi = b0.copy(), top.copy()
    fin = np.isfinite(t) & (a0 > 0)
    with np.errstate(all="ignore"):
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            late = deep_flow_time(s, b0, mid, depth) < t
            lo, hi = np.where(late, mid, lo), np.where(late, hi, mid)
    b = 0.5 * (lo + hi)
    a = np.where(fin, b**depth, np.where(a0 > 0, s, 0.0))
    return np.where(t == 0, a0, a)


def deep_gradient_flow(teacher: Teacher, times, depth: int, init_strength=1e-6, d_hidden: int | None = None) -> Trajectory:
    """Gradient flow of the depth-N chain from aligned balanced init (whitened), per mode."""
    if teacher.input_variances is not None:
        raise ValueError("the deep flow here assumes whitened inputs")
    depth = check_depth(depth)
    t = np.atleast_1d(np.asarray(times, np.float64))
    if t.ndim != 1 or np.any(np.isnan(t)) or np.any(t < 0):
        raise ValueError("times must be a 1-d list of non-negative numbers")
    h = teacher.rank if d_hidden is None else d_hidden
    a0 = initial_strengths(teacher, init_strength, h)
    a = deep_flow_strengths(teacher.s, a0, t[:, None], depth)
    return _modal_trajectory(teacher, t, FLOW_TIME, a, depth, h, f"gradient flow, depth {depth}, aligned balanced init")


def _modal_trajectory(teacher, times, unit, a, depth, h, method, lr=None):
    from ._trajectory import modal_loss

    n = (np.maximum(a, 0) ** (2.0 / depth)).sum(-1)  # every layer: Σ b² = Σ a^{2/N}
    return Trajectory(times=times, time_unit=unit, mode_strengths=a, loss=modal_loss(teacher, a),
                      w1_sq_norm=n, w2_sq_norm=n.copy(), teacher=teacher, d_hidden=h, method=method, lr=lr)


@jax.jit(static_argnames=("depth", "schedule"))
def _factor_map(b, s, d, lr, gaps, depth, schedule):
    def step(b, k):
        return b + lr * schedule(k) * b ** (depth - 1) * (s - d * b**depth)

    return segment_scan(step, lambda b: b, b, gaps)


@x64
def deep_gd_modes(teacher: Teacher, lr, checkpoints, depth: int, init_strength=1e-6, d_hidden: int | None = None,
                  schedule: Schedule = CONSTANT) -> Trajectory:
    """Exact GD of the depth-N chain from aligned balanced init: b ← b + η b^{N−1}(s − d b^N),
    a = b^N. Every layer's ‖W_k‖² = Σ b² (reported as w1 and w2). inf: the fixed point."""
    depth = check_depth(depth)
    lr = check_deep_lr(teacher, lr, depth)
    c = check_checkpoints(checkpoints)
    h = teacher.rank if d_hidden is None else d_hidden
    b0 = initial_strengths(teacher, init_strength, h) ** (1.0 / depth)
    a = np.empty((c.size, teacher.rank))
    fin = np.isfinite(c)
    if fin.any():
        b = _factor_map(jax.device_put(b0), jax.device_put(teacher.s), jax.device_put(teacher.variances), lr,
                        jax.device_put(finite_gaps(c)), depth, schedule)
        a[fin] = np.asarray(b) ** depth
    a[~fin] = np.where(b0 > 0, teacher.targets, 0.0)
    return _modal_trajectory(teacher, c, STEPS, a, depth, h, f"exact per-mode GD map, depth {depth}", lr=lr)


@jax.jit(static_argnames=("schedule", "whitened"))
def _deep_run(Ws, lr, gaps, A, Sxx, Syx, U, V, schedule, whitened):
    def grads(Ws):
        W = _product(Ws)
        G = W - A if whitened else W @ Sxx - Syx
        out = []
        for k in range(len(Ws)):
            left = _product(Ws[k + 1:]) if k + 1 < len(Ws) else None
            right = _product(Ws[:k]) if k > 0 else None
            g = G if left is None else left.T @ G
            out.append(g if right is None else g @ right.T)
        return out

    def step(Ws, k):
        eta = lr * schedule(k)
        return [W - eta * g for W, g in zip(Ws, grads(Ws))]

    def record(Ws):
        W = _product(Ws)
        E = W - A
        loss = 0.5 * jnp.sum(E * E) if whitened else 0.5 * jnp.sum((E @ Sxx) * E)
        return dict(a=mode_strengths_of(W, U, V), loss=loss, norms=jnp.stack([jnp.sum(W**2) for W in Ws]), Ws=Ws)

    return segment_scan(step, record, list(Ws), gaps)


@dataclasses.dataclass(frozen=True, eq=False)
class DeepRun:
    """Full-matrix GD of a depth-N chain: the Trajectory (w1 = ‖W_1‖², w2 = ‖W_N‖²), every
    layer's squared norm (T, N) and the layers [(T, rows, cols)] at each checkpoint."""

    trajectory: Trajectory
    layer_sq_norms: np.ndarray
    weights: list


@x64
def simulate_deep_gd(teacher: Teacher, depth: int, d_hidden: int, lr, checkpoints, init: str = "aligned",
                     init_strength=1e-6, init_std: float | None = None, seed: int = 0,
                     schedule: Schedule = CONSTANT, weights=None) -> DeepRun:
    """Gradient descent on every layer of W_N⋯W_1 (full matrices, JAX scan), from `init`
    or from given `weights` [W_1, …, W_N]. Finite checkpoints (GD steps)."""
    depth = check_depth(depth)
    lr = check_deep_lr(teacher, lr, depth)
    c = check_checkpoints(checkpoints, allow_inf=False)
    Ws = deep_init(teacher, d_hidden, depth, init, init_strength, init_std, seed) if weights is None else \
        [np.asarray(W, np.float64) for W in weights]
    if [W.shape for W in Ws] != layer_sizes(teacher, d_hidden, depth):
        raise ValueError(f"layers must have shapes {layer_sizes(teacher, d_hidden, depth)}")
    whitened = teacher.input_variances is None
    consts = [jax.device_put(x) for x in (teacher.matrix, teacher.input_covariance, teacher.correlation,
                                       teacher.U, teacher.V)]
    out = _deep_run([jax.device_put(W) for W in Ws], lr, jax.device_put(finite_gaps(c)), *consts, schedule, whitened)
    norms = np.asarray(out["norms"])
    traj = Trajectory(times=c, time_unit=STEPS, mode_strengths=np.asarray(out["a"]), loss=np.asarray(out["loss"]),
                      w1_sq_norm=norms[:, 0], w2_sq_norm=norms[:, -1], teacher=teacher, d_hidden=d_hidden,
                      method=f"full-matrix GD, depth {depth} ({'given' if weights is not None else init} init)", lr=lr)
    return DeepRun(traj, norms, [np.asarray(W) for W in out["Ws"]])


# ---------------------------------------------------------------- noise


def _layer_sigmas(sigma, depth):
    s = np.broadcast_to(np.asarray(sigma, np.float64), (depth,))
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("noise stds must be finite and non-negative")
    return s


def deep_expected_perturbed_loss(weights, teacher: Teacher, sigma) -> np.ndarray:
    """Exact E[L_pert] for layers [W_1, …, W_N] (leading batch axes allowed) under noise of
    std σ_k on every entry of W_k (`sigma`: scalar or one per layer), by the recursion
    G_{k−1} = W_kᵀG_kW_k + σ_k² tr(G_k) I (module doc)."""
    Ws = [np.asarray(W, np.float64) for W in weights]
    sig = _layer_sigmas(sigma, len(Ws))
    Sx = None if teacher.input_variances is None else teacher.input_covariance
    G = np.eye(Ws[-1].shape[-2])
    for W, s in zip(Ws[::-1], sig[::-1]):
        tr = np.trace(G, axis1=-2, axis2=-1)[..., None, None]
        G = np.swapaxes(W, -1, -2) @ G @ W + s**2 * tr * np.eye(W.shape[-1])
    P = _product(Ws)
    E = P - teacher.matrix
    if Sx is None:
        second = np.trace(G, axis1=-2, axis2=-1)
        clean_sq = np.sum(P * P, axis=(-2, -1))
        loss = 0.5 * np.sum(E * E, axis=(-2, -1))
    else:
        second = np.sum(G * Sx, axis=(-2, -1))
        clean_sq = np.sum((P @ Sx) * P, axis=(-2, -1))
        loss = 0.5 * np.sum((E @ Sx) * E, axis=(-2, -1))
    return loss + 0.5 * (second - clean_sq)


def deep_modal_sensitivity(teacher: Teacher, a, depth: int, d_hidden: int, sigma) -> np.ndarray:
    """E[L_pert] − L for aligned balanced layers with strengths a (..., r) (whitened or
    co-diagonal), by the per-mode recursion of the module doc."""
    depth = check_depth(depth)
    sig = _layer_sigmas(sigma, depth)
    a = np.asarray(a, np.float64)
    k = min(d_hidden, teacher.rank)
    b2 = np.maximum(a[..., :k], 0.0) ** (2.0 / depth)
    dims = [teacher.d_in] + [d_hidden] * (depth - 1) + [teacher.d_out]  # rows of G_0 … G_N
    p, c = np.zeros_like(b2), np.ones(b2.shape[:-1])
    for layer in range(depth, 0, -1):  # W_layer maps G_layer to G_{layer−1}
        s2 = sig[layer - 1] ** 2
        p, c = b2 * (p + c[..., None]), s2 * (p.sum(-1) + c * dims[layer])
    d = teacher.variances[:k]
    tr_sx = teacher.d_in if teacher.input_variances is None else float(np.trace(teacher.input_covariance))
    second = (d * p).sum(-1) + c * tr_sx
    clean = (d * b2**depth).sum(-1)
    return 0.5 * (second - clean)


def deep_critical_singular_value(d_in: int, d_out: int, d_hidden: int, depth: int, sigma):
    """Exact s*_N: the singular value below which learning a lone mode fully (a: 0 → s, the
    other modes at 0, whitened, equal σ on every layer) raises E[L_pert]; root of
    ½s² = Sens(s) − Sens(0), bracketed from the first-order value (σ²(d_in+d_out+N−2))^{N/2},
    a lower bound. Exactly proportional to σ^N (module doc). Returns (exact, first_order)."""
    from scipy.optimize import brentq

    from ._teacher import make_teacher

    depth = check_depth(depth)
    sigma = float(sigma)
    first = (sigma**2 * (d_in + d_out + depth - 2)) ** (depth / 2)
    if sigma == 0:
        return 0.0, 0.0

    def gain(s):
        t = make_teacher([s], max(d_in, 1), max(d_out, 1), seed=0)
        sens = deep_modal_sensitivity(t, np.array([[0.0], [s]]), depth, d_hidden, sigma)
        return sens[1] - sens[0] - 0.5 * s**2

    lo, hi = first / 4, first * 4
    while gain(lo) < 0:
        lo /= 4
    while gain(hi) > 0:
        hi *= 4
    return brentq(gain, lo, hi, xtol=1e-15 * hi, rtol=1e-14), first


def symbolic_deep_expected_loss(depth: int, sizes):
    """Brute-force sympy derivation for tiny sizes: E over Gaussian noise of
    ½‖Π(W_k + σ_kZ_k) − A‖², with symbolic weights, expanded as a polynomial in the Z entries
    and integrated monomial by monomial (E z^n = (n − 1)!! for even n, 0 for odd).
    sizes = [d_0 = d_in, d_1, …, d_N = d_out]. Returns (expression, Ws, A, sigmas) with Ws
    sympy matrices of symbols."""
    import sympy as sp

    depth = check_depth(depth)
    Ws = [sp.Matrix(sizes[k + 1], sizes[k], lambda i, j, k=k: sp.Symbol(f"w{k}_{i}{j}")) for k in range(depth)]
    Zs = [sp.Matrix(sizes[k + 1], sizes[k], lambda i, j, k=k: sp.Symbol(f"z{k}_{i}{j}")) for k in range(depth)]
    sig = sp.symbols(f"sigma0:{depth}", nonnegative=True)
    A = sp.Matrix(sizes[-1], sizes[0], lambda i, j: sp.Symbol(f"A_{i}{j}"))
    M = sp.eye(sizes[0])
    for W, Z, s in zip(Ws, Zs, sig):
        M = (W + s * Z) * M
    E = M - A
    expr = sp.expand(sum(e**2 for e in E) / 2)
    zsyms = [z for Z in Zs for z in Z]
    poly = sp.Poly(expr, *zsyms)

    def moment(n):
        return 0 if n % 2 else sp.factorial2(n - 1)

    total = 0
    for powers, coeff in poly.terms():
        m = 1
        for n in powers:
            m *= moment(n)
            if m == 0:
                break
        total += coeff * m
    return sp.expand(total), Ws, A, sig


def deep_monte_carlo_perturbed_loss(weights, teacher: Teacher, sigma, n_samples: int, seed: int = 0):
    """Monte Carlo mean and standard error of the perturbed loss over n_samples draws of
    independent Gaussian noise on every layer (same draws for every batch element)."""
    Ws = [np.asarray(W, np.float64) for W in weights]
    sig = _layer_sigmas(sigma, len(Ws))
    if int(n_samples) < 2:
        raise ValueError("Monte Carlo needs at least 2 draws")
    rng = np.random.default_rng(seed)
    Sx = None if teacher.input_variances is None else teacher.input_covariance
    vals = []
    for _ in range(int(n_samples)):
        noisy = [W + s * rng.standard_normal(W.shape[-2:]) for W, s in zip(Ws, sig)]
        E = _product(noisy) - teacher.matrix
        vals.append(0.5 * np.sum(E * E if Sx is None else (E @ Sx) * E, axis=(-2, -1)))
    vals = np.asarray(vals)
    return vals.mean(0), vals.std(0, ddof=1) / np.sqrt(vals.shape[0])


@dataclasses.dataclass(frozen=True, eq=False)
class DeepPrediction:
    """Noise predictions along exact GD of the depth-N chain from aligned balanced init."""

    depth: int
    critical_singular_value: float
    critical_singular_value_first_order: float
    harmful_modes: list
    mode_learning_steps: list
    inflection_step: int
    min_expected_perturbed_loss: float
    expected_perturbed_loss_at_max_steps: float
    rise: float
    max_steps: int

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["units"] = {
            "steps": "GD steps (flow time = lr × steps)",
            "loss": "expected population loss ½E‖Π_k(W_k+σZ_k)x − Ax‖² over independent noise on every layer",
            "critical_singular_value": "exact s*_N: learning a lone mode with s below it raises E[L_pert] "
            "(whitened, σ on every layer)",
            "critical_singular_value_first_order": "(σ²(d_in + d_out + N − 2))^(N/2), first order in σ², a lower "
            "bound; the exact value is κ_N σ^N",
        }
        return d


BLOCK = 1 << 14  # GD steps per scanned block: memory O(BLOCK · r) for any max_steps


@jax.jit(static_argnames=("n", "depth", "schedule"))
def _factor_block(b, k0, s, lr, n, depth, schedule):
    """b after each of the steps k0+1 … k0+n of the per-mode map (whitened)."""

    def step(b, k):
        b = b + lr * schedule(k) * b ** (depth - 1) * (s - b**depth)
        return b, b

    return jax.lax.scan(step, b, k0 + jnp.arange(n))[1]


@x64
def predict_deep(teacher: Teacher, lr: float, sigma: float, max_steps: int, depth: int, init_strength=1e-6,
                 d_hidden: int | None = None, schedule: Schedule = CONSTANT) -> DeepPrediction:
    """Absolute Gaussian noise of std σ on every entry of every layer, along exact GD of
    the depth-N chain from aligned balanced init (whitened): E[L_pert] at every step
    0 … max_steps (exact per-mode map and the exact per-mode noise recursion), its argmin,
    the exact and first-order critical singular values and the harmful modes."""
    from ._trajectory import modal_loss

    if teacher.input_variances is not None:
        raise ValueError("the depth-N prediction assumes whitened inputs")
    depth = check_depth(depth)
    lr = check_deep_lr(teacher, lr, depth)
    if int(max_steps) != max_steps or max_steps < 1:
        raise ValueError(f"max steps must be an integer ≥ 1 (got {max_steps})")
    max_steps = int(max_steps)
    sigma = float(_layer_sigmas(sigma, 1)[0])
    h = teacher.rank if d_hidden is None else d_hidden
    b0 = initial_strengths(teacher, init_strength, h) ** (1.0 / depth)

    def evaluate(a):
        return modal_loss(teacher, a) + deep_modal_sensitivity(teacher, a, depth, h, sigma)

    epl = evaluate(b0[None] ** depth)
    best, k = float(epl[0]), 0
    learned = np.where(b0**depth >= teacher.s / 2, 0, -1)
    x, done = jax.device_put(b0), 0
    while done < max_steps:
        n = min(BLOCK, max_steps - done)
        X = np.asarray(_factor_block(x, done, jax.device_put(teacher.s), lr, BLOCK, depth, schedule))
        a = X[:n] ** depth
        epl = evaluate(a)
        i = int(np.argmin(epl))
        if epl[i] < best:
            best, k = float(epl[i]), done + 1 + i
        hit = a >= teacher.s / 2
        new = (learned < 0) & hit.any(0)
        learned[new] = done + 1 + hit.argmax(0)[new]
        x, done = X[n - 1], done + n
    exact, first = deep_critical_singular_value(teacher.d_in, teacher.d_out, h, depth, sigma)
    return DeepPrediction(
        depth=depth, critical_singular_value=float(exact), critical_singular_value_first_order=float(first),
        harmful_modes=[i for i in range(min(h, teacher.rank)) if teacher.s[i] < exact],
        mode_learning_steps=[int(x) if x >= 0 else None for x in learned],
        inflection_step=k, min_expected_perturbed_loss=best,
        expected_perturbed_loss_at_max_steps=float(epl[-1]), rise=float(epl[-1] - best), max_steps=max_steps,
    )
