/*
 * mailbox-bench: our intrusive MPSC mailbox (runtime/mailbox.h) against
 * liburcu's wfcqueue, P producers and one consumer, each pushing N nodes.
 * Reports million pushes+pops per second (best of 3 runs each).
 * Usage: mailbox-bench [PRODUCERS] [N_PER_PRODUCER]
 */
#define _LGPL_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <urcu/wfcqueue.h>

#include "common/dl_time.h"
#include "runtime/mailbox.h"

struct item {
	struct mb_node mb;
	struct cds_wfcq_node wq;
};

static uint32_t producers = 2;
static uint64_t per_producer = 2000000;
static struct item *items;
static struct mailbox mbox;
static struct cds_wfcq_head wq_head;
static struct cds_wfcq_tail wq_tail;
static _Atomic int go;

static void *prod_mb(void *arg)
{
	struct item *base = arg;
	while (!atomic_load(&go))
		;
	for (uint64_t i = 0; i < per_producer; i++)
		(void)mb_offer_lazy(&mbox, &base[i].mb);
	return NULL;
}

static void *prod_wq(void *arg)
{
	struct item *base = arg;
	while (!atomic_load(&go))
		;
	for (uint64_t i = 0; i < per_producer; i++)
		cds_wfcq_enqueue(&wq_head, &wq_tail, &base[i].wq);
	return NULL;
}

static double run(int which)
{
	pthread_t t[16];
	atomic_store(&go, 0);
	mb_init(&mbox, UINT64_MAX);
	cds_wfcq_init(&wq_head, &wq_tail);
	for (uint32_t p = 0; p < producers; p++) {
		struct item *base = items + p * per_producer;
		for (uint64_t i = 0; i < per_producer; i++)
			cds_wfcq_node_init(&base[i].wq);
		pthread_create(&t[p], NULL, which ? prod_wq : prod_mb, base);
	}
	uint64_t total = producers * per_producer, got = 0;
	uint64_t t0 = dl_now_ns();
	atomic_store(&go, 1);
	while (got < total) {
		if (which) {
			if (__cds_wfcq_dequeue_blocking(&wq_head, &wq_tail) != NULL)
				got++;
		} else {
			if (mb_pop(&mbox) != NULL)
				got++;
		}
	}
	uint64_t t1 = dl_now_ns();
	for (uint32_t p = 0; p < producers; p++)
		pthread_join(t[p], NULL);
	return (double)total / ((double)(t1 - t0) / 1e9) / 1e6;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		producers = (uint32_t)atoi(argv[1]);
	if (argc > 2)
		per_producer = (uint64_t)atoll(argv[2]);
	if (producers < 1 || producers > 16)
		return 2;
	items = calloc(producers * per_producer, sizeof(*items));
	double best[2] = {0, 0};
	for (int r = 0; r < 3; r++)
		for (int w = 0; w < 2; w++) {
			double v = run(w);
			best[w] = v > best[w] ? v : best[w];
		}
	printf("mailbox-bench: %u producers x %llu: ours %.1f M/s, liburcu wfcqueue %.1f M/s\n",
	       producers, (unsigned long long)per_producer, best[0], best[1]);
	free(items);
	return 0;
}
