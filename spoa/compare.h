/* Comparison of two HTTP responses: status, headers, body (JSON structural,
 * text, binary), with ignore rules from config. Pure: no I/O and no global
 * counter; what a comparison ran into (a cut body, a budget spent) is in
 * the flags of its diff_list and of the bodies it decoded, which the
 * exchange's conclusion counts. */
#ifndef MIFFY_COMPARE_H
#define MIFFY_COMPARE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#include "http-t.h"
#include "compare-t.h"

struct body_shared;
struct config;
struct compare;

/* Compiles the rules of cfg (ignore lists, tolerances, caps). Returns NULL
 * with a message in err on a bad rule. */
struct compare *compare_new(const struct config *cfg, char *err, size_t errlen);
void compare_free(struct compare *c);

/* Appends the differences between ref and cand to *out (initialised to zero
 * by the caller). Returns 0, or -1 on allocation failure. */
int compare_responses(const struct compare *c, const struct http_response *ref,
		      const struct http_response *cand, struct diff_list *out);

/* compare_responses, decoding the bodies through ref_body and cand_body
 * (either may be NULL: decoded for this call only) so that the caller can
 * reuse what was decoded, or hand in what it already decoded. Bodies that
 * need no decoding (byte-identical) are left as they are. */
int compare_responses_shared(const struct compare *c, const struct http_response *ref,
			     const struct http_response *cand, struct body_shared *ref_body,
			     struct body_shared *cand_body, struct diff_list *out);

void diff_list_clear(struct diff_list *list);

const char *diff_where_name(enum diff_where w);
const char *diff_kind_name(enum diff_kind k);

/* The name of the field difference d is about, as /stats, the noise rule
 * and the samples key it: "status", "header:<name>", "body" or
 * "body:<JSON Pointer>". Writes it NUL-terminated into key (cut to len - 1
 * bytes; key may be NULL when len is 0) and returns its full length, as
 * snprintf does. */
size_t diff_field_key(const struct difference *d, char *key, size_t len);

#endif
