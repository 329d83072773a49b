"""The theory's predictions against a transformer run: measured value, criterion, verdict.

Every verdict is computed from the run's numbers: "held", "failed", or "inconclusive"
(too little signal to test, e.g. fewer than three modes learned). Noise predictions are
judged per kind of noise (relative, absolute). Rises are paired differences over the same
noise draws, and count only above MIN_EFFECT (0.002 nats: the clean loss moves ≈ 0.001
between neighbouring checkpoints from SGD noise) and two standard errors.

  1  modes are learned in order of decreasing s
  2  learning step × s_k is roughly constant (Saxe timing)
  3  sensitivity grows with training and tracks the theory's proxy
  4  the perturbed loss turns up (an interior minimum) for large enough σ
  5  the inflection comes earlier for larger σ; a threshold fitted on one σ predicts the others
     (5r, 5a: the theory's scaling s* ∝ σ²; 5rs, 5as: the spectral view, s* = κ × the measured
     noise floor of the logit map — the second form was added after the first default run)
  6  after fine-tuning at a fixed large rate the pre-training loss is U-shaped; smaller rates delay it
     (one fine-tuning per checkpoint: its uncertainty is the checkpoint-to-checkpoint noise of the
     curve, estimated from the run itself, `checkpoint_noise`)
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

MIN_EFFECT = 0.002  # nats per token
RHO_ORDER = -0.7  # prediction 1: Spearman ρ(learning step, s) at most this
SLOPE_RANGE = (0.6, 1.4)  # prediction 2: −d log(step)/d log(s) (Saxe: 1 up to a log correction)
RHO_TRACK = 0.7  # prediction 3: Spearman ρ(Δloss, proxy) at least this
RHO_GROW = 0.5  # prediction 3: Spearman ρ(Δloss, step) at least this
FACTOR = 2.0  # prediction 5: a held-out inflection predicted within this factor


# ---------------------------------------------------------------- small statistics


def ranks(x) -> np.ndarray:
    """Average ranks (1-based), ties shared; +inf ranks last (scipy.stats.rankdata)."""
    return stats.rankdata(np.asarray(x, dtype=float), method="average")


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr); nan when either side is constant or
    there are < 3 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def paired(a, b):
    """Mean and standard error of a − b over draws."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else 0.0


def significant(mean, se) -> bool:
    return mean > max(2 * se, MIN_EFFECT)


# ---------------------------------------------------------------- mode learning


def learning_steps(steps, strengths, targets) -> np.ndarray:
    """Step at which each mode first reaches half its target strength (inf if never).

    Interpolated between checkpoints, linearly in log(step) (in step from step 0).
    """
    steps = np.asarray(steps, float)
    a, s = np.asarray(strengths, float), np.asarray(targets, float)
    out = np.full(s.shape, np.inf)
    for k in range(s.size):
        half = s[k] / 2
        hit = np.nonzero(a[:, k] >= half)[0]
        if hit.size == 0:
            continue
        c = hit[0]
        if c == 0:
            out[k] = steps[0]
            continue
        f = (half - a[c - 1, k]) / (a[c, k] - a[c - 1, k])
        if steps[c - 1] > 0:
            out[k] = math.exp(math.log(steps[c - 1]) + f * (math.log(steps[c]) - math.log(steps[c - 1])))
        else:
            out[k] = steps[c - 1] + f * (steps[c] - steps[c - 1])
    return out


def saxe_fit(t_learn, s):
    """Least squares log(step) = c − β log(s) over learned modes (scipy.stats.linregress):
    (β, se(β), c, n)."""
    ok = np.isfinite(t_learn) & (t_learn > 0)
    n = int(ok.sum())
    if n < 3:
        return float("nan"), float("nan"), float("nan"), n
    fit = stats.linregress(np.log(s[ok]), np.log(t_learn[ok]))
    return float(-fit.slope), float(fit.stderr), float(fit.intercept), n


def _verdict(ok, testable=True):
    return "inconclusive" if not testable else ("held" if ok else "failed")


def predict_order(result) -> dict:
    s = np.asarray(result["target_strengths"], float)
    t = learning_steps(result["steps"], result["mode_strengths"], s)
    learned = np.isfinite(t)
    rho = spearman(t, s)
    rho_learned = spearman(t[learned], s[learned]) if learned.sum() >= 3 else float("nan")
    testable = learned.sum() >= 3 and not math.isnan(rho)
    return {
        "id": "1", "prediction": "modes are learned in order of decreasing s",
        "measured": f"Spearman ρ(step to s_k/2, s_k) = {rho:+.2f} over {s.size} modes "
                    f"({int(learned.sum())} learned; ρ among learned {rho_learned:+.2f})",
        "criterion": f"ρ ≤ {RHO_ORDER} (unlearned modes rank last), ≥ 3 modes learned",
        "verdict": _verdict(testable and rho <= RHO_ORDER, testable),
        "details": {"learning_steps": t, "rho": rho, "rho_learned": rho_learned, "n_learned": int(learned.sum())},
    }


def predict_saxe(result) -> dict:
    s = np.asarray(result["target_strengths"], float)
    t = learning_steps(result["steps"], result["mode_strengths"], s)
    beta, beta_se, c, n = saxe_fit(t, s)
    ok = np.isfinite(t)
    prod = t[ok] * s[ok]
    cv = float(prod.std() / prod.mean()) if n >= 2 else float("nan")
    span = float(s[ok].max() / s[ok].min()) if n >= 1 else float("nan")
    testable = n >= 3 and span >= 1.5
    lo, hi = SLOPE_RANGE
    return {
        "id": "2", "prediction": "learning step × s_k is roughly constant (Saxe timing)",
        "measured": f"slope −dlog(step)/dlog(s) = {beta:.2f} ± {beta_se:.2f} over {n} learned modes "
                    f"(s spans {span:.2g}×); step·s: CV {cv:.2f}",
        "criterion": f"{lo} ≤ slope ≤ {hi} (step ∝ 1/s, up to Saxe's log factor), s span ≥ 1.5×",
        "verdict": _verdict(testable and lo <= beta <= hi, testable),
        "details": {"slope": beta, "slope_se": beta_se, "intercept": c, "n_learned": n, "step_times_s_cv": cv,
                    "step_times_s": prod},
    }


# ---------------------------------------------------------------- noise


def noise_rows(result, kind):
    """Indices into result["noise"] rows of one kind, sorted by σ."""
    nz = result["noise"]
    idx = [i for i, k in enumerate(nz["kind"]) if k == kind]
    return sorted(idx, key=lambda i: nz["sigmas"][i])


def turn_up(result, i) -> dict:
    """Interior minimum of the mean perturbed excess loss for noise row i, with paired tests."""
    nz = result["noise"]
    draws = np.asarray(nz["perturbed_draws"][i], float)  # (C, D)
    mean = draws.mean(1)
    c = int(np.argmin(mean))
    last = len(mean) - 1
    rise, rise_se = paired(draws[last], draws[c])
    fall, fall_se = paired(draws[0], draws[c])
    u = 0 < c < last and significant(rise, rise_se) and significant(fall, fall_se)
    return {"sigma": nz["sigmas"][i], "argmin_step": result["steps"][c], "argmin_index": c, "rise": rise,
            "rise_se": rise_se, "fall": fall, "fall_se": fall_se, "turns_up": bool(u)}


def predict_sensitivity(result, kind) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    nz = result["noise"]
    i = idx[0]  # the smallest σ: closest to the theory's second-order (Hessian-trace) regime
    sigma = nz["sigmas"][i]
    steps = np.asarray(result["steps"], float)
    draws = np.asarray(nz["perturbed_draws"][i], float)
    clean = np.asarray(result["excess_loss"], float)
    delta = draws - clean[:, None]
    d_mean = delta.mean(1)
    growth, growth_se = paired(delta[-1], delta[0])
    rho_t = spearman(steps, d_mean)
    grows = rho_t >= RHO_GROW and significant(growth, growth_se)
    a = np.asarray(result["mode_strengths"], float)
    proxies = {"sum of learned strengths": a.sum(1), "weight norm Σ‖W‖²": np.asarray(result["weight_sq_norm"], float)}
    hkey = "hessian_trace_relative" if kind == "relative" else "hessian_trace"
    h = result.get(hkey)
    if h is not None and all(v is not None for v in h):
        proxies["½σ² Hessian trace"] = 0.5 * sigma**2 * np.asarray(h, float)
    rhos = {name: spearman(d_mean, p) for name, p in proxies.items()}
    main = "½σ² Hessian trace" if "½σ² Hessian trace" in rhos else "sum of learned strengths"
    tracks = rhos[main] >= RHO_TRACK
    ratio = float(d_mean[-1] / proxies[main][-1]) if main.startswith("½") and proxies[main][-1] > 0 else None
    text = ", ".join(f"{name} {r:+.2f}" for name, r in rhos.items())
    return {
        "id": f"3{kind[0]}", "prediction": f"sensitivity grows with training and tracks the proxy ({kind} noise)",
        "measured": f"σ={sigma:g}: Δloss {d_mean[0]:.4f} → {d_mean[-1]:.4f} (paired growth {growth:+.4f} ± "
                    f"{growth_se:.4f}), ρ(Δ, step) {rho_t:+.2f}; ρ(Δ, proxy): {text}"
                    + (f"; Δ/(½σ²trH) at the end {ratio:.2f}" if ratio is not None else ""),
        "criterion": f"ρ(Δ, step) ≥ {RHO_GROW} and growth > max(2se, {MIN_EFFECT}); ρ(Δ, {main}) ≥ {RHO_TRACK}",
        "verdict": _verdict(grows and tracks),
        "details": {"sigma": sigma, "delta_loss": d_mean, "growth": growth, "growth_se": growth_se, "rho_step": rho_t,
                    "rho_proxy": rhos, "main_proxy": main, "grows": bool(grows), "tracks": bool(tracks),
                    "delta_over_half_sigma2_trace": ratio},
    }


def predict_turn_up(result, kind) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    turns = [turn_up(result, i) for i in idx]
    up = [t["turns_up"] for t in turns]
    first = up.index(True) if any(up) else None
    upward_closed = first is not None and all(up[first:])
    text = "; ".join(f"σ={t['sigma']:g}: min at step {t['argmin_step']}, rise {t['rise']:+.4f} ± {t['rise_se']:.4f}"
                     + (" U" if t["turns_up"] else "") for t in turns)
    return {
        "id": f"4{kind[0]}", "prediction": f"the perturbed loss turns up for large enough σ ({kind} noise)",
        "measured": text,
        "criterion": f"interior argmin with paired rise to the end and fall from step 0 both > max(2se, {MIN_EFFECT}), "
                     f"for some σ and every larger σ",
        "verdict": _verdict(upward_closed),
        "details": {"turns": turns},
    }


def predict_inflection(result, kind, saxe) -> dict | None:
    idx = noise_rows(result, kind)
    if not idx:
        return None
    turns = [turn_up(result, i) for i in idx]
    with_u = [t for t in turns if t["turns_up"]]
    last_step = result["steps"][-1]
    order_ok = all(b["argmin_step"] <= a["argmin_step"] for a, b in zip(with_u, with_u[1:]))
    beta = saxe["details"]["slope"]
    if len(with_u) < 1 or not math.isfinite(beta):
        return {
            "id": f"5{kind[0]}", "prediction": f"earlier inflection for larger σ; fitted threshold predicts the others "
                                              f"({kind} noise)",
            "measured": f"{len(with_u)} σ turn up; Saxe slope {beta:.2f}", "criterion": "needs ≥ 2 σ that turn up",
            "verdict": "inconclusive", "details": {"turns": turns},
        }
    fit = with_u[-1]  # the largest σ that turns up: fit there, predict the smaller σ (later turns)
    sf, tf = fit["sigma"], fit["argmin_step"]
    # threshold: the strength of the modes being learned at the inflection, s* = exp((c − log T)/β), and s* ∝ σ²
    c = saxe["details"]["intercept"]
    s_star = math.exp((c - math.log(tf)) / beta)
    preds, hits, observed_any = [], [], False
    for t in turns:
        if t is fit:
            continue
        pred = tf * (t["sigma"] / sf) ** (-2 * beta) if t["sigma"] > 0 else math.inf
        if t["turns_up"]:
            observed_any = True
            hit = 1 / FACTOR <= pred / t["argmin_step"] <= FACTOR
        else:
            hit = pred >= last_step / FACTOR
        preds.append({"sigma": t["sigma"], "predicted_step": pred, "observed_step": t["argmin_step"] if t["turns_up"]
                      else None, "hit": bool(hit)})
        hits.append(hit)
    testable = len(with_u) >= 2 and observed_any
    seen = ", ".join(f"{t['sigma']:g}→{t['argmin_step']}" for t in with_u)
    exponent = float("nan")  # observed T ∝ σ^−exponent over the σ that turn up (theory: 2β)
    if len(with_u) >= 2:
        x = np.log([t["sigma"] for t in with_u])
        exponent = float(-stats.linregress(x, np.log([t["argmin_step"] for t in with_u])).slope)
    nz = result["noise"]
    for t, i in zip(turns, idx):  # spectral view at the turn: the noise floor vs the strength of the modes then learned
        t["floor_at_turn"] = nz["noise_floor"][i][t["argmin_index"]] if "noise_floor" in nz else None
        t["s_learning_at_turn"] = math.exp((c - math.log(max(t["argmin_step"], 1))) / beta)
    floors = ", ".join(f"{t['floor_at_turn']:.3g} vs {t['s_learning_at_turn']:.3g}" for t in with_u
                       if t["floor_at_turn"] is not None)
    text = (f"U at σ → step: {seen} (observed step ∝ σ^-{exponent:.2f}; theory σ^-{2 * beta:.2f}); "
            + (f"noise floor at the turn vs s of the modes then learned: {floors}; " if floors else "")
            + f"fit on σ={sf:g} (s* = {s_star:.3g}); held out: "
            + ", ".join(f"σ={p['sigma']:g} predicted {p['predicted_step']:.0f} vs "
                        f"{p['observed_step'] if p['observed_step'] is not None else 'no U'}" for p in preds))
    return {
        "id": f"5{kind[0]}", "prediction": f"earlier inflection for larger σ; fitted threshold predicts the others "
                                          f"({kind} noise)",
        "measured": text,
        "criterion": f"argmin step non-increasing in σ; held-out prediction T_fit·(σ/σ_fit)^(−2β) (s* ∝ σ², β from "
                     f"prediction 2) within {FACTOR:g}× of the observed U, or ≥ last step/{FACTOR:g} where none is seen",
        "verdict": _verdict(order_ok and all(hits), testable),
        "details": {"turns": turns, "fit_sigma": sf, "fit_step": tf, "s_threshold": s_star, "beta": beta,
                    "predictions": preds, "order_ok": bool(order_ok), "observed_exponent": exponent,
                    "theory_exponent": 2 * beta},
    }


def _crossing(steps, g):
    """First step where g (one value per checkpoint, steps > 0) drops to ≤ 0, log-interpolated; inf if never."""
    for j in range(len(g)):
        if g[j] <= 0:
            if j == 0:
                return float(steps[0])
            f = g[j - 1] / (g[j - 1] - g[j])
            return math.exp(math.log(steps[j - 1]) + f * (math.log(steps[j]) - math.log(steps[j - 1])))
    return math.inf


def predict_spectral_threshold(result, kind, saxe) -> dict | None:
    """Prediction 5 in the spectral view: the turn comes when the modes being learned fall below κ × the
    measured noise floor ‖M̃ − M‖₂/V; κ fitted on the largest σ that turns up, the other σ held out."""
    idx = noise_rows(result, kind)
    nz = result["noise"]
    if not idx or "noise_floor" not in nz:
        return None
    rid, name = f"5{kind[0]}s", f"spectral threshold: turn when the modes being learned fall below the noise floor " \
                               f"({kind} noise)"
    turns = [turn_up(result, i) for i in idx]
    with_u = [t for t in turns if t["turns_up"]]
    beta, c = saxe["details"]["slope"], saxe["details"]["intercept"]
    if not with_u or not math.isfinite(beta):
        return {"id": rid, "prediction": name, "measured": f"{len(with_u)} σ turn up; Saxe slope {beta:.2f}",
                "criterion": "needs ≥ 2 σ that turn up", "verdict": "inconclusive", "details": {}}
    steps = np.asarray(result["steps"], float)
    pos = steps > 0
    s_learning = np.exp((c - np.log(steps[pos])) / beta)  # strength of the modes being learned at each checkpoint
    fit_i = idx[turns.index(with_u[-1])]
    fit = with_u[-1]
    kappa = math.exp((c - math.log(fit["argmin_step"])) / beta) / nz["noise_floor"][fit_i][fit["argmin_index"]]
    preds, hits, observed_any = [], [], False
    for t, i in zip(turns, idx):
        if t is fit:
            continue
        pred = _crossing(steps[pos], s_learning - kappa * np.asarray(nz["noise_floor"][i], float)[pos])
        if t["turns_up"]:
            observed_any = True
            hit = 1 / FACTOR <= pred / t["argmin_step"] <= FACTOR
        else:
            hit = pred >= steps[-1] / FACTOR
        preds.append({"sigma": t["sigma"], "predicted_step": pred,
                      "observed_step": t["argmin_step"] if t["turns_up"] else None, "hit": bool(hit)})
        hits.append(hit)
    text = (f"κ = s_learning/floor at the turn of σ={fit['sigma']:g} (step {fit['argmin_step']}) = {kappa:.2f}; held out: "
            + ", ".join(f"σ={p['sigma']:g} predicted {p['predicted_step']:.0f} vs "
                        f"{p['observed_step'] if p['observed_step'] is not None else 'no U'}" for p in preds))
    return {
        "id": rid, "prediction": name, "measured": text,
        "criterion": f"held-out turn predicted where s of the modes being learned (prediction 2's fit) = κ × that σ's "
                     f"noise floor, within {FACTOR:g}× of the observed U, or ≥ last step/{FACTOR:g} where none is seen",
        "verdict": _verdict(all(hits), len(with_u) >= 2 and observed_any),
        "details": {"kappa": kappa, "fit_sigma": fit["sigma"], "predictions": preds},
    }


# ---------------------------------------------------------------- fine-tuning


def checkpoint_noise(curve) -> float:
    """The checkpoint-to-checkpoint noise of a curve with one value per checkpoint, estimated from
    the curve itself: for y = trend + e with independent e of std σ, the second difference
    y[k+1] − 2y[k] + y[k−1] has std √6 σ wherever the trend is locally straight. A robust scale
    (1.4826 × the median absolute deviation) of the second differences, ÷ √6, so that the few
    checkpoints where the trend truly bends do not inflate it; where the trend bends everywhere
    it over-estimates σ (a conservative verdict). nan below 4 points."""
    y = np.asarray(curve, float)
    if y.size < 4:
        return float("nan")
    d2 = np.diff(y, 2)
    return float(stats.median_abs_deviation(d2, scale="normal") / math.sqrt(6))


def _u_shape(curve, steps):
    """Argmin, rise to the end and fall from the start of a curve with one value per checkpoint,
    each with its uncertainty √2 σ (a difference of two checkpoints, σ = `checkpoint_noise`).
    A U needs both to beat max(MIN_EFFECT, 2 × that uncertainty)."""
    curve = np.asarray(curve, float)
    c = int(np.argmin(curve))
    rise, fall = float(curve[-1] - curve[c]), float(curve[0] - curve[c])
    # the noise is read on the arm from just before the argmin to the end (past the steep learning
    # drop, where the trend is smooth and the rise is judged), or on the whole curve when that arm is short
    arm = curve[max(c - 1, 0):]
    noise = checkpoint_noise(arm if arm.size >= 5 else curve)
    se = math.sqrt(2) * noise if math.isfinite(noise) else math.inf
    return {"argmin_step": steps[c], "argmin_index": c, "rise": rise, "fall": fall, "checkpoint_noise": noise,
            "difference_se": se,
            "turns_up": bool(0 < c < len(curve) - 1 and significant(rise, se) and significant(fall, se))}


def predict_finetune(result) -> dict:
    ft = result["finetune"]
    steps = result["steps"]
    rows = []
    for r, rate in enumerate(ft["rates"]):
        row = {"rate": rate, **_u_shape(np.asarray(ft["pretrain_excess"][r], float), steps)}
        row["finetune_chain"] = _u_shape(np.asarray(ft["finetune_excess"][r], float), steps)  # in-domain, for context
        rows.append(row)
    by_rate = sorted(rows, key=lambda x: -x["rate"])
    largest = by_rate[0]
    delayed = all(b["argmin_step"] >= a["argmin_step"] for a, b in zip(by_rate, by_rate[1:]))
    text = "; ".join(f"rate {x['rate']:g}: min at step {x['argmin_step']}, rise to the end {x['rise']:+.4f}, fall "
                     f"from the start {x['fall']:+.4f} (± {x['difference_se']:.4f} each, checkpoint noise "
                     f"{x['checkpoint_noise']:.4f})" + (" U" if x["turns_up"] else " no U") for x in by_rate)
    text += " (fine-tuning chain itself: " + "; ".join(
        f"rate {x['rate']:g} min at step {x['finetune_chain']['argmin_step']}, rise {x['finetune_chain']['rise']:+.4f}"
        for x in by_rate) + ")"
    return {
        "id": "6", "prediction": "after fine-tuning at a fixed large rate the pre-training loss is U-shaped; "
                                 "smaller rates delay it",
        "measured": text,
        "criterion": f"largest rate: pre-training chain's excess loss after fine-tuning has an interior argmin with "
                     f"rise and fall > max({MIN_EFFECT}, 2 × their uncertainty √2σ), σ the checkpoint-to-checkpoint "
                     f"noise of that curve (robust scale of its second differences ÷ √6, from just before the "
                     f"argmin to the end; one fine-tuning per checkpoint); smaller rates' argmin at the same or a later step",
        "verdict": _verdict(largest["turns_up"] and delayed),
        "details": {"rates": by_rate},
    }


# ---------------------------------------------------------------- all together


def compare(result: dict) -> dict:
    """All predictions for one run, in order."""
    if result.get("schema") != "linear-theory/transformer-run/1":
        raise ValueError("not a transformer run result (schema linear-theory/transformer-run/1)")
    order, saxe = predict_order(result), predict_saxe(result)
    rows = [order, saxe]
    kinds = [k for k in ("relative", "absolute") if k in result["noise"]["kind"]]
    for make in (predict_sensitivity, predict_turn_up):
        rows += [make(result, k) for k in kinds]
    rows += [predict_inflection(result, k, saxe) for k in kinds]
    rows += [predict_spectral_threshold(result, k, saxe) for k in kinds]
    rows.append(predict_finetune(result))
    rows = [r for r in rows if r is not None]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("held", "failed", "inconclusive")}
    return {"preset": result.get("preset"), "variant": result.get("variant"), "steps": result["steps"][-1],
            "min_effect": MIN_EFFECT, "predictions": rows, "summary": counts}


def format_comparison(cmp: dict) -> str:
    from linear_theory.output import format_table, wrap

    rows = [[r["id"], r["verdict"], r["prediction"]] for r in cmp["predictions"]]
    out = [f"{cmp['preset']}/{cmp['variant']}, {cmp['steps']} steps: "
           + ", ".join(f"{n} {v}" for v, n in cmp["summary"].items()),
           format_table(["#", "verdict", "prediction"], rows), ""]
    for r in cmp["predictions"]:
        out += [wrap(f"[{r['id']}] {r['verdict'].upper()}: {r['prediction']}", 100, "    "),
                wrap(f"    measured:  {r['measured']}", 100, "               "),
                wrap(f"    criterion: {r['criterion']}", 100, "               ")]
    return "\n".join(out)
