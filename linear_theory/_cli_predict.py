"""`linear-theory predict` and `linear-theory finetune`."""

from __future__ import annotations

import numpy as np

from . import cli
from .output import index_list, wrap

PREDICT_NOISE = {"absolute": "absolute", "relative-init": "init", "relative-rms": "rms", "init": "init", "rms": "rms"}


def add_commands(sub):
    p = sub.add_parser(
        "predict",
        help="predict the critical singular value, harmful modes and the inflection step under noise",
        description="Along exact GD from aligned balanced init (THEORY.md §3), with Gaussian noise on every "
        "entry of W1 and W2 (std σ, or γ × the layer's RMS at init or now with --noise): the critical singular value s* = σ²(d_in + d_out) (σ1²d_in + "
        "σ2²d_out in general), the harmful modes (s_i < s*, 0-based, among the h modes the width can learn), "
        "each mode's learning step (first step with a_i ≥ s_i/2), the inflection step (exact argmin over all "
        "steps 0…max-steps of the expected perturbed loss) and its estimate (closed-form flow on per-mode clocks; error band "
        "stated in the output; 0 when no mode has s_i > s*/2). "
        "With --input-variances d_i (co-diagonal Σx = V diag(d) Vᵀ + I − VVᵀ; s_i are then the singular "
        "values of Σyx): mode i converges to s_i/d_i and is learned when a_i ≥ s_i/(2 d_i); one threshold per "
        "mode, s*_i = σ1² tr(Σx) + σ2² d_out d_i; E[L_pert] = ½Σ d_i(a_i − s_i/d_i)² + ½[σ2² d_out Σ d_i a_i + "
        "σ1² tr(Σx) Σ a_i + σ1²σ2² tr(Σx) h d_out]; a width-h network keeps the h modes with the largest "
        "s_i/√d_i; the rate must be below 2/λ_max = 2/max d_k(a_j + a_k) (1/s_max whitened). "
        "Times in GD steps; losses ½ E‖W2W1x − Ax‖². The noise equals the weight decay (λ1 on W1, λ2 on W2) = "
        "(σ2²d_out, σ1²d_in) in expectation (whitened, absolute noise): printed as the noise-optimal decay, with "
        "the clean loss it costs at convergence; --weight-decay λ | λ1,λ2 | noise-optimal trains with it "
        "(equal λ: fused sweep; λ1 ≠ λ2: exact per-mode map on the two factors). "
        "With --lambda L ≠ 0 the init is aligned λ-balanced (W2ᵀW2 − W1W1ᵀ = λI, whitened inputs) and the "
        "path is the exact per-mode GD map on the two factors: mode i is harmful iff s_i < √(s*(s* − |λ|)).",
    )
    cli.add_teacher_args(p)
    cli.add_init_args(p, with_random=False, with_lambda=True)
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
    p.add_argument("--depth", type=cli.pos_int, default=2,
                   help="layers N of the chain W_N⋯W_1 (default 2). N ≥ 3: noise σ on every layer, exact per-mode GD "
                        "map, exact critical singular value s*_N of a lone mode and its first-order value "
                        "(σ²(d_in + d_out + N − 2))^(N/2); whitened inputs")
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

    g = sub.add_parser(
        "finetune-grid",
        help="fine-tuning knobs on a grid: rate, steps, ℓ2-to-init, pre-training schedule; where L_A turns",
        description="Pre-train on A (full-matrix GD from the same init) under each --pretrain-schedules entry, then "
        "fine-tune every checkpoint T on B for every combination of --finetune-lr, --finetune-steps and "
        "--finetune-l2 (as `finetune`). Per combination: the turning step argmin_T L_A after fine-tuning (interior: "
        "a U; at the last T: no turn within the sweep), the rise of L_A after it, and L_A (out of domain) and L_B "
        "(in domain) after fine-tuning the last checkpoint and the turning one. Times in GD steps; losses ½‖W2W1 − ·‖².",
    )
    cli.add_teacher_args(g)
    cli.add_init_args(g)
    gg = g.add_argument_group("pre-training")
    gg.add_argument("--lr", type=cli.positive, default=0.05, help="peak pre-training rate per GD step (default 0.05)")
    gg.add_argument("--pretrain-schedules", type=cli._type(_schedule_names, "list of schedules"),
                    default=["constant", "cosine", "wsd"], metavar="S1,S2",
                    help="pre-training schedules, decaying over the whole sweep to its last checkpoint "
                         "(constant, cosine, wsd; default all three)")
    gg.add_argument("--warmup-steps", type=cli.nonneg_int, default=0, help="linear warmup steps (cosine, wsd)")
    gg.add_argument("--decay-fraction", type=cli.nonneg, default=0.2, help="fraction of the run decaying (wsd)")
    gg.add_argument("--weight-decay", type=cli.weight_decay, default=0.0, metavar="L|L1,L2",
                    help="pre-training weight decay λ or λ1,λ2 (default 0)")
    gg.add_argument("--pretrain-steps", type=cli.step_list, metavar="T1,T2,...",
                    help="pre-training checkpoints (default: 0 and 24 log-spaced steps up to --max-steps)")
    gg.add_argument("--max-steps", type=cli.pos_int, default=10000, help="last pre-training step (default 10000)")
    gk = g.add_argument_group("fine-tuning knobs (every combination)")
    gk.add_argument("--finetune-lr", type=cli.float_list, default=[0.01, 0.05], metavar="E1,E2",
                    help="fixed fine-tuning rates per step (default 0.01,0.05)")
    gk.add_argument("--finetune-steps", type=cli.float_list, default=[50], metavar="K1,K2",
                    help="fine-tuning GD steps (default 50)")
    gk.add_argument("--finetune-l2", type=cli.float_list, default=[0.0, 0.5], metavar="L1,L2",
                    help="λ of ½λ‖W − W(T)‖² per layer (default 0,0.5)")
    gk.add_argument("--change", choices=("rank", "rotate"), default="rank", help="as in finetune (default rank)")
    gk.add_argument("--change-size", type=cli.finite, default=1.0, help="as in finetune (default 1.0)")
    gk.add_argument("--change-rank", type=cli.pos_int, default=4, help="as in finetune (default 4)")
    gk.add_argument("--change-seed", type=cli.nonneg_int, default=1, help="as in finetune (default 1)")
    cli.add_output_args(g)
    g.set_defaults(run=run_finetune_grid)


def _schedule_names(text):
    from ._schedules import KINDS

    names = list(dict.fromkeys(x.strip() for x in text.split(",")))
    bad = [x for x in names if x not in KINDS]
    if bad:
        raise ValueError(f"unknown schedule {', '.join(bad)}; known: {', '.join(KINDS)}")
    return names


def run_finetune_grid(args):
    from ._finetune import finetune_grid, finetune_lr_limit, finetune_target
    from ._phase import log_steps
    from ._schedules import Schedule

    teacher = cli.teacher_from_args(args)
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    if args.weight_decay == "noise-optimal":
        raise ValueError("finetune-grid has no --sigma: give --weight-decay as λ or λ1,λ2")
    T = np.asarray(args.pretrain_steps if args.pretrain_steps else log_steps(args.max_steps, 24), dtype=float)
    if np.any(np.isinf(T)):
        raise ValueError("--pretrain-steps must be finite")
    for name, xs, ok in (("--finetune-lr", args.finetune_lr, lambda x: x > 0),
                         ("--finetune-steps", args.finetune_steps, lambda x: x >= 1 and x == int(x)),
                         ("--finetune-l2", args.finetune_l2, lambda x: x >= 0)):
        if not all(np.isfinite(x) and ok(x) for x in xs):
            raise ValueError(f"{name}: every entry must be " + {"--finetune-lr": "positive",
                             "--finetune-steps": "a positive integer", "--finetune-l2": "≥ 0"}[name])
    B = finetune_target(teacher, args.change, args.change_size, args.change_rank, args.change_seed)
    for l2 in args.finetune_l2:
        limit = finetune_lr_limit(teacher, B, l2)
        if max(args.finetune_lr) >= limit:
            raise ValueError(f"--finetune-lr {max(args.finetune_lr):g} is at or beyond the fine-tuning stability "
                             f"limit 2/(λ_max(H) + λ) = {limit:.4g} at λ = {l2:g}")
    total = int(T.max())
    schedules = {k: Schedule() if k == "constant" else Schedule(k, total_steps=max(total, 1),
                                                               warmup_steps=args.warmup_steps,
                                                               decay_fraction=args.decay_fraction)
                 for k in args.pretrain_schedules}
    grid = finetune_grid(teacher, B, args.d_hidden, args.lr, T, args.finetune_lr,
                         [int(k) for k in args.finetune_steps], args.finetune_l2, schedules, args.init,
                         args.init_strength, args.init_std, args.seed, args.weight_decay)
    results, rows = [], []
    for (sched, ft_lr, K, l2), r in zip(grid.rows, grid.sweeps):
        k = int(np.argmin(r.pretrain_loss_after))
        res = dict(schedule=sched, finetune_lr=ft_lr, finetune_steps=K, finetune_l2=l2,
                   turning_step=r.turning_step, turning_is_interior=r.turning_is_interior,
                   rise_after_turning=float(r.pretrain_loss_after[-1] - r.pretrain_loss_after[k]),
                   pretrain_loss_after_at_last=float(r.pretrain_loss_after[-1]),
                   finetune_loss_after_at_last=float(r.finetune_loss_after[-1]),
                   pretrain_loss_after_at_turn=float(r.pretrain_loss_after[k]),
                   finetune_loss_after_at_turn=float(r.finetune_loss_after[k]),
                   pretrain_loss_after=r.pretrain_loss_after, finetune_loss_after=r.finetune_loss_after)
        results.append(res)
        rows.append([sched, ft_lr, K, l2, r.turning_step, "U" if r.turning_is_interior else "edge",
                     res["rise_after_turning"], res["pretrain_loss_after_at_last"], res["finetune_loss_after_at_last"],
                     res["finetune_loss_after_at_turn"]])
    payload = dict(pretrain_steps=T.astype(int), grid=results,
                   change=dict(kind=args.change, size=args.change_size, rank=args.change_rank, seed=args.change_seed),
                   units={"steps": "GD steps", "loss": "½‖W2W1 − A‖² (L_A, out of domain) and ½‖W2W1 − B‖² "
                          "(L_B, in domain), after fine-tuning"})
    table = cli.format_table(["schedule", "η_ft", "K", "λ_ft", "turn T*", "shape", "rise of L_A", "L_A last",
                              "L_B last", "L_B at T*"], rows)
    notes = ("turn T*: pre-training step minimising L_A after fine-tuning; shape U: interior minimum (the turn), edge: "
             "at the first or last checkpoint (no turn within the sweep); rise of L_A: L_A after fine-tuning the "
             "last checkpoint minus its minimum; L_A last, L_B last: after fine-tuning the last checkpoint; L_B at "
             "T*: the in-domain loss when stopping pre-training at the turn. Compare rows that differ in one knob.")
    cli.emit(args, payload, table + "\n\n" + wrap(notes, 100))


def _noise_optimal_decay(args, teacher):
    """The noise-optimal weight decay and what it costs at convergence (absolute noise,
    whitened inputs, depth 2; None otherwise): per matrix (σ2²d_out, σ1²d_in), whose fixed
    point a = (s − √(λ1λ2))₊ minimises E[L_pert], and the best single λ = s*/2."""
    if args.noise != "absolute" or teacher.input_variances is not None or args.depth != 2:
        return None
    from ._noise import noise_penalty
    from ._weight_decay import balanced_noise_optimal_weight_decay, decayed_fixed_point, noise_optimal_weight_decay

    l1, l2 = noise_optimal_weight_decay(teacher, args.sigma, args.sigma2)
    lam = balanced_noise_optimal_weight_decay(teacher, args.sigma, args.sigma2)
    s1, s2 = args.sigma, args.sigma if args.sigma2 is None else args.sigma2
    h = args.d_hidden
    out = {"per_matrix": {"W1": l1, "W2": l2}, "single": lam}
    for key, wd in (("per_matrix", (l1, l2)), ("single", lam)):
        a, n1, n2 = decayed_fixed_point(teacher, wd, h)
        clean = 0.5 * float(np.sum((a - teacher.s) ** 2))
        epl = clean + float(noise_penalty(n1.sum(), n2.sum(), teacher.d_in, teacher.d_out, h, s1**2, s2**2))
        out[f"{key}_fixed_point"] = {"mode_strengths": a, "clean_loss": clean, "expected_perturbed_loss": epl}
    return out


def run_predict(args):
    from ._predict import predict

    teacher = cli.teacher_from_args(args)
    schedule = cli.schedule_from_args(args, args.max_steps)
    if args.depth != 2:
        return _run_predict_deep(args, teacher, schedule)
    args.weight_decay = cli.weight_decay_from_args(args, teacher)
    if args.lam != 0 or isinstance(args.weight_decay, tuple):
        return _run_predict_lambda(args, teacher, schedule)
    pred = predict(teacher, args.lr, args.sigma, args.max_steps, args.init_strength, args.d_hidden,
                   args.sigma2, schedule, noise=PREDICT_NOISE[args.noise], weight_decay=args.weight_decay)
    payload = pred.to_dict()
    payload.update(singular_values=teacher.s, lr=args.lr, sigma=args.sigma,
                   sigma2=args.sigma if args.sigma2 is None else args.sigma2, schedule=args.schedule)
    opt = _noise_optimal_decay(args, teacher)
    payload["noise_optimal_weight_decay"] = opt
    optimum, cost, overshoot, why = _rise_explanation(teacher, pred, args.d_hidden)
    payload.update(noisy_optimum=optimum, overshoot_cost=cost, overshooting_modes=overshoot, rise_explanation=why)
    rows = [
        ["critical singular value s*", pred.critical_singular_value if np.ndim(pred.critical_singular_value) == 0
         else ", ".join(f"{x:.4g}" for x in pred.critical_singular_value)],
        ["harmful modes (s_i < s*)", index_list(pred.harmful_modes)],
        ["inflection step (exact argmin, GD steps)", _turn(pred, payload, teacher.rank)],
        ["inflection step estimate (GD steps)", "none (see the note)" if pred.inflection_step_estimate is None
         else pred.inflection_step_estimate],
        ["noise std on W1, W2 at the inflection", ", ".join(f"{x:.4g}" for x in pred.noise_std_at_inflection)],
        ["min E[L_pert] (loss units)", pred.min_expected_perturbed_loss],
        [f"E[L_pert] at step {args.max_steps}", pred.expected_perturbed_loss_at_max_steps],
        ["rise (final − min)", pred.rise],
        ["bound on the rise at convergence", pred.rise_bound_at_convergence],
        ["weight decay λ (both layers)", pred.weight_decay],
        [f"clean loss at step {args.max_steps}", pred.clean_loss_at_max_steps],
    ] + _decay_rows(opt)
    modes = [[i, s, "-" if k is None else k, "yes" if i in pred.harmful_modes else "no", o, g]
             for i, (s, k, o, g) in enumerate(zip(teacher.s, pred.mode_learning_steps, optimum, cost))]
    notes = ("learning step: first GD step with a_i ≥ s_i/2 (- : not by the last step). noisy optimum: the "
             "strength a_i at which E[L_pert] is least, (s_i − s*/2)/d_i. overshoot cost: what learning the "
             "mode past its noisy optimum, to s_i/d_i, adds to E[L_pert] (loss units; their sum is the bound)."
             "\ninflection step estimate: " + pred.inflection_estimate_note + "; error band "
             + pred.inflection_estimate_error_band + "\nwhy the rise: " + why)
    table = (cli.format_table(["prediction", "value"], rows) + "\n\n"
             + cli.format_table(["mode", "s_i", "learning step", "harmful", "noisy optimum a_i",
                                 "overshoot cost"], modes)
             + "\n\n" + wrap(notes, 100))
    cli.emit(args, payload, table)


def _turn(pred, payload, r):
    """The inflection step for the table, or why there is none; payload["turn"] says whether
    E[L_pert] rises after its minimum by more than the round-off of summing r modes
    (8(r + 1)ε relative): a path that only converges (e.g. at the noise-optimal weight decay)
    reaches its minimum up to round-off at some step, which is not a turn."""
    from ._predict import roundoff_tolerance

    tol = roundoff_tolerance(r) * max(abs(pred.min_expected_perturbed_loss),
                                      abs(pred.expected_perturbed_loss_at_max_steps))
    payload["turn"] = bool(pred.rise > tol)
    if payload["turn"]:
        return pred.inflection_step
    return f"none (rise {pred.rise:.2g} ≤ round-off {tol:.2g}; argmin step {pred.inflection_step})"


def _rise_explanation(teacher, pred, d_hidden):
    """Per mode: the noisy optimum, the cost of overshooting it; the modes that overshoot; one
    sentence on how the rise arises (a rise with no harmful mode is the overshoot of learned modes)."""
    from ._thresholds import noisy_optimum, rise_bound_terms

    star = pred.critical_singular_value
    d = teacher.input_variances
    optimum = noisy_optimum(teacher.s, star, d)
    cost = rise_bound_terms(teacher.s, star, d)
    from ._fixed_point import kept_modes

    reachable = np.zeros(teacher.rank, dtype=bool)
    reachable[kept_modes(teacher, d_hidden)] = True  # the modes the width can learn
    learned = np.array([k is not None for k in pred.mode_learning_steps]) & reachable
    harmful = set(int(i) for i in pred.harmful_modes)
    overshoot = [i for i in range(teacher.rank) if learned[i] and i not in harmful]
    if not pred.rise > 0:
        why = "E[L_pert] is least at the last step: no rise."
    elif not harmful:
        why = (f"no mode is harmful (every s_i ≥ s*), yet E[L_pert] rises: learned modes "
               f"{index_list(overshoot)} overshoot their noisy optimum (s_i − s*/2)/d_i on the "
               f"way to s_i/d_i, each adding up to s*²/8 (÷ d_i) to E[L_pert]; the rise is that overshoot by the "
               f"modes still approaching s_i/d_i after the inflection step.")
    else:
        why = (f"harmful modes {index_list(harmful)} raise E[L_pert] as they are learned "
               f"(s_i < s*), and learned modes {index_list(overshoot)} overshoot their noisy "
               f"optimum (s_i − s*/2)/d_i, each adding up to s*²/8 (÷ d_i).")
    return optimum, cost, overshoot, why


def _decay_rows(opt):
    if opt is None:
        return []
    pm, one = opt["per_matrix_fixed_point"], opt["single_fixed_point"]
    return [
        ["noise-optimal decay λ1 (W1), λ2 (W2)", f"{opt['per_matrix']['W1']:.4g}, {opt['per_matrix']['W2']:.4g}"],
        ["  its fixed point: clean loss, E[L_pert]", f"{pm['clean_loss']:.4g}, {pm['expected_perturbed_loss']:.4g}"],
        ["best single λ = s*/2", opt["single"]],
        ["  its fixed point: clean loss, E[L_pert]", f"{one['clean_loss']:.4g}, {one['expected_perturbed_loss']:.4g}"],
    ]


def _run_predict_deep(args, teacher, schedule):
    from ._deep import predict_deep

    if args.depth < 2:
        raise ValueError("--depth must be at least 2")
    if args.lam != 0 or args.weight_decay or args.sigma2 is not None:
        raise ValueError("--depth ≥ 3 takes one --sigma for every layer, without --lambda or --weight-decay")
    pred = predict_deep(teacher, args.lr, args.sigma, args.max_steps, args.depth, args.init_strength,
                        args.d_hidden, schedule)
    payload = pred.to_dict()
    payload.update(singular_values=teacher.s, lr=args.lr, sigma=args.sigma, schedule=args.schedule)
    rows = [
        ["depth N", pred.depth],
        ["critical singular value s*_N (exact, lone mode)", pred.critical_singular_value],
        ["first order (σ²(d_in + d_out + N − 2))^(N/2)", pred.critical_singular_value_first_order],
        ["harmful modes", index_list(pred.harmful_modes)],
        ["inflection step (exact argmin)", _turn(pred, payload, teacher.rank)],
        ["min E[L_pert]", pred.min_expected_perturbed_loss],
        [f"E[L_pert] at step {args.max_steps}", pred.expected_perturbed_loss_at_max_steps],
        ["rise (final − min)", pred.rise],
    ]
    _emit_prediction(args, teacher, pred, payload, rows)


def _run_predict_lambda(args, teacher, schedule):
    from ._lambda_balanced import predict_lambda

    if args.noise != "absolute":
        raise ValueError("--lambda or per-matrix --weight-decay λ1,λ2 takes absolute noise only")
    pred = predict_lambda(teacher, args.lr, args.sigma, args.max_steps, args.lam, args.init_strength,
                          args.d_hidden, args.sigma2, schedule, weight_decay=args.weight_decay)
    payload = pred.to_dict()
    payload.update(singular_values=teacher.s, lr=args.lr, sigma=args.sigma,
                   sigma2=args.sigma if args.sigma2 is None else args.sigma2, schedule=args.schedule)
    rows = [
        ["lambda", pred.lam],
        ["critical singular value s* (λ = 0)", pred.critical_singular_value],
        ["critical singular value √(s*(s* − |λ|))", pred.lambda_critical_singular_value],
        ["harmful modes", index_list(pred.harmful_modes)],
        ["inflection step (exact argmin)", _turn(pred, payload, teacher.rank)],
        ["min E[L_pert]", pred.min_expected_perturbed_loss],
        [f"E[L_pert] at step {args.max_steps}", pred.expected_perturbed_loss_at_max_steps],
        ["rise (final − min)", pred.rise],
        ["sensitivity E[L_pert] − L at step 0", pred.sensitivity_at_step_0],
        [f"sensitivity at step {args.max_steps}", pred.sensitivity_at_max_steps],
        ["weight decay λ1 (W1), λ2 (W2)", ", ".join(f"{x:.4g}" for x in np.broadcast_to(args.weight_decay, 2))],
        [f"clean loss at step {args.max_steps}", pred.clean_loss_at_max_steps],
    ]
    opt = _noise_optimal_decay(args, teacher) if args.lam == 0 else None
    payload["noise_optimal_weight_decay"] = opt
    rows += _decay_rows(opt)
    _emit_prediction(args, teacher, pred, payload, rows)


def run_finetune(args):
    from ._finetune import finetune_lr_limit, finetune_sweep, finetune_target
    from ._phase import log_steps

    teacher = cli.teacher_from_args(args)
    if args.weight_decay == "noise-optimal":
        raise ValueError("finetune has no --sigma: give --weight-decay as λ or λ1,λ2")
    if args.init == "random" and args.init_std is None:
        raise ValueError("--init random needs --init-std")
    T = np.asarray(args.pretrain_steps if args.pretrain_steps else log_steps(args.max_steps, 24), dtype=float)
    if np.any(np.isinf(T)):
        raise ValueError("--pretrain-steps must be finite")
    schedule = cli.schedule_from_args(args, T.max())
    B = finetune_target(teacher, args.change, args.change_size, args.change_rank, args.change_seed)
    limit = finetune_lr_limit(teacher, B, args.finetune_l2)
    if args.finetune_lr >= limit:
        raise ValueError(f"--finetune-lr {args.finetune_lr:g} is at or beyond the fine-tuning stability limit "
                         f"2/(λ_max(H) + λ) = {limit:.4g} (λ_max(H): the sharpness of the fine-tuning loss at "
                         f"the balanced A and B solutions; GD diverges above it)")
    r = finetune_sweep(teacher, B, args.d_hidden, args.lr, T, args.finetune_lr, args.finetune_steps,
                       args.finetune_l2, args.init, args.init_strength, args.init_std, args.seed, schedule,
                       weight_decay=args.weight_decay)
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
    table = cli.format_table(["pretrain step T", "L_A before", "L_A after", "L_B before", "L_B after",
                              "ΔF rel err"], rows)
    kind = "interior (a U)" if r.turning_is_interior else "at the edge of the sweep (no U)"
    notes = (f"T in GD steps of pre-training. L_A = ½‖W2W1 − A‖², L_B = ½‖W2W1 − B‖² (loss units), before and "
             f"after {args.finetune_steps} fine-tuning steps at rate {args.finetune_lr:g}. ΔF rel err = "
             "‖ΔF − ΔF₁‖/‖ΔF‖, ΔF the change of W2W1 during fine-tuning and ΔF₁ its first-order prediction "
             "(K times the first GD step): ≈ 0 linear regime, ≈ 1 or more the first-order picture "
             "misses the change (it is mostly nonlinear).")
    cli.emit(args, payload, table + "\n\n" + wrap(notes, 100)
             + f"\n\nturning step of L_A after fine-tuning: {r.turning_step}, {kind}; L_A rises "
             f"{payload['rise_after_turning']:.3g} from there to the last T")


def _emit_prediction(args, teacher, pred, payload, rows):
    """The --depth and --lambda tables: the predictions, then one row per mode."""
    modes = [[i, s, "-" if k is None else k, "yes" if i in pred.harmful_modes else "no"]
             for i, (s, k) in enumerate(zip(teacher.s, pred.mode_learning_steps))]
    cli.emit(args, payload, cli.format_table(["prediction", "value"], rows) + "\n\n"
             + cli.format_table(["mode", "s_i", "learning step", "harmful"], modes))
