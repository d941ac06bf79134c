"""Training step with torch's CPU kernels pinned (`affect.exact.pin_cpu_kernels`, the default) against the
processor's own (`AFFECT_NATIVE_KERNELS=1`), side by side.

`python -m bench.kernels [steps] [rounds]`: each round times the Mean Teacher step (`bench.train`: TSAV at
params.yaml's width and batch, random tensors of the loader's shapes, fp32) in two fresh processes, one per
choice, since the libraries read their kernel choice once per process. Rounds alternate the two, so a load
that comes and goes falls on both. Prints the samples/s of each round and the median ratio.
"""

import os
import statistics
import subprocess
import sys

from affect.exact import CPU_KERNELS, NATIVE
from stages import load_params

CHOICES = {"pinned": {}, "native": {NATIVE: "1"}}  # added to the environment, less this process's own pin
TIMING = ("import sys, torch; from bench.train import samples_per_second; "
          "print(samples_per_second('mean_teacher', float(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), "
          "torch.device('cpu')), torch.backends.cpu.get_cpu_capability())")


def samples_per_second(choice: str, width: float, batch_size: int, steps: int) -> tuple[float, str]:
    """(samples/s, ATen's kernel capability) of one fresh process with `choice`'s environment."""
    run = subprocess.run([sys.executable, "-c", TIMING, str(width), str(batch_size), str(steps)],
                         env={**{key: value for key, value in os.environ.items() if key not in CPU_KERNELS},
                              **CHOICES[choice]}, capture_output=True, text=True, check=True)
    rate, capability = run.stdout.split()[-2:]
    return float(rate), capability


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    params = load_params()
    width, batch_size = params["model"]["width"], params["train"]["batch_size"]
    print(f"mean_teacher step, width {width}, batch {batch_size}, {steps} timed steps after 2 warm-up steps\n")
    print("| round | pinned samples/s | native samples/s | native kernels | pinned step / native step |")
    print("|---|---|---|---|---|")
    ratios = []
    for k in range(rounds):
        pinned, _ = samples_per_second("pinned", width, batch_size, steps)
        native, capability = samples_per_second("native", width, batch_size, steps)
        ratios.append(native / pinned)
        print(f"| {k + 1} | {pinned:.1f} | {native:.1f} | {capability} | {native / pinned:.2f}x |")
    print(f"\nmedian pinned step / native step: {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
