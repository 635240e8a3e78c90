"""Write QAT weights as a shipped int8 weight file: the float weights plus their int8 scales.

    python -m training.ship_int8 --scale 3 runs/x3_qat_int8/best.safetensors

writes ``espcn_fast/pretrained/espcn_x3_int8.safetensors`` (``--out`` for another
path), with the layer-2 and layer-3 scales that :mod:`espcn_fast.int8_weights`
names, and checks that the file loads back into ESPCN.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from espcn_fast.int8_weights import add_weight_scales
from espcn_fast.model import ESPCN
from espcn_fast.weights import PRETRAINED_DIR, WeightsError, load_weights, save_weights


def ship(weights: Path, scale: int, out: Path) -> None:
    """Read ``weights`` (a float state dict for ``scale``) and write them with their int8 scales to ``out``."""
    state = load_weights(weights)
    ESPCN(scale).load_state_dict(state)  # the shape and scale are checked before anything is written
    meta = {"scale": str(scale), "precision": "int8", "source": Path(weights).as_posix()}
    save_weights(add_weight_scales(state), out, meta)
    ESPCN(scale).load_state_dict(load_weights(out))  # the scales read back equal to the weights'


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.ship_int8", description=__doc__.splitlines()[0])
    p.add_argument("weights", type=Path, help="the QAT run's best.safetensors")
    p.add_argument("--scale", type=int, required=True)
    p.add_argument("--out", type=Path, help="default: espcn_fast/pretrained/espcn_x<scale>_int8.safetensors")
    args = p.parse_args(argv)
    out = args.out or PRETRAINED_DIR / f"espcn_x{args.scale}_int8.safetensors"
    try:
        ship(args.weights, args.scale, out)
    except (WeightsError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
