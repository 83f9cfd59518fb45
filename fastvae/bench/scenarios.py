"""Benchmark conditions: instruction-set caps, competing busy processes,
named scenarios and the performance targets they are checked against.

Issue "Fast on the machines users have": a laptop or a shared server has no
AVX-512 and other programs running. ``--isa avx2`` caps every implementation
in its worker process; ``--busy N`` runs N processes that spin on the CPU
while the workers are measured; ``--scenarios idle,avx2,busy1,busy2`` runs
several such conditions in one invocation and checks :data:`TARGETS`.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass

ISAS = ("native", "avx2")

# What caps each implementation at AVX2 + FMA, set in its worker's environment.
# fastvae's GEMM is scipy's OpenBLAS on CPUs without AVX-512, so its OpenBLAS
# is capped too; PyTorch's Linear layers run MKL's sgemm, which neither
# ATen's nor oneDNN's variable reaches. "sgemm" and "owngemm" are the GEMM
# rate workers of the FLOP efficiencies (scipy's BLAS and fastvae's GEMM).
_OPENBLAS = {"OPENBLAS_CORETYPE": "Haswell"}
ISA_ENV: dict[str, dict[str, dict[str, str]]] = {
    "avx2": {
        "fastvae": {"FASTVAE_ISA": "avx2", **_OPENBLAS},
        "torch": {
            "ATEN_CPU_CAPABILITY": "avx2",
            "ONEDNN_MAX_CPU_ISA": "AVX2",
            "MKL_ENABLE_INSTRUCTIONS": "AVX2",
        },
        "jax": {"XLA_FLAGS": "--xla_cpu_max_isa=AVX2"},
        "numpy": dict(_OPENBLAS),
        "sgemm": dict(_OPENBLAS),
        "owngemm": {"FASTVAE_ISA": "avx2", **_OPENBLAS},
    },
}
_APPENDED = {"XLA_FLAGS"}  # flags lists: appended to the user's, not replaced


def isa_env(impl: str, isa: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of `impl`'s worker process under the cap `isa`.

    "native" returns a copy of `env` (default os.environ) unchanged.
    """
    if isa not in ISAS:
        raise ValueError(f"ISA {isa!r}: use one of {', '.join(ISAS)}")
    out = dict(os.environ if env is None else env)
    for var, value in ISA_ENV.get(isa, {}).get(impl, {}).items():
        if var in _APPENDED and out.get(var, "").strip():
            out[var] = f"{out[var].strip()} {value}"
        else:
            out[var] = value
    return out


def check_isa(impl: str, isa: str, info: dict | None) -> str | None:
    """Whether the worker's report (workers.isa_report) shows the cap took
    effect; None if it did or cannot be checked, else what is wrong."""
    if isa == "native" or not info:
        return None
    if impl in ("fastvae", "owngemm"):
        level = info.get("level")
        if level not in ("avx2", "baseline"):
            return f"fastvae runs {level}"
        if info.get("gemm_level") == "avx512":
            return "fastvae's GEMM is its AVX-512 kernel"
    elif impl == "torch":
        cap = str(info.get("cpu_capability", "")).upper()
        if "AVX512" in cap:
            return f"torch runs {cap}"
    elif impl in ("numpy", "sgemm"):
        archs = info.get("openblas", [])
        if archs and not all(str(a).lower() == "haswell" for a in archs):
            return f"OpenBLAS runs {', '.join(map(str, archs))}"
    return None  # jax: the flag is recorded, XLA does not report its ISA


# -- busy processes ------------------------------------------------------------------

# A plain CPU loop that also ends itself when its parent is gone, so even a
# harness killed with SIGKILL leaves no spinner behind. The parent's pid comes
# as an argument: one that died while the spinner was starting up is no
# longer its getppid().
SPINNER = (
    "import os, sys\n"
    "parent = int(sys.argv[1])\n"
    "while os.getppid() == parent:\n"
    "    for _ in range(200000):\n"
    "        pass\n"
)


class BusyLoad:
    """N processes spinning on the CPU while the `with` block runs.

    Each spinner is its own process group (session), killed with SIGKILL on
    exit of the block, whatever ended it (an exception, Ctrl-C); a spinner
    also exits by itself within milliseconds when this process dies.
    """

    def __init__(self, n: int):
        if n < 0:
            raise ValueError(f"busy processes: {n} < 0")
        self.n = n
        self.procs: list[subprocess.Popen] = []

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> BusyLoad:
        try:
            for _ in range(self.n):
                self.procs.append(
                    subprocess.Popen(
                        [sys.executable, "-S", "-c", SPINNER, str(os.getpid())],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                )
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        procs, self.procs = self.procs, []
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)  # its own group: it and any child
            except (ProcessLookupError, PermissionError):
                pass
        for p in procs:
            p.wait()

    def __enter__(self) -> BusyLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def terminate_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so `finally` blocks (BusyLoad, the
    workers) clean up when the benchmark is killed politely."""

    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        pass


# -- scenarios -----------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One condition of the benchmark: an ISA cap and N busy processes."""

    name: str
    isa: str = "native"
    busy: int = 0

    def to_dict(self) -> dict:
        return {"name": self.name, "isa": self.isa, "busy": self.busy}


_SCENARIO_HELP = (
    "idle (native ISA, no load), avx2 (every implementation capped "
    "at AVX2), busyN (N >= 1 competing busy processes, e.g. busy2)"
)


def parse_scenario(name: str) -> Scenario:
    name = name.strip()
    if name == "idle":
        return Scenario("idle")
    if name == "avx2":
        return Scenario("avx2", isa="avx2")
    m = re.fullmatch(r"busy([1-9][0-9]*)", name)
    if m:
        return Scenario(name, busy=int(m.group(1)))
    raise ValueError(
        f"unknown scenario {name!r}; scenarios are {_SCENARIO_HELP}, comma-separated"
    )


def parse_scenarios(text: str) -> list[Scenario]:
    """``"idle,avx2,busy1"`` -> the scenarios; ValueError on a bad name,
    an empty list or a repeated name."""
    names = [n.strip() for n in text.split(",")]
    if not any(names):
        raise ValueError(f"no scenarios given; scenarios are {_SCENARIO_HELP}")
    out = [parse_scenario(n) for n in names]
    seen = set()
    for s in out:
        if s.name in seen:
            raise ValueError(f"scenario {s.name!r} given twice")
        seen.add(s.name)
    return out


# -- targets -------------------------------------------------------------------------

# The columns of a scenario's table, by the key of their samples/s: fastvae at
# its default thread count, fastvae on one thread, the others at their
# defaults.
FASTVAE_1T = "fastvae-1t"
_LABELS = {
    "fastvae": "fastvae default",
    FASTVAE_1T: "fastvae 1 thread",
    "jax": "JAX",
    "torch": "PyTorch",
}
RATIOS = {  # ratio column -> (numerator, denominator)
    "fastvae/jax": ("fastvae", "jax"),
    "fastvae/torch": ("fastvae", "torch"),
    "fastvae/1t": ("fastvae", FASTVAE_1T),
}


@dataclass(frozen=True)
class Target:
    scenario: str
    config: str
    ratio: str  # a key of RATIOS
    minimum: float
    strict: bool = False  # ">" instead of ">="

    def describe(self) -> str:
        num, den = (_LABELS[k] for k in RATIOS[self.ratio])
        op = ">" if self.strict else ">="
        return f"{self.config}: {num} / {den} {op} {self.minimum:g}x"


# Issue "Fast on the machines users have": the targets, one row each.
TARGETS: tuple[Target, ...] = (
    Target("busy1", "784-400/20/128", "fastvae/1t", 0.9),
    Target("busy1", "784-400/20/128", "fastvae/jax", 1.2),
    Target("busy2", "784-400/20/128", "fastvae/1t", 0.9),
    Target("busy2", "784-400/20/128", "fastvae/jax", 1.0, strict=True),
    Target("idle", "784-400/20/128", "fastvae/torch", 2.0),
    Target("idle", "784-400/20/128", "fastvae/jax", 1.3),
    Target("avx2", "784-400/20/128", "fastvae/jax", 1.3),
    Target("avx2", "784-400/20/16", "fastvae/jax", 2.0),
    Target("avx2", "784-1024-1024/64/512", "fastvae/jax", 1.1),
)


def ratio(rates: dict[str, float | None], name: str) -> float | None:
    num, den = (rates.get(k) for k in RATIOS[name])
    return num / den if num and den else None


def evaluate_targets(
    scenario: str, rates: dict[str, dict[str, float | None]], targets=TARGETS
) -> list[dict]:
    """Check the targets of `scenario` against `rates` (config name ->
    column key -> samples/s). Status "PASS", "MISS", or "n/a" when the
    configuration or an implementation was not measured."""
    out = []
    for t in targets:
        if t.scenario != scenario:
            continue
        value = ratio(rates.get(t.config, {}), t.ratio)
        if value is None:
            status = "n/a"
        elif value > t.minimum or (not t.strict and value >= t.minimum):
            status = "PASS"
        else:
            status = "MISS"
        out.append(
            {
                "target": t.describe(),
                "scenario": t.scenario,
                "config": t.config,
                "ratio": t.ratio,
                "minimum": t.minimum,
                "strict": t.strict,
                "value": value,
                "status": status,
            }
        )
    return out


def format_targets(checks: list[dict]) -> str:
    lines = []
    for c in checks:
        # three decimals: 1.099 is a MISS of ">= 1.1", not "1.10x"
        value = f"{c['value']:.3f}x" if c["value"] is not None else "not measured"
        lines.append(f"{c['status']:4}  {c['scenario']}: {c['target']} (got {value})")
    return "\n".join(lines)
