"""Gaussian weight noise on a two-layer linear network: exact expectation and its pieces.

Perturbation (THEORY.md §4): W1 → W1 + σ1 Z1, W2 → W2 + σ2 Z2 with Z1, Z2 independent
i.i.d. N(0, 1) entries. For ANY weights and an input covariance Σx (Σx = I when whitened),
with L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ),

    E[L_pert] = L + ½ [ σ2² d_out tr(W1 Σx W1ᵀ) + σ1² tr(Σx) ‖W2‖² + σ1² σ2² tr(Σx) h d_out ].

Whitened, tr(Σx) = d_in and tr(W1 Σx W1ᵀ) = ‖W1‖². The exact Hessian trace of L is
tr(H) = tr(Σx)‖W2‖² + d_out tr(W1 Σx W1ᵀ), so with σ1 = σ2 = σ the sensitivity
E[L_pert] − L equals ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out. The formula is derived symbolically
in `_symbolic.py`, and checked there and by Monte Carlo in the tests.

Aligned balanced weights (co-diagonal Σx = V diag(d) Vᵀ + I − VVᵀ): learning mode i fully
(strength 0 → s_i/d_i) lowers L by ½ s_i²/d_i and costs ½ κ_i s_i/d_i in noise, with
κ_i = σ1² tr(Σx) + σ2² d_out d_i, so the mode is harmful iff s_i < s*_i = κ_i
(whitened: s* = σ1² d_in + σ2² d_out; = σ²(d_in + d_out) for σ1 = σ2 = σ).

Shapes: W1 (..., h, d_in), W2 (..., d_out, h); leading batch axes (seeds, learning
rates, checkpoints) must agree between the two and are kept in every output. Loss
values are in the units of L (½ × squared error); noise stds in weight units.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._teacher import Teacher
from ._trajectory import modal_loss
from ._x64 import x64

NOISE_KINDS = ("absolute", "init", "rms")

# Floats of work memory one Monte Carlo / Hutchinson chunk may use (8 bytes each).
_CHUNK_FLOATS = 2**23


# --------------------------------------------------------------------------------------
# Formula cores. They use only `@`, `*`, `.swapaxes`, `.sum` and `.trace`, so the same
# code runs on numpy float arrays, numpy object arrays of sympy symbols (the symbolic
# check in tests/test_symbolic.py) and JAX arrays (Monte Carlo, Hutchinson).


def _sq_norm(X):
    """Squared Frobenius norm over the last two axes."""
    return (X * X).sum(axis=(-2, -1))


def _loss(W1, W2, A, Sx):
    """½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ); Sx = None means whitened (Σx = I)."""
    E = W2 @ W1 - A
    if Sx is None:
        return 0.5 * _sq_norm(E)
    return 0.5 * ((E @ Sx) * E).sum(axis=(-2, -1))


def _w1_metric_norm(W1, Sx):
    """tr(W1 Σx W1ᵀ) (= ‖W1‖² when whitened)."""
    if Sx is None:
        return _sq_norm(W1)
    return ((W1 @ Sx) * W1).sum(axis=(-2, -1))


def _input_trace(W1, Sx):
    """tr(Σx) (= d_in when whitened)."""
    return W1.shape[-1] if Sx is None else Sx.trace()


def _penalty(w1_metric_sq, w2_sq, input_trace, d_out, h, sigma1, sigma2):
    """½ [σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out]."""
    return 0.5 * (
        sigma2**2 * d_out * w1_metric_sq
        + sigma1**2 * input_trace * w2_sq
        + sigma1**2 * sigma2**2 * input_trace * h * d_out
    )


def _sensitivity(W1, W2, Sx, sigma1, sigma2):
    """E[L_pert] − L for any weights (formula core)."""
    return _penalty(
        _w1_metric_norm(W1, Sx), _sq_norm(W2), _input_trace(W1, Sx), W2.shape[-2], W1.shape[-2], sigma1, sigma2
    )


def _expected_perturbed_loss(W1, W2, A, Sx, sigma1, sigma2):
    """E[L_pert] for any weights (formula core)."""
    return _loss(W1, W2, A, Sx) + _sensitivity(W1, W2, Sx, sigma1, sigma2)


def _hessian_trace(W1, W2, Sx):
    """tr(H) = tr(Σx)‖W2‖² + d_out tr(W1ΣxW1ᵀ) (formula core)."""
    return _input_trace(W1, Sx) * _sq_norm(W2) + W2.shape[-2] * _w1_metric_norm(W1, Sx)


# --------------------------------------------------------------------------------------
# Input checks.


def _check_weights(W1, W2, teacher: Teacher | None = None):
    """W1, W2 as float64 arrays with matching inner and batch shapes."""
    W1 = np.asarray(W1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    if W1.ndim < 2 or W2.ndim < 2:
        raise ValueError(f"W1 and W2 must be (..., h, d_in) and (..., d_out, h); got shapes {W1.shape}, {W2.shape}")
    if W1.shape[:-2] != W2.shape[:-2]:
        raise ValueError(f"W1 {W1.shape} and W2 {W2.shape} must have the same leading batch axes")
    if W2.shape[-1] != W1.shape[-2]:
        raise ValueError(f"hidden widths differ: W1 {W1.shape} has h = {W1.shape[-2]}, W2 {W2.shape} has {W2.shape[-1]}")
    if teacher is not None and (W1.shape[-1] != teacher.d_in or W2.shape[-2] != teacher.d_out):
        raise ValueError(
            f"weights map {W1.shape[-1]} → {W2.shape[-2]} but the teacher maps {teacher.d_in} → {teacher.d_out}"
        )
    if not (np.all(np.isfinite(W1)) and np.all(np.isfinite(W2))):
        raise ValueError("weights must be finite")
    return W1, W2


def _check_sigmas(sigma1, sigma2, batch_shape=None):
    """Noise stds (σ2 defaults to σ1) as float64 arrays, finite and non-negative."""
    sigma2 = sigma1 if sigma2 is None else sigma2
    out = []
    for name, s in (("sigma1", sigma1), ("sigma2", sigma2)):
        s = np.asarray(s, dtype=np.float64)
        if not np.all(np.isfinite(s)) or np.any(s < 0):
            raise ValueError(f"{name} must be finite and non-negative (got {s})")
        if batch_shape is not None:
            try:
                s = np.broadcast_to(s, batch_shape)
            except ValueError:
                raise ValueError(f"{name} of shape {s.shape} does not broadcast to the batch shape {batch_shape}") from None
        out.append(s)
    return tuple(out)


def _covariance(teacher: Teacher | None):
    """Σx of the teacher, or None when its inputs are whitened."""
    if teacher is None or teacher.input_variances is None:
        return None
    return teacher.input_covariance


def _check_count(n, name):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"{name} must be an integer ≥ 2 (got {n!r})")
    return int(n)


def _key(seed):
    """A JAX PRNG key from an int seed, or the key itself."""
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        return jax.random.key(int(seed))
    if isinstance(seed, jax.Array):
        return seed
    raise ValueError(f"seed must be an int or a JAX PRNG key (got {type(seed).__name__})")


# --------------------------------------------------------------------------------------
# Exact expectation, sensitivity, Hessian trace.


def expected_perturbed_loss(W1, W2, teacher: Teacher, sigma1, sigma2=None) -> np.ndarray:
    """Exact E[L_pert] after Gaussian weight noise, for any weights.

    E[L_pert] = L + ½[σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out],
    L = ½ tr((W2W1 − A) Σx (W2W1 − A)ᵀ), A = teacher.matrix, Σx = teacher.input_covariance
    (I when whitened).

    Args:
      W1: (..., h, d_in) first-layer weights.
      W2: (..., d_out, h) second-layer weights, same leading batch axes.
      teacher: the teacher (A and Σx).
      sigma1, sigma2: noise std on W1 and W2 entries (weight units), ≥ 0; scalars or
        arrays broadcasting to the batch shape. sigma2 defaults to sigma1.
    Returns:
      (...) expected perturbed loss, in loss units (½ × squared error).
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    s1, s2 = _check_sigmas(sigma1, sigma2, W1.shape[:-2])
    return np.asarray(_expected_perturbed_loss(W1, W2, teacher.matrix, _covariance(teacher), s1, s2))


def sensitivity(W1, W2, sigma1, sigma2=None, *, teacher: Teacher | None = None) -> np.ndarray:
    """E[L_pert] − L, the expected loss increase from Gaussian weight noise (exact).

    ½[σ2² d_out tr(W1ΣxW1ᵀ) + σ1² tr(Σx)‖W2‖² + σ1²σ2² tr(Σx) h d_out]; it does not depend
    on the teacher map A, only on Σx. With σ1 = σ2 = σ it equals ½σ² tr(H) + ½σ⁴ tr(Σx) h d_out.

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0.
      teacher: supplies Σx; None (default) or a whitened teacher means Σx = I.
    Returns:
      (...) sensitivity in loss units.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    s1, s2 = _check_sigmas(sigma1, sigma2, W1.shape[:-2])
    return np.asarray(_sensitivity(W1, W2, _covariance(teacher), s1, s2))


def sensitivity_from_norms(w1_sq_norm, w2_sq_norm, d_in, d_out, d_hidden, sigma1, sigma2=None) -> np.ndarray:
    """Sensitivity from recorded squared norms (whitened inputs), e.g. a Trajectory's.

    ½[σ2² d_out ‖W1‖² + σ1² d_in ‖W2‖² + σ1²σ2² d_in h d_out]. For a co-diagonal Σx pass
    tr(W1ΣxW1ᵀ) as `w1_sq_norm` and tr(Σx) as `d_in`.

    Args:
      w1_sq_norm, w2_sq_norm: (...) ‖W1‖², ‖W2‖² (broadcast together).
      d_in, d_out, d_hidden: layer sizes.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0.
    Returns:
      (...) sensitivity in loss units.
    """
    n1, n2 = (np.asarray(x, dtype=np.float64) for x in (w1_sq_norm, w2_sq_norm))
    if np.any(n1 < 0) or np.any(n2 < 0):
        raise ValueError("squared norms must be non-negative")
    if min(d_in, d_out, d_hidden) <= 0:
        raise ValueError("layer sizes must be positive")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    return np.asarray(_penalty(n1, n2, d_in, d_out, d_hidden, s1, s2))


def hessian_trace(W1, W2, *, teacher: Teacher | None = None) -> np.ndarray:
    """Exact trace of the Hessian of L in (W1, W2): tr(Σx)‖W2‖² + d_out tr(W1ΣxW1ᵀ).

    Whitened: d_in‖W2‖² + d_out‖W1‖². It does not depend on A (the residual term of the
    Hessian, tr(Δ2Δ1ΣxEᵀ), has zero trace).

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights.
      teacher: supplies Σx; None or a whitened teacher means Σx = I.
    Returns:
      (...) tr(H), in loss units per squared weight unit.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    return np.asarray(_hessian_trace(W1, W2, _covariance(teacher)))


# --------------------------------------------------------------------------------------
# Monte Carlo and Hutchinson, in JAX.


def _chunk_size(n, floats_per_item):
    """Items per compiled chunk: a power of two ≤ 1024, covering n if smaller, within memory."""
    cap = max(1, _CHUNK_FLOATS // max(1, floats_per_item))
    size = 1 << max(0, (min(n, 1024) - 1).bit_length())
    while size > cap and size > 1:
        size //= 2
    return size


def _run_chunks(fn, key, n, chunk, *args):
    """Concatenate fn(key, start, *args, chunk) over start = 0, chunk, …; keep the first n rows.

    Item k always uses jax.random.fold_in(key, k), so the first n draws do not depend on n,
    and one compilation per (shape, chunk) serves every n.
    """
    out = [np.asarray(fn(key, start, *args, chunk)) for start in range(0, n, chunk)]
    return np.concatenate(out, axis=0)[:n]


@jax.jit(static_argnames=("chunk",))
def _mc_chunk(key, start, W1, W2, A, Sx, s1, s2, chunk):
    """Perturbed losses of draws start … start + chunk − 1, shape (chunk, B), for a flat batch
    W1 (B, h, d_in), W2 (B, d_out, h); every draw perturbs all B weights with the same Z1, Z2
    (common random numbers)."""

    def one(k):
        k1, k2 = jax.random.split(jax.random.fold_in(key, k))
        Z1 = jax.random.normal(k1, W1.shape[-2:], W1.dtype)
        Z2 = jax.random.normal(k2, W2.shape[-2:], W2.dtype)
        return _loss(W1 + s1[:, None, None] * Z1, W2 + s2[:, None, None] * Z2, A, Sx)

    return jax.vmap(one)(start + jnp.arange(chunk))


@x64
def monte_carlo_perturbed_loss(
    W1, W2, teacher: Teacher, sigma1, sigma2=None, n_draws: int = 1000, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of E[L_pert]: mean and standard error over noise draws.

    Draws are vmapped in chunks of up to 1024 (fewer when weights are large: work memory
    stays near 64 MB). All weights of a batch share the same draws (common random
    numbers), so differences between checkpoints are less noisy than each value; the
    standard error is per entry. Draw k uses jax.random.fold_in(key, k), so a larger
    n_draws extends the same sample. Cost per call: n_draws × B × (2 h d_in d_out, plus
    d_out d_in² when Σx ≠ I) flops for B weight pairs; one compilation per shape.

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights, e.g. every checkpoint of a trajectory.
      teacher: the teacher (A and Σx).
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0, broadcasting to (...).
      n_draws: number of noise draws (≥ 2).
      seed: int seed or a JAX PRNG key.
    Returns:
      (mean, stderr), each (...), in loss units; stderr = sample std (ddof 1) / √n_draws.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    batch = W1.shape[:-2]
    s1, s2 = _check_sigmas(sigma1, sigma2, batch)
    n = _check_count(n_draws, "n_draws")
    key = _key(seed)
    h, d_in = W1.shape[-2:]
    d_out = W2.shape[-2]
    B = math.prod(batch)
    Sx = _covariance(teacher)
    per_draw = B * (2 * h * d_in + 2 * d_out * h + 3 * d_out * d_in)
    losses = _run_chunks(
        _mc_chunk,
        key,
        n,
        _chunk_size(n, per_draw),
        jnp.asarray(W1.reshape((B, h, d_in))),
        jnp.asarray(W2.reshape((B, d_out, h))),
        jnp.asarray(teacher.matrix),
        None if Sx is None else jnp.asarray(Sx),
        jnp.asarray(s1.reshape(B)),
        jnp.asarray(s2.reshape(B)),
    )
    mean = losses.mean(axis=0).reshape(batch)
    stderr = (losses.std(axis=0, ddof=1) / np.sqrt(n)).reshape(batch)
    return mean, stderr


@jax.jit(static_argnames=("chunk",))
def _hutchinson_chunk(key, start, W1, W2, A, Sx, chunk):
    """vᵀHv for Rademacher probes start … start + chunk − 1, shape (chunk, B); H is the
    Hessian of L in (W1, W2), Hv = jax.jvp of jax.grad."""

    def loss(params):
        return _loss(params[0], params[1], A, Sx)

    def quad(w1, w2, v):
        _, hv = jax.jvp(jax.grad(loss), ((w1, w2),), (v,))
        return jnp.sum(v[0] * hv[0]) + jnp.sum(v[1] * hv[1])

    def one(k):
        k1, k2 = jax.random.split(jax.random.fold_in(key, k))
        v = (
            jax.random.rademacher(k1, W1.shape[-2:], W1.dtype),
            jax.random.rademacher(k2, W2.shape[-2:], W2.dtype),
        )
        return jax.vmap(quad, in_axes=(0, 0, None))(W1, W2, v)

    return jax.vmap(one)(start + jnp.arange(chunk))


@x64
def hutchinson_hessian_trace(
    W1, W2, teacher: Teacher, n_probes: int = 100, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Hutchinson estimate of tr(H) of L in (W1, W2), through JAX Hessian-vector products.

    tr(H) ≈ mean_k v_kᵀ H v_k with Rademacher probes v_k (entries ±1, one per weight),
    H v computed as jax.jvp of jax.grad. Unbiased; its variance per probe is
    2 Σ_{i≠j} H_ij². Batched weights share the probes.

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights.
      teacher: the teacher (A and Σx of the loss).
      n_probes: number of probes (≥ 2).
      seed: int seed or a JAX PRNG key.
    Returns:
      (estimate, stderr), each (...), in loss units per squared weight unit.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    batch = W1.shape[:-2]
    n = _check_count(n_probes, "n_probes")
    h, d_in = W1.shape[-2:]
    d_out = W2.shape[-2]
    B = math.prod(batch)
    Sx = _covariance(teacher)
    per_probe = B * 6 * (h * d_in + d_out * h + d_out * d_in)
    samples = _run_chunks(
        _hutchinson_chunk,
        _key(seed),
        n,
        _chunk_size(n, per_probe),
        jnp.asarray(W1.reshape((B, h, d_in))),
        jnp.asarray(W2.reshape((B, d_out, h))),
        jnp.asarray(teacher.matrix),
        None if Sx is None else jnp.asarray(Sx),
    )
    return samples.mean(axis=0).reshape(batch), (samples.std(axis=0, ddof=1) / np.sqrt(n)).reshape(batch)


# --------------------------------------------------------------------------------------
# Relative noise.


def noise_stds(gamma, kind: str = "absolute", W1=None, W2=None, init_stds=None):
    """Per-layer noise stds (σ1, σ2) for a named noise scaling.

    "absolute" (default): σ1 = σ2 = γ.
    "init": σ_l = γ × init std of layer l (`init_stds` = (std1, std2)).
    "rms": σ_l = γ × current RMS of layer l, √(‖W_l‖² / size); grows with training.

    Args:
      gamma: noise scale γ ≥ 0 (weight units for "absolute", dimensionless otherwise).
      kind: one of NOISE_KINDS.
      W1, W2: (..., h, d_in), (..., d_out, h) weights ("rms" only).
      init_stds: (std1, std2) > 0, the layers' init stds ("init" only).
    Returns:
      (σ1, σ2): floats, or (...) arrays over the weights' batch axes for "rms".
    """
    g = np.asarray(gamma, dtype=np.float64)
    if g.ndim != 0 or not np.isfinite(g) or g < 0:
        raise ValueError(f"gamma must be a finite non-negative scalar (got {gamma!r})")
    g = float(g)
    if kind == "absolute":
        return g, g
    if kind == "init":
        if init_stds is None:
            raise ValueError("relative-to-init noise needs init_stds = (std1, std2)")
        stds = np.asarray(init_stds, dtype=np.float64)
        if stds.shape != (2,) or not np.all(np.isfinite(stds)) or np.any(stds <= 0):
            raise ValueError(f"init_stds must be two positive finite stds (got {init_stds!r})")
        return g * float(stds[0]), g * float(stds[1])
    if kind == "rms":
        if W1 is None or W2 is None:
            raise ValueError("RMS-relative noise needs the current weights W1, W2")
        W1, W2 = _check_weights(W1, W2)
        rms1 = np.sqrt(_sq_norm(W1) / (W1.shape[-2] * W1.shape[-1]))
        rms2 = np.sqrt(_sq_norm(W2) / (W2.shape[-2] * W2.shape[-1]))
        return g * rms1, g * rms2
    raise ValueError(f"unknown noise kind {kind!r}; known: {', '.join(NOISE_KINDS)}")


# --------------------------------------------------------------------------------------
# Per-mode theory for aligned weights.


def _trace_and_variances(d_in, input_variances):
    """tr(Σx) and the per-mode variances d_i (1.0 when whitened)."""
    if input_variances is None:
        return float(d_in), np.float64(1.0)
    d = np.asarray(input_variances, dtype=np.float64)
    if d.ndim != 1 or not np.all(np.isfinite(d)) or np.any(d <= 0) or d.size > d_in:
        raise ValueError("input_variances must be a 1-d list of positive values, at most d_in of them")
    return float(d_in - d.size + d.sum()), d


def critical_singular_value(d_in: int, d_out: int, sigma1, sigma2=None, *, balance=0.0, input_variances=None):
    """The singular value s* below which fully learning a mode raises E[L_pert].

    Aligned weights, mode i taken from strength 0 to its target s_i/d_i. The noise cost of
    the mode is ½ κ_i m_i with κ_i = σ1² tr(Σx) + σ2² d_out d_i and m_i the increase of both
    ‖W1‖² (measured as tr(W1ΣxW1ᵀ)/d_i on that mode) and ‖W2‖²; the loss drops by ½ s_i²/d_i.

    - Balanced (balance λ = 0): m_i = s_i/d_i, harmful iff s_i < s*_i = κ_i.
      Whitened: s* = σ1² d_in + σ2² d_out (= σ²(d_in + d_out) for σ1 = σ2 = σ).
    - λ-balanced, W2ᵀW2 − W1W1ᵀ = λ I (conserved by gradient flow): a mode of strength a has
      W1 value b and W2 value c with bc = a, c² − b² = λ, so learning it raises ‖W1‖² and
      ‖W2‖² by the same m(a) = (√(λ² + 4a²) − |λ|)/2 ≤ a (the larger layer already carries
      |λ|). Since m(a)/a² falls with a, the mode is harmful iff
      s_i < s*_i = √(κ_i (κ_i − d_i|λ|)) when κ_i > d_i|λ|; otherwise no mode is harmful
      (s* = 0). Imbalance lowers s*. Hidden units outside the learned modes carry a
      constant norm that does not change the comparison.

    Args:
      d_in, d_out: input and output sizes.
      sigma1, sigma2: noise stds on W1, W2 entries (σ2 defaults to σ1), ≥ 0 scalars.
      balance: λ in W2ᵀW2 − W1W1ᵀ = λ I (0: balanced); either sign.
      input_variances: (r,) input variances d_i along the teacher's v_i (co-diagonal Σx,
        unit variance elsewhere), or None for whitened inputs.
    Returns:
      s* as a float64 scalar (whitened) or an (r,) array, one threshold per mode, in the
      units of the singular values of Σyx (teacher.s).
    """
    if min(d_in, d_out) <= 0:
        raise ValueError("d_in and d_out must be positive")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    if s1.ndim or s2.ndim:
        raise ValueError("sigma1 and sigma2 must be scalars")
    lam = np.asarray(balance, dtype=np.float64)
    if lam.ndim or not np.isfinite(lam):
        raise ValueError("balance must be a finite scalar")
    trace, d = _trace_and_variances(d_in, input_variances)
    kappa = s1**2 * trace + s2**2 * d_out * d
    excess = kappa * (kappa - d * abs(lam))
    return np.sqrt(np.maximum(excess, 0.0))


def _check_spectrum(s, s_star, input_variances=None):
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1 or not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError("singular values must be a 1-d list of finite non-negative numbers")
    star = np.asarray(s_star, dtype=np.float64)
    if not np.all(np.isfinite(star)) or np.any(star < 0):
        raise ValueError("s_star must be finite and non-negative")
    try:
        star = np.broadcast_to(star, s.shape)
    except ValueError:
        raise ValueError(f"s_star of shape {star.shape} does not match {s.size} singular values") from None
    d = np.ones_like(s)
    if input_variances is not None:
        d = np.asarray(input_variances, dtype=np.float64)
        if d.shape != s.shape or not np.all(np.isfinite(d)) or np.any(d <= 0):
            raise ValueError("input_variances must be one positive value per singular value")
    return s, star, d


def harmful_modes(s, s_star) -> np.ndarray:
    """0-based indices of the modes that fully learned raise E[L_pert]: s_i < s*.

    A mode at the threshold changes E[L_pert] by exactly zero and is not harmful; s* is
    usually computed in floating point (0.05²·40 = 0.10000000000000002), so the comparison
    allows a relative 1e-12 for rounding.

    Args:
      s: (r,) singular values (any order).
      s_star: scalar or (r,) threshold(s) from `critical_singular_value`.
    Returns:
      (k,) int array of indices, increasing.
    """
    s, star, _ = _check_spectrum(s, s_star)
    return np.flatnonzero(s < star * (1 - 1e-12))


def noisy_optimum(s, s_star, input_variances=None) -> np.ndarray:
    """Each mode's strength minimising E[L_pert] (balanced aligned weights).

    Per mode E = ½ d_i (a − s_i/d_i)² + ½ s*_i a + const, so
    a_i = (s_i − s*_i/2)/d_i, or 0 when s_i < s*_i/2. Whitened: a_i = max(s_i − s*/2, 0).

    Args:
      s: (r,) singular values of Σyx.
      s_star: scalar or (r,) balanced threshold(s) from `critical_singular_value`.
      input_variances: (r,) d_i, or None (whitened).
    Returns:
      (r,) optimal mode strengths a_i.
    """
    s, star, d = _check_spectrum(s, s_star, input_variances)
    return np.maximum(s - 0.5 * star, 0.0) / d


def rise_bound_terms(s, s_star, input_variances=None) -> np.ndarray:
    """Per-mode rise g_i of E[L_pert] from the mode's noisy optimum to full learning.

    g_i = s*²/8 when s_i ≥ s*/2, ½ s_i (s* − s_i) otherwise (THEORY.md §4), each divided
    by d_i for co-diagonal inputs. At convergence E[L_pert] exceeds its minimum over
    a trajectory by at most Σ_i g_i. Balanced aligned weights.

    Args:
      s: (r,) singular values of Σyx.
      s_star: scalar or (r,) balanced threshold(s) from `critical_singular_value`.
      input_variances: (r,) d_i, or None (whitened).
    Returns:
      (r,) g_i in loss units.
    """
    s, star, d = _check_spectrum(s, s_star, input_variances)
    return np.where(s >= 0.5 * star, star**2 / 8.0, 0.5 * s * (star - s)) / d


def modal_expected_perturbed_loss(teacher: Teacher, mode_strengths, d_hidden: int, sigma1, sigma2=None) -> np.ndarray:
    """E[L_pert] of aligned balanced weights from their mode strengths alone.

    ‖W2‖² = Σ a_i and tr(W1ΣxW1ᵀ) = Σ d_i a_i, so
    E[L_pert] = ½ Σ d_i (a_i − s_i/d_i)² + ½[σ2² d_out Σ d_i a_i + σ1² tr(Σx) Σ a_i
    + σ1²σ2² tr(Σx) h d_out]. Exact for aligned balanced init under gradient flow or GD.

    Args:
      teacher: the teacher (s, d_i, d_in, d_out).
      mode_strengths: (..., T, r) mode strengths a_i (any leading axes, e.g. a
        Trajectory's `mode_strengths`).
      d_hidden: hidden width h.
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0, broadcasting to (..., T).
    Returns:
      (..., T) expected perturbed loss in loss units.
    """
    a = np.asarray(mode_strengths, dtype=np.float64)
    if a.ndim < 1 or a.shape[-1] != teacher.rank:
        raise ValueError(f"mode strengths must end in an axis of {teacher.rank} modes (got shape {a.shape})")
    if np.any(a < 0):
        raise ValueError("aligned balanced mode strengths are non-negative")
    if d_hidden < 1:
        raise ValueError("hidden width must be at least 1")
    s1, s2 = _check_sigmas(sigma1, sigma2)
    d = teacher.variances
    trace = teacher.d_in - teacher.rank + d.sum()
    penalty = _penalty((a * d).sum(-1), a.sum(-1), trace, teacher.d_out, d_hidden, s1, s2)
    return modal_loss(teacher, a) + penalty
