"""Real text for the transformer check: read, tokenise, split, sample windows.

Sources: a UTF-8 file, a folder of them (recursive, sorted by path), or a .zip / .tar /
.tar.gz / .tgz / .tar.bz2 / .tar.xz archive read in place (zipfile/tarfile, nothing unpacked).
A member that is not UTF-8 text (a NUL byte, or bytes that do not decode) is skipped and
counted; a single file that is not text, or a source with no text at all, is an error.
Documents are joined with one newline, in path order.

"embedded" is the default: Python's own documentation prose in `pydoc_data.topics` (the
text behind `help('if')`), nothing downloaded. Pre-training reads every topic except the
"Built-in Types" chapter of the library reference (keys starting with "types" or "bltin-",
and "string-methods"); fine-tuning reads that chapter. The two parts are disjoint; their
sizes depend on the Python version (3.11.7: 355,018 and 110,029 characters, topics joined by newlines).

Tokens: "char" — one id per Unicode character, the vocabulary the training split's
characters in code-point order after id 0 = <unk>, which every other character (held-out
or fine-tuning text) maps to; "byte" — the UTF-8 bytes, vocabulary 256.

Split: the stream is cut into n equal segments (n ≤ 10, as many as keep each held-out
piece ≥ 4 windows long) and the last `held_out` fraction of each segment is held out; the
rest, concatenated in order, is the training split (one stream: windows and bigram counts
run across the few joins). Held-out windows of context + 1 tokens tile the held-out pieces
without overlap; probes use up to n_eval of them, evenly spaced. Every probe scores this
held-out set only.
"""

from __future__ import annotations

import hashlib
import math
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

EMBEDDED = "embedded"
TOKENS = ("char", "byte")
UNK = "<unk>"
MIN_HELD_WINDOWS = 4  # held-out windows per piece when the text is cut into segments
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def _embedded_finetune_key(key: str) -> bool:
    return key.startswith(("types", "bltin-")) or key == "string-methods"


def embedded_texts() -> tuple[str, str]:
    """(pre-training text, fine-tuning text) from pydoc_data.topics, topics in key order."""
    from pydoc_data.topics import topics

    keys = sorted(topics)
    pre = "\n".join(topics[k] for k in keys if not _embedded_finetune_key(k))
    ft = "\n".join(topics[k] for k in keys if _embedded_finetune_key(k))
    return pre, ft


# ---------------------------------------------------------------- reading


def as_text(data: bytes) -> str | None:
    """The UTF-8 text of `data` (a leading BOM dropped), or None when it is not text."""
    if b"\x00" in data:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text[1:] if text.startswith("\ufeff") else text


@dataclass(frozen=True)
class Source:
    text: str  # the documents joined by "\n"
    files: int  # text members read (empty ones included)
    skipped: tuple  # names of members that are not text
    origin: str  # what was read


def _members(path: Path):
    """(name, bytes) of every regular file of a folder or an archive, sorted by name."""
    name = path.name.lower()
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            yield str(p.relative_to(path)), p.read_bytes()
    elif name.endswith(".zip"):
        with zipfile.ZipFile(path) as z:
            for info in sorted(z.infolist(), key=lambda i: i.filename):
                if not info.is_dir():
                    yield info.filename, z.read(info)
    else:
        with tarfile.open(path, "r:*") as t:
            for info in sorted(t.getmembers(), key=lambda i: i.name):
                if info.isfile():
                    yield info.name, t.extractfile(info).read()


def read_source(path) -> Source:
    """Read a file, folder or archive (module docstring). ValueError with one line for a bad input."""
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{p}: no such file or folder")
    lower = p.name.lower()
    if p.is_file() and not lower.endswith((".zip", *TAR_SUFFIXES)):
        text = as_text(p.read_bytes())
        if text is None:
            raise ValueError(f"{p} is not UTF-8 text (binary?): give a text file, a folder or a .zip/.tar(.gz) of them")
        if not text:
            raise ValueError(f"{p} is empty")
        return Source(text, 1, (), str(p))
    docs, skipped = [], []
    try:
        for name, data in _members(p):
            text = as_text(data)
            if text is None:
                skipped.append(name)
            else:
                docs.append(text)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as e:
        raise ValueError(f"{p} cannot be read as an archive: {e}") from None
    if not any(docs):
        raise ValueError(f"{p} holds no text: {len(docs)} empty text files, {len(skipped)} files skipped as not text")
    return Source("\n".join(docs), len(docs), tuple(skipped), str(p))


# ---------------------------------------------------------------- tokens and split


def held_out_pieces(n: int, held_out: float, window: int) -> list[tuple[int, int]]:
    """[(start, end)] of the held-out pieces of a stream of n tokens (module docstring)."""
    segments = max(1, min(10, math.floor(held_out * n / (MIN_HELD_WINDOWS * window))))
    bounds = np.linspace(0, n, segments + 1).round().astype(int)
    return [(int(b - math.floor(held_out * (b - a))), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def _units(text: str, tokens: str):
    return text if tokens == "char" else text.encode("utf-8")


def _split(units, held_out: float, window: int):
    """(training stream, [held-out pieces]) of a str or bytes."""
    pieces = held_out_pieces(len(units), held_out, window)
    train, held, last = [], [], 0
    for a, b in pieces:
        train.append(units[last:a])
        held.append(units[a:b])
        last = b
    return units[:0].join(train), held


@dataclass(frozen=True)
class Corpus:
    """One text, tokenised: the training stream and the held-out pieces (int32 ids)."""

    train: np.ndarray
    held: tuple  # of np.ndarray
    n_units: int  # characters or bytes before the split
    sha256: str  # of the UTF-8 text
    files: int
    skipped: tuple

    def eval_windows(self, window: int, n_max: int) -> np.ndarray:
        """(n, window) non-overlapping held-out windows, up to n_max evenly spaced among all of them."""
        wins = [piece[i:i + window] for piece in self.held for i in range(0, len(piece) - window + 1, window)]
        if not wins:
            raise ValueError("no held-out window")  # excluded by check_size
        pick = np.unique(np.linspace(0, len(wins) - 1, min(n_max, len(wins))).round().astype(int))
        return np.stack([wins[i] for i in pick]).astype(np.int32)


def build_vocab(train_units, tokens: str) -> list[str] | None:
    """Char: [<unk>] + the training split's characters in code-point order; byte: None (256 ids)."""
    if tokens == "byte":
        return None
    return [UNK] + sorted(set(train_units))


def encode(units, vocab: list[str] | None) -> np.ndarray:
    if vocab is None:
        return np.frombuffer(bytes(units), np.uint8).astype(np.int32)
    index = {c: i for i, c in enumerate(vocab)}
    return np.fromiter((index.get(c, 0) for c in units), np.int32, len(units))


def vocab_size(vocab) -> int:
    return 256 if vocab is None else len(vocab)


def check_size(n: int, held_out: float, context: int, what: str):
    need = math.ceil((context + 1) / held_out)
    if n < need:
        raise ValueError(f"{what} holds {n} tokens, too few: a held-out fraction {held_out:g} of at least one window "
                         f"of context + 1 = {context + 1} tokens needs ≥ {need}: give a longer text")


def tokenise(source: Source, tokens: str, held_out: float, context: int, vocab=None, what="text"):
    """(Corpus, vocab): split `source`, build the vocabulary from its training split unless given."""
    if tokens not in TOKENS:
        raise ValueError(f"unknown tokens {tokens!r} (char or byte)")
    units = _units(source.text, tokens)
    check_size(len(units), held_out, context, what)
    train, held = _split(units, held_out, context + 1)
    if vocab is None and tokens == "char":
        vocab = build_vocab(train, tokens)
    corpus = Corpus(encode(train, vocab), tuple(encode(h, vocab) for h in held), len(units),
                    hashlib.sha256(source.text.encode("utf-8")).hexdigest(), source.files, source.skipped)
    return corpus, vocab


def load_source(spec: str, finetune: bool = False) -> Source:
    """A Source from a path, or the embedded default (`spec` == "embedded")."""
    if spec == EMBEDDED:
        pre, ft = embedded_texts()
        return Source(ft if finetune else pre, 1, (), "embedded:pydoc_data.topics:" + ("finetune" if finetune
                                                                                        else "pretrain"))
    return read_source(spec)


# ---------------------------------------------------------------- on device


class TextTables(NamedTuple):
    """The training stream on the device (the `tables` argument of train.py's sampler)."""

    tokens: "jax.Array"  # noqa: F821 — (N,) int32


def text_tables(stream: np.ndarray) -> TextTables:
    import jax.numpy as jnp

    return TextTables(jnp.asarray(stream, jnp.int32))


def sample_windows(key, tables: TextTables, batch: int, length: int):
    """(batch, length) windows of the stream at uniform random starts (a train.py sampler)."""
    import jax
    import jax.numpy as jnp

    n = tables.tokens.shape[0]
    starts = jax.random.randint(key, (batch,), 0, n - length + 1)
    return tables.tokens[starts[:, None] + jnp.arange(length)[None, :]]


def summary(source: Source, corpus: Corpus) -> dict:
    return {"origin": source.origin, "units": corpus.n_units, "files": source.files, "skipped_not_text": len(source.skipped),
            "skipped_names": list(source.skipped[:20]), "sha256": corpus.sha256, "train_tokens": int(corpus.train.size),
            "held_out_tokens": int(sum(h.size for h in corpus.held))}
