// Picks the CPU kernels at run time: the same build runs on any x86-64 (and
// aarch64) and never executes an instruction the CPU lacks.
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels.h"

namespace espcn::cpu {
#if defined(__x86_64__)
namespace avx512 { const Kernels* kernels(); }
namespace avx2 { const Kernels* kernels(); }
namespace avx512_dot { const DotKernels* dot_kernels(Precision p); }
#endif
namespace portable { const Kernels* kernels(); }

#if defined(__x86_64__)
namespace {
// The AVX-512 sets every avx512 build is compiled for.
bool has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq");
}
}  // namespace
#endif

int available_kernels(const Kernels** out, int max) {
  int n = 0;
  auto add = [&](const Kernels* k) { if (n < max) out[n++] = k; };
#if defined(__x86_64__)
  if (has_avx512()) add(avx512::kernels());
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) add(avx2::kernels());
#endif
  add(portable::kernels());
  return n;
}

const Kernels& cpu_kernels() {
  const Kernels* all[4];
  const int n = available_kernels(all, 4);
  // Read each call, so that tests can run every implementation in one process.
  if (const char* want = std::getenv("ESPCN_FAST_CPU_ISA")) {
    for (int i = 0; i < n; ++i)
      if (std::strcmp(all[i]->name, want) == 0) return *all[i];
  }
  return *all[0];
}

const DotKernels* dot_kernels(Precision p, std::string& why_not) {
  const bool int8 = p == Precision::kInt8;
  const char* needs = int8 ? "AVX512-VNNI (vpdpbusd)" : "AVX512-BF16 (vdpbf16ps)";
  const std::string precision = int8 ? "int8" : "bf16";
#if defined(__x86_64__)
  const char* want = std::getenv("ESPCN_FAST_CPU_ISA");
  if (want && std::strcmp(want, "avx512") != 0) {
    why_not = "precision '" + precision + "' on the CPU runs on AVX-512 with " + needs +
              ", and ESPCN_FAST_CPU_ISA=" + want + " forces other kernels";
    return nullptr;
  }
  const bool ext = int8 ? __builtin_cpu_supports("avx512vnni") : __builtin_cpu_supports("avx512bf16");
  if (has_avx512() && ext) return avx512_dot::dot_kernels(p);
#endif
  why_not = "precision '" + precision + "' on the CPU needs AVX-512 with " + needs +
            ", which this CPU lacks; use precision 'fp32'";
  return nullptr;
}

}  // namespace espcn::cpu
