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


# The summary's frame (x3, a 1x1x360x640 input, 1080p out) and the ratios it reports against.
SUMMARY_SCALE, SUMMARY_BATCH = 3, 1
TARGET_REDUCED_VS_PEER = 1.25  # our fastest reduced-precision row / the fastest peer in its precision
TARGET_REDUCED_VS_FP32 = 1.4  # the same row / our fp32 row
TARGET_FP32_VS_PEER = 1.25  # our fp32 row / the fastest fp32 peer


def _ours(r: Row) -> bool:
    return r.name.startswith("espcn_fast")


def _fastest(rows: list[Row]) -> Row | None:
    return min(rows, key=lambda r: r.ms_per_frame or float("inf"), default=None)


def _describe(r: Row, fp32_psnr: float | None) -> str:
    """``name precision (weights) ms``, with the Set5 dB lost against fp32 where both are measured."""
    text = f"{r.name} {r.precision}" + (f" ({r.extra['weights']})" if r.extra.get("weights") else "")
    text += f" {r.ms_per_frame:.1f} ms"
    if r.psnr_set5 is not None and fp32_psnr is not None and r.precision != "fp32":
        text += f", Set5 {r.psnr_set5 - fp32_psnr:+.2f} dB"
    return text


def _ratio(ours: Row, other: Row, target: float) -> str:
    ratio = other.ms_per_frame / ours.ms_per_frame
    return f"{ratio:.2f}x (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"


def summary_lines(rows: list[Row], threads: int, scale: int = SUMMARY_SCALE, batch: int = SUMMARY_BATCH) -> list[str]:
    """The speedups the project is judged on, at ``scale`` and ``batch``, from rows that passed their
    accuracy check: our fastest reduced-precision row against the fastest peer in its precision and
    against our fp32 row, and our fp32 row against the fastest fp32 peer; Set5 dB lost against the fp32
    model beside each reduced-precision row. Empty when that frame was not run."""
    done = [r for r in rows if r.scale == scale and r.batch == batch and r.status == "ok" and r.ms_per_frame]
    if not done:
        return []
    h, w = done[0].input_hw
    lines = [f"speedups at x{scale}, {batch}x1x{h}x{w} -> {h * scale}x{w * scale}, {threads} thread(s):"]
    ours_fp32 = _fastest([r for r in done if _ours(r) and r.precision == "fp32"])
    peer_fp32 = _fastest([r for r in done if not _ours(r) and r.precision == "fp32"])
    fp32_psnr = next((r.psnr_set5 for r in (peer_fp32, ours_fp32) if r and r.psnr_set5 is not None), None)
    reduced = _fastest([r for r in done if _ours(r) and r.precision != "fp32"])
    if reduced is None:
        lines.append("  no reduced-precision row of ours passed its check")
    else:
        peer = _fastest([r for r in done if not _ours(r) and r.precision == reduced.precision])
        mine = _describe(reduced, fp32_psnr)
        if peer is None:
            lines.append(f"  ours {mine}: no peer row in {reduced.precision}")
        else:
            lines.append(
                f"  ours {mine} vs fastest {reduced.precision} peer {_describe(peer, fp32_psnr)}: "
                + _ratio(reduced, peer, TARGET_REDUCED_VS_PEER)
            )
        if ours_fp32 is not None:
            lines.append(
                f"  ours {mine} vs our fp32 {_describe(ours_fp32, fp32_psnr)}: "
                + _ratio(reduced, ours_fp32, TARGET_REDUCED_VS_FP32)
            )
    if ours_fp32 is not None and peer_fp32 is not None:
        lines.append(
            f"  our fp32 {_describe(ours_fp32, fp32_psnr)} vs fastest fp32 peer "
            f"{_describe(peer_fp32, fp32_psnr)}: " + _ratio(ours_fp32, peer_fp32, TARGET_FP32_VS_PEER)
        )
    return lines
