/*
 * dl_time.c - see dl_time.h.
 */
#include "common/dl_time.h"

#include <time.h>

uint64_t dl_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
