"""Training ESPCN on T91: ``python -m training.train --scale 3``."""
