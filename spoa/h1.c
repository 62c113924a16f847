#include "h1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/uio.h>
#include <unistd.h>

#include "buf.h"
#include "h1parse.h"
#include "request.h"
#include "http.h"

/* A chunk-size line (with extensions) longer than this is malformed. */
#define H1_CHUNK_LINE_MAX 4096

#define H1_READ_CHUNK 16384

/* Received bytes kept while parsing: only a head or a line in progress
 * stays buffered, so this is never reached by a valid response. */
#define H1_IN_MAX (H1_HEAD_MAX * 2 + H1_READ_CHUNK)

enum conn_state {
	CONN_CONNECTING = 0,
	CONN_IDLE,                   /* in the pool, watched for EOF */
	CONN_BUSY,                   /* serving its owner */
	CONN_STATE_COUNT
};

enum body_mode {
	BODY_NONE = 0,
	BODY_LENGTH,
	BODY_CHUNKED,
	BODY_UNTIL_CLOSE,
	BODY_MODE_COUNT
};

enum parse_state {
	PS_HEAD = 0,
	PS_BODY,                     /* BODY_LENGTH or BODY_UNTIL_CLOSE */
	PS_CHUNK_SIZE,
	PS_CHUNK_DATA,
	PS_CHUNK_END,
	PS_TRAILERS,
	PS_DONE,
	PS_STATE_COUNT
};

enum parse_result { PARSE_MORE = 0, PARSE_DONE, PARSE_ERROR, PARSE_RESULT_COUNT };

enum req_state {
	REQ_QUEUED = 0,              /* waiting for a connection */
	REQ_ON_CONN,                 /* owns a connection (connecting or busy) */
	REQ_FAILING,                 /* error set, callback fed to the loop */
	REQ_STATE_COUNT
};

struct h1_conn {
	ev_io io;
	ev_timer connect_timer;
	struct h1_pool *p;
	int fd;
	enum conn_state state;
	int events;
	bool reused;                 /* served a response before */
	struct h1_req *owner;
	struct buf in;               /* received, not yet parsed; at most H1_IN_MAX */
	size_t head_scanned;         /* of an incomplete head: h1_parse_response's last_len */
	struct h1_conn *prev, *next; /* all connections of the pool */
	struct h1_conn *idle_next;   /* LIFO of idle connections */
};

struct h1_req {
	struct h1_pool *p;
	enum req_state state;
	struct h1_conn *conn;
	ev_timer timer;              /* total timeout; EV_CUSTOM: fail_soon */
	transport_done_fn done;
	void *arg;
	unsigned flags;
	bool retried;
	ev_tstamp t_start;

	char *head;                  /* in q's own allocation, after the struct */
	size_t head_len;
	uint8_t *body;
	size_t body_len;
	size_t sent;                 /* of head_len + body_len */

	/* response */
	struct http_response resp;
	size_t body_cap;
	size_t drained;
	size_t received;             /* response bytes seen */
	size_t trailer_bytes;
	enum parse_state ps;
	enum body_mode mode;
	uint64_t remaining;
	bool keep_alive;

	struct h1_req *qprev, *qnext; /* FIFO of queued requests */
	char head_bytes[];
};

struct h1_pool {
	struct ev_loop *loop;
	ev_prepare kick;             /* dispatches new requests before polling */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char *name;
	struct h1_limits lim;
	unsigned open;
	struct h1_conn *conns;
	struct h1_conn *idle;
	struct h1_req *qhead, *qtail;
};

int h1_literal_addr(const char *host, unsigned port, struct sockaddr_storage *ss, socklen_t *len)
{
	char buf[64];
	size_t n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (port == 0 || port > 65535)
		return -1;
	if (strcasecmp(host, "localhost") == 0)
		host = "127.0.0.1";
	if (n >= 2 && host[0] == '[' && host[n - 1] == ']') {
		if (n - 2 >= sizeof(buf))
			return -1;
		memcpy(buf, host + 1, n - 2);
		buf[n - 2] = '\0';
		host = buf;
	}
	{
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
			sin->sin_family = AF_INET;
			sin->sin_port = htons((uint16_t)port);
			*len = sizeof(*sin);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
			sin6->sin6_family = AF_INET6;
			sin6->sin6_port = htons((uint16_t)port);
			*len = sizeof(*sin6);
			return 0;
		}
	}
	return -1;
}

/* ---- requests ------------------------------------------------------------ */

static void pool_pump(struct h1_pool *p);
static void conn_close(struct h1_conn *c);
static int conn_open(struct h1_pool *p, struct h1_req *q);
static int conn_send(struct h1_conn *c);

static void req_free(struct h1_req *q)
{
	ev_timer_stop(q->p->loop, &q->timer);
	free(q->body);
	http_response_clear(&q->resp);
	free(q);
}

static void queue_push(struct h1_pool *p, struct h1_req *q)
{
	q->qnext = NULL;
	q->qprev = p->qtail;
	if (p->qtail)
		p->qtail->qnext = q;
	else
		p->qhead = q;
	p->qtail = q;
}

static void queue_remove(struct h1_pool *p, struct h1_req *q)
{
	if (q->qprev)
		q->qprev->qnext = q->qnext;
	else
		p->qhead = q->qnext;
	if (q->qnext)
		q->qnext->qprev = q->qprev;
	else
		p->qtail = q->qprev;
	q->qprev = q->qnext = NULL;
}

/* Sets q's error and has the loop deliver it: failures found while
 * starting, pumping the queue or handling another request's event must
 * not call back into the caller from there. q must already be detached
 * from its connection and the queue. */
static void req_fail_soon(struct h1_req *q, enum replay_error reason, const char *fmt, ...)
{
	va_list ap;

	http_response_clear(&q->resp);
	q->resp.error = reason;
	va_start(ap, fmt);
	vsnprintf(q->resp.error_detail, sizeof(q->resp.error_detail), fmt, ap);
	va_end(ap);
	q->state = REQ_FAILING;
	q->conn = NULL;
	ev_timer_stop(q->p->loop, &q->timer);
	ev_feed_event(q->p->loop, &q->timer, EV_CUSTOM);
}

/* Hands q's response to its callback and frees q: always the last thing an
 * event handler does, since the callback may free the whole pool. */
static void req_complete(struct h1_req *q)
{
	struct http_response resp = q->resp;
	transport_done_fn done = q->done;
	void *arg = q->arg;

	memset(&q->resp, 0, sizeof(q->resp));
	req_free(q);
	done(arg, &resp);
}

/* The connection of q broke before a response was complete. A reused
 * connection that had not delivered a byte may just have been closed by
 * the server while idle: an idempotent request is sent again, once, on a
 * fresh connection. */
static void req_conn_failed(struct h1_req *q, enum replay_error reason, const char *detail)
{
	struct h1_conn *c = q->conn;
	struct h1_pool *p = q->p;
	bool retry = c->reused && q->received == 0 && (q->flags & REQUEST_IDEMPOTENT) && !q->retried;

	c->owner = NULL;
	q->conn = NULL;
	conn_close(c);
	if (retry) {
		q->retried = true;
		q->sent = 0;
		http_response_clear(&q->resp);
		q->ps = PS_HEAD;
		if (conn_open(p, q) == 0) {
			pool_pump(p);
			return;
		}
	} else {
		req_fail_soon(q, reason, "%s", detail);
	}
	pool_pump(p);
}

/* Takes q off the queue or off its connection (closed unless still
 * connecting: a connect in progress may still serve the next request).
 * Returns true when q was on a connection. */
static bool req_detach(struct h1_req *q)
{
	struct h1_conn *c = q->conn;

	if (q->state == REQ_QUEUED) {
		queue_remove(q->p, q);
		return false;
	}
	if (q->state != REQ_ON_CONN)
		return false;
	c->owner = NULL;
	q->conn = NULL;
	if (c->state != CONN_CONNECTING)
		conn_close(c);
	return true;
}

static void on_req_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct h1_req *q = (struct h1_req *)((char *)w - offsetof(struct h1_req, timer));
	struct h1_pool *p = q->p;

	if (revents & EV_CUSTOM) {
		req_complete(q);
		return;
	}
	req_detach(q);
	http_response_clear(&q->resp);
	q->resp.error = REPLAY_TIMEOUT;
	snprintf(q->resp.error_detail, sizeof(q->resp.error_detail),
		 "Operation timed out after %.0f milliseconds with %zu bytes received",
		 p->lim.timeout * 1000.0, q->received);
	pool_pump(p);
	req_complete(q);
}

/* ---- connections --------------------------------------------------------- */

static void conn_set_events(struct h1_conn *c, int events)
{
	struct ev_loop *loop = c->p->loop;

	if (events == c->events && ev_is_active(&c->io))
		return;
	ev_io_stop(loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	c->events = events;
	ev_io_start(loop, &c->io);
}

static void conn_close(struct h1_conn *c)
{
	struct h1_pool *p = c->p;

	ev_io_stop(p->loop, &c->io);
	ev_timer_stop(p->loop, &c->connect_timer);
	if (c->state == CONN_IDLE) {
		struct h1_conn **pp = &p->idle;

		while (*pp != c)
			pp = &(*pp)->idle_next;
		*pp = c->idle_next;
	}
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		p->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	p->open--;
	buf_free(&c->in);
	free(c);
}

/* Gives c to q and sends q's request. */
static void conn_assign(struct h1_conn *c, struct h1_req *q)
{
	c->state = CONN_BUSY;
	c->owner = q;
	buf_reset(&c->in);
	c->head_scanned = 0;
	q->conn = c;
	q->state = REQ_ON_CONN;
	conn_send(c);
}

/* c finished an exchange cleanly (or just connected without an owner):
 * the oldest queued request gets it, else it waits in the pool. */
static void conn_release(struct h1_conn *c)
{
	struct h1_pool *p = c->p;
	struct h1_req *q = p->qhead;

	c->owner = NULL;
	if (q) {
		queue_remove(p, q);
		conn_assign(c, q);
		return;
	}
	c->state = CONN_IDLE;
	buf_reset(&c->in);
	c->idle_next = p->idle;
	p->idle = c;
	conn_set_events(c, EV_READ);
}

static void conn_connected(struct h1_conn *c)
{
	ev_timer_stop(c->p->loop, &c->connect_timer);
	if (c->owner) {
		c->state = CONN_BUSY;
		conn_send(c);
	} else {
		conn_release(c);
	}
}

static void conn_connect_failed(struct h1_conn *c, enum replay_error reason, const char *detail)
{
	struct h1_req *q = c->owner;
	struct h1_pool *p = c->p;

	if (q) {
		c->owner = NULL;
		q->conn = NULL;
	}
	conn_close(c);
	if (q)
		req_fail_soon(q, reason, "%s", detail);
	pool_pump(p);
}

static void on_connect_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct h1_conn *c = (struct h1_conn *)((char *)w - offsetof(struct h1_conn, connect_timer));
	char detail[160];

	snprintf(detail, sizeof(detail), "Connection to %s timed out after %.0f milliseconds",
		 c->p->name, c->p->lim.connect_timeout * 1000.0);
	conn_connect_failed(c, REPLAY_TIMEOUT, detail);
}

/* Sends what is left of the owner's request; one sendmsg for head and body
 * when the socket takes it. Returns 0, or -1 when the send failed: the
 * owner was failed or retried elsewhere and c is closed. */
static int conn_send(struct h1_conn *c)
{
	struct h1_req *q = c->owner;
	size_t total = q->head_len + q->body_len;

	while (q->sent < total) {
		struct iovec iov[2];
		struct msghdr msg = { .msg_iov = iov };
		ssize_t n;

		if (q->sent < q->head_len) {
			iov[0].iov_base = q->head + q->sent;
			iov[0].iov_len = q->head_len - q->sent;
			iov[1].iov_base = q->body;
			iov[1].iov_len = q->body_len;
			msg.msg_iovlen = q->body_len ? 2 : 1;
		} else {
			iov[0].iov_base = q->body + (q->sent - q->head_len);
			iov[0].iov_len = total - q->sent;
			msg.msg_iovlen = 1;
		}
		n = sendmsg(c->fd, &msg, MSG_NOSIGNAL);
		if (n == -1) {
			char detail[160];

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				conn_set_events(c, EV_READ | EV_WRITE);
				return 0;
			}
			snprintf(detail, sizeof(detail), "Failed sending the request: %s", strerror(errno));
			req_conn_failed(q, REPLAY_RESET, detail);
			return -1;
		}
		q->sent += (size_t)n;
	}
	conn_set_events(c, EV_READ);
	return 0;
}

/* ---- the response parser ------------------------------------------------- */

static int fail_parse(struct h1_req *q, enum replay_error reason, const char *detail)
{
	q->resp.error = reason;
	snprintf(q->resp.error_detail, sizeof(q->resp.error_detail), "%s", detail);
	return PARSE_ERROR;
}

/* Keeps the first max_body bytes of the body and counts the rest. Returns 0,
 * 1 when the drain limit is passed (the response ends here, the connection
 * is not reused), -1 on allocation failure. */
static int body_sink(struct h1_req *q, const char *data, size_t len)
{
	long dropped = http_body_append(&q->resp, &q->body_cap, q->p->lim.max_body, data, len);

	if (dropped < 0)
		return -1;
	q->drained += (size_t)dropped;
	return q->drained > REPLAY_DRAIN_MAX ? 1 : 0;
}

/* body_sink's result, taken once the state has moved past the bytes sunk:
 * past the drain limit the response ends here. Returns PARSE_MORE or
 * PARSE_ERROR. */
static int body_sunk(struct h1_req *q, int sunk)
{
	if (sunk < 0)
		return fail_parse(q, REPLAY_OTHER, "Out of memory reading the response body");
	if (sunk > 0) {
		q->keep_alive = false;
		q->ps = PS_DONE;
	}
	return PARSE_MORE;
}

/* The head of a response was parsed: an interim one is skipped, a final
 * one sets how its body is framed (RFC 9112 6.3). */
static int start_body(struct h1_req *q, const struct h1_head *head)
{
	if (head->status < 200) {
		if (head->status == 101)
			return fail_parse(q, REPLAY_MALFORMED, "Unexpected 101 Switching Protocols");
		return PARSE_MORE;
	}
	q->resp.status = head->status;
	q->keep_alive = head->keep_alive;
	if ((q->flags & REQUEST_HEAD) || head->status == 204 || head->status == 304) {
		q->mode = BODY_NONE;
		q->ps = PS_DONE;
	} else if (head->have_te) {
		/* with both, Transfer-Encoding wins and the connection is not
		 * reused */
		if (head->have_length)
			q->keep_alive = false;
		if (head->chunked) {
			q->mode = BODY_CHUNKED;
			q->ps = PS_CHUNK_SIZE;
		} else {
			q->mode = BODY_UNTIL_CLOSE;
			q->keep_alive = false;
			q->ps = PS_BODY;
		}
	} else if (head->have_length) {
		q->mode = BODY_LENGTH;
		q->remaining = head->length;
		q->ps = head->length ? PS_BODY : PS_DONE;
	} else {
		q->mode = BODY_UNTIL_CLOSE;
		q->keep_alive = false;
		q->ps = PS_BODY;
	}
	return PARSE_MORE;
}

/* Consumes what it can of c->in for its owner. */
static int parse(struct h1_conn *c, struct h1_req *q)
{
	size_t pos = 0;
	int ret = PARSE_MORE;

	while (ret == PARSE_MORE && q->ps != PS_DONE) {
		const char *s = c->in.p + pos;
		size_t avail = c->in.len - pos;

		if (avail == 0)
			break;
		switch (q->ps) {
		case PS_HEAD: {
			struct h1_head head;
			int n = h1_parse_response(s, avail, c->head_scanned, &head, &q->resp.headers);

			if (n == -2) {
				c->head_scanned = avail;
				goto out;
			}
			if (n < 0) {
				ret = fail_parse(q, head.error, head.why);
				break;
			}
			pos += (size_t)n;
			c->head_scanned = 0;
			ret = start_body(q, &head);
			break;
		}
		case PS_BODY: {
			size_t n = avail;
			int sunk;

			if (q->mode == BODY_LENGTH && n > q->remaining)
				n = (size_t)q->remaining;
			sunk = body_sink(q, s, n);
			pos += n;
			if (q->mode == BODY_LENGTH) {
				q->remaining -= n;
				if (q->remaining == 0)
					q->ps = PS_DONE;
			}
			ret = body_sunk(q, sunk);
			break;
		}
		case PS_CHUNK_SIZE: {
			const char *nl = memchr(s, '\n', avail);
			const char *d = s;
			uint64_t size = 0;

			if (!nl) {
				if (avail > H1_CHUNK_LINE_MAX)
					ret = fail_parse(q, REPLAY_MALFORMED, "Chunk size line too long");
				goto out;
			}
			if (d == nl || !strchr("0123456789abcdefABCDEF", *d) || *d == '\0')
				return fail_parse(q, REPLAY_MALFORMED, "Invalid chunk size");
			for (; d < nl; d++) {
				int v;

				if (*d >= '0' && *d <= '9')
					v = *d - '0';
				else if (*d >= 'a' && *d <= 'f')
					v = *d - 'a' + 10;
				else if (*d >= 'A' && *d <= 'F')
					v = *d - 'A' + 10;
				else
					break;
				if (size >> 56)
					return fail_parse(q, REPLAY_MALFORMED, "Chunk size too large");
				size = size * 16 + (uint64_t)v;
			}
			while (d < nl && (*d == ' ' || *d == '\t'))
				d++;
			if (d < nl && *d != ';' && !(*d == '\r' && d + 1 == nl))
				return fail_parse(q, REPLAY_MALFORMED, "Invalid chunk size line");
			pos += (size_t)(nl - s) + 1;
			if (size == 0) {
				q->ps = PS_TRAILERS;
			} else {
				q->remaining = size;
				q->ps = PS_CHUNK_DATA;
			}
			break;
		}
		case PS_CHUNK_DATA: {
			size_t n = avail < q->remaining ? avail : (size_t)q->remaining;
			int sunk = body_sink(q, s, n);

			pos += n;
			q->remaining -= n;
			if (q->remaining == 0)
				q->ps = PS_CHUNK_END;
			ret = body_sunk(q, sunk);
			break;
		}
		case PS_CHUNK_END:
			if (s[0] == '\n') {
				pos += 1;
			} else if (s[0] == '\r') {
				if (avail < 2)
					goto out;
				if (s[1] != '\n')
					return fail_parse(q, REPLAY_MALFORMED, "Chunk not followed by CRLF");
				pos += 2;
			} else {
				return fail_parse(q, REPLAY_MALFORMED, "Chunk not followed by CRLF");
			}
			q->ps = PS_CHUNK_SIZE;
			break;
		case PS_TRAILERS: {
			/* trailers are read and ignored, as the curl engine does */
			const char *nl = memchr(s, '\n', avail);
			size_t n;

			if (!nl) {
				if (q->trailer_bytes + avail > H1_HEAD_MAX)
					ret = fail_parse(q, REPLAY_MALFORMED, "Trailer section over 65536 bytes");
				goto out;
			}
			n = (size_t)(nl - s) + 1;
			q->trailer_bytes += n;
			if (q->trailer_bytes > H1_HEAD_MAX) {
				ret = fail_parse(q, REPLAY_MALFORMED, "Trailer section over 65536 bytes");
				break;
			}
			pos += n;
			if (n == 1 || (n == 2 && s[0] == '\r'))
				q->ps = PS_DONE;
			break;
		}
		default:
			goto out;
		}
	}
out:
	if (ret == PARSE_ERROR)
		return ret;
	/* an incomplete head's head_scanned is relative to s, which becomes
	 * the start of c->in here */
	if (pos > 0)
		buf_consume(&c->in, pos);
	return q->ps == PS_DONE ? PARSE_DONE : PARSE_MORE;
}

/* ---- connection events --------------------------------------------------- */

/* The owner's response is complete: the connection goes back to the pool
 * (or closes), then the owner is called back. */
static void conn_response_done(struct h1_conn *c)
{
	struct h1_req *q = c->owner;
	struct h1_pool *p = c->p;
	bool reuse = q->keep_alive && c->in.len == 0 && q->sent == q->head_len + q->body_len;

	c->owner = NULL;
	q->conn = NULL;
	if (reuse) {
		c->reused = true;
		conn_release(c);
	} else {
		conn_close(c);
		pool_pump(p);
	}
	req_complete(q);
}

static void conn_on_idle_event(struct h1_conn *c)
{
	struct h1_pool *p = c->p;
	char b[1];

	/* EOF, an error or unexpected bytes: the connection is not reusable */
	if (recv(c->fd, b, sizeof(b), MSG_PEEK) == -1 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	conn_close(c);
	pool_pump(p);
}

static void conn_on_read(struct h1_conn *c)
{
	struct h1_req *q = c->owner;

	for (;;) {
		/* what is allocated is read into; a new chunk once under 1 KiB */
		size_t room = c->in.cap > c->in.len + 1024 ? c->in.cap - c->in.len - 1 : H1_READ_CHUNK;
		char *to = buf_reserve(&c->in, room);
		ssize_t n;
		int ret;

		if (!to) {
			if (c->in.err == BUF_TOO_BIG)
				req_conn_failed(q, REPLAY_MALFORMED, "Response header block over 65536 bytes");
			else
				req_conn_failed(q, REPLAY_OTHER, "Out of memory reading the response");
			return;
		}
		n = recv(c->fd, to, room, 0);
		if (n == -1) {
			char detail[160];

			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return;
			snprintf(detail, sizeof(detail), "Failure receiving the response: %s", strerror(errno));
			req_conn_failed(q, REPLAY_RESET, detail);
			return;
		}
		if (n == 0) {
			if (q->ps == PS_BODY && q->mode == BODY_UNTIL_CLOSE) {
				q->keep_alive = false;
				q->ps = PS_DONE;
				conn_response_done(c);
				return;
			}
			req_conn_failed(q, REPLAY_RESET, q->received == 0 ? "Empty reply from server"
					: "Connection closed before the end of the response");
			return;
		}
		buf_commit(&c->in, (size_t)n);
		q->received += (size_t)n;
		ret = parse(c, q);
		if (ret == PARSE_ERROR) {
			enum replay_error reason = q->resp.error;
			char detail[sizeof(q->resp.error_detail)];

			memcpy(detail, q->resp.error_detail, sizeof(detail));
			q->retried = true;      /* a bad answer is not retried */
			req_conn_failed(q, reason, detail);
			return;
		}
		if (ret == PARSE_DONE) {
			conn_response_done(c);
			return;
		}
		if ((size_t)n < room)
			return;
	}
}

static void on_conn_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct h1_conn *c = (struct h1_conn *)w;

	switch (c->state) {
	case CONN_CONNECTING: {
		int err = 0;
		socklen_t len = sizeof(err);
		char detail[200];

		if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1)
			err = errno;
		if (err == 0) {
			conn_connected(c);
			return;
		}
		snprintf(detail, sizeof(detail), "Failed to connect to %s: %s", c->p->name, strerror(err));
		conn_connect_failed(c, REPLAY_CONNECT, detail);
		return;
	}
	case CONN_IDLE:
		conn_on_idle_event(c);
		return;
	case CONN_BUSY:
		if (!c->owner) {
			struct h1_pool *p = c->p;

			conn_close(c);
			pool_pump(p);
			return;
		}
		if ((revents & EV_WRITE) && conn_send(c) < 0)
			return;
		if (revents & EV_READ)
			conn_on_read(c);
		return;
	default:
		return;
	}
}

/* Opens a connection for q. Returns 0 (q now owns a connection, connecting
 * or sending), or -1 with q failed soon. */
static int conn_open(struct h1_pool *p, struct h1_req *q)
{
	struct h1_conn *c;
	int fd, one = 1;

	fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd == -1) {
		req_fail_soon(q, REPLAY_CONNECT, "socket: %s", strerror(errno));
		return -1;
	}
	/* small requests and answers: Nagle would only add latency */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		req_fail_soon(q, REPLAY_OTHER, "Out of memory opening a connection");
		return -1;
	}
	c->p = p;
	c->fd = fd;
	buf_init(&c->in, H1_IN_MAX);
	ev_init(&c->io, on_conn_io);
	ev_init(&c->connect_timer, on_connect_timer);
	c->next = p->conns;
	if (p->conns)
		p->conns->prev = c;
	p->conns = c;
	p->open++;
	c->owner = q;
	q->conn = c;
	q->state = REQ_ON_CONN;
	if (connect(fd, (struct sockaddr *)&p->addr, p->addrlen) == -1) {
		if (errno == EINPROGRESS) {
			c->state = CONN_CONNECTING;
			conn_set_events(c, EV_WRITE);
			ev_timer_set(&c->connect_timer, p->lim.connect_timeout, 0.);
			ev_timer_start(p->loop, &c->connect_timer);
			return 0;
		}
		{
			int err = errno;

			c->owner = NULL;
			q->conn = NULL;
			conn_close(c);
			req_fail_soon(q, REPLAY_CONNECT, "Failed to connect to %s: %s", p->name, strerror(err));
			return -1;
		}
	}
	c->state = CONN_BUSY;
	conn_send(c);
	/* a failed send has failed or retried q: it is handled either way */
	return 0;
}

/* Serves queued requests while connections are free or may be opened. */
static void pool_pump(struct h1_pool *p)
{
	while (p->qhead && (p->idle || p->open < p->lim.max_conns)) {
		struct h1_req *q = p->qhead;

		queue_remove(p, q);
		if (p->idle) {
			struct h1_conn *c = p->idle;

			p->idle = c->idle_next;
			c->idle_next = NULL;
			conn_assign(c, q);
		} else {
			conn_open(p, q);
		}
	}
}

static void on_kick(struct ev_loop *loop, ev_prepare *w, int revents)
{
	struct h1_pool *p = (struct h1_pool *)((char *)w - offsetof(struct h1_pool, kick));

	ev_prepare_stop(loop, w);
	pool_pump(p);
}

/* ---- the request head ------------------------------------------------------ */

struct head_writer {
	char *p;                     /* NULL: only counting */
	size_t len;
};

static void put(struct head_writer *w, const char *s, size_t len)
{
	if (w->p)
		memcpy(w->p + w->len, s, len);
	w->len += len;
}

static int put_header(void *arg, const char *name, const char *value)
{
	struct head_writer *w = arg;

	put(w, name, strlen(name));
	/* an empty value goes as "name:", as curl sends it */
	if (*value) {
		put(w, ": ", 2);
		put(w, value, strlen(value));
	} else {
		put(w, ":", 1);
	}
	put(w, "\r\n", 2);
	return 0;
}

/* Request line, Host, the forwarded headers in order, the marker, and
 * Content-Length with REQUEST_BODY: written by the same code as counted. */
static void write_head(struct head_writer *w, const struct replay_request *rq, const struct request_dest *to)
{
	char clen[sizeof("Content-Length: 18446744073709551615\r\n")];

	put(w, rq->method, strlen(rq->method));
	put(w, " ", 1);
	put(w, to->prefix, strlen(to->prefix));
	put(w, rq->target, rq->target_len);
	put(w, " HTTP/1.1\r\n", 11);
	request_each_header(rq, to, put_header, w);
	if (rq->flags & REQUEST_BODY)
		put(w, clen, (size_t)snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n", rq->body_len));
	put(w, "\r\n", 2);
}

/* ---- API ------------------------------------------------------------------- */

struct h1_req *h1_start(struct h1_pool *p, const struct replay_request *rq, const struct request_dest *to,
			ev_tstamp t_start, transport_done_fn done, void *arg)
{
	struct head_writer w = { 0 };
	size_t body_len = rq->flags & REQUEST_BODY ? rq->body_len : 0;
	struct h1_req *q;
	double delay;

	write_head(&w, rq, to);
	q = calloc(1, sizeof(*q) + w.len);
	if (!q)
		return NULL;
	q->body = body_len ? malloc(body_len) : NULL;
	if (body_len && !q->body) {
		free(q);
		return NULL;
	}
	q->head = q->head_bytes;
	q->head_len = w.len;
	w = (struct head_writer){ .p = q->head };
	write_head(&w, rq, to);
	if (body_len)
		memcpy(q->body, rq->body, body_len);
	q->body_len = body_len;
	q->flags = rq->flags;
	q->p = p;
	q->t_start = t_start;
	q->done = done;
	q->arg = arg;
	q->state = REQ_QUEUED;
	/* counted from t_start, whatever the loop's cached time */
	delay = p->lim.timeout - (ev_now(p->loop) - t_start);
	ev_timer_init(&q->timer, on_req_timer, delay > 0 ? delay : 0.001, 0.);
	ev_timer_start(p->loop, &q->timer);
	/* A connection is picked just before the loop polls again, not now:
	 * answers already read in this iteration free their connections
	 * first, so a burst reuses them instead of opening new ones. */
	queue_push(p, q);
	if (!ev_is_active(&p->kick))
		ev_prepare_start(p->loop, &p->kick);
	return q;
}

void h1_cancel(struct h1_req *q)
{
	struct h1_pool *p = q->p;

	if (req_detach(q))
		pool_pump(p);
	req_free(q);
}

struct h1_pool *h1_pool_new(struct ev_loop *loop, const struct sockaddr *sa, socklen_t salen,
			    const char *name, const struct h1_limits *lim, char *err, size_t errlen)
{
	struct h1_pool *p;

	if (salen > sizeof(p->addr)) {
		snprintf(err, errlen, "%s: address too long", name);
		return NULL;
	}
	p = calloc(1, sizeof(*p));
	if (p)
		p->name = strdup(name);
	if (!p || !p->name) {
		snprintf(err, errlen, "%s: out of memory", name);
		free(p);
		return NULL;
	}
	p->loop = loop;
	ev_prepare_init(&p->kick, on_kick);
	memcpy(&p->addr, sa, salen);
	p->addrlen = salen;
	p->lim = *lim;
	if (p->lim.max_conns == 0)
		p->lim.max_conns = 1;
	return p;
}

void h1_pool_free(struct h1_pool *p)
{
	if (!p)
		return;
	ev_prepare_stop(p->loop, &p->kick);
	while (p->qhead) {
		struct h1_req *q = p->qhead;

		queue_remove(p, q);
		req_free(q);
	}
	while (p->conns) {
		struct h1_conn *c = p->conns;

		if (c->owner) {
			c->owner->conn = NULL;
			req_free(c->owner);
			c->owner = NULL;
		}
		conn_close(c);
	}
	free(p->name);
	free(p);
}
