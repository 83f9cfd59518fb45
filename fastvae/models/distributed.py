"""Data-parallel training over MPI (mpi4py): one model replica per process.

Every process (rank) holds the same parameters and the same training data.
Each global minibatch of b rows (the same permutation on every rank: a pure
function of the seed and the epoch) is cut into one contiguous shard per
rank: rank r of R takes rows [r * b // R, (r + 1) * b // R). A step is then

1. ``Network.gradients`` on the shard, scaled by 1 / b (the global batch)
   and drawing each row's noise from its position in the *global* minibatch
   (``row_offset``), so the noise of a row is a function of (seed, step,
   global row position) only, whatever the number of ranks;
2. ONE in-place ``Allreduce(SUM)`` of the flat gradient buffer, extended by
   four numbers: how many ranks had a non-finite loss, how many a non-finite
   gradient, and the shard sums of the reconstruction and KL terms. Every
   rank thus sees the single-process gradient (up to the order of the
   summation) and the same verdict on finiteness;
3. ``Network.apply_update``: the update ``train_step`` applies, the same on
   every rank.

R ranks therefore train the model one process trains on the same global
minibatches, up to float rounding (the rows and the noise are the same;
only the gradient sums run in another order), and every number a
checkpoint holds is global. Validation ELBOs are computed by each rank on
its share of the validation rows and summed (evaluation gives each row the
same numbers in any batch).

Failures: a rank whose fit fails before training starts (bad data, bad
settings) tells the others at the first collective, and fit raises on every
rank (that rank's error there, RemoteRankError naming it elsewhere); that
collective also compares the ranks' data (sizes and a CRC-32 of sampled
rows), settings and numbers of steps to take, and raises ValueError on all
of them when they differ; a non-finite loss or gradient raises
FloatingPointError on every rank at the same step. Any other exception once
training runs (on one rank, so the others would wait for it forever) prints
``fastvae: rank r of R failed: ...`` with the traceback on stderr and ends
the whole job with MPI_Abort.

mpi4py is imported only when a communicator is used: without it fastvae
works as before on one process.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
import zlib

import numpy as np

from fastvae._core.params import aligned_zeros
from fastvae.exceptions import RemoteRankError

__all__ = [
    "launched_by_mpi",
    "world",
    "Group",
    "DataParallelNetwork",
    "RemoteRankError",
    "fit",
    "abort",
]

# Environment variables MPI launchers set in every process they start:
# MPICH's Hydra and Intel MPI (PMI_RANK, PMI_SIZE), Slurm's srun with PMI-2
# (PMI_RANK, PMI_SIZE) or PMIx (PMIX_RANK), Open MPI (OMPI_COMM_WORLD_SIZE),
# MVAPICH2 (MV2_COMM_WORLD_SIZE).
LAUNCHER_VARIABLES = (
    "PMI_RANK",
    "PMI_SIZE",
    "PMIX_RANK",
    "OMPI_COMM_WORLD_SIZE",
    "MV2_COMM_WORLD_SIZE",
)
# At most this many rows of the training data go into the consistency check
# of the first collective (sizes, dtype and a CRC-32 of these rows).
FINGERPRINT_ROWS = 4096
# Settings that may differ between ranks (progress output on rank 0 only,
# threads per node).
_RANK_SETTINGS = ("verbose", "n_threads")
# The numbers after the gradient in the reduced buffer.
_N_TAIL = 4  # ranks with a non-finite loss, with a non-finite gradient, recon, KL

INSTALL_HINT = (
    "install mpi4py and an MPI library: pip install 'fastvae[mpi]' "
    "mpich (or load the cluster's MPI module before pip install mpi4py)"
)


def launched_by_mpi(environ=None) -> bool:
    """Whether this process was started by an MPI launcher (mpiexec, srun).

    Parameters
    ----------
    environ : mapping, optional
        The environment to look at; os.environ when None.

    Returns
    -------
    bool
        True when one of LAUNCHER_VARIABLES is set.
    """
    environ = os.environ if environ is None else environ
    return any(name in environ for name in LAUNCHER_VARIABLES)


def _mpi():
    """The mpi4py.MPI module (initialises MPI on first use)."""
    try:
        from mpi4py import MPI
    except ImportError as exc:  # no mpi4py, or mpi4py without a libmpi
        raise ImportError(f"MPI training needs mpi4py ({exc}); {INSTALL_HINT}") from exc
    return MPI


def world():
    """MPI.COMM_WORLD (imports mpi4py, which initialises MPI).

    Raises
    ------
    ImportError
        If mpi4py or an MPI library is missing, with what to install.
    """
    return _mpi().COMM_WORLD


def abort(comm, exc: BaseException, code: int = 1, *, show_traceback: bool = True):
    """Print which rank failed and why on stderr, then MPI_Abort the job.

    Parameters
    ----------
    comm : mpi4py communicator
    exc : the exception that ends this rank
    code : int, default=1
        The error code given to MPI_Abort (mpiexec usually exits with it).
    show_traceback : bool, default=True
    """
    rank, size = comm.Get_rank(), comm.Get_size()
    lines = [f"fastvae: rank {rank} of {size} failed: {type(exc).__name__}: {exc}"]
    if show_traceback:
        lines.insert(0, "".join(traceback.format_exception(exc)).rstrip())
    lines.append(f"fastvae: aborting all {size} ranks (MPI_Abort, code {code})")
    try:
        sys.stderr.write("\n".join(lines) + "\n")
        sys.stderr.flush()
        # MPI_Abort makes the launcher kill every rank and its own output
        # forwarders: on a loaded machine (seen twice in CI) the lines just
        # written were lost. A moment lets the launcher pass them on.
        time.sleep(0.25)
    finally:
        comm.Abort(code)
        # MPICH's MPI_Abort can return before the launcher kills the job;
        # nothing of this rank may run on (nor catch the exception).
        os._exit(code)


class Group:
    """The ranks of a communicator training one model together.

    Parameters
    ----------
    comm : mpi4py communicator (MPI.COMM_WORLD or one split from it)
        Every rank of it must call fit with the same data and settings.

    Attributes
    ----------
    comm, rank, size
    is_root : bool
        Rank 0: the one that prints and writes files.
    local_size : int
        Ranks of the communicator on this node (same processor name).
    network : DataParallelNetwork or None
        The stepper of the last fit over this group (its allreduce_seconds
        and steps; benchmarks/bench_mpi.py reads them).
    collective_failure : {None, "all", "here", "elsewhere"}
        Set when fit raised on every rank at the same point, so no rank waits
        and nothing needs aborting: "all" for the same error everywhere (a
        non-finite loss, data differing between ranks), "here" on a rank
        whose own error was shared with the others, "elsewhere" on the ranks
        that raised RemoteRankError for it.
    """

    def __init__(self, comm):
        for name in (
            "Get_rank",
            "Get_size",
            "Allreduce",
            "Bcast",
            "allgather",
            "Abort",
        ):
            if not callable(getattr(comm, name, None)):
                raise TypeError(
                    "comm must be an mpi4py communicator (e.g. MPI.COMM_WORLD), got "
                    f"{type(comm).__module__}.{type(comm).__qualname__}"
                )
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.is_root = self.rank == 0
        self.network = None
        self.collective_failure = None
        self._joined = False
        hosts = comm.allgather(_mpi().Get_processor_name())
        self.local_size = hosts.count(hosts[self.rank])

    def default_threads(self) -> int:
        """Threads per rank when the user set none: OMP_NUM_THREADS, or
        fastvae.set_num_threads, else the cores of this process split among
        the ranks on its node (so 4 ranks on a 4-core node do not each start
        4 spinning threads)."""
        from fastvae._core import threads

        if threads._num_threads is not None or "OMP_NUM_THREADS" in os.environ:
            return threads.get_num_threads()
        if not threads.openmp_enabled():
            return 1
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not Linux
            cores = os.cpu_count() or 1
        return max(1, cores // self.local_size)

    def overrides(self, model) -> dict:
        """Settings fit uses on this rank: no progress output but on rank 0,
        and the per-node thread default when the model leaves n_threads None."""
        out = {}
        if not self.is_root:
            out["verbose"] = 0
        if model.n_threads is None:
            out["n_threads"] = self.default_threads()
        return out

    # -- the first collective of a fit -----------------------------------------

    def join(self, model, arrays, plan):
        """The first collective of a fit: every rank reports success, the
        fingerprint of its data, its settings and how many steps it will take;
        any failure or mismatch raises on all (ranks that disagreed on the
        number of steps would wait for each other forever)."""
        self._joined = True
        settings = model._fitted_settings
        reports = self.comm.allgather(
            {
                "error": None,
                "data": [_fingerprint(a) for a in arrays],
                "settings": {
                    k: repr(v)
                    for k, v in sorted(settings.as_dict().items())
                    if k not in _RANK_SETTINGS
                },
                "plan": [int(model.t_), int(model.n_iter_), *map(int, plan)],
            }
        )
        self._check_reports(reports)

    def share_failure(self, exc: BaseException) -> None:
        """Called instead of `join` by a rank whose fit failed before it."""
        self._joined = True
        self.comm.allgather({"error": f"{type(exc).__name__}: {exc}"})
        self.collective_failure = "here"

    def _check_reports(self, reports):
        failed = [(r, rep["error"]) for r, rep in enumerate(reports) if rep["error"]]
        if failed:
            self.collective_failure = "elsewhere"
            ranks = ", ".join(str(r) for r, _ in failed)
            raise RemoteRankError(
                f"fit failed on rank {ranks} of {self.size} before training: "
                f"{failed[0][1]}"
            )
        for name, i in (
            ("X", 0),
            ("condition", 1),
            ("validation X", 2),
            ("validation condition", 3),
        ):
            mine = reports[0]["data"][i]
            for r, rep in enumerate(reports):
                if rep["data"][i] != mine:
                    self.collective_failure = "all"
                    raise ValueError(
                        f"{name} differs between ranks (rank 0: {_describe(mine)}, "
                        f"rank {r}: {_describe(rep['data'][i])}); every rank must pass "
                        "the same data to fit (each uses its shard of every minibatch)"
                    )
        for r, rep in enumerate(reports):
            differ = sorted(
                k
                for k in rep["settings"]
                if rep["settings"][k] != reports[0]["settings"].get(k)
            )
            if differ:
                self.collective_failure = "all"
                k = differ[0]
                raise ValueError(
                    f"the ranks' settings differ: {k} is {reports[0]['settings'][k]} "
                    f"on rank 0 and {rep['settings'][k]} on rank {r}"
                    + (f" (also {', '.join(differ[1:])})" if differ[1:] else "")
                    + "; every rank must fit with the same settings"
                )
        if len({tuple(rep["plan"]) for rep in reports}) != 1:
            self.collective_failure = "all"
            raise ValueError(
                "the ranks would train differently (steps done, epochs done, epochs "
                "to reach, step in the epoch, batch): "
                f"{[tuple(rep['plan']) for rep in reports]}; every rank must "
                "continue the same fitted model or checkpoint"
            )

    def data_parallel(self, net, model, arrays, plan):
        """Join the fit, broadcast the model's state from rank 0 and return
        the data-parallel stepper _fit uses in place of `net`.

        Parameters
        ----------
        net : fastvae._core._network.Network
            The training network, its optimizer set.
        model : the estimator being fitted (params_ and _opt_state set)
        arrays : (X, condition, X_val, condition_val), each an array or None
        plan : (epochs to reach, step inside the current epoch, batch)
        """
        self.join(model, arrays, plan)
        self.network = DataParallelNetwork(self, net, model)
        return self.network


class DataParallelNetwork:
    """What _fit calls for a step when training over MPI: train_step with
    Network.train_step's signature and results, made of gradients on this
    rank's shard, one Allreduce and the update.

    Construction broadcasts the parameters and optimizer state from rank 0
    (a collective).

    Attributes
    ----------
    net : fastvae._core._network.Network
        The compiled network of this rank (its optimizer settings included).
    allreduce_seconds : float
        Time spent in the gradient Allreduce so far (includes waiting for
        slower ranks).
    steps : int
        Steps taken.
    """

    def __init__(self, group: Group, net, model):
        self.group = group
        self.net = net
        self.allreduce_seconds = 0.0
        self.steps = 0
        n = net.n_params
        for buffer in (model.params_, *model._opt_state):
            group.comm.Bcast(buffer, root=0)
        # The gradient and the four tail numbers in one buffer: one collective.
        self._buffer = aligned_zeros(n + _N_TAIL, model.params_.dtype)
        self._grads = self._buffer[:n]
        self._tail = self._buffer[n:]
        self._in_place = _mpi().IN_PLACE

    def any_rank(self, flag: bool) -> bool:
        """Whether any rank says `flag`: a callback that stops training on one
        rank (a time budget, say) stops it on all, at the same step."""
        return bool(self.group.comm.allreduce(bool(flag), op=_mpi().LOR))

    def shard(self, n_rows: int) -> tuple[int, int]:
        """This rank's rows [lo, hi) of n_rows."""
        r, size = self.group.rank, self.group.size
        return n_rows * r // size, n_rows * (r + 1) // size

    def train_step(
        self,
        params,
        grads,
        state1,
        state2,
        X,
        rows,
        batch,
        seed,
        step,
        kl_weight=1.0,
        n_threads=1,
        row_offset=0,
        global_batch=None,
        cond=None,
    ):
        """One data-parallel optimizer step on the global minibatch X[rows].

        Same arguments and results as Network.train_step, with batch the
        global minibatch size; `grads` is not used (the gradient lives in
        this object's reduction buffer), row_offset and global_batch must
        keep their defaults.

        Returns
        -------
        status : int
            0, or 1 / 2 when any rank's loss / gradient was not finite (the
            same on every rank; nothing was updated).
        recon_sum, kl_sum : float
            Sums over the whole global minibatch.
        """
        if row_offset != 0 or global_batch not in (None, batch):
            raise ValueError("a data-parallel step takes the whole global minibatch")
        if rows is None:
            rows = np.arange(batch, dtype=np.int64)
        lo, hi = self.shard(batch)
        tail = self._tail
        if hi > lo:
            status, recon, kl = self.net.gradients(
                params,
                self._grads,
                X,
                rows[lo:hi],
                hi - lo,
                seed,
                step,
                kl_weight,
                n_threads,
                row_offset=lo,
                global_batch=batch,
                cond=cond,
            )
        else:  # fewer rows than ranks: this rank adds nothing
            self._grads[...] = 0
            status, recon, kl = 0, 0.0, 0.0
        tail[0] = status == 1
        tail[1] = status == 2
        tail[2] = recon
        tail[3] = kl
        start = time.perf_counter()
        self.group.comm.Allreduce(self._in_place, self._buffer)
        self.allreduce_seconds += time.perf_counter() - start
        self.steps += 1
        recon, kl = float(tail[2]), float(tail[3])
        if tail[0] or tail[1]:
            self.group.collective_failure = "all"
            return (1 if tail[0] else 2), recon, kl
        # The reduced gradient is a sum of finite per-rank gradients; it could
        # overflow only at magnitudes where training has long failed.
        self.net.apply_update(params, self._grads, state1, state2, step, n_threads)
        return 0, recon, kl

    def mean_elbo(self, model, X, cond, n_threads):
        """Mean per-row ELBO of X: this rank's share of the rows, summed over
        ranks. Evaluation gives a row the same numbers in any batch (its
        noise is keyed by its values, the kernel is row-invariant), so the
        rows are those one process computes."""
        lo, hi = self.shard(X.shape[0])
        local = np.zeros(1)
        if hi > lo:
            part = None if cond is None else cond[lo:hi]
            local[0] = model._elbo_rows(X[lo:hi], part, n_threads).sum()
        self.group.comm.Allreduce(self._in_place, local)
        return float(local[0] / X.shape[0])


def fit(comm, run):
    """Run `run(group)` (the estimator's _fit with comm=group) as a
    data-parallel fit.

    Errors raised alike on every rank propagate; any other exception after
    the first collective aborts the job (see the module docstring).

    Parameters
    ----------
    comm : mpi4py communicator, or a Group (reusable across fits)
    run : callable taking the Group and returning the fitted model
    """
    group = comm if isinstance(comm, Group) else Group(comm)
    group._joined, group.collective_failure = False, None
    try:
        return run(group)
    except BaseException as exc:
        if not group._joined:
            group.share_failure(exc)
            raise
        if group.collective_failure:
            raise
        abort(group.comm, exc)


def _fingerprint(a):
    """Shape, dtype and CRC-32 of at most FINGERPRINT_ROWS evenly spaced rows
    (indexed with an increasing index array, which memmaps and the other
    out-of-core arrays fit reads support)."""
    if a is None:
        return None
    n = int(a.shape[0])
    picked = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.int64))
    rows = a[picked]
    rows = np.ascontiguousarray(rows.toarray() if hasattr(rows, "toarray") else rows)
    return [
        [int(v) for v in a.shape],
        np.dtype(a.dtype).str,
        zlib.crc32(rows.view(np.uint8)),
    ]


def _describe(fp):
    if fp is None:
        return "none"
    shape, dtype, crc = fp
    return (
        f"shape {tuple(shape)} {np.dtype(dtype).name}, CRC-32 of sampled rows {crc:08x}"
    )
