"""Fixtures that start real processes on free loopback ports and always stop
them: haproxy (the one MIFFY_HAPROXY names, see haproxy_bin.py: the
machine's 2.6 by default, or Debian's 3.0 / 3.2 from a chroot),
build/miffy, test backends, the mock Kafka broker.

    def test_x(stack):
        ref = stack.backend(name="ref")
        cand = stack.backend(name="cand", record=True)
        agent = stack.miffy(candidate=cand.url)
        hap = stack.haproxy(reference=ref, agent=agent)
        status, headers, body = http_get(hap.port, "/api/x")

Every miffy log is checked for sanitizer reports when the test ends.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

import haproxy_bin
from haproxy_bin import render_haproxy_cfg

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("MIFFY_BUILD", ROOT / "build"))
HERE = Path(__file__).resolve().parent
PYTHON = sys.executable

# MIFFY_WRAPPER runs miffy under a tool, e.g. valgrind on a build without
# sanitizers (docs/hardening.md); its error and leak summaries are checked too.
WRAPPER = os.environ.get("MIFFY_WRAPPER", "").split()
VALGRIND_PROBLEM = re.compile(r"ERROR SUMMARY: [1-9]|(definitely|indirectly) lost: [1-9]")
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "ERROR: UndefinedBehaviorSanitizer")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def wait_for(cond, timeout=10.0, interval=0.05, what="condition"):
    """Polls cond() until it returns a truthy value; returns it or fails."""
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Proc:
    def __init__(self, name, argv, logdir, env=None, cwd=None, stdout_pipe=False):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(logdir) / f"{name}.log"
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE if stdout_pipe else self._log, stderr=self._log,
            env=env, cwd=cwd or ROOT, start_new_session=True)

    @property
    def pid(self):
        return self.popen.pid

    def alive(self):
        return self.popen.poll() is None

    def log(self):
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def signal(self, sig):
        if self.alive():
            os.kill(self.popen.pid, sig)

    def stop(self, sig=None, timeout=15.0):
        """Stops the process (and its group); returns its exit status."""
        sig = sig or signal.SIGTERM
        if self.alive():
            try:
                os.kill(self.popen.pid, signal.SIGCONT)
                os.kill(self.popen.pid, sig)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log.close()
        return self.popen.returncode


class Backend:
    def __init__(self, stack, name, mode, delay_ms, body, record):
        self.port = free_port()
        self.name = name
        self.url = f"http://127.0.0.1:{self.port}"
        self.record_path = Path(stack.tmp) / f"{name}.requests.jsonl" if record else None
        argv = [PYTHON, HERE / "backend.py", "--port", self.port, "--mode", mode, "--name", name,
                "--delay-ms", delay_ms]
        if body is not None:
            argv += ["--body", body]
        if self.record_path:
            argv += ["--record", self.record_path]
        self.proc = stack.start(name, argv)
        wait_port(self.port, proc=self.proc.popen)

    def requests(self):
        if not self.record_path or not self.record_path.exists():
            return []
        return [json.loads(line) for line in self.record_path.read_text().splitlines() if line]


class Miffy:
    def __init__(self, stack, name, candidate, secondary, args, sink, admin, listen_port):
        self.port = listen_port or free_port()
        self.admin_port = free_port() if admin else None
        self.sink_path = Path(stack.tmp) / f"{name}.sink.jsonl"
        argv = WRAPPER + [BUILD / "miffy", "--listen", f"127.0.0.1:{self.port}"]
        if candidate:
            argv += ["--candidate", candidate]
        if secondary:
            argv += ["--secondary", secondary]
        argv += ["--admin", f"127.0.0.1:{self.admin_port}" if admin else "off"]
        if sink is None:
            sink = f"file:{self.sink_path}"
        argv += ["--sink", sink] + list(args)
        self.stack = stack
        self.name = name
        self.proc = stack.start(name, argv, sanitized=True)
        wait_port(self.port, proc=self.proc.popen)

    def log(self):
        return self.proc.log()

    def stats(self, timeout=5.0):
        """The counters, from the JSON that SIGUSR2 writes to the log."""
        def whole_lines():
            # The document is written in PIPE_BUF chunks: a line without
            # its newline yet is still being written.
            return [l for l in self.log().split("\n")[:-1] if " stats {" in l]

        before = len(whole_lines())
        self.proc.signal(signal.SIGUSR2)
        wait_for(lambda: len(whole_lines()) > before, timeout, what="SIGUSR2 stats line")
        line = whole_lines()[-1]
        return json.loads(line[line.index(" stats {") + 7:])

    def published(self):
        if not self.sink_path.exists():
            return []
        # Complete lines only: the agent may be writing the last one now.
        text = self.sink_path.read_text()
        text = text[:text.rfind("\n") + 1]
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def stop(self, sig=signal.SIGTERM, timeout=15.0):
        return self.proc.stop(sig, timeout)


HTTPLOG_SPOE = ('"%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %CC %CS %tsc '
                '%ac/%fc/%bc/%sc/%rc %sq/%bq %hr %hs miffy_error=%[var(txn.miffy.error)] %{+Q}r"')


class HAProxy:
    """One HAProxy from haproxy_bin.current() with the shipped config and SPOE
    file. cfg_path is the config as HAProxy names it (hand it to
    bin.argv(...)); a copy of both files stays in stack.tmp for reading."""

    def __init__(self, stack, name, reference, agent_port, shadow, spoe_edit, extra_global, timeouts,
                 cfg_edit=None):
        self.bin = stack.haproxy_bin()
        self.port = free_port()
        self.stats_port = free_port()
        spoe = (ROOT / "haproxy" / "miffy-spoe.conf").read_text()
        if timeouts == "relaxed":
            # The shipped "timeout processing" (a few ms) is what an agent
            # failure costs a client, and the fault tests keep it. Tests that
            # count every exchange give the ASan agent on shared CI cores
            # more: an event that times out may never reach the agent.
            line = re.search(r"\n    timeout processing \S+\n", spoe)
            assert line, "haproxy/miffy-spoe.conf has no 'timeout processing' line"
            spoe = spoe.replace(line.group(0), "\n    timeout processing 1s\n")
        else:
            assert timeouts == "shipped", timeouts
        if spoe_edit:
            spoe = spoe_edit(spoe)
        spoe_path = Path(stack.tmp) / f"{name}-spoe.conf"
        self.cfg_path = Path(stack.tmp) / f"{name}.cfg"
        cfg = render_haproxy_cfg(self.port, reference.port, agent_port or free_port(),
                                 spoe_path, shadow, extra_global, self.stats_port)
        # httplog's own format plus the SPOE error of each request (1: the
        # event timed out, "-": none), so that a request the agent never saw
        # explains itself in the log.
        cfg = cfg.replace("    option httplog\n", "    log-format " + HTTPLOG_SPOE + "\n", 1)
        if timeouts == "relaxed" and shadow:
            # Likewise the health check's 100 ms: a busy ASan agent that
            # answers a check late is marked down, and HAProxy then shadows
            # nothing for a while, which a test counting exchanges must not
            # mistake for lost work.
            line = re.search(r"\n    timeout check \S+\n", cfg)
            assert line, "haproxy/haproxy.cfg has no 'timeout check' line"
            cfg = cfg.replace(line.group(0), "\n    timeout check 1s\n")
        if cfg_edit:
            cfg = cfg_edit(cfg)
        for path, text in ((spoe_path, spoe), (self.cfg_path, cfg)):
            path.write_text(text)
            if self.bin.outside(path) != path:
                self.bin.outside(path).write_text(text)
        check = subprocess.run(self.bin.argv("-c", "-q", "-f", self.cfg_path),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert check.returncode == 0, f"{self.bin}: -c -f {self.cfg_path} failed:\n{check.stdout}"
        self.proc = stack.start(name, self.bin.argv("-db", "-f", self.cfg_path))
        wait_port(self.port, proc=self.proc.popen)

    def spoe_errors(self):
        """How many requests the log shows with a SPOE error (timed-out
        events among them: HAProxy may never send those to the agent)."""
        return len(re.findall(r" miffy_error=\d+ ", self.proc.log()))

    def stats_csv(self):
        """The stats page's CSV as dicts keyed by its own header's column
        names (their order and number differ between versions)."""
        # A refusal is retried for 2 s: one CI run saw the stats listener
        # of a running HAProxy refuse a connection once (2.6, 03:46 UTC).
        deadline = time.time() + 2
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.stats_port, timeout=5)
            try:
                conn.request("GET", "/stats;csv")
                lines = conn.getresponse().read().decode().splitlines()
                break
            except ConnectionRefusedError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
            finally:
                conn.close()
        if not lines:
            return []
        names = lines[0].lstrip("# ").split(",")
        return [dict(zip(names, line.split(","))) for line in lines[1:] if line]

    def agent_status(self, server="agent1"):
        """UP / DOWN of a miffy agent server as HAProxy's checks see it
        (transitions such as "UP 1/2" are reported as they are)."""
        for row in self.stats_csv():
            if row.get("pxname") == "miffy-agents" and row.get("svname") == server:
                return row.get("status")
        return None


class Stack:
    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.sanitized = []
        self._haproxy_bin = None

    def haproxy_bin(self):
        """haproxy_bin.current(), with stack.tmp made visible to it (its copy
        inside a root is removed when the stack closes)."""
        if self._haproxy_bin is None:
            hb = haproxy_bin.current()
            hb.workdir(self.tmp)
            self._haproxy_bin = hb
        return self._haproxy_bin

    def start(self, name, argv, sanitized=False, env=None, stdout_pipe=False):
        names = {p.name for p in self.procs}
        base, i = name, 2
        while name in names:
            name, i = f"{base}{i}", i + 1
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if env:
            e.update(env)
        p = Proc(name, argv, self.tmp, env=e, stdout_pipe=stdout_pipe)
        self.procs.append(p)
        if sanitized:
            self.sanitized.append(p)
        return p

    def backend(self, name="backend", mode="echo", delay_ms=0, body=None, record=False):
        return Backend(self, name, mode, delay_ms, body, record)

    def miffy(self, candidate=None, secondary=None, args=(), sink=None, admin=False,
              name="miffy", listen_port=None):
        return Miffy(self, name, candidate, secondary, args, sink, admin, listen_port)

    def haproxy(self, reference, agent=None, agent_port=None, shadow=True, spoe_edit=None,
                extra_global="", name="haproxy", timeouts="relaxed", agents=None, cfg_edit=None):
        """timeouts="shipped" keeps the SPOE file's timeout processing and
        the agents' check timeout (fault tests); "relaxed" raises both to
        1 s (tests that count exchanges).
        agents: a list of Miffy, one `server agentN` line each (in order).
        cfg_edit: a function of the rendered haproxy.cfg text."""
        port = [a.port for a in agents] if agents else agent.port if agent else agent_port
        return HAProxy(self, name, reference, port, shadow, spoe_edit, extra_global, timeouts,
                       cfg_edit)

    def close(self):
        problems = []
        for p in reversed(self.procs):
            p.stop()
        if self._haproxy_bin is not None:
            self._haproxy_bin.discard(self.tmp)
        for p in self.sanitized:
            text = p.log_path.read_text(errors="replace")
            if any(m in text for m in SANITIZER_MARKERS) or VALGRIND_PROBLEM.search(text):
                problems.append(f"{p.name}: sanitizer report in {p.log_path}:\n{text[-4000:]}")
        return problems


def haproxy_line():
    try:
        hb = haproxy_bin.current()
    except Exception as e:  # noqa: BLE001 - shown, and every HAProxy test fails with it
        return f"haproxy: unavailable (MIFFY_HAPROXY={os.environ.get('MIFFY_HAPROXY') or 'system'}): {e}"
    return f"haproxy: {hb}"


def pytest_sessionstart(session):
    try:
        haproxy_bin.current().prune()
    except Exception:  # noqa: BLE001 - reported by haproxy_line()
        pass


def pytest_addoption(parser):
    parser.addoption("--haproxy-only", action="store_true",
                     help="run only the tests that start or check HAProxy (make test-haproxy: "
                          "the others do not depend on MIFFY_HAPROXY)")


def _uses_haproxy(func, seen):
    """Whether func, or a function of its module it calls (recursively),
    names .haproxy / haproxy_bin: stack.haproxy(...), hap.bin, ..."""
    if id(func) in seen or not hasattr(func, "__code__"):
        return False
    seen.add(id(func))
    codes, names = [func.__code__], set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
    if names & {"haproxy", "haproxy_bin", "HAProxy"}:
        return True
    glb = getattr(func, "__globals__", {})
    return any(_uses_haproxy(glb[n], seen) for n in names
               if callable(glb.get(n)) and getattr(glb[n], "__module__", None) == func.__module__)


def pytest_collection_modifyitems(config, items):
    if not config.getoption("haproxy_only"):
        return
    keep, drop = [], []
    for item in items:
        funcs = [getattr(item, "function", None)]
        for defs in getattr(item, "_fixtureinfo").name2fixturedefs.values():
            funcs += [d.func for d in defs]
        seen = set()
        (keep if any(f and _uses_haproxy(f, seen) for f in funcs) else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config):
    return haproxy_line()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    # -q hides the header: say it again at the end.
    if config.getoption("verbose") < 0:
        terminalreporter.write_line(haproxy_line())


@pytest.fixture
def stack(tmp_path):
    s = Stack(tmp_path)
    try:
        yield s
    finally:
        problems = s.close()
    assert not problems, "\n".join(problems)


def http_request(port, method, path, body=None, headers=None, timeout=10.0, conn=None):
    """One request; returns (status, headers dict lower-case, body bytes)."""
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    hdrs = {k.lower(): v for k, v in resp.getheaders()}
    if own:
        conn.close()
    return resp.status, hdrs, data


def http_get(port, path, **kw):
    return http_request(port, "GET", path, **kw)


def raw_exchange(port, request_bytes, timeout=10.0):
    """Sends raw bytes, reads one response to the end (Connection: close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request_bytes)
        chunks = []
        while True:
            b = s.recv(65536)
            if not b:
                break
            chunks.append(b)
    return b"".join(chunks)
