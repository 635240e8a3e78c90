"""Videos made on the spot for the tests and the video benchmark: a pan across a smooth random scene,
with a tone, in any codec, pixel format, frame rate or timing (no file needs to be shipped)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def scene(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth random ``(h, w, 3)`` uint8 picture, never constant: noise on a coarse grid, bilinearly
    enlarged, plus fine grain (the tests' ``random_rgb``)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    base = torch.rand(3, h // 4 + 2, w // 4 + 2, generator=g)
    picture = torch.nn.functional.interpolate(base[None], size=(h, w), mode="bilinear", align_corners=False)[0]
    picture = picture + 0.1 * torch.rand(3, h, w, generator=g)
    return (picture.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def make_video(
    path: str | Path,
    frames: int = 8,
    h: int = 36,
    w: int = 52,
    audio: bool = True,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    pts: list[int] | None = None,
    time_base: Fraction | None = None,
    rate: int = 25,
    options: dict[str, str] | None = None,
    encoder_options: dict[str, str] | None = None,
    audio_rate: int = 44100,
    audio_frames: int | None = None,
    step: int = 2,
) -> Path:
    """Write a ``frames``-frame pan (``step`` pixels a frame) of ``w`` x ``h`` to ``path``, with a tone.

    Lossless by default where the codec allows (x264 at qp 0; ``encoder_options`` replace that);
    ``pts`` and ``time_base`` time the frames (variable frame rates); ``options`` go to the muxer
    (``{"movflags": "faststart"}``: an MP4 with its index first). The tone is ``audio_frames`` frames
    of 1024 samples (default two a picture).
    """
    import av

    picture = scene(h + 4, w + step * frames, seed=h * w)
    out = av.open(str(path), "w", options=options or {})
    stream = out.add_stream(codec, rate=rate)
    stream.width, stream.height, stream.pix_fmt = w, h, pix_fmt
    if encoder_options is not None:
        stream.options = encoder_options
    elif codec in ("libx264", "libx264rgb"):
        stream.options = {"qp": "0"}
    if time_base is not None:
        stream.time_base = stream.codec_context.time_base = time_base
    tone = out.add_stream("aac", rate=audio_rate) if audio else None
    for i in range(frames):
        frame = av.VideoFrame.from_ndarray(
            np.ascontiguousarray(picture[2 : 2 + h, step * i : step * i + w]), format="rgb24"
        )
        if pts is not None:
            frame.pts, frame.time_base = pts[i], time_base
        out.mux(stream.encode(frame.reformat(format=pix_fmt)))
    out.mux(stream.encode(None))
    if tone is not None:
        for i in range(2 * frames if audio_frames is None else audio_frames):
            samples = np.sin(np.arange(1024, dtype=np.float32)[None] * 0.05 + i).astype(np.float32)
            af = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
            af.sample_rate, af.pts = audio_rate, i * 1024
            out.mux(tone.encode(af))
        out.mux(tone.encode(None))
    out.close()
    return Path(path)
