#!/usr/bin/env python3
"""A tiny OCI distribution registry for warmbox's tests: serves the images of
an OCI layout read-only, behind the bearer-token flow, and can misbehave.

  fake_registry.py LAYOUT --port-file F [--repo NAME] [--corrupt-blob DIGEST]
                   [--truncate-blob DIGEST] [--fail-first N]

Prints nothing; writes its port to F once listening. GET /stats returns the
number of GETs per blob digest (JSON), so tests can see that concurrent
pulls shared one download.
"""
import argparse, json, os, threading, urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "t0k3n-for-tests"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("layout")
    p.add_argument("--port-file", required=True)
    p.add_argument("--repo", default="team/img")
    p.add_argument("--corrupt-blob", default="")
    p.add_argument("--truncate-blob", default="")
    p.add_argument("--fail-first", type=int, default=0, help="answer the first N blob GETs with 503")
    a = p.parse_args()
    with open(os.path.join(a.layout, "index.json")) as f:
        index = json.load(f)
    tags = {}
    for m in index["manifests"]:
        tags[m.get("annotations", {}).get("org.opencontainers.image.ref.name", "latest")] = m
    counts = {}
    lock = threading.Lock()
    fails = [a.fail_first]

    def blob(digest):
        path = os.path.join(a.layout, "blobs", "sha256", digest.split(":", 1)[1])
        if "/" in digest or not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()

    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, code, body=b"", ctype="application/json", headers=None, length=None):
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def challenge(self):
            host = "http://127.0.0.1:%d" % self.server.server_address[1]
            self.send(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', headers={
                "WWW-Authenticate": 'Bearer realm="%s/token",service="fake",scope="repository:%s:pull"' % (host, a.repo)})

        def do_GET(self):
            u = urllib.parse.urlparse(self.path)
            if u.path == "/stats":
                with lock:
                    return self.send(200, json.dumps(counts).encode())
            if u.path == "/token":
                q = urllib.parse.parse_qs(u.query)
                if q.get("service") != ["fake"] or q.get("scope") != ["repository:%s:pull" % a.repo]:
                    return self.send(400, b'{"error":"bad service or scope"}')
                return self.send(200, json.dumps({"token": TOKEN, "expires_in": 300}).encode())
            if self.headers.get("Authorization") != "Bearer " + TOKEN:
                return self.challenge()
            if u.path == "/v2/":
                return self.send(200, b"{}")
            prefix = "/v2/%s/" % a.repo
            if not u.path.startswith(prefix):
                return self.send(404, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
            kind, _, ref = u.path[len(prefix):].partition("/")
            if kind == "manifests":
                desc = tags.get(ref)
                digest = desc["digest"] if desc else ref
                data = blob(digest) if digest.startswith("sha256:") else None
                if data is None:
                    return self.send(404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}')
                mt = json.loads(data).get("mediaType", "application/vnd.oci.image.manifest.v1+json")
                return self.send(200, data, ctype=mt, headers={"Docker-Content-Digest": digest})
            if kind == "blobs":
                data = blob(ref)
                if data is None:
                    return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                with lock:
                    counts[ref] = counts.get(ref, 0) + 1
                    if fails[0] > 0:
                        fails[0] -= 1
                        return self.send(503, b'{"errors":[{"code":"UNAVAILABLE"}]}')
                if ref == a.corrupt_blob:
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                if ref == a.truncate_blob:
                    # Announce the full length, send half, hang up.
                    self.send(200, data[: len(data) // 2], ctype="application/octet-stream", length=len(data))
                    self.close_connection = True
                    return
                return self.send(200, data, ctype="application/octet-stream")
            return self.send(404, b"{}")

    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    tmp = a.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, a.port_file)
    srv.serve_forever()


if __name__ == "__main__":
    main()
