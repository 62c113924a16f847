/* A JSON text writer: values appended to one growable buffer with a hard
 * maximum, without building a tree. The published message is written with
 * it; a JSON body already known to be valid is copied in, minified, rather
 * than printed again from its parsed tree. */
#ifndef MIFFY_JSONW_H
#define MIFFY_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "buf.h"

struct jsonw {
	/* The text (b.p, b.len; NUL-terminated), owned. b.max bounds it; once
	 * b.err is set (BUF_TOO_BIG: a write would have passed b.max,
	 * BUF_NO_MEMORY) the text is unusable and writes do nothing. A caller
	 * may take the text with buf_take(&w->b, ...). */
	struct buf b;
	bool comma;      /* the next value or key follows a sibling */
};

/* An empty writer whose text may not exceed max bytes. Allocates nothing. */
void jsonw_init(struct jsonw *w, size_t max);

/* Empties the text and clears its error; keeps the memory and max. */
void jsonw_reset(struct jsonw *w);

/* Frees the text; w is empty afterwards (the same max). */
void jsonw_free(struct jsonw *w);

/* False once the text is unusable (over max or out of memory). */
static inline bool jsonw_ok(const struct jsonw *w)
{
	return w->b.err == BUF_OK;
}

/* Containers: c is '{' or '[' to open, '}' or ']' to close. */
void jsonw_open(struct jsonw *w, char c);
void jsonw_close(struct jsonw *w, char c);

/* An object key: len bytes, escaped and made valid UTF-8 like strings. */
void jsonw_key(struct jsonw *w, const char *key, size_t len);

/* A key given as a C string. */
void jsonw_keyc(struct jsonw *w, const char *key);

/* A string from len arbitrary bytes: invalid UTF-8 becomes U+FFFD and NUL
 * a space, so the text stays valid JSON whatever a peer sent. */
void jsonw_string(struct jsonw *w, const char *s, size_t len);

/* The same for a C string; NULL writes null. */
void jsonw_cstring(struct jsonw *w, const char *s);

/* Literals; integers in plain decimal digits. Each is a value: in an
 * object, after its key. Nothing is returned: a failure is w->b.err. */
void jsonw_null(struct jsonw *w);
void jsonw_bool(struct jsonw *w, bool v);
void jsonw_int(struct jsonw *w, int64_t v);
void jsonw_uint(struct jsonw *w, uint64_t v);

/* v with exactly places decimals (printf's "%.*f", places 0..9); NaN and
 * infinities are null, a magnitude of 1e30 or more is as jsonw_number(). */
void jsonw_fixed(struct jsonw *w, double v, int places);

/* A number that reads back as v: integers plainly, a decimal with at most
 * six places when one reads back the same, else 15 or 17 significant
 * digits as cJSON prints them; NaN and infinities are null. */
void jsonw_number(struct jsonw *w, double v);

/* Milliseconds to the microsecond. */
void jsonw_ms(struct jsonw *w, double ms);

/* Bytes a string of len bytes takes as JSON text (quotes included). */
size_t jsonw_string_size(const char *s, size_t len);

/* The longest prefix of s[0..len), not splitting a character, that
 * jsonw_string() writes in at most limit bytes (quotes included); *size
 * gets that text's size. */
size_t jsonw_string_fit(const char *s, size_t len, size_t limit, size_t *size);

/* Copies the JSON text s[0..len) in without its insignificant whitespace
 * when it is valid JSON (the RFC 8259 grammar: one value, strings in valid
 * UTF-8, at most 1000 levels deep; a \u escape is not checked for lone
 * surrogates). Returns false, the text unchanged, when it is not; true
 * otherwise, also when the writer was or becomes unusable (over its
 * maximum: nothing is then written). */
bool jsonw_json_text(struct jsonw *w, const uint8_t *s, size_t len);

/* Copies len bytes the caller knows to be one minified JSON value. */
void jsonw_json_minified(struct jsonw *w, const char *s, size_t len);

/* Bytes jsonw_json_text() would write for s, or SIZE_MAX when s is not
 * valid JSON. */
size_t jsonw_json_text_size(const uint8_t *s, size_t len);

/* A cJSON value, printed (strings made valid as by jsonw_string). */
void jsonw_cjson(struct jsonw *w, const cJSON *v);

#endif
