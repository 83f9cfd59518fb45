"""The built-in shapes: squares, ellipses and triangles drawn at random
scale, rotation and position, with their generative factors."""

from __future__ import annotations

import numpy as np

from fastvae.data.dataset import Dataset, _check_int, _philox

SHAPE_NAMES = ("square", "ellipse", "triangle")
SHAPE_FACTOR_NAMES = ("shape", "scale", "rotation", "pos_x", "pos_y")

# At scale 1 every shape covers this fraction of the frame, so the smallest
# (scale 0.5) covers 0.0325 * 28**2 = 25.5 pixels at 28x28: always visible,
# and all shapes of one scale carry the same amount of ink.
_AREA_FRACTION = 0.13
_ELLIPSE_ASPECT = 0.6
# Vertex directions of the triangle around its centroid (apex up at rotation 0).
_TRIANGLE_ANGLES = -np.pi / 2 + 2 * np.pi / 3 * np.arange(3)
# 2000 images of 56x56 float32 sub-samples are 25 MB per temporary.
_CHUNK = 2000


def make_shapes(
    n_samples: int = 20000, *, image_size: int = 28, seed: int = 0
) -> Dataset:
    """Generate white shapes on black, a dSprites-like set needing no download.

    Each image shows one square, ellipse (aspect 1:0.6) or equilateral
    triangle with a random scale, rotation and position, fully inside the
    frame.

    Parameters
    ----------
    n_samples : int, default=20000
        Number of images, >= 1.
    image_size : int, default=28
        Images are ``image_size x image_size`` (28 matches MNIST), >= 8.
    seed : int, default=0
        Philox key; the output is bitwise reproducible for a seed, and the
        first k images are the same for every ``n_samples >= k``.

    Returns
    -------
    Dataset
        ``X`` of shape (n_samples, image_size**2) with values in
        {0, 0.25, 0.5, 0.75, 1}; ``y`` the shape (0 square, 1 ellipse,
        2 triangle); ``factors`` the columns ``shape, scale, rotation, pos_x,
        pos_y``; name ``"shapes"``.

    Raises
    ------
    ValueError
        If ``n_samples < 1``, ``image_size < 8`` or ``seed`` is not an integer
        >= 0.

    Notes
    -----
    Factors: shape uniform over {0, 1, 2}; scale uniform in [0.5, 1], a shape
    of scale s covering ``0.13 * s**2`` of the frame; rotation uniform in
    [0, 2*pi) (the image repeats every pi/2 for the square, pi for the ellipse
    and 2*pi/3 for the triangle); pos_x, pos_y the centre (the centroid for the
    triangle) divided by ``image_size``, with x to the right and y down. Given
    the other factors, the centre is uniform over the positions where the
    rotated shape fits in the frame, so positions near the border are only
    reached by small shapes.

    Each pixel is the fraction of its 2x2 sub-sample points that fall inside
    the shape.

    Examples
    --------
    >>> data = make_shapes(100, seed=1)
    >>> data.X.shape, data.image_shape, data.factor_names[3]
    ((100, 784), (28, 28), 'pos_x')
    """
    n = _check_int("n_samples", n_samples, 1)
    size = _check_int("image_size", image_size, 8)
    rng = _philox(seed)
    # One row of uniforms per image, drawn up front: image i is the same for
    # any n_samples > i and any chunk size.
    u = rng.random((n, 5))
    shape = (3 * u[:, 0]).astype(np.int64)
    scale = 0.5 + 0.5 * u[:, 1]
    rotation = 2 * np.pi * u[:, 2]
    where = u[:, 3:]

    area = _AREA_FRACTION * size**2 * scale**2
    cos, sin = np.cos(rotation), np.sin(rotation)
    # One size parameter per shape: half-side, semi-major axis, circumradius.
    radius = np.select(
        [shape == 0, shape == 1],
        [np.sqrt(area) / 2, np.sqrt(area / (np.pi * _ELLIPSE_ASPECT))],
        np.sqrt(area * 4 / (3 * np.sqrt(3))),
    )
    lo, hi = _extent(shape, radius, rotation)
    centre = -lo + where * (size - (hi - lo))

    sub = ((np.arange(2 * size) + 0.5) / 2).astype(np.float32)
    X = np.empty((n, size * size), dtype=np.float32)
    for start in range(0, n, _CHUNK):
        rows = slice(start, min(start + _CHUNK, n))
        dx = sub - centre[rows, 0, None].astype(np.float32)
        dy = sub - centre[rows, 1, None].astype(np.float32)
        inside = np.empty((dx.shape[0], 2 * size, 2 * size), dtype=bool)
        for kind, test in enumerate((_in_square, _in_ellipse, _in_triangle)):
            i = np.flatnonzero(shape[rows] == kind)
            if i.size:
                j = i + start
                c, s, r = (a[j, None].astype(np.float32) for a in (cos, sin, radius))
                inside[i] = test(dx[i], dy[i], c, s, r)
        hits = inside.view(np.uint8)
        count = hits[:, 0::2, 0::2] + hits[:, 0::2, 1::2]
        count += hits[:, 1::2, 0::2]
        count += hits[:, 1::2, 1::2]
        np.multiply(count.reshape(count.shape[0], -1), np.float32(0.25), out=X[rows])

    factors = np.column_stack([shape, scale, rotation, centre / size])
    return Dataset(
        X=X,
        y=shape.astype(np.int64),
        image_shape=(size, size),
        name="shapes",
        factors=factors,
        factor_names=SHAPE_FACTOR_NAMES,
    )


def _extent(shape, radius, rotation):
    """Per-image (lo, hi) offsets of the rotated shape's bounding box, (n, 2)."""
    cos, sin = np.abs(np.cos(rotation)), np.abs(np.sin(rotation))
    square = radius * (cos + sin)
    b = radius * _ELLIPSE_ASPECT
    ellipse = np.stack(
        [np.hypot(radius * cos, b * sin), np.hypot(radius * sin, b * cos)], axis=1
    )
    angle = rotation[:, None] + _TRIANGLE_ANGLES
    vx, vy = radius[:, None] * np.cos(angle), radius[:, None] * np.sin(angle)
    tri_lo = np.stack([vx.min(axis=1), vy.min(axis=1)], axis=1)
    tri_hi = np.stack([vx.max(axis=1), vy.max(axis=1)], axis=1)
    symmetric = np.where((shape == 0)[:, None], square[:, None], ellipse)
    is_tri = (shape == 2)[:, None]
    return np.where(is_tri, tri_lo, -symmetric), np.where(is_tri, tri_hi, symmetric)


# The tests below take sub-sample offsets from the centre, dx (m, 2S) along x
# and dy (m, 2S) along y, and per-image (m, 1) cos, sin and size; they return
# a bool mask (m, 2S, 2S) indexed [image, y, x]. Coordinates in the shape's
# own frame are separable sums of a row term and a column term, so each costs
# one full-size add instead of two multiplies.


def _in_square(dx, dy, cos, sin, half):
    u = np.abs((dx * cos)[:, None, :] + (dy * sin)[:, :, None])
    v = np.abs((dy * cos)[:, :, None] - (dx * sin)[:, None, :])
    np.maximum(u, v, out=u)
    return u <= half[:, :, None]


def _in_ellipse(dx, dy, cos, sin, a):
    b = a * np.float32(_ELLIPSE_ASPECT)
    u = (dx * (cos / a))[:, None, :] + (dy * (sin / a))[:, :, None]
    v = (dy * (cos / b))[:, :, None] - (dx * (sin / b))[:, None, :]
    u *= u
    v *= v
    u += v
    return u <= 1


def _in_triangle(dx, dy, cos, sin, circumradius):
    # Inside = on the inner side of all three edges, whose outward normals
    # point away from the vertices and lie at the inradius R / 2.
    t = None
    for angle in _TRIANGLE_ANGLES + np.pi:
        nx = cos * np.float32(np.cos(angle)) - sin * np.float32(np.sin(angle))
        ny = sin * np.float32(np.cos(angle)) + cos * np.float32(np.sin(angle))
        d = (dx * nx)[:, None, :] + (dy * ny)[:, :, None]
        t = d if t is None else np.maximum(t, d, out=t)
    return t <= (circumradius / 2)[:, :, None]
