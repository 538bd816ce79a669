"""The mid-sagittal mirror of a scan: each voxel's contralateral counterpart across the head's own midline.

A reader compares each hemisphere with the other; an infarct is brain darker than its mirror. Heads
are rarely centred or straight in the scanner, so the midline is estimated per scan: the scan's
left-right flip is registered rigidly onto the scan (SimpleITK, mean squares on HU clipped to the
soft-tissue range, two resolutions). With F the flip about the image's central sagittal plane and
R the rigid transform found, F∘R is the reflection about the head's mid-sagittal plane, and the
mirror image is the flipped scan resampled through R.

Arrays are `[z, y, x]` on one grid (x is left-right), spacing `(z, y, x)` in mm. Pure functions: no
file I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

__all__ = ["Mirror", "estimate_mirror", "mirror_image"]

# Registration works on HU clipped to this window (skull and air saturate: the brain, CSF, falx and
# inner table carry the symmetry) at this in-plane pixel size (mm).
_CLIP_HU = (-20.0, 120.0)
_REGISTRATION_PIXEL_MM = 2.0
_MIN_SLICES = 8  # a stack this thin (a partial scan) is padded by repeating its edge slices for the registration


@dataclass(frozen=True)
class Mirror:
    """The rigid part R of the mid-sagittal reflection F∘R of one grid.

    parameters: SimpleITK Euler3D parameters (rotations about x, y, z in radians, then translation
        in mm), about `center` (mm, in the grid's index-aligned frame: origin 0, axes z, y, x as
        SimpleITK's x = column, y = row, z = slice).
    metric: the final mean squared HU difference between the scan and its mirror (lower = more
        symmetric); a check on the fit, not a lesion measure.
    """

    parameters: tuple[float, ...]
    center: tuple[float, float, float]
    metric: float

    def transform(self) -> sitk.Euler3DTransform:
        euler = sitk.Euler3DTransform()
        euler.SetCenter(self.center)
        euler.SetParameters(self.parameters)
        return euler


def _image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))
    return image


def _flipped(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array[:, :, ::-1])


def estimate_mirror(hu: np.ndarray, spacing: tuple[float, float, float], *, iterations: int = 200) -> Mirror:
    """Rigid registration of the scan's left-right flip onto the scan: the head's mid-sagittal mirror.

    >>> z, y, x = np.mgrid[0:6, 0:64, 0:64]
    >>> head = np.where((y - 32) ** 2 + (x - 35) ** 2 < 400, 35.0, -1000.0)  # centred 3 pixels right
    >>> mirror = estimate_mirror(head, (5.0, 2.0, 2.0))
    >>> bool(np.abs(mirror_image(head, (5.0, 2.0, 2.0), mirror) - head)[:, 32, 20:50].max() < 1.0)
    True
    """
    hu = np.asarray(hu, dtype=np.float32)
    factor = max(1, int(round(_REGISTRATION_PIXEL_MM / float(spacing[2]))))
    small = np.clip(hu[:, ::factor, ::factor], *_CLIP_HU)
    before = 0
    if small.shape[0] < _MIN_SLICES:  # ITK's pyramid smoothing needs 4 slices after halving: repeat edge slices
        extra = _MIN_SLICES - small.shape[0]
        before = extra // 2
        small = np.pad(small, ((before, extra - before), (0, 0), (0, 0)), mode="edge")
    small_spacing = (float(spacing[0]), float(spacing[1]) * factor, float(spacing[2]) * factor)
    fixed, moving = _image(small, small_spacing), _image(_flipped(small), small_spacing)
    for image in (fixed, moving):  # repeated slices lie before slice 0: the scan's own frame is kept
        image.SetOrigin((0.0, 0.0, -before * small_spacing[0]))
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY)
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-3, numberOfIterations=iterations, relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([2, 1])
    method.SetSmoothingSigmasPerLevel([2.0, 0.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    method.SetInitialTransform(initial, inPlace=True)
    method.Execute(fixed, moving)
    return Mirror(parameters=tuple(float(p) for p in initial.GetParameters()),
                  center=tuple(float(c) for c in initial.GetCenter()), metric=float(method.GetMetricValue()))


def mirror_image(array: np.ndarray, spacing: tuple[float, float, float], mirror: Mirror, *,
                 default: float = -1000.0) -> np.ndarray:
    """Each voxel's value at its mirror position across the head's midline (linear interpolation);
    `default` where the mirror position falls outside the grid. Same shape as `array`."""
    image = _image(np.asarray(array, dtype=np.float32), spacing)
    flipped = _image(_flipped(np.asarray(array, dtype=np.float32)), spacing)
    out = sitk.Resample(flipped, image, mirror.transform(), sitk.sitkLinear, float(default), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)
