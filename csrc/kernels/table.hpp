// A table of every kernel entry point for one dtype and one compiled target.
// Each target's translation unit (kernels/instantiate.cpp, compiled once per
// target) fills one; dispatch picks which table the bindings call.
#pragma once

#include "kernels/adagrad.hpp"
#include "kernels/adam.hpp"
#include "lbfgs/chunk_kernels.hpp"
#include "kernels/norm.hpp"
#include "kernels/quickprop.hpp"
#include "kernels/roofline.hpp"
#include "kernels/rmsprop.hpp"
#include "kernels/rprop.hpp"
#include "kernels/sgd.hpp"

namespace fastopt {

template <class T>
struct Kernels {
  void (*sgd)(const Batch<T>&, const SgdHyper*, std::size_t);
  void (*adagrad)(const Batch<T>&, const AdagradHyper*, std::size_t);
  void (*rmsprop)(const Batch<T>&, const RmspropHyper*, std::size_t);
  void (*adam)(const Batch<T>&, const AdamHyper*, std::size_t);
  void (*rprop)(const Batch<T>&, const RpropHyper*, std::size_t);
  void (*quickprop)(const Batch<T>&, const QuickpropHyper*, std::size_t);
  void (*roofline)(const Batch<T>&, int n_written, int n_read);
  void (*grad_norm)(const Batch<T>&, NormType type, double* unit_out);
  LbfgsChunkKernels<T> lbfgs;  // the L-BFGS passes' inner loops
};

struct KernelTable {
  const char* target;
  Kernels<float> f32;
  Kernels<double> f64;

  template <class T>
  const Kernels<T>& get() const {
    if constexpr (std::is_same_v<T, float>) return f32; else return f64;
  }
};

}  // namespace fastopt
