"""Is the demo's signal visible in the preprocessed inputs? Linear probes on the target frame's crop and mask.

    python -m bench.probe [--size 16] [--max 4000]

For the current pipeline outputs (partition, shards): the target frame of every labelled sample of the
train and the val side, its RGB crop and its mask (last clip frame) downsampled to `size` x `size`, and a
linear probe per task fitted on the train side (logistic regression for the expression and each AU, ridge
regression for valence and arousal, scikit-learn, standardised pixels). Printed per task: the ABAW2
criterion (affect.metrics) of the probe on the train side and on the val side, the trivial predictors'
criterion (majority class, all-AU-absent / per-AU prior, constant VA), and the counts of tracks and videos
on each side. A val criterion near the train one and well above trivial says the signal is there and
generalises across identities; train >> val says the probe memorises identities.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from affect.data import ClipDataset
from affect.metrics import evaluate_predictions
from affect.partition import video_of
from affect.pipeline import loader_options
from affect.schema import Layout, is_labelled
from stages import load_params


def features(dataset: ClipDataset, size: int, rows: np.ndarray) -> np.ndarray:
    """(N, 4 * size * size) float32: the last clip frame's normalised RGB and mask, area-downsampled."""
    out = np.empty((len(rows), 4 * size * size), np.float32)
    for k, i in enumerate(rows):
        frame = dataset.clip(int(i))[:, -1].numpy()  # (4, S, S)
        out[k] = np.stack([cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in frame]).ravel()
    return out


def side(layout: Layout, name: str, size: int, limit: int, seed: int) -> dict:
    options = loader_options(load_params())
    dataset = ClipDataset.from_partition(layout, name, **options)
    rows = dataset.labelled_indices()
    if len(rows) > limit:
        rows = np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
    tracks = dataset.track_names[dataset.sample_track[rows]]
    return {"x": features(dataset, size, rows), "expr": dataset.labels["expr"][rows],
            "au": dataset.labels["au"][rows], "va": dataset.labels["va"][rows], "track": tracks,
            "tracks": len(set(tracks)), "videos": len({video_of(t) for t in tracks}), "n": len(rows)}


def subset(data: dict, fraction: float, seed: int) -> dict:
    """`data` restricted to a seeded `fraction` of its tracks (each track is one apparent identity)."""
    names = np.unique(data["track"])
    keep = np.random.default_rng(seed).permutation(names)[:max(2, int(round(fraction * len(names))))]
    rows = np.isin(data["track"], keep)
    return {key: value[rows] for key, value in data.items() if isinstance(value, np.ndarray)}


def probe(train: dict, val: dict) -> dict:
    scaler = StandardScaler().fit(train["x"])
    xt, xv = scaler.transform(train["x"]), scaler.transform(val["x"])
    results = {}
    m = is_labelled("expr", train["expr"]); mv = is_labelled("expr", val["expr"])
    if m.sum() and mv.sum() and len(np.unique(train["expr"][m])) > 1:
        model = LogisticRegression(C=0.01, max_iter=300).fit(xt[m], train["expr"][m])
        full = np.zeros((len(xv), 7)); full[:, model.classes_] = model.predict_proba(xv)
        fullt = np.zeros((len(xt), 7)); fullt[:, model.classes_] = model.predict_proba(xt)
        majority = np.bincount(train["expr"][m], minlength=7).argmax()
        results["expr"] = (fullt[m], train["expr"][m], full[mv], val["expr"][mv], np.eye(7)[np.full(mv.sum(), majority)])
    m = is_labelled("au", train["au"]); mv = is_labelled("au", val["au"])
    if m.sum() and mv.sum():
        pt, pv = np.zeros((m.sum(), 12)), np.zeros((mv.sum(), 12))
        for a in range(12):
            y = train["au"][m, a]
            if len(np.unique(y)) < 2:
                pt[:, a] = pv[:, a] = y[0]
                continue
            model = LogisticRegression(C=0.01, max_iter=300).fit(xt[m], y)
            pt[:, a], pv[:, a] = model.predict_proba(xt[m])[:, 1], model.predict_proba(xv[mv])[:, 1]
        results["au"] = (pt, train["au"][m], pv, val["au"][mv], np.zeros((mv.sum(), 12)))
    m = is_labelled("va", train["va"]); mv = is_labelled("va", val["va"])
    if m.sum() and mv.sum():
        model = Ridge(alpha=1000.0).fit(xt[m], train["va"][m])
        const = np.tile(train["va"][m].mean(0), (mv.sum(), 1))
        results["va"] = (model.predict(xt[m]), train["va"][m], model.predict(xv[mv]), val["va"][mv], const)
    table = {}
    for task, (pt, yt, pv, yv, trivial) in results.items():
        crit = lambda y, p: evaluate_predictions({task: y}, {task: p})[task]["criterion"]  # noqa: E731
        table[task] = {"train": crit(yt, pt), "val": crit(yv, pv), "trivial": crit(yv, trivial),
                       "n_train": len(yt), "n_val": len(yv)}
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=16, help="probe input side, pixels")
    parser.add_argument("--max", type=int, default=4000, help="most samples per side (a seeded subset)")
    parser.add_argument("--track-fractions", type=float, nargs="*", default=[],
                        help="also fit on these shares of the training tracks (3 seeds each): does more identities help?")
    args = parser.parse_args()
    layout = Layout()
    train, val = side(layout, "train", args.size, args.max, 0), side(layout, "val", args.size, args.max, 1)
    print(f"train: {train['n']} labelled samples, {train['tracks']} tracks, {train['videos']} videos; "
          f"val: {val['n']} samples, {val['tracks']} tracks, {val['videos']} videos")
    print("| task | probe train | probe val | trivial val | n train | n val |\n|---|---|---|---|---|---|")
    for task, row in probe(train, val).items():
        print(f"| {task} | {row['train']:.3f} | {row['val']:.3f} | {row['trivial']:.3f} | {row['n_train']} | {row['n_val']} |")
    if args.track_fractions:
        print("\n| share of training tracks | expr val | AU val | VA val |\n|---|---|---|---|")
    for fraction in args.track_fractions:
        runs = [probe(subset(train, fraction, seed), val) for seed in range(3)]
        cells = [f"{np.mean([r[t]['val'] for r in runs]):.3f} ± {np.std([r[t]['val'] for r in runs], ddof=1):.3f}"
                 for t in ("expr", "au", "va")]
        print(f"| {fraction:g} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
