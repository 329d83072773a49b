"""The whole protocol: build the chains, pre-train, probe every checkpoint, fine-tune, report.

Folder layout (every file written atomically):
    DIR/config.json                 the RunConfig; a different one in DIR is an error
    DIR/checkpoints/step_*.npz      parameters + optimiser state at each checkpoint
    DIR/probes/step_*.json          the probes of each checkpoint (cached, so resume skips them)
    DIR/theory.json                 the linear theory's parameters for this run and its fine-tuning window
    DIR/finetune.json               fine-tuning of all checkpoints
    DIR/result.json                 the result (what `linear-theory transformer --json` prints)
Keys: fold_in(key(seed), i) with i = 0 init, 1 data, 2 noise, 3 and 4 held-out sets of the
pre-training and fine-tuning chains, 5 fine-tuning batches, 6 Hessian probes.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from linear_theory import __version__
from linear_theory.output import SCHEMA_VERSION, atomic_write_json, jsonable

from .finetune import make_finetune
from .language import finetune_language, make_language
from .model import count_params
from .presets import RunConfig
from .probes import eval_tokens, evaluate_jit, make_hessian_trace, make_noise_sweep, probe_checkpoint
from .theory import theory_record
from .train import checkpoint_path, checkpoint_steps, load_params, train

SCHEMA = "linear-theory/transformer-run/1"
FT_KEYS = ("pretrain_excess", "pretrain_loss", "finetune_excess", "finetune_loss")
PERTURBED = ("every matrix (token and position embeddings, attention QKV and output, MLP in and out, "
             "unembedding); biases and LayerNorm parameters are not perturbed")


def languages(cfg: RunConfig):
    lc = cfg.language
    lang = make_language(lc.vocab, lc.rank, lc.s1, lc.alpha, seed=lc.seed)
    second = finetune_language(lang, lc.ft_kind, lc.ft_rank, lc.ft_strength, lc.ft_angle, seed=lc.seed + 1)
    return lang, second


def _check_config(folder: Path, cfg: RunConfig):
    path = folder / "config.json"
    wanted = json.loads(json.dumps(cfg.to_dict()))
    if path.exists():
        held = json.loads(path.read_text())
        if held != wanted:
            diffs = _differences(held, wanted)
            shown = "; ".join(f"{k}: {a!r} there, {b!r} asked" for k, a, b in diffs[:3])
            more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
            raise ValueError(f"{folder} holds a run with a different configuration ({shown}{more}); "
                             "choose another --out")
    else:
        atomic_write_json(path, wanted)


def _differences(a, b, prefix=""):
    """[(dotted key, value in a, value in b)] where two JSON-like configurations differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}" if not prefix else f"{prefix}.{k}")
        return out
    return [] if a == b else [(prefix or "(top)", a, b)]


def _bar(total, desc, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True)


def open_run(folder, cfg, stop_after=None):
    """(folder as a Path, the finished result or None): make the run folder, refuse a different
    configuration there; a finished run's result (and its original timing) stands, nothing is
    recomputed (unless stop_after asks for a partial run)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _check_config(folder, cfg)
    done = folder / "result.json"
    if done.exists() and stop_after is None:
        sys.stderr.write(f"{folder} holds a finished run of this configuration: reporting its result.json "
                         "(timing of the original run)\n")
        return folder, json.loads(done.read_text())
    return folder, None


def run_experiment(cfg: RunConfig, folder, progress: bool = True, stop_after: int | None = None) -> dict:
    """Run (or resume) the protocol in `folder` and return the result dict (also DIR/result.json).

    stop_after: stop pre-training once that step's checkpoint is saved and return None
    (to test that resuming gives the unbroken result).
    """
    folder, finished = open_run(folder, cfg, stop_after)
    if finished is not None:
        return finished
    t_start = time.perf_counter()
    lang, second = languages(cfg)
    tables, tables_b = lang.tables(), second.tables()
    key = jax.random.key(cfg.seed)
    m, pc = cfg.model, cfg.probe

    steps = checkpoint_steps(cfg.train.steps, cfg.train.n_checkpoints, cfg.train.first_checkpoint)
    on_disk = []  # the prefix of the schedule on disk: training resumes at its end
    for st in steps:
        if not checkpoint_path(folder / "checkpoints", st).exists():
            break
        on_disk.append(st)
    if len(on_disk) > 1:
        cached = sum((folder / "probes" / f"step_{st:08d}.json").exists() for st in steps)
        sys.stderr.write(f"resuming {folder}: {len(on_disk)} of {len(steps)} checkpoints on disk, training from step "
                         f"{on_disk[-1]} of {cfg.train.steps}; {cached} checkpoints already probed\n")
    log = pretrain(cfg, tables, folder, progress, stop_after)
    if log["steps"] != steps:
        return None
    t_train = time.perf_counter() - t_start

    # ---- probes at every checkpoint
    tokens = eval_tokens(jax.random.fold_in(key, 3), tables, pc.n_eval, m.context)
    tokens_b = eval_tokens(jax.random.fold_in(key, 4), tables_b, pc.n_eval, m.context)
    noise_key, hess_key = jax.random.fold_in(key, 2), jax.random.fold_in(key, 6)
    sigmas = {"relative": list(pc.sigmas_relative), "absolute": list(pc.sigmas_absolute)}
    noise_fn = make_noise_sweep(m, pc.draws, pc.map_batch)
    hess_fn = make_hessian_trace(m, pc.hessian_probes) if pc.hessian_probes else None
    hess_tokens = tokens[: pc.hessian_eval]
    probes, params_all, t_probe = probe_all(
        folder, steps, m, cfg.train, progress,
        lambda params: probe_checkpoint(params, m, lang, tables, tokens, noise_key, sigmas, noise_fn, hess_fn,
                                        hess_tokens, hess_key))

    # ---- the linear theory for this run: its rates, init and fine-tuning window (experiments/theory.py)
    theory_path = folder / "theory.json"
    if theory_path.exists():
        theory = json.loads(theory_path.read_text())
    else:
        init = params_all[0]
        theory = theory_record(cfg.to_dict(), steps, probes[0]["mode_strengths"],
                               [float(jnp.sum(init[k] ** 2)) for k in ("wte", "lm_head")])
        theory = jsonable(theory)  # a diverged fine-tuning in the theory (inf) is written as null
        atomic_write_json(theory_path, theory)
    rates = tuple(cfg.finetune.rates) or tuple(theory["finetune"]["rates"])

    # ---- fine-tuning of every checkpoint on the second chain, `seeds` batch orders side by side
    t0 = time.perf_counter()
    ft_path = folder / "finetune.json"
    if ft_path.exists():
        ft = json.loads(ft_path.read_text())
    else:
        ft_fn = make_finetune(m, cfg.finetune.steps, cfg.finetune.batch_size, cfg.train.optimizer, cfg.train.momentum)
        ft_key = jax.random.fold_in(key, 5)
        ft_keys = jax.vmap(lambda j: jax.random.fold_in(ft_key, j))(jnp.arange(cfg.finetune.seeds))
        ft = {k: [[None] * len(steps) for _ in rates] for k in FT_KEYS + tuple(f"{k}_seeds" for k in FT_KEYS)}
        bar = _bar(len(steps) * len(rates), f"fine-tune ({cfg.finetune.steps} steps × {cfg.finetune.seeds} seeds)",
                   progress)
        for c, params in enumerate(params_all):
            for r, rate in enumerate(rates):
                out = ft_fn(params, jnp.float32(rate), ft_keys, tokens, tokens_b, tables, tables_b)
                for k in FT_KEYS:
                    values = np.asarray(out[k], np.float64)
                    ft[f"{k}_seeds"][r][c] = values.tolist()
                    ft[k][r][c] = float(values.mean())
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
        ft["rates"] = list(rates)
        ft["before_finetune_excess"] = [float(evaluate_jit(p, m, tokens_b, tables_b)[0]) for p in params_all]
        atomic_write_json(ft_path, ft)
        ft = json.loads(ft_path.read_text())
    t_ft = time.perf_counter() - t0

    result = assemble(cfg, lang, second, steps, log["train_loss"], probes, ft, tokens)
    result["theory"] = theory
    return finish_run(folder, result, cfg, params_all[0], log, (t_start, t_train, t_probe, t_ft))


def finish_run(folder, result: dict, cfg, params, log: dict, times) -> dict:
    """Add the parameter count and the timing (times = start, train, probe and fine-tuning seconds),
    write DIR/result.json atomically, warn of diverged fine-tuning; the result as written."""
    t_start, t_train, t_probe, t_ft = times
    tokens_trained = (cfg.train.steps - (log["resumed_from"] or 0)) * cfg.train.batch_size * cfg.model.context
    result["params"] = count_params(params)
    result["timing"] = {"train_s": t_train, "train_tokens_per_s": tokens_trained / t_train, "probe_s": t_probe,
                        "finetune_s": t_ft, "total_s": time.perf_counter() - t_start,
                        "resumed_from": log["resumed_from"], "device": str(jax.devices()[0])}
    result = jsonable(result)
    atomic_write_json(folder / "result.json", result)
    warn_diverged(result)
    return result


def pretrain(cfg, tables, folder, progress, stop_after, sampler=None) -> dict:
    """Pre-train (or resume) into DIR/checkpoints with a progress bar; the training log (`train`)."""
    bar = _bar(cfg.train.steps, f"train {cfg.preset}/{cfg.variant}", progress)
    try:
        return train(cfg.model, cfg.train, tables, cfg.seed, folder / "checkpoints", progress=bar,
                     stop_after=stop_after, sampler=sampler)
    finally:
        if bar is not None:
            bar.close()


def probe_all(folder, steps, model_cfg, train_cfg, progress, probe) -> tuple[list, list, float]:
    """Load every checkpoint and probe it, `probe(params) -> dict`, each result cached in
    DIR/probes/step_N.json (a resumed run reads it back): (probes, params per checkpoint, seconds)."""
    probes, params_all = [], []
    bar = _bar(len(steps), "probe", progress)
    t0 = time.perf_counter()
    for step in steps:
        params = load_params(checkpoint_path(folder / "checkpoints", step), model_cfg, train_cfg)
        params_all.append(params)
        cache = folder / "probes" / f"step_{step:08d}.json"
        if cache.exists():
            probes.append(json.loads(cache.read_text()))
        else:
            p = probe(params)
            atomic_write_json(cache, p)
            probes.append(json.loads(json.dumps(p)))  # exactly what a resumed run reads back
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return probes, params_all, time.perf_counter() - t0


SERIES = ("mode_strengths", "weight_sq_norm", "logit_rms", "logsumexp_mean", "hessian_trace",
          "hessian_trace_relative")


def probe_series(probes) -> dict:
    """The per-checkpoint probes shared by synthetic and text runs, as lists over checkpoints
    (None where a probe was not run, e.g. no Hessian probes)."""
    return {k: [p.get(k) for p in probes] for k in SERIES}


def noise_table(probes, probe_cfg, clean_key: str) -> dict:
    """The noise probes of every checkpoint as [σ row][checkpoint] lists (relative rows, then
    absolute); Δ = perturbed − clean per draw, clean = probes' `clean_key` (excess loss, or loss)."""
    n_draws = probe_cfg.draws
    noise = {"perturbed": PERTURBED, "draws": n_draws, "kind": [], "sigmas": [], "delta_loss": [],
             "delta_loss_se": [], "perturbed_loss": [], "perturbed_draws": [], "noise_floor": [],
             "modes_above_floor": []}
    clean = np.array([p[clean_key] for p in probes])
    for kind in ("relative", "absolute"):
        for j, sigma in enumerate(getattr(probe_cfg, f"sigmas_{kind}")):
            draws = np.array([p["noise"][kind][j]["perturbed_draws"] for p in probes])  # (C, D)
            delta = draws - clean[:, None]
            noise["kind"].append(kind)
            noise["sigmas"].append(float(sigma))
            noise["delta_loss"].append(delta.mean(1).tolist())
            noise["delta_loss_se"].append((delta.std(1, ddof=1) / np.sqrt(n_draws)).tolist())
            noise["perturbed_loss"].append(draws.mean(1).tolist())
            noise["perturbed_draws"].append(draws.tolist())
            noise["noise_floor"].append([p["noise"][kind][j]["noise_floor"] for p in probes])
            noise["modes_above_floor"].append([p["noise"][kind][j]["modes_above_floor"] for p in probes])
    return noise


def diverged_points(ft: dict, steps) -> list[dict]:
    """The (rate, checkpoint step) pairs whose fine-tuning diverged: a non-finite loss, written
    as null in the [rate][checkpoint] lists; named here so that no null goes unexplained."""
    out = []
    for r, rate in enumerate(ft["rates"]):
        for c, step in enumerate(steps):
            values = [ft[k][r][c] for k in FT_KEYS if k in ft]
            if any(v is None or not np.isfinite(v) for v in values):
                out.append({"rate": rate, "step": int(step)})
    return out


def warn_diverged(result: dict) -> None:
    """One line on stderr per rate whose fine-tuning diverged somewhere (null in result.json)."""
    by_rate = {}
    for d in (result.get("finetune") or {}).get("diverged", []):
        by_rate.setdefault(d["rate"], []).append(str(d["step"]))
    for rate, steps in by_rate.items():
        sys.stderr.write(f"warning: fine-tuning at rate {rate:g} diverged (non-finite loss) from the checkpoints of "
                         f"steps {', '.join(steps)}: null in result.json, left out of compare's verdicts\n")


def assemble(cfg: RunConfig, lang, second, steps, train_loss, probes, ft, tokens) -> dict:
    """The result dict from the per-checkpoint probes (plain lists, checkpoint index last)."""
    noise = noise_table(probes, cfg.probe, "excess_loss")
    eval_floor = float(np.mean(-np.sum(np.where(lang.transition > 0, lang.transition * np.log(lang.transition), 0),
                                       axis=1)[np.asarray(tokens[:, :-1])]))
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "version": __version__,
        "preset": cfg.preset,
        "variant": cfg.variant,
        "config": cfg.to_dict(),
        "units": {
            "steps": "pre-training optimiser steps",
            "loss": "exact expected cross-entropy of the next token on the held-out set, nats/token",
            "excess_loss": "exact KL(chain ‖ model) on the held-out set, nats/token (loss − its floor)",
            "train_loss": "mean sampled cross-entropy over the steps since the previous checkpoint",
            "mode_strengths": "a_k = u_kᵀ M v_k / V, M the centred logit map; targets s_k (L = V·U diag(s) Vᵀ)",
            "noise": "relative: std σ·RMS(W) per matrix at that checkpoint; absolute: std σ",
            "delta_loss": "mean over draws of perturbed − clean excess loss (same draws at every checkpoint)",
            "logit_rms": "RMS of the logits over the held-out positions and the vocabulary (nats)",
            "logsumexp_mean": "mean over held-out positions of logsumexp of the logits (what --z-loss penalises)",
            "noise_floor": "‖M_noisy − M‖₂ / V, mean over draws, mode-strength units",
            "hessian_trace": "Hutchinson estimate of tr(H) of the excess loss over the matrices; "
                             "relative: Σ_W RMS(W)² tr(H_WW)",
            "finetune": "excess loss and loss on each chain after fine-tuning, [rate][checkpoint] (mean over "
                        "fine-tuning seeds; *_seeds: [rate][checkpoint][seed]); null where the fine-tuning "
                        "diverged, each such (rate, step) listed in finetune.diverged",
            "matrix_rms": "RMS of each matrix at each checkpoint (tree path → list)",
            "theory": "the linear theory's parameters for this run (experiments/theory.py)",
        },
        "steps": steps,
        "loss": [p["loss"] for p in probes],
        "excess_loss": [p["excess_loss"] for p in probes],
        "loss_floor_eval": eval_floor,
        "train_loss": train_loss,
        "entropy_rate": lang.entropy_rate,
        "target_strengths": lang.s.tolist(),
        **probe_series(probes),
        "noise": noise,
        "matrix_rms": {name: [p["matrix_rms"][name] for p in probes] for name in probes[0].get("matrix_rms", {})},
        "finetune": {
            "steps": cfg.finetune.steps,
            "seeds": cfg.finetune.seeds,
            "optimizer": "sgd (momentum %g)" % cfg.train.momentum if cfg.train.optimizer == "sgd" else "adam",
            "chain": {"kind": cfg.language.ft_kind, "rank": cfg.language.ft_rank,
                      "entropy_rate": second.entropy_rate},
            **ft,
            "diverged": diverged_points(ft, steps),
        },
    }
