"""One thin entry point per DVC stage: read params, call `affect`, write outputs."""

import logging
import sys

import yaml


def load_params(path: str = "params.yaml") -> dict:
    """The project's parameters, grouped by stage."""
    with open(path) as f:
        return yaml.safe_load(f)


def part_argument(params: dict) -> int:
    """The part a per-part stage runs on: its command-line argument, one of params.yaml's `parts`."""
    part = int(sys.argv[1])
    if part not in params["parts"]:
        raise SystemExit(f"part {part} is not in params.yaml parts {params['parts']}")
    return part


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
