#!/usr/bin/env python3
"""A scriptable candidate for the replay tests, on one asyncio loop.

Unlike backend.py it parses HTTP/1.1 itself, so a test sees the request
exactly as the agent sent it (request line, header names and order, body),
and a candidate that never answers costs one socket, not one thread.

Modes (--mode, or at run time with GET /__candidate/mode/<mode>):
  echo     200, JSON describing the request (the default)
  hang     read, never answer; the connection stays open until the peer closes
  slow     like echo after --delay-ms
  reset    read the request, reset the connection (RST)
  garbage  read the request, answer bytes that are not HTTP, close
  close    read the request, close without answering

With --tls-cert and --tls-key it speaks HTTPS.

GET /__candidate/stats answers {"accepted", "open", "requests", "mode"}.
Every other request is appended as one JSON line to --record (if given):
{"method", "target", "version", "headers": [[name, value], ...], "body",
"conn", "time"}; "conn" numbers the connection it came on.
"""
import argparse
import asyncio
import json
import socket
import ssl
import struct
import sys
import time

MODES = ("echo", "hang", "slow", "reset", "garbage", "close")


class Candidate:
    def __init__(self, args):
        self.mode = args.mode
        self.delay = args.delay_ms / 1000.0
        self.record = open(args.record, "a", buffering=1) if args.record else None
        self.accepted = 0
        self.open = 0
        self.requests = 0

    async def handle(self, reader, writer):
        self.accepted += 1
        self.open += 1
        conn = self.accepted
        try:
            while await self.one_request(reader, writer, conn):
                pass
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError,
                ssl.SSLError):
            pass
        finally:
            self.open -= 1
            try:
                writer.close()
            except Exception:  # noqa: BLE001 - the peer may be gone already
                pass

    async def one_request(self, reader, writer, conn):
        """Serves one request; returns False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ", 2)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append([name, value.strip(" \t")])
        lower = {n.lower(): v for n, v in headers}
        body = b""
        if "content-length" in lower:
            body = await reader.readexactly(int(lower["content-length"]))
        elif lower.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    break
                body += await reader.readexactly(size)
                await reader.readexactly(2)

        if target.startswith("/__candidate/"):
            return await self.control(writer, target)

        self.requests += 1
        if self.record:
            self.record.write(json.dumps({
                "method": method, "target": target, "version": version, "headers": headers,
                "body": body.decode("latin-1"), "conn": conn, "time": time.time()}) + "\n")

        mode = self.mode
        if mode == "hang":
            while await reader.read(65536):
                pass
            return False
        if mode == "reset":
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if mode == "close":
            return False
        if mode == "garbage":
            writer.write(b"\x00\x01garbage that is not HTTP\r\n\r\n")
            await writer.drain()
            return False
        if mode == "slow":
            await asyncio.sleep(self.delay)
        payload = json.dumps({"method": method, "target": target, "headers": headers,
                              "body": body.decode("latin-1")}, sort_keys=True).encode()
        self.respond(writer, 200, payload, method == "HEAD")
        await writer.drain()
        return lower.get("connection", "").lower() != "close"

    async def control(self, writer, target):
        parts = target.split("/")
        if len(parts) == 4 and parts[2] == "mode" and parts[3] in MODES:
            self.mode = parts[3]
        payload = json.dumps({"accepted": self.accepted, "open": self.open,
                              "requests": self.requests, "mode": self.mode}).encode()
        self.respond(writer, 200, payload)
        await writer.drain()
        return True

    @staticmethod
    def respond(writer, status, payload, head=False):
        writer.write(b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % (status, len(payload)))
        if not head:
            writer.write(payload)


async def serve(args):
    cand = Candidate(args)
    tls = None
    if args.tls_cert:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = await asyncio.start_server(cand.handle, "127.0.0.1", args.port, backlog=4096,
                                        limit=1 << 20, ssl=tls)
    print("listening", args.port, flush=True)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", default="echo", choices=MODES)
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--record")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    args = ap.parse_args()
    try:
        asyncio.run(serve(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
