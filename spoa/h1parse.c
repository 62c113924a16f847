#include "h1parse.h"
#include "http.h"

#include <string.h>
#include <strings.h>

static bool is_tchar(unsigned char c)
{
	return c > 0x20 && c < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", c);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static int fail(enum replay_error *error, const char **why, enum replay_error e, const char *text)
{
	*error = e;
	*why = text;
	return -1;
}

int h1_header_line(struct header_list *headers, const char *line, size_t len, enum replay_error *error,
		   const char **why)
{
	const char *end = line + len, *colon, *v;

	while (end > line && (end[-1] == '\r' || end[-1] == '\n' || is_blank(end[-1])))
		end--;
	if (line < end && is_blank(*line)) {
		/* obsolete line folding (RFC 9112 5.2): joined with a space */
		while (line < end && is_blank(*line))
			line++;
		if (headers->count > 0 && http_headers_fold(headers, line, (size_t)(end - line)) < 0)
			return fail(error, why, REPLAY_OTHER, "Out of memory reading the response headers");
		return 0;
	}
	colon = memchr(line, ':', (size_t)(end - line));
	if (!colon || colon == line)
		return fail(error, why, REPLAY_MALFORMED, "Header line without a name and a colon");
	for (const char *c = line; c < colon; c++)
		if (!is_tchar((unsigned char)*c))
			return fail(error, why, REPLAY_MALFORMED, "Invalid character in a header name");
	v = colon + 1;
	while (v < end && is_blank(*v))
		v++;
	if (headers->count >= REPLAY_MAX_HEADERS)
		return fail(error, why, REPLAY_MALFORMED, "Too many response headers");
	if (http_headers_add(headers, line, (size_t)(colon - line), v, (size_t)(end - v)) < 0)
		return fail(error, why, REPLAY_OTHER, "Out of memory reading the response headers");
	return 0;
}

/* The length of the block of lines ending with an empty one at the start of
 * s[0..len), searched from start; 0 when it does not end there yet. */
static size_t block_end(const char *s, size_t len, size_t start)
{
	const char *nl;

	while ((nl = memchr(s + start, '\n', len - start)) != NULL) {
		size_t k = (size_t)(nl - s);

		if (k + 1 < len && s[k + 1] == '\n')
			return k + 2;
		if (k + 2 < len && s[k + 1] == '\r' && s[k + 2] == '\n')
			return k + 3;
		start = k + 1;
	}
	return 0;
}

/* True when the last transfer coding of te is chunked. */
static bool chunked_last(const char *te)
{
	const char *last = strrchr(te, ',');
	size_t n;

	last = last ? last + 1 : te;
	while (is_blank(*last))
		last++;
	n = strlen(last);
	while (n > 0 && is_blank(last[n - 1]))
		n--;
	return n == 7 && strncasecmp(last, "chunked", 7) == 0;
}

static bool status_line(const char *line, size_t n, struct h1_head *head)
{
	if (n < 12 || memcmp(line, "HTTP/1.", 7) != 0 || (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
	    line[9] < '1' || line[9] > '9' || line[10] < '0' || line[10] > '9' || line[11] < '0' ||
	    line[11] > '9' || (n > 12 && line[12] != ' '))
		return false;
	head->http10 = line[7] == '0';
	head->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
	return true;
}

/* The framing is read from the stored headers (folds included). */
static int framing(struct h1_head *head, const struct header_list *headers)
{
	const char *conn = NULL;

	for (size_t i = 0; i < headers->count; i++) {
		const struct header *h = &headers->items[i];

		if (strcmp(h->name, "content-length") == 0) {
			const char *d = h->value;
			uint64_t v = 0;

			if (!*d)
				return fail(&head->error, &head->why, REPLAY_MALFORMED, "Invalid Content-Length");
			for (; *d; d++) {
				if (*d < '0' || *d > '9' || v > (UINT64_MAX - 9) / 10)
					return fail(&head->error, &head->why, REPLAY_MALFORMED,
						    "Invalid Content-Length");
				v = v * 10 + (uint64_t)(*d - '0');
			}
			if (head->have_length && v != head->length)
				return fail(&head->error, &head->why, REPLAY_MALFORMED,
					    "Conflicting Content-Length values");
			head->have_length = true;
			head->length = v;
		} else if (strcmp(h->name, "transfer-encoding") == 0) {
			/* the last one holds the last coding */
			head->have_te = true;
			head->chunked = chunked_last(h->value);
		} else if (strcmp(h->name, "connection") == 0 && !conn) {
			conn = h->value;
		}
	}
	head->keep_alive = head->http10 ? (conn && http_token_in_list(conn, "keep-alive"))
					: !(conn && http_token_in_list(conn, "close"));
	return 0;
}

int h1_parse_response(const char *buf, size_t len, size_t last_len, struct h1_head *head,
		      struct header_list *headers)
{
	const char *line = buf, *end;
	size_t n;

	if (memcmp(buf, "HTTP/", len < 5 ? len : 5) != 0) {
		memset(head, 0, sizeof(*head));
		http_headers_clear(headers);
		return fail(&head->error, &head->why, REPLAY_MALFORMED,
			    "The server did not answer with an HTTP/1.x status line");
	}
	/* a CR LF split by the previous call is looked at again */
	n = block_end(buf, len, last_len >= 2 && last_len <= len ? last_len - 2 : 0);
	if (n == 0 && len <= H1_HEAD_MAX)
		return -2;
	memset(head, 0, sizeof(*head));
	http_headers_clear(headers);
	if (n == 0 || n > H1_HEAD_MAX)
		return fail(&head->error, &head->why, REPLAY_MALFORMED, "Response header block over 65536 bytes");
	end = buf + n;
	for (bool first = true; line < end; first = false) {
		const char *nl = memchr(line, '\n', (size_t)(end - line));
		const char *eol = nl, *next = nl + 1;

		if (eol > line && eol[-1] == '\r')
			eol--;
		if (first) {
			if (!status_line(line, (size_t)(eol - line), head))
				return fail(&head->error, &head->why, REPLAY_MALFORMED,
					    "Invalid status line from the server");
		} else if (eol == line) {
			break;              /* the blank line */
		} else if (h1_header_line(headers, line, (size_t)(eol - line), &head->error, &head->why) < 0) {
			http_headers_clear(headers);
			return -1;
		}
		line = next;
	}
	if (head->status < 200)
		http_headers_clear(headers);
	else if (framing(head, headers) < 0) {
		http_headers_clear(headers);
		return -1;
	}
	return (int)n;
}
