"""The theory's predictions against transformer runs: statistic with its interval, criterion, verdict.

`compare(results)` takes one run or several seeds of one configuration. Every prediction
computes a statistic per seed; across seeds it reports the mean with a 95% t-interval
(scipy.stats.t, n − 1 degrees of freedom); with one seed, the interval comes from that
run's own uncertainty (noise draws or fine-tuning seeds, paired across checkpoints)
where there is one. A verdict reads the interval against the criterion:

  held          the whole interval satisfies the criterion
  failed        the whole interval violates it
  inconclusive  the interval straddles it, or there is too little to test

Every expected value comes from the linear theory for the run at hand (experiments/
theory.py: the run's spectrum, measured initial strengths, rate map η̃ = lr/(1 − β)/V,
noise kind and the matrices' RMS), never from another measured number:

  1   modes are learned in order of decreasing s (theory: exactly in order)
  2   timing: slope of log(step to a_k = θ s_k) against log(1/s_k), at θ = 0.1, 0.25, 0.5, 0.75,
      against the theory's exact GD slope at the same θ over the same modes
  3   sensitivity grows with training and tracks ½σ²·tr H (exact in the linear model)
  4   the perturbed loss turns up at the σ where the theory's E[L_pert] does, and not where it does not
  5   the step of the turn scales as σ^x with the theory's x for that noise kind (relative noise: with
      the transformer's measured matrix RMS, init included; also shown: the theory's own RMS with and
      without the init, to test whether the init explains the gap)
  6   after K fine-tuning steps at K·η̃ inside the theory's U window the pre-training chain's loss is
      U-shaped: rise from the (refined) minimum to the last checkpoint above the SGD-noise floor
  6d  in domain: the fine-tuning chain's loss reached in K steps gets worse for later checkpoints
      where the theory's does

Equivalence margins: a slope or exponent "agrees" when it lies within ±MARGIN (20%) of the
theory's value; a rise "is there" above MIN_EFFECT (0.002 nats: the clean loss moves ≈ 0.001
between neighbouring checkpoints from SGD noise) — fixed conventions, the same for every run.
"""

from __future__ import annotations

import math

import numpy as np

MIN_EFFECT = 0.002  # nats per token
MARGIN = 0.2  # relative equivalence margin for slopes and exponents
LEVEL = 0.95  # confidence level of every interval
RHO_ORDER = -0.7  # prediction 1: Spearman ρ(learning step, s) at most this
RHO_TRACK = 0.7  # prediction 3: Spearman ρ(Δloss, ½σ² tr H) at least this
RHO_GROW = 0.5  # prediction 3: Spearman ρ(Δloss, step) at least this
THRESHOLDS = (0.1, 0.25, 0.5, 0.75)  # prediction 2: a_k = θ s_k counts as learned


# ---------------------------------------------------------------- small statistics


def ranks(x) -> np.ndarray:
    """Average ranks (1-based), ties shared; +inf ranks last (scipy.stats.rankdata)."""
    from scipy import stats

    return stats.rankdata(np.asarray(x, dtype=float), method="average")


def spearman(x, y) -> float:
    """Spearman rank correlation (scipy.stats.spearmanr); nan when either side is constant or
    there are < 3 points."""
    from scipy import stats

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 3 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def paired(a, b):
    """Mean and standard error of a − b over paired draws."""
    d = np.asarray(a, float) - np.asarray(b, float)
    return float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else float("nan")


def interval(values, within_se=None, within_df=None) -> dict:
    """Mean of the per-seed `values` and its LEVEL interval: a t-interval across seeds (n ≥ 2), or with
    one seed its own standard error `within_se` with `within_df` degrees of freedom (normal when None).
    nan values (a seed where the statistic is undefined) are left out and counted."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    n, dropped = int(v.size), len(values) - int(v.size)
    if n >= 2:
        se = float(v.std(ddof=1) / math.sqrt(n))
        lo, hi = stats.t.interval(LEVEL, n - 1, loc=v.mean(), scale=se) if se > 0 else (v.mean(), v.mean())
        how = f"t-interval across {n} seeds"
    elif n == 1 and within_se is not None and math.isfinite(within_se):
        se = float(within_se)
        q = stats.norm.ppf(0.5 + LEVEL / 2) if within_df is None else stats.t.ppf(0.5 + LEVEL / 2, within_df)
        lo, hi = v[0] - q * se, v[0] + q * se
        how = "one seed: its within-run standard error"
    else:
        return {"mean": float(v[0]) if n else float("nan"), "lo": float("nan"), "hi": float("nan"), "n": n,
                "dropped": dropped, "how": "no interval (one seed, no within-run error)" if n else "undefined"}
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "n": n, "dropped": dropped, "how": how}


def rank_interval(values) -> dict:
    """`interval` of a rank correlation; with one seed it has no error of its own and is read as a point."""
    ci = interval(values)
    if ci["n"] == 1:
        ci = dict(ci, lo=ci["mean"], hi=ci["mean"], how="one seed: the rank correlation read as a point")
    return ci


def _nanmean(values) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def judge(ci: dict, lo=-math.inf, hi=math.inf) -> str:
    """held if the interval lies inside [lo, hi], failed if it lies wholly outside, else inconclusive."""
    a, b = ci["lo"], ci["hi"]
    if not (math.isfinite(a) and math.isfinite(b)):
        return "inconclusive"
    if lo <= a and b <= hi:
        return "held"
    if b < lo or a > hi:
        return "failed"
    return "inconclusive"


def deciding(rows) -> dict:
    """The row that decides a combined verdict: the first failed one, else the first inconclusive, else the last."""
    for v in ("failed", "inconclusive"):
        for r in rows:
            if r["verdict"] == v:
                return r
    return rows[-1]


def combine(verdicts) -> str:
    """All held → held; any failed → failed; otherwise inconclusive."""
    verdicts = list(verdicts)
    if verdicts and all(v == "held" for v in verdicts):
        return "held"
    return "failed" if "failed" in verdicts else "inconclusive"


def fmt(ci: dict, digits: int = 3) -> str:
    m, a, b = ci["mean"], ci["lo"], ci["hi"]
    if not math.isfinite(m):
        return "undefined"
    if not (math.isfinite(a) and math.isfinite(b)):
        return f"{m:.{digits}g} (no interval)"
    return f"{m:.{digits}g} [{a:.{digits}g}, {b:.{digits}g}]"


def refined_argmin(steps, curve) -> tuple[float, int]:
    """(step of the minimum refined between checkpoints, index of the checkpoint argmin): the vertex of
    the parabola in log(step) through the argmin and its two neighbours, kept between the neighbours.
    The checkpoint's own step where the argmin is first or last, a neighbour is step 0, or the three
    points do not curve upwards."""
    y = np.asarray(curve, float)
    c = int(np.argmin(y))
    st = np.asarray(steps, float)
    if c < 1 or c >= y.size - 1 or st[c - 1] <= 0:
        return float(st[c]), c
    x = np.log(st[c - 1:c + 2])
    a, b, _ = np.polyfit(x, y[c - 1:c + 2], 2)
    if not a > 0:
        return float(st[c]), c
    return float(math.exp(min(max(-b / (2 * a), x[0]), x[2]))), c


# ---------------------------------------------------------------- mode learning


def learning_steps(steps, strengths, targets, fraction: float = 0.5) -> np.ndarray:
    """Step at which each mode first reaches `fraction` of its target strength (inf if never).

    Interpolated between checkpoints, linearly in log(step) (in step from step 0).
    """
    steps = np.asarray(steps, float)
    a, s = np.asarray(strengths, float), np.asarray(targets, float)
    out = np.full(s.shape, np.inf)
    for k in range(s.size):
        level = fraction * s[k]
        hit = np.nonzero(a[:, k] >= level)[0]
        if hit.size == 0:
            continue
        c = hit[0]
        if c == 0:
            out[k] = steps[0]
            continue
        f = (level - a[c - 1, k]) / (a[c, k] - a[c - 1, k])
        if steps[c - 1] > 0:
            out[k] = math.exp(math.log(steps[c - 1]) + f * (math.log(steps[c]) - math.log(steps[c - 1])))
        else:
            out[k] = steps[c - 1] + f * (steps[c] - steps[c - 1])
    return out


def saxe_fit(t_learn, s):
    """Least squares log(step) = c − β log(s) over learned modes (scipy.stats.linregress):
    (β, se(β), c, n)."""
    from scipy import stats

    ok = np.isfinite(t_learn) & (t_learn > 0)
    n = int(ok.sum())
    if n < 3:
        return float("nan"), float("nan"), float("nan"), n
    fit = stats.linregress(np.log(s[ok]), np.log(t_learn[ok]))
    return float(-fit.slope), float(fit.stderr), float(fit.intercept), n


def predict_order(runs) -> dict:
    per = []
    for r in runs:
        s = np.asarray(r["target_strengths"], float)
        t = learning_steps(r["steps"], r["mode_strengths"], s)
        per.append({"rho": spearman(t, s), "n_learned": int(np.isfinite(t).sum()), "learning_steps": t})
    ci = rank_interval([p["rho"] if p["n_learned"] >= 3 else float("nan") for p in per])
    return {
        "id": "1", "prediction": "modes are learned in order of decreasing s",
        "measured": f"Spearman ρ(step to s_k/2, s_k) = {fmt(ci, 2)} ({ci['how']}); modes learned per seed: "
                    + ", ".join(str(p["n_learned"]) for p in per),
        "criterion": f"{LEVEL:.0%} interval of ρ ≤ {RHO_ORDER} (theory: exactly in order, ρ = −1; unlearned modes "
                     "rank last); a seed with < 3 modes learned is left out; one seed: ρ read as a point",
        "verdict": judge(ci, hi=RHO_ORDER), "statistic": ci, "details": {"per_seed": per},
    }


def theory_timing(result, th=None) -> dict:
    """The theory's exact GD (linear_theory.gd_modes, experiments/theory.py) for this run: step at which each
    mode reaches θ s_k, for every θ in THRESHOLDS, on a dense log grid."""
    from . import theory

    th = theory.from_result(result) if th is None else th
    grid = theory.log_grid(theory.horizon(th, max(THRESHOLDS) + 0.15))
    traj = theory.trajectory(th, grid)
    return {f: learning_steps(grid, traj.mode_strengths, th.s, f) for f in THRESHOLDS}


def predict_timing(runs) -> dict:
    per = []
    for r in runs:
        s = np.asarray(r["target_strengths"], float)
        th_steps = theory_timing(r) if "theory" in r else None
        row = {}
        for f in THRESHOLDS:
            t = learning_steps(r["steps"], r["mode_strengths"], s, f)
            beta, se, c, n = saxe_fit(t, s)
            # the theory's slope over the same modes (those this seed learned by its last checkpoint)
            th = saxe_fit(np.where(np.isfinite(t), th_steps[f], np.inf), s)[0] if th_steps is not None else math.nan
            row[f] = {"slope": beta, "slope_se": se, "intercept": c, "n": n, "theory": th, "diff": beta - th}
        per.append(row)
    rows, verdicts = [], []
    for f in THRESHOLDS:
        ci = interval([p[f]["diff"] for p in per], per[0][f]["slope_se"])
        meas = interval([p[f]["slope"] for p in per], per[0][f]["slope_se"])
        th = _nanmean([p[f]["theory"] for p in per])
        v = judge(ci, -MARGIN * th, MARGIN * th) if math.isfinite(th) else "inconclusive"
        verdicts.append(v)
        rows.append({"threshold": f, "theory": th, "transformer": meas, "difference": ci, "verdict": v})
    text = "; ".join(f"θ={x['threshold']:g}: theory {x['theory']:.2f}, transformer {fmt(x['transformer'], 2)}"
                     for x in rows)
    return {
        "id": "2", "prediction": "learning step ∝ 1/s as the theory's exact GD gives it, at every threshold θ",
        "measured": f"slope −dlog(step to θ s_k)/dlog(s_k): {text} ({rows[0]['transformer']['how']})",
        "criterion": f"at every θ the {LEVEL:.0%} interval of (transformer − theory) slope within ±{MARGIN:g} × the "
                     "theory's slope; theory = exact GD (gd_modes) with the run's spectrum, measured a0 and "
                     "η̃ = lr/(1−β)/V, fitted over the modes the transformer learned",
        "verdict": combine(verdicts), "statistic": deciding(rows)["difference"],
        "details": {"thresholds": rows, "per_seed": per},
    }


# ---------------------------------------------------------------- noise


def noise_rows(result, kind):
    """Indices into result["noise"] rows of one kind, sorted by σ."""
    nz = result["noise"]
    idx = [i for i, k in enumerate(nz["kind"]) if k == kind]
    return sorted(idx, key=lambda i: nz["sigmas"][i])


def turn_up(result, i) -> dict:
    """Minimum of the mean perturbed excess loss for noise row i (refined between checkpoints), and the
    paired rise from it to the last checkpoint and fall to it from step 0, over the same noise draws."""
    nz = result["noise"]
    draws = np.asarray(nz["perturbed_draws"][i], float)  # (C, D)
    step, c = refined_argmin(result["steps"], draws.mean(1))
    last = draws.shape[0] - 1
    rise, rise_se = paired(draws[last], draws[c])
    fall, fall_se = paired(draws[0], draws[c])
    u = 0 < c < last and rise > max(2 * rise_se, MIN_EFFECT) and fall > max(2 * fall_se, MIN_EFFECT)
    return {"sigma": nz["sigmas"][i], "argmin_step": step, "argmin_index": c, "rise": rise, "rise_se": rise_se,
            "fall": fall, "fall_se": fall_se, "draws": draws.shape[1], "turns_up": bool(u)}


def measured_rms(result):
    """(steps, RMS of wte, RMS of lm_head) of a run, or None when not recorded."""
    rms = result.get("matrix_rms") or {}
    keys = ("['wte']", "['lm_head']")
    if not all(k in rms for k in keys):
        return None
    return result["steps"], rms[keys[0]], rms[keys[1]]


def theory_turns(result, kind, sigmas) -> dict:
    """The theory's turn step for each σ within the run's steps (None: no interior minimum rising > MIN_EFFECT
    by the run's last step), for relative noise with each RMS variant (theory.RMS_VARIANTS)."""
    from . import theory

    th = theory.from_result(result)
    # SGD: theory steps are the run's steps (rate map), so the theory is read over the run's own range;
    # Adam has no rate map, so its theory runs to convergence (only the σ-dependence is comparable)
    sgd = result.get("config", {}).get("train", {}).get("optimizer", "sgd") == "sgd"
    traj = theory.trajectory(th, theory.log_grid(th.last_step if sgd else theory.horizon(th)))
    if kind == "absolute":
        return {"absolute": theory.turn_steps(th, kind, sigmas, traj=traj)}
    out = {}
    for rms in theory.RMS_VARIANTS:
        meas = measured_rms(result)
        if rms == "measured" and meas is None:
            continue
        out[rms] = theory.turn_steps(th, kind, sigmas, rms, meas, traj=traj)
    return out


def predict_sensitivity(runs, kind) -> dict | None:
    if not noise_rows(runs[0], kind):
        return None
    per = []
    for r in runs:
        i = noise_rows(r, kind)[0]  # the smallest σ: closest to the second-order (Hessian-trace) regime
        sigma = r["noise"]["sigmas"][i]
        delta = np.asarray(r["noise"]["perturbed_draws"][i], float) - np.asarray(r["excess_loss"], float)[:, None]
        growth, growth_se = paired(delta[-1], delta[0])
        h = r.get("hessian_trace_relative" if kind == "relative" else "hessian_trace")
        rho_h = (spearman(delta.mean(1), 0.5 * sigma**2 * np.asarray(h, float))
                 if h is not None and all(v is not None for v in h) else float("nan"))
        per.append({"sigma": sigma, "draws": delta.shape[1], "growth": growth, "growth_se": growth_se,
                    "rho_step": spearman(r["steps"], delta.mean(1)), "rho_hessian": rho_h, "delta_end": float(delta[-1].mean()),
                    "half_sigma2_trace_end": 0.5 * sigma**2 * h[-1] if h and h[-1] is not None else None})
    g = interval([p["growth"] for p in per], per[0]["growth_se"], per[0]["draws"] - 1)
    rs, rh = rank_interval([p["rho_step"] for p in per]), rank_interval([p["rho_hessian"] for p in per])
    verdict = combine([judge(g, lo=MIN_EFFECT), judge(rs, lo=RHO_GROW), judge(rh, lo=RHO_TRACK)])
    return {
        "id": f"3{kind[0]}", "prediction": f"sensitivity grows with training and tracks ½σ²·tr H ({kind} noise)",
        "measured": f"σ={per[0]['sigma']:g}: paired growth of Δloss from step 0 to the end {fmt(g)} nats; "
                    f"ρ(Δ, step) {fmt(rs, 2)}; ρ(Δ, ½σ² tr H) {fmt(rh, 2)} ({g['how']})",
        "criterion": f"growth interval > {MIN_EFFECT}; ρ(Δ, step) interval ≥ {RHO_GROW}; ρ(Δ, ½σ²trH) interval ≥ "
                     f"{RHO_TRACK} (one seed: the ρ read as points)",
        "verdict": verdict, "statistic": g, "details": {"per_seed": per},
    }


def _theory_u(theory_steps) -> list[bool]:
    return [t is not None for t in theory_steps]


def predict_turn_up(runs, kind) -> dict | None:
    idx0 = noise_rows(runs[0], kind)
    if not idx0:
        return None
    sigmas = [runs[0]["noise"]["sigmas"][i] for i in idx0]
    have_theory = all("theory" in r for r in runs)
    variant = "absolute" if kind == "absolute" else "measured"
    th_u = th_steps = None
    if have_theory:
        turns = theory_turns(runs[0], kind, sigmas)
        variant = variant if variant in turns else "init"
        th_steps = turns[variant]
        th_u = _theory_u(th_steps)
    rows, verdicts = [], []
    for j, sigma in enumerate(sigmas):
        tus = [turn_up(r, noise_rows(r, kind)[j]) for r in runs]
        ci = interval([t["rise"] for t in tus], tus[0]["rise_se"], tus[0]["draws"] - 1)
        interior = all(0 < t["argmin_index"] < len(runs[0]["steps"]) - 1 for t in tus)
        if th_u is None:
            v = "inconclusive"
        elif th_u[j]:
            v = judge(ci, lo=MIN_EFFECT) if interior else "failed"
        else:
            v = judge(ci, hi=MIN_EFFECT) if interior else "held"
        verdicts.append(v)
        rows.append({"sigma": sigma, "theory_u": None if th_u is None else th_u[j],
                     "theory_step": None if th_steps is None else th_steps[j], "rise": ci,
                     "argmin_steps": [t["argmin_step"] for t in tus], "interior_all": interior, "verdict": v})
    text = "; ".join(f"σ={x['sigma']:g}: theory " + (f"U at {x['theory_step']}" if x["theory_u"] else "no U")
                     + f", rise {fmt(x['rise'])} "
                     f"(min at {', '.join(f'{s:.0f}' for s in x['argmin_steps'])})" for x in rows)
    return {
        "id": f"4{kind[0]}", "prediction": f"the perturbed loss turns up exactly where the theory's does ({kind} noise)",
        "measured": text + f" ({rows[0]['rise']['how']})",
        "criterion": f"where the theory's E[L_pert] has an interior minimum rising > {MIN_EFFECT} within the run's "
                     + (f"steps (noise σ·RMS, the {variant} RMS of wte and lm_head)" if kind == "relative" else
                        "steps (noise σ/√V on W̃)")
                     + f", the paired rise to the last checkpoint has its interval > {MIN_EFFECT} "
                     f"and the minimum is interior in every seed; where it has none, the interval < {MIN_EFFECT}",
        "verdict": combine(verdicts), "statistic": deciding(rows)["rise"], "details": {"sigmas": rows},
    }


def _transformer_turns(result, kind):
    """(σ list, refined turn step or None per σ, ordered in σ?) of one run."""
    tus = [turn_up(result, i) for i in noise_rows(result, kind)]
    order = [t["argmin_step"] for t in tus if t["turns_up"]]
    return ([t["sigma"] for t in tus], [t["argmin_step"] if t["turns_up"] else None for t in tus],
            all(b <= a for a, b in zip(order, order[1:])))


def predict_exponent(runs, kind) -> dict | None:
    from .theory import exponent

    idx0 = noise_rows(runs[0], kind)
    if not idx0:
        return None
    sigmas = [runs[0]["noise"]["sigmas"][i] for i in idx0]
    per = []
    for r in runs:
        _, steps_tr, ordered = _transformer_turns(r, kind)
        x, se, n = exponent(sigmas, steps_tr)
        # the theory's exponent over the same σ: those where this seed and the theory both turn
        th = {k: exponent(sigmas, [t if t_tr is not None else None for t, t_tr in zip(v, steps_tr)])
              for k, v in theory_turns(r, kind, sigmas).items()} if "theory" in r else {}
        per.append({"exponent": x, "exponent_se": se, "n_sigma": n, "ordered": ordered,
                    "theory": {k: {"exponent": v[0], "se": v[1], "n_sigma": v[2]} for k, v in th.items()}})
    main = "absolute" if kind == "absolute" else ("measured" if "measured" in per[0]["theory"] else "init")
    meas = interval([p["exponent"] for p in per], per[0]["exponent_se"], max(per[0]["n_sigma"] - 2, 1))
    th = {k: _nanmean([p["theory"][k]["exponent"] for p in per]) for k in per[0]["theory"]}
    gaps = {k: interval([p["exponent"] - p["theory"][k]["exponent"] for p in per], per[0]["exponent_se"],
                        max(per[0]["n_sigma"] - 2, 1)) for k in th}
    x_th = th.get(main, float("nan"))
    if not math.isfinite(x_th):
        verdict, why = "inconclusive", "the theory has fewer than 2 σ with a turn"
    else:
        verdict = judge(gaps[main], -MARGIN * abs(x_th), MARGIN * abs(x_th))
        why = ""
    text = (f"transformer step of the turn ∝ σ^x, x = {fmt(meas, 3)} (regression over the σ that turn up; "
            f"{meas['how']}); theory x: " + ", ".join(f"{k} RMS {v:.2f}" if kind == "relative" else f"{v:.2f}"
                                                       for k, v in th.items()))
    if kind == "relative" and "small-init" in gaps:
        g0 = abs(gaps["small-init"]["mean"])
        said = [f"{k} {fmt(gaps[k], 2)}" for k in ("small-init", "init", "measured") if k in gaps]
        verdicts = [f"{'the init norm' if k == 'init' else 'the measured RMS'} changes |gap| by "
                    f"{abs(gaps[k]['mean']) - g0:+.2f}" for k in ("init", "measured") if k in gaps]
        text += "; gap transformer − theory x with RMS " + ", ".join(said) + ": " + ", ".join(verdicts)
    text += f"; turns ordered in σ in {sum(p['ordered'] for p in per)}/{len(per)} seeds" + (f" ({why})" if why else "")
    return {
        "id": f"5{kind[0]}", "prediction": f"the turn moves as σ^x with the theory's x ({kind} noise)",
        "measured": text,
        "criterion": f"{LEVEL:.0%} interval of (transformer − theory) x within ±{MARGIN:g}·|theory x|; theory x: "
                     f"least-squares over the σ where both turn of the theory's turn steps (exact GD + E[L_pert]"
                     + (f", noise σ·RMS with the transformer's measured RMS of wte and lm_head, init included)"
                        if kind == "relative" else ", absolute σ/√V on W̃)"),
        "verdict": verdict, "statistic": gaps.get(main, meas),
        "details": {"theory_exponent": th, "gaps": gaps, "transformer_exponent": meas, "main": main,
                    "per_seed": per},
    }


# ---------------------------------------------------------------- fine-tuning


def _ft_curve(result, key, r):
    """(C, F) losses after fine-tuning at rate index r, one column per fine-tuning seed."""
    ft = result["finetune"]
    if f"{key}_seeds" in ft:
        return np.asarray(ft[f"{key}_seeds"][r], float)
    return np.asarray(ft[key][r], float)[:, None]


def _rise(result, key, r) -> dict:
    """Refined minimum of the mean curve and the paired rise (over fine-tuning seeds) to the last checkpoint."""
    y = _ft_curve(result, key, r)
    step, c = refined_argmin(result["steps"], y.mean(1))
    rise, se = paired(y[-1], y[c]) if y.shape[1] > 1 else (float(y[-1, 0] - y[c, 0]), float("nan"))
    return {"argmin_step": step, "argmin_index": c, "rise": rise, "rise_se": se, "seeds": y.shape[1],
            "interior": bool(0 < c < y.shape[0] - 1)}


def _theory_ft(result, r, key):
    """The theory's rise (last − min) and U flag at the fine-tuning point r, or None."""
    t = (result.get("theory") or {}).get("finetune") or {}
    curves = t.get("curves")
    if not curves or r >= len(curves):
        return None
    y = np.asarray([math.inf if v is None else v for v in curves[r][key]], float)
    c = int(np.argmin(y))
    return {"k_eta": curves[r]["k_eta"], "rise": float(y[-1] - y[c]), "argmin_step": result["steps"][c],
            "u": bool(0 < c < y.size - 1 and y[-1] - y[c] > MIN_EFFECT)}


def _ft_rows(runs, key):
    rows = []
    for r, rate in enumerate(runs[0]["finetune"]["rates"]):
        rs = [_rise(run, key, r) for run in runs]
        ci = interval([x["rise"] for x in rs], rs[0]["rise_se"], rs[0]["seeds"] - 1)
        th = _theory_ft(runs[0], r, "pretrain_after" if key == "pretrain_excess" else "finetune_after")
        interior = all(x["interior"] for x in rs)
        if th is None:
            v = "inconclusive"
        elif th["u"]:
            v = judge(ci, lo=MIN_EFFECT) if interior else "failed"
        else:
            v = judge(ci, hi=MIN_EFFECT) if interior else "held"
        rows.append({"rate": rate, "theory": th, "rise": ci, "argmin_steps": [x["argmin_step"] for x in rs],
                     "verdict": v})
    return rows


def predict_finetune(runs) -> dict:
    rows = _ft_rows(runs, "pretrain_excess")
    t = (runs[0].get("theory") or {}).get("finetune") or {}
    window = t.get("window")
    head = (f"theory's U window K·η̃ ∈ [{window[0]:.3g}, {window[1]:.3g}] (K = {t.get('k_steps')}); "
            if window else "theory: no U window found; ")
    text = head + "; ".join(
        f"rate {x['rate']:.3g}" + (f" (K·η̃ {x['theory']['k_eta']:.3g}, theory {'U' if x['theory']['u'] else 'no U'}, "
                                   f"rise {x['theory']['rise']:.3f})" if x["theory"] else "")
        + f": rise {fmt(x['rise'])} from the min at " + ", ".join(f"{s:.0f}" for s in x["argmin_steps"])
        for x in rows) + f" ({rows[0]['rise']['how']}; {runs[0]['finetune'].get('seeds', 1)} fine-tuning seeds each)"
    return {
        "id": "6", "prediction": "after fine-tuning inside the theory's U window the pre-training loss is U-shaped",
        "measured": text,
        "criterion": f"at each rate where the theory (finetune_sweep at that K·η̃ on the run's checkpoints) has a U: "
                     f"the pre-training chain's excess loss after fine-tuning has an interior (refined) minimum in "
                     f"every seed and the paired rise from it to the last checkpoint has its interval > "
                     f"{MIN_EFFECT} (the SGD-noise floor); where the theory has none, the interval < {MIN_EFFECT}",
        "verdict": combine(x["verdict"] for x in rows), "statistic": deciding(rows)["rise"],
        "details": {"rates": rows, "window": window},
    }


def predict_in_domain(runs) -> dict:
    rows = _ft_rows(runs, "finetune_excess")
    text = "; ".join(f"rate {x['rate']:.3g}: theory rise {x['theory']['rise']:.3f}, transformer {fmt(x['rise'])}"
                     if x["theory"] else f"rate {x['rate']:.3g}: transformer {fmt(x['rise'])}" for x in rows)
    return {
        "id": "6d", "prediction": "in domain: the fine-tuning loss reached in K steps gets worse for later checkpoints "
                                  "where the theory's does",
        "measured": text,
        "criterion": f"as 6, on the fine-tuning chain's own excess loss after K steps (theory: finetune_sweep's "
                     f"loss on B)",
        "verdict": combine(x["verdict"] for x in rows), "statistic": deciding(rows)["rise"],
        "details": {"rates": rows},
    }


# ---------------------------------------------------------------- all together


SCHEMA = "linear-theory/transformer-run/1"


def compare(results) -> dict:
    """All predictions for one run (a result dict) or several seeds of one configuration (a list)."""
    runs = [results] if isinstance(results, dict) else list(results)
    if not runs or any(r.get("schema") != SCHEMA for r in runs):
        raise ValueError(f"not a transformer run result (schema {SCHEMA})")
    if len({r["steps"][-1] for r in runs}) != 1 or len({tuple(r["noise"]["sigmas"]) for r in runs}) != 1:
        raise ValueError("the runs differ in their steps or noise scales: compare seeds of one configuration")
    kinds = [k for k in ("relative", "absolute") if k in runs[0]["noise"]["kind"]]
    rows = [predict_order(runs), predict_timing(runs)]
    for make in (predict_sensitivity, predict_turn_up, predict_exponent):
        rows += [make(runs, k) for k in kinds]
    rows += [predict_finetune(runs), predict_in_domain(runs)]
    rows = [r for r in rows if r is not None]
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("held", "failed", "inconclusive")}
    return {"preset": runs[0].get("preset"), "variant": runs[0].get("variant"), "steps": runs[0]["steps"][-1],
            "seeds": [r.get("config", {}).get("seed") for r in runs], "min_effect": MIN_EFFECT, "margin": MARGIN,
            "level": LEVEL, "theory": {k: v for k, v in (runs[0].get("theory") or {}).items() if k != "finetune"},
            "predictions": rows, "summary": counts}


def format_comparison(cmp: dict) -> str:
    from linear_theory.output import format_table, wrap

    rows = [[r["id"], r["verdict"], fmt(r["statistic"])] for r in cmp["predictions"]]
    note = ("statistic: the one that decides the verdict (per-row meaning in `measured` below; for 2 the "
            "transformer − theory slope at the deciding θ, for 4/6/6d the rise at the deciding σ or rate, for 5 "
            "the transformer − theory exponent)")
    seeds = ", ".join(str(s) for s in cmp["seeds"])
    out = [wrap(f"{cmp['preset']}/{cmp['variant']}, {cmp['steps']} steps, seeds {seeds}: "
                + ", ".join(f"{n} {v}" for v, n in cmp["summary"].items()), 100)]
    if cmp["theory"].get("lr_note"):
        out.append(wrap(f"theory for this run: {cmp['theory']['lr_note']}; a0 = {cmp['theory']['a0']:.3g} (RMS of "
                        f"the measured initial strengths)", 100))
    out += [format_table(["#", "verdict", f"statistic [{cmp['level']:.0%} interval]"], rows),
            wrap(note, 100), ""]
    for r in cmp["predictions"]:
        out += [wrap(f"[{r['id']}] {r['verdict'].upper()}: {r['prediction']}", 100, "    "),
                wrap(f"    measured:  {r['measured']}", 100, "               "),
                wrap(f"    criterion: {r['criterion']}", 100, "               ")]
    return "\n".join(out)
