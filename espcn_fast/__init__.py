"""espcn_fast: the fastest faithful ESPCN (Shi et al. 2016) for PyTorch."""

from .fast import FastESPCN
from .model import ESPCN

__all__ = ["ESPCN", "FastESPCN"]
__version__ = "0.1.0"
