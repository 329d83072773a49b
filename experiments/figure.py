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

from .compare import compare, learning_steps, noise_rows, turn_up

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

    fig = Figure(figsize=(15, 8.5), layout="constrained")
    ax = fig.subplots(2, 3)

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

    # (b) Saxe timing
    t = learning_steps(result["steps"], a, s)
    ok = np.isfinite(t)
    sax = verdicts.get("2", {}).get("details", {})
    ax[0, 1].scatter(s[ok], t[ok], c=[colors[k] for k in np.nonzero(ok)[0]], s=14)
    if ok.sum() >= 3 and np.isfinite(sax.get("slope", np.nan)):
        grid = np.geomspace(s[ok].min(), s[ok].max(), 50)
        ax[0, 1].plot(grid, np.exp(sax["intercept"] - sax["slope"] * np.log(grid)), "k--", lw=1,
                      label=f"fit: step ∝ s^-{sax['slope']:.2f}")
        ax[0, 1].legend(fontsize=8)
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

    # (d) perturbed loss and its turn; predicted turns of held-out σ as markers on the axis
    for kind, ls in (("relative", "-"), ("absolute", "--")):
        preds = {rid: {p["sigma"]: p["predicted_step"] for p in verdicts.get(rid, {}).get("details", {})
                       .get("predictions", [])} for rid in (f"5{kind[0]}", f"5{kind[0]}s")}
        for i in noise_rows(result, kind):
            sig = nz["sigmas"][i]
            p = np.asarray(nz["perturbed_loss"][i])
            line, = ax[1, 0].plot(x, p, ls, label=f"{kind[:3]} σ={sig:g}")
            tu = turn_up(result, i)
            if tu["turns_up"]:
                c = tu["argmin_index"]
                ax[1, 0].plot(x[c], p[c], "o", color=line.get_color())
            for rid, marker in ((f"5{kind[0]}", "v"), (f"5{kind[0]}s", "^")):
                t_hat = preds[rid].get(sig)
                if t_hat is not None and np.isfinite(t_hat) and t_hat <= steps[-1]:
                    ax[1, 0].plot(t_hat, 0.02 if marker == "^" else 0.98, marker, color=line.get_color(),
                                  transform=ax[1, 0].get_xaxis_transform(), clip_on=False)
    ax[1, 0].plot(x, result["excess_loss"], "k-", lw=2, label="clean")
    ax[1, 0].set(xscale="log", xlabel="step", ylabel="perturbed excess loss (nats)",
                 title="(d) perturbed loss: ● turn, ▼ σ² and ▲ spectral predictions\n"
                 + tag("4r", "4a", "5r", "5a", "5rs", "5as").strip())
    ax[1, 0].legend(fontsize=7, ncol=2)

    # (e) spectral view
    learned = (a >= s / 2).sum(1)
    ax[1, 1].plot(x, learned, "k-", lw=2, label="modes with a_k ≥ s_k/2")
    for i in range(len(nz["sigmas"])):
        ax[1, 1].plot(x, nz["modes_above_floor"][i], "--" if nz["kind"][i] == "absolute" else "-",
                      label=f"above floor, {nz['kind'][i][:3]} σ={nz['sigmas'][i]:g}")
    ax[1, 1].set(xscale="log", xlabel="step", ylabel="modes", title="(e) modes above the noise floor ‖M̃ − M‖₂/V")
    ax[1, 1].legend(fontsize=7)

    # (f) fine-tuning: error bars ±σ, the checkpoint-to-checkpoint noise of each curve (prediction 6);
    # a turn is marked only where it beats its uncertainty
    pre = np.asarray(ft["pretrain_excess"], float)
    judged = {row["rate"]: row for row in verdicts.get("6", {}).get("details", {}).get("rates", [])}
    for j, rate in enumerate(ft["rates"]):
        row = judged.get(rate, {})
        noise = row.get("checkpoint_noise")
        err = noise if noise is not None and np.isfinite(noise) else None
        line = ax[1, 2].errorbar(x, pre[j], yerr=err, fmt="-o", ms=3, capsize=2, lw=1,
                                 label=f"pre-training chain after FT, rate {rate:g}" + (f" (±{err:.3f})" if err else ""))
        if row.get("turns_up"):
            c = row["argmin_index"]
            ax[1, 2].plot(x[c], pre[j][c], "*", ms=11, color=line[0].get_color(), zorder=5)
        ax[1, 2].plot(x, np.asarray(ft["finetune_excess"][j]), ":", label=f"fine-tuning chain, rate {rate:g}")
    ax[1, 2].plot(x, result["excess_loss"], "k-", lw=2, label="pre-training chain, before FT")
    ax[1, 2].set(xscale="log", xlabel="pre-training step", ylabel="excess loss (nats)",
                 title=f"(f) fine-tuning {ft['steps']} steps (★ a U beyond its noise)" + tag("6"))
    ax[1, 2].legend(fontsize=7)

    for a_ in ax.flat:
        a_.title.set_fontsize(10)
    summary = ", ".join(f"{n} {v}" for v, n in comparison["summary"].items())
    fig.suptitle(f"Transformer check, {result['preset']}/{result['variant']}: {summary}")
    data = {"steps": steps.tolist(), "target_strengths": s.tolist(), "mode_strengths": a.tolist(),
            "learning_steps": t.tolist(), "noise": data_noise, "finetune_pretrain_excess": pre.tolist(),
            "verdicts": {k: v["verdict"] for k, v in verdicts.items()}}
    return fig, data


def _cmap(n):
    import matplotlib

    cm = matplotlib.colormaps["viridis"]
    return [cm(i / max(n - 1, 1)) for i in range(n)]
