"""Exports run in the tools they are for, and compute what the reference computes: ONNX in ONNX Runtime and
OpenCV DNN, TorchScript through torch.jit.load, on odd sizes and batches, against the float64 reference."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from espcn_fast import ESPCN
from espcn_fast.cli import main
from espcn_fast.export import export_model, format_of
from espcn_fast.weights import save_weights

from .kernel_checks import random_model, reference64

SIZES = [(1, 17, 23), (2, 9, 31), (3, 1, 1)]


def _check(y: np.ndarray, model: ESPCN, x: np.ndarray, clamp: bool = True) -> None:
    """Against the float64 reference, to float32 rounding of the raw output's scale (tests/kernel_checks.py)."""
    raw = reference64(model, torch.from_numpy(x))
    ref = raw.clamp(0, 1) if clamp else raw
    assert y.shape == tuple(ref.shape)
    torch.testing.assert_close(torch.from_numpy(y).double(), ref, rtol=0, atol=4e-6 * float(raw.abs().max()))


def _inputs(n: int, h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, h, w), dtype=np.float32)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_onnx_in_onnx_runtime_matches_the_reference(tmp_path, scale):
    import onnxruntime as ort

    model = random_model(scale, seed=scale)
    path = export_model(model, tmp_path / f"x{scale}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x"] and [o.name for o in session.get_outputs()] == ["y"]
    for n, h, w in SIZES:
        x = _inputs(n, h, w, seed=h)
        y = session.run(None, {"x": x})[0]
        assert y.shape == (n, 1, h * scale, w * scale)
        _check(y, model, x)


def test_onnx_graph_is_the_reference_layers(tmp_path):
    import onnx

    path = export_model(random_model(3, seed=1), tmp_path / "m.onnx", opset=13)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    ops = [node.op_type for node in graph.graph.node if node.op_type != "Constant"]  # (Clip's bounds)
    assert ops == ["Conv", "Tanh", "Conv", "Tanh", "Conv", "DepthToSpace", "Clip"]
    assert graph.opset_import[0].version == 13
    depth_to_space = next(n for n in graph.graph.node if n.op_type == "DepthToSpace")
    assert {a.name: a for a in depth_to_space.attribute}["mode"].s == b"CRD"  # pixel shuffle's channel order


def test_onnx_in_opencv_dnn_matches_the_reference(tmp_path):
    import cv2

    model = random_model(3, seed=7)
    path = export_model(model, tmp_path / "m.onnx")
    net = cv2.dnn.readNetFromONNX(str(path))
    for n, h, w in SIZES[:2]:
        x = _inputs(n, h, w, seed=w)
        net.setInput(x)
        y = net.forward()
        _check(y, model, x)


def test_unclamped_export_keeps_the_raw_output(tmp_path):
    import onnxruntime as ort

    model = random_model(2, seed=3)
    x = _inputs(1, 12, 10, seed=4)
    raw = reference64(model, torch.from_numpy(x))
    assert raw.min() < 0 or raw.max() > 1  # random weights: outside [0, 1] somewhere, so the clamp shows
    path = export_model(model, tmp_path / "raw.onnx", clamp=False)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _check(y, model, x, clamp=False)


def test_torchscript_matches_the_reference(tmp_path):
    model = random_model(3, seed=5)
    path = export_model(model, tmp_path / "m.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        loaded = torch.jit.load(str(path))
    for n, h, w in SIZES:
        x = _inputs(n, h, w, seed=n)
        with torch.no_grad():
            y = loaded(torch.from_numpy(x)).numpy()
        _check(y, model, x)


def test_a_model_on_another_dtype_exports_as_float32(tmp_path):
    import onnxruntime as ort

    model = random_model(2, seed=9).double()
    path = export_model(model, tmp_path / "m.onnx")
    assert next(model.parameters()).dtype == torch.float64  # the caller's model is left as it was
    x = _inputs(1, 5, 6, seed=1)
    y = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _check(y, model, x)


def test_export_errors(tmp_path):
    model = random_model(3, seed=1)
    with pytest.raises(ValueError, match=r"cannot tell the format from 'm.bin': give --format"):
        export_model(model, tmp_path / "m.bin")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        format_of(tmp_path / "m.onnx", "tflite")
    with pytest.raises(ValueError, match="opset must be an integer >= 11"):
        export_model(model, tmp_path / "m.onnx", opset=9)
    with pytest.raises(TypeError, match="export_model takes an ESPCN model, got Linear"):
        export_model(torch.nn.Linear(2, 2), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="one-channel"):
        export_model(ESPCN(3, in_channels=3, out_channels=3), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export(tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "espcn_x2.onnx"
    assert main(["export", "--scale", "2", "-o", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    x = _inputs(1, 11, 7, seed=2)
    y = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    _check(y, ESPCN.from_pretrained(2), x)
    # The one output rule: an existing file is replaced only when asked.
    before = out.read_bytes()
    assert main(["export", "--scale", "3", "-o", str(out)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and out.read_bytes() == before
    assert main(["export", "--scale", "3", "-o", str(out), "--overwrite", "-q"]) == 0
    assert out.read_bytes() != before
    # Weights of a file, checked against --scale; a format named where the suffix says nothing.
    save_weights(random_model(4, seed=1).state_dict(), tmp_path / "w.safetensors")
    assert (
        main(["export", "--scale", "3", "--weights", str(tmp_path / "w.safetensors"), "-o", str(tmp_path / "w.onnx")])
        == 2
    )
    assert "holds weights for scale 4, not --scale 3" in capsys.readouterr().err
    assert (
        main(
            [
                "export",
                "--scale",
                "4",
                "--weights",
                str(tmp_path / "w.safetensors"),
                "--format",
                "torchscript",
                "-o",
                str(tmp_path / "w.bin"),
                "-q",
            ]
        )
        == 0
    )
    assert (tmp_path / "w.bin").stat().st_size > 0
    assert main(["export", "-o", str(tmp_path / "nowhere" / "m.onnx")]) == 2
    assert "does not exist" in capsys.readouterr().err
