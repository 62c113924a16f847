#include "jsonw.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "utf8.h"

static const char hexdig[] = "0123456789abcdef";

void jsonw_init(struct jsonw *w, size_t max)
{
	buf_init(&w->b, max);
	w->comma = false;
}

void jsonw_reset(struct jsonw *w)
{
	buf_reset(&w->b);
	w->comma = false;
}

void jsonw_free(struct jsonw *w)
{
	buf_free(&w->b);
}

static void put(struct jsonw *w, const char *s, size_t n)
{
	buf_add(&w->b, s, n);
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
	int n;

	if (s[i] < 0x80) {
		*size = ascii_size(s[i]);
		return 1;
	}
	n = utf8_char(s + i, len - i);
	if (n < 0) {
		*size = 3;
		return 1;
	}
	*size = (size_t)n;
	return (size_t)n;
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
	char *o;

	/* Most keys and values need no escape: one scan, one copy. */
	if (json_plain_run(u, u + len) == u + len) {
		if ((o = buf_reserve(&w->b, len + 2)) != NULL) {
			o[0] = '"';
			memcpy(o + 1, s, len);
			o[len + 1] = '"';
			buf_commit(&w->b, len + 2);
		}
		return;
	}
	size = jsonw_string_size(s, len);
	if ((o = buf_reserve(&w->b, size)) != NULL) {
		string_body(o, u, len);
		buf_commit(&w->b, size);
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

/* The separator and the token in one write: numbers come by the
 * thousand in /stats. */
static void literal(struct jsonw *w, const char *s, size_t n)
{
	size_t c = w->comma ? 1 : 0;
	char *o = buf_reserve(&w->b, c + n);

	if (o) {
		if (c)
			o[0] = ',';
		memcpy(o + c, s, n);
		buf_commit(&w->b, c + n);
	}
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

/* The decimal digits of v, minus first when neg, ending at end. Returns
 * where they start. */
static char *digits(char *end, uint64_t v, bool neg)
{
	char *p = end;

	do {
		*--p = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	if (neg)
		*--p = '-';
	return p;
}

void jsonw_int(struct jsonw *w, int64_t v)
{
	char buf[24], *p;

	/* The magnitude in unsigned arithmetic: -INT64_MIN overflows int64_t. */
	p = digits(buf + sizeof(buf), v < 0 ? 0 - (uint64_t)v : (uint64_t)v, v < 0);
	literal(w, p, (size_t)(buf + sizeof(buf) - p));
}

void jsonw_uint(struct jsonw *w, uint64_t v)
{
	char buf[24], *p = digits(buf + sizeof(buf), v, false);

	literal(w, p, (size_t)(buf + sizeof(buf) - p));
}

void jsonw_fixed(struct jsonw *w, double v, int places)
{
	char buf[64];
	int n;

	if (!isfinite(v) || fabs(v) >= 1e30) {
		jsonw_number(w, v);
		return;
	}
	n = snprintf(buf, sizeof(buf), "%.*f", places < 0 ? 0 : places > 9 ? 9 : places, v);
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
	size_t n, c = w->comma ? 1 : 0, need;
	char *o;

	if (len == 0)
		return false;   /* no value at all */
	if (!jsonw_ok(w))
		return true;
	/* Minified text is never longer than the input; only when the input
	 * does not fit is the exact size worth a first pass. */
	need = len + c;
	if (need > w->b.max - w->b.len) {
		n = minify(s, len, NULL);
		if (n == SIZE_MAX)
			return false;
		need = n + c;
	}
	o = buf_reserve(&w->b, need);
	if (!o)
		return true;
	if (c)
		*o = ',';
	n = minify(s, len, o + c);
	if (n == SIZE_MAX) {
		*o = '\0';       /* nothing was committed: the text ends here again */
		return false;
	}
	buf_commit(&w->b, n + c);
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
