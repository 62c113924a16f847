#include "exchange.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "body.h"
#include "compare.h"
#include "config.h"
#include "hash.h"
#include "log.h"
#include "noise.h"
#include "publish.h"
#include "replay.h"
#include "names.h"
#include "request.h"
#include "route.h"
#include "spop.h"
#include "stats.h"
#include "http.h"

/* The replay of a candidate past the first (whose is in struct exchange). */
struct candidate_slot {
	struct http_response resp;
	bool want, have;
	struct replay_xfer *xfer;
};

/* An exchange with the table's links to it, which only this file sees. */
struct entry {
	struct exchange x;           /* first: an exchange's address is its entry's */
	struct exchange_table *table;
	size_t held;                 /* body bytes counted in the table's budget */
	struct entry *hnext;         /* same bucket */
	struct entry *older, *newer; /* TTL order */
	unsigned ncandidates;        /* at least 1 */
	struct candidate_slot more[]; /* candidates 1 .. ncandidates-1 */
};

/* Where one replay of an exchange lives: the candidate numbered k (its
 * first in struct exchange, the others in the entry) or the secondary. */
struct reply_at {
	struct http_response *resp;
	bool *want, *have;
	struct replay_xfer **xfer;
};

struct exchange_table {
	struct exchange_deps deps;
	struct admit *admit;         /* with deps.replay: who may start replays */
	struct entry **buckets;
	size_t nbuckets;             /* power of two */
	size_t count;
	size_t held;                 /* body bytes of all exchanges, <= max_buffered */
	struct entry *oldest, *newest;     /* TTL order: deadlines grow with creation */
	ev_timer ttl_timer;
	void (*yield)(void *);       /* exchange_table_set_yield() */
	void *yield_arg;
};

/* The arguments of one side of an exchange, matched by name: those of
 * miffy-req, of miffy-res, or one side of miffy-tx (whose per-side names
 * carry a "req_" or "res_" prefix). */
struct message_args {
	const struct spop_value *id, *method, *path, *query, *ver, *headers, *body;
	const struct spop_value *status, *body_len, *body_size, *latency_us;
};

/* Every exchange is allocated inside its entry. */
static struct entry *entry_of(struct exchange *x)
{
	return (struct entry *)x;
}

static struct reply_at reply_at(struct exchange *x, enum replay_role role, unsigned k)
{
	if (role == ROLE_CANDIDATE && k > 0) {
		struct candidate_slot *s = &entry_of(x)->more[k - 1];

		return (struct reply_at){ &s->resp, &s->want, &s->have, &s->xfer };
	}
	return (struct reply_at){ &x->replies[role], &x->want[role], &x->have[role], &x->xfer[role] };
}

/* Candidate k's judgement as stats and publish read it: x itself for the
 * first, else a copy of x in *view (borrowing x's strings and bodies) with
 * candidate k's reply in replies[ROLE_CANDIDATE]. */
static const struct exchange *candidate_view(struct exchange *x, unsigned k, struct exchange *view)
{
	struct reply_at at;

	if (k == 0)
		return x;
	at = reply_at(x, ROLE_CANDIDATE, k);
	*view = *x;
	view->replies[ROLE_CANDIDATE] = *at.resp;
	view->want[ROLE_CANDIDATE] = *at.want;
	view->have[ROLE_CANDIDATE] = *at.have;
	view->xfer[ROLE_CANDIDATE] = NULL;
	view->candidate = k;
	return view;
}

static struct entry **bucket_of(struct exchange_table *t, const char *id, size_t len)
{
	return &t->buckets[hash_bytes(id, len) & (t->nbuckets - 1)];
}

static struct exchange *table_find(struct exchange_table *t, const char *id, size_t len)
{
	for (struct entry *e = *bucket_of(t, id, len); e; e = e->hnext)
		if (strlen(e->x.id) == len && memcmp(e->x.id, id, len) == 0)
			return &e->x;
	return NULL;
}

static void ttl_arm(struct exchange_table *t)
{
	ev_timer_stop(t->deps.loop, &t->ttl_timer);
	if (!t->oldest)
		return;
	ev_tstamp delay = t->oldest->x.deadline - ev_now(t->deps.loop);
	ev_timer_set(&t->ttl_timer, delay > 0.001 ? delay : 0.001, 0.);
	ev_timer_start(t->deps.loop, &t->ttl_timer);
}

static void table_insert(struct exchange_table *t, struct exchange *x)
{
	struct entry *e = entry_of(x), **b = bucket_of(t, x->id, strlen(x->id));

	e->hnext = *b;
	*b = e;
	e->older = t->newest;
	e->newer = NULL;
	if (t->newest)
		t->newest->newer = e;
	else
		t->oldest = e;
	t->newest = e;
	t->count++;
	stats.exchanges_inflight = t->count;
	if (t->oldest == e)
		ttl_arm(t);
}

static void table_remove(struct exchange_table *t, struct exchange *x)
{
	struct entry *e = entry_of(x), **b = bucket_of(t, x->id, strlen(x->id));
	bool was_oldest = t->oldest == e;

	while (*b != e)
		b = &(*b)->hnext;
	*b = e->hnext;
	if (e->older)
		e->older->newer = e->newer;
	else
		t->oldest = e->newer;
	if (e->newer)
		e->newer->older = e->older;
	else
		t->newest = e->older;
	t->count--;
	stats.exchanges_inflight = t->count;
	if (was_oldest)
		ttl_arm(t);
}

/* Takes len body bytes from the budget; false (nothing taken) when the
 * exchange must drop the body instead. */
static bool hold(struct exchange_table *t, struct exchange *x, size_t len)
{
	if (len > t->deps.cfg->max_buffered - t->held) {
		if (x->skip == SKIP_NONE) {
			x->skip = SKIP_OVERLOAD;
			log_msg(LOG_LEVEL_WARN, x->id, "max_buffered (%zu bytes) reached: exchange skipped",
				t->deps.cfg->max_buffered);
		}
		return false;
	}
	t->held += len;
	entry_of(x)->held += len;
	return true;
}

static void exchange_free(struct exchange *x)
{
	struct entry *e = entry_of(x);

	if (e->table)
		e->table->held -= e->held;
	free(x->id);
	free(x->endpoint);
	free(x->method);
	free(x->path);
	free(x->query);
	free(x->version);
	http_headers_clear(&x->req_headers);
	free(x->req_body);
	http_response_clear(&x->reference);
	for (int r = 0; r < ROLE_COUNT; r++)
		http_response_clear(&x->replies[r]);
	for (unsigned k = 1; k < e->ncandidates; k++)
		http_response_clear(&e->more[k - 1].resp);
	free(e);
}

static void cancel_replays(struct exchange_table *t, struct exchange *x)
{
	for (int r = 0; r < ROLE_COUNT; r++) {
		for (unsigned k = 0; k < (r == ROLE_CANDIDATE ? entry_of(x)->ncandidates : 1); k++) {
			struct reply_at at = reply_at(x, (enum replay_role)r, k);

			if (*at.xfer) {
				replay_cancel(t->deps.replay, *at.xfer);
				*at.xfer = NULL;
				admit_ended(t->admit, x->admit_slot, admit_target((enum replay_role)r, k));
			}
		}
	}
}

/* What finishing an exchange found: the comparisons with the candidate
 * and the secondary, and the bodies each decoded at most once by whoever
 * needed them first (compare, then publish). Zero-initialised;
 * verdict_clear() frees. */
struct verdict {
	struct diff_list diffs;              /* reference vs candidate */
	struct diff_list sec;                /* reference vs secondary */
	struct body_shared request, reference, replies[ROLE_COUNT];
};

static void verdict_clear(struct verdict *v)
{
	diff_list_clear(&v->diffs);
	diff_list_clear(&v->sec);
	body_shared_clear(&v->request);
	body_shared_clear(&v->reference);
	for (int r = 0; r < ROLE_COUNT; r++)
		body_shared_clear(&v->replies[r]);
}

static void body_troubles(const struct body_shared *b, struct stats_compare *c)
{
	if (!b->decoded)
		return;
	c->decode_failed += b->body.decode_failed;
	c->depth_exceeded += b->body.depth_exceeded;
}

/* Adds what comparing and decoding ran into, from the flags v carries, to
 * c: the candidate's (cand), or what all candidates share. */
static void verdict_troubles(const struct verdict *v, bool cand, struct stats_compare *c)
{
	if (cand) {
		c->order_unchecked += (unsigned)v->diffs.order_unchecked;
		c->key_fallback += (unsigned)v->diffs.key_fallback;
		body_troubles(&v->replies[ROLE_CANDIDATE], c);
		return;
	}
	c->order_unchecked += (unsigned)v->sec.order_unchecked;
	c->key_fallback += (unsigned)v->sec.key_fallback;
	body_troubles(&v->request, c);
	body_troubles(&v->reference, c);
	body_troubles(&v->replies[ROLE_SECONDARY], c);
}

/* Ends candidate c's part of an exchange with outcome o: stats, publishing
 * (the policy is publish's to apply). diffs are the differences to report
 * (NULL: none); v holds the bodies decoded so far, shared. */
static void report(struct exchange_table *t, const struct exchange *c, enum outcome o,
		   const struct diff_list *diffs, struct verdict *v)
{
	stats_exchange_done(c, o, diffs);
	if (t->deps.publish)
		publish_exchange_shared(t->deps.publish, c, o, diffs, &v->request, &v->reference, v->replies);
	if (log_enabled(LOG_LEVEL_DEBUG))
		log_msg(LOG_LEVEL_DEBUG, c->id, "exchange %s: %s%s%s (%zu differences, candidate %s)",
			c->endpoint ? c->endpoint : "-", outcome_name(o),
			o == OUTCOME_SKIPPED ? "/" : "", o == OUTCOME_SKIPPED ? skip_reason_name(c->skip) : "",
			diffs ? diffs->count : 0, config_candidate_name(t->deps.cfg, c->candidate));
}

/* Counts troubles, removes and frees x, then clears v (whose bodies point
 * into x's responses: cleared after, but no longer read). */
static void retire(struct exchange_table *t, struct exchange *x, struct verdict *v,
		   struct stats_compare *troubles)
{
	verdict_troubles(v, false, troubles);
	stats_compare_done(troubles);
	cancel_replays(t, x);
	table_remove(t, x);
	exchange_free(x);
	verdict_clear(v);
}

/* Ends x with outcome o for every candidate (skipped, expired): stats,
 * publishing, removal. */
static void conclude(struct exchange_table *t, struct exchange *x, enum outcome o)
{
	struct verdict v = { 0 };
	struct stats_compare troubles = { 0 };
	struct exchange view;

	for (unsigned k = 0; k < entry_of(x)->ncandidates; k++)
		report(t, candidate_view(x, k, &view), o, NULL, &v);
	retire(t, x, &v, &troubles);
}

/* The secondary's comparison with the reference, made once per exchange
 * for every candidate's noise. */
enum sec_state { SEC_UNTRIED = 0, SEC_COMPARED, SEC_USELESS };

/* Judges candidate c of x against the reference (and the noise the
 * secondary shows), reports it, and leaves v with what all candidates
 * share: the candidate's own differences and body are cleared, its
 * troubles added to troubles. */
static void judge(struct exchange_table *t, struct exchange *x, const struct exchange *c, struct verdict *v,
		  enum sec_state *sec, struct stats_compare *troubles)
{
	const struct config *cfg = t->deps.cfg;
	enum outcome o;

	if (c->replies[ROLE_CANDIDATE].error != REPLAY_OK) {
		report(t, c, OUTCOME_CANDIDATE_ERROR, NULL, v);
		goto done;
	}
	if (!t->deps.compare ||
	    compare_responses_shared(t->deps.compare, &x->reference, &c->replies[ROLE_CANDIDATE], &v->reference,
				     &v->replies[ROLE_CANDIDATE], &v->diffs) < 0) {
		log_msg(LOG_LEVEL_ERROR, x->id, "comparison failed: out of memory");
		report(t, c, OUTCOME_DROPPED, NULL, v);
		goto done;
	}
	o = v->diffs.count ? OUTCOME_DIFFERENT : OUTCOME_EQUAL;
	/* A secondary that failed tells nothing about noise: the raw verdict stands. */
	if (*sec == SEC_UNTRIED)
		*sec = x->want[ROLE_SECONDARY] && x->replies[ROLE_SECONDARY].error == REPLAY_OK && t->deps.noise &&
		       compare_responses_shared(t->deps.compare, &x->reference, &x->replies[ROLE_SECONDARY],
						&v->reference, &v->replies[ROLE_SECONDARY], &v->sec) == 0 ?
		       SEC_COMPARED : SEC_USELESS;
	if (*sec == SEC_COMPARED) {
		/* Each candidate has noise tables of its own. */
		char *key = entry_of(x)->ncandidates > 1 && cfg ?
			    noise_candidate_key(config_candidate_name(cfg, c->candidate), x->endpoint) : NULL;

		if ((key || entry_of(x)->ncandidates == 1) &&
		    noise_mark(t->deps.noise, key ? key : x->endpoint, &v->diffs, &v->sec))
			o = OUTCOME_NOISE;
		free(key);
	}
	report(t, c, o, &v->diffs, v);
done:
	verdict_troubles(v, true, troubles);
	diff_list_clear(&v->diffs);
	body_shared_clear(&v->replies[ROLE_CANDIDATE]);
}

static void finish(struct exchange_table *t, struct exchange *x)
{
	struct verdict v = { 0 };
	struct stats_compare troubles = { 0 };
	enum sec_state sec = SEC_UNTRIED;
	struct exchange view;

	if (x->skip != SKIP_NONE) {
		conclude(t, x, OUTCOME_SKIPPED);
		return;
	}
	/* x is complete: nothing the agent reads now can conclude it (a second
	 * message with its id is an anomaly), and the replay that completed
	 * it has released its connection. */
	if (t->yield)
		t->yield(t->yield_arg);
	/* Each candidate on its own; the reference's and the secondary's
	 * bodies are decoded once for all. */
	for (unsigned k = 0; k < entry_of(x)->ncandidates; k++)
		judge(t, x, candidate_view(x, k, &view), &v, &sec, &troubles);
	retire(t, x, &v, &troubles);
}

static void maybe_finish(struct exchange_table *t, struct exchange *x)
{
	if (!x->have_reference)
		return;
	for (int r = 0; r < ROLE_COUNT; r++)
		for (unsigned k = 0; k < (r == ROLE_CANDIDATE ? entry_of(x)->ncandidates : 1); k++) {
			struct reply_at at = reply_at(x, (enum replay_role)r, k);

			if (*at.want && !*at.have)
				return;
		}
	finish(t, x);
}

static void on_replay_done(void *arg, enum replay_role role, unsigned candidate, struct http_response *resp)
{
	struct exchange *x = arg;
	struct reply_at at = reply_at(x, role, candidate);

	http_response_clear(at.resp);
	*at.resp = *resp;
	memset(resp, 0, sizeof(*resp));
	if (!hold(entry_of(x)->table, x, at.resp->body_len)) {
		free(at.resp->body);
		at.resp->body = NULL;
		at.resp->body_len = 0;
	}
	*at.have = true;
	*at.xfer = NULL;
	admit_ended(entry_of(x)->table->admit, x->admit_slot, admit_target(role, candidate));
	if (at.resp->error != REPLAY_OK)
		/* "candidate error", as with one candidate; "candidate NAME
		 * error" with several */
		log_msg(LOG_LEVEL_DEBUG, x->id, "%s%s%s error: %s (%s)", role_name(role),
			role == ROLE_CANDIDATE && entry_of(x)->ncandidates > 1 ? " " : "",
			role == ROLE_CANDIDATE && entry_of(x)->ncandidates > 1 ?
			config_candidate_name(entry_of(x)->table->deps.cfg, candidate) : "",
			replay_error_name(at.resp->error), at.resp->error_detail);
	maybe_finish(entry_of(x)->table, x);
}

static void on_ttl(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct exchange_table *t = w->data;
	ev_tstamp now = ev_now(loop);

	(void)revents;
	while (t->oldest && t->oldest->x.deadline <= now) {
		struct exchange *x = &t->oldest->x;

		if (x->skip == SKIP_NONE)
			log_msg(LOG_LEVEL_DEBUG, x->id, "exchange expired: %s",
				x->have_reference ? "replay never ended" : "no reference response");
		conclude(t, x, x->skip != SKIP_NONE ? OUTCOME_SKIPPED : OUTCOME_EXPIRED);
	}
	ttl_arm(t);
}

struct exchange_table *exchange_table_new(const struct exchange_deps *deps, char *err, size_t errlen)
{
	struct exchange_table *t = calloc(1, sizeof(*t));
	struct admit_limits lim;
	size_t n = 1024;

	if (!t)
		goto fail;
	t->deps = *deps;
	if (deps->replay) {
		/* one target per candidate and the secondary: each exchange
		 * starts a replay to every one or to none */
		unsigned targets = replay_candidates(deps->replay) + (replay_has_secondary(deps->replay) ? 1u : 0u);

		admit_limits_of(deps->cfg, targets, &lim);
		t->admit = admit_new(&lim, targets, err, errlen);
		if (!t->admit) {
			free(t);
			return NULL;
		}
		stats_set_limits(&lim);
		log_msg(LOG_LEVEL_INFO, NULL, "replay limits: %u replays in flight (%s), %u connections per target (%s), "
			"%u exchanges per second (%s)", lim.max_concurrent,
			deps->cfg->max_concurrent ? "max_concurrent" : "from max_buffered", lim.max_host_connections,
			lim.connections_capped ? "max_host_connections" : "from max_concurrent and the descriptor limit",
			lim.max_candidate_rps, lim.max_candidate_rps ? "max_candidate_rps" : "no cap");
	}
	/* About one entry per bucket at the cap, within reason. */
	while (n < deps->cfg->max_exchanges && n < ((size_t)1 << 20))
		n <<= 1;
	t->nbuckets = n;
	t->buckets = calloc(n, sizeof(*t->buckets));
	if (!t->buckets) {
		admit_free(t->admit);
		goto fail;
	}
	ev_init(&t->ttl_timer, on_ttl);
	t->ttl_timer.data = t;
	return t;
fail:
	snprintf(err, errlen, "exchange table: out of memory");
	free(t);
	return NULL;
}

void exchange_table_free(struct exchange_table *t)
{
	if (!t)
		return;
	while (t->oldest) {
		struct exchange *x = &t->oldest->x;

		if (x->skip == SKIP_NONE)
			x->skip = SKIP_SHUTDOWN;
		conclude(t, x, OUTCOME_SKIPPED);
	}
	ev_timer_stop(t->deps.loop, &t->ttl_timer);
	admit_free(t->admit);
	free(t->buckets);
	free(t);
}

void exchange_table_set_yield(struct exchange_table *t, void (*fn)(void *), void *arg)
{
	t->yield = fn;
	t->yield_arg = arg;
}

size_t exchange_table_count(const struct exchange_table *t)
{
	return t->count;
}

/* Fills req from args, in one pass. For miffy-tx (tx), fills res too: the
 * names of per-side arguments (headers, body, body_len, body_size) then
 * carry a "req_" or "res_" prefix, and the others go to both sides. */
static void collect_args(const struct spop_arg *args, size_t nargs, bool tx, struct message_args *req,
			 struct message_args *res)
{
#define ARG(name, sided, field) { name, sizeof(name) - 1, sided, offsetof(struct message_args, field) }
	static const struct { const char *name; size_t len; bool sided; size_t off; } names[] = {
		ARG("id", false, id), ARG("method", false, method), ARG("path", false, path),
		ARG("query", false, query), ARG("ver", false, ver), ARG("status", false, status),
		ARG("latency_us", false, latency_us), ARG("headers", true, headers),
		ARG("body", true, body), ARG("body_len", true, body_len), ARG("body_size", true, body_size),
	};
#undef ARG
	const size_t plen = sizeof("req_") - 1;

	memset(req, 0, sizeof(*req));
	if (tx)
		memset(res, 0, sizeof(*res));
	for (size_t i = 0; i < nargs; i++) {
		const char *name = args[i].name;
		size_t len = args[i].name_len;
		struct message_args *into = req;
		bool prefixed = false;

		if (args[i].value.type == SPOP_T_NULL)
			continue;
		if (tx && len > plen && memcmp(name, "res_", plen) == 0)
			into = res;
		if (tx && len > plen && (into == res || memcmp(name, "req_", plen) == 0)) {
			prefixed = true;
			name += plen;
			len -= plen;
		}
		for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
			/* With sides, per-side names carry a prefix and no other does. */
			if (prefixed != (tx && names[k].sided) || len != names[k].len ||
			    memcmp(name, names[k].name, len) != 0)
				continue;
			*(const struct spop_value **)((char *)into + names[k].off) = &args[i].value;
			if (tx && !prefixed)
				*(const struct spop_value **)((char *)res + names[k].off) = &args[i].value;
			break;
		}
	}
}

static bool is_text(const struct spop_value *v)
{
	return v && (v->type == SPOP_T_STRING || v->type == SPOP_T_BINARY);
}

/* A copy of a string argument, or NULL when absent. *failed on ENOMEM. */
static char *dup_arg(const struct spop_value *v, bool *failed)
{
	char *s;

	if (!is_text(v))
		return NULL;
	s = strndup(v->v.str.ptr, v->v.str.len);
	if (!s)
		*failed = true;
	return s;
}

/* HAProxy's buffer cut the body (body_len < body_size), or the message
 * carries less than body_len (a bytes() converter kept miffy-tx within a
 * frame). */
static bool body_cut(const struct message_args *m)
{
	int64_t len, size;

	if (!m->body_len || !spop_value_int(m->body_len, &len))
		return false;
	if (len > 0 && (!is_text(m->body) || (uint64_t)len > m->body->v.str.len))
		return true;
	return m->body_size && spop_value_int(m->body_size, &size) && len < size;
}

static bool copy_body(const struct spop_value *v, uint8_t **body, size_t *len)
{
	*body = NULL;
	*len = 0;
	if (!is_text(v) || v->v.str.len == 0)
		return true;
	*body = malloc(v->v.str.len);
	if (!*body)
		return false;
	memcpy(*body, v->v.str.ptr, v->v.str.len);
	*len = v->v.str.len;
	return true;
}

static bool method_allowed(const struct config *cfg, const char *method)
{
	for (size_t i = 0; i < cfg->methods.count; i++)
		if (strcmp(cfg->methods.items[i], method) == 0)
			return true;
	return false;
}

static void anomaly(enum anomaly a, const char *id, const char *what)
{
	stats.anomalies[a]++;
	log_msg(LOG_LEVEL_WARN, id, "%s: %s", anomaly_name(a), what);
}

static void start_replays(struct exchange_table *t, struct exchange *x)
{
	const struct config *cfg = t->deps.cfg;
	struct replay_request rq;
	int built;

	if (x->skip != SKIP_NONE)
		return;
	if (!method_allowed(cfg, x->method)) {
		x->skip = SKIP_METHOD;
		return;
	}
	if (x->req_truncated) {
		x->skip = SKIP_REQUEST_TRUNCATED;
		return;
	}
	if (!t->deps.replay)
		return;
	/* Every replay of x or none, shed fairly across endpoints when a limit
	 * is reached (admit.h): max_concurrent holds for the sum of all
	 * candidates' replays, and nothing is started to be cancelled. */
	x->skip = admit_check(t->admit, x->endpoint, ev_now(t->deps.loop), &x->admit_slot);
	if (x->skip != SKIP_NONE)
		return;
	/* one request for every role, the forwarding rules applied once */
	built = request_build(&rq, replay_rules(t->deps.replay), x->method, x->path, x->query, &x->req_headers,
			      x->req_body, x->req_body_len);
	/* The candidates in order, then the secondary. */
	for (unsigned i = 0; i <= entry_of(x)->ncandidates; i++) {
		enum replay_role r = i < entry_of(x)->ncandidates ? ROLE_CANDIDATE : ROLE_SECONDARY;
		unsigned k = r == ROLE_CANDIDATE ? i : 0;
		struct reply_at at = reply_at(x, r, k);
		int rc;

		if (r == ROLE_SECONDARY && !replay_has_secondary(t->deps.replay))
			continue;
		rc = replay_start(t->deps.replay, r, k, built == 0 ? &rq : NULL, on_replay_done, x, at.xfer);
		if (rc < 0) {
			/* All or nothing: shed every replay of x, so that the
			 * concurrency cap holds for all of them and no candidate
			 * is judged without the secondary the others had. */
			cancel_replays(t, x);
			for (unsigned j = 0; j < i; j++)
				*reply_at(x, j < entry_of(x)->ncandidates ? ROLE_CANDIDATE : ROLE_SECONDARY,
					  j < entry_of(x)->ncandidates ? j : 0).want = false;
			x->skip = rc == -1 ? SKIP_OVERLOAD : SKIP_UNREPLAYABLE;
			if (rc != -1)
				log_msg(LOG_LEVEL_INFO, x->id, "%s %s cannot be replayed to the %s: skipped",
					x->method, x->path, role_name(r));
			break;
		}
		*at.want = true;
		admit_started(t->admit, x->admit_slot, admit_target(r, k));
	}
	if (built == 0)
		request_clear(&rq);
}

/* Enters the request side of an exchange into the table and starts its
 * replays. from_vars: the request comes from txn variables (miffy-tx).
 * Returns the exchange, or NULL when the request was refused (counted and
 * logged here). */
static struct exchange *on_request(struct exchange_table *t, const struct message_args *m, bool from_vars)
{
	struct exchange *x = NULL;
	struct entry *e;
	unsigned ncand;
	bool failed = false;
	char *id;

	if (!is_text(m->method) || !is_text(m->path)) {
		id = dup_arg(m->id, &failed);
		anomaly(ANOMALY_BAD_ARGS, id, "request without method or path");
		free(id);
		return NULL;
	}
	if (table_find(t, m->id->v.str.ptr, m->id->v.str.len)) {
		id = dup_arg(m->id, &failed);
		anomaly(ANOMALY_DUPLICATE_ID, id, "a second request with this id (is unique-id-format unique?)");
		free(id);
		return NULL;
	}
	if (t->count >= t->deps.cfg->max_exchanges) {
		stats_request_dropped();
		log_msg(LOG_LEVEL_WARN, NULL, "exchange table full (max_exchanges=%u): request dropped",
			t->deps.cfg->max_exchanges);
		return NULL;
	}
	ncand = t->deps.replay ? replay_candidates(t->deps.replay) : 1;
	e = calloc(1, sizeof(*e) + (ncand - 1) * sizeof(e->more[0]));
	if (!e)
		goto oom;
	e->table = t;
	e->ncandidates = ncand;
	x = &e->x;
	x->id = dup_arg(m->id, &failed);
	x->method = dup_arg(m->method, &failed);
	x->path = dup_arg(m->path, &failed);
	x->query = dup_arg(m->query, &failed);
	x->version = dup_arg(m->ver, &failed);
	if (failed || !copy_body(m->body, &x->req_body, &x->req_body_len))
		goto oom;
	if (is_text(m->headers) &&
	    http_headers_decode((const uint8_t *)m->headers->v.str.ptr, m->headers->v.str.len,
				&x->req_headers) < 0) {
		anomaly(ANOMALY_BAD_ARGS, x->id, "request headers are not in req.hdrs_bin format");
		exchange_free(x);
		return NULL;
	}
	x->req_truncated = body_cut(m);
	/* Every request has a header block (req.hdrs_bin is never NULL), but
	 * HAProxy silently leaves a variable unset that would exceed
	 * tune.vars.*-max-size: replayed without its headers, the request
	 * would differ for nothing. */
	if (from_vars && !is_text(m->headers)) {
		x->req_truncated = true;
		log_msg(LOG_LEVEL_WARN, x->id, "miffy-tx without req_headers (a variable HAProxy did not set: "
			"tune.vars.txn-max-size?): not replayed");
	}
	if (!hold(t, x, x->req_body_len)) {
		free(x->req_body);
		x->req_body = NULL;
		x->req_body_len = 0;
	}
	x->endpoint = t->deps.route ? route_name(t->deps.route, x->method, x->path) : NULL;
	if (!x->endpoint && asprintf(&x->endpoint, "%s %s", x->method, x->path) < 0) {
		x->endpoint = NULL;
		goto oom;
	}
	x->t_request = ev_time();
	x->deadline = ev_now(t->deps.loop) + t->deps.cfg->exchange_ttl;
	stats.exchanges_started++;
	table_insert(t, x);
	start_replays(t, x);
	return x;
oom:
	stats_request_dropped();
	log_msg(LOG_LEVEL_ERROR, NULL, "out of memory: request dropped");
	if (x)
		exchange_free(x);
	return NULL;
}

/* Adds the reference's response to x and finishes x when its replays are in. */
static void on_response(struct exchange_table *t, struct exchange *x, const struct message_args *m)
{
	int64_t status, latency_us;

	if (x->have_reference) {
		anomaly(ANOMALY_DUPLICATE_ID, x->id, "a second miffy-res with this id");
		return;
	}
	if (!m->status || !spop_value_int(m->status, &status) || status < 100 || status > 999) {
		anomaly(ANOMALY_BAD_ARGS, x->id, "response without a valid status");
		return;
	}
	x->t_response = ev_time();
	x->reference.status = (int)status;
	/* miffy-tx arrives whole: the reference's time is HAProxy's to tell. */
	if (m->latency_us && spop_value_int(m->latency_us, &latency_us) && latency_us >= 0)
		x->reference.latency_ms = (double)latency_us / 1000.0;
	else
		x->reference.latency_ms = (x->t_response - x->t_request) * 1000.0;
	x->reference.truncated = body_cut(m);
	if (is_text(m->headers) &&
	    http_headers_decode((const uint8_t *)m->headers->v.str.ptr, m->headers->v.str.len,
				&x->reference.headers) < 0) {
		anomaly(ANOMALY_BAD_ARGS, x->id, "response headers are not in res.hdrs_bin format");
		return;
	}
	if (!copy_body(m->body, &x->reference.body, &x->reference.body_len)) {
		http_headers_clear(&x->reference.headers);
		log_msg(LOG_LEVEL_ERROR, x->id, "out of memory copying the reference body");
		return;
	}
	if (!hold(t, x, x->reference.body_len)) {
		free(x->reference.body);
		x->reference.body = NULL;
		x->reference.body_len = 0;
	}
	x->have_reference = true;
	maybe_finish(t, x);
}

enum message_kind { MSG_REQ = 0, MSG_RES, MSG_TX, MSG_KIND_COUNT };
static const char *const message_names[MSG_KIND_COUNT] = { "miffy-req", "miffy-res", "miffy-tx" };

void exchange_on_message(struct exchange_table *t, const char *name, size_t name_len,
			 const struct spop_arg *args, size_t nargs)
{
	struct message_args m, res;
	struct exchange *x;
	int kind = 0;

	while (kind < MSG_KIND_COUNT &&
	       (strlen(message_names[kind]) != name_len || memcmp(name, message_names[kind], name_len) != 0))
		kind++;
	if (kind == MSG_KIND_COUNT) {
		char what[160];

		snprintf(what, sizeof(what),
			 "unknown SPOE message '%.*s' ignored (expected miffy-tx, miffy-req or miffy-res)",
			 (int)(name_len > 64 ? 64 : name_len), name);
		anomaly(ANOMALY_UNKNOWN_MESSAGE, NULL, what);
		return;
	}
	collect_args(args, nargs, kind == MSG_TX, &m, &res);
	if (!is_text(m.id) || m.id->v.str.len == 0) {
		char why[96];

		snprintf(why, sizeof(why), "%s without id (set unique-id-format)", message_names[kind]);
		anomaly(ANOMALY_MISSING_ID, NULL, why);
		return;
	}
	switch (kind) {
	case MSG_REQ:
		on_request(t, &m, false);
		break;
	case MSG_RES:
		x = table_find(t, m.id->v.str.ptr, m.id->v.str.len);
		if (x) {
			on_response(t, x, &m);
		} else {
			bool failed = false;
			char *id = dup_arg(m.id, &failed);

			anomaly(ANOMALY_ORPHAN_RESPONSE, id, "miffy-res without a pending miffy-req");
			free(id);
		}
		break;
	default:
		/* The whole transaction in one message: no pairing to wait for. */
		x = on_request(t, &m, true);
		if (x)
			on_response(t, x, &res);
		break;
	}
}
