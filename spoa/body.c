#include "body.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>

#include "json.h"
#include "utf8.h"
#include "http.h"

/* cJSON refuses deeper documents itself, recursively; our scan must refuse
 * them first so that its limit is never the one that applies. */
#define BODY_MAX_DEPTH CJSON_NESTING_LIMIT

/* More codings than this in one Content-Encoding is not a real server. */
#define BODY_MAX_CODINGS 4

enum coding { CODING_IDENTITY = 0, CODING_GZIP, CODING_DEFLATE, CODING_UNKNOWN, CODING_COUNT };

static enum coding coding_parse(const char *tok, size_t len)
{
	if (len == 0 || (len == 8 && strncasecmp(tok, "identity", 8) == 0))
		return CODING_IDENTITY;
	if ((len == 4 && strncasecmp(tok, "gzip", 4) == 0) ||
	    (len == 6 && strncasecmp(tok, "x-gzip", 6) == 0))
		return CODING_GZIP;
	if (len == 7 && strncasecmp(tok, "deflate", 7) == 0)
		return CODING_DEFLATE;
	return CODING_UNKNOWN;
}

/* Splits a Content-Encoding value into codings, in the order applied.
 * Returns their number, or -1 when there are too many. */
static int codings_split(const char *value, enum coding *out)
{
	int n = 0;

	while (*value) {
		size_t len;

		while (*value == ' ' || *value == '\t' || *value == ',')
			value++;
		len = strcspn(value, ", \t");
		if (len == 0)
			break;
		if (n == BODY_MAX_CODINGS)
			return -1;
		out[n++] = coding_parse(value, len);
		value += len;
	}
	return n;
}

/* Inflates in[0..inlen) into a new buffer of at most cap bytes (plus one for
 * a NUL the JSON parser wants). windowbits selects the wrapper. Returns 0
 * with *out and *outlen set (the caller frees), sets *cut when output went over
 * cap. A stream that ends early is accepted when allow_partial (the input
 * itself was cut); any other error returns -1. */
static int inflate_buf(const uint8_t *in, size_t inlen, int windowbits, size_t cap,
		       bool allow_partial, uint8_t **out, size_t *outlen, bool *cut)
{
	z_stream zs;
	uint8_t *buf = NULL;
	size_t size, len = 0;
	int rc;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, windowbits) != Z_OK)
		return -1;
	size = inlen < cap / 4 ? inlen * 4 : cap;
	if (size < 4096)
		size = cap < 4096 ? cap : 4096;
	buf = malloc(size + 1);
	if (!buf)
		goto fail;
	zs.next_in = (Bytef *)(uintptr_t)in;
	zs.avail_in = inlen > UINT32_MAX ? UINT32_MAX : (uInt)inlen;
	for (;;) {
		if (len == size) {
			uint8_t *nb;
			size_t nsize;

			if (size >= cap) {
				/* Full at the cap: one more byte tells whether it was cut. */
				uint8_t probe;

				zs.next_out = &probe;
				zs.avail_out = 1;
				rc = inflate(&zs, Z_NO_FLUSH);
				if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
					goto fail;
				*cut = zs.avail_out == 0;
				break;
			}
			nsize = size > cap / 2 ? cap : size * 2;
			nb = realloc(buf, nsize + 1);
			if (!nb)
				goto fail;
			buf = nb;
			size = nsize;
		}
		zs.next_out = buf + len;
		zs.avail_out = (uInt)(size - len > UINT32_MAX ? UINT32_MAX : size - len);
		rc = inflate(&zs, Z_NO_FLUSH);
		len = (size_t)(zs.next_out - buf);
		if (rc == Z_STREAM_END)
			break;
		if (rc == Z_OK || (rc == Z_BUF_ERROR && len == size))
			continue;
		/* No progress with room left: the input ended inside the stream. */
		if (rc == Z_BUF_ERROR && allow_partial)
			break;
		goto fail;
	}
	inflateEnd(&zs);
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:
	inflateEnd(&zs);
	free(buf);
	return -1;
}

/* HTTP "deflate" is the zlib format, but enough servers send raw deflate
 * that both are accepted. */
static int decode_one(enum coding coding, const uint8_t *in, size_t inlen, size_t cap,
		      bool partial, uint8_t **out, size_t *outlen, bool *cut)
{
	if (coding == CODING_GZIP)
		return inflate_buf(in, inlen, 16 + MAX_WBITS, cap, partial, out, outlen, cut);
	if (coding == CODING_DEFLATE) {
		if (inflate_buf(in, inlen, MAX_WBITS, cap, partial, out, outlen, cut) == 0)
			return 0;
		*cut = false;
		return inflate_buf(in, inlen, -MAX_WBITS, cap, partial, out, outlen, cut);
	}
	return -1;
}

static void decode_content(const struct http_response *resp, size_t cap, struct body *out)
{
	const char *ce = http_headers_get(&resp->headers, "content-encoding");
	enum coding codings[BODY_MAX_CODINGS];
	int n;

	if (!ce || resp->body_len == 0)
		return;
	n = codings_split(ce, codings);
	if (n < 0)
		goto fail;
	/* Decoded in reverse order of application. */
	for (int i = n - 1; i >= 0; i--) {
		uint8_t *dec;
		size_t declen;
		bool cut = false;

		if (codings[i] == CODING_IDENTITY)
			continue;
		if (decode_one(codings[i], out->data, out->len, cap,
			       resp->truncated || out->size_exceeded, &dec, &declen, &cut) < 0)
			goto fail;
		free(out->owned);
		out->owned = dec;
		out->data = dec;
		out->len = declen;
		out->size_exceeded |= cut;
	}
	return;
fail:
	free(out->owned);
	out->owned = NULL;
	out->data = resp->body;
	out->len = resp->body_len;
	out->size_exceeded = false;
	out->decode_failed = true;
}

/* Nesting depth of a JSON text without parsing it: brackets outside
 * strings. Stops counting as soon as limit is passed, so a hostile body costs
 * one linear scan and no stack. */
static bool json_depth_within(const uint8_t *p, size_t len, unsigned limit)
{
	unsigned depth = 0;
	bool in_string = false;

	for (size_t i = 0; i < len; i++) {
		uint8_t ch = p[i];

		if (in_string) {
			if (ch == '\\')
				i++;
			else if (ch == '"')
				in_string = false;
			continue;
		}
		if (ch == '"') {
			in_string = true;
		} else if (ch == '[' || ch == '{') {
			if (++depth > limit)
				return false;
		} else if ((ch == ']' || ch == '}') && depth > 0) {
			depth--;
		}
	}
	return true;
}

/* Valid UTF-8 without NUL or other C0 controls than tab, CR, LF, FF. A
 * character cut by the end of the buffer is accepted when cut is set and
 * what is left of it is a valid beginning. */
static bool is_text(const uint8_t *p, size_t len, bool cut)
{
	size_t i = 0;

	while (i < len) {
		uint8_t ch = p[i];
		int n;

		if (ch < 0x80) {
			if (ch < 0x20 && ch != '\t' && ch != '\n' && ch != '\r' && ch != '\f')
				return false;
			i++;
			continue;
		}
		n = utf8_char(p + i, len - i);
		if (n == -2)
			return cut;
		if (n < 0)
			return false;
		i += (size_t)n;
	}
	return true;
}

/* cJSON wants a NUL-terminated text; a body with a NUL inside is not JSON. */
static cJSON *cjson_parse(const uint8_t *data, size_t len)
{
	const char *end = NULL;
	char *copy;
	cJSON *json;

	if (memchr(data, '\0', len))
		return NULL;
	copy = malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, data, len);
	copy[len] = '\0';
	json = cJSON_ParseWithOpts(copy, &end, true);
	free(copy);
	return json;
}

void body_decode(const struct http_response *resp, size_t max_decompressed,
		 unsigned max_depth, struct body *out)
{
	bool cut;

	memset(out, 0, sizeof(*out));
	out->data = resp->body;
	out->len = resp->body ? resp->body_len : 0;
	out->claims_json = body_content_type_is_json(http_headers_get(&resp->headers, "content-type"));
	decode_content(resp, max_decompressed, out);
	if (out->len == 0) {
		out->type = BODY_EMPTY;
		return;
	}
	cut = resp->truncated || out->size_exceeded;
	if (out->claims_json) {
		unsigned limit = max_depth < BODY_MAX_DEPTH ? max_depth : BODY_MAX_DEPTH;

		/* Our parser takes RFC 8259 JSON within the depth limit; what it
		 * refuses is scanned for depth (too deep: not parsed, flagged)
		 * and left to cJSON, slower, which accepts more (invalid UTF-8
		 * in strings, numbers like 01.), so such bodies still compare
		 * as JSON. */
		out->json = json_parse(out->data, out->len, limit, &out->json_arena);
		if (!out->json) {
			if (!json_depth_within(out->data, out->len, limit))
				out->depth_exceeded = true;
			else
				out->json = cjson_parse(out->data, out->len);
		}
		if (out->json) {
			out->type = BODY_JSON;
			return;
		}
	}
	out->type = is_text(out->data, out->len, cut) ? BODY_TEXT : BODY_BINARY;
}

void body_clear(struct body *b)
{
	if (b->json_arena)
		json_arena_free(b->json_arena);
	else
		cJSON_Delete(b->json);
	free(b->owned);
	memset(b, 0, sizeof(*b));
}

const struct body *body_shared_get(struct body_shared *s, const struct http_response *resp,
				   size_t max_decompressed, unsigned max_depth)
{
	if (!s->decoded) {
		body_decode(resp, max_decompressed, max_depth, &s->body);
		s->decoded = true;
	}
	return &s->body;
}

void body_shared_clear(struct body_shared *s)
{
	if (s->decoded)
		body_clear(&s->body);
	s->decoded = false;
}

bool body_content_type_is_json(const char *content_type)
{
	const char *p, *slash, *end;
	size_t len;

	if (!content_type)
		return false;
	p = content_type;
	while (*p == ' ' || *p == '\t')
		p++;
	end = p + strcspn(p, ";");
	while (end > p && (end[-1] == ' ' || end[-1] == '\t'))
		end--;
	len = (size_t)(end - p);
	slash = memchr(p, '/', len);
	if (!slash || slash == p || slash + 1 == end)
		return false;
	if (len == 16 && strncasecmp(p, "application/json", 16) == 0)
		return true;
	/* type/subtype+json: any structured syntax suffix of JSON (RFC 6839). */
	return (size_t)(end - slash - 1) > 5 && strncasecmp(end - 5, "+json", 5) == 0;
}
