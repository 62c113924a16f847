"""Verdicts end to end, read from /stats and /metrics as a user would: the
candidate's latency against the reference's (latency_tolerance,
latency_floor_ms, latency_min_count), and the confidence verdict per field
(a candidate's difference against the secondary's noise). Real HAProxy, the
agent, the demo servers as reference, candidate and secondary."""
import json

import pytest

from conftest import BUILD, free_port, http_get, wait_for, wait_port
from test_admin import admin_get, parse_prometheus

# A floor well above what a loaded machine adds to either side (ASan agent,
# shared cores; p99 of 25 latencies is their largest): only the slow
# candidate's 300 ms can break it.
LATENCY_ARGS = ["-o", "latency_floor_ms=100", "-o", "latency_min_count=20"]
SLOW_MS = 300


class Demo:
    def __init__(self, stack, role, delay_ms=0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [BUILD / "miffy-demo", "--role", role, "--listen", f"127.0.0.1:{self.port}"]
        if delay_ms:
            argv += ["--delay-ms", str(delay_ms)]
        self.proc = stack.start(f"demo-{role}", argv, sanitized=True)
        wait_port(self.port, proc=self.proc.popen)


def stats_doc(miffy):
    status, _, body = admin_get(miffy.admin_port, "/stats")
    assert status == 200
    return json.loads(body)


def endpoint(miffy, name):
    return stats_doc(miffy)["endpoints"].get(name)


def scrape(miffy):
    status, _, body = admin_get(miffy.admin_port, "/metrics")
    assert status == 200
    return parse_prometheus(body.decode())


def send(hap, path, n):
    for _ in range(n):
        status, _, _ = http_get(hap.port, path)
        assert status == 200


def wait_candidate_latencies(miffy, name, n):
    """The endpoint's /stats entry once n candidate latencies are in."""
    def ready():
        e = endpoint(miffy, name)
        return e if e and e["latency_verdict"]["candidate"]["count"] >= n else None
    return wait_for(ready, timeout=30, what=f"{n} candidate latencies of {name}")


def latency_stack(stack, candidate_delay_ms):
    ref = Demo(stack, "reference")
    cand = Demo(stack, "reference", delay_ms=candidate_delay_ms)   # same answers, only slower
    # "meta" differs on every call (timestamp, request id): not the point here.
    miffy = stack.miffy(candidate=cand.url, admin=True, args=LATENCY_ARGS + ["-o", 'ignore_paths={"/meta"}'])
    hap = stack.haproxy(reference=ref, agent=miffy)
    return miffy, hap


def test_a_slow_candidate_gets_a_latency_verdict(stack):
    miffy, hap = latency_stack(stack, SLOW_MS)
    send(hap, "/api/plain", 5)
    e = wait_candidate_latencies(miffy, "GET /api/plain", 5)
    assert e["latency_verdict"]["verdict"] == "insufficient_data", e["latency_verdict"]
    assert e["outcomes"]["equal"] == 5, "the slow candidate answers the same"

    send(hap, "/api/plain", 20)
    e = wait_candidate_latencies(miffy, "GET /api/plain", 25)
    v = e["latency_verdict"]
    assert v["verdict"] == "slower", v
    assert v["slower"]["p50"] and v["slower"]["p99"], v
    assert v["candidate"]["p50"] >= SLOW_MS, v
    assert v["reference"]["count"] == 25
    assert v["reference"]["p50"] < SLOW_MS / 2, v
    assert v["ratio"]["p50"] > 2, v
    assert stats_doc(miffy)["latency_rule"] == {"tolerance": 0.25, "floor_ms": 100.0, "min_count": 20}

    m = scrape(miffy)
    assert m.value("miffy_endpoint_latency_verdict", endpoint="GET /api/plain", verdict="slower") == 1
    assert m.value("miffy_endpoint_latency_verdict", endpoint="GET /api/plain", verdict="within_tolerance") == 0
    assert m.value("miffy_endpoint_latency_ratio", endpoint="GET /api/plain", quantile="0.5") > 2


def test_a_fast_candidate_gets_no_latency_verdict(stack):
    miffy, hap = latency_stack(stack, 0)
    send(hap, "/api/plain", 25)
    v = wait_candidate_latencies(miffy, "GET /api/plain", 25)["latency_verdict"]
    assert v["verdict"] == "within_tolerance", v
    assert not v["slower"]["p50"] and not v["slower"]["p99"], v
    m = scrape(miffy)
    assert m.value("miffy_endpoint_latency_verdict", endpoint="GET /api/plain", verdict="within_tolerance") == 1
    assert m.value("miffy_endpoint_latency_verdict", endpoint="GET /api/plain", verdict="slower") == 0


# ---- confidence for noise ----------------------------------------------------

@pytest.fixture
def noisy(stack):
    """/api/changed: the candidate's "length" is one more on every call (a
    regression), while "meta" differs between any two servers, the
    secondary included (noise)."""
    ref, cand, sec = (Demo(stack, r) for r in ("reference", "candidate", "secondary"))
    miffy = stack.miffy(candidate=cand.url, secondary=sec.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=miffy)
    return miffy, hap


def wait_compared(miffy, name, n):
    def ready():
        e = endpoint(miffy, name)
        return e if e and e["compared"] >= n else None
    return wait_for(ready, timeout=30, what=f"{n} compared exchanges of {name}")


def test_confidence_tells_a_regression_from_noise(noisy):
    miffy, hap = noisy
    send(hap, "/api/changed", 3)
    fields = wait_compared(miffy, "GET /api/changed", 3)["noise_fields"]
    # Three exchanges: the candidate differed every time, but that is too
    # few to call anything.
    assert fields["body:/length"]["confidence"]["verdict"] == "insufficient_data", fields
    assert fields["body:/length"]["confidence"]["n"] == 3

    send(hap, "/api/changed", 27)
    fields = wait_compared(miffy, "GET /api/changed", 30)["noise_fields"]
    length = fields["body:/length"]
    assert (length["raw"], length["noise"]) == (30, 0), length
    c = length["confidence"]
    assert c["verdict"] == "regression", c
    assert c["n"] == 30
    assert stats_doc(miffy)["noise_confidence"] == {"level": 0.95, "min_exchanges": 10}
    assert c["lower"] == pytest.approx(0.8395, abs=1e-4) and c["upper"] == 1   # Newcombe, 30/30 vs 0/30
    served_by = fields["body:/meta/served_by"]
    assert (served_by["raw"], served_by["noise"]) == (30, 30), served_by
    c = served_by["confidence"]
    assert c["verdict"] == "noise", c
    assert c["lower"] < 0 < c["upper"]
    noise_verdicts = {k: f["confidence"]["verdict"] for k, f in fields.items()}
    assert [k for k, v in noise_verdicts.items() if v == "regression"] == ["body:/length"], noise_verdicts

    m = scrape(miffy)
    assert m.value("miffy_endpoint_noise_fields", endpoint="GET /api/changed", verdict="regression") == 1
    assert m.value("miffy_endpoint_noise_fields", endpoint="GET /api/changed", verdict="noise") == \
        sum(v == "noise" for v in noise_verdicts.values())
