"""DVC stage `train`: TSAV trained with the multi-task Mean Teacher (or supervised) on the partition's train side.

Writes data/train/student.pt and data/train/teacher.pt, resumable checkpoints under data/train/checkpoints/
and the dvclive log under dvclive/. Several GPUs or machines: `torchrun --nproc_per_node N -m stages.train`.
"""

import datetime
import os

import torch
import torch.distributed as dist
from dvclive import Live

from affect.data import ClipDataset, loader_options
from affect.mean_teacher import clip_brightness
from affect.model import TSAV, init_model, save_model
from affect.train import TrainConfig, clip_batches, data_fingerprint, fit, validation
from stages import load_params

INTERIM, OUT = "data/interim", "data/train"
READS = ("index/tracks.parquet", "split", "faces", "masks", "mel")  # what ClipDataset reads under INTERIM
LABELS, PARTITION = "data/processed/labels.parquet", "data/processed/partition.parquet"

params = load_params()
model_params, audio, train = params["model"], params["audio"], params["train"]
if "WORLD_SIZE" in os.environ:
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=datetime.timedelta(hours=2))
rank, world_size = (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)
device = torch.device("cpu")
if torch.cuda.is_available():
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    torch.cuda.set_device(device)

loader = loader_options(params)
train_set = ClipDataset.from_partition(INTERIM, LABELS, PARTITION, side="train", **loader)
val_set = ClipDataset.from_partition(INTERIM, LABELS, PARTITION, side="val", **loader)
config = TrainConfig(method=train["method"], seed=train["seed"], steps=train["steps"], lr=train["lr"], ema=train["ema"],
                     consistency_weight=train["consistency_weight"], consistency_rampup=train["consistency_rampup"],
                     consistency_targets=train["consistency_targets"], eval_every=train["eval_every"],
                     checkpoint_every=train["checkpoint_every"],
                     data=data_fingerprint(*[f"{INTERIM}/{name}" for name in READS], LABELS, PARTITION))
labelled_fraction = train["labelled_fraction"] if config.method == "mean_teacher" else 1.0

torch.manual_seed(config.seed)
student = TSAV(width=model_params["width"], n_mels=audio["n_mels"])
init_model(student, model_params["init"])
batches = clip_batches(train_set, train["batch_size"], labelled_fraction, config.seed, config.steps,
                       workers=train["workers"], rank=rank, world_size=world_size)
val_batches = torch.utils.data.DataLoader(val_set, batch_size=train["batch_size"], num_workers=train["workers"])
live = Live("dvclive", save_dvc_exp=False, dvcyaml=None) if rank == 0 else None


def log_to_dvclive(step: int, metrics: dict[str, float]) -> None:
    live.step = step
    for name, value in metrics.items():
        live.log_metric(name, value)
    live.next_step()


student, teacher = fit(student, batches, config, teacher_input=clip_brightness(train["brightness"]),
                       validate=validation(val_batches, config.inputs, device), on_log=log_to_dvclive if live else None,
                       checkpoint_dir=f"{OUT}/checkpoints", device=device)
if rank == 0:
    save_model(student.cpu(), f"{OUT}/student.pt")
    save_model(teacher.cpu(), f"{OUT}/teacher.pt")
    live.end()
if dist.is_initialized():
    dist.destroy_process_group()
