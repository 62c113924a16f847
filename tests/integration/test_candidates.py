"""Several candidates (--candidate NAME=URL, repeatable) through a real
HAProxy and the real agent: each candidate receives each request once and is
judged on its own; /stats and /metrics show a view per candidate beside the
sum; a message (Kafka: librdkafka's mock cluster read back by a real
consumer) names its candidate in candidate_name, and only a candidate that
differs has one; a dead candidate does not stop the others being compared;
max_concurrent holds for the sum of all candidates' replays."""
import json
import re
import time

from conftest import free_port, http_get, wait_for
from test_publish import CAND_BODY, REF_BODY, MockKafka, validate
from test_replay import CandidateServer

N = 5


def stats(agent):
    status, _, body = http_get(agent.admin_port, "/stats")
    assert status == 200
    return json.loads(body)


def metrics(agent):
    status, _, body = http_get(agent.admin_port, "/metrics")
    assert status == 200
    return body.decode()


def sample(text, name, **labels):
    """The value of the one sample of family name with exactly these labels."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.findall(r"^" + re.escape(name) + r"\{" + re.escape(want) + r"\} (\d+)$", text, re.M)
    assert len(found) == 1, f"{name}{{{want}}}: {found}"
    return int(found[0])


def get_all(hap, n=N):
    for i in range(n):
        status, _, body = http_get(hap.port, f"/api/items/{i}")
        assert status == 200
        assert json.loads(body) == json.loads(REF_BODY)   # the reference always wins


def wait_judged(agent, names, n=N):
    """Until every candidate in names has n exchanges ended."""
    def done():
        s = stats(agent)
        per = s.get("candidates", {})
        return s if all(sum(per.get(c, {}).get("outcomes", {}).values()) >= n for c in names) else None
    return wait_for(done, 20, interval=0.2, what=f"{n} exchanges for each of {names}")


def test_one_equal_one_different_candidate_each_judged_on_its_own(stack):
    kafka = MockKafka(stack)
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    same = stack.backend(name="same", mode="static", body=REF_BODY, record=True)
    new = stack.backend(name="new", mode="static", body=CAND_BODY, record=True)
    agent = stack.miffy(admin=True, sink="kafka",
                        args=["--candidate", f"same={same.url}", "--candidate", f"new={new.url}",
                              "--kafka", kafka.bootstrap, "--topic", "miffy"])
    hap = stack.haproxy(reference=ref, agent=agent)
    get_all(hap)
    s = wait_judged(agent, ["same", "new"])

    # each candidate received each request once, marked as a candidate
    for cand in (same, new):
        reqs = cand.requests()
        assert sorted(r["path"] for r in reqs) == sorted(f"/api/items/{i}" for i in range(N)), cand.name
        assert all({k.lower(): v for k, v in r["headers"]}.get("x-miffy-role") == "candidate"
                   for r in reqs), reqs

    # /stats: one view per candidate with the per-endpoint shape; the top level is their sum
    views = s["candidates"]
    assert set(views) == {"same", "new"}
    assert views["same"]["outcomes"]["equal"] == N and views["same"]["outcomes"]["different"] == 0
    assert views["new"]["outcomes"]["different"] == N and views["new"]["outcomes"]["equal"] == 0
    assert s["outcomes"]["equal"] == N and s["outcomes"]["different"] == N
    (ep,) = [e for e in views["new"]["endpoints"] if e.startswith("GET /api/items")]
    assert views["new"]["endpoints"][ep]["different"] == N
    assert views["new"]["endpoints"][ep]["fields"] == {"body:/price": {"raw": N, "noise": 0}}
    assert views["same"]["endpoints"][ep]["compared"] == N
    assert views["same"]["endpoints"][ep]["different"] == 0
    assert views["same"]["endpoints"][ep]["fields"] == {}
    assert set(views["same"]["endpoints"][ep]) == set(s["endpoints"][ep])   # the same shape
    assert s["endpoints"][ep]["total"] == 2 * N

    # /metrics: a candidate label beside the sums
    m = metrics(agent)
    assert sample(m, "miffy_exchanges_by_candidate_total", candidate="new", outcome="different") == N
    assert sample(m, "miffy_exchanges_by_candidate_total", candidate="new", outcome="equal") == 0
    assert sample(m, "miffy_exchanges_by_candidate_total", candidate="same", outcome="equal") == N
    assert sample(m, "miffy_exchanges_by_candidate_total", candidate="same", outcome="different") == 0
    assert sample(m, "miffy_endpoint_exchanges_by_candidate_total", candidate="new", endpoint=ep,
                  outcome="different") == N
    assert sample(m, "miffy_exchanges_total", outcome="different") == N
    assert sample(m, "miffy_replays_started_total", role="candidate") == 2 * N

    # Kafka: one message per differing exchange, all of candidate "new"
    msgs = kafka.consume(N)
    assert len(msgs) == N
    for key, msg in msgs:
        validate(msg)
        assert msg["candidate_name"] == "new"
        assert msg["outcome"] == "different"
        assert msg["candidate"]["body"] == {"json": json.loads(CAND_BODY)}
    assert len({msg["id"] for _, msg in msgs}) == N


def test_a_single_bare_candidate_keeps_todays_shape_plus_its_name(stack):
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    cand = stack.backend(name="cand", mode="static", body=CAND_BODY)
    agent = stack.miffy(candidate=cand.url, admin=True)
    hap = stack.haproxy(reference=ref, agent=agent)
    get_all(hap, 2)
    wait_for(lambda: len(agent.published()) >= 2, 15, what="2 messages")
    for msg in agent.published():
        validate(msg)
        assert msg["candidate_name"] == "candidate"
    s = stats(agent)
    assert "candidates" not in s   # one candidate: the top level is its view
    assert s["outcomes"]["different"] == 2
    assert "miffy_exchanges_by_candidate_total" not in metrics(agent)


def test_a_dead_candidate_does_not_stop_the_others(stack):
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    new = stack.backend(name="new", mode="static", body=CAND_BODY, record=True)
    same = stack.backend(name="same", mode="static", body=REF_BODY, record=True)
    dead = f"http://127.0.0.1:{free_port()}"   # nothing listens there
    agent = stack.miffy(admin=True, args=["--candidate", f"dead={dead}", "--candidate", f"new={new.url}",
                                          "--candidate", f"same={same.url}"])
    hap = stack.haproxy(reference=ref, agent=agent)
    get_all(hap)
    s = wait_judged(agent, ["dead", "new", "same"])
    views = s["candidates"]
    assert views["dead"]["outcomes"]["candidate_error"] == N
    assert views["dead"]["errors"] == {"connect": N}
    assert views["new"]["outcomes"]["different"] == N
    assert views["new"]["errors"] == {}
    assert views["same"]["outcomes"]["equal"] == N
    assert len(new.requests()) == N and len(same.requests()) == N
    wait_for(lambda: len(agent.published()) >= 2 * N, 10, what=f"{2 * N} messages")
    msgs = agent.published()
    by = {}
    for msg in msgs:
        validate(msg)
        by.setdefault(msg["candidate_name"], []).append(msg)
    assert set(by) == {"dead", "new"}
    assert [m["outcome"] for m in by["dead"]] == ["candidate_error"] * N
    assert all(m["candidate"]["error"] == "connect" for m in by["dead"])
    assert [m["outcome"] for m in by["new"]] == ["different"] * N
    # the dashboard keeps one sample per candidate that differs, ID@NAME
    status, _, body = http_get(agent.admin_port, "/samples")
    assert status == 200
    index = json.loads(body)
    assert index["replay"]["candidate"] == dead   # the first, as with one
    assert index["replay"]["candidates"] == {"dead": dead, "new": new.url, "same": same.url}
    ids = {x["id"] for x in index["samples"]}
    assert ids == {f'{msg["id"]}@{msg["candidate_name"]}' for msg in msgs}
    one = by["new"][0]
    status, _, body = http_get(agent.admin_port, f'/samples/{one["id"]}@new')
    assert status == 200
    kept = json.loads(body)
    assert kept["candidate_name"] == "new" and kept["id"] == one["id"]
    m = metrics(agent)
    assert sample(m, "miffy_replay_errors_by_candidate_total", candidate="dead", reason="connect") == N
    assert sample(m, "miffy_exchanges_by_candidate_total", candidate="same", outcome="equal") == N


def test_max_concurrent_holds_for_the_sum_of_all_candidates(stack):
    """Three slow candidates and max_concurrent 4: the first exchange takes
    three replays, a second would need three more, so every exchange until
    the first ends is skipped (overload) for all of them, and no candidate
    receives its request."""
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    cands = [CandidateServer(stack, name=f"slow{i}", mode="slow", delay_ms=3000) for i in range(3)]
    agent = stack.miffy(admin=True, args=[a for i, c in enumerate(cands)
                                          for a in ("--candidate", f"c{i}={c.url}")] + ["-o", "max_concurrent=4"])
    hap = stack.haproxy(reference=ref, agent=agent)
    wait_for(lambda: hap.agent_status() == "UP", 15, what="agent UP")
    t0 = time.time()
    get_all(hap)
    s = stats(agent)
    assert time.time() - t0 < 2.5, "the requests must all come while the first replays run"
    assert s["replays"]["inflight"] == 3
    s = wait_judged(agent, ["c0", "c1", "c2"])
    for i, c in enumerate(cands):
        view = s["candidates"][f"c{i}"]
        assert view["outcomes"]["skipped"] == N - 1, view["outcomes"]
        assert view["outcomes"]["different"] + view["outcomes"]["equal"] == 1, view["outcomes"]
        assert len(c.requests()) == 1, c.requests()
    assert s["skipped"]["overload"] == 3 * (N - 1)   # the sum over the candidates
    assert s["replays"]["candidate"]["started"] == 3
    assert s["replays"]["inflight"] == 0


def test_one_secondary_replay_serves_every_candidates_noise(stack):
    """The secondary differs from the reference at /price: candidate "new"
    differs there too (noise), candidate "renamed" at /name (a regression).
    The secondary receives each request once, and each candidate has noise
    tables of its own."""
    renamed = json.dumps(dict(json.loads(REF_BODY), name="gadget"))
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    sec = stack.backend(name="sec", mode="static", body=CAND_BODY, record=True)
    new = stack.backend(name="new", mode="static", body=CAND_BODY, record=True)
    ren = stack.backend(name="renamed", mode="static", body=renamed, record=True)
    agent = stack.miffy(admin=True, secondary=sec.url,
                        args=["--candidate", f"new={new.url}", "--candidate", f"renamed={ren.url}"])
    hap = stack.haproxy(reference=ref, agent=agent)
    get_all(hap)
    s = wait_judged(agent, ["new", "renamed"])
    assert len(sec.requests()) == N and len(new.requests()) == N and len(ren.requests()) == N
    assert all({k.lower(): v for k, v in r["headers"]}.get("x-miffy-role") == "secondary"
               for r in sec.requests())
    views = s["candidates"]
    assert views["new"]["outcomes"]["noise"] == N and views["new"]["outcomes"]["different"] == 0
    assert views["renamed"]["outcomes"]["different"] == N and views["renamed"]["outcomes"]["noise"] == 0
    (ep,) = [e for e in views["new"]["endpoints"] if e.startswith("GET /api/items")]
    new_noise = views["new"]["endpoints"][ep]["noise_fields"]
    ren_noise = views["renamed"]["endpoints"][ep]["noise_fields"]
    assert new_noise["body:/price"]["raw"] == N and new_noise["body:/price"]["noise"] == N
    assert ren_noise["body:/name"]["raw"] == N and ren_noise["body:/price"]["noise"] == N
    assert "body:/name" not in new_noise
    assert s["replays"]["secondary"]["started"] == N
    wait_for(lambda: len(agent.published()) >= N, 10, what=f"{N} messages")
    time.sleep(0.3)
    msgs = agent.published()
    # noise is not published by default: only the regression of "renamed"
    assert {m["candidate_name"] for m in msgs} == {"renamed"} and len(msgs) == N
    for m in msgs:
        assert [(d["path"], d["noise"]) for d in m["differences"]] == [("/name", False)]
        assert m["secondary"]["body"] == {"json": json.loads(CAND_BODY)}
