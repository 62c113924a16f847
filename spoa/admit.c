#include "admit.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "config-t.h"
#include "hash.h"

/* Open addressing over the endpoints' names: a power of two, more than
 * twice ADMIT_MAX_ENDPOINTS so probes stay short. */
#define ADMIT_INDEX_SLOTS 256
/* The rate cap is paced within each second: by a tenth of the way into
 * it, a tenth more of the cap may have been used. */
#define ADMIT_PACE_STEP 0.1

_Static_assert(ADMIT_MAX_TARGETS == ROLE_COUNT - 1 + MIFFY_MAX_CANDIDATES, "a target per candidate and the secondary");

struct admit_slot {
	char *name;                      /* NULL: the shared "other" slot */
	double last_seen;                /* < 0: never */
	unsigned inflight[ADMIT_MAX_TARGETS];
	unsigned inflight_all;
	uint64_t window;                 /* the rate window win_count belongs to */
	unsigned win_count;
};

struct admit {
	struct admit_limits lim;
	unsigned targets;
	struct admit_slot slots[ADMIT_MAX_ENDPOINTS + 1];   /* the last is "other" */
	unsigned nslots;
	uint8_t index[ADMIT_INDEX_SLOTS];                   /* slot + 1, 0: empty */
	unsigned inflight[ADMIT_MAX_TARGETS];
	unsigned inflight_all;
	unsigned active;                 /* endpoints seen within ADMIT_ACTIVE_SECONDS */
	double recounted;                /* when active was last counted from scratch */
	uint64_t window;                 /* rate windows since the first, 1-based */
	double window_start;
	unsigned win_used;
};

void admit_limits_derive(const struct config *cfg, unsigned long nofile, unsigned targets,
			 struct admit_limits *out)
{
	unsigned long fds = 0, per_target;
	size_t conc = cfg->max_buffered / ADMIT_REPLAY_COST;

	if (targets == 0)
		targets = 1;
	memset(out, 0, sizeof(*out));
	out->max_concurrent = cfg->max_concurrent;
	if (!out->max_concurrent)
		out->max_concurrent = conc == 0 ? 1 : conc > UINT32_MAX ? UINT32_MAX : (unsigned)conc;
	out->max_host_connections = cfg->max_host_connections;
	out->connections_capped = cfg->max_host_connections != 0;
	if (!out->max_host_connections) {
		if (nofile > (unsigned long)cfg->max_connections + ADMIT_FD_RESERVE)
			fds = nofile - cfg->max_connections - ADMIT_FD_RESERVE;
		per_target = fds / targets;
		out->max_host_connections = out->max_concurrent;
		if (per_target < out->max_host_connections)
			out->max_host_connections = per_target ? (unsigned)per_target : 1;
	}
	out->max_candidate_rps = cfg->max_candidate_rps;
}

void admit_limits_of(const struct config *cfg, unsigned targets, struct admit_limits *out)
{
	struct rlimit rl;
	unsigned long nofile = 1024;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		nofile = rl.rlim_cur == RLIM_INFINITY ? UINT32_MAX : (unsigned long)rl.rlim_cur;
	admit_limits_derive(cfg, nofile, targets, out);
}

bool admit_fair(unsigned used, unsigned limit, unsigned mine, unsigned active)
{
	unsigned share, reserve = limit / 8 + (limit % 8 != 0);

	if (used >= limit)
		return false;
	if (active == 0)
		active = 1;
	share = limit / active + (limit % active != 0);
	if (mine < share)
		return true;
	return limit - used > reserve;
}

struct admit *admit_new(const struct admit_limits *lim, unsigned targets, char *err, size_t errlen)
{
	struct admit *a = calloc(1, sizeof(*a));

	if (!a) {
		snprintf(err, errlen, "admission: out of memory");
		return NULL;
	}
	a->lim = *lim;
	a->targets = targets == 0 ? 1 : targets > ADMIT_MAX_TARGETS ? ADMIT_MAX_TARGETS : targets;
	for (size_t i = 0; i <= ADMIT_MAX_ENDPOINTS; i++)
		a->slots[i].last_seen = -1;
	a->recounted = -1;
	return a;
}

void admit_free(struct admit *a)
{
	if (!a)
		return;
	for (size_t i = 0; i < a->nslots; i++)
		free(a->slots[i].name);
	free(a);
}

/* The slot of endpoint name, made on first sight; "other" once the table
 * is full or out of memory. */
static unsigned slot_of(struct admit *a, const char *name)
{
	size_t h = (size_t)hash_string(name ? name : "");

	for (size_t probe = 0; name && probe < ADMIT_INDEX_SLOTS; probe++) {
		uint8_t *ix = &a->index[(h + probe) & (ADMIT_INDEX_SLOTS - 1)];

		if (*ix == 0) {
			char *copy;

			if (a->nslots == ADMIT_MAX_ENDPOINTS || !(copy = strdup(name)))
				break;
			a->slots[a->nslots].name = copy;
			*ix = (uint8_t)++a->nslots;
			return a->nslots - 1;
		}
		if (strcmp(a->slots[*ix - 1].name, name) == 0)
			return *ix - 1u;
	}
	return ADMIT_MAX_ENDPOINTS;
}

/* Marks s seen at now and keeps the count of active endpoints: each
 * newly active one adds itself, and a recount each second drops those
 * that went quiet. */
static void see(struct admit *a, struct admit_slot *s, double now)
{
	if (s->last_seen < 0 || now - s->last_seen > ADMIT_ACTIVE_SECONDS)
		a->active++;
	s->last_seen = now;
	if (a->recounted < 0 || now - a->recounted >= 1.0) {
		unsigned n = 0;

		for (size_t i = 0; i <= ADMIT_MAX_ENDPOINTS; i++)
			if (a->slots[i].last_seen >= 0 && now - a->slots[i].last_seen <= ADMIT_ACTIVE_SECONDS)
				n++;
		a->active = n;
		a->recounted = now;
	}
}

/* Moves the rate window on to the one holding now: windows follow each
 * other while the traffic goes on, and restart at now after a pause. */
static void window_at(struct admit *a, double now)
{
	if (a->window && now - a->window_start < 1.0)
		return;
	a->window_start = a->window && now - a->window_start < 2.0 ? a->window_start + 1.0 : now;
	a->window++;
	a->win_used = 0;
}

/* Of the cap, what may have been used so far in the window. */
static unsigned window_allowed(const struct admit *a, double now)
{
	double part = now - a->window_start + ADMIT_PACE_STEP;
	/* less a hair: 0.6 * 100 must not round up to 61 */
	double n = ceil((double)a->lim.max_candidate_rps * (part < 1.0 ? part : 1.0) - 1e-9);

	return n < 1.0 ? 1 : (unsigned)n;
}

enum skip_reason admit_check(struct admit *a, const char *endpoint, double now, unsigned *slot)
{
	unsigned i = slot_of(a, endpoint);
	struct admit_slot *s = &a->slots[i];

	see(a, s, now);
	if (!admit_fair(a->inflight_all + a->targets - 1, a->lim.max_concurrent, s->inflight_all, a->active))
		return SKIP_OVERLOAD;
	/* each target's own connections: every candidate gets this exchange */
	for (unsigned r = 0; r < ADMIT_MAX_TARGETS; r++)
		if (!admit_fair(a->inflight[r], a->lim.max_host_connections, s->inflight[r], a->active))
			return a->lim.connections_capped ? SKIP_CANDIDATE_CAP : SKIP_OVERLOAD;
	if (a->lim.max_candidate_rps) {
		window_at(a, now);
		if (s->window != a->window) {
			s->window = a->window;
			s->win_count = 0;
		}
		if (!admit_fair(a->win_used, window_allowed(a, now), s->win_count, a->active))
			return SKIP_CANDIDATE_CAP;
		a->win_used++;
		s->win_count++;
	}
	*slot = i;
	return SKIP_NONE;
}

unsigned admit_target(enum replay_role role, unsigned candidate)
{
	if (role != ROLE_CANDIDATE || candidate == 0)
		return (unsigned)role;
	return candidate < MIFFY_MAX_CANDIDATES ? ROLE_COUNT + candidate - 1 : ADMIT_MAX_TARGETS - 1;
}

void admit_started(struct admit *a, unsigned slot, unsigned role)
{
	struct admit_slot *s = &a->slots[slot <= ADMIT_MAX_ENDPOINTS ? slot : ADMIT_MAX_ENDPOINTS];

	a->inflight[role]++;
	a->inflight_all++;
	s->inflight[role]++;
	s->inflight_all++;
}

void admit_ended(struct admit *a, unsigned slot, unsigned role)
{
	struct admit_slot *s = &a->slots[slot <= ADMIT_MAX_ENDPOINTS ? slot : ADMIT_MAX_ENDPOINTS];

	if (s->inflight[role] == 0 || a->inflight[role] == 0)
		return;
	a->inflight[role]--;
	a->inflight_all--;
	s->inflight[role]--;
	s->inflight_all--;
}

unsigned admit_inflight(const struct admit *a)
{
	return a->inflight_all;
}
