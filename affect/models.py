"""The face models (ONNX): pinned by sha256, how they get into `data/models/`, and how a stage opens one.

Each model is known by name. `materialise` copies it from a local mirror folder (checked by sha256),
else downloads it from its upstream source (checked by sha256). A file with the wrong hash is never
used. Offline with no mirror, the error names the file, its sha256 and where to put it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from affect.shards import atomic_path, sha256_of

log = logging.getLogger(__name__)

INSIGHTFACE_RELEASE = "https://github.com/deepinsight/insightface/releases/download/v0.7"


@dataclass(frozen=True)
class ModelFile:
    """One file of a model: where it lands, what it must hash to, and where it comes from."""

    filename: str            # name under data/models/<model>/
    sha256: str
    mirror_names: tuple      # names it may have in a local mirror folder
    url: str                 # upstream download (a file, or a zip holding `member`)
    member: str = ""         # path inside the zip at `url`, "" when `url` is the file itself


MODELS: dict[str, list[ModelFile]] = {
    "scrfd_2.5g": [ModelFile(
        "det.onnx", "041f73f47371333d1d17a6fee6c8ab4e6aecabefe398ff32cca4e2d5eaee0af9",
        ("scrfd_2.5g.onnx", "det_2.5g.onnx"), f"{INSIGHTFACE_RELEASE}/buffalo_m.zip", "det_2.5g.onnx")],
    "scrfd_500m": [ModelFile(
        "det.onnx", "5e4447f50245bbd7966bd6c0fa52938c61474a04ec7def48753668a9d8b4ea3a",
        ("scrfd_500m.onnx", "det_500m.onnx"), f"{INSIGHTFACE_RELEASE}/buffalo_sc.zip", "det_500m.onnx")],
    "pfld106": [ModelFile(
        "landmarks.onnx", "ce073227c4afee80e46abd98c8b99f5a55c3ad47f0f9cb2d2d333aeb510288f4",
        ("pfld106_lite.onnx", "pfld106.onnx", "lite.onnx"),
        "https://raw.githubusercontent.com/Hsintao/pfld_106_face_landmarks/"
        "e150195b0c945a9fcfe91641e3b79682e0e421e6/output/lite.onnx")],
    # The paper's pair: SCRFD-10GF detector and InsightFace's 2d106det landmarks, from buffalo_l.zip.
    "buffalo_l": [
        ModelFile("det.onnx", "5838f7fe053675b1c7a08b633df49e7af5495cee0493c7dcf6697200b85b5b91",
                  ("buffalo_l/det_10g.onnx", "det_10g.onnx"), f"{INSIGHTFACE_RELEASE}/buffalo_l.zip",
                  "det_10g.onnx"),
        ModelFile("landmarks.onnx", "f001b856447c413801ef5c42091ed0cd516fcd21f2d6b79635b1e733a7109dbf",
                  ("buffalo_l/2d106det.onnx", "2d106det.onnx"), f"{INSIGHTFACE_RELEASE}/buffalo_l.zip",
                  "2d106det.onnx"),
    ],
}


class ModelError(RuntimeError):
    """A model file is missing or does not match its pinned sha256."""


def model_file(name: str, role: str, models_dir: str | os.PathLike = "data/models") -> Path:
    """Path of a materialised model file, `role` being `det` or `landmarks`; checks it exists."""
    path = Path(models_dir) / name / f"{role}.onnx"
    if not path.is_file():
        raise ModelError(f"{path}: model {name!r} has no {role} file; run `dvc repro models` "
                         f"(or affect.models.materialise) with {name!r} in models.names")
    return path


PROVIDERS = ("cpu", "cuda", "auto")  # params.yaml executor.providers


def execution_providers(choice: str = "cpu") -> list[str]:
    """ONNX Runtime's provider list for `choice`: "cpu"; "cuda" (NVIDIA GPU, CPU for the operators it lacks:
    needs onnxruntime-gpu, the `gpu` extra); "auto" (cuda when this ONNX Runtime has a CUDA provider, else cpu).

    CPU sessions give the same bytes on every machine (with the grids of `affect.exact`); CUDA kernels differ in
    the last bits, so boxes and landmarks agree with the CPU's within tests/test_gpu.py's tolerance, not bit
    for bit."""
    if choice not in PROVIDERS:
        raise ValueError(f"executor.providers must be one of {', '.join(PROVIDERS)}, not {choice!r}")
    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if choice == "cuda" and not has_cuda:
        raise ModelError("executor.providers is cuda but this ONNX Runtime has no CUDA provider: on a machine "
                         "with an NVIDIA GPU install onnxruntime-gpu (README, GPU), or set cpu or auto")
    if choice == "cuda" or (choice == "auto" and has_cuda):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


# Graph optimisations up to "extended", never "all": "all" adds the NCHWc layout, whose convolutions block the
# channels by 8 on an AVX2 processor and by 16 on an AVX-512 one, so their sums differ in the last bits between
# machines (206,239 of SCRFD's 241,920 outputs on three frames, Intel AVX-512 against an emulated AMD AVX2 one;
# none under "extended"), and a box, keypoint or score near a grid step lands on the other side of it.
ORT_OPTIMIZATION = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED


def ort_session(model_path: str | os.PathLike, threads: int = 1, providers: str = "cpu") -> ort.InferenceSession:
    """An ONNX Runtime session with `threads` intra-op threads, sequential execution and the graph
    optimisations of ORT_OPTIMIZATION (the same sums on every x86-64 processor), on the providers of
    `execution_providers(providers)`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ORT_OPTIMIZATION
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_path), sess_options=options, providers=execution_providers(providers))


def _search_dirs(mirror: str | os.PathLike | None) -> list[Path]:
    dirs = [Path(mirror)] if mirror else []
    dirs.append(Path.home() / ".insightface" / "models")  # where InsightFace keeps buffalo_l
    return [d for d in dirs if d.is_dir()]


def _from_mirror(spec: ModelFile, mirror: str | os.PathLike | None, dest: Path) -> bool:
    for folder in _search_dirs(mirror):
        for candidate in (folder / n for n in spec.mirror_names):
            if not candidate.is_file():
                continue
            got = sha256_of(candidate)
            if got != spec.sha256:
                log.warning("%s: sha256 %s, expected %s: ignored", candidate, got, spec.sha256)
                continue
            with atomic_path(dest) as tmp:
                shutil.copyfile(candidate, tmp)
            log.info("%s: copied from %s", dest, candidate)
            return True
    return False


def download_files(files: dict[Path, ModelFile]) -> None:
    """Download pinned files to their destinations (`dest: spec`), reading each url once.

    A zip at a url is opened once for all the members wanted from it. Each file is checked against
    its sha256 before it is written (atomically); one that differs raises ModelError naming the url
    and the member, and nothing is written for it.
    """
    by_url: dict[str, list[tuple[Path, ModelFile]]] = {}
    for dest, spec in files.items():
        by_url.setdefault(spec.url, []).append((Path(dest), spec))
    for url, wanted in by_url.items():
        with urllib.request.urlopen(url, timeout=60) as response:
            payload = response.read()
        for dest, spec in wanted:
            data = _member(url, payload, spec.member) if spec.member else payload
            got = hashlib.sha256(data).hexdigest()
            if got != spec.sha256:
                raise ModelError(f"{url}: downloaded {spec.member or 'file'} for {dest} has sha256 {got}, "
                                 f"expected {spec.sha256}; not used")
            with atomic_path(dest) as tmp:
                tmp.write_bytes(data)
            log.info("%s: downloaded from %s", dest, url)


def _member(url: str, payload: bytes, member: str) -> bytes:
    """The bytes of the zip member whose path ends with `member`."""
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as pack:
            name = next((n for n in pack.namelist() if n.endswith(member)), None)
            if name is None:
                raise ModelError(f"{url}: the zip has no member {member}")
            return pack.read(name)
    except zipfile.BadZipFile as err:
        raise ModelError(f"{url}: not a zip file ({err}); expected one holding {member}") from err


def materialise(names: list[str], models_dir: str | os.PathLike,
                mirror: str | os.PathLike | None = None, download: bool = True) -> list[Path]:
    """Put each named model's files into `models_dir/<name>/`, verified by sha256; return the paths."""
    paths = []
    for name in names:
        if name not in MODELS:
            raise ModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
        for spec in MODELS[name]:
            dest = Path(models_dir) / name / spec.filename
            if dest.is_file() and sha256_of(dest) == spec.sha256:
                paths.append(dest)
                continue
            if not _from_mirror(spec, mirror, dest):
                if not download:
                    raise ModelError(_missing_message(name, spec, mirror))
                try:
                    download_files({dest: spec})
                except OSError as err:
                    raise ModelError(f"{_missing_message(name, spec, mirror)} (download failed: {err})") from err
            paths.append(dest)
    return paths


def _missing_message(name: str, spec: ModelFile, mirror) -> str:
    return (f"model {name!r}: no file {' or '.join(spec.mirror_names)} with sha256 {spec.sha256} "
            f"in the mirror folder {mirror!r} and it could not be downloaded from {spec.url}"
            f"{' (member ' + spec.member + ')' if spec.member else ''}. "
            f"Put the file into the mirror folder (models.mirror in params.yaml) and rerun.")
