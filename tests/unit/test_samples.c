/* Unit tests of samples: the dashboard's recent differing exchanges, their
 * bounds (per endpoint, per field, bytes, in all) and counted evictions. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "jsonw.h"
#include "samples.h"

#define EP_A "GET /a"
#define EP_B "GET /b"

static struct samples *store(unsigned per_endpoint, unsigned per_field, size_t endpoint_bytes, unsigned max,
			     size_t max_bytes)
{
	struct samples_limits lim = { per_endpoint, per_field, endpoint_bytes, max, max_bytes };
	char err[64];
	struct samples *s = samples_new(&lim, err, sizeof(err));

	assert_non_null(s);
	return s;
}

/* Adds a sample of endpoint whose message is `{"id":"<id>"}` padded to len
 * bytes (at least the JSON), differing in field (NULL: none). */
static int add(struct samples *s, const char *id, const char *endpoint, const char *field, bool noise, size_t len)
{
	struct sample_field f = { field, "value", noise };
	char msg[4096];
	int n = snprintf(msg, sizeof(msg), "{\"id\":\"%s\"}", id);

	assert_true(n > 0 && (size_t)n < sizeof(msg) && len < sizeof(msg));
	if (len > (size_t)n)
		memset(msg + n, ' ', len - (size_t)n);
	return samples_add(s, id, endpoint, OUTCOME_DIFFERENT, field ? &f : NULL, field ? 1 : 0, msg,
			   len > (size_t)n ? len : (size_t)n, 1800000000.0);
}

static bool kept(struct samples *s, const char *id)
{
	struct sample *x = samples_get(s, id);

	samples_release(x);
	return x != NULL;
}

static struct samples_counts counts(struct samples *s)
{
	struct samples_counts c;

	samples_counts(s, &c);
	return c;
}

static void test_a_sample_is_a_copy_of_the_message(void **state)
{
	struct samples *s = store(10, 0, 1 << 20, 100, 1 << 20);
	struct sample_field f = { "body:/x", "type", false };
	char msg[] = "{\"id\":\"x1\"}";
	struct sample *x;
	const char *text;
	size_t len;

	(void)state;
	assert_int_equal(samples_add(s, "x1", EP_A, OUTCOME_NOISE, &f, 1, msg, strlen(msg), 1800000000.0), 0);
	msg[2] = 'X';
	x = samples_get(s, "x1");
	assert_non_null(x);
	text = sample_text(x, &len);
	assert_int_equal(len, strlen(msg));
	assert_memory_equal(text, "{\"id\":\"x1\"}", len);
	samples_release(x);
	assert_null(samples_get(s, "x2"));
	assert_int_equal(counts(s).stored, 1);
	assert_int_equal(counts(s).bytes, len);
	samples_free(s);
}

static void test_per_endpoint_bound_evicts_the_oldest_of_that_endpoint(void **state)
{
	struct samples *s = store(2, 0, 1 << 20, 100, 1 << 20);
	struct samples_counts c;

	(void)state;
	assert_int_equal(add(s, "b1", EP_B, "status", false, 0), 0);
	assert_int_equal(add(s, "a1", EP_A, "status", false, 0), 0);
	assert_int_equal(add(s, "a2", EP_A, "status", false, 0), 0);
	assert_int_equal(add(s, "a3", EP_A, "status", false, 0), 0);
	assert_false(kept(s, "a1"));
	assert_true(kept(s, "a2") && kept(s, "a3") && kept(s, "b1"));
	c = counts(s);
	assert_int_equal(c.evicted[SAMPLES_EVICT_ENDPOINT], 1);
	assert_int_equal(c.taken, 4);
	assert_int_equal(c.stored, 3);
	samples_free(s);
}

static void test_per_field_bound_keeps_the_newest_of_each_field(void **state)
{
	struct samples *s = store(10, 2, 1 << 20, 100, 1 << 20);

	(void)state;
	add(s, "len1", EP_A, "body:/length", false, 0);
	add(s, "up1", EP_A, "body:/upper", false, 0);
	add(s, "len2", EP_A, "body:/length", false, 0);
	add(s, "len3", EP_A, "body:/length", false, 0);
	/* A rarer field keeps its sample while a frequent one turns over. */
	assert_false(kept(s, "len1"));
	assert_true(kept(s, "len2") && kept(s, "len3") && kept(s, "up1"));
	/* The same field of another endpoint is another field. */
	add(s, "b1", EP_B, "body:/length", false, 0);
	assert_true(kept(s, "len2"));
	assert_int_equal(counts(s).evicted[SAMPLES_EVICT_FIELD], 1);
	samples_free(s);
}

static void test_noise_fields_do_not_push_regressions_out(void **state)
{
	struct samples *s = store(10, 1, 1 << 20, 100, 1 << 20);
	struct sample_field both[] = { { "body:/length", "value", false }, { "body:/meta/ts", "value", true } };
	struct sample_field noisy[] = { { "body:/meta/ts", "value", true } };
	const char msg[] = "{}";

	(void)state;
	assert_int_equal(samples_add(s, "real", EP_A, OUTCOME_DIFFERENT, both, 2, msg, 2, 1.0), 0);
	assert_int_equal(samples_add(s, "n1", EP_A, OUTCOME_NOISE, noisy, 1, msg, 2, 2.0), 0);
	assert_int_equal(samples_add(s, "n2", EP_A, OUTCOME_NOISE, noisy, 1, msg, 2, 3.0), 0);
	/* The noise-only samples share their bound; the regression is apart. */
	assert_true(kept(s, "real"));
	assert_false(kept(s, "n1"));
	assert_true(kept(s, "n2"));
	samples_free(s);
}

static void test_endpoint_bytes_bound_evicts_until_the_new_one_fits(void **state)
{
	struct samples *s = store(10, 0, 300, 100, 1 << 20);

	(void)state;
	add(s, "a1", EP_A, NULL, false, 100);
	add(s, "a2", EP_A, NULL, false, 100);
	add(s, "b1", EP_B, NULL, false, 250);
	add(s, "a3", EP_A, NULL, false, 150);
	assert_false(kept(s, "a1"));
	assert_true(kept(s, "a2") && kept(s, "a3") && kept(s, "b1"));
	assert_int_equal(counts(s).evicted[SAMPLES_EVICT_ENDPOINT_BYTES], 1);
	assert_int_equal(counts(s).bytes, 100 + 250 + 150);
	samples_free(s);
}

static void test_total_bounds_evict_the_oldest_of_any_endpoint(void **state)
{
	struct samples *s = store(10, 0, 1000, 3, 1 << 20);

	(void)state;
	add(s, "a1", EP_A, NULL, false, 0);
	add(s, "b1", EP_B, NULL, false, 0);
	add(s, "a2", EP_A, NULL, false, 0);
	add(s, "b2", EP_B, NULL, false, 0);
	assert_false(kept(s, "a1"));
	assert_true(kept(s, "b1") && kept(s, "a2") && kept(s, "b2"));
	assert_int_equal(counts(s).stored, 3);
	assert_int_equal(counts(s).evicted[SAMPLES_EVICT_TOTAL], 1);
	samples_free(s);

	/* Bytes in all: 1000, a third message of 400 does not fit. */
	s = store(10, 0, 1000, 100, 1000);
	add(s, "a1", EP_A, NULL, false, 400);
	add(s, "b1", EP_B, NULL, false, 400);
	add(s, "c1", "GET /c", NULL, false, 400);
	assert_false(kept(s, "a1"));
	assert_true(kept(s, "b1") && kept(s, "c1"));
	assert_int_equal(counts(s).bytes, 800);
	assert_int_equal(counts(s).evicted[SAMPLES_EVICT_TOTAL], 1);
	samples_free(s);
}

static void test_a_message_over_the_bound_is_refused_and_counted(void **state)
{
	struct samples *s = store(10, 0, 200, 100, 150);

	(void)state;
	assert_int_equal(samples_max_message(s), 150);
	assert_int_equal(add(s, "ok", EP_A, NULL, false, 150), 0);
	assert_int_equal(add(s, "big", EP_A, NULL, false, 151), -1);
	assert_false(kept(s, "big"));
	assert_true(kept(s, "ok"));
	assert_int_equal(counts(s).too_large, 1);
	assert_int_equal(counts(s).taken, 1);
	samples_free(s);
}

static void test_zero_per_endpoint_keeps_nothing(void **state)
{
	struct samples *s = store(0, 0, 1000, 100, 1000);

	(void)state;
	assert_int_equal(samples_max_message(s), 0);
	assert_int_equal(add(s, "a1", EP_A, NULL, false, 0), -1);
	assert_int_equal(counts(s).stored, 0);
	samples_free(s);
	assert_int_equal(samples_max_message(NULL), 0);
}

static void test_a_held_sample_outlives_its_eviction(void **state)
{
	struct samples *s = store(1, 0, 1000, 100, 1000);
	struct sample *x;
	const char *text;
	size_t len;

	(void)state;
	add(s, "a1", EP_A, NULL, false, 0);
	x = samples_get(s, "a1");
	assert_non_null(x);
	add(s, "a2", EP_A, NULL, false, 0);
	assert_false(kept(s, "a1"));
	/* Still readable by the admin thread that holds it (ASan would say). */
	text = sample_text(x, &len);
	assert_memory_equal(text, "{\"id\":\"a1\"}", len);
	samples_release(x);
	/* And across samples_free. */
	x = samples_get(s, "a2");
	samples_free(s);
	text = sample_text(x, &len);
	assert_memory_equal(text, "{\"id\":\"a2\"}", len);
	samples_release(x);
}

static void test_the_newest_sample_of_an_id_is_the_one_served(void **state)
{
	struct samples *s = store(10, 0, 1000, 100, 1000);
	struct sample *x;
	size_t len;

	(void)state;
	add(s, "dup", EP_A, NULL, false, 0);
	add(s, "dup", EP_A, NULL, false, 20);
	x = samples_get(s, "dup");
	sample_text(x, &len);
	assert_int_equal(len, 20);
	samples_release(x);
	samples_free(s);
}

static void test_fields_are_deduplicated_and_capped(void **state)
{
	struct samples *s = store(10, 0, 1 << 20, 100, 1 << 20);
	struct sample_field f[SAMPLES_MAX_FIELDS + 5];
	char keys[SAMPLES_MAX_FIELDS + 5][32];
	struct jsonw w;
	cJSON *doc, *fields;

	(void)state;
	for (size_t i = 0; i < SAMPLES_MAX_FIELDS + 5; i++) {
		snprintf(keys[i], sizeof(keys[i]), "body:/f%zu", i < 2 ? (size_t)0 : i);
		f[i] = (struct sample_field){ keys[i], i == 3 ? "order" : "nonsense", false };
	}
	assert_int_equal(samples_add(s, "x", EP_A, OUTCOME_DIFFERENT, f, SAMPLES_MAX_FIELDS + 5, "{}", 2, 1.0), 0);
	jsonw_init(&w, 1 << 20);
	jsonw_open(&w, '{');
	samples_write_index(s, &w, NULL, NULL);
	jsonw_close(&w, '}');
	assert_true(jsonw_ok(&w));
	doc = cJSON_ParseWithLength(w.b.p, w.b.len);
	assert_non_null(doc);
	fields = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(doc, "samples"), 0), "fields");
	assert_int_equal(cJSON_GetArraySize(fields), SAMPLES_MAX_FIELDS);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 0), "field")->valuestring, "body:/f0");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 1), "field")->valuestring, "body:/f2");
	/* An unknown kind is shown as "value"; a known one as itself. */
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 0), "kind")->valuestring, "value");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(fields, 2), "kind")->valuestring, "order");
	cJSON_Delete(doc);
	jsonw_free(&w);
	samples_free(s);
}

static cJSON *index_of(struct samples *s, const char *endpoint, const char *field)
{
	struct jsonw w;
	cJSON *doc;

	jsonw_init(&w, 1 << 20);
	jsonw_open(&w, '{');
	samples_write_index(s, &w, endpoint, field);
	jsonw_close(&w, '}');
	assert_true(jsonw_ok(&w));
	doc = cJSON_ParseWithLength(w.b.p, w.b.len);
	jsonw_free(&w);
	assert_non_null(doc);
	return doc;
}

static void test_the_index_lists_newest_first_and_filters(void **state)
{
	struct samples *s = store(10, 0, 1 << 20, 100, 1 << 20);
	cJSON *doc, *list;

	(void)state;
	add(s, "a1", EP_A, "status", false, 0);
	add(s, "b1", EP_B, "header:etag", false, 0);
	add(s, "a2", EP_A, "body:/x", false, 0);
	doc = index_of(s, NULL, NULL);
	list = cJSON_GetObjectItem(doc, "samples");
	assert_int_equal(cJSON_GetArraySize(list), 3);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")->valuestring, "a2");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 2), "id")->valuestring, "a1");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "outcome")->valuestring, "different");
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "time")->valuestring,
			    "2027-01-15T08:00:00.000Z");
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "counts"), "stored")->valueint, 3);
	assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(doc, "limits"), "per_endpoint")->valueint, 10);
	cJSON_Delete(doc);
	doc = index_of(s, EP_A, NULL);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(doc, "samples")), 2);
	cJSON_Delete(doc);
	doc = index_of(s, EP_A, "status");
	list = cJSON_GetObjectItem(doc, "samples");
	assert_int_equal(cJSON_GetArraySize(list), 1);
	assert_string_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(list, 0), "id")->valuestring, "a1");
	cJSON_Delete(doc);
	samples_free(s);
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_a_sample_is_a_copy_of_the_message),
		cmocka_unit_test(test_per_endpoint_bound_evicts_the_oldest_of_that_endpoint),
		cmocka_unit_test(test_per_field_bound_keeps_the_newest_of_each_field),
		cmocka_unit_test(test_noise_fields_do_not_push_regressions_out),
		cmocka_unit_test(test_endpoint_bytes_bound_evicts_until_the_new_one_fits),
		cmocka_unit_test(test_total_bounds_evict_the_oldest_of_any_endpoint),
		cmocka_unit_test(test_a_message_over_the_bound_is_refused_and_counted),
		cmocka_unit_test(test_zero_per_endpoint_keeps_nothing),
		cmocka_unit_test(test_a_held_sample_outlives_its_eviction),
		cmocka_unit_test(test_the_newest_sample_of_an_id_is_the_one_served),
		cmocka_unit_test(test_fields_are_deduplicated_and_capped),
		cmocka_unit_test(test_the_index_lists_newest_first_and_filters),
	};

	return cmocka_run_group_tests_name("samples", tests, NULL, NULL);
}
