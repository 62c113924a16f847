#include "request.h"
#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool request_is_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c <= 0x20 || c >= 0x7f || strchr("\"(),/:;<=>?@[\\]{}", c))
			return false;
	}
	return true;
}

static bool one_line(const char *s)
{
	return !strpbrk(s, "\r\n");
}

static bool method_is(const char *m, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(m, *list) == 0)
			return true;
	return false;
}

/* The headers a transport writes itself (framing, Host, the marker) or
 * that a proxy must not forward. */
static bool skipped(const struct request_rules *rules, const struct header_list *h, const char *name)
{
	return http_header_is_hop_by_hop(h, name) || strcmp(name, "content-length") == 0 ||
	       strcmp(name, "expect") == 0 || strcmp(name, "host") == 0 ||
	       (rules->marker && strcasecmp(name, rules->marker) == 0);
}

/* Appends s[0..len) to p, percent-encoding what would break the request
 * line (controls, space, DEL); everything else goes byte for byte. */
static char *append_target(char *p, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f) {
			*p++ = '%';
			*p++ = hex[c >> 4];
			*p++ = hex[c & 15];
		} else {
			*p++ = (char)c;
		}
	}
	return p;
}

int request_build(struct replay_request *rq, const struct request_rules *rules, const char *method,
		  const char *path, const char *query, const struct header_list *headers,
		  const uint8_t *body, size_t body_len)
{
	static const char *const with_body[] = { "POST", "PUT", "PATCH", NULL };
	static const char *const idempotent[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };
	size_t plen, qlen;
	const char *host;
	char *p;

	memset(rq, 0, sizeof(*rq));
	/* The path is appended to the target's fixed base: anything but an
	 * origin-form path ("*", "http://elsewhere/") is refused. */
	if (!method || !request_is_token(method) || !path || path[0] != '/')
		return -1;
	plen = strlen(path);
	qlen = query ? strlen(query) : 0;
	/* one allocation: the header array, then the target */
	rq->headers = malloc(headers->count * sizeof(*rq->headers) + 3 * (plen + qlen) + 2);
	if (!rq->headers)
		return -2;
	rq->target = (char *)(rq->headers + headers->count);
	p = append_target(rq->target, path, plen);
	if (query) {
		*p++ = '?';
		p = append_target(p, query, qlen);
	}
	*p = '\0';
	rq->target_len = (size_t)(p - rq->target);
	for (size_t i = 0; i < headers->count; i++) {
		const struct header *hd = &headers->items[i];

		/* a header that could not go on one line is dropped, never split */
		if (!skipped(rules, headers, hd->name) && request_is_token(hd->name) && one_line(hd->value))
			rq->headers[rq->header_count++] = hd;
	}
	host = http_headers_get(headers, "host");
	if (rules->preserve_host && host && one_line(host))
		rq->host = host;
	rq->method = method;
	rq->body = body;
	rq->body_len = body_len;
	if (strcmp(method, "HEAD") == 0)
		rq->flags |= REQUEST_HEAD;
	else if (body_len > 0 || http_headers_get(headers, "content-length") ||
		 http_headers_get(headers, "transfer-encoding") || method_is(method, with_body))
		rq->flags |= REQUEST_BODY;
	if (method_is(method, idempotent))
		rq->flags |= REQUEST_IDEMPOTENT;
	return 0;
}

void request_clear(struct replay_request *rq)
{
	free(rq->headers);          /* the target is in the same allocation */
	memset(rq, 0, sizeof(*rq));
}

int request_each_header(const struct replay_request *rq, const struct request_dest *dest,
			int (*fn)(void *arg, const char *name, const char *value), void *arg)
{
	const char *host = rq->host ? rq->host : dest->host;
	int ret;

	if (host && (ret = fn(arg, "Host", host)) != 0)
		return ret;
	for (size_t i = 0; i < rq->header_count; i++)
		if ((ret = fn(arg, rq->headers[i]->name, rq->headers[i]->value)) != 0)
			return ret;
	if (dest->marker && (ret = fn(arg, dest->marker, dest->role)) != 0)
		return ret;
	return 0;
}
