/* Unit tests of h1parse: the pure HTTP/1.x response-head parser and the
 * header-line rules both transports share. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "h1parse.h"
#include "http.h"

static int parse(const char *s, struct h1_head *head, struct header_list *h)
{
	return h1_parse_response(s, strlen(s), 0, head, h);
}

static void test_final_response_head_is_parsed(void **state)
{
	static const char s[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-A:  one  \r\n"
				"Content-Length: 5\r\n\r\nhello";
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	assert_int_equal(parse(s, &head, &h), (int)(sizeof(s) - 1 - 5));
	assert_int_equal(head.status, 200);
	assert_false(head.http10);
	assert_true(head.have_length);
	assert_int_equal(head.length, 5);
	assert_false(head.have_te);
	assert_true(head.keep_alive);
	assert_int_equal(h.count, 3);
	assert_string_equal(h.items[0].name, "content-type");
	assert_string_equal(http_headers_get(&h, "x-a"), "one");
	http_headers_clear(&h);
}

static void test_incomplete_head_is_minus_two_and_resumes(void **state)
{
	static const char s[] = "HTTP/1.1 204 No Content\r\nA: 1\r\n\r\n";
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	for (size_t n = 0; n < sizeof(s) - 1; n++)
		assert_int_equal(h1_parse_response(s, n, n ? n - 1 : 0, &head, &h), -2);
	assert_int_equal(h.count, 0);
	/* the CR LF of the blank line split across two reads */
	assert_int_equal(h1_parse_response(s, sizeof(s) - 1, sizeof(s) - 2, &head, &h), (int)(sizeof(s) - 1));
	assert_int_equal(head.status, 204);
	http_headers_clear(&h);
}

static void test_bare_lf_and_folded_lines(void **state)
{
	static const char s[] = "HTTP/1.0 200 OK\nX-F: a\n \t b\nConnection: keep-alive\n\n";
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	assert_int_equal(parse(s, &head, &h), (int)(sizeof(s) - 1));
	assert_true(head.http10);
	assert_true(head.keep_alive);
	assert_string_equal(http_headers_get(&h, "x-f"), "a b");
	http_headers_clear(&h);
	assert_int_equal(parse("HTTP/1.0 200 OK\r\n\r\n", &head, &h), 19);
	assert_false(head.keep_alive);
}

static void test_interim_response_has_no_headers(void **state)
{
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	assert_int_equal(parse("HTTP/1.1 100 Continue\r\nX-I: 1\r\n\r\nHTTP/1.1 200", &head, &h), 33);
	assert_int_equal(head.status, 100);
	assert_int_equal(h.count, 0);
}

static void test_framing_headers(void **state)
{
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n",
			  &head, &h) > 0);
	assert_true(head.have_te && head.chunked);
	assert_false(head.keep_alive);
	http_headers_clear(&h);
	assert_true(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", &head, &h) > 0);
	assert_true(head.have_te && !head.chunked);
	http_headers_clear(&h);
	assert_true(parse("HTTP/1.1 200 OK\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", &head, &h) > 0);
	assert_true(head.have_length);
	assert_int_equal(head.length, 7);
	http_headers_clear(&h);
}

static void test_malformed_heads_are_minus_one_with_a_reason(void **state)
{
	static const char *const bad[] = {
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"HTTP/1.1 099 X\r\n\r\n",
		"HTTP/1.1 200 OK\r\nNo colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: v\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
		"garbage",
	};
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (parse(bad[i], &head, &h) != -1)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(head.error, REPLAY_MALFORMED);
		assert_non_null(head.why);
		assert_int_equal(h.count, 0);
	}
}

static void test_head_over_the_limit_is_malformed(void **state)
{
	size_t n = H1_HEAD_MAX + 100;
	char *s = malloc(n + 1);
	struct header_list h = { 0 };
	struct h1_head head;

	(void)state;
	assert_non_null(s);
	memcpy(s, "HTTP/1.1 200 OK\r\nX: ", 20);
	memset(s + 20, 'a', n - 20);
	s[n] = '\0';
	assert_int_equal(h1_parse_response(s, n, 0, &head, &h), -1);
	assert_int_equal(head.error, REPLAY_MALFORMED);
	/* the same bytes, ended within the limit, are not */
	memcpy(s + 1000, "\r\n\r\n", 4);
	assert_int_equal(h1_parse_response(s, n, 0, &head, &h), 1004);
	http_headers_clear(&h);
	free(s);
}

static void test_header_line_limits(void **state)
{
	struct header_list h = { 0 };
	enum replay_error e = REPLAY_OK;
	const char *why = NULL;

	(void)state;
	/* a fold with nothing before it is dropped */
	assert_int_equal(h1_header_line(&h, " orphan\r\n", 9, &e, &why), 0);
	assert_int_equal(h.count, 0);
	for (int i = 0; i < REPLAY_MAX_HEADERS; i++)
		assert_int_equal(h1_header_line(&h, "X-N: 1\r\n", 8, &e, &why), 0);
	assert_int_equal(h1_header_line(&h, "X-N: 1\r\n", 8, &e, &why), -1);
	assert_int_equal(e, REPLAY_MALFORMED);
	assert_string_equal(why, "Too many response headers");
	http_headers_clear(&h);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_final_response_head_is_parsed),
		cmocka_unit_test(test_incomplete_head_is_minus_two_and_resumes),
		cmocka_unit_test(test_bare_lf_and_folded_lines),
		cmocka_unit_test(test_interim_response_has_no_headers),
		cmocka_unit_test(test_framing_headers),
		cmocka_unit_test(test_malformed_heads_are_minus_one_with_a_reason),
		cmocka_unit_test(test_head_over_the_limit_is_malformed),
		cmocka_unit_test(test_header_line_limits),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
