"""tests/conftest.py's rule for the shared test data: a test that needs it is skipped where it is absent, and
fails where the environment says CI=true (CI must not pass by skipping the real-data tests)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).resolve().parent / "conftest.py"


@pytest.mark.parametrize("ci, outcome", [("true", "1 error"), (None, "1 skipped"), ("false", "1 skipped")])
def test_missing_shared_data_is_a_skip_outside_ci_and_an_error_in_ci(tmp_path, ci, outcome):
    suite = tmp_path / "tests"
    suite.mkdir()
    shutil.copy(CONFTEST, suite / "conftest.py")
    (suite / "test_needs_data.py").write_text("def test_needs_data(shared_data):\n    assert shared_data.is_dir()\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TEXTSSR_SHARED_DATA"] = str(tmp_path / "no_such_folder")
    if ci is not None:
        env["CI"] = ci
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(suite)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert outcome in done.stdout, done.stdout[-3000:]
    assert "shared test data not found at" in done.stdout
    assert done.returncode == (1 if ci == "true" else 0), done.stdout[-3000:]
