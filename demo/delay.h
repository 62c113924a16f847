/* delay — answer later without holding a thread per request.
 *
 * The access handler suspends its MHD connection and one timer thread resumes
 * it when its delay is over; MHD then calls the handler again, which answers.
 * Thousands of delayed requests cost one heap entry each and no CPU.
 */
#ifndef MIFFY_DEMO_DELAY_H
#define MIFFY_DEMO_DELAY_H

#include <stddef.h>

struct MHD_Connection;
struct demo_delay;

/* Starts the timer thread; at most max_pending connections wait at once.
 * Returns NULL (errno set) on failure; free with demo_delay_destroy(). */
struct demo_delay *demo_delay_create(size_t max_pending);

/* Suspends conn, which must be inside its access handler, and resumes it
 * after ms milliseconds. Returns 0, or -1 when the queue is full or draining:
 * the caller then answers at once. */
int demo_delay_suspend(struct demo_delay *d, struct MHD_Connection *conn,
                       unsigned ms);

/* Resumes every waiting connection now and refuses new ones. Call it before
 * MHD_stop_daemon(), which must not find suspended connections. */
void demo_delay_drain(struct demo_delay *d);

/* Stops the thread and frees d; d may be NULL. */
void demo_delay_destroy(struct demo_delay *d);

#endif
