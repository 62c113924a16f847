#include "replay.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "admit.h"
#include "config-t.h"
#include "curl_xfer.h"
#include "h1.h"
#include "request.h"
#include "stats.h"

/* After a burst of at least this many transfers in flight has drained to a
 * sixteenth of its peak, the freed heap is handed back to the OS: glibc
 * keeps it otherwise, and a burst of timeouts would pin its peak RSS. */
#define REPLAY_TRIM_PEAK 1024

struct target {
	char *url;                   /* normalised, no trailing '/': connects */
	char *prefix;                /* base path without trailing '/', may be "" */
	/* the native transport, for http:// to an address literal (or NULL) */
	struct h1_pool *h1;
	char *host;                  /* Host header value: "127.0.0.1:8080" */
};

/* The two transports behind one start/cancel interface. */
struct transport {
	void *(*start)(void *engine, const struct replay_request *rq, const struct request_dest *to,
		       ev_tstamp t_start, transport_done_fn done, void *arg);
	void (*cancel)(void *xfer);
};

struct replay_xfer {
	struct replay *r;
	const struct transport *tp;
	void *t;                     /* the transport's transfer, NULL once it called back */
	enum replay_role role;
	unsigned candidate;
	replay_done_fn done;
	void *arg;
	ev_tstamp t_start;
	struct replay_xfer *prev, *next;
};

struct replay {
	struct ev_loop *loop;
	struct curl_engine *curl;
	struct target candidates[MIFFY_MAX_CANDIDATES];
	unsigned ncandidates;
	struct target secondary;
	bool have_secondary;

	char *marker;                /* header name, NULL when disabled */
	struct request_rules rules;
	unsigned max_concurrent;

	unsigned inflight;
	unsigned peak;               /* most in flight since the last trim */
	struct replay_xfer *xfers;
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
 * resolver). Returns 0 (t->h1 may still be NULL: curl serves t), -1 with a
 * message in err on failure. */
static int target_init_native(struct target *t, struct ev_loop *loop, CURLU *u, const char *scheme,
			      const char *host, const struct h1_limits *lim, char *err, size_t errlen)
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
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	t->h1 = h1_pool_new(loop, (struct sockaddr *)&ss, sslen, t->host, lim, err, errlen);
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
	char why[160];
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
	if (native && target_init_native(t, loop, u, scheme, host, native, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "%s URL: %s", what, why);
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

/* ---- transfers ------------------------------------------------------------ */

static void *native_start(void *engine, const struct replay_request *rq, const struct request_dest *to,
			  ev_tstamp t_start, transport_done_fn done, void *arg)
{
	return h1_start(engine, rq, to, t_start, done, arg);
}

static void native_cancel(void *xfer)
{
	h1_cancel(xfer);
}

static void *curl_start(void *engine, const struct replay_request *rq, const struct request_dest *to,
			ev_tstamp t_start, transport_done_fn done, void *arg)
{
	return curl_xfer_start(engine, rq, to, t_start, done, arg);
}

static void curl_cancel(void *xfer)
{
	curl_xfer_cancel(xfer);
}

static const struct transport native_transport = { native_start, native_cancel };
static const struct transport curl_transport = { curl_start, curl_cancel };

/* Stops xf's transfer if it still runs, unlinks and frees xf. */
static void xfer_release(struct replay *r, struct replay_xfer *xf)
{
	if (xf->t)
		xf->tp->cancel(xf->t);
	if (xf->prev)
		xf->prev->next = xf->next;
	else
		r->xfers = xf->next;
	if (xf->next)
		xf->next->prev = xf->prev;
	r->inflight--;
	stats.replays_inflight--;
	free(xf);
	if (r->peak >= REPLAY_TRIM_PEAK && r->inflight <= r->peak / 16) {
		malloc_trim(0);
		r->peak = r->inflight;
	}
}

/* Both transports end here. A failure is counted with the exchange's
 * outcome (stats_exchange_done), not here. */
static void on_transport_done(void *arg, struct http_response *resp)
{
	struct replay_xfer *xf = arg;
	struct replay *r = xf->r;
	replay_done_fn done = xf->done;
	void *done_arg = xf->arg;
	enum replay_role role = xf->role;
	unsigned candidate = xf->candidate;

	xf->t = NULL;
	resp->latency_ms = (ev_time() - xf->t_start) * 1000.0;
	xfer_release(r, xf);
	done(done_arg, role, candidate, resp);
}

int replay_start(struct replay *r, enum replay_role role, unsigned candidate, const struct replay_request *rq,
		 replay_done_fn done, void *arg, struct replay_xfer **xfer)
{
	const struct target *t;
	struct request_dest to;
	struct replay_xfer *xf;

	if (role == ROLE_CANDIDATE && candidate < r->ncandidates)
		t = &r->candidates[candidate];
	else if (role == ROLE_SECONDARY && r->have_secondary)
		t = &r->secondary;
	else
		return -2;
	if (!done)
		return -2;
	if (r->inflight >= r->max_concurrent)
		return -1;
	if (!rq)
		return -2;
	to = (struct request_dest){ .url = t->url, .prefix = t->prefix, .host = t->host,
				    .marker = r->marker, .role = role_values[role] };
	xf = calloc(1, sizeof(*xf));
	if (!xf)
		return -2;
	xf->r = r;
	xf->role = role;
	xf->candidate = candidate;
	xf->done = done;
	xf->arg = arg;
	xf->tp = t->h1 ? &native_transport : &curl_transport;
	xf->t_start = ev_time();
	/* neither transport calls back from inside start */
	xf->t = xf->tp->start(t->h1 ? (void *)t->h1 : (void *)r->curl, rq, &to, xf->t_start, on_transport_done, xf);
	if (!xf->t) {
		free(xf);
		return -2;
	}
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
	return r->have_secondary;
}

unsigned replay_candidates(const struct replay *r)
{
	return r->ncandidates;
}

const struct request_rules *replay_rules(const struct replay *r)
{
	return &r->rules;
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
	struct admit_limits limits;
	long host_conns;
	const char *engine = cfg->replay_engine ? cfg->replay_engine : "auto";
	struct h1_limits lim;
	struct curl_limits clim;
	const struct h1_limits *native = strcmp(engine, "auto") == 0 ? &lim : NULL;
	bool missing;

	/* the same limits as the admission's, which keeps replays within them:
	 * a target per candidate and the secondary */
	admit_limits_of(cfg, cfg->ncandidates + (cfg->secondary && *cfg->secondary ? 1u : 0u), &limits);
	host_conns = (long)limits.max_host_connections;
	lim = (struct h1_limits){
		.connect_timeout = seconds_to_ms(cfg->connect_timeout) / 1000.0,
		.timeout = seconds_to_ms(cfg->timeout) / 1000.0,
		.max_body = cfg->max_body,
		.max_conns = (unsigned)host_conns,
	};
	clim = (struct curl_limits){
		.connect_timeout_ms = seconds_to_ms(cfg->connect_timeout),
		.timeout_ms = seconds_to_ms(cfg->timeout),
		.max_body = cfg->max_body,
		.max_host_conns = host_conns,
		/* idle connections kept for reuse, for every target */
		.max_idle_conns = host_conns * (long)(cfg->ncandidates + 1),
		.ca_file = cfg->ca_file,
		.insecure = cfg->insecure,
	};

	if (cfg->ncandidates > MIFFY_MAX_CANDIDATES) {
		snprintf(err, errlen, "more than %d candidates", MIFFY_MAX_CANDIDATES);
		return NULL;
	}
	missing = cfg->ncandidates == 0;
	for (unsigned k = 0; k < cfg->ncandidates; k++)
		missing |= !cfg->cands[k].url || !*cfg->cands[k].url;
	if (missing) {
		snprintf(err, errlen, "no candidate URL");
		return NULL;
	}
	if (strcmp(engine, "auto") != 0 && strcmp(engine, "curl") != 0) {
		snprintf(err, errlen, "replay_engine \"%s\" is not \"auto\" or \"curl\"", engine);
		return NULL;
	}
	if (*marker && !request_is_token(marker)) {
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
	for (unsigned k = 0; k < cfg->ncandidates; k++) {
		char what[MIFFY_CANDIDATE_NAME_MAX + 32];

		/* the single candidate's errors read as before */
		snprintf(what, sizeof(what), cfg->ncandidates > 1 ? "candidate \"%s\"" : "candidate",
			 cfg->cands[k].name);
		if (target_init(&r->candidates[k], what, cfg->cands[k].url, loop, native, err, errlen) < 0)
			goto fail_targets;
		r->ncandidates++;
	}
	if (cfg->secondary && *cfg->secondary) {
		if (target_init(&r->secondary, "secondary", cfg->secondary, loop, native, err, errlen) < 0)
			goto fail_targets;
		r->have_secondary = true;
	}
	if (*marker && !(r->marker = strdup(marker))) {
		snprintf(err, errlen, "out of memory");
		goto fail_targets;
	}
	r->rules = (struct request_rules){ .marker = r->marker, .preserve_host = cfg->preserve_host };
	r->max_concurrent = limits.max_concurrent;
	r->curl = curl_engine_new(loop, &clim, err, errlen);
	if (!r->curl)
		goto fail_marker;
	return r;

fail_marker:
	free(r->marker);
fail_targets:
	target_clear(&r->secondary);
	for (unsigned k = 0; k < r->ncandidates; k++)
		target_clear(&r->candidates[k]);
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
	curl_engine_free(r->curl);
	for (unsigned k = 0; k < r->ncandidates; k++)
		target_clear(&r->candidates[k]);
	target_clear(&r->secondary);
	free(r->marker);
	free(r);
	curl_global_cleanup();
}
