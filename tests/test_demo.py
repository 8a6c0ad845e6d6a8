"""The main job: `privacy-tracker demo` on the bundled sample mail."""

from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_from_any_folder_and_shows_several_states(tmp_path):
    env = {**os.environ, "COLUMNS": "200"}
    result = subprocess.run([sys.executable, "-m", "tracker", "demo"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for state in ("approved", "refused", "more information requested", "waiting for Meta"):
        assert state in out, state
    assert "overdue" in out
    assert "Mails to review" in out and "suspicious" in out
    assert "not sent yet" in out
    assert list(tmp_path.iterdir()) == [], "the demo leaves nothing behind in the working folder"
