/* libFuzzer target: the comparator (compare_new + compare_responses), with
 * body decoding (content types, gzip/deflate), JSON structural diff and
 * ignore rules derived from the input.
 *
 * Input: 3 flag bytes, then "RULES\n---\nREFERENCE BODY\n---\nCANDIDATE BODY".
 *   byte 0 / byte 1, reference / candidate:
 *     bits 0-1 content type: none, application/json, text/plain,
 *              application/problem+json; charset=utf-8
 *     bits 2-3 content encoding: none, gzip (the harness compresses the
 *              body), deflate (likewise, zlib format), gzip declared over
 *              the raw bytes (the decoder gets garbage)
 *     bit 4    truncated (HAProxy cut the body)
 *     bit 5    status 500 instead of 200
 *   byte 2, the comparator's config:
 *     bit 0 ignore_order, bit 1 abs_tolerance 0.5, bit 2 rel_tolerance 0.1,
 *     bit 3 max_depth 4 (else 128), bit 4 max_decompressed 64 (else 1 MiB),
 *     bit 5 the default ignored headers
 *   RULES, one per line: "i PTR" ignore path, "u PTR" unordered path,
 *     "h NAME" ignored header, "R NAME: VALUE" / "C NAME: VALUE" a header of
 *     the reference / candidate. Other lines are skipped. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "compare.h"
#include "config.h"
#include "fuzz.h"
#include "http.h"

#ifndef FUZZ_NO_MAIN
/* body.c counts decode failures in the global counters; the fuzzer links
 * only the modules under test, not stats.c. */
#include "stats.h"
struct stats stats;
#endif

#define CMP_FUZZ_MAX_RULES 16
#define CMP_FUZZ_SEP "\n---\n"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const cmp_fuzz_ctypes[] = {
	NULL, "application/json", "text/plain", "application/problem+json; charset=utf-8",
};

static const char *const cmp_fuzz_default_ignored[] = {
	"date", "server", "age", "content-length", "transfer-encoding", "connection",
	"keep-alive", "via", "etag", "last-modified", "expires", "set-cookie", "x-request-id",
};

static void cmp_fuzz_list_add(struct str_list *l, const char *s, size_t len)
{
	char **items = realloc(l->items, (l->count + 1) * sizeof(*items));

	FUZZ_CHECK(items != NULL);
	l->items = items;
	l->items[l->count] = strndup(s, len);
	FUZZ_CHECK(l->items[l->count] != NULL);
	l->count++;
}

static void cmp_fuzz_list_free(struct str_list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	memset(l, 0, sizeof(*l));
}

/* Compresses in[0..len) as gzip (windowbits 31) or zlib (15). */
static uint8_t *cmp_fuzz_deflate(const uint8_t *in, size_t len, int windowbits, size_t *outlen)
{
	z_stream zs;
	uint8_t *out;
	size_t cap;

	memset(&zs, 0, sizeof(zs));
	FUZZ_CHECK(deflateInit2(&zs, 1, Z_DEFLATED, windowbits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	cap = deflateBound(&zs, (uLong)len) + 32;
	out = malloc(cap);
	FUZZ_CHECK(out != NULL);
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = (uInt)len;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	FUZZ_CHECK(deflate(&zs, Z_FINISH) == Z_STREAM_END);
	*outlen = cap - zs.avail_out;
	deflateEnd(&zs);
	return out;
}

static void cmp_fuzz_response(struct http_response *r, uint8_t flags, const uint8_t *body, size_t len)
{
	const char *ctype = cmp_fuzz_ctypes[flags & 3];
	unsigned coding = (flags >> 2) & 3;

	memset(r, 0, sizeof(*r));
	r->status = flags & 0x20 ? 500 : 200;
	r->truncated = flags & 0x10;
	if (ctype)
		FUZZ_CHECK(http_headers_add(&r->headers, "Content-Type", 12, ctype, strlen(ctype)) == 0);
	if (coding == 1 || coding == 2) {
		r->body = cmp_fuzz_deflate(body, len, coding == 1 ? 31 : 15, &r->body_len);
		FUZZ_CHECK(http_headers_add(&r->headers, "Content-Encoding", 16,
					    coding == 1 ? "gzip" : "deflate", coding == 1 ? 4 : 7) == 0);
		return;
	}
	if (coding == 3)
		FUZZ_CHECK(http_headers_add(&r->headers, "Content-Encoding", 16, "gzip", 4) == 0);
	if (len) {
		r->body = malloc(len);
		FUZZ_CHECK(r->body != NULL);
		memcpy(r->body, body, len);
		r->body_len = len;
	}
}

static void cmp_fuzz_header(struct http_response *r, const char *line, size_t len)
{
	const char *colon = memchr(line, ':', len);
	const char *value;

	if (!colon || colon == line)
		return;
	value = colon + 1;
	while (value < line + len && *value == ' ')
		value++;
	(void)http_headers_add(&r->headers, line, (size_t)(colon - line), value,
			       (size_t)(line + len - value));
}

static void cmp_fuzz_rules(const uint8_t *p, size_t len, struct config *cfg,
			   struct http_response *ref, struct http_response *cand)
{
	const char *s = (const char *)p, *end = s + len;
	unsigned n = 0;

	while (s < end && n < CMP_FUZZ_MAX_RULES) {
		const char *nl = memchr(s, '\n', (size_t)(end - s));
		const char *eol = nl ? nl : end;
		size_t l = (size_t)(eol - s);

		/* A rule is a C string: a NUL ends it as it would in a config. */
		if (l >= 2 && s[1] == ' ' && !memchr(s, '\0', l)) {
			n++;
			switch (s[0]) {
			case 'i':
				cmp_fuzz_list_add(&cfg->ignore_paths, s + 2, l - 2);
				break;
			case 'u':
				cmp_fuzz_list_add(&cfg->unordered_paths, s + 2, l - 2);
				break;
			case 'h':
				cmp_fuzz_list_add(&cfg->ignore_headers, s + 2, l - 2);
				break;
			case 'R':
				cmp_fuzz_header(ref, s + 2, l - 2);
				break;
			case 'C':
				cmp_fuzz_header(cand, s + 2, l - 2);
				break;
			default:
				n--;
				break;
			}
		}
		s = nl ? nl + 1 : end;
	}
}

static void cmp_fuzz_check_diffs(const struct diff_list *d)
{
	FUZZ_CHECK(d->count <= d->cap);
	FUZZ_CHECK(d->count == 0 || d->items != NULL);
	for (size_t i = 0; i < d->count; i++) {
		const struct difference *x = &d->items[i];

		FUZZ_CHECK((unsigned)x->where < DIFF_WHERE_COUNT);
		FUZZ_CHECK((unsigned)x->kind < DIFF_KIND_COUNT);
		FUZZ_CHECK(x->path != NULL);
		FUZZ_CHECK(x->where != DIFF_BODY || x->path[0] == '\0' || x->path[0] == '/');
		FUZZ_CHECK(x->kind != DIFF_MISSING || x->candidate == NULL);
		FUZZ_CHECK(x->kind != DIFF_EXTRA || x->reference == NULL);
	}
}

static const uint8_t *cmp_fuzz_split(const uint8_t *p, const uint8_t *end, const uint8_t **next)
{
	const uint8_t *sep = memmem(p, (size_t)(end - p), CMP_FUZZ_SEP, sizeof(CMP_FUZZ_SEP) - 1);

	if (!sep) {
		*next = end;
		return end;
	}
	*next = sep + sizeof(CMP_FUZZ_SEP) - 1;
	return sep;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *p, *end = data + size, *rules, *rules_end, *rb, *rb_end, *cb;
	struct config cfg;
	struct http_response ref, cand;
	struct diff_list diffs;
	struct compare *c;
	char err[256];

	if (size < 3 || size > 256 * 1024)
		return 0;
	memset(&cfg, 0, sizeof(cfg));
	cfg.ignore_order = data[2] & 1;
	cfg.abs_tolerance = data[2] & 2 ? 0.5 : 0;
	cfg.rel_tolerance = data[2] & 4 ? 0.1 : 0;
	cfg.max_depth = data[2] & 8 ? 4 : 128;
	cfg.max_decompressed = data[2] & 16 ? 64 : 1 << 20;
	if (data[2] & 32)
		for (size_t i = 0; i < sizeof(cmp_fuzz_default_ignored) / sizeof(cmp_fuzz_default_ignored[0]); i++)
			cmp_fuzz_list_add(&cfg.ignore_headers, cmp_fuzz_default_ignored[i],
					  strlen(cmp_fuzz_default_ignored[i]));

	p = data + 3;
	rules = p;
	rules_end = cmp_fuzz_split(p, end, &p);
	rb = p;
	rb_end = cmp_fuzz_split(p, end, &p);
	cb = p;
	cmp_fuzz_response(&ref, data[0], rb, (size_t)(rb_end - rb));
	cmp_fuzz_response(&cand, data[1], cb, (size_t)(end - cb));
	cmp_fuzz_rules(rules, (size_t)(rules_end - rules), &cfg, &ref, &cand);

	c = compare_new(&cfg, err, sizeof(err));
	if (!c) {
		FUZZ_CHECK(err[0] != '\0');
		goto out;
	}
	memset(&diffs, 0, sizeof(diffs));
	FUZZ_CHECK(compare_responses(c, &ref, &cand, &diffs) == 0);
	cmp_fuzz_check_diffs(&diffs);
	diff_list_clear(&diffs);

	/* A response never differs from itself, whatever it holds. */
	memset(&diffs, 0, sizeof(diffs));
	FUZZ_CHECK(compare_responses(c, &ref, &ref, &diffs) == 0);
	FUZZ_CHECK(diffs.count == 0);
	diff_list_clear(&diffs);
	compare_free(c);
out:
	http_response_clear(&ref);
	http_response_clear(&cand);
	cmp_fuzz_list_free(&cfg.ignore_headers);
	cmp_fuzz_list_free(&cfg.ignore_paths);
	cmp_fuzz_list_free(&cfg.unordered_paths);
	return 0;
}
