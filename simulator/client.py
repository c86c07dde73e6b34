"""HTTP to the platform with the standard library only: a transport, tokens, JSON and multipart.

``HttpTransport`` speaks to a running server (``make run``, gunicorn, pytest-django's live server);
``Client`` is one user: it logs in through ``POST /api/auth/token/`` and sends that token with
every call. The simulator never touches the database or the platform's code: what it does, a
person with a browser or curl could do.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any


class ApiError(RuntimeError):
    """The platform answered with a status the caller did not expect."""

    def __init__(self, method: str, path: str, status: int, body: Any) -> None:
        self.status, self.body = status, body
        super().__init__(f"{method} {path} answered {status}: {str(body)[:500]}")


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any  # parsed JSON, or the text when the body is not JSON, or None when empty
    headers: dict[str, str]


class HttpTransport:
    """Send requests to ``base_url`` with urllib; retry a refused connection a few times (a server starting)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.requests, self.seconds = 0, 0.0  # how many requests were sent, and how long they took in all

    def request(self, method: str, path: str, *, headers: dict[str, str], body: bytes | None) -> Reply:
        started = time.monotonic()
        try:
            return self._send(method, path, headers=headers, body=body)
        finally:
            self.requests += 1
            self.seconds += time.monotonic() - started

    def _send(self, method: str, path: str, *, headers: dict[str, str], body: bytes | None) -> Reply:
        request = urllib.request.Request(self.base_url + path, data=body, headers=headers, method=method)
        for attempt in range(5):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return _reply(response.status, response.read(), dict(response.headers))
            except urllib.error.HTTPError as error:
                return _reply(error.code, error.read(), dict(error.headers))
            except (ConnectionRefusedError, ConnectionResetError, urllib.error.URLError) as error:
                if attempt == 4 or not isinstance(getattr(error, "reason", error), ConnectionError | OSError):
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")


def _reply(status: int, raw: bytes, headers: dict[str, str]) -> Reply:
    text = raw.decode("utf-8", errors="replace")
    if not text:
        return Reply(status, None, headers)
    try:
        return Reply(status, json.loads(text), headers)
    except json.JSONDecodeError:
        return Reply(status, text, headers)


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    """Encode form fields and files as multipart/form-data; return (body, content type)."""
    boundary = uuid.uuid4().hex
    parts: list[bytes] = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, content) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n".encode() + content + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Client:
    """One user of the platform, with their token."""

    def __init__(self, transport: HttpTransport, username: str, password: str) -> None:
        self.transport, self.username = transport, username
        body = urllib.parse.urlencode({"username": username, "password": password}).encode()
        reply = transport.request("POST", "/api/auth/token/", body=body,
                                  headers={"Content-Type": "application/x-www-form-urlencoded"})
        if reply.status != 200:
            raise ApiError("POST", "/api/auth/token/", reply.status, reply.body)
        self.token = reply.body["token"]

    def call(self, method: str, path: str, payload: Any = None, *, expect: tuple[int, ...] = (200,),
             headers: dict[str, str] | None = None) -> Reply:
        """Send ``payload`` as JSON (if any); raise ApiError unless the status is one of ``expect``."""
        body = None if payload is None else json.dumps(payload).encode()
        sent = {"Authorization": f"Token {self.token}", "Accept": "application/json", **(headers or {})}
        if body is not None:
            sent["Content-Type"] = "application/json"
        reply = self.transport.request(method, path, headers=sent, body=body)
        if reply.status not in expect:
            raise ApiError(method, path, reply.status, reply.body)
        return reply

    def get(self, path: str, **kwargs) -> Any:
        return self.call("GET", path, **kwargs).body

    def post(self, path: str, payload: Any = None, **kwargs) -> Reply:
        return self.call("POST", path, payload, **kwargs)

    def upload(self, path: str, *, fields: dict[str, str], filename: str, content: bytes,
               expect: tuple[int, ...] = (201,)) -> Any:
        """POST a multipart form with one file (an import); return the parsed answer."""
        body, content_type = multipart(fields, {"file": (filename, content)})
        reply = self.transport.request("POST", path, body=body, headers={
            "Authorization": f"Token {self.token}", "Accept": "application/json", "Content-Type": content_type,
        })
        if reply.status not in expect:
            raise ApiError("POST", path, reply.status, reply.body)
        return reply.body

    def all_pages(self, path: str) -> list[dict]:
        """GET every page of a paginated list, following its ``next`` links (or a plain list)."""
        separator = "&" if "?" in path else "?"
        items: list[dict] = []
        url = f"{path}{separator}limit=200"
        while True:
            page = self.get(url)
            if isinstance(page, list):
                return page
            items += page["results"]
            if not page.get("next"):
                return items
            parts = urllib.parse.urlsplit(page["next"])  # an absolute link: keep its path and query for this client
            url = f"{parts.path}?{parts.query}"
