"""The SPOE message shapes the agent accepts, from a raw SPOP peer: the
whole transaction in one miffy-tx (what haproxy/haproxy.cfg sends), and the
two-message shape miffy-req + miffy-res, both on the same port."""
import json

from conftest import wait_for
import spop_client as sp

BODY = b'{"name": "widget", "price": 10}'
OTHER = b'{"name": "widget", "price": 12}'


def send_and_ack(peer, messages, sid=1):
    peer.send(sp.notify(messages, stream_id=sid, frame_id=sid))
    f = peer.recv_frame()
    assert f.type == sp.ACK and f.stream_id == sid and f.frame_id == sid


def outcomes(agent):
    return agent.stats()["outcomes"]


def test_one_message_is_replayed_and_compared_without_pairing(stack):
    cand = stack.backend(name="cand", mode="static", body=BODY.decode(), record=True)
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.tx_message("tx-equal", path="/api/a", query="q=1", res_body=BODY)])
    send_and_ack(p, [sp.tx_message("tx-diff", path="/api/b", res_body=OTHER, latency_us=2500)], sid=3)
    wait_for(lambda: outcomes(m)["equal"] == 1 and outcomes(m)["different"] == 1, timeout=5,
             what="one equal and one different exchange")
    assert sorted(r["path"] for r in cand.requests()) == ["/api/a?q=1", "/api/b"]
    [msg] = m.published()
    assert msg["id"] == "tx-diff" and msg["outcome"] == "different"
    assert msg["request"]["path"] == "/api/b"
    # The reference's time comes from HAProxy (latency_us), not from the agent.
    assert msg["reference"]["latency_ms"] == 2.5
    assert msg["reference"]["truncated"] is False
    assert [d["path"] for d in msg["differences"]] == ["/price"]
    s = m.stats()
    assert s["anomalies"]["orphan_response"] == 0 and s["outcomes"]["expired"] == 0


def test_one_message_with_a_capped_body_is_compared_as_cut(stack):
    cand = stack.backend(name="cand", mode="static", body=BODY.decode())
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    # HAProxy's bytes(0,N) sent the first 12 bytes of a body of len(BODY).
    send_and_ack(p, [sp.tx_message("tx-cut", res_body=BODY[:12], res_body_len=len(BODY))])
    wait_for(lambda: sum(outcomes(m).values()) == 1, timeout=5, what="one finished exchange")
    assert outcomes(m)["equal"] == 1, "a prefix of the candidate's body is not a difference"


def test_one_message_is_skipped_like_a_request_for_its_method(stack):
    cand = stack.backend(name="cand", record=True)
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.tx_message("tx-post", method="POST", body=b"a=1")])
    wait_for(lambda: outcomes(m)["skipped"] == 1, timeout=5, what="one skipped exchange")
    assert m.stats()["skipped"]["method"] == 1
    assert cand.requests() == []


def test_one_message_without_request_headers_is_not_replayed(stack):
    """A miffy-tx whose req_headers variable HAProxy did not set (over
    tune.vars.txn-max-size) would replay a request without its headers."""
    cand = stack.backend(name="cand", record=True)
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.message("miffy-tx", [("id", "tx-nohdrs"), ("method", "GET"), ("path", "/api/x"),
                                             ("req_headers", None), ("status", 200)])])
    wait_for(lambda: outcomes(m)["skipped"] == 1, timeout=5, what="one skipped exchange")
    assert m.stats()["skipped"]["request_truncated"] == 1
    assert "miffy-tx without req_headers" in m.log()
    assert cand.requests() == []


def test_bad_one_messages_are_counted_anomalies(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, args=["-o", "exchange_ttl=0.5"])
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.message("miffy-tx", [("method", "GET"), ("path", "/x"), ("status", 200)])])
    send_and_ack(p, [sp.tx_message("tx-nostatus", status=None)], sid=3)
    send_and_ack(p, [sp.message("miffy-tx", [("id", "tx-nopath"), ("method", "GET"), ("status", 200)])],
                 sid=5)
    send_and_ack(p, [sp.tx_message("tx-dup"), sp.tx_message("tx-dup")], sid=7)
    wait_for(lambda: m.stats()["anomalies"]["duplicate_id"] == 1, timeout=5, what="the duplicate counted")
    a = m.stats()["anomalies"]
    assert a["missing_id"] == 1
    assert a["bad_args"] == 2
    assert "miffy-tx without id (set unique-id-format)" in m.log()
    assert "response without a valid status" in m.log()
    # The exchange without a status never gets a reference: it expires, counted.
    wait_for(lambda: outcomes(m)["expired"] == 1, timeout=5, what="the exchange without status expired")


def test_both_shapes_on_one_connection(stack):
    cand = stack.backend(name="cand", mode="static", body=BODY.decode())
    m = stack.miffy(candidate=cand.url)
    p = sp.Peer(m.port)
    p.handshake()
    send_and_ack(p, [sp.req_message("two-1")])
    send_and_ack(p, [sp.tx_message("one-1", res_body=BODY)], sid=3)
    send_and_ack(p, [sp.res_message("two-1", body=BODY)], sid=5)
    wait_for(lambda: outcomes(m)["equal"] == 2, timeout=5, what="both exchanges equal")
    assert m.stats()["anomalies"] == {k: 0 for k in m.stats()["anomalies"]}


def test_ack_latency_is_a_histogram_in_metrics(stack):
    cand = stack.backend(name="cand")
    m = stack.miffy(candidate=cand.url, admin=True)
    p = sp.Peer(m.port)
    p.handshake()
    for i in range(20):
        send_and_ack(p, [sp.tx_message(f"lat-{i}")], sid=2 * i + 1)
    import http.client
    conn = http.client.HTTPConnection("127.0.0.1", m.admin_port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    lines = {l.split(" ")[0]: float(l.split(" ")[1]) for l in text.splitlines()
             if l.startswith("miffy_spop_ack_latency_seconds")}
    assert lines['miffy_spop_ack_latency_seconds_count'] == 20
    assert lines['miffy_spop_ack_latency_seconds_bucket{le="+Inf"}'] == 20
    # How fast is the benchmark's to tell (bench/run); here: the buckets are
    # cumulative and /stats tells the same story.
    cum = [v for k, v in lines.items() if "_bucket" in k]
    assert cum == sorted(cum) and len(cum) == 15
    conn.request("GET", "/stats")
    ack = json.loads(conn.getresponse().read())["spop"]["ack_latency"]
    assert ack["count"] == 20
    assert ack["within_1ms"] == lines['miffy_spop_ack_latency_seconds_bucket{le="0.001"}']
    assert ack["max_ms"] > 0
