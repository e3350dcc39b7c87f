"""lava submit's pieces that need no server: credentials, URLs, the job's record,
and the one-line errors of a server that is down or refuses the token."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.errors import BadInput
from orchestrator.lava import logs, replay
from orchestrator.lava import submit as lava_submit

SECRET = "s3cr3t-token-value"


def test_server_root_from_a_url_or_lavacli_uri() -> None:
    assert lava_submit._root("http://127.0.0.1:8000") == "http://127.0.0.1:8000/"
    assert lava_submit._root("https://lava.example.org/RPC2") == "https://lava.example.org/"
    assert lava_submit._root("https://example.org/lava/RPC2/") == "https://example.org/lava/"
    with pytest.raises(BadInput, match="not an http"):
        lava_submit._root("lava.example.org")


def test_token_from_the_environment_or_a_lavacli_identity(tmp_path: Path) -> None:
    config = tmp_path / "lavacli.yaml"
    server = lava_submit.server_from("http://h:1/", None, {"LAVA_TOKEN": SECRET}, config)
    assert (server.url, server.token) == ("http://h:1/", SECRET)
    assert SECRET not in repr(server)
    config.write_text("default: {uri: 'https://lab/RPC2', username: u, token: T1}\n"
                      "other: {uri: 'https://other/RPC2', token: T2}\n")
    assert lava_submit.server_from(None, None, {}, config) == lava_submit.Server(
        "https://lab/", "T1")
    assert lava_submit.server_from(None, "other", {}, config).url == "https://other/"
    # --server wins over the identity's uri; $LAVA_TOKEN over its token
    assert lava_submit.server_from("http://x/", "other", {"LAVA_TOKEN": "E"}, config) == \
        lava_submit.Server("http://x/", "E")
    with pytest.raises(BadInput, match="no lavacli identity 'third'"):
        lava_submit.server_from(None, "third", {}, config)


def test_no_server_or_no_token_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "none.yaml"
    with pytest.raises(BadInput, match=r"no \$LAVA_TOKEN and no lavacli identity"):
        lava_submit.server_from("http://h/", None, {}, missing)
    with pytest.raises(BadInput, match="no --server URL"):
        lava_submit.server_from(None, None, {"LAVA_TOKEN": SECRET}, missing)
    bad = tmp_path / "bad.yaml"
    bad.write_text("default: {uri: 'https://lab/RPC2'}\n")
    with pytest.raises(BadInput, match="identity 'default' has no token"):
        lava_submit.server_from(None, None, {}, bad)


def test_an_unreachable_server_is_bad_input() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once we leave: nothing listens
    server = lava_submit.Server(f"http://127.0.0.1:{port}/", SECRET)
    with pytest.raises(BadInput, match="cannot be reached") as caught:
        lava_submit.check(server)
    assert SECRET not in caught.value.message


@pytest.fixture
def refusing_server() -> Iterator[str]:
    """An HTTP server that answers every request 401 with DRF's message."""
    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = json.dumps({"detail": "Invalid token."}).encode()
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_refused_token_is_bad_input(refusing_server: str) -> None:
    with pytest.raises(BadInput, match="refused the token") as caught:
        lava_submit.check(lava_submit.Server(refusing_server, SECRET))
    assert SECRET not in caught.value.message and "\n" not in caught.value.message


def _job(**fields: str) -> lava_submit.Job:
    job = lava_submit.Job("b922307a", 7)
    job.update({"state": "Finished", "actual_device": "qemu-02",
                "submit_time": "2026-12-02T15:00:00.000000Z",
                "start_time": "2026-12-02T15:00:12.500000Z",
                "end_time": "2026-12-02T15:02:00.000000Z", **fields})
    return job


def test_a_job_record_says_where_it_ran_and_how_long_it_waited() -> None:
    job = _job(health="Complete")
    assert (job.queued_seconds, job.run_seconds) == (12.5, 107.5)
    assert job.describe() == "job 7: finished on qemu-02, Complete"
    assert job.error == ""
    queued = lava_submit.Job("b922307a", 8)
    assert queued.update({"state": "Submitted"}) is True  # the first answer is news
    assert queued.update({"state": "Submitted"}) is False
    assert queued.describe() == "job 8: queued, waiting for a device"
    assert queued.queued_seconds is None
    assert queued.update({"state": "Scheduled", "actual_device": "qemu-01"}) is True
    assert queued.describe() == "job 8: queued, scheduled on qemu-01"


def test_an_incomplete_or_canceled_job_carries_lavas_message() -> None:
    assert _job(health="Incomplete", failure_comment="Job timed out").error == \
        "LAVA job 7 Incomplete: Job timed out"
    assert _job(health="Canceled").error == "LAVA job 7 Canceled"


def test_the_servers_error_leads_the_jobs_error_at_import() -> None:
    server = {"error": "LAVA job 7 Canceled"}
    assert replay.with_server_error(None, server).error == "LAVA job 7 Canceled"
    logged = logs.JobLog({}, [], "lava-run: Job canceled", 1.0)
    assert replay.with_server_error(logged, server).error == \
        "LAVA job 7 Canceled; lava-run: Job canceled"
    untouched = logs.JobLog({}, [], "", 1.0)
    assert replay.with_server_error(untouched, {"error": None}) is untouched
