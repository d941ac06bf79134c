"""DVC stage `split` (per part): frame timestamps and mono WAVs of the part's videos.

Usage: python -m stages.split <part>  ->  data/interim/split/part-<part>/{frames.arrow, audio.arrow, audio/, skipped.json}
"""

import sys

from affect.split import split_part
from stages import load_params


def main() -> None:
    part = int(sys.argv[1])
    params = load_params()
    if part not in params["parts"]:
        raise SystemExit(f"part {part} is not in params.yaml parts {params['parts']}")
    counts = split_part(f"data/interim/index/parts/part-{part}.json", f"data/interim/split/part-{part}",
                        sample_rate=params["audio"]["sample_rate"], jobs=params["split"]["jobs"],
                        on_error=params["split"]["on_error"])
    print(f"split part {part}: {counts}")


if __name__ == "__main__":
    main()
