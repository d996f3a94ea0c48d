"""`python -m ganedit` and the console script `ganedit` (ganedit.__main__:run): signals handled from the first
moment.

Importing the command line takes seconds (torch). A SIGTERM or Ctrl-C in that time would otherwise kill
the process unannounced; here it ends the start-up with one line and exit code 143 (130 for Ctrl-C),
before anything is read or written. Once the command runs, ganedit.cli.main handles both.
"""

import signal
import sys

from ganedit.errors import Terminated

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _terminate(_signum, _frame):
    raise Terminated


def run() -> None:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from ganedit.cli.main import main

        code = main()
    except KeyboardInterrupt as error:  # before or after main() ran: nothing of the command's is pending
        terminated = isinstance(error, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted"
        print(f"ganedit: error: {what} while starting or finishing; nothing was left half-written", file=sys.stderr)
        code = EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


if __name__ == "__main__":
    run()
