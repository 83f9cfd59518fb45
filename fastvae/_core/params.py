"""The flat parameter buffer: one contiguous array, layers are views into it.

One buffer means one fused optimizer pass, one MPI Allreduce and one array
to save. Gradients and optimizer states share the layout.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Every W and b starts on a 64-byte boundary (16 float32 / 8 float64), so
# SIMD loads in the kernels are aligned and no two layers share a cache line.
ALIGN_ELEMENTS = 16
ALIGN_BYTES = 64


def _round_up(n: int, m: int = ALIGN_ELEMENTS) -> int:
    return -(-n // m) * m


def aligned_zeros(n: int, dtype) -> np.ndarray:
    """A zeroed 1-D array of length n whose data starts on a 64-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.zeros(n + ALIGN_BYTES // dtype.itemsize, dtype=dtype)
    start = (-raw.ctypes.data % ALIGN_BYTES) // dtype.itemsize
    return raw[start : start + n]


@dataclass(frozen=True)
class Layout:
    """Where each layer's W (n_in, n_out) and b (n_out,) live in the buffer.

    Parameters
    ----------
    encoder_dims : tuple of int
        (input width, hidden..., head width).
    decoder_dims : tuple of int
        (decoder input width, hidden..., n_features).
    n_tail : int, default=0
        Parameters after the layers (a learned Gaussian's log-sigmas), at
        `tail_offset`.
    """

    encoder_dims: tuple[int, ...]
    decoder_dims: tuple[int, ...]
    n_tail: int = 0

    def __post_init__(self):
        enc, dec = self.encoder_dims, self.decoder_dims
        if len(enc) < 2 or len(dec) < 2:
            raise ValueError("encoder and decoder need at least one layer each")
        if min(enc + dec) < 1 or self.n_tail < 0:
            raise ValueError(f"layer sizes must be >= 1, got {enc} and {dec}")

    @property
    def shapes(self) -> list[tuple[int, int]]:
        """(n_in, n_out) of every layer, encoder first."""
        enc, dec = self.encoder_dims, self.decoder_dims
        return [(enc[i], enc[i + 1]) for i in range(len(enc) - 1)] + [
            (dec[i], dec[i + 1]) for i in range(len(dec) - 1)
        ]

    @property
    def n_encoder(self) -> int:
        return len(self.encoder_dims) - 1

    def _offsets(self):
        w, b, off = [], [], 0
        for n_in, n_out in self.shapes:
            w.append(off)
            off = _round_up(off + n_in * n_out)
            b.append(off)
            off = _round_up(off + n_out)
        return w, b, off

    @property
    def tail_offset(self) -> int:
        """Where the n_tail trailing parameters start."""
        return self._offsets()[2]

    @property
    def w_offsets(self) -> list[int]:
        return self._offsets()[0]

    @property
    def b_offsets(self) -> list[int]:
        return self._offsets()[1]

    @property
    def size(self) -> int:
        """Length of the flat buffer (with alignment padding)."""
        return _round_up(self._offsets()[2] + self.n_tail)

    @property
    def n_weights(self) -> int:
        """Number of trainable numbers (without padding)."""
        return sum(n_in * n_out + n_out for n_in, n_out in self.shapes) + self.n_tail

    def tail(self, buffer: np.ndarray) -> np.ndarray:
        """View of the n_tail trailing parameters of `buffer`."""
        return buffer[self.tail_offset : self.tail_offset + self.n_tail]

    def zeros(self, dtype) -> np.ndarray:
        return aligned_zeros(self.size, dtype)

    def views(self, buffer: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """(W, b) views of every layer into `buffer`; writes go through."""
        if buffer.ndim != 1 or buffer.shape[0] != self.size:
            raise ValueError(
                f"buffer must be 1-D of length {self.size}, got shape {buffer.shape}"
            )
        w_off, b_off, _ = self._offsets()
        return [
            (
                buffer[wo : wo + n_in * n_out].reshape(n_in, n_out),
                buffer[bo : bo + n_out],
            )
            for (n_in, n_out), wo, bo in zip(self.shapes, w_off, b_off, strict=True)
        ]
