"""Set5 x3: what the CPU kernels' reduced precisions cost against fp32 (the arithmetic in float64)."""

from __future__ import annotations

import pytest

from espcn_fast.evaluate import evaluate_precision
from espcn_fast.model import ESPCN

# The targets: bf16 with the float weights, int8 with the int8 (quantization-aware) weights.
BF16_LOSS_DB = 0.03
INT8_LOSS_DB = 0.05
# What the shipped int8 weights do lose (0.055 dB measured): a guard against a regression, far
# below the 0.37 dB of the float weights quantized as they are.
INT8_SHIPPED_LOSS_DB = 0.06


@pytest.fixture(scope="module")
def fp32_psnr(data_dir) -> float:
    return evaluate_precision(ESPCN.from_pretrained(3), "fp32", ["Set5"], data_dir)[0].psnr


@pytest.fixture(scope="module")
def int8_psnr(data_dir) -> float:
    return evaluate_precision(ESPCN.from_pretrained(3, precision="int8"), "int8", ["Set5"], data_dir)[0].psnr


def test_bf16_within_target(fp32_psnr, data_dir):
    bf16 = evaluate_precision(ESPCN.from_pretrained(3), "bf16", ["Set5"], data_dir)[0].psnr
    assert abs(bf16 - fp32_psnr) <= BF16_LOSS_DB, (bf16, fp32_psnr)


def test_int8_weights_keep_their_measured_loss(fp32_psnr, int8_psnr):
    assert int8_psnr >= fp32_psnr - INT8_SHIPPED_LOSS_DB, (int8_psnr, fp32_psnr)


@pytest.mark.xfail(strict=True, reason="not met yet: the shipped int8 weights lose 0.055 dB on Set5 x3")
def test_int8_weights_within_target(fp32_psnr, int8_psnr):
    assert int8_psnr >= fp32_psnr - INT8_LOSS_DB, (int8_psnr, fp32_psnr)
