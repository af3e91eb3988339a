"""Folders replaced whole: a reader finds the previous folder or the new one, never a mix.

A pixel store or an exported dataset is several files that only make sense together (pixels and
the records that index them, images and the manifest that vouches for them). Written in place, an
interrupted rerun leaves old records pointing at new pixels. So the new folder is built as a
sibling, `<name>.tmp-<pid>`, and renamed into place only once complete.

POSIX cannot rename a directory over a non-empty one, so the swap is two renames: old folder to
`<name>.old-<pid>`, new folder to `<name>`, then the backup is deleted. A writer killed between
the renames leaves only the backup, which `recover` puts back; what killed writers left behind is
deleted by the next write. Readers that memory-mapped a file of the old folder keep a valid
mapping after the swap (Linux keeps an unlinked file's pages while it is mapped).
"""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STAGING, BACKUP = "tmp", "old"


def _sibling(folder: Path, kind: str, pid: int) -> Path:
    return folder.with_name(f"{folder.name}.{kind}-{pid}")


def _siblings(folder: Path, kind: str) -> list[tuple[Path, int]]:
    """Siblings of one kind with the id of the process that made them, newest first."""
    found = []
    for path in folder.parent.glob(f"{glob.escape(folder.name)}.{kind}-*"):
        pid = path.name.rsplit("-", 1)[1]
        if pid.isdigit():
            found.append((path, int(pid)))
    return sorted(found, key=lambda item: item[0].stat().st_mtime_ns, reverse=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        pass
    return True


def recover(folder: Path) -> None:
    """Put the previous folder back if a writer died between its two renames."""
    folder = Path(folder)
    if folder.exists():
        return
    backups = _siblings(folder, BACKUP)
    if backups:
        os.rename(backups[0][0], folder)


def _remove_leftovers(folder: Path) -> None:
    """Staging folders and backups of writers that are gone (never a live writer's staging)."""
    for kind in (STAGING, BACKUP):
        for path, pid in _siblings(folder, kind):
            if kind == BACKUP or pid == os.getpid() or not _alive(pid):
                shutil.rmtree(path)


@contextmanager
def replacing(folder: Path) -> Iterator[Path]:
    """Yield an empty staging folder that replaces `folder` when the block completes.

    The previous `folder` stays readable throughout the block (an incremental writer may copy or
    link from it); an exception removes the staging folder and leaves `folder` untouched.
    """
    folder = Path(folder)
    recover(folder)
    _remove_leftovers(folder)
    staging = _sibling(folder, STAGING, os.getpid())
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not folder.exists():
        os.rename(staging, folder)
        return
    backup = _sibling(folder, BACKUP, os.getpid())
    os.rename(folder, backup)
    os.rename(staging, folder)
    shutil.rmtree(backup)
