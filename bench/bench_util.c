/* bench_util.c - clock, histogram, number parsing, directory removal for
 * dledger-bench. */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"

uint64_t bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket_of(uint64_t v)
{
	if (v < BENCH_HIST_SUB)
		return (unsigned)v;
	unsigned msb = 63u - (unsigned)__builtin_clzll(v);
	unsigned shift = msb - 6; /* keep 6 bits below the leading one */
	unsigned sub = (unsigned)((v >> shift) & (BENCH_HIST_SUB - 1));
	unsigned b = (shift + 1) * BENCH_HIST_SUB + sub;
	return b < BENCH_HIST_BUCKETS ? b : BENCH_HIST_BUCKETS - 1;
}

static uint64_t bucket_value(unsigned b)
{
	if (b < BENCH_HIST_SUB)
		return b;
	unsigned shift = b / BENCH_HIST_SUB - 1;
	uint64_t sub = b % BENCH_HIST_SUB;
	/* middle of the bucket */
	return ((BENCH_HIST_SUB + sub) << shift) + ((1ull << shift) >> 1);
}

_Static_assert(BENCH_HIST_SUB == 64, "bucket_of keeps log2(BENCH_HIST_SUB) bits");

void bench_hist_add(struct bench_hist *h, uint64_t ns)
{
	h->n[bucket_of(ns)]++;
	h->count++;
	if (ns > h->max_ns)
		h->max_ns = ns;
}

void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from)
{
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++)
		into->n[i] += from->n[i];
	into->count += from->count;
	if (from->max_ns > into->max_ns)
		into->max_ns = from->max_ns;
}

uint64_t bench_hist_quantile(const struct bench_hist *h, double q)
{
	if (h->count == 0)
		return 0;
	uint64_t want = (uint64_t)(q * (double)h->count);
	if (want >= h->count)
		want = h->count - 1;
	uint64_t seen = 0;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS; i++) {
		seen += h->n[i];
		if (seen > want) {
			uint64_t v = bucket_value(i);
			return v > h->max_ns ? h->max_ns : v;
		}
	}
	return h->max_ns;
}

int bench_hist_write_cdf(const struct bench_hist *h, FILE *f)
{
	uint64_t seen = 0;
	for (unsigned i = 0; i < BENCH_HIST_BUCKETS && seen < h->count; i++) {
		if (h->n[i] == 0)
			continue;
		seen += h->n[i];
		uint64_t v = bucket_value(i);
		if (v > h->max_ns)
			v = h->max_ns;
		if (fprintf(f, "%.6f %.9f\n", (double)v / 1e6, (double)seen / (double)h->count) < 0)
			return -1;
	}
	return 0;
}

bool bench_parse_u64(const char *s, uint64_t *out)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return false;
	if (*end == 'k' || *end == 'K')
		v <<= 10, end++;
	else if (*end == 'm' || *end == 'M')
		v <<= 20, end++;
	else if (*end == 'g' || *end == 'G')
		v <<= 30, end++;
	if (*end != '\0')
		return false;
	*out = v;
	return true;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void bench_rm_rf(const char *dir)
{
	/* Depth first so a directory is empty when its turn comes. */
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
