// Pooling entry points: build the window tables, check the arrays, release the
// GIL, call the active kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>

#include "arrays.hpp"
#include "convpool/dispatch.hpp"
#include "convpool/shape.hpp"

namespace convpool::bindings {

namespace {

template <class T>
MaxPool2dFn<T> max_kernel(const KernelTable& t);
template <>
MaxPool2dFn<float> max_kernel<float>(const KernelTable& t) { return t.f32.max_pool2d; }
template <>
MaxPool2dFn<double> max_kernel<double>(const KernelTable& t) { return t.f64.max_pool2d; }
template <>
MaxPool2dFn<int8_t> max_kernel<int8_t>(const KernelTable& t) { return t.max_pool2d_i8; }
template <>
MaxPool2dFn<uint8_t> max_kernel<uint8_t>(const KernelTable& t) { return t.max_pool2d_u8; }
template <>
MaxPool2dFn<int16_t> max_kernel<int16_t>(const KernelTable& t) { return t.max_pool2d_i16; }
template <>
MaxPool2dFn<uint16_t> max_kernel<uint16_t>(const KernelTable& t) { return t.max_pool2d_u16; }
template <>
MaxPool2dFn<int32_t> max_kernel<int32_t>(const KernelTable& t) { return t.max_pool2d_i32; }
template <>
MaxPool2dFn<uint32_t> max_kernel<uint32_t>(const KernelTable& t) { return t.max_pool2d_u32; }
template <>
MaxPool2dFn<int64_t> max_kernel<int64_t>(const KernelTable& t) { return t.max_pool2d_i64; }
template <>
MaxPool2dFn<uint64_t> max_kernel<uint64_t>(const KernelTable& t) { return t.max_pool2d_u64; }

enum class Reduction { max, avg, lp };

Reduction parse_reduction(const std::string& name) {
  if (name == "max") return Reduction::max;
  if (name == "avg") return Reduction::avg;
  if (name == "lp") return Reduction::lp;
  throw py::value_error("reduction: expected 'max', 'avg' or 'lp', got '" + name + "'");
}

struct PoolCall {
  Reduction reduction;
  const py::array& x;
  py::array& out;
  std::optional<py::array>& indices;
  PoolOptions options;
  int num_threads;
};

template <class T>
void run_max(const PoolCall& c, const Pool2dProblem& p, const std::vector<int64_t>& out_shape) {
  const T* x_data = input_data<T>(c.x, "x");
  T* y_data = output_data<T>(c.out, "out", out_shape);
  int64_t* i_data = c.indices ? output_data<int64_t>(*c.indices, "indices", out_shape) : nullptr;
  const MaxPool2dFn<T> kernel = max_kernel<T>(active_kernels());
  py::gil_scoped_release release;
  kernel(p, x_data, y_data, i_data, c.num_threads);
}

template <class T>
void run_sum(const PoolCall& c, const Pool2dProblem& p, const std::vector<int64_t>& out_shape) {
  if (c.indices) throw py::value_error("indices: only max pooling returns indices");
  const T* x_data = input_data<T>(c.x, "x");
  T* y_data = output_data<T>(c.out, "out", out_shape);
  const FloatKernels<T>& k = float_kernels<T>();
  const SumPool2dFn<T> kernel = c.reduction == Reduction::avg ? k.avg_pool2d : k.lp_pool2d;
  py::gil_scoped_release release;
  kernel(p, x_data, y_data, c.options, c.num_threads);
}

void dispatch(const PoolCall& c, const Pool2dProblem& p) {
  checked_mul(checked_mul(checked_mul(p.batch, p.channels, "output size"), p.rows.out_size, "output size"),
              p.cols.out_size, "output size");
  const auto out_shape = shape_in_layout(p.layout, p.batch, p.channels, p.rows.out_size, p.cols.out_size);
  const py::dtype dt = c.x.dtype();
  if (dt.is(py::dtype::of<float>())) {
    c.reduction == Reduction::max ? run_max<float>(c, p, out_shape) : run_sum<float>(c, p, out_shape);
    return;
  }
  if (dt.is(py::dtype::of<double>())) {
    c.reduction == Reduction::max ? run_max<double>(c, p, out_shape) : run_sum<double>(c, p, out_shape);
    return;
  }
  if (c.reduction != Reduction::max) {
    throw py::type_error("x: expected dtype float32 or float64, got " + std::string(py::str(dt)));
  }
  if (dt.is(py::dtype::of<int8_t>())) return run_max<int8_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<uint8_t>())) return run_max<uint8_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<int16_t>())) return run_max<int16_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<uint16_t>())) return run_max<uint16_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<int32_t>())) return run_max<int32_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<uint32_t>())) return run_max<uint32_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<int64_t>())) return run_max<int64_t>(c, p, out_shape);
  if (dt.is(py::dtype::of<uint64_t>())) return run_max<uint64_t>(c, p, out_shape);
  throw py::type_error("x: expected a float or integer dtype, got " + std::string(py::str(dt)));
}

PoolOptions make_options(bool count_include_pad, int64_t divisor_override, double norm_type) {
  require_non_negative(divisor_override, "divisor_override");
  if (!(norm_type > 0.0) || norm_type == std::numeric_limits<double>::infinity()) {
    throw py::value_error("norm_type: expected a positive finite number");
  }
  PoolOptions o;
  o.count_include_pad = count_include_pad;
  o.divisor_override = divisor_override;
  o.norm_type = norm_type;
  return o;
}

struct WindowAxes {
  PoolAxisTable rows, cols;
};

WindowAxes window_axes(const Dims& d, std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride,
                       std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation, bool ceil_mode) {
  const int64_t in[2] = {d.h, d.w};
  PoolAxisTable axes[2];
  for (int a = 0; a < 2; ++a) {
    const int64_t before = padding[2 * a], after = padding[2 * a + 1];
    const int64_t extent = dilated_extent(kernel[a], dilation[a]);
    if (before >= extent || after >= extent) {
      throw py::value_error("padding: each pad must be smaller than the dilated kernel extent " +
                            std::to_string(extent));
    }
    const int64_t out_size = output_size(in[a], kernel[a], stride[a], dilation[a], before, after, ceil_mode);
    axes[a] = make_window_axis(in[a], out_size, kernel[a], stride[a], dilation[a], before, after);
  }
  return {std::move(axes[0]), std::move(axes[1])};
}

Pool2dProblem pool_problem(const Dims& d, const PoolAxisTable& rows, const PoolAxisTable& cols, Layout layout) {
  Pool2dProblem p;
  p.batch = d.n;
  p.channels = d.c;
  p.rows = rows.view();
  p.cols = cols.view();
  p.layout = layout;
  return p;
}

void pool2d(const std::string& reduction, const py::array& x, py::array& out, std::optional<py::array> indices,
            std::array<int64_t, 2> kernel, std::array<int64_t, 2> stride, std::array<int64_t, 4> padding,
            std::array<int64_t, 2> dilation, bool ceil_mode, bool count_include_pad, int64_t divisor_override,
            double norm_type, int layout_code, int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Dims d = dims_of(x, layout);
  const WindowAxes axes = window_axes(d, kernel, stride, padding, dilation, ceil_mode);
  dispatch({parse_reduction(reduction), x, out, indices, make_options(count_include_pad, divisor_override, norm_type),
            num_threads},
           pool_problem(d, axes.rows, axes.cols, layout));
}

void adaptive_pool2d(const std::string& reduction, const py::array& x, py::array& out,
                     std::optional<py::array> indices, std::array<int64_t, 2> output_size, int layout_code,
                     int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Dims d = dims_of(x, layout);
  const PoolAxisTable rows = make_adaptive_axis(d.h, output_size[0]);
  const PoolAxisTable cols = make_adaptive_axis(d.w, output_size[1]);
  const Reduction r = parse_reduction(reduction);
  if (r == Reduction::lp) throw py::value_error("reduction: adaptive pooling is 'max' or 'avg'");
  dispatch({r, x, out, indices, make_options(false, 0, 2.0), num_threads}, pool_problem(d, rows, cols, layout));
}

void max_pool2d_backward(const py::array& grad_y, const py::array& indices, py::array& grad_x, int layout_code,
                         int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Dims in = dims_of(grad_x, layout);
  const Dims out = dims_of(grad_y, layout);
  if (out.n != in.n || out.c != in.c) {
    throw py::value_error("grad_out: batch and channels " + shape_string({out.n, out.c}) +
                          " do not match the input's " + shape_string({in.n, in.c}));
  }
  const auto out_shape = shape_of(grad_y);
  const int64_t* idx = input_data<int64_t>(indices, "indices");
  require_shape(indices, "indices", out_shape);
  const int64_t plane = checked_mul(in.h, in.w, "input size");
  Pool2dProblem p;
  p.batch = in.n;
  p.channels = in.c;
  p.rows.in_size = in.h;
  p.cols.in_size = in.w;
  p.rows.out_size = out.h;
  p.cols.out_size = out.w;
  p.layout = layout;
  bool all_in_range = true;
  with_float_type(grad_y, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    const T* gy = input_data<T>(grad_y, "grad_out");
    T* gx = output_data<T>(grad_x, "grad_x", shape_of(grad_x));
    const MaxPool2dBackwardFn<T> kernel = float_kernels<T>().max_pool2d_backward;
    py::gil_scoped_release release;
    all_in_range = kernel(p, gy, idx, gx, num_threads);
  });
  if (all_in_range) return;
  // Indices come from the caller. The kernel checks each one before it is used as
  // an address and skips those out of range; name the first of them.
  const int64_t count = static_cast<int64_t>(indices.size());
  for (int64_t i = 0; i < count; ++i) {
    if (idx[i] < -1 || idx[i] >= plane) {
      throw py::value_error("indices: " + std::to_string(idx[i]) + " is outside [-1, " + std::to_string(plane) +
                            ") for an input of " + std::to_string(in.h) + "x" + std::to_string(in.w));
    }
  }
  throw std::logic_error("max_pool2d_backward: the kernel reported an index out of range, but none is");
}

void run_sum_backward(Reduction reduction, const Pool2dProblem& p, const PoolAxisTable& rows,
                      const PoolAxisTable& cols, const py::array& grad_y, const std::optional<py::array>& x,
                      const std::optional<py::array>& y, py::array& grad_x, const PoolOptions& options,
                      int num_threads) {
  const auto out_shape = shape_in_layout(p.layout, p.batch, p.channels, p.rows.out_size, p.cols.out_size);
  const PoolAxisInverseTable row_inv = invert_axis(rows);
  const PoolAxisInverseTable col_inv = invert_axis(cols);
  if (reduction == Reduction::lp && (!x || !y)) throw py::value_error("lp pooling backward needs x and y");
  with_float_type(grad_y, "grad_out", [&](auto zero) {
    using T = decltype(zero);
    const T* gy = input_data<T>(grad_y, "grad_out");
    require_shape(grad_y, "grad_out", out_shape);
    const T* x_data = nullptr;
    const T* y_data = nullptr;
    if (reduction == Reduction::lp) {
      x_data = input_data<T>(*x, "x");
      require_shape(*x, "x", shape_of(grad_x));
      y_data = input_data<T>(*y, "y");
      require_shape(*y, "y", out_shape);
    }
    T* gx = output_data<T>(grad_x, "grad_x", shape_of(grad_x));
    const SumPool2dBackwardFn<T> kernel = reduction == Reduction::lp ? float_kernels<T>().lp_pool2d_backward
                                                                     : float_kernels<T>().avg_pool2d_backward;
    const PoolAxisInverse ri = row_inv.view(), ci = col_inv.view();
    py::gil_scoped_release release;
    kernel(p, ri, ci, gy, x_data, y_data, gx, options, num_threads);
  });
}

void pool2d_backward(const std::string& reduction, const py::array& grad_y, std::optional<py::array> x,
                     std::optional<py::array> y, py::array& grad_x, std::array<int64_t, 2> kernel,
                     std::array<int64_t, 2> stride, std::array<int64_t, 4> padding, std::array<int64_t, 2> dilation,
                     bool ceil_mode, bool count_include_pad, int64_t divisor_override, double norm_type,
                     int layout_code, int num_threads) {
  const Reduction r = parse_reduction(reduction);
  if (r == Reduction::max) throw py::value_error("reduction: use max_pool2d_backward for max pooling");
  const Layout layout = parse_layout(layout_code);
  const Dims d = dims_of(grad_x, layout);
  const WindowAxes axes = window_axes(d, kernel, stride, padding, dilation, ceil_mode);
  run_sum_backward(r, pool_problem(d, axes.rows, axes.cols, layout), axes.rows, axes.cols, grad_y, x, y, grad_x,
                   make_options(count_include_pad, divisor_override, norm_type), num_threads);
}

void adaptive_avg_pool2d_backward(const py::array& grad_y, py::array& grad_x, int layout_code, int num_threads) {
  const Layout layout = parse_layout(layout_code);
  const Dims d = dims_of(grad_x, layout);
  const Dims out = dims_of(grad_y, layout);
  const PoolAxisTable rows = make_adaptive_axis(d.h, out.h);
  const PoolAxisTable cols = make_adaptive_axis(d.w, out.w);
  run_sum_backward(Reduction::avg, pool_problem(d, rows, cols, layout), rows, cols, grad_y, std::nullopt,
                   std::nullopt, grad_x, make_options(false, 0, 2.0), num_threads);
}

}  // namespace

void register_pool(py::module_& m) {
  m.def("pool2d", &pool2d, py::arg("reduction"), py::arg("x"), py::arg("out"), py::arg("indices"),
        py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("ceil_mode"),
        py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("norm_type"), py::arg("layout"),
        py::arg("num_threads"),
        "Window pooling ('max', 'avg' or 'lp') into out (and indices for max). padding is (top, bottom, left, "
        "right); divisor_override 0 means none.");
  m.def("adaptive_pool2d", &adaptive_pool2d, py::arg("reduction"), py::arg("x"), py::arg("out"),
        py::arg("indices"), py::arg("output_size"), py::arg("layout"), py::arg("num_threads"),
        "Adaptive pooling ('max' or 'avg') into out (and indices for max).");
  m.def("max_pool2d_backward", &max_pool2d_backward, py::arg("grad_out"), py::arg("indices"), py::arg("grad_x"),
        py::arg("layout"), py::arg("num_threads"),
        "Route grad_out to the input positions recorded in indices (any max pooling), into grad_x.");
  m.def("pool2d_backward", &pool2d_backward, py::arg("reduction"), py::arg("grad_out"), py::arg("x"), py::arg("y"),
        py::arg("grad_x"), py::arg("kernel"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("ceil_mode"), py::arg("count_include_pad"), py::arg("divisor_override"), py::arg("norm_type"),
        py::arg("layout"), py::arg("num_threads"),
        "Backward of 'avg' or 'lp' window pooling into grad_x; lp needs the forward x and y.");
  m.def("adaptive_avg_pool2d_backward", &adaptive_avg_pool2d_backward, py::arg("grad_out"), py::arg("grad_x"),
        py::arg("layout"), py::arg("num_threads"), "Backward of adaptive average pooling into grad_x.");
}

}  // namespace convpool::bindings
