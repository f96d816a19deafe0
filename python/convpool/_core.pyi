from typing import List, Optional, Tuple

import numpy as np

__version__: str
openmp: bool

def compiled_isas() -> List[str]: ...
def supported_isas() -> List[str]: ...
def active_isa() -> str: ...
def set_isa(name: str) -> None: ...
def default_num_threads() -> int: ...
def output_size(
    in_size: int, kernel: int, stride: int, dilation: int, pad_before: int, pad_after: int, ceil_mode: bool
) -> int: ...
def same_padding(in_size: int, kernel: int, stride: int, dilation: int, lower: bool) -> Tuple[int, int]: ...
def dilated_extent(kernel: int, dilation: int) -> int: ...
def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray],
    out: np.ndarray,
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    groups: int,
    layout: int,
    num_threads: int,
) -> None: ...
def pool2d(
    reduction: str,
    x: np.ndarray,
    out: np.ndarray,
    indices: Optional[np.ndarray],
    kernel: Tuple[int, int],
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int,
    norm_type: float,
    layout: int,
    num_threads: int,
) -> None: ...
def adaptive_pool2d(
    reduction: str,
    x: np.ndarray,
    out: np.ndarray,
    indices: Optional[np.ndarray],
    output_size: Tuple[int, int],
    layout: int,
    num_threads: int,
) -> None: ...
def min_parallel_work() -> int: ...
def set_min_parallel_work(work: int) -> None: ...
def cache_resident_bytes() -> int: ...
def set_cache_resident_bytes(bytes: int) -> None: ...
def flush_denormals() -> bool: ...
def set_flush_denormals(flush: bool) -> None: ...
def fma_probe(iterations: int, num_threads: int) -> float: ...
def conv2d_backward_input(
    grad_out: np.ndarray,
    weight: np.ndarray,
    grad_x: np.ndarray,
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    groups: int,
    layout: int,
    num_threads: int,
) -> None: ...
def conv2d_backward_weight(
    grad_out: np.ndarray,
    x: np.ndarray,
    grad_weight: np.ndarray,
    grad_bias: Optional[np.ndarray],
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    groups: int,
    layout: int,
    num_threads: int,
) -> None: ...
def max_pool2d_backward(
    grad_out: np.ndarray, indices: np.ndarray, grad_x: np.ndarray, layout: int, num_threads: int
) -> None: ...
def pool2d_backward(
    reduction: str,
    grad_out: np.ndarray,
    x: Optional[np.ndarray],
    y: Optional[np.ndarray],
    grad_x: np.ndarray,
    kernel: Tuple[int, int],
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: int,
    norm_type: float,
    layout: int,
    num_threads: int,
) -> None: ...
def adaptive_avg_pool2d_backward(grad_out: np.ndarray, grad_x: np.ndarray, layout: int, num_threads: int) -> None: ...
def conv2d_pack(weight: np.ndarray, groups: int, layout: int) -> Tuple[np.ndarray, str]: ...
def conv2d_prepacked(
    x: np.ndarray,
    packed: np.ndarray,
    isa: str,
    weight_shape: Tuple[int, int, int, int],
    bias: Optional[np.ndarray],
    out: np.ndarray,
    stride: Tuple[int, int],
    padding: Tuple[int, int, int, int],
    dilation: Tuple[int, int],
    groups: int,
    layout: int,
    num_threads: int,
) -> None: ...
