#include "http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spop.h"

/* HAProxy bounds a header block by its buffer; this only stops a hostile
 * input from making us allocate without end. */
#define HTTP_MAX_HEADERS 1024

static char *dup_mem(const char *s, size_t len, bool lower)
{
	char *d = malloc(len + 1);

	if (!d)
		return NULL;
	if (lower) {
		for (size_t i = 0; i < len; i++)
			d[i] = (char)tolower((unsigned char)s[i]);
	} else {
		memcpy(d, s, len);   /* values: every header of every exchange */
	}
	d[len] = '\0';
	return d;
}

int http_headers_add(struct header_list *list, const char *name, size_t name_len,
		     const char *value, size_t value_len)
{
	struct header *items;
	char *n, *v;

	if (list->count >= HTTP_MAX_HEADERS)
		return -1;
	items = realloc(list->items, (list->count + 1) * sizeof(*items));
	if (!items)
		return -1;
	list->items = items;
	n = dup_mem(name, name_len, true);
	v = dup_mem(value, value_len, false);
	if (!n || !v) {
		free(n);
		free(v);
		return -1;
	}
	items[list->count].name = n;
	items[list->count].value = v;
	list->count++;
	return 0;
}

int http_headers_decode(const uint8_t *buf, size_t len, struct header_list *out)
{
	const uint8_t *p = buf, *end = buf + len;

	memset(out, 0, sizeof(*out));
	while (p < end) {
		const char *name, *value;
		size_t nlen, vlen;

		if (spop_string_decode(&p, end, &name, &nlen) < 0 ||
		    spop_string_decode(&p, end, &value, &vlen) < 0)
			goto fail;
		if (nlen == 0 && vlen == 0)
			return 0;
		if (nlen == 0 || http_headers_add(out, name, nlen, value, vlen) < 0)
			goto fail;
	}
	/* HAProxy always writes the empty terminator; a block without it was cut. */
fail:
	http_headers_clear(out);
	return -1;
}

const char *http_headers_get(const struct header_list *list, const char *lname)
{
	for (size_t i = 0; i < list->count; i++)
		if (strcmp(list->items[i].name, lname) == 0)
			return list->items[i].value;
	return NULL;
}

void http_headers_clear(struct header_list *list)
{
	for (size_t i = 0; i < list->count; i++) {
		free(list->items[i].name);
		free(list->items[i].value);
	}
	free(list->items);
	list->items = NULL;
	list->count = 0;
}

long http_body_append(struct http_response *resp, size_t *cap, size_t max,
		      const void *data, size_t len)
{
	size_t keep = len;

	if (resp->body_len + keep > max) {
		keep = max > resp->body_len ? max - resp->body_len : 0;
		resp->truncated = true;
	}
	if (keep > 0) {
		size_t need = resp->body_len + keep;

		if (need > *cap) {
			size_t c = *cap ? *cap : 4096;
			uint8_t *b;

			while (c < need)
				c *= 2;
			if (c > max)
				c = max;
			b = realloc(resp->body, c);
			if (!b)
				return -1;
			resp->body = b;
			*cap = c;
		}
		memcpy(resp->body + resp->body_len, data, keep);
		resp->body_len += keep;
	}
	return (long)(len - keep);
}

void http_response_clear(struct http_response *resp)
{
	http_headers_clear(&resp->headers);
	free(resp->body);
	memset(resp, 0, sizeof(*resp));
}

bool http_token_in_list(const char *list, const char *token)
{
	size_t tlen = strlen(token);
	const char *p = list;

	while (*p) {
		size_t n;

		while (*p == ' ' || *p == '\t' || *p == ',')
			p++;
		n = strcspn(p, ", \t");
		if (n == tlen && strncasecmp(p, token, n) == 0)
			return true;
		p += n;
	}
	return false;
}

int http_headers_fold(struct header_list *list, const char *s, size_t len)
{
	struct header *h = &list->items[list->count - 1];
	size_t old = strlen(h->value);
	char *v = realloc(h->value, old + 1 + len + 1);

	if (!v)
		return -1;
	v[old] = ' ';
	memcpy(v + old + 1, s, len);
	v[old + 1 + len] = '\0';
	h->value = v;
	return 0;
}

bool http_header_is_hop_by_hop(const struct header_list *list, const char *lname)
{
	static const char *const hop[] = {
		"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
		"te", "trailer", "transfer-encoding", "upgrade",
	};

	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (strcmp(lname, hop[i]) == 0)
			return true;
	for (size_t i = 0; list && i < list->count; i++)
		if (strcmp(list->items[i].name, "connection") == 0 &&
		    http_token_in_list(list->items[i].value, lname))
			return true;
	return false;
}
