"""Small training experiments built on :mod:`convpool.layers`.

``python -m convpool.experiments pooling-vs-stride`` trains the same small CNN twice
on scikit-learn's 8x8 handwritten digits (upsampled to 16x16, standardised, seeded
train/test split; the data ships with scikit-learn, nothing is downloaded):

* **pool**:   conv 3x3 / stride 1 -> ReLU -> 2x2 max pool, twice;
* **stride**: the same convolutions with stride 2 and no pooling;

both followed by Flatten + Dense(10) (or global average pooling + Dense with
``--head gap``). Both variants have the same parameter shapes and start from the same
initial weights and batch order. It prints, per variant, the parameter count, the
multiply-adds per sample, the median training time per epoch and the final test
accuracy, and plots the learning curves (needs matplotlib).

Needs the ``examples`` extra: ``pip install "convpool[examples]"`` (scikit-learn,
matplotlib).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _validation as v
from .layers import (
    SGD,
    Adam,
    Conv2D,
    Dense,
    Flatten,
    GlobalAvgPool2D,
    MaxPool2D,
    ReLU,
    Sequential,
    softmax_cross_entropy,
)

__all__ = [
    "VariantResult",
    "load_digits_16",
    "build_cnn",
    "train_variant",
    "pooling_vs_stride",
    "main",
]

EXTRA_HINT = 'pip install "convpool[examples]"'
Data = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
VARIANTS = ("pool", "stride")


def _require(module: str, what: str) -> Any:
    """Import ``module`` lazily, with an ImportError that names the extra."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}, which is not installed; install the examples "
            f"extra: {EXTRA_HINT}"
        ) from exc


# ----------------------------------------------------------------------------- data


def load_digits_16(
    seed: int = 0, test_fraction: float = 0.25, layout: str = "NCHW", dtype: Any = np.float32
) -> Data:
    """scikit-learn's 8x8 digits, upsampled to 16x16 (each pixel repeated 2x2),
    standardised with the training set's mean and standard deviation, split with a
    seeded permutation. Returns ``(x_train, y_train, x_test, y_test)``, images in
    ``layout`` with one channel."""
    datasets = _require("sklearn.datasets", "the digits data set (sklearn.datasets.load_digits)")
    digits = datasets.load_digits()
    images8 = np.asarray(digits.images, dtype=np.float64)  # (1797, 8, 8), values 0..16
    labels = np.asarray(digits.target, dtype=np.int64)
    images = np.kron(images8, np.ones((1, 2, 2)))  # (1797, 16, 16): each pixel repeated 2x2
    order = np.random.default_rng(seed).permutation(len(images))
    n_test = int(round(len(images) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    mean, std = images[train].mean(), images[train].std()
    images = (images - mean) / std
    x = images[:, None, :, :] if layout == "NCHW" else images[:, :, :, None]
    x = np.ascontiguousarray(x, dtype=dtype)
    return x[train], labels[train], x[test], labels[test]


# ----------------------------------------------------------------------------- models


def build_cnn(
    variant: str,
    *,
    in_channels: int = 1,
    widths: Sequence[int] = (16, 32),
    image_size: int = 16,
    classes: int = 10,
    head: str = "flatten",
    layout: str = "NCHW",
    seed: int = 0,
    dtype: Any = np.float32,
) -> Sequential:
    """The compared CNN. ``variant="pool"``: 3x3/s1 conv (padding 1) + ReLU + 2x2 max
    pool per stage; ``"stride"``: 3x3/s2 conv (padding 1) + ReLU per stage. Both
    halve the resolution per stage and have identical parameter shapes; with the same
    ``seed`` they start from identical weights (He normal convs, Glorot Dense)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant: expected one of {VARIANTS}, got {variant!r}")
    if head not in ("flatten", "gap"):
        raise ValueError(f"head: expected 'flatten' or 'gap', got {head!r}")
    rng = np.random.default_rng(seed)
    layers: List[Any] = []
    c, size = in_channels, image_size
    for width in widths:
        stride = 2 if variant == "stride" else 1
        layers += [
            Conv2D(
                c, width, 3, stride=stride, padding=1, layout=layout, init="he_normal", rng=rng, dtype=dtype
            ),
            ReLU(),
        ]
        if variant == "pool":
            layers.append(MaxPool2D(2, layout=layout))
        c, size = width, (size + 1) // 2
    if head == "gap":
        layers += [
            GlobalAvgPool2D(layout=layout),
            Flatten(layout=layout),
            Dense(c, classes, rng=rng, dtype=dtype),
        ]
    else:
        layers += [Flatten(layout=layout), Dense(c * size * size, classes, rng=rng, dtype=dtype)]
    return Sequential(*layers)


# ----------------------------------------------------------------------------- training


@dataclass
class VariantResult:
    name: str
    params: int
    macs: int
    train_loss: List[float] = field(default_factory=list)  # mean over the epoch's batches
    test_accuracy: List[float] = field(default_factory=list)
    epoch_seconds: List[float] = field(default_factory=list)  # training time only

    @property
    def median_epoch_seconds(self) -> float:
        return float(np.median(self.epoch_seconds)) if self.epoch_seconds else float("nan")

    @property
    def final_accuracy(self) -> float:
        return self.test_accuracy[-1] if self.test_accuracy else float("nan")


def evaluate(model: Sequential, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Accuracy of ``model`` (in eval mode) on ``(x, y)``."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        logits = model.forward(x[i : i + batch_size])
        correct += int((logits.argmax(axis=1) == y[i : i + batch_size]).sum())
    return correct / len(x)


def train_variant(
    name: str,
    model: Sequential,
    data: Data,
    *,
    epochs: int,
    batch_size: int = 32,
    optimizer: str = "adam",
    lr: Optional[float] = None,
    seed: int = 0,
    log: Optional[Callable[[str], Any]] = None,
) -> VariantResult:
    """Train ``model`` with mini-batches (shuffled by ``seed``) and record the curves."""
    x_train, y_train, x_test, y_test = data
    summary = model.summary(x_train.shape[1:], print_fn=None)
    result = VariantResult(name, summary.total_params, summary.total_macs)
    if optimizer == "adam":
        opt: Any = Adam(model, lr=1e-3 if lr is None else lr)
    else:
        opt = SGD(model, lr=0.05 if lr is None else lr, momentum=0.9)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(x_train))
        losses = []
        start = time.perf_counter()
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            logits = model.forward(x_train[idx])
            loss, grad = softmax_cross_entropy(logits, y_train[idx])
            model.backward(grad, input_grad=False)
            opt.step()
            losses.append(loss)
        result.epoch_seconds.append(time.perf_counter() - start)
        result.train_loss.append(float(np.mean(losses)))
        result.test_accuracy.append(evaluate(model, x_test, y_test))
        if log is not None:
            log(
                f"  {name:<7} epoch {epoch + 1:>3}/{epochs}: train loss {result.train_loss[-1]:.4f}, "
                f"test accuracy {result.test_accuracy[-1]:.4f}, {result.epoch_seconds[-1]:.2f} s"
            )
    return result


def _check_args(epochs: Any, seed: Any, layout: Any, batch_size: Any) -> None:
    v.check_int(epochs, "epochs", 1)
    v.check_int(seed, "seed", 0)
    v.check_int(batch_size, "batch_size", 1)
    v.layout_code(layout)


def pooling_vs_stride(
    *,
    epochs: int = 12,
    seed: int = 0,
    layout: str = "NCHW",
    out: Optional[str] = "pooling_vs_stride.png",
    quick: bool = False,
    batch_size: int = 32,
    optimizer: str = "adam",
    lr: Optional[float] = None,
    head: str = "flatten",
    data: Optional[Data] = None,
    print_fn: Optional[Callable[[str], Any]] = print,
    verbose: bool = True,
) -> Dict[str, VariantResult]:
    """Train the pooling and the strided-convolution variant and compare them.

    ``data`` replaces the digits data set (``(x_train, y_train, x_test, y_test)``,
    images in ``layout``); ``quick`` runs 2 epochs on 600 training images. ``out``
    is the PNG path for the learning curves (None: no plot). Same arguments, same
    numbers: initial weights and batch order come from ``seed`` (only the times
    vary). Returns ``{"pool": VariantResult, "stride": VariantResult}``.
    """
    _check_args(epochs, seed, layout, batch_size)
    if optimizer not in ("adam", "sgd"):
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    say = print_fn if print_fn is not None else (lambda s: None)
    if data is None:
        data = load_digits_16(seed=seed, layout=layout)
        source = "scikit-learn digits, 8x8 upsampled to 16x16"
    else:
        source = "user data"
    if quick:
        epochs = min(epochs, 2)
        data = (data[0][:600], data[1][:600], data[2], data[3])
    x_train = data[0]
    v.require_4d(x_train, "data", layout)
    channels = x_train.shape[3] if layout == "NHWC" else x_train.shape[1]
    size = x_train.shape[1] if layout == "NHWC" else x_train.shape[2]
    classes = int(max(data[1].max(), data[3].max())) + 1

    say(
        f"pooling vs strided convolution: {source}; {len(data[0])} train / {len(data[2])} test images, "
        f"{layout}, {epochs} epochs, batch {batch_size}, {optimizer}, seed {seed}"
    )
    results: Dict[str, VariantResult] = {}
    for variant in VARIANTS:
        model = build_cnn(
            variant,
            in_channels=channels,
            image_size=size,
            classes=classes,
            head=head,
            layout=layout,
            seed=seed,
            dtype=x_train.dtype,
        )
        if verbose:
            say(
                f"\n[{variant}] "
                + (
                    "3x3/s1 conv + ReLU + 2x2 max pool per stage"
                    if variant == "pool"
                    else "3x3/s2 conv + ReLU per stage"
                )
            )
            model.summary(x_train.shape[1:], print_fn=say)
        results[variant] = train_variant(
            variant,
            model,
            data,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            seed=seed,
            log=say if verbose else None,
        )

    say("")
    say(
        f"{'variant':<8} {'params':>8} {'mult-adds/sample':>17} {'s/epoch (median)':>17} {'test accuracy':>14}"
    )
    for r in results.values():
        say(
            f"{r.name:<8} {r.params:>8,} {r.macs:>17,} {r.median_epoch_seconds:>17.3f} {r.final_accuracy:>14.4f}"
        )
    if out is not None:
        try:
            _plot(results, out, title=f"pooling vs stride ({source}, {layout}, seed {seed})")
            say(f"learning curves written to {out}")
        except ImportError as exc:
            say(f"no plot written: {exc}")
    return results


def _plot(results: Dict[str, VariantResult], path: str, title: str) -> None:
    matplotlib = _require("matplotlib", "plotting the learning curves")
    matplotlib.use("Agg")
    plt = _require("matplotlib.pyplot", "plotting the learning curves")
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for r in results.values():
        epochs = np.arange(1, len(r.train_loss) + 1)
        label = (
            f"{r.name} ({r.params:,} params, {r.macs / 1e3:,.0f}k MACs, {r.median_epoch_seconds:.2f} s/epoch)"
        )
        ax_loss.plot(epochs, r.train_loss, marker="o", label=label)
        ax_acc.plot(epochs, r.test_accuracy, marker="o", label=r.name)
    ax_loss.set(xlabel="epoch", ylabel="train loss (mean over batches)", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------- command line


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m convpool.experiments",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="experiment", required=True, metavar="EXPERIMENT")
    p = sub.add_parser("pooling-vs-stride", help="max pooling vs strided convolution on the digits data set")
    p.add_argument("--epochs", type=int, default=12, help="training epochs (default 12)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed for the split, weights and batch order (default 0)"
    )
    p.add_argument("--layout", choices=("NCHW", "NHWC"), default="NCHW")
    p.add_argument("--out", default="pooling_vs_stride.png", help="PNG path for the learning curves")
    p.add_argument("--no-plot", action="store_true", help="do not write the PNG")
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 epochs on 600 training images")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam")
    p.add_argument(
        "--lr", type=float, default=None, help="learning rate (default 1e-3 for Adam, 0.05 for SGD)"
    )
    p.add_argument(
        "--head",
        choices=("flatten", "gap"),
        default="flatten",
        help="classifier head: Flatten + Dense, or global average pooling + Dense",
    )
    p.add_argument("--threads", type=int, default=None, help="convpool threads (default: OMP_NUM_THREADS)")
    p.add_argument("--quiet", action="store_true", help="only print the final table")
    args = parser.parse_args(argv)

    from ._config import set_num_threads

    try:
        _check_args(args.epochs, args.seed, args.layout, args.batch_size)
        if args.threads is not None:
            set_num_threads(args.threads)
        if args.lr is not None and not args.lr > 0:
            raise ValueError(f"lr: expected a positive number, got {args.lr}")
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    try:
        pooling_vs_stride(
            epochs=args.epochs,
            seed=args.seed,
            layout=args.layout,
            out=None if args.no_plot else args.out,
            quick=args.quick,
            batch_size=args.batch_size,
            optimizer=args.optimizer,
            lr=args.lr,
            head=args.head,
            verbose=not args.quiet,
        )
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
