// Checks on arrays handed to _core. The Python layer already validates user input
// with friendlier messages; these checks make the compiled module safe on its own,
// since it can be called directly.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "convpool/dispatch.hpp"
#include "convpool/kernel_types.hpp"

namespace convpool::bindings {

namespace py = pybind11;

inline std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

inline std::vector<int64_t> shape_of(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

inline Layout parse_layout(int layout) {
  if (layout == static_cast<int>(Layout::NCHW)) return Layout::NCHW;
  if (layout == static_cast<int>(Layout::NHWC)) return Layout::NHWC;
  throw py::value_error("layout: expected 0 (NCHW) or 1 (NHWC), got " + std::to_string(layout));
}

inline void require_c_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style)) {
    throw py::value_error(std::string(name) + ": expected a C-contiguous array");
  }
}

inline void require_shape(const py::array& a, const char* name, const std::vector<int64_t>& shape) {
  if (shape_of(a) != shape) {
    throw py::value_error(std::string(name) + ": expected shape " + shape_string(shape) + ", got " +
                          shape_string(shape_of(a)));
  }
}

template <class T>
const T* input_data(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<T>())) {
    throw py::type_error(std::string(name) + ": expected dtype " + std::string(py::str(py::dtype::of<T>())) +
                         ", got " + std::string(py::str(a.dtype())));
  }
  require_c_contiguous(a, name);
  return static_cast<const T*>(a.data());
}

template <class T>
T* output_data(py::array& a, const char* name, const std::vector<int64_t>& shape) {
  input_data<T>(a, name);
  require_shape(a, name, shape);
  if (!a.writeable()) throw py::value_error(std::string(name) + ": array is read-only");
  return static_cast<T*>(a.mutable_data());
}

// (N, C, H, W) whatever the layout.
struct Dims {
  int64_t n, c, h, w;
};

inline Dims dims_of(const py::array& x, Layout layout) {
  if (x.ndim() != 4) {
    throw py::value_error("x: expected a 4-D array, got " + std::to_string(x.ndim()) + "-D");
  }
  const auto s = shape_of(x);
  return layout == Layout::NHWC ? Dims{s[0], s[3], s[1], s[2]} : Dims{s[0], s[1], s[2], s[3]};
}

inline std::vector<int64_t> shape_in_layout(Layout layout, int64_t n, int64_t c, int64_t h, int64_t w) {
  if (layout == Layout::NHWC) return {n, h, w, c};
  return {n, c, h, w};
}

// The active kernels for float or double.
template <class T>
const FloatKernels<T>& float_kernels() {
  if constexpr (std::is_same_v<T, float>) {
    return active_kernels().f32;
  } else {
    return active_kernels().f64;
  }
}

// Calls fn(T{}) for T = float or double by the dtype of `a`; TypeError otherwise.
template <class Fn>
void with_float_type(const py::array& a, const char* name, Fn&& fn) {
  if (a.dtype().is(py::dtype::of<float>())) {
    fn(float{});
  } else if (a.dtype().is(py::dtype::of<double>())) {
    fn(double{});
  } else {
    throw py::type_error(std::string(name) + ": expected dtype float32 or float64, got " +
                         std::string(py::str(a.dtype())));
  }
}

}  // namespace convpool::bindings
