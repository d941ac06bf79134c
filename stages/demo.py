"""DVC stage `demo`: write the embedded demo dataset (synthetic face videos + ABAW2 annotations) to data/raw/demo.

Always there, whatever `dataset.root` says, so that pointing the pipeline at Aff-Wild2 never writes into it.
"""

from affect.synth import generate
from stages import load_params

OUT = "data/raw/demo"


def main() -> None:
    params = load_params()
    demo = params["demo"]
    generate(OUT, seed=demo["seed"], n_videos=demo["n_videos"], seconds=demo["seconds"],
             size=demo["size"], two_person_fraction=demo["two_person_fraction"],
             no_audio_fraction=demo["no_audio_fraction"], unannotated_fraction=demo["unannotated_fraction"],
             task_fraction=demo["task_fraction"], validation_fraction=demo["validation_fraction"],
             avi_fraction=demo["avi_fraction"], unlabelled_rate=demo["unlabelled_rate"],
             row_mismatch_fraction=demo["row_mismatch_fraction"], jobs=demo["jobs"])


if __name__ == "__main__":  # worker processes (spawned) import this module without running it
    main()
