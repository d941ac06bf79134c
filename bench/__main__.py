"""Run every benchmark in turn: `python -m bench` (or one: `python -m bench.<name>`)."""

import importlib
import pkgutil
import sys
from pathlib import Path

names = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
for name in sys.argv[1:] or names:
    print(f"\n## bench.{name}\n", flush=True)
    importlib.import_module(f"bench.{name}").main()
