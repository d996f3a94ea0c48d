"""No loader ever executes code from a checkpoint: crafted files are refused, and their code never runs."""

import json
import pickle

import pytest
import torch
from helpers import TINY_BIGGAN, CreatesAFile, OpensAFile

import ganedit
from ganedit.errors import UnsafeCheckpointError


@pytest.fixture(params=["system", "open"])
def payload(request, tmp_path):
    marker = tmp_path / "pwned"
    return (CreatesAFile(marker) if request.param == "system" else OpensAFile(marker)), marker


def nvidia_style_pickle(path, payload):
    with open(path, "wb") as stream:
        pickle.dump({"G_ema": payload, "D": None, "training_set_kwargs": {}}, stream, protocol=2)


def rosinality_style_pt(path, payload, zip_format=True):
    torch.save(
        {"g_ema": {"style.1.weight": torch.zeros(2, 2)}, "args": payload},
        path,
        _use_new_zipfile_serialization=zip_format,
    )


def biggan_folder(folder, payload):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_BIGGAN))
    torch.save({"embeddings.weight": payload}, folder / "pytorch_model.bin")


@pytest.mark.parametrize(
    "writer",
    [
        ("model.pkl", nvidia_style_pickle),
        ("model.pt", rosinality_style_pt),
        ("legacy.pt", lambda path, payload: rosinality_style_pt(path, payload, zip_format=False)),
        ("biggan", biggan_folder),
    ],
    ids=["nvidia-pickle", "torch-zip", "torch-legacy", "biggan-folder"],
)
@pytest.mark.parametrize("loader", [ganedit.load_generator, ganedit.load_discriminator, ganedit.load_model])
def test_crafted_checkpoints_are_refused_and_never_run(tmp_path, payload, writer, loader):
    obj, marker = payload
    name, write = writer
    path = tmp_path / name
    write(path, obj)
    with pytest.raises(UnsafeCheckpointError) as refused:
        loader(path)
    assert "\n" not in str(refused.value)
    assert not marker.exists(), "the checkpoint's code ran"


def test_refusal_names_the_global(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pkl"
    nvidia_style_pickle(path, CreatesAFile(marker))
    with pytest.raises(UnsafeCheckpointError, match="system"):
        ganedit.load_generator(path)
    assert not marker.exists()
