"""Shared test setup.

BLAS is limited to one thread for the whole session: the kernels run their
own OpenMP threads and call BLAS inside them (DESIGN.md section 3), which is
also what fastvae's Python API does around every compiled call.
"""

from pathlib import Path

import pytest
from threadpoolctl import threadpool_limits

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas():
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data when it exists (MNIST, Fashion-MNIST, binarized MNIST)."""
    return SHARED_DATA if SHARED_DATA.is_dir() else None
