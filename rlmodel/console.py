"""The `rlsched` console script, outside `rlmodel.cli` (whose import is the slow part): Ctrl-C or SIGTERM
at any moment, even while the CLI's modules are still being imported, ends with one line and exit 130,
never a traceback."""

from __future__ import annotations

import signal
import sys


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (timeout, batch systems, kubectl delete) is handled like Ctrl-C


def run() -> None:
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        from rlmodel.cli import main

        main(standalone_mode=True)
    except KeyboardInterrupt:
        print("rlsched: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # `python -m rlmodel.console`, the scheduler image's entry point
    run()
