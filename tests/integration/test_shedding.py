"""A slow candidate through a real HAProxy: how much of the traffic the
default limits compare, how shedding spreads over endpoints when a limit
is reached, and that the candidate's caps (max_candidate_rps,
max_host_connections) hold. What is checked is what a user reads: the
candidate's own record of what it received, /stats and /metrics.

The candidate is candidate_server.py in mode "slow" (it answers after
--delay-ms) or "echo"; the agent ACKs at once, so the client never waits
for it.
"""
import concurrent.futures
import http.client
import threading
import time

from conftest import http_get, wait_for
from test_replay import CandidateServer, wait_outcomes


def shadow_stack(stack, mode="echo", delay_ms=0, args=()):
    """reference + candidate + miffy (admin on) + HAProxy, the agent UP."""
    ref = stack.backend(name="ref")
    cand = CandidateServer(stack, mode=mode, delay_ms=delay_ms)
    agent = stack.miffy(candidate=cand.url, args=list(args), admin=True)
    hap = stack.haproxy(reference=ref, agent=agent)
    wait_for(lambda: hap.agent_status() == "UP", 15, what="agent UP")
    return ref, cand, agent, hap


def compared(counts):
    return counts["equal"] + counts["different"] + counts["noise"]


def load(port, paths, seconds, clients):
    """clients threads GET paths[i % len(paths)] in turn on keep-alive
    connections for seconds; returns the requests sent (all must be 200)."""
    stop = time.time() + seconds
    sent = [0] * clients

    def client(k):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        i = 0
        while time.time() < stop:
            conn.request("GET", paths[(k + i) % len(paths)])
            r = conn.getresponse()
            r.read()
            assert r.status == 200
            i += 1
        conn.close()
        sent[k] = i

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    return sum(sent)


def settled(agent, timeout=30):
    """The stats once every exchange started has ended."""
    def done():
        s = agent.stats()
        return s if s["exchanges"]["inflight"] == 0 and sum(s["outcomes"].values()) == \
            s["exchanges"]["started"] else None
    return wait_for(done, timeout, interval=0.3, what="every exchange to end")


def metric_lines(port, name):
    _, _, body = http_get(port, "/metrics")
    return [l for l in body.decode().splitlines() if l.startswith(name + "{")]


def test_a_slow_candidate_is_mostly_compared_on_the_defaults(stack):
    # 200 ms per answer: a few hundred replays in flight at this rate,
    # far above the former fixed 64 connections.
    ref, cand, agent, hap = shadow_stack(stack, mode="slow", delay_ms=200)
    sent = load(hap.port, ["/api/slow"], 4.0, 4)
    stats = settled(agent)
    done = sum(stats["outcomes"].values())
    share = compared(stats["outcomes"]) / done
    ep = stats["endpoints"]["GET /api/slow"]
    print(f"\n{sent} requests, {compared(stats['outcomes'])} compared ({share * 100:.1f} %), "
          f"outcomes {stats['outcomes']}, skipped {stats['skipped']}, errors {stats['replays']['candidate']}, limits {stats['replays']['limits']}")
    # HAProxy sends the events of nearly every request (none are lost to
    # its breaker: the agent ACKs at once)
    assert done >= 0.95 * sent
    # What the defaults decide is what the agent sheds: at most 10 %. A
    # replay that the candidate (a Python server) failed to answer in time
    # on a loaded machine was still sent, and is counted as its error.
    replayed = stats["replays"]["candidate"]["started"]
    assert replayed >= 0.9 * done
    answered = replayed - sum(stats["replays"]["candidate"].get("errors", {}).values())
    assert compared(stats["outcomes"]) >= answered - 1
    if answered >= 0.95 * replayed:  # the candidate kept up: the user's view
        assert share >= 0.9
        assert ep["compared_pct"] >= 90.0
    assert ep["compared_pct"] == round(100.0 * ep["compared"] / ep["total"], 3)
    limits = stats["replays"]["limits"]
    assert limits["max_concurrent"] == 268435456 // 16384
    assert 1 <= limits["max_host_connections"] <= limits["max_concurrent"]
    assert limits["max_candidate_rps"] == 0
    assert f'miffy_replay_limit{{limit="concurrent"}} {268435456 // 16384}' in \
        http_get(agent.admin_port, "/metrics")[2].decode()


def test_a_rare_endpoint_is_still_compared_while_a_hot_one_is_shed(stack):
    ref, cand, agent, hap = shadow_stack(stack, mode="slow", delay_ms=300,
                                         args=["-o", "max_concurrent=20"])
    rare_sent = 0
    stop = threading.Event()

    def rare():
        nonlocal rare_sent
        while not stop.is_set():
            status, _, _ = http_get(hap.port, "/api/rare")
            assert status == 200
            rare_sent += 1
            stop.wait(0.2)

    t = threading.Thread(target=rare)
    t.start()
    try:
        time.sleep(0.3)  # the rare endpoint is known before the flood
        hot_sent = load(hap.port, ["/api/hot"], 5.0, 12)
    finally:
        stop.set()
        t.join()
    stats = wait_outcomes(agent, hot_sent + rare_sent, timeout=30)
    hot, rare_ep = stats["endpoints"]["GET /api/hot"], stats["endpoints"]["GET /api/rare"]
    print(f"\nhot: {hot['total']} exchanges, {hot['compared_pct']} % compared, skipped {hot['skipped']}; "
          f"rare: {rare_ep['total']}, {rare_ep['compared_pct']} % compared, skipped {rare_ep['skipped']}")
    assert hot["total"] == hot_sent and rare_ep["total"] == rare_sent
    # the hot one was sampled down, the rare one kept
    assert hot["skipped"]["overload"] > hot["total"] // 2
    assert hot["compared_pct"] < 50.0
    assert rare_ep["compared_pct"] >= 90.0
    assert rare_ep["skipped"].get("overload", 0) <= rare_ep["total"] // 10
    # counted per endpoint and reason on /metrics too, with the same share
    skipped = metric_lines(agent.admin_port, "miffy_endpoint_skipped_total")
    assert (f'miffy_endpoint_skipped_total{{endpoint="GET /api/hot",reason="overload"}} '
            f'{hot["skipped"]["overload"]}') in skipped
    ratios = dict(l.rsplit(" ", 1) for l in metric_lines(agent.admin_port, "miffy_endpoint_compared_ratio"))
    assert abs(float(ratios['miffy_endpoint_compared_ratio{endpoint="GET /api/rare"}']) * 100
               - rare_ep["compared_pct"]) < 0.01
    assert stats["skipped"]["overload"] == hot["skipped"]["overload"] + rare_ep["skipped"].get("overload", 0)


def test_the_rate_cap_holds_and_sheds_as_candidate_cap(stack):
    cap = 20
    ref, cand, agent, hap = shadow_stack(stack, args=["-o", f"max_candidate_rps={cap}"])
    t0 = time.time()
    sent = load(hap.port, ["/api/rated"], 3.0, 6)
    elapsed = time.time() - t0
    stats = wait_outcomes(agent, sent, timeout=20)
    got = sorted(r["time"] for r in cand.requests())
    ep = stats["endpoints"]["GET /api/rated"]
    # the most the candidate received in any one second
    peak = max(sum(1 for x in got[i:] if x < t + 1.0) for i, t in enumerate(got))
    print(f"\n{sent} requests in {elapsed:.1f}s; the candidate received {len(got)}, "
          f"at most {peak} in one second; skipped {stats['skipped']}")
    assert sent > 4 * cap * elapsed  # well above the cap
    assert len(got) <= cap * (elapsed + 1.2)
    assert len(got) >= cap * (elapsed - 1.0)  # the cap is used, not overshed
    assert peak <= cap * 1.2 + 2
    assert stats["skipped"]["candidate_cap"] == sent - len(got)
    assert ep["skipped"] == {"candidate_cap": sent - len(got)}
    assert stats["replays"]["limits"]["max_candidate_rps"] == cap


def test_the_connection_cap_holds_and_sheds_as_candidate_cap(stack):
    ref, cand, agent, hap = shadow_stack(stack, mode="slow", delay_ms=200,
                                         args=["-o", "max_host_connections=4"])
    sent = load(hap.port, ["/api/conns"], 3.0, 8)
    stats = wait_outcomes(agent, sent, timeout=20)
    reqs = cand.requests()
    conns = {r["conn"] for r in reqs}
    print(f"\n{sent} requests; the candidate received {len(reqs)} on {len(conns)} connections; "
          f"skipped {stats['skipped']}")
    # (the candidate's "accepted" also counts the test's own port checks)
    assert len(conns) <= 4
    assert stats["skipped"]["candidate_cap"] > 0
    assert stats["skipped"]["candidate_cap"] + compared(stats["outcomes"]) == sent
    assert len(reqs) == compared(stats["outcomes"])
    assert stats["replays"]["limits"]["max_host_connections"] == 4
