"""The demo dataset generator: a valid ABAW2 tree whose labels follow its pixels and its sound, byte-reproducible."""

import hashlib
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import maximum_filter1d
from scipy.stats import spearmanr

from affect import synth
from affect.align import align_face
from affect.annotations import read_annotation
from affect.detect import FaceDetector
from affect.index import build_index, find_annotations
from affect.landmarks import LandmarkModel
from affect.models import model_file
from affect.parallel import run_units
from affect.schema import AUS
from affect.video import iter_frames

# Five short videos: one two-person, one without audio, two .avi; every task annotated, with gaps.
PLAN = dict(seed=3, n_videos=5, seconds=(5.0, 6.0), size=(256, 256), two_person_fraction=0.2,
            no_audio_fraction=0.2, unannotated_fraction=0.0, task_fraction={"va": 1.0, "expr": 1.0, "au": 1.0},
            validation_fraction=0.2, avi_fraction=0.4)
EXTRA = dict(unlabelled_rate=2.0, row_mismatch_fraction=0.3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "raw"
    synth.generate(root, **PLAN, **EXTRA, jobs=1)
    return root


# Landmark tests: the default demo's shape (one and two people, 25 and 30 fps) in short videos, seeds 0-5.
LANDMARK_SEEDS = range(6)
LANDMARK_PLAN = dict(n_videos=3, seconds=(2.5, 3.0), size=(256, 256), two_person_fraction=0.34,
                     no_audio_fraction=0.0, unannotated_fraction=0.0, task_fraction={"va": 1.0, "expr": 1.0, "au": 1.0},
                     validation_fraction=0.0, avi_fraction=0.0)


def measure(root, plan: dict, models_dir) -> dict:
    """Per track of a generated tree: latent performance, and per decoded frame the face found on its side
    and its 106 landmarks (the project's detector and landmark model on the aligned crop)."""
    detector = FaceDetector(model_file("scrfd_2.5g", "det", models_dir))
    landmarks = LandmarkModel(model_file("pfld106", "landmarks", models_dir))
    out = {}
    for plan_ in synth.plan_videos(**plan):
        path = next((root / "videos").glob(f"{plan_.stem}.*"))
        for track, perf in zip(synth.track_names(plan_), synth.latents(plan_, plan["seed"])):
            out[track] = {"plan": plan_, "perf": perf, "path": path, "found": [], "points": []}
        for frame in iter_frames(path):
            width = frame.shape[1]
            boxes, kps = detector.detect(frame)
            centres = (boxes[:, 0] + boxes[:, 2]) / 2
            for k, track in enumerate(synth.track_names(plan_)):
                if plan_.people == 1:
                    side = np.arange(len(boxes))
                else:   # the person's own half of the frame
                    side = np.flatnonzero((centres < width / 2) == (k == 0))
                found = len(side) > 0
                out[track]["found"].append(found)
                points = landmarks.predict(align_face(frame, kps[side[0]])) if found else np.full((106, 2), np.nan)
                out[track]["points"].append(points)
    for entry in out.values():
        entry["found"] = np.array(entry["found"])
        entry["points"] = np.array(entry["points"])
    return out


@pytest.fixture(scope="module")
def measured(demo, models_dir):
    return measure(demo, PLAN, models_dir)


def generate_and_measure(unit: tuple[int, Path, Path]) -> dict:
    """measure(...) of the small demo of one seed, generated under `root`; unit is (seed, root, models_dir)."""
    seed, root, models_dir = unit
    synth.generate(root, seed=seed, **LANDMARK_PLAN, jobs=1)
    return measure(root, {"seed": seed, **LANDMARK_PLAN}, models_dir)


@pytest.fixture(scope="module")
def measured_seeds(tmp_path_factory, models_dir):
    """{seed: measure(...)} of a small demo per seed of LANDMARK_SEEDS, the seeds spread over the cores."""
    units = [(seed, tmp_path_factory.mktemp(f"seed{seed}") / "raw", models_dir) for seed in LANDMARK_SEEDS]
    return dict(zip(LANDMARK_SEEDS, run_units(generate_and_measure, units, jobs=0, desc="landmark seeds")))


def test_tree_passes_index_and_annotation_validation(demo):
    plans = synth.plan_videos(**PLAN)
    index = build_index(demo, n_parts=2, jobs=1)
    assert index.videos.num_rows == len(plans)
    assert sorted(index.tracks.column("track").to_pylist()) == sorted(t for p in plans for t in synth.track_names(p))
    assert {p.fmt[:3] for p in plans} == {"mp4", "avi"}
    for video in index.videos.to_pylist():
        plan = next(p for p in plans if p.stem == video["video"])
        assert video["n_frames"] == plan.n_frames and video["fps_nominal"] == plan.fps
        assert video["has_audio"] == (plan.voice_of >= 0) and not video["vfr"]
        notes = index.report["videos"].get(video["video"], [])
        assert all(note.startswith("no audio stream") for note in notes), notes
    two = [p for p in plans if p.people == 2]
    assert len(two) == 1
    persons = dict(zip(index.tracks.column("track").to_pylist(), index.tracks.column("person").to_pylist()))
    assert persons[f"{two[0].stem}_left"] == "left" and persons[f"{two[0].stem}_right"] == "right"
    annotations = find_annotations(demo)
    labelled = []
    for task in ("va", "expr", "au"):
        for track, (split, path) in annotations[task].items():
            ann = read_annotation(path, task)
            plan = next(p for p in plans if track.startswith(p.stem))
            assert split == plan.split and abs(len(ann.values) - plan.n_frames) <= 2
            labelled.append(ann.labelled.mean())
    assert 0.3 < np.mean(labelled) < 1.0   # unlabelled stretches, but mostly labelled


def test_labels_are_the_latent_variables(demo):
    annotations = find_annotations(demo)
    for plan in synth.plan_videos(**PLAN):
        for track, perf in zip(synth.track_names(plan), synth.latents(plan, PLAN["seed"])):
            expr = read_annotation(annotations["expr"][track][1], "expr")
            au = read_annotation(annotations["au"][track][1], "au")
            va = read_annotation(annotations["va"][track][1], "va")
            n = min(len(expr.values), plan.n_frames)
            on = expr.labelled[:n]
            assert np.array_equal(expr.values[:n][on], perf.expr[:n][on])
            on = au.labelled[: min(len(au.values), plan.n_frames)]
            assert np.array_equal(au.values[: len(on)][on], (perf.au[: len(on)][on] > 0.5).astype(np.int8))
            on = va.labelled[: min(len(va.values), plan.n_frames)]
            assert np.allclose(va.values[: len(on)][on, 1], perf.arousal[: len(on)][on], atol=1e-3)


def test_detector_finds_the_faces_on_their_sides(measured):
    for track, entry in measured.items():
        assert entry["found"].mean() >= 0.95, (track, entry["found"].mean())


MIN_RHO = 0.3   # the claim: landmarks follow the AUs with a rho above this, on the mean over seeds


def _mean_rho(measures: dict, latents: dict) -> float:
    """Spearman rho of a landmark measure against a latent intensity within each track where the latent varies,
    averaged over those tracks weighted by frames (faces differ in how far the landmark model follows them)."""
    rhos, weights = [], []
    for track, measure in measures.items():
        latent = latents[track]
        if latent.std() > 0.1:
            rhos.append(spearmanr(measure, latent).statistic)
            weights.append(len(latent))
    assert rhos, "no track where the latent intensity varies"
    return float(np.average(rhos, weights=weights))


def landmark_rhos(measured: dict) -> dict[str, float]:
    """Mean Spearman rho (see `_mean_rho`) of three landmark measures against the AUs that move them:
    mouth opening against AU25 + AU26, lip-corner height against AU12 - AU15, brow height against
    AU1 + AU2 - AU4."""
    opening, corners, brows, mouth_au, smile_au, brow_au = {}, {}, {}, {}, {}, {}
    for track, entry in measured.items():
        found = entry["found"]
        p, au = entry["points"][found], entry["perf"].au[: len(found)][found]
        iod = np.linalg.norm(p[:, [35, 39]].mean(1) - p[:, [89, 93]].mean(1), axis=1)
        opening[track] = np.linalg.norm(p[:, [56, 53, 59]] - p[:, [63, 71, 67]], axis=2).mean(1) / iod
        corners[track] = (p[:, 80, 1] - p[:, synth.LIP_CORNERS, 1].mean(1)) / iod    # below the nose
        brows[track] = (p[:, synth.EYE_CORNERS, 1].mean(1) - p[:, synth.BROWS, 1].mean(1)) / iod
        column = {name: au[:, AUS.index(name)] for name in AUS}
        mouth_au[track] = column["AU25"] + column["AU26"]
        smile_au[track] = column["AU12"] - column["AU15"]
        brow_au[track] = column["AU1"] + column["AU2"] - column["AU4"]
    return {"mouth": _mean_rho(opening, mouth_au), "corners": _mean_rho(corners, smile_au),
            "brows": _mean_rho(brows, brow_au)}


def test_landmarks_follow_the_action_units(measured_seeds):
    """The project's landmark model, on aligned crops of decoded demo frames, follows the AUs that move each
    part: for each measure, the Spearman rho averaged over seeds 0-5 (every seed counted, none picked)
    exceeds MIN_RHO = 0.3.

    Measured when this was written (mean over the six seeds): mouth 0.63, lip corners 0.47, brows 0.46, so
    the margin is 0.16 on the weakest measure. Single seeds vary far more (lip corners 0.03 to 0.69, brows
    0.37 to 0.56): with three short videos a seed holds four tracks, and PFLD-lite follows the warps only
    partly on some faces (downcast eyes, a closed smile), so a claim on one seed would hold at that seed only.
    The earlier version of this test claimed rho > 0.5 at one seed chosen for it (4 of 8 seeds passed).
    """
    per_seed = {seed: landmark_rhos(measured) for seed, measured in measured_seeds.items()}
    mean = {key: float(np.mean([rho[key] for rho in per_seed.values()])) for key in ("mouth", "corners", "brows")}
    assert min(mean.values()) > MIN_RHO, (mean, per_seed)


def test_audio_loudness_follows_arousal(demo):
    rhos = []
    for plan in synth.plan_videos(**PLAN):
        if plan.voice_of < 0:
            continue
        path = next((demo / "videos").glob(f"{plan.stem}.*"))
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vn", "-ac", "1", "-ar", "16000",
                              "-f", "s16le", "-"], capture_output=True, check=True).stdout
        audio = np.frombuffer(raw, "<i2").astype(np.float64) / 32768
        arousal = synth.latents(plan, PLAN["seed"])[plan.voice_of].arousal
        hop = 16000 // plan.fps
        frames = min(len(arousal), len(audio) // hop)
        rms = np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(1))
        loudness = maximum_filter1d(rms, 5)    # the syllables' peaks within +-2 frames
        voiced = loudness > 0.003             # not the pauses (noise floor 0.001)
        rhos.append(spearmanr(20 * np.log10(loudness[voiced]), arousal[:frames][voiced]).statistic)
    assert rhos and min(rhos) > 0.5, rhos


def test_same_seed_same_bytes(demo, tmp_path):
    again = tmp_path / "raw"
    again.mkdir()
    (again / "stale.txt").write_text("from an earlier run")
    synth.generate(again, **PLAN, **EXTRA, jobs=2)

    def digests(root):
        return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    assert digests(again) == digests(demo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]   # no temporary folder left beside it
