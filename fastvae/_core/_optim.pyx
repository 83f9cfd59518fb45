"""Fused SGD, momentum and Adam updates over flat buffers."""

from cython cimport floating
from cython.parallel cimport parallel, threadid
from libc.math cimport INFINITY, isfinite, pow, sqrt
from libc.stdint cimport int64_t

from fastvae._core._checks cimport check_disjoint, check_threads
from fastvae._core._elementwise cimport (
    fv_adam_update_f32, fv_adam_update_f64, fv_dispatch_probe,
    fv_momentum_update_f32, fv_momentum_update_f64, fv_sgd_update_f32,
    fv_sgd_update_f64)
from fastvae._core._numerics cimport FV_OPT_ADAM, FV_OPT_MOMENTUM, FV_OPT_SGD
from fastvae._core._omp_shim cimport fv_omp_get_num_threads
from fastvae._core._partition cimport FV_BLOCK_ALIGN, fv_split_range
from fastvae._core._threads cimport fv_isa_bind, fv_isa_slot

# Run the header kernels at the process's ISA cap (src_c/fastvae/dispatch.h),
# not at the CPU's best level.
fv_isa_bind(fv_isa_slot())


def _dispatch_level():
    """The ISA level (1, 3, 4) this module's kernels run at now (tests)."""
    return fv_dispatch_probe(0)


OPTIMIZERS = {"sgd": FV_OPT_SGD, "momentum": FV_OPT_MOMENTUM, "adam": FV_OPT_ADAM}


cdef void optimizer_update_range(const fv_optimizer* opt, int64_t t,
                                 floating* params, const floating* grads,
                                 floating* state1, floating* state2,
                                 int64_t i0, int64_t i1) noexcept nogil:
    cdef int64_t n = i1 - i0
    cdef double step_size, inv_sqrt_bc2
    if n <= 0:
        return
    params += i0
    grads += i0
    if opt.kind == FV_OPT_SGD:
        if floating is float:
            fv_sgd_update_f32(params, grads, n, <float> opt.lr)
        else:
            fv_sgd_update_f64(params, grads, n, opt.lr)
    elif opt.kind == FV_OPT_MOMENTUM:
        if floating is float:
            fv_momentum_update_f32(params, grads, state1 + i0, n, <float> opt.lr,
                                   <float> opt.momentum)
        else:
            fv_momentum_update_f64(params, grads, state1 + i0, n, opt.lr,
                                   opt.momentum)
    elif opt.kind == FV_OPT_ADAM:
        # Bias corrections in double: beta^t underflows gracefully there.
        step_size = opt.lr / (1.0 - pow(opt.beta1, <double> t))
        inv_sqrt_bc2 = 1.0 / sqrt(1.0 - pow(opt.beta2, <double> t))
        if floating is float:
            fv_adam_update_f32(params, grads, state1 + i0, state2 + i0, n,
                               <float> opt.beta1, <float> (1.0 - opt.beta1),
                               <float> opt.beta2, <float> (1.0 - opt.beta2),
                               <float> step_size, <float> inv_sqrt_bc2,
                               <float> opt.eps)
        else:
            fv_adam_update_f64(params, grads, state1 + i0, state2 + i0, n,
                               opt.beta1, 1.0 - opt.beta1, opt.beta2,
                               1.0 - opt.beta2, step_size, inv_sqrt_bc2,
                               opt.eps)


cdef void optimizer_update_team(int tid, int nt, const fv_optimizer* opt,
                                int64_t t, floating* params,
                                const floating* grads, floating* state1,
                                floating* state2, int64_t n) noexcept nogil:
    cdef int64_t i0, i1
    fv_split_range(n, nt, tid, FV_BLOCK_ALIGN, &i0, &i1)
    optimizer_update_range(opt, t, params, grads, state1, state2, i0, i1)


cdef void optimizer_update(const fv_optimizer* opt, int64_t t,
                           floating* params, const floating* grads,
                           floating* state1, floating* state2, int64_t n,
                           int n_threads) noexcept nogil:
    with parallel(num_threads=n_threads):
        optimizer_update_team(threadid(), fv_omp_get_num_threads(), opt, t,
                              params, grads, state1, state2, n)


cdef int _check_range(str name, double value, double low, bint low_open,
                      double high) except -1:
    """value finite, in [low, high) ((low, high) when low_open): a NaN
    learning rate would turn every parameter into NaN in one step."""
    if not (isfinite(value) and (value > low if low_open else value >= low)
            and value < high):
        interval = f"{'(' if low_open else '['}{low:g}, {high:g})"
        raise ValueError(f"{name} must be finite and in {interval}, got {value}")
    return 0


cdef fv_optimizer make_optimizer(str kind, double lr, double momentum,
                                 double beta1, double beta2, double eps) except *:
    cdef fv_optimizer opt
    try:
        opt.kind = OPTIMIZERS[kind]
    except KeyError:
        raise ValueError(
            f"optimizer must be one of {sorted(OPTIMIZERS)}, got {kind!r}"
        ) from None
    _check_range("lr", lr, 0.0, False, INFINITY)
    if opt.kind == FV_OPT_MOMENTUM:
        _check_range("momentum", momentum, 0.0, False, 1.0)
    if opt.kind == FV_OPT_ADAM:
        _check_range("beta1", beta1, 0.0, False, 1.0)
        _check_range("beta2", beta2, 0.0, False, 1.0)
        _check_range("eps", eps, 0.0, True, INFINITY)
    opt.lr = lr
    opt.momentum = momentum
    opt.beta1 = beta1
    opt.beta2 = beta2
    opt.eps = eps
    return opt


def optimizer_update_memview(str kind, long t, floating[::1] params,
                             const floating[::1] grads, floating[::1] state1,
                             floating[::1] state2, double lr,
                             double momentum=0.9, double beta1=0.9,
                             double beta2=0.999, double eps=1e-8,
                             int n_threads=1):
    """In place: one optimizer step over flat buffers (test twin).

    Parameters
    ----------
    kind : {"sgd", "momentum", "adam"}
    t : int >= 1
        Step number, 1-based (Adam's bias correction).
    params, grads, state1, state2 : arrays of shape (n,)
    """
    cdef fv_optimizer opt = make_optimizer(kind, lr, momentum, beta1, beta2, eps)
    cdef int64_t n = params.shape[0]
    if grads.shape[0] != n or state1.shape[0] != n or state2.shape[0] != n:
        raise ValueError("params, grads and states must have the same length")
    if t < 1:
        raise ValueError(f"t must be >= 1, got {t}")
    check_threads(n_threads)
    if n == 0:
        return
    cdef Py_ssize_t nbytes = n * sizeof(floating)
    check_disjoint("params", &params[0], nbytes, "grads", &grads[0], nbytes)
    if opt.kind != FV_OPT_SGD:
        check_disjoint("params", &params[0], nbytes, "state1", &state1[0], nbytes)
        check_disjoint("grads", &grads[0], nbytes, "state1", &state1[0], nbytes)
    if opt.kind == FV_OPT_ADAM:
        check_disjoint("params", &params[0], nbytes, "state2", &state2[0], nbytes)
        check_disjoint("grads", &grads[0], nbytes, "state2", &state2[0], nbytes)
        check_disjoint("state1", &state1[0], nbytes, "state2", &state2[0], nbytes)
    with nogil:
        optimizer_update(&opt, t, &params[0], &grads[0], &state1[0],
                         &state2[0], n, n_threads)
