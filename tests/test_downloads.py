"""Downloads of zoo files and of the judges' weights, with the network faked at its boundary.

Hub addresses go through a fake `huggingface_hub.hf_hub_download`; other addresses through a fake
`urllib.request.urlopen` that serves bytes, honours or ignores Range, fails a given number of times,
or waits until released; the judges' loaders are replaced by recorders. Nothing here opens a socket.
"""

import hashlib
import io
import json
import threading
import urllib.error
from pathlib import Path

import huggingface_hub
import pytest

from ganedit.cli import main
from ganedit.errors import GaneditError
from ganedit.judges import weights
from ganedit.store import downloads, zoo

DATA = bytes(range(256)) * 4096  # 1 MiB, so a resumed transfer reads in more than one chunk
URL = "https://example.org/weights/model.bin"
MIRROR = "https://mirror.example.org/model.bin"


@pytest.fixture(autouse=True)
def online(monkeypatch, tmp_path):
    for name in ("GANEDIT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GANEDIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(downloads, "_download_progress", None)


@pytest.fixture
def pauses(monkeypatch):
    """The waits before retries, recorded instead of slept."""
    taken = []
    monkeypatch.setattr(downloads, "sleep", taken.append)
    return taken


class FakeResponse:
    def __init__(self, status: int, headers: dict, body: bytes, cut_after: int | None = None, gate=None):
        self.status, self.headers = status, headers
        self.body, self.cut_after, self.gate = io.BytesIO(body), cut_after, gate

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size: int) -> bytes:
        if self.gate is not None:
            self.gate.wait(10)
        if self.cut_after is not None and self.body.tell() >= self.cut_after:
            raise ConnectionResetError("connection reset by peer")
        limit = size if self.cut_after is None else min(size, self.cut_after - self.body.tell())
        return self.body.read(limit)


class FakeServer:
    """Serves DATA at every address: honouring Range or not, failing its first `failures` requests, cutting
    its first answer off after `cut_after` bytes, or holding every answer until `gate` is set."""

    def __init__(self, data=DATA, honour_range=True, failures=0, cut_after=None, gate=None, error=None):
        self.data, self.honour_range, self.failures = data, honour_range, failures
        self.cut_after, self.gate, self.error = cut_after, gate, error
        self.requests = []  # (url, Range header or None)
        self.started = threading.Event()

    def urlopen(self, request, timeout=None):
        self.requests.append((request.full_url, request.get_header("Range")))
        self.started.set()
        if len(self.requests) <= self.failures:
            raise self.error or urllib.error.URLError(ConnectionRefusedError("connection refused"))
        start = int(request.get_header("Range")[len("bytes=") : -1]) if request.get_header("Range") else 0
        cut_after, self.cut_after = self.cut_after, None
        if self.honour_range and start:
            body = self.data[start:]
            headers = {"Content-Length": str(len(body)), "Content-Range": f"bytes {start}-{len(self.data) - 1}/*"}
            return FakeResponse(206, headers, body, cut_after, self.gate)
        return FakeResponse(200, {"Content-Length": str(len(self.data))}, self.data, cut_after, self.gate)


@pytest.fixture
def serve(monkeypatch):
    def install(**options) -> FakeServer:
        server = FakeServer(**options)
        monkeypatch.setattr(downloads.urllib.request, "urlopen", server.urlopen)
        return server

    return install


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------------
# Other addresses: urllib, resumed, retried, locked


def test_a_part_file_is_resumed_with_a_range_request(serve, tmp_path):
    server = serve()
    target = tmp_path / "model.bin"
    target.with_name("model.bin.part").write_bytes(DATA[:300_000])
    shown = []

    class Recorder:
        def __init__(self, description, total):
            shown.append(total)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def advance(self, n):
            shown.append(n)

    downloads.set_download_progress(Recorder)
    downloads.download("test", (URL,), target, sha256(DATA))
    assert server.requests == [(URL, "bytes=300000-")]
    assert target.read_bytes() == DATA and not target.with_name("model.bin.part").exists()
    assert shown[0] == len(DATA) and sum(shown[1:]) == len(DATA)  # the bar counts the resumed bytes too
    assert not downloads.lock_path(target).exists()


def test_a_server_ignoring_range_is_read_from_the_start(serve, tmp_path):
    server = serve(honour_range=False)
    target = tmp_path / "model.bin"
    target.with_name("model.bin.part").write_bytes(b"stale bytes that are not the file's start")
    downloads.download("test", (URL,), target, sha256(DATA))
    assert server.requests[0][1].startswith("bytes=")
    assert target.read_bytes() == DATA


def test_a_cut_off_transfer_is_retried_and_resumed(serve, tmp_path, pauses):
    server = serve(cut_after=400_000)
    target = tmp_path / "model.bin"
    downloads.download("test", (URL,), target)
    assert server.requests == [(URL, None), (URL, "bytes=400000-")]
    assert pauses == [downloads.RETRY_WAITS_S[0]] and target.read_bytes() == DATA


def test_transient_failures_are_retried_then_succeed(serve, tmp_path, pauses):
    server = serve(failures=2)
    target = tmp_path / "model.bin"
    downloads.download("test", (URL,), target)
    assert len(server.requests) == 3 and pauses == list(downloads.RETRY_WAITS_S)
    assert target.read_bytes() == DATA


def test_every_address_failing_is_one_line_naming_them(serve, tmp_path, pauses):
    server = serve(failures=99)
    target = tmp_path / "models" / "model.bin"
    with pytest.raises(GaneditError) as caught:
        downloads.download("zoo model 'x'", (URL, MIRROR), target)
    message = str(caught.value)
    assert "\n" not in message and URL in message and MIRROR in message and "connection refused" in message
    assert f"download it by hand into {target.parent}" in message
    assert len(server.requests) == 2 * (len(downloads.RETRY_WAITS_S) + 1)
    assert not target.exists()


def test_a_missing_file_is_not_retried(serve, tmp_path, pauses):
    server = serve(failures=1, error=urllib.error.HTTPError(URL, 404, "Not Found", {}, None))
    with pytest.raises(GaneditError, match="HTTP 404 Not Found"):
        downloads.download("test", (URL,), tmp_path / "model.bin")
    assert len(server.requests) == 1 and pauses == []


def test_a_wrong_sha256_deletes_the_part_and_the_next_try_starts_afresh(serve, tmp_path):
    server = serve()
    target = tmp_path / "model.bin"
    with pytest.raises(GaneditError, match="wrong sha256"):
        downloads.download("test", (URL,), target, sha256(b"another file"))
    assert not target.exists() and not target.with_name("model.bin.part").exists()
    downloads.download("test", (URL,), target, sha256(DATA))
    assert server.requests[-1] == (URL, None) and target.read_bytes() == DATA


def test_a_second_downloader_waits_for_the_first_then_finds_the_file(serve, tmp_path):
    gate = threading.Event()
    server = serve(gate=gate)
    target = tmp_path / "model.bin"
    errors = []

    def fetch():
        try:
            downloads.download("test", (URL,), target)
        except Exception as error:  # noqa: BLE001 (reported by the assertion below)
            errors.append(error)

    first, second = threading.Thread(target=fetch), threading.Thread(target=fetch)
    first.start()
    assert server.started.wait(5)
    second.start()
    second.join(0.3)
    assert second.is_alive() and len(server.requests) == 1  # waiting on the lock, not downloading
    gate.set()
    first.join(5)
    second.join(5)
    assert not errors and len(server.requests) == 1
    assert target.read_bytes() == DATA and not downloads.lock_path(target).exists()


def test_a_waiting_downloader_says_what_it_waits_for(serve, tmp_path, monkeypatch):
    gate = threading.Event()
    server = serve(gate=gate)
    target = tmp_path / "model.bin"
    shown = []

    class Bar(downloads._Silent):
        def __init__(self, description, total):
            shown.append(description)

    monkeypatch.setattr(downloads, "_download_progress", Bar)
    first = threading.Thread(target=downloads.download, args=("test", (URL,), target))
    first.start()
    assert server.started.wait(5)
    second = threading.Thread(target=downloads.download, args=("test", (URL,), target))
    second.start()
    second.join(0.3)
    gate.set()
    first.join(5)
    second.join(5)
    assert shown == ["test: model.bin", "waiting for another process downloading model.bin"]


# ---------------------------------------------------------------------------------------------------
# Hub addresses: huggingface_hub.hf_hub_download


class FakeHub:
    """hf_hub_download writing `contents` into local_dir under the repository's file name."""

    def __init__(self, contents: bytes = b"weights"):
        self.contents, self.calls = contents, []

    def __call__(self, repo_id, filename, *, revision=None, repo_type=None, local_dir=None, **rest):
        self.calls.append({"repo_id": repo_id, "filename": filename, "revision": revision, "repo_type": repo_type,
                           "local_dir": Path(local_dir), **rest})  # fmt: skip
        path = Path(local_dir) / filename
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.contents)
        return str(path)


@pytest.fixture
def hub(monkeypatch):
    fake = FakeHub()
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    return fake


def test_hub_addresses_name_repository_file_and_revision():
    assert downloads.hub_file(zoo.HF_BIGGAN_128 + "pytorch_model.bin") == downloads.HubFile(
        "osanseviero/BigGAN-deep-128", "pytorch_model.bin", "main"
    )
    assert downloads.hub_file("https://huggingface.co/gpt2/resolve/refs%2Fpr%2F1/a/b.bin?download=true") == (
        downloads.HubFile("gpt2", "a/b.bin", "refs/pr/1")
    )
    assert downloads.hub_file("https://huggingface.co/datasets/o/d/resolve/v1/x.csv").repo_type == "dataset"
    assert downloads.hub_file(URL) is None and downloads.hub_file("https://huggingface.co/o/m/blob/main/x") is None


def test_a_zoo_model_falls_back_to_its_hub_mirror(serve, hub, pauses, tmp_path):
    server = serve(failures=99)  # the S3 address is down
    folder = tmp_path / "cache" / "biggan-deep-128"
    assert zoo.resolve("biggan-deep-128") == folder
    assert [call["filename"] for call in hub.calls] == ["config.json", "pytorch_model.bin"]
    assert [(call["repo_id"], call["revision"], call["local_dir"]) for call in hub.calls] == [
        ("osanseviero/BigGAN-deep-128", "main", folder / f".{name}.hub")
        for name in ("config.json", "pytorch_model.bin")
    ]
    assert all(url.startswith(zoo.BIGGAN_S3) for url, _ in server.requests)  # urllib never asked the hub
    assert set(json.loads((folder / "sha256.json").read_text())) == {"config.json", "pytorch_model.bin"}
    assert sorted(path.name for path in folder.iterdir()) == ["config.json", "pytorch_model.bin", "sha256.json"]


def test_the_pin_still_catches_a_wrong_file_from_the_hub(serve, hub, pauses, tmp_path):
    serve(failures=99)
    folder = tmp_path / "cache" / "biggan-deep-128"
    zoo.resolve("biggan-deep-128")
    (folder / "pytorch_model.bin").unlink()
    hub.contents = b"something else"
    with pytest.raises(GaneditError, match="pinned at first download"):
        zoo.resolve("biggan-deep-128")


def test_a_published_sha256_is_checked_on_hub_files_too(hub, tmp_path):
    target = tmp_path / "pytorch_model.bin"
    with pytest.raises(GaneditError, match="wrong sha256"):
        downloads.download("test", (zoo.HF_BIGGAN_128 + "pytorch_model.bin",), target, sha256(b"not it"))
    assert not target.exists()
    downloads.download("test", (zoo.HF_BIGGAN_128 + "pytorch_model.bin",), target, sha256(b"weights"))
    assert target.read_bytes() == b"weights"


@pytest.mark.parametrize("variable", ["GANEDIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_never_calls_the_hub(serve, hub, monkeypatch, variable, tmp_path):
    server = serve()
    monkeypatch.setenv(variable, "1")
    with pytest.raises(GaneditError, match="offline"):
        zoo.resolve("biggan-deep-128")
    with pytest.raises(GaneditError, match="offline"):
        downloads.download("test", (zoo.HF_BIGGAN_128 + "config.json",), tmp_path / "config.json")
    assert hub.calls == [] and server.requests == []


# ---------------------------------------------------------------------------------------------------
# The judges' weights: ganedit zoo download --judges / --clip / --lpips / --inception / --all-aux


@pytest.fixture
def loaders(monkeypatch, tmp_path):
    """The judges' loaders replaced by recorders that each leave one file in a cache, as a download would."""
    import ganedit.judges.classifiers as classifiers
    import ganedit.judges.clip as clip
    import ganedit.judges.fidelity as fidelity
    import ganedit.judges.perceptual as perceptual

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    calls = []

    def recorder(kind, folder):
        def load(name="inception-v3-compat"):
            calls.append((kind, name))
            path = tmp_path / folder / f"{kind}-{name}.bin"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(b"w")

        return load

    snapshot = "hf/models--laion--clip/snapshots/abc"
    monkeypatch.setattr(classifiers, "load_judge", recorder("judge", "torch/hub/checkpoints"))
    monkeypatch.setattr(clip, "load_clip", recorder("clip", snapshot))
    monkeypatch.setattr(perceptual, "load_perceptual", recorder("lpips", "torch/hub/checkpoints"))
    monkeypatch.setattr(fidelity, "load_inception", recorder("inception", "torch/hub/checkpoints"))
    return calls


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_zoo_download_fetches_the_named_aux_weights(capsys, loaders, tmp_path):
    code, out, _ = run(capsys, "zoo", "download", "--judges", "resnet50,vit_b_16", "--clip", "ViT-B-32",
                       "--lpips", "alex,vgg", "--inception", "--json", "-q")  # fmt: skip
    assert code == 0
    assert loaders == [("judge", "resnet50"), ("judge", "vit_b_16"), ("clip", "ViT-B-32"), ("lpips", "lpips-alex"),
                       ("lpips", "lpips-vgg"), ("inception", "inception-v3-compat")]  # fmt: skip
    report = json.loads(out)
    assert report["model"] is None and [record["name"] for record in report["aux"]][:2] == ["resnet50", "vit_b_16"]
    clip_file = tmp_path / "hf/models--laion--clip/snapshots/abc/clip-ViT-B-32.bin"
    assert report["aux"][2]["written"] == [str(clip_file)]
    assert str(tmp_path / "torch/hub/checkpoints/judge-resnet50.bin") in report["written"]
    assert len(report["written"]) == 6


def test_all_aux_fetches_the_defaults_and_a_cached_file_is_not_written_again(capsys, loaders):
    assert run(capsys, "zoo", "download", "--all-aux", "--json", "-q")[0] == 0
    defaults = weights.AUX_DEFAULTS
    expected = [("judge", name) for name in defaults["judges"]] + [("clip", name) for name in defaults["clips"]]
    expected += [("lpips", f"lpips-{name}") for name in defaults["lpips"]] + [("inception", "inception-v3-compat")]
    assert loaders == expected
    code, out, _ = run(capsys, "zoo", "download", "--judges", "resnet50", "--lpips", "lpips-alex")
    assert code == 0 and "judge resnet50: already cached" in out and "lpips lpips-alex: already cached" in out


@pytest.mark.parametrize("variable", ["GANEDIT_OFFLINE", "HF_HUB_OFFLINE"])
def test_aux_downloads_refuse_offline(capsys, loaders, monkeypatch, variable):
    monkeypatch.setenv(variable, "1")
    code, _, err = run(capsys, "zoo", "download", "--judges", "resnet50", "--inception")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and "offline" in lines[0] and "resnet50" in lines[0]
    assert loaders == []


def test_an_unknown_lpips_network_is_refused_before_anything_is_fetched(capsys, loaders):
    code, _, err = run(capsys, "zoo", "download", "--judges", "resnet50", "--lpips", "alex,squeeze")
    assert code == 2 and "'squeeze'" in err and "alex, vgg" in err and loaders == []


def test_zoo_download_needs_something_to_download(capsys):
    code, _, err = run(capsys, "zoo", "download")
    assert code == 2 and "--all-aux" in err


def test_zoo_download_of_a_model_name_still_reports_its_path(capsys):
    code, out, _ = run(capsys, "zoo", "download", "toy-biggan", "--json", "-q")
    report = json.loads(out)
    assert code == 0 and report["model"] == "toy-biggan" and report["path"].endswith("toy-biggan.safetensors")
    assert report["written"] == [] and report["aux"] == []
