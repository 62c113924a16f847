#include "jsonw.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define JSONW_MIN_CAP 4096

static const char hexdig[] = "0123456789abcdef";

void jsonw_init(struct jsonw *w, size_t max)
{
	memset(w, 0, sizeof(*w));
	w->max = max;
}

void jsonw_reset(struct jsonw *w)
{
	w->len = 0;
	w->comma = w->over = w->oom = false;
}

void jsonw_free(struct jsonw *w)
{
	free(w->buf);
	w->buf = NULL;
	w->len = w->cap = 0;
}

/* Room for n more bytes. When that would pass max: false, and the text is
 * marked over only if mark (a caller may still try a smaller size). */
static bool room(struct jsonw *w, size_t n, bool mark)
{
	size_t need, cap;
	char *nb;

	if (w->over || w->oom)
		return false;
	if (n > w->max - w->len) {
		if (mark)
			w->over = true;
		return false;
	}
	need = w->len + n;
	if (need <= w->cap)
		return true;
	cap = w->cap ? w->cap : JSONW_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > w->max)
		cap = w->max;
	nb = realloc(w->buf, cap);
	if (!nb) {
		w->oom = true;
		return false;
	}
	w->buf = nb;
	w->cap = cap;
	return true;
}

static void put(struct jsonw *w, const char *s, size_t n)
{
	if (room(w, n, true)) {
		memcpy(w->buf + w->len, s, n);
		w->len += n;
	}
}

/* The separator a value or key needs before it. */
static void sep(struct jsonw *w)
{
	if (w->comma)
		put(w, ",", 1);
}

void jsonw_open(struct jsonw *w, char c)
{
	sep(w);
	put(w, &c, 1);
	w->comma = false;
}

void jsonw_close(struct jsonw *w, char c)
{
	put(w, &c, 1);
	w->comma = true;
}

/* ---- strings ------------------------------------------------------------ */

/* Bytes written for an ASCII byte inside a string (NUL becomes a space). */
static size_t ascii_size(uint8_t c)
{
	if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t')
		return 2;
	return c == 0 ? 1 : c < 0x20 ? 6 : 1;
}

/* The bytes of s[i..) that make one step of jsonw_string(): one ASCII byte,
 * one whole valid character, or one invalid byte (U+FFFD). *size gets what
 * the step writes. */
static size_t string_step(const uint8_t *s, size_t len, size_t i, size_t *size)
{
	size_t n;

	if (s[i] < 0x80) {
		*size = ascii_size(s[i]);
		return 1;
	}
	n = json_utf8_valid_prefix(s + i, len - i > 4 ? 4 : len - i);
	if (n == 0) {
		*size = 3;
		return 1;
	}
	n = s[i] >= 0xf0 ? 4 : s[i] >= 0xe0 ? 3 : 2;
	*size = n;
	return n;
}

size_t jsonw_string_fit(const char *str, size_t len, size_t limit, size_t *size)
{
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0, used = 2;

	while (i < len) {
		/* Plain bytes cost one each and are counted in bulk. */
		size_t run = (size_t)(json_plain_run(s + i, s + len) - (s + i)), cost, step;

		if (run) {
			size_t left = limit > used ? limit - used : 0;

			if (run > left)
				run = left;
			used += run;
			i += run;
			if (run == left)
				break;
			continue;
		}
		step = string_step(s, len, i, &cost);
		if (used + cost > limit)
			break;
		used += cost;
		i += step;
	}
	*size = used;
	return i;
}

size_t jsonw_string_size(const char *s, size_t len)
{
	size_t size;

	jsonw_string_fit(s, len, SIZE_MAX, &size);
	return size;
}

/* Writes the quoted string; the caller has made room for size bytes. */
static void string_body(char *o, const uint8_t *s, size_t len)
{
	*o++ = '"';
	for (size_t i = 0; i < len;) {
		/* Plain ASCII is copied in runs; the rest one step at a time. */
		size_t run = (size_t)(json_plain_run(s + i, s + len) - s);

		memcpy(o, s + i, run - i);
		o += run - i;
		i = run;
		if (i == len)
			break;
		if (s[i] < 0x80) {
			uint8_t c = s[i++];

			switch (c) {
			case '"': *o++ = '\\'; *o++ = '"'; break;
			case '\\': *o++ = '\\'; *o++ = '\\'; break;
			case '\b': *o++ = '\\'; *o++ = 'b'; break;
			case '\f': *o++ = '\\'; *o++ = 'f'; break;
			case '\n': *o++ = '\\'; *o++ = 'n'; break;
			case '\r': *o++ = '\\'; *o++ = 'r'; break;
			case '\t': *o++ = '\\'; *o++ = 't'; break;
			case 0: *o++ = ' '; break;
			default:
				memcpy(o, "\\u00", 4);
				o[4] = hexdig[c >> 4];
				o[5] = hexdig[c & 15];
				o += 6;
			}
		} else {
			size_t size, step = string_step(s, len, i, &size);

			/* One whole character, or one invalid byte (a character is
			 * two bytes or more). */
			if (step > 1)
				memcpy(o, s + i, step);
			else
				memcpy(o, "\xef\xbf\xbd", 3);
			o += size;
			i += step;
		}
	}
	*o = '"';
}

static void string_at(struct jsonw *w, const char *s, size_t len)
{
	const uint8_t *u = (const uint8_t *)s;
	size_t size;

	/* Most keys and values need no escape: one scan, one copy. */
	if (json_plain_run(u, u + len) == u + len) {
		if (room(w, len + 2, true)) {
			w->buf[w->len] = '"';
			memcpy(w->buf + w->len + 1, s, len);
			w->buf[w->len + 1 + len] = '"';
			w->len += len + 2;
		}
		return;
	}
	size = jsonw_string_size(s, len);

	if (room(w, size, true)) {
		string_body(w->buf + w->len, (const uint8_t *)s, len);
		w->len += size;
	}
}

void jsonw_key(struct jsonw *w, const char *key, size_t len)
{
	sep(w);
	string_at(w, key, len);
	put(w, ":", 1);
	w->comma = false;
}

void jsonw_keyc(struct jsonw *w, const char *key)
{
	jsonw_key(w, key, strlen(key));
}

void jsonw_string(struct jsonw *w, const char *s, size_t len)
{
	sep(w);
	string_at(w, s, len);
	w->comma = true;
}

void jsonw_cstring(struct jsonw *w, const char *s)
{
	if (s)
		jsonw_string(w, s, strlen(s));
	else
		jsonw_null(w);
}

/* ---- other primitives -------------------------------------------------- */

static void literal(struct jsonw *w, const char *s, size_t n)
{
	sep(w);
	put(w, s, n);
	w->comma = true;
}

void jsonw_null(struct jsonw *w)
{
	literal(w, "null", 4);
}

void jsonw_bool(struct jsonw *w, bool v)
{
	if (v)
		literal(w, "true", 4);
	else
		literal(w, "false", 5);
}

void jsonw_int(struct jsonw *w, int64_t v)
{
	char buf[24];
	int n = snprintf(buf, sizeof(buf), "%" PRId64, v);

	literal(w, buf, (size_t)n);
}

void jsonw_number(struct jsonw *w, double v)
{
	char buf[32];
	int n;

	if (!isfinite(v)) {
		jsonw_null(w);
		return;
	}
	if (v == trunc(v) && fabs(v) < 1e15) {
		jsonw_int(w, (int64_t)v);
		return;
	}
	/* A decimal with few places that reads back as v: m / 10^k is
	 * correctly rounded, as strtod of its digits is, so the test is exact. */
	if (fabs(v) < 1e9) {
		static const double p10[] = { 1e1, 1e2, 1e3, 1e4, 1e5, 1e6 };

		for (int k = 0; k < 6; k++) {
			double m = round(v * p10[k]);

			if (m / p10[k] == v) {
				int64_t im = (int64_t)fabs(m), ip = (int64_t)p10[k];

				n = snprintf(buf, sizeof(buf), "%s%" PRId64 ".%0*" PRId64, v < 0 ? "-" : "",
					     im / ip, k + 1, im % ip);
				literal(w, buf, (size_t)n);
				return;
			}
		}
	}
	n = snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		n = snprintf(buf, sizeof(buf), "%.17g", v);
	literal(w, buf, (size_t)n);
}

void jsonw_ms(struct jsonw *w, double ms)
{
	char buf[40];
	int64_t us;
	int n, frac, digits;

	if (!isfinite(ms) || ms < 0 || ms > 9e12) {
		jsonw_number(w, isfinite(ms) ? round(ms * 1000.0) / 1000.0 : ms);
		return;
	}
	us = llround(ms * 1000.0);
	frac = (int)(us % 1000);
	n = snprintf(buf, sizeof(buf), "%" PRId64, us / 1000);
	if (frac) {
		/* Up to three decimals, trailing zeros dropped. */
		for (digits = 3; frac % 10 == 0; digits--)
			frac /= 10;
		n += snprintf(buf + n, sizeof(buf) - (size_t)n, ".%0*d", digits, frac);
	}
	literal(w, buf, (size_t)n);
}

/* ---- JSON text, validated and minified ---------------------------------- */

static const uint8_t *skip_ws(const uint8_t *p, const uint8_t *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const uint8_t *scan_literal(const uint8_t *p, const uint8_t *end, const char *word, size_t n)
{
	return (size_t)(end - p) >= n && memcmp(p, word, n) == 0 ? p + n : NULL;
}

/* Copies the tokens of s[0..len) to out (NULL: counts only) without the
 * whitespace between them. Returns the bytes written, or SIZE_MAX when s is
 * not one valid JSON value. */
static size_t minify(const uint8_t *s, size_t len, char *out)
{
	/* Per open container: '}' for an object, ']' for an array. */
	char closer[JSON_MAX_DEPTH];
	const uint8_t *p = s, *end = s + len, *tok;
	size_t depth = 0, n = 0;
	bool key = false;   /* inside an object, where a key comes next */

	for (;;) {
		/* A value (or, in an object, a key and its colon) starts here. */
		p = skip_ws(p, end);
		if (p == end || (key && *p != '"'))
			return SIZE_MAX;
		tok = p;
		switch (*p) {
		case '{':
		case '[':
			if (depth == JSON_MAX_DEPTH)
				return SIZE_MAX;
			closer[depth++] = *p == '{' ? '}' : ']';
			p = skip_ws(p + 1, end);
			if (p < end && *p == closer[depth - 1]) {
				if (out) {
					out[n] = (char)*tok;
					out[n + 1] = (char)*p;
				}
				n += 2;
				p++;
				depth--;
				break;
			}
			if (out)
				out[n] = (char)*tok;
			n++;
			key = closer[depth - 1] == '}';
			continue;
		case '"':
			p = json_scan_string(p, end);
			break;
		case 't':
			p = scan_literal(p, end, "true", 4);
			break;
		case 'f':
			p = scan_literal(p, end, "false", 5);
			break;
		case 'n':
			p = scan_literal(p, end, "null", 4);
			break;
		default:
			p = json_scan_number(p, end);
			break;
		}
		if (*tok != '{' && *tok != '[') {
			/* A scalar (or a key) token: copied as it is. */
			if (!p)
				return SIZE_MAX;
			if (out)
				memcpy(out + n, tok, (size_t)(p - tok));
			n += (size_t)(p - tok);
			if (key) {
				p = skip_ws(p, end);
				if (p == end || *p != ':')
					return SIZE_MAX;
				if (out)
					out[n] = ':';
				n++;
				p++;
				key = false;
				continue;
			}
		}
		/* After a value: a comma, the end of containers, or the end. */
		for (;;) {
			p = skip_ws(p, end);
			if (depth == 0)
				return p == end ? n : SIZE_MAX;
			if (p == end)
				return SIZE_MAX;
			if (*p == ',') {
				if (out)
					out[n] = ',';
				n++;
				p++;
				key = closer[depth - 1] == '}';
				break;
			}
			if (*p != closer[depth - 1])
				return SIZE_MAX;
			if (out)
				out[n] = (char)*p;
			n++;
			p++;
			depth--;
		}
	}
}

void jsonw_json_minified(struct jsonw *w, const char *s, size_t len)
{
	literal(w, s, len);
}

size_t jsonw_json_text_size(const uint8_t *s, size_t len)
{
	return minify(s, len, NULL);
}

bool jsonw_json_text(struct jsonw *w, const uint8_t *s, size_t len)
{
	size_t n, at = w->len, need;
	bool comma = w->comma;

	if (len == 0)
		return false;   /* no value at all */
	/* Minified text is never longer than the input; only when the input
	 * does not fit is the exact size worth a first pass. */
	need = len + (comma ? 1 : 0);
	if (!room(w, need, false)) {
		if (!jsonw_ok(w))
			return true;
		n = minify(s, len, NULL);
		if (n == SIZE_MAX)
			return false;
		need = n + (comma ? 1 : 0);
		if (!room(w, need, true))
			return true;
	}
	if (comma)
		w->buf[w->len++] = ',';
	n = minify(s, len, w->buf + w->len);
	if (n == SIZE_MAX) {
		w->len = at;
		return false;
	}
	w->len += n;
	w->comma = true;
	return true;
}

/* ---- cJSON values ------------------------------------------------------- */

void jsonw_cjson(struct jsonw *w, const cJSON *v)
{
	const cJSON *c;

	if (!v) {
		jsonw_null(w);
		return;
	}
	switch (v->type & 0xff) {
	case cJSON_False:
		jsonw_bool(w, false);
		break;
	case cJSON_True:
		jsonw_bool(w, true);
		break;
	case cJSON_Number:
		jsonw_number(w, v->valuedouble);
		break;
	case cJSON_String:
		jsonw_cstring(w, v->valuestring ? v->valuestring : "");
		break;
	case cJSON_Raw:
		if (!v->valuestring || !jsonw_json_text(w, (const uint8_t *)v->valuestring, strlen(v->valuestring)))
			jsonw_null(w);
		break;
	case cJSON_Array:
		jsonw_open(w, '[');
		for (c = v->child; c; c = c->next)
			jsonw_cjson(w, c);
		jsonw_close(w, ']');
		break;
	case cJSON_Object:
		jsonw_open(w, '{');
		for (c = v->child; c; c = c->next) {
			jsonw_keyc(w, c->string ? c->string : "");
			jsonw_cjson(w, c);
		}
		jsonw_close(w, '}');
		break;
	default:
		jsonw_null(w);
		break;
	}
}
