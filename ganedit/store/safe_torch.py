"""`torch.load` that never runs code from the file.

Every `.pt` / `.bin` file goes through `safe_torch_load`: PyTorch's weights-only unpickler, with an
explicit allow-list of extra globals per format (rosinality training checkpoints need exactly
`argparse.Namespace`). A file that references any other global is refused with a clear error.
"""

import pickle
import re
import zipfile
from pathlib import Path

import torch

from ganedit.errors import CheckpointFormatError, UnsafeCheckpointError


def safe_torch_load(path: Path, allowed_globals: tuple = (), mmap: bool = False) -> object:
    """Load a `torch.save` file with `weights_only=True`; raise a one-line error instead of running code.

    `mmap=True` maps the tensors' storage instead of reading it (cheap peeks at large zip-format files).
    """
    try:
        with torch.serialization.safe_globals(list(allowed_globals)):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        offending = _offending_global(str(error))
        if offending:
            raise UnsafeCheckpointError(
                f"{path}: refused to load, the file references {offending!r}, outside the weights-only allow-list; "
                "ganedit never executes code from a checkpoint: re-save its tensors with torch.save(state_dict) "
                "or as safetensors"
            ) from None
        raise CheckpointFormatError(f"{path}: not a readable PyTorch checkpoint ({first_line})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointFormatError(
            f"{path}: not a readable PyTorch checkpoint, it may be truncated or damaged ({first_line}); "
            "download it again"
        ) from None


def _offending_global(message: str) -> str | None:
    """The 'module.name' that PyTorch's weights-only unpickler names in its refusal, if any."""
    match = re.search(r"GLOBAL ([\w.]+)", message)
    return match.group(1) if match else None
