// convpool._core: the private compiled module. Each area registers its functions
// from its own register_*.cpp; the public API is the pure-Python package on top.
#include <pybind11/pybind11.h>

namespace convpool::bindings {
void register_runtime(pybind11::module_& m);
void register_conv(pybind11::module_& m);
void register_pool(pybind11::module_& m);
}  // namespace convpool::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "convpool compiled kernels (private; use the convpool package)";
  convpool::bindings::register_runtime(m);
  convpool::bindings::register_conv(m);
  convpool::bindings::register_pool(m);
}
