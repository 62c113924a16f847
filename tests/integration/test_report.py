"""The fleet view: agents publish counter snapshots to the stats topic,
`miffy report` (a real consumer of librdkafka's mock cluster, 3 partitions
per topic) merges them and serves /stats, /metrics, /health and the
dashboard's /samples for the whole fleet (docs/fleet.md).

The report's totals must equal the sum of the agents' own /stats, exactly,
through agent restarts, report restarts and a Kafka outage."""
import json
import signal
import time
import uuid

import confluent_kafka  # python3-confluent-kafka, installed by make deps

from conftest import BUILD, WRAPPER, free_port, http_get, http_request, wait_for, wait_port
from test_dashboard import browser  # noqa: F401 - the module's chromium fixture
from test_fleet import drive, record_figure, wait_up
from test_publish import MockKafka as PublishKafka

TOPIC = "miffy"
STATS_TOPIC = "miffy-stats"
INTERVAL = 0.5          # stats_interval of the agents in these tests
REF_BODY = '{"name": "widget", "price": 10}'
CAND_BODY = '{"name": "widget", "price": 12}'


class MockKafka(PublishKafka):
    """The mock broker with both topics, several partitions."""

    def __init__(self, stack, partitions=3):
        super().__init__(stack, TOPIC, more_topics=(STATS_TOPIC,), partitions=partitions)

    def produce(self, topic, value, key=None):
        p = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap})
        p.produce(topic, value=value, key=key)
        assert p.flush(10) == 0

    def stats_messages(self, partitions=3, idle=1.5, timeout=15.0):
        """Every message of the stats topic from the beginning of each
        partition (assigned, no group), until none came for idle seconds."""
        c = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": f"t-{uuid.uuid4()}",
                                      "enable.auto.commit": False})
        c.assign([confluent_kafka.TopicPartition(STATS_TOPIC, i, confluent_kafka.OFFSET_BEGINNING)
                  for i in range(partitions)])
        got, deadline, last = [], time.time() + timeout, time.time()
        self.sizes = []
        try:
            while time.time() < deadline and (not got or time.time() - last < idle):
                m = c.poll(0.1)
                if m is not None and not m.error():
                    got.append((m.key().decode(), json.loads(m.value())))
                    self.sizes.append(len(m.value()))
                    last = time.time()
        finally:
            c.close()
        return got


class Report:
    def __init__(self, stack, kafka, name="report", args=()):
        self.admin_port = free_port()
        argv = WRAPPER + [BUILD / "miffy", "report", "--kafka", kafka.bootstrap, "--topic", TOPIC,
                          "--admin", f"127.0.0.1:{self.admin_port}"] + list(args)
        self.proc = stack.start(name, argv, sanitized=True)
        wait_port(self.admin_port, proc=self.proc.popen)

    def get(self, path):
        status, _, body = http_get(self.admin_port, path)
        return status, body.decode()

    def stats(self):
        status, body = self.get("/stats")
        assert status == 200, body
        return json.loads(body)

    def health(self):
        status, body = self.get("/health")
        return status, json.loads(body)

    def stop(self):
        return self.proc.stop(signal.SIGTERM)


def kafka_agent(stack, kafka, cand, name, port=None, extra=()):
    return stack.miffy(candidate=cand.url, name=name, sink="kafka", listen_port=port,
                       args=["--kafka", kafka.bootstrap, "--topic", TOPIC,
                             "-o", f"stats_interval={INTERVAL}"] + list(extra))


def shadow_fleet(stack, n, kafka):
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    cand = stack.backend(name="cand", mode="static", body=CAND_BODY)
    agents = [kafka_agent(stack, kafka, cand, f"miffy{i + 1}") for i in range(n)]
    hap = stack.haproxy(reference=ref, agents=agents)
    wait_up(hap, n)
    return ref, cand, agents, hap


def totals(stats):
    return sum(stats["outcomes"].values())


def view(stats):
    """What must add up: outcomes, skips by reason, compare counters, per
    endpoint outcomes, skips and fields, latency counts."""
    eps = {name: {"outcomes": e["outcomes"], "fields": e["fields"], "skipped": e["skipped"],
                  "latency": {k: v["count"] for k, v in e["latency_ms"].items()}}
           for name, e in stats["endpoints"].items()}
    return {"outcomes": stats["outcomes"], "endpoints": eps, "skipped": stats["skipped"],
            "compare": stats["compare"],
            "started": stats["exchanges"]["started"], "messages": stats["spop"]["messages"]}


def add_counts(into, counts):
    for k, n in counts.items():
        into[k] = into.get(k, 0) + n


def add_views(views):
    out = {"outcomes": {}, "endpoints": {}, "skipped": {}, "compare": {}, "started": 0, "messages": 0}
    for v in views:
        add_counts(out["outcomes"], v["outcomes"])
        add_counts(out["skipped"], v["skipped"])
        add_counts(out["compare"], v["compare"])
        out["started"] += v["started"]
        out["messages"] += v["messages"]
        for name, e in v["endpoints"].items():
            o = out["endpoints"].setdefault(name, {"outcomes": {}, "fields": {}, "skipped": {}, "latency": {}})
            add_counts(o["outcomes"], e["outcomes"])
            add_counts(o["skipped"], e["skipped"])
            for k, f in e["fields"].items():
                g = o["fields"].setdefault(k, {"raw": 0, "noise": 0})
                g["raw"] += f["raw"]
                g["noise"] += f["noise"]
            for k, n in e["latency"].items():
                o["latency"][k] = o["latency"].get(k, 0) + n
    return out


def settled(agents, total):
    wait_for(lambda: sum(totals(a.stats()) for a in agents) >= total, 30,
             what=f"{total} exchanges finished across the agents")
    time.sleep(0.3)
    return [a.stats() for a in agents]


def wait_report_equals(report, expected, timeout=15):
    """Waits until the report's view is expected; returns its /stats."""
    last = {}

    def same():
        last["s"] = report.stats()
        return view(last["s"]) == expected

    try:
        wait_for(same, timeout, interval=0.1, what="the report's view to equal the agents' sum")
    except AssertionError:
        raise AssertionError(f"report {json.dumps(view(last['s']))}\n!= agents {json.dumps(expected)}")
    return last["s"]


def test_two_agents_the_report_shows_their_sum_and_the_lag(stack):
    kafka = MockKafka(stack)
    _, _, agents, hap = shadow_fleet(stack, 2, kafka)
    report = Report(stack, kafka)
    assert not drive(hap.port, 4, 25)
    # POSTs: not replayed on the default methods, skipped by reason "method".
    for i in range(10):
        status, _, _ = http_request(hap.port, "POST", f"/api/form/{i}", body=b"a=1",
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 200
    stats = settled(agents, 110)
    assert all(totals(s) > 0 for s in stats), [totals(s) for s in stats]   # both got work
    expected = add_views([view(s) for s in stats])
    assert expected["outcomes"]["different"] == 100
    assert expected["skipped"]["method"] == 10
    assert sum(e["skipped"].get("method", 0) for e in expected["endpoints"].values()) == 10
    s = wait_report_equals(report, expected)
    assert s["fleet"]["instances"] == 2 and s["fleet"]["epochs"] == 2, s["fleet"]
    assert s["fleet"]["stale"] is False
    [ep] = [e for e in s["endpoints"].values() if "body:/price" in e["fields"]]
    assert ep["fields"]["body:/price"]["raw"] == 100
    # The verdicts: computed from the merged counts, by the same rule.
    assert s["latency_rule"] == stats[0]["latency_rule"], s["latency_rule"]
    assert ep["latency_verdict"]["candidate"]["count"] == ep["latency_ms"]["candidate"]["count"] == 100
    # The health of the report, /metrics, the dashboard's samples.
    status, health = report.health()
    assert status == 200 and health["status"] == "ok", health
    _, metrics = report.get("/metrics")
    assert 'miffy_exchanges_total{outcome="different"} 100\n' in metrics
    assert "miffy_report_stale 0\n" in metrics
    _, samples = report.get("/samples")
    assert json.loads(samples)["samples"], samples[:300]
    status, page = report.get("/")
    assert status == 200 and "<html" in page.lower()

    # Lag: one exchange, until the report counts it.
    lags = []
    for i in range(3):
        t0 = time.time()
        drive(hap.port, 1, 1, path=f"/api/lag{i}")
        wait_for(lambda: report.stats()["outcomes"]["different"] == 101 + i, 10, interval=0.02,
                 what="the exchange in the report")
        lags.append(round(time.time() - t0, 3))
    record_figure("report_lag", {"stats_interval": INTERVAL, "lag_seconds": lags})
    assert max(lags) < 2 * INTERVAL + 0.5, lags   # 0.5 s of slack for a loaded machine's ASan build


def test_agent_and_report_restarts_nothing_resets_nothing_doubles(stack):
    kafka = MockKafka(stack)
    ref, cand, agents, hap = shadow_fleet(stack, 3, kafka)
    report = Report(stack, kafka)
    assert not drive(hap.port, 6, 20)
    stats = settled(agents, 120)
    wait_report_equals(report, add_views([view(s) for s in stats]))
    before = view(stats[1])

    # Agent 2 restarts on its address (same instance id): a new epoch.
    port = agents[1].port
    assert agents[1].stop() == 0
    agents[1] = kafka_agent(stack, kafka, cand, "miffy2b", port=port)
    wait_for(lambda: "resumed the counters of 1 earlier epochs" in agents[1].log(), 10,
             what="the restarted agent resuming from Kafka")
    # Its own /stats continue where they were (every count of the view).
    assert view(agents[1].stats()) == before
    wait_up(hap, 3)
    assert not drive(hap.port, 6, 20, path="/api/after")
    stats = settled(agents, 240)
    expected = add_views([view(s) for s in stats])
    assert sum(expected["outcomes"].values()) == 240
    s = wait_report_equals(report, expected)
    assert s["fleet"]["instances"] == 3 and s["fleet"]["epochs"] == 4, s["fleet"]

    # The report restarts: it reads everything again, the same view.
    assert report.stop() == 0
    report = Report(stack, kafka, name="report2")
    wait_for(lambda: report.health()[1]["status"] == "ok", 15, what="the new report loaded")
    wait_report_equals(report, expected)
    # A second report at the same time shows the same (no partition sharing).
    other = Report(stack, kafka, name="report3")
    wait_for(lambda: other.health()[1]["status"] == "ok", 15, what="a second report loaded")
    wait_report_equals(other, expected)


def test_kafka_down_the_report_is_stale_then_catches_up(stack):
    kafka = MockKafka(stack)
    _, _, agents, hap = shadow_fleet(stack, 2, kafka)
    report = Report(stack, kafka)
    assert not drive(hap.port, 2, 20)
    stats = settled(agents, 40)
    wait_report_equals(report, add_views([view(s) for s in stats]))
    kafka.down()
    wait_for(lambda: report.health()[0] == 503, 10, what="/health 503 while Kafka is down")
    status, health = report.health()
    assert health["status"] == "stale", health
    assert not drive(hap.port, 2, 20, path="/api/during")     # clients unaffected
    stats = settled(agents, 80)
    # Still served, marked stale, with the last view.
    s = report.stats()
    assert s["fleet"]["stale"] is True and totals(s) == 40, (s["fleet"], totals(s))
    _, metrics = report.get("/metrics")
    assert "miffy_report_stale 1\n" in metrics
    kafka.up()
    stats = [a.stats() for a in agents]
    s = wait_report_equals(report, add_views([view(x) for x in stats]), timeout=30)
    assert totals(s) == 80
    wait_for(lambda: report.health()[0] == 200, 10, what="/health ok again")


def test_garbage_and_foreign_messages_are_counted_and_skipped(stack):
    kafka = MockKafka(stack)
    _, _, agents, hap = shadow_fleet(stack, 1, kafka)
    kafka.produce(STATS_TOPIC, b"\x00\xffnot json")
    kafka.produce(STATS_TOPIC, b'{"some":"other app"}')
    kafka.produce(STATS_TOPIC, b'{"miffy_stats":1,"instance":"x","epoch":1,"counters":7}')
    kafka.produce(STATS_TOPIC, b'{"miffy_stats":99,"instance":"x","epoch":1}')
    kafka.produce(TOPIC, b"garbage")
    kafka.produce(TOPIC, b'{"hello":"world"}')
    report = Report(stack, kafka)
    assert not drive(hap.port, 1, 10)
    stats = settled(agents, 10)
    wait_report_equals(report, add_views([view(x) for x in stats]))
    # The differences topic is read by its own consumer: its skips may come
    # after the stats view is complete.
    f = wait_for(lambda: (lambda f: f if sum(f["skipped_differences"].values()) >= 2 else None)(
        report.stats()["fleet"]), 15, what="both bad differences counted")
    assert f["skipped_stats"]["garbage"] == 2, f
    assert f["skipped_stats"]["foreign"] == 1, f
    assert f["skipped_stats"]["newer_version"] == 1, f
    assert f["skipped_differences"]["garbage"] == 1, f
    assert f["skipped_differences"]["foreign"] == 1, f
    assert f["epochs"] == 1
    assert "skipped: not JSON" in report.proc.log()
    _, metrics = report.get("/metrics")
    assert 'miffy_report_skipped_total{topic="stats",reason="garbage"} 2\n' in metrics


def test_the_stats_topic_holds_one_epochs_own_counts_keyed_instance_epoch(stack):
    kafka = MockKafka(stack)
    _, _, agents, hap = shadow_fleet(stack, 1, kafka)
    assert not drive(hap.port, 1, 5)
    settled(agents, 5)
    assert agents[0].stop() == 0
    msgs = kafka.stats_messages()
    assert msgs
    key, last = msgs[-1]
    assert last["final"] is True
    assert key == f"{last['instance']}/{last['epoch']}"
    assert last["instance"].endswith(f":{agents[0].port}")
    assert last["counters"]["outcomes.different"] == 5
    record_figure("snapshot_bytes", {"endpoints": len(last["endpoints"]), "bytes": kafka.sizes[-1]})
    seqs = [m["seq"] for _, m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_state_file_keeps_the_counters_of_a_file_sink_agent(stack, tmp_path):
    ref = stack.backend(name="ref", mode="static", body=REF_BODY)
    cand = stack.backend(name="cand", mode="static", body=CAND_BODY)
    state = tmp_path / "miffy.state"
    args = ["-o", f"state_file={state}", "-o", f"stats_interval={INTERVAL}"]
    agent = stack.miffy(candidate=cand.url, name="miffy1", args=args)
    hap = stack.haproxy(reference=ref, agents=[agent])
    wait_up(hap, 1)
    assert not drive(hap.port, 1, 7)
    first = settled([agent], 7)[0]
    port = agent.port
    assert agent.stop() == 0
    assert json.loads(state.read_text())["final"] is True
    agent = stack.miffy(candidate=cand.url, name="miffy1b", args=args, listen_port=port)
    wait_up(hap, 1)
    s = agent.stats()
    assert s["outcomes"] == first["outcomes"], (s["outcomes"], first["outcomes"])
    assert not drive(hap.port, 1, 3, path="/api/after")
    s = settled([agent], 10)[0]
    assert s["outcomes"]["different"] == 10
    # /metrics continues too: no counter reset for Prometheus.
    wait_for(lambda: json.loads(state.read_text())["counters"]["outcomes.different"] == 10, 5,
             what="the state file updated")
    # A state file that is not a snapshot: counted from zero, said in the log.
    assert agent.stop() == 0
    state.write_text("garbage\n")
    agent = stack.miffy(candidate=cand.url, name="miffy1c", args=args, listen_port=port)
    wait_for(lambda: "is not a snapshot" in agent.log(), 5, what="the log line")
    assert totals(agent.stats()) == 0


def test_the_reports_dashboard_shows_the_fleet_and_says_when_it_is_stale(stack, browser):
    from test_dashboard import open_page, screenshot, wait_js
    kafka = MockKafka(stack)
    _, _, agents, hap = shadow_fleet(stack, 2, kafka)
    report = Report(stack, kafka)
    assert not drive(hap.port, 2, 10)
    stats = settled(agents, 20)
    wait_report_equals(report, add_views([view(s) for s in stats]))
    open_page(browser, report.admin_port)
    text = wait_js(browser, "const s = document.getElementById('status');"
                            "return s.className === 'status ok' && s.textContent.startsWith('fleet of 2 agents')"
                            " && document.getElementById('view').textContent", what="the fleet's overview")
    assert "/api/fleet" in text or "other" in text or "GET" in text, text[:500]
    kafka.down()
    status = wait_js(browser, "const s = document.getElementById('status');"
                              "return s.className === 'status bad' && s.textContent", 20, what="the stale status")
    assert "STALE" in status and "showing the last view" in status, status
    screenshot(browser, "report-stale")
    kafka.up()
    wait_js(browser, "return document.getElementById('status').className === 'status ok'", 20,
            what="fresh again")
