/* The agent's side of the fleet view (docs/fleet.md): every
 * stats_interval and when it stops, a snapshot of its cumulative counters
 * goes to the stats topic (kafka sink) and to state_file (when set); at
 * start the agent resumes its counters from its last snapshots (state_file
 * when set, else the stats topic), so /stats, /metrics and SIGUSR2
 * continue across restarts. */
#ifndef MIFFY_CHECKPOINT_H
#define MIFFY_CHECKPOINT_H

#include <stddef.h>

#include <ev.h>

struct checkpoint;
struct config;
struct publish;

/* Resumes the counters (stats_import of what the agent counted before:
 * call before anything is counted) and starts the timer. p is borrowed and
 * must outlive the checkpoint. NULL with a message in err on allocation
 * failure only: a resume that fails is logged and the agent counts from
 * zero. */
struct checkpoint *checkpoint_new(struct ev_loop *loop, const struct config *cfg, struct publish *p, char *err,
				  size_t errlen);

/* The epoch's last snapshot (final), before the sink is flushed. */
void checkpoint_final(struct checkpoint *c);

/* Stops the timer and frees c (NULL is fine). */
void checkpoint_free(struct checkpoint *c);

#endif
