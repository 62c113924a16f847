#include "agent.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "config.h"
#include "exchange.h"
#include "log.h"
#include "spop.h"
#include "stats.h"

/* Room for the NOTIFYs one read ACKs ahead (conn_read()), each decoded
 * once and kept for its handling: HAProxy's default 16 kB frames hold far
 * fewer. A read with more (a large max_frame_size) has the ones that did
 * not fit decoded again when handled. */
#define AHEAD_FRAMES 256
#define AHEAD_MESSAGES 512
#define AHEAD_ARGS 4096
/* A peer that stops reading may hold this much of our output, then goes. */
#define WRITE_BUF_MAX (1u << 20)
/* Time a closing peer gets to read our DISCONNECT before we hang up. */
#define LINGER_SECONDS 1.0
#define ACK_VAR "ack"
/* The least work between two looks at the HAProxy connections in
 * agent_yield() (or after the loop's poll): one look is an epoll_wait(),
 * about 1 µs, a verdict tens of µs. */
#define YIELD_INTERVAL 50e-6

struct conn {
	ev_io rio;
	ev_io wio;
	ev_timer timer;              /* idle timeout, then linger when closing */
	int fd;
	struct agent *agent;
	struct conn *prev, *next;
	uint8_t *rbuf;
	size_t rlen;
	size_t rcap;
	struct buf out;              /* not yet sent; at most WRITE_BUF_MAX */
	uint32_t frame_size;         /* negotiated; the configured max before HELLO */
	double arrival;              /* kernel receive time of the last read (CLOCK_REALTIME) */
	double acks_since;           /* arrival of the oldest ACK not yet written */
	unsigned acks_pending;       /* ACKs queued, not yet written */
	bool hello_done;
	bool closing;                /* no more reads; close once output is out */
	char peer[64];
};

/* The NOTIFYs of one read, decoded once by the ACK-ahead pass of
 * conn_read() and taken, in order, by handle_notify(). One NOTIFY's worth
 * past the AHEAD_ counts is never kept: a NOTIFY that does not fit, or one
 * handle_notify() decodes itself, is decoded there. */
struct ahead {
	size_t nframes, nmsgs, nargs;  /* kept */
	size_t next;                   /* the next kept frame to handle */
	struct {
		size_t first, count;       /* in msgs */
	} frames[AHEAD_FRAMES];
	struct spop_message msgs[AHEAD_MESSAGES + SPOP_NOTIFY_MAX_MESSAGES];
	struct spop_arg args[AHEAD_ARGS + SPOP_NOTIFY_MAX_ARGS];
};

struct agent {
	struct ev_loop *loop;
	const struct config *cfg;
	struct exchange_table *table;
	ev_io accept_io;
	int listen_fd;
	struct conn *conns;
	size_t nconns;
	int epfd;                    /* the connections that read, for agent_yield() */
	bool reading;                /* in on_read: no agent_yield() */
	ev_tstamp yielded;           /* time of the last look in agent_yield() */
	bool draining;               /* health checks are refused */
	uint64_t checks_refused;     /* while draining */
	ev_tstamp last_notify;       /* loop time of the last NOTIFY */
	struct ahead ahead;          /* of the connection being read: on_read never nests */
};

static void conn_close(struct conn *c)
{
	struct agent *a = c->agent;

	ev_io_stop(a->loop, &c->rio);
	ev_io_stop(a->loop, &c->wio);
	ev_timer_stop(a->loop, &c->timer);
	/* close() takes the fd out of a->epfd. */
	if (close(c->fd) == -1)
		log_debug("close(%s): %s", c->peer, strerror(errno));
	if (c->prev)
		c->prev->next = c->next;
	else
		a->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	a->nconns--;
	stats.conn_active = a->nconns;
	free(c->rbuf);
	buf_free(&c->out);
	free(c);
}

static double realtime_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* No more reads on c: it is closing. */
static void conn_stop_reading(struct conn *c)
{
	ev_io_stop(c->agent->loop, &c->rio);
	epoll_ctl(c->agent->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

/* Counts an ACK just queued in c's output, for the ACK latency histogram. */
static void ack_queued(struct conn *c)
{
	if (c->acks_pending++ == 0)
		c->acks_since = c->arrival;
}

/* Writes what is buffered. Returns false when c was closed. */
static bool conn_flush(struct conn *c)
{
	struct agent *a = c->agent;

	while (c->out.len > 0) {
		ssize_t n = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);

		if (n > 0) {
			buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			ev_io_start(a->loop, &c->wio);
			return true;
		}
		if (n == -1 && errno == EINTR)
			continue;
		log_debug("send to %s: %s", c->peer, strerror(errno));
		conn_close(c);
		return false;
	}
	ev_io_stop(a->loop, &c->wio);
	if (c->acks_pending) {
		/* Each pending ACK is charged the oldest one's wait: an upper bound. */
		double waited = realtime_now() - c->acks_since;

		for (; c->acks_pending; c->acks_pending--)
			stats_ack_observe(waited);
	}
	if (c->closing) {
		conn_close(c);
		return false;
	}
	return true;
}

/* Queues an ACK of (stream_id, frame_id). Returns 0, -1 when the peer is
 * too far behind (c->out is full: the caller closes), or -2 when the ids
 * do not fit an ACK. */
static int conn_queue_ack(struct conn *c, uint64_t stream_id, uint64_t frame_id)
{
	enum { ACK_ROOM = 64 };
	uint8_t *out = (uint8_t *)buf_reserve(&c->out, ACK_ROOM);
	int n;

	if (!out)
		return -1;
	n = spop_build_ack(out, ACK_ROOM, stream_id, frame_id, ACK_VAR);
	if (n < 0)
		return -2;
	buf_commit(&c->out, (size_t)n);
	ack_queued(c);
	return 0;
}

static void on_linger(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_close(w->data);
}

/* Queues AGENT-DISCONNECT and closes once it is written (or after a linger). */
static void conn_disconnect(struct conn *c, enum spop_status status, const char *why)
{
	struct agent *a = c->agent;
	uint8_t frame[512];
	int n;

	stats.disconnect_sent[stats_disconnect_slot(status)]++;
	if (status != SPOP_ERR_NONE)
		log_warn("disconnecting HAProxy peer %s: status %d (%s): %s", c->peer, status,
			 spop_status_text(status), why);
	else
		log_debug("disconnecting %s: %s", c->peer, why);
	c->closing = true;
	conn_stop_reading(c);
	ev_timer_stop(a->loop, &c->timer);
	ev_timer_init(&c->timer, on_linger, LINGER_SECONDS, 0.);
	c->timer.data = c;
	ev_timer_start(a->loop, &c->timer);
	n = spop_build_disconnect(frame, sizeof(frame), status, why);
	if (n <= 0 || buf_add(&c->out, frame, (size_t)n) == -1) {
		conn_close(c);
		return;
	}
	stats.frames_out++;
	conn_flush(c);
}

static bool version_supported(const char *list, size_t len)
{
	size_t i = 0;

	/* supported-versions is a comma-separated list such as "2.0". */
	while (i < len) {
		size_t start, end;

		while (i < len && (list[i] == ' ' || list[i] == ','))
			i++;
		start = i;
		while (i < len && list[i] != ',' && list[i] != ' ')
			i++;
		end = i;
		if (end - start == 3 && memcmp(list + start, "2.0", 3) == 0)
			return true;
	}
	return false;
}

static bool has_token(const char *list, size_t len, const char *tok)
{
	size_t tl = strlen(tok), i = 0;

	while (i < len) {
		size_t start;

		while (i < len && (list[i] == ' ' || list[i] == ','))
			i++;
		start = i;
		while (i < len && list[i] != ',' && list[i] != ' ')
			i++;
		if (i - start == tl && memcmp(list + start, tok, tl) == 0)
			return true;
	}
	return false;
}

/* Returns false when c was closed. */
static bool handle_hello(struct conn *c, const struct spop_frame *f)
{
	const uint8_t *p = f->payload, *end = f->payload + f->payload_len;
	const struct spop_value *versions = NULL, *size = NULL, *caps = NULL;
	struct spop_arg kv[16];
	size_t nkv = 0;
	bool healthcheck = false;
	int64_t hsize;
	uint8_t frame[256];
	int n;

	if (c->hello_done) {
		conn_disconnect(c, SPOP_ERR_INVALID, "a second HAPROXY-HELLO");
		return false;
	}
	while (p < end) {
		struct spop_arg a;

		if (spop_kv_decode(&p, end, &a) < 0) {
			conn_disconnect(c, SPOP_ERR_INVALID, "malformed HAPROXY-HELLO");
			return false;
		}
		if (nkv < sizeof(kv) / sizeof(kv[0]))
			kv[nkv++] = a;
	}
	for (size_t i = 0; i < nkv; i++) {
		if (spop_arg_is(&kv[i], "supported-versions") && kv[i].value.type == SPOP_T_STRING)
			versions = &kv[i].value;
		else if (spop_arg_is(&kv[i], "max-frame-size"))
			size = &kv[i].value;
		else if (spop_arg_is(&kv[i], "capabilities") && kv[i].value.type == SPOP_T_STRING)
			caps = &kv[i].value;
		else if (spop_arg_is(&kv[i], "healthcheck") && kv[i].value.type == SPOP_T_BOOL)
			healthcheck = kv[i].value.v.b;
	}
	if (!versions) {
		conn_disconnect(c, SPOP_ERR_NO_VSN, "HAPROXY-HELLO without supported-versions");
		return false;
	}
	if (!version_supported(versions->v.str.ptr, versions->v.str.len)) {
		conn_disconnect(c, SPOP_ERR_BAD_VSN, "no supported version (miffy speaks SPOP 2.0)");
		return false;
	}
	if (!size || !spop_value_int(size, &hsize)) {
		conn_disconnect(c, SPOP_ERR_NO_FRAME_SIZE, "HAPROXY-HELLO without max-frame-size");
		return false;
	}
	if (hsize < SPOP_MIN_FRAME_SIZE) {
		conn_disconnect(c, SPOP_ERR_BAD_FRAME_SIZE, "max-frame-size below 256");
		return false;
	}
	if (!caps) {
		conn_disconnect(c, SPOP_ERR_NO_CAP, "HAPROXY-HELLO without capabilities");
		return false;
	}
	if (healthcheck && c->agent->draining) {
		/* A failed check is how HAProxy learns to stop sending to us. */
		if (c->agent->checks_refused++ == 0)
			log_info("draining: health check from %s refused, HAProxy will mark the agent down",
				 c->peer);
		stats.conn_healthchecks++;
		conn_disconnect(c, SPOP_ERR_NONE, "agent draining: health check refused");
		return false;
	}
	if ((uint64_t)hsize < c->frame_size)
		c->frame_size = (uint32_t)hsize;
	n = spop_build_hello(frame, sizeof(frame), c->frame_size,
			     has_token(caps->v.str.ptr, caps->v.str.len, "pipelining") ? "pipelining" : "");
	if (n <= 0 || buf_add(&c->out, frame, (size_t)n) == -1) {
		conn_close(c);
		return false;
	}
	stats.frames_out++;
	c->hello_done = true;
	c->timer.repeat = c->agent->cfg->idle_timeout;
	ev_timer_again(c->agent->loop, &c->timer);
	if (healthcheck) {
		stats.conn_healthchecks++;
		c->closing = true;
		conn_stop_reading(c);
	}
	return conn_flush(c);
}

/* Decodes f's messages into h, kept for handle_notify() when keep and
 * they fit. Returns the number of messages (at *first in h->msgs) or
 * SPOP_INVALID. */
static int ahead_decode(struct ahead *h, const struct spop_frame *f, bool keep, size_t *first)
{
	size_t m = AHEAD_MESSAGES, a = AHEAD_ARGS;
	int n;

	keep = keep && h->nframes < AHEAD_FRAMES && h->nmsgs + SPOP_NOTIFY_MAX_MESSAGES <= AHEAD_MESSAGES &&
	       h->nargs + SPOP_NOTIFY_MAX_ARGS <= AHEAD_ARGS;
	if (keep) {
		m = h->nmsgs;
		a = h->nargs;
	}
	n = spop_notify_decode(f->payload, f->payload + f->payload_len, h->msgs + m, h->args + a);
	*first = m;
	if (n < 0 || !keep)
		return n;
	h->frames[h->nframes].first = m;
	h->frames[h->nframes].count = (size_t)n;
	h->nframes++;
	h->nmsgs += (size_t)n;
	for (int i = 0; i < n; i++)
		h->nargs += h->msgs[m + (size_t)i].nargs;
	return n;
}

/* Queues the ACK of f when f is a NOTIFY that handle_notify() will accept
 * and acknowledge, keeping its decoded messages for it; returns true then.
 * Nothing is queued or kept otherwise. */
static bool notify_ack_ahead(struct conn *c, const struct spop_frame *f)
{
	struct ahead *h = &c->agent->ahead;
	size_t nframes = h->nframes, nmsgs = h->nmsgs, nargs = h->nargs, first;

	if (f->type != SPOP_FRAME_NOTIFY || !c->hello_done || !(f->flags & SPOP_FLAG_FIN) ||
	    (f->flags & SPOP_FLAG_ABORT))
		return false;
	if (ahead_decode(h, f, true, &first) < 0)
		return false;
	if (conn_queue_ack(c, f->stream_id, f->frame_id) < 0) {
		h->nframes = nframes;
		h->nmsgs = nmsgs;
		h->nargs = nargs;
		return false;
	}
	return true;
}

/* acked: notify_ack_ahead() already queued and sent f's ACK (and kept its
 * messages, unless they did not fit). Returns false when c was closed. */
static bool handle_notify(struct conn *c, const struct spop_frame *f, bool acked)
{
	struct ahead *h = &c->agent->ahead;
	const struct spop_message *msgs;
	size_t nmsgs, first;

	if (!c->hello_done) {
		conn_disconnect(c, SPOP_ERR_INVALID, "NOTIFY before HELLO");
		return false;
	}
	if (!(f->flags & SPOP_FLAG_FIN)) {
		conn_disconnect(c, SPOP_ERR_FRAG_NOT_SUPPORTED,
				"fragmented NOTIFY (set 'no option send-frag-payload')");
		return false;
	}
	if (f->flags & SPOP_FLAG_ABORT)
		return true;
	c->agent->last_notify = ev_now(c->agent->loop);
	if (acked && h->next < h->nframes) {
		first = h->frames[h->next].first;
		nmsgs = h->frames[h->next].count;
		h->next++;
	} else {
		int n = ahead_decode(h, f, false, &first);

		if (n < 0) {
			conn_disconnect(c, SPOP_ERR_INVALID, "malformed NOTIFY message");
			return false;
		}
		nmsgs = (size_t)n;
	}
	msgs = h->msgs + first;
	if (!acked) {
		/* The ACK goes out before any other work: HAProxy waits for it. */
		int r = conn_queue_ack(c, f->stream_id, f->frame_id);

		if (r == -1) {
			log_warn("HAProxy peer %s does not read its ACKs: closing", c->peer);
			conn_close(c);
			return false;
		}
		if (r < 0) {
			conn_disconnect(c, SPOP_ERR_INVALID, "stream or frame id too large");
			return false;
		}
	}
	stats.notify_frames++;
	stats.ack_frames++;
	stats.frames_out++;
	if (!acked && !conn_flush(c))
		return false;
	for (size_t i = 0; i < nmsgs; i++) {
		stats.messages++;
		exchange_on_message(c->agent->table, msgs[i].name, msgs[i].name_len, msgs[i].args,
				    msgs[i].nargs);
	}
	return true;
}

/* Returns false when c was closed. */
static bool handle_frame(struct conn *c, const struct spop_frame *f, bool acked)
{
	stats.frames_in++;
	switch (f->type) {
	case SPOP_FRAME_HAPROXY_HELLO:
		return handle_hello(c, f);
	case SPOP_FRAME_NOTIFY:
		return handle_notify(c, f, acked);
	case SPOP_FRAME_HAPROXY_DISCONNECT:
		stats.disconnect_received++;
		conn_disconnect(c, SPOP_ERR_NONE, "HAProxy disconnected");
		return false;
	case SPOP_FRAME_UNSET:
		conn_disconnect(c, SPOP_ERR_FRAG_NOT_SUPPORTED, "fragment continuation frame");
		return false;
	default: {
		char why[64];

		snprintf(why, sizeof(why), "unexpected frame type %u", f->type);
		conn_disconnect(c, SPOP_ERR_INVALID, why);
		return false;
	}
	}
}

/* recv() that also takes the kernel's receive time (SO_TIMESTAMPNS) into
 * c->arrival, or the time now where the kernel gave none. */
static ssize_t recv_stamped(struct conn *c)
{
	struct iovec iov = { c->rbuf + c->rlen, c->rcap - c->rlen };
	union {
		char buf[CMSG_SPACE(sizeof(struct timespec))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.buf,
			      .msg_controllen = sizeof(control.buf) };
	ssize_t n = recvmsg(c->fd, &msg, 0);

	c->arrival = 0;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&msg); n > 0 && cm; cm = CMSG_NXTHDR(&msg, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
			struct timespec ts;

			memcpy(&ts, CMSG_DATA(cm), sizeof(ts));
			c->arrival = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
		}
	}
	if (c->arrival == 0)
		c->arrival = realtime_now();
	return n;
}

/* Reads what c has and handles its frames. c may be closed (freed) when it
 * returns. */
static void conn_read(struct conn *c)
{
	struct ev_loop *loop = c->agent->loop;
	const uint8_t *p, *end;
	size_t acked = 0;
	ssize_t n;

	n = recv_stamped(c);
	if (n == 0) {
		log_debug("HAProxy peer %s closed the connection", c->peer);
		conn_close(c);
		return;
	}
	if (n == -1) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		log_debug("recv from %s: %s", c->peer, strerror(errno));
		conn_close(c);
		return;
	}
	c->rlen += (size_t)n;
	/* Before HELLO the deadline counts from accept: a peer trickling bytes
	 * must not hold a connection slot by resetting it. */
	if (c->hello_done)
		ev_timer_again(loop, &c->timer);
	p = c->rbuf;
	end = c->rbuf + c->rlen;
	c->agent->ahead.nframes = c->agent->ahead.nmsgs = c->agent->ahead.nargs = 0;
	c->agent->ahead.next = 0;
	/* HAProxy pipelines: one read often holds many NOTIFYs. Their ACKs go
	 * out first, in one send instead of one per frame (the send is most of
	 * the agent's per-frame cost), and still before any message is handled. */
	for (const uint8_t *q = p;;) {
		struct spop_frame f;
		bool too_big;

		if (spop_frame_decode(&q, end, c->frame_size, &f, &too_big) < 0 ||
		    !notify_ack_ahead(c, &f))
			break;
		acked++;
	}
	if (acked && !conn_flush(c))
		return;
	for (;;) {
		struct spop_frame f;
		bool too_big, ahead = acked > 0;
		int r = spop_frame_decode(&p, end, c->frame_size, &f, &too_big);

		if (r == SPOP_INCOMPLETE)
			break;
		if (r < 0) {
			if (too_big) {
				char why[96];

				snprintf(why, sizeof(why), "frame longer than max-frame-size %u", c->frame_size);
				conn_disconnect(c, SPOP_ERR_TOO_BIG, why);
			} else {
				conn_disconnect(c, SPOP_ERR_INVALID, "malformed frame header");
			}
			return;
		}
		if (ahead)
			acked--;
		if (!handle_frame(c, &f, ahead) || c->closing)
			return;
	}
	c->rlen = (size_t)(end - p);
	if (c->rlen && p != c->rbuf)
		memmove(c->rbuf, p, c->rlen);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct conn *c = w->data;
	struct agent *a = c->agent;

	(void)loop;
	(void)revents;
	a->reading = true;
	conn_read(c);
	a->reading = false;
}

/* The exchange table's yield (exchange_table_set_yield()): between two
 * exchanges' verdicts, reads the connections that have data now, so that a
 * NOTIFY is ACKed within about YIELD_INTERVAL of the agent's work and one
 * verdict. One loop iteration can run dozens of verdicts (tens of µs each,
 * more on a loaded machine); a NOTIFY that arrives meanwhile would
 * otherwise wait for all of them, the EV_MAXPRI of its watcher counting
 * only from the next poll. A connection libev also reported in this
 * iteration just finds nothing left to read then. Not from within on_read:
 * a verdict reached from a NOTIFY (miffy-res) must not read the connection
 * whose buffer is being parsed. */
static void agent_yield(void *arg)
{
	struct agent *a = arg;
	struct epoll_event ev[16];
	ev_tstamp now;
	int n;

	if (a->reading)
		return;
	now = ev_time();
	if (now - a->yielded < YIELD_INTERVAL || now - ev_now(a->loop) < YIELD_INTERVAL)
		return;
	a->yielded = now;
	n = epoll_wait(a->epfd, ev, (int)(sizeof(ev) / sizeof(ev[0])), 0);
	/* Only the connection being read can close in on_read: the others in
	 * ev stay valid. */
	for (int i = 0; i < n; i++) {
		struct conn *c = ev[i].data.ptr;

		on_read(a->loop, &c->rio, EV_READ);
	}
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_flush(w->data);
}

static void on_idle(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct conn *c = w->data;

	(void)loop;
	(void)revents;
	stats.idle_timeouts++;
	conn_disconnect(c, SPOP_ERR_TOUT, c->hello_done ? "idle timeout" : "no HELLO in time");
}

static void peer_name(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN + 1] = "?", port[8] = "?";

	getnameinfo((const struct sockaddr *)ss, sizeof(*ss), host, sizeof(host), port, sizeof(port),
		    NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(buf, len, "%s:%s", host, port);
}

static void on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct agent *a = w->data;

	(void)revents;
	/* Bounded batch: one wake-up must not starve the established peers. */
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage ss;
		socklen_t sl = sizeof(ss);
		struct conn *c;
		int one = 1;
		int fd = accept4(a->listen_fd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd == -1) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept: %s", strerror(errno));
			return;
		}
		if (a->nconns >= a->cfg->max_connections) {
			stats.conn_refused++;
			log_warn("connection limit reached (max_connections=%u): refusing a new HAProxy connection",
				 a->cfg->max_connections);
			close(fd);
			continue;
		}
		c = calloc(1, sizeof(*c));
		if (c) {
			c->rcap = a->cfg->max_frame_size + SPOP_FRAME_HDR_LEN;
			c->rbuf = malloc(c->rcap);
		}
		if (!c || !c->rbuf) {
			log_error("out of memory accepting a connection");
			if (c)
				free(c);
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		/* Kernel receive times measure the ACK latency from the wire, so
		 * a busy loop shows even before it reads a frame. */
		if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof(one)) == -1)
			log_debug("SO_TIMESTAMPNS: %s", strerror(errno));
		c->fd = fd;
		c->agent = a;
		buf_init(&c->out, WRITE_BUF_MAX);
		c->frame_size = a->cfg->max_frame_size;
		peer_name(&ss, c->peer, sizeof(c->peer));
		ev_io_init(&c->rio, on_read, fd, EV_READ);
		ev_io_init(&c->wio, on_write, fd, EV_WRITE);
		/* HAProxy's streams wait for our ACKs: when frames and candidate
		 * answers are ready in the same iteration, the frames go first. */
		ev_set_priority(&c->rio, EV_MAXPRI);
		ev_set_priority(&c->wio, EV_MAXPRI);
		ev_init(&c->timer, on_idle);
		/* Until HELLO the short timeout applies: HAProxy sends it at once. */
		c->timer.repeat = a->cfg->hello_timeout;
		c->rio.data = c->wio.data = c->timer.data = c;
		ev_io_start(loop, &c->rio);
		ev_timer_again(loop, &c->timer);
		{
			struct epoll_event ev = { .events = EPOLLIN, .data.ptr = c };

			if (epoll_ctl(a->epfd, EPOLL_CTL_ADD, fd, &ev) == -1)
				log_debug("epoll_ctl(%s): %s", c->peer, strerror(errno));
		}
		c->next = a->conns;
		if (a->conns)
			a->conns->prev = c;
		a->conns = c;
		a->nconns++;
		stats.conn_accepted++;
		stats.conn_active = a->nconns;
		log_debug("HAProxy peer %s connected", c->peer);
	}
}

struct agent *agent_new(struct ev_loop *loop, const struct config *cfg,
			struct exchange_table *table, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	struct agent *a;
	int one = 1, rc;

	if (config_split_addr(cfg->listen, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "listen address '%s' is not ADDR:PORT", cfg->listen);
		return NULL;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->loop = loop;
	a->cfg = cfg;
	a->table = table;
	a->listen_fd = -1;
	a->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (a->epfd == -1) {
		snprintf(err, errlen, "epoll_create1: %s", strerror(errno));
		goto fail;
	}
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve listen address %s: %s", cfg->listen, gai_strerror(rc));
		goto fail;
	}
	a->listen_fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (a->listen_fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	setsockopt(a->listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(a->listen_fd, res->ai_addr, res->ai_addrlen) == -1) {
		snprintf(err, errlen, "cannot listen on %s: %s", cfg->listen, strerror(errno));
		goto fail;
	}
	if (listen(a->listen_fd, 1024) == -1) {
		snprintf(err, errlen, "listen on %s: %s", cfg->listen, strerror(errno));
		goto fail;
	}
	freeaddrinfo(res);
	ev_io_init(&a->accept_io, on_accept, a->listen_fd, EV_READ);
	a->accept_io.data = a;
	ev_io_start(loop, &a->accept_io);
	exchange_table_set_yield(table, agent_yield, a);
	return a;
fail:
	if (res)
		freeaddrinfo(res);
	if (a->listen_fd != -1)
		close(a->listen_fd);
	if (a->epfd != -1)
		close(a->epfd);
	free(a);
	return NULL;
}

static void agent_stop_accepting(struct agent *a)
{
	if (a->listen_fd == -1)
		return;
	ev_io_stop(a->loop, &a->accept_io);
	close(a->listen_fd);
	a->listen_fd = -1;
}

void agent_drain(struct agent *a)
{
	a->draining = true;
	a->checks_refused = 0;
}

bool agent_quiet(const struct agent *a, double seconds)
{
	return a->draining && a->checks_refused > 0 && ev_now(a->loop) - a->last_notify >= seconds;
}

void agent_close_all(struct agent *a)
{
	struct conn *c = a->conns;

	while (c) {
		struct conn *next = c->next;

		if (!c->closing)
			conn_disconnect(c, SPOP_ERR_NONE, "agent shutting down");
		c = next;
	}
}

size_t agent_connection_count(const struct agent *a)
{
	return a->nconns;
}

void agent_free(struct agent *a)
{
	if (!a)
		return;
	agent_stop_accepting(a);
	while (a->conns)
		conn_close(a->conns);
	close(a->epfd);
	free(a);
}
