import json
import subprocess
import sys

import numpy as np
import pytest

from linear_theory.cli import main

BASE = ["simulate", "--d-in", "24", "--d-hidden", "20", "--d-out", "16", "--singular-values", "2,1.5,1,0.5",
        "--init", "aligned", "--init-strength", "1e-6", "--lr", "0.05", "--checkpoints", "0,10,100,1000",
        "--seed", "0"]


def test_simulate_json_contract(capsys):
    assert main(BASE + ["--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == [0, 10, 100, 1000]
    assert len(out["loss"]) == 4
    a = np.array(out["mode_strengths"])
    assert a.shape == (4, 4)
    np.testing.assert_allclose(a[0], 1e-6, rtol=1e-12)
    np.testing.assert_allclose(a[-1], [2, 1.5, 1, 0.5], rtol=1e-9)
    # Balanced aligned weights: both squared norms are Σ a_i.
    np.testing.assert_allclose(out["weight_sq_norms"]["W1"], a.sum(1), rtol=1e-10)
    np.testing.assert_allclose(out["weight_sq_norms"]["W2"], a.sum(1), rtol=1e-10)
    assert out["units"]["time"] == "steps"


def test_simulate_methods_agree(capsys):
    results = {}
    for method in ("gd", "modes"):
        assert main(BASE + ["--json", "--method", method]) == 0
        results[method] = np.array(json.loads(capsys.readouterr().out)["mode_strengths"])
    np.testing.assert_allclose(results["gd"], results["modes"], rtol=1e-10)


def test_mode_order_follows_given_order(capsys):
    args = BASE[:BASE.index("--singular-values")] + ["--singular-values", "0.5,2"] + \
        BASE[BASE.index("--singular-values") + 2:]
    assert main(args + ["--json"]) == 0
    a = np.array(json.loads(capsys.readouterr().out)["mode_strengths"])
    np.testing.assert_allclose(a[-1], [0.5, 2.0], rtol=1e-9)


def test_table_output(capsys):
    assert main(BASE) == 0
    text = capsys.readouterr().out
    assert "step" in text and "a4" in text and "1000" in text


def test_random_init_and_out_file(tmp_path, capsys):
    out = tmp_path / "res.json"
    assert main(BASE[:-2] + ["--init", "random", "--init-std", "0.01", "--json", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed


@pytest.mark.parametrize("extra, needle", [
    (["--singular-values", "2,-1"], "positive"),
    (["--singular-values", "2,nan"], "finite"),
    (["--singular-values", "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"], "at most"),
    (["--lr", "0.5"], "stability limit 1/s_max = 0.5"),
    (["--lr", "0.7"], "stability limit"),
    (["--checkpoints", "0,2.5"], "integer"),
    (["--checkpoints", "0,-3"], "below 0"),
    (["--checkpoints", "a,b"], "integer"),
    (["--spectrum", "zipf:4"], "unknown spectrum"),
    (["--init", "random"], "init-std"),
    (["--d-in", "0"], "below 1"),
])
def test_cli_errors_one_line_exit_2(extra, needle, tmp_path, run_cli):
    out = tmp_path / "never.json"
    args = BASE + ["--out", str(out)]
    # later flags override earlier ones; --singular-values and --spectrum are exclusive
    if "--spectrum" in extra:
        i = args.index("--singular-values")
        args = args[:i] + args[i + 2:]
    code, stdout, stderr = run_cli(args + extra)
    assert code == 2, stderr
    assert needle in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert stdout == ""
    assert not out.exists()


def test_fresh_process_error_and_help():
    proc = subprocess.run([sys.executable, "-m", "linear_theory.cli"] + BASE + ["--lr", "0.6"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    help_ = subprocess.run([sys.executable, "-m", "linear_theory.cli", "simulate", "--help"],
                           capture_output=True, text=True)
    assert help_.returncode == 0 and "lr × steps" in help_.stdout


def test_co_diagonal_inputs_from_cli(capsys):
    assert main(["simulate", "--singular-values", "2,1", "--input-variances", "4,0.5", "--lr", "0.1",
                 "--checkpoints", "0,20000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    np.testing.assert_allclose(out["mode_strengths"][-1], [0.5, 2.0], rtol=1e-8)  # s_i / d_i
    assert out["loss"][-1] < 1e-20


def test_import_and_help_load_no_jax():
    """`import linear_theory` and every subcommand's --help build without importing JAX, optax,
    diffrax, sympy, matplotlib, scipy or tqdm (names are loaded on first use; start-up stays
    fast: scipy.stats alone takes over a second to import)."""
    code = ("import sys\nimport linear_theory\nfrom linear_theory.cli import build_parser\n"
            "sub = [a for a in build_parser()._actions if hasattr(a, 'choices') and isinstance(a.choices, dict)][0]\n"
            "assert len(sub.choices) >= 9, sorted(sub.choices)\n"
            "for argv in [['--help']] + [[name, '--help'] for name in sub.choices]:\n"
            "    try:\n        build_parser().parse_args(argv)\n    except SystemExit:\n        pass\n"
            "heavy = [m for m in ('jax', 'optax', 'diffrax', 'sympy', 'matplotlib', 'scipy', 'tqdm') if m in sys.modules]\n"
            "print(','.join(heavy), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr[-500:]


def test_console_script_quick_exit_keeps_output_status_and_cache(tmp_path, capsys):
    """The console script ends the process without Python's teardown of JAX: the JSON on a pipe
    is whole and equals the in-process run, the exit status is main()'s (0 run, 2 bad usage),
    and the persistent compilation cache written during the run is on disk afterwards."""
    args = ["predict", "--spectrum", "power:300:1:1", "--d-in", "300", "--d-out", "300", "--d-hidden", "300",
            "--lr", "0.5", "--sigma", "0.01", "--max-steps", "200", "--json"]
    cache = tmp_path / "cache"
    proc = subprocess.run([sys.executable, "-m", "linear_theory.cli", *args, "--compile-cache", str(cache)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert main(args) == 0
    here = json.loads(capsys.readouterr().out)
    there = json.loads(proc.stdout)
    for d in (here, there):
        d.pop("timing", None), d.get("config", {}).pop("compile_cache", None)
    assert there == here
    assert any(p.is_file() for p in cache.rglob("*"))
    bad = subprocess.run([sys.executable, "-m", "linear_theory.cli", "predict", "--no-such-option"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "error" in bad.stderr and bad.stdout == ""


def test_compile_cache_folder_is_trimmed_oldest_first(tmp_path):
    """trim keeps the cache folder within its limit by deleting the least recently used files
    until 3/4 of the limit is left; a folder within the limit is untouched."""
    import os

    from linear_theory._compile_cache import trim

    for i in range(10):  # file i: 100 bytes, last used at time 1000 + i (file 0 the oldest)
        p = tmp_path / f"entry{i}"
        p.write_bytes(b"x" * 100)
        os.utime(p, (1000 + i, 1000 + i))
    trim(tmp_path, max_bytes=1000)
    assert len(list(tmp_path.iterdir())) == 10
    trim(tmp_path, max_bytes=800)  # 1000 > 800: delete 0, 1, 2, 3 (600 ≤ 600 left)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"entry{i}" for i in range(4, 10)]
    trim(tmp_path / "missing", max_bytes=1)  # no folder: nothing to do, no error
