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
    cli.add_init_args(p, with_lambda=True)
    cli.add_schedule_args(p)
    p.add_argument("--method", choices=("gd", "modes", "flow"), default="gd",
                   help="gd: full-matrix GD in JAX (default); modes: the exact per-mode GD map "
                        "(aligned init only); flow: the closed-form gradient flow at flow time lr × step "
                        "(aligned init, constant rate)")
    p.add_argument("--checkpoints", type=cli.step_list, default=[0, 10, 100, 1000, 10000],
                   metavar="K1,K2,...", help="GD steps to record at (non-negative integers; 'inf' = fixed point)")
    p.add_argument("--depth", type=cli.pos_int, default=2,
                   help="number of layers N of the chain W_N⋯W_1 (default 2; N ≥ 3: W_2 … W_{N−1} are h × h, "
                        "aligned init puts a0^(1/N) on every layer, noise: absolute σ on every layer)")
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
    if args.depth != 2:
        return teacher, _simulate_deep(args, teacher, steps, schedule)
    if args.lam != 0 and args.init != "lambda-balanced":
        raise ValueError("--lambda needs --init lambda-balanced")
    if args.init == "lambda-balanced":
        return teacher, _simulate_lambda(args, teacher, steps, schedule)
    if args.method != "gd" and args.init != "aligned":
        raise ValueError(f"--method {args.method} needs --init aligned")
    wd = args.weight_decay = cli.weight_decay_from_args(args, teacher)
    if args.method == "flow" and (args.schedule != "constant" or isinstance(wd, tuple)):
        raise ValueError("--method flow is constant-rate gradient flow, with one weight decay λ on both layers "
                         "(no closed form for λ1 ≠ λ2: use --method modes)")
    if args.method == "modes" and isinstance(wd, tuple) and args.sigma is not None:
        raise ValueError("--sigma with --method modes needs balanced weights (one λ); use --method gd for λ1,λ2")
    kw = dict(init_strength=args.init_strength, d_hidden=args.d_hidden, weight_decay=wd)
    if args.method == "gd":
        traj = simulate_gd(teacher, args.d_hidden, args.lr, steps, init=args.init, init_strength=args.init_strength,
                           init_std=args.init_std, seed=args.seed, schedule=schedule, weight_decay=wd,
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


def _simulate_deep(args, teacher, steps, schedule):
    """--depth N ≥ 3: the chain W_N⋯W_1 (gd: full matrices; modes: exact per-mode map; flow)."""
    from ._deep import check_deep_lr, deep_gd_modes, deep_gradient_flow, simulate_deep_gd

    if args.depth < 2:
        raise ValueError("--depth must be at least 2")
    if args.init == "lambda-balanced" or cli.weight_decay_from_args(args, teacher):
        raise ValueError("--depth ≥ 3 supports --init aligned|random without weight decay")
    if args.sigma is not None and args.noise != "absolute":
        raise ValueError("--depth ≥ 3 supports --noise absolute only")
    if args.method != "gd" and args.init != "aligned":
        raise ValueError(f"--method {args.method} needs --init aligned")
    lr = check_deep_lr(teacher, args.lr, args.depth)
    if args.method == "flow":
        if args.schedule != "constant":
            raise ValueError("--method flow is constant-rate gradient flow")
        traj = deep_gradient_flow(teacher, steps * lr, args.depth, args.init_strength, args.d_hidden)
        return dataclasses.replace(traj, times=steps, time_unit="steps", lr=lr)
    if args.method == "modes":
        return deep_gd_modes(teacher, lr, steps, args.depth, args.init_strength, args.d_hidden, schedule)
    if np.any(np.isinf(steps)):
        raise ValueError("--depth ≥ 3 with --method gd needs finite checkpoints (the fixed point: --method modes)")
    run = simulate_deep_gd(teacher, args.depth, args.d_hidden, lr, steps, args.init, args.init_strength,
                           args.init_std, args.seed, schedule)
    args._deep_weights = run.weights  # for the noise columns
    return run.trajectory


def _deep_noise_columns(args, teacher, traj):
    from ._deep import deep_aligned_weights, deep_expected_perturbed_loss, deep_monte_carlo_perturbed_loss

    Ws = getattr(args, "_deep_weights", None)
    if Ws is None:  # aligned per-mode solutions: rebuild the layers exactly
        b = np.maximum(traj.mode_strengths, 0.0) ** (1.0 / args.depth)
        Ws = deep_aligned_weights(teacher, b, args.d_hidden, args.depth, args.seed)
    s2 = args.sigma if args.sigma2 is None else args.sigma2
    sig = [args.sigma] * (args.depth - 1) + [s2]
    out = {"expected_perturbed_loss": deep_expected_perturbed_loss(Ws, teacher, sig)}
    if args.mc_samples:
        mean, err = deep_monte_carlo_perturbed_loss(Ws, teacher, sig, args.mc_samples, args.seed)
        out["monte_carlo_perturbed_loss"], out["monte_carlo_stderr"] = mean, err
    out["noise_std_W1"] = np.full(traj.times.shape, args.sigma)
    out["noise_std_W2"] = np.full(traj.times.shape, s2)
    return out


def _simulate_lambda(args, teacher, steps, schedule):
    """--init lambda-balanced: aligned modes at --init-strength, W2ᵀW2 − W1W1ᵀ = λI."""
    from ._gd_full import simulate_gd
    from ._lambda_balanced import check_lambda_lr, lambda_balanced_init, lambda_gd_modes, lambda_gradient_flow

    lr = check_lambda_lr(teacher, args.lr, args.lam)
    args.weight_decay = cli.weight_decay_from_args(args, teacher)
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
    if args.depth != 2:
        payload["depth"] = args.depth
        payload["weight_sq_norms"]["note"] = "W1: first layer W_1, W2: last layer W_N"
    if args.sigma is not None:
        extra = _deep_noise_columns(args, teacher, traj) if args.depth != 2 else noise_columns(args, teacher, traj)
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
