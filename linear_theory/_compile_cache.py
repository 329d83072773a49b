"""JAX's persistent compilation cache, in a per-user folder by default.

A second identical run then loads its compiled loops from disk instead of compiling them
again. Where the cache lives (first that is set):

1. the `folder` argument of `enable_compilation_cache` (the commands' `--compile-cache`);
2. the environment variable LINEAR_THEORY_COMPILE_CACHE;
3. $XDG_CACHE_HOME/linear-theory/jax, or ~/.cache/linear-theory/jax.

The value `off` (argument or environment variable) leaves the cache off. Light to import:
it never imports JAX. Before JAX is imported it sets JAX's own environment variables
(JAX_COMPILATION_CACHE_DIR, …), which JAX reads when it is imported; afterwards it updates
`jax.config`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENV = "LINEAR_THEORY_COMPILE_CACHE"
OFF = "off"
MAX_BYTES = 512 * 2**20  # the cache folder's size limit (least recently used entries go first)


def default_folder() -> Path:
    """The per-user cache folder: $XDG_CACHE_HOME/linear-theory/jax or ~/.cache/linear-theory/jax."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "linear-theory" / "jax"


def cache_folder(folder: str | os.PathLike | None = None) -> Path | None:
    """The folder the cache would use, or None when it is turned off."""
    choice = folder if folder is not None else os.environ.get(ENV)
    if choice is not None and str(choice).strip().lower() == OFF:
        return None
    if choice is None or str(choice).strip() == "":
        return default_folder()
    return Path(choice).expanduser()


def enable_compilation_cache(folder: str | os.PathLike | None = None) -> Path | None:
    """Turn on JAX's persistent compilation cache (see the module docstring for the folder).

    Every compiled function is cached (no minimum compile time or size), so the small
    loops of the theory are reused by the next process. The folder is kept within
    MAX_BYTES (`trim`). A folder that cannot be created leaves the cache off rather than
    failing the run.

    Args:
      folder: a folder, "off", or None for LINEAR_THEORY_COMPILE_CACHE / the default.
    Returns:
      The folder in use, or None when the cache is off.
    """
    path = cache_folder(folder)
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    trim(path)
    settings = {"jax_compilation_cache_dir": str(path), "jax_persistent_cache_min_compile_time_secs": 0.0}
    for name, value in settings.items():
        os.environ[name.upper()] = str(value)
    if "jax" in sys.modules:
        import jax

        for name, value in settings.items():
            jax.config.update(name, value)
    return path


def trim(path: Path, max_bytes: int = MAX_BYTES) -> None:
    """Keep the cache folder within max_bytes: past it, delete the files used longest ago
    (by access, else modification time) until 3/4 of the limit is left. One compiled loop
    takes tens to hundreds of kB, so this is rare; it runs in about a millisecond otherwise.
    (JAX's own size limit needs the `filelock` package and turns caching off without it.)"""
    try:
        entries = [(max(st.st_atime, st.st_mtime), st.st_size, e.path)
                   for e in os.scandir(path) if e.is_file(follow_symlinks=False) for st in (e.stat(),)]
    except OSError:
        return
    total = sum(size for _, size, _ in entries)
    if total <= max_bytes:
        return
    for _, size, name in sorted(entries):
        try:
            os.remove(name)
        except OSError:
            continue
        total -= size
        if total <= 3 * max_bytes // 4:
            break
