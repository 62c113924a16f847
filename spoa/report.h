/* The fleet view: `miffy report` reads every agent's counter snapshots
 * (stats_topic) and differences (topic) from Kafka, merges the latest
 * snapshot of every agent epoch and serves the agent's /stats, /metrics,
 * /health and dashboard for the whole fleet (docs/fleet.md). Also the scan
 * an agent resumes its own counters from. */
#ifndef MIFFY_REPORT_H
#define MIFFY_REPORT_H

#include <stddef.h>

struct config;

/* Called for each message of a scanned topic. */
typedef void (*report_each_fn)(const char *msg, size_t len, void *ctx);

/* Reads topic on cfg->kafka_brokers from the start of every partition to
 * its end as of now, calling fn for each message. Blocks, up to timeout
 * seconds. 0 when everything was read, -1 with the reason in err (what
 * was read until then was handed to fn). */
int report_scan(const struct config *cfg, const char *topic, double timeout, report_each_fn fn, void *ctx,
		char *err, size_t errlen);

/* Runs the report until SIGTERM or SIGINT. Returns the exit status (0, 1
 * at runtime, 2 for what the configuration decides). */
int report_run(struct config *cfg);

#endif
