"""The models stage: pinned sha256, local mirror, and what happens with a corrupted copy."""

import shutil
import subprocess
import sys

import pytest

from affect.models import MODELS, ModelError, materialise, model_file, sha256_of
from tests.conftest import ROOT


def test_mirror_files_match_their_pins(models_mirror):
    for name in ("scrfd_2.5g", "scrfd_500m", "pfld106"):
        (spec,) = MODELS[name]
        path = next(models_mirror / n for n in spec.mirror_names if (models_mirror / n).is_file())
        assert sha256_of(path) == spec.sha256


def test_materialise_from_mirror(tmp_path, models_mirror):
    paths = materialise(["scrfd_500m", "pfld106"], tmp_path, mirror=models_mirror, download=False)
    assert paths == [tmp_path / "scrfd_500m" / "det.onnx", tmp_path / "pfld106" / "landmarks.onnx"]
    assert model_file("pfld106", "landmarks", tmp_path) == paths[1]
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"


def test_corrupted_mirror_copy_is_never_used(tmp_path, models_mirror):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray((models_mirror / "scrfd_500m.onnx").read_bytes())
    data[1000] ^= 0xFF
    (mirror / "scrfd_500m.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError) as err:
        materialise(["scrfd_500m"], tmp_path / "models", mirror=mirror, download=False)
    message = str(err.value)
    assert "scrfd_500m.onnx" in message and MODELS["scrfd_500m"][0].sha256 in message
    assert not (tmp_path / "models" / "scrfd_500m" / "det.onnx").exists()


def test_wrong_file_in_place_is_replaced(tmp_path, models_mirror):
    dest = tmp_path / "pfld106" / "landmarks.onnx"
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"not a model")
    materialise(["pfld106"], tmp_path, mirror=models_mirror, download=False)
    assert sha256_of(dest) == MODELS["pfld106"][0].sha256


def test_unknown_and_missing_models_name_the_problem(tmp_path, models_mirror):
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        materialise(["nope"], tmp_path, mirror=models_mirror, download=False)
    with pytest.raises(ModelError, match="buffalo_l.*det"):
        model_file("buffalo_l", "det", tmp_path)
    with pytest.raises(ModelError, match="det_10g.onnx"):
        materialise(["buffalo_l"], tmp_path, mirror=models_mirror, download=False)


def test_buffalo_l_user_folder_is_checked_by_sha256(tmp_path):
    """A user's ~/.insightface/models/buffalo_l/ pack is searched, and a file with the wrong hash refused."""
    fake_home = tmp_path / "home"
    pack = fake_home / ".insightface" / "models" / "buffalo_l"
    pack.mkdir(parents=True)
    (pack / "det_10g.onnx").write_bytes(b"wrong bytes")
    env_home = {"HOME": str(fake_home)}
    code = ("from affect.models import materialise, ModelError\n"
            "try:\n    materialise(['buffalo_l'], 'out', mirror=None, download=False)\n"
            "except ModelError as e:\n    print('ERR', e)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env_home, "PATH": "/usr/bin"},
                         capture_output=True, text=True, check=True).stdout
    assert out.startswith("ERR") and "5838f7fe" in out


def test_models_stage_writes_data_models(tmp_path, models_mirror):
    shutil.copytree(ROOT / "stages", tmp_path / "stages")
    (tmp_path / "params.yaml").write_text(
        f"models:\n  mirror: {models_mirror}\n  names: [scrfd_500m]\n")
    subprocess.run([sys.executable, "-m", "stages.models"], cwd=tmp_path, check=True,
                   capture_output=True)
    assert sha256_of(tmp_path / "data/models/scrfd_500m/det.onnx") == MODELS["scrfd_500m"][0].sha256


def test_models_stage_takes_a_relative_mirror_from_the_project_that_queued_the_experiment(tmp_path, models_mirror):
    """`dvc exp run --queue` runs each stage in a copy of the project under `.dvc/tmp/exps/`: params.yaml's
    relative `../shared/models` is then found beside the project that queued it (before, the stage looked
    beside the copy, found nothing and went to download)."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "models").symlink_to(models_mirror)
    copy = tmp_path / "project" / ".dvc" / "tmp" / "exps" / "tmpq1w2e3"
    shutil.copytree(ROOT / "stages", copy / "stages")
    (copy / "params.yaml").write_text("models:\n  mirror: ../shared/models\n  names: [scrfd_500m]\n")
    run = subprocess.run([sys.executable, "-m", "stages.models"], cwd=copy, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"copied from {tmp_path / 'project' / '../shared/models'}" in run.stderr
    assert sha256_of(copy / "data/models/scrfd_500m/det.onnx") == MODELS["scrfd_500m"][0].sha256


def test_materialise_downloads_what_the_mirror_lacks(tmp_path, asset_folders, monkeypatch):
    """A model missing from the mirror comes from its pinned URL (a server on 127.0.0.1 playing upstream),
    checked by sha256; with that server gone the error names the model, the mirror and the URL."""
    from dataclasses import replace

    from affect import models
    from tests import assets
    from tests.test_assets import closed_port_url

    (spec,) = MODELS["pfld106"]
    with assets.serve(assets.upstream_files(asset_folders)) as base_url:
        monkeypatch.setitem(models.MODELS, "pfld106", [replace(spec, url=assets.upstream(spec.url, base_url))])
        (path,) = materialise(["pfld106"], tmp_path / "models", mirror=tmp_path / "empty", download=True)
    assert path == tmp_path / "models" / "pfld106" / "landmarks.onnx" and sha256_of(path) == spec.sha256
    monkeypatch.setitem(models.MODELS, "pfld106", [replace(spec, url=assets.upstream(spec.url, closed_port_url()))])
    with pytest.raises(ModelError, match=r"model 'pfld106'.*mirror folder.*empty.*download failed"):
        materialise(["pfld106"], tmp_path / "other", mirror=tmp_path / "empty", download=True)
    assert not (tmp_path / "other" / "pfld106" / "landmarks.onnx").exists()
