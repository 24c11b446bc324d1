/*
 * chaos_load.c - the load driver of the chaos suite (test/chaos/README.md).
 *
 * Appends unique bodies ("<group>-<seq>-<random>") to several groups at once
 * through the C client (client/client.h), a bounded window of appends in
 * flight per group, at a bounded rate, and writes every acknowledged append
 * to the ack file as one line "group index term body". It goes on through
 * every error (appends fail while faults are active; only acknowledged ones
 * count) until SIGTERM/SIGINT or --seconds, then waits (bounded) for what is
 * in flight, closes the clients and prints its totals on stdout.
 *
 * Usage: chaos-load --peers P --groups g1,g2,... --out FILE [--window N]
 *                   [--rate PER_GROUP_PER_S] [--seconds MAX] [--seed S]
 *                   [--timeout-ms MS]
 *
 * Threads: main (signals, the end); one submitter per group; the client's
 * threads run on_done. The ack file, the counters and each group's window
 * are guarded by `mu`; `stop` is an atomic set by the signal handler.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"

#define MAX_GROUPS   64
#define MAX_WINDOW   256
#define BODY_MAX     96
#define DRAIN_MAX_MS 15000

struct load;

struct slot {
	struct grp *g;
	char body[BODY_MAX];
	size_t len;
	bool busy;
};

struct grp {
	struct load *l;
	char name[64];
	struct dl_client *c;
	pthread_t thread;
	struct slot slots[MAX_WINDOW];
	uint32_t outstanding; /* under l->mu */
	uint64_t seq;         /* submitter thread only */
	uint64_t rng;         /* submitter thread only */
	uint64_t acked, failed;
};

struct load {
	const char *peers;
	struct grp groups[MAX_GROUPS];
	uint32_t n_groups;
	uint32_t window;
	double rate; /* appends per second per group; 0: unlimited */
	uint32_t timeout_ms;
	FILE *out;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a slot was freed */
	uint64_t errs[DL_ERR_COUNT + 1];
};

static atomic_bool stop;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store_explicit(&stop, true, memory_order_relaxed);
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

/* On a client thread: record the outcome, free the slot. */
static void on_done(void *arg, const struct dl_client_result *r)
{
	struct slot *s = arg;
	struct grp *g = s->g;
	struct load *l = g->l;
	pthread_mutex_lock(&l->mu);
	if (r->code == 0) {
		/* The ack file is the record of what the cluster promised: a
		 * line is written only for a committed append, with its index. */
		fprintf(l->out, "%s %" PRIu64 " %" PRIu64 " %.*s\n", g->name, r->first_index,
			r->term, (int)s->len, s->body);
		g->acked++;
	} else {
		g->failed++;
		l->errs[r->code >= 0 && r->code < DL_ERR_COUNT ? r->code : DL_ERR_COUNT]++;
	}
	s->busy = false;
	g->outstanding--;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
}

static void timed_wait(struct load *l, uint64_t ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_nsec + ms * 1000000ull;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	pthread_cond_timedwait(&l->cv, &l->mu, &ts);
}

/* Under l->mu: a free slot of g, waiting (100 ms at a time) until one is
 * free or stop. NULL on stop. */
static struct slot *take_slot(struct grp *g)
{
	struct load *l = g->l;
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (g->outstanding < l->window)
			for (uint32_t i = 0; i < l->window; i++)
				if (!g->slots[i].busy)
					return &g->slots[i];
		timed_wait(l, 100);
	}
	return NULL;
}

static void *submitter(void *arg)
{
	struct grp *g = arg;
	struct load *l = g->l;
	uint64_t t0 = now_ns();
	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		if (l->rate > 0) { /* pace: request seq is due at t0 + seq / rate */
			uint64_t due = t0 + (uint64_t)((double)g->seq * 1e9 / l->rate);
			uint64_t now = now_ns();
			if (due > now) {
				uint64_t d = due - now;
				if (d > 100000000ull)
					d = 100000000ull; /* look at stop at least every 100 ms */
				struct timespec ts = {(time_t)(d / 1000000000ull),
						      (long)(d % 1000000000ull)};
				nanosleep(&ts, NULL);
				continue;
			}
		}
		pthread_mutex_lock(&l->mu);
		struct slot *s = take_slot(g);
		if (s) {
			s->busy = true;
			g->outstanding++;
		}
		pthread_mutex_unlock(&l->mu);
		if (!s)
			break;
		int n = snprintf(s->body, sizeof(s->body), "%s-%" PRIu64 "-%016" PRIx64, g->name,
				 g->seq++, xorshift(&g->rng));
		s->len = (size_t)n;
		struct dl_client_buf b = {s->body, s->len};
		struct dl_errctx err = {{0}};
		int rc = dl_client_append_async(g->c, &b, 1, on_done, s, &err);
		if (rc != 0) { /* on_done never runs: give the slot back */
			pthread_mutex_lock(&l->mu);
			s->busy = false;
			g->outstanding--;
			g->failed++;
			l->errs[rc < DL_ERR_COUNT ? rc : DL_ERR_COUNT]++;
			pthread_mutex_unlock(&l->mu);
			usleep(10000);
		}
	}
	return NULL;
}

static int parse_groups(struct load *l, char *list)
{
	for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		if (l->n_groups == MAX_GROUPS || strlen(t) >= sizeof(l->groups[0].name))
			return -1;
		struct grp *g = &l->groups[l->n_groups++];
		snprintf(g->name, sizeof(g->name), "%s", t);
	}
	return l->n_groups ? 0 : -1;
}

static void usage(void)
{
	fprintf(stderr, "usage: chaos-load --peers P --groups g1,g2 --out FILE [--window N] "
			"[--rate R] [--seconds S] [--seed S] [--timeout-ms MS]\n");
	exit(2);
}

/* Waits (bounded) until nothing is in flight. */
static void drain(struct load *l)
{
	uint64_t end = now_ns() + DRAIN_MAX_MS * 1000000ull;
	pthread_mutex_lock(&l->mu);
	for (;;) {
		uint32_t n = 0;
		for (uint32_t i = 0; i < l->n_groups; i++)
			n += l->groups[i].outstanding;
		if (n == 0 || now_ns() > end)
			break;
		timed_wait(l, 100);
	}
	pthread_mutex_unlock(&l->mu);
}

int main(int argc, char **argv)
{
	static struct load l;
	char *groups = NULL;
	const char *out = NULL;
	uint64_t seed = (uint64_t)time(NULL), seconds = 24 * 3600;
	l.window = 16;
	l.rate = 50;
	l.timeout_ms = 3000;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!v)
			usage();
		i++;
		if (!strcmp(a, "--peers"))
			l.peers = v;
		else if (!strcmp(a, "--groups"))
			groups = strdup(v);
		else if (!strcmp(a, "--out"))
			out = v;
		else if (!strcmp(a, "--window"))
			l.window = (uint32_t)strtoul(v, NULL, 10);
		else if (!strcmp(a, "--rate"))
			l.rate = strtod(v, NULL);
		else if (!strcmp(a, "--seconds"))
			seconds = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--seed"))
			seed = strtoull(v, NULL, 10);
		else if (!strcmp(a, "--timeout-ms"))
			l.timeout_ms = (uint32_t)strtoul(v, NULL, 10);
		else
			usage();
	}
	if (!l.peers || !groups || !out || l.window < 1 || l.window > MAX_WINDOW ||
	    parse_groups(&l, groups) != 0)
		usage();
	l.out = fopen(out, "w");
	if (!l.out) {
		fprintf(stderr, "chaos-load: %s: %s\n", out, strerror(errno));
		return 1;
	}
	pthread_mutex_init(&l.mu, NULL);
	pthread_cond_init(&l.cv, NULL);
	struct sigaction sa = {.sa_handler = on_signal};
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct dl_client_opts o = {.timeout_ms = l.timeout_ms, .max_inflight = l.window + 4,
				   .max_hops = 8, .connect_timeout_ms = 500, .retry_busy = true};
	for (uint32_t i = 0; i < l.n_groups; i++) {
		struct grp *g = &l.groups[i];
		struct dl_errctx err = {{0}};
		g->l = &l;
		g->rng = seed * 2654435761u + i + 1;
		for (uint32_t k = 0; k < MAX_WINDOW; k++)
			g->slots[k].g = g;
		if (dl_client_open(l.peers, g->name, &o, &g->c, &err) != 0) {
			fprintf(stderr, "chaos-load: open %s: %s\n", g->name, err.msg);
			return 1;
		}
	}
	for (uint32_t i = 0; i < l.n_groups; i++)
		pthread_create(&l.groups[i].thread, NULL, submitter, &l.groups[i]);
	uint64_t end = now_ns() + seconds * 1000000000ull;
	while (!atomic_load_explicit(&stop, memory_order_relaxed) && now_ns() < end) {
		usleep(100000);
		pthread_mutex_lock(&l.mu);
		fflush(l.out); /* the orchestrator may look at the count while we run */
		pthread_mutex_unlock(&l.mu);
	}
	atomic_store_explicit(&stop, true, memory_order_relaxed);
	for (uint32_t i = 0; i < l.n_groups; i++)
		pthread_join(l.groups[i].thread, NULL);
	drain(&l);
	for (uint32_t i = 0; i < l.n_groups; i++)
		dl_client_close(l.groups[i].c); /* fails the rest with DL_ECLOSED */
	uint64_t acked = 0, failed = 0;
	for (uint32_t i = 0; i < l.n_groups; i++) {
		acked += l.groups[i].acked;
		failed += l.groups[i].failed;
	}
	if (fclose(l.out) != 0) {
		fprintf(stderr, "chaos-load: closing %s: %s\n", out, strerror(errno));
		return 1;
	}
	printf("load: %" PRIu64 " acked, %" PRIu64 " failed", acked, failed);
	for (int k = 1; k <= DL_ERR_COUNT; k++)
		if (l.errs[k])
			printf(", %s %" PRIu64, k < DL_ERR_COUNT ? dl_strerror(k) : "other",
			       l.errs[k]);
	printf("\n");
	free(groups);
	return 0;
}
