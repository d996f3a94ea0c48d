"""ganedit: edit pre-trained GANs without their training data.

The Python API mirrors the command line:

    import ganedit
    G = ganedit.load_generator("biggan-deep-256")        # a zoo name, a folder or a file
    D = ganedit.load_discriminator("ffhq.pkl")
    bundle = ganedit.load_model("model.safetensors")    # generator, discriminator, format, classes, metadata
    ganedit.save_checkpoint("out.safetensors", G, D, provenance=...)
    ganedit.export_model("out.safetensors", "rosinality", "out.pt")   # or nvidia-state, biggan-folder
    ganedit.write_card("out.safetensors", provenance)   # README.md beside it: licence, recipe, evaluation

The API is imported on first use, so that `import ganedit` (and the command line's start, which handles
SIGTERM and Ctrl-C from its first moment: ganedit.__main__) does not wait for torch.
"""

from ganedit.version import __version__

_API = {
    "load_model": "ganedit.generators.formats",
    "load_generator": "ganedit.generators.formats",
    "load_discriminator": "ganedit.generators.formats",
    "save_checkpoint": "ganedit.generators.formats.ganedit_file",
    "export_model": "ganedit.generators.formats.export",
    "write_card": "ganedit.store.card",
}

__all__ = [
    "__version__",
    "load_model",
    "load_generator",
    "load_discriminator",
    "save_checkpoint",
    "export_model",
    "write_card",
]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ganedit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
