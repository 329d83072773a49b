"""The real-text options of `linear-theory transformer` (--text, --finetune-text, --tokens, ...)."""

from __future__ import annotations

import dataclasses

import numpy as np

from linear_theory import cli
from linear_theory.output import format_table, wrap

from .text import EMBEDDED, TOKENS

TEXT_HELP = (
    "Real text (--text, or --preset text-cpu/text-gpu): the same model, training and probes on a text. PATH is a "
    "UTF-8 file, a folder of them (recursive) or a .zip/.tar/.tar.gz/.tgz/.tar.bz2/.tar.xz archive read in place; "
    "members that are not UTF-8 text are skipped and counted in result.json. 'embedded' (the default of the text "
    "presets) needs nothing downloaded: Python's own documentation prose, pydoc_data.topics (the text of "
    "help('if')); pre-training on every topic but the library reference's 'Built-in Types' chapter (355,018 "
    "characters on Python 3.11.7), fine-tuning on that chapter (keys types*, bltin-*, string-methods: 110,029 "
    "characters). The last --held-out fraction of each of up to 10 equal segments of a text is held out; every "
    "probe scores those held-out windows. Target modes: the SVD of L, the add-k smoothed log P̂(next | current) of "
    "the training split with every row centred, s_k = σ_k(L)/V (V the vocabulary). The model's first-order map M: "
    "row i holds its logits for the length-1 context [i] (the first position, where it sees token i alone), "
    "centred over the V next tokens; a_k = u_kᵀ M v_k / V. Losses are the model's cross-entropy on the held-out "
    "windows (nats/token): real text has no exact KL. After fine-tuning, out-of-domain = the first text's "
    "held-out loss, in-domain = the second text's. Presets: text-cpu (d_model 64, 2 layers, context 32, 4000 "
    "steps) took 8 minutes on the embedded default on 2 CPU cores shared with other jobs (README); text-gpu "
    "(d_model 256, 4 layers, context 256, 30,000 steps, ≈ 4.3e16 FLOPs) is sized on paper, not run."
)


def add_text_args(p):
    g = p.add_argument_group("real text", TEXT_HELP)
    g.add_argument("--text", metavar="PATH", help=f"pre-training text: a file, folder or archive, or '{EMBEDDED}' "
                                                  "(the default with a text preset)")
    g.add_argument("--finetune-text", metavar="PATH",
                   help=f"fine-tuning text (file, folder, archive or '{EMBEDDED}'); default: '{EMBEDDED}' when --text "
                        "is embedded, otherwise no fine-tuning")
    g.add_argument("--tokens", choices=TOKENS, help="char: one id per character, vocabulary from the training split "
                                                    "plus <unk> (id 0) for characters outside it; byte: the UTF-8 "
                                                    "bytes, 256 ids (default char)")
    g.add_argument("--max-vocab", type=cli.pos_int, metavar="N",
                   help="the most tokens the model may hold (text-cpu 256, text-gpu 512)")
    g.add_argument("--held-out", type=cli.positive, metavar="F", help="held-out fraction of each text (default 0.1)")
    g.add_argument("--smoothing", type=cli.positive, metavar="K", help="add-k smoothing of the bigram counts "
                                                                       "(default 1)")


def resolve_preset(args) -> bool:
    """Fill in args.preset; True for a real-text run. A synthetic preset with --text, a text option without
    --text, and the synthetic chain's options or --seeds with --text are errors."""
    text_mode = args.text is not None or (args.preset or "").startswith("text-")
    if args.preset is None:
        args.preset = "text-cpu" if text_mode else "default"
    if text_mode and not args.preset.startswith("text-"):
        raise ValueError(f"--text needs a text preset (--preset text-cpu or text-gpu), not {args.preset}")
    if not text_mode:
        extra = [o for o in ("finetune_text", "tokens", "max_vocab", "held_out", "smoothing")
                 if getattr(args, o) is not None]
        if extra:
            raise ValueError(f"--{extra[0].replace('_', '-')} applies to real-text runs only (give --text)")
        return False
    # --rank is shared (the text's target modes); the other language options describe the synthetic chain
    synthetic = [o for o in ("vocab", "s1", "alpha", "ft_kind", "ft_rank", "ft_strength", "ft_angle")
                 if getattr(args, o, None) is not None]
    if synthetic:
        raise ValueError(f"--{synthetic[0].replace('_', '-')} sets the synthetic Markov chain, not a real-text run "
                         "(the vocabulary and spectrum come from the text)")
    if getattr(args, "seeds", None) is not None:
        raise ValueError("--seeds runs the synthetic check over seeds; a real-text run is single-seed: give --seed N "
                         "(and a separate --out per seed)")
    return True


def text_config(args, cfg):
    """The text options on top of a text preset's configuration."""
    if not cfg.finetune.rates:
        raise ValueError("--ft-rates auto reads the synthetic chain's linear theory; a real-text run needs explicit "
                         "rates (--ft-rates R1,R2,...)")
    source = args.text or EMBEDDED
    ft = args.finetune_text or (EMBEDDED if source == EMBEDDED else None)
    kw = {"source": source, "finetune_source": ft}
    for name in ("tokens", "max_vocab", "held_out", "rank", "smoothing"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    return dataclasses.replace(cfg, text=dataclasses.replace(cfg.text, **kw))


def run_text_transformer(args, cfg):
    from .text_run import prepare, run_text_experiment

    cfg, data = prepare(text_config(args, cfg))  # bad input: one line, exit 2, before anything is written
    result = run_text_experiment(cfg, args.out_dir, progress=not args.no_progress, data=data)
    cli.emit(args, result, text_table(result), check_finite=False)


def text_table(r) -> str:
    nz, ft, t = r["noise"], r["finetune"], r["text"]
    cols = [(f"Δ{k[0]}{s:g}", nz["delta_loss"][i]) for i, (k, s) in enumerate(zip(nz["kind"], nz["sigmas"]))]
    if ft is not None:
        cols += [(f"ood@{rate:g}", ft["pretrain_loss"][j]) for j, rate in enumerate(ft["rates"])]
        cols += [(f"ind@{rate:g}", ft["finetune_loss"][j]) for j, rate in enumerate(ft["rates"])]
    s, a = np.asarray(r["target_strengths"]), np.asarray(r["mode_strengths"])
    learned = (a >= s / 2).sum(1)
    headers = ["step", "loss", "Σa", "learned"] + [c[0] for c in cols]
    rows = [[st, r["loss"][i], float(a[i].sum()), int(learned[i])] + [c[1][i] for c in cols]
            for i, st in enumerate(r["steps"])]
    pre = t["pretrain"]
    head = (f"{r['preset']}/{r['variant']} on {pre['origin']} ({pre['units']} {t['tokens']}s, {pre['files']} files, "
            f"{pre['skipped_not_text']} skipped as not text; vocabulary {t['vocab_size']}): {r['params']} parameters; "
            f"held-out loss of the smoothed bigram {t['bigram_loss']:.4f}, unigram {t['unigram_loss']:.4f} nats; "
            f"s1 = {s[0]:.3f}, Σs = {s.sum():.3f} over {s.size} modes; {r['timing']['total_s']:.0f} s")
    notes = ("step: pre-training optimiser steps; loss: the model's held-out cross-entropy (nats/token; no exact KL "
             "on real text); Σa = sum of mode strengths; learned = modes with a_k ≥ s_k/2; Δr/Δa = Δloss under "
             "relative/absolute noise of that σ; ood@rate, ind@rate = held-out loss on the pre-training / fine-tuning "
             "text after fine-tuning at that rate")
    return wrap(head, 100) + "\n" + format_table(headers, rows) + "\n\n" + wrap(notes, 100)
