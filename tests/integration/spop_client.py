"""A minimal SPOP 2.0 peer written from SPOE.txt, independent of the C codec:
it plays HAProxy against build/miffy in raw-socket tests."""
import socket
import struct

HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FIN = 1

T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64 = 0, 1, 2, 3, 4, 5
T_IPV4, T_IPV6, T_STRING, T_BINARY = 6, 7, 8, 9


def varint(x):
    if x < 240:
        return bytes([x])
    out = [(x | 240) & 0xFF]
    x = (x - 240) >> 4
    while x >= 128:
        out.append((x | 128) & 0xFF)
        x = (x - 128) >> 7
    out.append(x)
    return bytes(out)


def read_varint(buf, i):
    v = buf[i]
    i += 1
    if v >= 240:
        shift = 4
        while True:
            b = buf[i]
            i += 1
            v += b << shift
            shift += 7
            if b < 128:
                break
    return v, i


def string(s):
    if isinstance(s, str):
        s = s.encode()
    return varint(len(s)) + s


def typed(v):
    """Python value → SPOP typed data: None, bool, int (INT64), str, bytes."""
    if v is None:
        return bytes([T_NULL])
    if isinstance(v, bool):
        return bytes([T_BOOL | (0x10 if v else 0)])
    if isinstance(v, int):
        return bytes([T_INT64]) + varint(v & (2**64 - 1))
    if isinstance(v, str):
        return bytes([T_STRING]) + string(v)
    if isinstance(v, (bytes, bytearray)):
        return bytes([T_BINARY]) + string(bytes(v))
    if isinstance(v, tuple) and v[0] == "uint32":
        return bytes([T_UINT32]) + varint(v[1])
    raise TypeError(v)


def read_typed(buf, i):
    t = buf[i] & 0x0F
    flags = buf[i] >> 4
    i += 1
    if t == T_NULL:
        return None, i
    if t == T_BOOL:
        return bool(flags & 1), i
    if t in (T_INT32, T_UINT32, T_INT64, T_UINT64):
        return read_varint(buf, i)
    if t == T_IPV4:
        return buf[i:i + 4], i + 4
    if t == T_IPV6:
        return buf[i:i + 16], i + 16
    n, i = read_varint(buf, i)
    data = buf[i:i + n]
    return (data.decode() if t == T_STRING else data), i + n


def kv(items):
    return b"".join(string(k) + typed(v) for k, v in items)


def frame(ftype, payload=b"", flags=FIN, stream_id=0, frame_id=0):
    body = bytes([ftype]) + struct.pack(">I", flags) + varint(stream_id) + varint(frame_id) + payload
    return struct.pack(">I", len(body)) + body


def hello(max_frame_size=16380, caps="pipelining,async", versions="2.0", healthcheck=False, omit=()):
    items = [("supported-versions", versions), ("max-frame-size", ("uint32", max_frame_size)),
             ("capabilities", caps), ("engine-id", "test-engine")]
    if healthcheck:
        items.append(("healthcheck", True))
    items = [it for it in items if it[0] not in omit]
    return frame(HAPROXY_HELLO, kv(items))


def message(name, args):
    """args: list of (name, value)."""
    return string(name) + bytes([len(args)]) + b"".join(string(k) + typed(v) for k, v in args)


def notify(messages, stream_id=1, frame_id=1, flags=FIN):
    return frame(NOTIFY, b"".join(messages), flags, stream_id, frame_id)


def hdrs_bin(headers):
    """[(name, value)] → HAProxy's req.hdrs_bin encoding."""
    return b"".join(string(k) + string(v) for k, v in headers) + b"\x00\x00"


def req_message(uid, method="GET", path="/api/x", query=None, headers=(("host", "h"),),
                body=b"", body_size=None):
    return message("miffy-req", [
        ("id", uid), ("method", method), ("path", path), ("query", query), ("ver", "1.1"),
        ("headers", hdrs_bin(headers)), ("body", body), ("body_len", len(body)),
        ("body_size", len(body) if body_size is None else body_size)])


def res_message(uid, status=200, headers=(("content-type", "application/json"),), body=b"{}"):
    return message("miffy-res", [
        ("id", uid), ("status", status), ("headers", hdrs_bin(headers)), ("body", body),
        ("body_len", len(body)), ("body_size", len(body))])


def tx_message(uid, method="GET", path="/api/x", query=None, headers=(("host", "h"),), body=b"",
               status=200, res_headers=(("content-type", "application/json"),), res_body=b"{}",
               res_body_len=None, latency_us=None):
    """miffy-tx: the whole transaction in one message (request args, then
    the reference's response under res_ names)."""
    args = [("id", uid), ("method", method), ("path", path), ("query", query), ("ver", "1.1"),
            ("req_headers", hdrs_bin(headers)), ("req_body", body), ("req_body_len", len(body)),
            ("req_body_size", len(body)), ("status", status), ("res_headers", hdrs_bin(res_headers)),
            ("res_body", res_body),
            ("res_body_len", len(res_body) if res_body_len is None else res_body_len),
            ("res_body_size", len(res_body) if res_body_len is None else res_body_len)]
    if latency_us is not None:
        args.append(("latency_us", latency_us))
    return message("miffy-tx", args)


class Frame:
    def __init__(self, ftype, flags, stream_id, frame_id, payload):
        self.type, self.flags, self.stream_id, self.frame_id, self.payload = \
            ftype, flags, stream_id, frame_id, payload

    def kv(self):
        out, i = {}, 0
        while i < len(self.payload):
            n, i = read_varint(self.payload, i)
            name = self.payload[i:i + n].decode()
            i += n
            out[name], i = read_typed(self.payload, i)
        return out

    def ack_actions(self):
        acts, i = [], 0
        while i < len(self.payload):
            atype, nargs, scope = self.payload[i:i + 3]
            i += 3
            n, i = read_varint(self.payload, i)
            name = self.payload[i:i + n].decode()
            i += n
            value = None
            if nargs == 3:
                value, i = read_typed(self.payload, i)
            acts.append((atype, scope, name, value))
        return acts


class Peer:
    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed by the agent")
            self.buf += chunk

    def recv_frame(self):
        self._fill(4)
        (length,) = struct.unpack(">I", self.buf[:4])
        self._fill(4 + length)
        body, self.buf = self.buf[4:4 + length], self.buf[4 + length:]
        ftype = body[0]
        (flags,) = struct.unpack(">I", body[1:5])
        sid, i = read_varint(body, 5)
        fid, i = read_varint(body, i)
        return Frame(ftype, flags, sid, fid, body[i:])

    def handshake(self, **kw):
        self.send(hello(**kw))
        f = self.recv_frame()
        assert f.type == AGENT_HELLO, f.type
        return f

    def closed(self, timeout=3.0):
        """True once the agent has closed the connection."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()
