"""Image jobs on a real local Ray cluster (2 CPUs, started here): the single-machine outputs, resume, a bad
image among good ones, a worker killed mid-job, manifests and globs, and pools that cannot be placed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray")

from espcn_fast import FastESPCN  # noqa: E402
from espcn_fast.atomic_write import leftover_temporaries  # noqa: E402
from espcn_fast.cli import main  # noqa: E402
from espcn_fast.cluster import ClusterError, _start_pool, collect, pool_shape, upscale_images  # noqa: E402
from espcn_fast.image_io import read_image, write_image  # noqa: E402
from espcn_fast.upscale import upscale_image  # noqa: E402

from .conftest import kill_one_ray_process, polling, random_rgb  # noqa: E402

pytestmark = pytest.mark.usefixtures("local_ray")


def _images(folder: Path, names: list[str], size: int = 20) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = random_rgb(size, size + 6, seed=i)
        if "grey" in name:
            image = image[:1].contiguous()
        elif "alpha" in name:
            image = torch.cat([image, random_rgb(size, size + 6, seed=50 + i)[:1]])
        write_image(image, path)
        paths.append(path)
    return paths


def test_a_folder_tree_comes_out_as_on_one_machine(tmp_path):
    src = tmp_path / "in"
    files = _images(src, ["a.png", "sub/b.png", "sub/deeper/grey.png", "alpha.png", "c.jpg"])
    summary = upscale_images(src, tmp_path / "out", 2, workers=2, batch=2, progress=False)
    assert summary.ok and len(summary.done) == 5 and summary.already_done == [] and summary.workers == 2
    model = FastESPCN.from_pretrained(2)
    for f in files:
        dst = tmp_path / "out" / f.relative_to(src).with_suffix(".png")
        expected = upscale_image(read_image(f, mode="keep"), model, 2)
        assert torch.equal(read_image(dst, mode="keep"), expected), dst


def test_a_rerun_resumes_and_keeps_what_is_done(tmp_path):
    src = tmp_path / "in"
    _images(src, [f"i{k}.png" for k in range(5)])
    out = tmp_path / "out"
    first = upscale_images(src, out, 2, workers=1, progress=False)
    assert len(first.done) == 5
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "i3.png").unlink()  # as if the job had been stopped before it
    again = upscale_images(src, out, 2, workers=1, progress=False)
    assert [p.name for p in again.done] == ["i3.png"] and len(again.already_done) == 4
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in out.iterdir() if p.name != "i3.png")


def test_a_bad_image_is_reported_and_the_job_goes_on(tmp_path, capsys):
    src = tmp_path / "in"
    _images(src, ["a.png", "c.png"])
    (src / "b.png").write_bytes(b"not an image")
    code = main(["upscale", str(src), "-o", str(tmp_path / "out"), "--scale", "2", "--cluster", "auto", "-q"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"failed: cannot read {src / 'b.png'}: not an image or a corrupt file" in err
    assert "2 done, 0 already done, 1 failed" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "c.png"]


def test_manifests_and_glob_patterns(tmp_path):
    src = tmp_path / "data"
    _images(src, ["x/one.png", "x/two.png", "y/three.png"])
    manifest = tmp_path / "list.txt"
    manifest.write_text("# a dataset manifest\ndata/x/one.png\n\n  data/y/three.png  \n")
    pairs = collect(manifest, tmp_path / "out")
    assert pairs == [
        (tmp_path / "data/x/one.png", tmp_path / "out/data/x/one.png"),
        (tmp_path / "data/y/three.png", tmp_path / "out/data/y/three.png"),
    ]
    assert [d for _, d in collect(str(src / "x" / "*.png"), tmp_path / "o")] == [
        tmp_path / "o/one.png",
        tmp_path / "o/two.png",
    ]
    assert [d for _, d in collect(str(src / "**" / "t*.png"), tmp_path / "o")] == [
        tmp_path / "o/x/two.png",
        tmp_path / "o/y/three.png",
    ]
    summary = upscale_images(manifest, tmp_path / "out", 2, workers=1, progress=False)
    assert summary.ok and len(summary.done) == 2
    with pytest.raises(ClusterError, match="no images in pattern"):
        collect(str(src / "*.jpg"), tmp_path / "o")
    with pytest.raises(ClusterError, match="input not found"):
        collect(tmp_path / "missing", tmp_path / "o")
    _images(src, ["y/one.png"])
    (tmp_path / "clash.txt").write_text(f"{src / 'x' / 'one.png'}\n{src / 'y' / 'one.png'}\n")  # absolute: by name
    with pytest.raises(ClusterError, match="would both write"):
        collect(tmp_path / "clash.txt", tmp_path / "o")


def test_a_worker_killed_mid_job_is_replaced_and_nothing_is_lost_or_written_twice(tmp_path):
    src = tmp_path / "in"
    _images(src, [f"i{k:02d}.png" for k in range(24)], size=72)
    out = tmp_path / "out"
    first_write: dict[str, int] = {}
    killed: list[int] = []

    def watch() -> None:  # kills a worker once outputs appear, and notes each output's first inode
        for p in out.iterdir() if out.is_dir() else []:
            if not p.name.startswith("."):
                first_write.setdefault(p.name, p.stat().st_ino)
        if first_write:
            kill_one_ray_process("_Worker", killed)

    with polling(watch):
        summary = upscale_images(src, out, 3, workers=2, batch=3, progress=False)
    assert killed, "no worker process was found to kill"
    assert summary.ok and len(summary.done) == 24, summary.failed
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"i{k:02d}.png" for k in range(24)]  # every image, no temporary file left
    assert all(not leftover_temporaries(out / n) for n in names)
    assert all((out / n).stat().st_ino == ino for n, ino in first_write.items())  # none written twice


def test_pools_are_sized_from_the_cluster_and_a_pool_that_cannot_start_says_why(tmp_path):
    assert pool_shape({"CPU": 2.0}, None, "cpu") == (1, 1.8, 0.0)
    assert pool_shape({"CPU": 2.0}, 2, "cpu") == (2, 0.9, 0.0)
    assert pool_shape({"CPU": 64.0, "GPU": 8.0}, None, "cuda") == (8, 1.0, 1.0)
    with pytest.raises(ClusterError, match="a GPU job, but the cluster has no GPU"):
        pool_shape({"CPU": 2.0}, None, "cuda")
    start = time.monotonic()
    with pytest.raises(
        ClusterError,
        match=r"only 0 of 1 workers \(64 CPU each\) could start within 3 s; "
        r"the cluster has CPU 2",
    ):
        _start_pool(
            1,
            64.0,
            0.0,
            3.0,
            dict(
                scale=2,
                weights=None,
                device="cpu",
                backend="auto",
                precision="fp32",
                max_memory=None,
                overwrite=False,
                job_started=time.time(),
            ),
        )
    assert time.monotonic() - start < 30


def test_cli_cluster_options_are_checked(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["upscale", str(tmp_path), "-o", str(tmp_path / "o"), "--cluster", "auto", "--workers", "0"])
    assert "--workers must be at least 1, got 0" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "nothing"), "-o", str(tmp_path / "o"), "--cluster", "auto"]) == 2
    assert "input not found" in capsys.readouterr().err


def test_the_cluster_benchmark_runs_and_writes_its_table(tmp_path):
    """benchmarks/cluster.py on a few tiny images (a smoke run, not a timing)."""
    import json
    import subprocess
    import sys

    out = tmp_path / "cluster.json"
    root = Path(__file__).resolve().parent.parent
    cmd = [
        sys.executable,
        "benchmarks/cluster.py",
        "--count",
        "2",
        "--size",
        "24",
        "16",
        "--scale",
        "2",
        "--video-seconds",
        "0",
        "--json",
        str(out),
    ]
    done = subprocess.run(
        cmd,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(out.read_text())
    assert [r["name"] for r in data["rows"]] == ["single process", "cluster, 1 worker", "cluster, 2 workers"]
    assert all(r["images_per_s"] > 0 for r in data["rows"]) and data["rows"][0]["vs_single"] == 1.0
    assert data["cluster_fixed_seconds"] > 0 and "| cluster, 2 workers |" in done.stdout
