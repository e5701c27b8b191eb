// Runtime CPU dispatch: kernels are compiled once per SIMD target
// (core/instantiate.cpp, lbfgs/instantiate.cpp; see CMakeLists.txt) and the
// best target this CPU and OS support is chosen at import. FASTOPT_TARGET=<name>
// in the environment forces one (tests use it to reach every path).
//
// Each folder keeps its own per-target table (optimizers, utility kernels,
// L-BFGS chunk loops) indexed by the target's position in
// FASTOPT_FOR_EACH_TARGET; this file knows only the targets.
#pragma once

#include <string>
#include <vector>

// X(name) for every target compiled into this build, in preference order
// (best last); the position is the target's index.
#if defined(FASTOPT_HAVE_AVX512) && defined(FASTOPT_HAVE_AVX2)
#define FASTOPT_FOR_EACH_TARGET(X) X(baseline) X(avx2) X(avx512)
#elif defined(FASTOPT_HAVE_AVX2)
#define FASTOPT_FOR_EACH_TARGET(X) X(baseline) X(avx2)
#else
#define FASTOPT_FOR_EACH_TARGET(X) X(baseline)
#endif

namespace fastopt {

// Index (in FASTOPT_FOR_EACH_TARGET order) of the target in use.
int active_target();
std::string active_target_name();

// Targets compiled into this build, in preference order (best last).
std::vector<std::string> compiled_targets();
// Of those, the ones this CPU and OS can run.
std::vector<std::string> supported_targets();

// Picks a target by name; throws std::invalid_argument if it was not
// compiled in or this machine cannot run it (which would crash with an
// illegal instruction).
void select_target(const std::string& name);

// Chooses the best supported target, or FASTOPT_TARGET if set.
void init_dispatch();

// The active target's entry of a per-target table (an array with one entry
// per FASTOPT_FOR_EACH_TARGET target).
template <class Entry, std::size_t kTargets>
const Entry& active_entry(Entry (&table)[kTargets]) {
  return table[active_target()];
}

}  // namespace fastopt
