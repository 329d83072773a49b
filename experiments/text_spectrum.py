"""The empirical spectrum of a text: its target modes, in the synthetic language's units.

Counts C[i, j] of token j following token i along the training stream; add-k smoothing
P̂(j | i) = (C[i, j] + k) / (n_i + k·V); L[i, j] = log P̂(j | i) with every row centred (minus
its mean over j, as language.py centres the synthetic logits). Its SVD L = Σ σ_k u_k v_kᵀ
gives the target modes u_k (current token), v_k (next token) and strengths s_k = σ_k / V,
so that L = V · U diag(s) Vᵀ as in language.py; the top r are kept.

The model's first-order logit map M (V × V): row i is the model's logits at the only
position of the length-1 context (token i), centred over the V next tokens. At that position
the model sees token i and nothing else, so the cross-entropy minimiser there is log P(· | i)
of the training text: M is the model's bigram map and L its target. Mode strengths
a_k = u_kᵀ M v_k / V, as probes.strengths computes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Spectrum:
    logits: np.ndarray  # (V, V) centred log P̂(j | i), float64
    u: np.ndarray  # (V, r) unit columns, current-token side
    v: np.ndarray  # (V, r) unit columns, next-token side (⊥ 1, since rows of L are centred)
    s: np.ndarray  # (r,) s_k = σ_k / V, non-increasing
    sigma_all: np.ndarray  # every singular value of L / V (the whole spectrum, for the record)
    smoothing: float


def bigram_counts(stream: np.ndarray, vocab: int) -> np.ndarray:
    """C[i, j] = #{t : x_t = i, x_{t+1} = j} along a token stream."""
    c = np.zeros((vocab, vocab), np.float64)
    np.add.at(c, (stream[:-1], stream[1:]), 1.0)
    return c


def smoothed_log_probs(counts: np.ndarray, k: float) -> np.ndarray:
    """log P̂(j | i) = log((C[i, j] + k) / (n_i + k·V))."""
    v = counts.shape[0]
    return np.log(counts + k) - np.log(counts.sum(1, keepdims=True) + k * v)


def empirical_spectrum(stream: np.ndarray, vocab: int, rank: int, k: float = 1.0) -> Spectrum:
    """The target modes of a training stream (module docstring): the top `rank` with σ_k > 1e-9·σ_1 (≤ V − 1)."""
    if not k > 0:
        raise ValueError(f"smoothing k must be positive, got {k}")
    logp = smoothed_log_probs(bigram_counts(stream, vocab), k)
    logits = logp - logp.mean(1, keepdims=True)
    u, sv, vt = np.linalg.svd(logits)
    r = min(rank, int(np.sum(sv > 1e-9 * sv[0])))  # zero modes (e.g. rows of unseen tokens) are no targets
    return Spectrum(logits, u[:, :r], vt[:r].T, sv[:r] / vocab, sv / vocab, k)


def bigram_loss(train: np.ndarray, held: list, vocab: int, k: float) -> float:
    """Held-out cross-entropy (nats/token) of the smoothed bigram model: the scale of a first-order predictor."""
    logp = smoothed_log_probs(bigram_counts(train, vocab), k)
    nll = [-logp[h[:-1], h[1:]] for h in held if h.size > 1]
    return float(np.concatenate(nll).mean())


def unigram_loss(train: np.ndarray, held: list, vocab: int, k: float) -> float:
    """Held-out cross-entropy of the smoothed unigram model (token frequencies only)."""
    n = np.bincount(train, minlength=vocab).astype(np.float64)
    logp = np.log(n + k) - np.log(n.sum() + k * vocab)
    return float(np.concatenate([-logp[h[1:]] for h in held if h.size > 1]).mean())


# ---------------------------------------------------------------- the model's first-order map


def first_order_map(params, cfg):
    """(V, V) centred logits of the length-1 contexts [i], i = 0..V−1 (jax)."""
    import jax.numpy as jnp

    from .model import forward

    logits = forward(params, cfg, jnp.arange(cfg.vocab_size, dtype=jnp.int32)[:, None])[:, 0, :]
    return logits - logits.mean(-1, keepdims=True)
