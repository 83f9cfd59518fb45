"""Philox4x64-10 and the normals drawn from it (fastvae/_core/_rng.pyx, philox.h)."""

import math

import numpy as np
import pytest
from scipy import stats

from fastvae._core import _rng

U64 = 2**64 - 1
M = 0xFFFFFFFFFFFFFFFF

# Random123 kat_vectors, philox4x64_10 lines: counter c0..c3, key k0 k1 -> out.
KAT = [
    (
        (0, 0, 0, 0),
        (0, 0),
        (
            0x16554D9ECA36314C,
            0xDB20FE9D672D0FDC,
            0xD7E772CEE186176B,
            0x7E68B68AEC7BA23B,
        ),
    ),
    (
        (M, M, M, M),
        (M, M),
        (
            0x87B092C3013FE90B,
            0x438C3C67BE8D0224,
            0x9CC7D7C69CD777B6,
            0xA09CAEBF594F0BA0,
        ),
    ),
    (
        (
            0x243F6A8885A308D3,
            0x13198A2E03707344,
            0xA4093822299F31D0,
            0x082EFA98EC4E6C89,
        ),
        (0x452821E638D01377, 0xBE5466CF34E90C6C),
        (
            0xA528F45403E61D95,
            0x38C72DBD566E9788,
            0xA5A1610E72FD18B5,
            0x57BD43B5E52B7FE6,
        ),
    ),
]


def _as_words(x):
    """A 256-bit integer as 4 little-endian 64-bit words."""
    return [(x >> (64 * i)) & M for i in range(4)]


def _from_words(w):
    return sum(int(v) << (64 * i) for i, v in enumerate(w))


def _numpy_block(counter, key):
    """numpy's Philox output for the block AFTER `counter` (it increments first)."""
    bg = np.random.Philox(
        counter=np.array(counter, dtype=np.uint64), key=np.array(key, dtype=np.uint64)
    )
    return bg.random_raw(4)


def _box_muller(r):
    """The four normals philox.h makes from one block, recomputed in Python."""
    out = []
    for p in range(2):
        u1 = 1.0 - (int(r[2 * p]) >> 11) * 2.0**-53
        u2 = (int(r[2 * p + 1]) >> 11) * 2.0**-53
        rad = math.sqrt(-2.0 * math.log(u1))
        out += [rad * math.cos(2 * math.pi * u2), rad * math.sin(2 * math.pi * u2)]
    return out


# -- the block function ----------------------------------------------------------


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    out = _rng.philox4x64_10(counter, key)
    assert out.dtype == np.uint64
    assert out.shape == (4,)
    assert [int(v) for v in out] == list(expected)


def test_philox_accepts_numpy_words():
    counter, key, expected = KAT[2]
    out = _rng.philox4x64_10(
        np.array(counter, dtype=np.uint64), np.array(key, dtype=np.uint64)
    )
    assert [int(v) for v in out] == list(expected)


def test_philox_matches_numpy_random_counters_and_keys():
    rng = np.random.default_rng(20240601)
    for _ in range(200):
        c = [int(v) for v in rng.integers(0, 2**64, size=4, dtype=np.uint64)]
        k = [int(v) for v in rng.integers(0, 2**64, size=2, dtype=np.uint64)]
        nxt = _as_words((_from_words(c) + 1) % 2**256)
        ours = _rng.philox4x64_10(nxt, k)
        np.testing.assert_array_equal(ours, _numpy_block(c, k))


@pytest.mark.parametrize(
    "counter",
    [
        [U64, 0, 0, 0],  # carry into word 1
        [U64, U64, 5, 0],  # carry into word 2
        [U64, U64, U64, 7],  # carry into word 3
        [U64, U64, U64, U64],  # wraps to all zeros
        [0, 0, 0, 0],
        [12345, 0, 0, 0],
    ],
)
def test_philox_matches_numpy_with_carry(counter):
    key = [0x0123456789ABCDEF, 0xFEDCBA9876543210]
    nxt = _as_words((_from_words(counter) + 1) % 2**256)
    np.testing.assert_array_equal(
        _rng.philox4x64_10(nxt, key), _numpy_block(counter, key)
    )


def test_philox_is_sensitive_to_every_word():
    base_c, base_k = [1, 2, 3, 4], [5, 6]
    base = _rng.philox4x64_10(base_c, base_k)
    for i in range(4):
        c = list(base_c)
        c[i] ^= 1
        assert not np.any(_rng.philox4x64_10(c, base_k) == base)
    for i in range(2):
        k = list(base_k)
        k[i] ^= 1 << 63
        assert not np.any(_rng.philox4x64_10(base_c, k) == base)


@pytest.mark.parametrize(
    "counter, key, exc",
    [
        ([0, 0, 0], [0, 0], ValueError),
        ([0, 0, 0, 0, 0], [0, 0], ValueError),
        ([0, 0, 0, 0], [0], ValueError),
        ([0, 0, 0, 0], [0, 0, 0], ValueError),
        ([-1, 0, 0, 0], [0, 0], ValueError),
        ([2**64, 0, 0, 0], [0, 0], ValueError),
        ([0, 0, 0, 0], [0, -5], ValueError),
        ([0, 0, 0, 0], [2**64, 0], ValueError),
    ],
)
def test_philox_bad_arguments(counter, key, exc):
    with pytest.raises(exc):
        _rng.philox4x64_10(counter, key)


# -- normal_matrix: the element convention ------------------------------------


def test_normal_matrix_elements_by_hand():
    """Element (i, j): counter (j // 4, row_offset + i, step, draw), key
    (seed, stream), lane j % 4, via Box-Muller with u1 in (0, 1]."""
    seed, stream, step, draw, ro = 987654321, _rng.STREAM_EVAL, 17, 3, 1000
    n, m = 5, 11
    Z = _rng.normal_matrix(seed, stream, step, n, m, row_offset=ro, draw=draw)
    assert Z.shape == (n, m) and Z.dtype == np.float64
    for i in range(n):
        for j in range(m):
            r = _rng.philox4x64_10([j // 4, ro + i, step, draw], [seed, stream])
            want = _box_muller(r)[j % 4]
            assert Z[i, j] == pytest.approx(want, rel=1e-14, abs=1e-14), (i, j)


def test_normal_matrix_huge_counter_words():
    seed, stream, step, draw, ro = U64, U64, U64 - 1, U64, U64 - 2
    Z = _rng.normal_matrix(seed, stream, step, 2, 6, row_offset=ro, draw=draw)
    for i in range(2):
        for j in range(6):
            r = _rng.philox4x64_10([j // 4, ro + i, step, draw], [seed, stream])
            assert Z[i, j] == pytest.approx(_box_muller(r)[j % 4], rel=1e-14, abs=1e-14)


def test_normal_matrix_row_offset_shifts_rows():
    a = _rng.normal_matrix(5, 1, 2, 20, 9)
    b = _rng.normal_matrix(5, 1, 2, 13, 9, row_offset=7)
    np.testing.assert_array_equal(a[7:], b)
    # rows do not depend on how many rows the call has
    np.testing.assert_array_equal(_rng.normal_matrix(5, 1, 2, 3, 9), a[:3])


def test_normal_matrix_columns_are_prefixes():
    """Column j depends only on j: narrower matrices are prefixes."""
    wide = _rng.normal_matrix(3, 2, 1, 6, 23)
    for m in (1, 2, 3, 4, 5, 8, 13):
        np.testing.assert_array_equal(_rng.normal_matrix(3, 2, 1, 6, m), wide[:, :m])


@pytest.mark.parametrize("which", ["seed", "stream", "step", "draw", "row_offset"])
def test_normal_matrix_every_counter_part_matters(which):
    kw = dict(seed=11, stream=1, step=4, draw=0, row_offset=0)
    a = _rng.normal_matrix(
        kw["seed"],
        kw["stream"],
        kw["step"],
        8,
        8,
        row_offset=kw["row_offset"],
        draw=kw["draw"],
    )
    kw[which] += 1
    b = _rng.normal_matrix(
        kw["seed"],
        kw["stream"],
        kw["step"],
        8,
        8,
        row_offset=kw["row_offset"],
        draw=kw["draw"],
    )
    if which == "row_offset":
        np.testing.assert_array_equal(a[1:], b[:-1])  # a shift, nothing else
        assert not np.any(a[0] == b[0])
        assert not np.any(a[0] == b[-1])
    else:
        assert not np.any(a == b)


def test_normal_matrix_deterministic():
    a = _rng.normal_matrix(1, 2, 3, 17, 19)
    np.testing.assert_array_equal(a, _rng.normal_matrix(1, 2, 3, 17, 19))


def test_normal_matrix_float32_is_rounded_float64():
    for n, m in [(7, 13), (1, 1), (64, 4), (3, 5)]:
        z64 = _rng.normal_matrix(8, 3, 9, n, m, row_offset=4, draw=2)
        z32 = _rng.normal_matrix(8, 3, 9, n, m, row_offset=4, draw=2, dtype=np.float32)
        assert z32.dtype == np.float32
        np.testing.assert_array_equal(z32, z64.astype(np.float32))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(257, 13), (3, 3), (1000, 7), (2, 100)])
def test_normal_matrix_thread_count_does_not_matter(dtype, shape):
    a = _rng.normal_matrix(42, 1, 0, *shape, row_offset=10, dtype=dtype, n_threads=1)
    for nt in (2, 3):
        b = _rng.normal_matrix(
            42, 1, 0, *shape, row_offset=10, dtype=dtype, n_threads=nt
        )
        assert a.tobytes() == b.tobytes()


def test_normal_matrix_empty():
    assert _rng.normal_matrix(0, 0, 0, 0, 5).shape == (0, 5)
    assert _rng.normal_matrix(0, 0, 0, 4, 0).shape == (4, 0)
    assert _rng.normal_matrix(0, 0, 0, 0, 0, dtype=np.float32).dtype == np.float32


# -- normal_matrix: statistics ------------------------------------------------


@pytest.fixture(scope="module")
def million_normals():
    return _rng.normal_matrix(20240601, _rng.STREAM_REPARAM, 0, 1000, 1000, n_threads=2)


def test_normal_moments(million_normals):
    z = million_normals.ravel()
    n = z.size
    assert np.all(np.isfinite(z))
    # 5 sigma of the sampling error of the mean (1/sqrt(n)) and of the
    # variance (sqrt(2/n) for a normal).
    assert abs(z.mean()) < 5 / np.sqrt(n)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / n)
    # 3rd and 4th moments: skewness ~ 0 (sd sqrt(6/n)), kurtosis ~ 3 (sd sqrt(24/n))
    assert abs(stats.skew(z)) < 5 * np.sqrt(6.0 / n)
    assert abs(stats.kurtosis(z)) < 5 * np.sqrt(24.0 / n)
    # Box-Muller from 53-bit uniforms cannot exceed sqrt(-2 log 2^-53)
    assert np.abs(z).max() <= math.sqrt(-2 * math.log(2.0**-53))


def test_normal_lanes_have_the_same_distribution(million_normals):
    """The cos and sin halves of Box-Muller, and every lane, look alike."""
    n_per_lane = million_normals.size // 4
    for lane in range(4):
        z = million_normals[:, lane::4].ravel()
        assert abs(z.mean()) < 5 / np.sqrt(n_per_lane)
        assert abs(z.var() - 1) < 5 * np.sqrt(2 / n_per_lane)


def test_normal_kolmogorov_smirnov(million_normals):
    p = stats.kstest(million_normals.ravel(), "norm").pvalue
    assert p > 1e-3


def test_normal_no_lag_correlation(million_normals):
    z = million_normals
    n = z.size
    flat = z.ravel()
    # along a row (lanes of a block and across blocks), across rows, and
    # between the cos/sin pair that shares one radius (uncorrelated, though dependent)
    for a, b in [
        (flat[:-1], flat[1:]),
        (z[:-1].ravel(), z[1:].ravel()),
        (z[:, 0::2].ravel(), z[:, 1::2].ravel()),
        (z[:, 0::4].ravel(), z[:, 2::4].ravel()),
    ]:
        assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(min(n, a.size))
    # squares of the pair members are uncorrelated too (radius shared, angle uniform)
    r = np.corrcoef(z[:, 0::4].ravel() ** 2, z[:, 2::4].ravel() ** 2)[0, 1]
    assert abs(r) < 5 / np.sqrt(z[:, 0::4].size)


def test_normal_streams_are_independent():
    a = _rng.normal_matrix(7, _rng.STREAM_REPARAM, 0, 300, 300).ravel()
    b = _rng.normal_matrix(7, _rng.STREAM_EVAL, 0, 300, 300).ravel()
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(a.size)


def test_stream_constants_are_distinct():
    streams = [
        _rng.STREAM_REPARAM,
        _rng.STREAM_EVAL,
        _rng.STREAM_SAMPLE,
        _rng.STREAM_USER,
    ]
    assert len(set(streams)) == 4


# -- argument checking --------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, exc",
    [
        ((-1, 0, 0, 2, 2), {}, ValueError),
        ((0, -1, 0, 2, 2), {}, ValueError),
        ((0, 0, -1, 2, 2), {}, ValueError),
        ((2**64, 0, 0, 2, 2), {}, ValueError),
        ((0, 0, 0, 2, 2), {"row_offset": -1}, ValueError),
        ((0, 0, 0, 2, 2), {"draw": -1}, ValueError),
        ((0, 0, 0, -1, 2), {}, ValueError),
        ((0, 0, 0, 2, -1), {}, ValueError),
        ((0, 0, 0, 2, 2), {"n_threads": 0}, ValueError),
        ((0, 0, 0, 2, 2), {"n_threads": -3}, ValueError),
        ((0, 0, 0, 2, 2), {"dtype": np.int64}, TypeError),
        ((0, 0, 0, 2, 2), {"dtype": np.int32}, TypeError),
        ((0, 0, 0, 2, 2), {"dtype": np.float16}, TypeError),
    ],
)
def test_normal_matrix_bad_arguments(args, kwargs, exc):
    with pytest.raises(exc):
        _rng.normal_matrix(*args, **kwargs)
