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

void minutes_put(struct minutes *m, const struct minute_bucket *b)
{
	struct minute_bucket *d;

	if (!b->minute)
		return;
	d = &m->b[slot_of(b->minute)];
	/* The slot holds a later minute: b is more than an hour older. */
	if (d->minute > b->minute)
		return;
	if (d->minute != b->minute) {
		memset(d, 0, sizeof(*d));
		d->minute = b->minute;
	}
	d->compared += b->compared;
	d->different += b->different;
	d->noise += b->noise;
	d->candidate_error += b->candidate_error;
}

void minutes_merge(struct minutes *m, const struct minutes *add)
{
	for (size_t i = 0; i < MINUTES_KEPT; i++)
		minutes_put(m, &add->b[i]);
}

static uint32_t minus32(uint32_t a, uint32_t b)
{
	return a > b ? a - b : 0;
}

void minutes_subtract(struct minutes *m, const struct minutes *sub)
{
	for (size_t i = 0; i < MINUTES_KEPT; i++) {
		const struct minute_bucket *b = &sub->b[i];
		struct minute_bucket *d = &m->b[slot_of(b->minute)];

		if (!b->minute || d->minute != b->minute)
			continue;
		d->compared = minus32(d->compared, b->compared);
		d->different = minus32(d->different, b->different);
		d->noise = minus32(d->noise, b->noise);
		d->candidate_error = minus32(d->candidate_error, b->candidate_error);
	}
}
