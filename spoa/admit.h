/* Admission of exchanges to replay: the limits that bound what is in
 * flight (derived from memory and file descriptors unless set), the
 * candidate's caps (connections, requests per second), and the fair
 * shedding of what exceeds them across endpoints (docs/shedding.md).
 * Runs on the event loop; exchange.c asks before starting replays. */
#ifndef MIFFY_ADMIT_H
#define MIFFY_ADMIT_H

#include <stdbool.h>
#include <stddef.h>

#include "admit-t.h"
#include "exchange-t.h"
#include "replay-t.h"

struct config;
struct admit;

/* What one in-flight replay costs the agent, measured (docs/shedding.md):
 * its exchange (request line, headers, a 1 KiB reference body), the
 * transfer and its connection with their buffers. The default
 * max_concurrent is max_buffered divided by this. */
#define ADMIT_REPLAY_COST (16 * 1024)
/* File descriptors kept for everything but candidate connections (log,
 * sink, admin, Kafka) on top of max_connections. */
#define ADMIT_FD_RESERVE 64
/* Endpoints with their own share; later ones share "other". */
#define ADMIT_MAX_ENDPOINTS 100
/* An endpoint counts towards the fair share for this long after its last
 * exchange. */
#define ADMIT_ACTIVE_SECONDS 10.0

/* The limits cfg asks for: an unset (0) max_concurrent is max_buffered /
 * ADMIT_REPLAY_COST (at least 1), an unset max_host_connections is
 * max_concurrent, at most what nofile (the descriptor limit) leaves after
 * max_connections and ADMIT_FD_RESERVE, shared by targets. Pure. */
void admit_limits_derive(const struct config *cfg, unsigned long nofile, unsigned targets,
			 struct admit_limits *out);

/* The same with the process's own RLIMIT_NOFILE. */
void admit_limits_of(const struct config *cfg, unsigned targets, struct admit_limits *out);

/* The fair rule: may an endpoint holding mine of a budget limit, of which
 * used is taken, take one more unit when active endpoints share it? Below
 * its fair share (limit / active, rounded up) while anything is left; at or
 * above it only while more than an eighth (rounded up) of limit is left,
 * which stays for the endpoints under their share. Pure. */
bool admit_fair(unsigned used, unsigned limit, unsigned mine, unsigned active);

/* The new admission for targets (the replays of one exchange: every
 * candidate, and the secondary; at most ADMIT_MAX_TARGETS) under lim (copied). Returns NULL
 * with a message in err when out of memory. */
struct admit *admit_new(const struct admit_limits *lim, unsigned targets, char *err, size_t errlen);

void admit_free(struct admit *a);

/* Decides whether an exchange of endpoint may start its replays at time
 * now (seconds, monotonic enough: ev_now). Returns SKIP_NONE and sets
 * *slot (to pass to admit_started/admit_ended) when admitted, which takes
 * one request of the rate cap; SKIP_OVERLOAD when max_concurrent is the
 * limit that sheds it, SKIP_CANDIDATE_CAP when a cap of the candidate is
 * (max_host_connections set by the user, max_candidate_rps). */
enum skip_reason admit_check(struct admit *a, const char *endpoint, double now, unsigned *slot);

/* Targets counted apart (each its own connections, max_host_connections
 * each): every candidate and the secondary. */
#define ADMIT_MAX_TARGETS (ROLE_COUNT - 1 + 16)   /* MIFFY_MAX_CANDIDATES */

/* The target of a replay to role, candidate k of the candidates (0 for
 * the secondary): ROLE_CANDIDATE and ROLE_SECONDARY keep their numbers,
 * the further candidates follow. */
unsigned admit_target(enum replay_role role, unsigned candidate);

/* A replay of slot's endpoint to target (admit_target()) started, or
 * ended (answered, failed, cancelled). Each started one ends exactly once. */
void admit_started(struct admit *a, unsigned slot, unsigned target);
void admit_ended(struct admit *a, unsigned slot, unsigned target);

/* Replays in flight counted by a (all targets). */
unsigned admit_inflight(const struct admit *a);

#endif
