/* Shared by the libFuzzer targets and by tests/unit/test_fuzz_regressions.c,
 * which compiles the targets with -DFUZZ_NO_MAIN semantics (see there). */
#ifndef MIFFY_FUZZ_H
#define MIFFY_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

/* An invariant of the code under test; a failure is a finding, so abort
 * loudly (libFuzzer saves the input, the replay test fails). */
#define FUZZ_CHECK(cond)                                                      \
	do {                                                                  \
		if (!(cond)) {                                                \
			fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", \
				__FILE__, __LINE__, #cond);                   \
			abort();                                              \
		}                                                             \
	} while (0)

#endif
