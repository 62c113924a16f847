"""The comparator end to end: real HAProxy, the demo servers as reference,
candidate and secondary, the differences as published."""
import pytest

from conftest import BUILD, free_port, http_get, wait_for, wait_port

NOISY = {"/meta/served_by", "/meta/timestamp", "/meta/request_id"}

# value → the differences that are not noise, as (where, path, kind)
EXPECTED = {
    "changed": {("body", "/length", "value")},
    "missing": {("body", "/upper", "missing")},
    "reordered": {("body", "/items", "order")},
    "type": {("body", "/length", "type")},
    "extra": {("body", "/beta", "extra")},
    "header": {("header", "cache-control", "value")},
    "plain": set(),
}


class Demo:
    def __init__(self, stack, role):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = stack.start(f"demo-{role}", [BUILD / "miffy-demo", "--role", role,
                                                 "--listen", f"127.0.0.1:{self.port}"], sanitized=True)
        wait_port(self.port, proc=self.proc.popen)


@pytest.fixture
def published(stack):
    ref, cand, sec = (Demo(stack, r) for r in ("reference", "candidate", "secondary"))
    m = stack.miffy(candidate=cand.url, secondary=sec.url, args=["-o", "publish=noise"])
    hap = stack.haproxy(reference=ref, agent=m)
    for value in EXPECTED:
        status, _, _ = http_get(hap.port, f"/api/{value}")
        assert status == 200
    status, _, _ = http_get(hap.port, "/api/error")
    assert status == 200, "the client must get the reference's answer, not the candidate's 500"
    msgs = wait_for(lambda: (lambda p: p if len(p) >= len(EXPECTED) + 1 else None)(m.published()),
                    what="one message per request")
    return {msg["request"]["path"].split("/")[-1]: msg for msg in msgs}


def meta(msg, part):
    return msg[part]["body"]["json"]["meta"]


@pytest.mark.parametrize("value", sorted(EXPECTED))
def test_known_differences_and_noise_marks(published, value):
    msg = published[value]
    diffs = msg["differences"]
    real = {(d["where"], d["path"], d["kind"]) for d in diffs if not d["noise"]}
    noise = {d["path"] for d in diffs if d["noise"]}
    # The secondary disagrees with the reference on the meta fields, so
    # their differences are noise; unless both happened to take the same
    # timestamp (microseconds: seen once in CI), which is then a real one.
    ref, sec, cand = meta(msg, "reference"), meta(msg, "secondary"), meta(msg, "candidate")
    agree = {f"/meta/{k}" for k in ref if sec.get(k) == ref[k]}
    assert agree <= {"/meta/timestamp"}, agree
    expected = EXPECTED[value] | {("body", p, "value") for p in agree if cand.get(p[6:]) != ref[p[6:]]}
    assert real == expected
    assert noise == NOISY - agree
    assert msg["outcome"] == ("noise" if not expected else "different")
    assert msg["secondary"]["status"] == 200
    assert msg["endpoint"] == f"GET /api/{value}"


def test_candidate_500_is_a_status_difference(published):
    msg = published["error"]
    statuses = [d for d in msg["differences"] if d["where"] == "status"]
    assert statuses == [{"where": "status", "path": "", "kind": "value", "reference": 200,
                         "candidate": 500, "noise": False}]
    assert msg["outcome"] == "different"
    assert msg["reference"]["status"] == 200 and msg["candidate"]["status"] == 500


def test_values_of_a_difference_are_the_differing_fields(published):
    d = [d for d in published["changed"]["differences"] if d["path"] == "/length"][0]
    assert (d["reference"], d["candidate"]) == (7, 8)
    d = [d for d in published["type"]["differences"] if d["path"] == "/length"][0]
    assert isinstance(d["reference"], int) and isinstance(d["candidate"], str)
    d = [d for d in published["missing"]["differences"] if d["path"] == "/upper"][0]
    assert d["reference"] == "MISSING" and "candidate" not in d
