// Shape arithmetic: the one place that decides output sizes, "same" padding and
// pooling windows. The Python layer asks these functions (through _core) rather
// than repeating the formulas; docs/semantics.md states them for users.
//
// Everything is int64 with overflow checks, and failures throw std::invalid_argument
// (ValueError in Python) whose text names the offending quantity.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "convpool/kernel_types.hpp"

namespace convpool {

inline constexpr int64_t kMaxExtent = std::numeric_limits<int64_t>::max() / 4;

inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r) || r > kMaxExtent) {
    throw std::invalid_argument(std::string(what) + " is too large for 64-bit index arithmetic");
  }
  return r;
}

inline int64_t checked_add(int64_t a, int64_t b, const char* what) {
  int64_t r = 0;
  if (__builtin_add_overflow(a, b, &r) || r > kMaxExtent) {
    throw std::invalid_argument(std::string(what) + " is too large for 64-bit index arithmetic");
  }
  return r;
}

inline void require_positive(int64_t v, const char* what) {
  if (v < 1) throw std::invalid_argument(std::string(what) + " must be >= 1, got " + std::to_string(v));
}

inline void require_non_negative(int64_t v, const char* what) {
  if (v < 0) throw std::invalid_argument(std::string(what) + " must be >= 0, got " + std::to_string(v));
}

// The span a dilated kernel covers: dilation * (kernel - 1) + 1.
inline int64_t dilated_extent(int64_t kernel, int64_t dilation) {
  require_positive(kernel, "kernel size");
  require_positive(dilation, "dilation");
  return checked_add(checked_mul(dilation, kernel - 1, "dilated kernel extent"), 1,
                     "dilated kernel extent");
}

// Number of windows along one axis:
//   floor((in + pad_before + pad_after - extent + (ceil_mode ? stride - 1 : 0)) / stride) + 1
// and, in ceil mode, one fewer if the last window would start at or after
// in + pad_before (PyTorch's rule, also ONNX's): every window starts inside the input
// or its leading padding.
inline int64_t output_size(int64_t in, int64_t kernel, int64_t stride, int64_t dilation,
                           int64_t pad_before, int64_t pad_after, bool ceil_mode) {
  require_positive(in, "input size");
  require_positive(stride, "stride");
  require_non_negative(pad_before, "padding");
  require_non_negative(pad_after, "padding");
  const int64_t extent = dilated_extent(kernel, dilation);
  const int64_t padded =
      checked_add(checked_add(in, pad_before, "padded input size"), pad_after, "padded input size");
  // In ceil mode the last window may overhang the padding by up to stride - 1.
  const int64_t reach = ceil_mode ? checked_add(padded, stride - 1, "padded input size") : padded;
  if (reach < extent) {
    throw std::invalid_argument("the output would be empty: padded input size " + std::to_string(padded) +
                                " is smaller than the dilated kernel extent " + std::to_string(extent) +
                                (ceil_mode ? " even with the ceil-mode overhang" : ""));
  }
  const int64_t span = reach - extent;
  int64_t out = span / stride + 1;
  if (ceil_mode && (out - 1) * stride >= in + pad_before) --out;
  return out;
}

// TensorFlow/ONNX "SAME": out = ceil(in / stride) and the total padding needed for
// it split in half, the odd one at the end (SAME_UPPER) or at the start (SAME_LOWER).
inline std::pair<int64_t, int64_t> same_padding(int64_t in, int64_t kernel, int64_t stride,
                                                int64_t dilation, bool lower) {
  require_positive(in, "input size");
  require_positive(stride, "stride");
  const int64_t extent = dilated_extent(kernel, dilation);
  const int64_t out = (in + stride - 1) / stride;
  const int64_t needed = checked_add(checked_mul(out - 1, stride, "padding"), extent, "padding") - in;
  const int64_t total = needed > 0 ? needed : 0;
  const int64_t small = total / 2;
  const int64_t large = total - small;
  return lower ? std::make_pair(large, small) : std::make_pair(small, large);
}

// Owns the tap tables a PoolAxis points into.
struct PoolAxisTable {
  std::vector<int64_t> first, count, padded_count;
  PoolAxis axis;

  PoolAxis view() const {
    PoolAxis v = axis;
    v.first = first.data();
    v.count = count.data();
    v.padded_count = padded_count.data();
    return v;
  }
};

// Regular windows: output o covers o * stride - pad_before + i * dilation for i < kernel.
inline PoolAxisTable make_window_axis(int64_t in, int64_t out, int64_t kernel, int64_t stride,
                                      int64_t dilation, int64_t pad_before, int64_t pad_after) {
  PoolAxisTable t;
  t.first.resize(static_cast<size_t>(out));
  t.count.resize(static_cast<size_t>(out));
  t.padded_count.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * stride - pad_before;
    // First tap index i with start + i*d >= 0, and one past the last with start + i*d < in.
    int64_t lo = 0;
    if (start < 0) lo = (-start + dilation - 1) / dilation;
    int64_t hi = kernel;
    const int64_t last = start + (kernel - 1) * dilation;
    if (last >= in) hi = kernel - ((last - in) / dilation + 1);
    if (hi < lo) hi = lo;
    // Taps inside [-pad_before, in + pad_after): the window starts at or after
    // -pad_before, so only the end can overhang (ceil mode).
    const int64_t end_limit = in + pad_after;
    int64_t padded_hi = kernel;
    if (last >= end_limit) padded_hi = kernel - ((last - end_limit) / dilation + 1);
    if (padded_hi < 0) padded_hi = 0;
    t.first[static_cast<size_t>(o)] = start + lo * dilation;
    t.count[static_cast<size_t>(o)] = hi - lo;
    t.padded_count[static_cast<size_t>(o)] = padded_hi;
  }
  t.axis.in_size = in;
  t.axis.out_size = out;
  t.axis.step = dilation;
  t.axis.stride = stride;
  t.axis.kernel = kernel;
  t.axis.pad_before = pad_before;
  return t;
}

// Adaptive windows: output o covers [floor(o * in / out), ceil((o + 1) * in / out)).
inline PoolAxisTable make_adaptive_axis(int64_t in, int64_t out) {
  require_positive(in, "input size");
  require_positive(out, "output_size");
  checked_mul(in, out + 1, "output_size times input size");
  PoolAxisTable t;
  t.first.resize(static_cast<size_t>(out));
  t.count.resize(static_cast<size_t>(out));
  t.padded_count.resize(static_cast<size_t>(out));
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = (o * in) / out;
    const int64_t end = ((o + 1) * in + out - 1) / out;
    t.first[static_cast<size_t>(o)] = start;
    t.count[static_cast<size_t>(o)] = end - start;
    t.padded_count[static_cast<size_t>(o)] = end - start;
  }
  t.axis.in_size = in;
  t.axis.out_size = out;
  t.axis.step = 1;
  return t;
}

// For each input index, the outputs whose windows hold it (ascending), as CSR.
struct PoolAxisInverseTable {
  std::vector<int64_t> offsets, outputs;

  PoolAxisInverse view() const { return PoolAxisInverse{offsets.data(), outputs.data()}; }
};

inline PoolAxisInverseTable invert_axis(const PoolAxisTable& t) {
  const int64_t in = t.axis.in_size;
  PoolAxisInverseTable inv;
  inv.offsets.assign(static_cast<size_t>(in + 1), 0);
  for (int64_t o = 0; o < t.axis.out_size; ++o) {
    for (int64_t i = 0; i < t.count[static_cast<size_t>(o)]; ++i) {
      ++inv.offsets[static_cast<size_t>(t.first[static_cast<size_t>(o)] + i * t.axis.step + 1)];
    }
  }
  for (int64_t i = 0; i < in; ++i) inv.offsets[static_cast<size_t>(i + 1)] += inv.offsets[static_cast<size_t>(i)];
  inv.outputs.resize(static_cast<size_t>(inv.offsets[static_cast<size_t>(in)]));
  std::vector<int64_t> fill(inv.offsets.begin(), inv.offsets.end() - 1);
  for (int64_t o = 0; o < t.axis.out_size; ++o) {
    for (int64_t i = 0; i < t.count[static_cast<size_t>(o)]; ++i) {
      const int64_t pos = t.first[static_cast<size_t>(o)] + i * t.axis.step;
      inv.outputs[static_cast<size_t>(fill[static_cast<size_t>(pos)]++)] = o;
    }
  }
  return inv;
}

}  // namespace convpool
