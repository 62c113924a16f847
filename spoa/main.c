/* miffy: wiring, signals, graceful shutdown. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <curl/curl.h>
#include <ev.h>
#include <cjson/cJSON.h>

#include "admin.h"
#include "agent.h"
#include "checkpoint.h"
#include "compare.h"
#include "config.h"
#include "exchange.h"
#include "log.h"
#include "noise.h"
#include "publish.h"
#include "replay.h"
#include "report.h"
#include "route.h"
#include "fingerprint.h"
#include "samples.h"
#include "stats.h"
#include "verdict.h"

/* How often a draining agent looks whether in-flight work is done. */
#define DRAIN_POLL_SECONDS 0.05
/* After a refused health check, this long without a NOTIFY means HAProxy
 * has marked the agent down and stopped sending. */
#define DRAIN_QUIET_SECONDS 1.0

struct app {
	struct ev_loop *loop;
	struct config cfg;
	struct agent *agent;
	struct exchange_table *table;
	struct replay *replay;
	struct compare *compare;
	struct noise *noise;
	struct route *route;
	struct publish *publish;
	struct checkpoint *checkpoint;
	struct samples *samples;
	struct fingerprints *fingerprints;
	struct admin *admin;
	ev_signal sigterm, sigint, sighup, sigusr2;
	ev_timer log_tick;           /* flushes the log's "suppressed" note */
	ev_timer drain;
	ev_tstamp drain_deadline;
	bool draining;
};

static void log_stats(void)
{
	cJSON *doc = stats_json();
	char *s = doc ? cJSON_PrintUnformatted(doc) : NULL;

	log_info("stats %s", s ? s : "{}");
	free(s);
	cJSON_Delete(doc);
}

static void on_drain(struct ev_loop *loop, ev_timer *w, int revents)
{
	struct app *app = w->data;
	size_t left = exchange_table_count(app->table);
	size_t conns = agent_connection_count(app->agent);

	(void)revents;
	/* HAProxy must stop sending before we hang up: an event refused or cut
	 * costs its client up to "timeout processing", and on HAProxy 2.6 a
	 * cut event can leave the stream waiting with no timer. The refused
	 * health checks make HAProxy mark us down; until it has stopped sending
	 * (or closed its connections) we keep serving. */
	if ((left || (conns && !agent_quiet(app->agent, DRAIN_QUIET_SECONDS))) &&
	    ev_now(loop) < app->drain_deadline)
		return;
	if (left)
		log_warn("drain timeout (%.1fs): %zu exchanges still in flight, counted as skipped/shutdown",
			 app->cfg.drain_timeout, left);
	/* Expected: HAProxy often keeps its idle connections to an agent it has
	 * marked down; it no longer sends on them, so closing is now safe. */
	if (conns)
		log_info("drain: closing the %zu connections HAProxy still holds (%s)", conns,
			 agent_quiet(app->agent, DRAIN_QUIET_SECONDS) ? "HAProxy stopped sending"
								     : "drain timeout");
	ev_timer_stop(loop, w);
	ev_break(loop, EVBREAK_ALL);
}

static void on_stop(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *app = w->data;

	(void)revents;
	if (app->draining) {
		log_info("second signal: stopping now");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	app->draining = true;
	log_info("signal %d: refusing health checks so that HAProxy marks the agent down; serving its "
		 "%zu connections until it stops sending, draining %zu in-flight exchanges (up to %.1fs)",
		 w->signum, agent_connection_count(app->agent), exchange_table_count(app->table),
		 app->cfg.drain_timeout);
	agent_drain(app->agent);
	app->drain_deadline = ev_now(loop) + app->cfg.drain_timeout;
	ev_timer_init(&app->drain, on_drain, 0., DRAIN_POLL_SECONDS);
	app->drain.data = app;
	ev_timer_start(loop, &app->drain);
}

static void on_hup(struct ev_loop *loop, ev_signal *w, int revents)
{
	struct app *app = w->data;

	(void)loop;
	(void)revents;
	log_reopen();
	if (app->publish)
		publish_reopen(app->publish);
	log_info("SIGHUP: log and sink files reopened");
}

static void on_usr2(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_stats();
}

static void on_log_tick(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	log_flush();
}

static void watch_signal(struct app *app, ev_signal *w, void (*cb)(struct ev_loop *, ev_signal *, int), int sig)
{
	ev_signal_init(w, cb, sig);
	w->data = app;
	ev_signal_start(app->loop, w);
}

/* Reports a constructor's failure, its err text once, and returns rc (the
 * exit status): 2 for what the configuration decides, 1 otherwise. */
static int start_failed(const char *what, const char *err, int rc)
{
	fprintf(stderr, "miffy: %s%s%s\n", what ? what : "", what ? ": " : "", err);
	return rc;
}

/* Candidate connections are sized from the descriptor limit (admit.h):
 * the soft limit goes up to the hard one, as a server's should. */
static void raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == -1)
			log_msg(LOG_LEVEL_WARN, NULL, "cannot raise the descriptor limit to %llu: %s",
				(unsigned long long)rl.rlim_max, strerror(errno));
	}
}

static int app_start(struct app *app)
{
	struct exchange_deps deps;
	char err[512] = "";

	app->route = route_new(app->cfg.endpoints.items, app->cfg.endpoints.count, err, sizeof(err));
	if (!app->route)
		return start_failed("endpoints", err, 2);
	app->compare = compare_new(&app->cfg, err, sizeof(err));
	if (!app->compare)
		return start_failed(NULL, err, 2);
	app->noise = noise_new(&app->cfg, err, sizeof(err));
	if (!app->noise)
		return start_failed(NULL, err, 2);
	stats_set_noise(app->noise);
	stats_set_latency_rule(&(struct latency_rule){ .tolerance = app->cfg.latency_tolerance,
						       .floor_ms = app->cfg.latency_floor_ms,
						       .min_count = app->cfg.latency_min_count });
	app->replay = replay_new(app->loop, &app->cfg, err, sizeof(err));
	if (!app->replay)
		return start_failed(NULL, err[0] ? err : "out of memory", 2);
	{
		const char *names[MIFFY_MAX_CANDIDATES];
		unsigned n = app->cfg.ncandidates;

		for (unsigned k = 0; k < n; k++)
			names[k] = config_candidate_name(&app->cfg, k);
		if (stats_set_candidates(names, n) < 0)
			return start_failed(NULL, "out of memory", 1);
	}
	app->publish = publish_new(app->loop, &app->cfg, err, sizeof(err));
	if (!app->publish) {
		char what[256];

		snprintf(what, sizeof(what), "sink %s", app->cfg.sink);
		return start_failed(what, err, 2);
	}
	{
		struct fingerprint_limits lim = {
			.max_entries = app->cfg.fingerprints_max, .per_interval = app->cfg.fingerprint_limit,
			.interval = app->cfg.fingerprint_interval,
		};

		app->fingerprints = fingerprints_new(&lim, err, sizeof(err));
		if (!app->fingerprints)
			return start_failed(NULL, err, 1);
		publish_set_fingerprints(app->publish, app->fingerprints);
		stats_set_fingerprints(app->fingerprints);
	}
	/* Before anything is counted: the counters resume from the last run. */
	app->checkpoint = checkpoint_new(app->loop, &app->cfg, app->publish, err, sizeof(err));
	if (!app->checkpoint)
		return start_failed(NULL, err, 2);
	/* The dashboard's samples: only with an admin address to show them. */
	if (strcmp(app->cfg.admin, "off") != 0 && app->cfg.samples_per_endpoint > 0) {
		struct samples_limits lim = {
			.per_endpoint = app->cfg.samples_per_endpoint, .per_field = app->cfg.samples_per_field,
			.endpoint_bytes = app->cfg.samples_endpoint_bytes, .max_count = app->cfg.samples_max,
			.max_bytes = app->cfg.samples_max_bytes,
		};

		app->samples = samples_new(&lim, err, sizeof(err));
		if (!app->samples)
			return start_failed(NULL, err, 1);
		publish_set_samples(app->publish, app->samples);
		stats_set_samples(app->samples);
	}
	deps = (struct exchange_deps){
		.loop = app->loop, .cfg = &app->cfg, .replay = app->replay, .compare = app->compare,
		.noise = app->noise, .route = app->route, .publish = app->publish,
	};
	app->table = exchange_table_new(&deps, err, sizeof(err));
	if (!app->table)
		return start_failed(NULL, err, 1);
	app->agent = agent_new(app->loop, &app->cfg, app->table, err, sizeof(err));
	if (!app->agent)
		return start_failed(NULL, err, 1);
	if (strcmp(app->cfg.admin, "off") != 0) {
		app->admin = admin_new(app->loop, &app->cfg, err, sizeof(err));
		if (!app->admin)
			return start_failed("admin", err, 1);
		admin_set_samples(app->admin, app->samples);
	}
	return 0;
}

static void app_stop(struct app *app)
{
	admin_free(app->admin);
	app->admin = NULL;
	if (app->agent) {
		agent_close_all(app->agent);
		/* Let the DISCONNECT frames go out. */
		ev_run(app->loop, EVRUN_NOWAIT);
	}
	if (app->table)
		exchange_table_free(app->table);
	checkpoint_final(app->checkpoint);
	checkpoint_free(app->checkpoint);
	app->checkpoint = NULL;
	if (app->publish)
		publish_free(app->publish, app->cfg.flush_timeout);
	agent_free(app->agent);
	stats_set_fingerprints(NULL);
	fingerprints_free(app->fingerprints);
	app->fingerprints = NULL;
	stats_set_samples(NULL);
	samples_free(app->samples);
	app->samples = NULL;
	replay_free(app->replay);
	stats_set_noise(NULL);
	noise_free(app->noise);
	compare_free(app->compare);
	route_free(app->route);
}

int main(int argc, char **argv)
{
	struct app app;
	char err[512];
	int rc;

	memset(&app, 0, sizeof(app));
	rc = config_load(&app.cfg, argc, argv);
	if (rc != 0) {
		config_free(&app.cfg);
		return rc == 1 ? 0 : 2;
	}
	if (log_setup(app.cfg.log_level, app.cfg.log_json, app.cfg.log_file, err, sizeof(err)) < 0) {
		start_failed(NULL, err, 2);
		config_free(&app.cfg);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	raise_nofile();
	if (app.cfg.report) {
		rc = report_run(&app.cfg);
		log_flush();
		config_free(&app.cfg);
		return rc;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "miffy: curl_global_init failed\n");
		config_free(&app.cfg);
		return 1;
	}
	stats.started = ev_time();
	app.loop = ev_default_loop(EVFLAG_AUTO);
	/* Before the ports open: a signal that comes as soon as someone can
	 * connect (a reload, logrotate's SIGHUP) waits for the loop instead of
	 * killing the process by its default action. */
	watch_signal(&app, &app.sigterm, on_stop, SIGTERM);
	watch_signal(&app, &app.sigint, on_stop, SIGINT);
	watch_signal(&app, &app.sighup, on_hup, SIGHUP);
	watch_signal(&app, &app.sigusr2, on_usr2, SIGUSR2);
	rc = app_start(&app);
	if (rc == 0) {
		ev_timer_init(&app.log_tick, on_log_tick, 1., 1.);
		ev_timer_start(app.loop, &app.log_tick);
		log_info("miffy %s listening on %s, candidate %s%s%s%s, sink %s, admin %s", MIFFY_VERSION,
			 app.cfg.listen, app.cfg.cands[0].url,
			 app.cfg.ncandidates > 1 ? " and more (several candidates)" : "",
			 app.cfg.secondary ? ", secondary " : "",
			 app.cfg.secondary ? app.cfg.secondary : "", app.cfg.sink, app.cfg.admin);
		ev_run(app.loop, 0);
	}
	app_stop(&app);
	if (rc == 0) {
		log_stats();
		log_info("stopped");
		log_finish(2.0);
	}
	stats_free();
	ev_loop_destroy(app.loop);
	curl_global_cleanup();
	config_free(&app.cfg);
	return rc;
}
