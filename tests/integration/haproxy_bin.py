"""Which HAProxy the integration tests and bench/faults run (from one setting),
and the shipped haproxy/haproxy.cfg rendered for them.

    MIFFY_HAPROXY=system   the machine's own haproxy (Debian 12: 2.6), the default
    MIFFY_HAPROXY=3.0      Debian trixie's, from a debootstrap root
    MIFFY_HAPROXY=3.2      Debian sid's, from a debootstrap root

A root comes from tools/haproxy-root.sh (built once, cached in
$MIFFY_ROOTS). Its HAProxy runs as `chroot ROOT /usr/sbin/haproxy ...`:
loopback is shared, but every file it reads or writes (configs, SPOE files,
stats sockets) must be inside ROOT. `inside()` gives the path HAProxy uses,
`outside()` the same file as this process sees it; for the system HAProxy
both are the path itself.
"""
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


class HAProxyBin:
    def __init__(self, version=None):
        self.version = version or os.environ.get("MIFFY_HAPROXY", "") or "system"
        if self.version == "system":
            self.root = None
        else:
            out = subprocess.run([str(ROOT / "tools" / "haproxy-root.sh"), self.version],
                                 check=True, stdout=subprocess.PIPE, text=True)
            self.root = Path(out.stdout.strip().splitlines()[-1])
        banner = subprocess.run(self.argv("-v"), check=True, stdout=subprocess.PIPE, text=True).stdout
        m = re.search(r"version (\d+)\.(\d+)\.(\d+)", banner)
        self.full_version = ".".join(m.groups()) if m else "unknown"
        self.major_minor = (int(m.group(1)), int(m.group(2))) if m else (0, 0)

    def argv(self, *args):
        """The command line that runs this HAProxy with args (paths as inside())."""
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

    def __str__(self):
        return f"HAProxy {self.full_version}" + (f" ({self.root})" if self.root else "")


def render_haproxy_cfg(front_port, ref_port, agent_port, spoe_path, shadow=True, extra_global="",
                       stats_port=None):
    """The shipped haproxy/haproxy.cfg with test ports; without the miffy
    lines when shadow is False (HAProxy alone)."""
    text = (ROOT / "haproxy" / "haproxy.cfg").read_text()
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{front_port}")
    text = text.replace("127.0.0.1:8081", f"127.0.0.1:{ref_port}")
    text = text.replace("127.0.0.1:12345", f"127.0.0.1:{agent_port}")
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


_current = None


def current():
    """The HAProxy chosen by MIFFY_HAPROXY, made once per process."""
    global _current
    if _current is None:
        _current = HAProxyBin()
    return _current
