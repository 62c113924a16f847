/* The table of in-flight exchanges, keyed by HAProxy's unique-id. */
#ifndef MIFFY_EXCHANGE_H
#define MIFFY_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ev.h>

#include "http-t.h"
#include "replay-t.h"
#include "exchange-t.h"

struct config;
struct spop_arg;
struct replay;
struct replay_xfer;
struct compare;
struct noise;
struct route;
struct publish;
struct exchange_table;

struct exchange_deps {
	struct ev_loop *loop;
	const struct config *cfg;
	struct replay *replay;       /* may be NULL */
	struct compare *compare;     /* may be NULL */
	struct noise *noise;         /* may be NULL */
	struct route *route;         /* may be NULL */
	struct publish *publish;     /* may be NULL */
};

/* Creates the table (deps copied; what they point to is borrowed and must
 * outlive it). Returns NULL with a message in err on allocation failure.
 * The caller frees with exchange_table_free(). */
struct exchange_table *exchange_table_new(const struct exchange_deps *deps, char *err, size_t errlen);

/* Cancels every in-flight replay, counts each pending exchange as
 * skipped (reason shutdown unless it was skipped already) and frees the
 * table (NULL is fine). */
void exchange_table_free(struct exchange_table *t);

/* Handles one SPOE message by name ("miffy-tx", or "miffy-req" / "miffy-res") with its
 * decoded arguments, which point into the caller's frame buffer and are
 * copied as needed. Never fails: problems are counted outcomes. */
void exchange_on_message(struct exchange_table *t, const char *name, size_t name_len,
			 const struct spop_arg *args, size_t nargs);

/* Has fn(arg) called before each exchange's verdict (compare, publish),
 * the costly part of the loop's work, from the replay's completion: no
 * exchange or replay is half-updated there. The agent reads its HAProxy
 * connections in it, so that a NOTIFY that arrived while the loop was
 * busy is ACKed between two verdicts, not after all of them. */
void exchange_table_set_yield(struct exchange_table *t, void (*fn)(void *), void *arg);

/* Number of exchanges in the table. */
size_t exchange_table_count(const struct exchange_table *t);

/* The names of its enums: names.h. */

#endif
