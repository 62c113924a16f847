"""`make demo`, bounded: demo/run with DEMO_SECONDS starts the whole stack
(mock Kafka, the three demo services, build/miffy, Debian's haproxy), sends
its sample traffic, and stops by itself. A real Kafka consumer reads the
differences it published while it runs.

The test runs demo/run itself, not `make demo`, which would first rebuild
the binaries without the sanitizer flags of `make test`; the target is
checked separately with `make -n demo`. Ports are free ones, picked here and
passed through DEMO_*_PORT.
"""
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("MIFFY_BUILD", os.path.join(ROOT, "build")))
DEMO_SECONDS = 40


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def session_members(sid):
    """PIDs of live processes in session sid (demo/run and all it started)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, fields[3] the session id
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class DemoRun:
    def __init__(self, tmp_path, seconds):
        ports = free_ports(6)
        self.ports = dict(zip(("FRONTEND", "REFERENCE", "CANDIDATE", "SECONDARY", "AGENT",
                               "ADMIN"), ports))
        env = dict(os.environ, MIFFY_BUILD=BUILD, DEMO_LOG_DIR=str(tmp_path / "demo"),
                   DEMO_TOPIC="miffy")
        env.pop("DEMO_SECONDS", None)
        if seconds is not None:
            env["DEMO_SECONDS"] = str(seconds)
        env.update({f"DEMO_{k}_PORT": str(v) for k, v in self.ports.items()})
        self.proc = subprocess.Popen(["bash", "demo/run"], cwd=ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines = []
        self.bootstrap = None
        self.ready = threading.Event()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            m = re.match(r"kafka bootstrap: (\S+)", line)
            if m:
                self.bootstrap = m[1]
                self.ready.set()
        self.ready.set()

    def output(self):
        return "\n".join(self.lines)

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.reader.join(timeout=5)

    def kill(self):
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()


def consume(bootstrap, topic, want, timeout):
    """Up to `want` messages from the start of every partition of topic."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "miffy-demo-smoke",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        parts = md.topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        got, deadline = [], time.time() + timeout
        while len(got) < want and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg)
        return got
    finally:
        consumer.close()


@pytest.fixture
def demo(tmp_path):
    run = DemoRun(tmp_path, DEMO_SECONDS)
    yield run
    if run.proc.poll() is None:
        run.kill()


def test_make_demo_runs_deps_all_then_demo_run():
    res = subprocess.run(["make", "-n", "--no-print-directory", "demo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "bash demo/run" in res.stdout
    assert "tools/deps.sh" in res.stdout


def test_demo_publishes_differences_and_stops_cleanly(demo):
    assert demo.ready.wait(60), demo.output()
    assert demo.bootstrap, "demo/run never printed the Kafka bootstrap:\n" + demo.output()

    messages = consume(demo.bootstrap, "miffy", want=3, timeout=DEMO_SECONDS - 5)
    assert messages, "no message on the topic:\n" + demo.output()
    docs = [json.loads(m.value()) for m in messages]
    for m, doc in zip(messages, docs):
        assert doc["outcome"] in ("different", "noise", "candidate_error"), doc
        assert doc["endpoint"].startswith("GET /api"), doc
        assert m.key().decode() == doc["endpoint"]  # key = endpoint
    assert any(doc.get("differences") for doc in docs), docs

    rc = demo.wait(timeout=DEMO_SECONDS + 90)
    out = demo.output()
    assert rc == 0, out
    assert "stopped cleanly" in out
    # the client always got the reference's answers through haproxy
    sample = re.findall(r"GET /api/(\S+)\s+-> (\d+)", out)
    assert len(sample) >= 10, out
    assert {code for _, code in sample} == {"200"}, out

    # nothing left behind: no process of the session, no port still open
    time.sleep(0.5)
    assert session_members(demo.proc.pid) == [], out
    assert [p for p in demo.ports.values() if port_open(p)] == [], out


def test_sigint_stops_the_demo_cleanly(tmp_path):
    run = DemoRun(tmp_path, None)  # runs until Ctrl-C
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not any("The demo is running" in l for l in run.lines):
            assert run.proc.poll() is None, run.output()
            time.sleep(0.2)
        assert any("The demo is running" in l for l in run.lines), run.output()
        run.proc.send_signal(signal.SIGINT)  # what Ctrl-C sends to the script
        rc = run.wait(timeout=60)
        assert rc == 0, run.output()
        assert "stopped cleanly" in run.output()
        time.sleep(0.5)
        assert session_members(run.proc.pid) == [], run.output()
    finally:
        if run.proc.poll() is None:
            run.kill()


def test_busy_port_is_reported_with_the_fix(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        busy = s.getsockname()[1]
        env = dict(os.environ, MIFFY_BUILD=BUILD, DEMO_LOG_DIR=str(tmp_path / "demo"),
                   DEMO_FRONTEND_PORT=str(busy))
        res = subprocess.run(["bash", "demo/run"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 1
    assert f"port {busy} is busy" in res.stderr
    assert "DEMO_PORT_OFFSET" in res.stderr
