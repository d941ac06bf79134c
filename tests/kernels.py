"""Run the demo generator and the per-part preprocessing under one choice of CPU kernels; print file hashes.

`python -m tests.kernels CONFIG OUT_DIR MODELS_DIR` (run by tests/test_reproducible.py in a subprocess, with
the environment variables of CONFIG already set, since numpy, OpenBLAS, ATen and oneDNN read them at import).
It simulates another processor from inside this one: numpy without its AVX-512 / AVX2 loops, OpenBLAS with
another core's kernels, ATen and oneDNN capped at an older instruction set, ffmpeg at SSE4.2 and x264 (which
detects the processor itself) at SSE2, OpenCV without its SIMD paths,
ONNX Runtime with another thread count and no graph optimisation. Prints one JSON object {relative path:
sha256} of everything written under OUT_DIR.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

SSE42 = "mmx+mmxext+sse+sse2+sse3+ssse3+sse4.1+sse4.2+cmov"  # an x86-64-v2 processor, for ffmpeg's -cpuflags
# CONFIG -> environment variables (set by the caller before Python starts) and in-process switches. A config
# that caps torch's kernels also sets AFFECT_NATIVE_KERNELS, or importing affect would pin them back
# (affect.exact.pin_cpu_kernels): the mel spectrograms must not need the pin.
CONFIGS: dict[str, dict] = {
    "native": {"env": {}},
    "older_cpu": {
        "env": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR X86_V3",
                "OPENBLAS_CORETYPE": "Haswell", "ATEN_CPU_CAPABILITY": "default", "AFFECT_NATIVE_KERNELS": "1",
                "ONEDNN_MAX_CPU_ISA": "SSE41", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "JSIMD_FORCESSE2": "1"},
        "cv2_optimized": False, "ort_threads": 2, "ort_optimization": "disable", "ffmpeg_cpuflags": SSE42},
    "avx2_cpu": {
        "env": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR", "OPENBLAS_CORETYPE": "Haswell",
                "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                "AFFECT_NATIVE_KERNELS": "1"},
        "ort_optimization": "basic"},
    "ffmpeg_only": {"env": {}, "ffmpeg_cpuflags": SSE42},
    "cv2_only": {"env": {}, "cv2_optimized": False},
    "ort_only": {"env": {}, "ort_threads": 2, "ort_optimization": "disable"},
    "numpy_only": {"env": {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR X86_V3",
                           "OPENBLAS_CORETYPE": "Haswell"}},
    "torch_only": {"env": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                           "AFFECT_NATIVE_KERNELS": "1"}},
}

# A small demo that still has every kind of video: one- and two-person, with and without audio, mp4 and avi.
SMALL_DEMO = dict(seed=1, n_videos=4, seconds=(1.5, 2.0), two_person_fraction=0.25, no_audio_fraction=0.25,
                  unannotated_fraction=0.0, task_fraction={"va": 1.0, "expr": 1.0, "au": 1.0},
                  validation_fraction=0.25, avi_fraction=0.5)
AUDIO = {"sample_rate": 44100, "n_fft": 1024, "win_length": 882, "hop_length": 441, "n_mels": 64, "top_db": 80}


def x264_asm(args: list[str], asm: str) -> list[str]:
    """ffmpeg arguments with x264's processor detection overridden by `asm` (x264's --asm: "SSE2", "0" = C only)
    where they encode with libx264; other arguments unchanged."""
    if "libx264" not in args:
        return args
    args = list(args)
    if "-x264-params" in args:
        i = args.index("-x264-params") + 1
        args[i] = f"{args[i]}:asm={asm}"
    else:
        args[-1:-1] = ["-x264-params", f"asm={asm}"]
    return args


def ffmpeg_wrappers(bin_dir: Path, cpuflags: str | None, asm: str | None) -> Path:
    """`bin_dir` with an ffmpeg and an ffprobe that run the real ones (found on PATH now) with ffmpeg's
    `-cpuflags cpuflags` and x264's processor detection overridden by `asm` (`x264_asm`); None: unchanged."""
    import shutil

    bin_dir.mkdir(parents=True, exist_ok=True)
    args = "sys.argv[1:]" if asm is None else f"x264_asm(sys.argv[1:], {asm!r})"
    for tool in ("ffmpeg", "ffprobe"):
        flags = ["-cpuflags", cpuflags] if cpuflags else []
        (bin_dir / tool).write_text(
            f"#!{sys.executable}\nimport os, sys\nsys.path.insert(0, {str(Path(__file__).parents[1])!r})\n"
            f"from tests.kernels import x264_asm\n"
            f"os.execv({shutil.which(tool)!r}, [{tool!r}, *{flags!r}, *{args}])\n")
        (bin_dir / tool).chmod(0o755)
    return bin_dir


def apply(config: dict) -> None:
    """The in-process switches of a configuration: OpenCV's SIMD paths, ONNX Runtime's threads and graph level."""
    import cv2
    import onnxruntime as ort

    import affect.models

    if config.get("ffmpeg_cpuflags"):   # ffmpeg and ffprobe as they run on a processor with only these flags
        import tempfile
        bin_dir = ffmpeg_wrappers(Path(tempfile.mkdtemp(prefix="ffmpeg-cpuflags-")), config["ffmpeg_cpuflags"], "SSE2")
        os.environ["PATH"] = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    cv2.setUseOptimized(config.get("cv2_optimized", True))
    threads = config.get("ort_threads", 1)
    level = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
             "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
             "pipeline": affect.models.ORT_OPTIMIZATION}[config.get("ort_optimization", "pipeline")]
    make_session = affect.models.ort_session

    def ort_session(model_path, threads_asked=1, providers="cpu"):
        session = make_session(model_path, threads, providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = level
        options.log_severity_level = 3
        return ort.InferenceSession(str(model_path), sess_options=options, providers=session.get_providers())

    import affect.detect
    import affect.landmarks
    affect.detect.ort_session = ort_session
    affect.landmarks.ort_session = ort_session


def digests(root: Path) -> dict[str, str]:
    """{path relative to root: sha256} of every file under root."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def run(config_name: str, out: Path, models_dir: Path) -> dict[str, str]:
    """Generate the small demo and preprocess it (split, align, landmarks, masks, mel: the pipeline's own
    steps, one process each) under `out`."""
    apply(CONFIGS[config_name])
    from affect import synth
    from affect.index import build_index, write_index
    from affect.pipeline import preprocess
    from affect.schema import Layout
    from tests.pipeline import params

    os.chdir(out)              # relative paths: the index records them, and runs in other folders must agree
    raw, layout = Path("raw"), Layout(Path("."), Path(models_dir).resolve())
    synth.generate(raw, **SMALL_DEMO, jobs=1)
    write_index(build_index(raw, 1, jobs=1), layout.index)
    jobs = {"jobs": 1}
    preprocess(0, params({"dataset": {"root": str(raw)}, "audio": AUDIO, "split": jobs, "mel": jobs,
                          "align": {"detector": "scrfd_2.5g", **jobs}, "landmarks": {"model": "pfld106", **jobs},
                          "mask": jobs}), layout)
    return digests(Path("."))


if __name__ == "__main__":
    print(json.dumps(run(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]).resolve())))
