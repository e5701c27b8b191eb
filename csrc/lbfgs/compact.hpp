// The L-BFGS memory and its direction, -H g, in the compact two-pass form.
//
// H is the BFGS inverse-Hessian approximation built from H0 = gamma*I and the
// stored pairs (s_i, y_i), oldest first; gamma = s'y / y'y of the newest pair.
// Byrd, Nocedal & Schnabel (1994), "Representations of quasi-Newton matrices
// and their use in limited memory methods", Math. Prog. 63, eq. (3.1):
//
//   H g = gamma*g + [S  gamma*Y] M [S'g; gamma*Y'g],
//   M = [ R^-T (D + gamma*Y'Y) R^-1   -R^-T ]
//       [ -R^-1                          0  ]
//
// with R the upper triangle of S'Y (R_ij = s_i'y_j, i <= j) and D its
// diagonal. Writing a = S'g, b = Y'g and u = R^-1 a:
//
//   -H g = -gamma*g - S p + gamma*Y u,   p = R^-T ((D + gamma*Y'Y) u - gamma*b).
//
// This equals the two-loop recursion (Nocedal 1980) in exact arithmetic, but
// streams the stored pairs twice per iteration instead of four times:
//   pass 1 (gradient_pass): a, b, and the new column of R and Y'Y, from one
//          read of every pair (the new y is written in the same pass);
//   pass 2 (direction_pass): the direction from a second read, fused with
//          the first trial point x + alpha*d and the slope d'g.
// Everything between the passes is O(m^2) work on m x m matrices.
//
// Storage: m + 1 slots of n elements for s and for y. The extra ("spare")
// slot receives the next direction and the candidate pair, so a pair that
// fails the curvature test is dropped without touching the stored ones.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <type_traits>
#include <vector>

#include "lbfgs/blocks.hpp"
#include "lbfgs/chunk_kernels.hpp"

namespace fastopt {

// Results of pass 1 (all dot products accumulated in double).
struct GradientDots {
  // Per stored pair i (oldest first): s_i'g, y_i'g, s_i'y_new, y_i'y_new.
  std::vector<double> sg, yg, sy_new, yy_new;
  // The candidate pair (s = alpha*d, y = g_new - g_old).
  double dg = 0, sg_cand = 0, yg_cand = 0, sy_cand = 0, yy_cand = 0;
  double g_l1 = 0, g_max = 0;  // ||g||_1 and ||g||_inf of g_new (g_l1 is NaN/Inf if g is not finite)
  double g_sq = 0;             // ||g||_2^2
};

template <class T>
class LbfgsMemory {
 public:
  LbfgsMemory(std::int64_t n, int m)
      : n_(n), m_(m),
        s_(new T[static_cast<std::size_t>((m + 1) * n)]),
        y_(new T[static_cast<std::size_t>((m + 1) * n)]),
        r_(static_cast<std::size_t>(m * m), 0.0), yy_(static_cast<std::size_t>(m * m), 0.0) {
    clear();
  }

  std::int64_t n() const { return n_; }
  int capacity() const { return m_; }
  int size() const { return static_cast<int>(order_.size()); }
  double gamma() const { return gamma_; }

  // Stored pair i, oldest first.
  T* s(int i) { return s_.get() + order_[i] * n_; }
  T* y(int i) { return y_.get() + order_[i] * n_; }
  const T* s(int i) const { return s_.get() + order_[i] * n_; }
  const T* y(int i) const { return y_.get() + order_[i] * n_; }
  // The spare slot: the current direction d, then the candidate pair.
  T* spare_s() { return s_.get() + spare_ * n_; }
  T* spare_y() { return y_.get() + spare_ * n_; }

  // R_ij = s_i'y_j (i <= j) and (Y'Y)_ij, oldest first.
  double r(int i, int j) const { return r_[i * m_ + j]; }
  double yy(int i, int j) const { return yy_[i * m_ + j]; }

  void clear() {
    order_.clear();
    spare_ = 0;
    gamma_ = 1.0;
  }

  // Makes the spare slot the newest pair, given its column of R (s_i'y_new
  // for the stored i, then s'y) and of Y'Y. The oldest pair is dropped when
  // the memory is full and its slot becomes the spare.
  void push_spare(const double* r_column, const double* yy_column) {
    int k = size();
    if (k == m_) {
      drop_oldest();
      ++r_column;  // the dropped pair's entries
      ++yy_column;
      k = m_ - 1;
    }
    const int slot = spare_;
    order_.push_back(slot);
    for (int i = 0; i <= k; ++i) {
      r_[i * m_ + k] = r_column[i];
      yy_[i * m_ + k] = yy_[k * m_ + i] = yy_column[i];
    }
    gamma_ = r_column[k] / yy_column[k];
    spare_ = free_slot();
  }

  // Restores a saved memory (pairs oldest first, with their R and Y'Y).
  void load(int k, const T* s_rows, const T* y_rows, const double* r, const double* yy, double gamma) {
    clear();
    for (int i = 0; i < k; ++i) {
      order_.push_back(i);
      std::copy(s_rows + i * n_, s_rows + (i + 1) * n_, s_.get() + i * n_);
      std::copy(y_rows + i * n_, y_rows + (i + 1) * n_, y_.get() + i * n_);
      for (int j = 0; j < k; ++j) {
        r_[i * m_ + j] = i <= j ? r[i * k + j] : 0.0;
        yy_[i * m_ + j] = yy[i * k + j];
      }
    }
    gamma_ = k ? gamma : 1.0;
    spare_ = free_slot();
  }

  // Coefficients of pass 2, d = cg*g + sum_i (cs_i*s_i + cy_i*y_i), from
  // a = S'g and b = Y'g (see the header comment). With no pairs, d = -g.
  void direction_coefficients(const double* a, const double* b, double& cg, double* cs, double* cy) const {
    const int k = size();
    cg = -gamma_;
    if (k == 0) return;
    std::vector<double> u(a, a + k), w(k);
    for (int i = k - 1; i >= 0; --i) {  // u = R^-1 a (back substitution)
      double acc = u[i];
      for (int j = i + 1; j < k; ++j) acc -= r(i, j) * u[j];
      u[i] = acc / r(i, i);
    }
    for (int i = 0; i < k; ++i) {  // w = (D + gamma*Y'Y) u - gamma*b
      double acc = r(i, i) * u[i] - gamma_ * b[i];
      for (int j = 0; j < k; ++j) acc += gamma_ * yy(i, j) * u[j];
      w[i] = acc;
    }
    for (int i = 0; i < k; ++i) {  // p = R^-T w (forward substitution)
      double acc = w[i];
      for (int j = 0; j < i; ++j) acc -= r(j, i) * w[j];
      w[i] = acc / r(i, i);
    }
    for (int i = 0; i < k; ++i) {
      cs[i] = -w[i];
      cy[i] = gamma_ * u[i];
    }
  }

 private:
  void drop_oldest() {
    order_.erase(order_.begin());
    const int k = size();
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) {
        r_[i * m_ + j] = r_[(i + 1) * m_ + j + 1];
        yy_[i * m_ + j] = yy_[(i + 1) * m_ + j + 1];
      }
  }

  int free_slot() const {
    for (int slot = 0; slot <= m_; ++slot)
      if (std::find(order_.begin(), order_.end(), slot) == order_.end()) return slot;
    return m_;  // unreachable: m + 1 slots hold at most m pairs
  }

  std::int64_t n_;
  int m_;
  std::unique_ptr<T[]> s_, y_;  // m + 1 slots each, uninitialized until written
  std::vector<double> r_, yy_;  // m x m, oldest first
  std::vector<int> order_;      // slot of stored pair i, oldest first
  int spare_ = 0;
  double gamma_ = 1.0;
};

// ----------------------------------------------------------------- the passes

// Pass 1. Reads the stored pairs once. With a candidate (g_old != nullptr):
// forms y = g_new - g_old into the spare y slot, s = alpha*d in place in the
// spare s slot (alpha = 1 needs no write), and every dot product the memory
// update needs. When the memory is full the oldest pair is NOT read: it is
// dropped if the candidate is accepted (almost always: a Wolfe step gives
// s'y >= (1 - c2)*alpha*|d'g| > 0), and oldest_pair_dots() fills its two
// products in the rare other case. Without a candidate: S'g and Y'g only.
template <class T>
void gradient_pass(LbfgsMemory<T>& mem, const T* g_new, const T* g_old, double alpha, int num_threads,
                   BlockPartials& partials, GradientDots& out) {
  const LbfgsChunkKernels<T>& chunk = active_chunk_kernels<T>();  // the active SIMD target's
  const std::int64_t n = mem.n();
  const int k = mem.size();
  const bool candidate = g_old != nullptr;
  const int first = candidate && k == mem.capacity() ? 1 : 0;  // skip the pair a push would drop
  const bool write_s = candidate && alpha != 1.0;
  // Row layout: 4 per stored pair, then dg, sg, yg, sy, yy, |g|_1, |g|_2^2, |g|_inf.
  const int width = 4 * k + 8;
  partials.reset(n, width);
  std::vector<const T*> s_ptr(k), y_ptr(k);
  for (int i = 0; i < k; ++i) {
    s_ptr[i] = mem.s(i);
    y_ptr[i] = mem.y(i);
  }
  T* const d = mem.spare_s();
  T* const y_new = mem.spare_y();
  const T alpha_t = static_cast<T>(alpha);

  for_each_block(n, num_threads, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double* row = partials.row(block);
    double* tail = row + 4 * k;
    double g_buf[kLbfgsChunk], y_buf[kLbfgsChunk];
    for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
      const std::int64_t len = std::min(kLbfgsChunk, end - c0);
      const double* gd = g_buf;
      if constexpr (std::is_same_v<T, double>) gd = g_new + c0;
      else chunk.to_double(g_new + c0, g_buf, len);
      const CandidateSums c =
          candidate ? chunk.candidate(d + c0, y_new + c0, g_new + c0, g_old + c0, gd, y_buf, alpha_t,
                                             write_s, len)
                    : chunk.norms(g_new + c0, gd, len);
      tail[0] += c.dg, tail[1] += c.sg, tail[2] += c.yg, tail[3] += c.sy, tail[4] += c.yy;
      tail[5] += c.l1, tail[6] += c.sq, tail[7] = std::max(tail[7], c.max);
      for (int i = first; i < k; ++i) {
        if (candidate) chunk.pair_dots4(s_ptr[i] + c0, y_ptr[i] + c0, gd, y_buf, len, row + 4 * i);
        else chunk.pair_dots2(s_ptr[i] + c0, y_ptr[i] + c0, gd, len, row + 4 * i);
      }
    }
  });

  std::vector<double> total(width);
  partials.sum(total.data());
  out.sg.resize(k), out.yg.resize(k), out.sy_new.resize(k), out.yy_new.resize(k);
  for (int i = 0; i < k; ++i) {
    out.sg[i] = total[4 * i], out.yg[i] = total[4 * i + 1];
    out.sy_new[i] = total[4 * i + 2], out.yy_new[i] = total[4 * i + 3];
  }
  if (first) out.sg[0] = out.yg[0] = out.sy_new[0] = out.yy_new[0] = std::nan("");
  const double* tail = total.data() + 4 * k;
  out.dg = tail[0], out.sg_cand = tail[1], out.yg_cand = tail[2], out.sy_cand = tail[3], out.yy_cand = tail[4];
  out.g_l1 = tail[5];
  out.g_sq = tail[6];
  out.g_max = partials.max(4 * k + 7);
}

// s_0'g and y_0'g for the oldest pair, when pass 1 skipped it but it stays.
template <class T>
void oldest_pair_dots(const LbfgsMemory<T>& mem, const T* g, int num_threads, BlockPartials& partials,
                      GradientDots& out) {
  const T* s0 = mem.s(0);
  const T* y0 = mem.y(0);
  partials.reset(mem.n(), 2);
  for_each_block(mem.n(), num_threads, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double a0 = 0, a1 = 0;
#pragma omp simd reduction(+ : a0, a1)
    for (std::int64_t j = begin; j < end; ++j) {
      const double gv = g[j];
      a0 += static_cast<double>(s0[j]) * gv;
      a1 += static_cast<double>(y0[j]) * gv;
    }
    partials.row(block)[0] = a0, partials.row(block)[1] = a1;
  });
  double total[2];
  partials.sum(total);
  out.sg[0] = total[0], out.yg[0] = total[1];
}

// Pass 2. Writes d = cg*g + sum_i (cs_i*s_i + cy_i*y_i) into the spare s
// slot and the first trial point x_trial = x + alpha*d; returns d'g.
template <class T>
double direction_pass(LbfgsMemory<T>& mem, const T* g, double cg, const double* cs, const double* cy,
                      const T* x, double alpha, T* x_trial, int num_threads, BlockPartials& partials) {
  const LbfgsChunkKernels<T>& chunk = active_chunk_kernels<T>();  // the active SIMD target's
  const std::int64_t n = mem.n();
  const int k = mem.size();
  partials.reset(n, 1);
  std::vector<const T*> s_ptr(k), y_ptr(k);
  std::vector<T> cs_t(k), cy_t(k);
  for (int i = 0; i < k; ++i) {
    s_ptr[i] = mem.s(i), y_ptr[i] = mem.y(i);
    cs_t[i] = static_cast<T>(cs[i]), cy_t[i] = static_cast<T>(cy[i]);
  }
  T* const d = mem.spare_s();
  const T cg_t = static_cast<T>(cg), alpha_t = static_cast<T>(alpha);

  for_each_block(n, num_threads, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    T d_buf[kLbfgsChunk];
    double slope = 0;
    for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
      const std::int64_t len = std::min(kLbfgsChunk, end - c0);
      const T* gc = g + c0;
      for (std::int64_t j = 0; j < len; ++j) d_buf[j] = cg_t * gc[j];
      for (int i = 0; i < k; ++i) chunk.axpy2(d_buf, s_ptr[i] + c0, y_ptr[i] + c0, cs_t[i], cy_t[i], len);
      slope += chunk.finish_direction(d_buf, d + c0, x + c0, x_trial + c0, gc, alpha_t, len);
    }
    partials.row(block)[0] = slope;
  });
  double slope;
  partials.sum(&slope);
  return slope;
}

// x_trial = x + alpha*d (a line-search trial after the first).
template <class T>
void trial_point(const T* x, const T* d, double alpha, T* x_trial, std::int64_t n, int num_threads) {
  const T alpha_t = static_cast<T>(alpha);
  for_each_block(n, num_threads, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
    const T* __restrict xc = x;
    const T* __restrict dc = d;
    T* __restrict xt = x_trial;
#pragma omp simd
    for (std::int64_t j = begin; j < end; ++j) xt[j] = xc[j] + alpha_t * dc[j];
  });
}

// d'g in double (the slope at a line-search trial after the first).
template <class T>
double dot(const T* a, const T* b, std::int64_t n, int num_threads, BlockPartials& partials) {
  partials.reset(n, 1);
  for_each_block(n, num_threads, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double acc = 0;
#pragma omp simd reduction(+ : acc)
    for (std::int64_t j = begin; j < end; ++j) acc += static_cast<double>(a[j]) * static_cast<double>(b[j]);
    partials.row(block)[0] = acc;
  });
  double total;
  partials.sum(&total);
  return total;
}

}  // namespace fastopt
