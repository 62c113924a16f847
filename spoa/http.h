/* Plain HTTP data shared by the replay, compare and publish modules. */
#ifndef MIFFY_HTTP_H
#define MIFFY_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replay-t.h"
#include "http-t.h"

/* Decodes HAProxy's req.hdrs_bin / res.hdrs_bin encoding (varint name
 * length, name, varint value length, value; ends with two zero lengths) into
 * *out, lower-casing names. Returns 0, or -1 when the input is malformed (out
 * is then left empty). The caller frees with http_headers_clear(). */
int http_headers_decode(const uint8_t *buf, size_t len, struct header_list *out);

/* Appends a copy of name (lower-cased) and value. Returns 0 or -1 (ENOMEM). */
int http_headers_add(struct header_list *list, const char *name, size_t name_len,
		     const char *value, size_t value_len);

/* Returns the value of the first header named lname (lower-case) or NULL. */
const char *http_headers_get(const struct header_list *list, const char *lname);

void http_headers_clear(struct header_list *list);

/* Appends data to resp->body, keeping at most max bytes in all (capacity
 * tracked in *cap, grown geometrically); the part beyond max is not kept and
 * sets resp->truncated. Returns the number of bytes dropped, or -1 on
 * allocation failure (nothing appended). */
long http_body_append(struct http_response *resp, size_t *cap, size_t max,
		      const void *data, size_t len);
void http_response_clear(struct http_response *resp);

/* True when the comma-separated list (a Connection header, say) holds token,
 * case-insensitively. */
bool http_token_in_list(const char *list, const char *token);

/* Appends an obs-fold continuation line to the last header of list, joined
 * with one space (as curl does). The list must not be empty. Returns 0 or -1
 * (ENOMEM). */
int http_headers_fold(struct header_list *list, const char *s, size_t len);

/* True for hop-by-hop headers that a proxy must not forward (RFC 9110 7.6.1)
 * plus those listed in a Connection header of the list. */
bool http_header_is_hop_by_hop(const struct header_list *list, const char *lname);

/* The i-th of the fixed hop-by-hop names (lower-case), NULL past the last. */
const char *http_hop_by_hop_name(size_t i);

#endif
