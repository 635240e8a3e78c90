"""Training: smoke run, exact resume, two-process DDP, and bad inputs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from espcn_fast.image_io import write_image
from tests.conftest import random_rgb
from training.train import main

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    folder = tmp_path / "data"
    folder.mkdir()
    for i, (h, w) in enumerate([(70, 64), (66, 80), (90, 72), (64, 64)]):
        write_image(random_rgb(h, w, seed=i), folder / f"img{i}.png")
    return folder


def _args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--scale",
        "3",
        "--data",
        str(data),
        "--out",
        str(out),
        "--steps",
        "3",
        "--batch",
        "4",
        "--val-count",
        "1",
        "--threads",
        "1",
        "--no-progress",
        *extra,
    ]


def test_smoke(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2")) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(r["loss"] > 0 and r["val_psnr"] > 0 for r in records)
    for name in ("last.pt", "best.pt", "best.safetensors", "last.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp")) + list(out.glob(".*.tmp")), "temporary files left behind"


def test_resume_is_exact(tiny_data, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(_args(tiny_data, straight, "--epochs", "3")) == 0
    assert main(_args(tiny_data, resumed, "--epochs", "3", "--stop-after", "1")) == 0
    assert len((resumed / "log.jsonl").read_text().splitlines()) == 1
    assert main(_args(tiny_data, resumed, "--epochs", "3", "--resume")) == 0
    a, b = load_file(straight / "last.safetensors"), load_file(resumed / "last.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # and the run really trained: the weights moved from their initial values
    assert not torch.equal(a["sub_pixel.0.bias"], torch.zeros_like(a["sub_pixel.0.bias"]))


def test_resume_with_other_settings_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1")) == 0
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume", "--batch", "8")) == 2
    assert "--batch" in capsys.readouterr().err


def test_resume_without_checkpoint(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path / "none", "--epochs", "1", "--resume")) == 2
    assert "no checkpoint to resume from" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_process_ddp_with_gloo_stays_in_sync(tiny_data, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "training.train",
        *_args(tiny_data, out, "--epochs", "2", "--device", "cpu", "--save-rank-weights"),
    ]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["ranks_in_sync"] for r in records] == [True, True]
    r0, r1 = load_file(out / "rank0.safetensors"), load_file(out / "rank1.safetensors")
    for key in r0:
        assert torch.equal(r0[key], r1[key]), key
    ckpt = torch.load(out / "last.pt", weights_only=True)
    # each process drew its own patches
    assert len(ckpt["samplers"]) == 2
    assert not torch.equal(ckpt["samplers"][0]["generator"], ckpt["samplers"][1]["generator"])


def test_missing_data_folder(tmp_path, capsys):
    assert main(_args(tmp_path / "nope", tmp_path / "out", "--epochs", "1")) == 2
    assert "training data folder not found" in capsys.readouterr().err


def test_empty_data_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(_args(tmp_path / "empty", tmp_path / "out", "--epochs", "1")) == 2
    assert "no images in training data folder" in capsys.readouterr().err


def test_unreadable_image(tiny_data, tmp_path, capsys):
    (tiny_data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(_args(tiny_data, tmp_path / "out", "--epochs", "1")) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "not an image or a corrupt file" in err


def test_crop_larger_than_images(tiny_data, tmp_path, capsys):
    assert main(_args(tiny_data, tmp_path / "out", "--epochs", "1", "--patch", "40")) == 2
    assert "larger than every training image" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flag,value",
    [
        ("--scale", "0"),
        ("--epochs", "0"),
        ("--batch", "-1"),
        ("--stop-after", "-1"),
        ("--last-layer-lr", "-1"),
        ("--last-layer-lr", "inf"),
        ("--lr", "nan"),
        ("--lr-min", "0.1"),
        ("--val-count", "-1"),
        ("--threads", "-1"),
    ],
)
def test_bad_numbers(tiny_data, tmp_path, capsys, flag, value):
    args = _args(tiny_data, tmp_path / "out", "--epochs", "1")
    args += [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert f"{flag} must be" in capsys.readouterr().err


def test_init_from_weights(tiny_data, tmp_path, capsys):
    first = tmp_path / "first"
    assert main(_args(tiny_data, first, "--epochs", "1")) == 0
    second = tmp_path / "second"
    assert main(_args(tiny_data, second, "--epochs", "1", "--init", str(first / "last.safetensors"))) == 0
    x2 = tmp_path / "x2.safetensors"
    from espcn_fast import ESPCN
    from espcn_fast.weights import save_weights

    save_weights(ESPCN(2).state_dict(), x2)
    assert main(_args(tiny_data, tmp_path / "third", "--epochs", "1", "--init", str(x2))) == 2
    assert "weights are for scale 2 but the model is for scale 3" in capsys.readouterr().err


def _one_line_error(err: str) -> str:
    """The single ``error: ...`` line of stderr (no traceback)."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_existing_run_is_not_overwritten(tiny_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(_args(tiny_data, out, "--epochs", "1", "--seed", "1")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    # the default output folder, runs/x<scale>, is guarded as well
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "x3").mkdir(parents=True)
    (tmp_path / "runs" / "x3" / "best.safetensors").write_bytes(b"shipped")
    no_out = [a for a in _args(tiny_data, out, "--epochs", "1") if a not in ("--out", str(out))]
    assert main(no_out) == 2
    assert "runs/x3 already holds a run" in capsys.readouterr().err
    assert (tmp_path / "runs" / "x3" / "best.safetensors").read_bytes() == b"shipped"
    # --overwrite starts afresh: a new log, not the old one with more lines
    assert main(_args(tiny_data, out, "--epochs", "1", "--overwrite")) == 0
    assert [json.loads(line)["epoch"] for line in (out / "log.jsonl").read_text().splitlines()] == [1]


def test_resume_names_every_changed_setting(tiny_data, tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    init = tmp_path / "init.safetensors"
    from espcn_fast import ESPCN
    from espcn_fast.weights import save_weights

    save_weights(ESPCN(3).state_dict(), init)
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1")) == 0
    other_data = tmp_path / "other"
    other_data.mkdir()
    for f in tiny_data.iterdir():
        (other_data / f.name).write_bytes(f.read_bytes())
    changes = [
        ("--data", str(other_data)),
        ("--lr", "0.001"),
        ("--lr-min", "0.0001"),
        ("--last-layer-lr", "1"),
        ("--schedule", "exponential"),
        ("--seed", "3"),
        ("--val-count", "2"),
        ("--qat", "int8"),
    ]
    for flag, value in changes:
        args = _args(tiny_data, out, "--epochs", "2", "--resume")
        if flag == "--data":
            args[args.index("--data") + 1] = value
        else:
            args += [flag, value]
        capsys.readouterr()
        assert main(args) == 2, flag
        err = _one_line_error(capsys.readouterr().err)
        assert f"{flag} " in err, (flag, err)
    # --init is not a setting of the run once it has a last.pt (the shipped fine-tuned runs began with it)
    started = tmp_path / "started_from_weights"
    assert main(_args(tiny_data, started, "--epochs", "2", "--stop-after", "1", "--init", str(init))) == 0
    assert main(_args(tiny_data, started, "--epochs", "2", "--resume")) == 0
    from training.checkpoint import load_checkpoint

    assert Path(load_checkpoint(started / "last.pt")["args"]["init"]) == init  # still on record
    # several at once: all named in one line
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume", "--lr", "0.001", "--seed", "3")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "--lr 0.003 (now 0.001)" in err and "--seed 0 (now 3)" in err
    # the same folder spelled another way is the same data
    monkeypatch.chdir(tiny_data.parent)
    args = _args(Path(tiny_data.name), out, "--epochs", "2", "--resume")
    assert main(args) == 0


def test_resume_from_what_is_not_a_checkpoint(tiny_data, tmp_path, capsys):
    from training.checkpoint import load_checkpoint

    out = tmp_path / "run"
    out.mkdir()
    torch.save({"model": {}}, out / "last.pt")
    with pytest.raises(ValueError, match=r"is not a training checkpoint \(missing 'args'\)"):
        load_checkpoint(out / "last.pt")
    assert main(_args(tiny_data, out, "--epochs", "1", "--resume")) == 2
    assert "is not a training checkpoint (missing 'args')" in _one_line_error(capsys.readouterr().err)
    torch.save([1, 2], out / "last.pt")
    assert main(_args(tiny_data, out, "--epochs", "1", "--resume")) == 2
    assert "is not a training checkpoint" in _one_line_error(capsys.readouterr().err)
    # a weights file under the checkpoint's name: a short line, no advice to load unsafely
    from espcn_fast import ESPCN
    from espcn_fast.weights import save_weights

    save_weights(ESPCN(3).state_dict(), out / "last.pt")
    assert main(_args(tiny_data, out, "--epochs", "1", "--resume")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "not a training checkpoint" in err and "weights_only" not in err and len(err) < 200
    # all keys there, but the model's tensors do not fit
    good = tmp_path / "good"
    assert main(_args(tiny_data, good, "--epochs", "2", "--stop-after", "1")) == 0
    ckpt = torch.load(good / "last.pt", weights_only=True)
    ckpt["model"]["sub_pixel.0.bias"] = torch.zeros(3)
    torch.save(ckpt, good / "last.pt")
    capsys.readouterr()
    assert main(_args(tiny_data, good, "--epochs", "2", "--resume")) == 2
    assert "does not fit" in _one_line_error(capsys.readouterr().err)


@pytest.mark.parametrize("h,w", [(14, 30), (2, 2)])
def test_small_validation_image_is_refused_at_start(tiny_data, tmp_path, capsys, h, w):
    # "a_" sorts first, so --val-count 1 holds it out
    write_image(random_rgb(h, w, seed=9), tiny_data / "a_small.png")
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "1")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert "validation image a_small.png" in err and "too small" in err
    assert not (out / "log.jsonl").exists()


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("--device", "gpu", "--device"),
        ("--device", "meta", "--device"),
        ("--out", "FILE", "not a folder"),
    ],
)
def test_bad_setup_arguments(tiny_data, tmp_path, capsys, flag, value, message):
    if value == "FILE":
        value = str(tmp_path / "file")
        Path(value).write_text("mine")
    args = _args(tiny_data, tmp_path / "out", "--epochs", "1") + [flag, value]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_gpu(tiny_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(_args(tiny_data, tmp_path / "out", "--epochs", "1", "--device", "cuda"))
    assert exc.value.code == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_failed_save_is_one_line_and_keeps_the_best(tiny_data, tmp_path, capsys):
    straight = tmp_path / "straight"
    assert main(_args(tiny_data, straight, "--epochs", "2")) == 0
    assert torch.load(straight / "best.pt", weights_only=True)["epoch"] == 2  # epoch 2 improves
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1")) == 0
    (out / "best.safetensors").unlink()
    (out / "best.safetensors").mkdir()  # epoch 2's best cannot be written
    capsys.readouterr()
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume")) == 2
    assert "best.safetensors" in _one_line_error(capsys.readouterr().err)
    # last.pt did not move ahead of best.*, so resuming redoes epoch 2 and writes its best
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 1
    assert not list(out.glob("*.tmp")) + list(out.glob(".*.tmp"))
    (out / "best.safetensors").rmdir()
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume")) == 0
    a, b = load_file(straight / "best.safetensors"), load_file(out / "best.safetensors")
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_without_validation_the_last_epoch_is_kept(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--val-count", "0")) == 0
    assert "nan" not in capsys.readouterr().out.lower()
    lines = (out / "log.jsonl").read_text().splitlines()
    records = [json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in log.jsonl")) for line in lines]
    assert [r["val_psnr"] for r in records] == [None, None]
    best, last = load_file(out / "best.safetensors"), load_file(out / "last.safetensors")
    for key in last:
        assert torch.equal(best[key], last[key]), key
    assert torch.load(out / "best.pt", weights_only=True)["epoch"] == 2


def test_learning_rate_schedules():
    from training.train import lr_factor

    assert lr_factor(0, 10, 1e-2, 1e-4, "exponential") == pytest.approx(1.0)
    assert lr_factor(5, 10, 1e-2, 1e-4, "exponential") == pytest.approx(0.1)  # halfway: sqrt(lr_min / lr)
    assert lr_factor(10, 10, 1e-2, 1e-4, "exponential") == pytest.approx(1e-2)
    assert lr_factor(5, 10, 1e-2, 1e-4, "cosine") == pytest.approx((1 + 1e-2) / 2)
    assert lr_factor(10, 10, 1e-2, 1e-4, "cosine") == pytest.approx(1e-2)


@pytest.mark.parametrize(
    "damage,message",
    [
        ("empty", "is empty (0 bytes)"),
        ("half", "is truncated"),
        ("text", "is not a training checkpoint (not a file that torch.save writes)"),
    ],
)
def test_resume_from_a_damaged_checkpoint_says_what_is_wrong(tiny_data, tmp_path, capsys, damage, message):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1")) == 0
    whole = (out / "last.pt").read_bytes()
    damaged = {"empty": b"", "half": whole[: len(whole) // 2], "text": b"epoch 1 finished\n"}[damage]
    (out / "last.pt").write_bytes(damaged)
    capsys.readouterr()
    assert main(_args(tiny_data, out, "--epochs", "2", "--resume")) == 2
    err = _one_line_error(capsys.readouterr().err)
    assert f"{out / 'last.pt'} {message}" in err and len(err) < 200, err


# A write past the file size limit fails with EFBIG (SIGXFSZ ignored), as a write to a full disk fails with ENOSPC.
_FILE_SIZE_LIMIT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, resource.RLIM_INFINITY))
"""


def _run_with_file_size_limit(code: str, limit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    script = _FILE_SIZE_LIMIT.format(limit=limit) + code
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )


def test_a_full_disk_is_named_and_the_checkpoints_are_kept(tiny_data, tmp_path):
    out = tmp_path / "run"
    assert main(_args(tiny_data, out, "--epochs", "2", "--stop-after", "1", "--val-count", "0")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    args = _args(tiny_data, out, "--epochs", "2", "--val-count", "0", "--resume")
    run = _run_with_file_size_limit(f"from training.train import main\nsys.exit(main({args!r}))", 16384)
    assert run.returncode == 2, run.stderr
    assert run.stderr.strip().splitlines() == [
        f"error: cannot write {out / 'best.pt'}: File too large (over the file size limit of 16384 bytes, ulimit -f)"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing left, nothing changed


def test_weights_on_a_full_disk_are_named_and_the_earlier_file_kept(tmp_path):
    path = tmp_path / "best.safetensors"
    path.write_bytes(b"the earlier weights")
    code = f"""
from espcn_fast import ESPCN
from espcn_fast.weights import save_weights
try:
    save_weights(ESPCN(3).state_dict(), {str(path)!r})
except OSError as exc:
    print(exc)
"""
    run = _run_with_file_size_limit(code, 16384)
    assert run.returncode == 0, run.stderr
    assert (
        run.stdout.strip()
        == f"cannot write {path}: File too large (over the file size limit of 16384 bytes, ulimit -f)"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["best.safetensors"]
    assert path.read_bytes() == b"the earlier weights"


def test_a_failed_checkpoint_write_gives_the_cause_it_can_find(tmp_path, monkeypatch):
    import errno

    from training import checkpoint

    path = tmp_path / "last.pt"

    def full_disk(obj, f):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:  # torch.save reports a failed write of its file object as its own error
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    with pytest.raises(OSError) as failure:
        checkpoint.save_atomic({"epoch": 1}, path)
    assert str(failure.value) == f"cannot write {path}: No space left on device"

    def unexplained(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint.torch, "save", unexplained)
    with pytest.raises(OSError) as failure:
        checkpoint.save_atomic({"epoch": 1}, path)
    assert str(failure.value) == (
        f"could not write {path} (disk full or write error: "
        "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598)"
    )
    assert list(tmp_path.iterdir()) == []
