"""Which DICOM series to analyse, and when it was acquired: rules on header values only.

No file I/O here: `corelab.io.dicom` reads the headers into `SliceHeader` records and these
functions decide. Series choice, in order of the rules (each only breaks ties left by the one before):

1. modality CT (MR, PET, SR, ... are never analysed);
2. a 3D stack: not a localizer/scout (ImageType LOCALIZER) and at least 2 slices in one orientation;
3. one image per position: a series that repeats positions (perfusion, multi-phase) comes last;
4. non-contrast: no ContrastBolusAgent and no CTA/angio/perfusion in the description, because the
   method's HU ranges are those of non-contrast CT;
5. axial: the slice normal within 45 degrees of the head-foot axis (a tilted gantry stays axial);
6. full head coverage: a stack at least 90% as long (mm) as the longest axial candidate, because a
   volume measured on a partial stack misses infarct that the scanner did image;
7. soft-tissue / brain kernel over an unknown one over a bone / sharp one (bone kernels add noise
   that hides the few HU of an infarct's hypodensity);
8. more slices (the thin reconstruction; preprocessing averages it into 5 mm slabs as the paper does).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "SliceHeader",
    "SeriesSummary",
    "summarize_series",
    "kernel_class",
    "rank_series",
    "acquisition_datetime",
    "parse_dicom_datetime",
]

_COVERAGE_FRACTION = 0.9
_AXIAL_MIN_COSINE = float(np.cos(np.deg2rad(45.0)))


@dataclass(frozen=True)
class SliceHeader:
    """What corelab needs from one DICOM image (one frame of a multi-frame file).

    path / frame: where the pixels are (frame index within the file; 0 for single-frame files).
    position: ImagePositionPatient (mm) or None; orientation: ImageOrientationPatient (6 cosines)
    or None; pixel_mm: PixelSpacing (row spacing, column spacing) in mm or None.
    has_rescale: RescaleIntercept and RescaleSlope are present (top level or functional groups).
    tags: other header values by keyword (Modality, ConvolutionKernel, dates, ...), stripped text.
    """

    path: Path
    frame: int
    series_uid: str
    rows: int
    cols: int
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    pixel_mm: tuple[float, float] | None
    has_rescale: bool
    tags: Mapping[str, str]

    def tag(self, keyword: str) -> str:
        return self.tags.get(keyword, "")


@dataclass(frozen=True)
class SeriesSummary:
    """One series as the choice rules see it (extent in mm, kernel class "soft"/"unknown"/"sharp")."""

    series_uid: str
    modality: str
    description: str
    kernel: str
    kernel_class: str
    n_slices: int
    extent_mm: float
    localizer: bool
    one_orientation: bool
    axial: bool
    repeated_positions: bool = False
    contrast: bool = False
    study_uid: str = ""

    def describe(self) -> str:
        """Short text for notes and error messages, e.g. "1.2.3 (CT, kernel H30s, 24 images)".

        The SeriesDescription is left out on purpose: it is free text typed at the scanner and may
        hold anything, and notes reach volumes.csv (read_notes), which leaves the core lab.
        """
        kernel = f", kernel {self.kernel}" if self.kernel else ""
        modality = self.modality or "no modality"
        return f"{self.series_uid} ({modality}{kernel}, {self.n_slices} images)"

    @property
    def is_volume(self) -> bool:
        return not self.localizer and self.one_orientation and self.n_slices >= 2


_CONTRAST_WORDS = re.compile(r"\b(CTA|ANGIO\w*|PERF\w*|C\+|CONTRAST|VENOGRAM|CTV)(?=\W|$)", re.IGNORECASE)
_SHARP_WORDS = ("BONE", "SHARP", "LUNG", "EDGE", "DETAIL", "SKULL")
_SOFT_WORDS = ("BRAIN", "SOFT", "STANDARD", "STND", "HEAD", "CEREBRUM", "SMOOTH")
# Philips letter kernels are too short to search for inside a name; they only count whole.
_PHILIPS_SOFT = {"A", "B", "C", "UA", "UB", "UC", "YA", "YB"}
_PHILIPS_SHARP = {"D", "E", "L", "YC", "YD", "YE", "YF"}


def kernel_class(kernel: str, description: str = "") -> str:
    """"soft", "sharp" or "unknown" for a ConvolutionKernel (SeriesDescription as a fallback hint).

    Siemens H/J/B/Q kernels below 50 are smooth (H31s brain, Hr38), 50 and above sharp (H60s,
    H70h bone); Canon FC below 30 soft (FC21-FC26 brain), FC30 and above bone; GE STANDARD/SOFT
    vs BONE/BONEPLUS/LUNG/EDGE/DETAIL; Philips UA-UC/YA/YB vs D/E/YC-YF.

    >>> kernel_class("H30s"), kernel_class("BONEPLUS"), kernel_class("Hr64"), kernel_class("FC21"), kernel_class("")
    ('soft', 'sharp', 'sharp', 'soft', 'unknown')
    """
    text = kernel.upper().replace("\\", " ").strip()
    if text:
        if any(word in text for word in _SHARP_WORDS):
            return "sharp"
        if any(word in text for word in _SOFT_WORDS):
            return "soft"
        siemens = re.match(r"^[HJBQCDIUV][A-Z]?\s?(\d{2})", text)
        canon = re.match(r"^FC\s?(\d{2})", text)
        if canon:
            return "soft" if int(canon.group(1)) < 30 else "sharp"
        if siemens:
            return "soft" if int(siemens.group(1)) < 50 else "sharp"
        if text in _PHILIPS_SOFT:
            return "soft"
        if text in _PHILIPS_SHARP:
            return "sharp"
    words = description.upper()
    if any(word in words for word in ("BONE", "SHARP", "LUNG")):
        return "sharp"
    if any(word in words for word in ("BRAIN", "SOFT")):
        return "soft"
    return "unknown"


def summarize_series(series_uid: str, headers: Sequence[SliceHeader]) -> SeriesSummary:
    """Reduce one series' slice headers to what the choice rules compare."""
    first = headers[0]
    repeated = False
    orientations = {tuple(np.round(h.orientation, 3)) for h in headers if h.orientation is not None}
    one_orientation = len(orientations) == 1 and all(h.orientation is not None for h in headers)
    axial = False
    extent = 0.0
    if one_orientation:
        row, col = np.asarray(first.orientation[:3]), np.asarray(first.orientation[3:])
        normal = np.cross(row, col)
        axial = abs(normal[2]) / np.linalg.norm(normal) >= _AXIAL_MIN_COSINE
        positions = np.array([h.position for h in headers if h.position is not None], dtype=float)
        if len(positions) >= 2:
            along = positions @ (normal / np.linalg.norm(normal))
            extent = float(along.max() - along.min())
            repeated = len(np.unique(np.round(along, 2))) < len(along)
    image_type = first.tag("ImageType").upper()
    kernel = first.tag("ConvolutionKernel")
    description = first.tag("SeriesDescription")
    return SeriesSummary(
        series_uid=series_uid,
        modality=first.tag("Modality").upper(),
        description=description,
        kernel=kernel,
        kernel_class=kernel_class(kernel, description),
        n_slices=len(headers),
        extent_mm=extent,
        localizer="LOCALIZER" in image_type,
        one_orientation=one_orientation,
        axial=bool(axial),
        repeated_positions=bool(repeated),
        study_uid=first.tag("StudyInstanceUID"),
        contrast=bool(first.tag("ContrastBolusAgent")) or bool(_CONTRAST_WORDS.search(description)),
    )


def rank_series(candidates: Sequence[SeriesSummary]) -> list[SeriesSummary]:
    """CT 3D stacks best first by the module's rules 3-8 (callers drop non-CT and non-volumes first)."""
    # Coverage is compared among the stacks rule 3 keeps: a long coronal reformat must not make
    # every axial series look partial.
    pool = [c for c in candidates if c.axial] or list(candidates)
    longest = max((c.extent_mm for c in pool), default=0.0)
    kernel_rank = {"soft": 2, "unknown": 1, "sharp": 0}

    def key(c: SeriesSummary) -> tuple:
        covers = c.extent_mm >= _COVERAGE_FRACTION * longest
        return (
            not c.repeated_positions,
            not c.contrast,
            c.axial,
            covers,
            kernel_rank[c.kernel_class],
            c.n_slices,
            c.extent_mm,
        )

    return sorted(candidates, key=key, reverse=True)


def _parse_date(text: str) -> dt.date | None:
    digits = re.sub(r"[^0-9]", "", text)  # ACR-NEMA wrote 2024.03.01
    if len(digits) != 8:
        return None
    try:
        return dt.date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))
    except ValueError:
        return None


def _parse_time(text: str) -> dt.time | None:
    text = text.strip().replace(":", "")
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", text)
    if not match:
        return None
    hour, minute, second, fraction = match.groups()
    try:
        return dt.time(
            int(hour), int(minute or 0), min(int(second or 0), 59), int((fraction or "0").ljust(6, "0"))
        )
    except ValueError:
        return None


def parse_dicom_datetime(date: str = "", time: str = "", datetime: str = "") -> dt.datetime | None:
    """A naive datetime from DA + TM, or from one DT value (its UTC offset suffix is dropped).

    >>> parse_dicom_datetime("20240301", "081530.5")
    datetime.datetime(2024, 3, 1, 8, 15, 30, 500000)
    >>> parse_dicom_datetime(datetime="20240301081530+0100")
    datetime.datetime(2024, 3, 1, 8, 15, 30)
    """
    if datetime:
        body = re.split(r"[+-]", datetime.strip(), maxsplit=1)[0]
        day = _parse_date(body[:8])
        clock = _parse_time(body[8:]) if len(body) > 8 else None
        return dt.datetime.combine(day, clock) if day and clock else None
    day, clock = _parse_date(date), _parse_time(time)
    return dt.datetime.combine(day, clock) if day and clock else None


_LEVELS = (
    ("AcquisitionDate/Time", ("AcquisitionDate", "AcquisitionTime", "")),
    ("AcquisitionDateTime", ("", "", "AcquisitionDateTime")),
    ("SeriesDate/Time", ("SeriesDate", "SeriesTime", "")),
    ("StudyDate/Time", ("StudyDate", "StudyTime", "")),
)


def acquisition_datetime(headers: Sequence[SliceHeader]) -> tuple[dt.datetime | None, list[str]]:
    """When the scan was acquired, and notes on where that came from.

    AcquisitionDate/Time, else AcquisitionDateTime, else SeriesDate/Time, else StudyDate/Time; a level
    counts only with both a valid date and time (a bare date could be off by 24 h, enough to move a
    scan across the 12 h window). Within a level the earliest slice is the start of the acquisition.
    Naive, in the scanner's local time as written; TimezoneOffsetFromUTC is only noted.
    """
    notes: list[str] = []
    for name, (date_key, time_key, dt_key) in _LEVELS:
        values = []
        for h in headers:
            if dt_key:
                value = parse_dicom_datetime(datetime=h.tag(dt_key))
            else:
                value = parse_dicom_datetime(h.tag(date_key), h.tag(time_key))
            if value is not None:
                values.append(value)
        if values:
            found = min(values)
            notes.append(f"Acquisition date-time {found.isoformat()} taken from {name}.")
            offset = headers[0].tag("TimezoneOffsetFromUTC")
            if offset:
                notes.append(f"TimezoneOffsetFromUTC is {offset}; the date-time is kept as written (local).")
            return found, notes
    notes.append("No acquisition, series or study date with a time was found; acquisition date-time unknown.")
    return None, notes
