"""The same params give the same bytes on any x86-64 machine: the demo and every per-part preprocessing output.

Another processor is simulated from inside this one (tests/kernels.py): numpy without its AVX-512 / AVX2
loops, OpenBLAS with Haswell kernels, ATen and oneDNN capped at SSE4.1, libjpeg-turbo at SSE2, ffmpeg at
SSE4.2, x264 at SSE2, OpenCV without its SIMD paths, ONNX Runtime with two threads and no graph optimisation.
Before the outputs were made insensitive to that, this comparison named every demo video, the face, landmark
and mask shards and the mel spectrograms.

Training, inference and the face models' ONNX sessions are checked on an emulated processor instead
(`qemu-x86_64 -cpu MODEL`: the other vendor's CPUID, no AVX-512), since torch, oneDNN, MKL and ONNX Runtime
choose their code by vendor and instruction set and no switch of theirs can make this processor look like
another vendor's.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from affect import synth
from affect.exact import NO_AVX2
from tests import emulated
from tests.kernels import CONFIGS
from tests.pipeline import ROOT

CHECKSUMS = ROOT / "data" / "demo.sha256"


def _kernels(config: str, out: Path, models_dir: Path) -> subprocess.Popen:
    env = {**os.environ, **CONFIGS[config]["env"], "PYTHONPATH": str(ROOT)}
    out.mkdir()
    return subprocess.Popen([sys.executable, "-m", "tests.kernels", config, str(out), str(models_dir)],
                            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_demo_and_preprocessing_give_the_same_bytes_under_other_kernels(tmp_path, models_dir):
    runs = {config: _kernels(config, tmp_path / config, models_dir) for config in ("native", "older_cpu")}
    digests = {}
    for config, process in runs.items():
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, f"{config}:\n{stderr[-3000:]}"
        digests[config] = json.loads(stdout)
    native, other = digests["native"], digests["older_cpu"]
    kinds = {path.split("/")[1] if path.startswith("interim/") else path.split("/")[0] for path in native}
    assert {"raw", "split", "faces", "landmarks", "masks", "mel"} <= kinds, kinds
    differ = sorted(path for path in set(native) | set(other) if native.get(path) != other.get(path))
    assert not differ, f"differ under older_cpu kernels: {differ}"


def test_h264_encoding_gives_the_same_bytes_whatever_processor_x264_detects(tmp_path, media, monkeypatch):
    """`synth.encode` with the demo's H.264 settings writes the same bytes for 40 frames of a real video with
    x264's own processor detection, with its SSE2 code and with its C code only (ffmpeg wrappers that pass
    x264 `asm=`). x264 detects the processor itself (ffmpeg's -cpuflags does not reach it); without its
    cpu-independent setting 2 of the 128 default demo videos differed between an AMD Zen 3 and a Zen 4 machine,
    and on an AVX2 machine these 40 frames differ between its detected code and its C code."""
    from affect.video import iter_frames
    from tests.kernels import ffmpeg_wrappers

    frames = [f for _, f in zip(range(40), iter_frames(media / "grid_bbaf2n.mpg"))]
    height, width = frames[0].shape[:2]
    path = os.environ["PATH"]
    digests = {}
    for asm in (None, "SSE2", "0"):
        bin_dir = ffmpeg_wrappers(tmp_path / f"bin-{asm}", None, asm)
        monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{path}")
        out = tmp_path / f"asm-{asm}.mp4"
        synth.encode(iter(frames), out, (width, height), 25, "mp4", None)
        digests[asm] = hashlib.sha256(out.read_bytes()).hexdigest()
    assert len(set(digests.values())) == 1, f"x264's output depends on its code path: {digests}"


def _default_demo() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())["demo"]


def checksums(root: Path) -> dict[str, str]:
    """{path relative to root: sha256} of every file under root, in sha256sum's format order."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_default_demo_matches_the_committed_checksums(tmp_path):
    """The default demo (params.yaml) against data/demo.sha256 (`cd data/raw/demo && sha256sum` of every file,
    as `python -m tests.test_reproducible` writes it); a mismatch names the files that differ."""
    params = {k: v for k, v in _default_demo().items() if k != "jobs"}
    synth.generate(tmp_path / "demo", **params)
    made = checksums(tmp_path / "demo")
    committed = {}
    for line in CHECKSUMS.read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        committed[name.lstrip("*")] = digest
    missing, extra = sorted(set(committed) - set(made)), sorted(set(made) - set(committed))
    differ = sorted(name for name in set(made) & set(committed) if made[name] != committed[name])
    assert not (missing or extra or differ), f"differ: {differ}; missing: {missing}; not listed: {extra}"


def write_checksums(path: Path = CHECKSUMS) -> None:
    """Generate the default demo and write its checksum list (run after a deliberate change to the demo)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        params = {k: v for k, v in _default_demo().items() if k != "jobs"}
        synth.generate(Path(tmp) / "demo", **params)
        lines = [f"{digest}  {name}" for name, digest in checksums(Path(tmp) / "demo").items()]
    path.write_text("\n".join(lines) + "\n")
    print(f"{path}: {len(lines)} files")


needs_qemu = pytest.mark.skipif(not emulated.AVAILABLE,
                                reason="needs an x86-64 machine and qemu-user (.ci/setup installs it)")


@needs_qemu
@pytest.mark.emulated("tests.train_bits")
def test_training_and_inference_give_the_same_bits_on_another_vendors_processor():
    """Three Mean Teacher steps and an inference (tests/train_bits.py) give the same student, teacher and
    predictions here and under qemu emulating the other vendor's AVX2 processor. Without
    `affect.exact.pin_cpu_kernels` an AVX-512 machine differs in oneDNN's convolutions and MKL's products;
    without the fused Adam step an AMD machine differs in MKL's square root."""
    native, other = emulated.results("tests.train_bits")
    assert native["capability"] == other["capability"] == "AVX2"
    assert native == other


@needs_qemu
@pytest.mark.emulated("tests.kernel_pin", cpu="SandyBridge")
def test_a_processor_without_avx2_keeps_torchs_default_kernels_and_is_told():
    """On an emulated Intel Sandy Bridge (AVX, no AVX2, no FMA) importing affect leaves torch's kernels to the
    processor, says so once, and torch computes (tests/kernel_pin.py); with `ATEN_CPU_CAPABILITY=avx2` pinned
    there, as before, the emulated run stopped with "Illegal instruction". Here, with AVX2, the pin holds."""
    native, old = emulated.results("tests.kernel_pin", cpu="SandyBridge")
    assert (native["capability"], native["aten"], native["warnings"]) == ("AVX2", "avx2", [])
    assert (old["capability"], old["aten"], old["warnings"]) == ("DEFAULT", None, [NO_AVX2])
    assert abs(old["sum"] - native["sum"]) <= 1e-3 * abs(native["sum"])


@needs_qemu
def test_face_models_give_the_same_bits_on_another_vendors_processor(models_dir, media):
    """The detector's and the landmark model's raw outputs on a real photograph (tests/onnx_bits.py, through
    `affect.models.ort_session`) are the same bits here and under qemu emulating the other vendor's AVX2
    processor. With ONNX Runtime's "all" optimisations the detector's differ on an AVX-512 machine (its
    NCHWc convolutions block channels by 16 there, by 8 on AVX2), and the faces shards of all 4 demo parts
    differed between an Intel AVX-512 machine and the AMD AVX2 ones that reproduced dvc.lock. On an AVX-512
    host this compares AVX-512 kernels with AVX2 ones (and fails with "all"); on an AVX2 host both sides run
    AVX2 code (qemu 7.2 emulates no AVX-512) and only the vendor differs: there the next test keeps the
    setting."""
    photograph = media / "images" / "pyfeat_single_face.jpg"
    native, other = emulated.results("tests.onnx_bits", str(models_dir), str(photograph))
    assert set(native) == {"scrfd_2.5g", "pfld106"}
    assert native == other


def test_face_model_sessions_stop_before_the_nchwc_layout(models_dir):
    """The detector's sessions (insightface makes one per input size, copying the options of ours) and the
    landmark model's run at `affect.models.ORT_OPTIMIZATION`, "extended": below "all", whose NCHWc layout sums
    convolutions by the processor's vector width."""
    import onnxruntime as ort

    from affect.detect import FaceDetector
    from affect.landmarks import LandmarkModel
    from affect.models import ORT_OPTIMIZATION

    detector = FaceDetector(models_dir / "scrfd_2.5g" / "det.onnx")
    marks = LandmarkModel(models_dir / "pfld106" / "landmarks.onnx")
    sessions = [detector.model.session, detector.model._session_for_input_size((160, 128)), marks.session]
    assert ORT_OPTIMIZATION == ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    assert [s.get_session_options().graph_optimization_level for s in sessions] == [ORT_OPTIMIZATION] * 3


if __name__ == "__main__":
    write_checksums()

