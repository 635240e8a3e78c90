"""benchmarks/gpu_check.sh cannot rot: its dry run (everything but the GPU) and its summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_dry_run(tmp_path):
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "gpu_check: dry run complete" in run.stdout
    for step in ("build", "tests", "bench", "tile_sweep", "bench_compile"):
        assert f"== {step}:" in run.stdout
    assert json.loads((tmp_path / "gpu_check.json").read_text())["steps"]


def test_unknown_option_is_an_error(tmp_path):
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--fast", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 2 and "unknown option --fast" in run.stderr


def test_summary_reports_failures_and_rows(tmp_path):
    (tmp_path / "steps.tsv").write_text("build\t0\t40\ntests\t1\t30\nbench\t124\t180\n")
    row = {
        "name": "espcn_fast:cuda",
        "precision": "fp16",
        "scale": 3,
        "batch": 1,
        "status": "ok",
        "reason": "",
        "ms_per_frame": 0.05,
        "speedup_vs_eager": 4.2,
        "extra": {"x_floor": 4.7},
    }
    (tmp_path / "bench.json").write_text(json.dumps({"machine": {"gpu": "NVIDIA H100"}, "rows": [row]}))
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 1
    assert "| tests | FAILED (1) |" in run.stdout and "| bench | TIMED OUT |" in run.stdout
    assert "| 3 | 1 | espcn_fast:cuda | fp16 | 0.0500 | 4.20x | 4.7 |" in run.stdout


def test_summary_picks_the_fastest_correct_tile_over_all_scales(tmp_path):
    (tmp_path / "steps.tsv").write_text("tile_sweep\t1\t12\n")

    def row(tile, x2, x3, x4, b8, ok=True):
        return {
            "precision": "fp16",
            "tile": tile,
            "bytes": 1,
            "max_rel_error": 1e-3,
            "ok": ok,
            "us": {"x2": x2, "x3": x3, "x4": x4, "x3_batch8_per_frame": b8},
        }

    rows = [
        row("today's", 120.0, 60.0, 30.0, 60.0),
        row("14x30", 121.0, 60.5, 30.0, 60.0),
        row("6x14", 20.0, 10.0, 5.0, 10.0, ok=False),  # fastest, but wrong
        row("16x30", 160.0, 50.0, 40.0, 70.0),  # wins x3 alone
        row("10x30", 100.0, 54.0, 27.0, 54.0),
    ]
    (tmp_path / "tile_sweep.json").write_text(json.dumps({"device": "NVIDIA H100", "rows": rows}))
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 1 and "| tile_sweep | FAILED (1) |" in run.stdout
    assert "| fp16 | 60.0 | 10x30 | 53.0 | 100.0 / 54.0 / 27.0 / 54.0 |" in run.stdout, run.stdout


def run_lib(tmp_path: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` in bash after sourcing benchmarks/gpu_check_lib.sh (step, needs, publish), as gpu_check.sh does."""
    logs, out = tmp_path / "logs", tmp_path / "out"
    logs.mkdir(exist_ok=True)
    out.mkdir(exist_ok=True)
    base = {
        "STEPS": "",
        "DRY": "0",
        "DEADLINE": "600",
        "LOGDIR": str(logs),
        "STATUS": str(logs / "steps.tsv"),
        "OUTDIR": str(out),
        "PUBLISH": "0",
        "PY": sys.executable,
        "KILL_AFTER": "1",
        "KEEP": "gpu_check.json steps.tsv tests.log bench.json tile_sweep.json kernel_profile.log",
    }
    prelude = "source benchmarks/gpu_check_lib.sh; START=$(date +%s); "
    return subprocess.run(
        ["bash", "-c", prelude + script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **base, **env},
        timeout=120,
    )


def steps_tsv(tmp_path: Path) -> dict[str, list[str]]:
    lines = (tmp_path / "logs" / "steps.tsv").read_text().splitlines()
    return {line.split("\t")[0]: line.split("\t")[1:] for line in lines}


def test_step_bookkeeping(tmp_path):
    # Own cap reached: 124, a failure. Deadline reached first: "cut". Less time
    # left than the step's minimum: not started. A SIGTERM-proof command is
    # killed (timeout -k). A sanitizer that cannot attach: "unsupported".
    script = """
    step ok 10 1 true
    step capped 1 1 sleep 5
    step stubborn 1 1 bash -c 'trap "" TERM; sleep 20'
    UNSUPPORTED='Device not supported|error 999' step memcheck 10 1 bash -c 'echo "Error: Device not supported"; exit 1'
    DEADLINE=$(( $(date +%s) - START + 2 ))
    step cut 60 1 sleep 10
    step starved 60 30 true
    """
    run = run_lib(tmp_path, script)
    assert run.returncode == 0, run.stderr
    steps = steps_tsv(tmp_path)
    assert steps["ok"][0] == "0" and steps["capped"][0] == "124" and steps["stubborn"][0] == "137"
    assert int(steps["stubborn"][1]) < 5  # killed 1 s (KILL_AFTER) after its SIGTERM, not after sleep 20
    assert steps["memcheck"][:1] + steps["memcheck"][2:] == ["unsupported", "Device not supported"]
    assert steps["cut"][0] == "cut" and "deadline" in steps["cut"][2]
    assert steps["starved"][0] == "no-time" and "needs 30 s" in steps["starved"][2]
    summary = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path / "logs")], cwd=ROOT, capture_output=True, text=True
    )
    assert "FAILED steps: capped, stubborn\n" in summary.stdout, summary.stdout  # not cut, starved, memcheck
    assert "| cut | cut (the script's deadline): stopped by" in summary.stdout
    assert "| memcheck | unsupported here: Device not supported |" in summary.stdout


def test_every_step_is_published_for_the_device_tool(tmp_path):
    # On a remote runner (8 files back, killed at its limit) each step
    # leaves $OUT holding all.tar.gz with every log so far, and the files read
    # first beside it; nothing else there is touched.
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "someone_elses.txt").write_text("x")
    script = """
    echo gpu > "$LOGDIR/gpu.txt"
    for s in build tests bench kernel_profile tile_sweep video memcheck racecheck; do
      step "$s" 10 1 bash -c "echo $s; touch $LOGDIR/$s.json"
      if [ $s = tests ]; then tar tzf "$OUTDIR/all.tar.gz" | sort | tr '\\n' ' ' > "$LOGDIR/after_tests.txt"; fi
    done
    """
    run = run_lib(tmp_path, script, PUBLISH="1")
    assert run.returncode == 0, run.stderr
    out = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert out == [
        "all.tar.gz",
        "bench.json",
        "gpu_check.json",
        "kernel_profile.log",
        "someone_elses.txt",
        "steps.tsv",
        "tests.log",
        "tile_sweep.json",
    ]
    assert len(out) - 1 <= 8
    after_tests = (tmp_path / "logs" / "after_tests.txt").read_text().split()
    # Packed as the tests step ended, before any later step ran:
    assert after_tests == [
        "build.json",
        "build.log",
        "gpu.txt",
        "gpu_check.json",
        "steps.tsv",
        "tests.json",
        "tests.log",
    ]
    packed = subprocess.run(
        ["tar", "tzf", str(tmp_path / "out" / "all.tar.gz")], capture_output=True, text=True
    ).stdout.split()
    assert {"video.log", "racecheck.log", "gpu.txt", "steps.tsv", "gpu_check.json"} <= set(packed)
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text())["steps"][-1]["step"] == "racecheck"


def test_steps_option_runs_only_the_steps_named(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", "--steps", "build,bench", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "== build:" in run.stdout and "== bench:" in run.stdout and "== tests:" not in run.stdout
    assert "| tests | not asked (--steps) |" in run.stdout
    for args, message in (
        (["--steps"], "--steps needs a list"),
        (["--steps", "--dry-run"], "--steps needs a list"),
        (["--steps", "build,test"], "unknown step 'test'"),
    ):
        bad = subprocess.run(
            ["bash", "benchmarks/gpu_check.sh", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60
        )
        assert bad.returncode == 2 and message in bad.stderr, (args, bad.stderr)


def test_steps_bring_what_they_need(tmp_path):
    # On a fresh machine "--steps bench" would measure nothing of ours without
    # the build, and "--steps video" would fail without PyAV from the wheels.
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", "--steps", "video,tile_sweep", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "video needs build, which is added" in run.stdout and "video needs wheels, which is added" in run.stdout
    assert "tile_sweep needs tile_sweep_build" in run.stdout
    assert "== build:" in run.stdout and "== video:" in run.stdout and "== tests:" not in run.stdout
    assert "| memcheck | not asked (--steps) |" in run.stdout
    # The build: one architecture whatever the image sets, with the compiler's report in the log.
    assert "TORCH_CUDA_ARCH_LIST=9.0" in run.stdout and "pip install -v" in run.stdout


def test_summary_survives_unreadable_files(tmp_path):
    # A tile sweep stopped by a failed CUDA call leaves its rows in .part (or,
    # from an older binary, an unclosed tile_sweep.json); a killed step, half a
    # file. The summary says so and still prints the lines after.
    (tmp_path / "steps.tsv").write_text("build\t0\t40\ntile_sweep\t1\t12\tbench\t0")  # last line cut short
    (tmp_path / "gpu.txt").write_text(
        "name, driver_version, memory.total [MiB]\nNVIDIA H100 80GB HBM3, 580.1, 81559 MiB\n"
    )
    (tmp_path / "bench.json").write_text('{"machine": {"gpu": "NVIDIA H100"}, "rows": [{"na')
    row = {
        "precision": "fp16",
        "tile": "14x30",
        "bytes": 1,
        "max_rel_error": 1e-3,
        "ok": True,
        "us": {"x2": 2.0, "x3": 1.0, "x4": 1.0, "x3_batch8_per_frame": 1.0},
    }
    (tmp_path / "tile_sweep.json").write_text('{"device": "H100", "rows": [\n  ' + json.dumps(row))
    video = {"input": "640x360", "output": "1920x1080", "pipeline_fps": 100, "network_fps": 120, "overhead": 0.2}
    (tmp_path / "video.json").write_text(json.dumps({"row": video}))
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr
    assert run.stdout.lstrip().startswith("GPU: NVIDIA H100 80GB HBM3, 580.1, 81559 MiB")
    assert "bench.json unreadable: JSONDecodeError" in run.stdout
    assert "tile_sweep.json unreadable: JSONDecodeError" in run.stdout
    assert "video 640x360 -> 1920x1080: pipeline 100 fps" in run.stdout  # printed after the sweep
    assert "FAILED steps: tile_sweep" in run.stdout
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["gpu"].startswith("NVIDIA H100") and set(data["unreadable"]) == {"bench.json", "tile_sweep.json"}
    # What the sweep binary leaves now: no tile_sweep.json, the rows so far in .part.
    (tmp_path / "tile_sweep.json").unlink()
    rows = [dict(row, tile="today's"), row, dict(row, tile="16x30")]
    (tmp_path / "tile_sweep.json.part").write_text(
        '{"device": "H100", "rows": [\n' + ",\n".join(json.dumps(r) for r in rows) + ',\n  {"precision": "fp'
    )
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert "(the sweep did not finish: 3 rows from tile_sweep.json.part)" in run.stdout, run.stdout
    assert "| fp16 | 1.2 | 14x30 | 1.2 |" in run.stdout
    # gpu_check.json, the one file surely brought back, holds what the summary read.
    data = json.loads((tmp_path / "gpu_check.json").read_text())
    assert data["video"]["pipeline_fps"] == 100 and len(data["tile_sweep"]) == 3
    assert data["tile_sweep_note"].startswith("(the sweep did not finish")


def test_summary_odd_rows_and_a_run_where_nothing_ran(tmp_path):
    (tmp_path / "steps.tsv").write_text("build\tno-time\t0\tneeds 60 s, 3 s left\n")
    (tmp_path / "bench.json").write_text(json.dumps({"machine": {}, "rows": [{"name": "x"}, "not a row"]}))
    run = subprocess.run(
        [sys.executable, "benchmarks/gpu_summary.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == 1 and "no step ran to completion" in run.stdout


def test_an_output_folder_that_cannot_be_made_is_refused(tmp_path):
    (tmp_path / "a_file").write_text("")
    run = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--dry-run", str(tmp_path / "a_file" / "out")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHON": sys.executable},
        timeout=60,
    )
    assert run.returncode == 2 and "cannot use" in run.stderr and not (ROOT / "gpu_check.json").exists()


def test_tile_sweep_json_appears_only_complete():
    # The binary writes FILE.part and renames it to FILE once the JSON is closed.
    source = (ROOT / "benchmarks/tile_sweep.cu").read_text()
    assert 'std::string(json_path) + ".part"' in source and "std::rename(part.c_str(), json_path)" in source
