"""`pyserving replay`: exit status, table and JSON output, filters, errors that say what to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from pyserving.api.cli import main
from tests.recorded_runs import RecordedServer, read_records, write_records
from tests.servables import ConstantLoader


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`replay` configures structlog for the process; leave later tests the defaults."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def two_model_log(tmp_path: Path) -> Path:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, ConstantLoader(failing=["/b/2"]), models=("a", "b"))
    server.aspire(1, model="a")
    server.aspire(1, model="b")
    server.aspire(2, model="a")
    server.aspire(2, model="b")
    server.stop()
    return log


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["replay", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_table_says_verified_and_shows_each_version(two_model_log: Path, capsys) -> None:
    code, out, _ = run(capsys, str(two_model_log))
    assert code == 0
    assert "VERIFIED" in out
    assert "model a" in out and "model b" in out
    assert out.count("version 1 (run 1)") == 2 and out.count("version 2 (run 1)") == 2
    assert "OSError: cannot read /b/2" in out
    assert "v1" in out.split("served (a):")[1]


def test_json_is_complete_for_tools(two_model_log: Path, capsys) -> None:
    code, out, _ = run(capsys, str(two_model_log), "--format=json")
    assert code == 0
    report = json.loads(out)
    assert report["verified"] is True and report["divergence"] is None
    versions = {v["version"]: v for v in report["models"]["b"]["versions"]}
    assert versions[2]["states"][-1]["state"] == "end"
    assert [s["state"] for s in versions[2]["states"]] == ["new", "loading", "error", "end"]
    assert versions[2]["load_errors"][0]["error"] == "OSError: cannot read /b/2"
    assert [s["version"] for s in report["models"]["a"]["served"]] == [1, 2]
    assert report["runs"][0]["clean_stop"] is True


def test_divergence_exits_one_with_its_seq(two_model_log: Path, capsys) -> None:
    records = read_records(two_model_log)
    i = next(
        i for i, r in enumerate(records) if r["kind"] == "transition" and r["dst"] == "available"
    )
    records[i] = {**records[i], "dst": "error", "trigger": "load_failed"}
    write_records(two_model_log, records)
    code, out, _ = run(capsys, str(two_model_log))
    assert code == 1
    assert f"DIVERGENCE at seq {records[i]['seq']} (mismatch)" in out
    assert "expected:" in out and "recorded:" in out
    code, out, _ = run(capsys, str(two_model_log), "--format=json")
    assert code == 1 and json.loads(out)["divergence"]["seq"] == records[i]["seq"]


def test_model_and_seq_filters(two_model_log: Path, capsys) -> None:
    records = read_records(two_model_log)
    second_a = next(
        r["seq"]
        for r in records
        if r["kind"] == "aspired_versions"
        and r["model"] == "a"
        and r["versions"][0]["version"] == 2
    )
    code, out, _ = run(
        capsys, str(two_model_log), "--model=a", f"--since={second_a}", "--format=json"
    )
    assert code == 0
    report = json.loads(out)
    assert list(report["models"]) == ["a"]
    for version in report["models"]["a"]["versions"]:
        for span in version["states"]:
            assert span["until_seq"] is None or span["until_seq"] >= second_a
    # v1 was loading long before: its new and loading spans are filtered out.
    v1 = next(v for v in report["models"]["a"]["versions"] if v["version"] == 1)
    assert [s["state"] for s in v1["states"]] == ["available", "unloading", "end"]
    code, out, _ = run(capsys, str(two_model_log), f"--until={second_a}", "--format=json")
    versions_a = {v["version"] for v in json.loads(out)["models"]["a"]["versions"]}
    assert versions_a == {1, 2}  # v2 appears: it was aspired at that very seq
    code, out, _ = run(capsys, str(two_model_log), f"--until={second_a - 1}", "--format=json")
    assert {v["version"] for v in json.loads(out)["models"]["a"]["versions"]} == {1}


def test_state_at_a_time(two_model_log: Path, capsys) -> None:
    records = read_records(two_model_log)
    i = next(i for i, r in enumerate(records) if r["kind"] == "shutdown_requested")
    shutdown = records[i]
    between = (records[i - 1]["time"] + shutdown["time"]) / 2  # settled, not yet stopping
    moment = datetime.fromtimestamp(between, UTC).isoformat()
    code, out, _ = run(capsys, str(two_model_log), f"--state-at={moment}", "--format=json")
    assert code == 0
    states = {(s["model"], s["version"]): s["state"] for s in json.loads(out)["state_at"]}
    assert states == {
        ("a", 1): "end",
        ("a", 2): "available",
        ("b", 1): "available",
        ("b", 2): "error",
    }
    code, out, _ = run(capsys, str(two_model_log), f"--state-at={shutdown['seq'] - 1}")
    assert "state at seq" in out and "available" in out and "model a" not in out


def test_at_a_moment_says_which_version_and_bytes_each_request_got(tmp_path: Path, capsys) -> None:
    log = tmp_path / "events.jsonl"
    server = RecordedServer(log, fingerprints=True)
    server.aspire(1, 2)
    server.set_labels(stable=1)
    server.stop()
    capsys.readouterr()  # the server's own log lines
    records = read_records(log)
    labelled = next(r["seq"] for r in records if r["kind"] == "label_moved")
    code, out, _ = run(capsys, str(log), f"--at={labelled}", "--model=m", "--format=json")
    assert code == 0
    report = json.loads(out)
    assert {(s["version"], s["fingerprint"]) for s in report["state_at"]} == {
        (1, "sha256:/m/1"),
        (2, "sha256:/m/2"),
    }
    assert report["serving_at"] == [
        {"model": "m", "as": "latest", "version": 2, "fingerprint": "sha256:/m/2"},
        {"model": "m", "as": "label stable", "version": 1, "fingerprint": "sha256:/m/1"},
    ]
    code, out, _ = run(capsys, str(log), f"--at={labelled - 1}")  # before the label moved
    assert "serving at seq" in out and "label stable" not in out
    assert out.count("sha256:/m/2") == 2  # v2's state line, and what "latest" got


def test_bad_moment_and_missing_file_say_what_to_do(two_model_log: Path, capsys) -> None:
    code, _, err = run(capsys, str(two_model_log), "--since=yesterday")
    assert code == 2 and "ISO 8601" in err
    code, _, err = run(capsys, str(two_model_log.with_name("nope.jsonl")))
    assert code == 2 and "no event log at" in err


def test_help_lists_every_option(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for option in ("--format", "--model", "--since", "--until", "--state-at", "LOG"):
        assert option in out
