"""Time fastvae against other implementations of the same training step.

Every implementation and thread setting runs in its own worker process
(fastvae.bench.workers). Within one configuration the harness asks the
workers in turn for a timed run, several rounds, so a slow spell of a noisy
machine hits all of them alike; it reports the median throughput of each and
computes the ratios from those medians, all from the same run.
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
from dataclasses import dataclass, field
from pathlib import Path

from fastvae.bench.configs import CONFIGS, QUICK_CONFIGS, Config, parse_config
from fastvae.config import blas_warnings

IMPLS = ("fastvae", "numpy", "torch", "jax")


@dataclass
class Result:
    impl: str
    config: Config
    threads: int
    rates: list[float] = field(default_factory=list)  # samples/s of each round
    maxrss_mb: float | None = None
    error: str | None = None

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    def to_dict(self) -> dict:
        return {"impl": self.impl, "config": self.config.name, "threads": self.threads,
                "samples_per_second": self.median, "rounds": self.rates,
                "peak_rss_mb": self.maxrss_mb, "error": self.error}


class Worker:
    """A running worker process of one implementation."""

    def __init__(self, impl: str, config: Config, threads: int):
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = str(threads)
        if threads == 1:
            # XLA's CPU backend has no thread-count setting but these flags;
            # the worker also pins itself to one core (workers.main).
            env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen="
                                "false intra_op_parallelism_threads=1").strip()
        self.result = Result(impl, config, threads)
        # Run from the folder that holds the fastvae this process imported:
        # `-m` looks in the working directory first, and from a source tree
        # with fastvae installed elsewhere it would find the uncompiled copy.
        import fastvae

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fastvae.bench.workers", impl,
             json.dumps(config.to_dict()), str(threads)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
            cwd=Path(fastvae.__file__).resolve().parent.parent)
        reply = self._read()
        if "error" in reply:
            self.result.error = reply["error"]
            self.proc.wait()

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


def _measure_together(workers: list[Worker], rounds: int, seconds: float) -> None:
    for r in range(rounds):
        # rotate the order too, so no worker always runs right after another
        for w in workers[r % len(workers):] + workers[: r % len(workers)]:
            if w.alive:
                w.measure(seconds)
    for w in workers:
        w.close()


def machine_info() -> dict:
    """CPU, cores, BLAS and library versions, for the table's caption."""
    import numpy
    import scipy
    from threadpoolctl import threadpool_info

    import fastvae
    from fastvae._blas import gemm_backend

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    blas = [f"{i['internal_api']} {i.get('version')} ({i.get('architecture', '?')})"
            for i in threadpool_info() if i["user_api"] == "blas"]
    return {
        "date": datetime.date.today().isoformat(), "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "python": platform.python_version(), "numpy": numpy.__version__,
        "scipy": scipy.__version__, "fastvae": fastvae.__version__,
        "openmp": fastvae.openmp_enabled(), "blas": sorted(set(blas)),
        "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE"),
        "gemm": gemm_backend(),
        "warnings": blas_warnings(),
    }


def run(configs, impls, thread_counts, rounds: int, seconds: float, log=print) -> dict:
    """Measure everything; returns the report as a dict (see `format_table`).

    The machine's GEMM rate is measured by two more workers in the same
    rotation as each configuration's implementations, so FLOP efficiencies
    compare numbers taken in the same minutes: scipy's sgemm and, where the
    CPU has AVX-512, fastvae's own GEMM; the faster one is the limit.
    """
    report = {"machine": machine_info(), "rounds": rounds, "seconds_per_round": seconds,
              "results": []}
    for config in configs:
        for threads in thread_counts:
            log(f"  {config.name}, {threads} thread(s): {', '.join(impls)}, "
                "sgemm, own GEMM")
            workers = [Worker(impl, config, threads)
                       for impl in (*impls, "sgemm", "owngemm")]
            _measure_together(workers, rounds, seconds)
            sgemm, own = (w.result.median for w in workers[-2:])
            for w in workers[:-2]:
                entry = w.result.to_dict()
                entry["flops_per_sample"] = config.flops_per_sample()
                entry["sgemm_gflops"] = sgemm / 1e9 if sgemm else None
                entry["own_gemm_gflops"] = own / 1e9 if own else None
                entry["gemm_limit_gflops"] = max(sgemm or 0, own or 0) / 1e9 or None
                report["results"].append(entry)
    return report


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "–"


def format_table(report: dict) -> str:
    """The report as a markdown table, one row per configuration and threads."""
    by_key: dict[tuple, dict] = {}
    impls: list[str] = []
    for r in report["results"]:
        by_key.setdefault((r["config"], r["threads"]), {})[r["impl"]] = r
        if r["impl"] not in impls:
            impls.append(r["impl"])
    others = [i for i in impls if i != "fastvae"]
    head = (["config", "threads"] + [f"{i} samples/s" for i in impls]
            + [f"fastvae / {i}" for i in others] + ["fastvae FLOP eff.", "peak RSS MB"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (config, threads), row in by_key.items():
        cells = [config, str(threads)]
        for i in impls:
            r = row.get(i)
            if r is None or r["error"]:
                cells.append(r["error"] if r else "–")
            else:
                cells.append(f"{r['samples_per_second']:,.0f}")
        fv = row.get("fastvae", {}).get("samples_per_second")
        for i in others:
            cells.append(_ratio(fv, row.get(i, {}).get("samples_per_second")))
        rate = row.get("fastvae", {}).get("gemm_limit_gflops")
        flops = row.get("fastvae", {}).get("flops_per_sample")
        cells.append(f"{100 * fv * flops / (rate * 1e9):.0f}%" if fv and rate and flops
                     else "–")
        cells.append(" / ".join(
            f"{i} {row[i]['peak_rss_mb']:.0f}" for i in impls
            if i in row and row[i]["peak_rss_mb"]))
        lines.append("| " + " | ".join(cells) + " |")
    m = report["machine"]
    def rate_range(key, float64):
        rates: dict[int, list[float]] = {}
        for r in report["results"]:
            if (r["impl"] == "fastvae" and r.get(key)
                    and r["config"].endswith("float64") == float64):
                rates.setdefault(r["threads"], []).append(r[key])
        return ", ".join(f"{t} thread(s) {min(g):.0f}-{max(g):.0f} GFLOP/s"
                         for t, g in sorted(rates.items())) or "not measured"

    rates = (f"scipy sgemm {rate_range('sgemm_gflops', False)}; fastvae's own GEMM "
             f"{rate_range('own_gemm_gflops', False)}")
    if any(r["config"].endswith("float64") for r in report["results"]):
        rates += (f"; float64 rows against dgemm {rate_range('sgemm_gflops', True)} and "
                  f"fastvae's own float64 GEMM {rate_range('own_gemm_gflops', True)}")
    lines.append("")
    lines.append(
        f"{m['date']}, {m['cpu']}, {m['cores']} cores; Python {m['python']}, NumPy "
        f"{m['numpy']}, SciPy {m['scipy']}, fastvae {m['fastvae']}; BLAS: "
        f"{'; '.join(m['blas'])}; training GEMM: {m.get('gemm', 'blas')}. "
        f"GEMM rates (2048^3 in the row's dtype, measured beside each row): {rates}. "
        "Median of "
        f"{report['rounds']} alternated rounds of {report['seconds_per_round']} s. "
        "FLOP efficiency = GEMM FLOPs per step / step time / the faster GEMM rate."
        + (f" OPENBLAS_CORETYPE={m['openblas_coretype']}."
           if m.get("openblas_coretype") else ""))
    lines += [f"\nWarning: {w}." for w in m.get("warnings", [])]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's options (shared by `fastvae bench` and benchmarks/run.py)."""
    parser.add_argument("--configs", nargs="+", default=None,
                        help="configurations like 784-400/20/128 (default: all targets)")
    parser.add_argument("--impls", nargs="+", default=list(IMPLS), choices=IMPLS,
                        help="implementations to time")
    parser.add_argument("--threads", nargs="+", default=["1", "all"],
                        help="thread counts, 'all' = every core")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of a round")
    parser.add_argument("--quick", action="store_true",
                        help="one tiny configuration, 2 short rounds (a smoke test)")
    parser.add_argument("--no-kernels", dest="kernels", action="store_false",
                        help="skip the kernel micro-benchmarks")
    parser.add_argument("--only-kernels", action="store_true",
                        help="only the kernel micro-benchmarks")
    parser.add_argument("--json", default="benchmarks/results/latest.json",
                        help="where to write the full report")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark from the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="fastvae bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args) -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = sorted({cores if t == "all" else int(t) for t in args.threads})
    if args.quick:
        configs, rounds, seconds = QUICK_CONFIGS, 2, 0.2
    else:
        configs = CONFIGS if args.configs is None else [parse_config(c) for c in args.configs]
        rounds, seconds = args.rounds, args.seconds
    print(f"fastvae bench: {len(configs)} configuration(s), threads {threads}, "
          f"{rounds} rounds of {seconds} s", flush=True)
    def log(msg):
        print(msg, flush=True)

    if args.only_kernels:
        report = {"machine": machine_info(), "rounds": rounds,
                  "seconds_per_round": seconds, "results": []}
    else:
        report = run(configs, args.impls, threads, rounds, seconds, log=log)
    if args.kernels or args.only_kernels:
        from fastvae.bench import kernels

        # One thread: in one process NumPy's threaded BLAS and fastvae's
        # OpenMP team would fight for the cores (spinning BLAS threads made
        # 2-thread kernel calls here 100x slower), the trap of DESIGN.md 3.
        report["kernels"] = kernels.run([1], rounds, seconds / 5, log=log)
    if report["results"]:
        print(format_table(report))
    if "kernels" in report:
        print("\nKernels (shapes of the 784-400/20/128 step, float32, one thread; "
              "median µs per call, lower is better):\n")
        print(kernels.format_table(report["kernels"]))
    if args.json:
        from fastvae.io import write_atomic

        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report, indent=1)
        write_atomic(path, lambda f: f.write(text.encode()))
        print(f"\nwrote {path}")
    return 0
