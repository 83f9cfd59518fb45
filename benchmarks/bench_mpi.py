"""Data-parallel scaling on one machine: R MPI ranks x 1 thread against one
process x R threads, training the same model on the same global minibatches.

    python benchmarks/bench_mpi.py [--ranks 2] [--rounds 7] [--seconds 2]
                                   [--isa native|avx2] [--busy N]

Two worker processes stay alive for each configuration: ``VAE.fit`` with
n_threads=R, and ``mpiexec -n R`` running ``VAE.fit(comm=...)`` with one
thread per rank (both what a user runs: repeated warm-started epochs over an
in-memory array). The driver lets them take turns (alternated rounds, the
other one idle and not spinning) and reports medians, so the ratio comes
from the same minutes of a shared machine; the load average is recorded
around every round. For the MPI runs it also reports the time per step
spent in the gradient Allreduce (which includes waiting for the slower
rank) and the time of the same Allreduce alone (after a barrier).

``--isa avx2`` caps fastvae (and its OpenBLAS) at AVX2 in both workers,
``--busy N`` runs N competing busy processes during the rounds, as in
``benchmarks/run.py`` (fastvae.bench.scenarios).

Needs mpi4py and an MPI library (pip install mpi4py mpich); the mpiexec
beside this Python is used, else the one on PATH. The report goes to
benchmarks/results/mpi.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CONFIGS = {  # name: (hidden, latent, global batch)
    "784-400/20/128": ((400,), 20, 128),
    "784-1024-1024/64/512": ((1024, 1024), 64, 512),
}
_MIN_ROWS = 4096  # rows of the training array, at least 16 minibatches
# Steps per fit call: enough that the costs of starting a fit (checks, the
# first collective and the parameter broadcast with MPI) stay near 1%.
_STEPS_PER_FIT = 128
_RESULTS = Path(__file__).resolve().parent / "results"


def _data(batch: int) -> np.ndarray:
    rows = max(16 * batch, _MIN_ROWS)
    rng = np.random.default_rng(0)
    return (rng.random((rows, 784)) < 0.3).astype(np.float32)


def _model(config: str, threads: int, n_rows: int):
    import fastvae

    hidden, latent, batch = CONFIGS[config]
    epochs = -(-_STEPS_PER_FIT // -(-n_rows // batch))
    return fastvae.VAE(
        hidden=hidden,
        latent_dim=latent,
        batch_size=batch,
        n_threads=threads,
        epochs=epochs,
        warm_start=True,
        random_state=0,
    )


# -- workers: one JSON command per stdin line, one JSON reply per stdout line ----


def _reply(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _isa() -> dict:
    from fastvae.bench.workers import isa_report

    return isa_report("fastvae")


def threaded_worker(config: str, threads: int) -> None:
    """One process, `threads` OpenMP threads."""
    X = _data(CONFIGS[config][2])
    model = _model(config, threads, len(X))
    model.fit(X)  # warm-up: allocation, first touch
    _reply({"ready": True, "isa": _isa()})
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "quit":
            break
        steps0, load0 = model.t_, os.getloadavg()[0]
        samples, start = 0, time.perf_counter()
        while time.perf_counter() - start < cmd["seconds"]:
            model.fit(X)
            samples += len(X) * model.epochs
        seconds = time.perf_counter() - start
        _reply(
            {
                "samples": samples,
                "seconds": seconds,
                "steps": model.t_ - steps0,
                "load": [load0, os.getloadavg()[0]],
            }
        )


# Commands rank 0 passes on to the other ranks: [code, argument].
_QUIT, _RUN, _ALLREDUCE = 0, 1, 2


def _wait_for_command(comm, buf) -> None:
    """The other ranks wait for rank 0's next command without spinning on a
    core (MPICH busy-polls in blocking calls), so the threaded worker's turn
    has the machine."""
    req = comm.Ibcast(buf, root=0)
    while not req.Test():
        time.sleep(0.002)


def mpi_worker(config: str, threads: int) -> None:
    """One rank of `mpiexec -n R`: rank 0 reads the commands, all train."""
    from mpi4py import MPI

    from fastvae.models import distributed

    comm = MPI.COMM_WORLD
    group = distributed.Group(comm)
    X = _data(CONFIGS[config][2])
    model = _model(config, threads, len(X))
    model.fit(X, comm=group)  # warm-up
    n_params = model.params_.shape[0]
    buf = np.zeros(2, dtype=np.int64)
    if comm.rank == 0:
        _reply(
            {
                "ready": True,
                "ranks": comm.size,
                "n_params": int(n_params),
                "isa": _isa(),
            }
        )
    lines = iter(sys.stdin) if comm.rank == 0 else None
    while True:
        if comm.rank == 0:
            cmd = json.loads(next(lines, '{"cmd": "quit"}'))
            code = {"quit": _QUIT, "run": _RUN, "allreduce": _ALLREDUCE}[cmd["cmd"]]
            arg = cmd.get("seconds", 0) or cmd.get("repeats", 0)
            buf[:] = (code, int(1000 * arg))
            # non-blocking on every rank: an Ibcast matches only Ibcasts
            comm.Ibcast(buf, root=0).Wait()
        else:
            _wait_for_command(comm, buf)
        code, arg = int(buf[0]), int(buf[1])
        if code == _QUIT:
            break
        if code == _RUN:
            load0 = os.getloadavg()[0]
            steps0 = model.t_
            wait = 0.0  # seconds in gradient Allreduces (each fit has its stepper)
            samples, start = 0, time.perf_counter()
            flag = np.zeros(1, dtype=np.int64)
            while True:
                if comm.rank == 0:
                    flag[0] = time.perf_counter() - start < arg / 1000
                comm.Bcast(flag, root=0)
                if not flag[0]:
                    break
                model.fit(X, comm=group)
                samples += len(X) * model.epochs
                wait += group.network.allreduce_seconds
            seconds = time.perf_counter() - start
            steps = model.t_ - steps0
            waits = comm.gather(wait, root=0)
            if comm.rank == 0:
                _reply(
                    {
                        "samples": samples,
                        "seconds": seconds,
                        "steps": steps,
                        "allreduce_seconds": waits,
                        "load": [load0, os.getloadavg()[0]],
                    }
                )
        elif code == _ALLREDUCE:
            times = _time_allreduce(comm, n_params, model.params_.dtype, arg // 1000)
            if comm.rank == 0:
                _reply({"allreduce_ms": times})


def _time_allreduce(comm, n_params, dtype, repeats) -> list[float]:
    """Milliseconds of each in-place Allreduce of a gradient-sized buffer,
    every one after a barrier (no waiting for a slower rank)."""
    from mpi4py import MPI

    buf = np.ones(n_params + 4, dtype=dtype)
    out = []
    for _ in range(repeats):
        comm.Barrier()
        start = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        out.append(1000 * (time.perf_counter() - start))
    return out


# -- driver ------------------------------------------------------------------------


class Worker:
    def __init__(self, cmd, env):
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        self.info = self._read()
        self.rounds = []

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.proc.args} ended: {self.proc.wait()}")
        return json.loads(line)

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write('{"cmd": "quit"}\n')
            self.proc.stdin.flush()
            self.proc.wait(timeout=60)
        except (BrokenPipeError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()


def _mpiexec() -> str:
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else shutil.which("mpiexec")
    if found is None:
        sys.exit("bench_mpi: no mpiexec (pip install mpi4py mpich)")
    return found


def measure(
    config: str,
    ranks: int,
    rounds: int,
    seconds: float,
    log=print,
    isa: str = "native",
    busy: int = 0,
) -> dict:
    from fastvae.bench.scenarios import BusyLoad, check_isa, isa_env

    script = str(Path(__file__).resolve())
    env = {**isa_env("fastvae", isa), "PYTHONUNBUFFERED": "1"}
    threaded = Worker(
        [
            sys.executable,
            script,
            "--worker",
            "threads",
            "--config",
            config,
            "--threads",
            str(ranks),
        ],
        {**env, "OMP_NUM_THREADS": str(ranks)},
    )
    try:
        mpi = Worker(
            [
                _mpiexec(),
                "-n",
                str(ranks),
                sys.executable,
                script,
                "--worker",
                "mpi",
                "--config",
                config,
                "--threads",
                "1",
            ],
            {**env, "OMP_NUM_THREADS": "1"},
        )
    except BaseException:
        threaded.close()
        raise
    isa_errors = sorted(
        {
            e
            for e in (
                check_isa("fastvae", isa, w.info.get("isa")) for w in (threaded, mpi)
            )
            if e
        }
    )
    for e in isa_errors:
        log(f"    warning: ISA cap not in effect: {e}")
    try:
        with BusyLoad(busy):
            for r in range(rounds):
                pair = (threaded, mpi) if r % 2 == 0 else (mpi, threaded)
                for w in pair:
                    w.rounds.append(w.ask(cmd="run", seconds=seconds))
                log(
                    f"    round {r + 1}/{rounds}: threads "
                    f"{_rate(threaded.rounds[-1]):,.0f}, MPI "
                    f"{_rate(mpi.rounds[-1]):,.0f} samples/s "
                    f"(load {os.getloadavg()[0]:.1f})"
                )
            alone = mpi.ask(cmd="allreduce", repeats=200)["allreduce_ms"]
    finally:
        threaded.close()
        mpi.close()
    t_rates = [_rate(x) for x in threaded.rounds]
    m_rates = [_rate(x) for x in mpi.rounds]
    ratios = [m / t for m, t in zip(m_rates, t_rates, strict=True)]
    step_ms = [1000 * x["seconds"] / x["steps"] for x in mpi.rounds]
    t_step_ms = [1000 * x["seconds"] / x["steps"] for x in threaded.rounds]
    wait_ms = [1000 * max(x["allreduce_seconds"]) / x["steps"] for x in mpi.rounds]
    loads = [v for w in (threaded, mpi) for x in w.rounds for v in x["load"]]
    n_params = mpi.info["n_params"]
    return {
        "config": config,
        "ranks": ranks,
        "n_params": n_params,
        "gradient_bytes": 4 * (n_params + 4),
        "threaded_samples_per_s": statistics.median(t_rates),
        "mpi_samples_per_s": statistics.median(m_rates),
        "ratio": statistics.median(ratios),
        "threaded_step_ms": statistics.median(t_step_ms),
        "mpi_step_ms": statistics.median(step_ms),
        "allreduce_in_step_ms": statistics.median(wait_ms),
        "allreduce_alone_ms": statistics.median(alone),
        "allreduce_alone_p10_p90_ms": [
            float(np.percentile(alone, 10)),
            float(np.percentile(alone, 90)),
        ],
        "load_average": [min(loads), statistics.median(loads), max(loads)],
        "isa": isa,
        "busy": busy,
        "isa_reported": {
            "threaded": threaded.info.get("isa"),
            "mpi": mpi.info.get("isa"),
        },
        "isa_errors": isa_errors,
        "rounds": {"threaded": threaded.rounds, "mpi": mpi.rounds},
    }


def _rate(x) -> float:
    return x["samples"] / x["seconds"]


def format_table(results: list[dict]) -> str:
    lines = [
        "| config | 1 rank x R threads samples/s | R ranks x 1 thread samples/s "
        "| ratio | step ms (MPI) | Allreduce ms/step in step / alone | gradient MB "
        "| load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lo, med, hi = r["load_average"]
        lines.append(
            f"| {r['config']} (R={r['ranks']}) | {r['threaded_samples_per_s']:,.0f} "
            f"| {r['mpi_samples_per_s']:,.0f} | {100 * r['ratio']:.0f}% "
            f"| {r['mpi_step_ms']:.2f} | {r['allreduce_in_step_ms']:.2f} / "
            f"{r['allreduce_alone_ms']:.2f} | {r['gradient_bytes'] / 1e6:.2f} "
            f"| {lo:.1f}-{hi:.1f} (median {med:.1f}) |"
        )
    return "\n".join(lines)


# -- cost model for N nodes ---------------------------------------------------------

# Networks: bandwidth per direction (bytes/s, line rate) and latency per
# message (s), assumed: TCP over 10 Gb/s Ethernet, 100 Gb/s InfiniBand (EDR).
NETWORKS = {"10 Gb/s": (10e9 / 8, 25e-6), "100 Gb/s": (100e9 / 8, 2e-6)}
NODES = (8, 64, 512)


def ring_allreduce_seconds(
    n_nodes: int, n_bytes: float, bandwidth: float, latency: float
) -> float:
    """Ring allreduce: 2(N-1) messages in sequence, each rank sending (and
    receiving) 2(N-1)/N of the buffer."""
    return (
        2 * (n_nodes - 1) * latency + 2 * (n_nodes - 1) / n_nodes * n_bytes / bandwidth
    )


def cost_model(results: list[dict]) -> list[dict]:
    """Predicted step time on N nodes, each doing the step this machine did
    with all its cores (threaded_step_ms, on the config's batch: weak
    scaling, global batch N x batch), then one gradient Allreduce, not
    overlapped."""
    rows = []
    for r in results:
        compute = r["threaded_step_ms"] / 1000
        for net, (bandwidth, latency) in NETWORKS.items():
            for n in NODES:
                comm = ring_allreduce_seconds(
                    n, r["gradient_bytes"], bandwidth, latency
                )
                rows.append(
                    {
                        "config": r["config"],
                        "network": net,
                        "nodes": n,
                        "compute_ms": 1000 * compute,
                        "allreduce_ms": 1000 * comm,
                        "latency_ms": 1000 * 2 * (n - 1) * latency,
                        "efficiency": compute / (compute + comm),
                        "efficiency_overlapped": compute / max(compute, comm),
                    }
                )
    return rows


def format_cost_model(rows: list[dict]) -> str:
    lines = [
        "| config | network | nodes | compute ms/step | Allreduce ms/step (of it "
        "latency) | efficiency | if fully overlapped |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['config']} | {r['network']} | {r['nodes']} "
            f"| {r['compute_ms']:.2f} | {r['allreduce_ms']:.2f} "
            f"({r['latency_ms']:.2f}) | {100 * r['efficiency']:.0f}% "
            f"| {100 * r['efficiency_overlapped']:.0f}% |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--seconds", type=float, default=2.0, help="per round and worker")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--out", default=str(_RESULTS / "mpi.json"))
    p.add_argument(
        "--isa",
        default="native",
        choices=("native", "avx2"),
        help="cap fastvae's instruction set in both workers (avx2), or "
        "leave the environment as it is (native)",
    )
    p.add_argument(
        "--busy",
        type=int,
        default=0,
        metavar="N",
        help="N competing busy processes during the rounds",
    )
    p.add_argument(
        "--cost-model",
        metavar="REPORT",
        help="print the cost model of a saved report and exit",
    )
    p.add_argument("--worker", choices=("threads", "mpi"), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker == "threads":
        threaded_worker(args.config, args.threads)
        return 0
    if args.worker == "mpi":
        mpi_worker(args.config, args.threads)
        return 0
    if args.cost_model:
        results = json.loads(Path(args.cost_model).read_text())["results"]
        print(format_table(results))
        print(format_cost_model(cost_model(results)))
        return 0

    from fastvae.bench.harness import heading, machine_info
    from fastvae.bench.scenarios import ISAS, terminate_on_sigterm

    if args.busy < 0:
        p.error(f"--busy {args.busy}: a count >= 0")
    assert args.isa in ISAS
    terminate_on_sigterm()  # so the busy processes and workers are stopped
    machine = machine_info()
    results = []
    for config in args.configs:
        print(
            f"  {config}: 1 process x {args.ranks} threads vs {args.ranks} ranks x "
            f"1 thread; ISA {args.isa}, {args.busy} busy process(es)",
            flush=True,
        )
        results.append(
            measure(
                config,
                args.ranks,
                args.rounds,
                args.seconds,
                isa=args.isa,
                busy=args.busy,
            )
        )
    report = {
        "machine": machine,
        "rounds": args.rounds,
        "seconds_per_round": args.seconds,
        "isa": args.isa,
        "busy": args.busy,
        "results": results,
        "cost_model": {"networks": NETWORKS, "rows": cost_model(results)},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1))
    m = report["machine"]
    print("\n" + heading(args.isa, args.busy) + "\n")
    print(format_table(results))
    print(
        f"\n{m['date']}, {m['cpu']}, {m['cores']} cores; Python {m['python']}, "
        f"fastvae {m['fastvae']}; medians of {args.rounds} alternated rounds of "
        f"{args.seconds:g} s; report in {args.out}"
    )
    print(
        "\nCost model (ring allreduce, no overlap; bandwidth and latency per "
        "message: "
        + ", ".join(
            f"{k}: {bw * 8 / 1e9:g} Gb/s, {lat * 1e6:g} us"
            for k, (bw, lat) in NETWORKS.items()
        )
        + "):"
    )
    print(format_cost_model(report["cost_model"]["rows"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
