"""The CI gate of ci-pipeline.sh through the Python API: the same procedure, the same settings.

    python examples/python_api.py [TARGET]        # exit 1 when the new class's accuracy misses TARGET (0.5)

Everything the command line does is a function with the same parameters: a settings dataclass
(EmbedTuneSettings; its fields are the command's options), a judge, the procedure, the writer.
"""

import sys

import ganedit
from ganedit.generators.formats import resolve_model_path
from ganedit.judges import load_judge, resolve_label
from ganedit.procedures.embed_tune import EmbedTuneSettings, embed_tune, save_model
from ganedit.store.provenance import parent_record


def main(target: float = 0.5) -> int:
    bundle = ganedit.load_model("toy-biggan")  # the embedded toy BigGAN-deep: 'heart' was never seen
    judge = load_judge("toy")  # the toy oracle's shape head
    heart = resolve_label(judge, "heart")
    result = embed_tune(bundle.generator, judge, [heart], EmbedTuneSettings(seed=0), class_names=bundle.class_names)
    report = result.reports[0]
    save_model(result, "heart.safetensors", parents=[parent_record("toy-biggan", resolve_model_path("toy-biggan"))])
    print(f"heart accuracy {report.before.accuracy:.2f} -> {report.after.accuracy:.2f} (target {target:.2f})")
    return 0 if report.after.accuracy >= target else 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 0.5))
