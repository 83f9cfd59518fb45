"""Shared test setup.

BLAS is limited to one thread for the whole session: the kernels run their
own OpenMP threads and call BLAS inside them (DESIGN.md section 3), which is
also what fastvae's Python API does around every compiled call.
"""

import os
import signal
import warnings
from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parent.parent
# The MNIST family and the tables: $FASTVAE_TEST_DATA, else ../shared/data
# beside the repository.
SHARED_DATA = Path(
    os.environ.get("FASTVAE_TEST_DATA") or REPO_ROOT.parent / "shared" / "data"
).expanduser()


@pytest.fixture(autouse=True, scope="session")
def _python_handles_sigint():
    """The Ctrl-C tests need Python's SIGINT handler in this process. A
    process started in the background by a non-interactive shell (`cmd &`,
    as a CI script or nohup may do) starts with SIGINT ignored, and Python
    then installs no handler: _thread.interrupt_main does nothing and the
    CLI's test children inherit the ignored signal."""
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def _sigint_stays_python_s(request):
    """Name a test that changes the SIGINT handler, and put it back."""
    yield
    handler = signal.getsignal(signal.SIGINT)
    if handler is not signal.default_int_handler:
        warnings.warn(
            f"{request.node.nodeid} left SIGINT's handler as {handler!r}",
            stacklevel=1,
        )
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def shared_data():
    """$FASTVAE_TEST_DATA or ../shared/data when it exists (MNIST,
    Fashion-MNIST, binarized MNIST); None, and the tests that need it skip,
    when it does not."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None
