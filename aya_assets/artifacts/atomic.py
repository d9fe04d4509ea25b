"""Atomic writes for every artifact: write beside the target under a temp name, then rename.

Temp names carry the writer's PID, so leftovers of a killed writer are recognised and removed by the next
writer of the same path, while a live concurrent writer's temp file is left alone.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_TEMP = re.compile(r"\.(?P<pid>\d+)-[0-9a-f]{8}\.(tmp|old)$")


def temp_sibling(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.{kind}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clear_stale(path: Path) -> list[Path]:
    """Remove temp siblings of `path` left by writers that no longer run (a crash, a SIGKILL)."""
    removed = []
    for sibling in path.parent.glob(f".{path.name}.*"):
        match = _TEMP.search(sibling.name)
        if match and not _alive(int(match["pid"])):
            shutil.rmtree(sibling, ignore_errors=True) if sibling.is_dir() else sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(path)
    tmp = temp_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def replace_dir(tmp: Path, final: Path) -> None:
    """Put the finished directory `tmp` at `final`; an existing `final` is moved aside and deleted only afterwards."""
    if not final.exists():
        os.replace(tmp, final)
        return
    old = temp_sibling(final, "old")
    os.replace(final, old)
    try:
        os.replace(tmp, final)
    except OSError:
        os.replace(old, final)
        raise
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a fresh temp directory beside `final`; on success it replaces `final`, on error it is deleted."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    clear_stale(final)
    tmp = temp_sibling(final)
    tmp.mkdir()
    try:
        yield tmp
        replace_dir(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
