/* SPOP codec: hex fixtures, varint edges, truncation and lying lengths. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "http.h"
#include "spop.h"

static size_t unhex(const char *hex, uint8_t *out, size_t max)
{
	size_t n = 0;

	while (hex[0] && hex[1]) {
		unsigned b;

		if (hex[0] == ' ') {
			hex++;
			continue;
		}
		assert_true(n < max);
		assert_int_equal(sscanf(hex, "%2x", &b), 1);
		out[n++] = (uint8_t)b;
		hex += 2;
	}
	return n;
}

/* Copies bytes into a buffer of exactly that size, so ASan sees any read
 * past the end. */
static uint8_t *exact(const uint8_t *src, size_t len)
{
	uint8_t *p = malloc(len ? len : 1);

	assert_non_null(p);
	memcpy(p, src, len);
	return p;
}

static const struct {
	uint64_t value;
	const char *hex;
} varints[] = {
	{ 0, "00" },
	{ 239, "ef" },
	{ 240, "f000" },
	{ 255, "ff00" },
	{ 256, "f001" },
	{ 2287, "ff7f" },
	{ 1u << 14, "f0f106" },
	{ UINT32_MAX, "fff0fefe7e" },
	{ UINT64_MAX, "fff0fefefefefefefe0e" },
};

static void test_varint_encodes_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(varints) / sizeof(varints[0]); i++) {
		uint8_t want[16], got[16], *p = got;
		size_t n = unhex(varints[i].hex, want, sizeof(want));

		assert_int_equal(spop_varint_encode(&p, got + sizeof(got), varints[i].value), (int)n);
		assert_int_equal(spop_varint_len(varints[i].value), n);
		assert_memory_equal(got, want, n);
	}
}

static void test_varint_decodes_fixtures(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(varints) / sizeof(varints[0]); i++) {
		uint8_t raw[16];
		size_t n = unhex(varints[i].hex, raw, sizeof(raw));
		uint8_t *buf = exact(raw, n);
		const uint8_t *p = buf;
		uint64_t v = 42;

		assert_int_equal(spop_varint_decode(&p, buf + n, &v), (int)n);
		assert_true(v == varints[i].value);
		assert_ptr_equal(p, buf + n);
		free(buf);
	}
}

static void test_varint_truncated_is_incomplete_and_cursor_stays(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(varints) / sizeof(varints[0]); i++) {
		uint8_t raw[16];
		size_t n = unhex(varints[i].hex, raw, sizeof(raw));

		for (size_t cut = 0; cut < n; cut++) {
			uint8_t *buf = exact(raw, cut);
			const uint8_t *p = buf;
			uint64_t v;

			assert_int_equal(spop_varint_decode(&p, buf + cut, &v), SPOP_INCOMPLETE);
			assert_ptr_equal(p, buf);
			free(buf);
		}
	}
}

static void test_varint_too_long_or_overflowing_is_invalid(void **state)
{
	uint8_t eleven[11], over[10];
	const uint8_t *p;
	uint64_t v;

	(void)state;
	memset(eleven, 0xff, sizeof(eleven));
	p = eleven;
	assert_int_equal(spop_varint_decode(&p, eleven + sizeof(eleven), &v), SPOP_INVALID);
	assert_ptr_equal(p, eleven);
	/* UINT64_MAX with a last byte one too big. */
	unhex("fff0fefefefefefefe0f", over, sizeof(over));
	p = over;
	assert_int_equal(spop_varint_decode(&p, over + sizeof(over), &v), SPOP_INVALID);
}

static void test_varint_encode_refuses_short_buffer(void **state)
{
	uint8_t buf[4], *p = buf;

	(void)state;
	assert_int_equal(spop_varint_encode(&p, buf + sizeof(buf), UINT32_MAX), SPOP_INVALID);
	assert_ptr_equal(p, buf);
}

static const struct {
	const char *hex;
	enum spop_type type;
} typed[] = {
	{ "00", SPOP_T_NULL },
	{ "11", SPOP_T_BOOL },
	{ "01", SPOP_T_BOOL },
	{ "02f001", SPOP_T_INT32 },
	{ "037f", SPOP_T_UINT32 },
	{ "04fff0fefe7e", SPOP_T_INT64 },
	{ "05fff0fefefefefefefe0e", SPOP_T_UINT64 },
	{ "067f000001", SPOP_T_IPV4 },
	{ "0720010db8000000000000000000000001", SPOP_T_IPV6 },
	{ "0805686170707900", SPOP_T_STRING },
	{ "0903000102", SPOP_T_BINARY },
};

static void test_typed_data_fixtures_decode_and_reencode(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(typed) / sizeof(typed[0]); i++) {
		uint8_t raw[32], out[32], *o = out;
		size_t n = unhex(typed[i].hex, raw, sizeof(raw));
		uint8_t *buf = exact(raw, n);
		const uint8_t *p = buf;
		struct spop_value v;
		int used = spop_value_decode(&p, buf + n, &v);

		/* The STRING fixture has one trailing byte that is not its own. */
		if (typed[i].type == SPOP_T_STRING)
			n--;
		assert_int_equal(used, (int)n);
		assert_int_equal(v.type, typed[i].type);
		assert_int_equal(spop_value_encode(&o, out + sizeof(out), &v), (int)n);
		assert_memory_equal(out, raw, n);
		free(buf);
	}
}

static void test_typed_data_values(void **state)
{
	uint8_t raw[32];
	const uint8_t *p;
	struct spop_value v;
	size_t n;

	(void)state;
	n = unhex("11", raw, sizeof(raw));
	p = raw;
	assert_true(spop_value_decode(&p, raw + n, &v) > 0 && v.v.b);
	n = unhex("02f001", raw, sizeof(raw));
	p = raw;
	assert_true(spop_value_decode(&p, raw + n, &v) > 0 && v.v.i == 256);
	n = unhex("05fff0fefefefefefefe0e", raw, sizeof(raw));
	p = raw;
	assert_true(spop_value_decode(&p, raw + n, &v) > 0 && v.v.u == UINT64_MAX);
	n = unhex("067f000001", raw, sizeof(raw));
	p = raw;
	assert_true(spop_value_decode(&p, raw + n, &v) > 0);
	assert_memory_equal(v.v.ip, "\x7f\x00\x00\x01", 4);
	n = unhex("080568617070", raw, sizeof(raw));
	p = raw;
	assert_int_equal(spop_value_decode(&p, raw + n, &v), SPOP_INCOMPLETE);
	n = unhex("0805686170707900", raw, sizeof(raw));
	p = raw;
	assert_true(spop_value_decode(&p, raw + n, &v) > 0);
	assert_int_equal(v.v.str.len, 5);
	assert_memory_equal(v.v.str.ptr, "happy", 5);
}

static void test_typed_data_unknown_type_is_invalid(void **state)
{
	uint8_t raw[] = { 0x0a, 0x00 };
	const uint8_t *p = raw;
	struct spop_value v;

	(void)state;
	assert_int_equal(spop_value_decode(&p, raw + sizeof(raw), &v), SPOP_INVALID);
	assert_ptr_equal(p, raw);
}

static void test_int32_out_of_range_is_invalid(void **state)
{
	uint8_t raw[16], *q = raw;
	const uint8_t *p = raw;
	struct spop_value v;

	(void)state;
	*q++ = SPOP_T_INT32;
	spop_varint_encode(&q, raw + sizeof(raw), (uint64_t)1 << 40);
	assert_int_equal(spop_value_decode(&p, q, &v), SPOP_INVALID);
}

/* A NOTIFY as HAProxy 2.6 sends it: stream 1, frame 2, message
 * "miffy-req" with id="ab" and an INT64 body_len=5. */
static const char notify_hex[] =
	"00000024" "03" "00000001" "01" "02"
	"096d696666792d726571" "02"
	"026964" "08026162"
	"08626f64795f6c656e" "0405";

static void test_notify_frame_decodes(void **state)
{
	uint8_t raw[128];
	size_t n = unhex(notify_hex, raw, sizeof(raw));
	const uint8_t *p = raw, *q;
	struct spop_frame f;
	struct spop_message m;
	struct spop_arg args[4];
	bool too_big;

	(void)state;
	assert_int_equal(spop_frame_decode(&p, raw + n, 16380, &f, &too_big), (int)n);
	assert_int_equal(f.type, SPOP_FRAME_NOTIFY);
	assert_int_equal(f.flags, SPOP_FLAG_FIN);
	assert_int_equal(f.stream_id, 1);
	assert_int_equal(f.frame_id, 2);
	q = f.payload;
	assert_true(spop_message_decode(&q, f.payload + f.payload_len, args, 4, &m) > 0);
	assert_ptr_equal(q, f.payload + f.payload_len);
	assert_int_equal(m.name_len, 9);
	assert_memory_equal(m.name, "miffy-req", 9);
	assert_int_equal(m.nargs, 2);
	assert_ptr_equal(m.args, args);
	assert_true(spop_arg_is(&args[0], "id"));
	assert_int_equal(args[0].value.type, SPOP_T_STRING);
	assert_true(spop_arg_is(&args[1], "body_len"));
	assert_int_equal(args[1].value.v.i, 5);
}

/* A payload of nmsgs "m" messages with nargs NULL arguments "a" each. */
static size_t notify_payload(uint8_t *buf, size_t nmsgs, size_t nargs)
{
	size_t n = 0;

	for (size_t i = 0; i < nmsgs; i++) {
		buf[n++] = 1;
		buf[n++] = 'm';
		buf[n++] = (uint8_t)nargs;
		for (size_t j = 0; j < nargs; j++) {
			buf[n++] = 1;
			buf[n++] = 'a';
			buf[n++] = SPOP_T_NULL;
		}
	}
	return n;
}

static void test_notify_payload_decodes_once_into_messages(void **state)
{
	uint8_t raw[128];
	size_t n = unhex(notify_hex, raw, sizeof(raw));
	const uint8_t *p = raw;
	struct spop_frame f;
	struct spop_message msgs[SPOP_NOTIFY_MAX_MESSAGES];
	static struct spop_arg args[SPOP_NOTIFY_MAX_ARGS];

	(void)state;
	assert_int_equal(spop_frame_decode(&p, raw + n, 16380, &f, NULL), (int)n);
	assert_int_equal(spop_notify_decode(f.payload, f.payload + f.payload_len, msgs, args), 1);
	assert_memory_equal(msgs[0].name, "miffy-req", 9);
	assert_int_equal(msgs[0].nargs, 2);
	assert_ptr_equal(msgs[0].args, args);
	assert_true(spop_arg_is(&msgs[0].args[1], "body_len"));
	assert_int_equal(spop_notify_decode(f.payload, f.payload, msgs, args), 0);
}

static void test_notify_keeps_at_most_its_limits(void **state)
{
	static uint8_t buf[(SPOP_NOTIFY_MAX_MESSAGES + 2) * (3 + 3 * (SPOP_MESSAGE_MAX_ARGS + 3))];
	struct spop_message msgs[SPOP_NOTIFY_MAX_MESSAGES];
	static struct spop_arg args[SPOP_NOTIFY_MAX_ARGS];
	size_t n = notify_payload(buf, SPOP_NOTIFY_MAX_MESSAGES + 2, SPOP_MESSAGE_MAX_ARGS + 3);

	(void)state;
	assert_int_equal(spop_notify_decode(buf, buf + n, msgs, args), SPOP_NOTIFY_MAX_MESSAGES);
	for (size_t i = 0; i < SPOP_NOTIFY_MAX_MESSAGES; i++) {
		assert_int_equal(msgs[i].nargs, SPOP_MESSAGE_MAX_ARGS);
		assert_ptr_equal(msgs[i].args, args + i * SPOP_MESSAGE_MAX_ARGS);
	}
	/* A broken message past those kept still makes the payload invalid. */
	buf[n - 1] = 0x0f;
	assert_int_equal(spop_notify_decode(buf, buf + n, msgs, args), SPOP_INVALID);
	/* So does one cut by the end of the payload. */
	assert_int_equal(spop_notify_decode(buf, buf + 2, msgs, args), SPOP_INVALID);
}

static void test_every_truncation_of_a_frame_is_incomplete(void **state)
{
	uint8_t raw[128];
	size_t n = unhex(notify_hex, raw, sizeof(raw));

	(void)state;
	for (size_t cut = 0; cut < n; cut++) {
		uint8_t *buf = exact(raw, cut);
		const uint8_t *p = buf;
		struct spop_frame f;

		assert_int_equal(spop_frame_decode(&p, buf + cut, 16380, &f, NULL), SPOP_INCOMPLETE);
		assert_ptr_equal(p, buf);
		free(buf);
	}
}

static void test_every_truncation_of_a_message_is_incomplete(void **state)
{
	uint8_t raw[128];
	size_t n = unhex(notify_hex, raw, sizeof(raw));
	const size_t hdr = 4 + 1 + 4 + 2;

	(void)state;
	for (size_t cut = 0; cut < n - hdr; cut++) {
		uint8_t *buf = exact(raw + hdr, cut);
		const uint8_t *p = buf;
		struct spop_message m;
		struct spop_arg args[4];

		assert_int_equal(spop_message_decode(&p, buf + cut, args, 4, &m), SPOP_INCOMPLETE);
		assert_ptr_equal(p, buf);
		free(buf);
	}
}

static void test_length_above_max_frame_size_is_too_big(void **state)
{
	uint8_t raw[8] = { 0x80, 0x00, 0x00, 0x00, 0x03 };
	const uint8_t *p = raw;
	struct spop_frame f;
	bool too_big = false;

	(void)state;
	/* 2 GiB announced: refused from the prefix alone, nothing allocated. */
	assert_int_equal(spop_frame_decode(&p, raw + sizeof(raw), 16380, &f, &too_big), SPOP_INVALID);
	assert_true(too_big);
	raw[0] = 0;
	raw[2] = 0x40;
	raw[3] = 0x01; /* 16385 */
	assert_int_equal(spop_frame_decode(&p, raw + sizeof(raw), 16384, &f, &too_big), SPOP_INVALID);
	assert_true(too_big);
}

static void test_lying_length_is_invalid(void **state)
{
	uint8_t raw[128];
	size_t n = unhex(notify_hex, raw, sizeof(raw));
	const uint8_t *p;
	struct spop_frame f;
	bool too_big;

	(void)state;
	/* Length 4 cannot hold type + flags. */
	uint8_t shortf[] = { 0, 0, 0, 4, 3, 0, 0, 0 };
	p = shortf;
	assert_int_equal(spop_frame_decode(&p, shortf + sizeof(shortf), 16380, &f, &too_big), SPOP_INVALID);
	assert_false(too_big);
	/* Length 6: the stream-id varint claims a continuation that is not there. */
	uint8_t cutid[] = { 0, 0, 0, 6, 3, 0, 0, 0, 1, 0xf0 };
	p = cutid;
	assert_int_equal(spop_frame_decode(&p, cutid + sizeof(cutid), 16380, &f, NULL), SPOP_INVALID);
	/* A message whose string length runs past the payload. */
	raw[11] = 0x7f;
	p = raw;
	assert_true(spop_frame_decode(&p, raw + n, 16380, &f, NULL) > 0);
	const uint8_t *q = f.payload;
	struct spop_message m;
	struct spop_arg args[4];
	assert_true(spop_message_decode(&q, f.payload + f.payload_len, args, 4, &m) < 0);
}

static void test_ack_has_one_set_var_action(void **state)
{
	uint8_t buf[64], want[64];
	size_t n = unhex("0000000f" "67" "00000001" "05" "07" "01" "03" "02" "03616b6b" "11", want, sizeof(want));

	(void)state;
	assert_int_equal(spop_build_ack(buf, sizeof(buf), 5, 7, "akk"), (int)n);
	assert_memory_equal(buf, want, n);
}

static void test_hello_round_trips(void **state)
{
	uint8_t buf[256];
	int n = spop_build_hello(buf, sizeof(buf), 16380, "pipelining");
	const uint8_t *p = buf, *q;
	struct spop_frame f;
	struct spop_arg a;
	int seen = 0;

	(void)state;
	assert_true(n > 0);
	assert_int_equal(spop_frame_decode(&p, buf + n, 16380, &f, NULL), n);
	assert_int_equal(f.type, SPOP_FRAME_AGENT_HELLO);
	q = f.payload;
	while (q < f.payload + f.payload_len) {
		assert_true(spop_kv_decode(&q, f.payload + f.payload_len, &a) > 0);
		if (spop_arg_is(&a, "version")) {
			assert_memory_equal(a.value.v.str.ptr, "2.0", 3);
			seen++;
		} else if (spop_arg_is(&a, "max-frame-size")) {
			assert_int_equal(a.value.type, SPOP_T_UINT32);
			assert_int_equal(a.value.v.u, 16380);
			seen++;
		} else if (spop_arg_is(&a, "capabilities")) {
			assert_memory_equal(a.value.v.str.ptr, "pipelining", 10);
			seen++;
		}
	}
	assert_int_equal(seen, 3);
}

static void test_disconnect_carries_status_and_message(void **state)
{
	uint8_t buf[256];
	int n = spop_build_disconnect(buf, sizeof(buf), SPOP_ERR_TOO_BIG, "frame is too big");
	const uint8_t *p = buf, *q;
	struct spop_frame f;
	struct spop_arg a;

	(void)state;
	assert_true(n > 0);
	assert_int_equal(spop_frame_decode(&p, buf + n, 16380, &f, NULL), n);
	assert_int_equal(f.type, SPOP_FRAME_AGENT_DISCONNECT);
	q = f.payload;
	assert_true(spop_kv_decode(&q, f.payload + f.payload_len, &a) > 0);
	assert_true(spop_arg_is(&a, "status-code"));
	assert_int_equal(a.value.v.u, SPOP_ERR_TOO_BIG);
	assert_true(spop_kv_decode(&q, f.payload + f.payload_len, &a) > 0);
	assert_true(spop_arg_is(&a, "message"));
	assert_int_equal(a.value.v.str.len, 16);
}

static void test_builders_refuse_small_buffers(void **state)
{
	uint8_t buf[16];

	(void)state;
	assert_int_equal(spop_build_hello(buf, sizeof(buf), 16380, "pipelining"), SPOP_INVALID);
	assert_int_equal(spop_build_disconnect(buf, sizeof(buf), SPOP_ERR_IO, "i/o"), SPOP_INVALID);
	assert_int_equal(spop_build_ack(buf, 12, 1, 1, "ack"), SPOP_INVALID);
}

static void test_hdrs_bin_decodes(void **state)
{
	uint8_t raw[64];
	size_t n;
	struct header_list h;

	(void)state;
	/* A value length running past the block. */
	n = unhex("04486f7374" "05" "61", raw, sizeof(raw));
	assert_int_equal(http_headers_decode(raw, n, &h), -1);
	n = unhex("04486f7374" "0161" "06416363657074" "032a2f2a" "0000", raw, sizeof(raw));
	assert_int_equal(http_headers_decode(raw, n, &h), 0);
	assert_int_equal(h.count, 2);
	assert_string_equal(h.items[0].name, "host");
	assert_string_equal(h.items[0].value, "a");
	assert_string_equal(http_headers_get(&h, "accept"), "*/*");
	http_headers_clear(&h);
}

static void test_hdrs_bin_without_terminator_is_invalid(void **state)
{
	uint8_t raw[64];
	size_t n = unhex("04486f7374" "0161", raw, sizeof(raw));
	struct header_list h;

	(void)state;
	for (size_t cut = 0; cut <= n; cut++) {
		uint8_t *buf = exact(raw, cut);

		assert_int_equal(http_headers_decode(buf, cut, &h), -1);
		assert_int_equal(h.count, 0);
		free(buf);
	}
}

static void test_hop_by_hop_headers(void **state)
{
	struct header_list h = { 0 };

	(void)state;
	assert_int_equal(http_headers_add(&h, "Connection", 10, "close, X-Trace", 14), 0);
	assert_true(http_header_is_hop_by_hop(&h, "connection"));
	assert_true(http_header_is_hop_by_hop(&h, "transfer-encoding"));
	assert_true(http_header_is_hop_by_hop(&h, "x-trace"));
	assert_false(http_header_is_hop_by_hop(&h, "x-other"));
	http_headers_clear(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_varint_encodes_fixtures),
		cmocka_unit_test(test_varint_decodes_fixtures),
		cmocka_unit_test(test_varint_truncated_is_incomplete_and_cursor_stays),
		cmocka_unit_test(test_varint_too_long_or_overflowing_is_invalid),
		cmocka_unit_test(test_varint_encode_refuses_short_buffer),
		cmocka_unit_test(test_typed_data_fixtures_decode_and_reencode),
		cmocka_unit_test(test_typed_data_values),
		cmocka_unit_test(test_typed_data_unknown_type_is_invalid),
		cmocka_unit_test(test_int32_out_of_range_is_invalid),
		cmocka_unit_test(test_notify_frame_decodes),
		cmocka_unit_test(test_notify_payload_decodes_once_into_messages),
		cmocka_unit_test(test_notify_keeps_at_most_its_limits),
		cmocka_unit_test(test_every_truncation_of_a_frame_is_incomplete),
		cmocka_unit_test(test_every_truncation_of_a_message_is_incomplete),
		cmocka_unit_test(test_length_above_max_frame_size_is_too_big),
		cmocka_unit_test(test_lying_length_is_invalid),
		cmocka_unit_test(test_ack_has_one_set_var_action),
		cmocka_unit_test(test_hello_round_trips),
		cmocka_unit_test(test_disconnect_carries_status_and_message),
		cmocka_unit_test(test_builders_refuse_small_buffers),
		cmocka_unit_test(test_hdrs_bin_decodes),
		cmocka_unit_test(test_hdrs_bin_without_terminator_is_invalid),
		cmocka_unit_test(test_hop_by_hop_headers),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
