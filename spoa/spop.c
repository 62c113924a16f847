#include "spop.h"

#include <string.h>

int spop_varint_decode(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
	const uint8_t *q = *p;
	unsigned shift = 4;
	uint64_t v;
	uint8_t b;

	if (q >= end)
		return SPOP_INCOMPLETE;
	v = *q++;
	if (v >= 240) {
		do {
			uint64_t add;

			if (q >= end)
				return SPOP_INCOMPLETE;
			/* Ten bytes carry 64 bits; an eleventh can only overflow. */
			if (shift > 60)
				return SPOP_INVALID;
			b = *q++;
			add = (uint64_t)b << shift;
			if ((add >> shift) != b || __builtin_add_overflow(v, add, &v))
				return SPOP_INVALID;
			shift += 7;
		} while (b >= 128);
	}
	*out = v;
	int n = (int)(q - *p);
	*p = q;
	return n;
}

size_t spop_varint_len(uint64_t v)
{
	size_t n = 1;

	if (v < 240)
		return 1;
	v = (v - 240) >> 4;
	while (v >= 128) {
		v = (v - 128) >> 7;
		n++;
	}
	return n + 1;
}

int spop_varint_encode(uint8_t **p, const uint8_t *end, uint64_t v)
{
	uint8_t *q = *p;
	size_t n = spop_varint_len(v);

	if ((size_t)(end - q) < n)
		return SPOP_INVALID;
	if (v < 240) {
		*q++ = (uint8_t)v;
	} else {
		*q++ = (uint8_t)(v | 240);
		v = (v - 240) >> 4;
		while (v >= 128) {
			*q++ = (uint8_t)(v | 128);
			v = (v - 128) >> 7;
		}
		*q++ = (uint8_t)v;
	}
	*p = q;
	return (int)n;
}

int spop_string_decode(const uint8_t **p, const uint8_t *end, const char **str, size_t *len)
{
	const uint8_t *q = *p;
	uint64_t n;
	int r;

	r = spop_varint_decode(&q, end, &n);
	if (r < 0)
		return r;
	if (n > (uint64_t)(end - q))
		return SPOP_INCOMPLETE;
	*str = (const char *)q;
	*len = (size_t)n;
	q += n;
	r = (int)(q - *p);
	*p = q;
	return r;
}

int spop_string_encode(uint8_t **p, const uint8_t *end, const char *str, size_t len)
{
	uint8_t *q = *p;

	if (spop_varint_encode(&q, end, len) < 0 || (size_t)(end - q) < len)
		return SPOP_INVALID;
	if (len)
		memcpy(q, str, len);
	q += len;
	int n = (int)(q - *p);
	*p = q;
	return n;
}

int spop_value_decode(const uint8_t **p, const uint8_t *end, struct spop_value *out)
{
	const uint8_t *q = *p;
	struct spop_value v;
	uint64_t u;
	int r;

	if (q >= end)
		return SPOP_INCOMPLETE;
	memset(&v, 0, sizeof(v));
	v.type = (enum spop_type)(*q & 0x0f);
	uint8_t flags = *q >> 4;
	q++;
	switch (v.type) {
	case SPOP_T_NULL:
		break;
	case SPOP_T_BOOL:
		v.v.b = flags & 1;
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		r = spop_varint_decode(&q, end, &u);
		if (r < 0)
			return r;
		if (v.type == SPOP_T_INT32 && (int64_t)u != (int32_t)u)
			return SPOP_INVALID;
		v.v.i = (int64_t)u;
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		r = spop_varint_decode(&q, end, &u);
		if (r < 0)
			return r;
		if (v.type == SPOP_T_UINT32 && u > UINT32_MAX)
			return SPOP_INVALID;
		v.v.u = u;
		break;
	case SPOP_T_IPV4:
	case SPOP_T_IPV6: {
		size_t n = v.type == SPOP_T_IPV4 ? 4 : 16;

		if ((size_t)(end - q) < n)
			return SPOP_INCOMPLETE;
		memcpy(v.v.ip, q, n);
		q += n;
		break;
	}
	case SPOP_T_STRING:
	case SPOP_T_BINARY:
		r = spop_string_decode(&q, end, &v.v.str.ptr, &v.v.str.len);
		if (r < 0)
			return r;
		break;
	default:
		return SPOP_INVALID;
	}
	*out = v;
	r = (int)(q - *p);
	*p = q;
	return r;
}

int spop_value_encode(uint8_t **p, const uint8_t *end, const struct spop_value *v)
{
	uint8_t *q = *p;
	int r = 0;

	if (q >= end || (unsigned)v->type >= SPOP_T_COUNT)
		return SPOP_INVALID;
	*q++ = (uint8_t)(v->type | (v->type == SPOP_T_BOOL && v->v.b ? 0x10 : 0));
	switch (v->type) {
	case SPOP_T_NULL:
	case SPOP_T_BOOL:
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		r = spop_varint_encode(&q, end, (uint64_t)v->v.i);
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		r = spop_varint_encode(&q, end, v->v.u);
		break;
	case SPOP_T_IPV4:
	case SPOP_T_IPV6: {
		size_t n = v->type == SPOP_T_IPV4 ? 4 : 16;

		if ((size_t)(end - q) < n)
			return SPOP_INVALID;
		memcpy(q, v->v.ip, n);
		q += n;
		break;
	}
	case SPOP_T_STRING:
	case SPOP_T_BINARY:
		r = spop_string_encode(&q, end, v->v.str.ptr, v->v.str.len);
		break;
	default:
		return SPOP_INVALID;
	}
	if (r < 0)
		return SPOP_INVALID;
	r = (int)(q - *p);
	*p = q;
	return r;
}

int spop_kv_decode(const uint8_t **p, const uint8_t *end, struct spop_arg *out)
{
	const uint8_t *q = *p;
	struct spop_arg a;
	int r;

	r = spop_string_decode(&q, end, &a.name, &a.name_len);
	if (r < 0)
		return r;
	r = spop_value_decode(&q, end, &a.value);
	if (r < 0)
		return r;
	*out = a;
	r = (int)(q - *p);
	*p = q;
	return r;
}

int spop_kv_encode(uint8_t **p, const uint8_t *end, const char *name, const struct spop_value *v)
{
	uint8_t *q = *p;

	if (spop_string_encode(&q, end, name, strlen(name)) < 0 || spop_value_encode(&q, end, v) < 0)
		return SPOP_INVALID;
	int n = (int)(q - *p);
	*p = q;
	return n;
}

int spop_frame_decode(const uint8_t **p, const uint8_t *end, uint32_t max_frame_size,
		      struct spop_frame *out, bool *too_big)
{
	const uint8_t *q = *p, *fend;
	struct spop_frame f;
	uint32_t len;

	if (too_big)
		*too_big = false;
	if (end - q < SPOP_FRAME_HDR_LEN)
		return SPOP_INCOMPLETE;
	len = (uint32_t)q[0] << 24 | (uint32_t)q[1] << 16 | (uint32_t)q[2] << 8 | q[3];
	if (len > max_frame_size) {
		if (too_big)
			*too_big = true;
		return SPOP_INVALID;
	}
	if ((size_t)(end - q) - SPOP_FRAME_HDR_LEN < len)
		return SPOP_INCOMPLETE;
	q += SPOP_FRAME_HDR_LEN;
	fend = q + len;
	/* From here every shortfall is a lie of the length prefix: invalid. */
	if (fend - q < 5)
		return SPOP_INVALID;
	f.type = q[0];
	f.flags = (uint32_t)q[1] << 24 | (uint32_t)q[2] << 16 | (uint32_t)q[3] << 8 | q[4];
	q += 5;
	if (spop_varint_decode(&q, fend, &f.stream_id) < 0 ||
	    spop_varint_decode(&q, fend, &f.frame_id) < 0)
		return SPOP_INVALID;
	f.payload = q;
	f.payload_len = (size_t)(fend - q);
	*out = f;
	*p = fend;
	return (int)(len + SPOP_FRAME_HDR_LEN);
}

int spop_frame_begin(uint8_t **p, const uint8_t *end, uint8_t type, uint32_t flags,
		     uint64_t stream_id, uint64_t frame_id)
{
	uint8_t *q = *p;

	if (end - q < SPOP_FRAME_HDR_LEN + 5)
		return SPOP_INVALID;
	memset(q, 0, SPOP_FRAME_HDR_LEN);
	q += SPOP_FRAME_HDR_LEN;
	*q++ = type;
	*q++ = (uint8_t)(flags >> 24);
	*q++ = (uint8_t)(flags >> 16);
	*q++ = (uint8_t)(flags >> 8);
	*q++ = (uint8_t)flags;
	if (spop_varint_encode(&q, end, stream_id) < 0 || spop_varint_encode(&q, end, frame_id) < 0)
		return SPOP_INVALID;
	int n = (int)(q - *p);
	*p = q;
	return n;
}

void spop_frame_finish(uint8_t *frame_start, const uint8_t *payload_end)
{
	uint32_t len = (uint32_t)(payload_end - frame_start - SPOP_FRAME_HDR_LEN);

	frame_start[0] = (uint8_t)(len >> 24);
	frame_start[1] = (uint8_t)(len >> 16);
	frame_start[2] = (uint8_t)(len >> 8);
	frame_start[3] = (uint8_t)len;
}

int spop_message_decode(const uint8_t **p, const uint8_t *end, struct spop_arg *args, size_t max_args,
			struct spop_message *out)
{
	const uint8_t *q = *p;
	struct spop_message m;
	unsigned nargs;
	int r;

	r = spop_string_decode(&q, end, &m.name, &m.name_len);
	if (r < 0)
		return r;
	if (q >= end)
		return SPOP_INCOMPLETE;
	nargs = *q++;
	m.args = args;
	m.nargs = 0;
	for (unsigned i = 0; i < nargs; i++) {
		struct spop_arg a;

		r = spop_kv_decode(&q, end, &a);
		if (r < 0)
			return r;
		if (m.nargs < max_args)
			args[m.nargs++] = a;
	}
	*out = m;
	r = (int)(q - *p);
	*p = q;
	return r;
}

int spop_notify_decode(const uint8_t *payload, const uint8_t *end, struct spop_message *msgs,
		       struct spop_arg *args)
{
	const uint8_t *p = payload;
	size_t nmsgs = 0, used = 0;

	while (p < end) {
		struct spop_message m;
		bool keep = nmsgs < SPOP_NOTIFY_MAX_MESSAGES;

		/* A message not kept is validated into no room at all. */
		if (spop_message_decode(&p, end, args + used, keep ? SPOP_MESSAGE_MAX_ARGS : 0, &m) < 0)
			return SPOP_INVALID;
		if (keep) {
			msgs[nmsgs++] = m;
			used += m.nargs;
		}
	}
	return (int)nmsgs;
}

static struct spop_value str_value(const char *s)
{
	struct spop_value v = { .type = SPOP_T_STRING };

	v.v.str.ptr = s;
	v.v.str.len = strlen(s);
	return v;
}

int spop_build_disconnect(uint8_t *buf, size_t len, enum spop_status status, const char *message)
{
	uint8_t *q = buf, *end = buf + len;
	struct spop_value code = { .type = SPOP_T_UINT32, .v.u = (uint64_t)status };
	struct spop_value msg = str_value(message);

	if (spop_frame_begin(&q, end, SPOP_FRAME_AGENT_DISCONNECT, SPOP_FLAG_FIN, 0, 0) < 0 ||
	    spop_kv_encode(&q, end, "status-code", &code) < 0 ||
	    spop_kv_encode(&q, end, "message", &msg) < 0)
		return SPOP_INVALID;
	spop_frame_finish(buf, q);
	return (int)(q - buf);
}

int spop_build_hello(uint8_t *buf, size_t len, uint32_t max_frame_size, const char *capabilities)
{
	uint8_t *q = buf, *end = buf + len;
	struct spop_value version = str_value("2.0");
	struct spop_value size = { .type = SPOP_T_UINT32, .v.u = max_frame_size };
	struct spop_value caps = str_value(capabilities);

	if (spop_frame_begin(&q, end, SPOP_FRAME_AGENT_HELLO, SPOP_FLAG_FIN, 0, 0) < 0 ||
	    spop_kv_encode(&q, end, "version", &version) < 0 ||
	    spop_kv_encode(&q, end, "max-frame-size", &size) < 0 ||
	    spop_kv_encode(&q, end, "capabilities", &caps) < 0)
		return SPOP_INVALID;
	spop_frame_finish(buf, q);
	return (int)(q - buf);
}

int spop_build_ack(uint8_t *buf, size_t len, uint64_t stream_id, uint64_t frame_id, const char *var_name)
{
	uint8_t *q = buf, *end = buf + len;
	struct spop_value yes = { .type = SPOP_T_BOOL, .v.b = true };
	enum { ACTION_SET_VAR = 1, SCOPE_TXN = 2 };

	if (spop_frame_begin(&q, end, SPOP_FRAME_ACK, SPOP_FLAG_FIN, stream_id, frame_id) < 0 ||
	    end - q < 3)
		return SPOP_INVALID;
	*q++ = ACTION_SET_VAR;
	*q++ = 3;
	*q++ = SCOPE_TXN;
	if (spop_string_encode(&q, end, var_name, strlen(var_name)) < 0 ||
	    spop_value_encode(&q, end, &yes) < 0)
		return SPOP_INVALID;
	spop_frame_finish(buf, q);
	return (int)(q - buf);
}

const char *spop_status_text(enum spop_status status)
{
	static const char *const text[SPOP_ERR_STATUS_COUNT] = {
		[SPOP_ERR_NONE] = "normal",
		[SPOP_ERR_IO] = "I/O error",
		[SPOP_ERR_TOUT] = "a timeout occurred",
		[SPOP_ERR_TOO_BIG] = "frame is too big",
		[SPOP_ERR_INVALID] = "invalid frame received",
		[SPOP_ERR_NO_VSN] = "version value not found",
		[SPOP_ERR_NO_FRAME_SIZE] = "max-frame-size value not found",
		[SPOP_ERR_NO_CAP] = "capabilities value not found",
		[SPOP_ERR_BAD_VSN] = "unsupported version",
		[SPOP_ERR_BAD_FRAME_SIZE] = "max-frame-size too big or too small",
		[SPOP_ERR_FRAG_NOT_SUPPORTED] = "fragmentation not supported",
		[SPOP_ERR_INTERLACED_FRAMES] = "invalid interlaced frames",
		[SPOP_ERR_FRAMEID_NOTFOUND] = "frame-id not found",
		[SPOP_ERR_RES] = "resource allocation error",
	};

	if ((unsigned)status < SPOP_ERR_STATUS_COUNT)
		return text[status];
	return "an unknown error occurred";
}

bool spop_arg_is(const struct spop_arg *a, const char *name)
{
	size_t n = strlen(name);

	return a->name_len == n && memcmp(a->name, name, n) == 0;
}

bool spop_value_int(const struct spop_value *v, int64_t *out)
{
	switch (v->type) {
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		*out = v->v.i;
		return true;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		if (v->v.u > INT64_MAX)
			return false;
		*out = (int64_t)v->v.u;
		return true;
	default:
		return false;
	}
}
