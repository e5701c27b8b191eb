#include "core/targets.hpp"

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

bool cpu_has_avx2() {  // with FMA and F16C (float16 conversions)
  const unsigned long long xcr0 = os_saved_state();
  const bool ymm_saved = (xcr0 & 0x6) == 0x6;  // SSE and AVX state
  const bool fma = cpuid(1, 0).ecx & (1u << 12);
  const bool f16c = cpuid(1, 0).ecx & (1u << 29);
  const bool avx2 = cpuid(7, 0).ebx & (1u << 5);
  return ymm_saved && fma && f16c && avx2;
}

bool cpu_has_avx512() {  // F + DQ + BW + VL, the Skylake-SP set
  const unsigned long long xcr0 = os_saved_state();
  const bool zmm_saved = (xcr0 & 0xE6) == 0xE6;  // + opmask, zmm hi256, hi16 zmm
  const unsigned ebx = cpuid(7, 0).ebx;
  const bool f = ebx & (1u << 16), dq = ebx & (1u << 17), bw = ebx & (1u << 30), vl = ebx & (1u << 31);
  return zmm_saved && f && dq && bw && vl && cpu_has_avx2();
}
#endif

struct Target {
  const char* name;
  bool (*supported)();
};

bool cpu_has_baseline() { return true; }

// Preference order: later entries are better; the same order as
// FASTOPT_FOR_EACH_TARGET, whose position is each target's index.
const std::vector<Target>& targets() {
#define FASTOPT_TARGET_ENTRY(name) {#name, &cpu_has_##name},
  static const std::vector<Target> all = {FASTOPT_FOR_EACH_TARGET(FASTOPT_TARGET_ENTRY)};
#undef FASTOPT_TARGET_ENTRY
  return all;
}

std::atomic<int> g_active{0};  // baseline until init_dispatch()

}  // namespace

int active_target() { return g_active.load(std::memory_order_acquire); }

std::string active_target_name() { return targets()[static_cast<std::size_t>(active_target())].name; }

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
  const std::vector<Target>& all = targets();
  for (std::size_t k = 0; k < all.size(); ++k) {
    if (name != all[k].name) continue;
    if (!all[k].supported())
      throw std::invalid_argument("SIMD target '" + name + "' is compiled in but this CPU/OS cannot run it");
    g_active.store(static_cast<int>(k), std::memory_order_release);
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
