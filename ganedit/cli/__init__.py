"""The `ganedit` command line: the click group and its commands, one module per command family.

`main(argv)` runs a command and returns its exit code; `run()` is the console script.
"""

from ganedit.cli import embed_tune, evaluate, export, merge, models, text_unlearn, toy, unlearn  # noqa: E402, F401, I001  (register the commands)
from ganedit.cli.main import cli, main, run

__all__ = ["cli", "main", "run"]
