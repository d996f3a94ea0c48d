"""The hostile-input suite: every bad value, recipe, file, resume file, full or read-only disk, signal and usage
error a user can cause ends with its exit code (2 for bad input), exactly one line on stderr, no traceback, and
nothing left behind. Each case is a subprocess, run as a user runs it (tests/hostile.py has the machinery).

Kinds: values and recipes here, files in tests/hostile_files.py, resume files in tests/hostile_resume.py,
the machine (read-only and full disks: real tmpfs mounts, root only), signals and messages here.
`pytest tests/test_hostile.py -k machine` runs one kind; the ids are KIND-NAME.
"""

import shutil
import signal
from pathlib import Path

import pytest
from hostile import KINDS, Case, can_mount, problems, run_case

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "ganedit" / "data"
HUGE = str(2**70)
UNLEARN = ["unlearn", "--feature", "star", "--judge", "toy", "-o", "{out}/o.safetensors"]
TEXT_UNLEARN = ["text-unlearn", "--concept", "star", "-o", "{out}/o.safetensors"]
EMBED = ["embed-tune", "--class", "star", "-o", "{out}/o.safetensors"]
MERGE = ["merge", "-o", "{out}/m.safetensors"]
SAMPLE = ["sample", "toy-stylegan2", "-o", "{out}/s.png"]


def recipe(text: str, name: str = "r.toml"):
    def setup(folder: Path) -> None:
        (folder / name).write_text(text)

    return setup


def copy_model(name: str = "toy-stylegan2", as_name: str = "m.safetensors"):
    def setup(folder: Path) -> None:
        shutil.copy(DATA / f"{name}.safetensors", folder / as_name)

    return setup


def image_folder(files: dict[str, bytes]):
    def setup(folder: Path) -> None:
        (folder / "neg").mkdir()
        for name, content in files.items():
            (folder / "neg" / name).write_bytes(content)

    return setup


def with_png(folder: Path) -> None:
    from PIL import Image

    (folder / "neg").mkdir()
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "neg" / "good.png")
    (folder / "neg" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)


def bomb_folder(folder: Path) -> None:
    """A PNG whose header claims 60000 x 60000 pixels (a decompression bomb), in a negatives folder."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    (folder / "neg").mkdir()
    (folder / "neg" / "b.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 100))
        + chunk(b"IEND", b"")
    )


def patch_and_model(folder: Path) -> None:
    shutil.copy(DATA / "toy-biggan.safetensors", folder / "m.safetensors")
    (folder / "p.safetensors").write_bytes(b"not a patch at all")


VALUES = [
    Case("values", "sample-truncation-nan", [*SAMPLE, "--truncation", "nan"], "--truncation"),
    Case("values", "sample-truncation-inf", [*SAMPLE, "--truncation", "inf"], "--truncation"),
    Case("values", "sample-truncation-zero", [*SAMPLE, "--truncation", "0"], "--truncation"),
    Case("values", "sample-seed-huge", [*SAMPLE, "--seed", HUGE], "--seed"),
    Case("values", "sample-seed-negative", [*SAMPLE, "--seed", "-1"], "--seed"),
    Case("values", "toy-render-seed-huge", ["toy", "render", "--out-dir", "{out}/r", "--seed", HUGE], "--seed"),
    Case("values", "unlearn-lr-nan", [*UNLEARN, "--lr", "nan"], "--lr"),
    Case("values", "unlearn-lr-negative", [*UNLEARN, "--lr", "-1e-3"], "--lr"),
    Case("values", "unlearn-alpha-nan", [*UNLEARN, "--alpha", "nan"], "--alpha"),
    Case("values", "unlearn-weight-inf", [*UNLEARN, "--weight", "inf"], "--weight"),
    Case("values", "unlearn-gamma-nan", [*UNLEARN, "--gamma", "nan"], "--gamma"),
    Case("values", "unlearn-seed-huge", [*UNLEARN, "--seed", HUGE], "--seed"),
    Case("values", "unlearn-batch-zero", [*UNLEARN, "--batch-size", "0"], "--batch-size"),
    Case("values", "unlearn-steps-text", [*UNLEARN, "--steps", "many"], "--steps"),
    Case("values", "embed-tune-lr-nan", [*EMBED, "--lr", "nan"], "--lr"),
    Case("values", "embed-tune-weight-decay-inf", [*EMBED, "--weight-decay", "inf"], "--weight-decay"),
    Case("values", "embed-tune-seed-huge", [*EMBED, "--seed", HUGE], "--seed"),
    Case("values", "text-unlearn-lr-nan", [*TEXT_UNLEARN, "--lr", "nan"], "--lr"),
    Case("values", "text-unlearn-clip-weight-nan", [*TEXT_UNLEARN, "--clip-weight", "nan"], "--clip-weight"),
    Case("values", "text-unlearn-betas-nan", [*TEXT_UNLEARN, "--betas", "nan", "0.99"], "--betas"),
    Case("values", "merge-weights-nan", [*MERGE, "--weights", "nan"], "--weight"),
    Case("values", "merge-block-weight-nan", [*MERGE, "--block-weight", "mapping=nan"], "--block-weight"),
    Case("values", "merge-block-weight-no-number", [*MERGE, "--block-weight", "mapping"], "NAME=NUMBER"),
    Case("values", "eval-gate-nan", ["eval", "toy-stylegan2", "--fail-under", "fid=nan"], "fid"),
    Case("values", "eval-samples-zero", ["eval", "toy-stylegan2", "--samples", "0"], "--samples"),
    Case("values", "heartbeat-nan", SAMPLE, "GANEDIT_HEARTBEAT_S", env={"GANEDIT_HEARTBEAT_S": "nan"}),
]

RECIPE_FILE = ["--recipe", "{in}/r.toml"]
RECIPES = [
    Case(
        "recipes",
        "unlearn-steps-text",
        ["unlearn", *RECIPE_FILE],
        "steps",
        recipe('feature = "star"\noutput = "{out}/o.safetensors"\n[settings]\nsteps = "abc"\n'),
    ),
    Case(
        "recipes",
        "unlearn-batch-fraction",
        ["unlearn", *RECIPE_FILE],
        "batch_size",
        recipe('feature = "star"\n[settings]\nbatch_size = 1.5\n'),
    ),
    Case("recipes", "unlearn-seed-text", ["unlearn", *RECIPE_FILE], "seed", recipe('[settings]\nseed = "x"\n')),
    Case("recipes", "unlearn-seed-huge", ["unlearn", *RECIPE_FILE], "seed", recipe(f"[settings]\nseed = {HUGE}\n")),
    Case("recipes", "unlearn-output-number", ["unlearn", *RECIPE_FILE], "output", recipe("output = 5\n")),
    Case("recipes", "unlearn-lr-nan", ["unlearn", *RECIPE_FILE], "lr", recipe("[settings]\nlr = nan\n")),
    Case(
        "recipes", "unlearn-eval-samples-one", ["unlearn", *RECIPE_FILE], "eval_samples", recipe("eval_samples = 1\n")
    ),
    Case("recipes", "unlearn-unknown-key", ["unlearn", *RECIPE_FILE], "unknown key", recipe('colour = "red"\n')),
    Case(
        "recipes",
        "unlearn-unknown-setting",
        ["unlearn", *RECIPE_FILE],
        "unknown setting",
        recipe("[settings]\nlearning_rate = 0.1\n"),
    ),
    Case("recipes", "unlearn-settings-not-table", ["unlearn", *RECIPE_FILE], "settings", recipe("settings = 3\n")),
    Case("recipes", "unlearn-other-command", ["unlearn", *RECIPE_FILE], "ganedit merge", recipe('command = "merge"\n')),
    Case("recipes", "not-toml", ["unlearn", *RECIPE_FILE], "not valid TOML", recipe("steps = = 3\n[[[")),
    Case("recipes", "binary", ["unlearn", *RECIPE_FILE], "recipe", image_folder({})),  # r.toml absent
    Case("recipes", "folder", ["unlearn", "--recipe", "{in}"], "directory"),
    Case(
        "recipes",
        "merge-block-weights-number",
        [*MERGE, *RECIPE_FILE],
        "block_weights",
        recipe("[settings]\nblock_weights = 3\n"),
    ),
    Case("recipes", "merge-density-text", [*MERGE, *RECIPE_FILE], "density", recipe('[settings]\ndensity = "high"\n')),
    Case("recipes", "merge-weights-text", [*MERGE, *RECIPE_FILE], "weights", recipe('[settings]\nweights = ["a"]\n')),
    Case("recipes", "merge-rooting-text", [*MERGE, *RECIPE_FILE], "rooting", recipe('[settings]\nrooting = "no"\n')),
    Case(
        "recipes",
        "merge-dry-run-batch-fraction",
        ["merge", "--dry-run", *RECIPE_FILE],
        "batch_size",
        recipe("[settings]\nbatch_size = 1.5\n"),
    ),
    Case(
        "recipes",
        "merge-dry-run-seed-text",
        ["merge", "--dry-run", *RECIPE_FILE],
        "seed",
        recipe('[settings]\nseed = "x"\n'),
    ),
    Case("recipes", "merge-models-number", ["merge", "--dry-run", *RECIPE_FILE], "models", recipe("models = 3\n")),
    Case("recipes", "embed-tune-steps-text", [*EMBED, *RECIPE_FILE], "steps", recipe('[settings]\nsteps = "abc"\n')),
    Case("recipes", "embed-tune-classes-number", ["embed-tune", *RECIPE_FILE], "classes", recipe("classes = 5\n")),
    Case(
        "recipes",
        "text-unlearn-steps-negative",
        [*TEXT_UNLEARN, *RECIPE_FILE],
        "steps",
        recipe("[settings]\nsteps = -5\n"),
    ),
    Case(
        "recipes",
        "text-unlearn-clip-weights-table",
        [*TEXT_UNLEARN, *RECIPE_FILE],
        "clip_weights",
        recipe("[settings]\nclip_weights = {a = 1}\n"),
    ),
]

TINY_UNLEARN = [*UNLEARN, "--adapt-steps", "2", "--steps", "2", "--eval-samples", "8", "--mine", "8",
                "--negatives-per-model", "4"]  # fmt: skip
MACHINE = [
    Case("machine", "unlearn-read-only", UNLEARN, "read-only", out_mount="ro"),
    Case("machine", "text-unlearn-read-only", TEXT_UNLEARN, "read-only", out_mount="ro"),
    Case("machine", "embed-tune-read-only", EMBED, "read-only", out_mount="ro"),
    Case("machine", "merge-read-only", MERGE, "read-only", out_mount="ro"),
    Case("machine", "sample-grid-read-only", SAMPLE, "read-only", out_mount="ro"),
    Case(
        "machine",
        "sample-folder-read-only",
        ["sample", "toy-stylegan2", "--out-dir", "{out}/d"],
        "read-only",
        out_mount="ro",
    ),
    Case(
        "machine",
        "convert-read-only",
        ["convert", "toy-stylegan2", "-o", "{out}/c.safetensors"],
        "read-only",
        out_mount="ro",
    ),
    Case("machine", "toy-render-read-only", ["toy", "render", "--out-dir", "{out}/r"], "read-only", out_mount="ro"),
    Case(
        "machine",
        "eval-stats-read-only",
        ["eval", "toy-stylegan2", "--save-stats", "{out}/st.safetensors"],
        "read-only",
        out_mount="ro",
    ),
    Case(
        "machine",
        "convert-disk-too-small",
        ["convert", "toy-stylegan2", "-o", "{out}/c.safetensors"],
        "needs about",
        out_mount="size=64k",
    ),
    Case("machine", "unlearn-disk-too-small", TINY_UNLEARN, "needs about", out_mount="size=64k"),
    Case(
        "machine",
        "sample-folder-fills-disk",
        ["sample", "toy-stylegan2", "-n", "256", "--out-dir", "{out}/d"],
        "no space",
        out_mount="size=96k",
    ),
    Case(
        "machine",
        "toy-render-fills-disk",
        ["toy", "render", "-n", "600", "--out-dir", "{out}/r"],
        "no space",
        out_mount="size=96k",
    ),
    Case(
        "machine",
        "sample-grid-fills-disk",
        ["sample", "toy-stylegan2", "-n", "400", "-o", "{out}/s.png"],
        "no space",
        out_mount="size=64k",
    ),
    Case("machine", "output-folder-missing", [*UNLEARN[:-1], "{out}/no/such/o.safetensors"], "does not exist"),
    Case("machine", "output-is-folder", [*UNLEARN[:-1], "{out}"], "folder"),
    Case(
        "machine",
        "out-dir-is-file",
        ["sample", "toy-stylegan2", "--out-dir", "{in}/m.safetensors"],
        "file",
        copy_model(),
    ),
    Case(
        "machine",
        "convert-onto-itself",
        ["convert", "{in}/m.safetensors", "-o", "{in}/m.safetensors"],
        "input",
        copy_model(),
    ),
    Case(
        "machine",
        "unlearn-onto-its-model",
        ["unlearn", "{in}/m.safetensors", "--feature", "star", "--judge", "toy", "-o", "{in}/m.safetensors"],
        "input",
        copy_model(),
    ),  # fmt: skip
    Case(
        "machine",
        "merge-onto-a-parent",
        ["merge", "{in}/m.safetensors", "toy-stylegan2-b", "-o", "{in}/m.safetensors"],
        "input",
        copy_model("toy-stylegan2-a"),
    ),
    Case("machine", "grid-equals-output", [*UNLEARN, "--grid", "{out}/o.safetensors"], "two outputs"),
    Case(
        "machine",
        "apply-patch-onto-its-model",
        ["apply-patch", "{in}/p.safetensors", "{in}/m.safetensors", "-o", "{in}/m.safetensors"],
        "input",
        patch_and_model,
    ),  # fmt: skip
]

FOUND = [  # cases the issue did not list, found while building the suite
    Case(
        "recipes",
        "deeply-nested",
        ["unlearn", *RECIPE_FILE],
        "nested too deeply",
        recipe("a = " + "[" * 100_000 + "]" * 100_000 + "\n"),
    ),
    Case("machine", "name-too-long", ["sample", "toy-stylegan2", "-o", "{out}/" + "x" * 300 + ".png"], "shorter"),
    Case(
        "messages",
        "negatives-decompression-bomb",
        ["unlearn", "--negatives", "{in}/neg", "-o", "{out}/o.safetensors"],
        "b.png",
        bomb_folder,
    ),
    Case("messages", "device-negative-index", [*SAMPLE, "--device", "cuda:-1"], "--device"),
    Case("messages", "model-is-a-device-file", ["info", "/dev/zero"], "not a checkpoint"),
    Case(
        "messages",
        "labels-not-utf8",
        [*UNLEARN, "--judge", "resnet50={in}/j.pt", "--labels", "{in}/l.txt"],
        "l.txt",
        lambda folder: [(folder / "l.txt").write_bytes(b"\xff\xfe\x00bad"), (folder / "j.pt").write_bytes(b"junk")],
    ),
]

RESUME_ALLOWED = ("o.safetensors.resume",)
SIGNALS = [
    Case("signals", "term-while-starting", SAMPLE, "terminated", exit_code=143, signal_after=0.4),
    Case("signals", "term-while-importing", SAMPLE, "terminated", exit_code=143, signal_after=1.5),
    Case(
        "signals",
        "interrupt-while-starting",
        SAMPLE,
        "interrupted",
        exit_code=130,
        signal_after=0.4,
        signum=signal.SIGINT,
    ),
    Case(
        "signals",
        "term-while-sampling",
        ["sample", "toy-stylegan2", "-n", "10000", "--batch-size", "4", "--out-dir", "{out}/d"],
        "terminated",
        exit_code=143,
        signal_after=6.0,
    ),  # fmt: skip
    Case(
        "signals",
        "term-while-unlearning",
        [*TINY_UNLEARN[:-6], "--steps", "100000"],
        "--resume",
        exit_code=143,
        signal_after="unlearn",
        env={"GANEDIT_HEARTBEAT_S": "0.2"},
        out_allowed=RESUME_ALLOWED,
    ),
    Case(
        "signals",
        "term-while-evaluating",
        [*TINY_UNLEARN[:-6], "--eval-samples", "20000"],
        "terminated",
        exit_code=143,
        signal_after="evaluating",
        out_allowed=RESUME_ALLOWED,
    ),
    Case(
        "signals",
        "term-while-text-unlearning",
        [*TEXT_UNLEARN, "--steps", "100000"],
        "--resume",
        exit_code=143,
        signal_after="step",
        env={"GANEDIT_HEARTBEAT_S": "0.2"},
        out_allowed=RESUME_ALLOWED,
    ),
]

MESSAGES = [
    Case("messages", "unknown-command", ["frobnicate"], "No such command"),
    Case("messages", "unknown-option", [*SAMPLE, "--colour", "red"], "No such option"),
    Case("messages", "missing-argument", ["info"], "MODEL"),
    Case("messages", "extra-argument", ["info", "toy-stylegan2", "toy-biggan"], "unexpected extra argument"),
    Case("messages", "count-zero", [*SAMPLE, "-n", "0"], "-n"),
    Case("messages", "sample-batch-zero", [*SAMPLE, "--batch-size", "0"], "--batch-size"),
    Case("messages", "grid-onto-folder", ["sample", "toy-stylegan2", "-o", "{out}"], "directory"),
    Case("messages", "sample-nowhere", ["sample", "toy-stylegan2"], "say where to write"),
    Case("messages", "bad-device", [*SAMPLE, "--device", "tpu"], "--device"),
    Case("messages", "no-gpu", [*SAMPLE, "--device", "cuda:7"], "cuda"),
    Case("messages", "json-usage-error", [*SAMPLE, "-n", "0", "--json"], "-n"),
    Case("messages", "unknown-zoo-name", ["info", "toy-stylegn2"], "toy-stylegan2"),
    Case("messages", "missing-model-file", ["info", "{in}/nothing.pkl"], "no such file"),
    Case("messages", "unknown-class", ["embed-tune", "--class", "dasy", "-o", "{out}/o.safetensors"], "dasy"),
    Case("messages", "unknown-judge", [*UNLEARN, "--judge", "nosuchjudge"], "nosuchjudge"),
    Case("messages", "labels-missing", [*UNLEARN, "--judge", "{in}/j.pt", "--labels", "{in}/labels.txt"], "labels"),
    Case(
        "messages",
        "negatives-missing",
        ["unlearn", "--negatives", "{in}/neg", "-o", "{out}/o.safetensors"],
        "does not exist",
    ),
    Case(
        "messages",
        "negatives-empty",
        ["unlearn", "--negatives", "{in}/neg", "-o", "{out}/o.safetensors"],
        "no image files",
        image_folder({}),
    ),
    Case(
        "messages",
        "negatives-not-images",
        ["unlearn", "--negatives", "{in}/neg", "-o", "{out}/o.safetensors"],
        "no image files",
        image_folder({"notes.txt": b"hello", "data.csv": b"1,2"}),
    ),
    Case(
        "messages",
        "negatives-corrupt-png",
        ["unlearn", "--negatives", "{in}/neg", "-o", "{out}/o.safetensors"],
        "bad.png",
        with_png,
    ),
    Case(
        "messages",
        "negatives-a-file",
        ["unlearn", "--negatives", "{in}/m.safetensors", "-o", "{out}/o.safetensors"],
        "folder",
        copy_model(),
    ),
    Case(
        "messages",
        "unlearn-biggan",
        ["unlearn", "toy-biggan", "--feature", "star", "-o", "{out}/o.safetensors"],
        "StyleGAN2",
    ),
    Case(
        "messages",
        "embed-tune-stylegan",
        ["embed-tune", "toy-stylegan2", "--class", "star", "-o", "{out}/o.safetensors"],
        "BigGAN",
    ),  # fmt: skip
    Case("messages", "merge-one-model", ["merge", "toy-stylegan2-a", "-o", "{out}/m.safetensors"], "at least two"),
    Case("messages", "resume-without-file", [*UNLEARN, "--resume"], "resume"),
    Case("messages", "gate-without-value", ["eval", "toy-stylegan2", "--fail-under", "fid"], "METRIC=NUMBER"),
    Case("messages", "eval-nothing-to-do", ["eval", "toy-stylegan2"], "nothing to evaluate"),
]


def _optional_cases(module: str) -> list[Case]:
    try:
        return __import__(module).CASES
    except ModuleNotFoundError as error:
        if error.name != module:
            raise
        return []


CASES = [*VALUES, *RECIPES, *_optional_cases("hostile_files"), *_optional_cases("hostile_resume"), *MACHINE,
    *FOUND,
         *SIGNALS, *MESSAGES]  # fmt: skip


def test_the_suite_covers_every_kind_and_at_least_sixty_cases():
    kinds = {case.kind for case in CASES}
    assert len(CASES) >= 60 and kinds >= set(KINDS) - {"files", "resume"}, (len(CASES), kinds)
    assert len({case.id for case in CASES}) == len(CASES), "case ids must be unique"


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_hostile_case(case: Case, tmp_path):
    if case.out_mount is not None and can_mount() is not None:
        pytest.skip(can_mount())
    outcome = run_case(case, tmp_path)
    found = problems(case, outcome)
    assert not found, f"{found}\nstderr:\n{outcome.stderr[-3000:]}"
