"""build/miffy-demo: the reference, candidate and secondary of the demo.

Each test starts the real binary on a free loopback port (--listen
127.0.0.1:0; the port is read from its "listening on" line) and talks HTTP
to it the way miffy and a user's curl do.
"""
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

BUILD = os.path.abspath(os.environ.get("MIFFY_BUILD", "build"))
DEMO = os.path.join(BUILD, "miffy-demo")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Demo:
    def __init__(self, *args):
        self.proc = subprocess.Popen([DEMO, *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        assert "listening on http://" in line, (line, self.proc.stderr.read())
        self.port = int(line.rsplit(":", 1)[1])

    def request(self, method, path, body=None, headers=None, timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            res = conn.getresponse()
            return res.status, dict((k.lower(), v) for k, v in res.getheaders()), res.read()
        finally:
            conn.close()

    def get_json(self, path):
        status, headers, body = self.request("GET", path)
        return status, headers, json.loads(body)

    def cpu_seconds(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def stop(self):
        """SIGTERM, and the exit status (0 expected; ASan makes it non-zero)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        self.stderr = self.proc.stderr.read()
        self.proc.stdout.close()
        self.proc.stderr.close()
        return rc


@pytest.fixture
def start():
    started = []

    def _start(*args):
        d = Demo(*args)
        started.append(d)
        return d

    yield _start
    for d in started:
        if d.proc.poll() is None:
            rc = d.stop()
            assert rc == 0, d.stderr


@pytest.fixture
def roles(start):
    return {role: start("--role", role, "--listen", "127.0.0.1:0")
            for role in ("reference", "candidate", "secondary")}


def without_meta(doc):
    return {k: v for k, v in doc.items() if k != "meta"}


# --- what every role answers -------------------------------------------------

def test_reference_answers_json_derived_from_the_value(start):
    ref = start("--role", "reference", "--listen", "127.0.0.1:0")
    status, headers, doc = ref.get_json("/api/hello")
    assert status == 200
    assert headers["content-type"] == "application/json"
    assert headers["cache-control"] == "max-age=60"
    assert without_meta(doc) == {
        "value": "hello", "length": 5, "upper": "HELLO",
        "items": [{"id": 1, "name": "hello-1"}, {"id": 2, "name": "hello-2"},
                  {"id": 3, "name": "hello-3"}],
    }
    assert doc["meta"]["served_by"] == "reference"
    assert headers["x-request-id"] == doc["meta"]["request_id"]


@pytest.mark.parametrize("value", ["hello", "8", "10", "0", "abc-def", "CHANGED", "missing2"])
def test_all_roles_agree_outside_meta_for_ordinary_values(roles, value):
    answers = {role: d.request("GET", f"/api/{value}") for role, d in roles.items()}
    docs = {role: json.loads(a[2]) for role, a in answers.items()}
    assert {a[0] for a in answers.values()} == {200}
    assert without_meta(docs["candidate"]) == without_meta(docs["reference"])
    assert without_meta(docs["secondary"]) == without_meta(docs["reference"])
    assert {a[1]["cache-control"] for a in answers.values()} == {"max-age=60"}
    assert {role: docs[role]["meta"]["served_by"] for role in docs} == \
        {role: role for role in docs}


def test_noisy_fields_differ_between_two_calls(start):
    ref = start("--role", "reference", "--listen", "127.0.0.1:0")
    _, _, first = ref.get_json("/api/noise")
    _, _, second = ref.get_json("/api/noise")
    assert without_meta(first) == without_meta(second)
    assert first["meta"]["request_id"] != second["meta"]["request_id"]
    assert first["meta"]["timestamp"] != second["meta"]["timestamp"]
    # RFC 3339 UTC with microseconds
    assert len(first["meta"]["timestamp"]) == len("2024-05-01T12:00:00.123456Z")
    assert first["meta"]["timestamp"].endswith("Z")


# --- the candidate's deliberate differences ----------------------------------

QUIRKS = {
    "changed": lambda ref, cand: cand["length"] == ref["length"] + 1,
    "missing": lambda ref, cand: "upper" in ref and "upper" not in cand,
    "reordered": lambda ref, cand: cand["items"] == list(reversed(ref["items"])),
    "type": lambda ref, cand: cand["length"] == str(ref["length"]),
    "extra": lambda ref, cand: cand.get("beta") is True and "beta" not in ref,
}
NUMBER_OF = {"changed": "21", "missing": "2", "reordered": "103", "type": "4",
             "extra": "15", "header": "6", "error": "7"}


@pytest.mark.parametrize("quirk", sorted(QUIRKS))
@pytest.mark.parametrize("by", ["name", "number"])
def test_candidate_differs_on_purpose(roles, quirk, by):
    value = quirk if by == "name" else NUMBER_OF[quirk]
    _, _, ref = roles["reference"].get_json(f"/api/{value}")
    status, _, cand = roles["candidate"].get_json(f"/api/{value}")
    assert status == 200
    assert QUIRKS[quirk](ref, cand), (ref, cand)
    # exactly that one difference outside meta
    changed = {k for k in set(ref) | set(cand) if k != "meta" and ref.get(k) != cand.get(k)}
    assert len(changed) == 1, changed


@pytest.mark.parametrize("value", ["header", "6", "16"])
def test_candidate_changes_a_header_for_header_values(roles, value):
    ref_status, ref_headers, ref_body = roles["reference"].request("GET", f"/api/{value}")
    cand_status, cand_headers, cand_body = roles["candidate"].request("GET", f"/api/{value}")
    assert (ref_status, cand_status) == (200, 200)
    assert ref_headers["cache-control"] == "max-age=60"
    assert cand_headers["cache-control"] == "no-store"
    assert without_meta(json.loads(ref_body)) == without_meta(json.loads(cand_body))


@pytest.mark.parametrize("value", ["error", "7", "1237"])
def test_candidate_answers_500_for_error_values(roles, value):
    status, headers, body = roles["candidate"].request("GET", f"/api/{value}")
    assert status == 500
    assert json.loads(body) == {"error": "internal server error"}
    assert roles["reference"].request("GET", f"/api/{value}")[0] == 200
    assert roles["secondary"].request("GET", f"/api/{value}")[0] == 200


@pytest.mark.parametrize("value", list(NUMBER_OF.values()) + list(NUMBER_OF))
def test_secondary_never_differs_on_purpose(roles, value):
    ref = roles["reference"].request("GET", f"/api/{value}")
    sec = roles["secondary"].request("GET", f"/api/{value}")
    assert ref[0] == sec[0] == 200
    assert ref[1]["cache-control"] == sec[1]["cache-control"]
    assert without_meta(json.loads(ref[2])) == without_meta(json.loads(sec[2]))


def test_help_documents_every_deliberate_difference():
    out = subprocess.run([DEMO, "--help"], capture_output=True, text=True, check=True).stdout
    for quirk in list(QUIRKS) + ["header", "error"]:
        assert quirk in out
    assert "n%10" in out


# --- other endpoints ------------------------------------------------------------

def test_post_echoes_body_and_content_type(start):
    cand = start("--role", "candidate", "--listen", "127.0.0.1:0")
    body = b'{"a": [1, 2, 3], "b": "\xc3\xa9"}'
    status, headers, got = cand.request("POST", "/api/error", body=body,
                                        headers={"Content-Type": "application/json; charset=utf-8"})
    assert status == 200
    assert got == body
    assert headers["content-type"] == "application/json; charset=utf-8"


def test_post_echoes_an_empty_and_a_large_body(start):
    ref = start("--role", "reference", "--listen", "127.0.0.1:0")
    status, headers, got = ref.request("POST", "/api/x", body=b"")
    assert (status, got, headers["content-type"]) == (200, b"", "application/octet-stream")
    big = os.urandom(600 * 1024)
    status, _, got = ref.request("POST", "/api/x", body=big,
                                 headers={"Content-Type": "application/octet-stream"})
    assert (status, got) == (200, big)


def test_post_over_one_mebibyte_is_413(start):
    ref = start("--role", "reference", "--listen", "127.0.0.1:0")
    status, _, _ = ref.request("POST", "/api/x", body=b"x" * (1024 * 1024 + 1))
    assert status == 413
    assert ref.request("GET", "/health")[0] == 200


def test_health(roles):
    for role, d in roles.items():
        status, _, doc = d.get_json("/health")
        assert (status, doc) == (200, {"status": "ok", "role": role})


@pytest.mark.parametrize("path", ["/", "/api/", "/apix/1", "/other"])
def test_unknown_paths_are_404(start, path):
    ref = start("--listen", "127.0.0.1:0")
    assert ref.request("GET", path)[0] == 404


def test_other_methods_are_405(start):
    ref = start("--listen", "127.0.0.1:0")
    assert ref.request("DELETE", "/api/1")[0] == 405
    assert ref.request("HEAD", "/api/1")[0] == 200


def test_long_value_is_414(start):
    ref = start("--listen", "127.0.0.1:0")
    assert ref.request("GET", "/api/" + "v" * 1025)[0] == 414
    assert ref.request("GET", "/api/" + "v" * 1024)[0] == 200


# --- delays ----------------------------------------------------------------------

def test_delay_ms_delays_every_answer(start):
    ref = start("--listen", "127.0.0.1:0", "--delay-ms", "300")
    t0 = time.monotonic()
    assert ref.request("GET", "/api/1")[0] == 200
    assert time.monotonic() - t0 >= 0.3


def test_delay_ms_query_overrides_the_flag(start):
    ref = start("--listen", "127.0.0.1:0")
    t0 = time.monotonic()
    assert ref.request("GET", "/api/1?delay_ms=250")[0] == 200
    assert time.monotonic() - t0 >= 0.25


def send_raw_requests(port, n, path):
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: demo\r\n\r\n".encode())
        socks.append(s)
    return socks


def read_status(sock):
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    sock.close()
    return data.split(b"\r\n", 1)[0]


def test_many_concurrent_delayed_requests_use_no_cpu_while_waiting(start):
    ref = start("--listen", "127.0.0.1:0", "--delay-ms", "3000")
    socks = send_raw_requests(ref.port, 500, "/api/slow")
    time.sleep(0.5)  # every request is parsed and suspended by now
    cpu_before = ref.cpu_seconds()
    time.sleep(1.5)  # the requests are all pending during this window
    cpu_spent = ref.cpu_seconds() - cpu_before
    assert cpu_spent < 0.2, f"{cpu_spent:.2f}s of CPU while 500 requests waited"
    t0 = time.monotonic()
    statuses = [read_status(s) for s in socks]
    assert statuses == [b"HTTP/1.1 200 OK"] * 500
    assert time.monotonic() - t0 < 5


def test_sigterm_answers_delayed_requests_and_exits_0(start):
    ref = start("--listen", "127.0.0.1:0", "--delay-ms", "30000")
    socks = send_raw_requests(ref.port, 50, "/api/1")
    time.sleep(0.5)
    t0 = time.monotonic()
    assert ref.stop() == 0, ref.stderr
    assert time.monotonic() - t0 < 5
    assert [read_status(s) for s in socks] == [b"HTTP/1.1 200 OK"] * 50


# --- robustness ----------------------------------------------------------------

def test_concurrent_keepalive_load_with_posts_and_errors(start):
    cand = start("--role", "candidate", "--listen", "127.0.0.1:0", "--threads", "4")
    failures = []

    def client(n):
        conn = http.client.HTTPConnection("127.0.0.1", cand.port, timeout=10)
        try:
            for i in range(150):
                if i % 5 == 0:
                    body = bytes([i % 256]) * (i * 37)
                    conn.request("POST", f"/api/{i}", body=body,
                                 headers={"Content-Type": "text/plain"})
                    res = conn.getresponse()
                    if (res.status, res.read()) != (200, body):
                        failures.append(("post", n, i))
                else:
                    conn.request("GET", f"/api/{n * 1000 + i}?delay_ms={i % 3}")
                    res = conn.getresponse()
                    res.read()
                    want = 500 if (n * 1000 + i) % 10 == 7 else 200
                    if res.status != want:
                        failures.append(("get", n, i, res.status))
        except OSError as e:
            failures.append(("error", n, repr(e)))
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    # clients that vanish mid-request and garbage do not hurt it
    for junk in (b"GET /api/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
                 b"\x00\xff garbage\r\n\r\n", b"POST /api/1 HTTP/1.1\r\n"):
        s = socket.create_connection(("127.0.0.1", cand.port))
        s.sendall(junk)
        s.close()
    assert cand.request("GET", "/health")[0] == 200
    assert cand.stop() == 0, cand.stderr


# --- command line ---------------------------------------------------------------

@pytest.mark.parametrize("args", [["--role", "primary"], ["--delay-ms", "-1"],
                                  ["--delay-ms", "x"], ["--listen", "nope"],
                                  ["--threads", "0"], ["--bogus"], ["extra"]])
def test_bad_arguments_exit_2_with_one_line(args):
    res = subprocess.run([DEMO, *args], capture_output=True, text=True, timeout=10)
    assert res.returncode == 2, res
    assert len(res.stderr.strip().splitlines()) in (1, 2)  # getopt may add its own line
    assert "miffy-demo" in res.stderr


def test_busy_port_is_a_clear_error(start):
    ref = start("--listen", "127.0.0.1:0")
    res = subprocess.run([DEMO, "--listen", f"127.0.0.1:{ref.port}"],
                         capture_output=True, text=True, timeout=10)
    assert res.returncode == 1
    assert "Address already in use" in res.stderr


def test_version():
    res = subprocess.run([DEMO, "--version"], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("miffy-demo ")
