"""What fastvae runs on, and BLAS settings that cost it speed.

Most of a training step is GEMM. On CPUs with AVX2 + FMA or AVX-512 fastvae
uses its own GEMM kernels at the level FASTVAE_ISA allows
(src_c/fastvae/gemm.h); at the baseline level, or with FASTVAE_GEMM=blas, it
uses scipy's OpenBLAS, which picks its kernels from the CPU unless
OPENBLAS_CORETYPE names a core. Measured on a 2-core AMD EPYC with AVX-512
whose environment set OPENBLAS_CORETYPE=Haswell: sgemm (2048^3, one thread)
ran at 107 GFLOP/s with the forced Haswell (AVX2) kernels and at 203 GFLOP/s
with the SkylakeX (AVX-512) kernels OpenBLAS chooses by itself, and a
784-400/20/128 training step through BLAS at 21.7k against 40.2k samples/s.
fastvae never changes the user's setting; where it costs fastvae speed it
says so (`blas_warnings`, `show_config`, `fastvae bench`, `fastvae train`).
"""

from __future__ import annotations

import os
from pathlib import Path

from fastvae._core._blas import own_gemm_level
from fastvae._core.threads import get_num_threads, openmp_enabled
from fastvae._version import C_API_VERSION, __version__

__all__ = ["blas_warnings", "show_config", "cpu_flags"]

# OpenBLAS core types whose kernels use AVX-512 (x86-64).
_AVX512_CORES = {"skylakex", "cooperlake", "sapphirerapids"}
# Core types that exist on x86-64 but stop at AVX2 or older.
_OLDER_CORES = {
    "haswell",
    "zen",
    "excavator",
    "steamroller",
    "piledriver",
    "bulldozer",
    "sandybridge",
    "nehalem",
    "core2",
    "atom",
    "prescott",
    "katmai",
    "barcelona",
    "opteron",
    "dunnington",
    "penryn",
}


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where unavailable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def blas_warnings(environ=None, flags=None, gemm=None) -> list[str]:
    """Settings of this process's BLAS that make fastvae slower than it can be.

    Parameters
    ----------
    environ : mapping, optional
        The environment to inspect (default: os.environ).
    flags : set of str, optional
        CPU feature flags (default: read from /proc/cpuinfo).
    gemm : {"own", "blas"}, optional
        The GEMM of the training step (default: the one in use). With
        fastvae's own GEMM no BLAS setting slows training down.

    Returns
    -------
    list of str
        One sentence per problem found; empty when none is.
    """
    environ = os.environ if environ is None else environ
    flags = cpu_flags() if flags is None else flags
    if gemm is None:
        from fastvae._core._blas import gemm_backend

        gemm = gemm_backend()
    found = []
    if gemm == "own":
        return found
    core = environ.get("OPENBLAS_CORETYPE", "").strip()
    if core and "avx512f" in flags and core.lower() in _OLDER_CORES:
        found.append(
            f"OPENBLAS_CORETYPE={core} makes OpenBLAS use pre-AVX-512 kernels on "
            "this AVX-512 CPU: its GEMMs, most of a training step, can run at about "
            "half speed (measured: sgemm 107 vs 203 GFLOP/s, a 784-400/20/128 step "
            "21.7k vs 40.2k samples/s); unset it unless you need it"
        )
    return found


def show_config() -> str:
    """A short report of fastvae's build and run-time setup, with warnings.

    Returns
    -------
    str
        Also printed.
    """
    from threadpoolctl import threadpool_info

    blas = [
        f"{i.get('internal_api')} {i.get('version')} "
        f"({i.get('architecture', '?')}, {i.get('num_threads')} threads)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    core = os.environ.get("OPENBLAS_CORETYPE")
    level = own_gemm_level()
    gemm = (
        f"fastvae's own {'AVX-512' if level == 'avx512' else 'AVX2 + FMA'} kernels"
        if level
        else "BLAS (scipy's)"
    )
    lines = [
        f"fastvae {__version__}, C API {C_API_VERSION}",
        f"OpenMP: {openmp_enabled()}, threads: {get_num_threads()}",
        f"GEMM of the training step: {gemm} "
        f"(FASTVAE_GEMM={os.environ.get('FASTVAE_GEMM', 'auto')})",
        "BLAS: " + ("; ".join(blas) if blas else "not loaded yet"),
        f"OPENBLAS_CORETYPE: {core if core else 'unset (OpenBLAS picks by CPU)'}",
    ]
    lines += [f"warning: {w}" for w in blas_warnings()]
    text = "\n".join(lines)
    print(text)
    return text
