#include "http.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "spop.h"

/* HAProxy bounds a header block by its buffer; this only stops a hostile
 * input from making us allocate without end. */
#define HTTP_MAX_HEADERS 1024

/* Each header is one block, "name\0value\0": name points at it, value
 * into it. The items array doubles from 8, so its capacity follows from
 * count. Every header of every exchange goes through here. */
int http_headers_add(struct header_list *list, const char *name, size_t name_len,
		     const char *value, size_t value_len)
{
	size_t n = list->count;
	char *block;

	if (n >= HTTP_MAX_HEADERS)
		return -1;
	if (n == 0 || (n >= 8 && (n & (n - 1)) == 0)) {
		struct header *items = realloc(list->items, (n ? n * 2 : 8) * sizeof(*items));

		if (!items)
			return -1;
		list->items = items;
	}
	block = malloc(name_len + 1 + value_len + 1);
	if (!block)
		return -1;
	for (size_t i = 0; i < name_len; i++)
		block[i] = (char)tolower((unsigned char)name[i]);
	block[name_len] = '\0';
	memcpy(block + name_len + 1, value, value_len);
	block[name_len + 1 + value_len] = '\0';
	list->items[n].name = block;
	list->items[n].value = block + name_len + 1;
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
	for (size_t i = 0; i < list->count; i++)
		free(list->items[i].name);   /* the value is in the same block */
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
	size_t nlen = (size_t)(h->value - h->name), old = strlen(h->value);
	char *block = realloc(h->name, nlen + old + 1 + len + 1), *v;

	if (!block)
		return -1;
	v = block + nlen;
	v[old] = ' ';
	memcpy(v + old + 1, s, len);
	v[old + 1 + len] = '\0';
	h->name = block;
	h->value = v;
	return 0;
}

static const char *const hop[] = {
	"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
	"te", "trailer", "transfer-encoding", "upgrade",
};

const char *http_hop_by_hop_name(size_t i)
{
	return i < sizeof(hop) / sizeof(hop[0]) ? hop[i] : NULL;
}

bool http_header_is_hop_by_hop(const struct header_list *list, const char *lname)
{
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		if (strcmp(lname, hop[i]) == 0)
			return true;
	for (size_t i = 0; list && i < list->count; i++)
		if (strcmp(list->items[i].name, "connection") == 0 &&
		    http_token_in_list(list->items[i].value, lname))
			return true;
	return false;
}
