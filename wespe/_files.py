"""Writing files so that a crash, a full disk or an error never leaves a half-written one."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def replacing(target: str | os.PathLike, overwrite: bool = True) -> Iterator[Path]:
    """A new, empty, hidden file beside ``target`` to write; when the block ends without an
    error it is flushed to disk and renamed onto ``target`` in one step (same folder, so the
    rename is atomic), and in any case it is gone afterwards. Missing parent folders are made.

    The file gets the usual permissions (``0o666`` less the umask), not the owner-only ones of
    :func:`tempfile.mkstemp`, which the renamed file would keep.

    Raises:
        FileExistsError: ``overwrite`` is False and ``target`` exists when the block ends.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield temporary
        with temporary.open("r+b") as file:
            os.fsync(file.fileno())  # the data is on disk before the name points at it
        if not overwrite and target.exists():  # created by someone else meanwhile
            raise FileExistsError(f"{target} already exists; choose another name or overwrite it")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
