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
namespace avx_vnni { const DotKernels* dot_kernels(Precision p); }
namespace avx_vnni_evex { const DotKernels* dot_kernels(Precision p); }
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

// bf16: AVX-512 with AVX512-BF16. int8: AVX-512 with AVX512-VNNI, else the
// 256-bit kernels: AVX2 with AVX-VNNI, or the same kernels in EVEX form where
// only AVX512-VNNI is there (ESPCN_FAST_CPU_ISA=avx2 on an AVX-512 CPU).
const DotKernels* dot_kernels(Precision p, std::string& why_not) {
  const bool int8 = p == Precision::kInt8;
  const char* needs = int8 ? "AVX512-VNNI or AVX-VNNI (vpdpbusd)" : "AVX-512 with AVX512-BF16 (vdpbf16ps)";
  const std::string precision = int8 ? "int8" : "bf16";
#if defined(__x86_64__)
  const char* want = std::getenv("ESPCN_FAST_CPU_ISA");
  const bool allow512 = !want || std::strcmp(want, "avx512") == 0;
  const bool allow256 = allow512 || std::strcmp(want, "avx2") == 0;
  if (allow512 && has_avx512()) {
    if (int8 && __builtin_cpu_supports("avx512vnni")) return avx512_dot::dot_kernels(p);
    if (!int8 && __builtin_cpu_supports("avx512bf16")) return avx512_dot::dot_kernels(p);
  }
  if (int8 && allow256) {
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("avxvnni"))
      return avx_vnni::dot_kernels(p);
    if (has_avx512() && __builtin_cpu_supports("avx512vnni")) return avx_vnni_evex::dot_kernels(p);
  }
  if (want && !(int8 ? allow256 : allow512)) {
    why_not = "precision '" + precision + "' on the CPU needs " + needs + ", and ESPCN_FAST_CPU_ISA=" + want +
              " forces other kernels";
    return nullptr;
  }
#endif
  why_not = "precision '" + precision + "' on the CPU needs " + needs + ", which this CPU lacks; use precision 'fp32'";
  return nullptr;
}

}  // namespace espcn::cpu
