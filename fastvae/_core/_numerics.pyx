"""Python access to the scalar float32 functions of src_c/fastvae/numerics.h.

The training kernels call them in C; these wrappers let tests measure their
accuracy against float64 NumPy over whole ranges.
"""

import numpy as np

FUNCTIONS = ("exp", "log1p", "tanh", "sigmoid")
# Range of a learned Gaussian log-sigma (numerics.h).
LOGSIGMA_RANGE = (FV_LOGSIGMA_MIN, FV_LOGSIGMA_MAX)


def apply_f32(str name, const float[::1] x):
    """name(x) element-wise with fastvae's float32 implementation.

    Parameters
    ----------
    name : {"exp", "log1p", "tanh", "sigmoid"}
    x : float32 array of shape (n,)

    Returns
    -------
    float32 array of shape (n,)
    """
    if name not in FUNCTIONS:
        raise ValueError(f"name must be one of {FUNCTIONS}, got {name!r}")
    cdef Py_ssize_t i, n = x.shape[0]
    out_arr = np.empty(n, dtype=np.float32)
    cdef float[::1] out = out_arr
    cdef int which = FUNCTIONS.index(name)
    with nogil:
        for i in range(n):
            if which == 0:
                out[i] = fv_exp_f32(x[i])
            elif which == 1:
                out[i] = fv_log1p_f32(x[i])
            elif which == 2:
                out[i] = fv_tanh_f32(x[i])
            else:
                out[i] = fv_sigmoid_f32(x[i])
    return out_arr
