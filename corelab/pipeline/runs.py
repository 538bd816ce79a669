"""Provenance of `corelab run`, append-only: ``runs/<UTC start>.json`` per run, ``run.json`` the latest.

Every run adds one file, ``runs/2026-12-02T06-30-00Z.json`` (its UTC start; no colons, so the name
is valid on every file system; ``-2``, ``-3`` ... when two runs start in the same second), and
writes only that file: who (user, host), when (UTC start/end), what (command line, corelab and
dependency versions, model, manifest and per-scan input checksums, parameters). ``run.json`` is a
copy of the latest run's file, and both list the earlier runs' files with their SHA-256, so a
later change to an earlier file shows. The file's name is the run's id: the ``run_id`` column of
volumes.csv and the ``run_id`` of records/<patient_id>.json name the run that computed a row.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

from corelab.audit import file_sha256, invocation, package_versions
from corelab.io.manifest import Manifest
from corelab.pipeline.outputs import atomic_write_text
from corelab.segment.card import architecture_from_card, cutoffs_chosen_on

__all__ = ["new_run_id", "earlier_runs", "archive_unlisted_run_json", "provenance", "write_run", "inputs"]

RUNS = "runs"


def new_run_id(out: Path, started: dt.datetime) -> str:
    """The file name of a run starting at ``started`` (UTC) in ``out/runs``, not yet taken.

    >>> import tempfile
    >>> new_run_id(Path(tempfile.mkdtemp()), dt.datetime(2026, 12, 2, 6, 30, 0, tzinfo=dt.timezone.utc))
    '2026-12-02T06-30-00Z.json'
    """
    stem = started.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H-%M-%SZ")
    name, n = f"{stem}.json", 1
    while (out / RUNS / name).exists():
        n += 1
        name = f"{stem}-{n}.json"
    return name


def earlier_runs(out: Path, run_id: str) -> list[dict[str, str]]:
    """``[{"file": "runs/<name>", "sha256": ...}]`` of every run file in ``out/runs`` but ``run_id``'s."""
    folder = out / RUNS
    if not folder.is_dir():
        return []
    files = sorted(p for p in folder.glob("*.json") if p.name != run_id and not p.name.startswith(".tmp-"))
    return [{"file": f"{RUNS}/{p.name}", "sha256": file_sha256(p)} for p in files]


def archive_unlisted_run_json(out: Path) -> None:
    """Keep a run.json that no runs/ file holds (written by a corelab before runs/ existed) as
    ``runs/<its start>.json``, so that starting a new run does not erase it."""
    latest = out / "run.json"
    if not latest.is_file():
        return
    sha = file_sha256(latest)
    if any(entry["sha256"] == sha for entry in earlier_runs(out, "")):
        return
    try:
        started = dt.datetime.fromisoformat(json.loads(latest.read_text(encoding="utf-8"))["started"])
    except (OSError, ValueError, KeyError, TypeError):
        started = dt.datetime.fromtimestamp(latest.stat().st_mtime, dt.timezone.utc)
    if started.tzinfo is None:
        started = started.replace(tzinfo=dt.timezone.utc)
    atomic_write_text(out / RUNS / new_run_id(out, started), latest.read_text(encoding="utf-8"))


def provenance(manifest: Manifest, models, params, *, device, workers, scheduler, threads,
               started: dt.datetime, run_id: str, earlier: list[dict[str, str]]) -> dict[str, Any]:
    """A run file's who/when/what, written before the first scan (``finished`` and ``inputs`` follow)."""
    return {
        "tool": "corelab run",
        "run_id": run_id,
        "versions": package_versions(),
        **invocation(),
        "cpu_count": os.cpu_count(),
        "manifest": str(manifest.path),
        "manifest_sha256": file_sha256(manifest.path),
        "models": {"folder": str(models.folder), "version": models.version,
                   "architecture": architecture_from_card(models.card), "checksums": dict(models.checksums),
                   "cutoffs": dict(models.cutoffs), "cutoffs_chosen_on": cutoffs_chosen_on(models.card),
                   "smoothing_mm": models.smoothing_mm,
                   "brain_reference_hu": models.norm.brain_reference_hu,
                   "contralateral_gate_hu": models.gate_hu,
                   "hemorrhage_beside_mm": models.hemorrhage_beside_mm},
        "parameters": {**params, "device": device, "workers": workers, "scheduler": scheduler, "threads": threads},
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "earlier_runs": earlier,
    }


def write_run(out: Path, run: dict[str, Any]) -> None:
    """Write this run's ``runs/<run_id>`` and the same bytes as ``run.json``."""
    text = json.dumps(run, indent=1) + "\n"
    atomic_write_text(out / RUNS / run["run_id"], text)
    atomic_write_text(out / "run.json", text)


def inputs(out: Path, manifest: Manifest, outcomes: dict[int, dict[str, Any]],
           record_path) -> list[dict[str, str]]:
    """Per manifest row, the scan path as given, the checksum of the bytes that were segmented
    ("" when the row failed before its scan was read or was not run), its status, the run that
    computed it and its record (``record_path(out, patient_id)``) when it has one."""
    rows = []
    for index, row in enumerate(manifest.rows):
        outcome = outcomes.get(index, {})
        has_record = "record_version" in outcome  # rows refused by the manifest check have none
        rows.append({
            "patient_id": row.patient_id,
            "scan": str(row.scan) if row.scan else "",
            "scan_sha256": outcome.get("scan_sha256", ""),
            "status": outcome.get("status", "not_run"),  # no outcome: interrupted before it
            "run_id": outcome.get("run_id", ""),
            "record": record_path(out, row.patient_id).relative_to(out).as_posix() if has_record else "",
        })
    return rows
