"""dvc.yaml declares exactly what each stage reads: its script, the affect/ modules it imports, its params."""

import ast
import re
from pathlib import Path

import yaml

from tests.pipeline import ROOT


def imported_modules(path: Path) -> set[str]:
    """Project modules (`affect.x`, `stages`) that a file imports, directly or through other project modules."""
    seen: set[str] = set()
    todo = [path]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                file = ROOT / (name.replace(".", "/") + ".py")
                if name.split(".")[0] in ("affect", "stages") and file.is_file() and name not in seen:
                    seen.add(name)
                    todo.append(file)
    return seen


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_its_script_and_the_modules_it_imports():
    problems = []
    for name, stage in stages().items():
        script = re.search(r"python -m stages\.(\w+)", stage["cmd"]).group(1)
        script_path = ROOT / "stages" / f"{script}.py"
        wanted = {f"stages/{script}.py"} | {
            m.replace(".", "/") + ".py" for m in imported_modules(script_path) if m.startswith("affect.")}
        declared = {d for d in stage["deps"] if isinstance(d, str) and d.endswith(".py")}
        if declared != wanted:
            problems.append(f"stage {name}: missing {sorted(wanted - declared)}, "
                            f"not imported {sorted(declared - wanted)}")
    assert not problems, "\n".join(problems)


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
