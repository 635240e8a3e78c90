"""The shipped int8 weight files: their stored scales, the loader's check, and the precision's path."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from espcn_fast.int8_weights import SCALE_KEYS, add_weight_scales
from espcn_fast.model import A1_RANGES_KEY, ESPCN
from espcn_fast.reduced_precision import weight_scales
from espcn_fast.weights import KEYS, PRETRAINED_DIR, WeightsError, load_weights, pretrained_path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_scales_are_those_of_the_stored_weights(scale):
    raw = load_file(str(pretrained_path(scale, "int8")))
    assert set(raw) == set(KEYS) | set(SCALE_KEYS) | {A1_RANGES_KEY}
    ranges = raw[A1_RANGES_KEY]
    assert ranges.dtype == torch.float32 and bool(((ranges > 0) & (ranges <= 1)).all())
    quantized = {  # what the int8 kernels quantize: layer 2 times the ranges of its input channels
        "feature_maps.2.weight": raw["feature_maps.2.weight"] * ranges[None, :, None, None],
        "sub_pixel.0.weight": raw["sub_pixel.0.weight"],
    }
    for scale_key, weight_key in SCALE_KEYS.items():
        assert raw[scale_key].dtype == torch.float32
        assert torch.equal(raw[scale_key], weight_scales(quantized[weight_key])), scale_key
    model = ESPCN.from_pretrained(scale, precision="int8")  # the scales are dropped, the rest loads
    assert torch.equal(model.sub_pixel[0].weight, raw["sub_pixel.0.weight"])
    assert torch.equal(model.a1_ranges, ranges)
    # fine-tuned: not the float weights
    assert not torch.equal(model.sub_pixel[0].weight, ESPCN.from_pretrained(scale).sub_pixel[0].weight)


def test_the_precision_picks_the_file():
    assert pretrained_path(3, "int8") == PRETRAINED_DIR / "espcn_x3_int8.safetensors"
    for precision in ("fp32", "bf16"):
        assert pretrained_path(3, precision) == PRETRAINED_DIR / "espcn_x3.safetensors"
    with pytest.raises(WeightsError, match="no shipped weights for scale 5 in int8"):
        pretrained_path(5, "int8")


def test_scales_that_do_not_fit_the_weights_are_refused(tmp_path):
    state = add_weight_scales(ESPCN.from_pretrained(3).state_dict())
    path = tmp_path / "w.safetensors"
    save_file(state, str(path))
    assert set(load_weights(path)) == set(KEYS)
    edited = dict(state)
    edited["feature_maps.2.weight"] = state["feature_maps.2.weight"] * 1.01  # scales now stale
    save_file(edited, str(path))
    with pytest.raises(WeightsError, match="feature_maps.2.weight_scale does not hold the int8 scales"):
        load_weights(path)
    # with layer-1 ranges, layer 2's scales are those of its weights times them
    ranged = dict(ESPCN.from_pretrained(3).state_dict())
    ranged[A1_RANGES_KEY] = torch.linspace(0.2, 1.0, 64)
    save_file(add_weight_scales(ranged), str(path))
    assert torch.equal(load_weights(path)[A1_RANGES_KEY], ranged[A1_RANGES_KEY])
    stale = add_weight_scales(ranged)
    stale[A1_RANGES_KEY] = torch.linspace(0.3, 1.0, 64)  # ranges changed after the scales were taken
    save_file(stale, str(path))
    with pytest.raises(WeightsError, match="feature_maps.2.weight_scale does not hold the int8 scales"):
        load_weights(path)
    orphan = {k: v for k, v in state.items() if k != "sub_pixel.0.weight"}
    save_file(orphan, str(path))
    with pytest.raises(WeightsError, match="its weight sub_pixel.0.weight is missing"):
        load_weights(path)
