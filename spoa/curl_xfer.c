#include "curl_xfer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "h1parse.h"
#include "http.h"
#include "request.h"

/* Idle easy handles kept for reuse; connections themselves live in the multi
 * handle's cache, so this only saves the allocations. */
#define CURL_POOL_MAX 64

struct curl_sock {
	ev_io io;                    /* first: the callback casts back */
	struct curl_engine *e;
	curl_socket_t fd;
	int events;                  /* EV_READ | EV_WRITE the watcher waits for */
	struct curl_sock *prev, *next;
};

struct curl_xfer {
	struct curl_engine *e;
	CURL *easy;
	transport_done_fn done;
	void *arg;

	struct curl_slist *headers;
	uint8_t *body;               /* copy of the request body (POSTFIELDS) */

	struct http_response resp;
	size_t body_cap;
	size_t drained;              /* body bytes read past max_body */
	bool headers_done;           /* blank line seen: later lines are trailers */
	bool drain_abort;            /* aborted on purpose past REPLAY_DRAIN_MAX */
	enum replay_error fail_reason; /* set by a callback that aborted */
	char errbuf[CURL_ERROR_SIZE];

	struct curl_xfer *prev, *next;
};

struct curl_engine {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct curl_limits lim;      /* ca_file points to ca_file */
	char *ca_file;
	struct curl_xfer *xfers;
	struct curl_sock *socks;
	CURL *pool[CURL_POOL_MAX];
	unsigned pool_count;
};

/* ---- libev <-> libcurl ---------------------------------------------------- */

static void xfer_finish(struct curl_xfer *xf, CURLcode rc);

/* Completed transfers are collected after every socket_action: curl only
 * queues them, and nothing else would ever call back. */
static void check_done(struct curl_engine *e)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(e->multi, &left))) {
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;
		void *xf = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &xf);
		/* msg is invalid from here on: finishing removes the handle. */
		xfer_finish(xf, rc);
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct curl_engine *e = w->data;
	int running;

	curl_multi_socket_action(e->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(e);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct curl_sock *s = (struct curl_sock *)w;
	struct curl_engine *e = s->e;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(e->multi, s->fd, action, &running);
	check_done(e);
}

/* CURLMOPT_TIMERFUNCTION. Must not call socket_action itself (curl is on
 * the stack), so even "now" goes through the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct curl_engine *e = userp;

	ev_timer_stop(e->loop, &e->timer);
	if (timeout_ms < 0)
		return 0;
	if (timeout_ms == 0) {
		/* A zero-delay ev_timer would still wait for the next poll round;
		 * feeding the event runs it in this loop iteration. */
		ev_feed_event(e->loop, &e->timer, EV_TIMER);
		return 0;
	}
	ev_timer_set(&e->timer, (ev_tstamp)timeout_ms / 1000.0, 0.);
	ev_timer_start(e->loop, &e->timer);
	return 0;
}

static void sock_free(struct curl_engine *e, struct curl_sock *s)
{
	ev_io_stop(e->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		e->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: one curl_sock per socket, found again through
 * curl_multi_assign. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct curl_engine *e = userp;
	struct curl_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		/* curl forgets the assignment itself */
		if (s)
			sock_free(e, s);
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;   /* curl fails the transfer: CURLM_ABORTED_BY_CALLBACK */
		s->e = e;
		s->fd = fd;
		ev_init(&s->io, on_io);
		s->next = e->socks;
		if (e->socks)
			e->socks->prev = s;
		e->socks = s;
		curl_multi_assign(e->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	/* curl calls back on every transfer that uses the socket, mostly with
	 * the same events: re-arming each time costs an epoll_ctl. The fd of a
	 * curl_sock never changes (curl removes a socket before closing it,
	 * and a reused number gets a new curl_sock, so libev re-registers
	 * it), hence only a change of events needs a re-arm. */
	if (events == s->events && ev_is_active(&s->io) == (events != 0))
		return 0;
	ev_io_stop(e->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	s->events = events;
	if (events)
		ev_io_start(e->loop, &s->io);
	return 0;
}

/* ---- response callbacks ------------------------------------------------- */

/* Called per header line, status lines included. Only the final response's
 * headers are kept: a new status line (after a 1xx) starts over, and lines
 * after the blank one are trailers. */
static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
	struct curl_xfer *xf = userp;
	size_t total = size * nitems, len = total;
	const char *why;

	while (len > 0 && (data[len - 1] == '\r' || data[len - 1] == '\n' || data[len - 1] == ' ' ||
			   data[len - 1] == '\t'))
		len--;
	if (len >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		http_headers_clear(&xf->resp.headers);
		xf->headers_done = false;
		return total;
	}
	if (len == 0) {
		xf->headers_done = true;
		return total;
	}
	if (xf->headers_done)
		return total;
	return h1_header_line(&xf->resp.headers, data, len, &xf->fail_reason, &why) < 0 ? 0 : total;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *userp)
{
	struct curl_xfer *xf = userp;
	size_t total = size * nitems;
	long dropped = http_body_append(&xf->resp, &xf->body_cap, xf->e->lim.max_body, data, total);

	if (dropped < 0) {
		xf->fail_reason = REPLAY_OTHER;
		return 0;
	}
	xf->drained += (size_t)dropped;
	if (xf->drained > REPLAY_DRAIN_MAX) {
		xf->drain_abort = true;
		return 0;
	}
	return total;
}

/* ---- errors --------------------------------------------------------------- */

static enum replay_error error_reason(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return REPLAY_CONNECT;
	case CURLE_OPERATION_TIMEDOUT:
		return REPLAY_TIMEOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return REPLAY_DNS;
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return REPLAY_RESET;
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:   /* an HTTP/0.9 answer: no status line */
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
		return REPLAY_MALFORMED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_ENGINE_NOTFOUND:
	case CURLE_SSL_ENGINE_SETFAILED:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_ENGINE_INITFAILED:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_SHUTDOWN_FAILED:
	case CURLE_SSL_CRL_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_SSL_CLIENTCERT:
	case CURLE_USE_SSL_FAILED:
		return REPLAY_TLS;
	default:
		return REPLAY_OTHER;
	}
}

/* ---- transfers ------------------------------------------------------------ */

static void pool_put(struct curl_engine *e, CURL *easy)
{
	if (e->pool_count < CURL_POOL_MAX) {
		curl_easy_reset(easy);
		e->pool[e->pool_count++] = easy;
	} else {
		curl_easy_cleanup(easy);
	}
}

static CURL *pool_get(struct curl_engine *e)
{
	return e->pool_count > 0 ? e->pool[--e->pool_count] : curl_easy_init();
}

/* Detaches xf from curl and the list and frees it; xf->resp must have been
 * moved out or be freed here. */
static void xfer_free(struct curl_xfer *xf)
{
	struct curl_engine *e = xf->e;

	if (xf->easy) {
		curl_multi_remove_handle(e->multi, xf->easy);
		pool_put(e, xf->easy);
	}
	if (xf->prev)
		xf->prev->next = xf->next;
	else if (e->xfers == xf)
		e->xfers = xf->next;
	if (xf->next)
		xf->next->prev = xf->prev;
	curl_slist_free_all(xf->headers);
	free(xf->body);
	http_response_clear(&xf->resp);
	free(xf);
}

static void xfer_finish(struct curl_xfer *xf, CURLcode rc)
{
	struct http_response resp = xf->resp;
	transport_done_fn done = xf->done;
	void *arg = xf->arg;

	memset(&xf->resp, 0, sizeof(xf->resp));
	if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && xf->drain_abort)) {
		long status = 0;

		curl_easy_getinfo(xf->easy, CURLINFO_RESPONSE_CODE, &status);
		resp.status = (int)status;
	} else {
		enum replay_error reason = xf->fail_reason != REPLAY_OK ? xf->fail_reason : error_reason(rc);

		http_response_clear(&resp);
		resp.error = reason;
		snprintf(resp.error_detail, sizeof(resp.error_detail), "%s",
			 xf->errbuf[0] ? xf->errbuf : curl_easy_strerror(rc));
	}
	xfer_free(xf);
	done(arg, &resp);
}

static int slist_push(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);

	if (!n)
		return -1;
	*list = n;
	return 0;
}

static int slist_add(void *arg, const char *name, const char *value)
{
	struct curl_slist **list = arg;
	char *line;
	int ret;

	/* "name;" is curl's way to send a header with an empty value: "name:"
	 * would remove it. */
	if (value[0] == '\0' ? asprintf(&line, "%s;", name) < 0 : asprintf(&line, "%s: %s", name, value) < 0)
		return -1;
	ret = slist_push(list, line);
	free(line);
	return ret;
}

static bool forwards(const struct replay_request *rq, const char *lname)
{
	for (size_t i = 0; i < rq->header_count; i++)
		if (strcmp(rq->headers[i]->name, lname) == 0)
			return true;
	return false;
}

static struct curl_slist *build_headers(const struct replay_request *rq, const struct request_dest *to)
{
	struct curl_slist *list = NULL;
	/* curl writes Host from the URL unless the request keeps its own */
	struct request_dest dest = *to;

	dest.host = NULL;
	if (request_each_header(rq, &dest, slist_add, &list) != 0)
		goto fail;
	/* "Name:" suppresses curl's own defaults (Expect: 100-continue,
	 * "Accept: any", a form Content-Type) so the candidate sees the client's
	 * headers only. */
	if (slist_push(&list, "Expect:") < 0 || (!forwards(rq, "accept") && slist_push(&list, "Accept:") < 0) ||
	    (!forwards(rq, "content-type") && slist_push(&list, "Content-Type:") < 0))
		goto fail;
	return list;
fail:
	curl_slist_free_all(list);
	return NULL;
}

static int set_options(struct curl_xfer *xf, const struct replay_request *rq, const struct request_dest *to,
		       const char *target)
{
	const struct curl_limits *lim = &xf->e->lim;
	CURL *e = xf->easy;
	int bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_URL, to->url) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_REQUEST_TARGET, target) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK;
	/* The target is reached directly: no *_proxy environment detour. */
	bad |= curl_easy_setopt(e, CURLOPT_PROXY, "") != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK;
#if LIBCURL_VERSION_NUM >= 0x075700
	/* A transfer that ends (timeout, cancel) while its name is still being
	 * resolved would otherwise join the resolver thread: the loop would
	 * wait for getaddrinfo(). Quick exit detaches it instead. Best effort:
	 * an older libcurl at run time refuses the option. */
	curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L);
#endif
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, lim->connect_timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, lim->timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, lim->insecure ? 0L : 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, lim->insecure ? 0L : 2L) != CURLE_OK;
	if (lim->ca_file)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, lim->ca_file) != CURLE_OK;
	/* bodies are compared as sent; compare decodes gzip/deflate itself */
	bad |= curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, xf->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, xf->headers) != CURLE_OK;

	if (rq->flags & REQUEST_HEAD) {
		bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
	} else if (rq->flags & REQUEST_BODY) {
		/* POSTFIELDS with a NULL pointer would read from stdin; curl sends
		 * Content-Length, 0 included, as the native transport does */
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, xf->body ? (char *)xf->body : "") != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)rq->body_len) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method) != CURLE_OK;
	} else if (strcmp(rq->method, "GET") != 0) {
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, rq->method) != CURLE_OK;
	}
	return bad ? -1 : 0;
}

struct curl_xfer *curl_xfer_start(struct curl_engine *e, const struct replay_request *rq,
				  const struct request_dest *to, ev_tstamp t_start, transport_done_fn done,
				  void *arg)
{
	struct curl_xfer *xf = calloc(1, sizeof(*xf));
	char *target = NULL;

	if (!xf)
		return NULL;
	xf->e = e;
	xf->done = done;
	xf->arg = arg;
	if ((rq->flags & REQUEST_BODY) && rq->body_len > 0) {
		xf->body = malloc(rq->body_len);
		if (!xf->body)
			goto fail;
		memcpy(xf->body, rq->body, rq->body_len);
	}
	xf->headers = build_headers(rq, to);
	if (asprintf(&target, "%s%s", to->prefix, rq->target) < 0)
		target = NULL;
	xf->easy = pool_get(e);
	if (!xf->headers || !target || !xf->easy || set_options(xf, rq, to, target) < 0)
		goto fail;
	/* curl copied the target string in setopt */
	free(target);
	target = NULL;
	if (curl_multi_add_handle(e->multi, xf->easy) != CURLM_OK)
		goto fail;
	xf->next = e->xfers;
	if (e->xfers)
		e->xfers->prev = xf;
	e->xfers = xf;
	return xf;
fail:
	free(target);
	if (xf->easy)
		pool_put(e, xf->easy);
	xf->easy = NULL;
	curl_slist_free_all(xf->headers);
	free(xf->body);
	free(xf);
	return NULL;
}

void curl_xfer_cancel(struct curl_xfer *xf)
{
	xfer_free(xf);
}

struct curl_engine *curl_engine_new(struct ev_loop *loop, const struct curl_limits *lim, char *err,
				    size_t errlen)
{
	struct curl_engine *e = calloc(1, sizeof(*e));

	if (!e) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->loop = loop;
	e->lim = *lim;
	if (lim->ca_file && !(e->ca_file = strdup(lim->ca_file))) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	e->lim.ca_file = e->ca_file;
	e->multi = curl_multi_init();
	if (!e->multi) {
		snprintf(err, errlen, "curl_multi_init failed");
		goto fail;
	}
	ev_init(&e->timer, on_timer);
	e->timer.data = e;
	if (curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e) != CURLM_OK ||
	    curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e) != CURLM_OK ||
	    curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, lim->max_host_conns) != CURLM_OK ||
	    curl_multi_setopt(e->multi, CURLMOPT_MAXCONNECTS, lim->max_idle_conns) != CURLM_OK) {
		snprintf(err, errlen, "libcurl multi options refused");
		goto fail;
	}
	return e;
fail:
	if (e->multi)
		curl_multi_cleanup(e->multi);
	free(e->ca_file);
	free(e);
	return NULL;
}

void curl_engine_free(struct curl_engine *e)
{
	if (!e)
		return;
	while (e->xfers)
		xfer_free(e->xfers);
	/* cleanup closes the cached connections, calling on_curl_socket */
	curl_multi_cleanup(e->multi);
	while (e->socks)
		sock_free(e, e->socks);
	ev_timer_stop(e->loop, &e->timer);
	while (e->pool_count > 0)
		curl_easy_cleanup(e->pool[--e->pool_count]);
	free(e->ca_file);
	free(e);
}
