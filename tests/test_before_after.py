"""The README's figure is made by docs/before_after.py: it runs, and ESPCN beats bicubic on every crop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_figure_script_makes_the_figure(data_dir, monkeypatch):
    spec = importlib.util.spec_from_file_location("before_after", ROOT / "docs" / "before_after.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    lines = []
    monkeypatch.setattr(module.ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: lines.append(text))
    figure = module.make_figure(data_dir)
    side = module.SIZE * module.ZOOM
    assert figure.size == (3 * side + 32, len(module.CROPS) * (side + module.LABEL) + 8)
    scores = [float(line.split()[-2]) for line in lines if line.endswith(" dB")]
    assert len(scores) == 2 * len(module.CROPS)
    assert all(espcn > bicubic for bicubic, espcn in zip(scores[::2], scores[1::2]))
