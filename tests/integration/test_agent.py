"""Agent core against raw SPOP peers and a real HAProxy (the one
MIFFY_HAPROXY names: the machine's 2.6 by default, 3.0 or 3.2)."""
import json
import os
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import BUILD, ROOT, http_get, http_request, raw_exchange, wait_for, wait_port
import spop_client as sp

FIGURES = BUILD / "figures"


def record_figure(name, value):
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"{name}.json").write_text(json.dumps(value, indent=1))


def expect_disconnect(peer, status):
    f = peer.recv_frame()
    assert f.type == sp.AGENT_DISCONNECT, f"expected AGENT-DISCONNECT, got frame type {f.type}"
    kv = f.kv()
    assert kv["status-code"] == status, kv
    assert kv["message"]
    assert peer.closed(), "the agent kept the connection open after DISCONNECT"
    return kv


@pytest.fixture
def agent(stack):
    cand = stack.backend(name="cand")
    return stack.miffy(candidate=cand.url)


# --- HELLO -------------------------------------------------------------------

def test_hello_negotiates_version_frame_size_and_capabilities(agent):
    p = sp.Peer(agent.port)
    kv = p.handshake(max_frame_size=8000).kv()
    assert kv["version"] == "2.0"
    assert kv["max-frame-size"] == 8000
    assert kv["capabilities"] == "pipelining"
    p.close()
    p = sp.Peer(agent.port)
    assert p.handshake(max_frame_size=65536).kv()["max-frame-size"] == 16380
    p.close()


def test_healthcheck_hello_is_answered_then_closed(agent):
    p = sp.Peer(agent.port)
    f = p.handshake(healthcheck=True, caps="")
    assert f.flags & sp.FIN
    assert f.kv()["version"] == "2.0"
    assert p.closed()
    assert agent.stats()["spop"]["healthchecks"] == 1


def test_notify_is_acked_with_one_harmless_action_and_pipelined_in_order(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    msgs = [sp.notify([sp.res_message(f"orphan-{i}")], stream_id=10 + i, frame_id=100 + i)
            for i in range(3)]
    p.send(b"".join(msgs))
    for i in range(3):
        f = p.recv_frame()
        assert f.type == sp.ACK
        assert (f.stream_id, f.frame_id) == (10 + i, 100 + i)
        assert f.ack_actions() == [(1, 2, "ack", True)]
    s = agent.stats()["spop"]
    assert s["notify"] == 3 and s["ack"] == 3


def test_haproxy_disconnect_is_answered_with_status_0(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    p.send(sp.frame(sp.HAPROXY_DISCONNECT, sp.kv([("status-code", ("uint32", 0)), ("message", "bye")])))
    expect_disconnect(p, 0)


# --- bad peers ---------------------------------------------------------------

BAD_PEERS = {
    # name: (bytes sent after an optional HELLO, hello first?, expected status)
    "http_garbage": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, 3),
    "two_gib_length": (struct.pack(">I", 2**31) + b"\x03" + b"\x00" * 16, False, 3),
    "unknown_type_before_hello": (struct.pack(">I", 7) + b"\xff\x00\x00\x00\x01\x00\x00", False, 4),
    "notify_before_hello": (sp.notify([sp.res_message("x")]), False, 4),
    "hello_without_version": (sp.hello(omit=("supported-versions",)), False, 5),
    "hello_without_frame_size": (sp.hello(omit=("max-frame-size",)), False, 6),
    "hello_without_capabilities": (sp.hello(omit=("capabilities",)), False, 7),
    "hello_bad_version": (sp.hello(versions="1.0,3.5"), False, 8),
    "hello_frame_size_too_small": (sp.hello(max_frame_size=100), False, 9),
    "frame_above_max_frame_size": (struct.pack(">I", 1001) + b"\x03" + b"\x00" * 1001, True, 3),
    "unknown_type_after_hello": (sp.frame(42, b""), True, 4),
    "agent_frame_from_haproxy": (sp.frame(sp.ACK, b""), True, 4),
    "fragmented_notify": (sp.notify([sp.res_message("x")], flags=0), True, 10),
    "continuation_frame": (sp.frame(0, b"\x00"), True, 10),
    "lying_length": (struct.pack(">I", 6) + b"\x03\x00\x00\x00\x01\xf0", True, 4),
    "malformed_message": (sp.frame(sp.NOTIFY, b"\x09miffy-req\x02\x02id\x08\x7fab", sp.FIN, 1, 1), True, 4),
    "second_hello": (sp.hello(), True, 4),
}


@pytest.mark.parametrize("case", sorted(BAD_PEERS))
def test_bad_peer_gets_the_right_disconnect_status(agent, case):
    data, hello_first, status = BAD_PEERS[case]
    p = sp.Peer(agent.port)
    if hello_first:
        p.handshake(max_frame_size=1000)
    p.send(data)
    expect_disconnect(p, status)
    # The agent still serves a well-behaved peer.
    q = sp.Peer(agent.port)
    q.handshake()
    q.send(sp.notify([sp.res_message("after")]))
    assert q.recv_frame().type == sp.ACK
    q.close()
    assert f"status {status}" in agent.log()


def test_peer_that_closes_mid_frame_is_dropped_quietly(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    p.send(sp.notify([sp.res_message("x")])[:10])
    p.close()
    q = sp.Peer(agent.port)
    q.handshake()
    q.send(sp.notify([sp.res_message("y")]))
    assert q.recv_frame().type == sp.ACK
    wait_for(lambda: agent.stats()["spop"]["connections_active"] == 1, what="the dead peer dropped")


def test_idle_connection_gets_timeout_status(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "idle_timeout=0.3"])
    p = sp.Peer(m.port)
    p.handshake()
    expect_disconnect(p, 2)


def test_connection_limit_refuses_extra_peers_with_a_log_line(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "max_connections=2"])
    # The fixture's readiness probe must be gone before we count.
    wait_for(lambda: m.stats()["spop"]["connections_active"] == 0, what="probe connection closed")
    keep = [sp.Peer(m.port) for _ in range(2)]
    for k in keep:
        k.handshake()
    extra = sp.Peer(m.port)
    assert extra.closed()
    assert "connection limit reached (max_connections=2)" in m.log()
    assert m.stats()["spop"]["connections_refused"] == 1
    keep[0].send(sp.notify([sp.res_message("z")]))
    assert keep[0].recv_frame().type == sp.ACK


# --- exchanges: counted outcomes, never a crash -------------------------------

def send_and_ack(peer, messages, sid=1):
    peer.send(sp.notify(messages, stream_id=sid, frame_id=sid))
    assert peer.recv_frame().type == sp.ACK


def test_bad_messages_are_counted_anomalies(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    send_and_ack(p, [sp.message("miffy-req", [("method", "GET"), ("path", "/x")])])       # no id
    send_and_ack(p, [sp.message("miffy-req", [("id", None), ("method", "GET")])])         # NULL id
    send_and_ack(p, [sp.message("miffy-req", [("id", "a1"), ("method", None)])])          # NULL method
    send_and_ack(p, [sp.res_message("never-requested")])                                  # orphan
    send_and_ack(p, [sp.message("something-else", [("id", "q")])])                        # unknown
    send_and_ack(p, [sp.message("miffy-req", [("id", "h1"), ("method", "GET"), ("path", "/x"),
                                              ("headers", b"\x05ab")])])                   # bad hdrs_bin
    send_and_ack(p, [sp.req_message("dup"), sp.req_message("dup")])                       # duplicate
    send_and_ack(p, [sp.message("miffy-res", [("id", "dup"), ("status", None)])])          # NULL status
    send_and_ack(p, [sp.message("", [])])                                                 # empty message
    s = agent.stats()
    a = s["anomalies"]
    assert a["missing_id"] == 2
    assert a["bad_args"] == 3
    assert a["orphan_response"] == 1
    assert a["unknown_message"] == 2
    assert a["duplicate_id"] == 1


def test_request_without_response_expires_after_ttl(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "exchange_ttl=0.5"])
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("lonely-1"), sp.req_message("lonely-2")])
    wait_for(lambda: m.stats()["outcomes"]["expired"] == 2, timeout=5, what="2 expired exchanges")
    send_and_ack(p, [sp.res_message("lonely-1")], sid=2)
    assert m.stats()["anomalies"]["orphan_response"] == 1


def test_exchange_cap_sheds_and_counts(stack):
    cand = stack.backend(name="cand", mode="hang")
    m = stack.miffy(candidate=cand.url, args=["-o", "max_exchanges=3", "-o", "exchange_ttl=60"])
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.req_message(f"cap-{i}") for i in range(5)])
    s = m.stats()
    assert s["outcomes"]["dropped"] == 2
    assert "exchange table full (max_exchanges=3)" in m.log()


def test_skipped_exchange_is_counted_once_when_its_response_arrives(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("post-1", method="POST", body=b"x")])
    send_and_ack(p, [sp.res_message("post-1")], sid=2)
    s = agent.stats()
    assert s["outcomes"]["skipped"] == 1 and s["skipped"]["method"] == 1
    assert s["anomalies"]["orphan_response"] == 0


# --- through a real HAProxy --------------------------------------------------

def ka_sequence(port, requests):
    """Sends requests over one keep-alive connection; returns the responses."""
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    out = []
    for method, path, body in requests:
        conn.request(method, path, body=body, headers={"Host": "test", "X-Test": "1"})
        r = conn.getresponse()
        out.append((r.status, r.getheaders(), r.read()))
    conn.close()
    return out


REQUESTS = [
    ("GET", "/api/small?q=1", None),
    ("POST", "/api/post", b"hello=world"),
    ("GET", "/api/big/102400", None),
    ("POST", "/api/bigpost", b"p" * 102400),
    ("GET", "/api/again", None),
]


def test_clients_get_byte_identical_responses_with_and_without_the_agent(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "methods={GET,HEAD,OPTIONS,POST}"])
    shadowed = stack.haproxy(reference=ref, agent=m, name="hap-shadow")
    plain = stack.haproxy(reference=ref, agent=m, shadow=False, name="hap-plain")
    for method, path, body in REQUESTS:
        req = f"{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        if body:
            req += f"Content-Length: {len(body)}\r\n"
        raw = req.encode() + b"\r\n" + (body or b"")
        a = raw_exchange(shadowed.port, raw)
        b = raw_exchange(plain.port, raw)
        assert a == b, f"{method} {path}: responses differ"
        assert a.startswith(b"HTTP/1.1 200")
    assert ka_sequence(shadowed.port, REQUESTS) == ka_sequence(plain.port, REQUESTS)
    # 5 shadowed requests per round, 2 rounds: 10 exchanges, one message each.
    s = wait_for(lambda: (lambda s: s if sum(s["outcomes"].values()) >= 10 else None)(m.stats()),
                 what="10 finished exchanges")
    assert s["spop"]["notify"] == 10, s
    assert s["spop"]["ack"] == 10
    assert s["spop"]["messages"] == 10
    assert s["anomalies"] == {k: 0 for k in s["anomalies"]}
    # The 100 KB POST is cut by HAProxy's 16 KB buffer: not replayed.
    assert s["skipped"]["request_truncated"] == 2


def measure(port, n=40, path="/api/m"):
    lat = []
    for i in range(n):
        t = time.perf_counter()
        status, _, body = http_get(port, f"{path}?i={i}")
        lat.append(time.perf_counter() - t)
        assert status == 200, (status, body)
        assert json.loads(body)["path"] == f"{path}?i={i}"
    lat.sort()
    return {"p50_ms": round(lat[len(lat) // 2] * 1000, 2), "max_ms": round(lat[-1] * 1000, 2)}


def test_agent_not_started_clients_get_every_response(stack):
    ref = stack.backend(name="ref")
    hap = stack.haproxy(reference=ref, agent_port=wait_free_port(), timeouts="shipped")
    plain = stack.haproxy(reference=ref, shadow=False, name="hap-plain", agent_port=1)
    fig = {"baseline": measure(plain.port), "agent_never_started": measure(hap.port)}
    record_figure("agent_not_started", fig)
    print(fig)


def wait_free_port():
    from conftest import free_port
    return free_port()


def test_agent_killed_or_stalled_clients_get_every_response(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url)
    hap = stack.haproxy(reference=ref, agent=m, timeouts="shipped")
    fig = {"healthy": measure(hap.port)}
    errors = []
    results = []
    stop = threading.Event()

    def load():
        while not stop.is_set():
            try:
                t = time.perf_counter()
                status, _, _ = http_get(hap.port, "/api/load")
                results.append(time.perf_counter() - t)
                if status != 200:
                    errors.append(status)
            except Exception as e:  # noqa: BLE001 - any client failure is the finding
                errors.append(repr(e))

    th = threading.Thread(target=load)
    th.start()
    time.sleep(0.5)
    m.proc.signal(signal.SIGSTOP)
    fig["stalled_first_3s"] = measure(hap.port, n=20)
    time.sleep(3.5)
    fig["stalled_after_check_down"] = measure(hap.port, n=20)
    m.proc.signal(signal.SIGKILL)
    fig["killed"] = measure(hap.port, n=20)
    stop.set()
    th.join()
    record_figure("agent_killed_stalled", fig)
    print(fig)
    assert not errors, errors[:5]
    assert len(results) > 20
    # A stalled agent costs at most "timeout processing" per transaction:
    # nothing near the 1 s that counts as a held request.
    assert fig["stalled_first_3s"]["max_ms"] < 1000
    stack.sanitized.remove(m.proc)  # SIGKILL leaves no sanitizer summary to check


def test_streaming_response_still_streams(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url)
    hap = stack.haproxy(reference=ref, agent=m, timeouts="shipped")
    with socket.create_connection(("127.0.0.1", hap.port), timeout=5) as s:
        t = time.perf_counter()
        s.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        first = s.recv(65536)
        first_at = time.perf_counter() - t
        data = first
        while b"0\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        total = time.perf_counter() - t
    assert first.startswith(b"HTTP/1.1 200")
    assert b"data: 4" in data
    assert first_at < 0.3 and total > 0.35, (first_at, total)


def test_api_stream_is_not_held_for_shadowing(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url)
    hap = stack.haproxy(reference=ref, agent=m, timeouts="shipped")
    with socket.create_connection(("127.0.0.1", hap.port), timeout=5) as s:
        t = time.perf_counter()
        s.sendall(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n")
        first = s.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        assert time.perf_counter() - t < 0.3


def test_slow_reference_body_is_not_turned_into_504(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url)
    hap = stack.haproxy(reference=ref, agent=m, timeouts="shipped")
    status, _, body = http_get(hap.port, "/api/slowbody/1500")
    assert status == 200 and json.loads(body) == {"slowbody": True}


# --- process lifecycle and CLI -------------------------------------------------

def sigterm_then_refused_check(m):
    """SIGTERMs agent m and checks that a health check then gets a
    DISCONNECT (status 0); returns when the signal was sent."""
    t = time.perf_counter()
    m.proc.signal(signal.SIGTERM)
    time.sleep(0.1)
    check = sp.Peer(m.port)
    check.send(sp.hello(healthcheck=True))
    expect_disconnect(check, 0)
    return t


def test_sigterm_drains_in_flight_work_and_exits_zero(stack):
    cand = stack.backend(name="cand", delay_ms=700)
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("drain-1"), sp.res_message("drain-1")])
    # Draining, the agent fails health checks (HAProxy marks it down) ...
    t = sigterm_then_refused_check(m)
    # ... but still serves every HAProxy connection, old and new, so no
    # event is refused while HAProxy counts on it.
    late = sp.Peer(m.port)
    late.handshake()
    send_and_ack(late, [sp.req_message("drain-2"), sp.res_message("drain-2")])
    send_and_ack(p, [sp.req_message("drain-3"), sp.res_message("drain-3")], sid=3)
    # HAProxy closes its connections once its check sees the agent gone.
    p.close()
    late.close()
    rc = m.proc.popen.wait(timeout=10)
    took = time.perf_counter() - t
    assert rc == 0
    assert 0.5 < took < 5, took
    log = m.log()
    assert "draining 1 in-flight" in log
    assert "refused, HAProxy will mark the agent down" in log
    assert '"equal":3' in log or '"different":3' in log


def test_sigterm_exits_once_haproxy_stops_sending(stack):
    """HAProxy may keep idle connections to an agent it marked down: once a
    check was refused and nothing came for a second, the agent goes."""
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "drain_timeout=20"])
    p = sp.Peer(m.port)
    p.handshake()
    t = sigterm_then_refused_check(m)
    rc = m.proc.popen.wait(timeout=10)
    took = time.perf_counter() - t
    assert rc == 0 and took < 5, (rc, took)
    assert "HAProxy stopped sending" in m.log()
    assert p.closed()


def test_drain_is_bounded_by_drain_timeout(stack):
    cand = stack.backend(name="cand", mode="hang")
    m = stack.miffy(candidate=cand.url, args=["-o", "drain_timeout=0.5", "-o", "timeout=30"])
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("stuck-1"), sp.res_message("stuck-1")])
    t = time.perf_counter()
    m.proc.signal(signal.SIGTERM)
    assert m.proc.popen.wait(timeout=10) == 0
    assert time.perf_counter() - t < 3
    assert "drain timeout" in m.log()
    # The peer never closed: after the bound the agent hangs up on it.
    assert "closing the 1 connections HAProxy still holds" in m.log()
    assert '"shutdown":1' in m.log()


def run_miffy(*args, **kw):
    return subprocess.run([str(BUILD / "miffy"), *args], capture_output=True, text=True, timeout=10, **kw)


def test_cli_check_version_help():
    r = run_miffy("--candidate", "http://127.0.0.1:1", "--check")
    assert r.returncode == 0 and "configuration ok" in r.stdout
    r = run_miffy("--version")
    assert r.returncode == 0 and r.stdout.startswith("miffy ")
    r = run_miffy("--help")
    assert r.returncode == 0
    for word in ("--listen", "--candidate", "--secondary", "--kafka", "--topic", "--sink",
                 "--admin", "--check", "--version", "exchange_ttl", "methods", "SIGHUP"):
        assert word in r.stdout, word


@pytest.mark.parametrize("args,needle", [
    ([], "no candidate"),
    (["--candidate", "ftp://x"], 'candidate URL "ftp://x": scheme must be http or https'),
    # --check refuses what the start refuses: the same function checks both.
    (["--candidate", "http://x/?a=1", "--check"], "must not have a query or a fragment"),
    (["--candidate", "http://x", "--secondary", "http://[::1", "--check"], 'secondary URL "http://[::1" is invalid'),
    # Integers kept in an unsigned are range-checked, not wrapped at 2^32.
    (["--candidate", "http://x", "-o", "max_exchanges=4294967297"],
     "max_exchanges must be an integer between 1 and 4294967295"),
    (["--candidate", "http://x", "-o", "max_concurrent=0"],
     "max_concurrent must be an integer between 1 and 4294967295"),
    (["--candidate", "http://x", "-o", "max_candidate_rps=-1"],
     "max_candidate_rps must be an integer between 0 and 4294967295"),
    (["--candidate", "http://x", "-o", "max_candidate_rps=4294967296"],
     "max_candidate_rps must be an integer between 0 and 4294967295"),
    (["--candidate", "http://x", "-o", "max_host_connections=0"],
     "max_host_connections must be an integer between 1 and 4294967295"),
    (["--candidate", "http://x", "--listen", "nowhere"], "listen must be ADDR:PORT"),
    (["--candidate", "http://x", "--sink", "kafkaa"], "sink must be kafka, stdout or file:PATH"),
    (["--candidate", "http://x", "--bogus"], "unknown option --bogus"),
    (["--candidate", "http://x", "-o", "timeout=-1"], "timeout must be a positive number"),
    (["--candidate", "http://x", "-o", "publish=some"], "publish must be differences, noise or all"),
    (["--candidate", "http://x", "-o", "latency_tolerance=-0.1"], "latency_tolerance must be zero or positive"),
    (["--candidate", "http://x", "-o", "latency_min_count=0"],
     "latency_min_count must be an integer between 1 and 4294967295"),
    (["--candidate", "http://x", "extra"], "unexpected argument"),
])
def test_bad_flags_exit_2_with_one_line(args, needle):
    r = run_miffy(*args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_config_file_names_file_and_line(tmp_path):
    conf = tmp_path / "m.conf"
    conf.write_text('candidate = "http://127.0.0.1:1"\n\nmax_frame_size = 10\n')
    r = run_miffy("-f", conf)
    assert r.returncode == 2
    assert f"{conf}:3: max_frame_size must be between 256 and 16777216" in r.stderr
    conf.write_text('candidate = "http://127.0.0.1:1"\nno_such_key = 1\n')
    r = run_miffy("-f", conf)
    assert r.returncode == 2 and f"{conf}:2:" in r.stderr and "no_such_key" in r.stderr
    conf.write_text('candidate = "http://127.0.0.1:1"\nmax_connections = 4294967296\n')
    r = run_miffy("-f", conf, "--check")
    assert r.returncode == 2
    assert f"{conf}:2: max_connections must be an integer between 1 and 4294967295" in r.stderr
    r = run_miffy("-f", tmp_path / "missing.conf")
    assert r.returncode == 2 and "cannot read" in r.stderr


def test_shipped_config_file_is_valid():
    r = run_miffy("-f", ROOT / "conf" / "miffy.conf", "--candidate", "http://127.0.0.1:1", "--check")
    assert r.returncode == 0, r.stderr


def test_listen_address_in_use_is_a_clear_error(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url)
    r = run_miffy("--candidate", cand.url, "--listen", f"127.0.0.1:{m.port}", "--admin", "off",
                  "--sink", "stdout")
    assert r.returncode == 1
    assert "cannot listen on" in r.stderr and "in use" in r.stderr


def test_request_the_replay_refuses_is_skipped_as_unreplayable(agent):
    p = sp.Peer(agent.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("star", method="OPTIONS", path="*"), sp.res_message("star")])
    s = wait_for(lambda: (lambda s: s if s["outcomes"]["skipped"] else None)(agent.stats()),
                 what="the exchange to end")
    assert s["skipped"]["unreplayable"] == 1
    assert "OPTIONS * cannot be replayed to the candidate" in agent.log()


def test_connection_without_hello_is_closed_after_hello_timeout(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "hello_timeout=0.3", "-o", "idle_timeout=60"])
    p = sp.Peer(m.port)
    t = time.perf_counter()
    kv = expect_disconnect(p, 2)
    assert kv["message"] == "no HELLO in time"
    assert time.perf_counter() - t < 2
    # After HELLO the idle timeout applies instead.
    q = sp.Peer(m.port)
    q.handshake()
    q.sock.settimeout(0.8)
    with pytest.raises(socket.timeout):
        q.sock.recv(1)


def test_hello_trickled_byte_by_byte_still_times_out(stack):
    """Bytes before HELLO do not push the HELLO deadline back: a peer that
    trickles cannot hold a connection slot."""
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "hello_timeout=0.5", "-o", "idle_timeout=60"])
    p = sp.Peer(m.port)
    hello = sp.hello()
    t = time.perf_counter()
    closed_after = None
    for i in range(15):   # one byte every 0.2 s for 3 s, far past the timeout
        try:
            p.send(hello[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.perf_counter() - t
            break
        if p.closed(timeout=0.2):
            closed_after = time.perf_counter() - t
            break
    assert closed_after is not None, "a trickling peer kept its connection for 3 s"
    assert closed_after < 1.5
    assert b"no HELLO in time" in p.buf


def test_body_memory_budget_sheds_and_counts(stack):
    cand = stack.backend(name="cand", mode="hang")
    m = stack.miffy(candidate=cand.url, args=["-o", "max_buffered=25000", "-o", "exchange_ttl=60",
                                              "-o", "methods={GET,POST}"])
    p = sp.Peer(m.port)
    p.handshake()
    # Two 10 kB request bodies fit the 25 kB budget; the third does not.
    for i in range(3):
        send_and_ack(p, [sp.req_message(f"mem-{i}", method="POST", body=b"b" * 10000)], sid=10 + i)
    wait_for(lambda: "max_buffered (25000 bytes) reached: exchange skipped" in m.log(),
             what="the shedding log line")
    send_and_ack(p, [sp.res_message("mem-2")], sid=2)
    s = wait_for(lambda: (lambda s: s if s["outcomes"]["skipped"] else None)(m.stats()),
                 what="the shed exchange to end")
    assert s["skipped"]["overload"] == 1
    assert s["outcomes"]["skipped"] == 1


def test_a_signal_as_soon_as_the_port_opens_is_handled_not_fatal(stack):
    """A reload or logrotate may signal the agent the moment it can be
    reached: the signal waits for the loop instead of killing the process
    by its default action (SIGHUP, SIGUSR2 terminate)."""
    from conftest import WRAPPER, free_port
    port, admin = free_port(), free_port()
    argv = WRAPPER + [BUILD / "miffy", "--listen", f"127.0.0.1:{port}", "--candidate", "http://127.0.0.1:9",
            "--admin", f"127.0.0.1:{admin}", "--sink", "stdout"]
    p = stack.start("early-signal", argv, sanitized=True)
    deadline = time.time() + 20
    while time.time() < deadline and p.alive():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            pass  # no sleep: the signal must come as early as it can
    p.signal(signal.SIGHUP)
    p.signal(signal.SIGUSR2)
    wait_for(lambda: "SIGHUP: log and sink files reopened" in p.log() and " stats {" in p.log(), 10,
             what="both signals handled")
    assert p.alive(), p.log()
    assert p.stop() == 0, p.log()
