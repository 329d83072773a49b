"""Toy transformer runs on a Markov language with a known spectrum (THEORY.md §6).

One module per job, each readable whole:
    language.py   the Markov chain L = V·U diag(s) Vᵀ, its entropy rate, the device sampler, the second chain
    model.py      config dataclass + a decoder-only transformer in plain JAX
    train.py      optimisers, schedules, scan-chunked training, checkpoints and resume
    probes.py     exact excess loss, mode strengths, weight noise, noise floor, Hessian trace
    finetune.py   fixed-rate fine-tuning of every checkpoint on the second chain (seeds vmapped)
    presets.py    ci / default / gpu × theory / realistic
    run.py        the whole protocol in a run folder
    theory.py     the linear theory for the run at hand: rate map, a0, noise, fine-tuning U window
    compare.py    the theory's predictions against one run or several seeds: statistic, interval, verdict
    cli.py        `linear-theory transformer` and `linear-theory compare`
    study.py      `linear-theory study mitigations`: a fixed grid of mitigations, paired verdicts, linear predictions
Real text (`transformer --text`):
    text.py           read a file/folder/archive, char or byte tokens, held-out split, window sampler
    text_spectrum.py  the empirical bigram spectrum (target modes) and the model's first-order map
    text_run.py       text presets (text-cpu, text-gpu) and the protocol on a text
    text_compare.py   the predictions that apply on real text, and which do not
    text_cli.py       the real-text options of `linear-theory transformer`
"""
