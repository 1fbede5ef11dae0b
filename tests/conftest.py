"""Shared fixtures: where the real test data lives, and a temporary working directory."""
import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TEXTSSR_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real test data: its tests are skipped where it is absent, a failure where CI=true (there they must run)."""
    if not SHARED_DATA.is_dir():
        message = f"shared test data not found at {SHARED_DATA} (set TEXTSSR_SHARED_DATA)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + "; CI=true, so the tests that need it must run")
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session")
def icdar15_dir(shared_data) -> Path:
    return shared_data / "icdar15_toy"


@pytest.fixture(scope="session")
def bench_mini_dir(shared_data) -> Path:
    """Folder holding `benchmark/{ic13,shopsign}/test.json` (data_root relative to this folder)."""
    return shared_data / "textssr_bench_mini"


@pytest.fixture(scope="session")
def real_crops_dir(shared_data) -> Path:
    return shared_data / "real_word_crops"


@pytest.fixture(scope="session")
def jpeg_window() -> None:
    """The optional C extension textssr.data._jpeg_window: skipped where it was not built (no libjpeg-turbo
    headers), a failure where TEXTSSR_REQUIRE_JPEG_WINDOW=1 (CI sets it: there it must be built)."""
    from textssr.data.image_io import WINDOW_DECODING

    if not WINDOW_DECODING:
        message = "textssr.data._jpeg_window not built (install libjpeg-turbo's headers, then pip install -e .)"
        if os.environ.get("TEXTSSR_REQUIRE_JPEG_WINDOW") == "1":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def fake_precision(monkeypatch):
    """``fake_precision(name)`` makes textssr.runtime.precision.choose run both candidates once and return ``name``
    ("bf16" or "no") without timing anything; returns the list of choices made so far."""
    import textssr.runtime.precision as precision
    seen = []

    def install(name):
        def fake(device, run_fp32, run_bf16, native_bf16=None, timer=None):
            run_fp32()
            run_bf16()
            seen.append(name)
            return precision.Choice(name, "faked", {"float32": 2.0, "bfloat16": 1.0} if name == "bf16" else {})

        monkeypatch.setattr(precision, "choose", fake)
        return seen

    return install


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``), as the
    subprocess tests run: cheaper on a shared 2-core machine, and runs compared pixel for pixel use the same float
    reduction order."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reset_accelerate() -> None:
    """Forget accelerate's process-wide state, so that the next Accelerator in this process starts afresh."""
    from accelerate.state import AcceleratorState, GradientState
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()


@pytest.fixture
def fresh_accelerate_state():
    """accelerate's state reset before and after the test."""
    reset_accelerate()
    yield
    reset_accelerate()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (for a launch's rendezvous or a local server)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_ic13_regions(bench_mini_dir: Path, folder: Path) -> Path:
    """An AnyWord JSON of three real ic13 bench photos (11 words; absolute data_root) in ``folder``: the regions of
    the multi-process synthesis tests."""
    import json
    ic13 = json.loads((bench_mini_dir / "benchmark/ic13/test.json").read_text(encoding="utf-8"))
    path = folder / "source.json"
    path.write_text(json.dumps({"data_root": str(bench_mini_dir / "benchmark/ic13/images"),
                                "data_list": ic13["data_list"][1:4]}), encoding="utf-8")
    return path
