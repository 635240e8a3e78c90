"""Each row of the grid (scale x batch x candidate): checked against the float64 reference, then timed."""

from __future__ import annotations

import copy
import functools
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..data_dir import find_data_dir
from ..evaluate import psnr_image
from ..image_io import list_images, read_image
from ..memory_budget import available_memory, format_size
from ..model import ESPCN
from ..precision_model import PrecisionESPCN
from ..tiling import HALO
from . import peers
from .config import Candidate, macs_per_lr_pixel, tolerance
from .memory import call_with_rss_peak, cuda_peak_mib
from .timing import time_fn

# Rows of LR pixels the float64 reference computes at a time: its CPU convolutions unfold their input
# (64 x 9 values a pixel in float64 for layer 2), 19 GB for a batch of eight 540x960 frames at once,
# 0.6 GB for 128 rows (with fewer, the 4-row halos above and below cost more).
REFERENCE_ROWS = 128
# Bytes per LR pixel and batch image that a row keeps at its peak, beyond the inputs: eager PyTorch's
# 64- and 32-channel float32 activations and the output, with room for a peer's copies of them.
ROW_BYTES_PER_LR_PIXEL = 2 * 4 * (64 + 32 + 16)


@dataclass
class Row:
    """One measured (or skipped, or wrong) row of the table."""

    name: str
    precision: str
    scale: int
    batch: int
    input_hw: tuple[int, int]
    status: str = "ok"  # ok | skipped | wrong
    reason: str = ""
    ms_per_frame: float | None = None
    ms_spread: float | None = None
    fps: float | None = None
    speedup_vs_eager: float | None = None
    gflops: float | None = None
    peak_mib: float | None = None
    setup_s: float | None = None
    max_abs_error: float | None = None
    psnr_set5: float | None = None  # dB, CPU rows at x3 (see set5_psnr)
    repeats: int | None = None
    extra: dict = field(default_factory=dict)


def reference_output(
    model: ESPCN, x: torch.Tensor, rows: int = REFERENCE_ROWS, arithmetic: str | None = None
) -> torch.Tensor:
    """The reference model in float64, the yardstick of every row, as float32; with ``arithmetic``
    ("bf16", "int8"), the model computed in that CPU arithmetic (:mod:`espcn_fast.reduced_precision`).

    Not the model in float32: on a GPU cuDNN runs float32 convolutions in TF32
    by default, so that yardstick would itself be off by 5e-4. Computed image by
    image on strips of ``rows`` LR rows with the network's 4-row halo (the same
    values as the whole image: zero padding at its edges, real rows elsewhere),
    so that its memory does not grow with the frame or the batch.
    """
    reference: torch.nn.Module = copy.deepcopy(model).double()
    if arithmetic is not None:
        reference = PrecisionESPCN(reference, arithmetic, dtype=torch.float64)
    r = model.scale
    n, _, h, w = x.shape
    out = torch.empty((n, model.out_channels, h * r, w * r), dtype=torch.float32, device=x.device)
    with torch.inference_mode():
        for i in range(n):
            for top in range(0, h, rows):
                bottom = min(h, top + rows)
                lo, hi = max(0, top - HALO), min(h, bottom + HALO)
                strip = reference(x[i : i + 1, :, lo:hi].double())
                out[i : i + 1, :, top * r : bottom * r] = strip[:, :, (top - lo) * r : (top - lo + bottom - top) * r]
    return out


def row_bytes(batch: int, h: int, w: int) -> int:
    """What a row is expected to hold at its peak (see ``ROW_BYTES_PER_LR_PIXEL``)."""
    return ROW_BYTES_PER_LR_PIXEL * batch * h * w


def memory_reason(batch: int, h: int, w: int, device: torch.device) -> str | None:
    """Why a row would not fit this machine's memory, or None (CPU rows; a GPU's own limit is its error)."""
    if device.type != "cpu":
        return None
    need, have = row_bytes(batch, h, w), available_memory()
    if need > have:
        return f"needs about {format_size(need)}, {format_size(have)} available"
    return None


# Calls a CPU batch's timing makes at the least: each call already averages the batch's frames, and a
# batch of 8 at x2 takes seconds a call on 2 cores (the batch-8 rows were most of a full run's time).
MIN_BATCH_REPEATS = 3


def calls_for(batch: int, device: torch.device, min_repeats: int) -> tuple[int, int]:
    """``(warm-up calls, least timed calls)`` of a row: on the CPU the accuracy check's call is the first
    warm-up (2 more for a single frame, none for a batch) and a batch of ``b`` frames is timed at least
    ``max(MIN_BATCH_REPEATS, min_repeats / b)`` times; a GPU row as asked (its calls are cheap)."""
    if device.type != "cpu":
        return 3, min_repeats
    if batch == 1:
        return 2, min_repeats
    return 0, max(MIN_BATCH_REPEATS, math.ceil(min_repeats / batch))


def run_row(
    cand: Candidate,
    model: ESPCN,
    inputs: list[torch.Tensor],
    expected: torch.Tensor,
    scale: int,
    budget: float,
    min_repeats: int,
    psnr: bool = False,
    memory: bool = False,
    note: str = "",
) -> Row:
    """Set the row up, check its output against ``expected``, time it (or say why not); with ``psnr``,
    score it on Set5 too (``row.psnr_set5``, see :func:`set5_psnr`); with ``memory``, measure a CPU row's
    peak memory during the check's call (a CUDA row's always, after timing). ``model`` is what the row
    runs (``expected`` its reference); ``note`` names its weights where they are not the shipped float
    ones (``row.extra["weights"]``); ``row.extra["seconds"]`` says where the row's time went (setup,
    check, timing, psnr)."""
    x = inputs[0]
    row = Row(cand.name, cand.precision, scale, x.shape[0], (x.shape[2], x.shape[3]))
    if note:
        row.extra["weights"] = note
    seconds = row.extra.setdefault("seconds", {})
    clock = time.perf_counter()

    def lap(phase: str) -> None:  # what each phase cost, to see what a full run's time goes to
        nonlocal clock
        now = time.perf_counter()
        seconds[phase] = round(now - clock, 2)
        clock = now

    reason = memory_reason(x.shape[0], x.shape[2], x.shape[3], x.device)
    if reason is not None:
        row.status, row.reason = "skipped", reason
        return row
    try:
        fn, setup = cand.make(model, x)
    except peers.Skip as exc:
        row.status, row.reason = "skipped", str(exc)
        return row
    row.setup_s = round(setup, 3)
    lap("setup")
    with torch.inference_mode():
        if memory and x.device.type == "cpu":  # the check's call is the one measured (no call of its own)
            out, peak = call_with_rss_peak(fn, x)
            row.peak_mib = None if peak is None else round(peak, 1)
        else:
            out = fn(x)
        out = out.float()
    if out.shape != expected.shape:
        row.status, row.reason = "wrong", f"output shape {tuple(out.shape)}, expected {tuple(expected.shape)}"
        return row
    row.max_abs_error = (out - expected).abs().max().item()
    del out
    lap("check")
    bound = tolerance(cand.precision, cand.ours)
    if not row.max_abs_error <= bound:
        row.status, row.reason = "wrong", f"max error {row.max_abs_error:.3g} > {bound}"
        return row
    warmup, repeats = calls_for(x.shape[0], x.device, min_repeats)
    timing = time_fn(fn, inputs, x.device, warmup=warmup, budget_s=budget, min_repeats=repeats)
    lap("timing")
    if x.device.type == "cuda":
        row.peak_mib = round(cuda_peak_mib(fn, x), 1)
    batch = x.shape[0]
    row.ms_per_frame = timing.median_ms / batch
    row.ms_spread = timing.spread_ms / batch
    row.fps = 1e3 / row.ms_per_frame
    row.repeats = timing.repeats
    flops = 2 * macs_per_lr_pixel(model) * x.shape[2] * x.shape[3]
    row.gflops = flops / (row.ms_per_frame * 1e-3) / 1e9
    if psnr:
        try:
            score = set5_psnr(lambda y: fn(y).float())
        except Exception as exc:  # a peer's own error on other image sizes; the timed row stands
            row.extra["psnr_set5_error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        else:
            row.psnr_set5 = None if score is None else round(score, 3)
        lap("psnr")
    return row


# The scale the Set5 PSNR column is measured at (the LR inputs of LR_bicubic/Set5/x3).
PSNR_SCALE = 3


def set5_psnr(fn: peers.Runner, scale: int = PSNR_SCALE) -> float | None:
    """Mean PSNR (dB) of ``fn`` on Set5 with the evaluation protocol of :mod:`espcn_fast.evaluate`
    (its standard LR inputs, Y only, shaved); None where the data folder or Set5's LR inputs are absent."""
    try:
        root = find_data_dir()
    except FileNotFoundError:
        return None
    if not (root / "Set5").is_dir() or not (root / "LR_bicubic" / "Set5" / f"x{scale}").is_dir():
        return None
    pairs = _set5_pairs(root, scale)
    return sum(psnr_image(fn, hr, scale, lr) for hr, lr in pairs) / len(pairs)


@functools.lru_cache(maxsize=4)  # read once a run, not once a row
def _set5_pairs(root: Path, scale: int) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """Set5's HR images with their standard LR inputs (every LR file must be there, as in evaluate_folder)."""
    lr_dir = root / "LR_bicubic" / "Set5" / f"x{scale}"
    paths = list_images(root / "Set5", "evaluation folder")
    missing = [p.name for p in paths if not (lr_dir / p.name).is_file()]
    if missing:
        raise ValueError(f"the LR folder {lr_dir} lacks {', '.join(missing)}")
    return tuple((read_image(p), read_image(lr_dir / p.name)) for p in paths)
