"""The simulator's HTTP transport against a real local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulator.client import HttpTransport


class _Flaky(BaseHTTPRequestHandler):
    """Answer 503 with Retry-After (as config.database_outage does) ``outages`` times, then 200."""

    outages = 0
    seen: list[str] = []

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append(self.path)
        if type(self).outages > 0:
            type(self).outages -= 1
            self._answer(503, {"detail": "The database is unavailable for a moment.", "retry_after": 0},
                         {"Retry-After": "0"})
        else:
            self._answer(201, {"ok": True}, {})

    def _answer(self, status, body, headers):
        raw = json.dumps(body).encode()
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen = []
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def test_a_503_with_retry_after_is_waited_out_and_sent_again(server):
    _Flaky.outages = 2
    transport = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}")

    reply = transport.request("POST", "/api/rankings/", headers={}, body=b"{}")

    assert reply.status == 201 and reply.body == {"ok": True}
    assert _Flaky.seen == ["/api/rankings/"] * 3 and transport.unavailable == 2


def test_a_database_that_stays_unavailable_is_reported_after_the_retries(server):
    _Flaky.outages = 100
    transport = HttpTransport(f"http://127.0.0.1:{server.server_address[1]}", unavailable_retries=2)

    reply = transport.request("POST", "/api/rankings/", headers={}, body=b"{}")

    assert reply.status == 503 and len(_Flaky.seen) == 3
