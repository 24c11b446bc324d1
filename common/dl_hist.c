/* dl_hist.c - see dl_hist.h. */
#include "common/dl_hist.h"

#include <assert.h>
#include <string.h>

void dl_hist_init(struct dl_hist *h)
{
	for (unsigned i = 0; i <= DL_HIST_BUCKETS; i++)
		atomic_init(&h->bucket[i], 0);
	atomic_init(&h->sum_ns, 0);
}

/* Smallest i with ns <= 2^i us; DL_HIST_BUCKETS when over the top. */
static unsigned bucket_of(uint64_t ns)
{
	uint64_t us = ns / 1000u + (ns % 1000u != 0);
	if (us <= 1)
		return 0;
	unsigned i = 64u - (unsigned)__builtin_clzll(us - 1); /* ceil(log2(us)) */
	return i < DL_HIST_BUCKETS ? i : DL_HIST_BUCKETS;
}

void dl_hist_record(struct dl_hist *h, uint64_t ns)
{
	if (h == NULL)
		return;
	unsigned i = bucket_of(ns);
	assert(i <= DL_HIST_BUCKETS);
	atomic_fetch_add_explicit(&h->bucket[i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->sum_ns, ns, memory_order_relaxed);
}

void dl_hist_read(const struct dl_hist *h, struct dl_hist_snap *out)
{
	memset(out, 0, sizeof(*out));
	for (unsigned i = 0; i <= DL_HIST_BUCKETS; i++) {
		out->bucket[i] = atomic_load_explicit(&h->bucket[i], memory_order_relaxed);
		out->count += out->bucket[i];
	}
	out->sum_ns = atomic_load_explicit(&h->sum_ns, memory_order_relaxed);
}
