"""Command line: `python -m affect predict VIDEO [VIDEO ...] --checkpoint data/train/teacher.pt --out DIR`."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="affect",
                                     description="Facial affect analysis (multi-task Mean Teacher over TSAV).")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser(
        "predict", help="predict valence/arousal, expression and AUs for every frame of new videos (no DVC needed)",
        description="Runs the pipeline's own preprocessing (split, align, landmarks, masks, mel) in-process on the "
                    "videos, as recorded in the model file, then the model on all of them in one stream, and writes "
                    "per track (<video> or <video>_left/_right): ABAW2 prediction files OUT/{VA,EXPR,AU}/<track>.txt, "
                    "the per-frame table OUT/table/<track>.parquet (time, frame, face found, box, keypoints, "
                    "expression and AU probabilities and decisions, valence, arousal), a timeline picture "
                    "OUT/timeline/<track>.png; per video OUT/report/<video>.json, and with --render "
                    "OUT/render/<video>.mp4.")
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
    predict.add_argument("--csv", action="store_true", help="also write the per-frame table as OUT/table/<track>.csv")
    predict.add_argument("--render", action="store_true",
                         help="write OUT/render/<video>.mp4: the video with face boxes, keypoints and live "
                              "valence/arousal, expression and AU bars, with its audio")
    predict.add_argument("--batch-size", type=positive_int, default=32,
                         help="clips per forward pass (default: %(default)s, evaluate.batch_size's default)")
    predict.add_argument("--threads", type=int, default=2,
                         help="torch CPU threads of inference; 0 = all cores (default: %(default)s, "
                              "evaluate.threads's default: the evaluate stage's bytes)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    from affect.pipeline import disagreements
    from affect.predict import SetupError, predict_videos
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
    try:
        result = predict_videos(args.videos, model, record, args.out, models_dir=args.models_dir,
                                two_person=args.two_person, allow_silence=args.allow_silence,
                                batch_size=args.batch_size, csv=args.csv, render=args.render, threads=args.threads)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    for path in result.written:
        print(path)
    seconds = result.seconds
    if seconds["video"]:
        logging.getLogger("affect.predict").info(
            "%.1f s of video: preprocessing %.1f s, inference %.1f s, writing%s %.1f s (%.2f video s per wall s)",
            seconds["video"], seconds["preprocess"], seconds["infer"], " and rendering" if args.render else "",
            seconds["write"], seconds["video"] / max(sum(v for k, v in seconds.items() if k != "video"), 1e-9))
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
