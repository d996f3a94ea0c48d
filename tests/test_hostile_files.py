"""The opt-out and the limits the hostile model files of tests/hostile_files.py rely on (the cases themselves run
in tests/test_hostile.py)."""

import json
import pickle

import pytest
import torch
from helpers import TINY_BIGGAN, tiny_stylegan2_pair
from hostile import Case, run_case
from hostile_files import poison, rewritten, toy_contents

import ganedit
from ganedit.errors import ArchitectureMismatchError, CheckpointFormatError
from ganedit.generators import registry
from ganedit.generators.biggan_deep import BigGANDeep
from ganedit.store.safe_torch import first_line

NAN_FILE = rewritten("toy-stylegan2", "nan.safetensors", tensors=poison("G.synthesis.b8.conv0.weight", float("nan")))


def test_allow_nonfinite_loads_the_nan_file(tmp_path):
    case = Case("files", "allow-nonfinite", ["info", "{in}/nan.safetensors", "--allow-nonfinite", "--json"],
                setup=NAN_FILE, exit_code=0)  # fmt: skip
    outcome = run_case(case, tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    assert json.loads(outcome.stdout)["format"] == "ganedit (safetensors)"


def test_allow_nonfinite_in_python(tmp_path, monkeypatch):
    NAN_FILE(tmp_path)
    path = tmp_path / "nan.safetensors"
    with pytest.raises(CheckpointFormatError, match=r"generator tensor synthesis\.b8\.conv0\.weight holds NaN"):
        ganedit.load_model(path)
    generator = ganedit.load_generator(path, allow_nonfinite=True)
    assert torch.isnan(generator.synthesis.b8.conv0.weight).any()
    monkeypatch.setenv("GANEDIT_ALLOW_NONFINITE", "1")
    assert ganedit.load_model(path).generator is not None
    with pytest.raises(CheckpointFormatError, match="--allow-nonfinite"):
        ganedit.load_model(path, allow_nonfinite=False)


def test_a_model_larger_than_the_memory_is_refused_before_it_is_built(monkeypatch):
    monkeypatch.setattr(registry, "available_memory", lambda: 1_000_000)
    monkeypatch.setattr(BigGANDeep, "__init__", lambda *args: pytest.fail("built before the memory check"))
    with pytest.raises(CheckpointFormatError, match=r"needs at least 5\.1 MB of memory, but only 1\.0 MB is available"):
        ganedit.load_model("toy-biggan")


def test_available_memory_is_known_here():
    available = registry.available_memory()
    assert available is None or available > 0


def test_least_elements_is_a_tight_lower_bound():
    _, metadata = toy_contents("toy-stylegan2")
    modules = [*tiny_stylegan2_pair(c_dim=3), *tiny_stylegan2_pair(), BigGANDeep(BigGANDeep.Config(**TINY_BIGGAN))]
    for key in ("ganedit.generator", "ganedit.discriminator"):
        spec = json.loads(metadata[key])
        modules.append(registry.build(spec["arch"], spec["config"]))
    for module in modules:
        actual = sum(tensor.numel() for tensor in [*module.parameters(), *module.buffers()])
        least = module.least_elements(module.config)
        assert 0.9 * actual <= least <= actual, (module.arch, least, actual)


def test_astronomical_configs_are_refused_without_building():
    _, metadata = toy_contents("toy-stylegan2")
    config = json.loads(metadata["ganedit.generator"])["config"]
    with pytest.raises(ArchitectureMismatchError, match="needs at least about 2\\*\\*"):
        registry.build("stylegan2-generator", {**config, "z_dim": 2**100_000}, "crafted", shapes={"x": [10]})
    with pytest.raises(CheckpointFormatError, match="needs at least about 2\\*\\*"):
        registry.build("stylegan2-generator", {**config, "w_dim": 10**40}, "crafted")


def test_torch_loading_errors_become_their_meaningful_line():
    weights_only = pickle.UnpicklingError(
        "Weights only load failed. In PyTorch 2.6, we changed the default value of the `weights_only` argument.\n\n\n"
        "Trying to load unsupported GLOBAL posix.system whose module posix is blocked.\n\n"
        "Check the documentation of torch.load to learn more about types accepted by default with weights_only."
    )
    assert first_line(weights_only) == "Trying to load unsupported GLOBAL posix.system whose module posix is blocked"
    older = RuntimeError(
        "Weights only load failed. Re-running `torch.load` ...\nWeightsUnpickler error: Unsupported operand 149"
    )
    assert first_line(older) == "Unsupported operand 149"
    zip_error = RuntimeError(
        "PytorchStreamReader failed reading zip archive: failed finding central directory. This is an internal miniz "
        "error.\nException raised from valid at ../caffe2/serialize/inline_container.cc:236 (most recent call first):"
    )
    assert first_line(zip_error) == "PytorchStreamReader failed reading zip archive: failed finding central directory"
    assert first_line(EOFError()) == "EOFError"
