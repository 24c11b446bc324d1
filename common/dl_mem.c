#include "common/dl_mem.h"

#include <malloc.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

void *dl_grow(void *arr, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return arr;
	size_t n = *cap ? *cap : DL_GROW_FIRST;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return NULL;
		n *= 2;
	}
	if (elem != 0 && n > SIZE_MAX / elem)
		return NULL;
	void *p = realloc(arr, n * elem);
	if (p != NULL)
		*cap = n;
	return p;
}

static _Atomic uint64_t last_trim_ns;

void dl_trim_after(size_t bytes)
{
	if (bytes < DL_TRIM_MIN_BYTES)
		return;
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	uint64_t last = atomic_load_explicit(&last_trim_ns, memory_order_relaxed);
	if (last != 0 && now - last < 1000000000u)
		return;
	/* One caller wins the second; the others go on. */
	if (!atomic_compare_exchange_strong_explicit(&last_trim_ns, &last, now,
						     memory_order_relaxed, memory_order_relaxed))
		return;
	(void)malloc_trim(0);
}
