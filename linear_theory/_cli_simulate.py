"""`linear-theory simulate`: learning dynamics at chosen checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import cli
from .output import wrap
from ._cli_noise import add_noise_args, noise_columns


def add_commands(sub):
    p = sub.add_parser(
        "simulate",
        help="train a two-layer linear network and record mode strengths, loss and weight norms",
        description="Train W2·W1 on a linear teacher and record, at each checkpoint, the mode strengths "
        "a_i = u_iᵀW2W1v_i (in the order the singular values are given), the population loss "
        "½‖W2W1 − A‖²_F (whitened inputs) and ‖W1‖², ‖W2‖². Time is in GD steps; "
        "gradient-flow time = lr × steps.",
    )
    cli.add_teacher_args(p)
    cli.add_init_args(p)
    cli.add_schedule_args(p)
    p.add_argument("--method", choices=("gd", "modes", "flow"), default="gd",
                   help="gd: full-matrix GD in JAX (default); modes: the exact per-mode GD map "
                        "(aligned init only); flow: the closed-form gradient flow at flow time lr × step "
                        "(aligned init, constant rate)")
    p.add_argument("--checkpoints", type=cli.step_list, default=[0, 10, 100, 1000, 10000],
                   metavar="K1,K2,...", help="GD steps to record at (non-negative integers; 'inf' = fixed point)")
    add_noise_args(p)
    cli.add_output_args(p)
    p.set_defaults(run=run)


def simulate_from_args(args):
    from ._closed_form import gradient_flow
    from ._gd_full import simulate_gd
    from ._gd_map import check_checkpoints, check_lr, gd_modes

    if args.sigma is None and args.sigma2 is not None:
        raise ValueError("--sigma2 needs --sigma (it sets W2's scale; --sigma sets W1's)")
    teacher = cli.teacher_from_args(args)
    steps = check_checkpoints(args.checkpoints)
    finite = steps[np.isfinite(steps)]
    schedule = cli.schedule_from_args(args, finite.max() if finite.size else 1)
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    if args.method != "gd" and args.init != "aligned":
        raise ValueError(f"--method {args.method} needs --init aligned")
    if args.method == "flow" and (args.schedule != "constant" or args.weight_decay):
        raise ValueError("--method flow is constant-rate gradient flow without weight decay")
    if args.method in ("modes", "flow") and args.weight_decay:
        raise ValueError(f"--method {args.method} has no weight decay; use --method gd")
    kw = dict(init_strength=args.init_strength, d_hidden=args.d_hidden)
    if args.method == "gd":
        traj = simulate_gd(teacher, args.d_hidden, args.lr, steps, init=args.init, init_strength=args.init_strength,
                           init_std=args.init_std, seed=args.seed, schedule=schedule, weight_decay=args.weight_decay,
                           record_weights=args.sigma is not None and bool(np.all(np.isfinite(steps))))
    elif args.method == "modes":
        traj = gd_modes(teacher, args.lr, steps, schedule=schedule, **kw)
    else:
        check_lr(teacher, args.lr, args.d_hidden)
        traj = gradient_flow(teacher, steps * args.lr, **kw)
        traj = dataclasses.replace(traj, times=steps, time_unit="steps", lr=args.lr)  # report in steps
    _check_diverged(args, traj)
    return teacher, traj


def _check_diverged(args, traj):
    """A run whose loss stops being finite is a failure (exit 1), named by its first checkpoint."""
    bad = ~np.isfinite(np.asarray(traj.loss, dtype=float))
    if not bad.any():
        return
    k = int(np.argmax(bad))
    since = f" (finite at step {traj.times[k - 1]:g})" if k else ""
    hint = "lower --lr" + (" or --init-std" if args.init == "random" else " or --init-strength")
    raise cli.RunFailure(f"{args.method} diverged: the loss is not finite at checkpoint step {traj.times[k]:g}"
                         f"{since} with lr {args.lr:g}; {hint}")


def run(args):
    teacher, traj = simulate_from_args(args)
    payload = traj.to_dict()
    payload["singular_values"] = teacher.s
    payload["lr"] = args.lr
    payload["units"]["flow_time"] = "lr × steps"
    extra = {}
    if args.sigma is not None:
        extra = noise_columns(args, teacher, traj)
        payload.update(extra)
    r = teacher.rank
    short = {"expected_perturbed_loss": "E[L_pert]", "monte_carlo_perturbed_loss": "MC L_pert",
             "monte_carlo_stderr": "MC stderr", "noise_std_W1": "std W1", "noise_std_W2": "std W2"}
    headers = ["step", "loss", "|W1|^2", "|W2|^2"] + [f"a{i + 1}" for i in range(r)] + [short[c] for c in extra]
    rows = [
        [("inf" if np.isinf(t) else int(t)), traj.loss[k], traj.w1_sq_norm[k], traj.w2_sq_norm[k],
         *traj.mode_strengths[k]] + [extra[c][k] for c in extra]
        for k, t in enumerate(traj.times)
    ]
    title = (f"{traj.method}; s = {', '.join(f'{v:g}' for v in teacher.s)}; lr = {args.lr:g} "
             f"(flow time = lr × step); loss = ½‖W2W1 − A‖²")
    notes = ("step: GD steps; loss = ½‖W2W1 − A‖² (population, loss units); |W1|^2, |W2|^2: squared Frobenius "
             "norms; a_i = u_iᵀW2W1v_i, mode strength i in the order the singular values are given")
    if extra:
        notes += ("; E[L_pert]: exact expected loss under the weight noise; MC L_pert ± MC stderr: its Monte Carlo "
                  "estimate (same draws at every step); std W1, std W2: noise std per entry (weight units)")
    cli.emit(args, payload, wrap(title, 100) + "\n" + cli.format_table(headers, rows) + "\n\n" + wrap(notes, 100))
