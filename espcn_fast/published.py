"""Published PSNR (dB) on Set5 / Set14 to compare against: (set, scale) -> value."""

# Shi et al. 2016. Table 1 compares training sets at x3 only: these are its ESPCN
# trained on the 91 images (T91), as ours. Its x4 figures (Table 2) are of an
# ESPCN trained on ImageNet, not comparable with T91-trained weights: apart.
PAPER = {("Set5", 3): 32.55, ("Set14", 3): 29.08}
PAPER_IMAGENET = {("Set5", 4): 30.90, ("Set14", 4): 27.73}

ESPCN_PYTORCH = {  # the ESPCN-PyTorch repository's README (T91; its own LR images and scoring)
    ("Set5", 2): 36.64,
    ("Set14", 2): 32.35,
    ("Set5", 3): 32.55,
    ("Set14", 3): 29.20,
    ("Set5", 4): 30.26,
    ("Set14", 4): 27.41,
}
