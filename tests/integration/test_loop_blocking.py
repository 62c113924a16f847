"""The agent's loop never waits for the outside world: whatever the
candidate's name resolution does, HAProxy gets its ACKs at once.

The slow resolver is a small LD_PRELOAD shim built here: getaddrinfo() for
one host name sleeps, every other name resolves as usual."""
import subprocess
import time

from conftest import BUILD, WRAPPER, free_port, wait_port
import spop_client as sp

SLOW_HOST = "slow-dns.miffy.test"
SLOW_SECONDS = 3

SHIM = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
		struct addrinfo **res)
{
	int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **) =
		(int (*)(const char *, const char *, const struct addrinfo *, struct addrinfo **))
		dlsym(RTLD_NEXT, "getaddrinfo");

	if (node && strcmp(node, "%s") == 0) {
		sleep(%d);
		node = "127.0.0.1";
	}
	return real(node, service, hints, res);
}
""" % (SLOW_HOST, SLOW_SECONDS)


def build_shim(tmp):
    src, lib = tmp / "slowdns.c", tmp / "slowdns.so"
    src.write_text(SHIM)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src), "-ldl"], check=True)
    return lib


def test_a_replay_that_times_out_while_resolving_does_not_stall_acks(stack):
    lib = build_shim(stack.tmp)
    port = free_port()
    argv = WRAPPER + [BUILD / "miffy", "--listen", f"127.0.0.1:{port}",
                      "--candidate", f"http://{SLOW_HOST}:9/", "--admin", "off",
                      "--sink", f"file:{stack.tmp / 'sink.jsonl'}",
                      "-o", "connect_timeout=0.2", "-o", "timeout=0.3", "--log-level", "debug"]
    # The shim comes before the sanitizer runtime in the link order: allowed.
    env = {"LD_PRELOAD": str(lib),
           "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"}
    proc = stack.start("miffy", argv, sanitized=True, env=env)
    wait_port(port, proc=proc.popen)

    peer = sp.Peer(port, timeout=10)
    peer.handshake()
    peer.send(sp.notify([sp.req_message("resolving")], 1, 1))
    assert peer.recv_frame().type == sp.ACK

    # The replay gives up on the name after 0.2 s while getaddrinfo() still
    # sleeps; NOTIFYs sent meanwhile (POST: not replayed) are ACKed at once.
    worst = 0.0
    deadline = time.time() + SLOW_SECONDS + 0.5
    i = 2
    while time.time() < deadline:
        t = time.time()
        peer.send(sp.notify([sp.req_message(f"other-{i}", method="POST")], i, i))
        assert peer.recv_frame().type == sp.ACK
        worst = max(worst, time.time() - t)
        i += 1
        time.sleep(0.05)
    peer.close()
    assert "candidate error: timeout" in proc.log()
    assert worst < 0.5, f"an ACK waited {worst:.2f}s for the candidate's name resolution"


def test_a_stalled_stderr_pipe_drops_log_lines_instead_of_blocking_the_loop(tmp_path):
    """Nobody reads miffy's stderr: the pipe fills (64 KiB), then the log's
    own buffer; later lines are dropped and counted, and the admin server
    (on the same loop) still answers at once."""
    import json
    import os
    import signal
    import urllib.request

    port, admin = free_port(), free_port()
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0")
    proc = subprocess.Popen([str(BUILD / "miffy"), "--listen", f"127.0.0.1:{port}",
                             "--candidate", "http://127.0.0.1:9", "--admin", f"127.0.0.1:{admin}",
                             "--sink", f"file:{tmp_path / 'sink.jsonl'}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env)
    try:
        wait_port(admin, proc=proc)

        def get(path):
            with urllib.request.urlopen(f"http://127.0.0.1:{admin}{path}", timeout=2) as r:
                return r.read().decode()

        dropped = 0
        deadline = time.monotonic() + 30
        while dropped == 0 and time.monotonic() < deadline:
            for _ in range(50):      # each SIGUSR2 logs the /stats document
                proc.send_signal(signal.SIGUSR2)
                time.sleep(0.002)
            t0 = time.monotonic()
            dropped = json.loads(get("/stats"))["log"]["lines_dropped"]
            assert time.monotonic() - t0 < 1.0, "the admin server waited for the log"
        assert dropped > 0, "no line dropped in 30 s of SIGUSR2 into an unread pipe"
        t0 = time.monotonic()
        assert get("/health")
        metrics = get("/metrics")
        assert time.monotonic() - t0 < 1.0
        line = [m for m in metrics.splitlines() if m.startswith("miffy_log_lines_dropped_total ")]
        assert line and int(line[0].split()[1]) >= dropped
        proc.send_signal(signal.SIGTERM)
        _, out = proc.communicate(timeout=15)
        assert proc.returncode == 0
        # What the reader got is whole lines: none cut, none glued together.
        lines = out.decode(errors="replace").splitlines()
        assert lines and all(" miffy " in ln for ln in lines), [ln[:80] for ln in lines if " miffy " not in ln][:3]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
