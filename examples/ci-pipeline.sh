#!/usr/bin/env bash
# A CI gate on an edit: teach the toy BigGAN-deep the class 'heart', read the --json report, and fail the
# pipeline (exit 1) when the held-out accuracy of the new class misses the target; pass (exit 0) otherwise.
#
#   examples/ci-pipeline.sh                    # target 0.5 (the edit reaches about 0.66 on a CPU)
#   TARGET=0.99 examples/ci-pipeline.sh        # out of reach: the pipeline fails
#   OUT=build/ examples/ci-pipeline.sh         # where the model and report go (default: a temporary folder)
#
# ganedit's own exit codes pass through: 2 for bad input, 1 for an internal error, 130 when interrupted.
set -euo pipefail

target="${TARGET:-0.5}"
out="${OUT:-$(mktemp -d)}"
mkdir -p "$out"

ganedit embed-tune --class heart --seed 0 -o "$out/heart.safetensors" --json --quiet > "$out/report.json"

python3 - "$out/report.json" "$target" <<'PY'
import json
import sys

report = json.load(open(sys.argv[1]))
target = float(sys.argv[2])
row = next(row for row in report["classes"] if row["label"] == "heart")
accuracy = row["after"]["accuracy"]
verdict = "pass" if accuracy >= target else "FAIL"
print(f"{verdict}: heart accuracy {row['before']['accuracy']:.2f} -> {accuracy:.2f} "
      f"(target {target:.2f}, {report['judge']}, held-out latents)")
sys.exit(0 if accuracy >= target else 1)
PY
