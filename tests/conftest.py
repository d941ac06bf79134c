"""Shared fixtures: the real media and models of ../shared, and the project's own model folder."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MEDIA = SHARED / "media"
MIRROR = SHARED / "models"


@pytest.fixture(scope="session")
def media() -> Path:
    """Folder of real face videos and images (../shared/media)."""
    assert MEDIA.is_dir(), f"{MEDIA} is missing: tests read real media from ../shared/media"
    return MEDIA


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A data/models-like folder materialised from ../shared/models, verified by sha256."""
    from affect.models import materialise

    assert MIRROR.is_dir(), f"{MIRROR} is missing: tests read real models from ../shared/models"
    folder = tmp_path_factory.mktemp("models")
    materialise(["scrfd_2.5g", "scrfd_500m", "pfld106"], folder, mirror=MIRROR, download=False)
    return folder


@pytest.fixture(scope="session")
def demo_pipeline(tmp_path_factory) -> Path:
    """The whole DAG run once with `dvc repro` on a tiny demo configuration; returns the project folder.

    Tests that only read its outputs use it directly; tests that change it copy it first.
    """
    from tests.pipeline import commit, dvc, make_project

    project = make_project(tmp_path_factory.mktemp("pipeline") / "project")
    dvc(project, "repro")
    commit(project, "repro")
    return project
