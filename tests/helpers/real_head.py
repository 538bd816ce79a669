"""A real normal head CT for tests and benchmarks: InVesalius' example ``Cranium.inv3`` (Debian package
``invesalius-examples``).

Test and benchmark infrastructure only; corelab itself never reads .inv3 files.

An .inv3 project is a gzip tar holding ``main.plist`` (matrix shape, dtype, spacing (x, y, slice) in
mm, the acquisition orientation) and ``matrix.dat`` (raw voxels, C order [slice, row, column]).
Cranium.inv3 is a direct coronal scan (orientation 1): slices run from the face backwards and rows
from the vertex down (both checked on the images: the face is in the first slices, the vertex in the
first rows); columns are taken to run from the patient's right to left, as DICOM stores a coronal
image (row direction +x, column direction -z, slice normal +y in LPS): a normal head does not show
left from right. `read_inv3` permutes the voxels (no resampling) into axial order, index [z, y, x]
with z toward the vertex, y toward the back and x toward the patient's left, so the image has the
identity direction in LPS. Its field of view ends in the face (the first coronal slice cuts the
forehead and the orbits).
"""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

__all__ = ["read_inv3", "real_head_path", "fetch_real_head", "PACKAGE", "INV3_NAME"]

PACKAGE = "invesalius-examples"
INV3_NAME = "Cranium.inv3"
_IN_PACKAGE = Path("usr/share/doc/invesalius-examples/examples") / INV3_NAME
_SEARCH = (
    Path("/tmp/inv") / _IN_PACKAGE,
    Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "real" / INV3_NAME,
)
_CORONAL = 1  # InVesalius: 0 axial, 1 coronal, 2 sagittal


def read_inv3(path: str | os.PathLike) -> sitk.Image:
    """The CT volume of an InVesalius .inv3 project as an axial SimpleITK image in HU (spacing in mm).

    Raises ``ValueError`` for a project whose orientation or matrix this reader does not handle.
    """
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        if "main.plist" not in members:
            raise ValueError(f"{path} holds no main.plist; it is not an InVesalius project.")
        main = plistlib.load(tar.extractfile(members["main.plist"]))
        matrix = main["matrix"]
        raw = tar.extractfile(members[matrix["filename"]]).read()
    shape = tuple(int(n) for n in matrix["shape"])
    voxels = np.frombuffer(raw, dtype=np.dtype(matrix["dtype"]).newbyteorder("<")).reshape(shape)
    sx, sy, s_slice = (float(s) for s in main["spacing"])
    orientation = int(main.get("orientation", -1))
    if orientation == _CORONAL:
        # [slice (front to back), row (top down), column (right to left)] -> [z up, y back, x left].
        axial = np.ascontiguousarray(voxels.transpose(1, 0, 2)[::-1])
        spacing_xyz = (sx, s_slice, sy)
    else:
        raise ValueError(f"{path}: orientation {orientation} is not handled; this reader knows coronal projects (1) only.")
    image = sitk.GetImageFromArray(axial.astype(np.int16))
    image.SetSpacing(spacing_xyz)
    image.SetOrigin((0.0, 0.0, 0.0))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return image


def real_head_path() -> Path | None:
    """Path of Cranium.inv3 when it is on this machine ($CORELAB_REAL_HEAD, /tmp/inv, benchmarks/data/real), else None."""
    candidates = []
    if os.environ.get("CORELAB_REAL_HEAD"):
        candidates.append(Path(os.environ["CORELAB_REAL_HEAD"]))
    candidates.extend(_SEARCH)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    return None


def fetch_real_head(dest: str | os.PathLike) -> Path:
    """Download the Debian package with ``apt-get download``, unpack Cranium.inv3 into ``dest``; its path.

    Raises ``RuntimeError`` (with apt's message) when the package cannot be downloaded.
    """
    dest = Path(dest)
    target = dest / INV3_NAME
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        done = subprocess.run(["apt-get", "download", PACKAGE], cwd=work, capture_output=True, text=True, check=False)
        debs = sorted(Path(work).glob(f"{PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            raise RuntimeError(f"apt-get download {PACKAGE} failed: {done.stderr.strip() or done.stdout.strip()}")
        subprocess.run(["dpkg", "-x", str(debs[0]), str(Path(work) / "x")], check=True, capture_output=True)
        shutil.copyfile(Path(work) / "x" / _IN_PACKAGE, target)
    return target
