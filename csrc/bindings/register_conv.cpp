// conv2d and its backward passes: check the arrays, release the GIL, call the
// active kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>

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
