/* Types of minutes.h, apart from its functions (HAProxy's -t.h convention):
 * a module that only needs these includes this file, not minutes.h. */
#ifndef MIFFY_MINUTES_T_H
#define MIFFY_MINUTES_T_H

#include <stdint.h>

#define MINUTES_KEPT 60

struct minute_bucket {
	int64_t minute;          /* wall-clock minute (seconds / 60) it counts, 0: never used */
	uint32_t compared;       /* equal + different + noise */
	uint32_t different;
	uint32_t noise;
	uint32_t candidate_error;
};

struct minutes {
	struct minute_bucket b[MINUTES_KEPT];
};

#endif
