"""`linear-theory simulate`: learning dynamics at chosen checkpoints."""

from __future__ import annotations

import dataclasses

import numpy as np

from . import cli
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
    cli.add_init_args(p, with_lambda=True)
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

    teacher = cli.teacher_from_args(args)
    steps = check_checkpoints(args.checkpoints)
    finite = steps[np.isfinite(steps)]
    schedule = cli.schedule_from_args(args, finite.max() if finite.size else 1)
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    if args.lam != 0 and args.init != "lambda-balanced":
        raise ValueError("--lambda needs --init lambda-balanced")
    if args.init == "lambda-balanced":
        return teacher, _simulate_lambda(args, teacher, steps, schedule)
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
        check_lr(teacher, args.lr)
        traj = gradient_flow(teacher, steps * args.lr, **kw)
        traj = dataclasses.replace(traj, times=steps, time_unit="steps", lr=args.lr)  # report in steps
    return teacher, traj


def _simulate_lambda(args, teacher, steps, schedule):
    """--init lambda-balanced: aligned modes at --init-strength, W2ᵀW2 − W1W1ᵀ = λI."""
    from ._gd_full import simulate_gd
    from ._lambda_balanced import check_lambda_lr, lambda_balanced_init, lambda_gd_modes, lambda_gradient_flow

    lr = check_lambda_lr(teacher, args.lr, args.lam)
    if args.method != "gd" and args.weight_decay:
        raise ValueError(f"--method {args.method} has no weight decay; use --method gd")
    if args.method == "flow":
        if args.schedule != "constant":
            raise ValueError("--method flow is constant-rate gradient flow")
        traj = lambda_gradient_flow(teacher, steps * lr, args.lam, args.init_strength, args.d_hidden, args.seed)
        return dataclasses.replace(traj, times=steps, time_unit="steps", lr=lr)
    if np.any(np.isinf(steps)):
        raise ValueError("--init lambda-balanced with --method gd or modes needs finite checkpoints "
                         "(the fixed point: --method flow)")
    if args.method == "modes":
        return lambda_gd_modes(teacher, lr, steps, args.lam, args.init_strength, args.d_hidden, schedule, args.seed)
    W1, W2 = lambda_balanced_init(teacher, args.d_hidden, args.lam, "aligned", args.init_strength, seed=args.seed)
    traj = simulate_gd(teacher, args.d_hidden, lr, steps, schedule=schedule, weight_decay=args.weight_decay,
                       record_weights=args.sigma is not None, W1=W1, W2=W2)
    return dataclasses.replace(traj, method=f"full-matrix GD (aligned λ-balanced init, λ = {args.lam:g})")


def run(args):
    teacher, traj = simulate_from_args(args)
    payload = traj.to_dict()
    payload["singular_values"] = teacher.s
    payload["lr"] = args.lr
    if args.init == "lambda-balanced":
        payload["lambda"] = args.lam
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
    cli.emit(args, payload, title + "\n" + cli.format_table(headers, rows))
