from __future__ import annotations

import pytest

from fashion_classifier.cli import main
from fashion_classifier.config import Settings
from fashion_classifier.predlog.sqlite_log import SqliteLog

from .conftest import make_record


@pytest.fixture
def sqlite_env(tmp_path, monkeypatch):
    monkeypatch.setenv("FC_PREDLOG", "sqlite")
    monkeypatch.setenv("FC_SQLITE_PATH", str(tmp_path / "p.sqlite3"))
    monkeypatch.setenv("FC_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path


def test_migrate_sqlite_twice(sqlite_env, capsys):
    assert main(["migrate"]) == 0
    assert "applied migration(s) 1" in capsys.readouterr().out
    assert main(["migrate"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_history_prints_a_table_with_escaped_names(sqlite_env, capsys):
    log = SqliteLog(Settings(sqlite_path=sqlite_env / "p.sqlite3", spool_dir=sqlite_env / "spool"))
    recs = [make_record(i, filename=name) for i, name in enumerate(["a.png", "evil\x1b[31m\nname.png"])]
    for rec in recs:
        log.record(rec)
    log.add_feedback(recs[0].id, 0)
    assert log.flush()
    log.close()
    assert main(["history", "--limit", "5"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "id"]
    assert str(recs[1].id) in lines[2] and str(recs[0].id) in lines[3]  # newest first
    assert "\x1b" not in out and "evil\\x1b[31m\\nname.png" in out
    assert "ok T-shirt/top" in lines[3]


def test_history_of_an_empty_day(sqlite_env, capsys):
    assert main(["history", "--day", "2001-01-01"]) == 0
    assert "no predictions logged on 2001-01-01" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["history", "--day", "2026-13-01"], ["history", "--limit", "0"]])
def test_bad_arguments_are_one_line_errors(sqlite_env, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_off_backend_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.setenv("FC_PREDLOG", "off")
    assert main(["history"]) == 2
    assert "FC_PREDLOG=off" in capsys.readouterr().err


def test_unreachable_cassandra_fails_migrate_quickly(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FC_PREDLOG", "cassandra")
    monkeypatch.setenv("FC_CASSANDRA_HOSTS", "127.0.0.1")
    monkeypatch.setenv("FC_CASSANDRA_PORT", "1")  # nothing listens there
    monkeypatch.setenv("FC_CASSANDRA_CONNECT_TIMEOUT", "1")
    assert main(["migrate", "--wait", "0"]) == 3
    assert "not reachable" in capsys.readouterr().err


class _FakeCluster:
    """Stands in for the driver's Cluster, so that these tests check the retry alone; the real
    migration runs on the real cluster in test_cassandra_log.py."""

    def __init__(self) -> None:
        self.shut_down = False

    def connect(self) -> object:
        return object()

    def shutdown(self) -> None:
        self.shut_down = True


def _failing_migration(monkeypatch, failures: int) -> tuple[list[int], _FakeCluster]:
    from cassandra import InvalidRequest

    from fashion_classifier.predlog import cassandra_schema, cassandra_session

    calls, cluster = [], _FakeCluster()

    def migrate(*args, **kwargs) -> list[int]:
        calls.append(1)
        if len(calls) <= failures:
            raise InvalidRequest('Error from server: code=2200 message="keyspace fashion does not exist"')
        return [1]

    monkeypatch.setenv("FC_PREDLOG", "cassandra")
    monkeypatch.setattr(cassandra_session, "build_cluster", lambda settings: cluster)
    monkeypatch.setattr(cassandra_schema, "migrate", migrate)
    return calls, cluster


def test_migrate_runs_again_after_a_transient_cassandra_error(monkeypatch, capsys):
    calls, cluster = _failing_migration(monkeypatch, failures=1)
    assert main(["migrate", "--wait", "30"]) == 0
    out, err = capsys.readouterr()
    assert len(calls) == 2 and "applied migration(s) 1" in out
    assert "retrying" in err and "does not exist" in err
    assert cluster.shut_down


def test_migrate_that_keeps_failing_ends_with_one_line(monkeypatch, capsys):
    calls, cluster = _failing_migration(monkeypatch, failures=100)
    assert main(["migrate", "--wait", "0"]) == 3
    err = capsys.readouterr().err
    assert len(calls) == 1 and cluster.shut_down
    assert "schema migration on Cassandra" in err and "does not exist" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_keyspace_name_is_refused(monkeypatch, capsys):
    monkeypatch.setenv("FC_PREDLOG", "cassandra")
    monkeypatch.setenv("FC_CASSANDRA_KEYSPACE", "x; DROP KEYSPACE y")
    assert main(["migrate", "--wait", "0"]) == 2
    assert "FC_CASSANDRA_KEYSPACE" in capsys.readouterr().err
