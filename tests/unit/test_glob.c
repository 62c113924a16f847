/* Unit tests of glob: segment globs with "**", shared by compare's path
 * rules and route's endpoint patterns. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "glob.h"

#define MAX_SEGS 16

/* A pattern from text like "/a/<star>/b/<star><star>": one star is one segment
 * (one_kind), two are any number. */
static size_t pattern(const char *text, enum glob_kind one_kind, struct glob_seg *segs)
{
	size_t n = 0;

	for (const char *q = text; *q == '/';) {
		size_t len = strcspn(++q, "/");

		assert_true(n < MAX_SEGS);
		segs[n] = (struct glob_seg){ GLOB_NAME, q, len };
		if (len == 1 && q[0] == '*')
			segs[n].kind = one_kind;
		else if (len == 2 && q[0] == '*' && q[1] == '*')
			segs[n].kind = GLOB_ANY;
		n++;
		q += len;
	}
	return n;
}

static bool matches(const char *pat, enum glob_kind one_kind, const char *path)
{
	struct glob_seg segs[MAX_SEGS];
	size_t starts[MAX_SEGS], count = 0, n = pattern(pat, one_kind, segs);
	struct glob_path gp;

	for (const char *q = path; *q == '/'; q += strcspn(q, "/")) {
		assert_true(count < MAX_SEGS);
		starts[count++] = (size_t)(++q - path);
	}
	gp = (struct glob_path){ path, strlen(path), starts, count };
	return glob_match(segs, n, &gp);
}

static void test_names_match_exactly(void **state)
{
	(void)state;
	assert_true(matches("/a/b", GLOB_ONE, "/a/b"));
	assert_false(matches("/a/b", GLOB_ONE, "/a/bc"));
	assert_false(matches("/a/b", GLOB_ONE, "/a"));
	assert_false(matches("/a", GLOB_ONE, "/a/b"));
	assert_true(matches("", GLOB_ONE, ""));          /* the root */
	assert_false(matches("", GLOB_ONE, "/a"));
}

static void test_one_is_one_segment_and_only_route_refuses_an_empty_one(void **state)
{
	(void)state;
	assert_true(matches("/a/*/c", GLOB_ONE, "/a/b/c"));
	assert_false(matches("/a/*/c", GLOB_ONE, "/a/c"));
	assert_false(matches("/a/*/c", GLOB_ONE, "/a/b/b/c"));
	assert_true(matches("/a/*/c", GLOB_ONE, "/a//c"));            /* a JSON key "" */
	assert_false(matches("/a/*/c", GLOB_ONE_NONEMPTY, "/a//c"));  /* no id in a URL */
	assert_true(matches("/a/*/c", GLOB_ONE_NONEMPTY, "/a/42/c"));
}

static void test_any_is_zero_or_more_segments_with_backtracking(void **state)
{
	(void)state;
	assert_true(matches("/a/**", GLOB_ONE, "/a"));
	assert_true(matches("/a/**", GLOB_ONE, "/a/b/c"));
	assert_true(matches("/**/id", GLOB_ONE, "/id"));
	assert_true(matches("/**/id", GLOB_ONE, "/x/y/id"));
	assert_false(matches("/**/id", GLOB_ONE, "/x/y/idx"));
	assert_true(matches("/**/b/c", GLOB_ONE, "/b/b/b/c"));        /* backtracks past a false start */
	assert_true(matches("/**", GLOB_ONE, ""));
	assert_true(matches("/a/**/*/z", GLOB_ONE, "/a/q/z"));
	assert_false(matches("/a/**/*/z", GLOB_ONE, "/a/z"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_names_match_exactly),
		cmocka_unit_test(test_one_is_one_segment_and_only_route_refuses_an_empty_one),
		cmocka_unit_test(test_any_is_zero_or_more_segments_with_backtracking),
	};

	return cmocka_run_group_tests_name("glob", tests, NULL, NULL);
}
