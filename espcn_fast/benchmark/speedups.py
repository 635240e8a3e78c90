"""Each row against eager PyTorch in the same precision, and against the GPU's arithmetic floor."""

from __future__ import annotations

from .config import floor_ms
from .grid import Row


def against_eager(rows: list[Row]) -> None:
    """Fills ``speedup_vs_eager``: eager's time over the row's, within one scale and batch, against eager
    in the row's precision (eager fp32 where there is none); NaN for a row with nothing to compare with."""
    eager = {(r.scale, r.batch, r.precision): r.ms_per_frame for r in rows if r.name == "eager" and r.ms_per_frame}
    for r in rows:
        if r.status != "ok":
            continue
        base = eager.get((r.scale, r.batch, r.precision), eager.get((r.scale, r.batch, "fp32")))
        r.speedup_vs_eager = base / r.ms_per_frame if base else float("nan")


def against_floor(row: Row, gpu: str | None, flops: float, io_bytes: float) -> None:
    """Records how far a GPU row is from the fastest its GPU can run the frame (see ``config.GPU_PEAKS``)."""
    if not row.ms_per_frame:
        return
    best = floor_ms(gpu, row.precision, flops, io_bytes)
    if best is not None:
        row.extra["floor_ms"] = round(best, 4)
        row.extra["x_floor"] = round(row.ms_per_frame / best, 2)
