"""Figure 4, the phase diagram: E[L_pert] over (σ, steps) along one exact GD trajectory.

Overlaid: the exact inflection step for every σ (argmin over all steps), its analytic
estimate (closed-form flow on per-mode clocks, `linear_theory._inflection`), and the
learning step of each mode. The right axis reads σ
as the critical singular value s*(σ) = σ²(d_in + d_out): a mode whose s_i lies below it
is harmful (THEORY.md §4). Each mode's learning step is dotted at the σ where s*(σ) = s_i,
the point where the theory says the turn should be.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from matplotlib.colors import LogNorm
from matplotlib.ticker import FuncFormatter

from linear_theory import phase_diagram

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher


OFF_FACTOR = 2.0  # the estimate is marked where it is off the exact turn by more than this factor
MAX_LINES = 6  # at most this many learning-step lines (modes spread over the σ range)


@dataclasses.dataclass(frozen=True)
class PhaseConfig(Problem):
    """Grid of the phase diagram: σ log-spaced in [sigma_min, sigma_max], steps log-spaced."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    spectrum: str = "power:16:1:1"
    lr: float = 0.5
    sigma_min: float = 0.015
    sigma_max: float = 0.2
    n_sigmas: int = 80
    max_steps: int = 3000
    n_steps: int = 160

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, sigma_min=0.05, sigma_max=0.3,
                   n_sigmas=8, max_steps=400, n_steps=30)


@st.styled
def make_phase(config: PhaseConfig = PhaseConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s = teacher.s
    sigmas = np.geomspace(c.sigma_min, c.sigma_max, c.n_sigmas)
    pd = phase_diagram(teacher, c.lr, sigmas, c.max_steps, c.n_steps, c.init_strength, c.d_hidden)
    epl = pd.expected_perturbed_loss
    excess = epl / epl.min(axis=1, keepdims=True)
    after = pd.steps[None, :] >= pd.inflection_step[:, None]
    rise_max = max(float(excess[after].max()), 1.0 + 1e-6)
    d = c.d_in + c.d_out
    sigma_of = np.sqrt(s / d)  # σ at which s*(σ) = s_i

    fig, axes = st.new_figure(1, 2, width=11.0, height=4.6, sharey=True)
    steps, z_raw, z_rel = st.positive(pd.steps, epl, excess)
    panels = [
        (axes[0, 0], z_raw, LogNorm(z_raw.min(), z_raw.max()), st.PERTURBED_LOSS, "Expected perturbed loss"),
        (axes[0, 1], z_rel, LogNorm(1.0, rise_max),
         r"$\mathbb{E}[L_\mathrm{pert}]\ /\ \min_\mathrm{steps} \mathbb{E}[L_\mathrm{pert}]$ at that σ",
         "Relative to the best checkpoint at each σ (colour scale: the rise after it)"),
    ]
    # the estimate against the exact turn: where they differ by more than OFF_FACTOR, say so on the plot
    exact = np.maximum(pd.inflection_step, 1).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = pd.inflection_step_estimate / exact
    off = ~(np.abs(np.log(ratio)) <= np.log(OFF_FACTOR))  # nan (no estimate) counts as off
    # learning steps drawn only for the modes whose s_i = s*(σ) falls inside the σ range, at most MAX_LINES
    shown = [i for i, k in enumerate(pd.mode_learning_steps) if k > 0 and sigmas[0] <= sigma_of[i] <= sigmas[-1]]
    shown = [shown[j] for j in np.unique(np.linspace(0, len(shown) - 1, min(len(shown), MAX_LINES)).astype(int))] \
        if shown else []
    for ax, z, norm, label, title in panels:
        mesh = ax.pcolormesh(steps, sigmas, z, norm=norm, cmap=st.HEAT_CMAP, shading="nearest", rasterized=True)
        # colour bars below their panel, so no label sits between the panels
        cb = fig.colorbar(mesh, ax=ax, location="bottom", pad=0.02, shrink=0.85, aspect=40,
                          extend="max" if z is z_rel else "neither")
        cb.set_label(label)
        cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        label_minor = z is z_rel  # the ratio spans less than a decade: label its minor ticks too
        cb.ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _, on=label_minor: f"{v:g}" if on else ""))
        ax.plot(exact, sigmas, color="white", lw=2.0, label="inflection step (exact)")
        ax.plot(pd.inflection_step_estimate, sigmas, color="#7fdbff", ls="--", lw=1.5,
                label="estimate (flow on per-mode clocks)")
        if off.any():
            est = np.where(off, pd.inflection_step_estimate, np.nan)
            ax.plot(est, sigmas, "x", color="#ff4136", ms=4, mew=1.0,
                    label=f"estimate off the exact turn by > {OFF_FACTOR:g}×")
        for i in shown:
            col = st.mode_color(s[i])
            ax.axvline(pd.mode_learning_steps[i], color=col, lw=0.8, ls=":", alpha=0.7)
            ax.plot(pd.mode_learning_steps[i], sigma_of[i], "o", color=col, mec="white", mew=0.8, ms=5)
        ax.plot([], [], ":", color="0.5", label="learning step of mode i (colour: $s_i$)")
        ax.plot([], [], "o", color="0.5", mec="white", label=r"... at the σ where $s^*(\sigma) = s_i$")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(steps[0], steps[-1])
        ax.set_ylim(sigmas[0], sigmas[-1])
        ax.set_xlabel(st.STEPS + f"  (flow time = {c.lr:g} × steps)")
        ax.set_title(title)
        ax.grid(False)
    right = axes[0, 1].secondary_yaxis("right", functions=(lambda x: x**2 * d, lambda y: np.sqrt(np.maximum(y, 0) / d)))
    right.set_ylabel(r"$s^*(\sigma) = \sigma^2 (d_\mathrm{in} + d_\mathrm{out})$")
    axes[0, 0].set_ylabel(st.SIGMA + " (weight units)")
    axes[0, 1].legend(loc="upper right", labelcolor="white", fontsize=7, frameon=True, facecolor="0.3",
                      edgecolor="none", framealpha=0.85)

    pick = [0, c.n_sigmas // 2, c.n_sigmas - 1]
    data = dict(
        description="E[L_pert] over (σ, steps) with inflection curve, mode learning steps and s*(σ)",
        config=config_dict(c),
        units={"steps": "GD steps", "sigma": "noise std per weight entry", "loss": "½‖·‖²_F expected over the noise",
               "critical_singular_value": "σ²(d_in + d_out), units of s_i"},
        singular_values=s,
        sigmas=sigmas,
        steps=pd.steps,
        expected_perturbed_loss=epl,
        clean_loss=pd.clean_loss,
        mode_strengths=pd.mode_strengths,
        critical_singular_value=pd.critical_singular_value,
        inflection_step=pd.inflection_step,
        inflection_step_estimate=pd.inflection_step_estimate,
        estimate_over_exact=ratio,
        estimate_off_by_more_than_factor=dict(factor=OFF_FACTOR, sigmas=sigmas[off]),
        learning_steps_drawn_for_modes=shown,
        mode_learning_steps=pd.mode_learning_steps,
        sigma_where_mode_turns_harmful=sigma_of,
        predictions={
            f"σ = {sigmas[j]:.3g}: inflection step exact / estimate": f"{pd.inflection_step[j]} / "
            f"{pd.inflection_step_estimate[j]:.0f}" for j in pick
        },
    )
    return fig, data
