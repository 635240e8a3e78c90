"""The shipped int8 weight files: their stored scales, the loader's check, and the precision's path."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from espcn_fast.int8_weights import SCALE_KEYS, add_weight_scales
from espcn_fast.model import ESPCN
from espcn_fast.reduced_precision import weight_scales
from espcn_fast.weights import KEYS, PRETRAINED_DIR, WeightsError, load_weights, pretrained_path


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_shipped_scales_are_those_of_the_stored_weights(scale):
    raw = load_file(str(pretrained_path(scale, "int8")))
    assert set(raw) == set(KEYS) | set(SCALE_KEYS)
    for scale_key, weight_key in SCALE_KEYS.items():
        assert raw[scale_key].dtype == torch.float32
        assert torch.equal(raw[scale_key], weight_scales(raw[weight_key])), scale_key
    model = ESPCN.from_pretrained(scale, precision="int8")  # the scales are dropped, the rest loads
    assert torch.equal(model.sub_pixel[0].weight, raw["sub_pixel.0.weight"])
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
    orphan = {k: v for k, v in state.items() if k != "sub_pixel.0.weight"}
    save_file(orphan, str(path))
    with pytest.raises(WeightsError, match="its weight sub_pixel.0.weight is missing"):
        load_weights(path)
