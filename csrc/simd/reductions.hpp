// Per-array reductions whose result does not depend on the thread count or
// the SIMD target: the order of every addition is fixed by the data alone.
//
// ordered_sum (docs/algorithms.md, "Conventions"): an array is cut into
// chunks of kSumChunk consecutive elements; in a chunk, element i goes to
// lane i % 8, each lane adds its terms in index order from 0.0, and the chunk
// sum is ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)); the array's sum
// adds the chunk sums in chunk order. Eight double lanes are one AVX-512
// register or two AVX2 ones, but each lane's additions are the same on every
// target. fastopt.reference._ordered_sum is the same order in NumPy.
//
// for_each_chunk walks every chunk of every tensor of a batch, chunks split
// over threads in contiguous runs of work units (as for_each_span does with
// elements), so per-chunk partial sums land in slots of their own.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/batch.hpp"

namespace fastopt {

constexpr std::int64_t kSumChunk = 4096;
constexpr int kSumLanes = 8;

namespace FASTOPT_TARGET_NAME {

// Sum of term(i) for i in [0, n), n <= kSumChunk, in the lane order above.
template <class Term>
inline double chunk_sum(std::int64_t n, Term term) {
  double lane[kSumLanes] = {};
  std::int64_t i = 0;
  for (; i + kSumLanes <= n; i += kSumLanes)
    for (int l = 0; l < kSumLanes; ++l) lane[l] += term(i + l);
  for (int l = 0; i < n; ++i, ++l) lane[l] += term(i);
  return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

// ordered_sum of term(i), i in [0, n), on the calling thread.
template <class Term>
inline double ordered_sum(std::int64_t n, Term term) {
  double total = 0.0;
  for (std::int64_t b = 0; b < n; b += kSumChunk)
    total += chunk_sum(std::min(kSumChunk, n - b), [&](std::int64_t i) { return term(b + i); });
  return total;
}

// The chunks of a batch: tensor t's chunks are first_[t] .. first_[t + 1] - 1.
class Chunks {
 public:
  template <class T>
  explicit Chunks(const Batch<T>& batch) : first_(static_cast<std::size_t>(batch.n_tensors) + 1, 0) {
    for (int t = 0; t < batch.n_tensors; ++t)
      first_[t + 1] = first_[t] + (batch.sizes[t] + kSumChunk - 1) / kSumChunk;
  }
  std::int64_t count() const { return first_.back(); }
  std::int64_t first(int tensor) const { return first_[static_cast<std::size_t>(tensor)]; }
  std::int64_t end(int tensor) const { return first_[static_cast<std::size_t>(tensor) + 1]; }

  // Adds the per-chunk partials of tensor t in chunk order: its ordered_sum.
  double tensor_sum(const std::vector<double>& partials, int t, int width = 1, int field = 0) const {
    double total = 0.0;
    for (std::int64_t c = first(t); c < end(t); ++c) total += partials[static_cast<std::size_t>(c * width + field)];
    return total;
  }

 private:
  std::vector<std::int64_t> first_;
};

// Calls body(tensor, begin, end, chunk, unit) for every chunk of every tensor
// (begin/end: element offsets in the tensor; chunk: its global index). Units
// are contiguous runs of chunks, fixed by the chunk count alone; a thread
// takes a contiguous run of units, in order.
template <class T, class Body>
void for_each_chunk(const Batch<T>& batch, const Chunks& chunks, Body&& body) {
  *batch.threads_used = 1;
  const std::int64_t total = chunks.count();
  if (total == 0) return;
  const int units = static_cast<int>(std::min<std::int64_t>(total, kMaxUnits));
  auto run_units = [&](int u0, int u1) {
    int t = 0;
    for (int u = u0; u < u1; ++u) {
      const std::int64_t c0 = total * u / units, c1 = total * (u + 1) / units;
      for (std::int64_t c = c0; c < c1; ++c) {
        while (chunks.end(t) <= c) ++t;
        const std::int64_t begin = (c - chunks.first(t)) * kSumChunk;
        body(t, begin, std::min(batch.sizes[t], begin + kSumChunk), c, u);
      }
    }
  };
  for_each_thread(batch, units, run_units);
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
