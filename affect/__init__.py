"""affect: semi-supervised facial affect analysis (multi-task Mean Teacher over TSAV)."""

__version__ = "0.1.0"

from affect.exact import pin_cpu_kernels

pin_cpu_kernels()  # torch's CPU kernels by instruction set, not by processor: the same bits on any x86-64 machine
