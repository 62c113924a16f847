#include "route.h"

#include <ctype.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "glob.h"

/* Segments beyond this many in a pattern are not a real API. */
#define ROUTE_MAX_SEGMENTS 64

struct pattern {
	char *name;           /* the endpoint name when it has a method, else NULL */
	char *method;         /* NULL: any method */
	char *path;
	struct glob_seg parts[ROUTE_MAX_SEGMENTS];   /* texts point into path */
	size_t count;
};

struct route {
	struct pattern *items;
	size_t count;
};

static void pattern_clear(struct pattern *p)
{
	free(p->name);
	free(p->method);
	free(p->path);
}

void route_free(struct route *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->count; i++)
		pattern_clear(&r->items[i]);
	free(r->items);
	free(r);
}

static bool is_method(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isupper((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* "METHOD /a/:b/c" or "/a/b/c", the method optional; a segment ":name" or
 * "*" matches any one segment, "**" zero or more of them. */
static int pattern_compile(const char *text, struct pattern *p, char *err, size_t errlen)
{
	const char *s = text, *path, *end;
	size_t mlen;

	memset(p, 0, sizeof(*p));
	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	if (*s != '/') {
		mlen = strcspn(s, " \t");
		if (!is_method(s, mlen)) {
			snprintf(err, errlen, "endpoint \"%s\": expected \"METHOD /path\" or \"/path\"", text);
			return -1;
		}
		p->method = strndup(s, mlen);
		path = s + mlen;
		while (*path == ' ' || *path == '\t')
			path++;
	} else {
		path = s;
	}
	if (path >= end || *path != '/' || memchr(path, ' ', (size_t)(end - path))) {
		snprintf(err, errlen, "endpoint \"%s\": the path must start with '/' and have no spaces", text);
		goto fail;
	}
	p->path = strndup(path, (size_t)(end - path));
	if (p->method && p->path)
		p->name = strndup(s, (size_t)(end - s));
	if (!p->path || (p->method && !p->name)) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (const char *q = p->path; *q == '/';) {
		size_t len = strcspn(++q, "/");
		struct glob_seg *part;

		if (p->count == ROUTE_MAX_SEGMENTS) {
			snprintf(err, errlen, "endpoint \"%s\": more than %d segments", text, ROUTE_MAX_SEGMENTS);
			goto fail;
		}
		part = &p->parts[p->count++];
		part->text = q;
		part->len = len;
		if ((len == 1 && q[0] == '*') || (len > 1 && q[0] == ':'))
			part->kind = GLOB_ONE_NONEMPTY;
		else if (len == 2 && q[0] == '*' && q[1] == '*')
			part->kind = GLOB_ANY;
		else if (len == 1 && q[0] == ':') {
			snprintf(err, errlen, "endpoint \"%s\": ':' needs a name", text);
			goto fail;
		} else
			part->kind = GLOB_NAME;
		q += len;
	}
	return 0;
fail:
	pattern_clear(p);
	memset(p, 0, sizeof(*p));
	return -1;
}

struct route *route_new(char *const *patterns, size_t count, char *err, size_t errlen)
{
	struct route *r = calloc(1, sizeof(*r));

	if (!r) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	if (count) {
		r->items = calloc(count, sizeof(*r->items));
		if (!r->items) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	for (size_t i = 0; i < count; i++) {
		if (pattern_compile(patterns[i], &r->items[i], err, errlen) < 0)
			goto fail;
		r->count++;
	}
	return r;
fail:
	route_free(r);
	return NULL;
}

/* Splits path (up to '?' or '#') into at most max segments: their starts
 * in starts, *end the length of the path part. Returns their number, or
 * max + 1 when there are more. */
static size_t path_split(const char *path, size_t *starts, size_t max, size_t *end)
{
	size_t n = 0;
	const char *q = path, *stop;

	*end = strcspn(path, "?#");
	stop = path + *end;
	while (q < stop && *q == '/') {
		q++;
		if (n == max)
			return max + 1;
		starts[n++] = (size_t)(q - path);
		q += strcspn(q, "/?#");
	}
	return n;
}

static bool is_hex(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)s[i]))
			return false;
	return true;
}

/* Numbers, UUIDs and long hex strings (hashes, object ids) are ids. */
static bool segment_is_id(const char *s, size_t len)
{
	bool digits = len > 0;

	for (size_t i = 0; i < len && digits; i++)
		digits = isdigit((unsigned char)s[i]);
	if (digits)
		return true;
	if (len == 36 && s[8] == '-' && s[13] == '-' && s[18] == '-' && s[23] == '-' &&
	    is_hex(s, 8) && is_hex(s + 9, 4) && is_hex(s + 14, 4) && is_hex(s + 19, 4) &&
	    is_hex(s + 24, 12))
		return true;
	return len >= 16 && is_hex(s, len);
}

static char *name_collapsed(const char *method, const char *path)
{
	size_t end = strcspn(path, "?#"), mlen = strlen(method);
	const char *q = path, *stop = path + end;
	/* ":id" may replace a one-digit segment: at most 3 bytes per byte. */
	char *name = malloc(mlen + 2 + end * 3 + 2), *o;

	if (!name)
		return NULL;
	o = name;
	if (mlen) {
		memcpy(o, method, mlen);
		o += mlen;
		*o++ = ' ';
	}
	if (q == stop || *q != '/')
		*o++ = '/';
	while (q < stop) {
		size_t len;

		if (*q == '/') {
			*o++ = *q++;
			continue;
		}
		len = (size_t)(stop - q);
		len = strcspn(q, "/") < len ? strcspn(q, "/") : len;
		if (segment_is_id(q, len)) {
			memcpy(o, ":id", 3);
			o += 3;
		} else {
			memcpy(o, q, len);
			o += len;
		}
		q += len;
	}
	*o = '\0';
	return name;
}

char *route_name(const struct route *r, const char *method, const char *path)
{
	size_t starts[ROUTE_MAX_SEGMENTS], n, end;
	struct glob_path gp;
	char *name;

	if (!method)
		method = "";
	if (!path)
		path = "/";
	n = path_split(path, starts, ROUTE_MAX_SEGMENTS, &end);
	gp = (struct glob_path){ path, end, starts, n };
	for (size_t i = 0; r && n <= ROUTE_MAX_SEGMENTS && i < r->count; i++) {
		const struct pattern *p = &r->items[i];

		if (p->method && strcmp(p->method, method) != 0)
			continue;
		if (!glob_match(p->parts, p->count, &gp))
			continue;
		if (p->name)
			return strdup(p->name);
		if (!*method)
			return strdup(p->path);
		if (asprintf(&name, "%s %s", method, p->path) < 0)
			return NULL;
		return name;
	}
	return name_collapsed(method, path);
}
