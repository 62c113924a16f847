/* Verdicts drawn from counts: the candidate's latency against the
 * reference's, and a confidence interval for "the candidate differs on a
 * field more often than the secondary does". Pure functions, no state: the
 * counts live in stats.c (latency) and noise.c (raw/noise); docs/comparison.md
 * has the math. */
#ifndef MIFFY_VERDICT_H
#define MIFFY_VERDICT_H

#include <stdbool.h>
#include <stdint.h>

/* ---- latency ----------------------------------------------------------- */

/* The candidate is slower at a quantile when both
 *   candidate > reference * (1 + tolerance)      (relative)
 *   candidate - reference > floor_ms              (absolute)
 * hold; no verdict at all while either side has fewer than min_count
 * latencies. */
struct latency_rule {
	double tolerance;            /* latency_tolerance, 0.25: 25 % slower is allowed */
	double floor_ms;             /* latency_floor_ms, 5 */
	uint64_t min_count;          /* latency_min_count, 100 */
};

enum latency_verdict {
	LATENCY_INSUFFICIENT_DATA = 0,
	LATENCY_WITHIN_TOLERANCE,
	LATENCY_SLOWER,
	LATENCY_VERDICT_COUNT
};

/* One side's latencies: how many, and two quantiles in ms. */
struct latency_side {
	uint64_t count;
	double p50, p99;
};

struct latency_judgement {
	enum latency_verdict verdict;
	bool slower_p50, slower_p99;     /* which quantiles broke the rule */
	double ratio_p50, ratio_p99;     /* candidate / reference; 0 when the reference's is 0 */
};

/* Judges cand against ref by rule: slower when p50 or p99 is slower. */
void verdict_latency(const struct latency_rule *rule, const struct latency_side *ref,
		     const struct latency_side *cand, struct latency_judgement *out);

/* "insufficient_data", "within_tolerance", "slower". */
const char *latency_verdict_name(enum latency_verdict v);

/* ---- confidence for noise ---------------------------------------------- */

/* The confidence of the interval: two-sided 95 %, z = the standard normal's
 * 0.975 quantile. A regression is called when the lower bound is above 0,
 * i.e. at one-sided 97.5 %. */
#define VERDICT_CONFIDENCE 0.95
#define VERDICT_Z 1.959963984540054
/* Fewer exchanges (with a secondary's answer) than this: no verdict. */
#define VERDICT_MIN_EXCHANGES 10

struct verdict_interval {
	double lower, upper;
};

/* Wilson's score interval for k successes in n trials at z (k <= n). n = 0
 * gives [0, 1]. */
struct verdict_interval verdict_wilson(uint64_t k, uint64_t n, double z);

/* Newcombe's hybrid score interval (his method 10) for p1 - p2, with
 * p1 = k1/n1 and p2 = k2/n2, from the two Wilson intervals at z. */
struct verdict_interval verdict_newcombe(uint64_t k1, uint64_t n1, uint64_t k2, uint64_t n2, double z);

enum noise_verdict {
	NOISE_INSUFFICIENT_DATA = 0,
	NOISE_NOT_DIFFERENT,          /* "noise": not shown to differ more than the secondary */
	NOISE_REGRESSION,
	NOISE_VERDICT_COUNT
};

struct noise_confidence {
	enum noise_verdict verdict;
	double raw_rate, noise_rate;     /* raw / n, noise / n */
	struct verdict_interval diff;            /* of raw_rate - noise_rate, VERDICT_CONFIDENCE */
};

/* The verdict on one field of an endpoint: raw of n exchanges differed
 * between reference and candidate there, noise of the same n between
 * reference and secondary. raw and noise are clamped to n. */
void verdict_noise(uint64_t raw, uint64_t noise, uint64_t n, struct noise_confidence *out);

/* verdict_noise()'s verdict alone, without the interval where it cannot
 * change it (too few exchanges, raw <= noise): for counting many fields. */
enum noise_verdict verdict_noise_only(uint64_t raw, uint64_t noise, uint64_t n);

/* "insufficient_data", "noise", "regression". */
const char *noise_verdict_name(enum noise_verdict v);

#endif
