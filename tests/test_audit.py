"""Audit trail and privacy, end to end on real files.

1. run.json says who ran the batch, when, with which versions, models, inputs and parameters, and the
   agreement report repeats it with compare's own invocation and the reference folder's checksums.
2. A changed model recomputes every scan (the checksums, not the file names, decide).
3. No patient data where it does not belong: a DICOM series whose header carries a name, birth date,
   MRN, institution and accession number goes through `run_batch` and `corelab compare`; none of those
   values may appear in any output file (records, run.json, tables, workbook XML, PNG text chunks,
   NIfTI headers, PDF text), in the console output or in the log. The one exception is the DICOM SEG
   beside the mask, which must attach to the patient's study: it carries the name, birth date, MRN
   and accession number, and nothing else (no institution, no free-text series description).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dicom_factory import read_tags, write_ct_series
from pipeline_trial import SMALL_METHOD, SPACING, head_phantom, make_trial, write_model_folder

from corelab.audit import current_user, file_sha256
from corelab.pipeline.batch import run_batch
from corelab.audit import scan_sha256

# Header values of the DICOM patient; the manifest knows this patient only as "P900".
PHI = {
    "PatientName": "Doe^Jane",
    "PatientBirthDate": "19450101",
    "PatientID": "MRN123456",
    "InstitutionName": "Secret Hospital",
    "AccessionNumber": "ACC999",
    "SeriesDescription": "Head 5mm Doe^Jane",  # free text at the scanner can hold a name too
}
# Searched case-insensitively in text, plus other spellings of the same values.
NEEDLES = ("Doe^Jane", "Jane", "Doe Jane", "19450101", "1945-01-01", "01/01/1945", "MRN123456", "Secret Hospital",
           "ACC999")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_model_folder(tmp_path_factory.mktemp("models") / "models")


def _run(trial, out, models_dir=None, **kwargs):
    return run_batch(trial.manifest, out_dir=out, models_dir=models_dir or trial.models, method=SMALL_METHOD,
                     threads=1, **{"progress": False, **kwargs})


# --- searching files for patient data -------------------------------------------------------------


def _png_text(data: bytes) -> bytes:
    """Every PNG chunk but the pixel data, text chunks decompressed (tEXt, zTXt, iTXt)."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            out.append(key + b" " + zlib.decompress(rest[1:]))
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\0")
            compressed, rest = rest[0], rest[2:]
            _lang, _, rest = rest.partition(b"\0")
            _translated, _, text = rest.partition(b"\0")
            out.append(key + b" " + (zlib.decompress(text) if compressed else text))
        elif kind != b"IDAT":
            out.append(kind + b" " + body)
        pos += 12 + length
    return b"\n".join(out)


def _nifti_header(data: bytes) -> bytes:
    """The NIfTI-1 header and extensions (everything before the voxels), from uncompressed bytes."""
    vox_offset = struct.unpack("<f", data[108:112])[0]
    return data[: max(int(vox_offset), 348)]


def _pdf_streams(data: bytes) -> bytes:
    """The PDF's Flate-compressed streams, decompressed where they decompress."""
    out = []
    for chunk in data.split(b"stream")[1:]:
        body = chunk.lstrip(b"\r\n")
        try:
            out.append(zlib.decompressobj().decompress(body))
        except zlib.error:
            continue
    return b"\n".join(out)


def _texts(path: Path) -> tuple[list[bytes], list[bytes]]:
    """(text parts, binary parts) of one file to search: text is searched for every needle without
    regard to case; binary payload only for needles of 6 or more characters, exact case (so random
    compressed bytes cannot match by chance)."""
    data = path.read_bytes()
    name = path.name.lower()
    if name.endswith((".json", ".csv", ".html", ".txt")):
        return [data], []
    if name.endswith(".nii.gz"):
        raw = gzip.decompress(data)
        return [_nifti_header(raw)], [data, raw]
    if name.endswith(".xlsx"):
        with zipfile.ZipFile(path) as book:
            return [book.read(member) for member in book.namelist()], [data]
    if name.endswith(".png"):
        return [_png_text(data)], [data]
    if name.endswith(".pdf"):
        text = subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, check=True).stdout
        info = subprocess.run(["pdfinfo", str(path)], capture_output=True).stdout
        return [text, info], [data, _pdf_streams(data)]
    return [], [data]


def _found(text_parts: list[bytes], binary_parts: list[bytes]) -> set[str]:
    hits = set()
    for needle in NEEDLES:
        forms = [needle.encode("utf-8"), needle.encode("utf-16-be")]
        if any(needle.lower().encode("utf-8") in part.lower() for part in text_parts):
            hits.add(needle)
        if len(needle) >= 6 and any(form in part for form in forms for part in binary_parts):
            hits.add(needle)
    return hits


def _leaks(folder: Path) -> dict[str, set[str]]:
    """{relative path: needles found} over every file below ``folder`` (and every file name)."""
    leaks = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        hits = _found(*_texts(path)) | _found([rel.encode("utf-8")], [])
        if hits:
            leaks[rel] = hits
    return leaks


# --- the tests ------------------------------------------------------------------------------------


def test_searcher_finds_patient_data_where_it_is(tmp_path):
    """The check below can fail: the same search finds every value in the DICOM files themselves,
    in a PNG text chunk, in a NIfTI header's descrip field and in gzip-compressed text."""
    series = write_ct_series(tmp_path / "dicom", np.full((2, 8, 8), 30.0), SPACING, tags=PHI)
    assert set(_leaks(tmp_path / "dicom")[series.files[0].name]) >= {"Doe^Jane", "19450101", "MRN123456",
                                                                    "Secret Hospital", "ACC999"}
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(1, 1))
    figure.savefig(tmp_path / "qc.png", metadata={"Comment": "patient Doe^Jane"})
    plt.close(figure)
    header = bytearray(352)
    header[108:112] = struct.pack("<f", 352.0)
    header[148:160] = b"MRN123456\0\0\0"
    (tmp_path / "mask.nii.gz").write_bytes(gzip.compress(bytes(header) + bytes(8)))
    leaks = _leaks(tmp_path)
    assert "Doe^Jane" in leaks["qc.png"] and "MRN123456" in leaks["mask.nii.gz"]


@pytest.mark.slow
def test_no_patient_data_in_any_output_console_or_log(tmp_path, models, capfd, caplog):
    from typer.testing import CliRunner

    from corelab.cli import app

    caplog.set_level(logging.DEBUG)  # every logger, every level: a log line is an output too
    trial = make_trial(tmp_path / "trial", n=2, models=models,
                       rows=[{"patient_id": "P900", "scan": "dicom/ct", "onset": "2024-03-01T08:00:00"}])
    hu = np.maximum(head_phantom(seed=7), -1024)
    series = write_ct_series(trial.folder / "dicom" / "ct", hu, SPACING,
                             tags={**PHI, "AcquisitionDate": "20240302", "AcquisitionTime": "093000"})
    assert str(read_tags(series.files[0]).PatientName) == "Doe^Jane"  # the input does carry the name
    out = tmp_path / "results"
    summary = _run(trial, out, progress=True)
    assert summary.n_ok == 3
    table = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)
    dicom_row = table[table["patient_id"] == "P900"].iloc[0]
    # the header was read: the scan time came from its acquisition tags
    assert (dicom_row["scan_time_source"], dicom_row["hours_since_onset"]) == ("dicom", "25.5")

    reference = tmp_path / "manual"
    reference.mkdir()
    for pid in table["patient_id"]:
        shutil.copy(out / "masks" / f"{pid}.nii.gz", reference / f"{pid}.nii.gz")
    result = CliRunner().invoke(app, ["compare", str(out), "--reference", str(reference), "--trial", "AUDIT"])
    assert result.exit_code == 0, result.output
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"run.json", "volumes.csv", "volumes.xlsx", "records/P900.json", "masks/P900.nii.gz", "qc/P900.png",
            "masks/P900.seg.dcm", "agreement.pdf", "agreement.xlsx", "agreement.html"} <= written

    leaks = _leaks(out)
    # README "Privacy": the SEG holds the patient and study attributes that attach it to the study.
    assert leaks.pop("masks/P900.seg.dcm") == {"Doe^Jane", "19450101", "MRN123456", "ACC999"}
    assert leaks == {}
    console = capfd.readouterr()
    streams = [console.out, console.err, result.output, caplog.text]
    assert _found([s.encode("utf-8") for s in streams], []) == set()
    assert "of 3 patients analysed" in result.output  # compare did print its summary


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_run_json_records_who_when_what_and_every_input_checksum(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=2, models=models,
                       rows=[{"patient_id": "GONE", "scan": "scans/missing.nii.gz"}])
    out = tmp_path / "out"
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    _run(trial, out)
    run = json.loads((out / "run.json").read_text())
    started, finished = (dt.datetime.fromisoformat(run[k]) for k in ("started", "finished"))
    assert started.utcoffset() == dt.timedelta(0) and before <= started <= finished
    assert run["user"] == current_user() and run["host"] and run["platform"]
    assert run["command_line"] == sys.argv and run["cwd"]
    for package in ("corelab", "numpy", "SimpleITK", "torch", "pandas", "pydicom", "pingouin", "python"):
        assert run["versions"][package], package
    assert run["manifest_sha256"] == file_sha256(trial.manifest)
    assert run["models"]["checksums"] == json.loads((trial.models / "card.json").read_text())["weights_sha256"]
    assert run["parameters"]["method"]["csf"] and run["parameters"]["threads"] == 1
    inputs = {i["patient_id"]: i for i in run["inputs"]}
    assert list(inputs) == ["P001", "P002", "GONE"]  # manifest order, failed rows included
    for pid in ("P001", "P002"):
        record = json.loads((out / inputs[pid]["record"]).read_text())
        assert inputs[pid]["scan_sha256"] == record["scan_sha256"] == scan_sha256(trial.folder / "scans" / f"{pid}.nii.gz")
    assert inputs["GONE"]["status"] == "failed" and inputs["GONE"]["scan_sha256"] == ""


def test_current_user_fails_soft(monkeypatch):
    import getpass

    def no_user():
        raise OSError("No username set in the environment")

    monkeypatch.setattr(getpass, "getuser", no_user)
    assert current_user() == ""


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_changed_model_weights_recompute_every_scan(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=2, models=models)
    out = tmp_path / "out"
    assert _run(trial, out).n_skipped == 0
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").iterdir()}
    assert _run(trial, out).n_skipped == 2  # same inputs, same models: nothing to do

    other = write_model_folder(tmp_path / "other-models", seed=1)
    new_checksums = json.loads((other / "card.json").read_text())["weights_sha256"]
    assert new_checksums != json.loads((models / "card.json").read_text())["weights_sha256"]
    summary = _run(trial, out, models_dir=other)
    assert (summary.n_ok, summary.n_skipped) == (2, 0)
    for record in (out / "records").iterdir():
        assert record.stat().st_mtime_ns != stamps[record.name]
        assert json.loads(record.read_text())["model_checksums"] == new_checksums
    run = json.loads((out / "run.json").read_text())
    assert run["models"]["checksums"] == new_checksums and run["counts"]["reused"] == 0
