"""Shared test set-up. Triton runs in its CPU interpreter here (no GPU on CI)."""
import os

# Must be set before any @triton.jit function is defined (i.e. before ssast_fast imports).
os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from golden import golden_root  # noqa: E402


@pytest.fixture(scope="session")
def golden_dir():
    return golden_root()


@pytest.fixture(params=["ext", "pure"])
def ext_path(request):
    """Run a test on the compiled-extension path and on the forced pure-Python path."""
    from ssast_fast import _ext

    if request.param == "ext":
        if not _ext.available():
            pytest.fail("compiled extension ssast_fast._C is not built (run scripts/test.sh)")
        yield "ext"
    else:
        with _ext.pure():
            yield "pure"
