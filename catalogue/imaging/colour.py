"""Colour science: sRGB <-> CIELAB (D65) and the CIEDE2000 colour difference.

Used by the quality gate (`checks`), the deterministic colour fixes (`colour_fixes`) and the check
of every retouch. CIEDE2000 is scikit-image's maintained implementation
(`skimage.color.deltaE_ciede2000`; equal to the former hand-written one within 1e-13, checked
against Sharma's published pairs in tests/test_qa.py), here with numpy broadcasting ((N, 3)
against (3,)) and float64 whatever the input.

The CIELAB conversion stays our own: scikit-image's `rgb2lab` uses rounded constants (the
0.008856 / 7.787 approximation of the CIE's 216/24389 and 24389/27, a 6-digit sRGB matrix) and
differs from the exact conversion by up to 0.005 in L*a*b*; `lab2rgb` clips. Here the conversion
uses the exact constants and `lab_to_rgb` is its inverse to 1e-6 (unclipped: `color-fix` clips
after blending). It is slower than `rgb2lab` (scripts/bench_imaging.py) but a small part of a
view's time; the outputs stay bit-identical to what the thresholds were calibrated on.
"""

from __future__ import annotations

import numpy as np
from skimage.color import deltaE_ciede2000

_M_RGB_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375],
                       [0.2126729, 0.7151522, 0.0721750],
                       [0.0193339, 0.1191920, 0.9503041]])
_WHITE_D65 = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27
_XYZ_RGB = np.linalg.inv(_M_RGB_XYZ)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (uint8 0-255, or float 0-255) -> CIELAB (D65), shape (..., 3)."""
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _M_RGB_XYZ.T / _WHITE_D65
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    L = 116 * f[..., 1] - 16
    a = 500 * (f[..., 0] - f[..., 1])
    b = 200 * (f[..., 1] - f[..., 2])
    return np.stack([L, a, b], axis=-1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (D65) -> sRGB float 0-255 (unclipped), shape (..., 3). Inverse of `rgb_to_lab`."""
    lab = np.asarray(lab, dtype=np.float64)
    fy = (lab[..., 0] + 16) / 116
    fx = fy + lab[..., 1] / 500
    fz = fy - lab[..., 2] / 200
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f ** 3 > _EPS, f ** 3, (116 * f - 16) / _KAPPA)
    xyz[..., 1] = np.where(lab[..., 0] > _KAPPA * _EPS, fy ** 3, lab[..., 0] / _KAPPA)
    lin = (xyz * _WHITE_D65) @ _XYZ_RGB.T
    lin = np.clip(lin, 0.0, None)
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)
    return c * 255.0


def ciede2000(lab1, lab2, kL: float = 1.0, kC: float = 1.0, kH: float = 1.0) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu, Dalal 2005), broadcast over (..., 3) arrays."""
    a, b = np.broadcast_arrays(np.asarray(lab1, dtype=np.float64), np.asarray(lab2, dtype=np.float64))
    return np.asarray(deltaE_ciede2000(a, b, kL, kC, kH))


def delta_e(lab1, lab2) -> float | None:
    """CIEDE2000 between two colours, None when one is missing (no garment found)."""
    if lab1 is None or lab2 is None:
        return None
    return float(ciede2000(lab1, lab2))
