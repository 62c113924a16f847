#include "minutes.h"

#include <math.h>
#include <string.h>

static int64_t minute_of(double now)
{
	return (int64_t)floor(now / 60.0);
}

static size_t slot_of(int64_t minute)
{
	int64_t s = minute % MINUTES_KEPT;

	return (size_t)(s < 0 ? s + MINUTES_KEPT : s);
}

void minutes_add(struct minutes *m, double now, enum outcome o)
{
	int64_t minute = minute_of(now);
	struct minute_bucket *b = &m->b[slot_of(minute)];

	if (o != OUTCOME_EQUAL && o != OUTCOME_DIFFERENT && o != OUTCOME_NOISE && o != OUTCOME_CANDIDATE_ERROR)
		return;
	/* The slot still holds the minute an hour (or more) ago: start over. */
	if (b->minute != minute) {
		memset(b, 0, sizeof(*b));
		b->minute = minute;
	}
	switch (o) {
	case OUTCOME_DIFFERENT:
		b->different++;
		b->compared++;
		break;
	case OUTCOME_NOISE:
		b->noise++;
		b->compared++;
		break;
	case OUTCOME_CANDIDATE_ERROR:
		b->candidate_error++;
		break;
	default:
		b->compared++;
		break;
	}
}

struct minute_bucket minutes_at(const struct minutes *m, double now, unsigned ago)
{
	int64_t minute = minute_of(now) - (int64_t)ago;
	struct minute_bucket out = { .minute = minute };

	if (ago < MINUTES_KEPT && m->b[slot_of(minute)].minute == minute)
		out = m->b[slot_of(minute)];
	return out;
}
