"""File checksums, shared by the model folder (weights) and the batch outputs (scans, masks)."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of one file's bytes, as hex; read in 1 MiB blocks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
