"""Which weights a row of ours runs: the int8 rows the weights fine-tuned for int8 where the package
ships them, the float weights (and a note saying so) until then."""

from __future__ import annotations

from ..model import ESPCN
from ..weights import WeightsError, pretrained_path

INT8_WEIGHTS = "int8 weights"
FLOAT_WEIGHTS_FOR_INT8 = "float weights: no int8 weights shipped"


def int8_weights(model: ESPCN) -> tuple[ESPCN, str]:
    """``(the model to run in int8, a note for the row's label)``: the shipped int8 weights for
    ``model.scale`` once ``pretrained_path(scale, "int8")`` exists, else ``model`` itself."""
    try:
        pretrained_path(model.scale, "int8")
    except WeightsError:
        return model, FLOAT_WEIGHTS_FOR_INT8
    return ESPCN.from_pretrained(model.scale, precision="int8").to(next(model.parameters()).device), INT8_WEIGHTS
