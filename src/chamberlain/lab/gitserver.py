"""The lab's Git server: ``git http-backend`` (Git's own smart-HTTP server, a CGI program) behind a small HTTP
server on loopback, so Flux's source-controller clones the lab repository the way it clones a real one.

Boundary: this file is the server *process* only, started by :class:`chamberlain.lab.servers.GitServer` as
``python -I gitserver.py --root DIR --port N --git PATH``. It imports the standard library alone, so the process
runs whichever chamberlain checkout started it, and everything it needs comes from its argv (it reads no
environment variable; ``git http-backend`` gets a CGI environment built here, nothing of the caller's).

Every repository under ``--root`` is served (``GIT_HTTP_EXPORT_ALL``); pushes are allowed where the repository's
``http.receivepack`` is true, which the lab sets on the repositories it creates. No authentication: it listens on
127.0.0.1 only and holds lab data only.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

#: A push of the lab's rendered tree is kilobytes; refuse what is clearly not that.
MAX_BODY = 64 * 2**20


def cgi_environment(
    *, root: Path, method: str, target: str, headers: dict[str, str], remote: str, body_length: int
) -> dict[str, str]:
    """The CGI variables ``git http-backend`` reads for one request (pure: tests check it)."""
    parts = urlsplit(target)
    env = {
        "GIT_PROJECT_ROOT": str(root),
        "GIT_HTTP_EXPORT_ALL": "1",
        # Git reads no user or system configuration of whoever runs the lab.
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(root),
        "PATH_INFO": parts.path,
        "QUERY_STRING": parts.query,
        "REQUEST_METHOD": method,
        "REMOTE_ADDR": remote,
        "CONTENT_LENGTH": str(body_length),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "GATEWAY_INTERFACE": "CGI/1.1",
    }
    lowered = {k.lower(): v for k, v in headers.items()}
    if "content-type" in lowered:
        env["CONTENT_TYPE"] = lowered["content-type"]
    # http-backend inflates a gzip-encoded request body itself, and speaks protocol v2 when asked.
    for header, variable in (("content-encoding", "HTTP_CONTENT_ENCODING"), ("git-protocol", "GIT_PROTOCOL")):
        if header in lowered:
            env[variable] = lowered[header]
    return env


def split_cgi_output(output: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
    """A CGI response (``Status:`` and headers, a blank line, the body) as status, headers and body."""
    head, sep, body = output.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = output.partition(b"\n\n")
    status, headers = 200, []
    for raw in head.decode("latin-1").splitlines():
        name, _, value = raw.partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        elif name:
            headers.append((name.strip(), value.strip()))
    return status, headers, body


class _Handler(BaseHTTPRequestHandler):
    server_version = "chamberlain-lab-git"
    root: Path
    git: str

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            # git sends a large push chunked (past http.postBuffer); decode it here, CGI wants a length.
            chunks: list[bytes] = []
            total = 0
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        try:
            body = self._body()
        except ValueError as exc:
            self.send_error(413, str(exc))
            return
        env = cgi_environment(root=self.root, method=self.command, target=self.path,
                              headers=dict(self.headers.items()), remote=self.client_address[0],
                              body_length=len(body))
        proc = subprocess.run([self.git, "http-backend"], input=body, env=env, capture_output=True, check=False)
        if proc.stderr:
            sys.stderr.write(proc.stderr.decode("utf-8", errors="replace"))
        status, headers, payload = split_cgi_output(proc.stdout)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="the chamberlain lab's Git server (git http-backend over HTTP)")
    parser.add_argument("--root", type=Path, required=True, help="directory holding the bare repositories")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--git", required=True, help="path of the git binary")
    args = parser.parse_args(argv)
    handler = type("Handler", (_Handler,), {"root": args.root.resolve(), "git": args.git})
    with ThreadingHTTPServer((args.host, args.port), handler) as httpd:
        sys.stderr.write(f"serving {args.root} on http://{args.host}:{args.port}/\n")
        sys.stderr.flush()
        httpd.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
