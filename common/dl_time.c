/*
 * dl_time.c - see dl_time.h.
 */
#include "common/dl_time.h"

uint64_t dl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int dl_cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	int rc = pthread_condattr_init(&ca);
	if (rc != 0)
		return rc;
	rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	if (rc == 0)
		rc = pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return rc;
}

struct timespec dl_timespec_at(uint64_t at_ns)
{
	return (struct timespec){.tv_sec = (time_t)(at_ns / 1000000000ull),
				 .tv_nsec = (long)(at_ns % 1000000000ull)};
}
