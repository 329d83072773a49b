"""The transformer protocol on real text: the same model, training, checkpoints and probes.

What changes against the synthetic run (run.py):
- data: windows of context + 1 tokens at uniform random starts in the training split of
  a text (experiments/text.py); every probe scores the held-out split only;
- target modes: the empirical spectrum of the training split (experiments/text_spectrum.py),
  mode strengths on the model's first-order map (logits of the length-1 contexts, centred);
- losses: the model's cross-entropy on the held-out windows (every position), nats/token.
  Real text has no known next-token distribution, so no exact KL (excess loss) exists;
  the smoothed unigram and bigram models' held-out cross-entropies are given for scale;
- fine-tuning: on the training split of a second text; afterwards the held-out loss on
  the first text (out of domain) and on the second text (in domain).
Noise, noise floor and Hessian trace are probes.py's, with the held-out cross-entropy in
place of the excess loss (the two differ by a constant, so Δloss and the Hessian agree).

Folder layout and resume are run.py's: DIR/config.json (which records the texts' SHA-256,
so a changed text is a changed configuration), checkpoints/, probes/, finetune.json,
result.json. Keys: fold_in(key(seed), i), i = 0 init, 1 data, 2 noise, 5 fine-tuning
batches, 6 Hessian probes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from linear_theory import __version__
from linear_theory.output import SCHEMA_VERSION, atomic_write_json, jsonable

from .finetune import FinetuneConfig, make_finetune
from .model import GPTConfig, forward
from .presets import ProbeConfig, _variant
from .probes import make_hessian_trace, make_noise_sweep, probe_checkpoint
from .run import _bar, diverged_points, finish_run, noise_table, open_run, pretrain, probe_all, probe_series
from .text import EMBEDDED, TOKENS, load_source, sample_windows, summary, text_tables, tokenise, vocab_size
from .text_spectrum import bigram_loss, empirical_spectrum, first_order_map, unigram_loss
from .train import TrainConfig, checkpoint_steps

SCHEMA = "linear-theory/transformer-text-run/1"
TEXT_PRESETS = ("text-cpu", "text-gpu")
TEXT_FT_RATES = (0.5, 0.15)  # fixed rates of the theory variant: a text has no linear theory to choose them from
NO_KL = ("real text has no known next-token distribution: losses are the model's cross-entropy on the held-out "
         "split (nats/token), not an excess loss over an exact floor; the smoothed bigram and unigram models' "
         "held-out cross-entropies are given for scale")


@dataclass(frozen=True)
class TextConfig:
    source: str = EMBEDDED  # a path, or "embedded" (pydoc_data.topics, text.py)
    finetune_source: str | None = EMBEDDED  # None: no fine-tuning
    tokens: str = "char"  # "char" or "byte"
    held_out: float = 0.1  # fraction of each text held out
    smoothing: float = 1.0  # add-k of the empirical bigram matrix
    rank: int = 64  # target modes kept (≤ V − 1)
    max_vocab: int = 256  # the most tokens the model may hold
    # filled from the data (so config.json detects a changed text):
    sha256: str | None = None
    finetune_sha256: str | None = None
    vocab_size: int | None = None

    def __post_init__(self):
        if self.tokens not in TOKENS:
            raise ValueError(f"unknown tokens {self.tokens!r} (char or byte)")
        if not 0 < self.held_out <= 0.5:
            raise ValueError(f"held-out fraction must lie in (0, 0.5], got {self.held_out}")
        if not self.smoothing > 0 or self.rank < 1 or self.max_vocab < 2:
            raise ValueError("smoothing must be positive, rank ≥ 1 and max_vocab ≥ 2")


@dataclass(frozen=True)
class TextRunConfig:
    preset: str = "text-cpu"
    variant: str = "theory"
    seed: int = 0
    text: TextConfig = field(default_factory=TextConfig)
    model: GPTConfig = field(default_factory=GPTConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def get_text_preset(preset: str, variant: str = "theory", seed: int = 0) -> TextRunConfig:
    """text-cpu: ≤ 10 minutes on 2 CPU cores (README); text-gpu: sized on paper for one GPU."""
    if preset == "text-cpu":
        text = TextConfig(rank=64, max_vocab=256)
        model = dict(context=32, d_model=64, n_heads=4, n_layers=2)
        train_kw = dict(steps=4000, batch_size=64, n_checkpoints=13, first_checkpoint=30, chunk=50)
        probe = ProbeConfig(n_eval=128, draws=16, sigmas_relative=(0.3, 0.5, 0.7, 1.0), sigmas_absolute=(0.05, 0.1),
                            hessian_probes=8, hessian_eval=64)
        ft = dict(steps=100, batch_size=32)
    elif preset == "text-gpu":
        text = TextConfig(rank=128, max_vocab=512)
        model = dict(context=256, d_model=256, n_heads=8, n_layers=4)
        train_kw = dict(steps=30000, batch_size=128, n_checkpoints=25, first_checkpoint=30, chunk=250)
        probe = ProbeConfig(n_eval=1024, draws=32, sigmas_relative=(0.3, 0.5, 0.7, 1.0),
                            sigmas_absolute=(0.03, 0.05, 0.07, 0.1), hessian_probes=16, hessian_eval=128, map_batch=1)
        ft = dict(steps=200, batch_size=128)
    else:
        raise ValueError(f"unknown text preset {preset!r} (choose from {', '.join(TEXT_PRESETS)})")
    model_v, train_v, rates = _variant(variant, train_kw["steps"])
    return TextRunConfig(preset=preset, variant=variant, seed=seed, text=text,
                         model=GPTConfig(**{"vocab_size": 2, **model, **model_v}),
                         train=TrainConfig(**{**train_kw, **train_v}), probe=probe,
                         finetune=FinetuneConfig(rates=rates or TEXT_FT_RATES, seeds=1, **ft))


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class TextData:
    pre: object  # text.Corpus
    ft: object | None
    vocab: list | None  # characters (char tokens) or None (bytes)
    info: dict  # summaries for result.json


def prepare(cfg: TextRunConfig) -> tuple[TextRunConfig, TextData]:
    """Read and tokenise the texts; the configuration with the data's fingerprint and vocabulary size.

    ValueError (one line) for a missing, empty, binary or too small text, or a vocabulary larger than
    max_vocab."""
    tc, ctx = cfg.text, cfg.model.context
    src = load_source(tc.source)
    pre, vocab = tokenise(src, tc.tokens, tc.held_out, ctx, what=src.origin)
    v = vocab_size(vocab)
    if v > tc.max_vocab:
        fix = "raise --max-vocab" + (" (or use --tokens byte: 256 ids)" if tc.tokens == "char" and v > 256 else "")
        raise ValueError(f"the training split of {src.origin} has a vocabulary of {v} tokens ({tc.tokens} level, "
                         f"<unk> included), more than the model holds (--max-vocab {tc.max_vocab}): {fix}")
    info = {"pretrain": summary(src, pre), "tokens": tc.tokens, "vocab_size": v,
            "vocab": vocab, "unk_id": 0 if vocab is not None else None}
    ft = None
    if tc.finetune_source is not None:
        fsrc = load_source(tc.finetune_source, finetune=tc.finetune_source == EMBEDDED)
        ft, _ = tokenise(fsrc, tc.tokens, tc.held_out, ctx, vocab=vocab, what=fsrc.origin)
        info["finetune"] = summary(fsrc, ft)
        if vocab is not None:
            info["finetune"]["unk_fraction"] = float(np.mean(ft.train == 0))
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, vocab_size=v),
                              text=dataclasses.replace(tc, sha256=pre.sha256, vocab_size=v,
                                                       finetune_sha256=ft.sha256 if ft is not None else None))
    return cfg, TextData(pre, ft, vocab, info)


# ---------------------------------------------------------------- probes


def evaluate_text(params, cfg: GPTConfig, tokens, tables=None):
    """(loss, loss, M): held-out cross-entropy over every position of `tokens` (N, T+1), twice (in the
    slots of probes.evaluate's excess loss and loss), and the first-order map (text_spectrum)."""
    logp = jax.nn.log_softmax(forward(params, cfg, tokens[:, :-1]), axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1).mean()
    return ce, ce, first_order_map(params, cfg)


evaluate_text_jit = jax.jit(evaluate_text, static_argnums=1)


def run_text_experiment(cfg: TextRunConfig, folder, progress: bool = True, stop_after: int | None = None,
                        data: TextData | None = None) -> dict | None:
    """Run (or resume) the text protocol in `folder` (as run.run_experiment); returns the result dict."""
    if data is None:
        cfg, data = prepare(cfg)
    folder, finished = open_run(folder, cfg, stop_after)
    if finished is not None:
        return finished
    t_start = time.perf_counter()
    m, pc, tc = cfg.model, cfg.probe, cfg.text
    spec = empirical_spectrum(data.pre.train, m.vocab_size, tc.rank, tc.smoothing)
    key = jax.random.key(cfg.seed)
    steps = checkpoint_steps(cfg.train.steps, cfg.train.n_checkpoints, cfg.train.first_checkpoint)
    tables = text_tables(data.pre.train)
    log = pretrain(cfg, tables, folder, progress, stop_after, sampler=sample_windows)
    if log["steps"] != steps:
        return None
    t_train = time.perf_counter() - t_start

    # ---- probes at every checkpoint, on the held-out split of the pre-training text
    tokens = jnp.asarray(data.pre.eval_windows(m.context + 1, pc.n_eval))
    noise_key, hess_key = jax.random.fold_in(key, 2), jax.random.fold_in(key, 6)
    sigmas = {"relative": list(pc.sigmas_relative), "absolute": list(pc.sigmas_absolute)}
    noise_fn = make_noise_sweep(m, pc.draws, pc.map_batch, evaluate_text)
    hess_fn = make_hessian_trace(m, pc.hessian_probes, evaluate_text) if pc.hessian_probes else None
    probes, params_all, t_probe = probe_all(
        folder, steps, m, cfg.train, progress,
        lambda params: probe_checkpoint(params, m, spec, None, tokens, noise_key, sigmas, noise_fn, hess_fn,
                                        tokens[: pc.hessian_eval], hess_key, evaluator_jit=evaluate_text_jit))

    # ---- fine-tuning of every checkpoint on the second text
    t0 = time.perf_counter()
    ft = None
    if data.ft is not None:
        ft_path = folder / "finetune.json"
        if not ft_path.exists():
            ft = _finetune_all(cfg, data, params_all, tokens, key, progress)
            atomic_write_json(ft_path, jsonable(ft))  # a diverged fine-tuning (non-finite loss) is null
        ft = json.loads(ft_path.read_text())
    t_ft = time.perf_counter() - t0

    result = assemble_text(cfg, data, spec, steps, log["train_loss"], probes, ft)
    return finish_run(folder, result, cfg, params_all[0], log, (t_start, t_train, t_probe, t_ft))


def _finetune_all(cfg, data, params_all, tokens, key, progress) -> dict:
    """Fine-tune every checkpoint at every rate on the second text (the same batches each time); losses are the
    mean over cfg.finetune.seeds batch orders (text presets: 1)."""
    m = cfg.model
    tokens_b = jnp.asarray(data.ft.eval_windows(m.context + 1, cfg.probe.n_eval))
    tables_b = text_tables(data.ft.train)
    ft_fn = make_finetune(m, cfg.finetune.steps, cfg.finetune.batch_size, cfg.train.optimizer, cfg.train.momentum,
                          sampler=sample_windows, evaluator=evaluate_text)
    ft_key, rates = jax.random.fold_in(key, 5), cfg.finetune.rates
    ft_keys = jax.vmap(lambda j: jax.random.fold_in(ft_key, j))(jnp.arange(cfg.finetune.seeds))
    out = {k: [[None] * len(params_all) for _ in rates] for k in ("pretrain_loss", "finetune_loss")}
    bar = _bar(len(params_all) * len(rates), f"fine-tune ({cfg.finetune.steps} steps)", progress)
    for c, params in enumerate(params_all):
        for r, rate in enumerate(rates):
            res = ft_fn(params, jnp.float32(rate), ft_keys, tokens, tokens_b, None, tables_b)
            for k in out:  # a diverged seed makes the mean non-finite: null in finetune.json
                out[k][r][c] = float(np.mean(np.asarray(res[k], np.float64)))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    out["before_finetune_loss"] = [float(evaluate_text_jit(p, m, tokens_b)[0]) for p in params_all]
    return out


def assemble_text(cfg: TextRunConfig, data: TextData, spec, steps, train_loss, probes, ft) -> dict:
    """The result dict (plain lists, checkpoint index last), keyed like run.assemble's where the meaning is
    the same; `loss` is the held-out cross-entropy and there is no `excess_loss`."""
    noise = noise_table(probes, cfg.probe, "loss")
    tc, v = cfg.text, cfg.model.vocab_size
    held = list(data.pre.held)
    text = {**data.info, "held_out_fraction": tc.held_out, "smoothing": tc.smoothing,
            "bigram_loss": bigram_loss(data.pre.train, held, v, tc.smoothing),
            "unigram_loss": unigram_loss(data.pre.train, held, v, tc.smoothing)}
    result = {
        "schema": SCHEMA, "schema_version": SCHEMA_VERSION, "version": __version__,
        "preset": cfg.preset, "variant": cfg.variant, "config": cfg.to_dict(),
        "units": {
            "steps": "pre-training optimiser steps",
            "loss": "the model's cross-entropy on the held-out windows of the pre-training text, every position, "
                    "nats/token",
            "no_exact_kl": NO_KL,
            "train_loss": "mean sampled cross-entropy over the steps since the previous checkpoint",
            "target_strengths": "s_k = σ_k(L)/V, L the centred add-k log P̂(next | current) of the training split",
            "mode_strengths": "a_k = u_kᵀ M v_k / V, M the centred logits of the length-1 contexts (row i: context [i])",
            "noise": "relative: std σ·RMS(W) per matrix at that checkpoint; absolute: std σ",
            "delta_loss": "mean over draws of perturbed − clean held-out loss (same draws at every checkpoint)",
            "logit_rms": "RMS of the logits over the held-out positions and the vocabulary (nats)",
            "logsumexp_mean": "mean over held-out positions of logsumexp of the logits (what --z-loss penalises)",
            "noise_floor": "‖M_noisy − M‖₂ / V, mean over draws, mode-strength units",
            "hessian_trace": "Hutchinson estimate of tr(H) of the held-out loss over the matrices; "
                             "relative: Σ_W RMS(W)² tr(H_WW)",
            "finetune": "held-out loss on the pre-training text (out of domain) and on the fine-tuning text (in "
                        "domain) after fine-tuning, [rate][checkpoint] (mean over fine-tuning seeds); null where "
                        "the fine-tuning diverged, each such (rate, step) listed in finetune.diverged",
        },
        "text": text,
        "steps": steps,
        "loss": [p["loss"] for p in probes],
        "train_loss": train_loss,
        "target_strengths": spec.s.tolist(),
        "spectrum_all": spec.sigma_all.tolist(),
        **probe_series(probes),
        "noise": noise,
        "finetune": None,
    }
    if ft is not None:
        result["finetune"] = {
            "rates": list(cfg.finetune.rates), "steps": cfg.finetune.steps, "seeds": cfg.finetune.seeds,
            "optimizer": "sgd (momentum %g)" % cfg.train.momentum if cfg.train.optimizer == "sgd" else "adam",
            **ft}
        result["finetune"]["diverged"] = diverged_points(result["finetune"], steps)
    return result
