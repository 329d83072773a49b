"""`linear-theory optimizers`: full-matrix training with optax optimisers, side by side, and
where each one turns the expected perturbed loss."""

from __future__ import annotations

import numpy as np

from . import cli
from .output import wrap

DEFAULT = "sgd,momentum,adam,sign,sam"


def _names(text):
    from ._optim import OPTIMIZERS

    names = [x.strip() for x in text.split(",")]
    bad = [x for x in names if x not in OPTIMIZERS]
    if bad or not names:
        raise ValueError(f"unknown optimizer {', '.join(bad) or text!r}; known: {', '.join(OPTIMIZERS)}")
    return list(dict.fromkeys(names))


def add_commands(sub):
    p = sub.add_parser(
        "optimizers",
        help="train with optax optimisers (sgd, momentum, adam, adamw, sign, sam); turn of E[L_pert] for each",
        description="Train W2·W1 on the full matrices with optax (THEORY.md §2 problem; population gradient, or "
        "minibatches of sampled Gaussian inputs with --batch-size, optionally with label noise) and record at "
        "every step the mode strengths, the clean loss ½‖W2W1 − A‖², ‖W1‖², ‖W2‖², tr(H) = d_in‖W2‖² + "
        "d_out‖W1‖² and the exact expected loss under Gaussian weight noise of std --sigma per entry; report for "
        "each optimiser the turn (exact argmin over steps of E[L_pert]), the rise after it, the clean loss, the "
        "mode learning steps (first step with a_i ≥ s_i/2) and the largest Hessian eigenvalue of L against 2/η. "
        "Time in optimizer steps (SAM: one step = two gradients). Rates: --lr for sgd and sam (per step), "
        "--momentum-lr for momentum, --adaptive-lr for adam, adamw and sign (a step of about that size per "
        "entry, weight units).",
    )
    cli.add_teacher_args(p)
    cli.add_init_args(p)
    cli.add_schedule_args(p)
    g = p.add_argument_group("optimisers")
    g.add_argument("--optimizers", type=cli._type(_names, "list of optimizers"), default=DEFAULT.split(","),
                   metavar="A,B,...", help=f"which optimisers (default {DEFAULT}; also adamw)")
    g.add_argument("--momentum", type=cli.nonneg, default=0.9, help="heavy-ball β (default 0.9)")
    g.add_argument("--momentum-lr", type=cli.positive,
                   help="peak rate of momentum per step (default lr·(1 − β): the same effective rate as sgd)")
    g.add_argument("--adaptive-lr", type=cli.positive, default=1e-3,
                   help="peak rate of adam, adamw and sign descent (weight units per step; default 1e-3)")
    g.add_argument("--sam-rho", type=cli.nonneg, default=0.05,
                   help="SAM radius ρ of the ascent step W + ρ g/‖g‖ (weight units, ‖·‖ over both layers; "
                        "default 0.05)")
    g.add_argument("--adamw-decay", type=cli.nonneg, default=0.0,
                   help="adamw's decoupled decay (W ← W − η λ W per step; default 0)")
    g.add_argument("--batch-size", type=cli.pos_int,
                   help="minibatch of sampled inputs x ~ N(0, Σx) per step (default: the population gradient)")
    g.add_argument("--label-noise", type=cli.nonneg, default=0.0,
                   help="std of Gaussian noise added to each target entry (needs --batch-size; default 0)")
    g.add_argument("--sigma", type=cli.positive, required=True,
                   help="std per entry of the Gaussian weight noise of E[L_pert] (weight units; both layers)")
    g.add_argument("--max-steps", type=cli.pos_int, default=5000, help="optimizer steps (default 5000)")
    g.add_argument("--hessian-checkpoints", type=cli.nonneg_int, default=4,
                   help="log-spaced steps at which the dense Hessian's top eigenvalue is computed (default 4; "
                        "0: none; costs (h(d_in + d_out))³ each)")
    cli.add_output_args(p)
    p.set_defaults(run=run)


def run(args):
    from ._optim import train_optax

    teacher = cli.teacher_from_args(args)
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    if args.label_noise and args.batch_size is None:
        raise ValueError("--label-noise needs --batch-size (sampled inputs)")
    if not args.momentum < 1:
        raise ValueError("--momentum must be below 1")
    wd = cli.weight_decay_from_args(args, teacher)
    if isinstance(wd, tuple):
        raise ValueError("optimizers takes one --weight-decay λ for both layers")
    schedule = cli.schedule_from_args(args, args.max_steps)
    n = args.max_steps
    ck = ([] if args.hessian_checkpoints == 0 else
          np.unique(np.round(np.geomspace(1, n, args.hessian_checkpoints)).astype(int)).tolist())
    rates = {"sgd": args.lr, "sam": args.lr, "momentum": args.momentum_lr or args.lr * (1 - args.momentum),
             "adam": args.adaptive_lr, "adamw": args.adaptive_lr, "sign": args.adaptive_lr}
    results, rows = {}, []
    for name in args.optimizers:
        kw = dict(momentum=args.momentum) if name == "momentum" else dict(rho=args.sam_rho) if name == "sam" else {}
        if name == "adamw":
            kw["weight_decay"] = args.adamw_decay
        elif wd:
            kw["weight_decay"] = wd
        r = train_optax(teacher, args.d_hidden, name, rates[name], n, sigmas=[args.sigma], schedule=schedule,
                        init=args.init, init_strength=args.init_strength, init_std=args.init_std, seed=args.seed,
                        batch_size=args.batch_size, label_noise=args.label_noise, checkpoints=ck, **kw)
        if not np.all(np.isfinite(r.loss)):
            k = int(np.argmax(~np.isfinite(r.loss)))
            raise cli.RunFailure(f"{name} diverged: the loss is not finite at step {k}; lower its rate")
        k, m, rise = (x[0] for x in r.turn())
        learn = r.learning_steps(teacher.targets)
        results[name] = dict(
            rate=rates[name], turn_step=int(k), min_expected_perturbed_loss=float(m), rise=float(rise),
            expected_perturbed_loss_at_end=float(r.expected_perturbed_loss[0, -1]),
            clean_loss_at_turn=float(r.loss[k]), clean_loss_at_end=float(r.loss[-1]),
            mode_learning_steps=learn, final_mode_strengths=r.mode_strengths[-1],
            w1_sq_norm_at_end=float(r.w1_sq_norm[-1]), w2_sq_norm_at_end=float(r.w2_sq_norm[-1]),
            hessian_trace_at_end=float(r.hessian_trace[-1]),
            sharpness=dict(steps=r.checkpoint_steps, top_eigenvalue=r.sharpness, two_over_rate=2.0 / r.rate),
        )
        top = f"{r.sharpness[-1]:.3g} / {2.0 / r.rate[-1]:.3g}" if r.sharpness.size else "-"
        rows.append([name, rates[name], int(k), float(rise), float(r.loss[-1]), float(r.w1_sq_norm[-1]),
                     float(r.w2_sq_norm[-1]), float(r.hessian_trace[-1]), top,
                     " ".join("-" if x is None else str(x) for x in learn)])
    payload = dict(optimizers=results, singular_values=teacher.s, sigma=args.sigma, max_steps=n,
                   units={"steps": "optimizer steps (SAM: two gradients per step)",
                          "loss": "½‖W2W1 − A‖² (population); E[L_pert] over N(0, σ²) on every weight entry",
                          "rate": "peak rate per step (adaptive optimisers: weight units per step)",
                          "sharpness": "largest Hessian eigenvalue of L (loss per squared weight unit) vs 2/η"})
    table = cli.format_table(["optimizer", "rate", "turn", "rise", "L end", "|W1|^2", "|W2|^2", "tr H",
                              "λmax / (2/η)", "learning steps"], rows)
    notes = ("turn: exact argmin over steps of E[L_pert] (= last step: no turn by then); rise: E[L_pert] at the "
             "last step minus its minimum (loss units); L end: clean loss at the last step; |W|^2, tr H at the "
             "last step; λmax / (2/η): largest Hessian eigenvalue of L at the last step against 2/η (the GD "
             "stability limit; for momentum it is 2(1 + β)/η, for adaptive optimisers a per-entry step); "
             "learning steps: first step with a_i ≥ s_i/2 per mode (-: not by the last step).")
    cli.emit(args, payload, table + "\n\n" + wrap(notes, 100))
