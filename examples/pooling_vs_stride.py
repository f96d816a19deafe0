"""Downsampling by 2x2 max pooling vs by stride-2 convolution, on scikit-learn's digits.

Trains the same small CNN twice (3x3 convs 1->16->32, then Flatten + Dense 10):
once with stride-1 convolutions each followed by 2x2 max pooling, once with stride-2
convolutions and no pooling. Prints parameters, multiply-adds per sample, median
training time per epoch and test accuracy, and writes the learning curves to a PNG.

    pip install "convpool[examples]"      # scikit-learn and matplotlib
    python examples/pooling_vs_stride.py --epochs 15 --threads 1

Same as ``python -m convpool.experiments pooling-vs-stride``; all options are shared
(``--help``).
"""

import sys

from convpool.experiments import main

if __name__ == "__main__":
    sys.exit(main(["pooling-vs-stride", *sys.argv[1:]]))
