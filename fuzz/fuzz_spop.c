/* libFuzzer target: the SPOP frame decoder and what the agent does with a
 * frame (spoa/agent.c on_read / handle_hello / handle_notify), minus the
 * sockets: frames, HELLO/DISCONNECT KV lists, NOTIFY messages and their
 * arguments, hdrs_bin arguments, and the ACK and DISCONNECT built in reply.
 *
 * Input: 2 bytes choosing max_frame_size (256 + be16 % 16125, so fc 3e.. is
 * 16380, HAProxy's default), then the bytes HAProxy would have sent. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "http.h"
#include "spop.h"

/* As in agent.c. */
#define SPOP_FUZZ_MAX_KV 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Encodes a decoded value again and decodes the result: same value. */
static void spop_fuzz_value_roundtrip(const struct spop_value *v)
{
	size_t cap = 32 + (v->type == SPOP_T_STRING || v->type == SPOP_T_BINARY ? v->v.str.len : 0);
	uint8_t *buf = malloc(cap), *w = buf;
	const uint8_t *r;
	struct spop_value back;
	int n, m;

	FUZZ_CHECK(buf != NULL);
	n = spop_value_encode(&w, buf + cap, v);
	FUZZ_CHECK(n > 0 && (size_t)n == (size_t)(w - buf));
	r = buf;
	m = spop_value_decode(&r, buf + n, &back);
	FUZZ_CHECK(m == n && r == buf + n);
	FUZZ_CHECK(back.type == v->type);
	switch (v->type) {
	case SPOP_T_BOOL:
		FUZZ_CHECK(back.v.b == v->v.b);
		break;
	case SPOP_T_INT32:
	case SPOP_T_INT64:
		FUZZ_CHECK(back.v.i == v->v.i);
		break;
	case SPOP_T_UINT32:
	case SPOP_T_UINT64:
		FUZZ_CHECK(back.v.u == v->v.u);
		break;
	case SPOP_T_IPV4:
		FUZZ_CHECK(memcmp(back.v.ip, v->v.ip, 4) == 0);
		break;
	case SPOP_T_IPV6:
		FUZZ_CHECK(memcmp(back.v.ip, v->v.ip, 16) == 0);
		break;
	case SPOP_T_STRING:
	case SPOP_T_BINARY:
		FUZZ_CHECK(back.v.str.len == v->v.str.len);
		FUZZ_CHECK(v->v.str.len == 0 || memcmp(back.v.str.ptr, v->v.str.ptr, v->v.str.len) == 0);
		break;
	default:
		break;
	}
	free(buf);
}

/* A decoded argument: what exchange.c reads from it. */
static void spop_fuzz_arg(const struct spop_arg *a, const uint8_t *lo, const uint8_t *hi)
{
	int64_t i;

	FUZZ_CHECK(a->name_len == 0 || ((const uint8_t *)a->name >= lo &&
					(const uint8_t *)a->name + a->name_len <= hi));
	if (a->value.type == SPOP_T_STRING || a->value.type == SPOP_T_BINARY)
		FUZZ_CHECK(a->value.v.str.len == 0 ||
			   ((const uint8_t *)a->value.v.str.ptr >= lo &&
			    (const uint8_t *)a->value.v.str.ptr + a->value.v.str.len <= hi));
	(void)spop_value_int(&a->value, &i);
	(void)spop_arg_is(a, "headers");
	spop_fuzz_value_roundtrip(&a->value);
	if ((a->value.type == SPOP_T_BINARY || a->value.type == SPOP_T_STRING) &&
	    spop_arg_is(a, "headers")) {
		struct header_list h;

		if (http_headers_decode((const uint8_t *)a->value.v.str.ptr, a->value.v.str.len, &h) == 0)
			http_headers_clear(&h);
		else
			FUZZ_CHECK(h.count == 0 && h.items == NULL);
	}
}

static void spop_fuzz_kv_list(const struct spop_frame *f)
{
	const uint8_t *p = f->payload, *end = f->payload + f->payload_len;
	struct spop_arg kv[SPOP_FUZZ_MAX_KV];
	size_t nkv = 0;

	while (p < end) {
		struct spop_arg a;
		const uint8_t *before = p;
		int r = spop_kv_decode(&p, end, &a);

		if (r < 0) {
			FUZZ_CHECK(p == before);
			return;
		}
		FUZZ_CHECK(r > 0 && p == before + r && p <= end);
		if (nkv < SPOP_FUZZ_MAX_KV)
			kv[nkv++] = a;
	}
	for (size_t i = 0; i < nkv; i++)
		spop_fuzz_arg(&kv[i], f->payload, end);
}

static void spop_fuzz_reply(const struct spop_frame *f, const struct spop_message *m, size_t nmsgs)
{
	uint8_t out[512];
	const uint8_t *p;
	struct spop_frame back;
	char why[300];
	size_t wl = 0;
	int n;

	/* The agent reserves 64 bytes for an ACK: any pair of ids must fit. */
	n = spop_build_ack(out, 64, f->stream_id, f->frame_id, "ack");
	FUZZ_CHECK(n > 0 && n <= 64);
	p = out;
	FUZZ_CHECK(spop_frame_decode(&p, out + n, 64, &back, NULL) == n);
	FUZZ_CHECK(back.type == SPOP_FRAME_ACK && back.flags == SPOP_FLAG_FIN);
	FUZZ_CHECK(back.stream_id == f->stream_id && back.frame_id == f->frame_id);

	/* A DISCONNECT whose text comes from the peer (a message name). */
	if (nmsgs) {
		wl = m[0].name_len < sizeof(why) - 1 ? m[0].name_len : sizeof(why) - 1;
		memcpy(why, m[0].name, wl);
	}
	why[wl] = '\0';
	n = spop_build_disconnect(out, sizeof(out), SPOP_ERR_INVALID, why);
	FUZZ_CHECK(n > 0);
	p = out;
	FUZZ_CHECK(spop_frame_decode(&p, out + n, sizeof(out), &back, NULL) == n);
	FUZZ_CHECK(back.type == SPOP_FRAME_AGENT_DISCONNECT);
	spop_fuzz_kv_list(&back);
}

static void spop_fuzz_notify(const struct spop_frame *f)
{
	const uint8_t *p = f->payload, *end = f->payload + f->payload_len;
	struct spop_message msgs[SPOP_NOTIFY_MAX_MESSAGES], one;
	static struct spop_arg args[SPOP_NOTIFY_MAX_ARGS], scratch[SPOP_MESSAGE_MAX_ARGS];
	int nmsgs = spop_notify_decode(p, end, msgs, args);
	size_t seen = 0;

	/* Message by message, as the whole payload decodes: the same verdict. */
	while (p < end) {
		const uint8_t *before = p;
		int r = spop_message_decode(&p, end, scratch, SPOP_MESSAGE_MAX_ARGS, &one);

		if (r < 0) {
			FUZZ_CHECK(p == before);
			FUZZ_CHECK(nmsgs == SPOP_INVALID);
			return;
		}
		FUZZ_CHECK(r > 0 && p == before + r && p <= end);
		FUZZ_CHECK(one.args == scratch && one.nargs <= SPOP_MESSAGE_MAX_ARGS);
		seen++;
	}
	FUZZ_CHECK(nmsgs >= 0);
	FUZZ_CHECK((size_t)nmsgs == (seen < SPOP_NOTIFY_MAX_MESSAGES ? seen : SPOP_NOTIFY_MAX_MESSAGES));
	spop_fuzz_reply(f, msgs, (size_t)nmsgs);
	for (int i = 0; i < nmsgs; i++) {
		FUZZ_CHECK(msgs[i].nargs <= SPOP_MESSAGE_MAX_ARGS);
		FUZZ_CHECK(msgs[i].args >= args && msgs[i].args + msgs[i].nargs <= args + SPOP_NOTIFY_MAX_ARGS);
		for (size_t j = 0; j < msgs[i].nargs; j++)
			spop_fuzz_arg(&msgs[i].args[j], f->payload, end);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p, *end;
	uint32_t max_frame_size;

	if (size < 2)
		return 0;
	max_frame_size = SPOP_MIN_FRAME_SIZE + (((uint32_t)data[0] << 8 | data[1]) % 16125u);
	p = data + 2;
	end = data + size;
	for (;;) {
		struct spop_frame f;
		const uint8_t *before = p;
		bool too_big = true;
		int r = spop_frame_decode(&p, end, max_frame_size, &f, &too_big);

		if (r < 0) {
			FUZZ_CHECK(p == before);
			FUZZ_CHECK(r == SPOP_INVALID || r == SPOP_INCOMPLETE);
			FUZZ_CHECK(!too_big || r == SPOP_INVALID);
			break;
		}
		FUZZ_CHECK(!too_big);
		FUZZ_CHECK(r >= SPOP_FRAME_HDR_LEN + 7 && p == before + r && p <= end);
		FUZZ_CHECK((size_t)r - SPOP_FRAME_HDR_LEN <= max_frame_size);
		FUZZ_CHECK(f.payload >= before && f.payload + f.payload_len == p);
		switch (f.type) {
		case SPOP_FRAME_HAPROXY_HELLO:
		case SPOP_FRAME_HAPROXY_DISCONNECT:
			spop_fuzz_kv_list(&f);
			break;
		case SPOP_FRAME_NOTIFY:
			spop_fuzz_notify(&f);
			break;
		default:
			/* The agent disconnects; nothing else is read. */
			break;
		}
	}
	return 0;
}
