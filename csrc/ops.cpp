// The op schemas: the one place that declares them. Backends register their
// kernels with TORCH_LIBRARY_IMPL (cpu/, cuda/); fake kernels are in Python
// (espcn_fast/ops.py) so that torch.compile can trace through the ops.
#include <Python.h>
#include <torch/library.h>

extern "C" {
// An empty module: importing espcn_fast._C loads this library, whose static
// initialisers register the ops with the dispatcher.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
}

TORCH_LIBRARY(espcn_fast, m) {
  m.def("conv2d_tanh(Tensor x, Tensor weight, Tensor bias) -> Tensor");
  m.def("conv2d_pixel_shuffle(Tensor x, Tensor weight, Tensor bias, int scale, bool clamp) -> Tensor");
  // precision: "fp32" (every backend); on CUDA "tf32", "fp16", "bf16"
  // (tensor cores; the weights w1..w3 then come in float32, float16 and
  // bfloat16, converted once by the caller; biases are always float32); on
  // the CPU "bf16" (weights in bfloat16) and "int8" (float32 weights, which
  // the kernel quantizes per output channel). a1_ranges: int8 only, the
  // per-channel ranges (0, 1] of layer 1's outputs (float32, w1's output
  // channels; absent: 1), as espcn_fast/reduced_precision.py defines them.
  m.def(
      "espcn_forward(Tensor x, Tensor w1, Tensor b1, Tensor w2, Tensor b2, Tensor w3, Tensor b3, "
      "int scale, bool clamp, str precision=\"fp32\", Tensor? a1_ranges=None) -> Tensor");
  // Which CPU kernels run `precision` here: "avx512", "avx2" or "portable"
  // for fp32, "avx512-bf16" / "avx512-vnni" for bf16 / int8 (an error naming
  // the missing instruction set where none can).
  m.def("cpu_isa(str precision=\"fp32\") -> str");
}
