"""Writing safely: atomic writes, the machine's errors as one line, and a failed command's outputs undone."""

import errno

import pytest

from ganedit.errors import GaneditError, GateMissed
from ganedit.store.atomic import (
    OutputError,
    atomic_write,
    check_free_space,
    check_output_folder,
    make_folder,
    output_journal,
)


def write_text(text: str):
    def write(temporary: str) -> None:
        with open(temporary, "w") as stream:
            stream.write(text)

    return write


def test_a_failed_command_leaves_none_of_its_files_and_folders_but_its_resume_file(tmp_path):
    (tmp_path / "before.txt").write_text("kept")
    with pytest.raises(KeyboardInterrupt), output_journal():
        atomic_write(tmp_path / "model.safetensors", write_text("model"))
        atomic_write(tmp_path / "model.safetensors.resume", write_text("state"))
        folder = make_folder(tmp_path / "samples" / "deep")
        atomic_write(folder / "0.png", write_text("png"))
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["before.txt", "model.safetensors.resume"]


def test_a_missed_gate_and_a_success_keep_their_outputs(tmp_path):
    with pytest.raises(GateMissed), output_journal(keep_on=(GateMissed,)):
        atomic_write(tmp_path / "gated.png", write_text("png"))
        raise GateMissed("pul 10 < 80")
    with output_journal():
        atomic_write(tmp_path / "fine.png", write_text("png"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fine.png", "gated.png"]


def test_a_folder_that_was_there_before_is_never_removed(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(RuntimeError), output_journal():
        atomic_write(make_folder(tmp_path / "mine") / "a.png", write_text("png"))
        raise RuntimeError
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir())


@pytest.mark.parametrize(
    "failure",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError(
            "Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "
            '"No space left on device" }) (os error 28)'
        ),  # fmt: skip
        RuntimeError(
            "[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file data/0: "
            "file write failed"
        ),  # fmt: skip
    ],
    ids=["oserror", "safetensors", "torch-save"],
)
def test_a_full_disk_is_one_line_naming_the_file_however_the_library_reports_it(tmp_path, failure):
    def write(temporary: str) -> None:
        with open(temporary, "w") as stream:
            stream.write("half")
        raise failure

    with pytest.raises(OutputError) as caught:
        atomic_write(tmp_path / "out.safetensors", write)
    message = str(caught.value)
    assert "out.safetensors" in message and "\n" not in message and ("space" in message or "disk" in message)
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_other_errors_of_the_writer_are_not_disguised_as_the_machines(tmp_path):
    def write(temporary: str) -> None:
        raise ValueError("a bug in the writer")

    with pytest.raises(ValueError):
        atomic_write(tmp_path / "out.bin", write)
    assert list(tmp_path.iterdir()) == []


def test_output_folders_are_probed_and_their_free_space_counted_before_the_work(tmp_path):
    check_output_folder(tmp_path)
    assert list(tmp_path.iterdir()) == []  # the probe leaves nothing
    with pytest.raises(GaneditError, match="does not exist"):
        check_output_folder(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(GaneditError, match="not a folder"):
        check_output_folder(tmp_path / "file")
    check_free_space(tmp_path / "small.bin", 1)
    with pytest.raises(OutputError, match="needs about"):
        check_free_space(tmp_path / "huge.bin", 10**18)
