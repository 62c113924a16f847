/* Unit tests of body: content decoding and type detection. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "body.h"
#include "http.h"
#include "stats.h"

#define MAX_DEPTH 128
#define MAX_DECOMPRESSED (8u << 20)

static void resp_set(struct http_response *r, const char *ctype, const char *encoding,
		     const void *body, size_t len)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	if (ctype)
		assert_int_equal(http_headers_add(&r->headers, "content-type", 12, ctype, strlen(ctype)), 0);
	if (encoding)
		assert_int_equal(http_headers_add(&r->headers, "content-encoding", 16, encoding,
						  strlen(encoding)), 0);
	if (len) {
		r->body = malloc(len);
		assert_non_null(r->body);
		memcpy(r->body, body, len);
		r->body_len = len;
	}
}

static uint8_t *compress_buf(const void *in, size_t inlen, int windowbits, size_t *outlen)
{
	z_stream zs;
	size_t cap = compressBound(inlen) + 64;
	uint8_t *out = malloc(cap);

	assert_non_null(out);
	memset(&zs, 0, sizeof(zs));
	assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, windowbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)inlen;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*outlen = zs.total_out;
	deflateEnd(&zs);
	return out;
}

/* ---- content type, table-driven ---------------------------------------- */

struct ctype_case {
	const char *content_type;
	bool json;
};

static const struct ctype_case ctype_cases[] = {
	{ "application/json", true },
	{ "application/json; charset=utf-8", true },
	{ "Application/JSON;charset=UTF-8", true },
	{ "  application/json  ; q=1", true },
	{ "application/problem+json", true },
	{ "application/vnd.api+json; ext=x", true },
	{ "text/x-custom+JSON", true },
	{ "text/plain", false },
	{ "text/html; charset=utf-8", false },
	{ "application/jsonx", false },
	{ "application/json-seq", false },
	{ "application/+json", false },
	{ "json", false },
	{ "+json", false },
	{ "", false },
	{ NULL, false },
};

static void test_content_type_detection_ignores_parameters_and_case(void **state)
{
	for (size_t i = 0; i < sizeof(ctype_cases) / sizeof(ctype_cases[0]); i++) {
		const struct ctype_case *tc = &ctype_cases[i];

		if (body_content_type_is_json(tc->content_type) != tc->json)
			fail_msg("\"%s\": expected %s", tc->content_type ? tc->content_type : "(null)",
				 tc->json ? "json" : "not json");
	}
}

/* ---- decoding ----------------------------------------------------------- */

static void decode_compressed(int windowbits, const char *coding)
{
	static const char json[] = "{\"a\":[1,2,3],\"b\":\"text\"}";
	struct http_response r;
	struct body b;
	size_t zlen;
	uint8_t *z = compress_buf(json, strlen(json), windowbits, &zlen);

	resp_set(&r, "application/json", coding, z, zlen);
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_int_equal(b.type, BODY_JSON);
	assert_false(b.decode_failed);
	assert_int_equal(b.len, strlen(json));
	assert_memory_equal(b.data, json, b.len);
	assert_non_null(b.owned);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(b.json, "a")), 3);
	body_clear(&b);
	http_response_clear(&r);
	free(z);
}

static void test_gzip_body_is_decoded(void **state)
{
	decode_compressed(16 + MAX_WBITS, "gzip");
}

static void test_x_gzip_body_is_decoded(void **state)
{
	decode_compressed(16 + MAX_WBITS, "X-GZIP");
}

static void test_deflate_zlib_body_is_decoded(void **state)
{
	decode_compressed(MAX_WBITS, "deflate");
}

static void test_raw_deflate_body_is_decoded(void **state)
{
	decode_compressed(-MAX_WBITS, "deflate");
}

static void test_identity_encoding_keeps_the_bytes(void **state)
{
	static const char text[] = "plain";
	struct http_response r;
	struct body b;

	resp_set(&r, "text/plain", "identity", text, strlen(text));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_int_equal(b.type, BODY_TEXT);
	assert_ptr_equal(b.data, r.body);
	assert_null(b.owned);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_decompressed_size_is_capped(void **state)
{
	size_t n = 100000, zlen;
	char *big = malloc(n);
	uint8_t *z;
	struct http_response r;
	struct body b;

	assert_non_null(big);
	memset(big, 'z', n);
	z = compress_buf(big, n, 16 + MAX_WBITS, &zlen);
	resp_set(&r, "text/plain", "gzip", z, zlen);
	body_decode(&r, 4096, MAX_DEPTH, &b);
	assert_true(b.size_exceeded);
	assert_false(b.decode_failed);
	assert_int_equal(b.len, 4096);
	assert_int_equal(b.type, BODY_TEXT);
	body_clear(&b);
	/* Exactly at the cap is not cut. */
	body_decode(&r, n, MAX_DEPTH, &b);
	assert_false(b.size_exceeded);
	assert_int_equal(b.len, n);
	body_clear(&b);
	http_response_clear(&r);
	free(z);
	free(big);
}

static void test_corrupt_gzip_falls_back_to_raw_bytes_and_says_so(void **state)
{
	static const uint8_t junk[] = { 0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef };
	struct http_response r;
	struct body b;
	uint64_t before = stats.decompress_failed;

	resp_set(&r, "application/json", "gzip", junk, sizeof(junk));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_true(b.decode_failed);
	assert_ptr_equal(b.data, r.body);
	assert_int_equal(b.len, sizeof(junk));
	assert_int_equal(b.type, BODY_BINARY);
	/* Reported in the body, counted by the exchange's conclusion, not here. */
	assert_int_equal(stats.decompress_failed, before);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_unknown_encoding_falls_back_to_raw_bytes(void **state)
{
	static const char text[] = "abc";
	struct http_response r;
	struct body b;

	resp_set(&r, "text/plain", "br", text, strlen(text));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_true(b.decode_failed);
	assert_int_equal(b.type, BODY_TEXT);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_cut_gzip_stream_decodes_its_prefix(void **state)
{
	char text[8192];
	struct http_response r;
	struct body b;
	size_t zlen;
	uint8_t *z;

	for (size_t i = 0; i < sizeof(text); i++)
		text[i] = (char)('a' + (i * 31 + i / 7) % 26);
	z = compress_buf(text, sizeof(text), 16 + MAX_WBITS, &zlen);
	resp_set(&r, "text/plain", "gzip", z, zlen / 2);
	r.truncated = true;
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_false(b.decode_failed);
	assert_true(b.len > 0 && b.len < sizeof(text));
	assert_memory_equal(b.data, text, b.len);
	body_clear(&b);
	/* The same stream, not marked cut, is a decoding failure. */
	r.truncated = false;
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_true(b.decode_failed);
	body_clear(&b);
	http_response_clear(&r);
	free(z);
}

/* ---- JSON --------------------------------------------------------------- */

static char *nested_json(size_t depth)
{
	char *s = malloc(depth * 2 + 2);

	assert_non_null(s);
	memset(s, '[', depth);
	s[depth] = '1';
	memset(s + depth + 1, ']', depth);
	s[depth * 2 + 1] = '\0';
	return s;
}

static void test_ten_thousand_deep_json_is_refused_without_parsing(void **state)
{
	char *deep = nested_json(10000);
	struct http_response r;
	struct body b;
	uint64_t before = stats.json_depth_exceeded;

	resp_set(&r, "application/json", NULL, deep, strlen(deep));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_true(b.depth_exceeded);
	assert_null(b.json);
	assert_true(b.claims_json);
	assert_int_equal(b.type, BODY_TEXT);
	assert_int_equal(stats.json_depth_exceeded, before);   /* the flag is the report */
	body_clear(&b);
	http_response_clear(&r);
	free(deep);
}

static void test_json_at_max_depth_is_parsed(void **state)
{
	char *ok = nested_json(3), *deep = nested_json(4);
	struct http_response r;
	struct body b;

	resp_set(&r, "application/json", NULL, ok, strlen(ok));
	body_decode(&r, MAX_DECOMPRESSED, 3, &b);
	assert_int_equal(b.type, BODY_JSON);
	body_clear(&b);
	http_response_clear(&r);
	resp_set(&r, "application/json", NULL, deep, strlen(deep));
	body_decode(&r, MAX_DECOMPRESSED, 3, &b);
	assert_true(b.depth_exceeded);
	body_clear(&b);
	http_response_clear(&r);
	free(ok);
	free(deep);
}

static void test_brackets_inside_strings_do_not_count_as_depth(void **state)
{
	static const char json[] = "{\"s\":\"[[[[[[{{{{\\\"[[[[\"}";
	struct http_response r;
	struct body b;

	resp_set(&r, "application/json", NULL, json, strlen(json));
	body_decode(&r, MAX_DECOMPRESSED, 2, &b);
	assert_int_equal(b.type, BODY_JSON);
	assert_false(b.depth_exceeded);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_invalid_json_claimed_is_text_with_flag(void **state)
{
	static const char bad[] = "{\"a\":";
	struct http_response r;
	struct body b;

	resp_set(&r, "application/json; charset=utf-8", NULL, bad, strlen(bad));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_true(b.claims_json);
	assert_null(b.json);
	assert_int_equal(b.type, BODY_TEXT);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_json_with_trailing_garbage_is_invalid(void **state)
{
	static const char bad[] = "{\"a\":1} x";
	struct http_response r;
	struct body b;

	resp_set(&r, "application/json", NULL, bad, strlen(bad));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_null(b.json);
	body_clear(&b);
	http_response_clear(&r);
}

static void test_json_body_without_json_content_type_is_text(void **state)
{
	static const char json[] = "{\"a\":1}";
	struct http_response r;
	struct body b;

	resp_set(&r, "text/plain", NULL, json, strlen(json));
	body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
	assert_false(b.claims_json);
	assert_int_equal(b.type, BODY_TEXT);
	assert_null(b.json);
	body_clear(&b);
	http_response_clear(&r);
}

/* ---- text or binary, table-driven --------------------------------------- */

struct kind_case {
	const char *name;
	const char *bytes;
	size_t len;
	bool truncated;
	enum body_type type;
};

#define BYTES(s) s, sizeof(s) - 1

static const struct kind_case kind_cases[] = {
	{ "ascii text", BYTES("hello\r\n\tworld\n"), false, BODY_TEXT },
	{ "utf-8 text", BYTES("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), false, BODY_TEXT },
	{ "a NUL byte", BYTES("abc\0def"), false, BODY_BINARY },
	{ "a control byte", BYTES("abc\x01"), false, BODY_BINARY },
	{ "invalid utf-8", BYTES("abc\xff"), false, BODY_BINARY },
	{ "overlong utf-8", BYTES("\xc0\xaf"), false, BODY_BINARY },
	{ "a surrogate", BYTES("\xed\xa0\x80"), false, BODY_BINARY },
	{ "a cut sequence at the end", BYTES("caf\xc3"), false, BODY_BINARY },
	{ "a cut sequence at the end of a cut body", BYTES("caf\xe2\x82"), true, BODY_TEXT },
	{ "a cut body ending in what begins no character", BYTES("caf\xe0\x80"), true, BODY_BINARY },
	{ "empty", "", 0, false, BODY_EMPTY },
};

static void test_text_is_valid_utf8_without_nul(void **state)
{
	for (size_t i = 0; i < sizeof(kind_cases) / sizeof(kind_cases[0]); i++) {
		const struct kind_case *tc = &kind_cases[i];
		struct http_response r;
		struct body b;

		resp_set(&r, "text/plain", NULL, tc->bytes, tc->len);
		r.truncated = tc->truncated;
		body_decode(&r, MAX_DECOMPRESSED, MAX_DEPTH, &b);
		if (b.type != tc->type)
			fail_msg("%s: expected type %d, got %d", tc->name, tc->type, b.type);
		body_clear(&b);
		http_response_clear(&r);
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_content_type_detection_ignores_parameters_and_case),
		cmocka_unit_test(test_gzip_body_is_decoded),
		cmocka_unit_test(test_x_gzip_body_is_decoded),
		cmocka_unit_test(test_deflate_zlib_body_is_decoded),
		cmocka_unit_test(test_raw_deflate_body_is_decoded),
		cmocka_unit_test(test_identity_encoding_keeps_the_bytes),
		cmocka_unit_test(test_decompressed_size_is_capped),
		cmocka_unit_test(test_corrupt_gzip_falls_back_to_raw_bytes_and_says_so),
		cmocka_unit_test(test_unknown_encoding_falls_back_to_raw_bytes),
		cmocka_unit_test(test_cut_gzip_stream_decodes_its_prefix),
		cmocka_unit_test(test_ten_thousand_deep_json_is_refused_without_parsing),
		cmocka_unit_test(test_json_at_max_depth_is_parsed),
		cmocka_unit_test(test_brackets_inside_strings_do_not_count_as_depth),
		cmocka_unit_test(test_invalid_json_claimed_is_text_with_flag),
		cmocka_unit_test(test_json_with_trailing_garbage_is_invalid),
		cmocka_unit_test(test_json_body_without_json_content_type_is_text),
		cmocka_unit_test(test_text_is_valid_utf8_without_nul),
	};

	return cmocka_run_group_tests_name("body", tests, NULL, NULL);
}
