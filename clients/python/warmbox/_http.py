"""The HTTP transport (``warmbox pool start --http ADDR:PORT``, docs/openapi.yaml).

One connection per call (``http.client``): a Client is then safe to share
between threads, and closing a streamed run's connection cancels its command,
as on the Unix socket.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import socket
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import urlsplit

from . import _codec
from .errors import DaemonUnavailable, ProtocolError
from .types import Output, PoolStatus, Result

NDJSON = "application/x-ndjson"


def parse_url(url: str) -> Tuple[str, str, int, str]:
    """(scheme, host, port, path prefix) of a base URL like ``http://127.0.0.1:8080``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"url: expected http:// or https://, got {url!r}")
    if not parts.hostname:
        raise ValueError(f"url: no host in {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"url: bad port in {url!r}") from None
    if port is None:
        port = 443 if parts.scheme == "https" else 80
    if parts.query or parts.fragment:
        raise ValueError(f"url: a base URL has no query or fragment: {url!r}")
    return parts.scheme, parts.hostname, port, parts.path.rstrip("/")


class HttpTransport:
    """Talks to the daemon's HTTP API at ``url`` with an optional bearer token."""

    def __init__(self, url: str, token: Optional[str], timeout: Optional[float]) -> None:
        self.url = url
        self.scheme, self.host, self.port, self.prefix = parse_url(url)
        self.token = token
        self.timeout = timeout

    def describe(self) -> str:
        return self.url

    def _request(self, method: str, path: str, body: Optional[bytes], accept: str,
                 read_timeout: Optional[float]) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        headers: Dict[str, str] = {"Accept": accept, "User-Agent": "warmbox-python"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        where = f"{self.url}{path}"
        try:
            try:
                conn.connect()
            except socket.timeout:
                raise DaemonUnavailable(f"connecting to {self.url} timed out", kind="timeout") from None
            except OSError as e:
                raise DaemonUnavailable(f"cannot connect to {self.url}: {e.strerror or e}") from None
            assert conn.sock is not None
            conn.sock.settimeout(read_timeout)
            try:
                conn.request(method, self.prefix + path, body=body, headers=headers)
                resp = conn.getresponse()
            except socket.timeout:
                raise DaemonUnavailable(f"no answer from {where} within the client's timeout",
                                        kind="timeout") from None
            except (http.client.HTTPException, OSError) as e:
                raise DaemonUnavailable(f"{method} {where}: {e}") from None
        except BaseException:
            conn.close()
            raise
        return conn, resp

    def _read(self, resp: http.client.HTTPResponse, where: str) -> bytes:
        try:
            return resp.read()
        except socket.timeout:
            raise DaemonUnavailable(f"no answer from {where} within the client's timeout", kind="timeout") from None
        except (http.client.HTTPException, OSError) as e:
            raise DaemonUnavailable(f"reading {where}: {e}") from None

    def _call(self, method: str, path: str, body: Optional[bytes], accept: str,
              read_timeout: Optional[float]) -> Tuple[int, bytes, http.client.HTTPResponse]:
        conn, resp = self._request(method, path, body, accept, read_timeout)
        try:
            data = self._read(resp, self.url + path)
        finally:
            conn.close()
        return resp.status, data, resp

    def _ok_json(self, method: str, path: str, body: Optional[bytes], read_timeout: Optional[float]) -> Any:
        status, data, resp = self._call(method, path, body, "application/json", read_timeout)
        if status != 200:
            raise _codec.http_error(status, data, resp.getheader("Retry-After"))
        return _codec.loads(data, self.url + path)

    # -- operations ----------------------------------------------------------------

    def run(self, req: dict, read_timeout: Optional[float]) -> Result:
        obj = self._ok_json("POST", "/v1/run", _codec.http_run_body(req), read_timeout)
        return _codec.result_from(obj, _codec.b64, self.url + "/v1/run")

    def stream(self, req: dict, read_timeout: Optional[float]) -> "HttpStream":
        conn, resp = self._request("POST", "/v1/run", _codec.http_run_body(req), NDJSON, read_timeout)
        try:
            if resp.status != 200:
                data = self._read(resp, self.url + "/v1/run")
                raise _codec.http_error(resp.status, data, resp.getheader("Retry-After"))
            return HttpStream(self.url + "/v1/run", conn, resp)
        except BaseException:
            conn.close()
            raise

    def status(self) -> List[PoolStatus]:
        return _codec.pools_from(self._ok_json("GET", "/v1/pools", None, self.timeout), self.url + "/v1/pools")

    def healthz(self) -> bool:
        status, data, resp = self._call("GET", "/healthz", None, "application/json", self.timeout)
        if status == 503:
            return False
        if status != 200:
            raise _codec.http_error(status, data, resp.getheader("Retry-After"))
        obj = _codec.loads(data, self.url + "/healthz")
        return isinstance(obj, dict) and obj.get("ok") is True

    def metrics(self) -> str:
        status, data, resp = self._call("GET", "/metrics", None, "text/plain", self.timeout)
        if status != 200:
            raise _codec.http_error(status, data, resp.getheader("Retry-After"))
        return data.decode("utf-8")


class HttpStream:
    """NDJSON lines of one streamed run on its own connection.

    A daemon that answers a streamed request with one JSON body (no NDJSON) is
    read as if it had streamed that body's output in one chunk per stream.
    """

    def __init__(self, where: str, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        self._where = where
        self._conn: Optional[http.client.HTTPConnection] = conn
        self._resp = resp
        ctype = (resp.getheader("Content-Type") or "").split(";")[0].strip().lower()
        self._pending: List[Union[Output, Result]] = []
        if ctype != NDJSON:
            self._whole_body()

    def _whole_body(self) -> None:
        try:
            data = self._resp.read()
        except (http.client.HTTPException, OSError) as e:
            raise DaemonUnavailable(f"reading {self._where}: {e}") from None
        r = _codec.result_from(_codec.loads(data, self._where), _codec.b64, self._where)
        if r.stdout:
            self._pending.append(Output("stdout", r.stdout))
        if r.stderr:
            self._pending.append(Output("stderr", r.stderr))
        self._pending.append(dataclasses.replace(r, stdout=b"", stderr=b""))

    def next(self) -> Union[Output, Result]:
        if self._pending:
            return self._pending.pop(0)
        if self._conn is None:
            raise ProtocolError("stream already closed")
        while True:
            try:
                line = self._resp.readline()
            except socket.timeout:
                raise DaemonUnavailable(f"no output from {self._where} within the client's timeout",
                                        kind="timeout") from None
            except (http.client.HTTPException, OSError) as e:
                raise DaemonUnavailable(f"reading {self._where}: {e}") from None
            if not line:
                raise DaemonUnavailable(f"{self._where}: the stream ended without a final result")
            if line.strip():
                break
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ProtocolError(f"{self._where}: invalid NDJSON line from the daemon: {e}") from None
        return _codec.event_from(obj, _codec.b64, self._where)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
