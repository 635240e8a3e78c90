"""benchmarks/gpu_check.sh cannot rot: its dry run (everything but the GPU) and its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run(tmp_path):
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gpu_check: dry run complete" in run.stdout
    for step in ("build", "tests", "bench", "tile_sweep", "bench_compile"):
        assert f"== {step}:" in run.stdout
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"]


def test_unknown_option_is_an_error(tmp_path):
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--fast", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 2 and "unknown option --fast" in run.stderr


def test_summary_reports_failures_and_rows(tmp_path):
    (tmp_path / "steps.tsv").write_text("build\t0\t40\ntests\t1\t30\nbench\t124\t180\n")
    row = {"name": "espcn_fast:cuda", "precision": "fp16", "scale": 3, "batch": 1, "status": "ok", "reason": "",
           "ms_per_frame": 0.05, "speedup_vs_eager": 4.2, "extra": {"x_floor": 4.7}}
    (tmp_path / "bench.json").write_text(json.dumps({"machine": {"gpu": "NVIDIA H100"}, "rows": [row]}))
    run = subprocess.run([sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert "| tests | FAILED (1) |" in run.stdout and "| bench | TIMED OUT |" in run.stdout
    assert "| 3 | 1 | espcn_fast:cuda | fp16 | 0.0500 | 4.20x | 4.7 |" in run.stdout


def test_summary_picks_the_fastest_correct_tile_over_all_scales(tmp_path):
    (tmp_path / "steps.tsv").write_text("tile_sweep\t1\t12\n")
    def row(tile, x2, x3, x4, b8, ok=True):
        return {"precision": "fp16", "tile": tile, "bytes": 1, "max_rel_error": 1e-3, "ok": ok,
                "us": {"x2": x2, "x3": x3, "x4": x4, "x3_batch8_per_frame": b8}}
    rows = [row("today's", 120.0, 60.0, 30.0, 60.0), row("14x30", 121.0, 60.5, 30.0, 60.0),
            row("6x14", 20.0, 10.0, 5.0, 10.0, ok=False),  # fastest, but wrong
            row("16x30", 160.0, 50.0, 40.0, 70.0),  # wins x3 alone
            row("10x30", 100.0, 54.0, 27.0, 54.0)]
    (tmp_path / "tile_sweep.json").write_text(json.dumps({"device": "NVIDIA H100", "rows": rows}))
    run = subprocess.run([sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT,
                         capture_output=True, text=True)
    assert run.returncode == 1 and "| tile_sweep | FAILED (1) |" in run.stdout
    assert "| fp16 | 60.0 | 10x30 | 53.0 | 100.0 / 54.0 / 27.0 / 54.0 |" in run.stdout, run.stdout


def test_outputs_are_packed_for_the_device_tool(tmp_path):
    # The block that runs when OUTDIR is the device tool's $OUT (it returns 8
    # files): its own files into all.tar.gz, the first-read ones kept beside,
    # nothing else in the folder touched.
    script = (ROOT / "benchmarks/gpu_check.sh").read_text()
    block = script[script.index("# The device tool brings back at most 8 files"):script.index("exit $RC")]
    own = ["gpu.txt", "bench.json", "bench.png", "tests.log", "build.log", "kernel_profile.log", "gpu_check.json"]
    for name in own + ["someone_elses.txt"]:
        (tmp_path / name).write_text(name)
    (tmp_path / "steps.tsv").write_text("build\t0\t5\ntests\t1\t9\nkernel_profile\t0\t3\n")
    env = {**os.environ, "OUT": str(tmp_path), "OUTDIR": str(tmp_path), "STATUS": str(tmp_path / "steps.tsv"), "DRY": "0"}
    run = subprocess.run(["bash", "-c", block], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0 and "every log is in" in run.stdout, run.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["all.tar.gz", "bench.json", "gpu_check.json", "kernel_profile.log", "someone_elses.txt",
                    "steps.tsv", "tests.log"]
    packed = subprocess.run(["tar", "tzf", str(tmp_path / "all.tar.gz")], capture_output=True, text=True).stdout.split()
    assert sorted(packed) == sorted(own + ["steps.tsv"])


def test_steps_option_runs_only_the_steps_named(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--dry-run", "--steps", "build,bench", str(tmp_path)],
                         cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "== build:" in run.stdout and "== bench:" in run.stdout and "== tests:" not in run.stdout
    assert "| tests | not asked (--steps) |" in run.stdout
    for args, message in ((["--steps"], "--steps needs a list"), (["--steps", "--dry-run"], "--steps needs a list"),
                          (["--steps", "build,test"], "unknown step 'test'")):
        bad = subprocess.run(["bash", "benchmarks/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True,
                             env=env, timeout=60)
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)
