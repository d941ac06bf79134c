"""Command line: `python -m affect predict VIDEO [VIDEO ...] --checkpoint data/train/teacher.pt --out DIR`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="affect",
                                     description="Facial affect analysis (multi-task Mean Teacher over TSAV).")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="predict valence/arousal, expression and AUs for every frame of new videos (no DVC needed)",
        description="Runs the pipeline's own preprocessing (split, align, landmarks, masks, mel) in-process on each "
                    "video, as recorded in the model file, then the model, and writes ABAW2 prediction files "
                    "OUT/{VA,EXPR,AU}/<track>.txt and a timeline picture OUT/timeline/<track>.png per track "
                    "(<video> or <video>_left/_right).")
    predict.add_argument("videos", nargs="+", type=Path, metavar="VIDEO")
    predict.add_argument("--checkpoint", type=Path, default=Path("data/train/teacher.pt"),
                         help="model saved by the train stage (default: %(default)s)")
    predict.add_argument("--out", type=Path, required=True, help="output folder")
    predict.add_argument("--params", type=Path, default=None,
                         help="a params.yaml to compare with the model's recorded preprocessing: a warning names the "
                              "keys that differ (default: params.yaml, when there is one; the model's record is used)")
    predict.add_argument("--models-dir", type=Path, default=Path("data/models"),
                         help="folder of the face models, as written by the models stage (default: %(default)s)")
    people = predict.add_mutually_exclusive_group()
    people.add_argument("--two-person", dest="two_person", action="store_true", default=None,
                        help="the video shows two people: predict <video>_left and <video>_right")
    people.add_argument("--one-person", dest="two_person", action="store_false",
                        help="the video shows one person (default: decided from the faces found in sampled frames)")
    predict.add_argument("--allow-silence", action="store_true",
                         help="predict a video without an audio track, feeding the audio stream silence")
    predict.add_argument("--batch-size", type=int, default=32,
                         help="clips per forward pass (default: %(default)s, evaluate.batch_size's default)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from affect.pipeline import disagreements
    from affect.predict import PredictError, predict_video
    from affect.tsav import CheckpointError, load_checkpoint

    if not args.checkpoint.is_file():
        print(f"error: checkpoint {args.checkpoint} not found (train one with `dvc repro train`, or pass "
              f"--checkpoint)", file=sys.stderr)
        return 2
    if args.params is not None and not args.params.is_file():
        print(f"error: parameters {args.params} not found", file=sys.stderr)
        return 2
    try:
        model, record = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    params_path = args.params or Path("params.yaml")
    if params_path.is_file():
        differ = disagreements(record, yaml.safe_load(params_path.read_text()))
        if differ:
            logging.getLogger("affect.predict").warning(
                "%s differs from the preprocessing recorded in %s (%s): predicting with the model's", params_path,
                args.checkpoint, "; ".join(differ))
    failed = 0
    for video in args.videos:
        try:
            written = predict_video(video, model, record, args.out, models_dir=args.models_dir,
                                    two_person=args.two_person, allow_silence=args.allow_silence,
                                    batch_size=args.batch_size)
        except PredictError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
            continue
        for path in written:
            print(path)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
