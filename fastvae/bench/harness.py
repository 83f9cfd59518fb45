"""Time fastvae against other implementations of the same training step.

Every implementation and thread setting runs in its own worker process
(fastvae.bench.workers). Within one configuration the harness asks the
workers in turn for a timed run, several rounds, so a slow spell of a noisy
machine hits all of them alike; it reports the median throughput of each and
computes the ratios from those medians, all from the same run.

Conditions (fastvae.bench.scenarios): ``--isa avx2`` caps every
implementation's instruction set through its worker's environment, ``--busy
N`` spins N processes while each configuration is measured, and
``--scenarios idle,avx2,busy1,busy2`` runs several such conditions in one
invocation, one table each with the ratios of the issue's targets and a
PASS/MISS line per target (scenarios.TARGETS).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastvae.bench import scenarios as sc
from fastvae.bench.configs import CONFIGS, QUICK_CONFIGS, Config, parse_config
from fastvae.bench.report import (
    format_scenario,
    format_table,
    heading,
    scenario_rates,
)
from fastvae.config import blas_warnings

IMPLS = ("fastvae", "numpy", "torch", "jax")
# --scenarios: the columns of the targets; the NumPy reference only on request
SCENARIO_IMPLS = ("fastvae", "torch", "jax")


@dataclass
class Result:
    impl: str
    config: Config
    threads: int
    rates: list[float] = field(default_factory=list)  # samples/s of each round
    maxrss_mb: float | None = None
    error: str | None = None
    label: str | None = None  # column key; default: impl
    threads_used: int | None = None  # what the worker runs (threads 0: its default)
    isa: dict | None = None  # what the worker reports (workers.isa_report)
    isa_error: str | None = None  # set when a cap did not take effect

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    def to_dict(self) -> dict:
        return {
            "impl": self.impl,
            "config": self.config.name,
            "threads": self.threads,
            "samples_per_second": self.median,
            "rounds": self.rates,
            "peak_rss_mb": self.maxrss_mb,
            "error": self.error,
            "label": self.label or self.impl,
            "threads_used": self.threads_used,
            "isa": self.isa,
            "isa_error": self.isa_error,
        }


class Worker:
    """A running worker process of one implementation.

    threads 0 leaves the thread settings to the library (its default);
    `isa` caps the instruction set through the worker's environment
    (scenarios.isa_env). With wait=False the constructor only starts the
    process (so several warm up at once): call `wait_ready` before use.
    """

    def __init__(
        self,
        impl: str,
        config: Config,
        threads: int,
        isa: str = "native",
        label: str | None = None,
        wait: bool = True,
    ):
        env = sc.isa_env(impl, isa)
        self.isa_cap = isa
        if threads:
            for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
                env[var] = str(threads)
        if threads == 1:
            # XLA's CPU backend has no thread-count setting but these flags;
            # the worker also pins itself to one core (workers.main).
            env["XLA_FLAGS"] = (
                env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                "false intra_op_parallelism_threads=1"
            ).strip()
        self.result = Result(impl, config, threads, label=label)
        # Run from the folder that holds the fastvae this process imported:
        # `-m` looks in the working directory first, and from a source tree
        # with fastvae installed elsewhere it would find the uncompiled copy.
        import fastvae

        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fastvae.bench.workers",
                impl,
                json.dumps(config.to_dict()),
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=Path(fastvae.__file__).resolve().parent.parent,
        )
        self._ready = False
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        if self._ready:
            return
        self._ready = True
        reply = self._read()
        if "error" in reply:
            self.result.error = reply["error"]
            self.proc.wait()
            return
        self.result.threads_used = reply.get("threads")
        self.result.isa = reply.get("isa")
        self.result.isa_error = sc.check_isa(
            self.result.impl, self.isa_cap, self.result.isa
        )

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            return {"error": f"worker exited with status {code}"}
        return json.loads(line)

    def _send(self, obj) -> dict:
        self.proc.stdin.write(json.dumps(obj) + "\n")
        self.proc.stdin.flush()
        return self._read()

    @property
    def alive(self) -> bool:
        return self.result.error is None

    def measure(self, seconds: float) -> None:
        reply = self._send({"cmd": "run", "seconds": seconds})
        if "error" in reply:
            self.result.error = reply["error"]
        else:
            self.result.rates.append(reply["samples"] / reply["seconds"])

    def close(self) -> None:
        if self.alive:
            reply = self._send({"cmd": "quit"})
            self.result.maxrss_mb = reply.get("maxrss_mb")
        self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _start_workers(specs: list[dict]) -> list[Worker]:
    """Workers of `specs` (Worker keyword arguments), started together and
    then waited for; none is left running if one fails to start."""
    workers: list[Worker] = []
    try:
        for spec in specs:
            workers.append(Worker(**spec, wait=False))
        for w in workers:
            w.wait_ready()
    except BaseException:
        for w in workers:
            w.kill()
        raise
    return workers


def _measure_together(
    workers: list[Worker], rounds: int, seconds: float, busy: int = 0
) -> None:
    """Alternated rounds of all `workers`, with `busy` processes spinning
    meanwhile; closes the workers (kills them on an exception)."""
    try:
        with sc.BusyLoad(busy):
            for r in range(rounds):
                # rotate the order too, so no worker always runs right after another
                for w in workers[r % len(workers) :] + workers[: r % len(workers)]:
                    if w.alive:
                        w.measure(seconds)
    except BaseException:
        for w in workers:
            w.kill()
        raise
    for w in workers:
        w.close()


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def machine_info() -> dict:
    """CPU, cores, BLAS and library versions, for the table's caption."""
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    import fastvae
    from fastvae._core._blas import gemm_backend

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [
        f"{i['internal_api']} {i.get('version')} ({i.get('architecture', '?')})"
        for i in threadpool_info()
        if i["user_api"] == "blas"
    ]
    flags = _cpu_flags()
    return {
        "date": datetime.date.today().isoformat(),
        "cpu": cpu,
        "flags": {f: f in flags for f in ("avx2", "fma", "avx512f")},
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "fastvae": fastvae.__version__,
        "openmp": fastvae.openmp_enabled(),
        "blas": sorted(set(blas)),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "gemm": gemm_backend(),
        "warnings": blas_warnings(),
    }


def run(
    configs,
    impls,
    thread_counts,
    rounds: int,
    seconds: float,
    log=print,
    isa: str = "native",
    busy: int = 0,
) -> dict:
    """Measure everything; returns the report as a dict (see `format_table`).

    The machine's GEMM rate is measured by two more workers in the same
    rotation as each configuration's implementations, so FLOP efficiencies
    compare numbers taken in the same minutes: scipy's sgemm and, where the
    CPU has AVX-512, fastvae's own GEMM; the faster one is the limit.
    `isa` caps every worker's instruction set (scenarios.isa_env), `busy`
    processes spin while each configuration is measured.
    """
    report = {
        "machine": machine_info(),
        "rounds": rounds,
        "seconds_per_round": seconds,
        "isa": isa,
        "busy": busy,
        "results": [],
    }
    for config in configs:
        for threads in thread_counts:
            log(
                f"  {config.name}, {threads} thread(s): {', '.join(impls)}, "
                "sgemm, own GEMM"
            )
            workers = _start_workers(
                [
                    {"impl": impl, "config": config, "threads": threads, "isa": isa}
                    for impl in (*impls, "sgemm", "owngemm")
                ]
            )
            _measure_together(workers, rounds, seconds, busy)
            sgemm, own = (w.result.median for w in workers[-2:])
            for w in workers[:-2]:
                entry = w.result.to_dict()
                entry["flops_per_sample"] = config.flops_per_sample()
                entry["sgemm_gflops"] = sgemm / 1e9 if sgemm else None
                entry["own_gemm_gflops"] = own / 1e9 if own else None
                entry["gemm_limit_gflops"] = max(sgemm or 0, own or 0) / 1e9 or None
                report["results"].append(entry)
    return report


# -- scenarios -------------------------------------------------------------------------


def run_scenario(
    scenario: sc.Scenario, configs, impls, rounds: int, seconds: float, log=print
) -> dict:
    """One scenario: per configuration, fastvae at its default thread count
    and on one thread, the other implementations at their defaults, all in
    one alternated rotation under the scenario's ISA cap and busy load."""
    out = {
        "scenario": scenario.to_dict(),
        "isa": scenario.isa,
        "busy": scenario.busy,
        "load_average_start": list(os.getloadavg()),
        "results": [],
    }
    for config in configs:
        specs = [
            {"impl": "fastvae", "config": config, "threads": 0, "label": "fastvae"},
            {"impl": "fastvae", "config": config, "threads": 1, "label": sc.FASTVAE_1T},
        ]
        specs += [
            {"impl": i, "config": config, "threads": 0, "label": i}
            for i in impls
            if i != "fastvae"
        ]
        for spec in specs:
            spec["isa"] = scenario.isa
        log(
            f"  [{scenario.name}] {config.name}: "
            f"{', '.join(s['label'] for s in specs)}"
            + (f" (+{scenario.busy} busy)" if scenario.busy else "")
        )
        start = time.monotonic()
        workers = _start_workers(specs)
        _measure_together(workers, rounds, seconds, scenario.busy)
        out["results"] += [w.result.to_dict() for w in workers]
        log(f"    ({time.monotonic() - start:.0f} s)")
    out["targets"] = sc.evaluate_targets(scenario.name, scenario_rates(out))
    return out


def add_arguments(
    parser: argparse.ArgumentParser, *, report: str | None = None
) -> None:
    """The benchmark's options (shared by `fastvae bench` and benchmarks/run.py).

    `report` is the default of --json: benchmarks/run.py writes the repository's
    benchmarks/results/latest.json; `fastvae bench`, run from any folder,
    writes no file unless asked."""
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="configurations like 784-400/20/128 (default: all targets)",
    )
    parser.add_argument(
        "--impls",
        nargs="+",
        default=None,
        choices=IMPLS,
        help="implementations to time (default: all; with "
        f"--scenarios: {' '.join(SCENARIO_IMPLS)})",
    )
    parser.add_argument(
        "--threads",
        nargs="+",
        default=["1", "all"],
        help="thread counts, 'all' = every core",
    )
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of a round")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one tiny configuration, 2 short rounds (a smoke test)",
    )
    parser.add_argument(
        "--no-kernels",
        dest="kernels",
        action="store_false",
        help="skip the kernel micro-benchmarks",
    )
    parser.add_argument(
        "--only-kernels", action="store_true", help="only the kernel micro-benchmarks"
    )
    parser.add_argument(
        "--json",
        default=report,
        metavar="PATH",
        help="write the full report to PATH as JSON"
        + (f" (default: {report})" if report else " (default: no file)"),
    )
    parser.add_argument(
        "--isa",
        default="native",
        choices=sc.ISAS,
        help="cap every implementation's instruction set (avx2), or "
        "leave the environment as it is (native)",
    )
    parser.add_argument(
        "--busy",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="N competing busy processes while measuring",
    )
    parser.add_argument(
        "--scenarios",
        type=_scenario_list,
        default=None,
        metavar="LIST",
        help="run several conditions in one invocation, one table and "
        "the targets' PASS/MISS lines each, e.g. idle,avx2,busy1,busy2 "
        "(idle: native ISA, no load; avx2: --isa avx2; "
        "busyN: --busy N)",
    )


def _non_negative_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count >= 0")
    return n


def _scenario_list(text: str) -> list[sc.Scenario]:
    try:
        return sc.parse_scenarios(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str] | None = None, *, report: str | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status.

    `report`: the default of --json (see add_arguments)."""
    parser = argparse.ArgumentParser(
        prog="fastvae bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser, report=report)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args) -> int:
    sc.terminate_on_sigterm()  # so the busy processes and workers are stopped
    if getattr(args, "scenarios", None):
        return _run_scenarios_from_args(args)
    cores = (
        len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count()
    )
    threads = sorted({cores if t == "all" else int(t) for t in args.threads})
    if args.quick:
        configs, rounds, seconds = QUICK_CONFIGS, 2, 0.2
    else:
        configs = (
            CONFIGS if args.configs is None else [parse_config(c) for c in args.configs]
        )
        rounds, seconds = args.rounds, args.seconds
    print(
        f"fastvae bench: {len(configs)} configuration(s), threads {threads}, "
        f"{rounds} rounds of {seconds} s",
        flush=True,
    )

    def log(msg):
        print(msg, flush=True)

    if args.only_kernels:
        report = {
            "machine": machine_info(),
            "rounds": rounds,
            "seconds_per_round": seconds,
            "results": [],
        }
    else:
        report = run(
            configs,
            args.impls or list(IMPLS),
            threads,
            rounds,
            seconds,
            log=log,
            isa=args.isa,
            busy=args.busy,
        )
    if args.kernels or args.only_kernels:
        from fastvae.bench import kernels

        # One thread: in one process NumPy's threaded BLAS and fastvae's
        # OpenMP team would fight for the cores (spinning BLAS threads made
        # 2-thread kernel calls here 100x slower), the trap of DESIGN.md 3.
        report["kernels"] = kernels.run([1], rounds, seconds / 5, log=log)
    if report["results"]:
        print("\n" + heading(args.isa, args.busy) + "\n")
        print(format_table(report))
    if "kernels" in report:
        print(
            "\nKernels (shapes of the 784-400/20/128 step, float32, one thread; "
            "median µs per call, lower is better):\n"
        )
        print(kernels.format_table(report["kernels"]))
    _write_json(args.json, report)
    return 0


def _plan(args) -> tuple:
    """The configurations, rounds and seconds per round of --scenarios: by
    default the float32 configurations (the targets' and 784-512-256), so
    four scenarios take about 20 minutes on 2 busy cores."""
    if args.quick:
        return QUICK_CONFIGS, 2, 0.2
    configs = (
        [c for c in CONFIGS if c.dtype == "float32"]
        if args.configs is None
        else [parse_config(c) for c in args.configs]
    )
    return configs, args.rounds, args.seconds


def _write_json(where: str | None, report: dict) -> None:
    if where:
        from fastvae._atomic import write_atomic

        path = Path(where)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report, indent=1)
        write_atomic(path, lambda f: f.write(text.encode()))
        print(f"\nwrote {path}")


def _run_scenarios_from_args(args) -> int:
    """--scenarios: the --isa and --busy options are replaced by each
    scenario's; the kernel micro-benchmarks (in-process, uncapped) are not
    run."""
    configs, rounds, seconds = _plan(args)
    names = ", ".join(s.name for s in args.scenarios)
    print(
        f"fastvae bench: scenarios {names}; {len(configs)} configuration(s), "
        f"{rounds} rounds of {seconds} s",
        flush=True,
    )
    if args.isa != "native" or args.busy:
        print("  (--isa and --busy are ignored: each scenario sets its own)")
    report = {
        "machine": machine_info(),
        "rounds": rounds,
        "seconds_per_round": seconds,
        "scenarios": [],
    }

    def log(msg):
        print(msg, flush=True)

    for scenario in args.scenarios:
        part = run_scenario(
            scenario,
            configs,
            args.impls or list(SCENARIO_IMPLS),
            rounds,
            seconds,
            log=log,
        )
        part.update(rounds=rounds, seconds_per_round=seconds)
        report["scenarios"].append(part)
        print("\n" + format_scenario(part) + "\n", flush=True)
    m = report["machine"]
    print(
        f"{m['date']}, {m['cpu']}, {m['cores']} cores (avx2 {m['flags']['avx2']}, "
        f"avx512f {m['flags']['avx512f']}); Python {m['python']}, "
        f"NumPy {m['numpy']}, fastvae {m['fastvae']}; BLAS: {'; '.join(m['blas'])}; "
        f"load average at the start {m['load_average'][0]:.2f}."
    )
    report["targets"] = [t for part in report["scenarios"] for t in part["targets"]]
    _write_json(args.json, report)
    return 0
