"""An HTTP proxy that misbehaves like an object store under load, in front of a real S3-compatible server.

    python tests/faultproxy.py --target http://127.0.0.1:PORT --port P [--rate 0.15] [--seed 1] [--log FILE]

For a share ``--rate`` of requests it does one of what S3 does to clients under load, picked by a seeded random
generator: answers ``503 SlowDown`` (S3's throttling error, without passing the request on), resets the
connection before answering (the request may or may not have reached the server: here it has not), resets it
after passing the request on (a GET whose body stops half-way; any other request applied by the server, its answer
never sent), or answers slowly (a delay before passing the request on). Every request is logged, one JSON line
(method, path, query, status, fault), so a test can count what reached the server.

It binds to 127.0.0.1 only and prints ``listening <port>`` once ready; tests start it as a subprocess and stop it by
its pid. Nothing of curate is imported: it stands for the network, not for the code under test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

FAULTS = ("slowdown", "reset_before", "reset_body", "slow")
SLOWDOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
            b"<Message>Please reduce your request rate.</Message><RequestId>faultproxy</RequestId></Error>")
HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}


class Proxy(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, target: str, rate: float, seed: int, log: str | None, faults: tuple[str, ...]):
        super().__init__(("127.0.0.1", port), Handler)
        u = urlsplit(target)
        self.target = (u.hostname, u.port or 80)
        self.rate, self.faults = rate, faults
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.log = open(log, "a", buffering=1) if log else None

    def pick(self) -> str | None:
        with self.lock:
            return self.rng.choice(self.faults) if self.rng.random() < self.rate else None

    def record(self, **entry) -> None:
        if self.log is not None:
            with self.lock:
                self.log.write(json.dumps(entry) + "\n")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Proxy

    def log_message(self, *args) -> None:  # the request log is the JSON lines, not stderr
        pass

    def _reset(self) -> None:
        """Close with RST (SO_LINGER 0), as a load balancer dropping the connection does."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _handle(self) -> None:
        body = self._body()
        fault = self.server.pick()
        path, _, query = self.path.partition("?")
        entry = {"t": round(time.time(), 3), "method": self.command, "path": path, "query": query, "fault": fault}
        if fault == "slowdown":
            self.server.record(**entry, status=503)
            self.send_response(503, "Slow Down")
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(SLOWDOWN)))
            self.end_headers()
            self.wfile.write(SLOWDOWN)
            return
        if fault == "reset_before":
            self.server.record(**entry, status=None)
            self._reset()
            return
        if fault == "slow":
            time.sleep(self.server.rng.uniform(0.2, 1.0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP and k.lower() != "expect"}
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection(*self.server.target, timeout=60)
        try:
            conn.request(self.command, self.path, body=body if body or self.command in ("PUT", "POST") else None,
                         headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.server.record(**entry, status=resp.status)
        if fault == "reset_body" and (self.command != "GET" or len(data) < 2):
            self._reset()  # the server applied it; its answer never comes
            return
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in HOP and (k.lower() != "content-length" or self.command == "HEAD"):
                self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if fault == "reset_body":  # a GET whose body stops half-way
            self.wfile.write(data[:len(data) // 2])
            self.wfile.flush()
            self._reset()
            return
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--target", required=True, help="the S3-compatible server, http://127.0.0.1:PORT")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--rate", type=float, default=0.15, help="share of requests that get a fault")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"which faults, of {','.join(FAULTS)}")
    p.add_argument("--log", help="append one JSON line per request here")
    args = p.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        p.error(f"unknown faults: {sorted(unknown)}")
    server = Proxy(args.port, args.target, args.rate, args.seed, args.log, faults)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
