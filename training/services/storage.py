"""Where snapshots, run folders and models live: one data root (``RLHF_DATA_ROOT``) that the web, the
workers and every GPU node see at the same path (a volume on one host, a shared filesystem across nodes).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from django.conf import settings

HASH_CHUNK_BYTES = 1 << 20


def data_root() -> Path:
    return Path(settings.DATA_ROOT)


def data_path(relative_or_absolute: str) -> Path:
    """Return the absolute path of a stored path (relative ones are relative to the data root)."""
    path = Path(relative_or_absolute)
    return path if path.is_absolute() else data_root() / path


def data_relative(path: Path) -> str:
    """Return ``path`` relative to the data root when it lies inside it, else absolute."""
    try:
        return str(path.resolve().relative_to(data_root().resolve()))
    except ValueError:
        return str(path.resolve())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def jsonl_write_once(path: Path, lines: Iterable[bytes]) -> tuple[str, int, int]:
    """Write the lines to ``path`` through a temporary file, fsynced and renamed; return (sha256, rows, bytes).

    A reader never sees a half-written file, and an existing file is never rewritten (FileExistsError).
    """
    if path.exists():
        raise FileExistsError(f"{path} exists: snapshots are written once")
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    digest, rows, size = hashlib.sha256(), 0, 0
    try:
        with open(temp, "wb") as handle:
            for line in lines:
                handle.write(line)
                digest.update(line)
                rows += 1
                size += len(line)
            handle.flush()
            os.fsync(handle.fileno())
        os.link(temp, path)  # fails if the path appeared meanwhile: never overwrite
    finally:
        temp.unlink(missing_ok=True)
    return digest.hexdigest(), rows, size
