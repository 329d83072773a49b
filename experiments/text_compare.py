"""The theory's predictions that make sense on a real-text run: measured value, uncertainty, criterion, verdict.

  T1  modes are learned in order of decreasing s (the empirical spectrum's singular values)
  T3  sensitivity (Δloss under fixed noise) grows with training, with the learned modes (per kind of noise)
  T4  the perturbed loss turns up (an interior minimum) for large enough σ (per kind)
  T5  the turn comes earlier for larger σ (its σ-ordering; per kind)
  T6  fine-tuning on the second text at a fixed rate: the first text's loss after fine-tuning is U-shaped
      in pre-training, smaller rates delay it
  T6f fine-tuning forgets: the first text's held-out loss rises, more at the larger rate

Uncertainties come from the run: Spearman ρ with a Fisher-z interval (standard error √(1.06/(n − 3)),
Fieller, Hartley & Pearson 1957); rises are paired differences over the same noise draws (mean ±
standard error); the σ-ordering is bootstrapped over draws; a curve with one value per checkpoint
(fine-tuning) gets its checkpoint-to-checkpoint noise from checkpoint_noise below. A rise counts
only above 2 standard errors and above the run's own floor: the clean held-out loss's checkpoint-to-
checkpoint noise σ_c over the second half of the checkpoints (where the curve is smooth), doubled
and × √2 for a difference of two checkpoints — not a number measured on another run.

Not applied here (NOT_APPLICABLE): the synthetic check's Saxe timing (2) and its quantitative
thresholds (5r/5a/5rs/5as).
"""

from __future__ import annotations

import math

import numpy as np

from .compare import learning_steps, noise_rows, paired, saxe_fit, spearman, turn_up

Z95 = 1.959964  # two-sided 95% normal quantile
N_BOOT = 400  # bootstrap resamples of the noise draws (T5); seed fixed below
NOT_APPLICABLE = [
    {"id": "2", "prediction": "learning step × s_k roughly constant (Saxe timing)",
     "why": "derived for a linear map trained from small init on whitened inputs with a near-linear softmax; on "
            "text the current-token frequencies are far from uniform (the input covariance is not ∝ identity, so "
            "the gradient's modes are not exactly L's) and the log-probability targets are far outside the "
            "softmax's linear range; the slope is reported as a measurement (details.saxe_slope), not judged"},
    {"id": "5r/5a/5rs/5as", "prediction": "a threshold s* ∝ σ² (or κ × the noise floor) fitted on one σ predicts "
                                          "the other σ's turn",
     "why": "built on the Saxe timing above and on a loss made only of the first-order modes; a text's loss also "
            "holds context beyond the last token that the bigram spectrum does not describe; only the σ-ordering "
            "of the turn (T5) is kept"},
    {"id": "excess loss", "prediction": "exact KL to the data distribution, its floor the entropy rate",
     "why": "real text has no known next-token distribution: every loss here is held-out cross-entropy, "
            "whose floor is unknown (the smoothed bigram and unigram losses are given for scale)"},
]


def fisher_interval(rho: float, n: int) -> tuple[float, float]:
    """95% interval of a Spearman ρ over n points (Fisher z, se √(1.06/(n − 3))); (nan, nan) below 4 points."""
    if n < 4 or not math.isfinite(rho):
        return float("nan"), float("nan")
    z, se = math.atanh(max(min(rho, 0.999999), -0.999999)), math.sqrt(1.06 / (n - 3))
    return math.tanh(z - Z95 * se), math.tanh(z + Z95 * se)


def checkpoint_noise(curve) -> float:
    """The checkpoint-to-checkpoint noise of a curve with one value per checkpoint, estimated from
    the curve itself: for y = trend + e with independent e of std σ, the second difference
    y[k+1] − 2y[k] + y[k−1] has std √6 σ wherever the trend is locally straight. A robust scale
    (1.4826 × the median absolute deviation) of the second differences, ÷ √6, so that the few
    checkpoints where the trend truly bends do not inflate it; where the trend bends everywhere
    it over-estimates σ (a conservative verdict). nan below 4 points."""
    from scipy import stats

    y = np.asarray(curve, float)
    if y.size < 4:
        return float("nan")
    return float(stats.median_abs_deviation(np.diff(y, 2), scale="normal") / math.sqrt(6))


def loss_floor(result) -> float:
    """The run's own smallest meaningful rise: 2 × √2 × the clean loss's checkpoint noise (second half)."""
    loss = np.asarray(result["loss"], float)
    half = loss[len(loss) // 2:]
    noise = checkpoint_noise(half if half.size >= 4 else loss)
    return 2 * math.sqrt(2) * noise if math.isfinite(noise) else math.inf


def _verdict(held, failed):
    return "held" if held else ("failed" if failed else "inconclusive")


def _row(rid, prediction, measured, criterion, verdict, details):
    return {"id": rid, "prediction": prediction, "measured": measured, "criterion": criterion, "verdict": verdict,
            "details": details}


# ---------------------------------------------------------------- T1 modes


def predict_order_text(result) -> dict:
    s = np.asarray(result["target_strengths"], float)
    t = learning_steps(result["steps"], result["mode_strengths"], s)
    learned = np.isfinite(t)
    rho = spearman(t, s)
    lo, hi = fisher_interval(rho, s.size)
    beta, beta_se, _, n = saxe_fit(t, s)
    testable = learned.sum() >= 3 and math.isfinite(lo)
    return _row("T1", "modes are learned in order of decreasing s (empirical singular values)",
                f"Spearman ρ(step to s_k/2, s_k) = {rho:+.2f} [95% {lo:+.2f}, {hi:+.2f}] over {s.size} modes "
                f"({int(learned.sum())} learned, unlearned rank last)",
                "ρ's 95% interval below 0 (held), above 0 (failed); ≥ 3 modes learned",
                _verdict(testable and hi < 0, testable and lo > 0),
                {"learning_steps": t, "rho": rho, "rho_ci": [lo, hi], "n_learned": int(learned.sum()),
                 "saxe_slope": beta, "saxe_slope_se": beta_se, "saxe_modes": n})


# ---------------------------------------------------------------- T3–T5 noise


def _turn(result, i, floor) -> dict:
    t = turn_up(result, i)
    # the checkpoint's step (T5 orders the checkpoint argmins); compare.turn_up's refined one is kept beside it
    t["argmin_step_refined"], t["argmin_step"] = t["argmin_step"], result["steps"][t["argmin_index"]]
    last = len(result["steps"]) - 1
    ok = lambda m, se: m > max(2 * se, floor)  # noqa: E731
    t["turns_up"] = bool(0 < t["argmin_index"] < last and ok(t["rise"], t["rise_se"]) and ok(t["fall"], t["fall_se"]))
    return t


def predict_sensitivity_text(result, kind, floor) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    nz, i = result["noise"], idx[0]  # the smallest σ: the theory's second-order regime
    draws = np.asarray(nz["perturbed_draws"][i], float)
    delta = draws - np.asarray(result["loss"], float)[:, None]
    d = delta.mean(1)
    growth, growth_se = paired(delta[-1], delta[0])
    a_sum = np.asarray(result["mode_strengths"], float).sum(1)
    rho = spearman(a_sum, d)
    lo, hi = fisher_interval(rho, d.size)
    hkey = "hessian_trace_relative" if kind == "relative" else "hessian_trace"
    h = result.get(hkey) or []
    rho_h = spearman(h, d) if h and all(x is not None for x in h) else float("nan")
    held = growth > max(2 * growth_se, floor) and lo > 0
    failed = growth < -max(2 * growth_se, floor) or hi < 0
    return _row(f"T3{kind[0]}", f"sensitivity grows with the learned modes ({kind} noise)",
                f"σ={nz['sigmas'][i]:g}: Δloss {d[0]:.4f} → {d[-1]:.4f} (paired growth {growth:+.4f} ± "
                f"{growth_se:.4f} over {draws.shape[1]} draws); ρ(Δ, Σa_k) = {rho:+.2f} [95% {lo:+.2f}, {hi:+.2f}]; "
                f"ρ(Δ, Hessian trace) = {rho_h:+.2f}",
                f"growth > max(2se, floor {floor:.4f}) and ρ(Δ, Σa) interval above 0 (held); growth < −that or "
                "interval below 0 (failed)",
                _verdict(held, failed),
                {"sigma": nz["sigmas"][i], "delta_loss": d, "growth": growth, "growth_se": growth_se, "rho": rho,
                 "rho_ci": [lo, hi], "rho_hessian": rho_h})


def predict_turn_up_text(result, kind, floor) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    turns = [_turn(result, i, floor) for i in idx]
    up = [t["turns_up"] for t in turns]
    first = up.index(True) if any(up) else None
    closed = first is not None and all(up[first:])
    text = "; ".join(f"σ={t['sigma']:g}: min at step {t['argmin_step']}, rise {t['rise']:+.4f} ± {t['rise_se']:.4f}, "
                     f"fall {t['fall']:+.4f} ± {t['fall_se']:.4f}" + (" U" if t["turns_up"] else "") for t in turns)
    return _row(f"T4{kind[0]}", f"the perturbed loss turns up for large enough σ ({kind} noise)", text,
                f"interior argmin, paired rise to the end and fall from step 0 both > max(2se, floor {floor:.4f}), "
                "for some σ and every larger σ", _verdict(closed, not closed), {"turns": turns})


def _argmin_order_holds(draws_by_sigma, rng=None) -> bool:
    """Argmin steps (of the draw-mean curves) non-increasing in σ; draws resampled when rng is given."""
    argmins = []
    for d in draws_by_sigma:  # (C, D), σ increasing
        if rng is not None:
            d = d[:, rng.integers(0, d.shape[1], d.shape[1])]
        argmins.append(int(np.argmin(d.mean(1))))
    return all(b <= a for a, b in zip(argmins, argmins[1:]))


def predict_order_sigma_text(result, kind, floor) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    turns = [_turn(result, i, floor) for i in idx]
    with_u = [(t, i) for t, i in zip(turns, idx) if t["turns_up"]]
    name = f"the turn comes earlier for larger σ ({kind} noise)"
    if len(with_u) < 2:
        return _row(f"T5{kind[0]}", name, f"{len(with_u)} σ turn up", "needs ≥ 2 σ that turn up", "inconclusive",
                    {"turns": turns})
    draws = [np.asarray(result["noise"]["perturbed_draws"][i], float) for _, i in with_u]
    holds = _argmin_order_holds(draws)
    rng = np.random.default_rng(0)
    frac = float(np.mean([_argmin_order_holds(draws, rng) for _ in range(N_BOOT)]))
    seen = ", ".join(f"σ={t['sigma']:g} → step {t['argmin_step']}" for t, _ in with_u)
    return _row(f"T5{kind[0]}", name,
                f"U at {seen}; ordering {'holds' if holds else 'violated'}; holds in {frac:.0%} of {N_BOOT} bootstrap "
                "resamples of the draws",
                "argmin step non-increasing in σ among the σ that turn up, in the measurement and in ≥ 95% of the "
                "bootstrap resamples (held); violated and in ≤ 5% (failed)",
                _verdict(holds and frac >= 0.95, not holds and frac <= 0.05),
                {"turns": turns, "order_holds": holds, "bootstrap_fraction": frac})


# ---------------------------------------------------------------- T6 fine-tuning


def _u_shape(curve, steps, floor):
    curve = np.asarray(curve, float)
    c = int(np.argmin(curve))
    rise, fall = float(curve[-1] - curve[c]), float(curve[0] - curve[c])
    arm = curve[max(c - 1, 0):]
    noise = checkpoint_noise(arm if arm.size >= 5 else curve)
    se = math.sqrt(2) * noise if math.isfinite(noise) else math.inf
    ok = lambda x: x > max(2 * se, floor)  # noqa: E731
    return {"argmin_step": steps[c], "rise": rise, "fall": fall, "checkpoint_noise": noise, "difference_se": se,
            "turns_up": bool(0 < c < len(curve) - 1 and ok(rise) and ok(fall))}


def predict_finetune_text(result, floor) -> list[dict]:
    """T6 and T6f; a fine-tuning that diverged (null in result.json) is reported and left out (see below)."""
    ft = result["finetune"]
    names = ("fine-tuning: U-shaped out-of-domain loss", "fine-tuning forgets")
    if ft is None:
        return [_row(rid, name, "no fine-tuning text (--finetune-text)", "needs a fine-tuning text", "inconclusive", {})
                for rid, name in zip(("T6", "T6f"), names)]
    steps, clean = np.asarray(result["steps"]), np.asarray(result["loss"], float)
    curves = {r: np.asarray([np.nan if x is None else x for x in ft["pretrain_loss"][r]], float)
              for r in range(len(ft["rates"]))}
    # a rate is judged on the checkpoints where its fine-tuning stayed finite, if the last one is among them
    # and at least 4 are; the diverged checkpoints are reported
    finite = {r: np.isfinite(c) for r, c in curves.items()}
    diverged = {ft["rates"][r]: steps[~ok].tolist() for r, ok in finite.items() if not ok.all()}
    note = "".join(f"; rate {rate:g} diverged (non-finite loss) when fine-tuning the checkpoints of steps "
                   f"{', '.join(map(str, st))}" for rate, st in diverged.items())
    order = sorted((r for r in curves if finite[r][-1] and finite[r].sum() >= 4), key=lambda r: -ft["rates"][r])
    if not order:
        return [_row(rid, name, "no rate stayed finite at the last checkpoint and ≥ 4 others" + note,
                     "needs a rate that stays finite", "inconclusive", {"diverged": diverged})
                for rid, name in zip(("T6", "T6f"), names)]
    shapes = [{"rate": ft["rates"][r], **_u_shape(curves[r][finite[r]], steps[finite[r]].tolist(), floor)}
              for r in order]
    delayed = all(b["argmin_step"] >= a["argmin_step"] for a, b in zip(shapes, shapes[1:]))
    u = _row("T6", "after fine-tuning at a fixed rate the first text's held-out loss is U-shaped in pre-training; "
                   "smaller rates delay it",
             "; ".join(f"rate {x['rate']:g}: min at step {x['argmin_step']}, rise {x['rise']:+.4f}, fall "
                       f"{x['fall']:+.4f} (± {x['difference_se']:.4f})" + (" U" if x["turns_up"] else " no U")
                       for x in shapes) + note,
             f"largest judged rate: interior argmin with rise and fall > max(2 × √2σ_c, floor {floor:.4f}), σ_c the "
             "curve's checkpoint noise; smaller rates' argmin at the same or a later step",
             _verdict(shapes[0]["turns_up"] and delayed, not shapes[0]["turns_up"]),
             {"rates": shapes, "diverged": diverged})
    forget = [(curves[r] - clean)[finite[r]] for r in order]  # out-of-domain loss after − before fine-tuning
    noise = [checkpoint_noise(f) for f in forget]
    last = [float(f[-1]) for f in forget]
    sig = last[0] > 2 * noise[0] and last[0] > floor
    more = all(a >= b for a, b in zip(last, last[1:]))
    rho = spearman(steps[finite[order[0]]], forget[0])
    f = _row("T6f", "fine-tuning on the second text raises the first text's held-out loss (forgetting), more at the "
                    "larger rate",
             "at the last checkpoint: " + ", ".join(f"rate {ft['rates'][r]:g}: {x:+.4f} ± {n:.4f}"
                                                  for r, x, n in zip(order, last, noise))
             + f"; ρ(forgetting at the largest judged rate, step) = {rho:+.2f}" + note,
             f"largest judged rate's rise > max(2σ_c, floor {floor:.4f}) (σ_c its checkpoint noise) and non-"
             "increasing as the rate falls (held); a rise < −2σ_c (failed)",
             _verdict(sig and more, last[0] < -2 * noise[0]),
             {"forgetting": forget, "checkpoint_noise": noise, "rho_step": rho, "diverged": diverged})
    return [u, f]


# ---------------------------------------------------------------- all together


def compare_text(result: dict) -> dict:
    if result.get("schema") != "linear-theory/transformer-text-run/1":
        raise ValueError("not a real-text transformer run (schema linear-theory/transformer-text-run/1)")
    floor = loss_floor(result)
    kinds = [k for k in ("relative", "absolute") if k in result["noise"]["kind"]]
    rows = [predict_order_text(result)]
    for make in (predict_sensitivity_text, predict_turn_up_text, predict_order_sigma_text):
        rows += [make(result, k, floor) for k in kinds]
    rows += predict_finetune_text(result, floor)
    rows = [r for r in rows if r is not None]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("held", "failed", "inconclusive")}
    return {"preset": result.get("preset"), "variant": result.get("variant"), "steps": result["steps"][-1],
            "text": result["text"]["pretrain"]["origin"], "loss_floor": floor, "predictions": rows,
            "not_applicable": NOT_APPLICABLE, "summary": counts}


def compare_runs(runs: list[dict]) -> dict:
    """compare_text on what `compare DIR` read (cli.load_runs): a real-text run is single-seed."""
    if len(runs) != 1:
        raise ValueError(f"found {len(runs)} real-text runs in seed-N folders: a real-text run is single-seed; "
                         "compare each run folder on its own")
    return compare_text(runs[0])


def format_text_comparison(cmp: dict) -> str:
    from linear_theory.output import format_table, wrap

    rows = [[r["id"], r["verdict"], r["prediction"]] for r in cmp["predictions"]]
    out = [f"{cmp['preset']}/{cmp['variant']} on {cmp['text']}, {cmp['steps']} steps: "
           + ", ".join(f"{n} {v}" for v, n in cmp["summary"].items())
           + f" (floor of a meaningful rise {cmp['loss_floor']:.4f} nats)",
           format_table(["#", "verdict", "prediction"], rows), ""]
    for r in cmp["predictions"]:
        out += [wrap(f"[{r['id']}] {r['verdict'].upper()}: {r['prediction']}", 100, "    "),
                wrap(f"    measured:  {r['measured']}", 100, "               "),
                wrap(f"    criterion: {r['criterion']}", 100, "               ")]
    out.append("\nNot applied on real text:")
    for r in cmp["not_applicable"]:
        out.append(wrap(f"  [{r['id']}] {r['prediction']}: {r['why']}", 100, "    "))
    return "\n".join(out)


def text_figure(result: dict, comparison: dict | None = None):
    """Modes, noise and fine-tuning of a real-text run in one figure: (Figure, data)."""
    from matplotlib.figure import Figure

    if comparison is None:
        comparison = compare_text(result)
    x = np.maximum(np.asarray(result["steps"], float), 1.0)
    s, a = np.asarray(result["target_strengths"], float), np.asarray(result["mode_strengths"], float)
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    ax = fig.subplots(1, 3)
    for k in range(min(8, s.size)):
        ax[0].plot(x, a[:, k] / s[k], lw=1)
    ax[0].set(xscale="log", xlabel="step", ylabel="a_k / s_k", title="top 8 modes (fraction of target)")
    ax[1].plot(x, result["loss"], "k-", lw=2, label="clean")
    nz = result["noise"]
    for i, (kind, sig) in enumerate(zip(nz["kind"], nz["sigmas"])):
        ax[1].plot(x, nz["perturbed_loss"][i], "-" if kind == "relative" else "--", lw=1, label=f"{kind[:3]} σ={sig:g}")
    ax[1].set(xscale="log", yscale="log", xlabel="step", ylabel="held-out loss (nats/token)", title="weight noise")
    ax[1].legend(fontsize=7)
    ft = result["finetune"]
    if ft is not None:
        for r, rate in enumerate(ft["rates"]):
            nan = lambda v: np.asarray([np.nan if y is None else y for y in v], float)  # noqa: E731 — diverged
            ax[2].plot(x, nan(ft["pretrain_loss"][r]), lw=1.5, label=f"out of domain after FT @{rate:g}")
            ax[2].plot(x, nan(ft["finetune_loss"][r]), ":", lw=1.5, label=f"in domain after FT @{rate:g}")
        ax[2].plot(x, result["loss"], "k-", lw=1, label="out of domain before FT")
        ax[2].legend(fontsize=7)
    ax[2].set(xscale="log", xlabel="pre-training step", ylabel="held-out loss (nats/token)", title="fine-tuning")
    summary = ", ".join(f"{n} {v}" for v, n in comparison["summary"].items())
    fig.suptitle(f"Real-text check, {result['preset']}/{result['variant']} on {comparison['text']}: {summary}")
    return fig, {"comparison": comparison}
