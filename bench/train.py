"""Training step: samples/s of `supervised` and `mean_teacher` side by side, TSAV at the params.yaml size.

The batches are random tensors of the loader's shapes (the loader has its own benchmark), half of each
batch labelled and the other half flagged unlabelled for every task, so this measures the engine's step:
forward, losses, backward, Adam, EMA (and the teacher's forward for the Mean Teacher). CPU in fp32; on a GPU
bf16 autocast. `python -m bench.train [steps]`.
"""

import sys
import time

import torch

from affect.mean_teacher import clip_brightness
from affect.schema import TASKS
from affect.tsav import TSAV
from affect.train import TrainConfig, fit
from stages import load_params


def random_batches(batch_size: int, clip_length: int, n_mels: int, columns: int, steps: int):
    generator = torch.Generator().manual_seed(0)
    half = batch_size // 2
    batch = {
        "clip": torch.randn(batch_size, 4, clip_length, 112, 112, generator=generator),
        "mel": torch.randn(batch_size, 1, n_mels, columns, generator=generator),
        "expr": torch.cat([torch.randint(0, 7, (half,), generator=generator), torch.full((batch_size - half,), -1)]),
        "au": torch.cat([torch.randint(0, 2, (half, 12), generator=generator).float(),
                         torch.full((batch_size - half, 12), -1.0)]),
        "va": torch.cat([torch.rand(half, 2, generator=generator) * 2 - 1,
                         torch.full((batch_size - half, 2), float("nan"))]),
        "unlabelled": torch.cat([torch.zeros(half, len(TASKS), dtype=torch.bool),
                                 torch.ones(batch_size - half, len(TASKS), dtype=torch.bool)]),
    }
    return lambda start: (batch for _ in range(start, steps))


def samples_per_second(method: str, width: float, batch_size: int, steps: int, device: torch.device) -> float:
    params = load_params()
    audio = params["audio"]
    columns = int(round(audio["window_s"] * audio["sample_rate"] / audio["hop_length"])) + 1
    torch.manual_seed(0)
    student = TSAV(width=width, n_mels=params["audio"]["n_mels"])
    noise = clip_brightness(params["train"]["brightness"])
    warm_up = TrainConfig(method=method, steps=2, eval_every=10**9, checkpoint_every=10**9)
    batches = random_batches(batch_size, params["clip"]["length"], params["audio"]["n_mels"], columns, steps)
    fit(student, batches, warm_up, teacher_input=noise, device=device, progress=False)
    config = TrainConfig(method=method, steps=steps, eval_every=10**9, checkpoint_every=10**9)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fit(student, batches, config, teacher_input=noise, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5
    params = load_params()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    width, batch_size = params["model"]["width"], params["train"]["batch_size"]
    sizes = [(width, batch_size)] + ([(1.0, 32)] if device.type == "cuda" else [])
    print(f"device {device}, torch threads {torch.get_num_threads()}, {steps} timed steps after 2 warm-up steps\n")
    print("| model width | batch | supervised samples/s | mean_teacher samples/s | MT step / supervised step |")
    print("|---|---|---|---|---|")
    for width, batch_size in sizes:
        supervised = samples_per_second("supervised", width, batch_size, steps, device)
        mean_teacher = samples_per_second("mean_teacher", width, batch_size, steps, device)
        print(f"| {width} | {batch_size} | {supervised:.1f} | {mean_teacher:.1f} | {supervised / mean_teacher:.2f}x |")


if __name__ == "__main__":
    main()
