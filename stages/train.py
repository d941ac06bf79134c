"""DVC stage `train`: TSAV trained with the multi-task Mean Teacher (or supervised) on the partition's train side.

Writes data/train/student.pt and data/train/teacher.pt (each with the record of its preprocessing, training
params and data: affect.pipeline.model_record), resumable checkpoints under data/train/checkpoints/ and the
dvclive log under dvclive/. Several GPUs or machines: `torchrun --nproc_per_node N -m stages.train`.
"""

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist
from dvclive import Live

from affect.data import ClipDataset
from affect.losses import au_pos_weight
from affect.mean_teacher import clip_augment, clip_brightness
from affect.pipeline import data_fingerprint, loader_options, model_record, record_fingerprint
from affect.schema import Layout
from affect.train import DataConfig, TrainConfig, check_distributed, clip_batches, fit, validation
from affect.tsav import TSAV, init_model, save_model
from stages import load_params


def main() -> None:
    params, layout = load_params(), Layout()
    train = params["train"]
    if "WORLD_SIZE" in os.environ:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=datetime.timedelta(hours=2))
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
    device = torch.device("cpu")
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)

    try:
        config = TrainConfig(**{f.name: train[f.name] for f in dataclasses.fields(TrainConfig) if f.name in train})
        data = DataConfig(**{f.name: train[f.name] for f in dataclasses.fields(DataConfig) if f.name in train})
        check_distributed(config)
    except ValueError as error:
        raise SystemExit(f"params.yaml: {error}") from None

    train_set = ClipDataset.from_partition(layout, "train", **loader_options(params))
    val_set = ClipDataset.from_partition(layout, "val", **loader_options(params))
    record = model_record(params, data_fingerprint(layout))
    config = dataclasses.replace(config, au_pos_weight=au_pos_weight(train_set.labels["au"], data.au_balance),
                                 data=record_fingerprint(record))
    labelled_fraction = data.labelled_fraction if config.method == "mean_teacher" else 1.0

    torch.manual_seed(config.seed)
    student = TSAV(width=params["model"]["width"], n_mels=params["audio"]["n_mels"])
    init_model(student, params["model"]["init"])
    batches = clip_batches(train_set, data.batch_size, labelled_fraction, config.seed, config.steps,
                           workers=data.workers, rank=rank, world_size=world_size)
    validate = validation(val_set, config.inputs, device, batch_size=data.batch_size, workers=data.workers)
    live = Live("dvclive", save_dvc_exp=False, dvcyaml=None) if rank == 0 else None

    def log_to_dvclive(step: int, metrics: dict[str, float]) -> None:
        live.step = step
        for name, value in metrics.items():
            live.log_metric(name, value)
        live.next_step()

    augmented = data.flip or data.shift or data.augment_brightness or data.mel_dropout
    augment = clip_augment(data.flip, data.shift, data.augment_brightness, data.mel_dropout, train_set.silent_mel)
    student, teacher = fit(student, batches, config, teacher_input=clip_brightness(data.brightness),
                           student_input=augment if augmented else None,
                           validate=validate, on_log=log_to_dvclive if live else None,
                           checkpoint_dir=layout.checkpoints, device=device, record=record,
                           channels_last=params["gpu"]["channels_last"] and device.type == "cuda",
                           compile=params["gpu"]["compile"] and device.type == "cuda")
    if rank == 0:
        save_model(student.cpu(), layout.model("student"), record)
        save_model(teacher.cpu(), layout.model("teacher"), record)
        live.end()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
