"""What is measured at a checkpoint: exact excess loss, mode strengths, noise, sharpness.

- Excess loss: the exact KL between the chain's next-token distribution P[x_t] and the
  model's, averaged over every position of a fixed held-out set of sequences (no
  sampling noise in the targets). The loss is the exact expected cross-entropy,
  H(P[x_t]) + KL, on the same positions.
- Logit map M: the model's centred logits averaged over the positions whose last token
  is i (row i); mode strength a_k = u_kᵀ M v_k / V on the language's fixed singular pairs.
- Weight noise on every matrix (ndim ≥ 2): W + σZ ("absolute") or W + σ·RMS(W)·Z
  ("relative", RMS of that tensor at that checkpoint); biases and LayerNorm parameters
  untouched. Draw d uses the key fold_in(noise_key, d) at every checkpoint and σ.
- Spectral view: the noise floor ‖M_noisy − M‖₂ / V, in mode-strength units, and the
  number of modes whose learned strength lies above it.
- Hessian trace of the excess loss over the matrices, by Hutchinson's estimator with
  Gaussian probes; per-tensor traces give the relative-noise proxy Σ_W RMS(W)² tr(H_WW).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .language import ChainTables, MarkovLanguage, sample
from .model import GPTConfig, forward, is_matrix


def eval_tokens(key, tables: ChainTables, n: int, context: int) -> jax.Array:
    """A fixed held-out set: n sequences of context + 1 tokens from the stationary chain."""
    return sample(key, tables, n, context + 1)


def score_logits(logits, inputs, tables: ChainTables):
    """(excess loss, loss): exact mean KL(P[x_t] ‖ softmax(logits_t)) and exact mean cross-entropy."""
    logq = jax.nn.log_softmax(logits, axis=-1)
    p, logp = tables.p[inputs], tables.log_p[inputs]
    ce = -(p * logq).sum(-1)
    ent = -(jnp.where(p > 0, p * logp, 0.0)).sum(-1)
    return (ce - ent).mean(), ce.mean()


def logit_map(logits, inputs, vocab: int):
    """(V, V) centred logits averaged by last token; rows of unseen tokens are 0."""
    centred = logits - logits.mean(-1, keepdims=True)
    flat, idx = centred.reshape(-1, vocab), inputs.reshape(-1)
    total = jax.ops.segment_sum(flat, idx, num_segments=vocab)
    count = jax.ops.segment_sum(jnp.ones_like(idx, jnp.float32), idx, num_segments=vocab)
    return total / jnp.maximum(count, 1.0)[:, None]


def strengths(m, u, v):
    """a_k = u_kᵀ M v_k / V for M (V, V) and unit singular vectors u, v (V, r)."""
    return jnp.einsum("ik,ij,jk->k", u, m, v) / m.shape[0]


def evaluate(params, cfg: GPTConfig, tokens, tables: ChainTables):
    """(excess loss, loss, logit map) of `params` on held-out `tokens` (N, T+1)."""
    inputs = tokens[:, :-1]
    logits = forward(params, cfg, inputs)
    excess, loss = score_logits(logits, inputs, tables)
    return excess, loss, logit_map(logits, inputs, cfg.vocab_size)


evaluate_jit = jax.jit(evaluate, static_argnums=1)
_evaluate = evaluate


@functools.partial(jax.jit, static_argnums=1)
def logit_stats(params, cfg: GPTConfig, tokens):
    """(RMS of the logits, mean logsumexp of the logits) over every position of held-out `tokens`
    (N, T+1): how large the logits have grown (the quantity a z-loss penalises)."""
    logits = forward(params, cfg, tokens[:, :-1])
    return jnp.sqrt(jnp.mean(logits**2)), jnp.mean(jax.nn.logsumexp(logits, axis=-1))


def matrix_normal(params, key):
    """A pytree like `params`: N(0, 1) entries on every matrix, zeros elsewhere.

    One normal draw covers all matrices (in leaf order): far quicker to compile than one per tensor.
    """
    leaves, treedef = jax.tree_util.tree_flatten(params)
    z = jax.random.normal(key, (sum(w.size for w in leaves if is_matrix(w)),), jnp.float32)
    out, start = [], 0
    for w in leaves:
        if is_matrix(w):
            out.append(z[start:start + w.size].reshape(w.shape).astype(w.dtype))
            start += w.size
        else:
            out.append(jnp.zeros_like(w))
    return jax.tree_util.tree_unflatten(treedef, out)


def perturb(params, key, sigma, relative):
    """Add Gaussian noise to every matrix: σZ, or σ·RMS(W)·Z when `relative`; other parameters untouched."""

    def add(w, z):
        if not is_matrix(w):
            return w
        return w + jnp.where(relative, sigma * jnp.sqrt(jnp.mean(w**2)), sigma) * z

    return jax.tree_util.tree_map(add, params, matrix_normal(params, key))


def _noise_probe(cfg: GPTConfig, draws: int, map_batch: int, evaluator=None):
    """f(params, tokens, tables, noise_key, sigma, relative) → per-draw (excess loss, M_noisy − M), unjitted.

    `evaluator` replaces `evaluate` (same signature and outputs; real text: experiments/text_run.py)."""
    evaluate = evaluator or _evaluate

    def one(params, tokens, tables, m_clean, key, sigma, relative):
        excess, _, m = evaluate(perturb(params, key, sigma, relative), cfg, tokens, tables)
        return excess, m - m_clean

    def probe(params, tokens, tables, noise_key, sigma, relative):
        _, _, m_clean = evaluate(params, cfg, tokens, tables)
        keys = jax.vmap(lambda d: jax.random.fold_in(noise_key, d))(jnp.arange(draws))
        return jax.lax.map(lambda k: one(params, tokens, tables, m_clean, k, sigma, relative), keys,
                           batch_size=min(map_batch, draws))

    return probe


@functools.lru_cache(maxsize=8)
def make_noise_probe(cfg: GPTConfig, draws: int, map_batch: int = 4, evaluator=None):
    """A jitted f(params, tokens, tables, noise_key, sigma, relative) → per-draw (excess loss, M_noisy − M).

    `relative` is a traced boolean, so both kinds of noise share one compilation. `evaluator`
    replaces `evaluate` (same signature and outputs; real text: experiments/text_run.py).
    """
    return jax.jit(_noise_probe(cfg, draws, map_batch, evaluator))


@functools.lru_cache(maxsize=8)
def make_noise_sweep(cfg: GPTConfig, draws: int, map_batch: int = 4, evaluator=None):
    """make_noise_probe for every noise row at once: sigma and relative are (S,) arrays (one entry per row,
    each row its own kind), the outputs gain a leading row axis; the rows run side by side (vmap), the
    clean logit map is computed once. `evaluator` as in make_noise_probe."""
    return jax.jit(jax.vmap(_noise_probe(cfg, draws, map_batch, evaluator), in_axes=(None, None, None, None, 0, 0)))


@functools.lru_cache(maxsize=8)
def make_hessian_trace(cfg: GPTConfig, probes: int, evaluator=None):
    """A jitted f(params, tokens, tables, key) → per-matrix Hutchinson estimates of tr(H_WW) (leaf order).

    `evaluator` replaces `evaluate`, as in make_noise_probe."""
    evaluate = evaluator or _evaluate

    def one(params, tokens, tables, key):
        loss = lambda p: evaluate(p, cfg, tokens, tables)[0]  # noqa: E731
        z = matrix_normal(params, key)
        _, hz = jax.jvp(jax.grad(loss), (params,), (z,))
        pairs = zip(jax.tree_util.tree_leaves(z), jax.tree_util.tree_leaves(hz), jax.tree_util.tree_leaves(params))
        return jnp.stack([jnp.vdot(a, b) for a, b, w in pairs if is_matrix(w)])

    def trace(params, tokens, tables, key):
        keys = jax.vmap(lambda d: jax.random.fold_in(key, d))(jnp.arange(probes))
        return jax.lax.map(lambda k: one(params, tokens, tables, k), keys).mean(0)

    return jax.jit(trace)


def matrix_rms_sq(params) -> np.ndarray:
    return np.array([float(jnp.mean(w**2)) for w in jax.tree_util.tree_leaves(params) if is_matrix(w)])


def matrix_rms(params) -> dict:
    """{tree path: RMS} of every matrix (what relative noise scales with)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): float(jnp.sqrt(jnp.mean(w**2))) for path, w in flat if is_matrix(w)}


def weight_sq_norm(params) -> float:
    """Σ ‖W‖²_F over the matrices."""
    return float(sum(jnp.sum(w**2) for w in jax.tree_util.tree_leaves(params) if is_matrix(w)))


def probe_checkpoint(params, cfg: GPTConfig, lang: MarkovLanguage, tables: ChainTables, tokens, noise_key,
                     sigmas: dict, noise_fn, hessian_fn=None, hessian_tokens=None, hessian_key=None,
                     evaluator_jit=None) -> dict:
    """Every probe at one checkpoint, as plain numbers (see the module docstring).

    sigmas: {"relative": [...], "absolute": [...]}; noise_fn from make_noise_sweep (every row in one call);
    evaluator_jit replaces evaluate_jit (noise_fn and hessian_fn then built with the same evaluator).
    """
    excess, loss, m = (evaluator_jit or evaluate_jit)(params, cfg, tokens, tables)
    a = np.asarray(strengths(m, jnp.asarray(lang.u, jnp.float32), jnp.asarray(lang.v, jnp.float32)), np.float64)
    out = {"excess_loss": float(excess), "loss": float(loss), "mode_strengths": a.tolist(),
           "weight_sq_norm": weight_sq_norm(params), "matrix_rms": matrix_rms(params), "noise": {}}
    out["logit_rms"], out["logsumexp_mean"] = (float(x) for x in logit_stats(params, cfg, tokens))
    rows = [(kind, float(sigma)) for kind, values in sigmas.items() for sigma in values]
    if rows:
        perturbed_all, diff_all = noise_fn(params, tokens, tables, noise_key,
                                           jnp.asarray([sg for _, sg in rows], jnp.float32),
                                           jnp.asarray([kind == "relative" for kind, _ in rows]))
    for kind in sigmas:
        out["noise"][kind] = []
    for j, (kind, sigma) in enumerate(rows):
        perturbed = np.asarray(perturbed_all[j], np.float64)
        floor = np.linalg.norm(np.asarray(diff_all[j], np.float64), ord=2, axis=(1, 2)) / cfg.vocab_size
        mean_floor = float(floor.mean())
        out["noise"][kind].append({"sigma": sigma, "perturbed_draws": perturbed.tolist(), "noise_floor": mean_floor,
                                   "noise_floor_se": float(floor.std(ddof=1) / np.sqrt(floor.size)),
                                   "modes_above_floor": int(np.sum(a > mean_floor))})
    if hessian_fn is not None:
        per = np.asarray(hessian_fn(params, hessian_tokens, tables, hessian_key), np.float64)
        out["hessian_trace"] = float(per.sum())
        out["hessian_trace_relative"] = float((per * matrix_rms_sq(params)).sum())
    return out
