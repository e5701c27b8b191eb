// Instantiates every kernel for both dtypes under the flags this translation
// unit is compiled with, and exposes them as one KernelTable.
#include "kernels/table.hpp"

#define FASTOPT_STR2(x) #x
#define FASTOPT_STR(x) FASTOPT_STR2(x)
#define FASTOPT_CAT2(a, b) a##b
#define FASTOPT_CAT(a, b) FASTOPT_CAT2(a, b)

namespace fastopt {

template <class T>
static Kernels<T> make_kernels() {
  using namespace FASTOPT_TARGET_NAME;
  return {&sgd<T>, &adagrad<T>, &rmsprop<T>, &adam<T>, &rprop<T>, &quickprop<T>, &roofline<T>, &grad_norm<T>,
          lbfgs_chunk::chunk_kernels<T>()};
}

const KernelTable& FASTOPT_CAT(kernel_table_, FASTOPT_TARGET_NAME)() {
  static const KernelTable table{FASTOPT_STR(FASTOPT_TARGET_NAME), make_kernels<float>(),
                                 make_kernels<double>()};
  return table;
}

}  // namespace fastopt
