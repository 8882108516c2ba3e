"""Atomic file writes: write to a temp file in the same folder, then rename over the target.

A crash or Ctrl-C leaves either the old file or the new one, never half of one. The file gets the
permissions a plain `open(path, "w")` would give (0666 minus the umask), not mkstemp's 0600. A temp
file left by a process that was killed (SIGKILL, power loss) is removed at the next write to the
same path. A path that cannot be written (under a file, in /proc, a full disk) raises OutputError
with one line naming it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rlmodel.errors import OutputError

_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG,
                 errno.ENOTDIR, errno.EISDIR, errno.ENOENT, errno.EINVAL}


def current_umask() -> int:
    """The process's umask (read without changing it where /proc tells it)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # pragma: no cover - not Linux
    os.umask(mask)
    return mask


def _prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale(path: Path) -> None:
    """Temp files of `path` (`.NAME.PID.xxxx.tmp...`) whose writing process is gone."""
    for tmp in path.parent.glob(_prefix(path) + "*.tmp*"):
        pid = tmp.name[len(_prefix(path)):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not Path(f"/proc/{pid}").exists():
            with contextlib.suppress(OSError):
                tmp.unlink()


@contextmanager
def atomic_path(path: str | Path) -> Iterator[str]:
    """Yield a temp path next to `path`; on success rename it to `path`, on error remove it."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(path)
        fd, tmp = tempfile.mkstemp(prefix=f"{_prefix(path)}{os.getpid()}.", suffix=".tmp" + path.suffix,
                                   dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        if exc.errno in _WRITE_ERRNOS:
            raise OutputError(f"{path}: cannot write: {exc.strerror or exc}") from None
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_figure_atomic(fig, path: str | Path) -> None:
    """Save a matplotlib figure as PNG atomically and close it."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=110, format="png")
    finally:
        plt.close(fig)
