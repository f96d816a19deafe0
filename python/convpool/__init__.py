"""convpool: fast strided convolution and pooling kernels for NumPy arrays.

C++ kernels (SIMD chosen at run time, OpenMP threads) behind a small NumPy API whose
semantics follow PyTorch, TensorFlow and ONNX; see docs/semantics.md.
"""

from __future__ import annotations

try:
    from . import _core
except ImportError as exc:  # pragma: no cover - depends on how convpool was installed
    raise ImportError(
        "convpool's compiled module (convpool._core) could not be imported. convpool must be "
        "installed with pip (`pip install .` in a source checkout) so that its C++ part is "
        "built; importing it from the source tree does not work. "
        f"Original error: {exc}"
    ) from exc

from ._config import _apply_isa_request

_apply_isa_request()

from . import layers, reference  # noqa: E402
from .backward import (  # noqa: E402
    adaptive_avg_pool2d_backward,
    adaptive_max_pool2d_backward,
    avg_pool2d_backward,
    conv2d_backward,
    global_avg_pool2d_backward,
    global_max_pool2d_backward,
    lp_pool2d_backward,
    max_pool2d_backward,
)
from ._config import (  # noqa: E402
    get_flush_denormal,
    get_num_threads,
    has_cuda,
    set_flush_denormal,
    set_num_threads,
    show_config,
    threads,
)
from .functional import (  # noqa: E402
    PackedWeight,
    adaptive_avg_pool2d,
    adaptive_max_pool2d,
    avg_pool2d,
    conv2d,
    global_avg_pool2d,
    global_max_pool2d,
    lp_pool2d,
    max_pool2d,
    pack_weight,
)

__version__: str = _core.__version__

__all__ = [
    "__version__",
    "conv2d",
    "pack_weight",
    "PackedWeight",
    "max_pool2d",
    "avg_pool2d",
    "lp_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "conv2d_backward",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "lp_pool2d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward",
    "global_avg_pool2d_backward",
    "global_max_pool2d_backward",
    "get_num_threads",
    "set_num_threads",
    "threads",
    "get_flush_denormal",
    "set_flush_denormal",
    "show_config",
    "has_cuda",
    "layers",
    "reference",
]
