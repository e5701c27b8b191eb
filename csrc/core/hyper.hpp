// Hyperparameters, declared once per optimizer.
//
// An optimizer header lists its hyperparameters in one X-macro: name, default,
// check (then, where needed: origin, the label messages use, choices, pair). The
// list reads like the Python signature: torch's order, several to a line.
// From that single list come the C++ struct the kernel reads (one
// double per hyperparameter, in the listed order), the table the bindings use
// to parse and validate Python values (error messages name the argument), and
// the specification fastopt exposes to Python (`_core.optimizers()`), against
// which the Python signatures and the stub are tested.
//
//   #define FASTOPT_ADAM_HYPERPARAMETERS(X)
//     X(lr, 1e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) X(eps, 1e-8, kNonNegative) ...
//   struct Adam {
//     FASTOPT_DECLARE_OPTIMIZER("adam", FASTOPT_ADAM_HYPERPARAMETERS, (exp_avg, kSignedMap), ...);
//   };
//
// Everything here is data: no inline code runs from a header that SIMD-target
// translation units also include (see core/registry.hpp).
#pragma once

#include <cmath>
#include <cstdint>

namespace fastopt {

// How a value is checked (and, for flags and choices, how it is parsed).
enum class Check : int {
  kFinite,         // any finite number
  kNonNegative,    // finite, >= 0
  kPositive,       // finite, > 0
  kAtLeastOne,     // finite, >= 1
  kNonPositive,    // finite, <= 0
  kPositiveOrInf,  // > 0, +inf allowed (None means +inf)
  kUnitOpen,       // in [0, 1)
  kUnitClosed,     // in [0, 1]
  kFlag,           // a bool
  kStep,           // the 1-based step count: an integer >= 1
  kChoice,         // one of HyperDecl::choices, passed as a str, stored as its index
  kOptionalNonNegative,  // None (stored as NaN: the kernel's own default) or finite >= 0
};

// Where a hyperparameter comes from in the Python API.
enum class Origin : int {
  kHyper,    // a hyperparameter: a keyword of the class and of the functional form
  kClassOnly,  // used by the class only (new state's fill, a schedule): not in the functional form;
               // the kernels ignore it
  kPerStep,  // per-step state the class computes (step, NAdam's mu_product, ...): functional only
  kShared,   // regularization and clipping every optimizer takes (SharedHyper)
};

struct HyperDecl {
  const char* name;
  double default_value;
  Check check;
  Origin origin = Origin::kHyper;
  const char* label = nullptr;  // how messages name it ("invalid <label>: ..."); nullptr: the name
  const char* const* choices = nullptr;  // kChoice: nullptr-terminated
  const char* pair = nullptr;  // two consecutive fields Python passes as one pair ("betas")

  const char* shown() const { return label ? label : name; }
};

// The regularization and clipping every optimizer offers, applied in the same
// pass as the update (simd/elementwise.hpp): appended to every optimizer's
// own hyperparameters, in this order.
struct SharedHyper {
  double l1;                      // L1 proximal step after the update
  double decoupled_weight_decay;  // flag: weight_decay as p*(1 - lr*wd) before the update
  double grad_scale;              // global-norm clipping factor
  double clip_value;              // value clipping (inf: none)
};

inline constexpr HyperDecl kSharedHypers[] = {
    {"l1", 0.0, Check::kNonNegative, Origin::kShared},
    {"decoupled_weight_decay", 0.0, Check::kFlag, Origin::kShared},
    {"grad_scale", 1.0, Check::kNonNegative, Origin::kShared},
    {"clip_value", HUGE_VAL, Check::kPositiveOrInf, Origin::kShared},
};
constexpr int kSharedHyperCount = 4;

// Each struct member and each table row come from one line of the list.
#define FASTOPT_HYPER_MEMBER(name, default_value, check, ...) double name;
#define FASTOPT_HYPER_ROW(name, default_value, check, ...) \
  ::fastopt::HyperDecl{#name, default_value, ::fastopt::Check::check, __VA_ARGS__},

// M(a) M(b) ... for up to six arguments.
#define FASTOPT_EXPAND(x) x
#define FASTOPT_EACH_1(M, a) M(a)
#define FASTOPT_EACH_2(M, a, ...) M(a) FASTOPT_EXPAND(FASTOPT_EACH_1(M, __VA_ARGS__))
#define FASTOPT_EACH_3(M, a, ...) M(a) FASTOPT_EXPAND(FASTOPT_EACH_2(M, __VA_ARGS__))
#define FASTOPT_EACH_4(M, a, ...) M(a) FASTOPT_EXPAND(FASTOPT_EACH_3(M, __VA_ARGS__))
#define FASTOPT_EACH_5(M, a, ...) M(a) FASTOPT_EXPAND(FASTOPT_EACH_4(M, __VA_ARGS__))
#define FASTOPT_EACH_6(M, a, ...) M(a) FASTOPT_EXPAND(FASTOPT_EACH_5(M, __VA_ARGS__))
#define FASTOPT_EACH_PICK(_1, _2, _3, _4, _5, _6, NAME, ...) NAME
#define FASTOPT_FOR_EACH(M, ...)                                                                                \
  FASTOPT_EXPAND(FASTOPT_EACH_PICK(__VA_ARGS__, FASTOPT_EACH_6, FASTOPT_EACH_5, FASTOPT_EACH_4, FASTOPT_EACH_3, \
                                   FASTOPT_EACH_2, FASTOPT_EACH_1)(M, __VA_ARGS__))
// A state key is a parenthesized (key[, map[, shape]]): see StateDecl.
#define FASTOPT_STATE_ROW_(key, ...) ::fastopt::StateDecl{#key, __VA_ARGS__},
#define FASTOPT_STATE_ROLE_(key, ...) key,
#define FASTOPT_STATE_ROW(entry) FASTOPT_EXPAND(FASTOPT_STATE_ROW_ entry)
#define FASTOPT_STATE_ROLE(entry) FASTOPT_EXPAND(FASTOPT_STATE_ROLE_ entry)

// Inside an optimizer's struct, its whole declaration:
//   FASTOPT_DECLARE_OPTIMIZER("adam", FASTOPT_ADAM_HYPERPARAMETERS,
//                             (exp_avg, kSignedMap), (exp_avg_sq, kUnsignedMap), (max_exp_avg_sq, kUnsignedMap));
// gives kName; Hyper (the doubles the kernel reads, then the shared ones) and
// kHypers (the declaration table, same order); kState, the state arrays by
// torch's keys, each with its 8-bit map and shape; and Role, the index of each array the kernel sees:
// kParam, kGrad, then one per state key, named by the key (Adam::exp_avg).
#define FASTOPT_DECLARE_OPTIMIZER(name, LIST, ...)                                                    \
  static constexpr const char* kName = name;                                                         \
  struct Hyper {                                                                                      \
    LIST(FASTOPT_HYPER_MEMBER)                                                                        \
    ::fastopt::SharedHyper shared;                                                                    \
  };                                                                                                  \
  static constexpr ::fastopt::HyperDecl kHypers[] = {LIST(FASTOPT_HYPER_ROW)};                       \
  static constexpr int kHyperCount = sizeof(kHypers) / sizeof(kHypers[0]);                            \
  static_assert(sizeof(Hyper) == (kHyperCount + ::fastopt::kSharedHyperCount) * sizeof(double));      \
  static constexpr ::fastopt::StateDecl kState[] = {FASTOPT_FOR_EACH(FASTOPT_STATE_ROW, __VA_ARGS__)}; \
  enum Role : int { kParam, kGrad, FASTOPT_FOR_EACH(FASTOPT_STATE_ROLE, __VA_ARGS__) }

// Lines several optimizers' lists share (betas as torch checks them; the
// regularization every torch optimizer offers; the step count).
#define FASTOPT_BETAS(X, beta1_default, beta2_default)                                            \
  X(beta1, beta1_default, kUnitOpen, Origin::kHyper, "beta parameter at index 0", nullptr, "betas") \
  X(beta2, beta2_default, kUnitOpen, Origin::kHyper, "beta parameter at index 1", nullptr, "betas")
#define FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) X(weight_decay, 0.0, kNonNegative) X(maximize, 0, kFlag)
#define FASTOPT_STEP_COUNT(X) X(step, 1, kStep, Origin::kPerStep)

// How a state array's shape follows its parameter's.
enum class StateShape : int {
  kLikeParam,     // the parameter's shape
  kRowsOfParam,   // p.shape[:-1] + (1,): one value per row of the last two dimensions
  kColsOfParam,   // p.shape[:-2] + (1, p.shape[-1]): one value per column
};

// Which dynamic map a state key's 8-bit form uses (docs/algorithms.md,
// "8-bit optimizer state"); kNoMap: the key has no 8-bit form.
enum StateMap : std::int32_t { kNoMap = 0, kSignedMap = 1, kUnsignedMap = 2 };

struct StateDecl {
  const char* name;  // torch's state key ("exp_avg")
  StateMap map = kNoMap;
  StateShape shape = StateShape::kLikeParam;
};

}  // namespace fastopt

// ------------------------------------------------------------ host-side checks
// Used by the bindings and by the optimizers' cross-field checks (validate()),
// which only the bindings call: kernel translation units never odr-use these,
// so no target-flagged copy of them exists.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace fastopt {

// Shortest round-trip text of a double, for error messages ("-1", "0.999").
inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  std::string shortest = buf;
  for (int digits = 1; digits < 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) return buf;
  }
  return shortest;
}

// Throws std::invalid_argument (ValueError in Python) with message() unless
// ok. `message` is a callable: a valid call formats nothing.
template <class Message>
inline void require(bool ok, Message&& message) {
  if (!ok) throw std::invalid_argument(std::string(message()));
}
inline void require_finite(double x, const char* name) {
  require(std::isfinite(x), [&] { return std::string(name) + " must be finite, got " + num(x); });
}
inline void require_nonnegative(double x, const char* name) {
  require_finite(x, name);
  require(x >= 0.0, [&] { return std::string("invalid ") + name + ": " + num(x) + " (must be >= 0)"; });
}

}  // namespace fastopt
