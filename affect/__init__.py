"""affect: semi-supervised facial affect analysis (multi-task Mean Teacher over TSAV)."""

__version__ = "0.1.0"
