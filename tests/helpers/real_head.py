"""A real normal head CT for tests and benchmarks: InVesalius' example ``Cranium.inv3`` (Debian package
``invesalius-examples``).

Test and benchmark infrastructure only; corelab itself never reads .inv3 files.

An .inv3 project is a gzip tar holding ``main.plist`` (matrix shape, dtype, spacing (x, y, slice) in
mm, the acquisition orientation) and ``matrix.dat`` (raw voxels, C order [slice, row, column]).
Cranium.inv3's plist says orientation 1 (coronal), but its voxels are an axial acquisition: 108
slices of 1.5 mm from the maxilla (slice 0) up to the vertex, each slice a 256 x 256 axial image of
0.957 mm whose rows run from the back of the head (and the head holder behind it) to the face, and
whose columns are taken to run from the patient's right to left (a normal head does not show left
from right). Checked on the images: a sagittal reformat shows the face in the last rows and the
vault over the last slices, and each slice shows the lateral ventricles side by side, the orbits in
front. `read_inv3` reverses the rows (no resampling), so the image is index [z, y, x] with z toward
the vertex, y toward the back and x toward the patient's left: the identity direction in LPS.
(Until 2026-12-07 it took the plist at its word and put the slices along y, so corelab saw this
head lying on its face: 5 mm "axial" slabs that were coronal.) Its field of view holds the whole
skull above the maxilla.

The head is not free of findings: the right frontal lobe holds a hypodense cortical-subcortical
lesion of several mL (slices 58-80, in front of and above the frontal horn; 16 HU against the
brain's 24 HU median), an infarct by its shape. `known_lesion` delineates it, so benchmarks can
keep it out of the false-positive figures of "the normal head" and of the phantoms drawn into it.
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

__all__ = ["read_inv3", "known_lesion", "real_head_path", "fetch_real_head", "PACKAGE", "INV3_NAME"]

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
        # Labelled coronal, stored axial: [slice (up), row (back to front), column (right to left)]
        # -> [z up, y back, x left].
        axial = np.ascontiguousarray(voxels[:, ::-1, :])
        spacing_xyz = (sx, sy, s_slice)
    else:
        raise ValueError(f"{path}: orientation {orientation} is not handled; this reader knows Cranium.inv3's (1) only.")
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


# The right frontal lesion of Cranium.inv3 (index [z, y, x] of `read_inv3`): a point inside it, the
# right hemisphere's box it lies in, and the delineation's constants. A threshold delineation made for
# benchmarks, not a reader's: voxels whose 2 mm smoothed HU is under 19 HU (the lesion reads 13-17,
# the brain around it 22-30), at least 3 mm from CSF (smoothed under 10 HU) and from bone (over 100 HU),
# connected to the point, then widened by 2 mm into the brain so that its partial-volume rim goes too.
_LESION_POINT = (68, 100, 100)
_LESION_BOX = (slice(45, 95), slice(55, 130), slice(70, 125))
_LESION_BELOW_HU, _LESION_CSF_HU, _LESION_BONE_HU = 19.0, 10.0, 100.0
_LESION_SMOOTH_MM, _LESION_CLEAR_MM, _LESION_RIM_MM = 2.0, 3.0, 2.0


def known_lesion(image: sitk.Image) -> sitk.Image:
    """The right frontal lesion of Cranium.inv3 as a uint8 mask (1 = lesion) on ``image``'s grid.

    ``image`` is `read_inv3`'s (or a file written from it). Raises ``ValueError`` when the point that
    should lie in the lesion does not (another head, or another orientation).
    """
    from scipy import ndimage

    from corelab.preprocess.morphology import dilate_mm, label_components

    hu = sitk.GetArrayFromImage(image).astype(np.float32)
    spacing = tuple(float(s) for s in image.GetSpacing()[::-1])
    smooth = ndimage.gaussian_filter(hu, [_LESION_SMOOTH_MM / s for s in spacing])
    box = np.zeros(hu.shape, bool)
    box[_LESION_BOX] = True
    csf = dilate_mm(smooth < _LESION_CSF_HU, spacing, _LESION_CLEAR_MM)
    bone = dilate_mm(hu > _LESION_BONE_HU, spacing, _LESION_CLEAR_MM)
    core = box & (smooth < _LESION_BELOW_HU) & ~csf & ~bone
    parts, _ = label_components(core)
    if not core[_LESION_POINT]:
        raise ValueError("this image is not Cranium.inv3 as read_inv3 reads it: no lesion at its known point")
    lesion = parts == parts[_LESION_POINT]
    brain = box & (smooth > _LESION_CSF_HU) & (hu < _LESION_BONE_HU)
    lesion = dilate_mm(lesion, spacing, _LESION_RIM_MM) & brain
    out = sitk.GetImageFromArray(lesion.astype(np.uint8))
    out.CopyInformation(image)
    return out
