#include "verdict.h"

#include <math.h>

static const char *const latency_names[LATENCY_VERDICT_COUNT] = {
	"insufficient_data", "within_tolerance", "slower",
};
static const char *const noise_names[NOISE_VERDICT_COUNT] = {
	"insufficient_data", "noise", "regression",
};

const char *latency_verdict_name(enum latency_verdict v)
{
	return (unsigned)v < LATENCY_VERDICT_COUNT ? latency_names[v] : "unknown";
}

const char *noise_verdict_name(enum noise_verdict v)
{
	return (unsigned)v < NOISE_VERDICT_COUNT ? noise_names[v] : "unknown";
}

/* Both halves of the rule: a small absolute gap (0.1 ms against 0.2 ms is
 * twice as slow) and a small relative one on a slow endpoint are not
 * verdicts. */
static bool slower(const struct latency_rule *rule, double ref, double cand)
{
	return cand > ref * (1.0 + rule->tolerance) && cand - ref > rule->floor_ms;
}

static double ratio(double cand, double ref)
{
	return ref > 0 ? cand / ref : 0;
}

void verdict_latency(const struct latency_rule *rule, const struct latency_side *ref,
		     const struct latency_side *cand, struct latency_judgement *out)
{
	out->ratio_p50 = ratio(cand->p50, ref->p50);
	out->ratio_p99 = ratio(cand->p99, ref->p99);
	out->slower_p50 = false;
	out->slower_p99 = false;
	if (!ref->count || !cand->count || ref->count < rule->min_count || cand->count < rule->min_count) {
		out->verdict = LATENCY_INSUFFICIENT_DATA;
		return;
	}
	out->slower_p50 = slower(rule, ref->p50, cand->p50);
	out->slower_p99 = slower(rule, ref->p99, cand->p99);
	out->verdict = out->slower_p50 || out->slower_p99 ? LATENCY_SLOWER : LATENCY_WITHIN_TOLERANCE;
}

struct verdict_interval verdict_wilson(uint64_t k, uint64_t n, double z)
{
	struct verdict_interval iv = { 0, 1 };
	double dn = (double)n, dk, z2 = z * z, centre, half;

	if (!n)
		return iv;
	dk = (double)(k < n ? k : n);
	centre = (dk + z2 / 2) / (dn + z2);
	half = z / (dn + z2) * sqrt(dk * (dn - dk) / dn + z2 / 4);
	/* At k = 0 or k = n the bound is exactly 0 or 1 in exact arithmetic. */
	iv.lower = k == 0 ? 0 : centre - half;
	iv.upper = k >= n ? 1 : centre + half;
	return iv;
}

struct verdict_interval verdict_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z)
{
	struct verdict_interval w1 = verdict_wilson(k1, n1, z), w2 = verdict_wilson(k2, n2, z), iv;
	double p1 = n1 ? (double)(k1 < n1 ? k1 : n1) / (double)n1 : 0;
	double p2 = n2 ? (double)(k2 < n2 ? k2 : n2) / (double)n2 : 0;
	double d = p1 - p2;

	iv.lower = d - sqrt((p1 - w1.lower) * (p1 - w1.lower) + (w2.upper - p2) * (w2.upper - p2));
	iv.upper = d + sqrt((w1.upper - p1) * (w1.upper - p1) + (p2 - w2.lower) * (p2 - w2.lower));
	return iv;
}

static enum noise_verdict judge(uint64_t n, double lower)
{
	if (n < VERDICT_MIN_EXCHANGES)
		return NOISE_INSUFFICIENT_DATA;
	return lower > 0 ? NOISE_REGRESSION : NOISE_NOT_DIFFERENT;
}

void verdict_noise(uint64_t raw, uint64_t noise, uint64_t n, struct noise_confidence *out)
{
	if (raw > n)
		raw = n;
	if (noise > n)
		noise = n;
	out->raw_rate = n ? (double)raw / (double)n : 0;
	out->noise_rate = n ? (double)noise / (double)n : 0;
	out->diff = verdict_newcombe(raw, n, noise, n, VERDICT_Z);
	out->verdict = judge(n, out->diff.lower);
}

enum noise_verdict verdict_noise_only(uint64_t raw, uint64_t noise, uint64_t n)
{
	if (raw > n)
		raw = n;
	if (noise > n)
		noise = n;
	if (n < VERDICT_MIN_EXCHANGES)
		return NOISE_INSUFFICIENT_DATA;
	/* raw <= noise: p1 - p2 <= 0, so the lower bound is too. */
	if (raw <= noise)
		return NOISE_NOT_DIFFERENT;
	return judge(n, verdict_newcombe(raw, n, noise, n, VERDICT_Z).lower);
}
