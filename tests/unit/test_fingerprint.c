/* Unit tests of fingerprint: the string that names how an exchange
 * differs, and the table that groups and limits exchanges by it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compare.h"
#include "fingerprint.h"

/* A diff list from "where kind path;where kind path;..." (path may be
 * empty). */
static void diffs_set(struct diff_list *l, const char *spec)
{
	char *copy = strdup(spec), *tok, *save = NULL;

	assert_non_null(copy);
	memset(l, 0, sizeof(*l));
	l->items = calloc(32, sizeof(*l->items));
	assert_non_null(l->items);
	l->cap = 32;
	for (tok = strtok_r(copy, ";", &save); tok; tok = strtok_r(NULL, ";", &save)) {
		struct difference *d = &l->items[l->count++];
		char where[16] = "", kind[16] = "", path[128] = "";

		assert_true(sscanf(tok, "%15s %15s %127s", where, kind, path) >= 2);
		d->where = strcmp(where, "status") == 0 ? DIFF_STATUS :
			   strcmp(where, "header") == 0 ? DIFF_HEADER : DIFF_BODY;
		for (int k = 0; k < DIFF_KIND_COUNT; k++)
			if (strcmp(kind, diff_kind_name((enum diff_kind)k)) == 0)
				d->kind = (enum diff_kind)k;
		d->path = strdup(path);
		assert_non_null(d->path);
	}
	free(copy);
}

static void fp_of(const char *spec, char out[FINGERPRINT_LEN + 1])
{
	struct diff_list l;

	diffs_set(&l, spec);
	fingerprint_of(&l, OUTCOME_DIFFERENT, REPLAY_OK, out);
	diff_list_clear(&l);
}

static void assert_same(const char *a, const char *b)
{
	char x[FINGERPRINT_LEN + 1], y[FINGERPRINT_LEN + 1];

	fp_of(a, x);
	fp_of(b, y);
	if (strcmp(x, y) != 0)
		fail_msg("\"%s\" (%s) and \"%s\" (%s) should have one fingerprint", a, x, b, y);
}

static void assert_differ(const char *a, const char *b)
{
	char x[FINGERPRINT_LEN + 1], y[FINGERPRINT_LEN + 1];

	fp_of(a, x);
	fp_of(b, y);
	if (strcmp(x, y) == 0)
		fail_msg("\"%s\" and \"%s\" should differ, both %s", a, b, x);
}

static void test_fingerprint_is_16_lower_case_hex_digits(void **state)
{
	char fp[FINGERPRINT_LEN + 1];

	(void)state;
	fp_of("body value /a", fp);
	assert_int_equal(strlen(fp), 16);
	assert_int_equal(strspn(fp, "0123456789abcdef"), 16);
}

static void test_same_set_gives_the_same_fingerprint(void **state)
{
	(void)state;
	assert_same("body value /a;header missing x-id", "body value /a;header missing x-id");
}

static void test_order_of_the_differences_does_not_matter(void **state)
{
	(void)state;
	assert_same("body value /a;header missing x-id;status value", "status value;header missing x-id;body value /a");
}

static void test_array_indices_are_collapsed(void **state)
{
	(void)state;
	assert_same("body value /items/0/price", "body value /items/17/price");
	assert_same("body missing /a/3/b/12", "body missing /a/0/b/0");
	/* A set: many elements of an array differing like one. */
	assert_same("body value /items/0/price;body value /items/1/price", "body value /items/5/price");
	assert_differ("body value /items/a/price", "body value /items/b/price");
	assert_differ("body value /items/0/price", "body value /items/0/cost");
}

static void test_different_kind_or_path_or_where_gives_another_fingerprint(void **state)
{
	(void)state;
	assert_differ("body value /a", "body type /a");
	assert_differ("body missing /a", "body extra /a");
	assert_differ("body value /a", "body value /b");
	assert_differ("header value x", "header value y");
	assert_differ("header value /a", "body value /a");
	assert_differ("body value /a", "body value /a;body value /b");
	/* Header names are not paths: digits stay. */
	assert_differ("header value x-1", "header value x-2");
}

static void test_candidate_errors_fingerprint_their_error(void **state)
{
	char none[FINGERPRINT_LEN + 1], t1[FINGERPRINT_LEN + 1], t2[FINGERPRINT_LEN + 1],
	     c1[FINGERPRINT_LEN + 1];

	(void)state;
	fingerprint_of(NULL, OUTCOME_EQUAL, REPLAY_OK, none);
	fingerprint_of(NULL, OUTCOME_CANDIDATE_ERROR, REPLAY_TIMEOUT, t1);
	fingerprint_of(NULL, OUTCOME_CANDIDATE_ERROR, REPLAY_TIMEOUT, t2);
	fingerprint_of(NULL, OUTCOME_CANDIDATE_ERROR, REPLAY_CONNECT, c1);
	assert_string_equal(t1, t2);
	assert_string_not_equal(t1, c1);
	assert_string_not_equal(t1, none);
}

/* ---- the table ---------------------------------------------------------- */

struct seen {
	char text[4096];
	size_t len;
};

static void seen_add(const struct fingerprint_view *v, void *arg)
{
	struct seen *s = arg;

	s->len += (size_t)snprintf(s->text + s->len, sizeof(s->text) - s->len, "%s%s%s|%s|%llu|%llu|%s;",
				   v->candidate ? v->candidate : "", v->candidate ? "@" : "", v->endpoint, v->fingerprint, (unsigned long long)v->count,
				   (unsigned long long)v->suppressed, v->sample_id ? v->sample_id : "-");
}

static struct fingerprints *table(unsigned max, unsigned limit, double interval)
{
	struct fingerprint_limits lim = { .max_entries = max, .per_interval = limit, .interval = interval };
	char err[128] = "";
	struct fingerprints *t = fingerprints_new(&lim, err, sizeof(err));

	assert_non_null(t);
	return t;
}

static void test_table_counts_per_endpoint_and_fingerprint_with_a_sample(void **state)
{
	struct fingerprints *t = table(100, 0, 60);
	struct fingerprint_counts c;
	struct seen s = { .len = 0 };

	(void)state;
	assert_true(fingerprints_note(t, NULL, "GET /a", "00000000000000aa", true, 10));
	assert_true(fingerprints_note(t, NULL, "GET /a", "00000000000000aa", true, 11));
	assert_true(fingerprints_note(t, NULL, "GET /a", "00000000000000bb", true, 12));
	assert_true(fingerprints_note(t, NULL, "GET /b", "00000000000000aa", true, 13));
	fingerprints_sampled(t, NULL, "GET /a", "00000000000000aa", "id-2");
	fingerprints_sampled(t, NULL, "GET /c", "00000000000000aa", "nobody");
	assert_int_equal(fingerprints_each(t, seen_add, &s), 0);
	assert_string_equal(s.text, "GET /a|00000000000000aa|2|0|id-2;GET /a|00000000000000bb|1|0|-;"
			    "GET /b|00000000000000aa|1|0|-;");
	fingerprints_counts(t, &c);
	assert_int_equal(c.entries, 3);
	assert_int_equal(c.evicted, 0);
	fingerprints_free(t);
}

/* Several candidates: each candidate's entries, samples and limit are its
 * own, for the same endpoint and fingerprint. */
static void test_each_candidate_has_entries_and_a_limit_of_its_own(void **state)
{
	struct fingerprints *t = table(100, 1, 60);
	struct fingerprint_counts c;
	struct seen s = { .len = 0 };

	(void)state;
	assert_true(fingerprints_note(t, "v2", "GET /a", "00000000000000aa", true, 10));
	assert_false(fingerprints_note(t, "v2", "GET /a", "00000000000000aa", true, 11));
	/* another candidate's first message of that fingerprint is sent */
	assert_true(fingerprints_note(t, "v3", "GET /a", "00000000000000aa", true, 12));
	assert_true(fingerprints_note(t, NULL, "GET /a", "00000000000000aa", true, 13));
	fingerprints_sampled(t, "v3", "GET /a", "00000000000000aa", "id-3@v3");
	assert_int_equal(fingerprints_each(t, seen_add, &s), 0);
	assert_string_equal(s.text, "GET /a|00000000000000aa|1|0|-;v2@GET /a|00000000000000aa|2|1|-;"
			    "v3@GET /a|00000000000000aa|1|0|id-3@v3;");
	fingerprints_counts(t, &c);
	assert_int_equal(c.entries, 3);
	assert_int_equal(c.suppressed, 1);
	fingerprints_free(t);
}

static void test_limit_sends_the_first_n_per_interval_and_counts_the_rest(void **state)
{
	struct fingerprints *t = table(100, 2, 60);
	struct fingerprint_counts c;
	struct seen s = { .len = 0 };

	(void)state;
	assert_true(fingerprints_note(t, NULL, "e", "f1", true, 100));
	assert_true(fingerprints_note(t, NULL, "e", "f1", true, 101));
	assert_false(fingerprints_note(t, NULL, "e", "f1", true, 102));
	assert_false(fingerprints_note(t, NULL, "e", "f1", true, 159));
	/* Another fingerprint has its own allowance. */
	assert_true(fingerprints_note(t, NULL, "e", "f2", true, 103));
	/* One not to be sent takes none of the allowance. */
	assert_true(fingerprints_note(t, NULL, "e", "f3", false, 103));
	assert_true(fingerprints_note(t, NULL, "e", "f3", true, 103));
	assert_true(fingerprints_note(t, NULL, "e", "f3", true, 103));
	/* The next interval sends again. */
	assert_true(fingerprints_note(t, NULL, "e", "f1", true, 160));
	fingerprints_counts(t, &c);
	assert_int_equal(c.suppressed, 2);
	assert_int_equal(fingerprints_each(t, seen_add, &s), 0);
	assert_non_null(strstr(s.text, "e|f1|5|2|-;"));
	fingerprints_free(t);
}

static void test_full_table_evicts_the_least_recently_seen_and_counts_it(void **state)
{
	struct fingerprints *t = table(2, 0, 60);
	struct fingerprint_counts c;
	struct seen s = { .len = 0 };

	(void)state;
	fingerprints_note(t, NULL, "e", "f1", true, 1);
	fingerprints_note(t, NULL, "e", "f2", true, 2);
	fingerprints_note(t, NULL, "e", "f1", true, 3);
	fingerprints_note(t, NULL, "e", "f3", true, 4);  /* f2 goes */
	fingerprints_counts(t, &c);
	assert_int_equal(c.entries, 2);
	assert_int_equal(c.evicted, 1);
	assert_int_equal(fingerprints_each(t, seen_add, &s), 0);
	assert_string_equal(s.text, "e|f1|2|0|-;e|f3|1|0|-;");
	fingerprints_free(t);
}

static void test_bad_limits_are_refused(void **state)
{
	struct fingerprint_limits lim = { .max_entries = 0, .interval = 60 };
	char err[128] = "";

	(void)state;
	assert_null(fingerprints_new(&lim, err, sizeof(err)));
	assert_non_null(strstr(err, "fingerprints_max"));
	lim.max_entries = 1;
	lim.interval = 0;
	assert_null(fingerprints_new(&lim, err, sizeof(err)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fingerprint_is_16_lower_case_hex_digits),
		cmocka_unit_test(test_same_set_gives_the_same_fingerprint),
		cmocka_unit_test(test_order_of_the_differences_does_not_matter),
		cmocka_unit_test(test_array_indices_are_collapsed),
		cmocka_unit_test(test_different_kind_or_path_or_where_gives_another_fingerprint),
		cmocka_unit_test(test_candidate_errors_fingerprint_their_error),
		cmocka_unit_test(test_table_counts_per_endpoint_and_fingerprint_with_a_sample),
		cmocka_unit_test(test_each_candidate_has_entries_and_a_limit_of_its_own),
		cmocka_unit_test(test_limit_sends_the_first_n_per_interval_and_counts_the_rest),
		cmocka_unit_test(test_full_table_evicts_the_least_recently_seen_and_counts_it),
		cmocka_unit_test(test_bad_limits_are_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
