import os

import numpy as np
import pytest

# Tests compile afresh: no persistent JAX compilation cache (no files under ~/.cache), so
# a stale cache entry can never hide a compile-time change.
os.environ["LINEAR_THEORY_COMPILE_CACHE"] = "off"


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def run_cli(capsys):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    from linear_theory.cli import main

    def run(argv):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse usage errors
            code = e.code
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
