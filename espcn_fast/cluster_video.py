"""One video on a Ray cluster: cut at keyframes into chunks of about N seconds, each chunk upscaled and
encoded by a Ray task through the single-machine pipeline (``video.upscale_frame_range``), the chunks
joined by stream copy with the input's audio (``video_join``), the result renamed into place.

- The same output: every input frame exactly once, in order, with the single-machine output's
  timestamps, frame rate, colour tags and size; the audio copied once from the input.
- Resumable: the chunks go to a work folder beside the output (``OUT.chunks/``), each written whole or
  not at all, with a note of the job's settings; a rerun with the same settings keeps the chunks done
  (checked frame by frame against the plan) and does the rest. The folder is removed once the output
  is in place.
- Fault tolerant: a chunk whose task fails (an error, its worker killed, its node lost) is run again
  up to ``RETRIES`` times; one that still fails is named, with its reason, on one line. The output is
  written whole or not at all, and no temporary file is left.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from .atomic_write import leftover_temporaries, replacing
from .cluster import RETRIES, ClusterError, connect, pool_shape
from .video import VideoError, VideoResult, _check_paths
from .video_chunks import Chunk, ChunkPlan, plan_chunks
from .video_join import chunk_timestamps, join_chunks

_SETTINGS = "job.json"


class ChunkFailures(VideoError):
    """Chunks that failed for good; ``failures`` holds one line per chunk, naming it and the reason."""

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


@dataclass
class _Job:
    """What the driver tracks: the plan, the work folder, the chunks done and what went wrong."""

    plan: ChunkPlan
    work: Path
    suffix: str
    done: dict[int, dict] = field(default_factory=dict)  # chunk index -> its task's report
    reused: list[int] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def path(self, chunk: Chunk) -> Path:
        return self.work / f"chunk_{chunk.index:05d}{self.suffix}"


def upscale_video_on_cluster(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    scale: int = 3,
    *,
    chunk_seconds: float = 10.0,
    cluster: str = "auto",
    weights: str | os.PathLike | None = None,
    device: str = "cpu",
    backend: str = "auto",
    precision: str = "fp32",
    codec: str = "libx264",
    crf: int | None = 18,
    preset: str | None = "veryfast",
    batch: int = 4,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
) -> VideoResult:
    """``src`` super-resolved into ``dst`` by chunks on a Ray cluster (see the module's docstring).

    Every node must see ``src`` and ``dst``'s folder at the same paths. Raises :class:`VideoError` for
    an input that cannot be read or cut (a still image, a raw stream without timestamps),
    :class:`ChunkFailures` when chunks failed for good (the chunks done are kept for a rerun), and
    :class:`ClusterError` when the job cannot run. The result's ``timings`` hold the seconds of the plan,
    the chunks and the join.
    """
    import ray

    started = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if not chunk_seconds > 0:
        raise VideoError(f"--chunk-seconds must be more than 0, got {chunk_seconds:g}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    _check_paths(src, dst, overwrite)
    plan = plan_chunks(src, chunk_seconds)
    planned = time.perf_counter()
    settings = dict(
        scale=scale,
        weights=None if weights is None else str(Path(weights).resolve()),
        device=device,
        backend=backend,
        precision=precision,
        codec=codec,
        crf=crf,
        preset=preset,
        batch=batch,
    )
    job = _Job(plan, dst.with_name(dst.name + ".chunks"), dst.suffix)
    _prepare_work(job, src, settings)
    todo = [c for c in plan.chunks if c.index not in job.done]
    own = connect(cluster) if todo else False
    try:
        if todo:
            _run_chunks(job, todo, src, settings, workers, device, progress)
    finally:
        _remove_leftovers(job)
        if own:
            ray.shutdown()
    encoded = time.perf_counter()
    if job.failures:
        kept = len(job.done)
        raise ChunkFailures(
            f"{len(job.failures)} of {len(plan.chunks)} chunks failed; the {kept} done are kept in {job.work} "
            "for a rerun",
            job.failures,
        )
    join_seconds = join_chunks([job.path(c) for c in plan.chunks], src, dst)
    shutil.rmtree(job.work, ignore_errors=True)
    total = time.perf_counter() - started
    return VideoResult(
        dst,
        len(plan.pts),
        total,
        plan.shortfall is None,
        plan.shortfall,
        {
            "plan": planned - started,
            "chunks": encoded - planned,
            "join": join_seconds,
            "total": total,
            "network": sum(r.get("network", 0.0) for r in job.done.values()),
        },
        _warnings(job),
    )


def _prepare_work(job: _Job, src: Path, settings: dict) -> None:
    """The work folder made, or kept with the chunks done where its note of the job matches this one
    (the same input, unchanged, the same settings and cuts); anything else in it is removed."""
    stat = src.stat()
    note = {
        "input": str(src.resolve()),
        "input_size": stat.st_size,
        "input_mtime_ns": stat.st_mtime_ns,
        "settings": settings,
        "cuts": [c.frames.start for c in job.plan.chunks],
    }
    path = job.work / _SETTINGS
    try:
        same = json.loads(path.read_text()) == note
    except (OSError, ValueError):
        same = False
    if job.work.exists() and not job.work.is_dir():
        raise VideoError(f"cannot use {job.work} for the chunks: it is a file")
    job.work.mkdir(exist_ok=True)
    if same:
        for chunk in job.plan.chunks:
            if chunk_timestamps(job.path(chunk), job.plan.time_base) == job.plan.pts_of(chunk):
                job.done[chunk.index] = {"reused": True}
                job.reused.append(chunk.index)
        return
    for item in job.work.iterdir():  # an earlier job's: other settings, or another input
        try:
            item.unlink()
        except OSError:
            pass
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(note, indent=1) + "\n")


def _run_chunks(
    job: _Job, todo: list[Chunk], src: Path, settings: dict, workers: int | None, device: str, progress: bool
) -> None:
    """The chunks of ``todo`` as Ray tasks, ``workers`` at a time, each retried by Ray; their reports
    gathered, and each chunk's frames checked against the plan."""
    import ray

    count, cpus, gpus = pool_shape(ray.cluster_resources(), workers, device)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=True)(_upscale_chunk)
    threads = max(1, int(round(cpus))) if gpus == 0 else 1
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(c.count for c in todo), desc="video (cluster)", unit="frame")
    waiting = list(reversed(todo))
    in_flight: dict = {}
    while waiting or in_flight:
        while waiting and len(in_flight) < count:
            chunk = waiting.pop()
            in_flight[task.remote(str(src), str(job.path(chunk)), chunk.frames, settings, threads)] = chunk
        finished, _ = ray.wait(list(in_flight), num_returns=1)
        chunk = in_flight.pop(finished[0])
        try:
            report = ray.get(finished[0])
        except ray.exceptions.RayError as exc:
            job.failures.append(f"{chunk.name}: {_reason(exc)}")
        else:
            found = chunk_timestamps(job.path(chunk), job.plan.time_base)
            if found == job.plan.pts_of(chunk):
                job.done[chunk.index] = report
            else:
                got = "no readable file" if found is None else f"{len(found)} frames"
                job.failures.append(
                    f"{chunk.name}: its file holds {got}, not the {chunk.count} frames of the input's timestamps"
                )
        if bar is not None:
            bar.update(chunk.count)
    if bar is not None:
        bar.close()


def _reason(exc: BaseException) -> str:
    """A task's error on one line: the error raised in the task (a VideoError's own line), or why the
    task's worker died."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, ClusterError):
        text = str(cause) if isinstance(cause, VideoError) else f"{type(cause).__name__}: {cause}"
    else:
        text = str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _remove_leftovers(job: _Job) -> None:
    """Temporary chunk files that killed workers could not remove."""
    for chunk in job.plan.chunks:
        for tmp in leftover_temporaries(job.path(chunk)):
            try:
                tmp.unlink()
            except OSError:
                pass


def _warnings(job: _Job) -> list[str]:
    """The chunks' warnings in order (a chunk sizes its output by the video's first frame, so a size
    change is also told at the start of each chunk after it)."""
    return [line for c in job.plan.chunks for line in job.done.get(c.index, {}).get("warnings", [])]


# One model a worker process, kept between its tasks (Ray reuses the processes).
_MODELS: dict[tuple, object] = {}


def _upscale_chunk(src: str, dst: str, frames, settings: dict, threads: int) -> dict:
    """A Ray task: one chunk of ``src`` through the single-machine pipeline into ``dst``; its report."""
    import torch

    from .fast import FastESPCN
    from .model import ESPCN
    from .video import upscale_frame_range

    torch.set_num_threads(threads)
    key = (settings["scale"], settings["weights"], settings["device"], settings["backend"], settings["precision"])
    model = _MODELS.get(key)
    if model is None:
        scale, weights = settings["scale"], settings["weights"]
        precision = settings["precision"]
        reference = ESPCN.from_pretrained(scale, precision=precision) if weights is None else ESPCN.from_file(weights)
        if reference.scale != scale:
            raise VideoError(f"{weights} holds weights for scale {reference.scale}, not {scale}")
        model = FastESPCN.from_reference(reference, backend=settings["backend"], precision=settings["precision"])
        model = _MODELS[key] = model.to(settings["device"])
    result = upscale_frame_range(
        src,
        dst,
        model,
        settings["scale"],
        frames,
        settings["device"],
        codec=settings["codec"],
        crf=settings["crf"],
        preset=settings["preset"],
        batch=settings["batch"],
    )
    return {
        "frames": result.frames,
        "network": result.timings.get("network", 0.0),
        "seconds": result.seconds,
        "warnings": result.warnings,
    }
