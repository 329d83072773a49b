"""Monte Carlo estimates of the perturbed loss and Hutchinson estimates of tr(H), in JAX.

The independent numerical checks of the exact formulas in `_noise.py`.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ._noise import _check_count, _check_sigmas, _check_weights, _covariance, _key, _loss
from ._teacher import Teacher
from ._x64 import x64

# Floats of work memory one Monte Carlo / Hutchinson chunk may use (8 bytes each).
_CHUNK_FLOATS = 2**23


def _chunk_size(n, floats_per_item):
    """Items per compiled chunk: a power of two ≤ 1024, covering n if smaller, within memory."""
    cap = max(1, _CHUNK_FLOATS // max(1, floats_per_item))
    size = 1 << max(0, (min(n, 1024) - 1).bit_length())
    while size > cap and size > 1:
        size //= 2
    return size


def _generator(seed) -> np.random.Generator:
    """numpy's PCG64 stream named by an int seed or a JAX PRNG key (seeded with the key's
    data, so an int and the key `jax.random.key(int)` name the same stream)."""
    return np.random.default_rng(np.asarray(jax.random.key_data(_key(seed))).ravel().tolist())


def _chunks(rng, n, chunk, width, sample):
    """Yield (rows, Z) for the first n draws, `chunk` at a time: Z is (chunk, width), row k the
    draw k of the stream (the last chunk padded with zeros, `rows` of it real).

    Draws are made on the host: row k is always the k-th `width` numbers of the stream
    whatever n and chunk are, and the compiled loop that uses them stays free of a PRNG
    (JAX's threefry made compilation ~20× slower than the loss itself).
    """
    for start in range(0, n, chunk):
        rows = min(chunk, n - start)
        Z = sample(rng, (rows, width))
        yield rows, np.concatenate([Z, np.zeros((chunk - rows, width))]) if rows < chunk else Z


def _normal(rng, shape):
    return rng.standard_normal(shape)


def _rademacher(rng, shape):
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def _split(Z, W1, W2):
    """(chunk, h·d_in + d_out·h) draws as (chunk, h, d_in) and (chunk, d_out, h) arrays."""
    m = W1.shape[-2] * W1.shape[-1]
    return jax.device_put(Z[:, :m].reshape((-1,) + W1.shape[-2:])), jax.device_put(Z[:, m:].reshape((-1,) + W2.shape[-2:]))


def _run_chunks(fn, chunks, W1, W2, *args):
    """Concatenate fn(Z1, Z2, W1, W2, *args) over the draws of `chunks` (real rows only)."""
    return np.concatenate([np.asarray(fn(*_split(Z, W1, W2), W1, W2, *args))[:rows] for rows, Z in chunks], axis=0)


def _stream_chunks(fn, chunks, W1, W2, *args, progress=None):
    """Mean and sample variance (ddof 1) over the real rows of fn(Z1, Z2, W1, W2, *args) for the
    draws of `chunks`, merged chunk by chunk (Chan et al.'s pairwise update), so memory
    stays one chunk whatever n is. `progress(k)` is called with the rows done after each chunk."""
    count, mean, m2 = 0, None, None
    for rows, Z in chunks:
        x = np.asarray(fn(*_split(Z, W1, W2), W1, W2, *args))[:rows]
        c = x.shape[0]
        mu = x.mean(axis=0)
        dev = ((x - mu) ** 2).sum(axis=0)
        if mean is None:
            mean, m2 = mu, dev
        else:
            delta = mu - mean
            total = count + c
            mean = mean + delta * (c / total)
            m2 = m2 + dev + delta**2 * (count * c / total)
        count += c
        if progress is not None:
            progress(count)
    return mean, m2 / max(count - 1, 1)


@jax.jit
def _mc_chunk(Z1, Z2, W1, W2, A, Sx, s1, s2):
    """Perturbed losses for the draws Z1 (chunk, h, d_in), Z2 (chunk, d_out, h), shape
    (chunk, B), for a flat batch W1 (B, h, d_in), W2 (B, d_out, h); every draw perturbs all B
    weights with the same Z1, Z2 (common random numbers)."""

    def one(z1, z2):
        return _loss(W1 + s1[:, None, None] * z1, W2 + s2[:, None, None] * z2, A, Sx)

    return jax.vmap(one)(Z1, Z2)


@x64
def monte_carlo_perturbed_loss(
    W1, W2, teacher: Teacher, sigma1, sigma2=None, n_draws: int = 1000, seed=0, progress=None
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of E[L_pert]: mean and standard error over noise draws.

    Draws are vmapped in chunks of up to 1024 (fewer when weights are large: work memory
    stays near 64 MB). All weights of a batch share the same draws (common random
    numbers), so differences between checkpoints are less noisy than each value; the
    standard error is per entry. Chunks are merged as they come (running mean and sum of
    squares), so memory does not grow with n_draws. Draws come from numpy's PCG64 stream named
    by the seed, draw k being always the k-th block of that stream, so a larger n_draws
    extends the same sample. Cost per call: n_draws × B × (2 h d_in d_out, plus
    d_out d_in² when Σx ≠ I) flops for B weight pairs; one compilation per shape.

    Args:
      W1, W2: (..., h, d_in), (..., d_out, h) weights, e.g. every checkpoint of a trajectory.
      teacher: the teacher (A and Σx).
      sigma1, sigma2: noise stds per layer (σ2 defaults to σ1), ≥ 0, broadcasting to (...).
      n_draws: number of noise draws (≥ 2).
      seed: int seed or a JAX PRNG key.
      progress: optional callable, given the number of draws done after each chunk.
    Returns:
      (mean, stderr), each (...), in loss units; stderr = sample std (ddof 1) / √n_draws.
    """
    W1, W2 = _check_weights(W1, W2, teacher)
    batch = W1.shape[:-2]
    s1, s2 = _check_sigmas(sigma1, sigma2, batch)
    n = _check_count(n_draws, "n_draws")
    h, d_in = W1.shape[-2:]
    d_out = W2.shape[-2]
    B = math.prod(batch)
    Sx = _covariance(teacher)
    per_draw = B * (2 * h * d_in + 2 * d_out * h + 3 * d_out * d_in)
    mean, var = _stream_chunks(
        _mc_chunk,
        _chunks(_generator(seed), n, _chunk_size(n, per_draw), h * d_in + d_out * h, _normal),
        jax.device_put(W1.reshape((B, h, d_in))),
        jax.device_put(W2.reshape((B, d_out, h))),
        jax.device_put(teacher.matrix),
        None if Sx is None else jax.device_put(Sx),
        jax.device_put(s1.reshape(B)),
        jax.device_put(s2.reshape(B)),
        progress=progress,
    )
    return mean.reshape(batch), (np.sqrt(var) / np.sqrt(n)).reshape(batch)


@jax.jit
def _hutchinson_chunk(V1, V2, W1, W2, A, Sx):
    """vᵀHv for the Rademacher probes V1 (chunk, h, d_in), V2 (chunk, d_out, h), shape
    (chunk, B); H is the Hessian of L in (W1, W2), Hv = jax.jvp of jax.grad."""

    def loss(params):
        return _loss(params[0], params[1], A, Sx)

    def quad(w1, w2, v):
        _, hv = jax.jvp(jax.grad(loss), ((w1, w2),), (v,))
        return jnp.sum(v[0] * hv[0]) + jnp.sum(v[1] * hv[1])

    def one(v1, v2):
        return jax.vmap(quad, in_axes=(0, 0, None))(W1, W2, (v1, v2))

    return jax.vmap(one)(V1, V2)


@x64
def hutchinson_hessian_trace(
    W1, W2, teacher: Teacher, n_probes: int = 100, seed=0
) -> tuple[np.ndarray, np.ndarray]:
    """Hutchinson estimate of tr(H) of L in (W1, W2), through JAX Hessian-vector products.

    tr(H) ≈ mean_k v_kᵀ H v_k with Rademacher probes v_k (entries ±1, one per weight),
    H v computed as jax.jvp of jax.grad. Unbiased; its variance per probe is
    2 Σ_{i≠j} H_ij². Batched weights share the probes (numpy's PCG64 stream named by the
    seed, probe k always the k-th block of it).

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
        _chunks(_generator(seed), n, _chunk_size(n, per_probe), h * d_in + d_out * h, _rademacher),
        jax.device_put(W1.reshape((B, h, d_in))),
        jax.device_put(W2.reshape((B, d_out, h))),
        jax.device_put(teacher.matrix),
        None if Sx is None else jax.device_put(Sx),
    )
    return samples.mean(axis=0).reshape(batch), (samples.std(axis=0, ddof=1) / np.sqrt(n)).reshape(batch)
