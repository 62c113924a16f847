/* Publishing of exchanges: the Kafka message of DESIGN.md to Kafka
 * (librdkafka), a JSON lines file or stdout. Never blocks the loop. */
#ifndef MIFFY_PUBLISH_H
#define MIFFY_PUBLISH_H

#include <stdbool.h>
#include <stddef.h>

#include <ev.h>

#include "compare-t.h"
#include "exchange-t.h"

struct body_shared;
struct config;
struct publish;

/* Opens the sink named by cfg->sink. Returns NULL with a message in err. */
struct publish *publish_new(struct ev_loop *loop, const struct config *cfg, char *err, size_t errlen);

/* Hands x, which ended with outcome o (any outcome: called once for every
 * exchange that ends), to the publish policy, the only place that decides:
 * builds and sends its message when the policy sends o, keeps it in the
 * samples when the policy samples o, else does nothing. Counts published /
 * dropped; never blocks. diffs may be NULL (no differences). */
void publish_exchange(struct publish *p, const struct exchange *x, enum outcome o,
		      const struct diff_list *diffs);

/* publish_exchange, taking the bodies of x's request, reference and
 * replies from request, reference and replies[ROLE_COUNT] (decoded there
 * when not yet, e.g. by compare_responses_shared; they stay the caller's to
 * clear, and what decoding them ran into is for the caller to count). Any
 * may be NULL: decoded for this call only. */
void publish_exchange_shared(struct publish *p, const struct exchange *x, enum outcome o,
			     const struct diff_list *diffs, struct body_shared *request,
			     struct body_shared *reference, struct body_shared *replies);

/* Also keeps the message of every different, noise and candidate_error
 * exchange in s (the dashboard's samples), whatever publish= sends (the
 * policy of publish_exchange), built within samples_max_message(s). s is
 * borrowed; NULL stops it. */
struct samples;
void publish_set_samples(struct publish *p, struct samples *s);

/* Groups the exchanges by fingerprint in t and applies its
 * fingerprint_limit to what is sent (publish_exchange's policy). t is
 * borrowed; NULL stops it. */
struct fingerprints;
void publish_set_fingerprints(struct publish *p, struct fingerprints *t);
/* Queues a counter snapshot (snapshot.h) on stats_topic under key, for
 * the kafka sink; never blocks. Not counted as published: a failure is
 * logged and the next snapshot carries the same counts. 0, or -1 when the
 * sink is not kafka or the local queue refused it. */
int publish_snapshot(struct publish *p, const char *key, const char *msg, size_t len);

/* rd_kafka_conf_set(conf, key, value) with its failure said in err: 0 or
 * -1. For every librdkafka client of miffy (the report's consumer too). */
struct rd_kafka_conf_s;
int publish_kafka_set(struct rd_kafka_conf_s *conf, const char *key, const char *value, char *err, size_t errlen);

/* Sets cfg's kafka_properties ("key=value") on conf: 0, or -1 with the
 * reason in err. */
int publish_kafka_properties(struct rd_kafka_conf_s *conf, const struct config *cfg, char *err, size_t errlen);

/* True for the kafka sink. */
bool publish_to_kafka(const struct publish *p);

/* Reopens a file sink (SIGHUP). */
void publish_reopen(struct publish *p);

/* Waits up to timeout seconds for queued messages to be delivered, then
 * frees everything. Counts what could not be delivered as failed. */
void publish_free(struct publish *p, double timeout);

#endif
