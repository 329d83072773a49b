"""Gradient flow from any initial weights, integrated by diffrax: the ground truth."""

from __future__ import annotations

import diffrax
import jax.numpy as jnp
import numpy as np

from ._gd_full import loss_and_grads
from ._teacher import Teacher
from ._trajectory import FLOW_TIME, Trajectory, mode_strengths_of, population_loss
from ._x64 import x64


@x64
def gradient_flow_ode(
    teacher: Teacher,
    W1_0,
    W2_0,
    times,
    rtol: float = 1e-12,
    atol: float = 1e-16,
    max_steps: int = 1_000_000,
) -> Trajectory:
    """Integrate dW1/dt = −∇_{W1}L, dW2/dt = −∇_{W2}L with an adaptive 8th-order
    Runge–Kutta method (diffrax.Dopri8) and record at flow times `times` (finite, ≥ 0).

    Tolerances are on the weights; the default is tight enough for 1e-10-level relative
    agreement of mode strengths with an exact solution.
    """
    t = np.atleast_1d(np.asarray(times, dtype=np.float64))
    if t.ndim != 1 or not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValueError("ODE times must be finite and non-negative")
    order = np.argsort(t)
    consts = [jnp.asarray(x) for x in (teacher.matrix, teacher.input_covariance, teacher.correlation)]
    whitened = teacher.input_variances is None

    def field(_, y, args):
        _, g2, g1 = loss_and_grads(y[0], y[1], *consts, whitened)
        return (-g1, -g2)

    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Dopri8(),
        t0=0.0,
        t1=float(t.max()),
        dt0=None,
        y0=(jnp.asarray(W1_0, jnp.float64), jnp.asarray(W2_0, jnp.float64)),
        saveat=diffrax.SaveAt(ts=jnp.asarray(t[order])),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps,
    )
    W1 = np.empty((t.size,) + np.shape(W1_0))
    W2 = np.empty((t.size,) + np.shape(W2_0))
    W1[order], W2[order] = np.asarray(sol.ys[0]), np.asarray(sol.ys[1])
    a = mode_strengths_of(W2 @ W1, teacher.U, teacher.V)
    loss = population_loss(W1, W2, teacher.matrix, teacher.input_covariance)
    return Trajectory(
        times=t,
        time_unit=FLOW_TIME,
        mode_strengths=a,
        loss=loss,
        w1_sq_norm=np.sum(W1**2, axis=(1, 2)),
        w2_sq_norm=np.sum(W2**2, axis=(1, 2)),
        teacher=teacher,
        d_hidden=np.shape(W1_0)[0],
        method="gradient flow, diffrax Dopri8 (ground truth)",
        W1=W1,
        W2=W2,
    )
