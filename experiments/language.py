"""A first-order Markov language whose next-token logits have a chosen spectrum.

Convention. Row i of the V×V logit matrix L holds the next-token logits after token i:

    L = V · U diag(s) Vᵀ,   U, V with orthonormal columns, every column of V ⊥ 1,

so each row of L is centred (logits are shift-invariant) and s is the logit scale of a
mode per entry: the entries of V·u vᵀ are O(1). In these units the near-linear excess loss
is ½ Σ (s_k − a_k)² — the theory's ½‖W2W1 − A‖² — and s1 ≤ 1 keeps the softmax near-linear.
A model's strength on mode k is a_k = u_kᵀ M v_k / V, M its centred logit map (probes.py).

Everything here is float64 numpy; `tables()` hands float32 arrays to the device sampler.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class MarkovLanguage:
    logits: np.ndarray  # (V, V) row-centred next-token logits
    u: np.ndarray  # (V, r) input-side (current token) singular vectors, unit columns
    v: np.ndarray  # (V, r) output-side (next token) singular vectors, unit columns ⊥ 1
    s: np.ndarray  # (r,) mode strengths: L = V · u diag(s) vᵀ
    transition: np.ndarray  # (V, V) P[i, j] = softmax(L[i])[j]
    stationary: np.ndarray  # (V,) π with π P = π
    entropy_rate: float  # −Σ_i π_i Σ_j P_ij log P_ij, nats per token: the best achievable loss

    @property
    def vocab(self) -> int:
        return self.logits.shape[0]

    def tables(self) -> "ChainTables":
        return chain_tables(self)


class ChainTables(NamedTuple):
    """Float32 device arrays for sampling and exact scoring."""

    cdf_start: jax.Array  # (V,) cumulative stationary distribution
    cdf_next: jax.Array  # (V, V) cumulative rows of P
    log_p: jax.Array  # (V, V) log P
    p: jax.Array  # (V, V) P


def power_law(rank: int, s1: float = 0.5, alpha: float = 0.5) -> np.ndarray:
    """s_k = s1 · k^(−alpha), k = 1..rank."""
    return s1 * np.arange(1, rank + 1, dtype=np.float64) ** (-alpha)


def _orthonormal(rng, n, k, avoid=None):
    """n×k orthonormal columns, Haar-random, orthogonal to the columns of `avoid`."""
    x = rng.standard_normal((n, k))
    if avoid is not None:
        x -= avoid @ (avoid.T @ x)
    q, r = np.linalg.qr(x)
    return q * np.sign(np.diag(r))  # fix the sign convention of QR so the draw is Haar


def stationary_distribution(p: np.ndarray) -> np.ndarray:
    """π with π P = π, Σπ = 1, for an irreducible transition matrix (least squares)."""
    v = p.shape[0]
    a = np.vstack([p.T - np.eye(v), np.ones((1, v))])
    b = np.zeros(v + 1)
    b[-1] = 1.0
    pi = np.linalg.lstsq(a, b, rcond=None)[0]
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def _softmax_rows(logits):
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def language_from_logits(logits, u=None, v=None, s=None) -> MarkovLanguage:
    """The chain with next-token logits `logits` (rows are centred here).

    Without (u, v, s) the modes are the SVD of the centred logits divided by V.
    """
    logits = np.asarray(logits, dtype=np.float64)
    n = logits.shape[0]
    if logits.shape != (n, n):
        raise ValueError(f"logits must be square, got shape {logits.shape}")
    logits = logits - logits.mean(axis=1, keepdims=True)
    if u is None:
        uu, sv, vt = np.linalg.svd(logits)
        r = int(np.sum(sv > 1e-9 * max(sv[0], 1e-300)))
        u, s, v = uu[:, :r], sv[:r] / n, vt[:r].T
    p = _softmax_rows(logits)
    pi = stationary_distribution(p)
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(p > 0, p * np.log(p), 0.0)
    h = float(-(pi * plogp.sum(axis=1)).sum())
    return MarkovLanguage(logits, np.asarray(u), np.asarray(v), np.asarray(s, dtype=np.float64), p, pi, h)


def make_language(vocab: int = 128, rank: int = 64, s1: float = 0.5, alpha: float = 0.5,
                  seed: int = 0, s=None) -> MarkovLanguage:
    """A chain with centred logits L = V · U diag(s) Vᵀ, power-law s by default, seeded.

    Args:
      vocab: number of tokens V.
      rank: number of modes r (r ≤ V − 1, since every v_k is orthogonal to 1).
      s1, alpha: the power law s_k = s1 · k^(−alpha), unless `s` is given.
      seed: seed of the singular vectors.
      s: explicit strengths, in decreasing order (overrides rank, s1, alpha).
    """
    s = power_law(rank, s1, alpha) if s is None else np.asarray(s, dtype=np.float64)
    r = s.shape[0]
    if vocab < 2:
        raise ValueError(f"vocab must be at least 2, got {vocab}")
    if r < 1 or r > vocab - 1:
        raise ValueError(f"rank must be between 1 and vocab − 1 = {vocab - 1}, got {r}")
    if np.any(s <= 0) or np.any(np.diff(s) > 0) or not np.all(np.isfinite(s)):
        raise ValueError("strengths must be positive, finite and non-increasing")
    rng = np.random.default_rng(seed)
    ones = np.ones((vocab, 1)) / np.sqrt(vocab)
    u = _orthonormal(rng, vocab, r)
    v = _orthonormal(rng, vocab, r, avoid=ones)
    return language_from_logits(vocab * (u * s) @ v.T, u, v, s)


def finetune_language(lang: MarkovLanguage, kind: str = "rank", rank: int = 8, strength: float | None = None,
                      angle: float = 0.5, seed: int = 1) -> MarkovLanguage:
    """A second chain for fine-tuning.

    kind="rank": L_B = L + V · a diag(δ) bᵀ, a rank-`rank` change along fresh random
      directions (b ⊥ 1), every δ = `strength` (default s1).
    kind="rotate": the top `rank` output vectors v_k rotated by `angle` radians towards
      fresh directions orthogonal to all of v (and to 1); same strengths.
    """
    rng = np.random.default_rng(seed)
    n, r = lang.vocab, lang.s.shape[0]
    ones = np.ones((n, 1)) / np.sqrt(n)
    if rank < 1:
        raise ValueError(f"fine-tuning rank must be positive, got {rank}")
    if kind == "rank":
        delta = lang.s[0] if strength is None else float(strength)
        a = _orthonormal(rng, n, rank)
        b = _orthonormal(rng, n, rank, avoid=ones)
        return language_from_logits(lang.logits + n * delta * a @ b.T)
    if kind == "rotate":
        if rank > r or rank + r > n - 1:
            raise ValueError(f"cannot rotate {rank} of {r} modes in vocab {n}")
        w = _orthonormal(rng, n, rank, avoid=np.hstack([ones, lang.v]))
        v = lang.v.copy()
        v[:, :rank] = np.cos(angle) * v[:, :rank] + np.sin(angle) * w
        return language_from_logits(n * (lang.u * lang.s) @ v.T, lang.u, v, lang.s)
    raise ValueError(f"unknown fine-tuning change {kind!r} (rank or rotate)")


# ---------------------------------------------------------------- on device


def chain_tables(lang: MarkovLanguage) -> ChainTables:
    cdf_start = np.cumsum(lang.stationary)
    cdf_next = np.cumsum(lang.transition, axis=1)
    cdf_start[-1] = 2.0  # every uniform draw lands in the table, whatever the rounding
    cdf_next[:, -1] = 2.0
    with np.errstate(divide="ignore"):
        log_p = np.log(lang.transition)
    f32 = lambda x: jnp.asarray(x, dtype=jnp.float32)  # noqa: E731
    return ChainTables(f32(cdf_start), f32(cdf_next), f32(np.maximum(log_p, -1e30)), f32(lang.transition))


def sample(key, tables: ChainTables, batch: int, length: int) -> jax.Array:
    """(batch, length) int32 token sequences, first token from π, by inverse-CDF sampling."""
    k0, k1 = jax.random.split(key)
    u0 = jax.random.uniform(k0, (batch,), dtype=jnp.float32)
    x0 = jnp.sum(tables.cdf_start[None, :] < u0[:, None], axis=1).astype(jnp.int32)
    us = jax.random.uniform(k1, (length - 1, batch), dtype=jnp.float32)

    def step(x, u):
        nxt = jnp.sum(tables.cdf_next[x] < u[:, None], axis=1).astype(jnp.int32)
        return nxt, nxt

    _, xs = jax.lax.scan(step, x0, us)
    return jnp.concatenate([x0[:, None], xs.T], axis=1)
