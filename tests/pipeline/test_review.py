"""review.html: every manifest row on one offline page, escaped; sorting and filters in a real browser.

The HTML tests read the page's text; the browser tests load it from a file:// URL in headless
Chromium (tests/helpers/headless_chromium.py, DevTools over a pipe, no network) and read the DOM back.
"""

import html
import re

import pytest
from headless_chromium import Browser, chromium, screenshot
from review_batch import make_results, qc_pngs, result_rows

from corelab.pipeline.review import REVIEW_FILE, review_html, review_rows, write_review
from corelab.pipeline.sites import site_column

ODD_ID = "O'Brien & <Sons> \"#1\""  # not a valid manifest id, but the page must not trust that
ODD_ERROR = "The scan <b>folder</b> holds \"3\" files & no series; check it."
NEEDS_CHROMIUM = pytest.mark.skipif(
    chromium() is None, reason="Chromium is not installed (apt-get install chromium; scripts/setup.sh installs it)")


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    """Two real QC images (writing one takes a couple of seconds)."""
    return qc_pngs(tmp_path_factory.mktemp("phantoms"), n=2)


@pytest.fixture(scope="module")
def results(tmp_path_factory, pngs):
    """A 40-row results folder with review.html, plus one row whose id and error need escaping."""
    folder = tmp_path_factory.mktemp("corelab-results")
    rows = result_rows(40)
    rows.append({"patient_id": ODD_ID, "status": "failed", "error": ODD_ERROR, "site": "site A"})
    make_results(folder, rows, pngs=pngs)
    write_review(rows, folder, run_id="2026-12-02T06-30-00Z")
    return folder, rows


def _cells(page: str, css_class: str) -> list[str]:
    return [html.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(rf'<td class="{css_class}">(.*?)</td>', page, flags=re.DOTALL)]


def test_every_row_is_on_the_page_in_manifest_order(results):
    folder, rows = results
    page = (folder / REVIEW_FILE).read_text(encoding="utf-8")
    assert _cells(page, "pid") == [row["patient_id"] for row in rows]
    statuses = re.findall(r'<tr data-status="([^"]*)"', page)
    assert statuses == [row["status"] for row in rows]
    assert {"ok", "failed", "not_run"} <= set(statuses)
    # a failed and a not_run row keep their sentence
    notes = _cells(page, "notes")
    assert notes[4] == rows[4]["error"] and notes[-2] == rows[-2]["error"] and notes[-1] == ODD_ERROR


def test_ids_and_sentences_are_escaped(results):
    folder, _ = results
    page = (folder / REVIEW_FILE).read_text(encoding="utf-8")
    assert "<Sons>" not in page and "<b>folder</b>" not in page
    assert "O&#39;Brien &amp; &lt;Sons&gt; &#34;#1&#34;" in page
    assert "The scan &lt;b&gt;folder&lt;/b&gt; holds &#34;3&#34; files &amp; no series" in page


def test_the_page_refers_to_no_file_but_the_qc_images(results):
    folder, rows = results
    page = (folder / REVIEW_FILE).read_text(encoding="utf-8")
    refs = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert refs and all(ref == "#" or ref.startswith("qc/") for ref in refs), refs
    assert all((folder / ref).is_file() for ref in refs if ref != "#")
    assert "<link" not in page and "<script src" not in page and "@import" not in page and "url(" not in page
    assert page.count('loading="lazy"') == sum(bool(row.get("qc")) for row in rows)


def test_qc_links_are_url_quoted_and_a_missing_image_is_said(tmp_path):
    (tmp_path / "qc").mkdir()
    (tmp_path / "qc" / "A&B #1 %.png").write_bytes(b"\x89PNG")
    rows = [{"patient_id": "A&B #1 %", "status": "ok", "qc": "qc/A&B #1 %.png", "infarct_ml": 1.0},
            {"patient_id": "GONE", "status": "ok", "qc": "qc/GONE.png", "infarct_ml": 2.0}]
    shown = review_rows(rows, tmp_path)
    assert shown[0].qc_href == "qc/A%26B%20%231%20%25.png"
    assert shown[1].qc_href == "" and shown[1].qc_note == "QC image qc/GONE.png is missing"
    assert "QC image qc/GONE.png is missing" in review_html(rows, tmp_path)


def test_volumes_sort_on_the_table_value_and_show_two_decimals(tmp_path):
    rows = [{"patient_id": "P1", "status": "ok", "infarct_ml": 12.3456789, "severe_ml": 0.0, "subtle_ml": None},
            {"patient_id": "P2", "status": "failed", "error": "No scan.", "in_window": False, "needs_review": None}]
    first, second = review_rows(rows, tmp_path)
    assert first.volumes[0] == ("infarct_ml", "12.35", "12.3457")  # volumes.csv rounds to 4 decimals
    assert first.volumes[1] == ("severe_ml", "0.00", "0.0") and first.volumes[3] == ("subtle_ml", "", "")
    assert first.in_window == "unknown" and second.in_window == "no" and second.needs_review == ""
    # volumes.csv's text cells read the same as table_row's typed values
    text = review_rows([{"patient_id": "P1", "status": "ok", "infarct_ml": "12.3456789", "in_window": "true",
                         "needs_review": "true"}], tmp_path)[0]
    assert text.volumes[0] == first.volumes[0] and text.in_window == "yes" and text.needs_review == "yes"


def test_a_row_that_needs_review_says_which_kinds_of_flag_set_it(tmp_path):
    flags = ("Onset and scan time are both unknown, so the imaging window is unknown. Partial coverage: the "
             "field of view cuts through the skull. Brain shift: the brain's median is 23.8 HU, 11.2 HU below "
             "the models' reference of 35 HU.")
    rows = [{"patient_id": "P1", "status": "ok", "flags": flags, "needs_review": "true"},
            {"patient_id": "P2", "status": "ok", "flags": "Onset and scan time are both unknown.", "needs_review": "false"}]
    first, second = review_rows(rows, tmp_path)
    assert [kind for kind, _ in first.why] == ["Partial coverage", "Brain shift"]  # not the timing sentence
    assert second.why == ()
    cells = re.findall(r'<td data-v="(yes|no)" class="review">(.*?)</td>', review_html(rows, tmp_path), flags=re.DOTALL)
    assert [v for v, _ in cells] == ["yes", "no"]
    why = re.findall(r'<span class="why" title="([^"]*)">([^<]*)</span>', cells[0][1])
    assert [text for _, text in why] == ["Partial coverage", "Brain shift"]
    assert "field of view" in why[0][0] and "median HU" in why[1][0]  # what each kind means, on hover
    assert '<span class="why"' not in cells[1][1]


def test_site_is_a_column_only_when_the_manifest_has_one(tmp_path):
    assert site_column(["patient_id", "status", "Site", "arm"]) == "Site"
    assert site_column(["patient_id", "status", "arm"]) is None
    page = review_html([{"patient_id": "P1", "status": "ok", "arm": "a"}], tmp_path)
    assert 'name="site"' not in page
    page = review_html([{"patient_id": "P1", "status": "ok", "Centre": "Leiden"}], tmp_path)
    assert 'name="site"' in page and '<option value="Leiden">Leiden</option>' in page


@pytest.mark.slow
def test_corelab_run_writes_the_page_with_every_row(tmp_path):
    from pipeline_trial import SMALL_METHOD, make_trial

    from corelab.pipeline.batch import run_batch

    trial = make_trial(tmp_path / "trial", n=1, rows=[{"patient_id": "LOST", "scan": "scans/none.nii.gz"}])
    out = tmp_path / "out"
    run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    page = (out / REVIEW_FILE).read_text(encoding="utf-8")
    assert _cells(page, "pid") == ["P001", "LOST"]
    assert re.findall(r'<tr data-status="([^"]*)"', page) == ["ok", "failed"]
    assert 'href="qc/P001.png"' in page and (out / "qc" / "P001.png").is_file()
    assert '<option value="site0">site0</option>' in page


# ---- in a real browser ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; scripts/setup.sh installs it)")
    with Browser(width=1400, height=1000) as running:
        yield running


@pytest.fixture
def page(browser, results):
    """A fresh tab showing the page; the test fails on any uncaught JavaScript error."""
    folder, _ = results
    tab = browser.open((folder / REVIEW_FILE).as_uri())
    yield tab
    assert tab.errors() == []


VISIBLE = "Array.from(document.querySelectorAll('#review tbody tr')).filter(r => !r.hidden)"


def _column(page, column: str) -> list[str]:
    """The data-v of a volume column, in the order the rows now stand in the DOM."""
    return page.evaluate(f"Array.from(document.querySelectorAll('#review tbody td[data-col={column}]'))"
                         ".map(td => td.getAttribute('data-v'))")


@NEEDS_CHROMIUM
def test_clicking_a_volume_header_sorts_rows_numerically(page, results):
    _, rows = results
    before = page.evaluate("Array.from(document.querySelectorAll('#review tbody td.pid')).map(td => td.textContent)")
    assert before == [row["patient_id"] for row in rows]
    page.click("#review thead th:nth-child(6) button")  # infarct: #, QC, patient id, site, status, infarct
    values = _column(page, "infarct_ml")
    numbers = [float(v) for v in values if v]
    assert numbers == sorted(numbers) and len(numbers) == sum(row.get("infarct_ml") is not None for row in rows)
    assert all(not v for v in values[len(numbers):])  # unmeasured rows last
    # numeric, not text order: text order would put e.g. 100.1 before 9.5
    assert sorted(map(str, numbers)) != [str(n) for n in numbers]
    after = page.evaluate("Array.from(document.querySelectorAll('#review tbody td.pid')).map(td => td.textContent)")
    assert after != before and sorted(after) == sorted(before)
    page.click("#review thead th:nth-child(6) button")
    again = [float(v) for v in _column(page, "infarct_ml") if v]
    assert again == sorted(numbers, reverse=True)
    assert page.evaluate("document.querySelector('#review thead th:nth-child(6)').getAttribute('aria-sort')") \
        == "descending"


@NEEDS_CHROMIUM
def test_the_status_filter_hides_rows(page, results):
    _, rows = results
    page.click("input[name=status][value=ok]")
    visible = page.evaluate(f"{VISIBLE}.map(r => r.getAttribute('data-status'))")
    assert visible and set(visible) == {"failed", "not_run"}
    assert len(visible) == sum(row["status"] != "ok" for row in rows)
    assert page.evaluate("document.getElementById('shown').textContent") == f"{len(visible)} of {len(rows)} rows shown"
    assert ODD_ID in page.evaluate(f"{VISIBLE}.map(r => r.querySelector('td.pid').textContent)")
    page.click("#reset-filters")
    assert page.evaluate(f"{VISIBLE}.length") == len(rows)


@NEEDS_CHROMIUM
def test_text_site_and_volume_filters(page, results):
    _, rows = results
    page.click("input[name=text]")
    page.type_text("COVERAGE")
    ids = page.evaluate(f"{VISIBLE}.map(r => r.querySelector('td.pid').textContent)")
    assert ids and ids == [r["patient_id"] for r in rows if "Partial coverage" in r.get("flags", "")]
    page.click("#reset-filters")
    page.evaluate("(() => { const s = document.querySelector('select[name=site]'); s.value = 'site B';"
                  " s.dispatchEvent(new Event('change', {bubbles: true})); })()")
    assert set(page.evaluate(f"{VISIBLE}.map(r => r.getAttribute('data-site'))")) == {"site B"}
    page.click("#reset-filters")
    page.click("input[name=min]")
    page.type_text("20")
    infarcts = [float(v) for v in page.evaluate(f"{VISIBLE}.map(r => r.querySelector('td[data-col=infarct_ml]')"
                                                ".getAttribute('data-v'))")]
    assert infarcts and min(infarcts) >= 20
    assert len(infarcts) == sum((row.get("infarct_ml") or 0) >= 20 for row in rows)


@NEEDS_CHROMIUM
def test_a_thumbnail_opens_the_full_qc_image_offline(page, results):
    page.click("a.thumb")
    assert page.evaluate("document.getElementById('overlay').hidden") is False
    src = page.evaluate("document.getElementById('overlay-img').getAttribute('src')")
    assert src == "qc/A-001.png"
    assert page.evaluate("new Promise(done => { const i = document.getElementById('overlay-img');"
                         " if (i.complete) done(i.naturalWidth); else i.onload = () => done(i.naturalWidth); })") > 500
    page.press("Escape")
    assert page.evaluate("document.getElementById('overlay').hidden") is True
    assert all(url.startswith("file://") for url in page.requested_urls()), page.requested_urls()


@NEEDS_CHROMIUM
def test_the_page_renders_in_a_screenshot(results, tmp_path):
    from PIL import Image

    folder, _ = results
    shot = screenshot((folder / REVIEW_FILE).as_uri(), tmp_path / "shot.png", width=1200, height=800)
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 800)
    low, high = image.getextrema()
    assert high - low > 100  # text and table drawn, not a blank page
