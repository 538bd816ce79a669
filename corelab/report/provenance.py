"""Where the numbers come from: who ran what, when, with which model, read from run.json, this
comparison's own record and the model folder's card.

`run_provenance` and `compare_provenance` are the audit trail (one table in the report, sheets in
the workbook); `parameter_rows` the run's method parameters as a readable table (section,
parameter, value with its unit); `validation_statement` what the model card says about the weights'
validation, which the report puts on its first page and in every page footer.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from corelab.report.format import NOT_RECORDED, hours, plain, quantity

__all__ = ["Validation", "run_provenance", "run_title", "compare_provenance", "parameter_rows", "validation_statement"]


def _text(value: object) -> str:
    """A run.json value as one line of text; missing or empty is "not recorded"."""
    if isinstance(value, (list, tuple)) and value:
        return shlex.join(str(v) for v in value)  # a command line, quoted as a shell would need it
    return plain(value)


def run_provenance(run_info: dict) -> list[tuple[str, str]]:
    """Who ran `corelab run`, when and with what, as (item, value) rows read from run.json.

    A run.json written by an older corelab lacks some items: they read "not recorded".

    >>> rows = dict(run_provenance({"versions": {"corelab": "0.1.0", "numpy": "2.1"}, "user": "ana",
    ...                             "inputs": [{"scan_sha256": "ab"}, {"scan_sha256": ""}]}))
    >>> rows["corelab version"], rows["user"], rows["dependencies"], rows["started (UTC)"]
    ('0.1.0', 'ana', 'numpy 2.1', 'not recorded')
    >>> rows["scan checksums"]
    '1 of 2 scans (sha256 per scan: run.json inputs, agreement.xlsx inputs sheet)'
    """
    if not run_info:
        return [("run.json", NOT_RECORDED)]
    versions = dict(run_info.get("versions") or {})
    models = dict(run_info.get("models") or {})
    params = dict(run_info.get("parameters") or {})
    inputs = list(run_info.get("inputs") or [])
    dependencies = ", ".join(f"{k} {v}" for k, v in versions.items() if k not in ("corelab", "python") and v)
    own_file = f"runs/{_stem(run_info['run_id'])}.json" if run_info.get("run_id") else "run.json"
    rows = [
        ("run", f"{_stem(run_info['run_id'])} (runs/{_stem(run_info['run_id'])}.json)" if run_info.get("run_id")
         else NOT_RECORDED),
        ("corelab version", _text(versions.get("corelab"))),
        ("started (UTC)", _text(run_info.get("started"))),
        ("finished (UTC)", _text(run_info.get("finished"))),
        ("user", _text(run_info.get("user"))),
        ("host", _text(run_info.get("host"))),
        ("platform", _text(run_info.get("platform"))),
        ("Python", _text(versions.get("python"))),
        ("dependencies", _text(dependencies)),
        ("command line", _text(run_info.get("command_line"))),
        ("working folder", _text(run_info.get("cwd"))),
        ("manifest", _text(run_info.get("manifest"))),
        ("manifest sha256", _text(run_info.get("manifest_sha256"))),
        ("scan checksums", f"{sum(bool(i.get('scan_sha256')) for i in inputs)} of {len(inputs)} scans (sha256 per "
                           f"scan: {own_file} inputs, agreement.xlsx inputs sheet)" if inputs else NOT_RECORDED),
        ("model folder", _text(models.get("folder"))),
        ("model version", _text(models.get("version"))),
    ]
    rows += [(f"model sha256: {name}", _text(sha)) for name, sha in dict(models.get("checksums") or {}).items()]
    if params:
        execution = ("device", "workers", "threads", "scheduler")
        rows.append(("execution", ", ".join(f"{k} {plain(params[k])}" for k in execution
                                            if params.get(k) is not None) or NOT_RECORDED))
    return rows


def _stem(run_id: object) -> str:
    """A run's id without the ``.json`` of its file name (volumes.csv's run_id is the file's name)."""
    text = str(run_id)
    return text[:-len(".json")] if text.endswith(".json") else text


def run_title(run_info: dict) -> str:
    """The heading of the run's provenance rows: run.json is the latest run, named by its append-only file.

    >>> run_title({"run_id": "2026-12-02T06-30-00Z.json"})
    'Results: the latest corelab run, 2026-12-02T06-30-00Z (run.json, a copy of runs/2026-12-02T06-30-00Z.json)'
    """
    if not run_info.get("run_id"):
        return "Results: corelab run (from run.json)"
    stem = _stem(run_info["run_id"])
    return f"Results: the latest corelab run, {stem} (run.json, a copy of runs/{stem}.json)"


def _run_used(run: dict, n_rows: object) -> tuple[str, str]:
    """One run whose rows the report uses: its file's checksum and how many rows it computed.

    >>> _run_used({"run_id": "2026-12-02T06-30-00Z", "file": "runs/2026-12-02T06-30-00Z.json",
    ...            "sha256": "ab12", "rows": 7, "ok": 6}, 10)
    ('run 2026-12-02T06-30-00Z', 'runs/2026-12-02T06-30-00Z.json sha256 ab12; computed 7 of the 10 rows of volumes.csv (6 ok)')
    """
    of = f" of the {n_rows} rows" if n_rows not in (None, "") else " rows"
    computed = f"computed {run.get('rows', 0)}{of} of volumes.csv ({run.get('ok', 0)} ok)"
    file, sha = str(run.get("file", "")), str(run.get("sha256", "") or "")
    cited = f"{file} sha256 {sha}" if sha else f"{file} is missing, so no checksum can be given"
    if not run.get("run_id"):
        return ("run not named", f"{cited}; {computed}: these rows name no run (volumes.csv of a corelab "
                                 "before runs/), and run.json is overwritten by every run")
    return f"run {run['run_id']}", f"{cited}; {computed}"


def compare_provenance(compare_info: dict) -> list[tuple[str, str]]:
    """Who wrote this report, when and from which files, as (item, value) rows.

    >>> rows = dict(compare_provenance({"written": "2026-01-02T03:04:05+00:00",
    ...     "reference": {"folder": "/ref", "n_files": 2, "bytes": 2048, "sha256": "ab12"}}))
    >>> rows["written (UTC)"], rows["reference files"], rows["reference sha256 (all files)"]
    ('2026-01-02T03:04:05+00:00', '2 files, 2.0 KiB', 'ab12')
    """
    if not compare_info:
        return [("compare", NOT_RECORDED)]
    rows = [
        ("corelab version", _text(compare_info.get("corelab_version"))),
        ("written (UTC)", _text(compare_info.get("written"))),
        ("user", _text(compare_info.get("user"))),
        ("host", _text(compare_info.get("host"))),
        ("command line", _text(compare_info.get("command_line"))),
        ("working folder", _text(compare_info.get("cwd"))),
    ]
    results = dict(compare_info.get("results") or {})
    if results:
        rows.append(("results volumes.csv sha256", _text(results.get("volumes_csv_sha256"))))
        if "runs" in results:  # the rows' runs, by their append-only files
            rows += [_run_used(run, results.get("n_rows")) for run in results["runs"]]
        else:  # a record of an older compare, which cited run.json
            rows.append(("results run.json sha256", _text(results.get("run_json_sha256"))))
    for key, name in (("reference", "reference"), ("against", "second reader")):
        folder = dict(compare_info.get(key) or {})
        if folder:
            rows += [(f"{name} folder", _text(folder.get("folder"))),
                     (f"{name} files", f"{folder.get('n_files', 0)} files, {folder.get('bytes', 0) / 1024:.1f} KiB"),
                     (f"{name} sha256 (all files)", _text(folder.get("sha256")))]
    return rows


# run.json's method parameters: section titles and readable names; a name not listed is shown with
# its underscores as spaces. The unit comes from the name's ending (_hu, _mm, _mm2, _hours).
_SECTIONS = {"grid": "Analysis grid", "intracranial": "Intracranial region", "csf": "CSF",
             "window": "Follow-up window", "method": "Method", "models": "Models"}
_NAMES = {
    "slice_mm": "slice thickness", "pixel_mm": "pixel size", "bone_hu": "bone threshold", "dilate_mm": "dilation",
    "foramen_area_mm2": "foramen magnum area", "fat_hu": "fat threshold", "open_gap_mm": "opening of gaps",
    "seed_radius_mm": "seed radius", "lower_hu": "lower threshold", "upper_hu": "upper threshold",
    "surface_mm": "surface band", "sulcus_depth_mm": "sulcus depth",
    "dark_floor_hu": "darkest CSF", "min_hours": "earliest scan after onset",
    "max_hours": "latest scan after onset", "precision": "arithmetic precision",
    "smoothing_mm": "probability smoothing (Gaussian sigma)", "brain_reference_hu": "brain median HU reference",
    "cutoffs": "probability cut-offs", "cutoffs_chosen_on": "cut-offs chosen on",
    "contralateral_gate_hu": "contralateral gate (hypodense part darker than its mirror by)",
    "hemorrhage_beside_mm": "hemorrhage kept within this distance of a hypodense claim",
}
_UNITS = (("_mm2", "mm²"), ("_hu", "HU"), ("_mm", "mm"))
# Shown in the provenance table already (or internal to the record format).
_NOT_PARAMETERS = {"device", "workers", "threads", "scheduler", "record_version"}


def _value(name: str, value: object) -> str:
    if name.endswith("_hours"):
        return hours(value)
    for suffix, unit in _UNITS:
        if name.endswith(suffix):
            return quantity(value, unit)
    return plain(value)


def _rows(section: str, tree: dict, key: str) -> list[tuple[str, str, str, str]]:
    out: list[tuple[str, str, str, str]] = []
    for name, value in tree.items():
        if isinstance(value, dict) and name != "cutoffs":
            out += _rows(_SECTIONS.get(name, name.replace("_", " ")), value, f"{key}.{name}")
        elif name not in _NOT_PARAMETERS:
            out.append((section, _NAMES.get(name, name.replace("_", " ")), _value(name, value), f"{key}.{name}"))
    return out


def parameter_rows(run_info: dict) -> list[tuple[str, str, str, str]]:
    """The run's method and model parameters as (section, parameter, value, run.json key) rows.

    >>> parameter_rows({"parameters": {"method": {"intracranial": {"bone_hu": 160.0},
    ...     "window": {"min_hours": 12.0, "max_hours": 336.0}}, "workers": 2}})
    [('Intracranial region', 'bone threshold', '160 HU', 'parameters.method.intracranial.bone_hu'), \
('Follow-up window', 'earliest scan after onset', '12 h', 'parameters.method.window.min_hours'), \
('Follow-up window', 'latest scan after onset', '14 days', 'parameters.method.window.max_hours')]
    """
    rows = _rows("Method", dict(run_info.get("parameters") or {}), "parameters")
    models = {k: v for k, v in dict(run_info.get("models") or {}).items()
              if k in ("cutoffs", "cutoffs_chosen_on", "smoothing_mm", "brain_reference_hu")
              or (k in ("contralateral_gate_hu", "hemorrhage_beside_mm") and v is not None)}
    return rows + _rows("Models", models, "models")


@dataclass(frozen=True)
class Validation:
    """What the report says about the weights: ``title`` and ``statement`` on the first page, ``footer``
    at the foot of every page."""

    title: str
    statement: str
    footer: str


def _unmarked(text: str) -> str:
    """Markdown emphasis and code marks dropped: '**Below** `x`' -> 'Below x'."""
    return re.sub(r"\*\*|__|`", "", text).strip()


def validation_statement(card: dict | None, run_info: dict, problem: str = "") -> Validation | None:
    """The model card's word on validation, or None when the card says the weights are validated on patients.

    card: the model folder's card.json (None when it could not be read: ``problem`` says why). A
    run.json that records ``validated_on_patients`` itself (under "models") is believed first.

    >>> v = validation_statement({"validated_on_patients": False, "intended_use": "Research use.",
    ...                           "training": {"synthetic": True}, "version": "m1"}, {})
    >>> v.footer
    'Model weights m1 trained on synthetic phantoms only; not validated on patients: research use only.'
    >>> v.statement
    'The automated volumes in this report come from model weights m1, trained on synthetic phantom CTs only and not validated on patients. The model card says: Research use.'
    >>> validation_statement({"validated_on_patients": True}, {}) is None
    True
    """
    models = dict(run_info.get("models") or {})
    card = card or {}
    validated = models.get("validated_on_patients", card.get("validated_on_patients"))
    if validated is True:
        return None
    version = models.get("version") or card.get("version") or "of this run"
    title = "Not validated on patients."
    if not card:
        reason = f" ({problem})" if problem else ""
        return Validation(
            title=title,
            statement=f"The model card of weights {version} could not be read{reason}, so nothing shows that these "
                      "weights were validated on patients: read the automated volumes as research results only.",
            footer=f"Model weights {version}: validation on patients not recorded; research use only.")
    synthetic = bool(dict(card.get("training") or {}).get("synthetic", False))
    statement = (f"The automated volumes in this report come from model weights {version}, "
                 f"{'trained on synthetic phantom CTs only and ' if synthetic else ''}not validated on patients.")
    said = " ".join(_unmarked(str(card[k])) for k in ("intended_use", "headline") if card.get(k))
    if said:
        statement += f" The model card says: {said}"
    trained = " trained on synthetic phantoms only;" if synthetic else ""
    return Validation(title=title, statement=statement,
                      footer=f"Model weights {version}{trained} not validated on patients: research use only.")
