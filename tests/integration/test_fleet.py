"""Several agents, several HAProxy processes, through real HAProxy with the
shipped haproxy.cfg and miffy-spoe.conf (one `server` line per agent): one
SPOE message per transaction, so every request is compared exactly once by
whichever agent HAProxy picked, and nothing is left to pair.

How HAProxy spreads the events over the agents is printed and written to
$MIFFY_BUILD/figures/fleet_*.json (run pytest with -s to see it)."""
import http.client
import json
import signal
import threading
import time

from conftest import BUILD, http_get, http_request, wait_for
from haproxy_bin import two_message_cfg

FIGURES = BUILD / "figures"
BODY = '{"name": "widget", "price": 10}'


def record_figure(name, value):
    FIGURES.mkdir(parents=True, exist_ok=True)
    (FIGURES / f"fleet_{name}.json").write_text(json.dumps(value, indent=1))
    print(f"\n{name}: {json.dumps(value)}")


def hap_version(hap):
    return str(hap.bin.full_version)


def finished(agent):
    return sum(agent.stats()["outcomes"].values())


def drive(port, clients, per_client, path="/api/fleet"):
    """clients threads, each one keep-alive connection sending per_client
    GETs; returns the client failures (status other than 200, or exception)."""
    errors, lock = [], threading.Lock()

    def run(n):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for i in range(per_client):
            try:
                status, _, body = http_request(port, "GET", f"{path}/{n}/{i}", conn=conn)
                if status != 200 or json.loads(body) != json.loads(BODY):
                    with lock:
                        errors.append((status, body[:80]))
            except Exception as e:  # noqa: BLE001 - any client failure is the finding
                with lock:
                    errors.append(repr(e))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.close()

    threads = [threading.Thread(target=run, args=(n,)) for n in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return errors


def settle(agents, total, timeout=30):
    """Waits until the agents' finished exchanges add up to total; returns
    their /stats (the SIGUSR2 line) in order."""
    wait_for(lambda: sum(finished(a) for a in agents) >= total, timeout,
             what=f"{total} finished exchanges across {len(agents)} agents")
    time.sleep(0.3)  # a duplicate would land now
    return [a.stats() for a in agents]


def assert_each_compared_once(stats, total):
    outcomes = [s["outcomes"] for s in stats]
    assert sum(sum(o.values()) for o in outcomes) == total, outcomes
    assert sum(o["equal"] for o in outcomes) == total, outcomes
    assert sum(s["spop"]["messages"] for s in stats) == total
    for s in stats:
        assert s["outcomes"]["expired"] == 0
        assert s["anomalies"] == {k: 0 for k in s["anomalies"]}, s["anomalies"]


def fleet(stack, n):
    ref = stack.backend(name="ref", mode="static", body=BODY)
    cand = stack.backend(name="cand", mode="static", body=BODY)
    agents = [stack.miffy(candidate=cand.url, name=f"miffy{i + 1}") for i in range(n)]
    return ref, agents


def wait_up(hap, n):
    for i in range(n):
        wait_for(lambda: hap.agent_status(f"agent{i + 1}") == "UP", 10,
                 what=f"agent{i + 1} UP in HAProxy")


def test_three_agents_behind_one_haproxy_compare_every_request_once(stack):
    ref, agents = fleet(stack, 3)
    hap = stack.haproxy(reference=ref, agents=agents)
    wait_up(hap, 3)
    total = 0
    figure = {"haproxy": hap_version(hap)}
    for clients, per_client in ((1, 100), (8, 75), (32, 60)):
        before = [finished(a) for a in agents]
        errors = drive(hap.port, clients, per_client)
        assert not errors, errors[:5]
        total += clients * per_client
        stats = settle(agents, total)
        figure[f"{clients}_clients"] = [sum(s["outcomes"].values()) - b for s, b in zip(stats, before)]
    assert_each_compared_once(stats, total)
    record_figure("three_agents", figure)
    # Every agent gets work once several streams are in flight at once.
    assert all(n > 0 for n in figure["32_clients"]), figure


def test_two_haproxy_processes_share_two_agents(stack):
    ref, agents = fleet(stack, 2)
    haps = [stack.haproxy(reference=ref, agents=agents, name=f"haproxy{i + 1}") for i in range(2)]
    for hap in haps:
        wait_up(hap, 2)
    results = {}
    threads = [threading.Thread(target=lambda h=h: results.__setitem__(h.port, drive(h.port, 8, 50)))
               for h in haps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(errors == [] for errors in results.values()), results
    stats = settle(agents, 800)
    assert_each_compared_once(stats, 800)
    figure = {"haproxy": hap_version(haps[0]), "per_agent": [sum(s["outcomes"].values()) for s in stats]}
    record_figure("two_haproxy_two_agents", figure)
    assert all(n > 0 for n in figure["per_agent"]), figure


def test_an_agent_killed_among_three_the_others_go_on(stack):
    ref, agents = fleet(stack, 3)
    # The shipped SPOE timeouts: what a dead agent costs a client.
    hap = stack.haproxy(reference=ref, agents=agents, timeouts="shipped")
    wait_up(hap, 3)
    errors, stop, sent = [], threading.Event(), [0]

    def load():
        while not stop.is_set() and sent[0] < 20000:
            try:
                status, _, body = http_get(hap.port, f"/api/kill/{sent[0]}", timeout=10)
                if status != 200 or json.loads(body) != json.loads(BODY):
                    errors.append((status, body[:80]))
            except Exception as e:  # noqa: BLE001 - any client failure is the finding
                errors.append(repr(e))
            sent[0] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: sum(finished(a) for a in agents) >= 100, 20, what="100 exchanges")
        victim = agents[1]
        victim.proc.signal(signal.SIGKILL)
        victim.proc.popen.wait(timeout=10)
        stack.sanitized.remove(victim.proc)  # SIGKILL leaves no sanitizer summary to check
        wait_for(lambda: hap.agent_status("agent2") == "DOWN", 10, what="agent2 DOWN in HAProxy")
        survivors = [agents[0], agents[2]]
        after_down = sum(finished(a) for a in survivors)
        wait_for(lambda: sum(finished(a) for a in survivors) >= after_down + 200, 30,
                 what="200 more exchanges on the two agents left")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not errors, errors[:5]
    stats = [a.stats() for a in survivors]
    for s in stats:
        assert s["anomalies"]["orphan_response"] == 0
        assert s["spop"]["ack"] == s["spop"]["notify"]
    record_figure("agent_killed_among_three", {
        "haproxy": hap_version(hap), "client_requests": sent[0], "client_errors": len(errors),
        "survivors_finished": [sum(s["outcomes"].values()) for s in stats],
        "haproxy_spoe_errors": hap.spoe_errors()})


def test_both_shapes_against_one_agent_at_once(stack):
    """One HAProxy sends miffy-tx (shipped), another miffy-req + miffy-res
    (docs/spoe-messages.md), to the same agent at the same time."""
    ref, [agent] = fleet(stack, 1)
    one = stack.haproxy(reference=ref, agent=agent, name="haproxy-tx")
    two = stack.haproxy(reference=ref, agent=agent, name="haproxy-req-res", cfg_edit=two_message_cfg)
    assert "send-spoe-group miffy miffy-req" in two.cfg_path.read_text()
    for hap in (one, two):
        wait_up(hap, 1)
    results = {}
    threads = [threading.Thread(target=lambda h=h: results.__setitem__(h.port, drive(h.port, 8, 25)))
               for h in (one, two)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert all(errors == [] for errors in results.values()), results
    [s] = settle([agent], 400)
    assert s["outcomes"]["equal"] == 400, s["outcomes"]
    # 200 transactions in one message each, 200 in two.
    assert s["spop"]["messages"] == 600
    assert s["outcomes"]["expired"] == 0
    assert s["anomalies"] == {k: 0 for k in s["anomalies"]}


def test_post_is_replayed_only_when_its_method_is_allowed(stack):
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand", record=True)
    default = stack.miffy(candidate=cand.url, name="miffy-default")
    allowed = stack.miffy(candidate=cand.url, name="miffy-post",
                          args=["-o", "methods={GET,HEAD,OPTIONS,POST}"])
    for agent, path in ((default, "/api/form/default"), (allowed, "/api/form/allowed")):
        hap = stack.haproxy(reference=ref, agent=agent, name=f"haproxy-{agent.name}")
        wait_up(hap, 1)
        status, _, body = http_request(hap.port, "POST", path, body=b"a=1&b=2",
                                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200 and json.loads(body)["body"] == "a=1&b=2"
    wait_for(lambda: finished(default) == 1 and finished(allowed) == 1, 10, what="both exchanges finished")
    assert default.stats()["skipped"]["method"] == 1
    [replayed] = cand.requests()
    assert (replayed["method"], replayed["path"], replayed["body"]) == ("POST", "/api/form/allowed", "a=1&b=2")
    assert ["X-Miffy-Role", "candidate"] in replayed["headers"]


def test_bodies_up_to_the_caps_are_whole_and_beyond_them_cut(stack):
    """The shipped lines cap the request body at 2 KiB and the reference's
    at 10 KiB (bytes()), within tune.bufsize (16 KiB): what the agent then
    replays, skips and publishes."""
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand", mode="static", body=BODY, record=True)
    agent = stack.miffy(candidate=cand.url, args=["-o", "methods={GET,HEAD,OPTIONS,POST}"])
    hap = stack.haproxy(reference=ref, agent=agent)
    wait_up(hap, 1)
    # Request bodies: at the cap (replayed whole), one byte over (cut: skipped).
    for n in (2048, 2049):
        status, _, body = http_request(hap.port, "POST", f"/api/upload/{n}", body=b"p" * n)
        assert status == 200 and len(json.loads(body)["body"]) == n
    # Reference bodies: at the cap, over the cap only, over tune.bufsize too.
    for n in (10240, 12000, 20000):
        status, _, body = http_get(hap.port, f"/api/big/{n}")
        assert status == 200 and body == b"x" * n, "the client always gets the whole body"
    wait_for(lambda: finished(agent) == 5, 10, what="five finished exchanges")
    s = agent.stats()
    assert s["skipped"]["request_truncated"] == 1
    [replayed] = [r for r in cand.requests() if r["method"] == "POST"]
    assert replayed["path"] == "/api/upload/2048" and replayed["body"] == "p" * 2048
    # The candidate's JSON differs from every text body: all published, and
    # each says whether the reference's body was cut.
    published = {m["request"]["path"]: m for m in agent.published()}
    cut = {p: (m["reference"]["truncated"], len(m["reference"]["body"]["text"]))
           for p, m in published.items() if p.startswith("/api/big/")}
    assert cut == {"/api/big/10240": (False, 10240), "/api/big/12000": (True, 10240),
                   "/api/big/20000": (True, 10240)}, cut


def test_request_over_the_variables_size_limit_is_not_replayed(stack):
    """tune.vars.txn-max-size bounds what the request's variables may hold:
    HAProxy leaves a variable over it unset (here the headers) and the
    agent skips that request instead of replaying it without them."""
    ref = stack.backend(name="ref")
    cand = stack.backend(name="cand", record=True)
    agent = stack.miffy(candidate=cand.url)
    hap = stack.haproxy(reference=ref, agent=agent, extra_global="    tune.vars.txn-max-size 1024")
    wait_up(hap, 1)
    small = {"X-Small": "1"}
    big = {f"X-Header-{i}": "v" * 60 for i in range(20)}  # 1.6 KB of headers
    for path, headers in (("/api/vars/small", small), ("/api/vars/big", big)):
        status, _, body = http_request(hap.port, "GET", path, headers=headers)
        assert status == 200 and json.loads(body)["path"] == path
    wait_for(lambda: finished(agent) == 2, 10, what="two finished exchanges")
    s = agent.stats()
    assert s["skipped"]["request_truncated"] == 1
    assert [r["path"] for r in cand.requests()] == ["/api/vars/small"]
    assert "miffy-tx without req_headers" in agent.log()
