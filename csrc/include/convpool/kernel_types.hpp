// Plain data shared by the dispatcher and the kernels.
//
// Kernel sources are compiled once per ISA with that ISA's flags, so this header
// holds only structs and function-pointer types: an inline function defined here
// and emitted by an AVX-512 translation unit could be the copy the linker keeps,
// and then baseline code would execute AVX-512 instructions.
#pragma once

#include <cstdint>

namespace convpool {

enum class Layout : int { NCHW = 0, NHWC = 1 };

// A convolution whose arguments have been validated (shape.hpp). Sizes are
// element counts; all index arithmetic derived from them is 64-bit.
struct Conv2dProblem {
  int64_t batch = 0;
  int64_t in_channels = 0, in_h = 0, in_w = 0;
  int64_t out_channels = 0, out_h = 0, out_w = 0;
  int64_t kernel_h = 1, kernel_w = 1;
  int64_t stride_h = 1, stride_w = 1;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t pad_top = 0, pad_left = 0;  // bottom/right padding is implied by out_h/out_w
  int64_t groups = 1;
  Layout layout = Layout::NCHW;
};

// One spatial axis of a pooling window. For output index o, the window's taps that
// fall inside the input are first[o] + i * step for 0 <= i < count[o]; padded_count[o]
// counts the taps inside the padded extent (the avg-pool divisor with
// count_include_pad). Regular and adaptive windows both fit this form.
struct PoolAxis {
  int64_t in_size = 0;
  int64_t out_size = 0;
  int64_t step = 1;
  const int64_t* first = nullptr;
  const int64_t* count = nullptr;
  const int64_t* padded_count = nullptr;
  // Regular windows only (0 for adaptive): output o starts at o * stride - pad_before
  // and holds kernel taps; lets a kernel find the interior where every tap is valid.
  int64_t stride = 0;
  int64_t kernel = 0;
  int64_t pad_before = 0;
};

struct Pool2dProblem {
  int64_t batch = 0;
  int64_t channels = 0;
  PoolAxis rows, cols;
  Layout layout = Layout::NCHW;
};

enum class PoolReduction : int { max = 0, avg = 1, lp = 2 };

struct PoolOptions {
  bool count_include_pad = true;
  int64_t divisor_override = 0;  // 0: none
  double norm_type = 2.0;        // lp pooling
};

template <class T>
using Conv2dFn = void (*)(const Conv2dProblem& problem, const T* x, const T* weight,
                          const T* bias, T* y, int num_threads);

// indices may be null (not requested).
template <class T>
using MaxPool2dFn = void (*)(const Pool2dProblem& problem, const T* x, T* y,
                             int64_t* indices, int num_threads);

template <class T>
using SumPool2dFn = void (*)(const Pool2dProblem& problem, const T* x, T* y,
                             const PoolOptions& options, int num_threads);

// The outputs whose windows contain each input index along one axis, in CSR form:
// for input i they are outputs[offsets[i]] .. outputs[offsets[i + 1] - 1], ascending.
// Lets a backward pass visit, for each input row, only the output rows that use it.
struct PoolAxisInverse {
  const int64_t* offsets = nullptr;
  const int64_t* outputs = nullptr;
};

// grad_x = dL/dx for a convolution (grad_y has the output's shape and layout).
template <class T>
using Conv2dBackwardInputFn = void (*)(const Conv2dProblem& problem, const T* grad_y, const T* weight,
                                       T* grad_x, int num_threads);

// grad_w (K, C/groups, kh, kw) and, when not null, grad_b (K).
template <class T>
using Conv2dBackwardWeightFn = void (*)(const Conv2dProblem& problem, const T* grad_y, const T* x,
                                        T* grad_w, T* grad_b, int num_threads);

// Max pooling backward: grad_y routed to the recorded indices (-1: nowhere).
// grad_x is overwritten. Indices outside [-1, H*W) are skipped, nothing is written
// for them, and the kernel returns false (grad_x is then not a gradient); true
// when every index was in range.
template <class T>
using MaxPool2dBackwardFn = bool (*)(const Pool2dProblem& problem, const T* grad_y,
                                     const int64_t* indices, T* grad_x, int num_threads);

// Average or Lp pooling backward. rows (cols) lists, for each input row (column),
// the output rows (columns) whose windows hold it. x and y (the forward input and
// output) are read by Lp pooling only and may be null for average pooling.
template <class T>
using SumPool2dBackwardFn = void (*)(const Pool2dProblem& problem, const PoolAxisInverse& rows,
                                     const PoolAxisInverse& cols, const T* grad_y, const T* x, const T* y,
                                     T* grad_x, const PoolOptions& options, int num_threads);

// Packed weights for repeated convolutions: their size in elements, the packing,
// and conv2d taking them in place of the weight (same signature as Conv2dFn). The
// packed format belongs to one ISA's kernels.
using Conv2dPackedSizeFn = int64_t (*)(const Conv2dProblem& problem);
template <class T>
using Conv2dPackFn = void (*)(const Conv2dProblem& problem, const T* weight, T* packed);

template <class T>
struct FloatKernels {
  Conv2dFn<T> conv2d = nullptr;
  Conv2dPackedSizeFn conv2d_packed_size = nullptr;
  Conv2dPackFn<T> conv2d_pack = nullptr;
  Conv2dFn<T> conv2d_prepacked = nullptr;
  MaxPool2dFn<T> max_pool2d = nullptr;
  SumPool2dFn<T> avg_pool2d = nullptr;
  SumPool2dFn<T> lp_pool2d = nullptr;
  Conv2dBackwardInputFn<T> conv2d_backward_input = nullptr;
  Conv2dBackwardWeightFn<T> conv2d_backward_weight = nullptr;
  MaxPool2dBackwardFn<T> max_pool2d_backward = nullptr;
  SumPool2dBackwardFn<T> avg_pool2d_backward = nullptr;
  SumPool2dBackwardFn<T> lp_pool2d_backward = nullptr;
};

// Runs a fixed number of vector FMA rounds on num_threads threads; returns the FLOPs
// done (the benchmark times it). The sink keeps the result alive.
using FmaProbeFn = double (*)(int64_t iterations, int num_threads, float* sink);

// Every kernel an ISA provides. Filled once per ISA by its register_* functions.
struct KernelTable {
  const char* isa = "none";
  FmaProbeFn fma_probe = nullptr;
  FloatKernels<float> f32;
  FloatKernels<double> f64;
  MaxPool2dFn<int8_t> max_pool2d_i8 = nullptr;
  MaxPool2dFn<uint8_t> max_pool2d_u8 = nullptr;
  MaxPool2dFn<int16_t> max_pool2d_i16 = nullptr;
  MaxPool2dFn<uint16_t> max_pool2d_u16 = nullptr;
  MaxPool2dFn<int32_t> max_pool2d_i32 = nullptr;
  MaxPool2dFn<uint32_t> max_pool2d_u32 = nullptr;
  MaxPool2dFn<int64_t> max_pool2d_i64 = nullptr;
  MaxPool2dFn<uint64_t> max_pool2d_u64 = nullptr;
};

// Smallest amount of work (element operations) worth a thread of its own; smaller
// calls run on one thread. Settable so that tests can force small problems onto
// several threads. Defined in csrc/cpu/memory.cpp.
int64_t min_parallel_work() noexcept;
void set_min_parallel_work(int64_t work) noexcept;

// Calls whose input and output together take at most this many bytes are taken
// to run from cache (an input just written by the previous layer, or read again
// in a loop); kernels whose access order is fast from cache but streams worse
// from memory are chosen only for them. 16 MiB by default; settable so that tests
// can reach both choices with small arrays. Defined in csrc/cpu/memory.cpp.
int64_t cache_resident_bytes() noexcept;
void set_cache_resident_bytes(int64_t bytes) noexcept;

// Whether the kernels that compute (convolutions, average and Lp pooling, backward
// passes; not max pooling, which only compares and copies) flush denormal results to zero and read denormal inputs as zero (x86
// MXCSR FTZ and DAZ, set per thread for the kernel's work and then restored).
// On by default. Defined in csrc/cpu/memory.cpp.
bool flush_denormals() noexcept;
void set_flush_denormals(bool flush) noexcept;

// Scratch memory for kernels, allocated by a baseline-compiled translation unit
// (csrc/cpu/memory.cpp). 64-byte aligned; nullptr on failure.
void* aligned_alloc_bytes(int64_t bytes) noexcept;
void aligned_free(void* ptr) noexcept;

}  // namespace convpool
