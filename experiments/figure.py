"""The transformer check in one figure: a run's measurements next to the theory's predictions.

transformer_figure(result, comparison) → (Figure, data). `result` is the dict written by
`linear-theory transformer` (RUN_DIR/result.json), `comparison` what
`experiments.compare.compare` makes of it (computed here when not given).

Owned by `experiments` (it draws the comparison's verdicts); it depends on matplotlib and
`experiments.compare` only, never on the `figures` package.
"""

from __future__ import annotations

import functools

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from .compare import compare, learning_steps, noise_rows, theory_timing, turn_up

RC = {"font.family": "DejaVu Sans", "font.size": 8.5, "legend.frameon": False, "axes.grid": True,
      "grid.alpha": 0.25, "axes.spines.top": False, "pdf.fonttype": 42}


def _styled(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with mpl.rc_context(RC):
            return fn(*args, **kwargs)

    return wrapper


@_styled
def transformer_figure(result: dict, comparison: dict | None = None):
    if comparison is None:
        comparison = compare(result)
    verdicts = {p["id"]: p for p in comparison["predictions"]}
    steps = np.asarray(result["steps"], float)
    x = np.maximum(steps, 1.0)  # log axis: step 0 drawn at 1
    s = np.asarray(result["target_strengths"], float)
    a = np.asarray(result["mode_strengths"], float)
    nz, ft = result["noise"], result["finetune"]

    fig = Figure(figsize=(20, 8.5), layout="constrained")
    ax = fig.subplots(2, 4)

    def tag(*ids):
        """The verdicts of the predictions a panel shows, each named: "[4r failed, 4a held]"."""
        shown = [f"{i} {verdicts[i]['verdict']}" for i in ids if i in verdicts]
        return f" [{', '.join(shown)}]" if shown else ""

    # (a) mode strengths relative to target
    colors = _cmap(s.size)
    for k in range(s.size):
        ax[0, 0].plot(x, a[:, k] / s[k], color=colors[k], lw=0.8)
    ax[0, 0].axhline(0.5, color="k", ls=":", lw=0.8)
    ax[0, 0].set(xscale="log", xlabel="step", ylabel="a_k / s_k", title="(a) learned mode strengths (dark: large s)")
    ax2 = ax[0, 0].twinx()
    ax2.plot(x, result["excess_loss"], "k-", lw=2, label="excess loss")
    ax2.set_ylabel("excess loss (nats)")
    ax2.legend(loc="center left", fontsize=8)

    # (b) timing: steps to s_k/2, the transformer's and the theory's exact GD for this run
    t = learning_steps(result["steps"], a, s)
    ok = np.isfinite(t)
    ax[0, 1].scatter(s[ok], t[ok], c=[colors[k] for k in np.nonzero(ok)[0]], s=14, label="transformer")
    if "theory" in result:
        t_th = theory_timing(result)[0.5]
        fin = np.isfinite(t_th)
        ax[0, 1].plot(s[fin], t_th[fin], "k--", lw=1, label="theory (exact GD, η̃ = lr/(1−β)/V, measured a0)")
    ax[0, 1].legend(fontsize=7)
    ax[0, 1].set(xscale="log", yscale="log", xlabel="s_k", ylabel="step to reach s_k / 2",
                 title="(b) order and timing" + tag("1", "2"))

    # (c) sensitivity and its proxy
    data_noise = []
    for kind, ls in (("relative", "-"), ("absolute", "--")):
        for i in noise_rows(result, kind):
            d = np.asarray(nz["delta_loss"][i])
            ax[0, 2].plot(x, np.maximum(d, 1e-6), ls, label=f"{kind[:3]} σ={nz['sigmas'][i]:g}")
            data_noise.append({"kind": kind, "sigma": nz["sigmas"][i], "delta_loss": d.tolist()})
    for kind, key in (("relative", "hessian_trace_relative"), ("absolute", "hessian_trace")):
        rows = noise_rows(result, kind)
        h = result.get(key)
        if rows and h is not None and all(v is not None for v in h):
            sig = nz["sigmas"][rows[0]]
            ax[0, 2].plot(x, np.maximum(0.5 * sig**2 * np.asarray(h), 1e-6), ":", color="gray", lw=1.5,
                          label=f"½σ²trH ({kind[:3]} σ={sig:g})")
    ax[0, 2].set(xscale="log", yscale="log", xlabel="step", ylabel="Δloss (nats)",
                 title="(c) sensitivity to weight noise" + tag("3r", "3a"))
    ax[0, 2].legend(fontsize=7, ncol=2)

    # (d) perturbed loss and its turn (● the transformer's refined minimum where it turns up)
    for kind, ls in (("relative", "-"), ("absolute", "--")):
        for i in noise_rows(result, kind):
            sig = nz["sigmas"][i]
            p = np.asarray(nz["perturbed_loss"][i])
            line, = ax[1, 0].plot(x, p, ls, label=f"{kind[:3]} σ={sig:g}")
            tu = turn_up(result, i)
            if tu["turns_up"]:
                ax[1, 0].plot(tu["argmin_step"], p[tu["argmin_index"]], "o", color=line.get_color())
    ax[1, 0].plot(x, result["excess_loss"], "k-", lw=2, label="clean")
    ax[1, 0].set(xscale="log", xlabel="step", ylabel="perturbed excess loss (nats)",
                 title="(d) perturbed loss (● refined turn)\n" + tag("4r", "4a", "5r", "5a").strip())
    ax[1, 0].legend(fontsize=7, ncol=2)

    # (e) spectral view
    learned = (a >= s / 2).sum(1)
    ax[1, 1].plot(x, learned, "k-", lw=2, label="modes with a_k ≥ s_k/2")
    for i in range(len(nz["sigmas"])):
        ax[1, 1].plot(x, nz["modes_above_floor"][i], "--" if nz["kind"][i] == "absolute" else "-",
                      label=f"above floor, {nz['kind'][i][:3]} σ={nz['sigmas'][i]:g}")
    ax[1, 1].set(xscale="log", xlabel="step", ylabel="modes", title="(e) modes above the noise floor ‖M̃ − M‖₂/V")
    ax[1, 1].legend(fontsize=7)

    # (f) fine-tuning: mean over fine-tuning seeds ± its standard error; ★ where prediction 6 holds at that rate
    pre = np.asarray(ft["pretrain_excess"], float)
    post_b = np.asarray(ft["finetune_excess"], float)
    judged = verdicts.get("6", {}).get("details", {}).get("rates", [])
    for j, rate in enumerate(ft["rates"]):
        seeds = np.asarray(ft.get("pretrain_excess_seeds", [[[v] for v in row] for row in pre])[j], float)
        err = seeds.std(1, ddof=1) / np.sqrt(seeds.shape[1]) if seeds.shape[1] > 1 else None
        line = ax[1, 2].errorbar(x, pre[j], yerr=err, fmt="-o", ms=3, capsize=2, lw=1, label=f"after FT, rate {rate:.3g}")
        row = judged[j] if j < len(judged) else {}
        if row.get("verdict") == "held":
            c = int(np.argmin(pre[j]))
            ax[1, 2].plot(x[c], pre[j][c], "*", ms=11, color=line[0].get_color(), zorder=5)
    ax[1, 2].plot(x, result["excess_loss"], "k-", lw=2, label="before FT")
    ax[1, 2].set(xscale="log", xlabel="pre-training step", ylabel="pre-training chain excess loss (nats)",
                 title=f"(f) fine-tuning {ft['steps']} steps (★ a U that holds)" + tag("6"))
    ax[1, 2].legend(fontsize=7)

    # (g) trade-off after fine-tuning: pre-training chain against fine-tuning chain, one point per checkpoint
    for j, rate in enumerate(ft["rates"]):
        ax[1, 3].plot(post_b[j], pre[j], "-", lw=0.8, color="gray")
        sc = ax[1, 3].scatter(post_b[j], pre[j], c=np.log10(x), cmap="viridis", s=16,
                              marker="osD^v"[j % 5], label=f"rate {rate:.3g}")
    fig.colorbar(sc, ax=ax[1, 3], label="log10 pre-training step")
    ax[1, 3].set(xlabel="fine-tuning chain excess loss after FT (nats)", ylabel="pre-training chain excess loss after FT",
                 title="(g) trade-off after fine-tuning" + tag("6d"))
    ax[1, 3].legend(fontsize=7)

    # (h) timing slope against the threshold θ: theory and transformer (interval across seeds)
    rows = verdicts.get("2", {}).get("details", {}).get("thresholds", [])
    if rows:
        th = [r["threshold"] for r in rows]
        ax[0, 3].plot(th, [r["theory"] for r in rows], "k--o", ms=4, label="theory (exact GD for this run)")
        m = np.array([r["transformer"]["mean"] for r in rows])
        lo = np.array([r["transformer"]["lo"] for r in rows])
        hi = np.array([r["transformer"]["hi"] for r in rows])
        ax[0, 3].errorbar(th, m, yerr=np.vstack([m - lo, hi - m]) if np.all(np.isfinite(lo)) else None, fmt="-o",
                          ms=4, capsize=3, label="transformer (95% interval)")
        ax[0, 3].legend(fontsize=7)
    ax[0, 3].set(xlabel="θ: mode learned when a_k = θ s_k", ylabel="slope −dlog(step)/dlog(s)",
                 title="(h) timing slope vs threshold" + tag("2"))

    for a_ in ax.flat:
        a_.title.set_fontsize(10)
    summary = ", ".join(f"{n} {v}" for v, n in comparison["summary"].items())
    fig.suptitle(f"Transformer check, {result['preset']}/{result['variant']}: {summary}")
    data = {"steps": steps.tolist(), "target_strengths": s.tolist(), "mode_strengths": a.tolist(),
            "learning_steps": t.tolist(), "noise": data_noise, "finetune_pretrain_excess": pre.tolist(),
            "finetune_finetune_excess": post_b.tolist(),
            "verdicts": {k: v["verdict"] for k, v in verdicts.items()}}
    return fig, data


def _cmap(n):
    import matplotlib

    cm = matplotlib.colormaps["viridis"]
    return [cm(i / max(n - 1, 1)) for i in range(n)]
