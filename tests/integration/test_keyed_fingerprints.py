"""array_keys and fingerprints end to end: real HAProxy, the agent, the
librdkafka mock cluster read back by a real consumer, /stats and /metrics."""
import json
import re
import subprocess
import urllib.parse

from conftest import BUILD, http_get, wait_for
from test_publish import MockKafka, stats, validate, wait_outcomes, write_conf

ENDPOINT = "GET /api/orders/:id"
# Paths -> (reference body, candidate body).
ORDERS = {
    # Reordered, one price changed, one element inserted in front.
    "/api/orders/1": ({"items": [{"id": "a", "price": 1}, {"id": "b", "price": 2}]},
                      {"items": [{"id": "new", "price": 9}, {"id": "b", "price": 5}, {"id": "a", "price": 1}]}),
    # The same way of differing, other keys and values.
    "/api/orders/2": ({"items": [{"id": "x", "price": 3}, {"id": "y", "price": 4}]},
                      {"items": [{"id": "z", "price": 7}, {"id": "y", "price": 8}, {"id": "x", "price": 3}]}),
    # Another way: an element lost.
    "/api/orders/3": ({"items": [{"id": "a", "price": 1}, {"id": "b", "price": 2}]},
                      {"items": [{"id": "b", "price": 2}]}),
    # Only reordered: equal.
    "/api/orders/4": ({"items": [{"id": "a", "price": 1}, {"id": "b", "price": 2}]},
                      {"items": [{"id": "b", "price": 2}, {"id": "a", "price": 1}]}),
    # A key repeated: paired by index, counted.
    "/api/orders/5": ({"items": [{"id": "a", "price": 1}, {"id": "a", "price": 2}]},
                      {"items": [{"id": "a", "price": 1}, {"id": "a", "price": 3}]}),
}


def start(stack, conf_text, kafka):
    ref = stack.backend(name="ref", mode="paths", body=json.dumps({p: r for p, (r, _) in ORDERS.items()}))
    cand = stack.backend(name="cand", mode="paths", body=json.dumps({p: c for p, (_, c) in ORDERS.items()}))
    conf = write_conf(stack, "keyed", conf_text)
    agent = stack.miffy(candidate=cand.url, admin=True, sink="kafka",
                        args=["-f", str(conf), "--kafka", kafka.bootstrap, "--topic", kafka.topic])
    hap = stack.haproxy(reference=ref, agent=agent)
    return agent, hap


def get(hap, path):
    status, _, body = http_get(hap.port, path)
    assert status == 200
    assert json.loads(body) == ORDERS[path][0]   # the reference always wins


def metrics(agent):
    status, _, body = http_get(agent.admin_port, "/metrics")
    assert status == 200
    return body.decode()


def metric(text, name, labels=""):
    m = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.M)
    assert m, f"{name}{labels} not in /metrics"
    return float(m.group(1))


def test_keyed_arrays_and_fingerprints_reach_kafka(stack):
    kafka = MockKafka(stack)
    agent, hap = start(stack, 'array_keys = {"/items=id"}\n', kafka)
    for path in ORDERS:
        get(hap, path)
    wait_outcomes(agent, 4)
    wait_outcomes(agent, 1, "equal")
    got = kafka.consume(4)
    assert len(got) == 4, got
    by_path = {}
    for key, m in got:
        validate(m)
        assert key == m["endpoint"] == ENDPOINT
        by_path[m["request"]["path"]] = m
    assert "/api/orders/4" not in by_path, "a reordered keyed array is equal"

    one = by_path["/api/orders/1"]["differences"]
    assert one == [
        {"where": "body", "path": "/items/1/price", "kind": "value", "reference": 2, "candidate": 5,
         "key": "b", "noise": False},
        {"where": "body", "path": "/items/0", "kind": "extra", "candidate": {"id": "new", "price": 9},
         "key": "new", "noise": False},
    ]
    two = by_path["/api/orders/2"]["differences"]
    assert [(d["path"], d["kind"], d["key"]) for d in two] == [("/items/1/price", "value", "y"),
                                                               ("/items/0", "extra", "z")]
    three = by_path["/api/orders/3"]["differences"]
    assert three == [{"where": "body", "path": "/items/0", "kind": "missing",
                      "reference": {"id": "a", "price": 1}, "key": "a", "noise": False}]
    # Repeated keys: by index, no key member.
    five = by_path["/api/orders/5"]["differences"]
    assert [(d["path"], d["kind"], "key" in d) for d in five] == [("/items/1/price", "value", False)]

    fp = {p: m["fingerprint"] for p, m in by_path.items()}
    assert all(re.fullmatch(r"[0-9a-f]{16}", f) for f in fp.values()), fp
    assert fp["/api/orders/1"] == fp["/api/orders/2"], "two exchanges that differ the same way"
    assert len({fp["/api/orders/1"], fp["/api/orders/3"], fp["/api/orders/5"]}) == 3

    s = stats(agent)
    assert s["compare"]["compare_key_fallback"] == 1
    groups = s["fingerprints"]["endpoints"][ENDPOINT]
    assert {g["fingerprint"]: g["count"] for g in groups} == {
        fp["/api/orders/1"]: 2, fp["/api/orders/3"]: 1, fp["/api/orders/5"]: 1}
    shared = [g for g in groups if g["fingerprint"] == fp["/api/orders/1"]][0]
    assert groups[0] is not None and groups[0]["fingerprint"] == fp["/api/orders/1"], "most seen first"
    assert shared["sample_id"] in {by_path["/api/orders/1"]["id"], by_path["/api/orders/2"]["id"]}
    assert shared["first_seen"] <= shared["last_seen"]
    assert s["fingerprints"]["suppressed"] == 0 and s["fingerprints"]["stored"] == 3
    # The sample id is one the dashboard serves.
    status, _, body = http_get(agent.admin_port, f"/samples/{urllib.parse.quote(shared['sample_id'], safe='')}")
    assert status == 200 and json.loads(body)["fingerprint"] == fp["/api/orders/1"]

    text = metrics(agent)
    assert metric(text, "miffy_compare_key_fallback_total") == 1
    assert metric(text, "miffy_fingerprint_exchanges_total",
                  f'{{endpoint="{ENDPOINT}",fingerprint="{fp["/api/orders/1"]}"}}') == 2
    assert metric(text, "miffy_fingerprints_stored") == 3
    assert metric(text, "miffy_fingerprint_suppressed_total") == 0


def test_fingerprint_limit_sends_the_first_n_and_counts_the_rest(stack):
    kafka = MockKafka(stack)
    agent, hap = start(stack, 'array_keys = {"/items=id"}\nfingerprint_limit = 2\n'
                       'fingerprint_interval = 600\n', kafka)
    paths = ["/api/orders/1", "/api/orders/2", "/api/orders/1", "/api/orders/2", "/api/orders/1",
             "/api/orders/3"]
    for path in paths:
        get(hap, path)
    wait_outcomes(agent, len(paths))
    got = kafka.consume(3)
    sent = sorted(m["request"]["path"] for _, m in got)
    # Two of the five alike, and the other fingerprint's one; none beyond.
    assert len(got) == 3, sent
    assert sent.count("/api/orders/3") == 1
    assert len({m["fingerprint"] for _, m in got if m["request"]["path"] != "/api/orders/3"}) == 1

    s = stats(agent)
    assert s["fingerprints"]["suppressed"] == 3
    alike = [g for g in s["fingerprints"]["endpoints"][ENDPOINT] if g["count"] == 5]
    assert len(alike) == 1 and alike[0]["suppressed"] == 3
    assert s["publish"]["kafka_delivered"] == 3
    assert metric(metrics(agent), "miffy_fingerprint_suppressed_total") == 3
    log = wait_for(lambda: "fingerprint_limit" in agent.log() and agent.log(), 5,
                   what="the suppression logged")
    assert re.search(r"publish: fingerprint_limit: [0-9a-f]{16} of GET /api/orders/:id over 2 "
                     r"messages in 600s: not sent \(counted\)", log), log

    def logged():
        """Suppressions logged: one line each at most once a second, the
        others summed up in a "N more" line a second later."""
        text = agent.log()
        lines = len(re.findall(r"publish: fingerprint_limit: [0-9a-f]{16} of ", text))
        more = sum(int(n) for n in re.findall(r"publish: fingerprint_limit: (\d+) more in the last second",
                                              text))
        return lines + more

    wait_for(lambda: logged() == 3, 5, what="every suppression logged or summed up")


def test_bad_array_keys_rule_stops_the_agent_with_a_message(stack):
    for rule, says in (("/items", "must be POINTER=MEMBER"), ("/items=", "key member's name is empty"),
                       ("items=id", "must be empty or start with '/'")):
        conf = write_conf(stack, "bad", f'array_keys = {{"{rule}"}}\n')
        p = subprocess.run([BUILD / "miffy", "-f", conf, "--candidate", "http://127.0.0.1:9",
                            "--admin", "off", "--sink", "stdout", "--listen", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=20)
        assert p.returncode == 2, (rule, p.returncode, p.stderr)
        assert says in p.stderr, (rule, p.stderr)
