"""The results as a reader gets them: a Markdown table, a JSON file with every number, a bar chart."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from ..atomic_write import replacing
from .config import PRECISION_ORDER
from .grid import Row


def grouped(rows: list[Row]) -> list[Row]:
    """The rows by scale and batch (in the order they ran), then by precision (``PRECISION_ORDER``),
    then in the order they ran."""
    first: dict[tuple[int, int], int] = {}
    for i, r in enumerate(rows):
        first.setdefault((r.scale, r.batch), i)
    rank = {p: i for i, p in enumerate(PRECISION_ORDER)}
    return sorted(rows, key=lambda r: (first[(r.scale, r.batch)], rank.get(r.precision, len(rank))))


def format_table(rows: list[Row]) -> str:
    """Markdown, one line a row, grouped (see :func:`grouped`); ours in bold, with the weights where not
    the shipped float ones; skipped and wrong rows with their reason; a dash for a Set5 PSNR not measured
    (GPU rows, scales other than x3, no data)."""
    floors = any("x_floor" in r.extra for r in rows)
    head = (
        "| scale | batch | backend | precision | ms/frame | Set5 x3 dB | spread | fps | vs eager | GFLOP/s "
        "| peak MiB | setup s |"
    )
    lines = [
        head + (" x floor |" if floors else ""),
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if floors else ""),
    ]
    for r in grouped(rows):
        if r.status != "ok":
            lines.append(
                f"| x{r.scale} | {r.batch} | {r.name} | {r.precision} | {r.status}: {r.reason} | | | | | | | |"
            )
            continue
        mark = "**" if r.name.startswith("espcn_fast") else ""
        name = f"{mark}{r.name}{mark}" + (f" ({r.extra['weights']})" if r.extra.get("weights") else "")
        psnr = "-" if r.psnr_set5 is None else f"{r.psnr_set5:.2f}"
        lines.append(
            f"| x{r.scale} | {r.batch} | {name} | {r.precision} | {mark}{r.ms_per_frame:.2f}{mark} | "
            f"{psnr} | {r.ms_spread:.2f} | {r.fps:.1f} | {r.speedup_vs_eager:.2f}x | {r.gflops:.0f} | "
            f"{'' if r.peak_mib is None else f'{r.peak_mib:.0f}'} | {r.setup_s or 0:.1f} |"
            + (f" {r.extra.get('x_floor', '')} |" if floors else "")
        )
    return "\n".join(lines)


def frame_label(rows: list[Row]) -> str:
    """The output frames the rows really ran ("1080x1920 frames", or every size when they differ)."""
    sizes = sorted({(r.input_hw[0] * r.scale, r.input_hw[1] * r.scale) for r in rows})
    return ", ".join(f"{h}x{w}" for h, w in sizes) + (" frames" if len(sizes) == 1 else " output frames")


def plot(rows: list[Row], path: Path, title: str) -> None:
    """A bar chart of frames per second, ours in red, written whole or not at all."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if r.status == "ok"]
    several = len({r.precision for r in done}) > 1  # on a GPU: name each row's precision
    labels = [f"x{r.scale} b{r.batch} {r.name}" + (f" {r.precision}" if several else "") for r in done]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(done) + 1.2))
    colours = ["tab:red" if r.name.startswith("espcn_fast") else "tab:grey" for r in done]
    ax.barh(range(len(done)), [r.fps for r in done], color=colours)
    ax.set_yticks(range(len(done)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"frames per second, {frame_label(done)} out (higher is better)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def write_json(path: Path, result: dict, rows: list[Row]) -> None:
    """``result`` with the rows, whole or not at all: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        tmp.write_text(json.dumps({**result, "rows": [asdict(r) for r in rows]}, indent=2) + "\n")
