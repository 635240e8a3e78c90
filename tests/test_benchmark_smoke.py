"""benchmarks/run.py --quick runs and writes a complete JSON (a smoke test, not a timing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from espcn_fast import ops

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")
def test_quick_run_writes_complete_json(tmp_path):
    from espcn_fast.benchmark.config import tolerance

    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        "benchmarks/run.py",
        "--quick",
        "--device",
        "cpu",
        "--budget",
        "0.05",
        "--backends",
        "espcn_fast:cpu",
        "espcn_fast:cpu-layers",
        "eager",
        "onnxruntime",
        "openvino",
        "--json",
        str(out),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    data = json.loads(out.read_text())
    assert {"date", "command", "machine", "device", "frame", "rows", "available_backends"} <= set(data)
    assert data["machine"]["cpu_isa"] in ("avx512", "avx2", "portable")
    rows = {(r["name"], r["precision"]): r for r in data["rows"]}
    assert list(rows) == [  # fp32 rows, then bf16, then int8, each in the order they ran
        ("espcn_fast:cpu", "fp32"),
        ("espcn_fast:cpu-layers", "fp32"),
        ("eager", "fp32"),
        ("onnxruntime", "fp32"),
        ("openvino", "fp32"),
        ("espcn_fast:cpu", "bf16"),
        ("openvino", "bf16"),
        ("espcn_fast:cpu", "int8"),
        ("openvino", "int8"),
        ("onnxruntime", "int8"),
    ]
    for row in rows.values():
        assert row["status"] in ("ok", "skipped"), row
        if row["status"] == "ok":
            assert row["ms_per_frame"] > 0 and row["fps"] > 0 and row["gflops"] > 0
            ours = row["name"].startswith("espcn_fast")
            assert row["max_abs_error"] <= tolerance(row["precision"], ours)
        else:
            assert row["reason"], row
    assert rows[("espcn_fast:cpu", "fp32")]["status"] == "ok"
    for precision in ("bf16", "int8"):  # ours run where this CPU has the instructions, else say why not
        try:
            ops.cpu_isa(precision)
        except RuntimeError as exc:
            assert rows[("espcn_fast:cpu", precision)]["status"] == "skipped"
            assert rows[("espcn_fast:cpu", precision)]["reason"] == str(exc)
        else:
            assert rows[("espcn_fast:cpu", precision)]["status"] == "ok"
    assert rows[("espcn_fast:cpu", "int8")]["extra"]["weights"] in (
        "int8 weights",
        "float weights: no int8 weights shipped",
    )
    assert all(r["peak_mib"] is not None for r in rows.values() if r["status"] == "ok")  # measured in-process
    # openvino and onnxruntime come with requirements.txt: their rows run
    assert all(rows[k]["status"] == "ok" for k in [("openvino", "fp32"), ("onnxruntime", "int8")])
    assert rows[("eager", "fp32")]["speedup_vs_eager"] == 1.0
    if rows[("eager", "fp32")]["psnr_set5"] is not None:  # the data folder is there
        for key, row in rows.items():
            if row["status"] == "ok":  # int8 costs about 3 dB (8-bit activations)
                assert row["psnr_set5"] > (29 if key[1] == "int8" else 32.5), (key, row["psnr_set5"])
    assert out.with_suffix(".png").is_file()
    assert "| x3 | 1 | **espcn_fast:cpu** | fp32 |" in result.stdout
    assert "| x3 | 1 | **espcn_fast:cpu** (" in result.stdout  # the int8 row names its weights
    assert "speedups at x3, 1x1x90x160 -> 270x480, " in result.stdout and data["summary"]
    assert "270x480 frames; the whole run took" in result.stdout  # the sizes it really ran, and its length
    assert data["run_minutes"] > 0


def test_pytest_benchmark_suite_runs_once_each():
    """`pytest benchmarks/` with timing off: every op case runs once and checks its output."""
    pytest.importorskip("pytest_benchmark")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks/", "--benchmark-disable", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


@pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")
def test_video_pipeline_writes_complete_json(tmp_path):
    """benchmarks/video_pipeline.py (also the GPU check's video step) on a few frames."""
    pytest.importorskip("av")
    out = tmp_path / "video.json"
    cmd = [
        sys.executable,
        "benchmarks/video_pipeline.py",
        "--device",
        "cpu",
        "--frames",
        "4",
        "--batch",
        "2",
        "--preset",
        "ultrafast",
        "--json",
        str(out),
    ]
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = json.loads(out.read_text())["row"]
    assert row["frames"] == 4 and row["output"] == "1920x1080" and row["network_fps"] > 0 and row["pipeline_fps"] > 0
    stages = row["ms_per_frame"]
    assert set(stages) == {
        "network alone",
        "decode",
        "network stage",
        "encode",
        "stages one after another",
        "best overlap possible",
        "pipeline",
    }
    assert all(t["wall"] > 0 for t in stages.values())
    assert "| pipeline |" in result.stdout


def test_rows_are_checked_against_float64():
    # The yardstick must not be float32 PyTorch: on a GPU cuDNN runs that in
    # TF32 by default, and every true-fp32 row was flagged wrong (H200, 2026-11-26).
    import torch

    from espcn_fast.benchmark.grid import reference_output
    from tests.kernel_checks import random_model

    model = random_model(3, seed=4)
    x = torch.rand(1, 1, 9, 13)
    with torch.no_grad():
        exact = model.double()(x.double()).float()
    model.float()
    torch.testing.assert_close(reference_output(model, x), exact, atol=0, rtol=0)
    assert next(model.parameters()).dtype == torch.float32  # the benchmarked model is left as it was


def test_kernel_profile_lists_where_the_time_goes(tmp_path):
    out = tmp_path / "profile.json"
    cmd = [
        sys.executable,
        "benchmarks/kernel_profile.py",
        "--device",
        "cpu",
        "--scale",
        "4",
        "--calls",
        "2",
        "--backends",
        "eager",
        "--json",
        str(out),
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    data = json.loads(out.read_text())
    assert data["triton_autotune"] == {}  # no Triton row ran, so nothing was tuned
    (row,) = data["rows"]
    names = [k["kernel"] for k in row["kernels"]]
    assert row["backend"] == "eager" and "aten::tanh" in names and any("conv" in n for n in names), names
    assert row["us_per_call"] == pytest.approx(sum(k["us_per_call"] for k in row["kernels"]))
    bad = subprocess.run(cmd[:2] + ["--device", "cpu", "--calls", "0"], cwd=REPO, capture_output=True, text=True)
    assert bad.returncode != 0 and "--calls and --batch must be at least 1" in bad.stderr


def test_run_writes_json_after_each_row_and_fails_on_a_wrong_row_of_ours(tmp_path, monkeypatch):
    # A bench step cut by its time limit keeps the rows it measured; a row of
    # ours over tolerance makes the exit status 1 (the GPU check's "FAILED").
    import torch

    from espcn_fast.benchmark import cli, peers
    from espcn_fast.benchmark.config import Candidate

    out = tmp_path / "bench.json"
    seen: list[list[str]] = []

    def look_at_json(model, x):  # a candidate that reads what is on disk when its turn comes
        seen.append([r["name"] for r in json.loads(out.read_text())["rows"]])
        raise peers.Skip("only looks")

    def wrong(model, x):
        return (lambda inp: model(inp) + 1), 0.0

    fake = [
        Candidate("eager", "fp32", peers.eager),
        Candidate("looker", "fp32", look_at_json),
        Candidate("espcn_fast:wrong", "fp32", wrong, ours=True),
    ]
    monkeypatch.setattr(cli, "candidates", lambda device, threads: fake)
    torch_threads = torch.get_num_threads()
    try:
        rc = cli.main(
            ["--quick", "--device", "cpu", "--budget", "0.02", "--no-memory", "--threads", "1", "--json", str(out)]
        )
    finally:
        torch.set_num_threads(torch_threads)
    assert seen == [["eager"]]
    rows = {r["name"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["espcn_fast:wrong"]["status"] == "wrong" and rows["eager"]["status"] == "ok"
    assert rc == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.json", "bench.png"]  # no temporary left


def test_run_rejects_unknown_backends(tmp_path):
    cmd = [
        sys.executable,
        "benchmarks/run.py",
        "--quick",
        "--device",
        "cpu",
        "--backends",
        "eager",
        "egaer",
        "--json",
        str(tmp_path / "x.json"),
    ]
    run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0 and "--backends: unknown on cpu: 'egaer'" in run.stderr, run.stderr
    assert "'espcn_fast:cpu'" in run.stderr and "'eager channels_last'" in run.stderr
    assert not (tmp_path / "x.json").exists()


def test_eager_channels_last_leaves_the_shared_model_alone():
    import torch

    from espcn_fast.benchmark import peers
    from tests.kernel_checks import random_model

    model = random_model(3, seed=1)
    x = torch.rand(1, 1, 9, 13)
    fn, _ = peers.eager(model, x, channels_last=True)
    fn(x)
    assert all(p.is_contiguous() for p in model.parameters())  # not converted to channels_last in place


def test_reference_in_strips_equals_the_whole_image():
    """The float64 yardstick is computed a strip of rows at a time (bounded memory): the same values."""
    import torch

    from espcn_fast.benchmark.grid import reference_output
    from tests.kernel_checks import random_model

    model = random_model(2, seed=8)
    x = torch.rand(2, 1, 37, 21)
    whole = reference_output(model, x, rows=1000)
    for rows in (1, 5, 8, 36):
        torch.testing.assert_close(reference_output(model, x, rows=rows), whole, atol=1e-6, rtol=0)
    # Our int8 rows' yardstick: the model in the int8 arithmetic with its layer-1 ranges, also by strips.
    from espcn_fast.precision_model import PrecisionESPCN

    model.load_state_dict({**model.state_dict(), "a1_ranges": torch.linspace(0.2, 1.0, 64)})
    int8 = PrecisionESPCN(model, "int8", dtype=torch.float64)(x).float()
    assert float((int8 - whole).abs().max()) > 1e-3
    for rows in (1, 8, 1000):
        torch.testing.assert_close(reference_output(model, x, rows=rows, arithmetic="int8"), int8, atol=1e-6, rtol=0)


def test_a_row_that_would_not_fit_memory_is_skipped_with_the_reason(monkeypatch):
    import torch

    from espcn_fast.benchmark import grid, peers
    from espcn_fast.benchmark.config import Candidate
    from tests.kernel_checks import random_model

    model = random_model(3, seed=2)
    inputs = [torch.rand(8, 1, 360, 640)]
    monkeypatch.setattr(grid, "available_memory", lambda: 2**30)
    made = []
    cand = Candidate("eager", "fp32", lambda m, x: made.append(1) or peers.eager(m, x))
    row = grid.run_row(cand, model, inputs, torch.empty(0), 3, 0.01, 1)
    assert row.status == "skipped" and row.reason == "needs about 1.5 GiB, 1.0 GiB available"
    assert made == []  # not even set up


def test_frame_label_names_the_sizes_run():
    from espcn_fast.benchmark.grid import Row
    from espcn_fast.benchmark.report import frame_label

    assert frame_label([Row("a", "fp32", 3, 1, (90, 160)), Row("b", "fp32", 3, 8, (90, 160))]) == "270x480 frames"
    assert (
        frame_label([Row("a", "fp32", 2, 1, (540, 960)), Row("a", "fp32", 4, 1, (67, 120))])
        == "268x480, 1080x1920 output frames"
    )


def test_table_groups_rows_by_precision_within_each_scale_and_batch():
    from espcn_fast.benchmark.grid import Row
    from espcn_fast.benchmark.report import format_table, grouped

    def row(name, precision, scale, batch):
        return Row(name, precision, scale, batch, (90, 160), status="skipped", reason="-")

    rows = [
        row("openvino", "int8", 3, 1),
        row("openvino", "bf16", 3, 1),
        row("eager", "fp32", 3, 1),
        row("openvino", "fp32", 3, 1),
        row("eager", "fp32", 3, 8),
        row("onnxruntime", "int8", 3, 8),
        row("eager", "fp32", 2, 1),
    ]
    order = [(r.scale, r.batch, r.name, r.precision) for r in grouped(rows)]
    assert order == [
        (3, 1, "eager", "fp32"),
        (3, 1, "openvino", "fp32"),
        (3, 1, "openvino", "bf16"),
        (3, 1, "openvino", "int8"),
        (3, 8, "eager", "fp32"),
        (3, 8, "onnxruntime", "int8"),
        (2, 1, "eager", "fp32"),
    ]
    lines = format_table(rows).splitlines()[2:]
    assert [line.split(" | ")[2:4] for line in lines] == [[n, p] for _, _, n, p in order]


def test_set5_psnr_column(monkeypatch):
    """The row's runner scored with the evaluation protocol: the reference x3 model's 32.6 dB on Set5;
    a dash where it is not measured."""
    import torch

    from espcn_fast import data_dir
    from espcn_fast.benchmark import grid, peers
    from espcn_fast.benchmark.config import Candidate
    from espcn_fast.benchmark.report import format_table
    from espcn_fast.benchmark.speedups import against_eager
    from espcn_fast.evaluate import evaluate_sets
    from espcn_fast.model import ESPCN

    try:
        root = data_dir.find_data_dir()
    except FileNotFoundError:
        pytest.skip("no data folder")
    if not (root / "LR_bicubic" / "Set5" / "x3").is_dir():
        pytest.skip("no Set5 x3 LR images")
    model = ESPCN.from_pretrained(3).eval()
    (expected,) = evaluate_sets(model, 3, sets=("Set5",))
    assert grid.set5_psnr(model) == pytest.approx(expected.psnr) and expected.psnr == pytest.approx(32.6, abs=0.1)
    assert grid.set5_psnr(lambda y: torch.full_like(torch.nn.functional.interpolate(y, scale_factor=3), 2.0)) < 10

    x = torch.rand(1, 1, 9, 13)
    cand = Candidate("eager", "fp32", peers.eager)
    row = grid.run_row(cand, model, [x], grid.reference_output(model, x), 3, 0.01, 1, psnr=True)
    assert row.status == "ok" and row.psnr_set5 == round(expected.psnr, 3)
    against_eager([row])
    assert f"| {row.psnr_set5:.2f} |" in format_table([row])
    assert grid.run_row(cand, model, [x], grid.reference_output(model, x), 3, 0.01, 1).psnr_set5 is None

    def absent(explicit=None):
        raise FileNotFoundError("no data")

    monkeypatch.setattr(grid, "find_data_dir", absent)
    row = grid.run_row(cand, model, [x], grid.reference_output(model, x), 3, 0.01, 1, psnr=True)
    assert row.status == "ok" and row.psnr_set5 is None
    against_eager([row])
    assert "| eager | fp32 |" in format_table([row]) and " | - | " in format_table([row])


def test_every_cpu_row_has_a_tolerance_and_a_place_in_the_order():
    import torch

    from espcn_fast.benchmark.config import PRECISION_ORDER, TOLERANCE, candidates, tolerance

    cands = candidates(torch.device("cpu"), 2)
    precisions = {c.precision for c in cands}
    assert {"fp32", "bf16", "int8"} <= precisions <= set(TOLERANCE) <= set(PRECISION_ORDER)
    assert TOLERANCE["fp32"] < TOLERANCE["bf16"] <= 5e-2 < TOLERANCE["int8"] <= 0.7
    # Our int8 rows are checked against their own arithmetic: their bound is far under the peers'.
    assert tolerance("int8", ours=True) <= 0.02 < tolerance("int8", ours=False)
    ours_int8 = [c for c in cands if c.ours and c.precision == "int8"]
    assert ours_int8 and all(c.arithmetic == "int8" for c in ours_int8)
    assert tolerance("fp32", ours=True) == TOLERANCE["fp32"]


def test_int8_calibration_uses_training_crops_only(monkeypatch):
    import numpy as np

    from espcn_fast import data_dir, image_io
    from espcn_fast.benchmark import peers

    try:
        data_dir.find_data_dir()
    except FileNotFoundError:
        pytest.skip("no data folder")
    folders = []
    real = image_io.list_images
    monkeypatch.setattr(image_io, "list_images", lambda folder, what: folders.append(folder.name) or real(folder, what))
    try:
        crops = peers.calibration_crops(3, count=8, seed=1)
    except peers.Skip as exc:
        assert "T91" in str(exc)
        return
    assert folders == ["T91"]  # never Set5 or Set14, the sets the rows are scored on
    assert len(crops) == 8 and all(c.shape == (1, 1, 17, 17) and c.dtype == np.float32 for c in crops)
    assert all(0.0 <= c.min() and c.max() <= 1.0 for c in crops)
    assert peers.calibration_crops(3, count=8, seed=1) is crops  # made once a run


@pytest.mark.skipif(not ops.HAVE_EXTENSION, reason=f"{ops.EXTENSION_ERROR}")
def test_a_row_of_ours_whose_instruction_set_is_missing_is_skipped_with_the_reason(tmp_path, monkeypatch, capsys):
    """Forcing the portable kernels stands for a CPU without AVX512-BF16/VNNI: the bf16 and int8 rows of ours
    are skipped with the kernels' own reason (naming the instructions), printed and in the table."""
    import torch

    from espcn_fast.benchmark import cli

    monkeypatch.setenv("ESPCN_FAST_CPU_ISA", "portable")  # read by the kernels at each call
    out = tmp_path / "bench.json"
    torch_threads = torch.get_num_threads()
    try:
        rc = cli.main(
            ["--quick", "--device", "cpu", "--budget", "0.02", "--threads", "1", "--backends", "espcn_fast:cpu"]
            + ["--json", str(out)]
        )
    finally:
        torch.set_num_threads(torch_threads)
    assert rc == 0
    rows = {r["precision"]: r for r in json.loads(out.read_text())["rows"]}
    assert rows["fp32"]["status"] == "ok"
    printed = capsys.readouterr().out
    for precision, needs in (("bf16", "AVX512-BF16"), ("int8", "AVX512-VNNI")):
        assert rows[precision]["status"] == "skipped" and needs in rows[precision]["reason"], rows[precision]
        assert f"espcn_fast:cpu {precision}: skipped: {rows[precision]['reason']}" in printed
        assert f"| **espcn_fast:cpu** | {precision} | skipped: " not in printed  # skipped rows are not bold
        assert f"| espcn_fast:cpu | {precision} | skipped: {rows[precision]['reason']} |" in printed
    assert "no reduced-precision row of ours passed its check" in printed


def test_int8_rows_take_the_int8_weights_once_shipped(monkeypatch):
    from espcn_fast.benchmark import row_weights
    from espcn_fast.weights import WeightsError
    from tests.kernel_checks import random_model

    model = random_model(3, seed=5)

    def absent(scale, precision):
        raise WeightsError("none")

    monkeypatch.setattr(row_weights, "pretrained_path", absent)
    assert row_weights.int8_weights(model) == (model, row_weights.FLOAT_WEIGHTS_FOR_INT8)
    tuned = random_model(3, seed=6)
    loaded = []
    monkeypatch.setattr(row_weights, "pretrained_path", lambda scale, precision: loaded.append((scale, precision)))
    monkeypatch.setattr(row_weights.ESPCN, "from_pretrained", lambda scale, precision: tuned)
    assert row_weights.int8_weights(model) == (tuned, row_weights.INT8_WEIGHTS) and loaded == [(3, "int8")]


def test_summary_compares_the_fastest_rows_of_each_precision_class():
    from espcn_fast.benchmark.grid import Row
    from espcn_fast.benchmark.speedups import summary_lines

    def row(name, precision, ms, psnr, batch=1, status="ok"):
        r = Row(name, precision, 3, batch, (360, 640), status=status, ms_per_frame=ms, psnr_set5=psnr)
        if name == "espcn_fast:cpu" and precision == "int8":
            r.extra["weights"] = "int8 weights"
        return r

    rows = [
        row("espcn_fast:cpu", "fp32", 80.0, 32.59),
        row("espcn_fast:cpu-layers", "fp32", 120.0, 32.59),
        row("onnxruntime", "fp32", 110.0, 32.59),
        row("eager", "fp32", 200.0, 32.59),
        row("espcn_fast:cpu", "bf16", 60.0, 32.57),
        row("openvino", "bf16", 90.0, 32.57),
        row("espcn_fast:cpu", "int8", 40.0, 32.10),
        row("openvino", "int8", 55.0, 29.55),
        row("onnxruntime", "int8", 100.0, 30.02),
        row("espcn_fast:cpu", "int8", 10.0, None, batch=8),  # another frame: not compared
        row("openvino", "int8", None, None, status="wrong"),
    ]
    lines = summary_lines(rows, threads=2)
    assert lines[0] == "speedups at x3, 1x1x360x640 -> 1080x1920, 2 thread(s):"
    assert lines[1] == (
        "  ours espcn_fast:cpu int8 (int8 weights) 40.0 ms, Set5 -0.49 dB vs fastest int8 peer openvino int8 "
        "55.0 ms, Set5 -3.04 dB: 1.38x (target >= 1.25x: met)"
    )
    assert lines[2].endswith("vs our fp32 espcn_fast:cpu fp32 80.0 ms: 2.00x (target >= 1.4x: met)")
    assert lines[3] == (
        "  our fp32 espcn_fast:cpu fp32 80.0 ms vs fastest fp32 peer onnxruntime fp32 110.0 ms: "
        "1.38x (target >= 1.25x: met)"
    )
    slow = [r for r in rows if r.precision != "int8"] + [row("espcn_fast:cpu", "int8", 70.0, 32.1)]
    assert (
        "bf16 90.0 ms, Set5 -0.02 dB: 1.50x (target >= 1.25x: met)" in summary_lines(slow, 2)[1]
    )  # bf16 is now our fastest
    assert summary_lines(rows, 2, batch=4) == []


def test_cpu_peak_memory_is_measured_in_process():
    """The high-water mark, reset after freeing the heap's pages, sees a call's allocation even when
    it reuses memory an earlier call freed (the timing runs keep freed memory)."""
    import torch

    from espcn_fast.benchmark.memory import call_with_rss_peak

    if call_with_rss_peak(lambda x: x, torch.empty(0))[1] is None:
        pytest.skip("no /proc/self/clear_refs or glibc here")

    def fn(x):
        return torch.ones(64 * 2**20 // 4).sum() + x  # 64 MiB, touched, freed before the call returns

    fn(1)
    out, peak = call_with_rss_peak(fn, 1)
    assert out == 64 * 2**20 // 4 + 1 and 60 <= peak < 100
    assert call_with_rss_peak(lambda x: x + 1, 1)[1] < 10
