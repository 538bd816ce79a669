"""The audit trail: file checksums, and who ran corelab, where, with what (run.json and the agreement report).

`corelab run` writes them into run.json (see `corelab.pipeline`); `corelab compare` records its own
invocation and the reference folder's checksums beside them (see `corelab.compare`). Nothing here
reads a scan's header: the audit trail names files by path and checksum, never by patient data.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import platform
import socket
import sys
from pathlib import Path

__all__ = ["file_sha256", "scan_sha256", "PROVENANCE_PACKAGES", "package_versions", "current_user", "invocation", "folder_checksums", "utc_now"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 of one file's bytes, as hex; read in 1 MiB blocks so large files stay out of memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

def scan_sha256(path: str | Path) -> str:
    """SHA-256 over a scan's input: a file's bytes, or for a folder every file below it (hidden
    files skipped) in sorted relative-path order, each file's relative path hashed with its bytes
    so that renaming a slice changes the checksum too."""
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    return str(folder_checksums(path)["sha256"])  # the one listing and digest rule for folders


# What computes (numpy, scipy, SimpleITK, torch), reads (pydicom, pandas, openpyxl), runs the batch
# (dask, distributed) and writes the report (pingouin, jinja2, weasyprint, matplotlib).
PROVENANCE_PACKAGES = (
    "corelab", "numpy", "scipy", "SimpleITK", "torch", "pydicom", "highdicom", "pandas", "openpyxl", "dask",
    "distributed", "pingouin", "matplotlib", "jinja2", "weasyprint",
)


def package_versions(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages`` and of Python; "" for a package that is not installed.

    >>> versions = package_versions(("numpy", "no-such-package-corelab"))
    >>> sorted(versions), versions["no-such-package-corelab"]
    (['no-such-package-corelab', 'numpy', 'python'], '')
    """
    from importlib import metadata

    versions = {"python": platform.python_version()}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return versions


def current_user() -> str:
    """The login name running corelab, or "" when the system cannot say (a container user without a
    passwd entry and no LOGNAME): the audit trail records who ran a job but never stops it for that."""
    import getpass

    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return ""


def utc_now() -> str:
    """The current time, UTC, ISO 8601 to the second (e.g. "2026-11-27T15:02:11+00:00")."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def invocation() -> dict[str, object]:
    """The command line (``sys.argv``, paths as given), the folder they are relative to, the user,
    host, platform and Python executable of this process."""
    return {
        "command_line": list(sys.argv),
        "cwd": os.getcwd(),
        "user": current_user(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python_executable": sys.executable,
    }


def folder_checksums(folder: str | Path) -> dict[str, object]:
    """Checksums of every file below ``folder`` (hidden files skipped), and one summary over them.

    Returns ``{"folder": str, "n_files": int, "bytes": int, "sha256": hex, "files": {relative path:
    sha256}}``; the summary ``sha256`` hashes each relative path with its file's sha256 in sorted
    order, so a changed, added, removed or renamed file changes it.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     _ = (Path(tmp) / "a.txt").write_text("a")
    ...     summary = folder_checksums(tmp)
    >>> summary["n_files"], summary["files"]["a.txt"][:12]
    (1, 'ca978112ca1b')
    """
    folder = Path(folder)
    files = sorted(
        (p for p in folder.rglob("*")
         if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)),
        key=lambda p: p.relative_to(folder).as_posix(),
    )
    digest = hashlib.sha256()
    checksums: dict[str, str] = {}
    size = 0
    for file in files:
        name = file.relative_to(folder).as_posix()
        checksums[name] = file_sha256(file)
        size += file.stat().st_size
        digest.update(name.encode("utf-8") + b"\0" + bytes.fromhex(checksums[name]))
    return {"folder": str(folder), "n_files": len(files), "bytes": size, "sha256": digest.hexdigest(),
            "files": checksums}
