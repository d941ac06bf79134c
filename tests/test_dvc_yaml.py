"""dvc.yaml declares exactly what each stage reads: its script, the affect/ modules it imports, its params."""

import re

import yaml

from affect.pipeline import TRAINING_CODE, imported_files
from tests.pipeline import ROOT


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_its_script_and_the_modules_it_imports():
    problems = []
    for name, stage in stages().items():
        script = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
        script_path = ROOT / "stages" / f"{script}.py"
        wanted = {f"stages/{script}.py"} | {
            path.relative_to(ROOT).as_posix()
            for path in imported_files([script_path, ROOT / "stages" / "__init__.py"], ROOT / "affect")}
        declared = {d for d in stage["deps"] if isinstance(d, str) and d.endswith(".py")}
        if declared != wanted:
            problems.append(f"stage {name}: missing {sorted(wanted - declared)}, "
                            f"not imported {sorted(declared - wanted)}")
    assert not problems, "\n".join(problems)


def test_the_code_a_model_file_records_is_the_code_train_depends_on():
    """The model record's `code` fingerprint (affect.pipeline.code_fingerprint) covers the files that DVC reruns
    `train` for, no more and no fewer: an edit DVC does not rerun `train` for leaves the model files alone."""
    fingerprinted = {path.relative_to(ROOT).as_posix()
                     for path in imported_files([ROOT / "affect" / f"{m}.py" for m in TRAINING_CODE], ROOT / "affect")}
    declared = {d for d in stages()["train"]["deps"] if d.startswith("affect/")}
    assert fingerprinted == declared, (f"fingerprinted, not a dependency: {sorted(fingerprinted - declared)}; "
                                       f"a dependency, not fingerprinted: {sorted(declared - fingerprinted)}")


def test_every_param_a_stage_declares_exists():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in stages().items():
        for key in stage.get("params", []):
            value = params
            for part in key.split("."):
                assert part in value, f"stage {name}: param {key} is not in params.yaml"
                value = value[part]


def test_part_list_counts_from_zero():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params["parts"] == list(range(len(params["parts"])))
