"""Figure 8, sensitivity is sharpness: E[L_pert] − L against tr(H) along training.

For any weights (whitened inputs) and noise of std σ on every entry of both layers,
E[L_pert] − L = ½σ² tr(H) + ½σ⁴ d_in h d_out with tr(H) = d_in‖W2‖² + d_out‖W1‖² the exact
Hessian trace (THEORY.md §4). Checked here on full-matrix GD from a random init (not
aligned, not balanced): tr(H) from the weights and by Hutchinson probes (JAX
Hessian-vector products), the loss increase by Monte Carlo over noise draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib.colors import LogNorm

from linear_theory import simulate_gd
from linear_theory import hessian_trace, hutchinson_hessian_trace, monte_carlo_perturbed_loss
from linear_theory import log_steps

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher

MARKERS = ("o", "s", "D", "^", "v")


@dataclasses.dataclass(frozen=True)
class SharpnessConfig(Problem):
    """Random-init full-matrix GD (`init_std`); checkpoints log-spaced; Monte Carlo and Hutchinson sizes."""

    init_std: float = 1e-3
    seed: int = 0
    max_steps: int = 3000
    n_checkpoints: int = 16
    n_lines: int = 150
    sigmas: tuple = (0.03, 0.1)
    n_draws: int = 2000
    n_probes: int = 200

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.3", d_in=6, d_hidden=4, d_out=5, max_steps=600, n_checkpoints=6, n_lines=30, sigmas=(0.05, 0.2),
                   n_draws=400, n_probes=50)


@st.styled
def make_sharpness(config: SharpnessConfig = SharpnessConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    sigmas = np.asarray(c.sigmas, dtype=float)
    steps = log_steps(c.max_steps, c.n_checkpoints)
    line_steps = np.union1d(steps, log_steps(c.max_steps, c.n_lines))
    sim = simulate_gd(teacher, c.d_hidden, c.lr, line_steps, init="random", init_std=c.init_std, seed=c.seed,
                      record_weights=True)
    line_trace = hessian_trace(sim.W1, sim.W2)
    pick = np.isin(line_steps, steps)
    W1, W2, loss = sim.W1[pick], sim.W2[pick], sim.loss[pick]
    trace = line_trace[pick]
    hutch, hutch_se = hutchinson_hessian_trace(W1, W2, teacher, c.n_probes, c.seed)
    mc, mc_se = [], []
    for k, sigma in enumerate(sigmas):
        m, e = monte_carlo_perturbed_loss(W1, W2, teacher, sigma, n_draws=c.n_draws, seed=c.seed + 1 + k)
        mc.append(m - loss)
        mc_se.append(e)
    mc, mc_se = np.array(mc), np.array(mc_se)
    floor = 0.5 * sigmas**4 * c.d_in * c.d_hidden * c.d_out
    grid = np.geomspace(trace.min() / 1.5, trace.max() * 1.5, 200)
    theory = 0.5 * sigmas[:, None] ** 2 * grid + floor[:, None]

    fig, axes = st.new_figure(1, 2, width=11.0, height=4.4)
    axh, ax = axes[0]
    x, hu, hs = st.positive(steps, hutch, hutch_se)
    axh.plot(*st.positive(line_steps, line_trace), color=st.THEORY_COLOR, label=r"exact $d_\mathrm{in}\|W_2\|^2 + d_\mathrm{out}\|W_1\|^2$")
    sure = hs < hu / 3  # early on the probe variance (off-diagonal Hessian) swamps a tiny trace
    axh.errorbar(x[sure], hu[sure], yerr=hs[sure], fmt="o", color=st.MC_COLOR, mfc="white", capsize=2, ms=4,
                 label=f"Hutchinson, {c.n_probes} probes, ±1 s.e.\n(where s.e. < ⅓ of the estimate)")
    axh.set_yscale("log")
    axh.set_ylabel(r"$\mathrm{tr}\,H$ (loss units per weight unit²)")
    axh.set_title("Sharpness grows as modes are learned (random init)")
    axh.legend(loc="upper left")
    st.steps_axis(axh, c.lr)

    norm = LogNorm(max(steps[steps > 0].min(), 1), steps.max())
    colors = st.sequential_colors(sigmas.size)
    for k, sigma in enumerate(sigmas):
        ax.plot(grid, theory[k], color=colors[k], lw=1.2,
                label=f"σ = {sigma:g}: ½σ² tr H + ½σ⁴ $d_\\mathrm{{in}}$h$d_\\mathrm{{out}}$")
        ax.errorbar(trace, mc[k], yerr=mc_se[k], fmt="none", ecolor="0.5", lw=0.8, capsize=1.5, zorder=2)
        sc = ax.scatter(trace, mc[k], c=np.maximum(steps, 1), cmap="cividis", norm=norm,
                        marker=MARKERS[k % len(MARKERS)], s=28, edgecolors="0.2", linewidths=0.5, zorder=3)
        ax.scatter([], [], marker=MARKERS[k % len(MARKERS)], c="0.6", edgecolors="0.2",
                   label=f"σ = {sigma:g}: Monte Carlo ({c.n_draws} draws)")
    cb = fig.colorbar(sc, ax=ax, pad=0.02)
    cb.set_label("GD steps at the checkpoint (0 shown as 1)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(st.HESSIAN_TRACE)
    ax.set_ylabel(st.SENSITIVITY)
    ax.set_title("Sensitivity to noise is sharpness: exact for any weights")
    ax.legend(loc="upper left")

    z = (mc - (0.5 * sigmas[:, None] ** 2 * trace + floor[:, None])) / mc_se
    data = dict(
        description="Monte Carlo loss increase under noise against tr(H) along random-init GD, with the exact line",
        config=config_dict(c),
        units={"steps": "GD steps", "hessian_trace": "exact trace of the Hessian of L in (W1, W2)",
               "sensitivity": "E[L_pert] − L, loss units (½‖·‖²)", "sigma": "noise std per weight entry"},
        singular_values=teacher.s,
        sigmas=sigmas,
        steps=steps,
        hessian_trace=trace,
        hessian_trace_line=dict(steps=line_steps, exact=line_trace),
        hutchinson=dict(estimate=hutch, stderr=hutch_se, probes=c.n_probes),
        monte_carlo=dict(sensitivity=mc, stderr=mc_se, n_draws=c.n_draws),
        exact_sensitivity=0.5 * sigmas[:, None] ** 2 * trace + floor[:, None],
        noise_floor=floor,
        z_scores=z,
        predictions={
            "tr H at first / last checkpoint": f"{trace[0]:.3g} / {trace[-1]:.4g}",
            "max |MC − exact| / s.e. over checkpoints and σ": f"{np.abs(z).max():.2f}",
        },
    )
    return fig, data
