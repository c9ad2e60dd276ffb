"""Programs with ``dependencies`` run in an isolated environment cached by the dependency list."""

from __future__ import annotations

import sys

import pytest

from serverless_compat import QiskitFunction

from conftest import PROGRAMS

JOB_TIMEOUT = 300


def test_dependencies_install_into_a_cached_environment(client, qsflow_home):
    with pytest.raises(ImportError):
        __import__("tomli_w")  # not part of qsflow's own environment
    fn = client.upload(QiskitFunction(title="uses-dep", entrypoint="uses_dep.py",
                                      working_dir=str(PROGRAMS / "deps"), dependencies=["tomli-w==1.0.0"]))
    first = fn.run()
    result = first.result(cadence=1)
    assert result["dumped"] == "a = 1\n"
    assert result["module_file"].startswith(str(qsflow_home / "envs"))
    assert "Installing dependencies" in first.logs()
    second = fn.run()
    assert second.result(cadence=1) == result
    assert "Installing dependencies" not in second.logs()
    # qsflow's own interpreter was left alone.
    with pytest.raises(ImportError):
        __import__("tomli_w")
    assert sys.modules.get("tomli_w") is None


def test_failed_install_is_error_with_the_installer_message(client):
    fn = client.upload(QiskitFunction(title="bad-dep", entrypoint="uses_dep.py",
                                      working_dir=str(PROGRAMS / "deps"),
                                      dependencies=["qsflow-no-such-package-4f1c==9.9.9"]))
    job = fn.run()
    assert job.wait(timeout=JOB_TIMEOUT) == "ERROR"
    logs = job.logs()
    assert "qsflow-no-such-package-4f1c" in logs
    assert "Installing the program's dependencies failed" in job.error_message()
