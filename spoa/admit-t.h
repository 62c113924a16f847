/* Types of admit.h, apart from its functions: the replay limits in
 * force, which stats shows. */
#ifndef MIFFY_ADMIT_T_H
#define MIFFY_ADMIT_T_H

#include <stdbool.h>

/* The limits in force. */
struct admit_limits {
	unsigned max_concurrent;        /* replays in flight, all targets */
	unsigned max_host_connections;  /* connections (and so replays in flight) per target */
	unsigned max_candidate_rps;     /* exchanges admitted per second, 0: no cap */
	bool connections_capped;        /* max_host_connections set by the user */
};

#endif
