// Build and runtime facts, ISA selection, threads, and the shape arithmetic of
// convpool/shape.hpp for the Python layer.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "convpool/dispatch.hpp"
#include "convpool/shape.hpp"

namespace convpool::bindings {

namespace py = pybind11;

void register_runtime(py::module_& m) {
  m.attr("__version__") = CONVPOOL_VERSION;
#ifdef _OPENMP
  m.attr("openmp") = true;
#else
  m.attr("openmp") = false;
#endif
  m.def("compiled_isas", &compiled_isas, "ISAs compiled into this build, lowest first.");
  m.def("supported_isas", &supported_isas, "Compiled ISAs this CPU can run, lowest first.");
  m.def("active_isa", [] { return std::string(active_kernels().isa); }, "The ISA whose kernels are in use.");
  m.def(
      "set_isa", [](const std::string& name) { set_active_isa(name); }, py::arg("name"),
      "Use the kernels of the named ISA (must be compiled in and supported by this CPU).");
  m.def(
      "default_num_threads",
      [] {
#ifdef _OPENMP
        return omp_get_max_threads();  // honours OMP_NUM_THREADS and the CPU affinity mask
#else
        return 1;
#endif
      },
      "Threads used when the caller does not choose (OpenMP's default).");
  m.def("min_parallel_work", &min_parallel_work,
        "Smallest work (element operations) per thread; smaller calls use fewer threads.");
  m.def(
      "set_min_parallel_work", [](int64_t work) { set_min_parallel_work(work); }, py::arg("work"),
      "Set the threading grain (0: always use every requested thread; for tests).");
  m.def("cache_resident_bytes", &cache_resident_bytes,
        "Input + output bytes up to which a call is taken to run from cache (chooses some kernels).");
  m.def(
      "set_cache_resident_bytes", [](int64_t bytes) { set_cache_resident_bytes(bytes); }, py::arg("bytes"),
      "Set cache_resident_bytes (for tests and tuning; negative means 0).");
  m.def("flush_denormals", &flush_denormals, "Whether computing kernels flush denormals to zero (FTZ/DAZ).");
  m.def(
      "set_flush_denormals", [](bool flush) { set_flush_denormals(flush); }, py::arg("flush"),
      "Turn the kernels' denormal flushing on or off (process-wide).");
  m.def(
      "fma_probe",
      [](int64_t iterations, int num_threads) {
        require_positive(iterations, "iterations");
        require_positive(num_threads, "num_threads");
        const FmaProbeFn probe = active_kernels().fma_probe;
        float sink = 0.0f;
        double flops = 0.0;
        {
          py::gil_scoped_release release;
          flops = probe(iterations, num_threads, &sink);
        }
        return flops;
      },
      py::arg("iterations"), py::arg("num_threads"),
      "Run a loop of independent FP32 vector FMAs with the active ISA; returns the FLOPs done. "
      "Time the call to measure the machine's FMA peak.");
  m.def("output_size", &output_size, py::arg("in_size"), py::arg("kernel"), py::arg("stride"),
        py::arg("dilation"), py::arg("pad_before"), py::arg("pad_after"), py::arg("ceil_mode"),
        "Number of windows along one axis (see docs/semantics.md).");
  m.def("same_padding", &same_padding, py::arg("in_size"), py::arg("kernel"), py::arg("stride"),
        py::arg("dilation"), py::arg("lower"),
        "(before, after) padding of TensorFlow/ONNX SAME_UPPER, or SAME_LOWER if lower.");
  m.def("dilated_extent", &dilated_extent, py::arg("kernel"), py::arg("dilation"),
        "dilation * (kernel - 1) + 1");
}

}  // namespace convpool::bindings
