/* Unit tests of route: endpoint names from patterns and id collapsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "route.h"

static const char *const patterns[] = {
	"GET /api/:id",
	"/users/*",
	"POST /files/**",
	"GET /api/:id/history",
	"/static/**/logo.png",
	"GET /api/special",   /* shadowed by the first: first match wins */
};

struct name_case {
	const char *method;
	const char *path;
	const char *name;
};

static const struct name_case name_cases[] = {
	/* patterns */
	{ "GET", "/api/42", "GET /api/:id" },
	{ "GET", "/api/42?verbose=1", "GET /api/:id" },
	{ "GET", "/api/special", "GET /api/:id" },
	{ "GET", "/api/42/history", "GET /api/:id/history" },
	{ "GET", "/users/bob", "GET /users/*" },
	{ "DELETE", "/users/bob", "DELETE /users/*" },
	{ "POST", "/files/a/b/c.txt", "POST /files/**" },
	{ "POST", "/files", "POST /files/**" },
	{ "GET", "/static/logo.png", "GET /static/**/logo.png" },
	{ "HEAD", "/static/v2/img/logo.png", "HEAD /static/**/logo.png" },
	/* no pattern: ids collapsed */
	{ "POST", "/api/abc", "POST /api/abc" },
	{ "GET", "/users/bob/posts", "GET /users/bob/posts" },
	{ "GET", "/users/", "GET /users/" },
	{ "GET", "/orders/123/items/7", "GET /orders/:id/items/:id" },
	{ "GET", "/orders/550e8400-e29b-41d4-a716-446655440000", "GET /orders/:id" },
	{ "GET", "/obj/507f1f77bcf86cd799439011/raw", "GET /obj/:id/raw" },
	{ "GET", "/v2/cafe/deadbeef", "GET /v2/cafe/deadbeef" },
	{ "GET", "/", "GET /" },
	{ "GET", "/search?q=123", "GET /search" },
	{ "GET", "/a//12", "GET /a//:id" },
};

static void test_endpoint_names(void **state)
{
	char err[256] = "";
	struct route *r = route_new((char *const *)(uintptr_t)patterns,
				    sizeof(patterns) / sizeof(patterns[0]), err, sizeof(err));

	assert_non_null(r);
	for (size_t i = 0; i < sizeof(name_cases) / sizeof(name_cases[0]); i++) {
		const struct name_case *tc = &name_cases[i];
		char *name = route_name(r, tc->method, tc->path);

		assert_non_null(name);
		if (strcmp(name, tc->name) != 0)
			fail_msg("%s %s: expected \"%s\", got \"%s\"", tc->method, tc->path, tc->name, name);
		free(name);
	}
	route_free(r);
}

static void test_pattern_with_method_is_named_as_written(void **state)
{
	static const char *const one[] = { "  PUT /things/:thing_id  " };
	char err[256] = "";
	struct route *r = route_new((char *const *)(uintptr_t)one, 1, err, sizeof(err));
	char *name;

	assert_non_null(r);
	name = route_name(r, "PUT", "/things/x1");
	assert_string_equal(name, "PUT /things/:thing_id");
	free(name);
	name = route_name(r, "GET", "/things/x1");
	assert_string_equal(name, "GET /things/x1");
	free(name);
	route_free(r);
}

static void test_no_patterns_collapses_ids(void **state)
{
	char *name = route_name(NULL, "GET", "/api/12345");

	assert_string_equal(name, "GET /api/:id");
	free(name);
}

static void test_bad_patterns_are_refused_with_a_message(void **state)
{
	static const char *const bad[] = { "get /x", "GET x", "", "GET", "/a/:/b", "GET /a b" };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		struct route *r = route_new((char *const *)(uintptr_t)&bad[i], 1, err, sizeof(err));

		if (r)
			fail_msg("\"%s\" was accepted", bad[i]);
		assert_true(err[0] != '\0');
	}
}

int main(void)
{
	static const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_endpoint_names),
		cmocka_unit_test(test_pattern_with_method_is_named_as_written),
		cmocka_unit_test(test_no_patterns_collapses_ids),
		cmocka_unit_test(test_bad_patterns_are_refused_with_a_message),
	};

	return cmocka_run_group_tests_name("route", tests, NULL, NULL);
}
