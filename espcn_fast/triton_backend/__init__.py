"""The Triton backend: the fused ops as Triton kernels (``kernels``), registered
with ``torch.library.triton_op`` (``ops``). Imported on first use, so that
``TRITON_INTERPRET=1`` set before then runs them on the CPU."""
