"""Shared fixtures: the real media and face models the tests read, and the project's own model folder.

Media and models come from the mirror folder `../shared` when it holds them (as in CI), else from a
cache filled from their upstream sources (`tests/assets.py` lists every file, its sha256 and source, and
the environment variables that move the mirror, the cache and the upstream base URL). That is settled
once, after collection and before the first test, and only when a selected test needs them: without a
mirror and without network the run stops there with one message saying what to do.

A selected test marked `@pytest.mark.emulated(module, *args, cpu=...)` has its native and qemu runs started
then too (tests/emulated.py), so that they run beside the rest of the suite.
"""

from pathlib import Path

import pytest

from tests import assets, emulated

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = pytest.StashKey[assets.Folders]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if emulated.AVAILABLE and not session.config.option.collectonly:
        for item in session.items:
            marker = item.get_closest_marker("emulated")
            if marker:
                emulated.start(*marker.args, **marker.kwargs)
    if not any("asset_folders" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    try:
        session.config.stash[FOLDERS] = assets.prepare(log=reporter.write_line if reporter else print)
    except assets.AssetError as err:
        pytest.exit(str(err), returncode=pytest.ExitCode.USAGE_ERROR)


def pytest_sessionfinish(session: pytest.Session) -> None:
    emulated.stop()


@pytest.fixture(scope="session")
def asset_folders(request) -> assets.Folders:
    """The folders of real media and face models (the mirror's, or the cache's)."""
    return request.config.stash[FOLDERS]


@pytest.fixture(scope="session")
def media(asset_folders) -> Path:
    """Folder of real face videos and images (`../shared/media` or its cached copy)."""
    return asset_folders.media


@pytest.fixture(scope="session")
def models_mirror(asset_folders) -> Path:
    """Folder of the tests' face models under their mirror names (`../shared/models` or its cached copy)."""
    return asset_folders.models


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory, models_mirror) -> Path:
    """A data/models-like folder materialised from the models mirror, verified by sha256."""
    from affect.models import materialise

    folder = tmp_path_factory.mktemp("models")
    materialise(list(assets.TEST_MODELS), folder, mirror=models_mirror, download=False)
    return folder


@pytest.fixture(scope="session")
def demo_pipeline(tmp_path_factory, models_mirror) -> Path:
    """The whole DAG run once with `dvc repro` on a tiny demo configuration; returns the project folder.

    Tests that only read its outputs use it directly; tests that change it copy it first.
    """
    from tests.pipeline import commit, dvc, make_project

    project = make_project(tmp_path_factory.mktemp("pipeline") / "project", {"models": {"mirror": str(models_mirror)}})
    dvc(project, "repro")
    commit(project, "repro")
    return project
