/* glob — a path of segments matched against a pattern of segments, "**"
 * standing for any number of them (none included). Two modules match this
 * way, with one difference on purpose, carried by the pattern's kinds:
 *  - compare's path rules (ignore_paths, unordered_paths), over JSON
 *    Pointers: "*" is any one segment, the empty one too, since a JSON
 *    member may be named "" (GLOB_ONE);
 *  - route's endpoint patterns, over URL paths: "*" and ":name" are one
 *    segment that is not empty, since "/users//x" has no id for ":id" to
 *    stand for (GLOB_ONE_NONEMPTY). */
#ifndef MIFFY_GLOB_H
#define MIFFY_GLOB_H

#include <stdbool.h>
#include <stddef.h>

enum glob_kind {
	GLOB_NAME = 0,          /* a segment of exactly these bytes */
	GLOB_ONE,               /* any one segment */
	GLOB_ONE_NONEMPTY,      /* any one segment that is not empty */
	GLOB_ANY,               /* zero or more segments */
	GLOB_KIND_COUNT
};

struct glob_seg {
	enum glob_kind kind;
	const char *text;       /* GLOB_NAME: the bytes, borrowed from the pattern */
	size_t len;
};

/* A path: text[0..len) holding count segments, segment i running from
 * starts[i] to the separator byte before starts[i + 1], the last one to
 * len. Everything is borrowed. */
struct glob_path {
	const char *text;
	size_t len;
	const size_t *starts;
	size_t count;
};

/* Whether path matches the n segments of pat: true or false, nothing
 * else. One backtracking point suffices, as for '*' in file name globs. */
bool glob_match(const struct glob_seg *pat, size_t n, const struct glob_path *path);

#endif
