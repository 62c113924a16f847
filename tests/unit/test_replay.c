/* replay: real transfers on a real libev loop, against tiny HTTP servers that
 * run on the same loop. Every test runs with both engines: the native
 * HTTP/1.1 client ("auto" picks it for http://127.0.0.1) and libcurl. */
#include <errno.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <ev.h>

#include "config.h"
#include "http.h"
#include "replay.h"
#include "names.h"
#include "request.h"
#include "stats.h"

/* ---- an HTTP server on the test's loop ----------------------------------- */

enum srv_mode {
	SRV_RESPOND = 0,   /* answer each complete request with srv->response */
	SRV_SILENT,        /* read, never answer */
	SRV_GARBAGE,       /* answer srv->response to the first bytes, close */
	SRV_RESET,         /* on a complete request: RST */
	SRV_CLOSE,         /* on a complete request: FIN without an answer */
	SRV_TRICKLE,       /* like RESPOND, one byte per write */
	SRV_ONE_SHOT,      /* like RESPOND, then close once the answer is out */
	SRV_MODE_COUNT
};

#define SRV_IN_MAX (256 * 1024)

struct server;

struct srv_conn {
	ev_io rio;
	ev_io wio;
	struct server *srv;
	int fd;
	char *in;
	size_t in_len;
	size_t out_off;
	bool writing;
	struct srv_conn *next;
};

struct server {
	struct ev_loop *loop;
	int lfd;
	int port;
	ev_io accept_io;
	enum srv_mode mode;
	const char *response;
	size_t response_len;
	char *last;                  /* last complete request, head + body */
	size_t last_len;
	unsigned accepted;
	unsigned requests;
	struct srv_conn *conns;
};

static void conn_close(struct srv_conn *c, bool reset)
{
	struct server *srv = c->srv;
	struct srv_conn **pp;

	if (reset) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };

		assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
	}
	ev_io_stop(srv->loop, &c->rio);
	ev_io_stop(srv->loop, &c->wio);
	close(c->fd);
	for (pp = &srv->conns; *pp != c; pp = &(*pp)->next)
		;
	*pp = c->next;
	free(c->in);
	free(c);
}

static void conn_on_write(struct ev_loop *loop, ev_io *w, int revents)
{
	struct srv_conn *c = w->data;
	struct server *srv = c->srv;
	size_t len = srv->response_len - c->out_off;
	ssize_t n = send(c->fd, srv->response + c->out_off, srv->mode == SRV_TRICKLE && len > 1 ? 1 : len,
			 MSG_NOSIGNAL);

	if (n < 0) {
		if (errno != EAGAIN)
			conn_close(c, false);
		return;
	}
	c->out_off += (size_t)n;
	if (c->out_off == srv->response_len) {
		ev_io_stop(loop, &c->wio);
		c->writing = false;
		if (srv->mode == SRV_ONE_SHOT)
			conn_close(c, false);
	}
}

static void conn_respond(struct srv_conn *c)
{
	c->out_off = 0;
	c->writing = true;
	ev_io_start(c->srv->loop, &c->wio);
}

/* Length of the first complete request in c->in, or 0. */
static size_t request_length(const struct srv_conn *c)
{
	const char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
	size_t head, body = 0;

	if (!end)
		return 0;
	head = (size_t)(end - c->in) + 4;
	for (const char *p = c->in; p < end; p++) {
		if ((p == c->in || p[-1] == '\n') && strncasecmp(p, "content-length:", 15) == 0)
			body = strtoul(p + 15, NULL, 10);
	}
	return c->in_len >= head + body ? head + body : 0;
}

static void conn_on_read(struct ev_loop *loop, ev_io *w, int revents)
{
	struct srv_conn *c = w->data;
	struct server *srv = c->srv;
	ssize_t n;
	size_t len;

	if (c->in_len == SRV_IN_MAX) {
		conn_close(c, false);
		return;
	}
	n = recv(c->fd, c->in + c->in_len, SRV_IN_MAX - c->in_len, 0);
	if (n <= 0) {
		if (n == 0 || errno != EAGAIN)
			conn_close(c, false);
		return;
	}
	c->in_len += (size_t)n;
	if (srv->mode == SRV_GARBAGE) {
		ssize_t sent = send(c->fd, srv->response, srv->response_len, MSG_NOSIGNAL);

		assert_true(sent == (ssize_t)srv->response_len);
		conn_close(c, false);
		return;
	}
	while (!c->writing && (len = request_length(c)) > 0) {
		free(srv->last);
		srv->last = malloc(len + 1);
		assert_non_null(srv->last);
		memcpy(srv->last, c->in, len);
		srv->last[len] = '\0';
		srv->last_len = len;
		srv->requests++;
		memmove(c->in, c->in + len, c->in_len - len);
		c->in_len -= len;
		switch (srv->mode) {
		case SRV_RESPOND:
		case SRV_TRICKLE:
		case SRV_ONE_SHOT:
			conn_respond(c);
			break;
		case SRV_RESET:
			conn_close(c, true);
			return;
		case SRV_CLOSE:
			conn_close(c, false);
			return;
		default:
			break;
		}
	}
}

static void srv_on_accept(struct ev_loop *loop, ev_io *w, int revents)
{
	struct server *srv = w->data;
	struct srv_conn *c;
	int fd = accept4(srv->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	c = calloc(1, sizeof(*c));
	assert_non_null(c);
	c->in = malloc(SRV_IN_MAX);
	assert_non_null(c->in);
	c->srv = srv;
	c->fd = fd;
	ev_io_init(&c->rio, conn_on_read, fd, EV_READ);
	ev_io_init(&c->wio, conn_on_write, fd, EV_WRITE);
	c->rio.data = c;
	c->wio.data = c;
	ev_io_start(loop, &c->rio);
	c->next = srv->conns;
	srv->conns = c;
	srv->accepted++;
}

/* A bound loopback socket on a free port; listening when listen_too. */
static int bind_loopback(int *port, bool listen_too)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	if (listen_too)
		assert_int_equal(listen(fd, 128), 0);
	*port = ntohs(sa.sin_port);
	return fd;
}

static void server_start(struct server *srv, struct ev_loop *loop, enum srv_mode mode, const char *response)
{
	memset(srv, 0, sizeof(*srv));
	srv->loop = loop;
	srv->mode = mode;
	srv->response = response;
	srv->response_len = response ? strlen(response) : 0;
	srv->lfd = bind_loopback(&srv->port, true);
	ev_io_init(&srv->accept_io, srv_on_accept, srv->lfd, EV_READ);
	srv->accept_io.data = srv;
	ev_io_start(loop, &srv->accept_io);
}

static void server_stop(struct server *srv)
{
	while (srv->conns)
		conn_close(srv->conns, false);
	ev_io_stop(srv->loop, &srv->accept_io);
	close(srv->lfd);
	free(srv->last);
	srv->last = NULL;
}

/* The value of the request header name in srv->last (case-insensitive), or
 * NULL; *count gets how many times it appears. */
static const char *req_header(const struct server *srv, const char *name, int *count)
{
	static char value[4096];
	const char *p = strstr(srv->last, "\r\n");
	const char *found = NULL;
	size_t nlen = strlen(name);
	int n = 0;

	while (p && p[2] != '\r') {
		const char *line = p + 2, *eol = strstr(line, "\r\n");

		if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
			const char *v = line + nlen + 1;

			while (*v == ' ')
				v++;
			if (!found) {
				snprintf(value, sizeof(value), "%.*s", (int)(eol - v), v);
				found = value;
			}
			n++;
		}
		p = eol;
	}
	if (count)
		*count = n;
	return found;
}

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static const char *req_body(const struct server *srv)
{
	return strstr(srv->last, "\r\n\r\n") + 4;
}

/* ---- fixture ------------------------------------------------------------- */

struct result {
	int calls;
	enum replay_role role;
	struct http_response resp;
};

struct fixture {
	struct ev_loop *loop;
	struct config cfg;
	struct server srv;
	bool have_srv;
	struct replay *replay;
	struct {                     /* the client's request, as an exchange holds it */
		char *method, *path, *query;
		struct header_list req_headers;
		uint8_t *req_body;
		size_t req_body_len;
	} x;
	char url[128];
	char url2[128];
	char err[256];
	unsigned pending;            /* callbacks awaited before ev_break */
	struct result res[8];
	ev_timer guard;
	bool guard_fired;
	char *owned;                 /* a big canned response */
};

static struct fixture *current;

/* The engine of the group being run: NULL is the default ("auto"). */
static char *engine;
static char candidate_name[] = "candidate";
static char engine_curl[] = "curl";

static void on_done(void *arg, enum replay_role role, unsigned candidate, struct http_response *resp)
{
	struct result *res = arg;
	(void)candidate;

	res->calls++;
	res->role = role;
	http_response_clear(&res->resp);
	res->resp = *resp;
	memset(resp, 0, sizeof(*resp));
	if (current->pending > 0 && --current->pending == 0)
		ev_break(current->loop, EVBREAK_ONE);
}

static void on_guard(struct ev_loop *loop, ev_timer *w, int revents)
{
	current->guard_fired = true;
	ev_break(loop, EVBREAK_ONE);
}

/* Runs the loop until `pending` callbacks came or `seconds` passed. */
static void run_for(struct fixture *f, double seconds)
{
	f->guard_fired = false;
	ev_timer_set(&f->guard, seconds, 0.);
	ev_timer_start(f->loop, &f->guard);
	ev_run(f->loop, 0);
	ev_timer_stop(f->loop, &f->guard);
}

static void wait_results(struct fixture *f, unsigned n)
{
	f->pending = n;
	run_for(f, 10.0);
	assert_false(f->guard_fired);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->loop = ev_loop_new(EVFLAG_AUTO);
	if (!f->loop)
		return -1;
	ev_init(&f->guard, on_guard);
	f->cfg.cands[0] = (struct candidate_target){ .name = candidate_name, .url = f->url };
	f->cfg.ncandidates = 1;
	f->cfg.connect_timeout = 1.0;
	f->cfg.timeout = 2.0;
	f->cfg.max_concurrent = 16;
	f->cfg.max_body = 1024 * 1024;
	f->cfg.max_host_connections = 8;
	f->cfg.replay_engine = engine;
	f->x.method = strdup("GET");
	f->x.path = strdup("/");
	stats_reset();
	current = f;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	replay_free(f->replay);
	if (f->have_srv)
		server_stop(&f->srv);
	for (size_t i = 0; i < sizeof(f->res) / sizeof(f->res[0]); i++)
		http_response_clear(&f->res[i].resp);
	free(f->x.method);
	free(f->x.path);
	free(f->x.query);
	free(f->x.req_body);
	http_headers_clear(&f->x.req_headers);
	ev_loop_destroy(f->loop);
	free(f->owned);
	free(f);
	current = NULL;
	return 0;
}

static void serve(struct fixture *f, enum srv_mode mode, const char *response, const char *base_path)
{
	server_start(&f->srv, f->loop, mode, response);
	f->have_srv = true;
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d%s", f->srv.port, base_path);
}

static void make_replay(struct fixture *f)
{
	f->replay = replay_new(f->loop, &f->cfg, f->err, sizeof(f->err));
	assert_non_null(f->replay);
}

static void set_request(struct fixture *f, const char *method, const char *path, const char *query,
			const char *body)
{
	free(f->x.method);
	free(f->x.path);
	free(f->x.query);
	free(f->x.req_body);
	f->x.method = strdup(method);
	f->x.path = strdup(path);
	f->x.query = query ? strdup(query) : NULL;
	f->x.req_body = body ? (uint8_t *)strdup(body) : NULL;
	f->x.req_body_len = body ? strlen(body) : 0;
}

static void add_header(struct fixture *f, const char *name, const char *value)
{
	assert_int_equal(http_headers_add(&f->x.req_headers, name, strlen(name), value, strlen(value)), 0);
}

/* Builds the request from f->x as exchange.c does (NULL when refused) and
 * starts it. */
static int try_start(struct fixture *f, enum replay_role role, replay_done_fn done, struct result *res,
		     struct replay_xfer **xfer)
{
	struct replay_request rq;
	int built = request_build(&rq, replay_rules(f->replay), f->x.method, f->x.path, f->x.query,
				  &f->x.req_headers, f->x.req_body, f->x.req_body_len);
	int rc = replay_start(f->replay, role, 0, built == 0 ? &rq : NULL, done, res, xfer);

	if (built == 0)
		request_clear(&rq);
	return rc;
}

static void start(struct fixture *f, enum replay_role role, struct result *res)
{
	struct replay_xfer *xfer = NULL;

	assert_int_equal(try_start(f, role, on_done, res, &xfer), 0);
	assert_non_null(xfer);
}

static void replay_once(struct fixture *f)
{
	int before = f->res[0].calls;

	start(f, ROLE_CANDIDATE, &f->res[0]);
	wait_results(f, 1);
	assert_int_equal(f->res[0].calls, before + 1);
}

static const char OK_RESPONSE[] = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Answer: Yes\r\n"
				  "Content-Type: text/plain\r\n\r\nhello";

/* ---- the shadow request ---------------------------------------------------- */

static void test_request_carries_method_path_query_headers_and_body(void **state)
{
	struct fixture *f = *state;
	const char *v;
	int n;

	serve(f, SRV_RESPOND, OK_RESPONSE, "/prefix/");
	make_replay(f);
	set_request(f, "PUT", "/api/items/7", "a=1&b=two%20x", "{\"x\":1}");
	add_header(f, "host", "shop.example.com");
	add_header(f, "content-type", "application/json");
	add_header(f, "x-trace", "abc");
	add_header(f, "x-trace", "def");
	add_header(f, "authorization", "Bearer t");
	add_header(f, "content-length", "7");
	replay_once(f);

	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_true(starts_with(f->srv.last, "PUT /prefix/api/items/7?a=1&b=two%20x HTTP/1.1\r\n"));
	assert_string_equal(req_header(&f->srv, "content-type", &n), "application/json");
	assert_int_equal(n, 1);
	assert_string_equal(req_header(&f->srv, "x-trace", &n), "abc");
	assert_int_equal(n, 2);
	assert_string_equal(req_header(&f->srv, "authorization", NULL), "Bearer t");
	assert_string_equal(req_header(&f->srv, "content-length", &n), "7");
	assert_int_equal(n, 1);
	assert_string_equal(req_body(&f->srv), "{\"x\":1}");
	v = req_header(&f->srv, "x-miffy-role", &n);
	assert_string_equal(v, "candidate");
	assert_int_equal(n, 1);
}

static void test_curl_adds_no_headers_of_its_own(void **state)
{
	struct fixture *f = *state;
	char host[64];
	int lines = 0;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	set_request(f, "POST", "/form", NULL, "a=b");
	add_header(f, "x-only", "1");
	replay_once(f);

	/* request line, host, x-only, marker, content-length */
	for (const char *p = f->srv.last; (p = strstr(p, "\r\n")) && p[2] != '\r'; p += 2)
		lines++;
	assert_int_equal(lines, 4);
	snprintf(host, sizeof(host), "127.0.0.1:%d", f->srv.port);
	assert_string_equal(req_header(&f->srv, "host", NULL), host);
	assert_null(req_header(&f->srv, "accept", NULL));
	assert_null(req_header(&f->srv, "content-type", NULL));
	assert_null(req_header(&f->srv, "expect", NULL));
	assert_null(req_header(&f->srv, "user-agent", NULL));
	assert_string_equal(req_header(&f->srv, "content-length", NULL), "3");
}

static void test_hop_by_hop_headers_are_stripped(void **state)
{
	struct fixture *f = *state;
	static const char *const gone[] = {
		"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
		"transfer-encoding", "x-hop", "expect",
	};

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	set_request(f, "POST", "/upload", NULL, "0123456789");
	add_header(f, "connection", "keep-alive, X-Hop");
	add_header(f, "keep-alive", "timeout=5");
	add_header(f, "proxy-connection", "keep-alive");
	add_header(f, "te", "trailers");
	add_header(f, "trailer", "x-sum");
	add_header(f, "upgrade", "websocket");
	add_header(f, "transfer-encoding", "chunked");
	add_header(f, "x-hop", "1");
	add_header(f, "expect", "100-continue");
	add_header(f, "content-length", "999");
	add_header(f, "x-end-to-end", "kept");
	replay_once(f);

	for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++) {
		if (req_header(&f->srv, gone[i], NULL))
			fail_msg("%s was forwarded", gone[i]);
	}
	assert_string_equal(req_header(&f->srv, "content-length", NULL), "10");
	assert_string_equal(req_header(&f->srv, "x-end-to-end", NULL), "kept");
	assert_string_equal(req_body(&f->srv), "0123456789");
}

static void test_host_is_the_candidates_unless_preserve_host(void **state)
{
	struct fixture *f = *state;
	char host[64];
	int n;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	add_header(f, "host", "client.example");
	replay_once(f);
	snprintf(host, sizeof(host), "127.0.0.1:%d", f->srv.port);
	assert_string_equal(req_header(&f->srv, "host", &n), host);
	assert_int_equal(n, 1);

	replay_free(f->replay);
	f->cfg.preserve_host = true;
	make_replay(f);
	replay_once(f);
	assert_string_equal(req_header(&f->srv, "host", &n), "client.example");
	assert_int_equal(n, 1);
}

static char marker_name[] = "X-Shadow";

static void test_secondary_gets_its_marker_and_its_own_target(void **state)
{
	struct fixture *f = *state;
	struct server other;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	server_start(&other, f->loop, SRV_RESPOND, OK_RESPONSE);
	snprintf(f->url2, sizeof(f->url2), "http://127.0.0.1:%d/second", other.port);
	f->cfg.secondary = f->url2;
	f->cfg.marker_header = marker_name;
	make_replay(f);
	assert_true(replay_has_secondary(f->replay));
	add_header(f, "x-shadow", "spoofed by the client");
	start(f, ROLE_SECONDARY, &f->res[0]);
	wait_results(f, 1);

	assert_int_equal(f->res[0].role, ROLE_SECONDARY);
	assert_int_equal(f->srv.requests, 0);
	assert_int_equal(other.requests, 1);
	assert_true(starts_with(other.last, "GET /second/ HTTP/1.1\r\n"));
	{
		int n;

		assert_string_equal(req_header(&other, "x-shadow", &n), "secondary");
		assert_int_equal(n, 1);
		assert_null(req_header(&other, "x-miffy-role", NULL));
	}
	assert_int_equal(stats.replays_started[ROLE_SECONDARY], 1);
	assert_int_equal(stats.replays_started[ROLE_CANDIDATE], 0);
	server_stop(&other);
}

static void test_secondary_is_refused_when_not_configured(void **state)
{
	struct fixture *f = *state;
	struct replay_xfer *xfer = NULL;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	assert_false(replay_has_secondary(f->replay));
	assert_int_equal(try_start(f, ROLE_SECONDARY, on_done, &f->res[0], &xfer), -2);
}

static void test_head_request_reads_no_body(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", "");
	make_replay(f);
	set_request(f, "HEAD", "/h", NULL, NULL);
	replay_once(f);
	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_int_equal(f->res[0].resp.body_len, 0);
	assert_true(starts_with(f->srv.last, "HEAD /h HTTP/1.1\r\n"));
}

static void test_get_without_body_sends_no_content_length(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	set_request(f, "DELETE", "/x", NULL, NULL);
	replay_once(f);
	assert_true(starts_with(f->srv.last, "DELETE /x HTTP/1.1\r\n"));
	assert_null(req_header(&f->srv, "content-length", NULL));
}

static void test_empty_header_value_and_empty_query_are_kept(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	set_request(f, "GET", "/q", "", NULL);
	add_header(f, "x-empty", "");
	replay_once(f);
	assert_true(starts_with(f->srv.last, "GET /q? HTTP/1.1\r\n"));
	assert_string_equal(req_header(&f->srv, "x-empty", NULL), "");
}

static void test_header_with_line_break_is_dropped(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	add_header(f, "x-evil", "a\r\nx-injected: 1");
	add_header(f, "x-fine", "1");
	replay_once(f);
	/* the request went out, only without the header */
	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_true(starts_with(f->srv.last, "GET / HTTP/1.1\r\n"));
	assert_string_equal(req_header(&f->srv, "x-fine", NULL), "1");
	assert_null(req_header(&f->srv, "x-evil", NULL));
	assert_null(req_header(&f->srv, "x-injected", NULL));
}

static void test_path_not_in_origin_form_is_refused(void **state)
{
	struct fixture *f = *state;
	static const char *const paths[] = { "*", "http://elsewhere.example/", "", "@evil.example/" };
	struct replay_xfer *xfer = NULL;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		set_request(f, "GET", paths[i], NULL, NULL);
		assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done, &f->res[0], &xfer), -2);
	}
	set_request(f, "GE T", "/", NULL, NULL);
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done, &f->res[0], &xfer), -2);
	assert_int_equal(replay_inflight(f->replay), 0);
	assert_int_equal(stats.replays_inflight, 0);
}

static void test_path_cannot_change_the_target(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "/base");
	make_replay(f);
	set_request(f, "GET", "//evil.example:80/../x y#frag", "u=http://evil.example/#f", NULL);
	replay_once(f);
	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_int_equal(f->srv.requests, 1);
	/* byte for byte, except what would break the request line */
	assert_true(starts_with(f->srv.last, "GET /base//evil.example:80/../x%20y#frag?u=http://evil.example/#f HTTP/1.1\r\n"));
}

/* ---- the response ---------------------------------------------------------- */

static void test_response_status_headers_body_and_latency(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_RESPOND, "HTTP/1.1 201 Created\r\nContent-Length: 5\r\nX-Answer:  Yes \r\n"
	      "X-Folded: a\r\n  b\r\n\r\nhello", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 201);
	assert_int_equal(r->headers.count, 3);
	assert_string_equal(http_headers_get(&r->headers, "content-length"), "5");
	assert_string_equal(http_headers_get(&r->headers, "x-answer"), "Yes");
	assert_string_equal(http_headers_get(&r->headers, "x-folded"), "a b");
	assert_int_equal(r->body_len, 5);
	assert_memory_equal(r->body, "hello", 5);
	assert_false(r->truncated);
	assert_true(r->latency_ms > 0 && r->latency_ms < 2000);
	assert_int_equal(stats.replays_started[ROLE_CANDIDATE], 1);
	assert_int_equal(stats.replays_inflight, 0);
	assert_int_equal(replay_inflight(f->replay), 0);
}

static void test_interim_responses_headers_are_dropped(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_RESPOND, "HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
	      "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"
	      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Final: 1\r\n\r\n"
	      "2\r\nok\r\n0\r\nX-Trailer: t\r\n\r\n", "");
	make_replay(f);
	set_request(f, "POST", "/p", NULL, "body");
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->headers.count, 2);
	assert_string_equal(http_headers_get(&r->headers, "x-final"), "1");
	assert_null(http_headers_get(&r->headers, "x-early"));
	assert_null(http_headers_get(&r->headers, "link"));
	assert_null(http_headers_get(&r->headers, "x-trailer"));
	assert_int_equal(r->body_len, 2);
	assert_memory_equal(r->body, "ok", 2);
}

static void test_redirects_are_not_followed(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/x\r\nContent-Length: 0\r\n\r\n", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_int_equal(f->res[0].resp.status, 302);
	assert_int_equal(f->srv.requests, 1);
}

static char *big_response(struct fixture *f, size_t body_len)
{
	char *s = malloc(body_len + 128);
	int n;

	assert_non_null(s);
	n = sprintf(s, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body_len);
	for (size_t i = 0; i < body_len; i++)
		s[n + i] = (char)('a' + i % 26);
	s[n + body_len] = '\0';
	f->owned = s;
	return s;
}

static void test_body_over_max_body_is_truncated_and_connection_kept(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;
	char *resp = big_response(f, 200 * 1000);

	serve(f, SRV_RESPOND, resp, "");
	f->cfg.max_body = 1000;
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_true(r->truncated);
	assert_int_equal(r->body_len, 1000);
	assert_memory_equal(r->body, "abcdefghij", 10);

	/* the rest was drained: the next replay reuses the connection */
	replay_once(f);
	assert_int_equal(f->res[0].calls, 2);
	assert_true(f->res[0].resp.truncated);
	assert_int_equal(f->srv.requests, 2);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_huge_body_is_cut_short_but_still_a_response(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;
	char *resp = big_response(f, 8 * 1024 * 1024);

	serve(f, SRV_RESPOND, resp, "");
	f->cfg.max_body = 100;
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_true(r->truncated);
	assert_int_equal(r->body_len, 100);

}

static void test_body_exactly_max_body_is_not_truncated(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	f->cfg.max_body = 5;
	make_replay(f);
	replay_once(f);
	assert_false(f->res[0].resp.truncated);
	assert_int_equal(f->res[0].resp.body_len, 5);
}

/* ---- failures ------------------------------------------------------------ */

static void assert_error(const struct result *res, const char *reason)
{
	assert_int_equal(res->calls, 1);
	assert_string_equal(replay_error_name(res->resp.error), reason);
	assert_true(res->resp.error_detail[0] != '\0');
	assert_int_equal(res->resp.status, 0);
	assert_int_equal(res->resp.headers.count, 0);
	assert_null(res->resp.body);
}

static void test_connection_refused_is_connect(void **state)
{
	struct fixture *f = *state;
	int port, fd = bind_loopback(&port, false);

	close(fd);
	snprintf(f->url, sizeof(f->url), "http://127.0.0.1:%d", port);
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "connect");
}

static void test_silent_candidate_is_timeout(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_SILENT, NULL, "");
	f->cfg.timeout = 0.3;
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "timeout");
	assert_true(f->res[0].resp.latency_ms >= 290 && f->res[0].resp.latency_ms < 1500);
	assert_int_equal(replay_inflight(f->replay), 0);
}

static void test_garbage_reply_is_malformed(void **state)
{
	struct fixture *f = *state;
	static const char *const garbage[] = {
		"this is not http\r\n\r\n",
		"HTTP/1.1 abc\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		serve(f, SRV_GARBAGE, garbage[i], "");
		make_replay(f);
		replay_once(f);
		assert_error(&f->res[0], "malformed");
		f->res[0].calls = 0;
		replay_free(f->replay);
		f->replay = NULL;
		server_stop(&f->srv);
		f->have_srv = false;
	}
}

static void test_reset_is_reset(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESET, NULL, "");
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "reset");
}

static void test_close_without_answer_is_reset(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_CLOSE, NULL, "");
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "reset");
}

static void test_body_cut_by_close_is_reset(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_GARBAGE, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "");
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "reset");
}

static void test_https_to_plain_server_is_tls(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_GARBAGE, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n", "");
	snprintf(f->url, sizeof(f->url), "https://127.0.0.1:%d", f->srv.port);
	/* loading the CA bundle counts as connecting, and is slow under ASan */
	f->cfg.connect_timeout = 8.0;
	f->cfg.timeout = 8.0;
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "tls");
}

/* ---- limits, reuse, cancel ----------------------------------------------- */

static void test_concurrency_cap_returns_minus_one(void **state)
{
	struct fixture *f = *state;
	struct replay_xfer *xfer = NULL;

	serve(f, SRV_SILENT, NULL, "");
	f->cfg.max_concurrent = 2;
	f->cfg.timeout = 0.2;
	make_replay(f);
	start(f, ROLE_CANDIDATE, &f->res[0]);
	start(f, ROLE_CANDIDATE, &f->res[1]);
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done, &f->res[2], &xfer), -1);
	assert_int_equal(replay_inflight(f->replay), 2);
	assert_int_equal(stats.replays_inflight, 2);
	assert_int_equal(stats.replays_started[ROLE_CANDIDATE], 2);

	wait_results(f, 2);
	assert_int_equal(f->res[2].calls, 0);
	/* room again once they ended */
	start(f, ROLE_CANDIDATE, &f->res[2]);
	wait_results(f, 1);
	assert_string_equal(replay_error_name(f->res[2].resp.error), "timeout");
}

static void test_queued_transfers_time_out_on_the_same_clock(void **state)
{
	struct fixture *f = *state;
	ev_tstamp t0;

	serve(f, SRV_SILENT, NULL, "");
	f->cfg.max_host_connections = 1;
	f->cfg.timeout = 0.3;
	make_replay(f);
	t0 = ev_time();
	for (int i = 0; i < 3; i++)
		start(f, ROLE_CANDIDATE, &f->res[i]);
	wait_results(f, 3);
	/* waiting for a connection counts against the timeout */
	assert_true(ev_time() - t0 < 0.8);
	for (int i = 0; i < 3; i++)
		assert_string_equal(replay_error_name(f->res[i].resp.error), "timeout");
	/* one after the other they would have needed three connections */
	assert_true(f->srv.accepted <= 2);
}

static void test_keep_alive_reuses_connections(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	f->cfg.max_host_connections = 2;
	make_replay(f);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 8; i++)
			start(f, ROLE_CANDIDATE, &f->res[i]);
		wait_results(f, 8);
	}
	for (int i = 0; i < 8; i++) {
		assert_int_equal(f->res[i].calls, 5);
		assert_int_equal(f->res[i].resp.status, 200);
	}
	assert_int_equal(f->srv.requests, 40);
	assert_true(f->srv.accepted <= 2);
}

static void test_cancel_gives_no_callback(void **state)
{
	struct fixture *f = *state;
	struct replay_xfer *a = NULL, *b = NULL;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	/* one cancelled before it ever ran, one while waiting for the answer */
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done, &f->res[0], &a), 0);
	replay_cancel(f->replay, a);
	f->srv.mode = SRV_SILENT;
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done, &f->res[1], &b), 0);
	while (f->srv.requests == 0) {
		f->pending = 0;
		run_for(f, 0.01);
	}
	replay_cancel(f->replay, b);
	assert_int_equal(replay_inflight(f->replay), 0);
	assert_int_equal(stats.replays_inflight, 0);
	run_for(f, 0.3);
	assert_int_equal(f->res[0].calls, 0);
	assert_int_equal(f->res[1].calls, 0);

	/* the replayer still works afterwards */
	f->srv.mode = SRV_RESPOND;
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
}

static struct replay_xfer *pair[2];

/* Like an exchange ending: the first answer cancels its sibling. */
static void on_done_cancel_other(void *arg, enum replay_role role, unsigned candidate, struct http_response *resp)
{
	int me = arg == &current->res[0] ? 0 : 1;

	on_done(arg, role, candidate, resp);
	pair[me] = NULL;
	if (pair[!me]) {
		replay_cancel(current->replay, pair[!me]);
		pair[!me] = NULL;
		ev_break(current->loop, EVBREAK_ONE);
	}
}

static void test_cancel_from_a_callback_of_another_transfer(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done_cancel_other, &f->res[0], &pair[0]), 0);
	assert_int_equal(try_start(f, ROLE_CANDIDATE, on_done_cancel_other, &f->res[1], &pair[1]), 0);
	f->pending = 2;
	run_for(f, 2.0);
	run_for(f, 0.2);
	/* exactly one of them called back; the other was cancelled */
	assert_int_equal(f->res[0].calls + f->res[1].calls, 1);
	assert_int_equal(replay_inflight(f->replay), 0);
}

static void test_free_with_transfers_in_flight(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_SILENT, NULL, "");
	make_replay(f);
	for (int i = 0; i < 4; i++)
		start(f, ROLE_CANDIDATE, &f->res[i]);
	f->pending = 0;
	run_for(f, 0.1);
	replay_free(f->replay);
	f->replay = NULL;
	assert_int_equal(stats.replays_inflight, 0);
	run_for(f, 0.1);
	for (int i = 0; i < 4; i++)
		assert_int_equal(f->res[i].calls, 0);
}

static void test_request_data_is_copied(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	set_request(f, "POST", "/copy", "q=1", "payload");
	add_header(f, "x-h", "v");
	start(f, ROLE_CANDIDATE, &f->res[0]);
	/* the exchange goes away before the transfer runs */
	set_request(f, "GET", "/other", NULL, "XXXXXXX");
	http_headers_clear(&f->x.req_headers);
	wait_results(f, 1);
	assert_true(starts_with(f->srv.last, "POST /copy?q=1 HTTP/1.1\r\n"));
	assert_string_equal(req_header(&f->srv, "x-h", NULL), "v");
	assert_string_equal(req_body(&f->srv), "payload");
}

/* ---- response framing and connection reuse (both engines) ------------------ */

static void test_chunked_body_with_extensions_and_trailers(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_RESPOND, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	      "3;name=value\r\nabc\r\n2;x;y=\"q\"\r\nde\r\nA\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\n\r\n", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->body_len, 15);
	assert_memory_equal(r->body, "abcde0123456789", 15);
	assert_null(http_headers_get(&r->headers, "x-sum"));
	/* the whole message was consumed: the connection is reused */
	replay_once(f);
	assert_int_equal(f->res[0].resp.body_len, 15);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_response_split_byte_by_byte(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_TRICKLE, "HTTP/1.1 100 Continue\r\n\r\n"
	      "HTTP/1.1 200 OK\r\nX-A:  1 \r\nTransfer-Encoding: chunked\r\n\r\n"
	      "4;e=1\r\nwxyz\r\n1\r\n!\r\n0\r\n\r\n", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_string_equal(http_headers_get(&r->headers, "x-a"), "1");
	assert_int_equal(r->headers.count, 2);
	assert_int_equal(r->body_len, 5);
	assert_memory_equal(r->body, "wxyz!", 5);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_interim_response_then_200_with_length(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_RESPOND, "HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->headers.count, 1);
	assert_memory_equal(r->body, "ok", 2);
}

static void test_head_with_content_length_keeps_the_connection(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n", "");
	make_replay(f);
	set_request(f, "HEAD", "/h", NULL, NULL);
	for (int i = 0; i < 3; i++) {
		replay_once(f);
		assert_int_equal(f->res[0].resp.error, REPLAY_OK);
		assert_int_equal(f->res[0].resp.status, 200);
		assert_int_equal(f->res[0].resp.body_len, 0);
	}
	assert_int_equal(f->srv.requests, 3);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_no_content_length_and_204_304(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(f->res[0].resp.error, REPLAY_OK);
	assert_int_equal(f->res[0].resp.status, 204);
	assert_int_equal(f->res[0].resp.body_len, 0);
	f->srv.response = "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n";
	f->srv.response_len = strlen(f->srv.response);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 304);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_response_without_length_is_read_until_close(void **state)
{
	struct fixture *f = *state;
	struct http_response *r = &f->res[0].resp;

	serve(f, SRV_GARBAGE, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of it, until the close", "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(r->error, REPLAY_OK);
	assert_int_equal(r->status, 200);
	assert_int_equal(r->body_len, strlen("all of it, until the close"));
	assert_memory_equal(r->body, "all of it, until the close", r->body_len);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_int_equal(f->srv.accepted, 2);
}

static void test_connection_close_is_not_reused(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", "");
	make_replay(f);
	for (int i = 0; i < 3; i++) {
		replay_once(f);
		assert_int_equal(f->res[0].resp.status, 200);
	}
	assert_int_equal(f->srv.accepted, 3);
}

static void test_http10_without_keep_alive_is_not_reused(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", "");
	make_replay(f);
	replay_once(f);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_memory_equal(f->res[0].resp.body, "ok", 2);
	assert_int_equal(f->srv.accepted, 2);
}

static void test_sequential_replays_share_one_connection(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	for (int i = 0; i < 10; i++) {
		replay_once(f);
		assert_int_equal(f->res[0].resp.status, 200);
	}
	assert_int_equal(f->srv.requests, 10);
	assert_int_equal(f->srv.accepted, 1);
}

static void test_connection_closed_while_idle_is_retried_on_a_new_one(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_ONE_SHOT, OK_RESPONSE, "");
	make_replay(f);
	for (int i = 0; i < 3; i++) {
		replay_once(f);
		assert_int_equal(f->res[0].resp.error, REPLAY_OK);
		assert_int_equal(f->res[0].resp.status, 200);
	}
	assert_int_equal(f->srv.requests, 3);
	assert_int_equal(f->srv.accepted, 3);
}

static void test_post_gets_a_content_length_even_when_empty(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	make_replay(f);
	/* no body and no Content-Length from the client: both engines still
	 * send "Content-Length: 0", as RFC 9110 8.6 asks of a POST */
	set_request(f, "POST", "/e", NULL, NULL);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
	assert_true(starts_with(f->srv.last, "POST /e HTTP/1.1\r\n"));
	assert_string_equal(req_header(&f->srv, "content-length", NULL), "0");
	assert_null(req_header(&f->srv, "transfer-encoding", NULL));
}

/* ---- native engine only ------------------------------------------------------ */

static void test_header_block_over_64k_is_malformed(void **state)
{
	struct fixture *f = *state;
	size_t cap = 80 * 1024, n = 0;
	char *resp = malloc(cap);

	assert_non_null(resp);
	f->owned = resp;
	n += (size_t)sprintf(resp, "HTTP/1.1 200 OK\r\n");
	for (int i = 0; n < 66 * 1024; i++)
		n += (size_t)sprintf(resp + n, "X-Pad-%d: %0900d\r\n", i, 0);
	sprintf(resp + n, "Content-Length: 0\r\n\r\n");
	serve(f, SRV_RESPOND, resp, "");
	make_replay(f);
	replay_once(f);
	assert_error(&f->res[0], "malformed");
}

static void test_bad_framing_is_malformed(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"HTTP/1.1 200 OK\r\nContent-Length: 5x\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nokXX",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		serve(f, SRV_GARBAGE, bad[i], "");
		make_replay(f);
		replay_once(f);
		assert_error(&f->res[0], "malformed");
		f->res[0].calls = 0;
		replay_free(f->replay);
		f->replay = NULL;
		server_stop(&f->srv);
		f->have_srv = false;
	}
}

static void test_post_on_a_dead_reused_connection_is_reset(void **state)
{
	struct fixture *f = *state;

	serve(f, SRV_ONE_SHOT, OK_RESPONSE, "");
	make_replay(f);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
	set_request(f, "POST", "/once", NULL, "x");
	f->res[0].calls = 0;
	replay_once(f);
	assert_error(&f->res[0], "reset");
	assert_int_equal(f->srv.accepted, 1);
}

static void test_localhost_is_served_without_a_resolver(void **state)
{
	struct fixture *f = *state;

	/* "localhost" is 127.0.0.1 to the native engine: no lookup */
	serve(f, SRV_RESPOND, OK_RESPONSE, "");
	snprintf(f->url, sizeof(f->url), "http://localhost:%d", f->srv.port);
	make_replay(f);
	replay_once(f);
	assert_int_equal(f->res[0].resp.status, 200);
}

/* ---- configuration --------------------------------------------------------- */

static void assert_refused(struct fixture *f, const char *candidate, const char *secondary, const char *needle)
{
	struct replay *r;

	snprintf(f->url, sizeof(f->url), "%s", candidate ? candidate : "");
	snprintf(f->url2, sizeof(f->url2), "%s", secondary ? secondary : "");
	f->cfg.ncandidates = candidate ? 1 : 0;
	f->cfg.secondary = secondary ? f->url2 : NULL;
	f->err[0] = '\0';
	r = replay_new(f->loop, &f->cfg, f->err, sizeof(f->err));
	assert_null(r);
	if (!strstr(f->err, needle))
		fail_msg("error \"%s\" does not mention \"%s\"", f->err, needle);
}

static char bad_marker[] = "X Bad";
static char bad_engine[] = "native";

static void test_bad_urls_are_refused_with_a_clear_error(void **state)
{
	struct fixture *f = *state;

	assert_refused(f, NULL, NULL, "no candidate URL");
	assert_refused(f, "", NULL, "no candidate URL");
	assert_refused(f, "ftp://127.0.0.1/", NULL, "scheme must be http or https");
	assert_refused(f, "file:///etc/passwd", NULL, "candidate URL \"file:///etc/passwd\"");
	assert_refused(f, "http://", NULL, "candidate URL \"http://\" is invalid");
	assert_refused(f, "127.0.0.1:8080", NULL, "candidate URL \"127.0.0.1:8080\"");
	assert_refused(f, "http://127.0.0.1:8080/x?a=b", NULL, "must not have a query");
	assert_refused(f, "http://127.0.0.1:8080/#top", NULL, "must not have a query or a fragment");
	assert_refused(f, "http://127.0.0.1:8080", "gopher://x/", "secondary URL");
	assert_refused(f, "http://127.0.0.1:8080", "http://", "secondary URL \"http://\" is invalid");
	f->cfg.marker_header = bad_marker;
	assert_refused(f, "http://127.0.0.1:8080", NULL, "marker header");
	f->cfg.marker_header = NULL;
	f->cfg.replay_engine = bad_engine;
	assert_refused(f, "http://127.0.0.1:8080", NULL, "replay_engine");
}

static void test_good_urls_are_accepted(void **state)
{
	struct fixture *f = *state;
	static const char *const urls[] = {
		"http://127.0.0.1:8080", "https://candidate.internal/", "HTTP://[::1]:81/prefix/",
		"http://user:pw@localhost/a/b",
	};

	for (size_t i = 0; i < sizeof(urls) / sizeof(urls[0]); i++) {
		struct replay *r;

		snprintf(f->url, sizeof(f->url), "%s", urls[i]);
		r = replay_new(f->loop, &f->cfg, f->err, sizeof(f->err));
		if (!r)
			fail_msg("%s refused: %s", urls[i], f->err);
		replay_free(r);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_request_carries_method_path_query_headers_and_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_curl_adds_no_headers_of_its_own, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hop_by_hop_headers_are_stripped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_host_is_the_candidates_unless_preserve_host, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secondary_gets_its_marker_and_its_own_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_secondary_is_refused_when_not_configured, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_request_reads_no_body, setup, teardown),
		cmocka_unit_test_setup_teardown(test_get_without_body_sends_no_content_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_header_value_and_empty_query_are_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_with_line_break_is_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_not_in_origin_form_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_path_cannot_change_the_target, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_status_headers_body_and_latency, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interim_responses_headers_are_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_redirects_are_not_followed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_over_max_body_is_truncated_and_connection_kept, setup, teardown),
		cmocka_unit_test_setup_teardown(test_huge_body_is_cut_short_but_still_a_response, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_exactly_max_body_is_not_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_refused_is_connect, setup, teardown),
		cmocka_unit_test_setup_teardown(test_silent_candidate_is_timeout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_garbage_reply_is_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_is_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_without_answer_is_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_body_cut_by_close_is_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_https_to_plain_server_is_tls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrency_cap_returns_minus_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queued_transfers_time_out_on_the_same_clock, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keep_alive_reuses_connections, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_gives_no_callback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cancel_from_a_callback_of_another_transfer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_with_transfers_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_request_data_is_copied, setup, teardown),
		cmocka_unit_test_setup_teardown(test_chunked_body_with_extensions_and_trailers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_split_byte_by_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_interim_response_then_200_with_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_head_with_content_length_keeps_the_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_content_length_and_204_304, setup, teardown),
		cmocka_unit_test_setup_teardown(test_response_without_length_is_read_until_close, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_close_is_not_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_http10_without_keep_alive_is_not_reused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sequential_replays_share_one_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_connection_closed_while_idle_is_retried_on_a_new_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_gets_a_content_length_even_when_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_urls_are_refused_with_a_clear_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_good_urls_are_accepted, setup, teardown),
	};
	const struct CMUnitTest native_only[] = {
		cmocka_unit_test_setup_teardown(test_header_block_over_64k_is_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_framing_is_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_post_on_a_dead_reused_connection_is_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_localhost_is_served_without_a_resolver, setup, teardown),
	};
	int failed;

	engine = NULL;
	failed = _cmocka_run_group_tests("replay_engine_auto", tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
	failed += cmocka_run_group_tests(native_only, NULL, NULL);
	engine = engine_curl;
	failed += _cmocka_run_group_tests("replay_engine_curl", tests, sizeof(tests) / sizeof(tests[0]), NULL, NULL);
	return failed;
}
