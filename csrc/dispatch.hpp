// Runtime CPU dispatch: the kernels are compiled once per SIMD target
// (kernels/instantiate.cpp, see CMakeLists.txt) and the best target this CPU
// and OS support is chosen at import. FASTOPT_TARGET=<name> in the
// environment forces one (tests use it to reach every path).
#pragma once

#include <string>
#include <vector>

#include "kernels/table.hpp"

namespace fastopt {

// The table the bindings call. Never null after init_dispatch().
const KernelTable& active_kernels();

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

}  // namespace fastopt
