"""Vectorised geometry: anchor points, point-in-polygon, segment crossings."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F = npt.NDArray[np.float64]


def anchors(boxes: npt.NDArray[np.float32], anchor: str, width: int, height: int) -> F:
    """Anchor point of each box, relative to the frame (0..1).

    Args:
        boxes: ``(N, 4)`` pixel boxes ``x1, y1, x2, y2``.
        anchor: ``bottom_center`` (feet, wheels) or ``center``.
        width: Frame width the boxes refer to; 0 means the boxes are already relative.
        height: Frame height; 0 means relative.
    """
    b = boxes.astype(np.float64)
    x = (b[:, 0] + b[:, 2]) * 0.5
    y = b[:, 3] if anchor == "bottom_center" else (b[:, 1] + b[:, 3]) * 0.5
    pts: F = np.stack([x, y], axis=1)
    if width > 0 and height > 0:
        pts /= np.array([width, height], np.float64)
    return pts


def points_in_polygon(pts: F, poly: F) -> npt.NDArray[np.bool_]:
    """Even-odd ray casting for many points against one polygon (loop over edges only).

    Args:
        pts: ``(N, 2)`` points.
        poly: ``(V, 2)`` vertices, in the same coordinates.
    """
    x, y = pts[:, 0], pts[:, 1]
    inside = np.zeros(len(pts), bool)
    xj, yj = poly[-1]
    for xi, yi in poly:
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (xj - xi) * (y - yi) / (yj - yi) + xi
        inside ^= crosses & (x < xint)
        xj, yj = xi, yi
    return inside


def side(p: F, a: F, b: F) -> F:
    """Sign of the cross product ``(b - a) × (p - a)`` per point.

    In image coordinates (y down) a positive value is the right-hand side when looking
    from ``a`` towards ``b``.
    """
    out: F = np.sign((b[0] - a[0]) * (p[..., 1] - a[1]) - (b[1] - a[1]) * (p[..., 0] - a[0]))
    return out


def crossing(p0: F, p1: F, a: F, b: F) -> int:
    """Whether the move ``p0 → p1`` crosses segment ``a-b``, and which way.

    Returns:
        ``+1`` left to right, ``-1`` right to left (seen from ``a`` towards ``b``), ``0``
        when the segments do not cross.
    """
    s0, s1 = float(side(p0, a, b)), float(side(p1, a, b))
    if s0 == 0 or s1 == 0 or s0 == s1:
        return 0
    t0, t1 = float(side(a, p0, p1)), float(side(b, p0, p1))
    if t0 == t1:  # both line ends on one side of the move: it passed beside the line
        return 0
    return 1 if s1 > 0 else -1
