"""Things several test files need: a tiny BigGAN-deep config and malicious pickle payloads."""

import os

# A BigGAN-deep small enough to build in milliseconds: 16 px, 3 classes, attention before block 1.
TINY_BIGGAN = {
    "attention_layer_position": 1,
    "channel_width": 4,
    "class_embed_dim": 128,
    "eps": 1e-4,
    "layers": [[True, 2, 2], [True, 2, 1]],
    "n_stats": 51,
    "num_classes": 3,
    "output_dim": 16,
    "z_dim": 128,
}


class CreatesAFile:
    """Unpickling this object would run `touch <path>` (what a malicious checkpoint does)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


class OpensAFile:
    """Unpickling this object would create a file with `open(path, "w")`."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))
