"""Figure 1, learning dynamics: mode strengths a_i(t) and the staircase loss.

Lines: the closed-form gradient flow (THEORY.md §3) at flow time lr × steps. Markers:
full-matrix gradient descent from a random Gaussian init. A small random init is not
aligned, but its early dynamics are linear: mode i grows along the balanced direction
(W1 v_i + W2ᵀ u_i)/2 of the hidden space at rate 2 s_i, so the closed form is drawn from
the per-mode effective strength a0_i = ‖(W1(0) v_i + W2(0)ᵀ u_i)/2‖² of that same init
(≈ h ε²/2 on average), with no fitted parameter. GD's measured strength u_iᵀW2W1v_i starts
lower (a product of two independent random vectors, of either sign): the early markers sit
below the lines until the growing part dominates, as the legend says.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import gradient_flow, init_weights, learning_time, simulate_gd
from linear_theory import log_steps

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher, first_crossing


@dataclasses.dataclass(frozen=True)
class DynamicsConfig(Problem):
    """Teacher, network and run of the learning-dynamics figure (times in GD steps);
    random init of std `init_std`."""

    init_std: float = 1e-3
    seed: int = 0
    max_steps: int = 4000
    n_markers: int = 34
    n_lines: int = 300

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.3", d_in=6, d_hidden=4, d_out=5, max_steps=800, n_markers=12, n_lines=60)


def effective_init_strength(teacher, W1, W2) -> np.ndarray:
    """a0_i = ‖(W1 v_i + W2ᵀ u_i)/2‖²: the part of an init that grows with mode i."""
    return np.sum(((W1 @ teacher.V + W2.T @ teacher.U) / 2) ** 2, axis=0)


@st.styled
def make_dynamics(config: DynamicsConfig = DynamicsConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s = teacher.s
    W1, W2 = init_weights(teacher, c.d_hidden, "random", init_std=c.init_std, seed=c.seed)
    a0 = effective_init_strength(teacher, W1, W2)

    line_steps = log_steps(c.max_steps, c.n_lines)
    flow = gradient_flow(teacher, c.lr * line_steps, a0, c.d_hidden)
    marker_steps = log_steps(c.max_steps, c.n_markers)
    gd = simulate_gd(teacher, c.d_hidden, c.lr, marker_steps, init="random", init_std=c.init_std, seed=c.seed)
    learned = np.arange(s.size) < c.d_hidden
    t_flow = np.where(learned, learning_time(s, a0) / c.lr, np.nan)
    t_gd = [first_crossing(marker_steps, gd.mode_strengths[:, i], s[i] / 2) for i in range(s.size)]

    fig, axes = st.new_figure(2, 1, height=6.6, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    ax, axl = axes[:, 0]
    x_line, a_line, l_line = st.positive(line_steps, flow.mode_strengths.T, flow.loss)
    x_mark, a_mark, l_mark = st.positive(marker_steps, gd.mode_strengths.T, gd.loss)
    for i in range(s.size):
        col = st.mode_color(s[i])
        ax.plot(x_line, a_line[i], color=col)
        ax.plot(x_mark, a_mark[i], "o", color=col, mfc="none", mew=1.0, ms=4.5)
        ax.axhline(s[i], color=col, ls="--", lw=0.6, alpha=0.6)
        if np.isfinite(t_flow[i]):
            for a_ in (ax, axl):
                st.mark_vertical(a_, t_flow[i], col, lw=0.8, alpha=0.6)
    ax.set_yscale("log")
    ax.set_ylim(0.3 * a0.min(), 2.5 * s.max())
    ax.set_ylabel(st.MODE_STRENGTH)
    ax.plot([], [], color="0.3", label=r"closed-form flow from $a_{0,i} = \|(W_1 v_i + W_2^\top u_i)/2\|^2$ "
                                       r"of the same init")
    ax.plot([], [], "o", color="0.3", mfc="none",
            label=f"full-matrix GD, random init (std {c.init_std:g}); early: " + r"$u_i^\top W_2W_1 v_i < a_{0,i}$")
    ax.plot([], [], ":", color="0.3", label=r"learning step $\ln(s_i/a_0 - 1)/(2 s_i \eta)$")
    ax.plot([], [], "--", color="0.3", lw=0.6, label=r"target $s_i$")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2)
    ax.set_title("Modes are learned one by one, largest first")
    st.steps_axis(ax, c.lr, label="")
    ax.tick_params(labelbottom=True)

    axl.plot(x_line, l_line, color=st.THEORY_COLOR, label="closed form")
    axl.plot(x_mark, l_mark, "o", color=st.MC_COLOR, mfc="none", mew=1.0, ms=4.5, label="full-matrix GD, random init")
    axl.set_yscale("log")
    axl.set_ylim(max(1e-4 * l_line.max(), l_line.min() / 2), 2 * l_line.max())
    axl.set_ylabel(st.LOSS)
    axl.legend(loc="lower left")
    axl.set_title(f"The loss falls in a staircase ($d_\\mathrm{{in}}$ = {c.d_in}, h = {c.d_hidden}, "
                  f"$d_\\mathrm{{out}}$ = {c.d_out}, whitened inputs)")
    st.steps_axis(axl, None)
    st.mode_colorbar(fig, axes[:, 0], s, shrink=0.7, pad=0.02)

    data = dict(
        description="mode strengths and loss: closed-form gradient flow vs full-matrix GD from random init",
        config=config_dict(c),
        units={"steps": "GD steps", "flow_time": "lr × steps", "loss": "½‖W2W1 − A‖²_F (whitened)",
               "mode_strengths": "u_iᵀ W2 W1 v_i on the teacher's fixed singular pairs"},
        singular_values=s,
        effective_init_strength=a0,
        closed_form_init="a0_i = ‖(W1(0) v_i + W2(0)ᵀ u_i)/2‖², the part of the random init that grows with mode "
                         "i; GD's u_iᵀW2W1v_i at step 0 is smaller (and of either sign), so early markers sit below",
        measured_strength_at_init=gd.mode_strengths[0],
        closed_form=dict(steps=line_steps, mode_strengths=flow.mode_strengths, loss=flow.loss),
        gradient_descent=dict(steps=marker_steps, mode_strengths=gd.mode_strengths, loss=gd.loss),
        learning_steps_closed_form=t_flow,
        learning_steps_gd=t_gd,
        predictions={
            "learning steps, closed form": ", ".join(f"{x:.0f}" if np.isfinite(x) else "never" for x in t_flow),
            "learning steps, GD (first marker ≥ s_i/2)": ", ".join("-" if x is None else str(x) for x in t_gd),
        },
    )
    return fig, data
