"""Publishing: what a user reads in Kafka (librdkafka's mock cluster, read
back with a real consumer), in a JSON lines file or on stdout, and what the
agent does while Kafka is down: clients keep getting every response, losses
are counted, delivery resumes once the broker is back."""
import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from conftest import BUILD, ROOT, http_get, wait_for

import confluent_kafka  # python3-confluent-kafka, installed by make deps
import jsonschema  # python3-jsonschema, installed by make deps

SCHEMA = json.loads((ROOT / "docs" / "message.schema.json").read_text())
REF_BODY = '{"name": "widget", "price": 10, "tags": ["a", "b"]}'
CAND_BODY = '{"name": "widget", "price": 12, "tags": ["a", "b"]}'


def validate(msg):
    jsonschema.Draft7Validator(SCHEMA).validate(msg)


class MockKafka:
    """build/miffy-mock-kafka: SIGUSR1 takes the broker down, SIGUSR2 back."""

    def __init__(self, stack, topic="miffy", down=False, more_topics=(), partitions=None):
        self.topic = topic
        argv = [BUILD / "miffy-mock-kafka", "--topic", topic]
        for t in more_topics:
            argv += ["--topic", t]
        if partitions:
            argv += ["--partitions", str(partitions)]
        if down:
            argv.append("--down")
        self.proc = stack.start("mock-kafka", argv, stdout_pipe=True)
        self.bootstrap = self.proc.popen.stdout.readline().decode().strip()
        assert self.bootstrap.startswith("127.0.0.1:"), self.proc.log()

    def down(self):
        self.proc.signal(signal.SIGUSR1)
        wait_for(lambda: "brokers down" in self.proc.log(), 5, what="mock broker down")

    def up(self):
        before = self.proc.log().count("brokers up")
        self.proc.signal(signal.SIGUSR2)
        wait_for(lambda: self.proc.log().count("brokers up") > before, 5, what="mock broker up")

    def consume(self, count, timeout=20.0):
        """Every message of the topic from the start, waiting for count."""
        c = confluent_kafka.Consumer({
            "bootstrap.servers": self.bootstrap,
            "group.id": f"test-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        })
        c.subscribe([self.topic])
        got = []
        deadline = time.time() + timeout
        try:
            while time.time() < deadline and len(got) < count:
                m = c.poll(0.2)
                if m is None or m.error():
                    continue
                got.append((m.key().decode() if m.key() else None, json.loads(m.value())))
            # a little longer, to see messages that should not be there
            end = time.time() + 0.5
            while time.time() < end:
                m = c.poll(0.1)
                if m is not None and not m.error():
                    got.append((m.key().decode() if m.key() else None, json.loads(m.value())))
        finally:
            c.close()
        return got


def write_conf(stack, name, text):
    path = Path(stack.tmp) / f"{name}.conf"
    path.write_text(text)
    return path


def stats(agent):
    """The counters from the admin endpoint's /stats."""
    status, _, body = http_get(agent.admin_port, "/stats")
    assert status == 200
    return json.loads(body)


def publish_counters(agent):
    return stats(agent)["publish"]


def outcomes(agent):
    return stats(agent)["outcomes"]


def start_shadow(stack, ref_body=REF_BODY, cand_body=CAND_BODY, **miffy_kw):
    ref = stack.backend(name="ref", mode="static", body=ref_body)
    cand = stack.backend(name="cand", mode="static", body=cand_body)
    agent = stack.miffy(candidate=cand.url, admin=True, **miffy_kw)
    hap = stack.haproxy(reference=ref, agent=agent)
    return agent, hap


def get_ok(hap, path, headers=None):
    status, _, body = http_get(hap.port, path, headers=headers)
    assert status == 200
    assert json.loads(body) == json.loads(REF_BODY)   # the reference always wins


def wait_outcomes(agent, n, what="different"):
    wait_for(lambda: outcomes(agent).get(what, 0) >= n, 15, what=f"{n} {what} exchanges")


def test_difference_reaches_kafka_matching_the_contract(stack):
    kafka = MockKafka(stack)
    agent, hap = start_shadow(stack, sink="kafka", args=["--kafka", kafka.bootstrap, "--topic", "miffy"])
    get_ok(hap, "/api/items/7?verbose=1",
           headers={"Authorization": "Bearer s3cret", "Cookie": "sid=abc", "X-Trace": "t1"})

    msgs = kafka.consume(1)
    assert len(msgs) == 1
    key, m = msgs[0]
    validate(m)
    assert key == m["endpoint"]
    assert m["endpoint"].startswith("GET /api/items")
    assert m["id"]
    assert m["outcome"] == "different"
    assert m["cut"] is False
    assert m["time"].endswith("Z")
    req = m["request"]
    assert (req["method"], req["path"], req["query"]) == ("GET", "/api/items/7", "verbose=1")
    assert req["headers"]["authorization"] == "[redacted]"
    assert req["headers"]["cookie"] == "[redacted]"
    assert req["headers"]["x-trace"] == "t1"
    assert req["body"] == {"text": ""}
    assert m["reference"]["status"] == 200
    assert m["reference"]["body"] == {"json": json.loads(REF_BODY)}
    assert m["reference"]["truncated"] is False
    assert m["reference"]["headers"]["content-type"] == "application/json"
    assert m["candidate"]["status"] == 200
    assert m["candidate"]["body"] == {"json": json.loads(CAND_BODY)}
    assert m["candidate"]["latency_ms"] >= 0
    assert "secondary" not in m
    assert {"where": "body", "path": "/price", "kind": "value", "reference": 10, "candidate": 12,
            "noise": False} in m["differences"]
    assert "s3cret" not in json.dumps(m) and "sid=abc" not in json.dumps(m)


def test_equal_exchanges_are_not_published(stack):
    agent, hap = start_shadow(stack, cand_body=REF_BODY)
    for i in range(5):
        get_ok(hap, f"/api/items/{i}")
    wait_outcomes(agent, 5, "equal")
    assert agent.published() == []


def test_policy_all_publishes_equal_exchanges(stack):
    conf = write_conf(stack, "all", 'publish = "all"\nsample_rate = 1\n')
    agent, hap = start_shadow(stack, cand_body=REF_BODY, args=["-f", conf])
    for i in range(3):
        get_ok(hap, f"/api/items/{i}")
    wait_for(lambda: len(agent.published()) == 3, 15, what="3 published equal exchanges")
    for m in agent.published():
        validate(m)
        assert m["outcome"] == "equal" and m["differences"] == []


def test_file_sink_reopens_on_sighup(stack):
    agent, hap = start_shadow(stack)
    get_ok(hap, "/api/a")
    wait_for(lambda: len(agent.published()) == 1, 15, what="first message")
    rotated = agent.sink_path.with_suffix(".1")
    os.rename(agent.sink_path, rotated)
    agent.proc.signal(signal.SIGHUP)
    wait_for(lambda: agent.sink_path.exists(), 5, what="the sink file reopened")
    get_ok(hap, "/api/b")
    wait_for(lambda: len(agent.published()) == 1, 15, what="second message in the new file")
    assert agent.published()[0]["request"]["path"] == "/api/b"
    assert [json.loads(l)["request"]["path"] for l in rotated.read_text().splitlines()] == ["/api/a"]


def test_stdout_sink_writes_json_lines(stack):
    agent, hap = start_shadow(stack, sink="stdout")
    for p in ("/api/x", "/api/y"):
        get_ok(hap, p)

    def lines():
        # stdout and stderr share the process log: messages are the JSON lines
        return [json.loads(l) for l in agent.log().splitlines() if l.startswith("{")]

    msgs = wait_for(lambda: len(lines()) == 2 and lines(), 15, what="2 messages on stdout")
    for m in msgs:
        validate(m)
    assert sorted(m["request"]["path"] for m in msgs) == ["/api/x", "/api/y"]


def test_size_cap_keeps_messages_valid_and_under_the_cap(stack):
    conf = write_conf(stack, "cap", "max_message = 4096\n")
    ref = stack.backend(name="ref")   # echo: /big/N answers N bytes of text
    cand = stack.backend(name="cand", mode="static", body='{"small": true}')
    agent = stack.miffy(candidate=cand.url, args=["-f", conf])
    hap = stack.haproxy(reference=ref, agent=agent)
    status, _, body = http_get(hap.port, "/api/big/100000")
    assert status == 200 and len(body) == 100000
    wait_for(lambda: agent.published(), 15, what="the cut message")
    line = agent.sink_path.read_text().splitlines()[0]
    assert len(line.encode()) <= 4096
    m = json.loads(line)
    validate(m)
    assert m["cut"] is True
    assert m["reference"]["body"]["cut"] is True
    assert m["reference"]["body"]["text"].startswith("xxxx")
    assert m["candidate"]["body"] == {"json": {"small": True}}


def test_broker_down_at_start_then_back(stack):
    kafka = MockKafka(stack, down=True)
    agent, hap = start_shadow(stack, sink="kafka", args=["--kafka", kafka.bootstrap])
    for i in range(5):
        get_ok(hap, f"/api/down/{i}")   # every client served while Kafka is down
    wait_outcomes(agent, 5)
    kafka.up()
    msgs = kafka.consume(5)
    assert sorted(m["request"]["path"] for _, m in msgs) == [f"/api/down/{i}" for i in range(5)]
    c = publish_counters(agent)
    wait_for(lambda: publish_counters(agent)["kafka_delivered"] == 5, 10, what="5 delivery reports")
    assert c["kafka_dropped"] == 0


def test_broker_killed_mid_run_counts_losses_and_recovers(stack):
    # Messages give up after 1.5 s of outage; reconnecting is retried every
    # 0.5 s at most (librdkafka's default backoff grows to 10 s).
    conf = write_conf(stack, "kafka", 'kafka_properties = {"message.timeout.ms=1500", '
                      '"reconnect.backoff.max.ms=500"}\n')
    kafka = MockKafka(stack)
    agent, hap = start_shadow(stack, sink="kafka", args=["-f", conf, "--kafka", kafka.bootstrap])
    for i in range(3):
        get_ok(hap, f"/api/before/{i}")
    assert len(kafka.consume(3)) == 3

    kafka.down()
    t0 = time.time()
    for i in range(5):
        get_ok(hap, f"/api/during/{i}")
    assert time.time() - t0 < 5   # no client waited on Kafka
    wait_outcomes(agent, 8)
    wait_for(lambda: "kafka delivery" in agent.log(), 10, what="a logged delivery failure")

    kafka.up()
    for i in range(3):
        get_ok(hap, f"/api/after/{i}")
    paths = wait_for(lambda: (lambda ps: "/api/after/2" in ps and ps)(
        [m["request"]["path"] for _, m in kafka.consume(6, timeout=3)]), 30, what="delivery after recovery")
    assert {f"/api/after/{i}" for i in range(3)} <= set(paths)
    c = wait_for(lambda: (lambda c: c["kafka_delivered"] + c["kafka_failed"] == 11 and c)(publish_counters(agent)),
                 10, what="every message accounted for")
    assert c["published"] == 11
    assert c["kafka_failed"] >= 1   # timed out while the broker was down
    assert c["kafka_delivered"] + c["kafka_failed"] == 11


def test_full_local_queue_drops_are_counted(stack):
    conf = write_conf(stack, "queue", 'kafka_properties = {"queue.buffering.max.messages=2"}\n')
    kafka = MockKafka(stack, down=True)
    agent, hap = start_shadow(stack, sink="kafka", args=["-f", conf, "--kafka", kafka.bootstrap])
    for i in range(6):
        get_ok(hap, f"/api/q/{i}")
    wait_outcomes(agent, 6)
    c = publish_counters(agent)
    assert c["kafka_dropped"] == 4
    assert c["published"] == 2
    assert "local queue full" in agent.log()
    kafka.up()
    assert len(kafka.consume(2)) == 2
