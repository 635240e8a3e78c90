import math

import pytest
import torch

from espcn_fast import ESPCN
from espcn_fast.weights import KEYS, WeightsError, load_weights, save_weights, scale_of


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_shapes(scale):
    model = ESPCN(scale)
    x = torch.rand(2, 1, 7, 5)
    assert model(x).shape == (2, 1, 7 * scale, 5 * scale)


def test_layers_as_the_paper():
    model = ESPCN(3)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 64, (5, 5), (2, 2)),
        (64, 32, (3, 3), (1, 1)),
        (32, 9, (3, 3), (1, 1)),
    ]
    assert sum(p.numel() for p in model.parameters()) == 64 * 25 + 64 + 64 * 32 * 9 + 32 + 32 * 9 * 9 + 9


def test_state_dict_keys_are_espcn_pytorch():
    assert tuple(ESPCN(3).state_dict()) == KEYS


def test_initialisation():
    torch.manual_seed(0)
    model = ESPCN(4)
    w1, w2, w3 = model.feature_maps[0].weight, model.feature_maps[2].weight, model.sub_pixel[0].weight
    assert w1.std().item() == pytest.approx(math.sqrt(2 / (64 * 25)), rel=0.1)
    assert w2.std().item() == pytest.approx(math.sqrt(2 / (32 * 9)), rel=0.05)
    assert w3.std().item() == pytest.approx(0.001, rel=0.1)
    assert all((m.bias == 0).all() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def test_matches_a_hand_written_forward_in_float64():
    torch.manual_seed(1)
    model = ESPCN(3).double()
    for p in model.parameters():
        torch.nn.init.normal_(p, 0, 0.2)
    x = torch.rand(1, 1, 6, 7, dtype=torch.float64)
    s = model.state_dict()
    h = torch.tanh(torch.nn.functional.conv2d(x, s["feature_maps.0.weight"], s["feature_maps.0.bias"], padding=2))
    h = torch.tanh(torch.nn.functional.conv2d(h, s["feature_maps.2.weight"], s["feature_maps.2.bias"], padding=1))
    h = torch.nn.functional.conv2d(h, s["sub_pixel.0.weight"], s["sub_pixel.0.bias"], padding=1)
    expected = torch.nn.functional.pixel_shuffle(h, 3)
    assert torch.allclose(model(x), expected, atol=1e-14)


def test_loads_espcn_pytorch_checkpoint(tmp_path):
    torch.manual_seed(2)
    source = ESPCN(2)
    path = tmp_path / "espcn_x2-T91.pth.tar"
    torch.save({"epoch": 10, "best_psnr": 36.6, "state_dict": source.state_dict(), "optimizer": {}}, path)
    model = ESPCN.from_file(path)
    assert model.scale == 2
    for a, b in zip(model.state_dict().values(), source.state_dict().values()):
        assert torch.equal(a, b)
    # a DistributedDataParallel state dict ("module." keys) loads too
    torch.save({f"module.{k}": v for k, v in source.state_dict().items()}, tmp_path / "ddp.pth")
    assert ESPCN.from_file(tmp_path / "ddp.pth").scale == 2


def test_safetensors_round_trip(tmp_path):
    model = ESPCN(4)
    save_weights(model.state_dict(), tmp_path / "w.safetensors")
    state = load_weights(tmp_path / "w.safetensors")
    assert scale_of(state) == 4
    assert ESPCN.from_file(tmp_path / "w.safetensors").scale == 4


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_from_pretrained(scale):
    model = ESPCN.from_pretrained(scale)
    assert model.scale == scale and not model.training
    with torch.no_grad():
        out = model(torch.rand(1, 1, 8, 8))
    assert out.shape == (1, 1, 8 * scale, 8 * scale) and torch.isfinite(out).all()


# -- bad inputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "x,exc,match",
    [
        (torch.rand(1, 3, 8, 8), ValueError, "1 input channel"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.uint8), TypeError, "floating-point"),
        (torch.zeros(1, 1, 8, 8, dtype=torch.int64), TypeError, "floating-point"),
        (torch.rand(1, 8, 8), ValueError, "4-D"),
        (torch.empty(0), ValueError, "4-D"),
        (torch.rand(1, 1, 0, 8), ValueError, "no pixels"),
        ([[0.5]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_inputs(x, exc, match):
    with pytest.raises(exc, match=match):
        ESPCN(3)(x)


def test_empty_batch_is_fine():
    assert ESPCN(2)(torch.rand(0, 1, 4, 4)).shape == (0, 1, 8, 8)


@pytest.mark.parametrize("scale,exc", [(0, ValueError), (-2, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_scale(scale, exc):
    with pytest.raises(exc, match="scale"):
        ESPCN(scale)


def test_weights_for_another_scale(tmp_path):
    save_weights(ESPCN(2).state_dict(), tmp_path / "x2.safetensors")
    with pytest.raises(WeightsError, match="weights are for scale 2 but the model is for scale 3"):
        ESPCN(3).load_state_dict(load_weights(tmp_path / "x2.safetensors"))
    with pytest.raises(WeightsError, match="for scale 2 but the model is for scale 4"):
        ESPCN.from_file(tmp_path / "x2.safetensors", scale=4)


def test_weights_with_wrong_keys_or_shapes():
    state = ESPCN(3).state_dict()
    with pytest.raises(WeightsError, match="missing keys"):
        ESPCN(3).load_state_dict({k: v for k, v in state.items() if k != "feature_maps.0.bias"})
    bad = dict(state)
    bad["feature_maps.0.weight"] = torch.zeros(64, 1, 3, 3)
    with pytest.raises(WeightsError, match=r"feature_maps.0.weight has shape \(64, 1, 3, 3\)"):
        ESPCN(3).load_state_dict(bad)


def test_non_strict_load_allows_missing_keys_but_checks_shapes():
    source, target = ESPCN(3), ESPCN(3)
    partial = {k: v for k, v in source.state_dict().items() if k.startswith("feature_maps.0.")}
    result = target.load_state_dict({**partial, "extra": torch.ones(1)}, strict=False)
    assert "sub_pixel.0.weight" in result.missing_keys and result.unexpected_keys == ["extra"]
    assert torch.equal(target.feature_maps[0].weight, source.feature_maps[0].weight)
    with pytest.raises(WeightsError, match="weights are for scale 2 but the model is for scale 3"):
        target.load_state_dict({"sub_pixel.0.weight": ESPCN(2).sub_pixel[0].weight}, strict=False)
    with pytest.raises(WeightsError, match=r"feature_maps.0.weight has shape \(64, 1, 3, 3\)"):
        target.load_state_dict({"feature_maps.0.weight": torch.ones(64, 1, 3, 3)}, strict=False)


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_corrupted_weights_file(tmp_path, suffix):
    good = tmp_path / f"good{suffix}"
    if suffix == ".safetensors":
        save_weights(ESPCN(3).state_dict(), good)
    else:
        torch.save(ESPCN(3).state_dict(), good)
    data = good.read_bytes()
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(bad)


def test_missing_and_non_weights_files(tmp_path):
    with pytest.raises(WeightsError, match="not found"):
        load_weights(tmp_path / "nope.safetensors")
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(WeightsError, match="corrupt"):
        load_weights(tmp_path / "text.pth")
    torch.save({"a": 1}, tmp_path / "dict.pth")
    with pytest.raises(WeightsError, match="state dict of tensors"):
        load_weights(tmp_path / "dict.pth")


def test_malformed_state_dicts_name_the_entry(tmp_path):
    torch.save({1: torch.ones(1)}, tmp_path / "int_keys.pth")
    with pytest.raises(
        WeightsError, match=r"does not hold a state dict of tensors: key 1 is a int, not a parameter name"
    ):
        load_weights(tmp_path / "int_keys.pth")
    torch.save({"sub_pixel.0.weight": torch.tensor(1.0)}, tmp_path / "scalar.pth")
    with pytest.raises(WeightsError, match=r"sub_pixel.0.weight has shape \(\), not a 4-D convolution weight"):
        ESPCN.from_file(tmp_path / "scalar.pth")
    state = dict(ESPCN(3).state_dict())
    state["feature_maps.0.bias"] = [0.0] * 64
    with pytest.raises(WeightsError, match="feature_maps.0.bias is a list, not a tensor"):
        ESPCN(3).load_state_dict(state)


def test_weights_with_other_output_channels_say_both_readings():
    # 16 outputs: scale 4 with one channel, or scale 2 with four; the error gives the facts.
    with pytest.raises(WeightsError, match=r"sub_pixel.0.weight has 16 output channels; the model's 4 are 2\^2 x 1"):
        ESPCN(2).load_state_dict(ESPCN(2, out_channels=4).state_dict())


def test_a_failed_save_leaves_no_partial_file(tmp_path):
    (tmp_path / "w.safetensors").mkdir()  # the target is a folder: the rename fails
    with pytest.raises(OSError):
        save_weights(ESPCN(2).state_dict(), tmp_path / "w.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.safetensors"]


def test_from_file_reads_the_shape_of_colour_models(tmp_path):
    # ESPCN-PyTorch's RGB models: 3 channels in and out (12 outputs at x2, not a square number alone).
    rgb = ESPCN(2, in_channels=3, out_channels=3, channels=32)
    save_weights(rgb.state_dict(), tmp_path / "rgb.safetensors")
    loaded = ESPCN.from_file(tmp_path / "rgb.safetensors")
    assert (loaded.scale, loaded.in_channels, loaded.out_channels) == (2, 3, 3)
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), rgb(x))


def test_input_of_another_dtype_than_the_parameters_is_named():
    model = ESPCN(2).eval()
    with pytest.raises(TypeError, match=r"ESPCN: x is torch.float64 but the parameters are torch.float32"):
        model(torch.rand(1, 1, 4, 4, dtype=torch.float64))
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # autocast mixes dtypes by design
        assert model(torch.rand(1, 1, 4, 4).bfloat16()).shape == (1, 1, 8, 8)


def test_fast_module_from_file(tmp_path):
    from espcn_fast import FastESPCN

    save_weights(ESPCN(3).state_dict(), tmp_path / "w.safetensors")
    fast = FastESPCN.from_file(tmp_path / "w.safetensors")
    assert isinstance(fast, FastESPCN) and (fast.scale, fast.backend, fast.in_channels) == (3, "auto", 1)


def test_wrapper_prefixes_are_stripped(tmp_path):
    # DistributedDataParallel ("module.") and torch.compile ("_orig_mod.") wrap the keys, alone or together.
    state = ESPCN(3).state_dict()
    for prefix in ("module.", "_orig_mod.", "module._orig_mod."):
        torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "w.pth")
        assert list(load_weights(tmp_path / "w.pth")) == list(state)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_with_nan_or_inf_are_refused_naming_the_tensor(tmp_path, bad, suffix):
    state = dict(ESPCN(3).state_dict())
    state["feature_maps.2.weight"] = state["feature_maps.2.weight"].clone()
    state["feature_maps.2.weight"][3, 5, 1, 2] = bad
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(state, path)
    else:
        torch.save(state, path)
    with pytest.raises(
        WeightsError,
        match=rf"weights file {path} is unusable: feature_maps.2.weight holds 1 NaN "
        r"or infinite value\(s\) of 18432",
    ):
        load_weights(path)
    with pytest.raises(WeightsError, match="feature_maps.2.weight holds 1 NaN or infinite"):
        ESPCN(3).load_state_dict(state)


def test_cli_refuses_weights_with_nan(tmp_path, capsys):
    from espcn_fast.cli import main
    from espcn_fast.image_io import write_image
    from tests.conftest import random_rgb

    state = dict(ESPCN(2).state_dict())
    state["sub_pixel.0.bias"] = torch.full_like(state["sub_pixel.0.bias"], float("nan"))
    save_weights(state, tmp_path / "nan.safetensors")
    write_image(random_rgb(12, 10), tmp_path / "in.png")
    code = main(
        [
            "upscale",
            str(tmp_path / "in.png"),
            "-o",
            str(tmp_path / "out.png"),
            "--scale",
            "2",
            "--weights",
            str(tmp_path / "nan.safetensors"),
            "-q",
        ]
    )
    assert code == 2
    assert "sub_pixel.0.bias holds 4 NaN or infinite value(s) of 4" in capsys.readouterr().err
    assert not (tmp_path / "out.png").exists()


def test_int8_layer1_ranges_travel_with_the_weights(tmp_path):
    """``a1_ranges`` (int8 weight files) load into the model, come last in its state dict, are saved
    and loaded again, and leave with weights that have none."""
    source = ESPCN(3)
    state = dict(source.state_dict())
    ranges = torch.linspace(0.25, 1.0, 64)
    model = ESPCN(3)
    model.load_state_dict({**state, "a1_ranges": ranges})
    assert torch.equal(model.a1_ranges, ranges)
    assert list(model.state_dict()) == [*KEYS, "a1_ranges"]
    save_weights(model.state_dict(), tmp_path / "w.safetensors")
    again = ESPCN.from_file(tmp_path / "w.safetensors")
    assert torch.equal(again.a1_ranges, ranges)
    x = torch.rand(1, 1, 5, 5)
    assert torch.equal(again(x), source(x))  # the float forward does not read them
    model.load_state_dict(state)  # float weights: no ranges
    assert model.a1_ranges is None and list(model.state_dict()) == list(KEYS)


@pytest.mark.parametrize(
    ("ranges", "match"),
    [
        (torch.zeros(64), "must lie in \\(0, 1\\]"),
        (torch.full((64,), 1.5), "must lie in \\(0, 1\\]"),
        (torch.full((64,), float("nan")), "must lie in \\(0, 1\\]"),
        (torch.ones(32), "shape \\[64\\]"),
        (torch.ones(64, dtype=torch.int32), "floating-point tensor"),
    ],
)
def test_bad_int8_layer1_ranges_are_refused(ranges, match):
    model = ESPCN(3)
    kept = torch.linspace(0.5, 1.0, 64)
    model.load_state_dict({**model.state_dict(), "a1_ranges": kept})
    with pytest.raises(WeightsError, match=match):
        model.load_state_dict({**ESPCN(3).state_dict(), "a1_ranges": ranges})
    assert torch.equal(model.a1_ranges, kept)  # a refused load changes nothing
