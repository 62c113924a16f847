/* Admin HTTP server: /health, /metrics, /stats, the dashboard (/, its
 * files from memory) and its samples (/samples, /samples/ID).
 *
 * The event loop serves HAProxy and must never wait for an admin client, so
 * libmicrohttpd runs in its own thread and never touches the counters:
 *
 *  - The loop thread renders snapshots (the /metrics text, the /stats JSON)
 *    into reference-counted immutable buffers and publishes them under a
 *    mutex that is only ever held for a few pointer moves.
 *  - The MHD thread asks for a fresh snapshot with ev_async_send() and waits
 *    (at most RENDER_WAIT seconds, on a condition variable) for the loop to
 *    publish it; renders are coalesced and throttled (render_interval: at
 *    most 10 /metrics and 2 /stats renders a second), so a flood of admin
 *    requests costs the loop a bounded amount of work. If the loop does not
 *    answer, the last snapshot is served, with its age in
 *    X-Miffy-Snapshot-Age.
 *  - A loop timer writes a heartbeat (monotonic time) and the few numbers
 *    /health shows every HEARTBEAT_INTERVAL; /health answers 503 when the
 *    heartbeat is older than HEALTH_STALL_SECONDS.
 *
 * MHD itself bounds what a client can hold: CONNECTION_LIMIT connections,
 * MEMORY_LIMIT bytes each (a bigger request head gets 431), TIMEOUT seconds
 * of silence. A slow or stuck client therefore costs a socket in the MHD
 * thread, never time in the loop. */
#include "admin.h"

#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "assets.h"
#include "config.h"
#include "http.h"
#include "jsonw.h"
#include "samples.h"
#include "stats.h"

#define HEARTBEAT_INTERVAL 0.5      /* s, loop timer */
#define HEALTH_STALL_SECONDS 5.0    /* heartbeat older than this: 503 */
enum snap_kind { SNAP_METRICS = 0, SNAP_STATS, SNAP_KIND_COUNT };

/* Seconds between two renders of a document on the loop, whatever the
 * admin traffic. At the cardinality caps a /metrics render costs the loop
 * ~0.3 ms and a /stats render ~2.5 ms. */
static const double render_interval[] = { 0.1, 0.5 };
#define RENDER_WAIT 1.0             /* s an admin request waits for a render */
#define ADMIN_CONNECTION_LIMIT 64
#define ADMIN_CONNECTION_TIMEOUT 10 /* s of client silence before closing */
#define ADMIN_MEMORY_LIMIT (32 * 1024)
#define SAMPLES_INDEX_MAX (16u << 20)   /* bytes of a /samples document */

/* Every answer carries these: the dashboard shows traffic (paths, headers,
 * bodies) and must never run any of it. No inline script or style, no
 * eval, nothing from elsewhere, no framing. */
static const char *const security_headers[][2] = {
	{ "Content-Security-Policy",
	  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
	  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'" },
	{ "X-Content-Type-Options", "nosniff" },
	{ "X-Frame-Options", "DENY" },
	{ "Referrer-Policy", "no-referrer" },
	{ "Cross-Origin-Resource-Policy", "same-origin" },
};

/* An immutable rendered document, shared by the admin and MHD threads. */
struct snapshot {
	atomic_uint refs;
	double taken;                   /* monotonic time of the render */
	size_t len;
	char *data;
};

struct admin {
	struct ev_loop *loop;
	const struct config *cfg;
	struct samples *samples;        /* or NULL; its own lock */
	struct MHD_Daemon *mhd;
	ev_timer heartbeat;
	ev_async wake;
	ev_timer throttle;
	ev_tstamp last_render[SNAP_KIND_COUNT];  /* ev_now() of the last render, loop only */

	pthread_mutex_t lock;
	pthread_cond_t rendered;
	/* Under lock: */
	bool stopping;
	double beat;                    /* monotonic time of the last heartbeat */
	double uptime;
	uint64_t conns, exchanges, replays;
	uint64_t wanted[SNAP_KIND_COUNT];   /* generation asked for by MHD */
	uint64_t done[SNAP_KIND_COUNT];     /* generation rendered by the loop */
	struct snapshot *snap[SNAP_KIND_COUNT];
	char status[32];                /* admin_set_status(), "" unless set */
	char status_detail[256];
};

static double monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void snapshot_unref(void *arg)
{
	struct snapshot *s = arg;

	if (s && atomic_fetch_sub(&s->refs, 1) == 1) {
		free(s->data);
		free(s);
	}
}

/* Takes ownership of text (malloc'd, len bytes). NULL on ENOMEM. */
static struct snapshot *snapshot_new(char *text, size_t len)
{
	struct snapshot *s;

	if (!text)
		return NULL;
	s = malloc(sizeof(*s));
	if (!s) {
		free(text);
		return NULL;
	}
	atomic_init(&s->refs, 1);
	s->taken = monotonic();
	s->len = len;
	s->data = text;
	return s;
}

/* ---- loop thread --------------------------------------------------------- */

static struct snapshot *render(enum snap_kind k)
{
	size_t len = 0;
	char *text = NULL;

	if (k == SNAP_METRICS)
		text = stats_metrics_text(&len);
	else
		text = stats_json_text(&len);
	return snapshot_new(text, len);
}

/* Renders each document asked for whose interval has passed; arms the
 * throttle timer for the others. */
static void render_wanted(struct admin *a)
{
	ev_tstamp now = ev_now(a->loop), next = 0;
	uint64_t want[SNAP_KIND_COUNT], done[SNAP_KIND_COUNT];

	pthread_mutex_lock(&a->lock);
	memcpy(want, a->wanted, sizeof(want));
	memcpy(done, a->done, sizeof(done));
	pthread_mutex_unlock(&a->lock);
	for (int k = 0; k < SNAP_KIND_COUNT; k++) {
		ev_tstamp wait = a->last_render[k] + render_interval[k] - now;
		struct snapshot *s, *old = NULL;

		if (done[k] >= want[k])
			continue;
		if (wait > 0) {
			if (next <= 0 || wait < next)
				next = wait;
			continue;
		}
		a->last_render[k] = now;
		/* Rendering happens outside the lock: the MHD thread only ever
		 * waits for pointer moves. */
		s = render((enum snap_kind)k);
		pthread_mutex_lock(&a->lock);
		if (s) {
			old = a->snap[k];
			a->snap[k] = s;
		}
		/* Even on ENOMEM: the waiter then gets the previous snapshot. */
		a->done[k] = want[k];
		pthread_cond_broadcast(&a->rendered);
		pthread_mutex_unlock(&a->lock);
		snapshot_unref(old);
	}
	if (next > 0 && !ev_is_active(&a->throttle)) {
		ev_timer_set(&a->throttle, next, 0.);
		ev_timer_start(a->loop, &a->throttle);
	}
}

static void on_throttle(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	render_wanted(w->data);
}

static void on_wake(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)loop;
	(void)revents;
	render_wanted(w->data);
}

static void beat(struct admin *a)
{
	double up = ev_time() - stats.started;

	pthread_mutex_lock(&a->lock);
	a->beat = monotonic();
	a->uptime = stats.started > 0 && up > 0 ? up : 0;
	a->conns = stats.conn_active;
	a->exchanges = stats.exchanges_inflight;
	a->replays = stats.replays_inflight;
	pthread_mutex_unlock(&a->lock);
}

static void on_heartbeat(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	beat(w->data);
}

/* ---- MHD thread ---------------------------------------------------------- */

/* The latest snapshot of kind k, fresh unless the loop is stalled; a
 * reference the caller drops with snapshot_unref(). NULL when none exists. */
static struct snapshot *snapshot_get(struct admin *a, enum snap_kind k)
{
	struct snapshot *s;
	struct timespec until;
	uint64_t gen;
	bool stalled;

	pthread_mutex_lock(&a->lock);
	gen = ++a->wanted[k];
	stalled = monotonic() - a->beat > 2 * HEARTBEAT_INTERVAL + 1.0;
	pthread_mutex_unlock(&a->lock);
	if (!stalled)
		ev_async_send(a->loop, &a->wake);
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)RENDER_WAIT;
	pthread_mutex_lock(&a->lock);
	while (!stalled && !a->stopping && a->done[k] < gen)
		if (pthread_cond_timedwait(&a->rendered, &a->lock, &until) == ETIMEDOUT)
			break;
	s = a->snap[k];
	if (s)
		atomic_fetch_add(&s->refs, 1);
	pthread_mutex_unlock(&a->lock);
	return s;
}

/* Queues r with the headers every answer has, then drops our reference. */
static enum MHD_Result queue(struct MHD_Connection *conn, unsigned status, struct MHD_Response *r,
			     const char *type)
{
	enum MHD_Result rc;

	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	for (size_t i = 0; i < sizeof(security_headers) / sizeof(security_headers[0]); i++)
		MHD_add_response_header(r, security_headers[i][0], security_headers[i][1]);
	rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, const char *type,
				 const char *text)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)(uintptr_t)text,
								 MHD_RESPMEM_MUST_COPY);

	if (!r)
		return MHD_NO;
	if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	return queue(conn, status, r, type);
}

static enum MHD_Result send_snapshot(struct admin *a, struct MHD_Connection *conn, enum snap_kind k)
{
	static const char *const types[SNAP_KIND_COUNT] = {
		"text/plain; version=0.0.4; charset=utf-8", "application/json",
	};
	struct snapshot *s = snapshot_get(a, k);
	struct MHD_Response *r;
	char age[32];

	if (!s)
		return send_text(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "text/plain",
				 "no snapshot yet: the event loop has not answered\n");
	r = MHD_create_response_from_buffer_with_free_callback_cls(s->len, s->data, snapshot_unref, s);
	if (!r) {
		snapshot_unref(s);
		return MHD_NO;
	}
	snprintf(age, sizeof(age), "%.3f", monotonic() - s->taken);
	MHD_add_response_header(r, "X-Miffy-Snapshot-Age", age);
	return queue(conn, MHD_HTTP_OK, r, types[k]);
}

/* ---- the dashboard (MHD thread) ----------------------------------------- */

static enum MHD_Result send_asset(struct MHD_Connection *conn, const char *url)
{
	struct MHD_Response *r;

	if (strcmp(url, "/") == 0)
		url = "/index.html";
	for (const struct asset *f = assets; f->path; f++) {
		if (strcmp(f->path, url) != 0)
			continue;
		r = MHD_create_response_from_buffer(f->len, (void *)(uintptr_t)f->data, MHD_RESPMEM_PERSISTENT);
		if (!r)
			return MHD_NO;
		return queue(conn, MHD_HTTP_OK, r, f->type);
	}
	return send_text(conn, MHD_HTTP_NOT_FOUND, "text/plain",
			 "not found: try /, /health, /metrics, /stats or /samples\n");
}

static void write_str_list(struct jsonw *w, const char *key, const struct str_list *l)
{
	jsonw_keyc(w, key);
	jsonw_open(w, '[');
	for (size_t i = 0; i < l->count; i++)
		jsonw_cstring(w, l->items[i]);
	jsonw_close(w, ']');
}

/* What a reader of the samples needs beside them: how the agent replays
 * (for "copy as curl") and what it ignores (for "ignore this field"). */
static void write_settings(const struct config *cfg, struct jsonw *w)
{
	const char *name;

	jsonw_keyc(w, "replay");
	jsonw_open(w, '{');
	/* The first candidate's URL, as with one; then each by name. */
	jsonw_keyc(w, "candidate");
	jsonw_cstring(w, cfg->ncandidates ? cfg->cands[0].url : cfg->candidate);
	jsonw_keyc(w, "candidates");
	jsonw_open(w, '{');
	for (unsigned k = 0; k < cfg->ncandidates; k++) {
		jsonw_keyc(w, cfg->cands[k].name);
		jsonw_cstring(w, cfg->cands[k].url);
	}
	jsonw_close(w, '}');
	jsonw_keyc(w, "secondary");
	jsonw_cstring(w, cfg->secondary);
	jsonw_keyc(w, "marker_header");
	jsonw_cstring(w, cfg->marker_header);
	jsonw_keyc(w, "preserve_host");
	jsonw_bool(w, cfg->preserve_host);
	jsonw_keyc(w, "dropped_headers");
	jsonw_open(w, '[');
	for (size_t i = 0; (name = http_hop_by_hop_name(i)) != NULL; i++)
		jsonw_cstring(w, name);
	jsonw_cstring(w, "content-length");
	jsonw_cstring(w, "expect");
	jsonw_cstring(w, "host");
	jsonw_close(w, ']');
	jsonw_close(w, '}');
	jsonw_keyc(w, "compare");
	jsonw_open(w, '{');
	write_str_list(w, "ignore_headers", &cfg->ignore_headers);
	write_str_list(w, "ignore_paths", &cfg->ignore_paths);
	write_str_list(w, "redact_headers", &cfg->redact_headers);
	jsonw_keyc(w, "noise_relative");
	jsonw_number(w, cfg->noise_relative);
	jsonw_keyc(w, "noise_absolute");
	jsonw_number(w, cfg->noise_absolute);
	jsonw_close(w, '}');
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, struct jsonw *w)
{
	struct MHD_Response *r;
	size_t len;
	char *text;

	if (!jsonw_ok(w)) {
		jsonw_free(w);
		return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "application/json",
				 "{\"error\":\"out of memory or over the document size limit\"}\n");
	}
	/* MHD frees the text with free() once sent. */
	text = buf_take(&w->b, &len);
	r = text ? MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE) : NULL;
	if (!r) {
		free(text);
		return MHD_NO;
	}
	return queue(conn, status, r, "application/json");
}

static struct samples *samples_of(struct admin *a)
{
	struct samples *s;

	pthread_mutex_lock(&a->lock);
	s = a->samples;
	pthread_mutex_unlock(&a->lock);
	return s;
}

static enum MHD_Result send_samples_index(struct admin *a, struct MHD_Connection *conn)
{
	const char *endpoint = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "endpoint");
	const char *field = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "field");
	struct samples *s = samples_of(a);
	struct jsonw w;

	jsonw_init(&w, SAMPLES_INDEX_MAX);
	jsonw_open(&w, '{');
	write_settings(a->cfg, &w);
	if (s) {
		samples_write_index(s, &w, endpoint && endpoint[0] ? endpoint : NULL,
				    field && field[0] ? field : NULL);
	} else {
		jsonw_keyc(&w, "samples");
		jsonw_open(&w, '[');
		jsonw_close(&w, ']');
	}
	jsonw_close(&w, '}');
	return send_json(conn, MHD_HTTP_OK, &w);
}

static void sample_unref(void *arg)
{
	samples_release(arg);
}

static enum MHD_Result send_sample(struct admin *a, struct MHD_Connection *conn, const char *id)
{
	struct samples *s = samples_of(a);
	struct sample *x = s ? samples_get(s, id) : NULL;
	struct MHD_Response *r;
	const char *text;
	size_t len;

	if (!x)
		return send_text(conn, MHD_HTTP_NOT_FOUND, "application/json",
				 "{\"error\":\"no sample of this exchange is kept (evicted, or it did not differ)\"}\n");
	text = sample_text(x, &len);
	/* The sample stays held until MHD has sent it. */
	r = MHD_create_response_from_buffer_with_free_callback_cls(len, (void *)(uintptr_t)text, sample_unref, x);
	if (!r) {
		samples_release(x);
		return MHD_NO;
	}
	return queue(conn, MHD_HTTP_OK, r, "application/json");
}

static enum MHD_Result send_health(struct admin *a, struct MHD_Connection *conn)
{
	char body[1024];
	double since;
	bool ok;

	pthread_mutex_lock(&a->lock);
	since = monotonic() - a->beat;
	ok = since <= HEALTH_STALL_SECONDS;
	if (ok && a->status[0] && strcmp(a->status, "ok") != 0)
		ok = false;
	snprintf(body, sizeof(body),
		 "{\"status\":\"%s\",\"uptime_seconds\":%.3f,\"haproxy_connections\":%llu,"
		 "\"exchanges_inflight\":%llu,\"replays_inflight\":%llu,\"last_heartbeat_seconds\":%.3f%s%s}\n",
		 since > HEALTH_STALL_SECONDS ? "stalled" : a->status[0] ? a->status : "ok", a->uptime,
		 (unsigned long long)a->conns, (unsigned long long)a->exchanges, (unsigned long long)a->replays,
		 since, a->status_detail[0] ? "," : "", a->status_detail);
	pthread_mutex_unlock(&a->lock);
	return send_text(conn, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, "application/json", body);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
				  const char *method, const char *version, const char *upload_data,
				  size_t *upload_data_size, void **con_cls)
{
	static int answered;
	struct admin *a = cls;

	(void)version;
	(void)upload_data;
	if (*con_cls) {
		/* A body nobody asked for: drop it, the answer is queued. */
		*upload_data_size = 0;
		return MHD_YES;
	}
	*con_cls = &answered;
	/* Answer on the first call, before any body: there is nothing to
	 * upload here, and MHD closes the connection after the answer. */
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain", "only GET and HEAD\n");
	if (strcmp(url, "/health") == 0)
		return send_health(a, conn);
	if (strcmp(url, "/metrics") == 0)
		return send_snapshot(a, conn, SNAP_METRICS);
	if (strcmp(url, "/stats") == 0)
		return send_snapshot(a, conn, SNAP_STATS);
	if (strcmp(url, "/samples") == 0)
		return send_samples_index(a, conn);
	if (strncmp(url, "/samples/", 9) == 0)
		return send_sample(a, conn, url + 9);
	return send_asset(conn, url);
}

void admin_set_status(struct admin *a, const char *status, const char *detail)
{
	if (!a)
		return;
	pthread_mutex_lock(&a->lock);
	snprintf(a->status, sizeof(a->status), "%s", status ? status : "");
	snprintf(a->status_detail, sizeof(a->status_detail), "%s", status && detail ? detail : "");
	pthread_mutex_unlock(&a->lock);
}

/* ---- setup --------------------------------------------------------------- */

/* A listening socket on addr, or -1 with the reason in err. */
static int listen_on(const char *addr, bool *ipv6, char *err, size_t errlen)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
	struct addrinfo *res = NULL;
	char host[256], port[16];
	int fd = -1, one = 1, rc;

	if (config_split_addr(addr, host, sizeof(host), port, sizeof(port)) < 0) {
		snprintf(err, errlen, "'%s' is not ADDR:PORT", addr);
		return -1;
	}
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "%s: %s", addr, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, res->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, res->ai_protocol);
	if (fd == -1) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == -1 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) == -1 || listen(fd, 64) == -1) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(errno));
		goto fail;
	}
	*ipv6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);
	return fd;
fail:
	if (fd != -1)
		close(fd);
	freeaddrinfo(res);
	return -1;
}

struct admin *admin_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen)
{
	struct admin *a = calloc(1, sizeof(*a));
	pthread_condattr_t cattr;
	sigset_t all, saved;
	bool ipv6 = false;
	int fd = -1;

	if (!a) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	a->loop = loop;
	a->cfg = cfg;
	pthread_mutex_init(&a->lock, NULL);
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	pthread_cond_init(&a->rendered, &cattr);
	pthread_condattr_destroy(&cattr);
	ev_timer_init(&a->heartbeat, on_heartbeat, HEARTBEAT_INTERVAL, HEARTBEAT_INTERVAL);
	a->heartbeat.data = a;
	ev_async_init(&a->wake, on_wake);
	a->wake.data = a;
	ev_init(&a->throttle, on_throttle);
	a->throttle.data = a;
	beat(a);
	ev_timer_start(loop, &a->heartbeat);
	ev_async_start(loop, &a->wake);

	fd = listen_on(cfg->admin, &ipv6, err, errlen);
	if (fd == -1)
		goto fail;
	/* Signals belong to the loop thread (ev_signal): MHD's thread
	 * inherits a mask that blocks them all. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &saved);
	a->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | (ipv6 ? MHD_USE_IPv6 : 0),
				  0, NULL, NULL, on_request, a,
				  MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
				  MHD_OPTION_CONNECTION_LIMIT, (unsigned int)ADMIN_CONNECTION_LIMIT,
				  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)ADMIN_CONNECTION_TIMEOUT,
				  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_MEMORY_LIMIT,
				  MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
	if (!a->mhd) {
		snprintf(err, errlen, "cannot start the HTTP server on %s", cfg->admin);
		goto fail;
	}
	return a;
fail:
	if (fd != -1)
		close(fd);
	admin_free(a);
	return NULL;
}

void admin_set_samples(struct admin *a, struct samples *s)
{
	pthread_mutex_lock(&a->lock);
	a->samples = s;
	pthread_mutex_unlock(&a->lock);
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	/* Release any request waiting for a render, so the join is quick. */
	pthread_mutex_lock(&a->lock);
	a->stopping = true;
	pthread_cond_broadcast(&a->rendered);
	pthread_mutex_unlock(&a->lock);
	if (a->mhd)
		MHD_stop_daemon(a->mhd);   /* joins its thread, closes the socket */
	ev_timer_stop(a->loop, &a->heartbeat);
	ev_timer_stop(a->loop, &a->throttle);
	ev_async_stop(a->loop, &a->wake);
	for (int k = 0; k < SNAP_KIND_COUNT; k++)
		snapshot_unref(a->snap[k]);
	pthread_cond_destroy(&a->rendered);
	pthread_mutex_destroy(&a->lock);
	free(a);
}
