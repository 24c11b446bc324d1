/*
 * dl_time.h - the clock: nanoseconds on CLOCK_MONOTONIC (never goes back,
 * counts from boot; not wall-clock time), and condition variables that
 * wait on that clock.
 */
#ifndef DLEDGER_DL_TIME_H
#define DLEDGER_DL_TIME_H

#include <pthread.h>
#include <stdint.h>
#include <time.h>

uint64_t dl_now_ns(void);

/* pthread_cond_init() for a condition variable whose timed waits take
 * CLOCK_MONOTONIC deadlines (dl_timespec_at), so that setting the
 * wall clock never shortens or stretches a wait. 0, or an errno value. */
int dl_cond_init_monotonic(pthread_cond_t *cv);

/* The deadline for pthread_cond_timedwait() on such a condition variable
 * at the dl_now_ns() time `at_ns`. */
struct timespec dl_timespec_at(uint64_t at_ns);

#endif
