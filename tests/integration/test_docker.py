"""The Docker image and the compose demo, built and run for real.

Run by `make test-docker` (tools/docker-test.sh starts the engine, makes the
base images locally and builds miffy:latest, then runs this file with
MIFFY_DOCKER=1); `make test` leaves this file out (--ignore), and run
without that setting it fails at once, saying what to run. The engine runs without a bridge network
here, so containers use the host's network.

1. The image as the agent: HAProxy (the host's), the demo servers and the
   mock Kafka broker run on the host; miffy runs in the container, as its
   non-root user, and a difference is read back from Kafka by a consumer.
2. docker-compose.yml with docker-compose.test.yml: every service from the
   compose file (HAProxy 3.0 built from Debian's package; Kafka is the
   project's mock broker, as the override says); requests through the
   compose HAProxy, /stats, a message read back.
"""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid

import pytest
import yaml  # python3-yaml, a dependency of docker-compose

from conftest import BUILD, ROOT, free_port, wait_for, wait_port

if os.environ.get("MIFFY_DOCKER") != "1":
    raise RuntimeError("tests/integration/test_docker.py needs the engine and the image: "
                       "run `make test-docker` (tools/docker-test.sh)")

IMAGE = "miffy:latest"
DOCKER = shutil.which("docker") or "docker"


def sh(*cmd, timeout=300, check=True):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if check:
        assert r.returncode == 0, f"{' '.join(map(str, cmd))}: {r.stdout[-2000:]}{r.stderr[-2000:]}"
    return r


def http(port, path, timeout=5):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.status, r.read().decode()


def consume(bootstrap, topic, count, timeout=30.0):
    import confluent_kafka

    c = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": f"test-{uuid.uuid4()}",
                                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    try:
        while time.time() < deadline and len(got) < count:
            m = c.poll(0.2)
            if m is not None and not m.error():
                got.append(json.loads(m.value()))
    finally:
        c.close()
    return got


def port_free(port):
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def test_the_image_runs_as_a_non_root_user_and_prints_its_help():
    user = sh(DOCKER, "image", "inspect", IMAGE, "--format", "{{.Config.User}}").stdout.strip()
    assert user == "miffy:miffy"
    r = sh(DOCKER, "run", "--rm", "--network", "host", IMAGE)
    assert "--candidate [NAME=]URL" in r.stdout
    r = sh(DOCKER, "run", "--rm", "--network", "host", "--entrypoint", "id", IMAGE)
    assert r.stdout.startswith("uid=10001(miffy) gid=10001(miffy)"), r.stdout


def test_the_image_as_the_agent_publishes_a_difference_to_kafka(stack):
    kafka = stack.start("mock-kafka", [BUILD / "miffy-mock-kafka", "--topic", "miffy"], stdout_pipe=True)
    bootstrap = kafka.popen.stdout.readline().decode().strip()
    assert bootstrap.startswith("127.0.0.1:"), kafka.log()

    class Server:
        pass

    servers = {}
    for role in ("reference", "candidate"):
        s = Server()
        s.port = free_port()
        s.proc = stack.start(role, [BUILD / "miffy-demo", "--role", role, "--listen", f"127.0.0.1:{s.port}"])
        wait_port(s.port, proc=s.proc.popen)
        servers[role] = s
    agent_port, admin_port = free_port(), free_port()
    name = f"miffy-test-agent-{os.getpid()}"
    sh(DOCKER, "run", "-d", "--rm", "--name", name, "--network", "host", IMAGE,
       "--listen", f"127.0.0.1:{agent_port}", "--admin", f"127.0.0.1:{admin_port}",
       "--candidate", f"http://127.0.0.1:{servers['candidate'].port}",
       "--kafka", bootstrap, "--topic", "miffy")
    try:
        wait_port(admin_port, timeout=20)
        top = sh(DOCKER, "top", name, "-o", "pid,uid,comm").stdout
        assert "10001" in top and "miffy" in top, top
        hap = stack.haproxy(reference=servers["reference"], agent_port=agent_port)
        wait_for(lambda: hap.agent_status() == "UP", 10, what="the container agent UP in HAProxy")
        status, body = http(hap.port, "/api/changed")
        assert status == 200 and json.loads(body)["length"] == 7   # the reference's answer
        msgs = consume(bootstrap, "miffy", 1)
        assert msgs, sh(DOCKER, "logs", name, check=False).stderr[-2000:]
        m = msgs[0]
        assert m["request"]["path"] == "/api/changed" and m["outcome"] == "different"
        assert any(d["path"] == "/length" and d["reference"] == 7 and d["candidate"] == 8
                   for d in m["differences"]), m["differences"]
        stats = json.loads(http(admin_port, "/stats")[1])
        assert stats["outcomes"]["different"] >= 1
    finally:
        sh(DOCKER, "stop", "-t", "10", name, check=False)


COMPOSE_PORTS = (8080, 8081, 8082, 8083, 9000, 9092, 12345)


@pytest.fixture
def compose(tmp_path):
    busy = [p for p in COMPOSE_PORTS if not port_free(p)]
    assert not busy, f"the compose demo needs ports {COMPOSE_PORTS} on 127.0.0.1; busy: {busy}"
    exe = shutil.which("docker-compose")
    assert exe, "docker-compose is missing: run 'make deps' (docker group)"
    # haproxy-docker.cfg less the docker DNS resolvers (none on the host network).
    cfg = tmp_path / "haproxy.cfg"
    text = (ROOT / "haproxy" / "haproxy-docker.cfg").read_text()
    cfg.write_text(text.replace(" resolvers docker", ""))
    env = dict(os.environ, MIFFY_HAPROXY_CFG=str(cfg))
    project = f"miffytest{os.getpid()}"
    # The two files merged, less the published ports: docker refuses them
    # with the host's network (which publishes every port anyway), and
    # docker-compose 1.x cannot remove a list entry in an override.
    r = subprocess.run([exe, "-f", "docker-compose.yml", "-f", "docker-compose.test.yml", "config"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    merged = yaml.safe_load(r.stdout)
    for svc in merged["services"].values():
        assert svc["network_mode"] == "host"
        svc.pop("ports", None)
    (tmp_path / "compose.yml").write_text(yaml.safe_dump(merged))
    base = [exe, "-p", project, "--project-directory", str(ROOT), "-f", str(tmp_path / "compose.yml")]

    def run(*args, timeout=600, check=True):
        r = subprocess.run(base + list(args), capture_output=True, text=True, timeout=timeout,
                           cwd=ROOT, env=env)
        if check:
            assert r.returncode == 0, f"{' '.join(args)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
        return r

    run("build")
    try:
        yield run
    finally:
        logs = run("logs", "--no-color", check=False).stdout
        (tmp_path / "compose.log").write_text(logs)
        run("down", "--remove-orphans", "-t", "10", check=False)


def test_compose_demo_shadows_through_haproxy_and_publishes_to_kafka(compose):
    compose("up", "-d", "--no-build")
    wait_for(lambda: _ok(9000, "/health"), 60, what="miffy's /health in compose")
    wait_for(lambda: _ok(8080, "/api/hello"), 60, what="the compose HAProxy on :8080")
    time.sleep(1)    # HAProxy's check marks the agent UP (rise 2, inter 250ms)
    for v in ("changed", "missing", "hello"):
        status, body = http(8080, f"/api/{v}")
        assert status == 200 and json.loads(body)["value"] == v
    msgs = consume("127.0.0.1:9092", "miffy", 2)
    paths = {m["request"]["path"]: m for m in msgs}
    assert "/api/changed" in paths and "/api/missing" in paths, [m["request"]["path"] for m in msgs]
    assert paths["/api/changed"]["outcome"] == "different"
    assert paths["/api/changed"]["secondary"], "the compose miffy replays to the secondary too"
    stats = json.loads(http(9000, "/stats")[1])
    o = stats["outcomes"]
    assert o["different"] >= 2 and o["different"] + o["noise"] + o["equal"] >= 3, o
    ps = compose("ps").stdout
    for svc in ("haproxy", "miffy", "kafka", "reference", "candidate", "secondary"):
        assert f"_{svc}_1" in ps, ps


def _ok(port, path):
    try:
        return http(port, path, timeout=1)[0] == 200
    except OSError:
        return False


def test_compose_scales_to_three_agents_that_share_the_traffic(tmp_path):
    """docker-compose.yml on its own bridge network with --scale miffy=3:
    HAProxy's server-template finds the three agents through docker's DNS,
    and every shadowed request is published by exactly one of them."""
    busy = [p for p in (8080, 8081, 8082, 8083, 9000, 9001, 9002) if not port_free(p)]
    assert not busy, f"busy ports on 127.0.0.1: {busy}"
    exe = shutil.which("docker-compose")
    project = f"miffyscale{os.getpid()}"
    base = [exe, "-p", project, "-f", "docker-compose.yml", "-f", "docker-compose.scale.yml"]

    def run(*args, timeout=300, check=True):
        r = subprocess.run(base + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)
        if check:
            assert r.returncode == 0, f"{' '.join(args)}: {r.stdout[-3000:]}{r.stderr[-3000:]}"
        return r

    try:
        run("up", "-d", "--no-build", "--scale", "miffy=3")
        wait_for(lambda: _ok(8080, "/api/hello"), 60, what="the compose HAProxy on :8080")
        admins = set()
        for i in (1, 2, 3):
            out = run("port", "--index", str(i), "miffy", "9000").stdout.strip()
            admins.add(int(out.rsplit(":", 1)[1]))
        assert len(admins) == 3, admins
        for port in admins:
            wait_for(lambda port=port: _ok(port, "/health"), 30, what=f"agent admin :{port}")
        time.sleep(2)    # HAProxy's checks mark the agents UP (rise 2, inter 250ms)

        import concurrent.futures

        def per_agent():
            return {port: json.loads(http(port, "/stats")[1])["outcomes"]["different"] for port in admins}

        # Rounds of concurrent requests until two agents have compared some:
        # HAProxy sends nothing for 1 s after two events timed out (the
        # shipped breaker), which a loaded machine trips, so not every
        # request is shadowed.
        sent, counts = 0, {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            with concurrent.futures.ThreadPoolExecutor(9) as pool:
                codes = list(pool.map(lambda i: http(8080, f"/api/changed?i={i}")[0], range(sent, sent + 45)))
            assert codes == [200] * 45
            sent += 45
            time.sleep(1)
            counts = per_agent()
            if sum(counts.values()) >= 45 and sum(1 for c in counts.values() if c > 0) >= 2:
                break
        assert sum(1 for c in counts.values() if c > 0) >= 2, counts
        assert sum(counts.values()) <= sent, (counts, sent)   # none shadowed twice

        def published():
            logs = run("logs", "--no-color", "miffy").stdout
            return sum(1 for ln in logs.splitlines() if '"outcome":"different"' in ln)
        # every comparison published once, by the agent that made it
        wait_for(lambda: published() == sum(per_agent().values()), 20, what="published == compared")
        counts = per_agent()
        (tmp_path / "per-agent.txt").write_text(json.dumps(counts))
        print(f"{sent} requests, per-agent exchanges (admin port: count): {counts}")
    finally:
        (tmp_path / "compose.log").write_text(run("logs", "--no-color", check=False).stdout)
        run("down", "--remove-orphans", "-t", "10", check=False)
