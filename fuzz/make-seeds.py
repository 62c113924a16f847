#!/usr/bin/python3
"""Writes the seed corpora fuzz/corpus/<target>/ from the project's test
fixtures (tests/unit/test_spop.c hex, tests/integration/spop_client.py frames,
tests/unit/test_compare.c JSON cases). Re-run after changing the fixtures:
    /usr/bin/python3 fuzz/make-seeds.py"""
import hashlib
import re
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
import spop_client as sp  # noqa: E402

MFS_16380 = struct.pack(">H", 16380 - 256)   # fuzz_spop's max_frame_size prefix
MFS_1000 = struct.pack(">H", 1000 - 256)


def write(target, name, data):
    d = ROOT / "fuzz" / "corpus" / target
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}-{hashlib.sha1(data).hexdigest()[:8]}").write_bytes(data)


def c_hex(name):
    """A hex fixture of tests/unit/test_spop.c (concatenated C strings)."""
    text = (ROOT / "tests" / "unit" / "test_spop.c").read_text()
    m = re.search(r"%s\[\]\s*=\s*((?:\s*\"[0-9a-f ]*\")+)\s*;" % name, text)
    return bytes.fromhex("".join(re.findall(r"\"([0-9a-f ]*)\"", m.group(1))).replace(" ", ""))


# ---- spop: frame streams as HAProxy sends them --------------------------------
hdrs = sp.hdrs_bin([("host", "example"), ("accept", "*/*"), ("user-agent", "curl/8"),
                    ("content-type", "application/json"), ("connection", "keep-alive, x-hop")])
req = sp.req_message("3f2a-uid", method="POST", path="/api/items/7", query="a=1&b=2",
                     headers=[("host", "example"), ("accept", "*/*")], body=b'{"x":1}')
res = sp.res_message("3f2a-uid", body=b'{"name":"widget","price":10}')
write("spop", "hello", MFS_16380 + sp.hello())
write("spop", "healthcheck", MFS_16380 + sp.hello(healthcheck=True, caps=""))
write("spop", "hello-notify-req-res", MFS_16380 + sp.hello() + sp.notify([req], 1, 1) +
      sp.notify([res], 2, 1))
write("spop", "notify-two-messages", MFS_16380 + sp.notify([req, res], 7, 9))
write("spop", "notify-fixture", MFS_16380 + c_hex("notify_hex"))
write("spop", "pipelined", MFS_16380 + b"".join(
    sp.notify([sp.res_message(f"orphan-{i}")], 10 + i, 100 + i) for i in range(3)))
write("spop", "all-types", MFS_16380 + sp.frame(sp.NOTIFY, sp.message("m", [
    ("n", None), ("t", True), ("f", False), ("i", -5), ("u", ("uint32", 70000)),
    ("s", "str"), ("b", b"\x00\xff"), ("headers", hdrs)]) +
    b"\x01x\x02" + bytes([sp.T_IPV4]) + b"\x7f\x00\x00\x01" + b"\x01y" + bytes([sp.T_IPV6]) + b"\x00" * 16 +
    b"\x01z" + bytes([sp.T_UINT64]) + sp.varint(2**64 - 1), sp.FIN, 2**40, 2**63))
write("spop", "disconnect", MFS_16380 + sp.frame(sp.HAPROXY_DISCONNECT,
      sp.kv([("status-code", ("uint32", 0)), ("message", "bye")])))
write("spop", "null-args", MFS_16380 + sp.notify([sp.message("miffy-req", [("id", None), ("method", None)])]))
write("spop", "empty-message", MFS_16380 + sp.notify([sp.message("", [])]))
write("spop", "bad-hdrs", MFS_16380 + sp.notify([sp.message("miffy-req", [
    ("id", "h1"), ("method", "GET"), ("headers", b"\x05ab")])]))
write("spop", "frame-too-big", MFS_1000 + struct.pack(">I", 1001) + b"\x03" + b"\x00" * 1001)
write("spop", "lying-length", MFS_16380 + struct.pack(">I", 6) + b"\x03\x00\x00\x00\x01\xf0")
write("spop", "malformed-message", MFS_16380 + sp.frame(sp.NOTIFY, b"\x09miffy-req\x02\x02id\x08\x7fab", sp.FIN, 1, 1))
write("spop", "fragmented", MFS_16380 + sp.notify([res], flags=0) + sp.frame(0, b"\x00"))
write("spop", "big-varints", MFS_16380 + sp.frame(sp.NOTIFY, b"", sp.FIN, 2**64 - 1, 2**64 - 1))

# ---- hdrs: req.hdrs_bin blocks -------------------------------------------------
write("hdrs", "typical", hdrs)
write("hdrs", "fixture", bytes.fromhex("04486f7374" "0161" "06416363657074" "032a2f2a" "0000"))
write("hdrs", "empty", b"\x00\x00")
write("hdrs", "empty-value", sp.hdrs_bin([("x-empty", ""), ("Host", "h")]))
write("hdrs", "long-value", sp.hdrs_bin([("cookie", "a=" + "b" * 3000)]))
write("hdrs", "many", sp.hdrs_bin([(f"x-h{i}", str(i)) for i in range(60)]))
write("hdrs", "cut", sp.hdrs_bin([("host", "h")])[:-1])

# ---- compare: flags + rules + "\n---\n" + reference + "\n---\n" + candidate ----
SEP = b"\n---\n"
JSON, TEXT, PROBLEM = 1, 2, 3
GZIP, DEFLATE, RAWGZ = 4, 8, 12
TRUNC, S500 = 0x10, 0x20


def cmp_seed(name, ref, cand, rules=(), rf=JSON, cf=JSON, cfgf=0x20):
    ref = ref.encode() if isinstance(ref, str) else ref
    cand = cand.encode() if isinstance(cand, str) else cand
    data = bytes([rf, cf, cfgf]) + "\n".join(rules).encode() + SEP + ref + SEP + cand
    write("compare", name, data)


text = (ROOT / "tests" / "unit" / "test_compare.c").read_text()
for m in re.finditer(r"\{ \.name = \"(\w+)\",(.*?)\},\n", text, re.S):
    fields = dict(re.findall(r"\.(\w+) = (\"(?:[^\"\\]|\\.)*\"|true|[0-9.]+)", m.group(2)))
    if "ref" not in fields:
        continue
    unq = lambda s: bytes(s[1:-1], "utf-8").decode("unicode_escape")  # noqa: E731
    rules = [f"i {p}" for p in unq(fields.get("ignore", '""')).split(",") if p]
    rules += [f"u {p}" for p in unq(fields.get("unordered", '""')).split(",") if p]
    cfgf = 0x20 | (1 if fields.get("ignore_order") == "true" else 0)
    cfgf |= 2 if "abs_tolerance" in fields else 0
    cfgf |= 4 if "rel_tolerance" in fields else 0
    cmp_seed(m.group(1), unq(fields["ref"]), unq(fields["cand"]), rules, cfgf=cfgf)

cmp_seed("gzip-vs-plain", '{"a":[1,2,{"b":null}]}', '{"a":[1,2,{"b":0}]}', rf=JSON | GZIP)
cmp_seed("deflate-both", '{"k":"v"}', '{"k":"w"}', rf=JSON | DEFLATE, cf=PROBLEM | DEFLATE)
cmp_seed("raw-gzip-garbage", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage", "{}", rf=JSON | RAWGZ)
cmp_seed("truncated-json", '{"items":[1,2,3', '{"items":[1,2,3,4]}', rf=JSON | TRUNC)
cmp_seed("text-bodies", "hello\nworld\n", "hello\nWorld\n", rf=TEXT, cf=TEXT)
cmp_seed("binary-bodies", b"\x00\x01\x02\xff", b"\x00\x01\x03\xff", rf=0, cf=0)
cmp_seed("invalid-json", '{"a":', '{"a":1}')
cmp_seed("status-and-headers", "{}", "{}", ["R x-version: 1", "C x-version: 2", "R date: now",
                                           "C x-only: c", "h x-version"], rf=JSON | S500)
cmp_seed("deep", "[" * 10 + "]" * 10, "[" * 10 + "1" + "]" * 10, cfgf=0x28)
cmp_seed("small-decompress-cap", '{"a":"' + "x" * 200 + '"}', '{"a":"' + "x" * 200 + '"}',
         rf=JSON | GZIP, cf=JSON | GZIP, cfgf=0x30)
cmp_seed("wildcards", '{"a":{"b":[{"c":1,"d":[3,2]}]}}', '{"a":{"b":[{"c":2,"d":[2,3]}]}}',
         ["i /**/c", "u /a/*/0/d", "i /x~0y~1z", "i /*"])
cmp_seed("bad-rule", "{}", "{}", ["i no-slash"])

# ---- json: any bytes, read as JSON text and written as a string ----
for name, data in [
        ("object", b' { "a" : [ 1 , 2.50 , -0 , 1E+3 ] , "b" : { } , "c" : [ ] } '),
        ("strings", '"caf\u00e9 \" \\ \/ \n é €"'.encode()),
        ("numbers", b"[0,-1,1.5e-300,12345678901234567890123,1e999]"),
        ("literals", b"[true,false,null]"),
        ("nested", b"[" * 50 + b"{}" + b"]" * 50),
        ("api-body", b'{"id":42,"items":[{"id":0,"name":"item-0","price":9.5,"tags":["bench","shadow","t0"],'
         b'"in_stock":true}],"pad":"xxxx"}'),
        ("invalid-utf8", b'{"k":"\xff\xc3"}'),
        ("control-chars", b'"a\x01b\tc"'),
        ("trailing-comma", b"[1,2,]"),
        ("leading-plus", b"+1"),
]:
    write("json", name, data)
# ---- h1: response heads as candidates answer them ------------------------------
for name, data in [
        ("ok-length", b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"),
        ("chunked", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nVary: Accept\r\n\r\n5;x=y\r\nhello\r\n0\r\n\r\n"),
        ("interim", b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nDate: Mon, 01 Jan 2026 00:00:00 GMT\r\n\r\n"),
        ("http10-keepalive", b"HTTP/1.0 304 Not Modified\nConnection: keep-alive\nETag: \"x\"\n\n"),
        ("fold", b"HTTP/1.1 200 OK\r\nX-Long: a\r\n \t b\r\nSet-Cookie: s=1; Path=/\r\nContent-Length: 0\r\n\r\n"),
        ("conflicting-length", b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
        ("redirect", b"HTTP/1.1 302 Found\r\nLocation: http://elsewhere.example/\r\nConnection: close\r\n\r\n"),
        ("incomplete", b"HTTP/1.1 200 OK\r\nContent-Le"),
        ("not-http", b"SSH-2.0-OpenSSH_9.2\r\n"),
]:
    write("h1", name, data)

# ---- keyed: flags + rules + "\n---\n" + reference + "\n---\n" + candidate -----
text = (ROOT / "tests" / "unit" / "test_keyed.c").read_text()
for m in re.finditer(r"\{ \.name = \"(\w+)\",(.*?)\},\n", text, re.S):
    fields = dict(re.findall(r"\.(\w+) = (\"(?:[^\"\\]|\\.)*\"|true)", m.group(2)))
    if "ref" not in fields:
        continue
    unq = lambda s: bytes(s[1:-1], "utf-8").decode("unicode_escape")  # noqa: E731
    rules = [f"k {p}" for p in unq(fields.get("keys", '""')).split("|") if p]
    rules += [f"i {p}" for p in unq(fields.get("ignore", '""')).split("|") if p]
    rules += [f"u {p}" for p in unq(fields.get("unordered", '""')).split("|") if p]
    flags = 1 if fields.get("ignore_order") == "true" else 0
    write("keyed", m.group(1), bytes([flags]) + "\n".join(rules).encode() + SEP +
          unq(fields["ref"]).encode() + SEP + unq(fields["cand"]).encode())
print("seeds written")
