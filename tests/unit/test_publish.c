/* publish: the message of DESIGN.md "Kafka message", built from hand-made
 * exchanges and read back from the file and stdout sinks; policies; the
 * size cap; the Kafka sink's accounting against librdkafka's mock cluster. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <ev.h>
#include <zlib.h>

#include "compare.h"
#include "config.h"
#include "exchange.h"
#include "publish.h"
#include "samples.h"
#include "stats.h"
#include "http.h"

struct fixture {
	struct ev_loop *loop;
	struct config cfg;
	char path[64];
	char sink[80];
	struct exchange x;
	struct diff_list diffs;
};

static char s_auth[] = "authorization", s_cookie[] = "cookie", s_setcookie[] = "set-cookie",
	    s_proxy[] = "proxy-authorization";
static char *redact_default[] = { s_auth, s_cookie, s_setcookie, s_proxy };
static char s_topic[] = "miffy";

/* ---- helpers ----------------------------------------------------------- */

static void add_header(struct header_list *h, const char *name, const char *value)
{
	assert_int_equal(http_headers_add(h, name, strlen(name), value, strlen(value)), 0);
}

static uint8_t *dup_bytes(const void *data, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);

	assert_non_null(copy);
	memcpy(copy, data, len);
	return copy;
}

static void set_body(struct http_response *r, const void *data, size_t len)
{
	free(r->body);
	r->body = dup_bytes(data, len);
	r->body_len = len;
}

static void add_diff(struct diff_list *l, enum diff_where w, const char *path, enum diff_kind k,
		     cJSON *ref, cJSON *cand, bool noise)
{
	struct difference *d;

	if (l->count == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 8;
		l->items = realloc(l->items, l->cap * sizeof(*l->items));
		assert_non_null(l->items);
	}
	d = &l->items[l->count++];
	memset(d, 0, sizeof(*d));
	d->where = w;
	d->path = strdup(path);
	d->kind = k;
	d->reference = ref;
	d->candidate = cand;
	d->noise = noise;
}

static void free_diffs(struct diff_list *l)
{
	for (size_t i = 0; i < l->count; i++) {
		free(l->items[i].path);
		cJSON_Delete(l->items[i].reference);
		cJSON_Delete(l->items[i].candidate);
	}
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* A GET /api/users/42?verbose=1 whose candidate answers another name. */
static void make_exchange(struct exchange *x)
{
	static const char ref_body[] = "{\"id\":42,\"name\":\"ann\",\"tags\":[1,2]}";
	static const char cand_body[] = "{\"id\":42,\"name\":\"bob\",\"tags\":[1,2]}";

	memset(x, 0, sizeof(*x));
	x->id = strdup("0a1b2c:0001");
	x->endpoint = strdup("GET /api/users/:id");
	x->method = strdup("GET");
	x->path = strdup("/api/users/42");
	x->query = strdup("verbose=1");
	x->version = strdup("1.1");
	add_header(&x->req_headers, "host", "shop.example");
	add_header(&x->req_headers, "authorization", "Bearer secret-token");
	add_header(&x->req_headers, "accept", "application/json");

	x->have_reference = true;
	x->reference.status = 200;
	add_header(&x->reference.headers, "content-type", "application/json");
	add_header(&x->reference.headers, "set-cookie", "sid=123");
	set_body(&x->reference, ref_body, strlen(ref_body));
	x->reference.latency_ms = 12.5;

	x->want[ROLE_CANDIDATE] = x->have[ROLE_CANDIDATE] = true;
	x->replies[ROLE_CANDIDATE].status = 200;
	add_header(&x->replies[ROLE_CANDIDATE].headers, "content-type", "application/json; charset=utf-8");
	set_body(&x->replies[ROLE_CANDIDATE], cand_body, strlen(cand_body));
	x->replies[ROLE_CANDIDATE].latency_ms = 20.25;
}

static void free_exchange(struct exchange *x)
{
	free(x->id);
	free(x->endpoint);
	free(x->method);
	free(x->path);
	free(x->query);
	free(x->version);
	http_headers_clear(&x->req_headers);
	free(x->req_body);
	http_response_clear(&x->reference);
	for (int r = 0; r < ROLE_COUNT; r++)
		http_response_clear(&x->replies[r]);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	assert_non_null(f);
	f->loop = ev_loop_new(EVFLAG_AUTO);
	assert_non_null(f->loop);
	snprintf(f->path, sizeof(f->path), "/tmp/miffy-publish-XXXXXX");
	fd = mkstemp(f->path);
	assert_true(fd != -1);
	close(fd);
	snprintf(f->sink, sizeof(f->sink), "file:%s", f->path);

	f->cfg.sink = f->sink;
	f->cfg.topic = s_topic;
	f->cfg.publish = PUBLISH_DIFFERENCES;
	f->cfg.sample_rate = 1;
	f->cfg.max_message = 1 << 20;
	f->cfg.max_decompressed = 8 << 20;
	f->cfg.max_depth = 128;
	f->cfg.redact_headers.items = redact_default;
	f->cfg.redact_headers.count = 4;
	f->cfg.flush_timeout = 1;
	make_exchange(&f->x);
	add_diff(&f->diffs, DIFF_BODY, "/name", DIFF_VALUE, cJSON_CreateString("ann"),
		 cJSON_CreateString("bob"), false);
	stats_reset();
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free_exchange(&f->x);
	free_diffs(&f->diffs);
	unlink(f->path);
	ev_loop_destroy(f->loop);
	free(f);
	return 0;
}

static char *read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	assert_non_null(fp);
	fseek(fp, 0, SEEK_END);
	n = ftell(fp);
	fseek(fp, 0, SEEK_SET);
	buf = calloc(1, (size_t)n + 1);
	assert_non_null(buf);
	assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
	fclose(fp);
	return buf;
}

/* Every line of the sink, parsed; each must be one complete JSON object. */
static size_t read_lines(const char *path, cJSON **out, size_t max, size_t *longest)
{
	char *buf = read_file(path), *line = buf, *nl;
	size_t n = 0;

	if (longest)
		*longest = 0;
	while ((nl = strchr(line, '\n')) != NULL) {
		*nl = '\0';
		assert_true(n < max);
		out[n] = cJSON_Parse(line);
		assert_non_null(out[n]);
		assert_true(cJSON_IsObject(out[n]));
		if (longest && (size_t)(nl - line) > *longest)
			*longest = (size_t)(nl - line);
		n++;
		line = nl + 1;
	}
	assert_string_equal(line, "");   /* nothing after the last newline */
	free(buf);
	return n;
}

/* Publishes f->x once with outcome o through a fresh sink on an empty
 * file, returns the one message written (or NULL when none was). */
static cJSON *publish_one(struct fixture *f, enum outcome o)
{
	char err[256] = "";
	struct publish *p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	cJSON *msgs[4];
	size_t n;

	assert_non_null(p);
	assert_int_equal(truncate(f->path, 0), 0);
	publish_exchange(p, &f->x, o, &f->diffs);
	publish_free(p, 1);
	n = read_lines(f->path, msgs, 4, NULL);
	assert_true(n <= 1);
	return n ? msgs[0] : NULL;
}

static const cJSON *get(const cJSON *obj, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	if (!item)
		fail_msg("key '%s' missing", key);
	return item;
}

static const char *get_str(const cJSON *obj, const char *key)
{
	const cJSON *item = get(obj, key);

	assert_true(cJSON_IsString(item));
	return item->valuestring;
}

static double get_num(const cJSON *obj, const char *key)
{
	const cJSON *item = get(obj, key);

	assert_true(cJSON_IsNumber(item));
	return item->valuedouble;
}

/* ---- the message ------------------------------------------------------- */

static void message_has_every_contract_field(void **state)
{
	struct fixture *f = *state;
	const cJSON *req, *ref, *cand, *d, *body;
	cJSON *m;
	const char *t;

	add_diff(&f->diffs, DIFF_STATUS, "", DIFF_VALUE, cJSON_CreateNumber(200), cJSON_CreateNumber(500), true);
	add_diff(&f->diffs, DIFF_HEADER, "x-version", DIFF_MISSING, cJSON_CreateString("1"), NULL, false);
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_non_null(m);

	assert_string_equal(get_str(m, "id"), "0a1b2c:0001");
	assert_string_equal(get_str(m, "endpoint"), "GET /api/users/:id");
	assert_string_equal(get_str(m, "outcome"), "different");
	t = get_str(m, "time");   /* 2024-05-01T12:34:56.789Z */
	assert_int_equal(strlen(t), 24);
	assert_true(t[4] == '-' && t[10] == 'T' && t[19] == '.' && t[23] == 'Z');
	assert_true(cJSON_IsFalse(get(m, "cut")));

	req = get(m, "request");
	assert_string_equal(get_str(req, "method"), "GET");
	assert_string_equal(get_str(req, "path"), "/api/users/42");
	assert_string_equal(get_str(req, "query"), "verbose=1");
	assert_string_equal(get_str(get(req, "headers"), "host"), "shop.example");
	assert_string_equal(get_str(get(req, "headers"), "accept"), "application/json");
	assert_string_equal(get_str(get(req, "body"), "text"), "");

	ref = get(m, "reference");
	assert_int_equal((int)get_num(ref, "status"), 200);
	assert_string_equal(get_str(get(ref, "headers"), "content-type"), "application/json");
	body = get(get(ref, "body"), "json");
	assert_string_equal(get_str(body, "name"), "ann");
	assert_int_equal((int)get_num(body, "id"), 42);
	assert_true(cJSON_IsFalse(get(ref, "truncated")));
	assert_true(get_num(ref, "latency_ms") == 12.5);

	cand = get(m, "candidate");
	assert_int_equal((int)get_num(cand, "status"), 200);
	assert_string_equal(get_str(get(get(cand, "body"), "json"), "name"), "bob");
	assert_true(get_num(cand, "latency_ms") == 20.25);
	assert_null(cJSON_GetObjectItemCaseSensitive(m, "secondary"));

	assert_int_equal(cJSON_GetArraySize(get(m, "differences")), 3);
	d = cJSON_GetArrayItem(get(m, "differences"), 0);
	assert_string_equal(get_str(d, "where"), "body");
	assert_string_equal(get_str(d, "path"), "/name");
	assert_string_equal(get_str(d, "kind"), "value");
	assert_string_equal(get_str(d, "reference"), "ann");
	assert_string_equal(get_str(d, "candidate"), "bob");
	assert_true(cJSON_IsFalse(get(d, "noise")));
	d = cJSON_GetArrayItem(get(m, "differences"), 1);
	assert_string_equal(get_str(d, "where"), "status");
	assert_string_equal(get_str(d, "path"), "");
	assert_int_equal((int)get_num(d, "candidate"), 500);
	assert_true(cJSON_IsTrue(get(d, "noise")));
	d = cJSON_GetArrayItem(get(m, "differences"), 2);
	assert_string_equal(get_str(d, "kind"), "missing");
	assert_string_equal(get_str(d, "reference"), "1");
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "candidate"));   /* absent, not null */

	assert_int_equal(stats.published, 1);
	assert_int_equal(stats.messages_cut, 0);
	cJSON_Delete(m);
}

static void query_is_null_when_the_request_had_none(void **state)
{
	struct fixture *f = *state;
	cJSON *m;

	free(f->x.query);
	f->x.query = NULL;
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_true(cJSON_IsNull(get(get(m, "request"), "query")));
	cJSON_Delete(m);
}

static void text_and_binary_bodies_are_text_and_base64(void **state)
{
	struct fixture *f = *state;
	static const uint8_t bin[] = { 0x00, 0x01, 0x02, 0xff };
	static const char text[] = "h\xc3\xa9llo \"w\"\n";
	cJSON *m;

	http_headers_clear(&f->x.reference.headers);
	add_header(&f->x.reference.headers, "content-type", "text/plain");
	set_body(&f->x.reference, text, sizeof(text) - 1);
	http_headers_clear(&f->x.replies[ROLE_CANDIDATE].headers);
	add_header(&f->x.replies[ROLE_CANDIDATE].headers, "content-type", "application/octet-stream");
	set_body(&f->x.replies[ROLE_CANDIDATE], bin, sizeof(bin));
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_string_equal(get_str(get(get(m, "reference"), "body"), "text"), text);
	assert_string_equal(get_str(get(get(m, "candidate"), "body"), "base64"), "AAEC/w==");
	cJSON_Delete(m);
}

static void invalid_json_claiming_json_is_shown_as_text(void **state)
{
	struct fixture *f = *state;
	cJSON *m;

	set_body(&f->x.replies[ROLE_CANDIDATE], "{\"id\":", 6);
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_string_equal(get_str(get(get(m, "candidate"), "body"), "text"), "{\"id\":");
	cJSON_Delete(m);
}

static void json_bodies_keep_their_order_and_digits(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "{ \"z\": 1.0,\n  \"a\": [ 12345678901234567890, -0.50e+1 ] }";
	char *raw;
	cJSON *m;

	set_body(&f->x.reference, body, sizeof(body) - 1);
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_true(cJSON_IsObject(get(get(get(m, "reference"), "body"), "json")));
	cJSON_Delete(m);
	raw = read_file(f->path);
	assert_non_null(strstr(raw, "\"body\":{\"json\":{\"z\":1.0,\"a\":[12345678901234567890,-0.50e+1]}}"));
	free(raw);
}

static void json_bodies_beyond_rfc_8259_are_printed_from_the_tree(void **state)
{
	struct fixture *f = *state;
	static const char body[] = "{\"n\": 01., \"s\": \"caf\xe9\"}";   /* cJSON takes both */
	char *raw;
	cJSON *m;

	set_body(&f->x.reference, body, sizeof(body) - 1);
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_int_equal(get(get(get(get(m, "reference"), "body"), "json"), "n")->valueint, 1);
	assert_string_equal(get_str(get(get(get(m, "reference"), "body"), "json"), "s"), "caf\xef\xbf\xbd");
	cJSON_Delete(m);
	raw = read_file(f->path);
	assert_non_null(strstr(raw, "\"json\":{\"n\":1,\"s\":\"caf\xef\xbf\xbd\"}"));
	free(raw);
}

static void gzip_body_is_shown_decoded(void **state)
{
	struct fixture *f = *state;
	static const char json[] = "{\"zipped\":true,\"n\":[1,2,3]}";
	uint8_t out[256];
	z_stream zs = { 0 };
	const cJSON *body;
	cJSON *m;

	assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY), Z_OK);
	zs.next_in = (Bytef *)(uintptr_t)json;
	zs.avail_in = sizeof(json) - 1;
	zs.next_out = out;
	zs.avail_out = sizeof(out);
	assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
	set_body(&f->x.reference, out, zs.total_out);
	deflateEnd(&zs);
	add_header(&f->x.reference.headers, "content-encoding", "gzip");

	m = publish_one(f, OUTCOME_DIFFERENT);
	body = get(get(get(m, "reference"), "body"), "json");
	assert_true(cJSON_IsTrue(get(body, "zipped")));
	assert_int_equal(cJSON_GetArraySize(get(body, "n")), 3);
	cJSON_Delete(m);
}

static void sensitive_headers_are_redacted(void **state)
{
	struct fixture *f = *state;
	const cJSON *h;
	cJSON *m;

	add_header(&f->x.req_headers, "Cookie", "a=b");
	add_header(&f->x.req_headers, "proxy-authorization", "Basic eA==");
	m = publish_one(f, OUTCOME_DIFFERENT);
	h = get(get(m, "request"), "headers");
	assert_string_equal(get_str(h, "authorization"), "[redacted]");
	assert_string_equal(get_str(h, "cookie"), "[redacted]");
	assert_string_equal(get_str(h, "proxy-authorization"), "[redacted]");
	assert_string_equal(get_str(get(get(m, "reference"), "headers"), "set-cookie"), "[redacted]");
	cJSON_Delete(m);
	{
		char *raw = read_file(f->path);

		assert_null(strstr(raw, "secret-token"));
		assert_null(strstr(raw, "sid=123"));
		free(raw);
	}
}

static void redaction_list_comes_from_config(void **state)
{
	struct fixture *f = *state;
	static char custom[] = "X-Api-Key";
	static char *list[] = { custom };
	const cJSON *h;
	cJSON *m;

	f->cfg.redact_headers.items = list;
	f->cfg.redact_headers.count = 1;
	add_header(&f->x.req_headers, "x-api-key", "k");
	m = publish_one(f, OUTCOME_DIFFERENT);
	h = get(get(m, "request"), "headers");
	assert_string_equal(get_str(h, "x-api-key"), "[redacted]");
	assert_string_equal(get_str(h, "authorization"), "Bearer secret-token");
	cJSON_Delete(m);
}

static void redacted_header_differences_show_no_value(void **state)
{
	struct fixture *f = *state;
	const cJSON *d;
	cJSON *m;
	char *raw;

	/* set-cookie compared (taken out of ignore_headers): its difference
	 * says where, not what. */
	add_header(&f->x.replies[ROLE_CANDIDATE].headers, "set-cookie", "sid=456");
	add_diff(&f->diffs, DIFF_HEADER, "set-cookie", DIFF_VALUE, cJSON_CreateString("sid=123"),
		 cJSON_CreateString("sid=456"), false);
	add_diff(&f->diffs, DIFF_HEADER, "authorization", DIFF_EXTRA, NULL,
		 cJSON_CreateString("Bearer leaked"), false);
	m = publish_one(f, OUTCOME_DIFFERENT);
	d = cJSON_GetArrayItem(get(m, "differences"), 1);
	assert_string_equal(get_str(d, "path"), "set-cookie");
	assert_string_equal(get_str(d, "reference"), "[redacted]");
	assert_string_equal(get_str(d, "candidate"), "[redacted]");
	d = cJSON_GetArrayItem(get(m, "differences"), 2);
	assert_string_equal(get_str(d, "kind"), "extra");
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "reference"));
	assert_string_equal(get_str(d, "candidate"), "[redacted]");
	cJSON_Delete(m);
	raw = read_file(f->path);
	assert_null(strstr(raw, "sid=123"));
	assert_null(strstr(raw, "sid=456"));
	assert_null(strstr(raw, "leaked"));
	free(raw);
}

static void repeated_headers_are_joined(void **state)
{
	struct fixture *f = *state;
	cJSON *m;

	add_header(&f->x.reference.headers, "vary", "accept");
	add_header(&f->x.reference.headers, "vary", "origin");
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_string_equal(get_str(get(get(m, "reference"), "headers"), "vary"), "accept, origin");
	cJSON_Delete(m);
}

static void invalid_utf8_in_a_header_still_gives_valid_json(void **state)
{
	struct fixture *f = *state;
	cJSON *m;

	add_header(&f->x.reference.headers, "x-latin1", "caf\xe9");
	m = publish_one(f, OUTCOME_DIFFERENT);   /* read_lines asserts it parses */
	assert_string_equal(get_str(get(get(m, "reference"), "headers"), "x-latin1"), "caf\xef\xbf\xbd");
	cJSON_Delete(m);
}

static void candidate_error_has_reason_and_detail(void **state)
{
	struct fixture *f = *state;
	struct http_response *c = &f->x.replies[ROLE_CANDIDATE];
	const cJSON *cand;
	cJSON *m;

	http_response_clear(c);
	c->error = REPLAY_TIMEOUT;
	snprintf(c->error_detail, sizeof(c->error_detail), "Operation timed out after 5001 ms");
	free_diffs(&f->diffs);
	m = publish_one(f, OUTCOME_CANDIDATE_ERROR);
	assert_string_equal(get_str(m, "outcome"), "candidate_error");
	cand = get(m, "candidate");
	assert_string_equal(get_str(cand, "error"), "timeout");
	assert_string_equal(get_str(cand, "detail"), "Operation timed out after 5001 ms");
	assert_null(cJSON_GetObjectItemCaseSensitive(cand, "status"));
	assert_int_equal(cJSON_GetArraySize(get(m, "differences")), 0);
	cJSON_Delete(m);
}

static void secondary_is_present_when_configured(void **state)
{
	struct fixture *f = *state;
	struct http_response *s = &f->x.replies[ROLE_SECONDARY];
	cJSON *m;

	f->x.want[ROLE_SECONDARY] = f->x.have[ROLE_SECONDARY] = true;
	s->status = 200;
	add_header(&s->headers, "content-type", "application/json");
	set_body(s, "{\"name\":\"ann\"}", 14);
	f->diffs.items[0].noise = true;
	m = publish_one(f, OUTCOME_NOISE);
	assert_null(m);   /* default policy: noise is not published */
	f->cfg.publish = PUBLISH_NOISE;
	m = publish_one(f, OUTCOME_NOISE);
	assert_non_null(m);
	assert_string_equal(get_str(m, "outcome"), "noise");
	assert_int_equal((int)get_num(get(m, "secondary"), "status"), 200);
	assert_string_equal(get_str(get(get(get(m, "secondary"), "body"), "json"), "name"), "ann");
	cJSON_Delete(m);
}

/* ---- size cap ---------------------------------------------------------- */

static void large_bodies_are_cut_under_the_cap(void **state)
{
	struct fixture *f = *state;
	size_t big = 200000, longest;
	char *text = malloc(big);
	const cJSON *body;
	cJSON *msgs[2];
	struct publish *p;
	char err[256];

	memset(text, 'a', big);
	http_headers_clear(&f->x.reference.headers);
	add_header(&f->x.reference.headers, "content-type", "text/plain");
	set_body(&f->x.reference, text, big);
	free(text);
	f->cfg.max_message = 16384;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	assert_non_null(p);
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	publish_free(p, 1);
	assert_int_equal(read_lines(f->path, msgs, 2, &longest), 1);
	assert_true(longest <= 16384);
	assert_true(longest > 8000);   /* the budget is used, not thrown away */
	assert_true(cJSON_IsTrue(get(msgs[0], "cut")));
	body = get(get(msgs[0], "reference"), "body");
	assert_true(cJSON_IsTrue(get(body, "cut")));
	assert_int_equal((int)get_num(body, "size"), 200000);
	assert_true(strlen(get_str(body, "text")) > 8000);
	/* the small candidate body is whole */
	assert_string_equal(get_str(get(get(get(msgs[0], "candidate"), "body"), "json"), "name"), "bob");
	assert_int_equal(stats.messages_cut, 1);
	assert_int_equal(stats.published, 1);
	cJSON_Delete(msgs[0]);
}

static void huge_differences_are_cut_under_the_cap(void **state)
{
	struct fixture *f = *state;
	char value[600];
	size_t longest;
	cJSON *msgs[2];
	const cJSON *d;
	struct publish *p;
	char err[256];

	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	for (int i = 0; i < 2000; i++) {
		char path[32];

		snprintf(path, sizeof(path), "/items/%d", i);
		add_diff(&f->diffs, DIFF_BODY, path, DIFF_VALUE, cJSON_CreateString(value),
			 cJSON_CreateNumber(i), false);
	}
	f->cfg.max_message = 8192;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	publish_free(p, 1);
	assert_int_equal(read_lines(f->path, msgs, 2, &longest), 1);
	assert_true(longest <= 8192);
	assert_true(cJSON_IsTrue(get(msgs[0], "cut")));
	assert_int_equal((int)get_num(msgs[0], "differences_total"), 2001);
	assert_true(cJSON_GetArraySize(get(msgs[0], "differences")) > 10);
	d = cJSON_GetArrayItem(get(msgs[0], "differences"), 1);
	assert_true(cJSON_IsTrue(get(d, "cut")));   /* the 600-byte value left out */
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "reference"));
	assert_int_equal((int)get_num(d, "candidate"), 0);
	assert_int_equal(stats.messages_cut, 1);
	cJSON_Delete(msgs[0]);
}

static void a_value_bigger_than_the_message_is_left_out_not_the_headers(void **state)
{
	struct fixture *f = *state;
	char *value = malloc(20001);
	size_t longest;
	cJSON *msgs[2];
	const cJSON *d;
	struct publish *p;
	char err[256];

	/* One difference whose value alone is over max_message: the value is
	 * left out (step 3), the headers and the difference stay. */
	assert_non_null(value);
	memset(value, 'v', 20000);
	value[20000] = '\0';
	add_diff(&f->diffs, DIFF_BODY, "/blob", DIFF_VALUE, cJSON_CreateString(value),
		 cJSON_CreateString("small"), false);
	free(value);
	f->cfg.max_message = 8192;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	publish_free(p, 1);
	assert_int_equal(read_lines(f->path, msgs, 2, &longest), 1);
	assert_true(longest <= 8192);
	assert_true(cJSON_IsTrue(get(msgs[0], "cut")));
	assert_string_equal(get_str(get(get(msgs[0], "request"), "headers"), "host"), "shop.example");
	assert_null(cJSON_GetObjectItemCaseSensitive(msgs[0], "differences_total"));
	assert_int_equal(cJSON_GetArraySize(get(msgs[0], "differences")), 2);
	d = cJSON_GetArrayItem(get(msgs[0], "differences"), 0);
	assert_string_equal(get_str(d, "candidate"), "bob");   /* small values stay */
	d = cJSON_GetArrayItem(get(msgs[0], "differences"), 1);
	assert_string_equal(get_str(d, "path"), "/blob");
	assert_true(cJSON_IsTrue(get(d, "cut")));
	assert_null(cJSON_GetObjectItemCaseSensitive(d, "reference"));
	assert_string_equal(get_str(d, "candidate"), "small");
	cJSON_Delete(msgs[0]);
}

static void message_that_cannot_fit_is_counted_not_written(void **state)
{
	struct fixture *f = *state;
	cJSON *m;

	f->cfg.max_message = 64;
	m = publish_one(f, OUTCOME_DIFFERENT);
	assert_null(m);
	assert_int_equal(stats.published, 0);
	assert_int_equal(stats.sink_errors, 1);
}

/* ---- policy ------------------------------------------------------------ */

static void equal_is_not_published_by_default(void **state)
{
	struct fixture *f = *state;

	assert_null(publish_one(f, OUTCOME_EQUAL));
	assert_null(publish_one(f, OUTCOME_NOISE));
	assert_int_equal(stats.published, 0);
}

static void skipped_and_expired_are_never_published(void **state)
{
	struct fixture *f = *state;

	f->cfg.publish = PUBLISH_ALL;
	assert_null(publish_one(f, OUTCOME_SKIPPED));
	assert_null(publish_one(f, OUTCOME_EXPIRED));
	assert_null(publish_one(f, OUTCOME_DROPPED));
}

static void samples_keep_every_difference_whatever_publish_sends(void **state)
{
	static const enum outcome all[] = { OUTCOME_EQUAL, OUTCOME_DIFFERENT, OUTCOME_NOISE,
					    OUTCOME_CANDIDATE_ERROR, OUTCOME_SKIPPED, OUTCOME_EXPIRED,
					    OUTCOME_DROPPED };
	struct samples_limits lim = { 10, 0, 1 << 20, 100, 8 << 20 };
	char err[256];
	struct samples *s = samples_new(&lim, err, sizeof(err));
	struct fixture *f = *state;
	struct samples_counts sc;
	cJSON *msgs[8];
	struct publish *p;

	assert_non_null(s);
	assert_int_equal(truncate(f->path, 0), 0);
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));   /* publish=differences */
	assert_non_null(p);
	publish_set_samples(p, s);
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		publish_exchange(p, &f->x, all[i], &f->diffs);
	publish_free(p, 1);
	/* Sent: different and candidate_error; kept: those and noise. */
	assert_int_equal(read_lines(f->path, msgs, 8, NULL), 2);
	assert_string_equal(get_str(msgs[0], "outcome"), "different");
	assert_string_equal(get_str(msgs[1], "outcome"), "candidate_error");
	samples_counts(s, &sc);
	assert_int_equal(sc.taken, 3);
	assert_int_equal(stats.published, 2);
	cJSON_Delete(msgs[0]);
	cJSON_Delete(msgs[1]);
	samples_free(s);
}

static void policy_all_publishes_equal_at_the_sample_rate(void **state)
{
	struct fixture *f = *state;
	cJSON *msgs[1100];
	struct publish *p;
	char err[256];
	size_t n;

	f->cfg.publish = PUBLISH_ALL;
	f->cfg.sample_rate = 1;
	msgs[0] = publish_one(f, OUTCOME_EQUAL);
	assert_non_null(msgs[0]);
	assert_string_equal(get_str(msgs[0], "outcome"), "equal");
	cJSON_Delete(msgs[0]);

	f->cfg.sample_rate = 0;
	assert_null(publish_one(f, OUTCOME_EQUAL));
	msgs[0] = publish_one(f, OUTCOME_DIFFERENT);   /* differences are never sampled out */
	assert_non_null(msgs[0]);
	cJSON_Delete(msgs[0]);

	assert_int_equal(truncate(f->path, 0), 0);
	f->cfg.sample_rate = 0.25;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	for (int i = 0; i < 1000; i++)
		publish_exchange(p, &f->x, OUTCOME_EQUAL, NULL);
	publish_free(p, 1);
	n = read_lines(f->path, msgs, 1100, NULL);
	assert_true(n > 150 && n < 350);
	for (size_t i = 0; i < n; i++)
		cJSON_Delete(msgs[i]);
}

/* ---- sinks ------------------------------------------------------------- */

static void stdout_sink_writes_one_line_per_message(void **state)
{
	struct fixture *f = *state;
	static char sink[] = "stdout";
	int saved = dup(STDOUT_FILENO), fd = open(f->path, O_WRONLY | O_TRUNC);
	cJSON *msgs[3];
	struct publish *p;
	char err[256];

	assert_true(saved != -1 && fd != -1);
	f->cfg.sink = sink;
	fflush(stdout);
	assert_int_equal(dup2(fd, STDOUT_FILENO), STDOUT_FILENO);
	close(fd);
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	assert_non_null(p);
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	publish_exchange(p, &f->x, OUTCOME_CANDIDATE_ERROR, NULL);
	publish_free(p, 1);
	assert_int_equal(dup2(saved, STDOUT_FILENO), STDOUT_FILENO);
	close(saved);
	assert_int_equal(read_lines(f->path, msgs, 3, NULL), 2);
	assert_string_equal(get_str(msgs[0], "outcome"), "different");
	assert_string_equal(get_str(msgs[1], "outcome"), "candidate_error");
	assert_int_equal(stats.published, 2);
	cJSON_Delete(msgs[0]);
	cJSON_Delete(msgs[1]);
}

static void file_sink_reopens_for_rotation(void **state)
{
	struct fixture *f = *state;
	char rotated[80];
	cJSON *msgs[2];
	struct publish *p;
	char err[256];

	snprintf(rotated, sizeof(rotated), "%s.1", f->path);
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	assert_int_equal(rename(f->path, rotated), 0);
	publish_reopen(p);
	publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	publish_free(p, 1);
	assert_int_equal(read_lines(rotated, msgs, 2, NULL), 1);
	cJSON_Delete(msgs[0]);
	assert_int_equal(read_lines(f->path, msgs, 2, NULL), 1);
	cJSON_Delete(msgs[0]);
	unlink(rotated);
}

static void bad_sinks_are_refused_with_a_message(void **state)
{
	struct fixture *f = *state;
	static char bogus[] = "carrier-pigeon", nodir[] = "file:/nonexistent-dir/x.jsonl", kafka[] = "kafka";
	static char badprop[] = "linger.ms", unknown[] = "no.such.property=1";
	static char *props1[] = { badprop }, *props2[] = { unknown };
	char err[256];

	f->cfg.sink = bogus;
	assert_null(publish_new(f->loop, &f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "carrier-pigeon"));
	f->cfg.sink = nodir;
	assert_null(publish_new(f->loop, &f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "/nonexistent-dir/x.jsonl"));
	f->cfg.sink = kafka;
	assert_null(publish_new(f->loop, &f->cfg, err, sizeof(err)));   /* no brokers */
	assert_non_null(strstr(err, "brokers"));
	f->cfg.kafka_brokers = s_topic;   /* any string: librdkafka resolves lazily */
	f->cfg.kafka_properties.items = props1;
	f->cfg.kafka_properties.count = 1;
	assert_null(publish_new(f->loop, &f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "key=value"));
	f->cfg.kafka_properties.items = props2;
	assert_null(publish_new(f->loop, &f->cfg, err, sizeof(err)));
	assert_non_null(strstr(err, "no.such.property"));
}

/* ---- kafka ------------------------------------------------------------- */

static void on_timeout(struct ev_loop *loop, ev_timer *w, int revents)
{
	ev_break(loop, EVBREAK_ALL);
}

static void run_until_delivered(struct fixture *f, uint64_t want, double max)
{
	ev_timer t;
	ev_tstamp end = ev_time() + max;

	ev_timer_init(&t, on_timeout, 0.05, 0);
	while (stats.kafka_delivered + stats.kafka_failed < want && ev_time() < end) {
		ev_timer_start(f->loop, &t);
		ev_run(f->loop, EVRUN_ONCE);
		ev_timer_stop(f->loop, &t);
	}
}

/* test.mock.num.brokers makes librdkafka start its own mock cluster: the
 * real wire protocol, serviced through the loop's wake-up pipe. */
static void kafka_sink_delivers_through_the_loop(void **state)
{
	struct fixture *f = *state;
	static char kafka[] = "kafka", brokers[] = "127.0.0.1:1", mock[] = "test.mock.num.brokers=1";
	static char *props[] = { mock };
	struct publish *p;
	char err[256];

	f->cfg.sink = kafka;
	f->cfg.kafka_brokers = brokers;
	f->cfg.kafka_properties.items = props;
	f->cfg.kafka_properties.count = 1;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	assert_non_null(p);
	for (int i = 0; i < 3; i++)
		publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	assert_int_equal(stats.published, 3);
	run_until_delivered(f, 3, 10);
	assert_int_equal(stats.kafka_delivered, 3);
	assert_int_equal(stats.kafka_failed, 0);
	publish_free(p, 1);
	assert_int_equal(stats.kafka_queue_depth, 0);
}

static void kafka_sink_counts_drops_and_undelivered_messages(void **state)
{
	struct fixture *f = *state;
	static char kafka[] = "kafka", brokers[] = "127.0.0.1:1", qmax[] = "queue.buffering.max.messages=2";
	static char *props[] = { qmax };
	struct publish *p;
	char err[256];
	ev_tstamp t0;

	f->cfg.sink = kafka;
	f->cfg.kafka_brokers = brokers;   /* nothing listens there */
	f->cfg.kafka_properties.items = props;
	f->cfg.kafka_properties.count = 1;
	p = publish_new(f->loop, &f->cfg, err, sizeof(err));
	assert_non_null(p);
	t0 = ev_time();
	for (int i = 0; i < 5; i++)
		publish_exchange(p, &f->x, OUTCOME_DIFFERENT, &f->diffs);
	assert_true(ev_time() - t0 < 0.5);   /* a full queue fails at once */
	assert_int_equal(stats.published, 2);
	assert_int_equal(stats.kafka_dropped, 3);
	publish_free(p, 0.2);
	assert_int_equal(stats.kafka_failed, 2);
	assert_int_equal(stats.kafka_delivered, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(message_has_every_contract_field, setup, teardown),
		cmocka_unit_test_setup_teardown(query_is_null_when_the_request_had_none, setup, teardown),
		cmocka_unit_test_setup_teardown(text_and_binary_bodies_are_text_and_base64, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_json_claiming_json_is_shown_as_text, setup, teardown),
		cmocka_unit_test_setup_teardown(json_bodies_keep_their_order_and_digits, setup, teardown),
		cmocka_unit_test_setup_teardown(json_bodies_beyond_rfc_8259_are_printed_from_the_tree, setup, teardown),
		cmocka_unit_test_setup_teardown(gzip_body_is_shown_decoded, setup, teardown),
		cmocka_unit_test_setup_teardown(sensitive_headers_are_redacted, setup, teardown),
		cmocka_unit_test_setup_teardown(redaction_list_comes_from_config, setup, teardown),
		cmocka_unit_test_setup_teardown(redacted_header_differences_show_no_value, setup, teardown),
		cmocka_unit_test_setup_teardown(repeated_headers_are_joined, setup, teardown),
		cmocka_unit_test_setup_teardown(invalid_utf8_in_a_header_still_gives_valid_json, setup, teardown),
		cmocka_unit_test_setup_teardown(candidate_error_has_reason_and_detail, setup, teardown),
		cmocka_unit_test_setup_teardown(secondary_is_present_when_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(large_bodies_are_cut_under_the_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(huge_differences_are_cut_under_the_cap, setup, teardown),
		cmocka_unit_test_setup_teardown(a_value_bigger_than_the_message_is_left_out_not_the_headers, setup,
						teardown),
		cmocka_unit_test_setup_teardown(message_that_cannot_fit_is_counted_not_written, setup, teardown),
		cmocka_unit_test_setup_teardown(equal_is_not_published_by_default, setup, teardown),
		cmocka_unit_test_setup_teardown(skipped_and_expired_are_never_published, setup, teardown),
		cmocka_unit_test_setup_teardown(samples_keep_every_difference_whatever_publish_sends, setup, teardown),
		cmocka_unit_test_setup_teardown(policy_all_publishes_equal_at_the_sample_rate, setup, teardown),
		cmocka_unit_test_setup_teardown(stdout_sink_writes_one_line_per_message, setup, teardown),
		cmocka_unit_test_setup_teardown(file_sink_reopens_for_rotation, setup, teardown),
		cmocka_unit_test_setup_teardown(bad_sinks_are_refused_with_a_message, setup, teardown),
		cmocka_unit_test_setup_teardown(kafka_sink_delivers_through_the_loop, setup, teardown),
		cmocka_unit_test_setup_teardown(kafka_sink_counts_drops_and_undelivered_messages, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
