"""Numbers that come out the same on every x86-64 machine, whatever its instruction set.

The libraries pick their kernels at run time from the processor (numpy's AVX-512 / AVX2 loops for sin, exp
and log, OpenBLAS's per-core matrix kernels, ONNX Runtime's MLAS, oneDNN, OpenCV's SIMD paths), and those
kernels round differently in the last bits. Two rules keep such noise out of stored bytes:
- a value that drives anything downstream (a keypoint before an alignment fit, a landmark before a mask is
  drawn, an affine matrix before a warp, a stored float column) is put on a grid first (`on_grid`): noise of
  a few ulps then changes it only when the value lies within that noise of a grid boundary, with odds of
  noise / step (about 1e-13 for float64 noise on a 2^-20 grid, about 1e-4 for ONNX Runtime's float32
  keypoint noise on a 1/8-pixel grid);
- a fit is computed in closed form with additions, multiplications, divisions and square roots alone, in a
  fixed order (`similarity`, `apply_affine`): IEEE 754 makes those bit-exact on any processor, unlike a
  LAPACK solve or a BLAS product whose kernel depends on the processor.
A third rule holds for torch: a sum split across threads rounds differently with the number of threads, so
training, inference and the spectrograms run at a thread count fixed by their params (`torch_threads`), never
at the machine's core count or whatever an earlier step of the same process set.
Two more hold for torch's models on processors with AVX2 and FMA: training and inference pick their kernels by
a fixed instruction set, not the processor's (`pin_cpu_kernels`: AVX2 for ATen and oneDNN, MKL's vendor-neutral
code path), and Adam takes its fused step (`affect.train.fit`), whose square root is the exact instruction
where the unfused step's is MKL's, which rounds differently on AMD processors; then an AVX-512 machine
computes what an AVX2 one does and an AMD one what an Intel one does, bit for bit (tests/test_reproducible.py,
under qemu). A processor without AVX2 computes with torch's default kernels, and its bits are its own.
Grids are powers of two, so a value on the grid is exact in binary and products of such values stay exact.
"""

from __future__ import annotations

import os
import platform
import sys
import warnings
from contextlib import contextmanager
from typing import Iterator

import numpy as np

MATRIX_STEP = 2.0 ** -20   # grid of affine matrix entries (OpenCV warps in 1/1024 px: products stay exact)


def on_grid(values, step: float) -> np.ndarray:
    """float64 `values` rounded to the nearest multiple of `step` (a power of two; ties to even)."""
    return np.round(np.asarray(values, np.float64) / step) * step


# torch's CPU kernel choices, pinned: each library reads its variable once, at its first computation.
CPU_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",    # torch's own vectorised kernels (default: the best the processor has)
    "ONEDNN_MAX_CPU_ISA": "AVX2",     # oneDNN (convolutions): its AVX-512 kernels block and round differently
    "MKL_CBWR": "COMPATIBLE",         # MKL (matrix products): the code path every x86-64 processor, any vendor, runs
}
NATIVE = "AFFECT_NATIVE_KERNELS"  # set to 1: leave torch's kernels to the processor (faster, machine-dependent bits)
NO_AVX2 = ("this processor has no AVX2 and FMA: torch runs its default kernels, so training and inference here "
           "do not give the bits of AVX2 machines (dvc.lock's train outputs, metrics.json); the preprocessing "
           "bytes are the same")


def has_avx2_fma() -> bool:
    """Whether this processor has AVX2 and FMA3 (its CPUID, as numpy read it at import), which torch's AVX2
    kernels need."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:  # numpy 1.26
        from numpy.core._multiarray_umath import __cpu_features__
    return bool(__cpu_features__.get("AVX2") and __cpu_features__.get("FMA3"))


def pin_cpu_kernels() -> None:
    """Make torch compute the same bits on every x86-64 processor with AVX2, whatever else it has (AVX-512)
    and whoever made it: put `CPU_KERNELS` in this process's environment (and so its children's). Importing
    `affect` calls it, so every stage, `affect predict` and the tests run pinned; torch reads the variables at
    its first computation, so a program that computes with torch before importing `affect` keeps the
    processor's kernels (a warning says so). Other processors (ARM) are left as they are, and so is every
    processor when `AFFECT_NATIVE_KERNELS=1` (the processor's fastest kernels; its bits are then that
    machine's). An x86-64 processor without AVX2 and FMA (Intel before 2013, AMD before 2015, a virtual
    machine that hides them) keeps torch's default kernels, since torch takes `ATEN_CPU_CAPABILITY=avx2`
    without checking and would stop at its first AVX2 instruction; a warning says that its bits are its own.
    Its cost in step time: BENCHMARKS.md."""
    if platform.machine().lower() not in ("x86_64", "amd64") or os.environ.get(NATIVE) == "1":
        return
    if not has_avx2_fma():
        os.environ.update({key: value for key, value in CPU_KERNELS.items() if key != "ATEN_CPU_CAPABILITY"})
        warnings.warn(NO_AVX2)
        return
    os.environ.update(CPU_KERNELS)
    torch = sys.modules.get("torch")
    if torch is not None and torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        warnings.warn("torch computed before affect was imported, with the processor's AVX-512 kernels: its bits "
                      "are this machine's; import affect first for bits that any x86-64 machine reproduces")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Inside the block torch computes on `n` CPU threads (0: all cores, the fastest, but the last bits then
    depend on the machine); the caller's thread count is back afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n or len(os.sched_getaffinity(0)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 2) float64 points mapped by a (2, 3) affine matrix, elementwise (no BLAS: the same bits everywhere)."""
    m = np.asarray(matrix, np.float64)
    p = np.asarray(points, np.float64).reshape(-1, 2)
    x, y = p[:, 0], p[:, 1]
    return np.stack([m[0, 0] * x + m[0, 1] * y + m[0, 2], m[1, 0] * x + m[1, 1] * y + m[1, 2]], 1)


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """(2, 3) least-squares similarity (rotation, uniform scale, translation) taking `src` points onto `dst`.

    The closed form of Umeyama's estimate in two dimensions: with centred points p (source) and q (target),
    a = sum(p . q) / sum|p|^2 and b = sum(p x q) / sum|p|^2 give the matrix [[a, -b], [b, a]]; the
    translation maps the source centroid onto the target's. Entries are put on MATRIX_STEP.
    """
    p = np.asarray(src, np.float64).reshape(-1, 2)
    q = np.asarray(dst, np.float64).reshape(-1, 2)
    p_mean, q_mean = p.mean(0), q.mean(0)
    pc, qc = p - p_mean, q - q_mean
    norm = (pc[:, 0] * pc[:, 0] + pc[:, 1] * pc[:, 1]).sum()
    a = (pc[:, 0] * qc[:, 0] + pc[:, 1] * qc[:, 1]).sum() / norm
    b = (pc[:, 0] * qc[:, 1] - pc[:, 1] * qc[:, 0]).sum() / norm
    a, b = on_grid(a, MATRIX_STEP), on_grid(b, MATRIX_STEP)
    tx = on_grid(q_mean[0] - (a * p_mean[0] - b * p_mean[1]), MATRIX_STEP)
    ty = on_grid(q_mean[1] - (b * p_mean[0] + a * p_mean[1]), MATRIX_STEP)
    return np.array([[a, -b, tx], [b, a, ty]], np.float64)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """(2, 3) inverse of a (2, 3) affine matrix, in closed form."""
    (a, b, c), (d, e, f) = np.asarray(matrix, np.float64)
    det = a * e - b * d
    return np.array([[e / det, -b / det, (b * f - c * e) / det],
                     [-d / det, a / det, (c * d - a * f) / det]])


def _reflect(index: np.ndarray, n: int) -> np.ndarray:
    """Indices folded back into 0..n-1 as OpenCV's BORDER_REFLECT does (fedcba|abcdef|fedcba)."""
    index = np.mod(index, 2 * n)
    return np.where(index >= n, 2 * n - 1 - index, index)


def remap(image: np.ndarray, map_x: np.ndarray, map_y: np.ndarray, border: str = "constant") -> np.ndarray:
    """`image` (H, W, C) sampled bilinearly at (map_x, map_y) (pixel centres at integers), as float32 (h, w, C).

    What cv2.remap(INTER_LINEAR) does, in elementwise float arithmetic: OpenCV's SIMD and plain paths
    round their fixed-point weights differently and give images one level apart. `border`: "constant"
    (zero outside) or "reflect" (BORDER_REFLECT).
    """
    height, width = image.shape[:2]
    channels = image.reshape(height, width, -1).shape[2]
    x0, y0 = np.floor(map_x), np.floor(map_y)
    fx, fy = (map_x - x0).astype(np.float32)[..., None], (map_y - y0).astype(np.float32)[..., None]
    if border == "reflect":
        flat = image.reshape(height * width, channels)
        x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
        xs = (_reflect(x0, width), _reflect(x0 + 1, width))
        ys = (_reflect(y0, height) * width, _reflect(y0 + 1, height) * width)
    else:     # a two-pixel frame of zeros; points further out are clipped onto it
        padded = np.zeros((height + 4, width + 4, channels), image.dtype)
        padded[2:-2, 2:-2] = image.reshape(height, width, channels)
        flat = padded.reshape(-1, channels)
        x0 = np.clip(x0, -2, width).astype(np.int64) + 2
        y0 = np.clip(y0, -2, height).astype(np.int64) + 2
        xs, ys = (x0, x0 + 1), (y0 * (width + 4), (y0 + 1) * (width + 4))

    def at(row: np.ndarray, column: np.ndarray) -> np.ndarray:
        return flat.take(row + column, axis=0).astype(np.float32)

    top = at(ys[0], xs[0]) * (1 - fx) + at(ys[0], xs[1]) * fx
    bottom = at(ys[1], xs[0]) * (1 - fx) + at(ys[1], xs[1]) * fx
    return top * (1 - fy) + bottom * fy


def warp_affine(image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], border: str = "constant") -> np.ndarray:
    """uint8 `image` warped by the (2, 3) `matrix` (source -> output pixels) into `size` (W, H), bilinear:
    cv2.warpAffine's result up to rounding, the same bits on every machine (see `remap`)."""
    width, height = size
    inverse = invert_affine(matrix)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    map_x = inverse[0, 0] * xs + inverse[0, 1] * ys + inverse[0, 2]
    map_y = inverse[1, 0] * xs + inverse[1, 1] * ys + inverse[1, 2]
    out = remap(image, map_x, map_y, border)
    return np.clip(np.round(out), 0, 255).astype(np.uint8).reshape(height, width, *image.shape[2:])
