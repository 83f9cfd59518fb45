"""One implementation of the training step per worker process.

The harness starts ``python -m fastvae.bench.workers IMPL CONFIG_JSON THREADS``
with the thread settings (and any ISA cap) in its environment; THREADS 0 is
the library's default thread count. The worker first replies
``{"ready": true, "threads": ..., "isa": {...}}`` (what it runs on); the
harness then sends JSON commands on stdin, one per line, and reads one JSON
reply per command on stdout:

    {"cmd": "run", "seconds": 0.5}  ->  {"samples": ..., "seconds": ...}
    {"cmd": "quit"}                 ->  {"maxrss_mb": ...}

A separate process per implementation keeps imports (PyTorch, JAX) and
thread pools from disturbing the others and gives each its own peak memory.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np

from fastvae.bench.configs import Config
from fastvae.bench.memory import peak_rss_mb

# Rows of the training array: enough minibatches that one fit() call lasts a
# while (its fixed costs are then small), at least 16 batches.
_MIN_ROWS = 4096


class NotInstalled(Exception):
    """The implementation's library is not installed."""


def _data(config: Config) -> np.ndarray:
    rows = max(16 * config.batch, _MIN_ROWS)
    rng = np.random.default_rng(0)
    return (rng.random((rows, 784)) < 0.3).astype(config.dtype)


class FastvaeStep:
    """fastvae.VAE.fit over an in-memory array: what a user runs."""

    def __init__(self, config: Config, threads: int):
        import fastvae

        self.X = _data(config)
        self.model = fastvae.VAE(
            hidden=config.hidden,
            latent_dim=config.latent,
            batch_size=config.batch,
            dtype=config.dtype,
            n_threads=threads or None,
            epochs=1,
            warm_start=True,
            random_state=0,
        )
        self.model.fit(self.X)  # warm-up: allocation, first touch, the pool started

    def run(self, seconds: float) -> int:
        samples = 0
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            self.model.fit(self.X)
            samples += len(self.X)
        return samples


class NumpyStep:
    """fastvae.bench.numpy_vae: the same model and Adam step written in NumPy."""

    def __init__(self, config: Config, threads: int):
        from fastvae.bench.numpy_vae import NumpyVAE

        self.X = _data(config)
        self.batch = config.batch
        self.model = NumpyVAE(
            config.encoder_dims, config.decoder_dims, dtype=config.dtype, seed=0
        )
        self._i = 0
        self.run(0.0)

    def run(self, seconds: float) -> int:
        samples = 0
        n_batches = len(self.X) // self.batch
        start = time.perf_counter()
        while True:
            j = self._i % n_batches
            self.model.step(self.X[j * self.batch : (j + 1) * self.batch])
            self._i += 1
            samples += self.batch
            if time.perf_counter() - start >= seconds:
                return samples


class TorchStep:
    """fastvae.bench.torch_vae: nn.Module, autograd and torch.optim.Adam."""

    def __init__(self, config: Config, threads: int):
        try:
            import torch

            from fastvae.bench.torch_vae import make_trainer
        except ImportError as exc:
            raise NotInstalled(str(exc)) from None
        if threads:
            torch.set_num_threads(threads)
        self.X = torch.from_numpy(_data(config))
        self.batch = config.batch
        _, self.step = make_trainer(
            config.encoder_dims, config.decoder_dims, dtype=config.dtype
        )
        self._i = 0
        self.run(0.0)

    def run(self, seconds: float) -> int:
        samples = 0
        n_batches = len(self.X) // self.batch
        start = time.perf_counter()
        while True:
            j = self._i % n_batches
            self.step(self.X[j * self.batch : (j + 1) * self.batch])
            self._i += 1
            samples += self.batch
            if time.perf_counter() - start >= seconds:
                return samples


class JaxStep:
    """fastvae.bench.jax_vae: the whole step under jax.jit."""

    def __init__(self, config: Config, threads: int):
        try:
            import jax

            if config.dtype == "float64":
                jax.config.update("jax_enable_x64", True)
            from fastvae.bench.jax_vae import make_trainer
        except ImportError as exc:
            raise NotInstalled(str(exc)) from None
        X = _data(config)
        self.batches = [
            jax.device_put(X[j : j + config.batch])
            for j in range(0, len(X) - config.batch + 1, config.batch)
        ]
        self.batch = config.batch
        self.state, self.step = make_trainer(
            config.encoder_dims, config.decoder_dims, dtype=config.dtype
        )
        self._i = 0
        self.run(0.0)  # compiles

    def run(self, seconds: float) -> int:
        samples = 0
        start = time.perf_counter()
        while True:
            self.state, loss = self.step(
                self.state, self.batches[self._i % len(self.batches)]
            )
            self._i += 1
            samples += self.batch
            if samples % (8 * self.batch) == 0 or seconds == 0.0:
                loss.block_until_ready()  # JAX runs ahead asynchronously
                if time.perf_counter() - start >= seconds:
                    return samples


class _GemmRate:
    """A GEMM on 2048 x 2048 matrices of the configuration's dtype, timed in
    a loop; "samples" are FLOPs. Subclasses define `multiply`."""

    SIZE = 2048

    def run(self, seconds: float) -> int:
        flops = 0
        start = time.perf_counter()
        while True:
            self.multiply()
            flops += 2 * self.SIZE**3
            if time.perf_counter() - start >= seconds:
                return flops


class SgemmRate(_GemmRate):
    """scipy's GEMM: sgemm, or dgemm for a float64 configuration."""

    def __init__(self, config: Config, threads: int):
        from scipy.linalg import blas

        rng = np.random.default_rng(0)
        dtype = np.dtype(config.dtype)
        self.gemm = blas.dgemm if dtype == np.float64 else blas.sgemm
        self.a = np.asfortranarray(rng.random((self.SIZE, self.SIZE)).astype(dtype))
        self.b = np.asfortranarray(rng.random((self.SIZE, self.SIZE)).astype(dtype))
        self.run(0.0)

    def multiply(self) -> None:
        self.gemm(1.0, self.a, self.b)


class OwnGemmRate(_GemmRate):
    """fastvae's own GEMM, through the dense layer forward that splits
    columns over the threads like the training step."""

    def __init__(self, config: Config, threads: int):
        import fastvae
        from fastvae._core import _blas, _dense

        if not _blas.own_gemm_available():
            raise NotInstalled(
                "fastvae's own GEMM needs AVX2 + FMA or AVX-512 "
                "(and FASTVAE_ISA not baseline)"
            )
        rng = np.random.default_rng(0)
        dtype = np.dtype(config.dtype)
        self.forward = _dense.dense_forward_memview
        # 0 is the harness's "default thread count", as for the training step
        self.threads = threads or fastvae.get_num_threads()
        self.a = rng.random((self.SIZE, self.SIZE)).astype(dtype)
        self.b = rng.random((self.SIZE, self.SIZE)).astype(dtype)
        self.bias = np.zeros(self.SIZE, dtype)
        self.run(0.0)

    def multiply(self) -> None:
        self.forward(
            self.a, self.b, self.bias, "identity", self.threads, max(2, self.threads)
        )


IMPLEMENTATIONS = {
    "fastvae": FastvaeStep,
    "numpy": NumpyStep,
    "torch": TorchStep,
    "jax": JaxStep,
    "sgemm": SgemmRate,
    "owngemm": OwnGemmRate,
}


def threads_used(impl_name: str, threads: int) -> int | None:
    """The thread count the implementation runs with (its default for 0)."""
    if threads:
        return threads
    if impl_name in ("fastvae", "owngemm"):
        import fastvae

        return fastvae.get_num_threads()
    if impl_name == "torch":
        import torch

        return torch.get_num_threads()
    if impl_name in ("numpy", "sgemm"):
        from threadpoolctl import threadpool_info

        counts = [
            i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"
        ]
        return max(counts) if counts else None
    return None  # XLA has no thread count to ask


def isa_report(impl_name: str) -> dict:
    """What instruction set the implementation runs, as far as it tells:
    fastvae's level and GEMM, PyTorch's ATen capability, OpenBLAS's core
    type, JAX's XLA_FLAGS (XLA reports nothing)."""
    out: dict = {}
    if impl_name in ("fastvae", "owngemm"):
        import fastvae
        from fastvae._core._blas import gemm_backend, own_gemm_level

        out = dict(fastvae.get_isa())
        out["gemm"] = gemm_backend()
        out["gemm_level"] = own_gemm_level()
    elif impl_name == "torch":
        import torch

        out["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    elif impl_name == "jax":
        out["xla_flags"] = os.environ.get("XLA_FLAGS")
    if impl_name in ("fastvae", "numpy", "sgemm", "owngemm"):
        from threadpoolctl import threadpool_info

        out["openblas"] = sorted(
            {
                i.get("architecture")
                for i in threadpool_info()
                if i.get("internal_api") == "openblas"
            }
            - {None}
        )
        out["openblas_coretype"] = os.environ.get("OPENBLAS_CORETYPE")
    return out


def _reply(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str]) -> int:
    impl_name, config_json, threads = argv[0], argv[1], int(argv[2])
    config = Config.from_dict(json.loads(config_json))
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if 0 < threads < len(cpus):
            # every implementation gets exactly `threads` cores, whatever its
            # library does with thread settings (XLA has no hard limit)
            os.sched_setaffinity(0, cpus[:threads])
    try:
        impl = IMPLEMENTATIONS[impl_name](config, threads)
    except NotInstalled as exc:
        _reply({"error": "not installed", "detail": str(exc)})
        return 0
    _reply(
        {
            "ready": True,
            "threads": threads_used(impl_name, threads),
            "isa": isa_report(impl_name),
        }
    )
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "run":
            start = time.perf_counter()
            samples = impl.run(float(cmd["seconds"]))
            _reply({"samples": samples, "seconds": time.perf_counter() - start})
        elif cmd["cmd"] == "quit":
            _reply({"maxrss_mb": peak_rss_mb()})
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
