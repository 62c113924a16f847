/* Noise detection with a secondary reference: per request, differences the
 * reference and the secondary also disagree on; per endpoint and field,
 * Diffy's raw-vs-noise rule. */
#ifndef MIFFY_NOISE_H
#define MIFFY_NOISE_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "compare-t.h"

struct config;
struct noise;

/* Per-endpoint raw/noise tables with cfg's thresholds. Returns NULL with a
 * message in err on allocation failure. The caller frees with noise_free()
 * (NULL is fine). */
struct noise *noise_new(const struct config *cfg, char *err, size_t errlen);
void noise_free(struct noise *n);

/* Records one exchange of endpoint: raw = reference vs candidate, sec =
 * reference vs secondary. Sets raw->items[i].noise for each difference that
 * is noise (per request, or per field by the thresholds). Returns true when
 * raw holds at least one difference and all of them are noise. */
bool noise_mark(struct noise *n, const char *endpoint, struct diff_list *raw,
		const struct diff_list *sec);

/* Per endpoint and field raw/noise counts as a JSON object for /stats, or
 * NULL on allocation failure. The caller frees. This table (written only
 * by noise_mark) is the input of Diffy's rule: raw counts the exchanges a
 * secondary answered where the candidate differed, noise those where the
 * secondary differed. It is not stats' "fields" table, which counts every
 * different or noise exchange, and noise as judged (see stats.h). */
cJSON *noise_stats_json(const struct noise *n, const char *endpoint);

/* The same object for /stats, written into w as the member key of the
 * object w is in: `"key":{"<field>":{...},...}`, and nothing when noise_mark
 * has counted no field of endpoint. Each field also has "confidence" (see
 * verdict.h): {"n", "lower", "upper", "verdict"}. */
struct jsonw;
void noise_stats_write(const struct noise *n, const char *endpoint, const char *key, struct jsonw *w);

/* How many fields of endpoint have each confidence verdict (verdict.h's
 * verdict_noise on raw, noise and the endpoint's exchanges): fills
 * counts[NOISE_VERDICT_COUNT]. False (counts all 0) when noise_mark never
 * saw the endpoint. */
bool noise_verdict_counts(const struct noise *n, const char *endpoint, uint64_t *counts);

/* The name under which candidate's raw/noise counts of endpoint are kept
 * when an agent compares several candidates (each has tables of its own):
 * "CANDIDATE" U+001F "ENDPOINT". The caller frees; NULL on ENOMEM. */
char *noise_candidate_key(const char *candidate, const char *endpoint);

#endif
