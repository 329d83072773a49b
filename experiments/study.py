"""`linear-theory study mitigations`: a fixed grid of mitigations of progressive sensitivity, each
run on the same preset, seeds and noise draws as the baseline, with verdicts and the linear
model's prediction beside each measurement.

The grid (overrides of the preset's TrainConfig, chosen from issue 10, not tuned on results):

    baseline      the preset as it is (theory variant: SGD, momentum 0.9, constant rate)
    weight-decay  SGD ℓ2 decay λ on every matrix at the linear theory's noise-optimal value for the
                  run's absolute noise (largest absolute σ of the preset): λ = σ²/V, derived below
    sam           SAM ρ = 0.05 around the preset's optimiser (the 2026 study's value)
    cosine        cosine decay of the rate to 0 over the run
    z-loss        z = 1e-3 (the common logit penalty)
    adamw         AdamW, lr 1e-3, decoupled decay 0.1, no warmup (the realistic optimiser), fine-tuned
                  with AdamW at the realistic variant's rates (1e-3, 3e-4): its forgetting is not
                  paired with the baseline's (another fine-tuning optimiser), and is reported only

Weight-decay mapping (experiments/theory.py's map, checked in tests/test_study.py). The direct
path's matrices are W1 = wteᵀ, W2 = lm_headᵀ, and the excess loss is ½‖W2W1/V − A‖² =
½‖W̃2W̃1 − A‖² with W̃ = W/√V (same loss units). SGD with the ℓ2 gradient λW steps
W ← W − η(∇_W L + λW); with ∇_W L = ∇_W̃ L/√V this is W̃ ← W̃ − (η/V)(∇_W̃ L + λV·W̃): a theory
step at rate η/V (η̃ = η/(1 − β)/V with momentum, which multiplies both terms alike) with the
theory decay λ̃ = λ·V. The linear theory's best single decay for absolute noise of std σ̃ on both
W̃ (whitened inputs, d_in = d_out = V) is λ̃* = s*/2 = (σ̃²V + σ̃²V)/2 = σ̃²V; absolute std σ on W is
σ̃ = σ/√V on W̃, so λ̃* = σ² and the transformer's λ* = λ̃*/V = σ²/V. Independently: the noise E1, E2
(std σ) on the direct path adds E‖W2E1 + E2W1‖²/(2V²) = (σ²/V)·(‖W1‖² + ‖W2‖²)/2 to the expected
loss, exactly the ℓ2 penalty (λ/2)‖W‖² at λ = σ²/V. The transformer's decay also acts on the
attention, MLP and position matrices, which are not in the linear model.

Verdicts (compare.py's machinery: turn_up's refined argmin and paired rise over the same noise
draws, intervals across seeds, the 0.002-nat floor MIN_EFFECT):

    turn of the perturbed loss (each noise kind and σ):
      disappears    the baseline's rise interval clears the floor, the mitigation's lies below it
      stays         both rise intervals clear the floor and the interval of log(step_m/step_b)
                    (paired by seed) lies within ±log(1 + MARGIN): the turn moves by less than 20%
      later/earlier both clear the floor, not "stays", and that interval lies above/below 0
      inconclusive  anything else (also: the baseline shows no turn, so nothing can disappear)
    forgetting (pre-training chain's excess loss after fine-tuning minus before, last checkpoint,
    largest fine-tuning rate), paired by seed against the baseline at the same rate:
      disappears    the baseline's interval clears the floor, the mitigation's lies below it
      less / more   the interval of the difference lies below −floor / above +floor
      same          the interval of the difference lies within ±floor
      inconclusive  otherwise
    clean-loss cost: final excess loss minus the baseline's, paired by seed, with its interval.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

from linear_theory import cli
from linear_theory.output import format_table, wrap

from .compare import LEVEL, MARGIN, MIN_EFFECT, fmt, interval, noise_rows, turn_up

SCHEMA_KIND = "study-mitigations"
SAM_RHO = 0.05
Z_LOSS = 1e-3
ADAMW = dict(optimizer="adamw", lr=1e-3, weight_decay=0.1, warmup_steps=0)
ADAMW_FT_RATES = (1e-3, 3e-4)  # the realistic variant's (presets._variant)
NAMES = ("baseline", "weight-decay", "sam", "cosine", "z-loss", "adamw")


def noise_optimal_decay(sigma_abs: float, vocab: int) -> dict:
    """The transformer's ℓ2 decay λ = σ²/V that the linear theory finds noise-optimal for absolute noise
    of std σ, and its theory value λ̃ = λ·V = σ² = s*/2 (module doc)."""
    return {"sigma": float(sigma_abs), "lambda": float(sigma_abs) ** 2 / vocab, "lambda_theory": float(sigma_abs) ** 2,
            "s_star": 2 * float(sigma_abs) ** 2}


def grid(base) -> dict:
    """{name: (RunConfig, one-line description)} of the study for the baseline RunConfig `base`."""
    if base.train.optimizer != "sgd":
        raise ValueError("the study's baseline must train with SGD (the theory variant): the weight-decay "
                         "mapping and the linear predictions need the rate map η̃ = lr/(1 − β)/V")
    if not base.probe.sigmas_absolute:
        raise ValueError("the study needs at least one absolute noise σ (the weight decay is derived from it)")
    wd = noise_optimal_decay(max(base.probe.sigmas_absolute), base.language.vocab)
    tr = lambda **kw: dataclasses.replace(base, train=dataclasses.replace(base.train, **kw))  # noqa: E731
    adamw = dataclasses.replace(base, train=dataclasses.replace(base.train, **ADAMW),
                                finetune=dataclasses.replace(base.finetune, rates=ADAMW_FT_RATES))
    return {
        "baseline": (base, "the preset (SGD, momentum, constant rate)"),
        "weight-decay": (tr(weight_decay=wd["lambda"]),
                         f"SGD ℓ2 decay λ = σ²/V = {wd['lambda']:.3g} on all matrices (noise-optimal for absolute "
                         f"σ = {wd['sigma']:g}; theory λ̃ = λV = {wd['lambda_theory']:.3g} = s*/2)"),
        "sam": (tr(sam_rho=SAM_RHO), f"SAM ρ = {SAM_RHO:g} around SGD"),
        "cosine": (tr(schedule="cosine"), "cosine decay of the rate to 0 over the run"),
        "z-loss": (tr(z_loss=Z_LOSS), f"z-loss {Z_LOSS:g}·mean(logsumexp²)"),
        "adamw": (adamw, f"AdamW lr {ADAMW['lr']:g}, decay {ADAMW['weight_decay']:g}; fine-tuned with AdamW at "
                         f"{', '.join(f'{r:g}' for r in ADAMW_FT_RATES)}"),
    }


# ---------------------------------------------------------------- verdicts


def turn_verdict(base_rise: dict, mit_rise: dict, log_ratio: dict) -> str:
    """disappears / later / earlier / stays / inconclusive from the rise intervals (baseline, mitigation)
    and the interval of log(step_m / step_b) (module doc)."""
    def clears(ci):
        return math.isfinite(ci["lo"]) and ci["lo"] > MIN_EFFECT

    below = math.isfinite(mit_rise["hi"]) and mit_rise["hi"] < MIN_EFFECT
    if not clears(base_rise):
        return "inconclusive"
    if below:
        return "disappears"
    if not clears(mit_rise) or not (math.isfinite(log_ratio["lo"]) and math.isfinite(log_ratio["hi"])):
        return "inconclusive"
    m = math.log1p(MARGIN)
    if -m <= log_ratio["lo"] and log_ratio["hi"] <= m:
        return "stays"
    if log_ratio["lo"] > 0:
        return "later"
    if log_ratio["hi"] < 0:
        return "earlier"
    return "inconclusive"


def forgetting_verdict(base: dict, mit: dict, diff: dict) -> str:
    """disappears / less / more / same / inconclusive (module doc)."""
    fin = lambda ci: math.isfinite(ci["lo"]) and math.isfinite(ci["hi"])  # noqa: E731
    if fin(base) and fin(mit) and base["lo"] > MIN_EFFECT and mit["hi"] < MIN_EFFECT:
        return "disappears"
    if not fin(diff):
        return "inconclusive"
    if diff["hi"] < -MIN_EFFECT:
        return "less"
    if diff["lo"] > MIN_EFFECT:
        return "more"
    return "same" if -MIN_EFFECT <= diff["lo"] and diff["hi"] <= MIN_EFFECT else "inconclusive"


def forgetting(result: dict, rate: float) -> tuple[float, float, int]:
    """(forgetting, its standard error over fine-tuning seeds, seeds) at `rate` and the last checkpoint:
    the pre-training chain's excess loss after fine-tuning minus before (nats)."""
    ft = result["finetune"]
    r = ft["rates"].index(rate)
    before = result["excess_loss"][-1]
    per = ft.get("pretrain_excess_seeds", [[None]])[r][-1]
    if per is None or ft["pretrain_excess"][r][-1] is None:
        return float("nan"), float("nan"), 0
    per = np.asarray(per, float) - before
    se = float(per.std(ddof=1) / math.sqrt(per.size)) if per.size > 1 else float("nan")
    return float(per.mean()), se, int(per.size)


def analyse(runs: dict) -> dict:
    """Verdicts of every mitigation against the baseline. runs: {name: [result per seed]} (same seeds)."""
    base = runs["baseline"]
    b0 = base[0]
    rows_idx = [(kind, i) for kind in ("relative", "absolute") for i in noise_rows(b0, kind)]
    out = {"baseline_turn": [], "mitigations": {}}
    base_turns = {}
    for kind, i in rows_idx:
        tus = [turn_up(r, i) for r in base]
        ci = interval([t["rise"] for t in tus], tus[0]["rise_se"], tus[0]["draws"] - 1)
        base_turns[(kind, i)] = (tus, ci)
        out["baseline_turn"].append({"kind": kind, "sigma": b0["noise"]["sigmas"][i], "rise": ci,
                                     "argmin_steps": [t["argmin_step"] for t in tus],
                                     "turns": bool(math.isfinite(ci["lo"]) and ci["lo"] > MIN_EFFECT)})
    rate = max(b0["finetune"]["rates"])
    base_f = [forgetting(r, rate) for r in base]
    base_fci = interval([f[0] for f in base_f], base_f[0][1], base_f[0][2] - 1 if base_f[0][2] > 1 else None)
    out["baseline_forgetting"] = {"rate": rate, "forgetting": base_fci}
    for name, res in runs.items():
        if name == "baseline":
            continue
        turns = []
        for kind, i in rows_idx:
            btus, bci = base_turns[(kind, i)]
            tus = [turn_up(r, i) for r in res]
            ci = interval([t["rise"] for t in tus], tus[0]["rise_se"], tus[0]["draws"] - 1)
            lr = interval([math.log(t["argmin_step"] / b["argmin_step"]) if t["argmin_step"] > 0 and
                           b["argmin_step"] > 0 else float("nan") for t, b in zip(tus, btus)])
            drise = interval([t["rise"] - b["rise"] for t, b in zip(tus, btus)])
            v = turn_verdict(bci, ci, lr)
            why = ("the baseline shows no turn here" if not bci["lo"] > MIN_EFFECT else
                   "the rise straddles the floor" if v == "inconclusive" and not ci["lo"] > MIN_EFFECT else
                   "the step ratio's interval straddles" if v == "inconclusive" else "")
            turns.append({"kind": kind, "sigma": b0["noise"]["sigmas"][i], "rise": ci, "rise_minus_baseline": drise,
                          "argmin_steps": [t["argmin_step"] for t in tus], "log_step_ratio": lr,
                          "step_ratio": {k: math.exp(lr[k]) if k in ("mean", "lo", "hi") else lr[k] for k in lr},
                          "verdict": v, "why": why})
        cost = interval([r["excess_loss"][-1] - b["excess_loss"][-1] for r, b in zip(res, base)])
        rates = res[0]["finetune"]["rates"]
        if rate in rates and res[0]["config"]["train"]["optimizer"] == b0["config"]["train"]["optimizer"]:
            f = [forgetting(r, rate) for r in res]
            fci = interval([x[0] for x in f], f[0][1], f[0][2] - 1 if f[0][2] > 1 else None)
            dci = interval([x[0] - y[0] for x, y in zip(f, base_f)])
            fv, note = forgetting_verdict(base_fci, fci, dci), f"rate {rate:g}, paired with the baseline"
        else:
            top = max(rates)
            f = [forgetting(r, top) for r in res]
            fci = interval([x[0] for x in f], f[0][1], f[0][2] - 1 if f[0][2] > 1 else None)
            dci = None
            fv = "not paired"
            note = (f"fine-tuned with {res[0]['config']['train']['optimizer']} at rate {top:g}, not the baseline's "
                    f"procedure: reported, not compared")
        out["mitigations"][name] = {"turn": turns, "clean_cost": cost,
                                    "forgetting": {"value": fci, "minus_baseline": dci, "verdict": fv, "note": note}}
    return out


# ---------------------------------------------------------------- the linear model's predictions


def predictions(base_result: dict, cfgs: dict) -> dict:
    """The linear model's E[L_pert] turn (each noise row) and clean loss at the run's last step, for each
    mitigation where a mapping exists (baseline, weight decay via λ̃ = λV, cosine via the schedule); the
    others say why not. Theory of the baseline's first seed (experiments/theory.py; relative noise with the
    theory's own RMS, init norm included)."""
    from linear_theory import Schedule, gd_modes

    from . import theory

    th = theory.from_result(base_result)
    grid_steps = theory.log_grid(th.last_step)
    nz = base_result["noise"]
    rows_idx = [(kind, i) for kind in ("relative", "absolute") for i in noise_rows(base_result, kind)]

    def predict(**kw):
        traj = gd_modes(th.teacher(), th.lr, grid_steps, init_strength=th.a0, d_hidden=th.d_hidden, **kw)
        turns = []
        for kind, i in rows_idx:
            p = theory.perturbed_loss(th, traj, kind, nz["sigmas"][i], "init")
            c = int(np.argmin(p))
            rise = float(p[-1] - p[c])
            turns.append({"kind": kind, "sigma": nz["sigmas"][i], "turn_step": int(grid_steps[c])
                          if 0 < c < len(p) - 1 and rise > theory.MIN_RISE else None, "rise": rise})
        return {"turn": turns, "clean_loss_end": float(np.asarray(traj.loss)[-1])}

    out = {"baseline": predict() | {"mapping": th.lr_note}}
    none = "no mapping to the linear model is derived (prediction left out)"
    for name, (cfg, _) in cfgs.items():
        if name == "baseline":
            continue
        tc = cfg.train
        if name == "weight-decay":
            lam = tc.weight_decay * th.vocab
            out[name] = predict(weight_decay=lam) | {
                "mapping": f"λ̃ = λ·V = {lam:.4g} on both W̃ (direct path only)"}
        elif name == "cosine":
            out[name] = predict(schedule=Schedule("cosine", total_steps=tc.steps)) | {
                "mapping": "the same η̃ times optax's cosine multiplier over the run's steps"}
        elif name == "adamw":
            out[name] = {"mapping": none + " (Adam has no rate map; see `linear-theory optimizers` for the "
                                           "linear model's Adam)"}
        else:
            out[name] = {"mapping": none}
    b = out["baseline"]["clean_loss_end"]
    for v in out.values():
        if "clean_loss_end" in v:
            v["clean_cost"] = v["clean_loss_end"] - b
    return out


# ---------------------------------------------------------------- command


def add_commands(sub):
    p = sub.add_parser(
        "study",
        help="studies over grids of transformer runs: `study mitigations`",
        description="Grids of transformer runs with verdicts. " + __doc__.split("\n\n")[0].replace("\n", " "))
    ss = p.add_subparsers(dest="study", metavar="STUDY", parser_class=type(p))
    ss.required = True
    m = ss.add_parser(
        "mitigations",
        help="baseline, noise-optimal weight decay, SAM, cosine schedule, z-loss, AdamW on one preset and seeds",
        description="Run (or resume) the fixed grid baseline, weight-decay (λ = σ²/V, the linear theory's "
        "noise-optimal decay for the preset's largest absolute σ), sam (ρ 0.05), cosine, z-loss (1e-3), adamw "
        "(lr 1e-3, decay 0.1), each in DIR/<mitigation>/seed-N (a `linear-theory transformer` run; rerunning "
        "continues). Then per mitigation and noise row: does the turn of the perturbed loss disappear, move "
        "later/earlier, or stay (refined argmin and paired rise over the same noise draws, 95% intervals across "
        "seeds, floor 0.002 nats); the forgetting after fine-tuning (pre-training chain's excess loss after "
        "minus before, last checkpoint, largest rate) against the baseline's; the clean-loss cost (final "
        "excess loss minus the baseline's). Beside each, the linear model's prediction where a mapping exists. "
        "Writes DIR/study.json and DIR/study.png. Units: steps are pre-training steps; losses nats/token.")
    m.add_argument("--out", dest="out_dir", metavar="DIR", required=True, help="study folder")
    m.add_argument("--preset", choices=("ci", "default", "gpu"), default="ci", help="run preset (default ci)")
    m.add_argument("--seeds", type=_seeds, default=[0, 1], metavar="N1,N2,...",
                   help="seeds (at least 2; default 0,1); the same noise draws across mitigations for each seed")
    m.add_argument("--only", type=_names, default=None, metavar="NAME,...",
                   help="run a subset of the grid (baseline always included): " + ", ".join(NAMES))
    m.add_argument("--no-figure", action="store_true", help="skip the figure")
    m.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    m.add_argument("--json", action="store_true", help="print one JSON object to stdout instead of a table")
    m.set_defaults(run=run_mitigations)


def _seeds(text):
    from .cli import seed_list

    seeds = seed_list(text)
    if len(seeds) < 2:
        raise argparse.ArgumentTypeError("give at least 2 seeds (the verdicts need an interval across seeds)")
    return seeds


def _names(text):
    names = [x.strip() for x in text.split(",")]
    bad = [x for x in names if x not in NAMES]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown mitigation {bad[0]!r} (choose from {', '.join(NAMES)})")
    return names


def run_mitigations(args, config_override=None):
    """Run the grid, analyse, print and write DIR/study.json (+ study.png). config_override(cfg) → cfg
    changes the preset's configuration before the grid is built (tests: a tiny model)."""
    from linear_theory.output import atomic_write_json, envelope, jsonable

    from .presets import get_preset
    from .run import run_experiment

    t0 = time.perf_counter()
    out = Path(args.out_dir)
    cfgs_by_seed = {}
    for seed in args.seeds:
        base = get_preset(args.preset, "theory", seed=seed)
        if config_override is not None:
            base = config_override(base)
        g = grid(base)
        names = [n for n in NAMES if args.only is None or n == "baseline" or n in args.only]
        cfgs_by_seed[seed] = {n: g[n] for n in names}
    names = list(cfgs_by_seed[args.seeds[0]])
    runs = {n: [] for n in names}
    for n in names:
        for seed in args.seeds:
            sys.stderr.write(f"study: {n}, seed {seed}\n")
            runs[n].append(run_experiment(cfgs_by_seed[seed][n][0], out / n / f"seed-{seed}",
                                          progress=not args.no_progress))
    first = cfgs_by_seed[args.seeds[0]]
    res = analyse(runs)
    res["predictions"] = predictions(runs["baseline"][0], first)
    res["grid"] = {n: {"description": d, "train": dataclasses.asdict(c.train), "finetune_rates":
                       runs[n][0]["finetune"]["rates"]} for n, (c, d) in first.items()}
    res["decay_mapping"] = noise_optimal_decay(max(first["baseline"][0].probe.sigmas_absolute),
                                               first["baseline"][0].language.vocab)
    res["criteria"] = {"min_effect": MIN_EFFECT, "margin": MARGIN, "level": LEVEL}
    res["wall_s"] = time.perf_counter() - t0
    res["run_total_s"] = {n: [r["timing"]["total_s"] for r in rs] for n, rs in runs.items()}
    config = {"out_dir": str(out), "preset": args.preset, "variant": "theory", "seeds": list(args.seeds),
              "mitigations": names}
    payload = jsonable(envelope(SCHEMA_KIND, config, res))
    if not args.no_figure:
        payload["figure"] = str(study_figure(runs, out / "study.png"))
    atomic_write_json(out / "study.json", payload)
    cli.emit(args, payload, format_study(payload), check_finite=False)


def study_figure(runs: dict, path: Path) -> Path:
    """Mean perturbed excess loss vs step per mitigation at the largest relative σ (error bars: standard
    error across seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from linear_theory.output import atomic_savefig

    b0 = runs["baseline"][0]
    kind = "relative" if noise_rows(b0, "relative") else "absolute"
    i = noise_rows(b0, kind)[-1]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, res in runs.items():
        st = np.asarray(res[0]["steps"], float)
        y = np.array([r["noise"]["perturbed_loss"][i] for r in res], float)
        se = y.std(0, ddof=1) / math.sqrt(len(res))
        ax.errorbar(st[1:], y.mean(0)[1:], yerr=se[1:], marker="o", ms=3, capsize=2, label=name)
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("pre-training step")
    ax.set_ylabel("perturbed excess loss (nats/token)")
    ax.set_title(f"{kind} noise σ = {b0['noise']['sigmas'][i]:g}: mean over {len(runs['baseline'])} seeds (± s.e.)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    p = atomic_savefig(fig, path, dpi=120)
    plt.close(fig)
    return p


def format_study(s: dict) -> str:
    """A table per noise row (a row per mitigation: the turn verdict, the measured rise, the minimum's
    step per seed, the linear model's turn step), then one of the forgetting verdict and the clean-loss
    cost, measured and the linear model's; every line within 100 characters."""
    def pred(p, j):
        if "turn" not in p:
            return "—"
        t = p["turn"][j]
        return f"{t['turn_step']}" if t["turn_step"] is not None else "none"

    def steps(t):
        return "/".join(f"{x:.0f}" for x in t["argmin_steps"])

    base = s["baseline_turn"]
    bp = s["predictions"]["baseline"]
    tables = []
    for j, b0 in enumerate(base):  # one table per noise row: each line stays within 100 characters
        rows = [["baseline", "turns" if b0["turns"] else "no turn", fmt(b0["rise"], 2), steps(b0), pred(bp, j)]]
        rows += [[name, m["turn"][j]["verdict"], fmt(m["turn"][j]["rise"], 2), steps(m["turn"][j]),
                  pred(s["predictions"][name], j)] for name, m in s["mitigations"].items()]
        tables.append(format_table([f"{b0['kind']} σ={b0['sigma']:g}", "turn", "rise [95%]", "min at", "theory"],
                                   rows))
    rows = [["baseline", f"{fmt(s['baseline_forgetting']['forgetting'], 2)}", "0", "0"]]
    for name, m in s["mitigations"].items():
        p = s["predictions"][name]
        f = m["forgetting"]
        ftxt = (f"{f['verdict']} {fmt(f['minus_baseline'], 2)}" if f["minus_baseline"] is not None
                else f"(unpaired) {fmt(f['value'], 2)}")
        rows.append([name, ftxt, fmt(m["clean_cost"], 2), f"{p['clean_cost']:.2g}" if "clean_cost" in p else "—"])
    tables.append(format_table(["mitigation", "forgetting", "clean cost", "theory"], rows))
    lines = [wrap(f"study mitigations: preset {s['config']['preset']}, seeds "
                  f"{','.join(map(str, s['config']['seeds']))}; {s['wall_s']:.0f} s", 100)]
    for name, g in s["grid"].items():
        lines.append(wrap(f"  {name}: {g['description']}; linear model: {s['predictions'][name]['mapping']}", 100,
                          "      "))
    for t in tables:
        lines += ["", t]
    lines.append("")
    lines.append(wrap(
        f"Per noise row: verdict of the turn of the perturbed excess loss against the baseline (disappears / "
        f"stays = moves < {MARGIN:.0%} / later / earlier / inconclusive); rise = paired rise from the refined minimum "
        f"to the last checkpoint over the same noise draws, mean [{LEVEL:.0%} interval across seeds], nats/token, "
        f"a turn when its interval clears {MIN_EFFECT}; min at = refined minimum step per seed; theory = the linear model's "
        "turn step within the run (exact GD, η̃ = lr/(1−β)/V, theory RMS with the init norm; none: no turn, "
        "—: no mapping). forgetting = pre-training chain's excess loss after fine-tuning minus before (last "
        "checkpoint, largest rate), mitigation minus baseline paired by seed (baseline row: its value). clean "
        "cost = final excess loss minus the baseline's (theory: the linear model's).", 100))
    why = [f"{n} {t['kind'][:3]} σ={t['sigma']:g}: {t['why']}" for n, m in s["mitigations"].items()
           for t in m["turn"] if t["why"]]
    if why:
        lines.append(wrap("inconclusive because: " + "; ".join(why), 100))
    return "\n".join(lines)
