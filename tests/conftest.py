"""Test-wide settings. In CI (CI=true) hypothesis draws the same examples on every run (derandomize), so a landing
cannot hinge on a lucky draw; on a developer's machine the draws stay random and keep finding new cases."""

import importlib.util
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import settings

# convzoo's numba kernels compile once per test run: their on-disk cache goes to a temporary directory for the run
# (shared by the pytest-xdist workers of one run through the run's id), never to the source tree or the user's cache,
# so every run pays (and tests) a cold compile once. Set before numba is imported.
if "NUMBA_CACHE_DIR" not in os.environ:
    _run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if _run:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(tempfile.gettempdir(), f"convzoo-numba-{_run}")
    else:
        os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="convzoo-numba-")

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI", "").lower() == "true":
    settings.load_profile("ci")

# Under pytest-xdist each worker process gets one torch thread: two workers with two OpenMP threads each on a
# 2-core machine make every parallel region wait for a descheduled thread (measured: a 0.4 s fp64 gradcheck took
# 219 s under `-n 2`, 38 s for a 338-test subset in one process against 598 s in two).
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _torch_threads_unchanged() -> Iterator[None]:
    """A test that changes torch's thread count must put it back: the next test on the worker would otherwise run on
    more threads than cores (and a timing test would measure that). Restored, then reported as an error."""
    import torch

    before = torch.get_num_threads()
    yield
    after = torch.get_num_threads()
    if after != before:
        torch.set_num_threads(before)
        pytest.fail(f"the test left torch.get_num_threads() at {after}, not {before}: restore it (try/finally)")


# Layers time their exact forms on each new input key; the suite sees thousands of keys once each, so it times one
# round per key (``quick_choices``): with full timing, form choices (warm-ups and first compiles included) took 211 s
# of the two workers' 1,170 s. test_form_choice.py times in full.
@pytest.fixture(autouse=True, scope="session")
def _quick_form_choices() -> Iterator[None]:
    from convzoo.layers.form_choice import quick_choices

    with quick_choices():
        yield


# tests/triton_interpreted/ runs convzoo's Triton kernels through Triton's interpreter, which needs TRITON_INTERPRET=1
# before triton is imported: tests/test_triton_kernels.py runs its files in a process of their own with the
# variable set. Anywhere else the directory is not collected, so the variable never reaches the other tests.
if os.environ.get("TRITON_INTERPRET", "") != "1":
    collect_ignore = ["triton_interpreted"]


def load_docs_hook(name: str) -> ModuleType:
    """The mkdocs hook docs/_hooks/NAME.py as a module (the hooks are files, not a package)."""
    path = Path(__file__).resolve().parents[1] / "docs" / "_hooks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_hook", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
