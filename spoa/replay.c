#include "replay.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "config.h"
#include "h1.h"
#include "stats.h"

/* Idle easy handles kept for reuse; connections themselves live in the multi
 * handle's cache, so this only saves the allocations. */
#define REPLAY_POOL_MAX 64

/* Once max_body is reached the rest of the body is read and thrown away, so
 * the connection stays reusable, up to this many bytes; then the transfer is
 * aborted (the connection closes) so a huge body cannot eat bandwidth until
 * the timeout. */
#define REPLAY_DRAIN_MAX (1024 * 1024)


/* After a burst of at least this many transfers in flight has drained to a
 * sixteenth of its peak, the freed heap is handed back to the OS: glibc
 * keeps it otherwise, and a burst of timeouts would pin its peak RSS. */
#define REPLAY_TRIM_PEAK 1024

/* A response with more header lines than this is treated as malformed
 * (http_headers_add has its own, higher, hard cap). */
#define REPLAY_MAX_HEADERS 1000

struct target {
	char *url;                   /* normalised, no trailing '/': connects */
	char *prefix;                /* base path without trailing '/', may be "" */
	/* the native engine, for http:// to an address literal (or NULL) */
	struct h1_pool *h1;
	char *host;                  /* Host header value: "127.0.0.1:8080" */
};

struct replay_sock {
	ev_io io;                    /* first: the callback casts back */
	struct replay *r;
	curl_socket_t fd;
	int events;                  /* EV_READ | EV_WRITE the watcher waits for */
	struct replay_sock *prev, *next;
};

struct replay_xfer {
	struct replay *r;
	CURL *easy;                  /* curl engine, else: */
	struct h1_req *h1;           /* native engine, NULL once it called back */
	enum replay_role role;
	replay_done_fn done;
	void *arg;

	struct curl_slist *headers;
	uint8_t *body;               /* copy of the request body (POSTFIELDS) */

	struct http_response resp;
	size_t body_cap;
	size_t drained;              /* body bytes read past max_body */
	bool headers_done;           /* blank line seen: later lines are trailers */
	bool drain_abort;            /* aborted on purpose past REPLAY_DRAIN_MAX */
	const char *fail_reason;     /* set by a callback that aborted */
	ev_tstamp t_start;
	char errbuf[CURL_ERROR_SIZE];

	struct replay_xfer *prev, *next;
};

struct replay {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	struct target targets[ROLE_COUNT];
	bool have[ROLE_COUNT];

	char *marker;                /* header name, NULL when disabled */
	char *ca_file;
	bool insecure;
	bool preserve_host;
	long connect_timeout_ms;
	long timeout_ms;
	unsigned max_concurrent;
	size_t max_body;

	unsigned inflight;
	unsigned peak;               /* most in flight since the last trim */
	struct replay_xfer *xfers;
	struct replay_sock *socks;
	CURL *pool[REPLAY_POOL_MAX];
	unsigned pool_count;
};

static const char *const role_values[ROLE_COUNT] = { "candidate", "secondary" };

/* ---- targets ------------------------------------------------------------ */

static void target_clear(struct target *t)
{
	h1_pool_free(t->h1);
	free(t->host);
	free(t->url);
	free(t->prefix);
	t->h1 = NULL;
	t->host = NULL;
	t->url = NULL;
	t->prefix = NULL;
}

/* Sets up the native engine for t when the URL allows it: plain http, no
 * user info, a host that needs no DNS (the loop must never wait for a
 * resolver). Returns 0 (t->h1 may still be NULL: curl serves t), -1 on
 * allocation failure. */
static int target_init_native(struct target *t, struct ev_loop *loop, CURLU *u, const char *scheme,
			      const char *host, const struct h1_limits *lim)
{
	struct sockaddr_storage ss;
	socklen_t sslen = 0;
	char *port = NULL, *user = NULL;
	unsigned long portnum;
	int ret = -1;

	if (strcasecmp(scheme, "http") != 0)
		return 0;
	if (curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
		curl_free(user);
		return 0;
	}
	if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		return 0;
	portnum = strtoul(port, NULL, 10);
	if (h1_literal_addr(host, (unsigned)portnum, &ss, &sslen) < 0) {
		ret = 0;
		goto out;
	}
	/* like curl: the port is left out of Host when it is the default */
	if (portnum == 80 ? asprintf(&t->host, "%s", host) < 0 : asprintf(&t->host, "%s:%lu", host, portnum) < 0) {
		t->host = NULL;
		goto out;
	}
	t->h1 = h1_pool_new(loop, (struct sockaddr *)&ss, sslen, t->host, lim);
	if (!t->h1)
		goto out;
	ret = 0;
out:
	curl_free(port);
	return ret;
}

static void strip_trailing_slashes(char *s)
{
	size_t n = strlen(s);

	while (n > 0 && s[n - 1] == '/')
		s[--n] = '\0';
}

/* Checks that url is an http(s) URL with a host and no query or fragment,
 * and splits it into what to connect to and the base path prefix. */
static int target_init(struct target *t, const char *what, const char *url, struct ev_loop *loop,
		       const struct h1_limits *native, char *err, size_t errlen)
{
	CURLU *u = curl_url();
	char *scheme = NULL, *host = NULL, *path = NULL, *query = NULL, *frag = NULL;
	CURLUcode uc;
	int ret = -1;

	memset(t, 0, sizeof(*t));
	if (!u) {
		snprintf(err, errlen, "%s URL: out of memory", what);
		return -1;
	}
	uc = curl_url_set(u, CURLUPART_URL, url, 0);
	if (uc != CURLUE_OK) {
		snprintf(err, errlen, "%s URL \"%s\" is invalid: %s", what, url, curl_url_strerror(uc));
		goto out;
	}
	if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
	    (strcasecmp(scheme, "http") != 0 && strcasecmp(scheme, "https") != 0)) {
		snprintf(err, errlen, "%s URL \"%s\": scheme must be http or https", what, url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK || host[0] == '\0') {
		snprintf(err, errlen, "%s URL \"%s\" has no host", what, url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK ||
	    curl_url_get(u, CURLUPART_FRAGMENT, &frag, 0) == CURLUE_OK) {
		snprintf(err, errlen, "%s URL \"%s\" must not have a query or a fragment", what, url);
		goto out;
	}
	if (curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
		snprintf(err, errlen, "%s URL \"%s\" has no path", what, url);
		goto out;
	}
	t->prefix = strdup(path);
	/* The path is dropped from the connect URL: the request target is built
	 * separately (CURLOPT_REQUEST_TARGET) from the prefix and the client's
	 * path, byte for byte. */
	if (!t->prefix || curl_url_set(u, CURLUPART_PATH, "/", 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &t->url, 0) != CURLUE_OK) {
		snprintf(err, errlen, "%s URL: out of memory", what);
		target_clear(t);
		goto out;
	}
	strip_trailing_slashes(t->prefix);
	if (native && target_init_native(t, loop, u, scheme, host, native) < 0) {
		snprintf(err, errlen, "%s URL: out of memory", what);
		target_clear(t);
		goto out;
	}
	ret = 0;
out:
	curl_free(frag);
	curl_free(query);
	curl_free(path);
	curl_free(host);
	curl_free(scheme);
	curl_url_cleanup(u);
	return ret;
}

int replay_check_url(const char *what, const char *url, char *err, size_t errlen)
{
	struct target t;

	if (target_init(&t, what, url, NULL, NULL, err, errlen) < 0)
		return -1;
	target_clear(&t);
	return 0;
}

static bool is_token(const char *s)
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

/* ---- libev <-> libcurl ---------------------------------------------------- */

static void xfer_finish(struct replay *r, struct replay_xfer *xf, CURLcode rc);

/* Completed transfers are collected after every socket_action: curl only
 * queues them, and nothing else would ever call back. */
static void check_done(struct replay *r)
{
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(r->multi, &left))) {
		CURL *easy = msg->easy_handle;
		CURLcode rc = msg->data.result;
		void *xf = NULL;

		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, &xf);
		/* msg is invalid from here on: finishing removes the handle. */
		xfer_finish(r, xf, rc);
	}
}

static void on_timer(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct replay *r = w->data;
	int running;

	curl_multi_socket_action(r->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(r);
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
	struct replay_sock *s = (struct replay_sock *)w;
	struct replay *r = s->r;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) | (revents & EV_WRITE ? CURL_CSELECT_OUT : 0);
	int running;

	curl_multi_socket_action(r->multi, s->fd, action, &running);
	check_done(r);
}

/* CURLMOPT_TIMERFUNCTION. Must not call socket_action itself (curl is on
 * the stack), so even "now" goes through the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct replay *r = userp;

	ev_timer_stop(r->loop, &r->timer);
	if (timeout_ms < 0)
		return 0;
	if (timeout_ms == 0) {
		/* A zero-delay ev_timer would still wait for the next poll round;
		 * feeding the event runs it in this loop iteration. */
		ev_feed_event(r->loop, &r->timer, EV_TIMER);
		return 0;
	}
	ev_timer_set(&r->timer, (ev_tstamp)timeout_ms / 1000.0, 0.);
	ev_timer_start(r->loop, &r->timer);
	return 0;
}

static void sock_free(struct replay *r, struct replay_sock *s)
{
	ev_io_stop(r->loop, &s->io);
	if (s->prev)
		s->prev->next = s->next;
	else
		r->socks = s->next;
	if (s->next)
		s->next->prev = s->prev;
	free(s);
}

/* CURLMOPT_SOCKETFUNCTION: one replay_sock per socket, found again through
 * curl_multi_assign. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct replay *r = userp;
	struct replay_sock *s = socketp;
	int events = 0;

	if (what == CURL_POLL_REMOVE) {
		/* curl forgets the assignment itself */
		if (s)
			sock_free(r, s);
		return 0;
	}
	if (!s) {
		s = calloc(1, sizeof(*s));
		if (!s)
			return -1;   /* curl fails the transfer: CURLM_ABORTED_BY_CALLBACK */
		s->r = r;
		s->fd = fd;
		ev_init(&s->io, on_io);
		s->next = r->socks;
		if (r->socks)
			r->socks->prev = s;
		r->socks = s;
		curl_multi_assign(r->multi, fd, s);
	}
	if (what & CURL_POLL_IN)
		events |= EV_READ;
	if (what & CURL_POLL_OUT)
		events |= EV_WRITE;
	/* curl calls back on every transfer that uses the socket, mostly with
	 * the same events: re-arming each time costs an epoll_ctl. The fd of a
	 * replay_sock never changes (curl removes a socket before closing it,
	 * and a reused number gets a new replay_sock, so libev re-registers
	 * it), hence only a change of events needs a re-arm. */
	if (events == s->events && ev_is_active(&s->io) == (events != 0))
		return 0;
	ev_io_stop(r->loop, &s->io);
	ev_io_set(&s->io, fd, events);
	s->events = events;
	if (events)
		ev_io_start(r->loop, &s->io);
	return 0;
}

/* ---- response callbacks ------------------------------------------------- */

static size_t trim_len(const char *s, size_t len)
{
	while (len > 0 && (s[len - 1] == '\r' || s[len - 1] == '\n' || s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return len;
}

/* Called per header line, status lines included. Only the final response's
 * headers are kept: a new status line (after a 1xx) starts over, and lines
 * after the blank one are trailers. */
static size_t on_header(char *data, size_t size, size_t nitems, void *userp)
{
	struct replay_xfer *xf = userp;
	size_t total = size * nitems;
	size_t len = trim_len(data, total);
	const char *colon, *value, *end = data + len;

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
	if (data[0] == ' ' || data[0] == '\t') {
		/* obsolete line folding (RFC 9112 5.2): join with a space */
		while (len > 0 && (*data == ' ' || *data == '\t')) {
			data++;
			len--;
		}
		if (xf->resp.headers.count > 0 && http_headers_fold(&xf->resp.headers, data, len) < 0)
			goto nomem;
		return total;
	}
	colon = memchr(data, ':', len);
	if (!colon || colon == data) {
		xf->fail_reason = "malformed";
		return 0;
	}
	value = colon + 1;
	while (value < end && (*value == ' ' || *value == '\t'))
		value++;
	if (xf->resp.headers.count >= REPLAY_MAX_HEADERS) {
		xf->fail_reason = "malformed";
		return 0;
	}
	if (http_headers_add(&xf->resp.headers, data, (size_t)(colon - data), value, (size_t)(end - value)) < 0)
		goto nomem;
	return total;
nomem:
	xf->fail_reason = "other";
	return 0;
}

static size_t on_body(char *data, size_t size, size_t nitems, void *userp)
{
	struct replay_xfer *xf = userp;
	size_t total = size * nitems;
	long dropped = http_body_append(&xf->resp, &xf->body_cap, xf->r->max_body, data, total);

	if (dropped < 0) {
		xf->fail_reason = "other";
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

static const char *error_reason(CURLcode rc)
{
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
		return "connect";
	case CURLE_OPERATION_TIMEDOUT:
		return "timeout";
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return "dns";
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return "reset";
	case CURLE_WEIRD_SERVER_REPLY:
	case CURLE_UNSUPPORTED_PROTOCOL:   /* an HTTP/0.9 answer: no status line */
	case CURLE_BAD_CONTENT_ENCODING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_HTTP3:
		return "malformed";
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
		return "tls";
	default:
		return "other";
	}
}

/* ---- transfers ------------------------------------------------------------ */

static void pool_put(struct replay *r, CURL *easy)
{
	if (r->pool_count < REPLAY_POOL_MAX) {
		curl_easy_reset(easy);
		r->pool[r->pool_count++] = easy;
	} else {
		curl_easy_cleanup(easy);
	}
}

static CURL *pool_get(struct replay *r)
{
	return r->pool_count > 0 ? r->pool[--r->pool_count] : curl_easy_init();
}

/* Detaches xf from curl and the lists and frees it; xf->resp must have been
 * moved out or be freed here. */
static void xfer_release(struct replay *r, struct replay_xfer *xf)
{
	if (xf->easy) {
		curl_multi_remove_handle(r->multi, xf->easy);
		pool_put(r, xf->easy);
	} else if (xf->h1) {
		h1_cancel(xf->h1);
	}
	if (xf->prev)
		xf->prev->next = xf->next;
	else
		r->xfers = xf->next;
	if (xf->next)
		xf->next->prev = xf->prev;
	r->inflight--;
	stats.replays_inflight--;
	curl_slist_free_all(xf->headers);
	free(xf->body);
	http_response_clear(&xf->resp);
	free(xf);
	if (r->peak >= REPLAY_TRIM_PEAK && r->inflight <= r->peak / 16) {
		malloc_trim(0);
		r->peak = r->inflight;
	}
}

static void xfer_finish(struct replay *r, struct replay_xfer *xf, CURLcode rc)
{
	struct http_response resp = xf->resp;
	replay_done_fn done = xf->done;
	void *arg = xf->arg;
	enum replay_role role = xf->role;

	memset(&xf->resp, 0, sizeof(xf->resp));
	if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && xf->drain_abort)) {
		long status = 0;

		curl_easy_getinfo(xf->easy, CURLINFO_RESPONSE_CODE, &status);
		resp.status = (int)status;
	} else {
		const char *reason = xf->fail_reason ? xf->fail_reason : error_reason(rc);

		http_response_clear(&resp);
		snprintf(resp.error, sizeof(resp.error), "%s", reason);
		snprintf(resp.error_detail, sizeof(resp.error_detail), "%s",
			 xf->errbuf[0] ? xf->errbuf : curl_easy_strerror(rc));
		stats_candidate_error(role, reason);
	}
	resp.latency_ms = (ev_time() - xf->t_start) * 1000.0;
	xfer_release(r, xf);
	done(arg, role, &resp);
}

/* Appends s[0..len) to *p, percent-encoding what would break the request
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

static char *build_target(const struct target *t, const struct exchange *x)
{
	size_t plen = strlen(x->path), qlen = x->query ? strlen(x->query) : 0;
	size_t prefix_len = strlen(t->prefix);
	char *target = malloc(prefix_len + 3 * (plen + qlen) + 2);
	char *p = target;

	if (!target)
		return NULL;
	memcpy(p, t->prefix, prefix_len);
	p += prefix_len;
	p = append_target(p, x->path, plen);
	if (x->query) {
		*p++ = '?';
		p = append_target(p, x->query, qlen);
	}
	*p = '\0';
	return target;
}

static bool safe_value(const char *s)
{
	return !strpbrk(s, "\r\n");
}

static int slist_push(struct curl_slist **list, const char *line)
{
	struct curl_slist *n = curl_slist_append(*list, line);

	if (!n)
		return -1;
	*list = n;
	return 0;
}

static int slist_add(struct curl_slist **list, const char *name, const char *value)
{
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

static bool skip_request_header(const struct replay *r, const struct header_list *h, const char *name)
{
	return http_header_is_hop_by_hop(h, name) || strcmp(name, "content-length") == 0 ||
	       strcmp(name, "expect") == 0 || strcmp(name, "host") == 0 ||
	       (r->marker && strcasecmp(name, r->marker) == 0);
}

static struct curl_slist *build_headers(const struct replay *r, enum replay_role role, const struct exchange *x)
{
	const struct header_list *h = &x->req_headers;
	struct curl_slist *list = NULL;
	const char *host = http_headers_get(h, "host");

	if (r->preserve_host && host && safe_value(host) && slist_add(&list, "Host", host) < 0)
		goto fail;
	for (size_t i = 0; i < h->count; i++) {
		const struct header *hd = &h->items[i];

		if (skip_request_header(r, h, hd->name))
			continue;
		/* a header curl could not put on one line is dropped, never split */
		if (!is_token(hd->name) || !safe_value(hd->value))
			continue;
		if (slist_add(&list, hd->name, hd->value) < 0)
			goto fail;
	}
	if (r->marker && slist_add(&list, r->marker, role_values[role]) < 0)
		goto fail;
	/* "Name:" suppresses curl's own defaults (Expect: 100-continue,
	 * "Accept: any", a form Content-Type) so the candidate sees the client's
	 * headers only. */
	if (slist_push(&list, "Expect:") < 0 ||
	    (!http_headers_get(h, "accept") && slist_push(&list, "Accept:") < 0) ||
	    (!http_headers_get(h, "content-type") && slist_push(&list, "Content-Type:") < 0))
		goto fail;
	return list;
fail:
	curl_slist_free_all(list);
	return NULL;
}

static bool method_ok(const char *m)
{
	return m && is_token(m);
}

static int set_options(struct replay *r, struct replay_xfer *xf, const struct exchange *x, const char *target)
{
	CURL *e = xf->easy;
	bool has_body = x->req_body_len > 0 || http_headers_get(&x->req_headers, "content-length") ||
			http_headers_get(&x->req_headers, "transfer-encoding");
	int bad = 0;

	bad |= curl_easy_setopt(e, CURLOPT_PRIVATE, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_URL, r->targets[xf->role].url) != CURLE_OK;
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
	bad |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, r->timeout_ms) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, r->insecure ? 0L : 1L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, r->insecure ? 0L : 2L) != CURLE_OK;
	if (r->ca_file)
		bad |= curl_easy_setopt(e, CURLOPT_CAINFO, r->ca_file) != CURLE_OK;
	/* bodies are compared as sent; compare decodes gzip/deflate itself */
	bad |= curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, xf->errbuf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HEADERDATA, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_WRITEDATA, xf) != CURLE_OK;
	bad |= curl_easy_setopt(e, CURLOPT_HTTPHEADER, xf->headers) != CURLE_OK;

	if (strcmp(x->method, "HEAD") == 0) {
		bad |= curl_easy_setopt(e, CURLOPT_NOBODY, 1L) != CURLE_OK;
	} else if (has_body) {
		/* POSTFIELDS with a NULL pointer would read from stdin */
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDS, xf->body ? (char *)xf->body : "") != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)x->req_body_len) != CURLE_OK;
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method) != CURLE_OK;
	} else if (strcmp(x->method, "GET") != 0) {
		bad |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method) != CURLE_OK;
	}
	return bad ? -1 : 0;
}

/* ---- the native engine ------------------------------------------------------ */

static bool forwarded_header(const struct replay *r, const struct header_list *h, const struct header *hd)
{
	/* a header that could not go on one line is dropped, never split */
	return !skip_request_header(r, h, hd->name) && is_token(hd->name) && safe_value(hd->value);
}

static char *put(char *p, const char *s, size_t len)
{
	memcpy(p, s, len);
	return p + len;
}

static char *put_header(char *p, const char *name, const char *value)
{
	p = put(p, name, strlen(name));
	/* an empty value goes as "name:", as curl sends it */
	if (*value) {
		p = put(p, ": ", 2);
		p = put(p, value, strlen(value));
	} else {
		*p++ = ':';
	}
	return put(p, "\r\n", 2);
}

/* The request head the curl engine would send, built in one buffer: request
 * line, Host, the client's end-to-end headers in order, the marker, and
 * Content-Length when there is a body (or the method defines one). */
static char *build_head(const struct replay *r, enum replay_role role, const struct exchange *x,
			bool send_length, size_t *len)
{
	const struct target *t = &r->targets[role];
	const struct header_list *h = &x->req_headers;
	const char *host = http_headers_get(h, "host");
	size_t plen = strlen(x->path), qlen = x->query ? strlen(x->query) : 0;
	size_t cap, prefix_len = strlen(t->prefix);
	char *head, *p;

	if (!(r->preserve_host && host && safe_value(host)))
		host = t->host;
	cap = strlen(x->method) + 1 + prefix_len + 3 * (plen + qlen) + 2 + sizeof(" HTTP/1.1\r\n") +
	      sizeof("Host: \r\n") + strlen(host) + sizeof("Content-Length: 18446744073709551615\r\n") + 2;
	for (size_t i = 0; i < h->count; i++)
		cap += strlen(h->items[i].name) + strlen(h->items[i].value) + 4;
	if (r->marker)
		cap += strlen(r->marker) + strlen(role_values[role]) + 4;
	head = malloc(cap);
	if (!head)
		return NULL;
	p = put(head, x->method, strlen(x->method));
	*p++ = ' ';
	p = put(p, t->prefix, prefix_len);
	p = append_target(p, x->path, plen);
	if (x->query) {
		*p++ = '?';
		p = append_target(p, x->query, qlen);
	}
	p = put(p, " HTTP/1.1\r\n", 11);
	p = put_header(p, "Host", host);
	for (size_t i = 0; i < h->count; i++)
		if (forwarded_header(r, h, &h->items[i]))
			p = put_header(p, h->items[i].name, h->items[i].value);
	if (r->marker)
		p = put_header(p, r->marker, role_values[role]);
	if (send_length)
		p += sprintf(p, "Content-Length: %zu\r\n", x->req_body_len);
	p = put(p, "\r\n", 2);
	*len = (size_t)(p - head);
	return head;
}

static bool method_is(const char *m, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(m, *list) == 0)
			return true;
	return false;
}

static void native_done(void *arg, struct http_response *resp)
{
	struct replay_xfer *xf = arg;
	struct replay *r = xf->r;
	replay_done_fn done = xf->done;
	void *done_arg = xf->arg;
	enum replay_role role = xf->role;

	xf->h1 = NULL;
	resp->latency_ms = (ev_time() - xf->t_start) * 1000.0;
	if (resp->error[0])
		stats_candidate_error(role, resp->error);
	xfer_release(r, xf);
	done(done_arg, role, resp);
}

static int native_start(struct replay *r, struct replay_xfer *xf, const struct exchange *x)
{
	static const char *const with_body[] = { "POST", "PUT", "PATCH", NULL };
	static const char *const idempotent[] = { "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE", NULL };
	bool is_head = strcmp(x->method, "HEAD") == 0;
	bool send_body = !is_head && (x->req_body_len > 0 || http_headers_get(&x->req_headers, "content-length") ||
				      http_headers_get(&x->req_headers, "transfer-encoding") ||
				      method_is(x->method, with_body));
	unsigned flags = (is_head ? H1_HEAD : 0) | (method_is(x->method, idempotent) ? H1_IDEMPOTENT : 0);
	uint8_t *body = NULL;
	size_t head_len;
	char *head;

	if (send_body && x->req_body_len > 0) {
		body = malloc(x->req_body_len);
		if (!body)
			return -1;
		memcpy(body, x->req_body, x->req_body_len);
	}
	head = build_head(r, xf->role, x, send_body, &head_len);
	if (!head) {
		free(body);
		return -1;
	}
	xf->t_start = ev_time();
	/* h1_start owns head and body from here, and never calls back inside */
	xf->h1 = h1_start(r->targets[xf->role].h1, head, head_len, body, send_body ? x->req_body_len : 0,
			  flags, xf->t_start, native_done, xf);
	return xf->h1 ? 0 : -1;
}

int replay_start(struct replay *r, enum replay_role role, const struct exchange *x,
		 replay_done_fn done, void *arg, struct replay_xfer **xfer)
{
	struct replay_xfer *xf;
	char *target = NULL;

	if ((unsigned)role >= ROLE_COUNT || !r->have[role] || !done)
		return -2;
	if (r->inflight >= r->max_concurrent)
		return -1;
	/* The path is appended to the fixed base: anything but an origin-form
	 * path ("*", "http://elsewhere/") is refused. */
	if (!x->path || x->path[0] != '/' || !method_ok(x->method))
		return -2;

	xf = calloc(1, sizeof(*xf));
	if (!xf)
		return -2;
	xf->r = r;
	xf->role = role;
	xf->done = done;
	xf->arg = arg;
	if (r->targets[role].h1) {
		if (native_start(r, xf, x) < 0) {
			free(xf);
			return -2;
		}
		goto started;
	}
	if (x->req_body_len > 0) {
		xf->body = malloc(x->req_body_len);
		if (!xf->body)
			goto fail;
		memcpy(xf->body, x->req_body, x->req_body_len);
	}
	xf->headers = build_headers(r, role, x);
	target = build_target(&r->targets[role], x);
	xf->easy = pool_get(r);
	if (!xf->headers || !target || !xf->easy || set_options(r, xf, x, target) < 0)
		goto fail;
	/* curl copied the target string in setopt */
	free(target);
	target = NULL;
	xf->t_start = ev_time();
	if (curl_multi_add_handle(r->multi, xf->easy) != CURLM_OK)
		goto fail;

started:
	xf->next = r->xfers;
	if (r->xfers)
		r->xfers->prev = xf;
	r->xfers = xf;
	r->inflight++;
	if (r->inflight > r->peak)
		r->peak = r->inflight;
	stats.replays_inflight++;
	stats.replays_started[role]++;
	*xfer = xf;
	return 0;
fail:
	free(target);
	if (xf->easy)
		pool_put(r, xf->easy);
	curl_slist_free_all(xf->headers);
	free(xf->body);
	free(xf);
	return -2;
}

void replay_cancel(struct replay *r, struct replay_xfer *xfer)
{
	if (xfer)
		xfer_release(r, xfer);
}

unsigned replay_inflight(const struct replay *r)
{
	return r->inflight;
}

bool replay_has_secondary(const struct replay *r)
{
	return r->have[ROLE_SECONDARY];
}

static long seconds_to_ms(double s)
{
	double ms = s * 1000.0;

	/* 0 would mean "no limit" to curl */
	if (ms < 1.0)
		return 1;
	if (ms > 86400000.0)
		return 86400000;
	return (long)ms;
}

struct replay *replay_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen)
{
	struct replay *r;
	const char *marker = cfg->marker_header ? cfg->marker_header : "X-Miffy-Role";
	long host_conns = cfg->max_host_connections ? (long)cfg->max_host_connections : 64;
	const char *engine = cfg->replay_engine ? cfg->replay_engine : "auto";
	struct h1_limits lim = {
		.connect_timeout = seconds_to_ms(cfg->connect_timeout) / 1000.0,
		.timeout = seconds_to_ms(cfg->timeout) / 1000.0,
		.max_body = cfg->max_body,
		.max_conns = (unsigned)host_conns,
	};
	const struct h1_limits *native = strcmp(engine, "auto") == 0 ? &lim : NULL;

	if (!cfg->candidate || !*cfg->candidate) {
		snprintf(err, errlen, "no candidate URL");
		return NULL;
	}
	if (strcmp(engine, "auto") != 0 && strcmp(engine, "curl") != 0) {
		snprintf(err, errlen, "replay_engine \"%s\" is not \"auto\" or \"curl\"", engine);
		return NULL;
	}
	if (*marker && !is_token(marker)) {
		snprintf(err, errlen, "marker header \"%s\" is not a valid header name", marker);
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		snprintf(err, errlen, "libcurl initialisation failed");
		return NULL;
	}
	r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, errlen, "out of memory");
		goto fail_global;
	}
	r->loop = loop;
	if (target_init(&r->targets[ROLE_CANDIDATE], "candidate", cfg->candidate, loop, native, err, errlen) < 0)
		goto fail_r;
	r->have[ROLE_CANDIDATE] = true;
	if (cfg->secondary && *cfg->secondary) {
		if (target_init(&r->targets[ROLE_SECONDARY], "secondary", cfg->secondary, loop, native, err, errlen) < 0)
			goto fail_targets;
		r->have[ROLE_SECONDARY] = true;
	}
	if ((*marker && !(r->marker = strdup(marker))) || (cfg->ca_file && !(r->ca_file = strdup(cfg->ca_file)))) {
		snprintf(err, errlen, "out of memory");
		goto fail_strings;
	}
	r->insecure = cfg->insecure;
	r->preserve_host = cfg->preserve_host;
	r->connect_timeout_ms = seconds_to_ms(cfg->connect_timeout);
	r->timeout_ms = seconds_to_ms(cfg->timeout);
	r->max_concurrent = cfg->max_concurrent;
	r->max_body = cfg->max_body;

	r->multi = curl_multi_init();
	if (!r->multi) {
		snprintf(err, errlen, "curl_multi_init failed");
		goto fail_strings;
	}
	ev_init(&r->timer, on_timer);
	r->timer.data = r;
	if (curl_multi_setopt(r->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) != CURLM_OK ||
	    curl_multi_setopt(r->multi, CURLMOPT_SOCKETDATA, r) != CURLM_OK ||
	    curl_multi_setopt(r->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) != CURLM_OK ||
	    curl_multi_setopt(r->multi, CURLMOPT_TIMERDATA, r) != CURLM_OK ||
	    curl_multi_setopt(r->multi, CURLMOPT_MAX_HOST_CONNECTIONS, host_conns) != CURLM_OK ||
	    /* idle connections kept for reuse, for both targets */
	    curl_multi_setopt(r->multi, CURLMOPT_MAXCONNECTS, host_conns * ROLE_COUNT) != CURLM_OK) {
		snprintf(err, errlen, "libcurl multi options refused");
		goto fail_multi;
	}
	return r;

fail_multi:
	curl_multi_cleanup(r->multi);
fail_strings:
	free(r->ca_file);
	free(r->marker);
fail_targets:
	target_clear(&r->targets[ROLE_SECONDARY]);
	target_clear(&r->targets[ROLE_CANDIDATE]);
fail_r:
	free(r);
fail_global:
	curl_global_cleanup();
	return NULL;
}

void replay_free(struct replay *r)
{
	if (!r)
		return;
	while (r->xfers)
		xfer_release(r, r->xfers);
	/* cleanup closes the cached connections, calling on_curl_socket */
	curl_multi_cleanup(r->multi);
	while (r->socks)
		sock_free(r, r->socks);
	ev_timer_stop(r->loop, &r->timer);
	while (r->pool_count > 0)
		curl_easy_cleanup(r->pool[--r->pool_count]);
	for (int i = 0; i < ROLE_COUNT; i++)
		target_clear(&r->targets[i]);
	free(r->ca_file);
	free(r->marker);
	free(r);
	curl_global_cleanup();
}
