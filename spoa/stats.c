#include "stats.h"

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
