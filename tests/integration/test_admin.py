"""Operations: the admin server (/metrics, /stats, /health), SIGUSR2, --admin
off, admin clients that cannot slow HAProxy down, and log rate limiting.

Traffic goes through a real HAProxy to two echo backends: /api/status/200
answers the same on both (equal), /api/users/N echoes the server's name
(different), POST is not replayed (skipped, reason method)."""
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import BUILD, free_port, http_get, http_request, wait_for, wait_port

# ---- a strict parser for the Prometheus text exposition format 0.0.4 -------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_NAME = r"[a-zA-Z_][a-zA-Z0-9_]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
FLOAT = r"[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
SAMPLE_RE = re.compile(
    rf"^(?P<name>{NAME})"
    rf"(?:\{{(?P<labels>(?:{LABEL_NAME}={LABEL_VALUE})(?:,{LABEL_NAME}={LABEL_VALUE})*)?\}})?"
    rf" (?P<value>{FLOAT})(?: (?P<ts>-?\d+))?$")
LABEL_RE = re.compile(rf"({LABEL_NAME})=({LABEL_VALUE})")
HELP_RE = re.compile(rf"^# HELP (?P<name>{NAME}) (?P<doc>(?:[^\\\n]|\\[\\n])*)$")
TYPE_RE = re.compile(rf"^# TYPE (?P<name>{NAME}) (?P<type>counter|gauge|histogram|summary|untyped)$")


def unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), v[1:-1])


def parse_float(s):
    return {"+Inf": math.inf, "Inf": math.inf, "-Inf": -math.inf}.get(s, None) or float(s)


class Metrics:
    """families: name -> type; samples: (name, frozenset(labels)) -> value."""

    def __init__(self, families, samples):
        self.families = families
        self.samples = samples

    def get(self, name, **labels):
        return self.samples.get((name, frozenset(labels.items())))

    def value(self, name, **labels):
        v = self.get(name, **labels)
        assert v is not None, f"no sample {name}{labels}"
        return v

    def sum(self, name, **match):
        return sum(v for (n, ls), v in self.samples.items()
                   if n == name and all(dict(ls).get(k) == w for k, w in match.items()))


def parse_prometheus(text):
    """Parses text strictly; any deviation from the format fails the test."""
    assert text.endswith("\n"), "exposition must end with a line feed"
    families, helps, samples = {}, set(), {}
    current = None          # family whose samples may follow
    closed = set()          # families whose block has ended
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line!r}"
        assert line, f"empty line ({where})"
        if line.startswith("#"):
            m = HELP_RE.match(line)
            if m:
                name = m["name"]
                assert name not in helps, f"second HELP for {name} ({where})"
                assert name not in families, f"HELP after TYPE for {name} ({where})"
                helps.add(name)
                continue
            m = TYPE_RE.match(line)
            assert m, f"comment that is neither HELP nor TYPE ({where})"
            name = m["name"]
            assert name not in families, f"second TYPE for {name} ({where})"
            if current:
                closed.add(current)
            families[name] = m["type"]
            current = name
            continue
        m = SAMPLE_RE.match(line)
        assert m, f"not a sample line ({where})"
        name = m["name"]
        fam = None
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if families.get(name) not in (None, "histogram"):
            fam = name
        elif base != name and families.get(base) == "histogram":
            fam = base
        assert fam, f"sample without a preceding TYPE ({where})"
        assert fam == current and fam not in closed, f"samples of {fam} are not contiguous ({where})"
        labels = {}
        if m["labels"]:
            for k, v in LABEL_RE.findall(m["labels"]):
                assert k not in labels, f"label {k} twice ({where})"
                labels[k] = unescape(v)
        if families[fam] == "histogram" and name.endswith("_bucket"):
            assert "le" in labels, f"bucket without le ({where})"
        value = parse_float(m["value"])
        if families[fam] == "counter":
            assert name.endswith("_total"), f"counter {name} must end in _total ({where})"
            assert value >= 0, f"negative counter ({where})"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate series ({where})"
        samples[key] = value
    for name, typ in families.items():
        assert name.startswith("miffy_"), f"{name} lacks the miffy_ prefix"
        if typ == "histogram":
            check_histogram(name, samples)
    return Metrics(families, samples)


def check_histogram(name, samples):
    groups = {}
    for (n, labels), v in samples.items():
        if n == name + "_bucket":
            d = dict(labels)
            le = d.pop("le")
            groups.setdefault(frozenset(d.items()), []).append((parse_float(le), v))
    assert groups, f"histogram {name} has no buckets"
    for labels, buckets in groups.items():
        bounds = [b for b, _ in buckets]
        assert bounds == sorted(bounds) and len(set(bounds)) == len(bounds), f"{name}{dict(labels)}: le order"
        assert bounds[-1] == math.inf, f"{name}{dict(labels)}: no le=\"+Inf\""
        counts = [c for _, c in buckets]
        assert all(a <= b for a, b in zip(counts, counts[1:])), f"{name}{dict(labels)}: buckets not cumulative"
        count = samples.get((name + "_count", labels))
        total = samples.get((name + "_sum", labels))
        assert count is not None and total is not None, f"{name}{dict(labels)}: _count or _sum missing"
        assert counts[-1] == count, f"{name}{dict(labels)}: +Inf bucket {counts[-1]} != _count {count}"
        assert total >= 0


def test_strict_parser_rejects_bad_expositions():
    good = ('# HELP miffy_x_total X.\n# TYPE miffy_x_total counter\nmiffy_x_total{a="q\\"\\\\\\n"} 1\n'
            '# TYPE miffy_h histogram\nmiffy_h_bucket{le="1"} 1\nmiffy_h_bucket{le="+Inf"} 2\n'
            'miffy_h_sum 3.5\nmiffy_h_count 2\n')
    m = parse_prometheus(good)
    assert m.value("miffy_x_total", a='q"\\\n') == 1
    bad = [
        good.replace("miffy_x_total{", "miffy_y_total{"),                 # no TYPE
        good.replace('le="+Inf"} 2', 'le="+Inf"} 0'),                      # not cumulative
        good.replace("miffy_h_count 2", "miffy_h_count 3"),                # +Inf != _count
        good + 'miffy_x_total{a="q\\"\\\\\\n"} 1\n',                       # duplicate, not contiguous
        good.replace('a="q', 'a="\n'),                                     # raw line feed
        good.replace(" 1\n#", "  1\n#", 1),                                # two spaces
        good.rstrip("\n"),                                                 # no final line feed
    ]
    for text in bad:
        with pytest.raises(AssertionError):
            parse_prometheus(text)


# ---- helpers --------------------------------------------------------------

def admin_get(port, path, timeout=5.0):
    status, headers, body = http_get(port, path, timeout=timeout)
    return status, headers, body


def scrape(miffy):
    status, headers, body = admin_get(miffy.admin_port, "/metrics")
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse_prometheus(body.decode())


def stats_doc(miffy):
    status, headers, body = admin_get(miffy.admin_port, "/stats")
    assert status == 200 and headers["content-type"] == "application/json"
    return json.loads(body)


def finished(m):
    return m.sum("miffy_exchanges_total")


@pytest.fixture
def shadowed(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    miffy = stack.miffy(candidate=cand.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    return miffy, hap


def send_traffic(hap, equal=5, different=4, posts=2):
    for _ in range(equal):
        assert http_get(hap.port, "/api/status/200")[0] == 200
    for i in range(different):
        assert http_get(hap.port, f"/api/users/{i + 1}")[0] == 200
    for _ in range(posts):
        assert http_request(hap.port, "POST", "/api/orders", body=b'{"n": 1}',
                            headers={"Content-Type": "application/json"})[0] == 200
    return equal + different + posts


# ---- /metrics -------------------------------------------------------------

def test_metrics_are_strict_prometheus_and_count_exchanges(shadowed):
    miffy, hap = shadowed
    before = scrape(miffy)
    for fam, typ in [("miffy_spop_connections_accepted_total", "counter"),
                     ("miffy_spop_connections_active", "gauge"),
                     ("miffy_spop_connections_refused_total", "counter"),
                     ("miffy_spop_frames_received_total", "counter"),
                     ("miffy_spop_frames_sent_total", "counter"),
                     ("miffy_spop_disconnects_sent_total", "counter"),
                     ("miffy_exchanges_total", "counter"),
                     ("miffy_exchanges_skipped_total", "counter"),
                     ("miffy_anomalies_total", "counter"),
                     ("miffy_endpoint_exchanges_total", "counter"),
                     ("miffy_candidate_errors_total", "counter"),
                     ("miffy_latency_seconds", "histogram"),
                     ("miffy_kafka_delivered_total", "counter"),
                     ("miffy_kafka_failed_total", "counter"),
                     ("miffy_kafka_dropped_total", "counter"),
                     ("miffy_kafka_queue_depth", "gauge"),
                     ("miffy_published_total", "counter"),
                     ("miffy_messages_cut_total", "counter"),
                     ("miffy_exchanges_inflight", "gauge"),
                     ("miffy_replays_inflight", "gauge"),
                     ("miffy_process_resident_memory_bytes", "gauge"),
                     ("miffy_uptime_seconds", "gauge")]:
        assert before.families.get(fam) == typ, fam
    assert before.value("miffy_process_resident_memory_bytes") > 1e6
    assert before.value("miffy_uptime_seconds") > 0
    assert before.value("miffy_spop_disconnects_sent_total", status="other") == 0

    n = send_traffic(hap)
    m = wait_for(lambda: (lambda m: m if finished(m) - finished(before) >= n else None)(scrape(miffy)),
                 what="11 finished exchanges in /metrics")
    assert m.value("miffy_exchanges_total", outcome="equal") == 5
    assert m.value("miffy_exchanges_total", outcome="different") == 4
    assert m.value("miffy_exchanges_total", outcome="skipped") == 2
    assert m.value("miffy_exchanges_skipped_total", reason="method") == 2
    assert m.value("miffy_exchanges_started_total") == 11
    assert m.value("miffy_endpoint_exchanges_total", endpoint="GET /api/status/:id", outcome="equal") == 5
    assert m.value("miffy_endpoint_exchanges_total", endpoint="GET /api/users/:id", outcome="different") == 4
    assert m.value("miffy_endpoint_exchanges_total", endpoint="POST /api/orders", outcome="skipped") == 2
    assert m.sum("miffy_endpoint_exchanges_total") == finished(m)
    # Every exchange had its reference response; 9 were replayed and answered.
    assert m.value("miffy_latency_seconds_count", source="reference") == 11
    assert m.value("miffy_latency_seconds_count", source="candidate") == 9
    assert m.value("miffy_latency_seconds_count", source="secondary") == 0
    assert 0 < m.value("miffy_latency_seconds_sum", source="candidate") < 9 * 5
    assert m.value("miffy_published_total") == 4
    assert m.value("miffy_spop_connections_accepted_total") >= 1
    assert m.value("miffy_spop_frames_received_total") > before.value("miffy_spop_frames_received_total")
    # One miffy-tx per shadowed request.
    assert m.value("miffy_spop_notify_frames_total") - before.value("miffy_spop_notify_frames_total") == 11
    assert m.value("miffy_replays_started_total", role="candidate") == 9
    assert m.value("miffy_exchanges_inflight") == 0
    assert m.value("miffy_kafka_queue_depth") == 0
    assert m.sum("miffy_candidate_errors_total") == 0


def test_candidate_errors_are_counted_by_role_and_reason(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand", mode="reset")
    miffy = stack.miffy(candidate=cand.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    for i in range(3):
        assert http_get(hap.port, f"/api/items/{i}")[0] == 200
    m = wait_for(lambda: (lambda m: m if m.value("miffy_exchanges_total", outcome="candidate_error") == 3
                          else None)(scrape(miffy)), what="3 candidate errors")
    assert m.sum("miffy_candidate_errors_total", role="candidate") == 3
    assert m.sum("miffy_candidate_errors_total", role="secondary") == 0
    assert m.value("miffy_latency_seconds_count", source="candidate") == 0
    doc = stats_doc(miffy)
    ep = doc["endpoints"]["GET /api/items/:id"]
    assert ep["outcomes"]["candidate_error"] == 3
    assert sum(doc["replays"]["candidate"]["errors"].values()) == 3
    published = {p["id"] for p in miffy.published()}
    assert {d["id"] for d in ep["last_differences"]} == published and len(published) == 3


def test_endpoint_labels_are_bounded_and_escaped(stack):
    """Past 100 endpoints, exchanges count under endpoint="other"; label
    values with quotes and backslashes stay valid Prometheus."""
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    miffy = stack.miffy(candidate=cand.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    conn = http.client.HTTPConnection("127.0.0.1", hap.port, timeout=10)
    for i in range(105):
        conn.request("GET", f"/api/status/200/e{i}")
        assert conn.getresponse().read() is not None
    conn.request("GET", '/api/status/200/q"b\\s')
    conn.getresponse().read()
    conn.close()
    m = wait_for(lambda: (lambda m: m if finished(m) >= 106 else None)(scrape(miffy)),
                 what="106 exchanges")
    endpoints = {dict(ls)["endpoint"] for (n, ls) in m.samples if n == "miffy_endpoint_exchanges_total"}
    assert len(endpoints) == 101 and "other" in endpoints
    assert m.sum("miffy_endpoint_exchanges_total", endpoint="other") == 6
    assert m.sum("miffy_endpoint_exchanges_total") == 106
    doc = stats_doc(miffy)
    assert len(doc["endpoints"]) == 101 and doc["endpoints"]["other"]["total"] == 6


# ---- /stats ---------------------------------------------------------------

def field_key(d):
    if d["where"] == "status":
        return "status"
    if d["where"] == "header":
        return "header:" + d["path"]
    return "body:" + d["path"] if d["path"] else "body"


def test_stats_matches_what_was_published(shadowed):
    miffy, hap = shadowed
    n = send_traffic(hap, equal=3, different=12, posts=1)
    wait_for(lambda: len(miffy.published()) == 12, what="12 published messages")
    doc = wait_for(lambda: (lambda d: d if sum(d["outcomes"].values()) >= n else None)(stats_doc(miffy)),
                   what="/stats with 16 outcomes")
    published = miffy.published()
    assert doc["publish"]["published"] == len(published) == 12
    assert doc["outcomes"]["different"] == 12 and doc["outcomes"]["equal"] == 3

    users = doc["endpoints"]["GET /api/users/:id"]
    assert users["total"] == 12 and users["compared"] == 12
    assert users["different"] == 12 and users["different_pct"] == 100.0 and users["noise_pct"] == 0
    status = doc["endpoints"]["GET /api/status/:id"]
    assert status["different_pct"] == 0 and status["outcomes"]["equal"] == 3
    assert doc["endpoints"]["POST /api/orders"]["outcomes"]["skipped"] == 1

    # Per-field counts: one per exchange where the field differed.
    expected = Counter()
    for p in published:
        assert p["endpoint"] == "GET /api/users/:id"
        for key in {field_key(d) for d in p["differences"]}:
            expected[key] += 1
    assert expected, "the echo backends must differ somewhere"
    assert {k: v["raw"] for k, v in users["fields"].items()} == dict(expected)
    assert all(v["noise"] == 0 for v in users["fields"].values())

    # The last ten differing exchanges, newest first, are the last ten published.
    last = [d["id"] for d in users["last_differences"]]
    assert len(last) == 10 and all(d["outcome"] == "different" for d in users["last_differences"])
    assert set(last) == {p["id"] for p in published[-10:]}

    for ep in (users, status):
        for source in ("reference", "candidate"):
            lat = ep["latency_ms"][source]
            assert lat["count"] == ep["compared"]
            assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"] < 5000
            # The p99 of a dozen samples is the slowest one, within a bucket (15 %).
            assert lat["p99"] >= lat["max"] / 1.15 - 0.001


def test_stats_shows_noise_with_a_secondary(stack):
    """The echo backends differ from the reference in the same fields for
    the candidate and the secondary: every difference is noise."""
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    sec = stack.backend(name="sec")
    miffy = stack.miffy(candidate=cand.url, secondary=sec.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    for i in range(4):
        assert http_get(hap.port, f"/api/users/{i}")[0] == 200
    doc = wait_for(lambda: (lambda d: d if d["outcomes"]["noise"] == 4 else None)(stats_doc(miffy)),
                   what="4 noise outcomes")
    users = doc["endpoints"]["GET /api/users/:id"]
    assert users["noise"] == 4 and users["noise_pct"] == 100.0 and users["different_pct"] == 0
    assert users["fields"] and all(f["noise"] == f["raw"] == 4 for f in users["fields"].values())
    assert users["latency_ms"]["secondary"]["count"] == 4
    # The noise module's own counts (raw: reference vs candidate, noise:
    # reference vs secondary), per field, as Diffy shows them.
    assert users["noise_fields"]
    for f in users["noise_fields"].values():
        assert f["raw"] == f["noise"] == 4 and f["regression"] is False
    m = scrape(miffy)
    assert m.value("miffy_latency_seconds_count", source="secondary") == 4
    assert m.value("miffy_replays_started_total", role="secondary") == 4


def test_compare_troubles_are_counted_once_per_body(stack):
    """A candidate body nested deeper than max_depth is counted once per
    exchange, by the exchange's conclusion: compare decodes it, publishing
    reuses what compare decoded."""
    deep = "[" * 200 + "]" * 200
    ref = stack.backend(name="ref", mode="static", body='{"ok": true}')
    cand = stack.backend(name="cand", mode="static", body=deep)
    miffy = stack.miffy(candidate=cand.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    for i in range(3):
        assert http_get(hap.port, f"/api/items/{i}")[0] == 200
    m = wait_for(lambda: (lambda m: m if finished(m) >= 3 else None)(scrape(miffy)), what="3 exchanges")
    assert m.value("miffy_exchanges_total", outcome="different") == 3
    assert m.value("miffy_json_depth_exceeded_total") == 3
    assert m.value("miffy_decompress_failures_total") == 0
    assert m.value("miffy_compare_budget_exceeded_total") == 0
    assert stats_doc(miffy)["compare"] == {"json_depth_exceeded": 3, "compare_budget_exceeded": 0,
                                           "compare_key_fallback": 0, "decompress_failed": 0}
    assert len(miffy.published()) == 3


def test_sigusr2_logs_the_stats_document(shadowed):
    miffy, hap = shadowed
    send_traffic(hap, equal=2, different=1, posts=0)
    wait_for(lambda: len(miffy.published()) == 1, what="1 published message")
    wait_for(lambda: sum(stats_doc(miffy)["outcomes"].values()) == 3, what="3 outcomes")
    logged = miffy.stats()
    served = stats_doc(miffy)
    for key in ("outcomes", "skipped", "anomalies", "publish", "exchanges"):
        assert logged[key] == served[key], key
    assert logged["endpoints"].keys() == served["endpoints"].keys()
    assert logged["endpoints"]["GET /api/users/:id"]["last_differences"] == \
        served["endpoints"]["GET /api/users/:id"]["last_differences"]


# ---- /health and the server itself ------------------------------------------

def test_health_reports_the_loop_and_connections(shadowed):
    miffy, hap = shadowed
    send_traffic(hap, equal=1, different=0, posts=0)

    def healthy():
        status, headers, body = admin_get(miffy.admin_port, "/health")
        doc = json.loads(body)
        return doc if status == 200 and doc["haproxy_connections"] >= 1 else None

    doc = wait_for(healthy, what="/health with an HAProxy connection")
    assert doc["status"] == "ok"
    assert doc["uptime_seconds"] > 0 and doc["exchanges_inflight"] == 0 and doc["replays_inflight"] == 0
    assert doc["last_heartbeat_seconds"] < 2
    status, headers, _ = admin_get(miffy.admin_port, "/health")
    assert headers["content-type"] == "application/json"


def test_admin_answers_only_what_it_serves(stack):
    cand = stack.backend(name="cand")
    miffy = stack.miffy(candidate=cand.url, admin=True)
    assert admin_get(miffy.admin_port, "/nope")[0] == 404
    assert http_request(miffy.admin_port, "POST", "/metrics", body=b"x")[0] == 405
    status, headers, body = http_request(miffy.admin_port, "HEAD", "/metrics")
    assert status == 200 and body == b""
    assert admin_get(miffy.admin_port, "/")[0] == 200


def listening_ports(pid):
    """TCP ports that process pid listens on, from /proc."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if cols[3] == "0A" and cols[9] in inodes:
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def test_admin_off_listens_on_nothing_but_spop(stack):
    cand = stack.backend(name="cand")
    miffy = stack.miffy(candidate=cand.url, admin=False)
    # The start line comes just after the SPOP port opens.
    wait_for(lambda: "admin off" in miffy.log(), timeout=5, what="the start log line")
    assert listening_ports(miffy.proc.pid) == {miffy.port}
    on = stack.miffy(candidate=cand.url, admin=True, name="on")
    assert listening_ports(on.proc.pid) == {on.port, on.admin_port}


def test_admin_port_in_use_is_a_clear_error(stack):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        p = subprocess.run([BUILD / "miffy", "--listen", f"127.0.0.1:{free_port()}",
                            "--candidate", "http://127.0.0.1:1", "--sink", "stdout",
                            "--admin", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in p.stderr and "in use" in p.stderr


# ---- stuck admin clients vs HAProxy traffic --------------------------------

def latencies(port, n):
    """Client latencies through HAProxy, sorted. A connection per request:
    on a kept-alive connection the Python backend's split writes meet
    delayed ACKs and every request takes ~40 ms, which would hide the
    agent's share."""
    out = []
    for i in range(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        t = time.perf_counter()
        conn.request("GET", f"/api/status/200?i={i}")
        resp = conn.getresponse()
        resp.read()
        out.append(time.perf_counter() - t)
        conn.close()
        assert resp.status == 200
    return sorted(out)


def p(values, q):
    return values[min(len(values) - 1, int(math.ceil(q * len(values))) - 1)]


def test_stuck_admin_clients_do_not_delay_haproxy(shadowed):
    miffy, hap = shadowed
    latencies(hap.port, 20)                       # warm up connections on every side
    base = latencies(hap.port, 200)

    stuck = []
    for _ in range(50):                           # connect, send nothing
        s = socket.create_connection(("127.0.0.1", miffy.admin_port), timeout=5)
        stuck.append(s)
    for _ in range(5):                            # a request head that never ends
        s = socket.create_connection(("127.0.0.1", miffy.admin_port), timeout=5)
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        stuck.append(s)
    stop = threading.Event()
    results = {"huge_header": None, "huge_body_sent": 0, "scrapes": 0}

    def huge_header():
        s = socket.create_connection(("127.0.0.1", miffy.admin_port), timeout=5)
        try:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (256 * 1024) + b"\r\n\r\n")
        except OSError:
            pass
        try:
            results["huge_header"] = s.recv(100)
        except OSError as e:
            results["huge_header"] = repr(e)
        s.close()

    def huge_body():
        s = socket.create_connection(("127.0.0.1", miffy.admin_port), timeout=5)
        try:
            s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n")
            chunk = b"b" * 65536
            while not stop.is_set():
                s.sendall(chunk)
                results["huge_body_sent"] += len(chunk)
        except OSError:
            pass
        s.close()

    def hammer():
        while not stop.is_set():
            try:
                if admin_get(miffy.admin_port, "/metrics")[0] == 200:
                    results["scrapes"] += 1
            except OSError:
                pass

    threads = [threading.Thread(target=f) for f in (huge_header, huge_body, hammer)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        during = latencies(hap.port, 200)
        # The admin server itself still answers beside 57 stuck clients.
        status, _, body = admin_get(miffy.admin_port, "/health")
        assert status == 200 and json.loads(body)["status"] == "ok"
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=15)
        for s in stuck:
            s.close()
    print(f"\nHAProxy latency, baseline: p50 {p(base, .5) * 1e3:.2f} ms p99 {p(base, .99) * 1e3:.2f} ms "
          f"max {base[-1] * 1e3:.2f} ms; with 57 stuck admin clients, a huge header, a huge body and "
          f"a /metrics hammer ({results['scrapes']} scrapes): p50 {p(during, .5) * 1e3:.2f} ms "
          f"p99 {p(during, .99) * 1e3:.2f} ms max {during[-1] * 1e3:.2f} ms")
    assert p(during, .99) < 0.5
    assert p(during, .5) < p(base, .5) + 0.02
    assert results["scrapes"] > 0
    huge = results["huge_header"]
    assert huge is not None and (not isinstance(huge, bytes) or huge == b"" or b" 431 " in huge
                                 or b" 413 " in huge or b" 400 " in huge), huge
    # Every request was shadowed: the loop kept up with HAProxy throughout.
    m = wait_for(lambda: (lambda m: m if m.value("miffy_exchanges_total", outcome="equal") >= 420 else None)(
        scrape(miffy)), what="420 equal exchanges")
    assert m.value("miffy_exchanges_total", outcome="expired") == 0


# ---- logs -------------------------------------------------------------------

def test_a_flood_of_bad_peers_is_rate_limited_in_the_log(stack):
    """300 peers that send an invalid SPOP frame: each is refused and counted;
    the log holds at most 50 lines a second plus notes that account for the
    rest, and JSON lines parse."""
    cand = stack.backend(name="cand")
    miffy = stack.miffy(candidate=cand.url, admin=True, args=["--log-json"])
    flood = 300
    for _ in range(flood):
        s = socket.create_connection(("127.0.0.1", miffy.port), timeout=5)
        s.sendall(b"\x00\x00\x00\x05\x63\x00\x00\x00\x00")   # frame type 99: invalid
        s.close()
    t_end = time.time()

    def disconnects():
        m = scrape(miffy)
        return m if m.sum("miffy_spop_disconnects_sent_total") >= flood else None

    m = wait_for(disconnects, what=f"{flood} disconnects")

    def records():
        out = []
        for line in miffy.log().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def noted():
        recs = records()
        written = [r for r in recs if r["msg"].startswith("disconnecting HAProxy peer")]
        notes = [r for r in recs if "lines suppressed" in r["msg"]]
        suppressed = sum(int(r["msg"].split()[0]) for r in notes)
        return (written, notes, suppressed) if len(written) + suppressed >= flood else None

    written, notes, suppressed = wait_for(noted, timeout=5, what="the suppressed note after the flood")
    assert time.time() - t_end < 4.5, "the note comes within about a second of the flood's end"
    seconds = {r["time"][:19] for r in written}
    assert len(written) <= 50 * len(seconds)
    assert notes and all(r["level"] == "warn" for r in notes)
    assert len(written) + suppressed == flood
    assert m.value("miffy_log_lines_suppressed_total") == suppressed
    assert all({"time", "level", "msg"} <= r.keys() for r in records())
    # The agent still answers after the flood.
    assert admin_get(miffy.admin_port, "/health")[0] == 200


def test_sighup_reopens_the_log_file(stack, tmp_path):
    cand = stack.backend(name="cand")
    log = tmp_path / "miffy-file.log"
    conf = tmp_path / "log.conf"
    conf.write_text(f'log_file = "{log}"\n')
    miffy = stack.miffy(candidate=cand.url, admin=True, args=["-f", str(conf)])
    wait_for(lambda: log.exists() and "listening on" in log.read_text(), what="first log line")
    rotated = tmp_path / "miffy-file.log.1"
    log.rename(rotated)
    miffy.proc.signal(signal.SIGHUP)
    wait_for(lambda: log.exists() and "reopened" in log.read_text(), what="log line in the new file")
    assert "reopened" not in rotated.read_text()
