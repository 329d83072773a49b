"""Figures 2 and 3: progressive sensitivity to Gaussian weight noise, and the U it makes.

Noise: W_l → W_l + σ Z_l with i.i.d. N(0, 1) entries on both layers (THEORY.md §4). The
exact expectation along the exact GD map from aligned balanced init is drawn as lines;
Monte Carlo over noise draws, on full-matrix GD weights, as points.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import gd_modes, simulate_gd
from linear_theory import (
    critical_singular_value,
    harmful_modes,
    modal_expected_perturbed_loss,
    monte_carlo_perturbed_loss,
    sensitivity_from_norms,
)
from linear_theory import initial_strengths, inflection_estimate, log_steps, summarize_path

from linear_theory.output import index_list

from . import _style as st
from ._output import config_dict
from ._setup import Problem, build_teacher, first_crossing


@dataclasses.dataclass(frozen=True)
class SensitivityConfig(Problem):
    """Progressive sensitivity: E[L_pert] − L along training for several σ (GD steps)."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    sigmas: tuple = (0.02, 0.05, 0.1)
    max_steps: int = 4000
    n_lines: int = 300
    n_monte_carlo: int = 12
    n_draws: int = 2000
    seed: int = 0

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.3", d_in=6, d_hidden=4, d_out=5, sigmas=(0.05, 0.2), max_steps=800, n_lines=60,
                   n_monte_carlo=6, n_draws=400)


@st.styled
def make_sensitivity(config: SensitivityConfig = SensitivityConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s, sigmas = teacher.s, np.asarray(c.sigmas, dtype=float)
    mc_steps = log_steps(c.max_steps, c.n_monte_carlo)
    steps = np.union1d(log_steps(c.max_steps, c.n_lines), mc_steps)  # the Monte Carlo points sit on the grid
    traj = gd_modes(teacher, c.lr, steps, c.init_strength, c.d_hidden)
    sens = sensitivity_from_norms(traj.w1_sq_norm[None], traj.w2_sq_norm[None], c.d_in, c.d_out, c.d_hidden,
                                  sigmas[:, None])  # (S, T)

    sim = simulate_gd(teacher, c.d_hidden, c.lr, mc_steps, init="aligned", init_strength=c.init_strength, seed=c.seed,
                      record_weights=True)
    mc_mean, mc_se = [], []
    for k, sigma in enumerate(sigmas):
        m, e = monte_carlo_perturbed_loss(sim.W1, sim.W2, teacher, sigma, n_draws=c.n_draws, seed=c.seed + k)
        mc_mean.append(m - sim.loss)
        mc_se.append(e)
    mc_mean, mc_se = np.array(mc_mean), np.array(mc_se)
    learn = [first_crossing(steps, traj.mode_strengths[:, i], s[i] / 2) for i in range(s.size)]
    s_star = np.array([float(critical_singular_value(c.d_in, c.d_out, x)) for x in sigmas])

    fig, axes = st.new_figure(height=4.4)
    ax = axes[0, 0]
    colors = st.sequential_colors(sigmas.size)
    x, y = st.positive(steps, sens)
    xm, ym, em = st.positive(mc_steps, mc_mean, mc_se)
    for k, sigma in enumerate(sigmas):
        ax.plot(x, y[k], color=colors[k], label=f"σ = {sigma:g}  (s* = {s_star[k]:.3g})")
        ax.errorbar(xm, ym[k], yerr=em[k], fmt="o", color=colors[k], mfc="white", ms=4.5, capsize=2, lw=1)
    for i, k in enumerate(learn):
        if k is not None:
            st.mark_vertical(ax, k, st.mode_color(s[i]), lw=0.9)
    ax.errorbar([], [], yerr=[], fmt="o", color="0.3", mfc="white", capsize=2,
                label=f"Monte Carlo ({c.n_draws} draws, ±1 s.e.)")
    ax.plot([], [], ":", color="0.3", label=r"learning step of mode $i$ ($a_i = s_i/2$)")
    ax.set_yscale("log")
    ax.set_ylabel(st.SENSITIVITY)
    ax.set_title("Sensitivity to a fixed noise grows with every mode learned\n"
                 r"exact: $\frac{1}{2}\sigma^2(d_\mathrm{in}+d_\mathrm{out})\sum_i a_i + "
                 r"\frac{1}{2}\sigma^4 d_\mathrm{in} h\, d_\mathrm{out}$ (lines)")
    ax.legend(loc="upper left", ncols=1)
    st.steps_axis(ax, c.lr)
    st.mode_colorbar(fig, ax, s, shrink=0.8, pad=0.02)

    harmful = {f"{x:g}": [int(i) for i in harmful_modes(s, ss)] for x, ss in zip(sigmas, s_star)}
    data = dict(
        description="expected loss increase under Gaussian weight noise vs steps, exact and Monte Carlo",
        config=config_dict(c),
        units={"steps": "GD steps", "sensitivity": "E[L_pert] − L in loss units (½‖·‖²)",
               "sigma": "noise std per weight entry, both layers"},
        singular_values=s,
        sigmas=sigmas,
        critical_singular_value=s_star,
        steps=steps,
        sensitivity=sens,
        mode_strengths=traj.mode_strengths,
        mode_learning_steps=learn,
        monte_carlo=dict(steps=mc_steps, sensitivity=mc_mean, stderr=mc_se, n_draws=c.n_draws),
        harmful_modes=harmful,
        predictions={
            f"σ = {x:g}: s*, harmful modes": f"{ss:.3g}; {index_list(harmful[f'{x:g}'])}"
            for x, ss in zip(sigmas, s_star)
        },
    )
    return fig, data


@dataclasses.dataclass(frozen=True)
class UShapeConfig(Problem):
    """The U-shaped perturbed loss and its predicted inflection, for several σ (GD steps)."""

    init_strength: float = 1e-6  # a0 of the aligned balanced init
    spectrum: str = "power:16:1:1"
    lr: float = 0.5
    sigmas: tuple = (0.03, 0.05, 0.08, 0.12)
    max_steps: int = 3000
    n_lines: int = 400

    @classmethod
    def small(cls):
        return cls(spectrum="1,0.5,0.2,0.1", d_in=6, d_hidden=4, d_out=5, sigmas=(0.1, 0.2), max_steps=400,
                   n_lines=60)


@st.styled
def make_u_shape(config: UShapeConfig = UShapeConfig()):
    c = config
    teacher = build_teacher(c.spectrum, c.d_in, c.d_out, c.teacher_seed)
    s, sigmas = teacher.s, np.asarray(c.sigmas, dtype=float)
    summary = summarize_path(teacher, c.lr, c.max_steps, sigmas, None, c.init_strength, c.d_hidden)
    s_star = np.array([float(critical_singular_value(c.d_in, c.d_out, x)) for x in sigmas])
    a0 = initial_strengths(teacher, c.init_strength, c.d_hidden)
    estimate = inflection_estimate(teacher, c.lr, a0, summary.noise, c.d_hidden, c.max_steps)
    steps = np.union1d(log_steps(c.max_steps, c.n_lines), summary.inflection_step)
    traj = gd_modes(teacher, c.lr, steps, c.init_strength, c.d_hidden)
    epl = modal_expected_perturbed_loss(teacher, traj.mode_strengths[None], c.d_hidden, sigmas[:, None])
    at = np.searchsorted(steps, summary.inflection_step)
    rise = summary.final_value - summary.min_value

    fig, axes = st.new_figure(height=4.6)
    ax = axes[0, 0]
    colors = st.sequential_colors(sigmas.size)
    x, y, clean = st.positive(steps, epl, traj.loss)
    for k, sigma in enumerate(sigmas):
        ax.plot(x, y[k], color=colors[k], label=f"σ = {sigma:g}  (s* = {s_star[k]:.3g})")
        ax.plot(steps[at[k]], epl[k, at[k]], "o", color=colors[k], ms=7, mec="white", mew=1.2, zorder=5)
        if np.isfinite(estimate[k]):
            ax.axvline(estimate[k], color=colors[k], ls="--", lw=0.9, alpha=0.8)
    ax.plot(x, clean, color=st.THEORY_COLOR, ls="-.", lw=1.2, label="clean loss L (no noise)")
    ax.plot([], [], "o", color="0.3", ms=7, mec="white", label="inflection step, exact argmin over steps")
    ax.plot([], [], "--", color="0.3", lw=0.9, label="estimate (flow on per-mode clocks)")
    ax.set_yscale("log")
    lo = min(epl.min(), np.min(clean[clean > 0], initial=np.inf))
    ax.set_ylim(max(lo / 1.5, 0.3 * epl.min()), 1.6 * max(epl.max(), clean.max()))
    ax.set_ylabel(st.PERTURBED_LOSS)
    ax.set_title("The perturbed loss is U-shaped in training time; larger noise turns earlier\n"
                 f"teacher s = {_spectrum_text(c.spectrum)}, $d_\\mathrm{{in}}$ = {c.d_in}, h = {c.d_hidden}, "
                 f"$d_\\mathrm{{out}}$ = {c.d_out}, $a_0$ = {c.init_strength:g}")
    ax.legend(loc="lower left")
    st.steps_axis(ax, c.lr)

    data = dict(
        description="expected perturbed loss vs steps for several σ with the predicted inflection step",
        config=config_dict(c),
        units={"steps": "GD steps", "loss": "½‖·‖²_F; E[L_pert] over Gaussian weight noise of std σ per entry"},
        singular_values=s,
        sigmas=sigmas,
        critical_singular_value=s_star,
        steps=steps,
        expected_perturbed_loss=epl,
        clean_loss=traj.loss,
        inflection_step=summary.inflection_step,
        inflection_step_estimate=estimate,
        min_expected_perturbed_loss=summary.min_value,
        rise_by_max_steps=rise,
        predictions={
            f"σ = {x:g}: inflection step exact / estimate, rise": f"{k} / {e:.0f}, {r:.3g}"
            for x, k, e, r in zip(sigmas, summary.inflection_step, estimate, rise)
        },
    )
    return fig, data


def _spectrum_text(spectrum: str) -> str:
    if spectrum.startswith("power:"):
        f = spectrum.split(":")[1:]
        s1 = f[1] if len(f) > 1 else "1"
        alpha = f[2] if len(f) > 2 else "1"
        return f"{s1}·$i^{{-{alpha}}}$, i = 1…{f[0]}"
    return spectrum
