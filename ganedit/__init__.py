"""ganedit: edit pre-trained GANs without their training data.

The Python API mirrors the command line:

    import ganedit
    G = ganedit.load_generator("biggan-deep-256")        # a zoo name, a folder or a file
    D = ganedit.load_discriminator("ffhq.pkl")
    bundle = ganedit.load_model("model.safetensors")    # generator, discriminator, format, classes, metadata
    ganedit.save_checkpoint("out.safetensors", G, D, provenance=...)
"""

from ganedit.generators.formats import load_discriminator, load_generator, load_model  # noqa: E402
from ganedit.generators.formats.ganedit_file import save_checkpoint  # noqa: E402
from ganedit.version import __version__

__all__ = ["__version__", "load_model", "load_generator", "load_discriminator", "save_checkpoint"]
