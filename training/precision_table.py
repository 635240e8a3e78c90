"""Set5/Set14 PSNR of the shipped weights in the CPU kernels' precisions (fp32, bf16, int8).

    python -m training.precision_table [--scales 2 3 4] [--threads 1]

Every figure is :func:`espcn_fast.evaluate.evaluate_precision` (the precision's
arithmetic in float64): fp32 and bf16 with the float weights, int8 with the
float weights (post-training quantization, for comparison) and with the int8
weights that quantization-aware training made. Prints a JSON object and a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from espcn_fast.evaluate import evaluate_precision
from espcn_fast.model import ESPCN

SETS = ("Set5", "Set14")
# Column -> (weights' precision for from_pretrained, arithmetic).
COLUMNS = {
    "fp32": ("fp32", "fp32"),
    "bf16": ("fp32", "bf16"),
    "int8_ptq": ("fp32", "int8"),
    "int8": ("int8", "int8"),
}


def scale_row(scale: int, columns: list[str]) -> dict[str, dict[str, float]]:
    """``{set: {column: PSNR}}`` for one scale."""
    row: dict[str, dict[str, float]] = {s: {} for s in SETS}
    for column in columns:
        weights, arithmetic = COLUMNS[column]
        model = ESPCN.from_pretrained(scale, precision=weights)
        for score in evaluate_precision(model, arithmetic, SETS):
            row[score.name][column] = round(score.psnr, 4)
    return row


def markdown(table: dict[int, dict[str, dict[str, float]]]) -> str:
    """The table as Markdown, with each precision's loss against fp32."""
    lines = [
        "| Set | Scale | fp32 | bf16 (diff) | int8 post-training (diff) | int8 QAT weights (diff) |",
        "|---|---|---|---|---|---|",
    ]
    for name in SETS:
        for scale, row in table.items():
            r = row[name]
            cells = [f"{r[c]:.3f} ({r[c] - r['fp32']:+.3f})" for c in ("bf16", "int8_ptq", "int8")]
            lines.append(f"| {name} | x{scale} | {r['fp32']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.precision_table", description=__doc__.splitlines()[0])
    p.add_argument("--scales", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--columns", nargs="+", choices=list(COLUMNS), default=list(COLUMNS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    table = {scale: scale_row(scale, args.columns) for scale in args.scales}
    print(json.dumps(table, indent=1))
    if set(args.columns) == set(COLUMNS):
        print(markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
