"""The tests' doit runs are forked from a warm interpreter (doit_fork_server.py): a forked run must
end exactly as a fresh `python -m doit` would, or every other test proves less."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from doit_fork_server import ForkServer
from helpers import clean_env


def _fresh(project, *args):
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=project.root, env=project.env,
                          capture_output=True, text=True, timeout=120)


def _forked(project, *args, timeout=120):
    server = ForkServer.for_env(project.env, clean_env())
    assert server is not None
    return server.run(list(args), project.root, project.env, timeout=timeout)


def _untimed(text: str) -> str:
    return re.sub(r"\d+\.\d+ s", "T s", text)


def test_a_forked_run_prints_and_exits_like_a_fresh_interpreter(project, monkeypatch):
    monkeypatch.delenv("CATALOGUE_TESTS_FRESH_DOIT", raising=False)
    project.photo("A-1")
    forked = _forked(project, "1_face:A-1")
    assert forked.returncode == 0 and " : généré" in forked.stdout
    (project.output / "A-1" / "1_face.png").unlink()
    fresh = _fresh(project, "1_face:A-1")
    assert _untimed(forked.stdout) == _untimed(fresh.stdout)

    for args in (["no_such_task"], ["--no-such-option"]):     # doit's own refusals: exit 3 / exit 3
        forked, fresh = _forked(project, *args), _fresh(project, *args)
        assert (forked.returncode, forked.stdout, forked.stderr) == (fresh.returncode, fresh.stdout, fresh.stderr)
        assert forked.returncode != 0


def test_a_forked_run_that_outlives_its_timeout_is_killed(project, monkeypatch):
    monkeypatch.delenv("CATALOGUE_TESTS_FRESH_DOIT", raising=False)
    (project.root / "dodo.py").write_text("import time\n\ndef task_slow():\n    return {'actions': [lambda: time.sleep(30)]}\n")
    with pytest.raises(subprocess.TimeoutExpired):
        _forked(project, "slow", timeout=1)
    assert _forked(project, "list").stdout.split() == ["slow"]   # the server still serves
