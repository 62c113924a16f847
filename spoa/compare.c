#include "compare.h"

#include <ctype.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "buf.h"
#include "config-t.h"
#include "glob.h"
#include "hash.h"
#include "utf8.h"
#include "http.h"

/* A response that differs everywhere still makes a message of bounded size;
 * past this many differences the rest are not recorded. */
#define COMPARE_MAX_DIFFS 1000

/* Finding a reordering costs a comparison per pair of elements that differ
 * by index; above this many such elements arrays are compared by index only. */
#define COMPARE_MAX_MATCH 1024
/* Node comparisons one comparison may spend pairing reordered elements.
 * Nested arrays multiply the pairing work (k^3 and worse) and it runs on the
 * loop that ACKs HAProxy: past this, differences are reported by index. */
#define COMPARE_MATCH_STEPS 200000

/* Bytes of context shown on each side of the first text difference. */
#define EXCERPT_BEFORE 32
#define EXCERPT_AFTER 64

struct rule {
	char *text;
	struct glob_seg *segs;   /* names escaped, as in the pattern; point into text */
	size_t count;
};

struct rule_set {
	struct rule *items;
	size_t count;
};

/* What an array_keys rule pairs by; its pointer is the rule of the same
 * index in compare's key_paths. */
struct key_rule {
	char *member;            /* the key member's name, as in the document */
	bool ordered;            /* "!ordered": a reordering is an order difference */
};

struct compare {
	char **ignore_headers;
	size_t ignore_headers_count;
	struct rule_set ignore_paths;
	struct rule_set unordered_paths;
	struct rule_set key_paths;   /* array_keys' pointers ... */
	struct key_rule *keys;       /* ... and what each pairs by */
	bool ignore_order;
	double abs_tolerance;
	double rel_tolerance;
	unsigned max_depth;
	size_t max_decompressed;
};

/* A JSON Pointer longer than this is no real document's: its comparison
 * fails as when memory runs out. */
#define COMPARE_PATH_MAX (64u << 20)

/* The JSON Pointer of the node being compared, escaped, with the offset of
 * each segment so that rules match without re-parsing it. */
struct path {
	struct buf text;    /* at most COMPARE_PATH_MAX bytes */
	size_t *starts;     /* offset of each segment's first byte (after '/') */
	size_t count, starts_cap;
};

struct walk {
	const struct compare *c;
	struct diff_list *out;
	struct path path;
	unsigned depth;
	bool quick;         /* only tell whether they differ; record nothing */
	unsigned long steps;  /* diff_node calls, bounded while pairing */
	bool budget_spent;
	const cJSON *key;   /* the enclosing keyed element's key, borrowed; or NULL */
};

const char *diff_where_name(enum diff_where w)
{
	static const char *const names[DIFF_WHERE_COUNT] = { "status", "header", "body" };

	return w < DIFF_WHERE_COUNT ? names[w] : "?";
}

const char *diff_kind_name(enum diff_kind k)
{
	static const char *const names[DIFF_KIND_COUNT] = { "value", "type", "missing", "extra", "order" };

	return k < DIFF_KIND_COUNT ? names[k] : "?";
}

size_t diff_field_key(const struct difference *d, char *key, size_t len)
{
	const char *path = d->path ? d->path : "";
	int n;

	if (d->where == DIFF_STATUS)
		n = snprintf(key, len, "status");
	else if (d->where == DIFF_HEADER)
		n = snprintf(key, len, "header:%s", path);
	else if (path[0])
		n = snprintf(key, len, "body:%s", path);
	else
		n = snprintf(key, len, "body");
	return n < 0 ? 0 : (size_t)n;
}

/* ---- rules ------------------------------------------------------------ */

static void rule_set_free(struct rule_set *set)
{
	for (size_t i = 0; i < set->count; i++) {
		free(set->items[i].text);
		free(set->items[i].segs);
	}
	free(set->items);
	set->items = NULL;
	set->count = 0;
}

/* Compiles a JSON Pointer with wildcards: "" (the root) or "/seg/seg...",
 * where a segment "*" is any one segment and "**" any number of them. */
static int rule_compile(const char *text, struct rule *r, char *err, size_t errlen)
{
	size_t n = 0;
	const char *p;

	memset(r, 0, sizeof(*r));
	if (text[0] != '\0' && text[0] != '/') {
		snprintf(err, errlen, "path rule \"%s\" must be empty or start with '/'", text);
		return -1;
	}
	for (p = text; *p; p++) {
		if (*p == '/')
			n++;
		if (*p == '~' && p[1] != '0' && p[1] != '1') {
			snprintf(err, errlen, "path rule \"%s\": '~' must be followed by 0 or 1", text);
			return -1;
		}
	}
	r->text = strdup(text);
	r->segs = calloc(n ? n : 1, sizeof(*r->segs));
	if (!r->text || !r->segs) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	for (p = text; *p == '/';) {
		const char *start = ++p - text + r->text;
		size_t len = strcspn(p, "/");
		struct glob_seg *s = &r->segs[r->count++];

		s->text = start;
		s->len = len;
		if (len == 1 && p[0] == '*')
			s->kind = GLOB_ONE;
		else if (len == 2 && p[0] == '*' && p[1] == '*')
			s->kind = GLOB_ANY;
		else
			s->kind = GLOB_NAME;
		p += len;
	}
	return 0;
fail:
	free(r->text);
	free(r->segs);
	memset(r, 0, sizeof(*r));
	return -1;
}

static int rule_set_compile(const struct str_list *list, struct rule_set *set,
			    char *err, size_t errlen)
{
	memset(set, 0, sizeof(*set));
	if (list->count == 0)
		return 0;
	set->items = calloc(list->count, sizeof(*set->items));
	if (!set->items) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < list->count; i++) {
		if (rule_compile(list->items[i], &set->items[i], err, errlen) < 0)
			return -1;
		set->count++;
	}
	return 0;
}

/* The suffix of an array_keys rule that asks for order to be checked. */
#define KEY_ORDERED "!ordered"

static void key_rules_free(struct compare *c)
{
	for (size_t i = 0; c->keys && i < c->key_paths.count; i++)
		free(c->keys[i].member);
	free(c->keys);
	c->keys = NULL;
	rule_set_free(&c->key_paths);
}

/* "POINTER=MEMBER" or "POINTER=MEMBER!ordered", split at the last '='
 * (a pointer segment may hold one, a key member's name may not): the
 * member into k, the pointer returned (the caller frees), NULL with err. */
static char *key_rule_split(const char *text, struct key_rule *k, char *err, size_t errlen)
{
	const char *eq = strrchr(text, '=');
	size_t mlen, slen = strlen(KEY_ORDERED);
	char *at;

	memset(k, 0, sizeof(*k));
	if (!eq) {
		snprintf(err, errlen, "array_keys rule \"%s\" must be POINTER=MEMBER", text);
		return NULL;
	}
	mlen = strlen(eq + 1);
	if (mlen >= slen && strcmp(eq + 1 + mlen - slen, KEY_ORDERED) == 0) {
		k->ordered = true;
		mlen -= slen;
	}
	if (mlen == 0) {
		snprintf(err, errlen, "array_keys rule \"%s\": the key member's name is empty", text);
		return NULL;
	}
	at = strndup(text, (size_t)(eq - text));
	k->member = strndup(eq + 1, mlen);
	if (!at || !k->member) {
		free(at);
		free(k->member);
		k->member = NULL;
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return at;
}

/* The pointers of list compile as path rules, like ignore_paths'. */
static int key_rules_compile(const struct str_list *list, struct compare *c, char *err, size_t errlen)
{
	struct str_list at = { 0 };
	int rc = -1;

	if (list->count == 0)
		return 0;
	c->keys = calloc(list->count, sizeof(*c->keys));
	at.items = calloc(list->count, sizeof(*at.items));
	if (!c->keys || !at.items) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	for (; at.count < list->count; at.count++)
		if (!(at.items[at.count] = key_rule_split(list->items[at.count], &c->keys[at.count], err, errlen)))
			goto done;
	rc = rule_set_compile(&at, &c->key_paths, err, errlen);
done:
	/* Members past those compiled are freed here, the others by key_rules_free. */
	for (size_t i = 0; i < at.count; i++)
		free(at.items[i]);
	if (rc < 0 && c->keys)
		for (size_t i = c->key_paths.count; i < list->count; i++) {
			free(c->keys[i].member);
			c->keys[i].member = NULL;
		}
	free(at.items);
	return rc;
}

/* The index of the first rule of set that path matches, or -1. Called for
 * every node compared (ignore_paths), most often with no rule at all. */
static inline long rule_set_find(const struct rule_set *set, const struct path *path)
{
	const struct glob_path gp = { path->text.p, path->text.len, path->starts, path->count };

	if (set->count == 0)
		return -1;
	for (size_t i = 0; i < set->count; i++)
		if (glob_match(set->items[i].segs, set->items[i].count, &gp))
			return (long)i;
	return -1;
}

static bool rule_set_matches(const struct rule_set *set, const struct path *path)
{
	return rule_set_find(set, path) >= 0;
}

/* ---- compare object --------------------------------------------------- */

struct compare *compare_new(const struct config *cfg, char *err, size_t errlen)
{
	struct compare *c = calloc(1, sizeof(*c));

	if (!c) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->ignore_order = cfg->ignore_order;
	c->abs_tolerance = cfg->abs_tolerance;
	c->rel_tolerance = cfg->rel_tolerance;
	c->max_depth = cfg->max_depth;
	c->max_decompressed = cfg->max_decompressed;
	if (cfg->abs_tolerance < 0 || cfg->rel_tolerance < 0 ||
	    isnan(cfg->abs_tolerance) || isnan(cfg->rel_tolerance)) {
		snprintf(err, errlen, "tolerances must be zero or positive");
		goto fail;
	}
	if (cfg->ignore_headers.count) {
		c->ignore_headers = calloc(cfg->ignore_headers.count, sizeof(char *));
		if (!c->ignore_headers) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
	}
	for (size_t i = 0; i < cfg->ignore_headers.count; i++) {
		char *name = strdup(cfg->ignore_headers.items[i]);

		if (!name) {
			snprintf(err, errlen, "out of memory");
			goto fail;
		}
		for (char *p = name; *p; p++)
			*p = (char)tolower((unsigned char)*p);
		c->ignore_headers[c->ignore_headers_count++] = name;
	}
	if (rule_set_compile(&cfg->ignore_paths, &c->ignore_paths, err, errlen) < 0 ||
	    rule_set_compile(&cfg->unordered_paths, &c->unordered_paths, err, errlen) < 0 ||
	    key_rules_compile(&cfg->array_keys, c, err, errlen) < 0)
		goto fail;
	return c;
fail:
	compare_free(c);
	return NULL;
}

void compare_free(struct compare *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->ignore_headers_count; i++)
		free(c->ignore_headers[i]);
	free(c->ignore_headers);
	rule_set_free(&c->ignore_paths);
	rule_set_free(&c->unordered_paths);
	key_rules_free(c);
	free(c);
}

/* ---- difference list -------------------------------------------------- */

static void difference_clear(struct difference *d)
{
	free(d->path);
	cJSON_Delete(d->reference);
	cJSON_Delete(d->candidate);
	cJSON_Delete(d->key);
	memset(d, 0, sizeof(*d));
}

void diff_list_clear(struct diff_list *list)
{
	for (size_t i = 0; i < list->count; i++)
		difference_clear(&list->items[i]);
	free(list->items);
	memset(list, 0, sizeof(*list));
}

static void diff_list_truncate(struct diff_list *list, size_t count)
{
	while (list->count > count)
		difference_clear(&list->items[--list->count]);
}

/* Appends a difference; takes ownership of ref and cand in every case.
 * Past COMPARE_MAX_DIFFS the difference is dropped. Returns 0 or -1. */
static int diff_add(struct diff_list *list, enum diff_where where, const char *path,
		    size_t path_len, enum diff_kind kind, cJSON *ref, cJSON *cand)
{
	struct difference *d;

	if (list->count >= COMPARE_MAX_DIFFS)
		goto drop;
	if (list->count == list->cap) {
		size_t ncap = list->cap ? list->cap * 2 : 8;
		struct difference *items;

		if (ncap > COMPARE_MAX_DIFFS)
			ncap = COMPARE_MAX_DIFFS;
		items = realloc(list->items, ncap * sizeof(*items));
		if (!items)
			goto fail;
		list->items = items;
		list->cap = ncap;
	}
	d = &list->items[list->count];
	memset(d, 0, sizeof(*d));
	d->path = strndup(path, path_len);
	if (!d->path)
		goto fail;
	d->where = where;
	d->kind = kind;
	d->reference = ref;
	d->candidate = cand;
	list->count++;
	return 0;
drop:
	cJSON_Delete(ref);
	cJSON_Delete(cand);
	return 0;
fail:
	cJSON_Delete(ref);
	cJSON_Delete(cand);
	return -1;
}

/* ---- status and headers ----------------------------------------------- */

static bool header_ignored(const struct compare *c, const char *name)
{
	for (size_t i = 0; i < c->ignore_headers_count; i++)
		if (c->ignore_headers[i][0] == name[0] && strcmp(c->ignore_headers[i], name) == 0)
			return true;
	return false;
}

/* All values of name in list joined with ", " (RFC 9110 5.3), or NULL when
 * absent. *oom is set on allocation failure. The caller frees. */
static char *header_joined(const struct header_list *list, const char *name, bool *oom)
{
	char *joined = NULL;
	size_t len = 0;

	for (size_t i = 0; i < list->count; i++) {
		size_t vlen;
		char *nj;

		if (strcmp(list->items[i].name, name) != 0)
			continue;
		vlen = strlen(list->items[i].value);
		nj = realloc(joined, len + (joined ? 2 : 0) + vlen + 1);
		if (!nj) {
			free(joined);
			*oom = true;
			return NULL;
		}
		if (joined) {
			memcpy(nj + len, ", ", 2);
			len += 2;
		}
		joined = nj;
		memcpy(joined + len, list->items[i].value, vlen + 1);
		len += vlen;
	}
	return joined;
}

/* True when name already appeared in list before index i: each name is
 * compared once, at its first occurrence. */
static bool header_seen_before(const struct header_list *list, size_t i)
{
	const char *name = list->items[i].name;

	for (size_t k = 0; k < i; k++)
		if (list->items[k].name[0] == name[0] && strcmp(list->items[k].name, name) == 0)
			return true;
	return false;
}

/* How many headers of list are named name; *value gets the last one's. */
static size_t header_count(const struct header_list *list, const char *name, const char **value)
{
	size_t n = 0;

	*value = NULL;
	for (size_t i = 0; i < list->count; i++) {
		if (list->items[i].name[0] == name[0] && strcmp(list->items[i].name, name) == 0) {
			*value = list->items[i].value;
			n++;
		}
	}
	return n;
}

static cJSON *string_or_null(const char *s)
{
	return s ? cJSON_CreateString(s) : NULL;
}

static int compare_headers(const struct compare *c, const struct header_list *ref,
			   const struct header_list *cand, struct diff_list *out)
{
	for (size_t i = 0; i < ref->count; i++) {
		const char *name = ref->items[i].name;
		const char *r1, *c1;
		bool oom = false;
		char *rv, *cv;
		int rc = 0;

		if (header_ignored(c, name) || header_seen_before(ref, i))
			continue;
		/* The usual case, one header on each side (or none in the
		 * candidate), needs no joined copies. */
		if (header_count(ref, name, &r1) == 1 && header_count(cand, name, &c1) <= 1) {
			if (!c1)
				rc = diff_add(out, DIFF_HEADER, name, strlen(name), DIFF_MISSING,
					      string_or_null(r1), NULL);
			else if (strcmp(r1, c1) != 0)
				rc = diff_add(out, DIFF_HEADER, name, strlen(name), DIFF_VALUE,
					      string_or_null(r1), string_or_null(c1));
			if (rc < 0)
				return -1;
			continue;
		}
		rv = header_joined(ref, name, &oom);
		cv = header_joined(cand, name, &oom);
		if (oom)
			rc = -1;
		else if (!cv)
			rc = diff_add(out, DIFF_HEADER, name, strlen(name), DIFF_MISSING,
				      string_or_null(rv), NULL);
		else if (strcmp(rv, cv) != 0)
			rc = diff_add(out, DIFF_HEADER, name, strlen(name), DIFF_VALUE,
				      string_or_null(rv), string_or_null(cv));
		free(rv);
		free(cv);
		if (rc < 0)
			return -1;
	}
	for (size_t i = 0; i < cand->count; i++) {
		const char *name = cand->items[i].name;
		bool oom = false;
		char *cv;
		int rc;

		if (header_ignored(c, name) || header_seen_before(cand, i) ||
		    http_headers_get(ref, name))
			continue;
		cv = header_joined(cand, name, &oom);
		if (oom)
			return -1;
		rc = diff_add(out, DIFF_HEADER, name, strlen(name), DIFF_EXTRA, NULL,
			      string_or_null(cv));
		free(cv);
		if (rc < 0)
			return -1;
	}
	return 0;
}

/* ---- JSON ------------------------------------------------------------- */

static int path_push(struct path *p, const char *seg)
{
	size_t n = strlen(seg), plain = strcspn(seg, "~/"), extra = 1 + n;
	char *o;

	for (const char *s = seg + plain; *s; s++)
		extra += *s == '~' || *s == '/';
	if (p->count == p->starts_cap) {
		size_t ncap = p->starts_cap ? p->starts_cap * 2 : 16;
		size_t *ns = realloc(p->starts, ncap * sizeof(*ns));

		if (!ns)
			return -1;
		p->starts = ns;
		p->starts_cap = ncap;
	}
	o = buf_reserve(&p->text, extra);
	if (!o)
		return -1;
	p->starts[p->count++] = p->text.len + 1;
	*o++ = '/';
	memcpy(o, seg, plain);
	o += plain;
	/* RFC 6901: '~' is written ~0 and '/' is written ~1. */
	for (const char *s = seg + plain; *s; s++) {
		if (*s == '~') {
			*o++ = '~';
			*o++ = '0';
		} else if (*s == '/') {
			*o++ = '~';
			*o++ = '1';
		} else {
			*o++ = *s;
		}
	}
	buf_commit(&p->text, extra);
	return 0;
}

static int path_push_index(struct path *p, size_t index)
{
	char num[24], *d = num + sizeof(num) - 1;

	/* Called for every element: snprintf would dominate. */
	*d = '\0';
	do {
		*--d = (char)('0' + index % 10);
		index /= 10;
	} while (index);
	return path_push(p, d);
}

static void path_pop(struct path *p)
{
	buf_truncate(&p->text, p->starts[--p->count] - 1);
}

static int record(struct walk *w, enum diff_kind kind, const cJSON *ref, const cJSON *cand)
{
	cJSON *r = NULL, *c = NULL;

	if (w->quick)
		return 1;
	if (w->out->count >= COMPARE_MAX_DIFFS)
		return 1;
	if (ref && !(r = cJSON_Duplicate(ref, true)))
		return -1;
	if (cand && !(c = cJSON_Duplicate(cand, true))) {
		cJSON_Delete(r);
		return -1;
	}
	if (diff_add(w->out, DIFF_BODY, w->path.text.p ? w->path.text.p : "", w->path.text.len,
		     kind, r, c) < 0)
		return -1;
	if (w->key && !(w->out->items[w->out->count - 1].key = cJSON_Duplicate(w->key, true)))
		return -1;
	return 1;
}

enum json_class { JC_NULL = 0, JC_BOOL, JC_NUMBER, JC_STRING, JC_ARRAY, JC_OBJECT, JC_OTHER, JC_COUNT };

/* Reads the type bits directly: called for every node, and the cJSON_Is*
 * functions are not inlined across the library boundary. */
static enum json_class json_class(const cJSON *j)
{
	switch (j->type & 0xff) {
	case cJSON_NULL:
		return JC_NULL;
	case cJSON_False:
	case cJSON_True:
		return JC_BOOL;
	case cJSON_Number:
		return JC_NUMBER;
	case cJSON_String:
		return JC_STRING;
	case cJSON_Array:
		return JC_ARRAY;
	case cJSON_Object:
		return JC_OBJECT;
	default:
		return JC_OTHER;
	}
}

static bool numbers_equal(const struct compare *c, double a, double b)
{
	double diff = fabs(a - b);

	if (a == b)
		return true;
	return diff <= c->abs_tolerance || diff <= c->rel_tolerance * fmax(fabs(a), fabs(b));
}

static int diff_node(struct walk *w, const cJSON *a, const cJSON *b);

/* Compares one member or element: the segment is pushed, ignore rules
 * apply to it, and a side that lacks it makes a missing or extra. */
static int diff_child(struct walk *w, const char *name, size_t index,
		      const cJSON *a, const cJSON *b)
{
	int rc;

	if ((name ? path_push(&w->path, name) : path_push_index(&w->path, index)) < 0)
		return -1;
	if (rule_set_matches(&w->c->ignore_paths, &w->path))
		rc = 0;
	else if (a && b)
		rc = diff_node(w, a, b);
	else
		rc = record(w, a ? DIFF_MISSING : DIFF_EXTRA, a, b);
	path_pop(&w->path);
	return rc;
}

/* Members matched by name. The member at the same position is tried first,
 * so objects written in the same order cost one pass. */
static const cJSON *member_find(const cJSON *obj, const cJSON *hint, const char *name)
{
	if (hint && hint->string && strcmp(hint->string, name) == 0)
		return hint;
	return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static int diff_object(struct walk *w, const cJSON *a, const cJSON *b)
{
	const cJSON *hint = b->child;
	int differs = 0, rc;

	for (const cJSON *ca = a->child; ca; ca = ca->next) {
		const cJSON *cb;

		if (!ca->string)
			continue;
		cb = member_find(b, hint, ca->string);
		hint = cb ? cb->next : hint;
		rc = diff_child(w, ca->string, 0, ca, cb);
		if (rc < 0)
			return -1;
		differs |= rc;
		if (differs && w->quick)
			return 1;
	}
	hint = a->child;
	for (const cJSON *cb = b->child; cb; cb = cb->next) {
		const cJSON *ca;

		if (!cb->string)
			continue;
		ca = member_find(a, hint, cb->string);
		hint = ca ? ca->next : hint;
		if (ca)
			continue;
		rc = diff_child(w, cb->string, 0, NULL, cb);
		if (rc < 0)
			return -1;
		differs |= rc;
		if (differs && w->quick)
			return 1;
	}
	return differs;
}

static bool order_irrelevant(const struct walk *w)
{
	return w->c->ignore_order || rule_set_matches(&w->c->unordered_paths, &w->path);
}

/* Pairs elements that differ by index with equal elements at other
 * indices. ra/rb list the unpaired elements of each side (their index in
 * ia/ib); a paired one is set to NULL. Returns the number paired, -1 on
 * allocation failure, -2 when the step budget ran out. */
static int match_elements(struct walk *w, const cJSON **ra, const size_t *ia, size_t na,
			  const cJSON **rb, size_t nb)
{
	bool quick = w->quick;
	int paired = 0;

	w->quick = true;
	for (size_t i = 0; i < na; i++) {
		for (size_t j = 0; j < nb; j++) {
			int rc;

			if (!rb[j])
				continue;
			if (w->steps > COMPARE_MATCH_STEPS) {
				w->budget_spent = true;
				w->quick = quick;
				return -2;
			}
			if (path_push_index(&w->path, ia[i]) < 0) {
				w->quick = quick;
				return -1;
			}
			rc = rule_set_matches(&w->c->ignore_paths, &w->path) ? 0 : diff_node(w, ra[i], rb[j]);
			path_pop(&w->path);
			if (rc < 0) {
				w->quick = quick;
				return -1;
			}
			if (rc == 0) {
				ra[i] = NULL;
				rb[j] = NULL;
				paired++;
				break;
			}
		}
	}
	w->quick = quick;
	return paired;
}

static int pools_alloc(size_t na, size_t nb, const cJSON ***ra, const cJSON ***rb,
		       size_t **ia, size_t **ib)
{
	*ra = malloc((na + 1) * sizeof(**ra));
	*rb = malloc((nb + 1) * sizeof(**rb));
	*ia = malloc((na + 1) * sizeof(**ia));
	*ib = malloc((nb + 1) * sizeof(**ib));
	return *ra && *rb && *ia && *ib ? 0 : -1;
}

/* Arrays compare by index; then, when the elements that differ are the
 * same multiset in another order, the index differences are replaced by one
 * order difference at the array (or none where order is irrelevant). Where
 * order is irrelevant and the multisets differ, the elements left unpaired
 * are compared in turn, the surplus being missing or extra. */
static int diff_array(struct walk *w, const cJSON *a, const cJSON *b)
{
	size_t na = (size_t)cJSON_GetArraySize(a), nb = (size_t)cJSON_GetArraySize(b);
	size_t n = na < nb ? na : nb, mark = w->out ? w->out->count : 0;
	bool unordered = order_irrelevant(w);
	const cJSON **ra = NULL, **rb = NULL;
	size_t *ia = NULL, *ib = NULL, ca = 0, cb = 0;
	const cJSON *ea, *eb;
	int differs = 0, rc = -1, paired;
	size_t i;

	if (w->quick && na != nb && !unordered)
		return 1;
	for (i = 0, ea = a->child, eb = b->child; i < n; i++, ea = ea->next, eb = eb->next) {
		int r = diff_child(w, NULL, i, ea, eb);

		if (r < 0)
			goto done;
		if (r) {
			differs = 1;
			if (w->quick && !unordered) {
				rc = 1;
				goto done;
			}
			/* Equal arrays, the common case, allocate nothing. */
			if (!ra && pools_alloc(na, nb, &ra, &rb, &ia, &ib) < 0)
				goto done;
			ra[ca] = ea;
			ia[ca++] = i;
			rb[cb] = eb;
			ib[cb++] = i;
		}
	}
	if (!ra && na != nb && pools_alloc(na, nb, &ra, &rb, &ia, &ib) < 0)
		goto done;
	for (; ea; ea = ea->next, i++) {
		ra[ca] = ea;
		ia[ca++] = i;
	}
	for (i = n; eb; eb = eb->next, i++) {
		rb[cb] = eb;
		ib[cb++] = i;
	}
	if (!differs && na == nb) {
		rc = 0;
		goto done;
	}
	if ((na != nb && !unordered) || ca > COMPARE_MAX_MATCH || cb > COMPARE_MAX_MATCH)
		goto by_index;
	paired = match_elements(w, ra, ia, ca, rb, cb);
	if (paired == -2)
		goto by_index;
	if (paired < 0)
		goto done;
	if ((size_t)paired == ca && ca == cb) {
		if (w->out)
			diff_list_truncate(w->out, mark);
		rc = unordered ? 0 : record(w, DIFF_ORDER, a, b);
		goto done;
	}
	if (!unordered)
		goto by_index;
	if (w->quick) {
		rc = 1;
		goto done;
	}
	diff_list_truncate(w->out, mark);
	differs = 0;
	{
		size_t x = 0, y = 0;

		for (;;) {
			while (x < ca && !ra[x])
				x++;
			while (y < cb && !rb[y])
				y++;
			if (x >= ca && y >= cb)
				break;
			/* Reported at the reference's index when both sides have one. */
			if (x < ca)
				rc = diff_child(w, NULL, ia[x], ra[x], y < cb ? rb[y] : NULL);
			else
				rc = diff_child(w, NULL, ib[y], NULL, rb[y]);
			if (rc < 0)
				goto done;
			differs |= rc;
			x += x < ca;
			y += y < cb;
		}
	}
	rc = differs;
	goto done;
by_index:
	/* The index differences are recorded; the tails are missing or extra.
	 * Walked from the arrays: an abandoned pairing may have cleared ra/rb. */
	rc = 1;
	for (i = 0, ea = a->child; ea; ea = ea->next, i++)
		if (i >= n && diff_child(w, NULL, i, ea, NULL) < 0)
			rc = -1;
	for (i = 0, eb = b->child; eb; eb = eb->next, i++)
		if (i >= n && diff_child(w, NULL, i, NULL, eb) < 0)
			rc = -1;
done:
	free(ra);
	free(rb);
	free(ia);
	free(ib);
	return rc;
}

/* ---- arrays paired by key (array_keys) --------------------------------- */

static const struct key_rule *key_rule_find(const struct walk *w)
{
	long i = rule_set_find(&w->c->key_paths, &w->path);

	return i < 0 ? NULL : &w->c->keys[i];
}

#define KEY_NONE SIZE_MAX

/* One element of a keyed array: the reference's first, then the
 * candidate's, in one table. */
struct keyed {
	const cJSON *elem;
	const cJSON *key;        /* the key member's value: a string or a number */
	size_t other;            /* the index of its pair on the other side, or KEY_NONE */
};

/* The key of elem, a string or number member named member; NULL when elem
 * is no object or lacks one. */
static const cJSON *element_key(const cJSON *elem, const char *member)
{
	const cJSON *k;

	if (json_class(elem) != JC_OBJECT)
		return NULL;
	k = cJSON_GetObjectItemCaseSensitive(elem, member);
	if (!k)
		return NULL;
	return json_class(k) == JC_STRING || json_class(k) == JC_NUMBER ? k : NULL;
}

static uint64_t key_hash(const cJSON *k)
{
	double v;

	if (json_class(k) == JC_STRING)
		return hash_string(k->valuestring);
	/* 0 and -0 are one key, as they are one number. */
	v = k->valuedouble == 0 ? 0 : k->valuedouble;
	return hash_bytes(&v, sizeof(v)) ^ 0x9e3779b97f4a7c15ull;
}

/* Keys are equal when of one type and value: "1" is not 1, 1 is 1.0. */
static bool keys_equal(const cJSON *x, const cJSON *y)
{
	enum json_class kx = json_class(x);

	if (kx != json_class(y))
		return false;
	if (kx == JC_STRING)
		return strcmp(x->valuestring, y->valuestring) == 0;
	return x->valuedouble == y->valuedouble;
}

/* Pairs the na reference and nb candidate elements of e by key, through an
 * open-addressing table of indices into e. Returns 1 when paired, 0 when a
 * key is absent or repeated on one side (the caller pairs by index), -1 on
 * allocation failure. */
static int keys_pair(struct keyed *e, size_t na, size_t nb)
{
	size_t n = na + nb, cap = 16, *slot;

	while (cap < 2 * n)
		cap <<= 1;
	slot = malloc(cap * sizeof(*slot));
	if (!slot)
		return -1;
	for (size_t i = 0; i < cap; i++)
		slot[i] = KEY_NONE;
	for (size_t i = 0; i < n; i++) {
		size_t h;

		if (!e[i].key) {
			free(slot);
			return 0;
		}
		for (h = (size_t)key_hash(e[i].key) & (cap - 1); slot[h] != KEY_NONE; h = (h + 1) & (cap - 1)) {
			struct keyed *o = &e[slot[h]];

			if (!keys_equal(o->key, e[i].key))
				continue;
			/* Repeated on one side, or a second candidate element
			 * for a reference element already paired. */
			if (i < na || slot[h] >= na || o->other != KEY_NONE) {
				free(slot);
				return 0;
			}
			o->other = i - na;
			e[i].other = slot[h];
			break;
		}
		if (slot[h] == KEY_NONE)
			slot[h] = i;
	}
	free(slot);
	return 1;
}

/* A keyed array: elements paired by the value of rule's member, the
 * reference's compared at its own index, those without a pair missing (at
 * the reference's index) or extra (at the candidate's); every difference
 * carries its element's key. A reordering is one order difference at the
 * array when the rule asks for order and order is not irrelevant there.
 * An absent or repeated key falls back to diff_array (flagged). */
static int diff_keyed(struct walk *w, const struct key_rule *rule, const cJSON *a, const cJSON *b)
{
	size_t na = (size_t)cJSON_GetArraySize(a), nb = (size_t)cJSON_GetArraySize(b), i, last;
	const cJSON *saved = w->key, *el;
	struct keyed *e;
	int differs = 0, rc;
	bool reordered = false;

	if (na + nb == 0)
		return 0;
	e = malloc((na + nb) * sizeof(*e));
	if (!e)
		return -1;
	for (i = 0, el = a->child; el; el = el->next, i++)
		e[i] = (struct keyed){ el, element_key(el, rule->member), KEY_NONE };
	for (el = b->child; el; el = el->next, i++)
		e[i] = (struct keyed){ el, element_key(el, rule->member), KEY_NONE };
	rc = keys_pair(e, na, nb);
	if (rc <= 0) {
		free(e);
		if (rc < 0)
			return -1;
		/* Counted where it shapes what is reported, not in the trial
		 * comparisons of a pairing, which may stop before any key. */
		if (w->out && !w->quick)
			w->out->key_fallback = true;
		return diff_array(w, a, b);
	}
	for (i = 0, last = 0; i < na; i++) {
		const struct keyed *x = &e[i];

		if (x->other != KEY_NONE) {
			reordered |= x->other < last;
			last = x->other;
		}
		w->key = x->key;
		rc = diff_child(w, NULL, i, x->elem, x->other != KEY_NONE ? e[na + x->other].elem : NULL);
		if (rc < 0 || (rc && w->quick))
			goto done;
		differs |= rc;
	}
	for (i = 0; i < nb; i++) {
		const struct keyed *y = &e[na + i];

		if (y->other != KEY_NONE)
			continue;
		w->key = y->key;
		rc = diff_child(w, NULL, i, NULL, y->elem);
		if (rc < 0 || (rc && w->quick))
			goto done;
		differs |= rc;
	}
	w->key = saved;
	rc = differs;
	if (reordered && rule->ordered && !order_irrelevant(w)) {
		rc = record(w, DIFF_ORDER, a, b);
		rc = rc < 0 ? -1 : 1;
	}
done:
	w->key = saved;
	free(e);
	return rc;
}

static int diff_node(struct walk *w, const cJSON *a, const cJSON *b)
{
	enum json_class ka = json_class(a), kb = json_class(b);
	const struct key_rule *rule;
	int rc;

	w->steps++;
	if (ka != kb)
		return record(w, DIFF_TYPE, a, b);
	switch (ka) {
	case JC_NULL:
		return 0;
	case JC_BOOL:
		return (a->type & 0xff) == (b->type & 0xff) ? 0 : record(w, DIFF_VALUE, a, b);
	case JC_NUMBER:
		return numbers_equal(w->c, a->valuedouble, b->valuedouble) ? 0 : record(w, DIFF_VALUE, a, b);
	case JC_STRING:
		return strcmp(a->valuestring, b->valuestring) == 0 ? 0 : record(w, DIFF_VALUE, a, b);
	case JC_ARRAY:
	case JC_OBJECT:
		/* body_decode refuses deeper documents; this only keeps the
		 * recursion bounded should a caller pass one anyway. */
		if (w->depth >= w->c->max_depth) {
			if (w->out)
				w->out->depth_exceeded = true;
			return 0;
		}
		w->depth++;
		if (ka == JC_OBJECT)
			rc = diff_object(w, a, b);
		else if (w->c->key_paths.count && (rule = key_rule_find(w)))
			rc = diff_keyed(w, rule, a, b);
		else
			rc = diff_array(w, a, b);
		w->depth--;
		return rc;
	default:
		return 0;
	}
}

static int compare_json(const struct compare *c, const cJSON *ref, const cJSON *cand,
			struct diff_list *out)
{
	struct walk w = { .c = c, .out = out };
	int rc;

	buf_init(&w.path.text, COMPARE_PATH_MAX);
	if (path_push(&w.path, "") < 0) {
		free(w.path.starts);
		return -1;
	}
	path_pop(&w.path);
	/* The root is the empty pointer: a rule "" ignores the whole body. */
	rc = rule_set_matches(&c->ignore_paths, &w.path) ? 0 : diff_node(&w, ref, cand);
	if (w.budget_spent && out)
		out->order_unchecked = true;
	buf_free(&w.path.text);
	free(w.path.starts);
	return rc < 0 ? -1 : 0;
}

/* ---- text and binary -------------------------------------------------- */

/* "line L, offset O: ...excerpt..." for one side, around offset off. */
static cJSON *text_excerpt(const uint8_t *p, size_t len, size_t off, size_t line, size_t line_start)
{
	size_t start = off > line_start + EXCERPT_BEFORE ? off - EXCERPT_BEFORE : line_start;
	size_t end, elen;
	const uint8_t *nl;
	char *s;
	cJSON *j;
	int n;

	if (!p)
		p = (const uint8_t *)"";
	start = utf8_char_start(p, len, start);
	end = off + EXCERPT_AFTER < len ? off + EXCERPT_AFTER : len;
	nl = off < end ? memchr(p + off, '\n', end - off) : NULL;
	if (nl)
		end = (size_t)(nl - p);
	end = utf8_char_start(p, len, end);
	elen = end - start;
	s = malloc(elen + 80);
	if (!s)
		return NULL;
	if (off >= len)
		n = snprintf(s, elen + 80, "line %zu, offset %zu: %s%.*s<end of body>", line, off,
			     start > line_start ? "..." : "", (int)elen, (const char *)p + start);
	else
		n = snprintf(s, elen + 80, "line %zu, offset %zu: %s%.*s%s", line, off,
			     start > line_start ? "..." : "", (int)elen, (const char *)p + start,
			     end < len && p[end] != '\n' ? "..." : "");
	j = n < 0 ? NULL : cJSON_CreateString(s);
	free(s);
	return j;
}

static int compare_text(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
			struct diff_list *out)
{
	size_t off = 0, line = 1, line_start = 0;
	size_t n = alen < blen ? alen : blen;
	cJSON *r, *c;

	while (off < n && a[off] == b[off]) {
		if (a[off] == '\n') {
			line++;
			line_start = off + 1;
		}
		off++;
	}
	if (off == n && alen == blen)
		return 0;
	r = text_excerpt(a, alen, off, line, line_start);
	c = text_excerpt(b, blen, off, line, line_start);
	if (!r || !c) {
		cJSON_Delete(r);
		cJSON_Delete(c);
		return -1;
	}
	return diff_add(out, DIFF_BODY, "", 0, DIFF_VALUE, r, c);
}

static cJSON *binary_summary(const uint8_t *p, size_t len, size_t off)
{
	char s[128];

	snprintf(s, sizeof(s), "%zu bytes, fnv1a64 %016" PRIx64 ", first difference at offset %zu",
		 len, hash_bytes(p, len), off);
	return cJSON_CreateString(s);
}

static int compare_binary(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen,
			  struct diff_list *out)
{
	size_t n = alen < blen ? alen : blen, off = 0;
	cJSON *r, *c;

	if (alen == blen && (n == 0 || memcmp(a, b, n) == 0))
		return 0;
	while (off < n && a[off] == b[off])
		off++;
	r = binary_summary(a, alen, off);
	c = binary_summary(b, blen, off);
	if (!r || !c) {
		cJSON_Delete(r);
		cJSON_Delete(c);
		return -1;
	}
	return diff_add(out, DIFF_BODY, "", 0, DIFF_VALUE, r, c);
}

/* ---- bodies ----------------------------------------------------------- */

/* What a body turned out to be, as shown in a type difference. */
static const char *body_state(const struct body *b)
{
	if (b->type == BODY_JSON)
		return "json";
	if (b->depth_exceeded)
		return "json too deep";
	if (b->claims_json && b->type != BODY_EMPTY)
		return "invalid json";
	switch (b->type) {
	case BODY_EMPTY:
		return "empty";
	case BODY_TEXT:
		return "text";
	default:
		return "binary";
	}
}

/* A cut side may fail to parse only because it was cut: no type difference. */
static bool cut_unparsed(bool cut, const char *state, const char *other)
{
	return cut && strcmp(state, "invalid json") == 0 && strcmp(other, "json") == 0;
}

/* Header values equal, or both absent. */
static bool same_header(const struct http_response *a, const struct http_response *b, const char *lname)
{
	const char *x = http_headers_get(&a->headers, lname), *y = http_headers_get(&b->headers, lname);

	return x == y || (x && y && strcmp(x, y) == 0);
}

/* Byte-identical, unencoded bodies under the same content type decode the
 * same way and cannot differ, so they need no parse: the common case of a
 * healthy candidate, where parsing was most of the agent's CPU. */
static bool bodies_identical(const struct http_response *ref, const struct http_response *cand)
{
	return ref->body_len == cand->body_len && ref->truncated == cand->truncated &&
	       !http_headers_get(&ref->headers, "content-encoding") &&
	       !http_headers_get(&cand->headers, "content-encoding") &&
	       same_header(ref, cand, "content-type") &&
	       (ref->body_len == 0 || memcmp(ref->body, cand->body, ref->body_len) == 0);
}

static int compare_bodies(const struct compare *c, const struct http_response *ref,
			  const struct http_response *cand, struct body_shared *rshared,
			  struct body_shared *cshared, struct diff_list *out)
{
	struct body_shared rlocal = { 0 }, clocal = { 0 };
	const struct body *rb, *cb;
	const char *rs, *cs;
	size_t rlen, clen;
	bool rcut, ccut;
	int rc = 0;

	if (bodies_identical(ref, cand)) {
		out->reference_truncated |= ref->truncated;
		out->candidate_truncated |= cand->truncated;
		return 0;
	}
	rb = body_shared_get(rshared ? rshared : &rlocal, ref, c->max_decompressed, c->max_depth);
	cb = body_shared_get(cshared ? cshared : &clocal, cand, c->max_decompressed, c->max_depth);
	rcut = ref->truncated || rb->size_exceeded;
	ccut = cand->truncated || cb->size_exceeded;
	out->reference_truncated |= rcut;
	out->candidate_truncated |= ccut;
	out->depth_exceeded |= rb->depth_exceeded || cb->depth_exceeded;

	if (rb->type == BODY_JSON && cb->type == BODY_JSON) {
		rc = compare_json(c, rb->json, cb->json, out);
		goto done;
	}
	/* Not both JSON: say which side is what when one claimed JSON, unless
	 * the reference failed only because it was cut. */
	rs = body_state(rb);
	cs = body_state(cb);
	if ((rb->claims_json || cb->claims_json) && strcmp(rs, cs) != 0 &&
	    !cut_unparsed(rcut, rs, cs) && !cut_unparsed(ccut, cs, rs)) {
		rc = diff_add(out, DIFF_BODY, "", 0, DIFF_TYPE, cJSON_CreateString(rs),
			      cJSON_CreateString(cs));
		if (rc < 0)
			goto done;
	}
	/* A cut side is compared on its prefix only. */
	rlen = rb->len;
	clen = cb->len;
	if (rcut && clen > rlen)
		clen = rlen;
	if (ccut && rlen > clen)
		rlen = clen;
	if (rb->type == BODY_BINARY || cb->type == BODY_BINARY)
		rc = compare_binary(rb->data, rlen, cb->data, clen, out);
	else
		rc = compare_text(rb->data, rlen, cb->data, clen, out);
done:
	body_shared_clear(&rlocal);
	body_shared_clear(&clocal);
	return rc;
}

int compare_responses_shared(const struct compare *c, const struct http_response *ref,
			     const struct http_response *cand, struct body_shared *ref_body,
			     struct body_shared *cand_body, struct diff_list *out)
{
	if (ref->status != cand->status &&
	    diff_add(out, DIFF_STATUS, "", 0, DIFF_VALUE, cJSON_CreateNumber(ref->status),
		     cJSON_CreateNumber(cand->status)) < 0)
		return -1;
	if (compare_headers(c, &ref->headers, &cand->headers, out) < 0)
		return -1;
	return compare_bodies(c, ref, cand, ref_body, cand_body, out);
}

int compare_responses(const struct compare *c, const struct http_response *ref,
		      const struct http_response *cand, struct diff_list *out)
{
	return compare_responses_shared(c, ref, cand, NULL, NULL, out);
}
