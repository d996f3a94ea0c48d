"""The hostile-input suite's machinery: a case is a command a user types, run in a subprocess as they run it.

Each case runs in a fresh workspace: `{in}` is a folder its setup fills with whatever hostile files it needs,
`{out}` an empty folder every output of the command must go to. A case holds when

- the exit code is the expected one (2 unless said otherwise),
- stderr is exactly one line, `ganedit: error: ...`, containing the expected text, with no traceback,
- nothing is left in `{out}` (no partial output, no temporary file) and nothing new appeared in `{in}`.

The tables of cases are in tests/test_hostile.py (and the modules it imports); `python tests/hostile.py`
is not an entry point: run `pytest tests/test_hostile.py -v` (or with `-k files` for one kind).
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("values", "recipes", "files", "resume", "machine", "signals", "messages")


@dataclass
class Case:
    kind: str  # one of KINDS
    name: str  # short, unique: the test id
    argv: list[str]  # after `ganedit`; "{in}", "{out}" and "{ws}" are replaced by the workspace's folders
    expect: str = ""  # a substring of the one error line (case-insensitive)
    setup: Callable[[Path], None] | None = None  # setup(in_folder): writes the hostile inputs
    exit_code: int = 2
    env: dict = field(default_factory=dict)  # extra environment ("{in}" etc. replaced too)
    signal_after: str | float | None = None  # send `signum` once this text is on stderr, or after these seconds
    signum: int = signal.SIGTERM
    timeout: float = 240.0
    out_allowed: tuple[str, ...] = ()  # files that may remain in {out} (e.g. a resume file after SIGTERM)
    out_mount: str | None = None  # mount a tmpfs on {out}: "ro" (read-only) or "size=64k" (a small disk); root only

    def __post_init__(self):
        assert self.kind in KINDS, self.kind

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.name}"


@dataclass
class Outcome:
    returncode: int
    stderr: str
    stdout: str
    left_in_out: list[str]
    new_in_in: list[str]

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _fill(text: str, folders: dict[str, Path]) -> str:
    for name, folder in folders.items():
        text = text.replace("{" + name + "}", str(folder))
    return text


def _listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")} if folder.exists() else set()


def can_mount() -> str | None:
    """None where a case may mount a tmpfs (root on Linux), else the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return "tmpfs mounts need Linux"
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root (CI runs as root)"
    return None


def run_case(case: Case, workspace: Path) -> Outcome:
    """Run one case in `workspace` (an empty folder) and report what happened."""
    folders = {"in": workspace / "in", "out": workspace / "out", "ws": workspace}
    folders["in"].mkdir(parents=True, exist_ok=True)
    folders["out"].mkdir(parents=True, exist_ok=True)
    if case.out_mount is None:
        return _run_case(case, workspace, folders)
    subprocess.run(["mount", "-t", "tmpfs", "-o", case.out_mount, "tmpfs", str(folders["out"])], check=True)
    try:
        return _run_case(case, workspace, folders)
    finally:
        subprocess.run(["umount", "-l", str(folders["out"])], check=False)


def _run_case(case: Case, workspace: Path, folders: dict[str, Path]) -> Outcome:
    if case.setup is not None:
        case.setup(folders["in"])
    before_in = _listing(folders["in"])
    argv = [_fill(arg, folders) for arg in case.argv]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "GANEDIT_HEARTBEAT_S": "1000",
        "GANEDIT_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
        **{key: _fill(value, folders) for key, value in case.env.items()},
    }
    env.pop("GANEDIT_DEBUG", None)
    command = [sys.executable, "-m", "ganedit", *argv]
    if case.signal_after is None:
        result = subprocess.run(command, env=env, cwd=workspace, capture_output=True, text=True, timeout=case.timeout)
        returncode, stdout, stderr = result.returncode, result.stdout, result.stderr
    else:
        returncode, stdout, stderr = _run_and_signal(command, env, workspace, case)
    left = sorted(_listing(folders["out"]) - set(case.out_allowed))
    new_in = sorted(_listing(folders["in"]) - before_in)
    return Outcome(returncode, stderr, stdout, left, new_in)


def _run_and_signal(command, env, workspace: Path, case: Case) -> tuple[int, str, str]:
    """Start the command, send SIGTERM once `case.signal_after` shows on stderr, and collect the outcome."""
    stderr_path = workspace / "stderr.txt"
    with open(stderr_path, "w") as stderr_file:
        process = subprocess.Popen(command, env=env, cwd=workspace, stdout=subprocess.PIPE, stderr=stderr_file,
                                   text=True, preexec_fn=_default_signals)  # fmt: skip
        started = time.monotonic()
        deadline = started + case.timeout
        sent = False
        while process.poll() is None and time.monotonic() < deadline:
            if not sent and _due(case.signal_after, started, stderr_path):
                process.send_signal(case.signum)
                sent = True
            time.sleep(0.02)
        if process.poll() is None:
            process.kill()
        stdout = process.stdout.read()
        process.wait()
    stderr = stderr_path.read_text()
    stderr_path.unlink()
    if not sent:
        stderr += f"\n[test: the signal was never sent; {case.signal_after!r} did not appear]"
    return process.returncode, stdout, stderr


def _default_signals() -> None:
    """In the child: SIGINT as a terminal delivers it (a test runner's workers may ignore it, and a child
    inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _due(after: str | float, started: float, stderr_path: Path) -> bool:
    if isinstance(after, str):
        return after in stderr_path.read_text()
    return time.monotonic() - started >= after


def problems(case: Case, outcome: Outcome) -> list[str]:
    """What about the outcome breaks the contract (empty: the case held)."""
    found = []
    if outcome.returncode != case.exit_code:
        found.append(f"exit code {outcome.returncode}, expected {case.exit_code}")
    if "Traceback" in outcome.stderr:
        found.append("a traceback on stderr")
    lines = outcome.lines
    if case.signal_after is None and len(lines) != 1:
        found.append(f"{len(lines)} lines on stderr, expected exactly one")
    last = lines[-1] if lines else ""
    if not last.startswith("ganedit: error: "):
        found.append(f"the (last) line is not `ganedit: error: ...`: {last[:200]!r}")
    if "internal error" in last:
        found.append("an internal error")
    if case.expect and case.expect.lower() not in last.lower():
        found.append(f"the error does not say {case.expect!r}")
    if outcome.left_in_out:
        found.append(f"left in the output folder: {outcome.left_in_out}")
    if outcome.new_in_in:
        found.append(f"new files beside the inputs: {outcome.new_in_in}")
    return found
