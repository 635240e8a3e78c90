// Picks the CPU kernels at run time: the same build runs on any x86-64 (and
// aarch64) and never executes an instruction the CPU lacks.
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace espcn::cpu {
#if defined(__x86_64__)
namespace avx512 { const Kernels* kernels(); }
namespace avx2 { const Kernels* kernels(); }
#endif
namespace portable { const Kernels* kernels(); }

int available_kernels(const Kernels** out, int max) {
  int n = 0;
  auto add = [&](const Kernels* k) { if (n < max) out[n++] = k; };
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq"))
    add(avx512::kernels());
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

}  // namespace espcn::cpu
