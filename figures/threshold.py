"""Figure 5, noise against the learned singular values: a_i(t) and the noise thresholds.

Three thresholds for Gaussian weight noise of std σ on both layers (THEORY.md §4):
- s* = σ²(d_in + d_out): learning a mode with s_i < s* raises E[L_pert] (harmful);
- the detection threshold for factor noise σ(Z2W1 + W2Z1) + σ²Z2Z1 (Monte Carlo: the
  strength at which a single learned mode is half recovered in the perturbed product);
- the operator norm ‖E‖₂ of that noise matrix (Monte Carlo), which grows with the weights;
  it measures the noise's size and is not a detection threshold;
- the i.i.d. end-to-end (BBP) threshold σe(d_in d_out)^{1/4} for i.i.d. noise with the
  same per-entry power σe = ‖E‖_F/√(d_in d_out), for comparison.
Below, E[L_pert] turns up at the step where the modes being learned fall below s*.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import gd_modes
from linear_theory import critical_singular_value, modal_expected_perturbed_loss
from linear_theory import log_steps
from linear_theory import summarize_path
from linear_theory import detectability_along

from linear_theory.output import index_list

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher, first_crossing


@dataclasses.dataclass(frozen=True)
class ThresholdConfig(Problem):
    """One σ, one exact GD trajectory; the factor noise floor at `n_floor` log-spaced steps."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    spectrum: str = "power:16:1:1"
    lr: float = 0.5
    sigma: float = 0.055
    max_steps: int = 3000
    n_lines: int = 300
    n_floor: int = 24
    floor_samples: int = 64
    seed: int = 0

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, sigma=0.15, max_steps=400, n_lines=60,
                   n_floor=8, floor_samples=16)


@st.styled
def make_threshold(config: ThresholdConfig = ThresholdConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s = teacher.s
    s_star = float(critical_singular_value(c.d_in, c.d_out, c.sigma))
    summary = summarize_path(teacher, c.lr, c.max_steps, c.sigma, None, c.init_strength, c.d_hidden)
    turn = int(summary.inflection_step[0])
    steps = np.union1d(log_steps(c.max_steps, c.n_lines), [turn])
    traj = gd_modes(teacher, c.lr, steps, c.init_strength, c.d_hidden)
    epl = modal_expected_perturbed_loss(teacher, traj.mode_strengths, c.d_hidden, c.sigma)
    floor_steps = log_steps(c.max_steps, c.n_floor)
    floor_traj = gd_modes(teacher, c.lr, floor_steps, c.init_strength, c.d_hidden)
    det = detectability_along(teacher, floor_traj.mode_strengths, c.d_hidden, c.sigma, c.floor_samples, c.seed)
    floor = det["noise_operator_norm"]
    detect = det["detection_threshold"]
    bbp = float(det["iid_equivalent_threshold"][-1])
    learn = [first_crossing(steps, traj.mode_strengths[:, i], s[i] / 2) for i in range(s.size)]
    harmful = s < s_star

    fig, axes = st.new_figure(2, 1, height=7.0, sharex=True, gridspec_kw={"height_ratios": [3, 1.6]})
    ax, axe = axes[:, 0]
    x, a = st.positive(steps, traj.mode_strengths.T)
    for i in range(s.size):
        ax.plot(x, a[i], color=st.mode_color(s[i]), lw=1.3)
        if learn[i] is not None:
            kw = dict(marker="X", mfc="white", mec=st.mode_color(s[i]), mew=1.3) if harmful[i] else \
                dict(marker="o", color=st.mode_color(s[i]), mec="white", mew=0.8)
            ax.plot(learn[i], s[i] / 2, ms=7, ls="none", zorder=5, **kw)
    ax.axhspan(1e-3 * s.min(), s_star, color=st.MC_COLOR, alpha=0.07, lw=0)
    ax.axhline(s_star, color=st.MC_COLOR, ls="--", lw=1.4,
               label=f"$s^* = \\sigma^2(d_\\mathrm{{in}}+d_\\mathrm{{out}})$ = {s_star:.3g}: modes below are harmful")
    xf, yf = st.positive(floor_steps, floor)
    ax.plot(xf, yf, "s-", color="0.15", ms=3.5, lw=1.2,
            label=r"operator norm of the factor noise $\|\sigma Z_2W_1 + \sigma W_2Z_1 + \sigma^2 Z_2Z_1\|_2$ (MC)")
    ax.axhline(detect, color="0.15", ls=":", lw=1.4,
               label=f"factor-noise detection threshold (MC half recovery) = {detect:.3g}")
    xi, yi = st.positive(floor_steps, det["iid_equivalent_threshold"])
    ax.plot(xi, yi, color="0.45", ls="-.", lw=1.1,
            label="i.i.d. end-to-end threshold $\\sigma_e(d_\\mathrm{in}d_\\mathrm{out})^{1/4}$, same noise power")
    for a_ in (ax, axe):
        st.mark_vertical(a_, turn, st.MC_COLOR, ls="-", lw=1.0, alpha=0.7)
    ax.plot([], [], "o", color="0.4", mec="white", ms=7, label=r"learned ($a_i = s_i/2$), $s_i \geq s^*$")
    ax.plot([], [], "X", mfc="white", mec="0.4", mew=1.3, ms=7, label=r"learned below the noise, $s_i < s^*$")
    ax.set_yscale("log")
    ax.set_ylim(0.1 * s.min(), 2.5 * s.max())
    ax.set_ylabel(st.MODE_STRENGTH)
    ax.set_title(f"Learned singular values against the noise (σ = {c.sigma:g} per weight entry)")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=7)
    st.steps_axis(ax, c.lr, label="")
    ax.tick_params(labelbottom=True)
    st.mode_colorbar(fig, axes[:, 0], s, shrink=0.6, pad=0.02)

    xe, ye, yl = st.positive(steps, epl, traj.loss)
    axe.plot(xe, ye, color=st.SEQUENTIAL_CMAP(0.5), label=f"$\\mathbb{{E}}[L_\\mathrm{{pert}}]$, σ = {c.sigma:g}")
    axe.plot(xe, yl, color=st.THEORY_COLOR, ls="-.", lw=1.1, label="clean loss L")
    axe.plot(turn, summary.min_value[0], "o", color=st.MC_COLOR, ms=6, mec="white",
             label=f"inflection step {turn} (exact argmin)")
    axe.set_yscale("log")
    axe.set_ylim(0.5 * summary.min_value[0], 1.5 * max(ye.max(), yl.max()))
    axe.set_ylabel("loss (½‖·‖²)")
    axe.legend(loc="lower left", fontsize=7)
    st.steps_axis(axe, None)

    after = [i for i in range(s.size) if learn[i] is not None and learn[i] > turn]
    data = dict(
        description="learned mode strengths against the noise thresholds, and the perturbed loss below",
        config=config_dict(c),
        units={"steps": "GD steps", "mode_strengths": "u_iᵀ W2 W1 v_i", "thresholds": "units of singular values",
               "loss": "½‖·‖²_F"},
        singular_values=s,
        steps=steps,
        mode_strengths=traj.mode_strengths,
        mode_learning_steps=learn,
        harmful=harmful,
        critical_singular_value=s_star,
        factor_noise_detection_threshold=detect,
        factor_noise=dict(steps=floor_steps, operator_norm=floor,
                          iid_equivalent_threshold=det["iid_equivalent_threshold"],
                          modes_above_detection_threshold=det["modes_above_detection_threshold"],
                          samples=c.floor_samples),
        expected_perturbed_loss=epl,
        clean_loss=traj.loss,
        inflection_step=turn,
        modes_learned_after_inflection=after,
        predictions={
            f"σ = {c.sigma:g}: s*, harmful modes": f"{s_star:.3g}; {int(harmful.sum())} of {s.size}",
            "inflection step; modes learned after it": f"{turn}; {index_list(after)}",
            "factor-noise detection threshold / final ‖E‖₂ / final i.i.d.-equivalent threshold":
                f"{detect:.3g} / {floor[-1]:.3g} / {bbp:.3g}",
        },
    )
    return fig, data
