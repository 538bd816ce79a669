"""``review.html``: one offline page for the lead reader to skim a whole batch and pick the scans to check.

A row per manifest row, whatever its status, in manifest order: the QC image as a thumbnail (a click
opens it full size), patient id, site, status and error sentence, the volumes per class in mL, the
imaging window, flags and the needs-review mark with the kinds of flag that set it (why). Columns
sort on a click on their header (volumes numerically); filters by status, site, flag or error text,
needs review and a volume range hide rows.

The page is self-contained: its CSS and JavaScript are inline (``templates/review.css`` and
``review.js``, rendered by ``review.html.j2`` with jinja2 autoescape), it loads nothing from the
network, and the thumbnails are the ``qc/<patient_id>.png`` files themselves, linked relatively and
scaled by CSS with ``loading="lazy"``, so the page itself is only text however large the batch,
and the browser fetches the images as they are scrolled to. It reads the same rows as the volumes table (`table_row`'s dicts).
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from corelab.errors import CorelabError
from corelab.io.tables import finite_number
from corelab.pipeline.outputs import REVIEW_FLAG_KINDS, ROUNDING, atomic_write_text, review_kinds
from corelab.pipeline.sites import site_column

__all__ = ["REVIEW_FILE", "VOLUME_COLUMNS", "ReviewError", "ReviewRow", "review_html", "review_rows",
           "write_review"]

REVIEW_FILE = "review.html"
# Volume columns shown, in this order, with their header text (mL).
VOLUME_COLUMNS: dict[str, str] = {
    "infarct_ml": "infarct",
    "severe_ml": "severe",
    "intermediate_ml": "intermediate",
    "subtle_ml": "subtle",
    "hemorrhage_ml": "hemorrhage",
}
_SHOWN_DECIMALS = 2  # mL on the page; the title (hover) and the sort use volumes.csv's rounding


class ReviewError(CorelabError):
    """review.html cannot be written (template missing or broken)."""


@dataclass(frozen=True)
class ReviewRow:
    """One manifest row as the page shows it.

    number: 1-based manifest order (the page's default sort). volumes: per `VOLUME_COLUMNS` entry,
    (column, shown text, sort value as text; both texts "" when not measured). in_window: "yes", "no" or
    "unknown"; hours: hours since onset as text ("" when unknown). needs_review: "yes", "no" or ""
    (not segmented). why: for a row that needs review, the kinds of flag that set it, each with what
    it means (`corelab.pipeline.outputs.review_kinds`). qc_href: the QC image relative to the results
    folder, URL-quoted; "" when the row has none or the file is missing (then ``qc_note`` says which).
    """

    number: int
    patient_id: str
    site: str
    status: str
    error: str
    volumes: tuple[tuple[str, str, str], ...]
    in_window: str
    hours: str
    flags: str
    needs_review: str
    why: tuple[tuple[str, str], ...]
    qc_href: str
    qc_note: str


def _text(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip()


def _yes_no(value: Any, unknown: str) -> str:
    """True/False or volumes.csv's "true"/"false" as yes/no; anything else ``unknown``."""
    text = _text(value).lower()
    if value is True or text == "true":
        return "yes"
    if value is False or text == "false":
        return "no"
    return unknown


def review_rows(rows: Sequence[Mapping[str, Any]], out_dir: str | Path) -> list[ReviewRow]:
    """The page's rows from the volumes table's rows (`corelab.pipeline.outputs.table_row` dicts,
    or volumes.csv's text cells), in the same order. ``out_dir``: the results folder, where each
    row's ``qc`` path is looked up."""
    out_dir = Path(out_dir)
    site = site_column(list(rows[0]) if rows else [])
    shown: list[ReviewRow] = []
    for number, row in enumerate(rows, start=1):
        volumes = []
        for column in VOLUME_COLUMNS:
            value = finite_number(row.get(column))
            if value is None:
                volumes.append((column, "", ""))
            else:
                value = round(value, ROUNDING.get(column, 4))
                volumes.append((column, f"{value:.{_SHOWN_DECIMALS}f}", repr(value)))
        qc = _text(row.get("qc"))
        qc_href, qc_note = "", ""
        if qc and (out_dir / qc).is_file():
            qc_href = quote(qc.replace("\\", "/"), safe="/")
        elif qc:
            qc_note = f"QC image {qc} is missing"
        elif row.get("status") == "ok":
            qc_note = "no QC image"
        hours = finite_number(row.get("hours_since_onset"))
        needs = _yes_no(row.get("needs_review"), "")
        flags = _text(row.get("flags"))
        why = tuple((kind, REVIEW_FLAG_KINDS[f"{kind}:"]) for kind in review_kinds(flags)) if needs == "yes" else ()
        shown.append(ReviewRow(
            number=number,
            patient_id=_text(row.get("patient_id")),
            site=_text(row.get(site)) if site else "",
            status=_text(row.get("status")) or "failed",
            error=_text(row.get("error")),
            volumes=tuple(volumes),
            in_window=_yes_no(row.get("in_window"), "unknown"),
            hours="" if hours is None else f"{hours:.1f}",
            flags=flags,
            needs_review=needs,
            why=why,
            qc_href=qc_href,
            qc_note=qc_note,
        ))
    return shown


def review_html(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, *, run_id: str = "",
                generated: dt.datetime | None = None) -> str:
    """The page as text (see the module docstring); ``rows`` and ``out_dir`` as for `review_rows`.

    run_id: the run that wrote it (`corelab.pipeline.runs`), shown in the heading; generated: the
    time shown in the heading, default now (UTC).
    """
    from importlib import resources

    import jinja2

    # The repository's templates/, installed as the package data corelab.report.templates.
    templates = Path(str(resources.files("corelab.report.templates")))
    shown = review_rows(rows, out_dir)
    site = site_column(list(rows[0]) if rows else [])
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(templates), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    generated = generated or dt.datetime.now(dt.timezone.utc)
    statuses = Counter(r.status for r in shown)
    try:
        css = (templates / "review.css").read_text(encoding="utf-8")
        js = (templates / "review.js").read_text(encoding="utf-8")
        return env.get_template("review.html.j2").render(
            rows=shown,
            folder=Path(out_dir).name,
            run_id=run_id,
            generated=f"{generated:%Y-%m-%d %H:%M} UTC",
            has_site=site is not None,
            site_name=site or "",
            sites=sorted({r.site for r in shown if r.site}),
            statuses=sorted(statuses.items(), key=lambda kv: (kv[0] != "ok", kv[0])),
            volume_columns=list(VOLUME_COLUMNS.items()),
            n_review=sum(r.needs_review == "yes" for r in shown),
            n_outside=sum(r.in_window == "no" for r in shown),
            css=css,
            js=js,
        )
    except (OSError, jinja2.TemplateError) as error:
        raise ReviewError(f"The review page template in {templates} could not be used ({error}).") from None


def write_review(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, *, run_id: str = "") -> Path:
    """Write ``out_dir/review.html`` atomically from the volumes table's rows and return its path.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> page = write_review([{"patient_id": "P<1>", "status": "failed", "error": "No scan."}], folder)
    >>> "P&lt;1&gt;" in page.read_text(encoding="utf-8")
    True
    """
    path = Path(out_dir) / REVIEW_FILE
    atomic_write_text(path, review_html(rows, out_dir, run_id=run_id))
    return path
