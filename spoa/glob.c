/* glob — segment globs with "**". */
#include "glob.h"

#include <stdint.h>
#include <string.h>

static bool seg_matches(const struct glob_seg *s, const struct glob_path *path, size_t i)
{
	size_t start = path->starts[i];
	size_t end = i + 1 < path->count ? path->starts[i + 1] - 1 : path->len;

	switch (s->kind) {
	case GLOB_ONE:
		return true;
	case GLOB_ONE_NONEMPTY:
		return end > start;
	case GLOB_NAME:
		return end - start == s->len && memcmp(path->text + start, s->text, s->len) == 0;
	default:
		return false;
	}
}

bool glob_match(const struct glob_seg *pat, size_t n, const struct glob_path *path)
{
	size_t i = 0, j = 0, star_i = SIZE_MAX, star_j = 0;

	while (j < path->count) {
		if (i < n && pat[i].kind == GLOB_ANY) {
			star_i = i++;
			star_j = j;
		} else if (i < n && seg_matches(&pat[i], path, j)) {
			i++;
			j++;
		} else if (star_i != SIZE_MAX) {
			i = star_i + 1;
			j = ++star_j;
		} else {
			return false;
		}
	}
	while (i < n && pat[i].kind == GLOB_ANY)
		i++;
	return i == n;
}
