#!/usr/bin/env python3
"""A scriptable HTTP/1.1 server for the integration tests.

Modes (--mode):
  echo     answer 200 with a JSON description of the request (the default)
  static   answer 200 with a fixed JSON body (--body)
  paths    answer 200 with the JSON body that --body (a JSON object: path
           without query -> body) gives for the path, 404 when it has none
  hang     accept and read, never answer
  reset    read the request, then reset the connection (RST)
  garbage  read the request, answer bytes that are not HTTP
  close    read the request, close without answering

Paths understood in echo mode (also under /api/, which HAProxy shadows):
  /big/N        N bytes of text
  /status/N     status N
  /slow/MS      answer after MS milliseconds
  /stream       text/event-stream, one event every 100 ms, 5 events
  /slowbody/MS  headers at once, the body after MS milliseconds

Every request is appended as one JSON line to --record (if given), with the
peer port so tests can count connections.
"""
import argparse
import json
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="echo")
    ap.add_argument("--body", default='{"ok": true}')
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--record")
    ap.add_argument("--name", default="backend")
    args = ap.parse_args()
    lock = threading.Lock()
    record = open(args.record, "a", buffering=1) if args.record else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # One write per response (flushed by the server after each request):
        # headers and body in separate segments meet delayed ACKs on reused
        # connections and cost ~40 ms each.
        wbufsize = 1 << 16

        def log_message(self, *a):
            pass

        def _read_body(self):
            n = int(self.headers.get("content-length") or 0)
            return self.rfile.read(n) if n else b""

        def _record(self, body):
            if not record:
                return
            entry = {
                "method": self.command,
                "path": self.path,
                "headers": [[k, v] for k, v in self.headers.items()],
                "body": body.decode("latin-1"),
                "peer_port": self.client_address[1],
                "time": time.time(),
            }
            with lock:
                record.write(json.dumps(entry) + "\n")

        def _send(self, status, body, ctype="application/json", extra=()):
            self.send_response_only(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in extra:
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self):
            body = self._read_body()
            self._record(body)
            mode = args.mode
            if mode == "hang":
                time.sleep(3600)
                return
            if mode in ("reset", "close"):
                if mode == "reset":
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                               struct.pack("ii", 1, 0))
                self.close_connection = True
                self.connection.close()
                return
            if mode == "garbage":
                self.wfile.write(b"\x00\x01garbage that is not HTTP\r\n\r\n")
                self.wfile.flush()
                self.close_connection = True
                return
            if args.delay_ms:
                time.sleep(args.delay_ms / 1000.0)
            if mode == "static":
                self._send(200, args.body.encode())
                return
            if mode == "paths":
                found = json.loads(args.body).get(self.path.split("?")[0])
                if found is None:
                    self._send(404, b'{"found": false}')
                else:
                    self._send(200, json.dumps(found).encode())
                return
            route = self.path.split("?")[0]
            if route.startswith("/api/"):
                route = route[4:]
            parts = route.split("/")
            if len(parts) >= 3 and parts[1] == "big":
                self._send(200, b"x" * int(parts[2]), "text/plain")
            elif len(parts) >= 3 and parts[1] == "status":
                self._send(int(parts[2]), b'{"status": %d}' % int(parts[2]))
            elif len(parts) >= 3 and parts[1] == "slow":
                time.sleep(int(parts[2]) / 1000.0)
                self._send(200, b'{"slow": true}')
            elif len(parts) >= 3 and parts[1] == "slowbody":
                payload = b'{"slowbody": true}'
                self.send_response_only(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.flush()
                time.sleep(int(parts[2]) / 1000.0)
                self.wfile.write(payload)
            elif len(parts) >= 2 and parts[1] == "stream":
                self.send_response_only(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for i in range(5):
                    chunk = b"data: %d\n\n" % i
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    time.sleep(0.1)
                self.wfile.write(b"0\r\n\r\n")
            else:
                desc = {
                    "server": args.name,
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("latin-1"),
                }
                self._send(200, json.dumps(desc, sort_keys=True).encode())

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = _handle

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 1024

    srv = Server(("127.0.0.1", args.port), Handler)
    print("listening", args.port, flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
