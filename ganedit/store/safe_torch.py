"""`torch.load` that never runs code from the file.

Every `.pt` / `.bin` file goes through `safe_torch_load`: PyTorch's weights-only unpickler, with an
explicit allow-list of extra globals per format (rosinality training checkpoints need exactly
`argparse.Namespace`). A file that references any other global is refused with a clear error; a file
that fails in any other way while it is read (truncated, damaged, crafted) is a one-line error too.
"""

import pickle
import re
from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError, GaneditError, UnsafeCheckpointError

# Lines of PyTorch's loading errors that explain torch.load itself, not what is wrong with the file.
BOILERPLATE = re.compile(
    r"weights only load failed|in pytorch 2\.6|re-running `torch\.load`|check the documentation of torch\.load"
    r"|you can use .*safe_globals|please file an issue|exception raised from|frame #|^\(\d\)",
    re.IGNORECASE,
)


def safe_torch_load(path: Path, allowed_globals: tuple = (), mmap: bool = False) -> object:
    """Load a `torch.save` file with `weights_only=True`; raise a one-line error instead of running code.

    `mmap=True` maps the tensors' storage instead of reading it (cheap peeks at large zip-format files).
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except GaneditError:
        raise
    except pickle.UnpicklingError as error:
        offending = _offending_global(str(error))
        if offending:
            raise UnsafeCheckpointError(
                f"{path}: refused to load, the file references {offending!r}, outside the weights-only allow-list; "
                "ganedit never executes code from a checkpoint: re-save its tensors with torch.save(state_dict) "
                "or as safetensors"
            ) from None
        raise CheckpointFormatError(
            f"{path}: not a readable PyTorch checkpoint ({first_line(error)}); it is damaged or not a model "
            "checkpoint: download it again or re-save its state dict"
        ) from None
    except torch.OutOfMemoryError:
        raise
    except Exception as error:  # whatever a damaged or crafted file makes the unpickler raise; nothing ran
        raise CheckpointFormatError(
            f"{path}: not a readable PyTorch checkpoint, it may be truncated or damaged ({first_line(error)}); "
            "download it again"
        ) from None


def first_line(error: BaseException, limit: int = 160) -> str:
    """What an error says, in one line: the first sentence of its first meaningful line (PyTorch's
    multi-line loading errors open with advice about torch.load; the reason comes later), at most
    `limit` characters; the error's type name when it says nothing."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    meaningful = [line for line in lines if not BOILERPLATE.search(line)]
    text = (meaningful or lines or [type(error).__name__])[0]
    text = re.sub(r"^WeightsUnpickler error:\s*", "", text)
    sentence = re.match(r"(.+?[^.\s]{2})\.(\s|$)", text)
    text = sentence.group(1) if sentence else text
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _offending_global(message: str) -> str | None:
    """The 'module.name' that PyTorch's weights-only unpickler names in its refusal, if any."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None
