"""`linear-theory predict` and `linear-theory finetune`."""

from __future__ import annotations

import numpy as np

from . import cli

PREDICT_NOISE = {"absolute": "absolute", "relative-init": "init", "relative-rms": "rms", "init": "init", "rms": "rms"}


def add_commands(sub):
    p = sub.add_parser(
        "predict",
        help="predict the critical singular value, harmful modes and the inflection step under noise",
        description="Along exact GD from aligned balanced init (THEORY.md §3), with Gaussian noise on every "
        "entry of W1 and W2 (std σ, or γ × the layer's RMS at init or now with --noise): the critical singular "
        "value s* = σ²(d_in + d_out) (σ1²d_in + σ2²d_out in general; with --input-variances one per mode, "
        "σ1²tr(Σx) + σ2²d_out d_i, and the loss ½ tr((W2W1 − A)Σx(W2W1 − A)ᵀ)), the harmful modes (s_i < s*, "
        "0-based), each mode's learning step (first step with a_i ≥ target/2), the inflection step (exact argmin "
        "over all steps 0…max-steps of the expected perturbed loss, computed in one fused pass) and its "
        "estimate (closed-form flow on per-mode clocks; error band stated in the output; 0 when no mode has "
        "s_i > s*/2). Times in GD steps; losses ½‖·‖².",
    )
    cli.add_teacher_args(p)
    cli.add_init_args(p, with_random=False)
    cli.add_schedule_args(p)
    p.add_argument("--sigma", type=cli.nonneg, required=True,
                   help="noise scale on W1 (and W2): std per entry in weight units (--noise absolute), or the "
                        "factor γ (relative kinds); must not be 0")
    p.add_argument("--sigma2", type=cli.nonneg, help="noise scale on W2 (default: --sigma)")
    p.add_argument("--noise", choices=tuple(PREDICT_NOISE), default="absolute",
                   help="absolute (default): std = σ; relative-init (or init): std = σ × the layer's RMS at init; "
                        "relative-rms (or rms): std = σ × the layer's current RMS √(‖W‖²/entries), which grows "
                        "with training (exact: the expectation holds for any weights)")
    p.add_argument("--max-steps", type=cli.pos_int, default=20000, help="last GD step considered (default 20000)")
    cli.add_output_args(p)
    p.set_defaults(run=run_predict)

    f = sub.add_parser(
        "finetune",
        help="fine-tune every pre-training checkpoint on a second teacher; L_A and L_B after",
        description="Pre-train on A (full-matrix GD, THEORY.md §2), then from each checkpoint T run "
        "--finetune-steps GD steps at the fixed rate --finetune-lr on B (A plus a rank-k change, or A with "
        "rotated singular vectors), optionally with ½λ‖W − W(T)‖². Reports the pre-training-task loss L_A and "
        "the fine-tuning-task loss L_B after fine-tuning (½‖W2W1 − ·‖²) and the turning step argmin_T L_A. "
        "Times in GD steps.",
    )
    cli.add_teacher_args(f)
    cli.add_init_args(f)
    cli.add_schedule_args(f)
    f.add_argument("--pretrain-steps", type=cli.step_list, metavar="T1,T2,...",
                   help="pre-training checkpoints (default: 0 and 24 log-spaced steps up to --max-steps)")
    f.add_argument("--max-steps", type=cli.pos_int, default=10000, help="last pre-training step (default 10000)")
    f.add_argument("--finetune-lr", type=cli.positive, default=0.05, help="fixed fine-tuning rate per step (default 0.05)")
    f.add_argument("--finetune-steps", type=cli.pos_int, default=50, help="fine-tuning GD steps K (default 50)")
    f.add_argument("--finetune-l2", type=cli.nonneg, default=0.0,
                   help="λ of ½λ‖W − W(T)‖² per layer during fine-tuning (default 0)")
    f.add_argument("--change", choices=("rank", "rotate"), default="rank",
                   help="B = A + size·PQᵀ (rank, default) or A with singular vectors turned by size radians (rotate)")
    f.add_argument("--change-size", type=cli.finite, default=1.0,
                   help="singular value of the rank-k change, or the rotation angle in radians (default 1.0)")
    f.add_argument("--change-rank", type=cli.pos_int, default=4, help="k for --change rank (default 4)")
    f.add_argument("--change-seed", type=cli.nonneg_int, default=1, help="seed of the change (default 1)")
    cli.add_output_args(f)
    f.set_defaults(run=run_finetune)


def run_predict(args):
    from ._predict import predict

    teacher = cli.teacher_from_args(args)
    schedule = cli.schedule_from_args(args, args.max_steps)
    pred = predict(teacher, args.lr, args.sigma, args.max_steps, args.init_strength, args.d_hidden,
                   args.sigma2, schedule, noise=PREDICT_NOISE[args.noise])
    payload = pred.to_dict()
    payload.update(singular_values=teacher.s, lr=args.lr, sigma=args.sigma,
                   sigma2=args.sigma if args.sigma2 is None else args.sigma2, schedule=args.schedule)
    rows = [
        ["critical singular value s*", pred.critical_singular_value if np.ndim(pred.critical_singular_value) == 0
         else ", ".join(f"{x:.4g}" for x in pred.critical_singular_value)],
        ["harmful modes (s_i < s*)", ", ".join(map(str, pred.harmful_modes)) or "none"],
        ["inflection step (exact argmin)", pred.inflection_step],
        ["inflection step estimate", pred.inflection_step_estimate],
        ["  error band of the estimate", "±(5% + 2 steps) on the family in --json"],
        ["  note", pred.inflection_estimate_note],
        ["noise std on W1, W2 at the inflection", ", ".join(f"{x:.4g}" for x in pred.noise_std_at_inflection)],
        ["min E[L_pert]", pred.min_expected_perturbed_loss],
        [f"E[L_pert] at step {args.max_steps}", pred.expected_perturbed_loss_at_max_steps],
        ["rise (final − min)", pred.rise],
        ["bound on the rise at convergence", pred.rise_bound_at_convergence],
    ]
    modes = [[i, s, "-" if k is None else k, "yes" if i in pred.harmful_modes else "no"]
             for i, (s, k) in enumerate(zip(teacher.s, pred.mode_learning_steps))]
    table = (cli.format_table(["prediction", "value"], rows) + "\n\n"
             + cli.format_table(["mode", "s_i", "learning step", "harmful"], modes))
    cli.emit(args, payload, table)


def run_finetune(args):
    from ._finetune import finetune_sweep, finetune_target
    from ._phase import log_steps

    teacher = cli.teacher_from_args(args)
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    T = np.asarray(args.pretrain_steps if args.pretrain_steps else log_steps(args.max_steps, 24), dtype=float)
    if np.any(np.isinf(T)):
        raise ValueError("--pretrain-steps must be finite")
    schedule = cli.schedule_from_args(args, T.max())
    B = finetune_target(teacher, args.change, args.change_size, args.change_rank, args.change_seed)
    r = finetune_sweep(teacher, B, args.d_hidden, args.lr, T, args.finetune_lr, args.finetune_steps,
                       args.finetune_l2, args.init, args.init_strength, args.init_std, args.seed, schedule)
    payload = dict(
        pretrain_steps=r.pretrain_steps.astype(int),
        pretrain_loss_before_finetune=r.pretrain_loss_before,
        pretrain_loss_after_finetune=r.pretrain_loss_after,
        finetune_loss_before_finetune=r.finetune_loss_before,
        finetune_loss_after_finetune=r.finetune_loss_after,
        turning_step=r.turning_step,
        turning_is_interior=r.turning_is_interior,
        rise_after_turning=float(r.pretrain_loss_after[-1] - r.pretrain_loss_after.min()),
        delta_f_norm=r.delta_f_norm,
        delta_f_first_order_rel_error=r.delta_f_first_order_rel_error,
        finetune_lr=args.finetune_lr, finetune_steps=args.finetune_steps, finetune_l2=args.finetune_l2,
        change=dict(kind=args.change, size=args.change_size, rank=args.change_rank, seed=args.change_seed),
        units={"steps": "GD steps", "loss": "½‖W2W1 − A‖² (L_A) and ½‖W2W1 − B‖² (L_B)"},
    )
    rows = [[int(t), a0, a1, b0, b1, e] for t, a0, a1, b0, b1, e in zip(
        r.pretrain_steps, r.pretrain_loss_before, r.pretrain_loss_after, r.finetune_loss_before,
        r.finetune_loss_after, r.delta_f_first_order_rel_error)]
    table = cli.format_table(["pretrain step", "L_A before", "L_A after", "L_B before", "L_B after",
                              "ΔF 1st-order rel err"], rows)
    kind = "interior (a U)" if r.turning_is_interior else "at the edge of the sweep (no U)"
    cli.emit(args, payload, table + f"\n\nturning step of L_A after fine-tuning: {r.turning_step}, {kind}")
