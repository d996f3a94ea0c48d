"""`python -m ganedit` and the console script `ganedit` (ganedit.__main__:run): signals handled from the first
moment.

Importing the command line takes seconds (torch). A SIGTERM or Ctrl-C in that time would otherwise kill
the process unannounced, or be swallowed by a library's import (code that catches every exception around
an optional import). While the imports run, both signals are only recorded; once they are done, a
recorded one ends the start-up with one line and exit code 143 (130 for Ctrl-C), before anything is read
or written. From then on, ganedit.cli.main handles both.
"""

import time

STARTED = time.perf_counter()  # before the command line's imports: the report's `start` stage

import signal  # noqa: E402
import sys  # noqa: E402

from ganedit.errors import Terminated  # noqa: E402

EXIT_INTERRUPTED, EXIT_TERMINATED = 130, 143


def _terminate(_signum, _frame):
    raise Terminated


def _stopped(terminated: bool, when: str) -> int:
    what = "terminated (SIGTERM)" if terminated else "interrupted"
    print(f"ganedit: error: {what} while {when}; nothing was left half-written", file=sys.stderr)
    return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


def run() -> None:
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: received.append(signum))
    sigint = signal.getsignal(signal.SIGINT)
    if sigint is signal.default_int_handler:  # an inherited SIG_IGN (a background job) stays ignored
        signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        try:
            from ganedit.cli.main import main
        finally:
            signal.signal(signal.SIGTERM, _terminate)
            signal.signal(signal.SIGINT, sigint)
        if received:
            code = _stopped(received[0] == signal.SIGTERM, "starting")
        else:
            code = main(started=STARTED)
    except KeyboardInterrupt as error:  # just before or after main() ran: nothing of the command's is pending
        code = _stopped(isinstance(error, Terminated), "starting or finishing")
    finally:
        signal.signal(signal.SIGTERM, previous)
    sys.exit(code)


if __name__ == "__main__":
    run()
