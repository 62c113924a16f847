/* delay — a min-heap of (deadline, suspended connection) served by one
 * thread that sleeps on a CLOCK_MONOTONIC condition variable. */
#include "delay.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include <microhttpd.h>

struct pending {
	uint64_t deadline_ns;
	uint64_t seq;          /* FIFO among equal deadlines */
	struct MHD_Connection *conn;
};

struct demo_delay {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	pthread_t thread;
	struct pending *heap;
	size_t len;
	size_t cap;
	uint64_t seq;
	bool draining;
	bool quit;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool earlier(const struct pending *a, const struct pending *b)
{
	if (a->deadline_ns != b->deadline_ns)
		return a->deadline_ns < b->deadline_ns;
	return a->seq < b->seq;
}

static void heap_push(struct demo_delay *d, struct pending p)
{
	size_t i = d->len++;

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!earlier(&p, &d->heap[parent]))
			break;
		d->heap[i] = d->heap[parent];
		i = parent;
	}
	d->heap[i] = p;
}

static struct pending heap_pop(struct demo_delay *d)
{
	struct pending top = d->heap[0];
	struct pending last = d->heap[--d->len];
	size_t i = 0;

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= d->len)
			break;
		if (child + 1 < d->len && earlier(&d->heap[child + 1], &d->heap[child]))
			child++;
		if (!earlier(&d->heap[child], &last))
			break;
		d->heap[i] = d->heap[child];
		i = child;
	}
	if (d->len > 0)
		d->heap[i] = last;
	return top;
}

/* Resuming under our lock is safe: MHD takes its own mutex inside
 * MHD_resume_connection() and never calls the access handler with it held,
 * so the lock order is always ours, then MHD's. */
static void *delay_thread(void *arg)
{
	struct demo_delay *d = arg;

	pthread_mutex_lock(&d->lock);
	while (!d->quit) {
		if (d->len == 0) {
			pthread_cond_wait(&d->wake, &d->lock);
			continue;
		}
		uint64_t now = now_ns();
		if (d->heap[0].deadline_ns <= now) {
			struct pending p = heap_pop(d);

			MHD_resume_connection(p.conn);
			continue;
		}
		struct timespec until = {
			.tv_sec = (time_t)(d->heap[0].deadline_ns / 1000000000u),
			.tv_nsec = (long)(d->heap[0].deadline_ns % 1000000000u),
		};
		pthread_cond_timedwait(&d->wake, &d->lock, &until);
	}
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

struct demo_delay *demo_delay_create(size_t max_pending)
{
	struct demo_delay *d = calloc(1, sizeof(*d));
	pthread_condattr_t attr;
	int err;

	if (d == NULL)
		return NULL;
	d->cap = max_pending > 0 ? max_pending : 1;
	d->heap = calloc(d->cap, sizeof(*d->heap));
	if (d->heap == NULL)
		goto fail_heap;
	if ((err = pthread_mutex_init(&d->lock, NULL)) != 0)
		goto fail_mutex;
	if ((err = pthread_condattr_init(&attr)) != 0)
		goto fail_attr;
	if ((err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC)) != 0 ||
	    (err = pthread_cond_init(&d->wake, &attr)) != 0) {
		pthread_condattr_destroy(&attr);
		goto fail_attr;
	}
	pthread_condattr_destroy(&attr);
	if ((err = pthread_create(&d->thread, NULL, delay_thread, d)) != 0)
		goto fail_thread;
	return d;

fail_thread:
	pthread_cond_destroy(&d->wake);
fail_attr:
	pthread_mutex_destroy(&d->lock);
fail_mutex:
	free(d->heap);
	errno = err;
fail_heap:
	free(d);
	return NULL;
}

int demo_delay_suspend(struct demo_delay *d, struct MHD_Connection *conn,
                       unsigned ms)
{
	int rc = -1;

	/* Suspending and queueing under one lock: a drain that starts after
	 * the check below still finds this connection in the heap. */
	pthread_mutex_lock(&d->lock);
	if (!d->draining && d->len < d->cap) {
		struct pending p = {
			.deadline_ns = now_ns() + (uint64_t)ms * 1000000u,
			.seq = d->seq++,
			.conn = conn,
		};

		MHD_suspend_connection(conn);
		heap_push(d, p);
		if (d->heap[0].conn == conn)
			pthread_cond_signal(&d->wake);
		rc = 0;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void demo_delay_drain(struct demo_delay *d)
{
	pthread_mutex_lock(&d->lock);
	d->draining = true;
	while (d->len > 0) {
		struct pending p = heap_pop(d);

		MHD_resume_connection(p.conn);
	}
	pthread_mutex_unlock(&d->lock);
}

void demo_delay_destroy(struct demo_delay *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->quit = true;
	pthread_cond_signal(&d->wake);
	pthread_mutex_unlock(&d->lock);
	pthread_join(d->thread, NULL);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->lock);
	free(d->heap);
	free(d);
}
