"""The exit code of an exec, read from the Status the API server sends on exec's error channel."""

from __future__ import annotations

from fashion_classifier.cluster.cassandra_repair import exit_code


def test_success_is_exit_code_0():
    assert exit_code({"metadata": {}, "status": "Success"}) == 0


def test_a_command_that_failed_gives_its_exit_code():
    status = {
        "metadata": {},
        "status": "Failure",
        "reason": "NonZeroExitCode",
        "message": "command terminated with non-zero exit code: error executing command [...], exit code 2",
        "details": {"causes": [{"reason": "ExitCode", "message": "2"}]},
    }
    assert exit_code(status) == 2


def test_a_failure_without_an_exit_code_is_minus_1():
    # e.g. the container does not exist, or the stream closed before the process ended
    assert exit_code({"status": "Failure", "message": 'container "cassandra" not found'}) == -1
    assert exit_code({}) == -1
