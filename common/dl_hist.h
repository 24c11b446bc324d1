/*
 * dl_hist.h - a fixed, log-bucketed latency histogram with atomic counters.
 *
 * Bucket i counts the samples of at most 2^i microseconds (i = 0 ..
 * DL_HIST_BUCKETS - 1: 1 us .. about 67 s); the last slot counts the rest.
 * Recording costs two relaxed atomic increments (the bucket and the sum),
 * so any thread may record while any other reads. A reader may see a sum
 * a sample ahead of or behind the buckets; the count is the sum of the
 * buckets it read, so buckets and count always agree.
 */
#ifndef DLEDGER_DL_HIST_H
#define DLEDGER_DL_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define DL_HIST_BUCKETS 27u /* finite buckets: 2^0 .. 2^26 us */

struct dl_hist {
	atomic_uint_fast64_t bucket[DL_HIST_BUCKETS + 1]; /* last: over the top bound */
	atomic_uint_fast64_t sum_ns;
};

/* A copy taken by dl_hist_read(). */
struct dl_hist_snap {
	uint64_t bucket[DL_HIST_BUCKETS + 1]; /* not cumulative */
	uint64_t count;
	uint64_t sum_ns;
};

/* Zeroes h (or use a zero-initialised struct). */
void dl_hist_init(struct dl_hist *h);
/* Records one sample of `ns` nanoseconds. Any thread; NULL-safe. */
void dl_hist_record(struct dl_hist *h, uint64_t ns);
/* Reads every counter (relaxed). */
void dl_hist_read(const struct dl_hist *h, struct dl_hist_snap *out);
/* Upper bound of finite bucket i, in microseconds (2^i). */
static inline uint64_t dl_hist_bound_us(unsigned i)
{
	return (uint64_t)1 << i;
}

#endif
