import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One worker per core (pytest -n auto): a worker on more than one thread oversubscribes the cores, and
    # on a 2-core machine that makes torch many times slower. Subprocesses the tests start inherit it.
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
CONFORMANCE = Path(os.environ.get("GANEDIT_CONFORMANCE", REPO.parent / "shared" / "conformance"))


@pytest.fixture(scope="session")
def conformance_dir() -> Path:
    """The reference implementations' checkpoints and outputs (shared/conformance beside the repo).

    Skipped with a reason when absent (a user's clone); CI sets GANEDIT_REQUIRE_CONFORMANCE=1 so the
    conformance tests can never be skipped there.
    """
    if not CONFORMANCE.is_dir():
        if os.environ.get("GANEDIT_REQUIRE_CONFORMANCE") == "1":
            pytest.fail(f"conformance data not found at {CONFORMANCE} (set GANEDIT_CONFORMANCE)")
        pytest.skip(f"conformance data not found at {CONFORMANCE}; set GANEDIT_CONFORMANCE to its folder")
    return CONFORMANCE


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one thread: tiny tensors gain nothing from threads, and on a busy 2-core machine
    oversubscribed threads make such tests many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
