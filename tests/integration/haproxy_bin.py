"""Which HAProxy the integration tests and bench/faults run (from one setting),
and the shipped haproxy/haproxy.cfg rendered for them.

    MIFFY_HAPROXY=system   the machine's own haproxy (Debian 12: 2.6), the default
    MIFFY_HAPROXY=3.0      Debian trixie's, from a debootstrap root
    MIFFY_HAPROXY=3.2      Debian sid's, from a debootstrap root

A root comes from tools/haproxy-root.sh (built once, cached in
$MIFFY_ROOTS). Its HAProxy runs as `chroot ROOT /usr/sbin/haproxy ...`:
loopback is shared, but every file it reads or writes (configs, SPOE files,
stats sockets) must be inside ROOT, under the same absolute path as this
process uses (a test's /tmp/pytest-.../x.cfg is ROOT/tmp/pytest-.../x.cfg
here). Paths handed to HAProxy (argv, configs) are always its own;
`outside()` gives the same file as this process sees it; for the system
HAProxy both are the path itself. `workdir()` makes a directory HAProxy can
use, `discard()` removes its copy inside the root again (a no-op for the
system HAProxy), `connect_unix()` reaches a socket HAProxy made.
"""
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class HAProxyBin:
    def __init__(self, version=None):
        self.version = version or os.environ.get("MIFFY_HAPROXY", "") or "system"
        if self.version == "system":
            self.root = None
            self.binary = shutil.which("haproxy")
            if not self.binary:
                raise RuntimeError("MIFFY_HAPROXY=system but no haproxy in PATH (make deps installs it)")
        else:
            out = subprocess.run([str(ROOT / "tools" / "haproxy-root.sh"), self.version],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"MIFFY_HAPROXY={self.version}: tools/haproxy-root.sh failed: "
                                   + out.stderr.strip())
            self.root = Path(out.stdout.strip().splitlines()[-1])
            self.binary = "/usr/sbin/haproxy"
        banner = subprocess.run(self.argv("-v"), check=True, stdout=subprocess.PIPE, text=True).stdout
        self.banner = banner.splitlines()[0] if banner else ""
        m = re.search(r"version (\d+)\.(\d+)\.(\d+)", banner)
        self.full_version = ".".join(m.groups()) if m else "unknown"
        self.major_minor = (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def argv(self, *args):
        """The command line that runs this HAProxy with args (paths as HAProxy sees them)."""
        prefix = ["chroot", str(self.root), "/usr/sbin/haproxy"] if self.root else ["haproxy"]
        return prefix + [str(a) for a in args]

    def outside(self, path):
        """The file HAProxy calls `path`, as seen from outside its root."""
        path = Path(path)
        return self.root / path.relative_to("/") if self.root else path

    def workdir(self, path):
        """Creates directory `path` where HAProxy can see it; returns `path`
        (write files to outside(path / name), hand HAProxy path / name)."""
        self.outside(path).mkdir(parents=True, exist_ok=True)
        return Path(path)

    def discard(self, path):
        """Removes the copy of directory `path` inside the root (what
        workdir() made and HAProxy left there), and its parents left empty.
        Never touches `path` itself: for the system HAProxy this does
        nothing."""
        if not self.root:
            return
        shutil.rmtree(self.outside(path), ignore_errors=True)
        # Then its parents (pytest's basetemp ...) while empty, up to the
        # root's own top directories (tmp, var, ...).
        p = self.outside(path).parent
        while p.parent != self.root and p != self.root:
            try:
                p.rmdir()
            except OSError:
                break
            p = p.parent

    def prune(self, pattern="tmp/pytest-of-*/pytest-*"):
        """Removes copies inside the root whose own directory is gone (left by
        an interrupted session whose pytest directory has since been
        deleted); a live session's directories still exist, so are kept."""
        if not self.root:
            return
        for inside in self.root.glob(pattern):
            if not (Path("/") / inside.relative_to(self.root)).exists():
                shutil.rmtree(inside, ignore_errors=True)

    def connect_unix(self, path, timeout=5.0):
        """A connected socket to the UNIX socket HAProxy calls `path` (a stats
        socket). Goes through /proc/self/fd, since ROOT + path may be longer
        than a socket address can be (108 bytes)."""
        target = self.outside(path)
        dfd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(timeout)
            try:
                s.connect(f"/proc/self/fd/{dfd}/{target.name}")
            except OSError:
                s.close()
                raise
            return s
        finally:
            os.close(dfd)

    def __str__(self):
        where = f"chroot {self.root} {self.binary}" if self.root else self.binary
        return f"HAProxy {self.full_version} ({where})"


def render_haproxy_cfg(front_port, ref_port, agent_port, spoe_path, shadow=True, extra_global="",
                       stats_port=None):
    """The shipped haproxy/haproxy.cfg with test ports; agent_port is a port
    or a list of them (one `server agentN` line each, the shipped line's
    options kept); without the miffy lines when shadow is False (HAProxy
    alone)."""
    text = (ROOT / "haproxy" / "haproxy.cfg").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{front_port}")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{ref_port}")
    ports = list(agent_port) if isinstance(agent_port, (list, tuple)) else [agent_port]
    server = re.search(r"^ +server agent1 127\.0\.0\.1:12345 .*\n", text, re.M)
    assert server, "haproxy/haproxy.cfg has no 'server agent1 127.0.0.1:12345' line"
    # One server line per agent, as a user adds them: the shipped line with
    # its name and address changed.
    servers = "".join(server.group(0).replace("agent1", f"agent{i + 1}")
                      .replace("127.0.0.1:12345", f"127.0.0.1:{port}") for i, port in enumerate(ports))
    text = text[:server.start()] + servers + text[server.end():]
    text = text.replace("config haproxy/miffy-spoe.conf", f"config {spoe_path}")
    text = text.replace("log stderr format short local0 warning", "log stderr format short local0 info")
    if extra_global:
        text = text.replace("global\n", "global\n" + extra_global + "\n", 1)
    if stats_port:
        text += f"\nfrontend stats\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /stats\n"
    if not shadow:
        out, skip = [], False
        for line in text.splitlines():
            if line.startswith("backend miffy-agents"):
                skip = True
            elif skip and line and not line.startswith(" "):
                skip = False
            if skip or "miffy" in line.split("#")[0] or "unique-id" in line.split("#")[0]:
                continue
            out.append(line)
        text = "\n".join(out) + "\n"
    return text


def two_message_cfg(text):
    """A rendered haproxy.cfg changed to the two-message shape (docs/
    spoe-messages.md): miffy-req from an http-request rule once the request
    body is in, miffy-res in place of the shipped miffy-tx rule, on the same
    conditions."""
    send = re.search(r"^( +)http-response send-spoe-group miffy miffy-tx (if .*)\n", text, re.M)
    assert send, "haproxy.cfg has no 'http-response send-spoe-group miffy miffy-tx' rule"
    ind, cond = send.groups()
    # After the last ACL it names: HAProxy resolves ACL names as it parses.
    acl = list(re.finditer(r"^ +acl miffy_\S+ .*\n", text[:send.start()], re.M))
    assert acl, "haproxy.cfg declares no miffy_* ACL before its send-spoe-group rule"
    at = acl[-1].end()
    res = f"{ind}http-response send-spoe-group miffy miffy-res {cond}\n"
    req = f"{ind}http-request send-spoe-group miffy miffy-req {cond}\n"
    return text[:at] + req + text[at:send.start()] + res + text[send.end():]


_current = None


def current():
    """The HAProxy chosen by MIFFY_HAPROXY, made once per process."""
    global _current
    if _current is None:
        _current = HAProxyBin()
    return _current
