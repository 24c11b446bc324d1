/*
 * dl_time.h - the clock: nanoseconds on CLOCK_MONOTONIC (never goes back,
 * counts from boot; not wall-clock time).
 */
#ifndef DLEDGER_DL_TIME_H
#define DLEDGER_DL_TIME_H

#include <stdint.h>

uint64_t dl_now_ns(void);

#endif
