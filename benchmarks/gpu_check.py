"""The GPU evidence in one command: every benchmark at design/performance.md's sizes, plus tests/test_cuda.py.

Each part runs in its own subprocess under a time budget (its timeout), with repetitions cut so that the
whole check ends within 8 minutes on one H100 / H200 (TOTAL_BUDGET caps the sum whatever each part
takes). One JSON document goes to stdout and to `--output` (rewritten after every part, so a check cut
short still leaves the parts it finished): the device, the torch / CUDA versions, and per part its
command, budget, wall time, status (ok / failed / timeout), the benchmark's own JSON (or, for test_cuda,
passed / failed / skipped counts) and, when it did not succeed, the tail of its stderr.

    python benchmarks/gpu_check.py                            # CUDA, the real sizes: under 8 minutes
    python benchmarks/gpu_check.py --tiny --device cpu        # smoke test: tiny sizes, about a minute
    python benchmarks/gpu_check.py --only adversarial_step unlearn --output rerun.json
"""

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TOTAL_BUDGET = 470.0  # seconds for all parts together: 8 minutes less the check's own start-up and margin
STDERR_TAIL = 3000

# name -> (budget in seconds, arguments of the real run, arguments of --tiny). Cheapest and surest first;
# embed_tune, whose first class includes torch.compile, last. The sizes are design/performance.md's;
# only the repetitions are cut (expected H100 times in the comments, from the figures there).
PARTS = {
    # 6 tests: conformance of the tiny reference checkpoints in fp32, BigGAN-deep-256 bf16 sampling,
    # text_unlearn on CUDA with the toy models: ~20 s with pytest's start-up.
    "test_cuda": (45, [], []),
    # 256 px batch 16 and 128 px batch 32, rosinality's StyleGAN2: (8 warm-up + 3 x 16 timed) steps at
    # ~0.3 s each, ~35 s (defaults: 16 + 5 x 16).
    "adversarial_step": (60, ["--warmup", "8", "--cycles", "3"], ["--tiny", "--warmup", "1", "--cycles", "1"]),
    # 256 px batch 16, three trainers (plain, repulsion, the reference's reload every G step, ~1.6 s a
    # step): 4 warm-up steps each, then 2 rounds of one 16-step cycle of each (~35 s a round), plus five
    # ~0.8 GiB reference checkpoint files written: ~100 s (defaults: 16 warm-up, 5 rounds).
    "unlearn": (120, ["--warmup", "4", "--cycles", "2"], ["--tiny", "--warmup", "1", "--cycles", "1"]),
    # 256 px StyleGAN2 and CLIP ViT-B/32 (real architecture, random weights), batches 2, 4 and 8: 2 warm-up
    # iterations, 2 repetitions of 6: ~20 s (defaults: 5 warm-up, 3 x 21). Tiny: the toy CLIP, as the
    # random ViT-B/32 alone takes over 2 minutes on a 2-core CPU.
    "text_unlearn": (50, ["--iterations", "6", "--warmup", "2", "--repeats", "2"], ["--tiny", "--clip", "toy-clip"]),
    # BigGAN-deep-256 + ResNet-50, the reference's way against ganedit's: 20 steps per start on both sides
    # (per-class figures extrapolated x10, the JSON says so), 2 steady-state repetitions, a 10-class run;
    # the first class includes torch.compile (~75 s): ~150 s (defaults: 200 steps, 3 repetitions, 50 classes).
    "embed_tune": (
        200,
        ["--steps", "20", "--repeats", "2", "--classes", "10"],
        ["--tiny", "--steps", "2", "--repeats", "1", "--classes", "2"],
    ),
}


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="every part at its smallest size (default device cpu)")
    parser.add_argument("--device", help="device of the benchmarks (default cuda; with --tiny, cpu)")
    parser.add_argument("--output", default="gpu_check.json", help="where the JSON document is written too")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), help="run these parts only (a rerun)")
    parser.add_argument(
        "--total-budget", type=float, default=TOTAL_BUDGET, help=f"seconds for all parts (default {TOTAL_BUDGET:g})"
    )
    args = parser.parse_args()
    args.device = args.device or ("cpu" if args.tiny else "cuda")
    return args


def run_with_budget(command: list[str], budget: float, env: dict) -> tuple[int | None, str, str, float]:
    """(return code or None on timeout, stdout, stderr, wall seconds). The part runs in its own process
    group, killed whole on timeout: torch.compile's worker processes would otherwise keep the pipes open."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=budget)
        code = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        code = None
    return code, stdout, stderr, time.perf_counter() - start


def benchmark_json(stdout: str) -> dict | None:
    """The one JSON object a benchmark prints (anything printed before it is skipped)."""
    text = stdout.strip()
    for start in [0] + [i + 1 for i, c in enumerate(text) if c == "\n" and text[i + 1 : i + 2] == "{"]:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            continue
    return None


def pytest_counts(junit: Path) -> dict | None:
    if not junit.is_file():
        return None
    root = ElementTree.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {key: sum(int(s.get(key, 0)) for s in suites) for key in ("tests", "failures", "errors", "skipped")}
    skips = [
        case.get("name") + ": " + skip.get("message", "")
        for case in root.iter("testcase")
        for skip in case.iter("skipped")
    ]
    return {
        "passed": counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"],
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "skip_reasons": skips,
    }


def run_part(name: str, args, budget: float, workdir: Path) -> dict:
    _, real, tiny = PARTS[name]
    env = dict(os.environ)
    junit = workdir / "test_cuda.xml"
    if name == "test_cuda":
        # -n 0: no xdist workers (addopts has -n auto), one CUDA context for six tests.
        command = [sys.executable, "-m", "pytest", "tests/test_cuda.py", "-n", "0", "-q", "-rs"]
        command += ["-p", "no:cacheprovider", f"--junitxml={junit}"]
    else:
        command = [sys.executable, str(HERE / f"{name}.py"), "--device", args.device, *(tiny if args.tiny else real)]
    if name == "unlearn":
        command += ["--tmpdir", str(workdir)]
    code, stdout, stderr, wall = run_with_budget(command, budget, env)
    part = {
        "command": [
            Path(command[0]).name,
            *[str(Path(c).relative_to(REPO)) if c.startswith(str(REPO)) else c for c in command[1:]],
        ],
        "budget_seconds": round(budget, 1),
        "wall_seconds": round(wall, 2),
        "returncode": code,
    }
    if name == "test_cuda":
        result = pytest_counts(junit)
        ran = result is not None and (result["passed"] > 0 or args.tiny)
        ok = code == 0 and result is not None and result["failed"] == result["errors"] == 0 and ran
        part["stdout_tail"] = stdout[-STDERR_TAIL:]
    else:
        result = benchmark_json(stdout) if code == 0 else None
        ok = result is not None
    part["status"] = "ok" if ok else ("timeout" if code is None else "failed")
    part["result"] = result
    if not ok:
        part["stderr_tail"] = stderr[-STDERR_TAIL:]
        if name != "test_cuda":
            part["stdout_tail"] = stdout[-STDERR_TAIL:]
    return part


def device_name(device: str) -> str:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu: {platform.processor() or platform.machine()}"


def git_commit() -> str | None:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return commit.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "") or None


def main() -> None:
    args = parse_arguments()
    start = time.perf_counter()
    document = {
        "check": "ganedit GPU evidence (benchmarks/gpu_check.py)",
        "tiny": args.tiny,
        "device": device_name(args.device),
        "requested_device": args.device,
        "cuda_available": torch.cuda.is_available(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "git_commit": git_commit(),
        "total_budget_seconds": args.total_budget,
        "note": "sizes of design/performance.md with repetitions cut (each benchmark's JSON has its settings); "
        "per-class embed-tune figures are extrapolated from 20 steps per start"
        if not args.tiny
        else "tiny sizes: a smoke test of the same code, not a measurement",
        "benchmarks_not_run": sorted(
            path.stem for path in HERE.glob("*.py") if path.stem not in {*PARTS, "common", "gpu_check"}
        ),
        "parts": {},
    }
    output = Path(args.output)

    def write() -> None:
        output.write_text(json.dumps(document, indent=2) + "\n")

    with tempfile.TemporaryDirectory(prefix="ganedit-gpu-check-") as workdir:
        for name in args.only or PARTS:
            left = args.total_budget - (time.perf_counter() - start)
            budget = min(PARTS[name][0], left)
            if budget < 5:
                document["parts"][name] = {"status": "timeout", "result": None, "note": "no time left in the total"}
                continue
            print(f"gpu_check: {name} (budget {budget:.0f} s) ...", file=sys.stderr, flush=True)
            document["parts"][name] = part = run_part(name, args, budget, Path(workdir))
            print(f"gpu_check: {name} {part['status']} in {part['wall_seconds']:.1f} s", file=sys.stderr, flush=True)
            document["wall_seconds"] = round(time.perf_counter() - start, 2)
            write()
    document["wall_seconds"] = round(time.perf_counter() - start, 2)
    document["all_ok"] = all(part["status"] == "ok" for part in document["parts"].values())
    write()
    print(json.dumps(document, indent=2))
    sys.exit(0 if document["all_ok"] else 1)


if __name__ == "__main__":
    main()
