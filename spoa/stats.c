#include "stats.h"

#include <cjson/cJSON.h>

struct stats stats;

void stats_exchange_done(const struct exchange *x, enum outcome o, const struct diff_list *diffs)
{
	(void)x;
	(void)diffs;
	stats.outcomes[o]++;
	if (o == OUTCOME_SKIPPED)
		stats.skips[x->skip]++;
}

void stats_candidate_error(enum replay_role role, const char *reason)
{
	(void)role;
	(void)reason;
}

void stats_free(void)
{
}

cJSON *stats_json(void)
{
	cJSON *doc = cJSON_CreateObject(), *o;

	if (!doc)
		return NULL;
	o = cJSON_AddObjectToObject(doc, "spop");
	cJSON_AddNumberToObject(o, "connections_accepted", (double)stats.conn_accepted);
	cJSON_AddNumberToObject(o, "connections_active", (double)stats.conn_active);
	cJSON_AddNumberToObject(o, "connections_refused", (double)stats.conn_refused);
	cJSON_AddNumberToObject(o, "healthchecks", (double)stats.conn_healthchecks);
	cJSON_AddNumberToObject(o, "frames_in", (double)stats.frames_in);
	cJSON_AddNumberToObject(o, "frames_out", (double)stats.frames_out);
	cJSON_AddNumberToObject(o, "notify", (double)stats.notify_frames);
	cJSON_AddNumberToObject(o, "ack", (double)stats.ack_frames);
	cJSON_AddNumberToObject(o, "messages", (double)stats.messages);
	o = cJSON_AddObjectToObject(doc, "outcomes");
	for (int i = 0; i < OUTCOME_COUNT; i++)
		cJSON_AddNumberToObject(o, outcome_name((enum outcome)i), (double)stats.outcomes[i]);
	o = cJSON_AddObjectToObject(doc, "skipped");
	for (int i = 1; i < SKIP_REASON_COUNT; i++)
		cJSON_AddNumberToObject(o, skip_reason_name((enum skip_reason)i), (double)stats.skips[i]);
	o = cJSON_AddObjectToObject(doc, "anomalies");
	for (int i = 0; i < ANOMALY_COUNT; i++)
		cJSON_AddNumberToObject(o, anomaly_name((enum anomaly)i), (double)stats.anomalies[i]);
	return doc;
}
