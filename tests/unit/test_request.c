/* Unit tests of request: the shadow request built once from the client's,
 * the forwarding rules applied once for both transports. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"
#include "http.h"

static const struct request_rules rules = { .marker = "X-Miffy-Role", .preserve_host = false };
static const struct request_dest dest = { .url = "http://127.0.0.1:8080/", .prefix = "/v1",
					  .host = "127.0.0.1:8080", .marker = "X-Miffy-Role",
					  .role = "candidate" };

static void add(struct header_list *h, const char *name, const char *value)
{
	assert_int_equal(http_headers_add(h, name, strlen(name), value, strlen(value)), 0);
}

/* Collects the header lines request_each_header() gives, "name: value\n". */
static int collect(void *arg, const char *name, const char *value)
{
	char *buf = arg;
	size_t n = strlen(buf);

	snprintf(buf + n, 1024 - n, "%s: %s\n", name, value);
	return 0;
}

static void test_forwarding_rules_are_applied_once(void **state)
{
	struct header_list h = { 0 };
	struct replay_request rq;
	char lines[1024] = "";

	(void)state;
	add(&h, "host", "shop.example");
	add(&h, "user-agent", "t/1");
	add(&h, "connection", "close, x-hop");
	add(&h, "x-hop", "secret");
	add(&h, "keep-alive", "timeout=5");
	add(&h, "content-length", "3");
	add(&h, "expect", "100-continue");
	add(&h, "x-miffy-role", "forged");
	add(&h, "x-evil", "a\r\nx-injected: 1");
	add(&h, "bad name", "v");
	add(&h, "x-empty", "");
	assert_int_equal(request_build(&rq, &rules, "PUT", "/a b", "q=1", &h, (const uint8_t *)"abc", 3), 0);
	assert_string_equal(rq.method, "PUT");
	assert_string_equal(rq.target, "/a%20b?q=1");
	assert_int_equal(rq.target_len, strlen("/a%20b?q=1"));
	assert_null(rq.host);
	assert_int_equal(rq.header_count, 2);
	assert_int_equal(rq.flags, REQUEST_BODY | REQUEST_IDEMPOTENT);
	assert_int_equal(rq.body_len, 3);
	assert_int_equal(request_each_header(&rq, &dest, collect, lines), 0);
	assert_string_equal(lines, "Host: 127.0.0.1:8080\nuser-agent: t/1\nx-empty: \nX-Miffy-Role: candidate\n");
	request_clear(&rq);
	assert_null(rq.target);
	http_headers_clear(&h);
}

static void test_preserve_host_keeps_the_clients_host(void **state)
{
	struct request_rules keep = { .marker = NULL, .preserve_host = true };
	struct request_dest none = dest;
	struct header_list h = { 0 };
	struct replay_request rq;
	char lines[1024] = "";

	(void)state;
	none.marker = NULL;
	add(&h, "host", "shop.example");
	assert_int_equal(request_build(&rq, &keep, "GET", "/", NULL, &h, NULL, 0), 0);
	assert_string_equal(rq.host, "shop.example");
	assert_int_equal(request_each_header(&rq, &none, collect, lines), 0);
	assert_string_equal(lines, "Host: shop.example\n");
	request_clear(&rq);
	http_headers_clear(&h);
}

static void test_body_flag_follows_method_and_framing(void **state)
{
	static const struct {
		const char *method;
		const char *header;      /* a framing header the client sent, or NULL */
		size_t body_len;
		unsigned flags;
	} cases[] = {
		{ "GET", NULL, 0, REQUEST_IDEMPOTENT },
		{ "HEAD", "content-length", 4, REQUEST_HEAD | REQUEST_IDEMPOTENT },
		{ "POST", NULL, 0, REQUEST_BODY },     /* Content-Length: 0 from both transports */
		{ "PATCH", NULL, 0, REQUEST_BODY },
		{ "DELETE", NULL, 0, REQUEST_IDEMPOTENT },
		{ "DELETE", "content-length", 0, REQUEST_BODY | REQUEST_IDEMPOTENT },
		{ "OPTIONS", "transfer-encoding", 0, REQUEST_BODY | REQUEST_IDEMPOTENT },
		{ "GET", NULL, 2, REQUEST_BODY | REQUEST_IDEMPOTENT },
		{ "PURGE", NULL, 0, 0 },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct header_list h = { 0 };
		struct replay_request rq;

		if (cases[i].header)
			add(&h, cases[i].header, "0");
		assert_int_equal(request_build(&rq, &rules, cases[i].method, "/", NULL, &h, (const uint8_t *)"body",
					       cases[i].body_len), 0);
		if (rq.flags != cases[i].flags)
			fail_msg("%s with %s: flags %u, not %u", cases[i].method,
				 cases[i].header ? cases[i].header : "no header", rq.flags, cases[i].flags);
		request_clear(&rq);
		http_headers_clear(&h);
	}
}

static void test_requests_that_could_redirect_the_agent_are_refused(void **state)
{
	static const char *const paths[] = { "*", "http://elsewhere.example/", "", "@evil.example/" };
	struct header_list h = { 0 };
	struct replay_request rq;

	(void)state;
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
		assert_int_equal(request_build(&rq, &rules, "GET", paths[i], NULL, &h, NULL, 0), -1);
	assert_int_equal(request_build(&rq, &rules, "GET", NULL, NULL, &h, NULL, 0), -1);
	assert_int_equal(request_build(&rq, &rules, "G T", "/", NULL, &h, NULL, 0), -1);
	assert_int_equal(request_build(&rq, &rules, "", "/", NULL, &h, NULL, 0), -1);
	assert_int_equal(request_build(&rq, &rules, NULL, "/", NULL, &h, NULL, 0), -1);
}

static void test_empty_query_is_kept_and_controls_are_encoded(void **state)
{
	struct header_list h = { 0 };
	struct replay_request rq;

	(void)state;
	assert_int_equal(request_build(&rq, &rules, "GET", "/q", "", &h, NULL, 0), 0);
	assert_string_equal(rq.target, "/q?");
	request_clear(&rq);
	assert_int_equal(request_build(&rq, &rules, "GET", "/\x01\x7f\xc3\xa9", "a=\t", &h, NULL, 0), 0);
	assert_string_equal(rq.target, "/%01%7F\xc3\xa9?a=%09");
	request_clear(&rq);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forwarding_rules_are_applied_once),
		cmocka_unit_test(test_preserve_host_keeps_the_clients_host),
		cmocka_unit_test(test_body_flag_follows_method_and_framing),
		cmocka_unit_test(test_requests_that_could_redirect_the_agent_are_refused),
		cmocka_unit_test(test_empty_query_is_kept_and_controls_are_encoded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
