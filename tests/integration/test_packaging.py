"""Packaging: docker-compose.yml, the Dockerfile, the systemd unit and
`make install`, checked statically (fast, in every `make test`).

The image and the compose demo are built and run for real by
`make test-docker` (tests/integration/test_docker.py); these checks keep the
files consistent with each other and with `make demo` between those runs:
the compose file is validated with Debian's docker-compose, the Dockerfile
is read, and the unit is checked with systemd-analyze on a real
`make install` tree.
"""
import os
import re
import shutil
import subprocess

import pytest
import yaml  # python3-yaml, a dependency of docker-compose

import haproxy_bin

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("MIFFY_BUILD", os.path.join(ROOT, "build")))


def run(cmd, **kw):
    kw.setdefault("cwd", ROOT)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kw)


# --- docker-compose.yml ------------------------------------------------------

@pytest.fixture(scope="module")
def compose():
    assert shutil.which("docker-compose"), "docker-compose is missing: run `make deps`"
    res = run(["docker-compose", "-f", "docker-compose.yml", "config"])
    assert res.returncode == 0, res.stderr
    return yaml.safe_load(res.stdout)


def test_compose_config_validates(compose):
    assert set(compose["services"]) >= {"haproxy", "miffy", "kafka", "reference",
                                        "candidate", "secondary"}


def test_compose_uses_official_haproxy_lts_and_apache_kafka(compose):
    haproxy = compose["services"]["haproxy"]["image"]
    m = re.fullmatch(r"haproxy:(\d+)\.(\d+)(\.\d+)?", haproxy)
    assert m, haproxy
    assert (int(m[1]), int(m[2])) >= (2, 8)
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:")
    env = compose["services"]["kafka"]["environment"]
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]


def test_compose_builds_miffy_and_the_demo_services_from_the_dockerfile(compose):
    services = compose["services"]
    for name in ("miffy", "reference", "candidate", "secondary"):
        assert services[name]["build"]["context"] == ROOT, name
        assert services[name]["image"] == services["miffy"]["image"]
    for role, port in (("reference", 8081), ("candidate", 8082), ("secondary", 8083)):
        cmd = services[role]["command"]
        assert services[role]["entrypoint"][-1].endswith("miffy-demo")
        assert cmd[cmd.index("--role") + 1] == role
        assert cmd[cmd.index("--listen") + 1] == f"0.0.0.0:{port}"


def test_compose_wires_miffy_like_make_demo(compose):
    cmd = compose["services"]["miffy"]["command"]
    args = dict(zip(cmd[::2], cmd[1::2]))
    assert args["--candidate"] == "http://candidate:8082"
    assert args["--secondary"] == "http://secondary:8083"
    assert args["--kafka"] == "kafka:9092"
    assert args["--topic"] == "miffy"
    assert args["--listen"].endswith(":12345")
    assert args["--admin"].endswith(":9000")


def published(service):
    """Host ports; docker-compose 1.x prints "127.0.0.1:8080:8080/tcp",
    newer ones a mapping."""
    out = set()
    for p in service.get("ports", []):
        if isinstance(p, dict):
            out.add(int(p["published"]))
        else:
            host = p.split("/")[0].split(":")[-2]
            first, _, last = host.partition("-")    # a range, for a scaled service
            out.update(range(int(first), int(last or first) + 1))
    return out


def test_compose_publishes_the_make_demo_ports(compose):
    s = compose["services"]
    assert 8080 in published(s["haproxy"])
    assert 9000 in published(s["miffy"])
    # one admin port per agent when scaled (up to the 4 of server-template)
    assert {9000, 9001, 9002, 9003} <= published(s["miffy"])
    assert {8081, 8082, 8083} == published(s["reference"]) | published(s["candidate"]) | \
        published(s["secondary"])


def test_compose_haproxy_mounts_the_docker_config_and_the_spoe_file(compose):
    volumes = compose["services"]["haproxy"]["volumes"]
    sources = {os.path.relpath(v.split(":")[0], ROOT): v.split(":")[1] for v in volumes}
    assert sources["haproxy/haproxy-docker.cfg"] == "/usr/local/etc/haproxy/haproxy.cfg"
    assert sources["haproxy/miffy-spoe.conf"] == "/usr/local/etc/haproxy/miffy-spoe.conf"


# --- haproxy/haproxy-docker.cfg ------------------------------------------------

def test_docker_haproxy_config_is_valid(tmp_path):
    cfg = open(os.path.join(ROOT, "haproxy", "haproxy-docker.cfg")).read()
    assert "config /usr/local/etc/haproxy/miffy-spoe.conf" in cfg
    hb = haproxy_bin.current()   # MIFFY_HAPROXY: 2.6 by default, 3.0 as in the image
    work = hb.workdir(tmp_path)
    try:
        cfg = cfg.replace("/usr/local/etc/haproxy/miffy-spoe.conf", str(work / "miffy-spoe.conf"))
        hb.outside(work / "miffy-spoe.conf").write_text(
            open(os.path.join(ROOT, "haproxy", "miffy-spoe.conf")).read())
        hb.outside(work / "haproxy.cfg").write_text(cfg)
        res = run(hb.argv("-c", "-f", work / "haproxy.cfg"))
    finally:
        hb.discard(work)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "server ref1 reference:8081" in cfg
    assert "server-template agent 4 miffy:12345" in cfg


def frontend_rules(path):
    """The frontend's directives, comments and the SPOE file path left out."""
    rules, in_frontend = [], False
    for line in open(path):
        line = line.split("#", 1)[0].rstrip()
        if not line:
            continue
        if not line[0].isspace():
            in_frontend = line.startswith("frontend ")
            continue
        line = line.strip()
        if in_frontend and not line.startswith("bind "):
            rules.append(re.sub(r"config \S+", "config SPOE", line))
    return rules


def test_docker_haproxy_config_has_the_same_miffy_rules_as_the_example():
    assert frontend_rules(os.path.join(ROOT, "haproxy", "haproxy-docker.cfg")) == \
        frontend_rules(os.path.join(ROOT, "haproxy", "haproxy.cfg"))


def agents_backend(path):
    """The miffy-agents backend lines, with the server name and address left
    out (the docker config's server-template counts as a server line)."""
    lines, inside = [], False
    for line in open(path).read().splitlines():
        if line.startswith("backend "):
            inside = line.split()[1] == "miffy-agents"
            continue
        if inside and line.strip() and not line.strip().startswith("#"):
            words = line.split()
            if words[0] == "server":
                words[1:3] = ["NAME", "ADDR"]
            elif words[0] == "server-template":
                words[0:4] = ["server", "NAME", "ADDR"]
            lines.append(" ".join(words))
    return lines


def test_docker_haproxy_config_has_the_same_agent_backend_as_the_example():
    example = agents_backend(os.path.join(ROOT, "haproxy", "haproxy.cfg"))
    assert "option spop-check" in example
    assert agents_backend(os.path.join(ROOT, "haproxy", "haproxy-docker.cfg")) == example


# --- Dockerfile --------------------------------------------------------------------

@pytest.fixture(scope="module")
def dockerfile():
    text = open(os.path.join(ROOT, "Dockerfile")).read()
    # join continuation lines, drop comments
    text = re.sub(r"\\\n", " ", text)
    return [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]


def stages(lines):
    out = []
    for l in lines:
        if l.upper().startswith("FROM "):
            out.append([l])
        elif out:
            out[-1].append(l)
    return out


def test_dockerfile_is_a_multi_stage_bookworm_build(dockerfile):
    st = stages(dockerfile)
    assert len(st) >= 2
    assert re.match(r"FROM debian:bookworm\s+AS\s+build", st[0][0], re.I)
    assert re.match(r"FROM debian:bookworm-slim\b", st[-1][0], re.I)
    build = " ".join(st[0])
    for pkg in ("build-essential", "libev-dev", "libcurl4-openssl-dev", "librdkafka-dev",
                "libcjson-dev", "libconfuse-dev", "libmicrohttpd-dev", "zlib1g-dev"):
        assert pkg in build, pkg
    assert re.search(r"\bmake\b", build)


def test_dockerfile_runtime_has_only_runtime_libs(dockerfile):
    runtime = " ".join(stages(dockerfile)[-1])
    for pkg in ("libev4", "libcurl4", "librdkafka1", "libcjson1", "libconfuse2",
                "libmicrohttpd12", "zlib1g", "ca-certificates"):
        assert re.search(rf"\b{re.escape(pkg)}\b", runtime), pkg
    assert "-dev" not in runtime
    assert "COPY --from=build" in runtime


def test_dockerfile_runs_as_a_non_root_user(dockerfile):
    runtime = stages(dockerfile)[-1]
    users = [l.split()[1] for l in runtime if l.upper().startswith("USER ")]
    assert users, "no USER in the runtime stage"
    assert users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_ships_the_three_programs_and_an_entrypoint(dockerfile):
    text = " ".join(dockerfile)
    for prog in ("miffy-demo", "miffy-mock-kafka"):
        assert prog in text
    runtime = stages(dockerfile)[-1]
    assert any(l.upper().startswith("EXPOSE ") and "12345" in l for l in runtime)
    assert any(l.upper().startswith("ENTRYPOINT ") and "miffy" in l for l in runtime)


def test_dockerignore_keeps_build_outputs_and_git_out():
    lines = open(os.path.join(ROOT, ".dockerignore")).read().split()
    for pattern in (".git", "build", "build-*"):
        assert pattern in lines


# --- make install --------------------------------------------------------------------

@pytest.fixture(scope="module")
def build_copy(tmp_path_factory):
    """A copy of the build directory (timestamps kept), so `make install`
    never rebuilds the binaries the other tests use."""
    dst = tmp_path_factory.mktemp("build") / "build"
    shutil.copytree(BUILD, dst, symlinks=True)
    return dst


def make_install(build, destdir, prefix):
    res = run(["make", "--no-print-directory", f"BUILD={build}", f"DESTDIR={destdir}",
               f"PREFIX={prefix}", "install"])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]


def test_make_install_installs_binary_config_haproxy_files_and_unit(build_copy, tmp_path):
    make_install(build_copy, tmp_path, "/usr")
    usr = tmp_path / "usr"
    miffy = usr / "bin" / "miffy"
    assert os.access(miffy, os.X_OK)
    assert run([str(miffy), "--version"]).returncode == 0
    assert (usr / "etc" / "miffy" / "miffy.conf").is_file()
    assert (usr / "share" / "miffy" / "haproxy" / "miffy-spoe.conf").is_file()
    assert (usr / "share" / "miffy" / "haproxy" / "haproxy.cfg").is_file()
    unit = (usr / "lib" / "systemd" / "system" / "miffy.service").read_text()
    assert "@PREFIX@" not in unit
    assert "ExecStart=/usr/bin/miffy -f /usr/etc/miffy/miffy.conf\n" in unit
    template = (usr / "lib" / "systemd" / "system" / "miffy@.service").read_text()
    assert "@PREFIX@" not in template
    assert "exec /usr/bin/miffy -f /usr/etc/miffy/miffy.conf --listen" in template


def test_installed_unit_passes_systemd_analyze_verify(build_copy, tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze (package systemd) is missing"
    prefix = tmp_path / "usr"
    make_install(build_copy, "", str(prefix))
    unit = prefix / "lib" / "systemd" / "system" / "miffy.service"
    res = run(["systemd-analyze", "verify", str(unit)])
    assert res.returncode == 0, res.stdout + res.stderr


def test_installed_template_unit_and_an_instance_pass_systemd_analyze_verify(build_copy, tmp_path):
    assert shutil.which("systemd-analyze"), "systemd-analyze (package systemd) is missing"
    prefix = tmp_path / "usr"
    make_install(build_copy, "", str(prefix))
    units = prefix / "lib" / "systemd" / "system"
    (units / "miffy@12346.service").symlink_to("miffy@.service")
    for name in ("miffy@.service", "miffy@12346.service"):
        res = run(["systemd-analyze", "verify", str(units / name)])
        assert res.returncode == 0, name + ": " + res.stdout + res.stderr


def systemd_command(unit_text, key, instance, env):
    """The command line of unit_text's `key` (ExecStart, ExecStartPre) for
    an instance, with what systemd does to it: %i is the instance, $$ a
    literal $; env gets the unit's Environment= assignments (so a test
    can run it as the service would be run). systemd is not PID 1 in
    this container, so this is how an instance is started for real here."""
    settings = {}
    for line in unit_text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            k, v = line.split("=", 1)
            settings.setdefault(k, []).append(v.replace("%i", str(instance)))
    for assignment in " ".join(settings.get("Environment", [])).split():
        k, v = assignment.split("=", 1)
        env.setdefault(k, v)
    [cmd] = settings[key]
    m = re.fullmatch(r"/bin/sh -c '(.*)'", cmd)
    assert m, cmd
    return ["/bin/sh", "-c", m.group(1).replace("$$", "$")]


def test_template_instances_listen_on_their_port_with_admin_on_port_minus_3345(build_copy, tmp_path):
    import socket
    from conftest import free_port, wait_port
    prefix = tmp_path / "usr"
    make_install(build_copy, "", str(prefix))
    template = (prefix / "lib" / "systemd" / "system" / "miffy@.service").read_text()
    # The default derivation: 12345 -> 9000, 12346 -> 9001.
    env = {}
    assert "--admin \"$MIFFY_ADDR:$((12346 + $MIFFY_ADMIN_OFFSET))\"" in \
        systemd_command(template, "ExecStart", 12346, env)[2]
    assert int(env["MIFFY_ADMIN_OFFSET"]) == 9001 - 12346
    conf = prefix / "etc" / "miffy" / "miffy.conf"
    conf.write_text(conf.read_text() + '\ncandidate = "http://127.0.0.1:9"\n')
    procs = []
    try:
        for _ in range(2):
            # Free ports for both: the instance's .env file moves the admin
            # offset, as a user can.
            port, admin = free_port(), free_port()
            env = dict(os.environ, MIFFY_ADMIN_OFFSET=str(admin - port))
            check = subprocess.run(systemd_command(template, "ExecStartPre", port, env), env=env,
                                   capture_output=True, text=True, timeout=30)
            assert check.returncode == 0, check.stdout + check.stderr
            p = subprocess.Popen(systemd_command(template, "ExecStart", port, env), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            procs.append(p)
            wait_port(port, proc=p)
            wait_port(admin, proc=p)
            with socket.create_connection(("127.0.0.1", admin), timeout=5) as sock:
                sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
                assert sock.recv(100).startswith(b"HTTP/1.")
        # exec: the service's main process is miffy itself, so systemd's
        # SIGTERM reaches it and it exits 0.
        for p in procs:
            assert open(f"/proc/{p.pid}/comm").read().strip() == "miffy"
            p.terminate()
            assert p.wait(timeout=15) == 0, p.stderr.read()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_template_unit_has_the_single_units_service_settings():
    single, template = unit_settings("miffy.service"), unit_settings("miffy@.service")
    for key, value in single.items():
        if key in ("ExecStart", "ExecStartPre", "Description", "StateDirectory", "LogsDirectory"):
            continue
        assert template.get(key) == value, key
    assert template["StateDirectory"] == ["miffy/%i"]


def unit_settings(name="miffy.service"):
    settings = {}
    for line in open(os.path.join(ROOT, "packaging", name)):
        line = line.strip()
        if line and not line.startswith(("#", "[")):
            key, value = line.split("=", 1)
            settings.setdefault(key, []).append(value)
    return settings


def test_unit_restarts_on_failure_and_stops_with_sigterm():
    s = unit_settings()
    assert s["ExecStart"] == ["@PREFIX@/bin/miffy -f @PREFIX@/etc/miffy/miffy.conf"]
    assert s["Restart"] == ["on-failure"]
    assert s["KillSignal"] == ["SIGTERM"]
    assert "TimeoutStopSec" in s


def test_unit_runs_unprivileged_and_hardened():
    s = unit_settings()
    assert s.get("DynamicUser") == ["yes"] or "User" in s
    for key, value in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"),
                       ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("PrivateDevices", "yes"), ("RestrictSUIDSGID", "yes")):
        assert s.get(key) == [value], key
    assert s["CapabilityBoundingSet"] == [""]
    assert "AF_INET" in s["RestrictAddressFamilies"][0]
