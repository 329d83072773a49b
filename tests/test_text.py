"""The real-text path: reader, split, empirical spectrum, first-order map, a tiny run, resume, compare."""

import io
import json
import math
import tarfile
import zipfile
from collections import Counter

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.finetune import FinetuneConfig
from experiments.model import GPTConfig, init_params
from experiments.presets import ProbeConfig
from experiments.probes import strengths
from experiments.text import held_out_pieces, read_source, sample_windows, text_tables, tokenise
from experiments.text_compare import compare_text, predict_order_text
from experiments.text_run import TextConfig, TextRunConfig, run_text_experiment
from experiments.text_spectrum import empirical_spectrum, first_order_map
from experiments.train import TrainConfig

PROSE = ("the cat sat on the mat. a dog ran to the cat and the cat ran off. "
         "then the dog sat on the mat, and the cat sat on the dog. ") * 4  # 492 characters, 16 distinct
BINARY = bytes(range(256)) * 4  # NUL bytes, invalid UTF-8


# ---------------------------------------------------------------- reading


def _tree(root):
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_text(PROSE[:200])
    (root / "b" / "c.txt").write_text(PROSE[200:])
    (root / "b" / "image.bin").write_bytes(BINARY)


def test_file_folder_zip_tar_read_the_same_text(tmp_path):
    _tree(tmp_path / "dir")
    one = tmp_path / "one.txt"
    one.write_text(PROSE[:200] + "\n" + PROSE[200:])
    with zipfile.ZipFile(tmp_path / "t.zip", "w") as z:
        for name in ("a.txt", "b/c.txt", "b/image.bin"):
            z.write(tmp_path / "dir" / name, name)
    with tarfile.open(tmp_path / "t.tar.gz", "w:gz") as t:
        t.add(tmp_path / "dir", arcname="dir")
    assert read_source(one).text == one.read_text() and read_source(one).skipped == ()
    for src in ("dir", "t.zip", "t.tar.gz"):
        s = read_source(tmp_path / src)
        # documents joined by one newline in path order; the binary member skipped and counted
        assert s.text == one.read_text() and s.files == 2 and len(s.skipped) == 1 and s.skipped[0].endswith("image.bin")
    # nothing was unpacked next to the archives
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir", "one.txt", "t.tar.gz", "t.zip"]


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_bytes(BINARY), "not UTF-8 text"),
    (lambda p: p.write_text("short text"), "too few"),
    (lambda p: None, "no such file"),
])
def test_bad_text_exits_2_with_one_line(tmp_path, run_cli, make, message):
    path = tmp_path / "in.txt"
    make(path)
    code, out, err = run_cli(["transformer", "--text", str(path), "--out", str(tmp_path / "run")])
    assert code == 2 and out == "" and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before anything is written


def test_archive_without_text_and_too_large_vocabulary_exit_2(tmp_path, run_cli):
    with zipfile.ZipFile(tmp_path / "bin.zip", "w") as z:
        z.writestr("x.bin", BINARY)
    code, _, err = run_cli(["transformer", "--text", str(tmp_path / "bin.zip"), "--out", str(tmp_path / "r")])
    assert code == 2 and "holds no text" in err and "1 files skipped" in err
    (tmp_path / "t.txt").write_text(PROSE)
    code, _, err = run_cli(["transformer", "--text", str(tmp_path / "t.txt"), "--max-vocab", "10", "--out",
                            str(tmp_path / "r")])
    assert code == 2 and "vocabulary of 17 tokens" in err and "--max-vocab" in err  # 16 characters + <unk>


# ---------------------------------------------------------------- split and spectrum


def test_split_and_char_vocabulary():
    from experiments.text import Source

    src = Source(PROSE + "Z", 1, (), "t")
    corpus, vocab = tokenise(src, "char", 0.1, 8)
    pieces = held_out_pieces(len(PROSE) + 1, 0.1, 9)
    held = "".join((PROSE + "Z")[a:b] for a, b in pieces)
    assert sum(b - a for a, b in pieces) == corpus.n_units - corpus.train.size
    assert "".join(vocab[i] for h in corpus.held for i in h) == held.replace("Z", "<unk>")  # Z only held out
    assert vocab[0] == "<unk>" and "Z" not in vocab
    w = corpus.eval_windows(9, 1000)
    assert w.shape[1] == 9 and all("".join(vocab[i] for i in row) in held for row in w)


def test_empirical_spectrum_against_counting_by_hand():
    """Counts with collections.Counter over the training characters, add-k probabilities and centring in plain
    Python; the module's modes must rebuild that matrix (full rank) and diagonalise it."""
    from experiments.text import Source

    corpus, vocab = tokenise(Source(PROSE, 1, (), "t"), "char", 0.1, 8)
    train = "".join(vocab[i] for i in corpus.train)
    assert len(PROSE) - len(train) == 49  # ⌊0.1·492⌋ held out: one segment (fewer than 4 windows of 9 per piece)
    assert train == PROSE[:len(train)]
    n, k = len(vocab), 0.5
    pairs, firsts = Counter(zip(train, train[1:])), Counter(train[:-1])
    by_hand = np.zeros((n, n))
    for i, a in enumerate(vocab):
        row = [math.log((pairs[(a, b)] + k) / (firsts[a] + k * n)) for b in vocab]
        mean = sum(row) / n
        by_hand[i] = [x - mean for x in row]
    spec = empirical_spectrum(corpus.train, n, rank=n - 1, k=k)
    assert np.allclose(spec.logits, by_hand, atol=1e-12)
    assert np.allclose(n * (spec.u * spec.s) @ spec.v.T, by_hand, atol=1e-10)  # L = V·U diag(s) Vᵀ (rank ≤ V − 1)
    assert np.allclose(spec.u.T @ by_hand @ spec.v / n, np.diag(spec.s), atol=1e-10)
    assert spec.s.size == np.linalg.matrix_rank(by_hand) < n  # the non-zero modes only (<unk> row is 0)
    assert np.all(np.diff(spec.s) <= 0) and np.allclose(spec.v.sum(0), 0, atol=1e-10)  # ordered; v ⊥ 1


def test_first_order_map_of_a_planted_model_gives_the_target_strengths():
    """A model with no blocks, identity embedding and unembedding = L + per-row shifts: its first-order map is L
    (the shifts are removed by centring), so a_k = s_k; a scaled copy gives a_k = c·s_k."""
    from experiments.text import Source

    corpus, vocab = tokenise(Source(PROSE, 1, (), "t"), "char", 0.1, 8)
    n = len(vocab)
    spec = empirical_spectrum(corpus.train, n, rank=6)
    cfg = GPTConfig(vocab_size=n, context=4, d_model=n, n_heads=1, n_layers=0)
    params = init_params(cfg, jax.random.key(0))
    params["wte"] = jnp.eye(n, dtype=jnp.float32)
    params["wpe"] = jnp.zeros_like(params["wpe"])
    shift = np.random.default_rng(0).standard_normal((n, 1))
    u, v = jnp.asarray(spec.u, jnp.float32), jnp.asarray(spec.v, jnp.float32)
    for c in (1.0, 0.3):
        params["lm_head"] = jnp.asarray(c * spec.logits + shift, jnp.float32)
        a = np.asarray(strengths(first_order_map(params, cfg), u, v))
        assert np.allclose(a, c * spec.s, rtol=1e-4, atol=1e-5)  # float32 forward pass


def test_sampled_windows_are_contiguous_pieces_of_the_stream():
    stream = np.arange(50, dtype=np.int32)
    w = np.asarray(sample_windows(jax.random.key(0), text_tables(stream), 200, 7))
    assert np.all(np.diff(w, axis=1) == 1) and w.min() == 0 and w.max() == 49  # both ends reached


# ---------------------------------------------------------------- a tiny run, resume, compare


def tiny_config(path, ft_path):
    return TextRunConfig(
        preset="text-cpu", text=TextConfig(source=str(path), finetune_source=str(ft_path), rank=6),
        model=GPTConfig(vocab_size=2, context=8, d_model=16, n_heads=2, n_layers=1),
        train=TrainConfig(steps=24, batch_size=8, n_checkpoints=5, first_checkpoint=4, chunk=8, lr=0.5),
        probe=ProbeConfig(n_eval=8, draws=2, sigmas_relative=(0.5,), sigmas_absolute=(0.1,), hessian_probes=2,
                          hessian_eval=4),
        finetune=FinetuneConfig(steps=4, batch_size=8, rates=(0.5, 0.1)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    (root / "pre.txt").write_text(PROSE)
    (root / "ft.txt").write_text(PROSE.upper().replace("CAT", "bird"))  # mostly unseen characters: <unk>
    cfg = tiny_config(root / "pre.txt", root / "ft.txt")
    return root, cfg, run_text_experiment(cfg, root / "run", progress=False)


def test_tiny_text_run(tiny_run):
    _, cfg, r = tiny_run
    c = len(r["steps"])
    assert r["steps"][0] == 0 and r["steps"][-1] == 24 and c == 5
    assert r["text"]["vocab_size"] == 17 and r["config"]["model"]["vocab_size"] == 17
    assert r["text"]["finetune"]["unk_fraction"] > 0.5
    # untrained model ≈ uniform: held-out loss near log V; training lowers it
    assert abs(r["loss"][0] - math.log(17)) < 0.05 and r["loss"][-1] < r["loss"][0] - 0.1
    assert np.asarray(r["mode_strengths"]).shape == (c, 6)
    assert len(r["noise"]["perturbed_draws"][0]) == c and len(r["finetune"]["pretrain_loss"][1]) == c
    assert "excess_loss" not in r and "no known next-token distribution" in r["units"]["no_exact_kl"]


def test_text_resume_gives_the_unbroken_result_and_a_changed_text_is_refused(tiny_run, tmp_path):
    root, cfg, unbroken = tiny_run
    middle = unbroken["steps"][2]
    assert run_text_experiment(cfg, tmp_path / "r", progress=False, stop_after=middle) is None
    resumed = run_text_experiment(cfg, tmp_path / "r", progress=False)
    for key in ("loss", "mode_strengths", "train_loss", "noise", "finetune", "hessian_trace"):
        assert resumed[key] == unbroken[key]
    assert resumed["timing"]["resumed_from"] == middle
    (root / "pre.txt").write_text(PROSE + " and more")
    try:
        with pytest.raises(ValueError, match="different configuration.*sha256"):
            run_text_experiment(cfg, tmp_path / "r", progress=False)
    finally:
        (root / "pre.txt").write_text(PROSE)


def test_compare_on_the_tiny_run(tiny_run, run_cli):
    root, _, r = tiny_run
    cmp = compare_text(r)
    ids = [p["id"] for p in cmp["predictions"]]
    assert ids == ["T1", "T3r", "T3a", "T4r", "T4a", "T5r", "T5a", "T6", "T6f"]
    assert all(p["verdict"] in ("held", "failed", "inconclusive") for p in cmp["predictions"])
    assert {n["id"] for n in cmp["not_applicable"]} >= {"2", "excess loss"}
    code, out, _ = run_cli(["compare", str(root / "run"), "--no-figure", "--json"])
    assert code == 0 and json.loads(out)["summary"] == cmp["summary"]
    alone = compare_text({**r, "finetune": None})  # --text without --finetune-text: T6 cannot be tested
    assert [p["verdict"] for p in alone["predictions"] if p["id"].startswith("T6")] == ["inconclusive"] * 2


@pytest.mark.parametrize("extra, message", [
    (["--seeds", "0,1"], "single-seed"),
    (["--vocab", "32"], "synthetic Markov chain"),
    (["--ft-rates", "auto"], "explicit rates"),
])
def test_synthetic_only_options_with_text_exit_2(tmp_path, run_cli, extra, message):
    (tmp_path / "t.txt").write_text(PROSE)
    code, out, err = run_cli(["transformer", "--text", str(tmp_path / "t.txt"), "--out", str(tmp_path / "run")] + extra)
    assert code == 2 and out == "" and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_compare_reads_a_text_run_in_a_seed_folder_and_refuses_several(tiny_run, run_cli, tmp_path):
    import shutil

    root, _, r = tiny_run
    (tmp_path / "seed-0").mkdir()
    shutil.copy(root / "run" / "result.json", tmp_path / "seed-0")
    code, out, _ = run_cli(["compare", str(tmp_path), "--no-figure", "--json"])
    assert code == 0 and json.loads(out)["summary"] == compare_text(r)["summary"]
    shutil.copytree(tmp_path / "seed-0", tmp_path / "seed-1")
    code, out, err = run_cli(["compare", str(tmp_path), "--no-figure", "--json"])
    assert code == 2 and out == "" and "single-seed" in err and err.count("\n") == 1


def test_mode_order_verdict_on_constructed_curves():
    """Modes reaching s/2 in order of s → held; in reverse order → failed (the verdict follows the data)."""
    steps = [0, 10, 20, 40, 80, 160, 320, 640]
    s = np.array([1.0, 0.8, 0.6, 0.5, 0.4, 0.3, 0.2])
    cross = np.arange(1, 8)  # mode k crosses half its target at checkpoint k
    for order, verdict in ((cross, "held"), (cross[::-1], "failed")):
        a = np.array([[s[k] * (0.9 if c >= order[k] else 0.1) for k in range(7)] for c in range(8)])
        r = {"steps": steps, "target_strengths": s.tolist(), "mode_strengths": a.tolist()}
        assert predict_order_text(r)["verdict"] == verdict


def test_embedded_default_is_two_disjoint_parts_of_pydoc_topics():
    from pydoc_data.topics import topics

    from experiments.text import embedded_texts

    pre, ft = embedded_texts()
    ft_keys = [k for k in topics if k.startswith(("types", "bltin-")) or k == "string-methods"]
    assert ft == "\n".join(topics[k] for k in sorted(ft_keys))
    assert pre == "\n".join(topics[k] for k in sorted(set(topics) - set(ft_keys)))
    assert len(pre) > 3 * len(ft) > 100_000  # several hundred kB of prose, a smaller second text


def test_byte_tokens_are_the_utf8_bytes():
    from experiments.text import Source

    text = PROSE + "é—ü"  # multi-byte characters
    corpus, vocab = tokenise(Source(text, 1, (), "t"), "byte", 0.1, 8)
    raw = text.encode("utf-8")
    assert vocab is None and corpus.n_units == len(raw)
    assert bytes(corpus.train.astype(np.uint8)) == raw[:corpus.train.size]
