// conv2d and its backward passes: check the arrays, release the GIL, call the
// active kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <type_traits>
#include <vector>

#include "arrays.hpp"
#include "convpool/dispatch.hpp"
#include "convpool/shape.hpp"

namespace convpool::bindings {

namespace {

using Pair = std::array<int64_t, 2>;
using Pads = std::array<int64_t, 4>;

// The validated problem for an input of dims `in` and a weight of shape `ws`.
Conv2dProblem conv_problem(const Dims& in, const std::vector<int64_t>& ws, Pair stride, Pads padding, Pair dilation,
                           int64_t groups, Layout layout) {
  if (ws.size() != 4) throw py::value_error("weight: expected a 4-D array (K, C/groups, kh, kw)");
  require_positive(groups, "groups");
  if (in.c % groups != 0 || ws[0] % groups != 0 || ws[1] * groups != in.c) {
    throw py::value_error("weight: shape " + shape_string(ws) + " does not fit " + std::to_string(in.c) +
                          " input channels in " + std::to_string(groups) + " groups");
  }
  for (int64_t p : padding) require_non_negative(p, "padding");
  Conv2dProblem p;
  p.batch = in.n;
  p.in_channels = in.c;
  p.in_h = in.h;
  p.in_w = in.w;
  p.out_channels = ws[0];
  p.kernel_h = ws[2];
  p.kernel_w = ws[3];
  p.stride_h = stride[0];
  p.stride_w = stride[1];
  p.dilation_h = dilation[0];
  p.dilation_w = dilation[1];
  p.pad_top = padding[0];
  p.pad_left = padding[2];
  p.groups = groups;
  p.layout = layout;
  p.out_h = output_size(in.h, p.kernel_h, p.stride_h, p.dilation_h, padding[0], padding[1], false);
  p.out_w = output_size(in.w, p.kernel_w, p.stride_w, p.dilation_w, padding[2], padding[3], false);
  checked_mul(checked_mul(checked_mul(p.batch, p.out_channels, "output size"), p.out_h, "output size"), p.out_w,
              "output size");
  return p;
}

// False if any of w[0 .. n) is infinite or NaN (exponent bits all ones); an
// integer OR the compiler vectorises.
template <class T>
bool all_finite(const T* w, int64_t n) {
  using Bits = std::conditional_t<sizeof(T) == 4, uint32_t, uint64_t>;
  constexpr Bits exponent = static_cast<Bits>(sizeof(T) == 4 ? 0x7f800000ull : 0x7ff0000000000000ull);
  Bits all_ones = 0;
  for (int64_t i = 0; i < n; ++i) {
    Bits b;
    std::memcpy(&b, w + i, sizeof(T));
    all_ones |= static_cast<Bits>((b & exponent) == exponent);
  }
  return all_ones == 0;
}

// Offset of element (n, c, h, w) of an array of dims (N, C, H, W) in layout.
inline int64_t element_offset(Layout layout, int64_t C, int64_t H, int64_t W, int64_t n, int64_t c, int64_t h,
                              int64_t w) {
  return layout == Layout::NHWC ? ((n * H + h) * W + w) * C + c : ((n * C + c) * H + h) * W + w;
}

// The kernels skip some taps that fall in the padding (a zero times a finite
// weight adds nothing). With an infinite or NaN weight such a tap gives NaN, so
// conv2d then runs on an input padded explicitly: x with the padding as zeros,
// the problem with none. Returns the padded copy; p becomes its problem.
template <class T>
std::vector<T> padded_input(Conv2dProblem& p, const Pads& padding, const T* x) {
  const int64_t H = p.in_h, W = p.in_w, C = p.in_channels;
  const int64_t HP = checked_add(checked_add(H, padding[0], "padded height"), padding[1], "padded height");
  const int64_t WP = checked_add(checked_add(W, padding[2], "padded width"), padding[3], "padded width");
  const int64_t count =
      checked_mul(checked_mul(checked_mul(p.batch, C, "padded input"), HP, "padded input"), WP, "padded input");
  std::vector<T> xp(static_cast<size_t>(count), T(0));
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          xp[static_cast<size_t>(element_offset(p.layout, C, HP, WP, n, c, h + padding[0], w + padding[2]))] =
              x[element_offset(p.layout, C, H, W, n, c, h, w)];
  p.in_h = HP;
  p.in_w = WP;
  p.pad_top = 0;
  p.pad_left = 0;
  return xp;
}

// The input gradient for weights with an infinite or NaN value, from its
// definition: each input gets the products of the taps that read it and nothing
// for taps in the padding (the kernels convolve the zero-padded output gradient,
// whose padding times such a weight would be NaN). One thread, only for this case.
template <class T>
void backward_input_direct(const Conv2dProblem& p, const T* gy, const T* weight, T* gx) {
  const int64_t C = p.in_channels, K = p.out_channels, G = p.groups;
  const int64_t cg = C / G, kg = K / G, KH = p.kernel_h, KW = p.kernel_w;
  for (int64_t n = 0; n < p.batch; ++n)
    for (int64_t c = 0; c < C; ++c) {
      const int64_t g = c / cg;
      for (int64_t i = 0; i < p.in_h; ++i)
        for (int64_t j = 0; j < p.in_w; ++j) {
          T sum = T(0);
          for (int64_t kh = 0; kh < KH; ++kh) {
            const int64_t r = i + p.pad_top - kh * p.dilation_h;
            if (r < 0 || r % p.stride_h != 0 || r / p.stride_h >= p.out_h) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t q = j + p.pad_left - kw * p.dilation_w;
              if (q < 0 || q % p.stride_w != 0 || q / p.stride_w >= p.out_w) continue;
              for (int64_t kk = 0; kk < kg; ++kk) {
                const int64_t k = g * kg + kk;
                sum += weight[((k * cg + (c - g * cg)) * KH + kh) * KW + kw] *
                       gy[element_offset(p.layout, K, p.out_h, p.out_w, n, k, r / p.stride_h, q / p.stride_w)];
              }
            }
          }
          gx[element_offset(p.layout, C, p.in_h, p.in_w, n, c, i, j)] = sum;
        }
    }
}

inline bool has_padding(const Pads& padding) {
  return padding[0] != 0 || padding[1] != 0 || padding[2] != 0 || padding[3] != 0;
}

std::vector<int64_t> output_shape(const Conv2dProblem& p) {
  return shape_in_layout(p.layout, p.batch, p.out_channels, p.out_h, p.out_w);
}

void conv2d(const py::array& x, const py::array& weight, const std::optional<py::array>& bias, py::array& out,
            Pair stride, Pads padding, Pair dilation, int64_t groups, int layout_code, int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Conv2dProblem p = conv_problem(dims_of(x, layout), shape_of(weight), stride, padding, dilation, groups, layout);
  with_float_type(x, "x", [&](auto zero) {
    using T = decltype(zero);
    const T* x_data = input_data<T>(x, "x");
    const T* w_data = input_data<T>(weight, "weight");
    const T* b_data = nullptr;
    if (bias) {
      b_data = input_data<T>(*bias, "bias");
      require_shape(*bias, "bias", {p.out_channels});
    }
    T* y_data = output_data<T>(out, "out", output_shape(p));
    const Conv2dFn<T> kernel = float_kernels<T>().conv2d;
    py::gil_scoped_release release;
    const int64_t w_count = p.out_channels * (p.in_channels / p.groups) * p.kernel_h * p.kernel_w;
    if (has_padding(padding) && !all_finite(w_data, w_count)) {
      Conv2dProblem q = p;
      const std::vector<T> xp = padded_input(q, padding, x_data);
      kernel(q, xp.data(), w_data, b_data, y_data, num_threads);
      return;
    }
    kernel(p, x_data, w_data, b_data, y_data, num_threads);
  });
}

void conv2d_backward_input(const py::array& grad_y, const py::array& weight, py::array& grad_x, Pair stride,
                           Pads padding, Pair dilation, int64_t groups, int layout_code, int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Conv2dProblem p =
      conv_problem(dims_of(grad_x, layout), shape_of(weight), stride, padding, dilation, groups, layout);
  with_float_type(grad_y, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    const T* gy = input_data<T>(grad_y, "grad_out");
    require_shape(grad_y, "grad_out", output_shape(p));
    const T* w_data = input_data<T>(weight, "weight");
    T* gx = output_data<T>(grad_x, "grad_x", shape_of(grad_x));
    const Conv2dBackwardInputFn<T> kernel = float_kernels<T>().conv2d_backward_input;
    py::gil_scoped_release release;
    if (!all_finite(w_data, p.out_channels * (p.in_channels / p.groups) * p.kernel_h * p.kernel_w)) {
      backward_input_direct(p, gy, w_data, gx);
      return;
    }
    kernel(p, gy, w_data, gx, num_threads);
  });
}

void conv2d_backward_weight(const py::array& grad_y, const py::array& x, py::array& grad_w,
                            std::optional<py::array> grad_b, Pair stride, Pads padding, Pair dilation,
                            int64_t groups, int layout_code, int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Conv2dProblem p = conv_problem(dims_of(x, layout), shape_of(grad_w), stride, padding, dilation, groups, layout);
  with_float_type(grad_y, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    const T* gy = input_data<T>(grad_y, "grad_out");
    require_shape(grad_y, "grad_out", output_shape(p));
    const T* x_data = input_data<T>(x, "x");
    T* gw = output_data<T>(grad_w, "grad_weight", shape_of(grad_w));
    T* gb = grad_b ? output_data<T>(*grad_b, "grad_bias", {p.out_channels}) : nullptr;
    const Conv2dBackwardWeightFn<T> kernel = float_kernels<T>().conv2d_backward_weight;
    py::gil_scoped_release release;
    kernel(p, gy, x_data, gw, gb, num_threads);
  });
}

// Packs weight (K, C/groups, kh, kw) for the active ISA's kernels; returns the packed
// elements and the ISA they are for.
std::pair<py::array, std::string> conv2d_pack(const py::array& weight, int64_t groups, int layout_code) {
  const Layout layout = parse_layout(layout_code);
  if (weight.ndim() != 4) throw py::value_error("weight: expected a 4-D array (K, C/groups, kh, kw)");
  const auto ws = shape_of(weight);
  require_positive(groups, "groups");
  // Any input size that admits the kernel: packing depends only on the channels.
  const Dims in{1, ws[1] * groups, ws[2], ws[3]};
  const Conv2dProblem p = conv_problem(in, ws, {1, 1}, {0, 0, 0, 0}, {1, 1}, groups, layout);
  const std::string isa = active_kernels().isa;
  py::array packed;
  with_float_type(weight, "weight", [&](auto zero) {
    using T = decltype(zero);
    const FloatKernels<T>& k = float_kernels<T>();
    const T* w = input_data<T>(weight, "weight");
    py::array_t<T> out(static_cast<py::ssize_t>(k.conv2d_packed_size(p)));
    T* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      k.conv2d_pack(p, w, dst);
    }
    packed = out;
  });
  return {packed, isa};
}

void conv2d_prepacked(const py::array& x, const py::array& packed, const std::string& isa,
                      std::array<int64_t, 4> weight_shape, const std::optional<py::array>& bias, py::array& out,
                      Pair stride, Pads padding, Pair dilation, int64_t groups, int layout_code, int num_threads) {
  if (isa != active_kernels().isa) {
    throw py::value_error("weight: packed for the " + isa + " kernels, but " +
                          std::string(active_kernels().isa) + " kernels are active; pack it again");
  }
  const Layout layout = parse_layout(layout_code);
  const std::vector<int64_t> ws(weight_shape.begin(), weight_shape.end());
  const Conv2dProblem p = conv_problem(dims_of(x, layout), ws, stride, padding, dilation, groups, layout);
  with_float_type(x, "x", [&](auto zero) {
    using T = decltype(zero);
    const FloatKernels<T>& k = float_kernels<T>();
    const T* x_data = input_data<T>(x, "x");
    const T* w_data = input_data<T>(packed, "weight");
    if (packed.ndim() != 1 || packed.shape(0) != k.conv2d_packed_size(p)) {
      throw py::value_error("weight: the packed weights do not match this convolution");
    }
    const T* b_data = nullptr;
    if (bias) {
      b_data = input_data<T>(*bias, "bias");
      require_shape(*bias, "bias", {p.out_channels});
    }
    T* y_data = output_data<T>(out, "out", output_shape(p));
    py::gil_scoped_release release;
    if (has_padding(padding) && !all_finite(w_data, packed.shape(0))) {
      Conv2dProblem q = p;
      const std::vector<T> xp = padded_input(q, padding, x_data);
      k.conv2d_prepacked(q, xp.data(), w_data, b_data, y_data, num_threads);
      return;
    }
    k.conv2d_prepacked(p, x_data, w_data, b_data, y_data, num_threads);
  });
}

}  // namespace

void register_conv(py::module_& m) {
  m.def("conv2d_pack", &conv2d_pack, py::arg("weight"), py::arg("groups"), py::arg("layout"),
        "Pack weight for the active ISA's conv2d kernels; returns (packed, isa).");
  m.def("conv2d_prepacked", &conv2d_prepacked, py::arg("x"), py::arg("packed"), py::arg("isa"),
        py::arg("weight_shape"), py::arg("bias"), py::arg("out"), py::arg("stride"), py::arg("padding"),
        py::arg("dilation"), py::arg("groups"), py::arg("layout"), py::arg("num_threads"),
        "conv2d with weights from conv2d_pack (which must match weight_shape, groups, layout and the ISA).");
  m.def("conv2d", &conv2d, py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("out"), py::arg("stride"),
        py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("layout"), py::arg("num_threads"),
        "Direct 2-D convolution into out. padding is (top, bottom, left, right); layout 0 = NCHW, 1 = NHWC.");
  m.def("conv2d_backward_input", &conv2d_backward_input, py::arg("grad_out"), py::arg("weight"),
        py::arg("grad_x"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"),
        py::arg("layout"), py::arg("num_threads"),
        "Gradient of conv2d with respect to its input, written into grad_x (which gives the input shape).");
  m.def("conv2d_backward_weight", &conv2d_backward_weight, py::arg("grad_out"), py::arg("x"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"), py::arg("layout"), py::arg("num_threads"),
        "Gradients of conv2d with respect to weight and (if grad_bias is given) bias.");
}

}  // namespace convpool::bindings
