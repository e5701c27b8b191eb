// Deterministic blocked streaming for the L-BFGS vector passes.
//
// The vector range [0, n) is cut into fixed blocks of kLbfgsBlock elements.
// Each block writes its partial sums into its own row of a scratch table and
// the rows are added in block order afterwards, so every dot product is the
// same number whatever the thread count (the elementwise kernels have the
// same guarantee, by a different route: they have no reductions).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "core/batch.hpp"

namespace fastopt {

// 4096 elements: big enough that a block's loop overhead is noise and that a
// 2-thread split of n = 1e5 is balanced, small enough that a block's partial
// sums are accurate (pairwise-like error growth over blocks).
constexpr std::int64_t kLbfgsBlock = 4096;

// Inside a block, work proceeds in chunks whose temporaries (converted
// gradient, new y, new direction) stay in L1 while every stored pair streams
// past them once.
constexpr std::int64_t kLbfgsChunk = 512;

inline std::int64_t lbfgs_block_count(std::int64_t n) { return (n + kLbfgsBlock - 1) / kLbfgsBlock; }

// Calls body(block, begin, end) for every block. A parallel region is opened
// only above the library's grain (a region costs microseconds) and only when
// more than one thread is allowed. Blocks are handed out dynamically: on a
// shared machine a descheduled thread no longer holds half of every pass
// hostage, and results cannot change (each block's sums are its own, added
// in block order).
template <class Body>
void for_each_block(std::int64_t n, int num_threads, Body&& body) {
  const std::int64_t blocks = lbfgs_block_count(n);
#ifdef FASTOPT_HAVE_OPENMP
  int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
  threads = static_cast<int>(std::min<std::int64_t>(threads, std::max<std::int64_t>(1, n / kParallelGrain)));
  if (threads > 1) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::int64_t b = 0; b < blocks; ++b) body(b, b * kLbfgsBlock, std::min(n, (b + 1) * kLbfgsBlock));
    return;
  }
#else
  (void)num_threads;
#endif
  for (std::int64_t b = 0; b < blocks; ++b) body(b, b * kLbfgsBlock, std::min(n, (b + 1) * kLbfgsBlock));
}

// Totals over every rank (distributed L-BFGS: each rank holds a contiguous
// slice of every vector, python/fastopt/distributed). Given this rank's block
// rows (blocks x width, in block order), writes each column's sum over the
// blocks of all ranks, in global block order (rank 0's blocks first), and
// each column's maximum. It must give every rank the same numbers, or the
// ranks' iterations diverge. When every slice but the last is a whole number
// of blocks, the blocks are the single-process ones and so are the sums.
using CrossRankCombine =
    std::function<void(const double* rows, std::int64_t blocks, int width, double* sums, double* maxes)>;

// Per-block partial sums: `width` doubles per block, summed in block order.
class BlockPartials {
 public:
  double* row(std::int64_t block) { return table_.data() + block * width_; }

  void reset(std::int64_t n, int width) {
    width_ = width;
    table_.assign(static_cast<std::size_t>(lbfgs_block_count(n) * width), 0.0);
  }

  // With a combine set, sum() totals every column over all ranks and max()
  // returns the all-rank maximum as of that sum().
  void set_cross_rank(CrossRankCombine combine) { combine_ = std::move(combine); }

  // Column sums in block order (deterministic), then over ranks.
  void sum(double* out) {
    std::fill(out, out + width_, 0.0);
    const std::int64_t blocks = block_rows();
    for (std::int64_t b = 0; b < blocks; ++b)
      for (int k = 0; k < width_; ++k) out[k] += table_[b * width_ + k];
    if (!combine_) return;
    maxes_.resize(static_cast<std::size_t>(width_));
    combine_(table_.data(), block_rows(), width_, out, maxes_.data());
  }

  // Column maximum (order-free, so exact).
  double max(int column) const { return combine_ ? maxes_[column] : local_max(column); }

 private:
  std::int64_t block_rows() const { return width_ ? static_cast<std::int64_t>(table_.size()) / width_ : 0; }
  double local_max(int column) const {
    double m = 0.0;
    for (std::int64_t b = 0; b < block_rows(); ++b) m = std::max(m, table_[b * width_ + column]);
    return m;
  }

  std::vector<double> table_;
  int width_ = 0;
  CrossRankCombine combine_;
  std::vector<double> maxes_;
};

}  // namespace fastopt
