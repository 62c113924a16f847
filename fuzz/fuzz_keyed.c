/* libFuzzer target: arrays paired by key (array_keys) in the comparator,
 * with the other array rules mixed in.
 *
 * Input: 1 flag byte, then "RULES\n---\nREFERENCE JSON\n---\nCANDIDATE JSON".
 *   byte 0: bit 0 ignore_order, bit 1 max_depth 6 (else 128)
 *   RULES, one per line: "k POINTER=MEMBER[!ordered]" a key rule, "i PTR"
 *     an ignore path, "u PTR" an unordered path. Other lines are skipped.
 * Invariants: every difference is well formed and a key is a string or a
 * number on a body difference; a JSON document never differs from itself
 * (its bytes changed, so the comparison really runs); and the comparison
 * is symmetric: what is missing one way is extra the other way, the same
 * number of differences either way (while no budget or cap cut it short,
 * no object repeats a member name: the first one is compared, which is
 * not symmetric, and no ignore path names an array index: an index is the
 * reference's, so it names other elements the other way round). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body.h"
#include "compare.h"
#include "config.h"
#include "fuzz.h"
#include "http.h"

#define KEY_FUZZ_MAX_RULES 12
#define KEY_FUZZ_SEP "\n---\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void key_fuzz_list_add(struct str_list *l, const char *s, size_t len)
{
	char **items = realloc(l->items, (l->count + 1) * sizeof(*items));

	FUZZ_CHECK(items != NULL);
	l->items = items;
	l->items[l->count] = strndup(s, len);
	FUZZ_CHECK(l->items[l->count] != NULL);
	l->count++;
}

static void key_fuzz_list_free(struct str_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

static void key_fuzz_response(struct http_response *r, const uint8_t *body, size_t len, bool space)
{
	memset(r, 0, sizeof(*r));
	r->status = 200;
	FUZZ_CHECK(http_headers_add(&r->headers, "Content-Type", 12, "application/json", 16) == 0);
	r->body = malloc(len + 1);
	FUZZ_CHECK(r->body != NULL);
	if (len)
		memcpy(r->body, body, len);
	/* JSON allows whitespace after the value: the same document, other bytes. */
	if (space)
		r->body[len++] = ' ';
	r->body_len = len;
}

static void key_fuzz_rules(const uint8_t *p, size_t len, struct config *cfg)
{
	const char *s = (const char *)p, *end = s + len;
	unsigned n = 0;

	while (s < end && n < KEY_FUZZ_MAX_RULES) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *eol = nl ? nl : end;
		size_t l = (size_t)(eol - s);

		if (l >= 2 && s[1] == ' ' && !memchr(s, '\0', l)) {
			n++;
			if (s[0] == 'k')
				key_fuzz_list_add(&cfg->array_keys, s + 2, l - 2);
			else if (s[0] == 'i')
				key_fuzz_list_add(&cfg->ignore_paths, s + 2, l - 2);
			else if (s[0] == 'u')
				key_fuzz_list_add(&cfg->unordered_paths, s + 2, l - 2);
			else
				n--;
		}
		s = nl ? nl + 1 : end;
	}
}

struct key_fuzz_tally {
	size_t missing, extra;
};

static struct key_fuzz_tally key_fuzz_check(const struct diff_list *d)
{
	struct key_fuzz_tally t = { 0, 0 };

	FUZZ_CHECK(d->count <= d->cap);
	for (size_t i = 0; i < d->count; i++) {
		const struct difference *x = &d->items[i];

		FUZZ_CHECK((unsigned)x->kind < DIFF_KIND_COUNT);
		FUZZ_CHECK(x->path != NULL);
		FUZZ_CHECK(x->where != DIFF_BODY || x->path[0] == '\0' || x->path[0] == '/');
		FUZZ_CHECK(x->kind != DIFF_MISSING || x->candidate == NULL);
		FUZZ_CHECK(x->kind != DIFF_EXTRA || x->reference == NULL);
		if (x->key) {
			FUZZ_CHECK(x->where == DIFF_BODY && x->path[0] == '/');
			FUZZ_CHECK(cJSON_IsString(x->key) || cJSON_IsNumber(x->key));
		}
		t.missing += x->kind == DIFF_MISSING;
		t.extra += x->kind == DIFF_EXTRA;
	}
	return t;
}

/* Whether some ignore path has a segment of digits only (an array index). */
static bool key_fuzz_ignores_an_index(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->ignore_paths.count; i++) {
		const char *s = cfg->ignore_paths.items[i];

		while ((s = strchr(s, '/'))) {
			size_t n = strspn(++s, "0123456789");

			if (n > 0 && (s[n] == '/' || s[n] == '\0'))
				return true;
		}
	}
	return false;
}

/* Whether some object under j repeats a member name. */
static bool key_fuzz_repeats(const cJSON *j)
{
	for (const cJSON *a = j ? j->child : NULL; a; a = a->next) {
		if (key_fuzz_repeats(a))
			return true;
		if (!cJSON_IsObject(j) || !a->string)
			continue;
		for (const cJSON *b = a->next; b; b = b->next)
			if (b->string && strcmp(a->string, b->string) == 0)
				return true;
	}
	return false;
}

static bool key_fuzz_repeats_in(const uint8_t *p, size_t len)
{
	cJSON *j = cJSON_ParseWithLength((const char *)p, len);
	bool r = key_fuzz_repeats(j);

	cJSON_Delete(j);
	return r;
}

static const uint8_t *key_fuzz_split(const uint8_t *p, const uint8_t *end, const uint8_t **next)
{
	const uint8_t *sep = memmem(p, (size_t)(end - p), KEY_FUZZ_SEP, sizeof(KEY_FUZZ_SEP) - 1);

	if (!sep) {
		*next = end;
		return end;
	}
	*next = sep + sizeof(KEY_FUZZ_SEP) - 1;
	return sep;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p, *end = data + size, *rules, *rules_end, *rb, *rb_end, *cb;
	struct http_response ref, cand, ref2;
	struct body_shared rs = { 0 }, cs = { 0 };
	struct diff_list ab, ba, self;
	struct key_fuzz_tally tab, tba;
	struct config cfg;
	struct compare *c;
	char err[256];

	if (size < 1 || size > 64 * 1024)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.ignore_order = data[0] & 1;
	cfg.max_depth = data[0] & 2 ? 6 : 128;
	cfg.max_decompressed = 1 << 20;
	p = data + 1;
	rules = p;
	rules_end = key_fuzz_split(p, end, &p);
	rb = p;
	rb_end = key_fuzz_split(p, end, &p);
	cb = p;
	key_fuzz_rules(rules, (size_t)(rules_end - rules), &cfg);
	key_fuzz_response(&ref, rb, (size_t)(rb_end - rb), false);
	key_fuzz_response(&ref2, rb, (size_t)(rb_end - rb), true);
	key_fuzz_response(&cand, cb, (size_t)(end - cb), false);

	c = compare_new(&cfg, err, sizeof(err));
	if (!c) {
		FUZZ_CHECK(err[0] != '\0');
		goto out;
	}
	memset(&ab, 0, sizeof(ab));
	memset(&ba, 0, sizeof(ba));
	memset(&self, 0, sizeof(self));
	FUZZ_CHECK(compare_responses(c, &ref, &cand, &ab) == 0);
	FUZZ_CHECK(compare_responses(c, &cand, &ref, &ba) == 0);
	tab = key_fuzz_check(&ab);
	tba = key_fuzz_check(&ba);
	if (!ab.order_unchecked && !ba.order_unchecked && ab.count < 1000 && ba.count < 1000 &&
	    !key_fuzz_ignores_an_index(&cfg) &&
	    !key_fuzz_repeats_in(rb, (size_t)(rb_end - rb)) && !key_fuzz_repeats_in(cb, (size_t)(end - cb))) {
		FUZZ_CHECK(ab.count == ba.count);
		FUZZ_CHECK(tab.missing == tba.extra);
		FUZZ_CHECK(tab.extra == tba.missing);
		FUZZ_CHECK(ab.key_fallback == ba.key_fallback);
	}
	FUZZ_CHECK(compare_responses_shared(c, &ref, &ref2, &rs, &cs, &self) == 0);
	key_fuzz_check(&self);
	if (rs.decoded && rs.body.type == BODY_JSON)
		FUZZ_CHECK(self.count == 0);
	diff_list_clear(&ab);
	diff_list_clear(&ba);
	diff_list_clear(&self);
	body_shared_clear(&rs);
	body_shared_clear(&cs);
	compare_free(c);
out:
	http_response_clear(&ref);
	http_response_clear(&ref2);
	http_response_clear(&cand);
	key_fuzz_list_free(&cfg.array_keys);
	key_fuzz_list_free(&cfg.ignore_paths);
	key_fuzz_list_free(&cfg.unordered_paths);
	return 0;
}
