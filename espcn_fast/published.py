"""Published PSNR (dB) on Set5 / Set14 to compare against: (set, scale) -> value."""

PAPER = {  # Shi et al. 2016, Table 1 (trained on T91)
    ("Set5", 3): 32.55, ("Set14", 3): 29.08,
    ("Set5", 4): 30.90, ("Set14", 4): 27.73,
}

ESPCN_PYTORCH = {  # the ESPCN-PyTorch repository's README
    ("Set5", 2): 36.64, ("Set14", 2): 32.35,
    ("Set5", 3): 32.55, ("Set14", 3): 29.20,
    ("Set5", 4): 30.26, ("Set14", 4): 27.41,
}
