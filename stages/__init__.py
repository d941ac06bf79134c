"""One thin entry point per DVC stage: read params, call `affect`, write outputs."""

import logging

import yaml


def load_params(path: str = "params.yaml") -> dict:
    """The project's parameters, grouped by stage."""
    with open(path) as f:
        return yaml.safe_load(f)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
