"""Which HAProxy the integration tests and bench/faults run, from one setting.

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


_current = None


def current():
    """The HAProxy chosen by MIFFY_HAPROXY, made once per process."""
    global _current
    if _current is None:
        _current = HAProxyBin()
    return _current
