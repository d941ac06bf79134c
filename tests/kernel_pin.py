"""Import `affect`, compute with torch, and print which kernels torch chose and what `affect` warned.

`python -m tests.kernel_pin` (run by tests/test_reproducible.py, natively and under `qemu-x86_64 -cpu
SandyBridge`, an Intel processor with AVX but no AVX2 and no FMA). torch takes `ATEN_CPU_CAPABILITY=avx2`
without checking the processor, so pinning it there stops the first vectorised operation with "Illegal
instruction". Prints one JSON object {"capability": ATen's, "aten": the variable as affect left it,
"warnings": what affect.exact warned on import (not other libraries' warnings), "sum": a convolution's and an
exponential's sum}.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    from affect import exact  # importing affect pins torch's kernels where the processor allows

import torch


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, 32, 32, generator=generator)
    weight = torch.randn(8, 3, 3, 3, generator=generator)
    total = torch.nn.functional.conv2d(image, weight).sum() + image.exp().sum()
    print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(),
                      "aten": os.environ.get("ATEN_CPU_CAPABILITY"),
                      "warnings": [str(w.message) for w in caught if Path(w.filename) == Path(exact.__file__)],
                      "sum": float(total)}))


if __name__ == "__main__":
    main()
