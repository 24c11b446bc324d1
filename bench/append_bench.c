/*
 * dledger-bench append: closed-loop append load on a running group through
 * the C client (the load engine of load.c). C clients, each keeping I
 * requests of K entries in flight; every answer submits the next request.
 * Reports committed entries/s, MB/s and the latency of a request from
 * submission to its commit acknowledgement (p50, p99, p99.9, max).
 * The cluster benchmark (`dledger-bench --help`) does the same with node
 * figures, open loop, CSV and sweeps.
 *
 * Threads: main only; the load's threads are load.c's.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/client.h"

static void usage(FILE *f)
{
	fprintf(f, "usage: dledger-bench append --peers P --group G [--payload B] [--clients C]\n"
	           "           [--inflight I] [--batch K] [--duration S] [--warmup S]\n"
	           "Closed-loop appends to a running group (defaults: 128 B, 1 client, 1 in\n"
	           "flight, 1 entry per request, 10 s measured after 2 s of warm-up).\n");
}

static void report(const struct bench_load_result *r, uint64_t clients, uint64_t inflight,
                   uint64_t batch, uint64_t payload, double secs)
{
	const struct bench_hist *h = &r->hist;
	printf("append: %" PRIu64 " clients x %" PRIu64 " in flight x %" PRIu64
	       " entries of %" PRIu64 " B, %.1f s measured\n",
	       clients, inflight, batch, payload, secs);
	printf("  entries/s %.0f   MB/s %.1f   requests %" PRIu64 "   errors %" PRIu64 "\n",
	       (double)r->entries / secs, (double)r->entries * (double)payload / secs / 1e6,
	       r->requests, r->errors);
	printf("  latency p50 %.3f ms   p99 %.3f ms   p99.9 %.3f ms   max %.3f ms\n",
	       (double)bench_hist_quantile(h, 0.50) / 1e6,
	       (double)bench_hist_quantile(h, 0.99) / 1e6,
	       (double)bench_hist_quantile(h, 0.999) / 1e6, (double)h->max_ns / 1e6);
	if (r->errors > 0)
		printf("  first error: %s\n", r->first_error);
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
			ok = ok && bench_parse_u64(v, &duration) && duration >= 1 &&
			     duration <= 86400;
		} else if (strcmp(a, "--warmup") == 0) {
			ok = ok && bench_parse_u64(v, &warmup) && warmup <= 3600;
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
	const char *groups[1] = {group};
	struct bench_load_cfg cfg = {.peers = peers,
	                             .groups = groups,
	                             .n_groups = 1,
	                             .clients = (uint32_t)clients,
	                             .inflight = (uint32_t)inflight,
	                             .batch = (uint32_t)batch,
	                             .payload_bytes = (uint32_t)payload,
	                             .timeout_ms = 10000};
	struct bench_load *l;
	struct dl_errctx err = {{0}};
	if (bench_load_start(&cfg, &l, &err) != 0) {
		fprintf(stderr, "dledger-bench append: %s\n", err.msg);
		return 1;
	}
	sleep((unsigned)warmup);
	bench_load_measure(l, true);
	uint64_t t0 = bench_now_ns();
	for (uint64_t s = 0; s < duration; s++) {
		sleep(1);
		uint64_t rq, e, er;
		bench_load_counts(l, &rq, &e, &er);
		fprintf(stderr, "\r  %" PRIu64 "/%" PRIu64 " s, %.0f entries/s   ", s + 1, duration,
		        (double)e / ((double)(bench_now_ns() - t0) / 1e9));
	}
	fprintf(stderr, "\n");
	bench_load_measure(l, false);
	uint64_t t1 = bench_now_ns();
	struct bench_load_result *r = malloc(sizeof(*r));
	if (r == NULL) {
		bench_load_stop(l);
		return 1;
	}
	bench_load_result(l, r);
	bench_load_stop(l);
	report(r, clients, inflight, batch, payload, (double)(t1 - t0) / 1e9);
	free(r);
	return 0;
}
