"""The one error boundary (catalogue/tasks/actions.py), through real doit runs: a bug stays a bug
(exit 2, traceback on stderr and in output/.state/errors.log), the operating system's refusals become
a French message naming the path (exit 1), and one failing reference never stops the others."""

from __future__ import annotations

from helpers import fault_env

BUG = """
import catalogue.generation.view_build as vb
real = vb.build_view
def build_view(settings, job):
    if job.folder == "A-1":
        raise ZeroDivisionError("a bug in the pipeline")
    return real(settings, job)
vb.build_view = build_view
"""

DISK_FULL = """
import errno, os
import catalogue.core.files as files
real = files.atomic_write_bytes
def atomic_write_bytes(path, data):
    if "A-1" in str(path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    return real(path, data)
files.atomic_write_bytes = atomic_write_bytes
import catalogue.imaging.decode as decode
decode.atomic_write_bytes = atomic_write_bytes
"""


def test_a_bug_exits_2_with_its_traceback_on_stderr_and_in_the_log(project, tmp_path):
    project.photo("A-1")
    project.photo("B-2")
    proc = project.doit(extra_env=fault_env(tmp_path, project.env, BUG))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "ZeroDivisionError: a bug in the pipeline" in proc.stderr and "Traceback" in proc.stderr
    log = (project.output / ".state" / "errors.log").read_text()
    assert "ZeroDivisionError: a bug in the pipeline" in log and "A-1 1_face" in log
    assert "erreur inattendue" in proc.stdout and "errors.log" in proc.stdout
    assert (project.output / "B-2" / "1_face.png").exists()  # the other reference was made


def test_disk_full_is_a_french_message_naming_the_path_exit_1(project, tmp_path):
    project.photo("A-1")
    project.photo("B-2")
    proc = project.doit(extra_env=fault_env(tmp_path, project.env, DISK_FULL))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if "A-1 1_face" in ln and "ÉCHEC" in ln)
    assert "disque plein" in line and str(project.output / "A-1") in line and "libérez de la place" in line
    assert "erreur inattendue" not in proc.stdout and "Traceback" not in proc.stderr
    assert (project.output / "B-2" / "1_face.png").exists()
