/*
 * dledger-bench append: closed-loop append load on a running group through
 * the C client (client/client.h). C clients, each keeping I requests of K
 * entries in flight; every answer submits the next request. Reports
 * committed entries/s, MB/s and the latency of a request from submission to
 * its commit acknowledgement (p50, p99, p99.9, max).
 *
 * Threads: the client's own threads run the callbacks; each client's
 * histogram is guarded by its mutex.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/client.h"

struct load;

struct slot {
	struct load *l;
	uint64_t start_ns;
};

struct load {
	struct dl_client *c;
	pthread_mutex_t mu;
	struct bench_hist hist;
	uint64_t entries;
	uint64_t errors;
	_Atomic bool measuring;
	_Atomic bool stop;
	_Atomic uint32_t outstanding;
	struct slot *slots;
	struct dl_client_buf *bufs;
	uint32_t batch;
};

static void submit(struct slot *s);

static void on_done(void *arg, const struct dl_client_result *r)
{
	struct slot *s = arg;
	struct load *l = s->l;
	uint64_t now = bench_now_ns();
	if (atomic_load(&l->measuring)) {
		pthread_mutex_lock(&l->mu);
		if (r->code == 0) {
			bench_hist_add(&l->hist, now - s->start_ns);
			l->entries += r->n;
		} else {
			l->errors++;
		}
		pthread_mutex_unlock(&l->mu);
	}
	if (atomic_load(&l->stop)) {
		atomic_fetch_sub(&l->outstanding, 1);
		return;
	}
	submit(s);
}

static void submit(struct slot *s)
{
	struct load *l = s->l;
	s->start_ns = bench_now_ns();
	if (dl_client_append_async(l->c, l->bufs, l->batch, on_done, s, NULL) != 0) {
		pthread_mutex_lock(&l->mu);
		l->errors++;
		pthread_mutex_unlock(&l->mu);
		atomic_fetch_sub(&l->outstanding, 1);
	}
}

static void usage(FILE *f)
{
	fprintf(f, "usage: dledger-bench append --peers P --group G [--payload B] [--clients C]\n"
		   "           [--inflight I] [--batch K] [--duration S] [--warmup S]\n"
		   "Closed-loop appends to a running group (defaults: 128 B, 1 client, 1 in\n"
		   "flight, 1 entry per request, 10 s measured after 2 s of warm-up).\n");
}

int bench_append_main(int argc, char **argv)
{
	const char *peers = NULL, *group = NULL;
	uint64_t payload = 128, clients = 1, inflight = 1, batch = 1, duration = 10, warmup = 2;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = v != NULL;
		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--peers") == 0) {
			peers = v;
		} else if (strcmp(a, "--group") == 0) {
			group = v;
		} else if (strcmp(a, "--payload") == 0) {
			ok = ok && bench_parse_u64(v, &payload) && payload <= (4u << 20);
		} else if (strcmp(a, "--clients") == 0) {
			ok = ok && bench_parse_u64(v, &clients) && clients >= 1 && clients <= 256;
		} else if (strcmp(a, "--inflight") == 0) {
			ok = ok && bench_parse_u64(v, &inflight) && inflight >= 1 &&
			     inflight <= DL_CLIENT_MAX_INFLIGHT;
		} else if (strcmp(a, "--batch") == 0) {
			ok = ok && bench_parse_u64(v, &batch) && batch >= 1 && batch <= 65536;
		} else if (strcmp(a, "--duration") == 0) {
			ok = ok && bench_parse_u64(v, &duration) && duration >= 1;
		} else if (strcmp(a, "--warmup") == 0) {
			ok = ok && bench_parse_u64(v, &warmup);
		} else {
			ok = false;
		}
		if (!ok) {
			fprintf(stderr, "dledger-bench append: bad or missing value for '%s'\n", a);
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (peers == NULL || group == NULL) {
		usage(stderr);
		return 2;
	}
	char *body = malloc(payload ? payload : 1);
	memset(body, 'x', payload ? payload : 1);
	struct dl_client_buf *bufs = calloc(batch, sizeof(*bufs));
	for (uint64_t i = 0; i < batch; i++)
		bufs[i] = (struct dl_client_buf){body, payload};
	struct load *loads = calloc(clients, sizeof(*loads));
	int rc = 0;
	for (uint64_t k = 0; k < clients; k++) {
		struct load *l = &loads[k];
		struct dl_client_opts o = {.max_inflight = (uint32_t)inflight, .retry_busy = true,
					   .timeout_ms = 10000};
		struct dl_errctx err = {{0}};
		if (dl_client_open(peers, group, &o, &l->c, &err) != 0) {
			fprintf(stderr, "dledger-bench append: %s\n", err.msg);
			return 1;
		}
		pthread_mutex_init(&l->mu, NULL);
		l->bufs = bufs;
		l->batch = (uint32_t)batch;
		l->slots = calloc(inflight, sizeof(*l->slots));
		atomic_store(&l->outstanding, (uint32_t)inflight);
		for (uint64_t s = 0; s < inflight; s++) {
			l->slots[s].l = l;
			submit(&l->slots[s]);
		}
	}
	sleep((unsigned)warmup);
	for (uint64_t k = 0; k < clients; k++)
		atomic_store(&loads[k].measuring, true);
	uint64_t t0 = bench_now_ns();
	for (uint64_t s = 0; s < duration; s++) {
		sleep(1);
		uint64_t e = 0;
		for (uint64_t k = 0; k < clients; k++) {
			pthread_mutex_lock(&loads[k].mu);
			e += loads[k].entries;
			pthread_mutex_unlock(&loads[k].mu);
		}
		fprintf(stderr, "\r  %" PRIu64 "/%" PRIu64 " s, %.0f entries/s   ", s + 1, duration,
			(double)e / ((double)(bench_now_ns() - t0) / 1e9));
	}
	fprintf(stderr, "\n");
	for (uint64_t k = 0; k < clients; k++)
		atomic_store(&loads[k].measuring, false);
	uint64_t t1 = bench_now_ns();
	struct bench_hist all;
	memset(&all, 0, sizeof(all));
	uint64_t entries = 0, errors = 0;
	for (uint64_t k = 0; k < clients; k++) {
		struct load *l = &loads[k];
		atomic_store(&l->stop, true);
		pthread_mutex_lock(&l->mu);
		bench_hist_merge(&all, &l->hist);
		entries += l->entries;
		errors += l->errors;
		pthread_mutex_unlock(&l->mu);
	}
	for (uint64_t k = 0; k < clients; k++) {
		dl_client_close(loads[k].c); /* answers what is left */
		free(loads[k].slots);
	}
	double secs = (double)(t1 - t0) / 1e9;
	printf("append: %" PRIu64 " clients x %" PRIu64 " in flight x %" PRIu64
	       " entries of %" PRIu64 " B, %.1f s measured\n",
	       clients, inflight, batch, payload, secs);
	printf("  entries/s %.0f   MB/s %.1f   requests %" PRIu64 "   errors %" PRIu64 "\n",
	       (double)entries / secs, (double)entries * (double)payload / secs / 1e6, all.count,
	       errors);
	printf("  latency p50 %.3f ms   p99 %.3f ms   p99.9 %.3f ms   max %.3f ms\n",
	       (double)bench_hist_quantile(&all, 0.50) / 1e6,
	       (double)bench_hist_quantile(&all, 0.99) / 1e6,
	       (double)bench_hist_quantile(&all, 0.999) / 1e6, (double)all.max_ns / 1e6);
	free(loads);
	free(bufs);
	free(body);
	return rc;
}
