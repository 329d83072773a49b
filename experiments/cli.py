"""`linear-theory transformer` and `linear-theory compare`: the toy-transformer check."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from linear_theory import cli
from linear_theory.output import format_table, wrap

UNITS = (
    "Units: steps are pre-training optimiser steps; losses are nats per token, scored exactly on a fixed "
    "held-out set (loss = expected cross-entropy, excess loss = KL(chain ‖ model), whose floor is the entropy "
    "rate); mode strengths a_k = u_kᵀ M v_k / V on the language's fixed singular pairs, M the model's centred "
    "logit map, target s_k with L = V·U diag(s) Vᵀ; noise σ is the std of the Gaussian added to every matrix "
    "(absolute) or its multiple of that matrix's RMS (relative); biases and LayerNorm parameters are not perturbed."
)


def add_commands(sub):
    p = sub.add_parser(
        "transformer",
        help="train a toy transformer on a Markov language with a known spectrum and probe every checkpoint",
        description="Run the whole transformer protocol: pre-train on a first-order Markov chain whose centred "
        "next-token logits have chosen singular values, save log-spaced checkpoints under DIR (an interrupted run "
        "resumes from its last checkpoint), then measure at each checkpoint the exact loss, the learned mode "
        "strengths, the loss under Gaussian weight noise (same draws at every checkpoint), the noise floor of the "
        "logit map, a Hessian-trace estimate, and the losses on both chains after fine-tuning on a second chain. "
        "Writes DIR/result.json (the printed JSON object). " + UNITS,
    )
    p.add_argument("--preset", choices=("ci", "default", "gpu", "text-cpu", "text-gpu"), default=None,
                   help="ci: 30-60 s on 2 shared CPU cores; default: 10-17 minutes per seed on 2 shared CPU cores "
                        "(measured; fine-tuning 3 rates x 3 seeds takes about as long as training); gpu: sized for "
                        "one GPU; text-cpu, text-gpu: real text, see below (default: default, or text-cpu with --text)")
    p.add_argument("--variant", choices=("theory", "realistic"), default="theory",
                   help="theory: no LayerNorm, init std 0.02, SGD momentum 0.9; realistic: pre-LayerNorm, AdamW "
                        "with weight decay 0.1 (default theory)")
    p.add_argument("--out", dest="out_dir", metavar="DIR", required=True,
                   help="run folder: checkpoints, probe caches and result.json go here")
    p.add_argument("--seed", type=cli.nonneg_int, default=0,
                   help="seed of the init, the data order, the noise draws and the held-out sets (default 0)")
    p.add_argument("--seeds", type=seed_list, metavar="N1,N2,...",
                   help="run (or resume) one run per seed, each in DIR/seed-N (replaces --seed); "
                        "`compare DIR` then aggregates them")
    lg = p.add_argument_group("language (the pre-training chain and the fine-tuning change; the model's vocabulary "
                              "follows --vocab)")
    lg.add_argument("--vocab", type=cli.pos_int, help="tokens V of both chains (≥ 2)")
    lg.add_argument("--rank", type=cli.pos_int, help="modes r of the pre-training chain (1 ≤ r ≤ V − 1); with "
                                                      "--text: the target modes kept (text-cpu 64, text-gpu 128)")
    lg.add_argument("--s1", type=cli.positive, help="strength of the first mode, logit units per entry (≤ 1 keeps "
                                                    "the softmax near-linear)")
    lg.add_argument("--alpha", type=cli.nonneg, help="power-law exponent: s_k = s1·k^−alpha")
    lg.add_argument("--ft-kind", choices=("rank", "rotate"),
                    help="fine-tuning chain: rank = L plus a rank-k change along fresh directions; "
                         "rotate = the top k output vectors turned by --ft-angle")
    lg.add_argument("--ft-rank", type=cli.pos_int, help="k, the modes the fine-tuning change touches")
    lg.add_argument("--ft-strength", type=cli.positive,
                    help="strength of each added mode (kind rank), mode-strength units; independent of --s1")
    lg.add_argument("--ft-angle", type=cli.finite, help="rotation angle in radians (kind rotate)")
    g = p.add_argument_group("overrides of the preset")
    g.add_argument("--steps", type=cli.pos_int, help="pre-training steps")
    g.add_argument("--lr", type=cli.positive, help="peak pre-training learning rate")
    g.add_argument("--schedule", choices=("constant", "cosine", "wsd"), help="learning-rate schedule")
    g.add_argument("--warmup-steps", type=cli.nonneg_int, help="linear warmup steps")
    g.add_argument("--optimizer", choices=("sgd", "adamw"), help="pre-training optimiser: sgd (heavy-ball "
                   "momentum, --momentum) or adamw (theory variant: sgd; realistic: adamw)")
    g.add_argument("--momentum", type=cli.nonneg, help="sgd momentum β in [0, 1)")
    g.add_argument("--weight-decay", type=cli.nonneg,
                   help="weight decay λ on the matrices (biases and norms exempt): decoupled for adamw "
                        "(W ← W − η λ W), the ℓ2 gradient λW for sgd; 1/(step × lr) units")
    g.add_argument("--sam-rho", type=cli.nonneg,
                   help="sharpness-aware minimisation around the optimiser (optax.contrib.sam): each step "
                        "takes the gradient at W + ρ g/‖g‖ (‖g‖ over all parameters); ρ in weight units (0: off)")
    g.add_argument("--z-loss", type=cli.nonneg,
                   help="add z · mean(logsumexp(logits)²) to the training loss, a penalty on logit growth (0: "
                        "off); the probes score the plain loss, and every checkpoint records the logits' RMS "
                        "and mean logsumexp")
    g.add_argument("--checkpoints", type=cli.pos_int, metavar="N",
                   help="number of checkpoints (step 0, then log-spaced to the last step)")
    g.add_argument("--sigmas-relative", type=cli.float_list, metavar="G1,G2,...",
                   help="relative noise scales γ: std = γ × RMS of each matrix (dimensionless)")
    g.add_argument("--sigmas-absolute", type=cli.float_list, metavar="S1,S2,...",
                   help="absolute noise std σ per matrix entry")
    g.add_argument("--draws", type=cli.pos_int, help="noise draws per σ (at least 2)")
    g.add_argument("--ft-rates", type=ft_rates, metavar="R1,R2,...|auto",
                   help="fine-tuning learning rates, or auto: three rates inside the linear theory's U window in "
                        "K·η (SGD only; the theory variant's default), computed and printed for the run")
    g.add_argument("--ft-seeds", type=cli.pos_int,
                   help="fine-tunings per checkpoint and rate (batch orders; default 3, real text 1)")
    g.add_argument("--ft-steps", type=cli.pos_int, help="fine-tuning steps per checkpoint and rate")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of a table")
    cli.add_cache_arg(p)
    from .text_cli import add_text_args

    add_text_args(p)
    p.set_defaults(run=run_transformer)

    c = sub.add_parser(
        "compare",
        help="compare transformer runs (one, or every seed in a folder) with the linear theory: statistic, "
             "interval, criterion, verdict",
        description="Read RUN_DIR/result.json, or every RUN_DIR/seed-N/result.json (from `linear-theory transformer "
        "--seeds`), and for each prediction report a statistic per seed, its mean with a 95% t-interval across "
        "seeds (one seed: the run's own standard error over noise draws or fine-tuning seeds, paired across "
        "checkpoints), the criterion and a verdict: held = the interval lies inside the criterion, failed = wholly "
        "outside, inconclusive = it straddles it. Expected values come from the linear theory for the run "
        "(its spectrum, measured initial strength a0, rate η̃ = lr/(1−β)/V, the noise kind and the measured matrix "
        "RMS): 1 modes learned in order of decreasing s (ρ ≤ −0.7); 2 slope of log(step to θ·s_k) vs log(1/s_k) "
        "within ±20% of the theory's exact-GD slope, at θ = 0.1, 0.25, 0.5, 0.75; 3 Δloss under noise grows (> 0.002 "
        "nats) and tracks ½σ²·tr H (ρ ≥ 0.7); 4 the perturbed loss turns up (paired rise to the end > 0.002 nats) "
        "exactly at the σ where the theory's does; 5 the step of the (refined) turn scales as σ^x with x within "
        "±20% of the theory's x for that noise kind (relative: with the measured RMS, init included; the "
        "small-init and init-norm theory values are shown); 6 at fine-tuning rates where the theory (K·η̃ in its U "
        "window) has a U, the pre-training chain's loss after fine-tuning rises > 0.002 nats from its refined "
        "minimum to the last checkpoint; 6d the same for the fine-tuning chain's own loss. Minima are refined "
        "between checkpoints (parabola in log-step). Writes RUN_DIR/compare.json and the figure "
        "RUN_DIR/compare.png and .pdf (the first seed's curves, the verdicts of all). " + UNITS,
    )
    c.add_argument("run_dir", metavar="RUN_DIR", help="folder of a transformer run, or of its seed-N runs")
    c.add_argument("--no-figure", action="store_true", help="skip the figure")
    c.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of a table")
    c.set_defaults(run=run_compare)
    from .study import add_commands as add_study

    add_study(sub)


def seed_list(text):
    seeds = [cli.nonneg_int(x) for x in text.split(",")]
    if len(set(seeds)) != len(seeds):
        raise argparse.ArgumentTypeError(f"repeated seed in {text!r}")
    return seeds


def ft_rates(text):
    if text.strip() == "auto":
        return []
    rates = cli.float_list(text)
    if any(not (math.isfinite(r) and r > 0) for r in rates):
        raise argparse.ArgumentTypeError(f"fine-tuning rates must be positive and finite, got {text!r}")
    return rates


LANGUAGE_ARGS = ("vocab", "rank", "s1", "alpha", "ft_kind", "ft_rank", "ft_strength", "ft_angle")


def config_from_args(args, seed=None):
    from .presets import get_preset

    cfg = get_preset(args.preset, args.variant, seed=args.seed if seed is None else seed)
    lang = {k: getattr(args, k) for k in LANGUAGE_ARGS if getattr(args, k, None) is not None}
    if lang and not args.preset.startswith("text-"):  # real text: --rank is the text's (text_cli.text_config)
        cfg = cfg.with_language(**lang)
    tr, pr, ft = {}, {}, {}
    for name, key in (("steps", "steps"), ("lr", "lr"), ("schedule", "schedule"), ("warmup_steps", "warmup_steps"),
                      ("checkpoints", "n_checkpoints"), ("optimizer", "optimizer"), ("momentum", "momentum"),
                      ("weight_decay", "weight_decay"), ("sam_rho", "sam_rho"), ("z_loss", "z_loss")):
        if getattr(args, name) is not None:
            tr[key] = getattr(args, name)
    for name in ("sigmas_relative", "sigmas_absolute"):
        if getattr(args, name) is not None:
            pr[name] = tuple(getattr(args, name))
    if args.draws is not None:
        pr["draws"] = args.draws
    if args.ft_rates is not None:
        ft["rates"] = tuple(args.ft_rates)
    if args.ft_steps is not None:
        ft["steps"] = args.ft_steps
    if args.ft_seeds is not None:
        ft["seeds"] = args.ft_seeds
    if args.checkpoints is not None and args.checkpoints < 2:
        raise ValueError("--checkpoints must be at least 2")
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **tr),
                               probe=dataclasses.replace(cfg.probe, **pr),
                               finetune=dataclasses.replace(cfg.finetune, **ft))


def run_transformer(args):
    from .run import run_experiment
    from .text_cli import resolve_preset, run_text_transformer

    if resolve_preset(args):  # real text (--text or a text preset): single-seed, text_cli.py
        return run_text_transformer(args, config_from_args(args))
    if args.seeds is not None:
        return run_seeds(args)
    cfg = config_from_args(args)
    result = run_experiment(cfg, args.out_dir, progress=not args.no_progress)
    # result.json is already the envelope (schema transformer-run, config); a diverged run is reported
    # by its losses, not refused, since its checkpoints are on disk.
    cli.emit(args, result, transformer_table(result), check_finite=False)


def run_seeds(args):
    """One run per seed in DIR/seed-N (each resumes on its own); prints one summary object."""
    from linear_theory.output import envelope

    from .run import run_experiment

    cfgs = [config_from_args(args, seed) for seed in args.seeds]  # every configuration checked before any run
    runs, tables = [], []
    for seed, cfg in zip(args.seeds, cfgs):
        folder = Path(args.out_dir) / f"seed-{seed}"
        r = run_experiment(cfg, folder, progress=not args.no_progress)
        runs.append({"seed": seed, "run_dir": str(folder), "final_excess_loss": r["excess_loss"][-1],
                     "timing": r["timing"]})
        tables.append(f"seed {seed} ({folder}):\n" + transformer_table(r))
    payload = envelope("transformer-seeds", cfgs[0].to_dict() | {"seeds": list(args.seeds)},
                       {"out_dir": args.out_dir, "runs": runs})
    cli.emit(args, payload, "\n\n".join(tables) + f"\n\ncompare all seeds: linear-theory compare {args.out_dir}",
             check_finite=False)


def transformer_table(r) -> str:
    nz = r["noise"]
    cols = [(f"Δ{k[0]}{s:g}", nz["delta_loss"][i]) for i, (k, s) in enumerate(zip(nz["kind"], nz["sigmas"]))]
    ft = r["finetune"]
    cols += [(f"ftA@{rate:.3g}", ft["pretrain_excess"][j]) for j, rate in enumerate(ft["rates"])]
    s = np.asarray(r["target_strengths"])
    a = np.asarray(r["mode_strengths"])
    learned = (a >= s / 2).sum(1)
    headers = ["step", "loss", "excess", "Σa", "learned"] + [c[0] for c in cols]
    rows = [[st, r["loss"][i], r["excess_loss"][i], float(a[i].sum()), int(learned[i])] + [c[1][i] for c in cols]
            for i, st in enumerate(r["steps"])]
    head = (f"{r['preset']}/{r['variant']}: {r['params']} parameters; entropy rate {r['entropy_rate']:.4f} nats "
            f"(held-out floor {r['loss_floor_eval']:.4f}); Σs = {s.sum():.3f} over {s.size} modes; "
            f"{r['timing']['total_s']:.0f} s")
    th = (r.get("theory") or {}).get("finetune") or {}
    if th.get("window"):
        head += (f"; the linear theory's fine-tuning U window: K·η̃ ∈ [{th['window'][0]:.3g}, {th['window'][1]:.3g}] "
                 f"(η̃ = rate/(1 − β)/V, K = {th['k_steps']}), {th['note']}")
    notes = ("step: pre-training optimiser steps; loss: exact cross-entropy (nats/token); excess = exact KL "
             "(nats/token); Σa = sum of mode strengths; learned = modes with a_k ≥ s_k/2; Δr/Δa = Δloss "
             "(nats/token) under relative/absolute noise of that σ; ftA@rate = excess loss on the pre-training "
             "chain after fine-tuning at that rate (nats/token)")
    return wrap(head, 100) + "\n" + format_table(headers, rows) + "\n\n" + wrap(notes, 100)


def load_runs(folder: Path) -> list[dict]:
    """The result of the run in `folder`, or of every DIR/seed-N run in it (by seed)."""
    paths = [folder / "result.json"] if (folder / "result.json").is_file() else sorted(
        folder.glob("seed-*/result.json"), key=lambda p: int(p.parent.name[5:]) if p.parent.name[5:].isdigit() else -1)
    if not paths:
        raise ValueError(f"{folder} holds no result.json (nor seed-N/result.json): run `linear-theory transformer "
                         f"--out {folder}` first")
    runs = []
    for path in paths:
        try:
            runs.append(json.loads(path.read_text()) | {"_dir": str(path.parent)})
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON: {e}") from None
    return runs


def run_compare(args):
    from linear_theory.output import atomic_write_json, envelope, jsonable

    from .compare import compare, format_comparison

    folder = Path(args.run_dir)
    runs = load_runs(folder)
    result = runs[0]
    text = result.get("schema") == "linear-theory/transformer-text-run/1"  # real text: its own predictions
    if text:
        from .text_compare import compare_runs as compare, format_text_comparison as format_comparison
    cmp = compare(runs)
    payload = jsonable(envelope("compare", {"run_dir": str(folder), "run_config": result.get("config"),
                                            "seed_dirs": [r["_dir"] for r in runs]}, cmp))
    if not args.no_figure:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from linear_theory.output import atomic_savefig

        from .figure import transformer_figure

        if text:
            from .text_compare import text_figure as transformer_figure
        fig, _ = transformer_figure(result, cmp)
        payload["figures"] = [str(atomic_savefig(fig, folder / f"compare.{ext}", dpi=120)) for ext in ("png", "pdf")]
        plt.close(fig)
    atomic_write_json(folder / "compare.json", payload)
    # nan statistics (e.g. a rank correlation of a constant) mean "not computable" and make a verdict
    # inconclusive; they are written as null.
    cli.emit(args, payload, format_comparison(cmp), check_finite=False)
