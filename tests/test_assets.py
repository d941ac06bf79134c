"""Test assets on a clone without `../shared`: fetched from upstream (a local server playing it), checked, cached."""

import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from affect.models import materialise, sha256_of
from tests import assets
from tests.conftest import ROOT
from tests.sshd import free_port


def closed_port_url() -> str:
    """A base URL on 127.0.0.1 where nothing listens: every download from it fails at once."""
    return f"http://127.0.0.1:{free_port()}"


def mirror_with(tmp_path: Path, folders: assets.Folders, corrupt: str = "") -> Path:
    """A mirror folder (media/, models/) of links to `folders`' files, with `corrupt` (a path under it) damaged."""
    mirror = tmp_path / "mirror"
    for kind, source in (("media", folders.media), ("models", folders.models)):
        for path in source.rglob("*"):
            if path.is_file():
                link = mirror / kind / path.relative_to(source)
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path)
    if corrupt:
        target = mirror / corrupt
        data = bytearray(target.read_bytes())
        data[len(data) // 2] ^= 0xFF
        target.unlink()
        target.write_bytes(bytes(data))
    return mirror


def test_without_mirror_everything_comes_from_upstream_then_from_the_cache(tmp_path, asset_folders):
    with assets.serve(assets.upstream_files(asset_folders)) as base_url:
        folders = assets.prepare(tmp_path / "no-mirror", tmp_path / "cache", base_url, log=lambda _: None)
    assert folders == assets.Folders(tmp_path / "cache" / "media", tmp_path / "cache" / "models")
    for spec in assets.DOWNLOADED:
        assert sha256_of(folders.media / spec.filename) == spec.sha256, spec.filename
    for item in assets.PACKAGED:
        assert sha256_of(folders.media / item.name) == item.sha256, item.name
    for item in assets.DERIVED:
        assert assets._derived_problem(folders.media / item.name, item) == "", item.name
    paths = materialise(list(assets.TEST_MODELS), tmp_path / "models", mirror=folders.models, download=False)
    assert len(paths) == 3
    assert not list((tmp_path / "cache").rglob("*.tmp")), "temporary files left behind"

    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*") if p.is_file()}
    again = assets.prepare(tmp_path / "no-mirror", tmp_path / "cache", closed_port_url(), log=lambda _: None)
    assert again == folders, "a filled cache needs no network"
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps, "nothing fetched or rewritten the second time"


@pytest.mark.parametrize("corrupt, named", [
    ("media/grid_bbaf2n.mpg", "evaluation/samples/GRID/bbaf2n.mpg"),
    ("models/scrfd_500m.onnx", "buffalo_sc.zip: downloaded det_500m.onnx"),
])
def test_corrupted_upstream_file_is_refused_naming_it(tmp_path, asset_folders, corrupt, named):
    bad = mirror_with(tmp_path, asset_folders, corrupt)
    with assets.serve(assets.upstream_files(assets.Folders(bad / "media", bad / "models"))) as base_url:
        with pytest.raises(assets.AssetError) as err:
            assets.prepare(tmp_path / "no-mirror", tmp_path / "cache", base_url, log=lambda _: None)
    message = str(err.value)
    spec = next(s for s in assets.DOWNLOADED + assets.MODEL_FILES if corrupt.endswith("/" + s.filename))
    assert named in message and f"expected {spec.sha256}" in message and "not used" in message
    kind, name = corrupt.split("/")
    assert not (tmp_path / "cache" / kind / name).exists()
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_bad_mirror_copy_is_replaced_from_upstream_and_the_rest_taken_from_the_mirror(tmp_path, asset_folders):
    mirror = mirror_with(tmp_path, asset_folders, "media/images/pyfeat_multi_face.jpg")
    with pytest.raises(assets.AssetError, match=f"the mirror folder {mirror} does not have them all"):
        assets.prepare(mirror, tmp_path / "cache", closed_port_url(), log=lambda _: None)
    with assets.serve(assets.upstream_files(asset_folders)) as base_url:
        folders = assets.prepare(mirror, tmp_path / "cache", base_url, log=lambda _: None)
    assert folders.models == mirror / "models", "a mirror whose files all check out is read in place"
    assert folders.media == tmp_path / "cache" / "media"
    spec = next(s for s in assets.DOWNLOADED if s.filename == "images/pyfeat_multi_face.jpg")
    assert sha256_of(folders.media / spec.filename) == spec.sha256
    assert sha256_of(folders.media / "grid_bbaf2n_xvid.avi") == sha256_of(mirror / "media" / "grid_bbaf2n_xvid.avi")


def test_a_re_encode_without_the_expected_properties_is_refused(tmp_path, media):
    item = next(d for d in assets.DERIVED if d.name.endswith(".avi"))
    for name in item.inputs:
        shutil.copyfile(media / name, tmp_path / name)
    assert assets.derive(item, tmp_path) == tmp_path / item.name
    (tmp_path / item.name).unlink()
    with pytest.raises(assets.AssetError, match=r"grid_bbaf2n_xvid\.avi: the re-encode has .*\(640, 480\)"):
        assets.derive(replace(item, size=(640, 480)), tmp_path)
    assert not (tmp_path / item.name).exists()
    assert not list(tmp_path.glob("*.tmp"))


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The project's pytest in a subprocess with no mirror, an empty cache and no network."""
    env = {**os.environ, "AFFECT_TEST_MIRROR": str(tmp_path / "no-mirror"), "AFFECT_TEST_ASSETS": str(tmp_path / "cache"),
           "AFFECT_TEST_BASE_URL": closed_port_url()}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_without_mirror_or_network_the_run_stops_before_any_test_with_one_message(tmp_path):
    result = run_pytest(tmp_path, "tests/test_index.py", "tests/test_annotations.py")  # light imports: no torch
    output = result.stdout + result.stderr
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, output
    assert output.count("test assets:") == 2, output  # the progress line, then the one error
    assert "there is no mirror folder" in output and "AFFECT_TEST_MIRROR" in output and "AFFECT_TEST_ASSETS" in output
    assert "no tests ran" in output and "Traceback" not in output, output

    alone = run_pytest(tmp_path, "tests/test_annotations.py::test_values_and_labelled_mask", "-q")
    assert alone.returncode == 0, "tests that need no media run without them\n" + alone.stdout
