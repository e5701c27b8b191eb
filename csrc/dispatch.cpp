#include "dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#define FASTOPT_X86 1
#if defined(_MSC_VER)
#include <intrin.h>
#else
#include <cpuid.h>
#endif
#endif

namespace fastopt {

const KernelTable& kernel_table_baseline();
#if defined(FASTOPT_HAVE_AVX2)
const KernelTable& kernel_table_avx2();
#endif
#if defined(FASTOPT_HAVE_AVX512)
const KernelTable& kernel_table_avx512();
#endif

namespace {

#if defined(FASTOPT_X86)
struct Cpuid { unsigned eax = 0, ebx = 0, ecx = 0, edx = 0; };

Cpuid cpuid(unsigned leaf, unsigned subleaf) {
  Cpuid r;
#if defined(_MSC_VER)
  int regs[4];
  __cpuidex(regs, static_cast<int>(leaf), static_cast<int>(subleaf));
  r.eax = regs[0]; r.ebx = regs[1]; r.ecx = regs[2]; r.edx = regs[3];
#else
  __cpuid_count(leaf, subleaf, r.eax, r.ebx, r.ecx, r.edx);
#endif
  return r;
}

// Which register state the OS saves on a context switch (XCR0). A CPU with
// AVX-512 under an OS that does not save the zmm registers cannot use them.
unsigned long long os_saved_state() {
  if (!(cpuid(1, 0).ecx & (1u << 27))) return 0;  // no OSXSAVE
#if defined(_MSC_VER)
  return _xgetbv(0);
#else
  unsigned lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
#endif
}

bool cpu_has_avx2_fma() {
  const unsigned long long xcr0 = os_saved_state();
  const bool ymm_saved = (xcr0 & 0x6) == 0x6;  // SSE and AVX state
  const bool fma = cpuid(1, 0).ecx & (1u << 12);
  const bool avx2 = cpuid(7, 0).ebx & (1u << 5);
  return ymm_saved && fma && avx2;
}

bool cpu_has_avx512() {  // F + DQ + BW + VL, the Skylake-SP set
  const unsigned long long xcr0 = os_saved_state();
  const bool zmm_saved = (xcr0 & 0xE6) == 0xE6;  // + opmask, zmm hi256, hi16 zmm
  const unsigned ebx = cpuid(7, 0).ebx;
  const bool f = ebx & (1u << 16), dq = ebx & (1u << 17), bw = ebx & (1u << 30), vl = ebx & (1u << 31);
  return zmm_saved && f && dq && bw && vl && cpu_has_avx2_fma();
}
#endif

struct Target {
  const char* name;
  const KernelTable& (*table)();
  bool (*supported)();
};

bool always() { return true; }

// Preference order: later entries are better.
const std::vector<Target>& targets() {
  static const std::vector<Target> all = {
      {"baseline", &kernel_table_baseline, &always},
#if defined(FASTOPT_HAVE_AVX2)
      {"avx2", &kernel_table_avx2, &cpu_has_avx2_fma},
#endif
#if defined(FASTOPT_HAVE_AVX512)
      {"avx512", &kernel_table_avx512, &cpu_has_avx512},
#endif
  };
  return all;
}

std::atomic<const KernelTable*> g_active{nullptr};

}  // namespace

const KernelTable& active_kernels() {
  const KernelTable* table = g_active.load(std::memory_order_acquire);
  return table ? *table : kernel_table_baseline();
}

std::vector<std::string> compiled_targets() {
  std::vector<std::string> names;
  for (const Target& t : targets()) names.emplace_back(t.name);
  return names;
}

std::vector<std::string> supported_targets() {
  std::vector<std::string> names;
  for (const Target& t : targets())
    if (t.supported()) names.emplace_back(t.name);
  return names;
}

void select_target(const std::string& name) {
  for (const Target& t : targets()) {
    if (name != t.name) continue;
    if (!t.supported())
      throw std::invalid_argument("SIMD target '" + name + "' is compiled in but this CPU/OS cannot run it");
    g_active.store(&t.table(), std::memory_order_release);
    return;
  }
  std::string known;
  for (const Target& t : targets()) known += std::string(known.empty() ? "" : ", ") + t.name;
  throw std::invalid_argument("unknown SIMD target '" + name + "' (compiled: " + known + ")");
}

void init_dispatch() {
  if (const char* forced = std::getenv("FASTOPT_TARGET"); forced && *forced) {
    select_target(forced);
    return;
  }
  select_target(supported_targets().back());
}

}  // namespace fastopt
