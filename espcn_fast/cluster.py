"""Image collections on a Ray cluster: the single-machine job (``espcn_fast.file_job``) run by a pool of
Ray actors, each holding the model once, with the same outputs, resumable and fault tolerant.

- Inputs: a folder (its whole tree, outputs mirroring it), a glob pattern, or a manifest (a text file
  of paths, one a line, relative to the manifest's folder; blank lines and ``#`` comments skipped).
- Resumable: outputs are written whole or not at all, so an output that exists is complete and is
  not redone (``overwrite=True`` redoes those that predate the job, by their time stamps: the
  clocks of the machines that write them must agree).
- Fault tolerant: a worker that dies is restarted by Ray and its images redone; an image another
  attempt already wrote in this job is not written again; temporary files a killed worker left are
  removed at the end. A bad image is reported, the job goes on.
- Never a silent wait: the pool is sized from the cluster's resources, and a pool that cannot be
  placed within ``schedule_timeout`` seconds is an error that says what was asked and what is there.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .image_io import IMAGE_SUFFIXES

# How many times Ray restarts a dead worker and retries its work before the images are failed.
RETRIES = 3
_GLOB_CHARS = set("*?[")


class ClusterError(RuntimeError):
    """A job that cannot run: no Ray, no cluster, a pool that cannot be placed, inputs that collide."""


@dataclass
class ClusterSummary:
    """What a job did: outputs written, outputs that were there already, and failures with reasons."""

    done: list[Path] = field(default_factory=list)
    already_done: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    workers: int = 0
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def line(self) -> str:
        """One line for the end of a run."""
        return (
            f"{len(self.done)} done, {len(self.already_done)} already done, {len(self.failed)} failed, "
            f"on {self.workers} worker(s) in {self.seconds:.1f} s"
        )


def collect(source: str | os.PathLike, output: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(input, output) pairs for a folder tree, a glob pattern or a manifest; outputs are PNGs under ``output``."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        pairs = [(f, f.relative_to(path)) for f in files]
        what = f"folder {path}"
    elif path.is_file() and path.suffix.lower() not in IMAGE_SUFFIXES:
        pairs = _manifest(path)
        what = f"manifest {path}"
    elif path.is_file():
        pairs = [(path, Path(path.name))]
        what = str(path)
    elif _GLOB_CHARS & set(text):
        prefix = text[: min(text.index(c) for c in _GLOB_CHARS if c in text)]
        base = Path(prefix) if prefix.endswith(os.sep) else Path(prefix).parent  # the folder the pattern starts in
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        pairs = [(f, f.relative_to(base) if f.is_relative_to(base) else Path(f.name)) for f in files]
        what = f"pattern {text!r}"
    else:
        raise ClusterError(f"input not found: {text}")
    if not pairs:
        raise ClusterError(f"no images in {what}")
    out = Path(output)
    planned = [(src, out / rel.with_suffix(".png")) for src, rel in pairs]
    seen: dict[Path, Path] = {}
    for src, dst in planned:
        if dst in seen:
            raise ClusterError(f"{seen[dst]} and {src} would both write {dst}")
        seen[dst] = src
    return planned


def _manifest(path: Path) -> list[tuple[Path, Path]]:
    """A text file of image paths, one a line, relative to its folder; outputs keep those relative paths."""
    pairs = []
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterError(f"cannot read the manifest {path}: {exc}") from None
    for line in lines:
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        item = Path(entry)
        src = item if item.is_absolute() else path.parent / item
        rel = Path(item.name) if item.is_absolute() else Path(os.path.normpath(item))
        if rel.parts and rel.parts[0] == "..":
            rel = Path(item.name)
        pairs.append((src, rel))
    return pairs


def connect(cluster: str) -> bool:
    """Joins or starts a Ray cluster: ``auto`` joins the one ``RAY_ADDRESS`` names, else starts one here;
    ``local`` always starts one here; anything else is a cluster's address. Returns whether one was
    started (and is the caller's to shut down)."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--cluster needs Ray: pip install 'ray>=2.9'") from None
    if ray.is_initialized():
        return False
    options = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if cluster == "local" or (cluster == "auto" and not os.environ.get("RAY_ADDRESS")):
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **options)
            return True
        ray.init(address="auto" if cluster == "auto" else cluster, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = os.environ.get("RAY_ADDRESS") if cluster == "auto" else cluster
        raise ClusterError(f"cannot join the Ray cluster at {where}: {exc}") from None
    return False


def pool_shape(resources: dict[str, float], workers: int | None, device: str) -> tuple[int, float, float]:
    """(workers, CPUs each, GPUs each) for the cluster's ``resources``: one worker per GPU on a GPU job;
    on CPUs one per two CPUs (each with its share, fractional where few), as many as asked otherwise."""
    gpus, cpus = resources.get("GPU", 0.0), resources.get("CPU", 0.0)
    if device == "cuda":
        if gpus < 1:
            raise ClusterError(f"a GPU job, but the cluster has no GPU (resources: {_resources(resources)})")
        count = workers or int(gpus)
        return count, min(1.0, max(cpus, 1.0) / count / 2), 1.0
    if cpus <= 0:
        raise ClusterError(f"the cluster has no CPU to run workers on (resources: {_resources(resources)})")
    count = workers or max(1, int(cpus // 2))
    # The CPUs shared out, less a little for the driver's own tasks: never more than there are.
    return count, round(min(max(cpus // count, 1), cpus * 0.9 / count), 3), 0.0


def _resources(resources: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(resources.items()) if k in ("CPU", "GPU", "memory")) or "none"


def upscale_images(
    source: str | os.PathLike | list[tuple[Path, Path]],
    output: str | os.PathLike,
    scale: int = 3,
    *,
    cluster: str = "auto",
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    backend: str = "auto",
    precision: str = "fp32",
    overwrite: bool = False,
    workers: int | None = None,
    batch: int = 4,
    max_memory: int | None = None,
    progress: bool = True,
    schedule_timeout: float = 60.0,
) -> ClusterSummary:
    """Upscale every image of ``source`` into ``output`` on a Ray cluster; returns what was done.

    ``source``: a folder, a glob pattern, a manifest, or (input, output) pairs. ``batch`` images go to a
    worker at a time. The outputs, their format and their guarantees are those of ``espcn-fast upscale``.
    """
    import ray

    pairs = source if isinstance(source, list) else collect(source, output)
    started = time.time()
    summary = ClusterSummary()
    todo = []
    for src, dst in pairs:
        if os.path.lexists(dst) and not overwrite:
            summary.already_done.append(dst)
        else:
            todo.append((src, dst))
    own = connect(cluster)
    try:
        count, cpus, gpus = pool_shape(ray.cluster_resources(), workers, device)
        count = max(1, min(count, -(-len(todo) // max(1, batch)))) if todo else 0
        summary.workers = count
        pool = _start_pool(
            count,
            cpus,
            gpus,
            schedule_timeout,
            dict(
                scale=scale,
                weights=None if weights is None else str(weights),
                device=device,
                backend=backend,
                precision=precision,
                max_memory=max_memory,
                overwrite=overwrite,
                job_started=started,
            ),
        )
        chunks = [todo[i : i + batch] for i in range(0, len(todo), batch)]
        _run(pool, chunks, summary, progress)
    finally:
        _remove_leftovers(pairs)
        if own:
            ray.shutdown()
    summary.seconds = time.time() - started
    return summary


def _start_pool(count: int, cpus: float, gpus: float, timeout: float, settings: dict) -> list:
    """``count`` workers, each ready (its model loaded), or a ClusterError saying why they are not."""
    import ray

    if count == 0:
        return []
    worker = ray.remote(num_cpus=cpus, num_gpus=gpus, max_restarts=RETRIES, max_task_retries=RETRIES)(_Worker)
    threads = max(1, int(round(cpus))) if gpus == 0 else 1
    pool = [worker.remote(threads=threads, **settings) for _ in range(count)]
    ready, waiting = ray.wait([w.ready.remote() for w in pool], num_returns=count, timeout=timeout)
    if waiting:
        for w in pool:
            ray.kill(w)
        raise ClusterError(
            f"only {len(ready)} of {count} workers ({cpus:g} CPU{' + 1 GPU' if gpus else ''} each) could start "
            f"within {timeout:g} s; the cluster has {_resources(ray.cluster_resources())}, "
            f"{_resources(ray.available_resources())} free: ask for fewer workers"
        )
    try:
        ray.get(ready)
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"a worker could not load the model: {exc}") from None
    return pool


def _run(pool: list, chunks: list[list[tuple[Path, Path]]], summary: ClusterSummary, progress: bool) -> None:
    """Feeds the chunks to the workers, a few in flight each, and gathers their reports."""
    import ray

    bar = None
    if progress and chunks:
        from tqdm import tqdm

        bar = tqdm(total=sum(len(c) for c in chunks), desc="upscale (cluster)", unit="img")
    in_flight: dict = {}
    queue = list(reversed(chunks))
    free = [w for w in pool for _ in range(2)]  # two chunks a worker: one runs while the next is sent
    while queue or in_flight:
        while queue and free:
            worker = free.pop()
            chunk = queue.pop()
            in_flight[worker.process.remote(chunk)] = (worker, chunk)
        finished, _ = ray.wait(list(in_flight), num_returns=1)
        worker, chunk = in_flight.pop(finished[0])
        free.append(worker)
        try:
            reports = ray.get(finished[0])
        except ray.exceptions.RayError as exc:  # out of retries: the chunk's images fail, the job goes on
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            reports = [(src, dst, "failed", f"{src}: the worker died ({reason})") for src, dst in chunk]
        for src, dst, status, message in reports:
            if status == "done":
                summary.done.append(Path(dst))
            else:
                summary.failed.append((Path(src), message))
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()


def _remove_leftovers(pairs: list[tuple[Path, Path]]) -> None:
    """Temporary files beside the outputs that a killed worker could not remove (never a complete output)."""
    from .atomic_write import leftover_temporaries

    for _, dst in pairs:
        for tmp in leftover_temporaries(dst):
            try:
                tmp.unlink()
            except OSError:
                pass


class _Worker:
    """A Ray actor: the model loaded once, then chunks of images through ``file_job.upscale_file``."""

    def __init__(
        self,
        scale: int,
        weights: str | None,
        device: str,
        backend: str,
        precision: str,
        max_memory: int | None,
        overwrite: bool,
        job_started: float,
        threads: int,
    ) -> None:
        import torch

        from .fast import FastESPCN
        from .model import ESPCN

        torch.set_num_threads(threads)
        reference = ESPCN.from_pretrained(scale, precision=precision) if weights is None else ESPCN.from_file(weights)
        if reference.scale != scale:
            raise ValueError(f"{weights} holds weights for scale {reference.scale}, not {scale}")
        self.model = FastESPCN.from_reference(reference, backend=backend, precision=precision).to(device)
        self.scale, self.device, self.max_memory = scale, device, max_memory
        self.overwrite, self.job_started = overwrite, job_started

    def ready(self) -> int:
        return os.getpid()

    def process(self, chunk: list[tuple[Path, Path]]) -> list[tuple[str, str, str, str]]:
        """Each image of ``chunk``: (input, output, "done" | "failed" | "skipped", message)."""
        from .file_job import FileJobError, upscale_file

        reports = []
        for src, dst in chunk:
            src, dst = Path(src), Path(dst)
            # The driver sends only outputs that were missing (or, with overwrite, that predate the job):
            # one there now was written by an earlier attempt of this job, a worker that died after it.
            if os.path.lexists(dst) and (not self.overwrite or os.stat(dst).st_mtime >= self.job_started):
                reports.append((str(src), str(dst), "done", ""))
                continue
            try:
                upscale_file(src, dst, self.model, self.scale, self.device, max_memory=self.max_memory)
            except FileJobError as exc:
                reports.append((str(src), str(dst), exc.kind, str(exc)))
                continue
            reports.append((str(src), str(dst), "done", ""))
        return reports
