/*
 * load.c - the append load of `dledger-bench append` and of the cluster
 * benchmark: closed- or open-loop appends through the C client
 * (client/client.h). See bench.h for the shape and the two loops.
 *
 * Threads: the caller's thread starts, measures and stops the load. The
 * dl_client threads run the answer callbacks (on_done); in the open loop one
 * pacer thread issues the due requests. Everything a load
 * client counts (histogram, counters, free slots, requests outstanding) is
 * guarded by its mutex `mu`; `measuring` and `stop` are atomics read under
 * it, so a figure read after bench_load_measure(l, false) and a lock of
 * every client is exact.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench.h"
#include "client/client.h"

/* Longest a waiting thread sleeps before it looks at `stop` again. */
#define POLL_NS 100000000ull

struct lclient;

struct lslot {
	struct lclient *cl;
	struct dl_client *dc; /* closed loop: fixed; open loop: set per request */
	uint64_t start_ns;    /* submission (closed) or due time (open) */
};

struct lclient {
	struct bench_load *l;
	struct dl_client **dcs; /* one per group this client serves */
	uint32_t n_dcs;
	struct lslot *slots;
	pthread_mutex_t mu;
	pthread_cond_t cv;   /* a request ended: for drain() */
	uint32_t *free_slot; /* stack of free slot numbers (open loop) */
	uint32_t n_free;
	uint32_t outstanding; /* submitted, callback not yet run */
	uint64_t next_i;      /* open loop: the next request to issue */
	uint32_t k;           /* open loop: its request i is request i x clients + k */
	uint64_t requests, entries, errors;
	char first_error[256];
	struct bench_hist hist;
};

struct bench_load {
	struct bench_load_cfg cfg;
	char *body;
	struct dl_client_buf *bufs; /* batch entries, all pointing at body */
	struct lclient *cl;
	uint32_t n_cl;   /* clients set up so far (for a partial stop) */
	uint64_t t0_ns;  /* open loop: when request 0 of client 0 is due */
	pthread_t pacer; /* open loop */
	bool pacer_started;
	_Atomic bool measuring;
	_Atomic bool stop;
};

static bool open_loop(const struct bench_load *l)
{
	return l->cfg.rate_rps > 0;
}

/* Under c->mu. */
static void note_error(struct lclient *c, int code, const char *detail)
{
	if (c->errors++ == 0)
		snprintf(c->first_error, sizeof(c->first_error), "%s%s%s", dl_strerror(code),
		         detail[0] ? ": " : "", detail);
}

/* Under c->mu: the slot's request is over and no new one follows. */
static void release(struct lclient *c, struct lslot *s)
{
	DL_ASSERT(c->outstanding > 0);
	c->outstanding--;
	if (open_loop(c->l)) {
		c->free_slot[c->n_free++] = (uint32_t)(s - c->slots);
		DL_ASSERT(c->n_free <= c->l->cfg.inflight);
	}
	pthread_cond_broadcast(&c->cv);
}

static void submit(struct lslot *s, uint64_t start_ns);

/* Open loop: when request j of the whole schedule is due. */
static uint64_t due_at(const struct bench_load *l, uint64_t j)
{
	return l->t0_ns + (uint64_t)(1e9 * (double)j / l->cfg.rate_rps);
}

/* Open loop: when request i of client c is due. */
static uint64_t due_of(const struct lclient *c, uint64_t i)
{
	return due_at(c->l, i * c->l->cfg.clients + c->k);
}

/* Under c->mu: the next open-loop request if it is due by `now` (the slot
 * is then bound to its group and *due set), else false. */
static bool next_due(struct lclient *c, struct lslot *s, uint64_t now, uint64_t *due)
{
	*due = due_of(c, c->next_i);
	if (*due > now)
		return false;
	s->dc = c->dcs[c->next_i % c->n_dcs];
	c->next_i++;
	return true;
}

static void on_done(void *arg, const struct dl_client_result *r)
{
	struct lslot *s = arg;
	struct lclient *c = s->cl;
	struct bench_load *l = c->l;
	uint64_t now = bench_now_ns(), due = now;
	pthread_mutex_lock(&c->mu);
	bool stopping = atomic_load(&l->stop);
	if (r->code != 0 && !(stopping && r->code == DL_ECLOSED)) {
		note_error(c, r->code, r->detail);
	} else if (r->code == 0 && atomic_load(&l->measuring)) {
		bench_hist_add(&c->hist, now > s->start_ns ? now - s->start_ns : 0);
		c->requests++;
		c->entries += r->n;
	}
	/* Open loop behind schedule: this thread issues the next due request
	 * at once rather than wake the pacer, which would cost a context
	 * switch per request just when the load is heaviest. */
	bool again = !stopping && (!open_loop(l) || next_due(c, s, now, &due));
	if (!again)
		release(c, s);
	pthread_mutex_unlock(&c->mu);
	if (again)
		submit(s, open_loop(l) ? due : bench_now_ns());
}

/* The slot counts as outstanding already. */
static void submit(struct lslot *s, uint64_t start_ns)
{
	struct bench_load *l = s->cl->l;
	struct dl_errctx err = {{0}};
	s->start_ns = start_ns;
	int rc = dl_client_append_async(s->dc, l->bufs, l->cfg.batch, on_done, s, &err);
	if (rc != 0) {
		pthread_mutex_lock(&s->cl->mu);
		note_error(s->cl, rc, err.msg);
		release(s->cl, s);
		pthread_mutex_unlock(&s->cl->mu);
	}
}

/* Under c->mu: waits for a request to end, at most POLL_NS. */
static void wait_a_little(struct lclient *c)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t t = (uint64_t)ts.tv_nsec + POLL_NS;
	ts.tv_sec += (time_t)(t / 1000000000u);
	ts.tv_nsec = (long)(t % 1000000000u);
	pthread_cond_timedwait(&c->cv, &c->mu, &ts);
}

/* Without c->mu: sleeps until due_ns, at most POLL_NS. */
static void sleep_until(uint64_t due_ns)
{
	uint64_t now = bench_now_ns();
	uint64_t t = due_ns - now < POLL_NS ? due_ns : now + POLL_NS;
	struct timespec ts = {.tv_sec = (time_t)(t / 1000000000u),
	                      .tv_nsec = (long)(t % 1000000000u)};
	/* bench_now_ns() is CLOCK_MONOTONIC too. */
	clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

/* Under c->mu: issues every request of c that is due by `now` while c has
 * a free slot. Requests that find no slot stay due; c's answers issue them
 * (on_done), each still timed from when it was due. */
static void issue_due(struct lclient *c, uint64_t now)
{
	uint64_t due;
	while (c->n_free > 0 && due_of(c, c->next_i) <= now) {
		struct lslot *s = &c->slots[c->free_slot[--c->n_free]];
		c->outstanding++;
		bool due_now = next_due(c, s, now, &due);
		DL_ASSERT(due_now);
		pthread_mutex_unlock(&c->mu);
		submit(s, due);
		pthread_mutex_lock(&c->mu);
	}
}

/* Open loop: one thread walks the whole schedule (request j is due at
 * t0 + j / rate and belongs to client j mod clients). One thread rather
 * than one per client: at high rates each wake-up then issues several
 * requests, and the wake-ups are what the open loop costs. */
static void *pacer(void *arg)
{
	struct bench_load *l = arg;
	for (uint64_t j = 0; !atomic_load(&l->stop); j++) {
		uint64_t due = due_at(l, j);
		while (bench_now_ns() < due && !atomic_load(&l->stop))
			sleep_until(due);
		struct lclient *c = &l->cl[j % l->n_cl];
		/* What is due leaves in one frame per connection. */
		for (uint32_t i = 0; i < c->n_dcs; i++)
			dl_client_cork(c->dcs[i]);
		pthread_mutex_lock(&c->mu);
		issue_due(c, bench_now_ns());
		pthread_mutex_unlock(&c->mu);
		for (uint32_t i = 0; i < c->n_dcs; i++)
			dl_client_uncork(c->dcs[i]);
	}
	return NULL;
}

/* Groups of client k: see bench.h. */
static uint32_t groups_of(const struct bench_load_cfg *cfg, uint32_t k, uint32_t *first,
                          uint32_t *step)
{
	if (cfg->clients >= cfg->n_groups) {
		*first = k % cfg->n_groups;
		*step = cfg->n_groups;
		return 1;
	}
	*first = k;
	*step = cfg->clients;
	return (cfg->n_groups - k + cfg->clients - 1) / cfg->clients;
}

static int client_open(struct bench_load *l, struct lclient *c, uint32_t k, struct dl_errctx *err)
{
	const struct bench_load_cfg *cfg = &l->cfg;
	uint32_t first, step;
	c->l = l;
	c->k = k;
	c->n_dcs = groups_of(cfg, k, &first, &step);
	DL_ASSERT(c->n_dcs >= 1 && c->n_dcs <= cfg->inflight);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	c->dcs = calloc(c->n_dcs, sizeof(*c->dcs));
	c->slots = calloc(cfg->inflight, sizeof(*c->slots));
	c->free_slot = calloc(cfg->inflight, sizeof(*c->free_slot));
	if (c->dcs == NULL || c->slots == NULL || c->free_slot == NULL)
		return dl_errf(err, DL_ENOMEM, "load client %u", k);
	struct dl_client_opts o = {.max_inflight = cfg->inflight,
	                           .retry_busy = true,
	                           .timeout_ms = cfg->timeout_ms,
	                           .tls_cert_file = cfg->tls_cert,
	                           .tls_key_file = cfg->tls_key,
	                           .tls_ca_file = cfg->tls_ca};
	for (uint32_t i = 0; i < c->n_dcs; i++) {
		const char *g = cfg->groups[first + i * step];
		int rc = dl_client_open(cfg->peers, g, &o, &c->dcs[i], err);
		if (rc != 0)
			return rc;
	}
	for (uint32_t s = 0; s < cfg->inflight; s++) {
		c->slots[s] = (struct lslot){.cl = c, .dc = c->dcs[s % c->n_dcs]};
		c->free_slot[c->n_free++] = cfg->inflight - 1 - s;
	}
	return 0;
}

int bench_load_check(const struct bench_load_cfg *cfg, struct dl_errctx *err)
{
	if (cfg->n_groups == 0 || cfg->clients == 0 || cfg->inflight == 0 || cfg->batch == 0 ||
	    cfg->inflight > DL_CLIENT_MAX_INFLIGHT || cfg->batch > TP_MAX_ENTRIES)
		return dl_errf(err, DL_EINVAL,
		               "a load needs groups, clients, in-flight (at most %u) and batch "
		               "(at most %u) of at least 1",
		               DL_CLIENT_MAX_INFLIGHT, TP_MAX_ENTRIES);
	uint32_t most = (cfg->n_groups + cfg->clients - 1) / cfg->clients;
	if (cfg->inflight < most)
		return dl_errf(err, DL_EINVAL,
		               "%u groups over %u clients: each client serves up to %u groups, so "
		               "--inflight must be at least %u",
		               cfg->n_groups, cfg->clients, most, most);
	return 0;
}

int bench_load_start(const struct bench_load_cfg *cfg, struct bench_load **out,
                     struct dl_errctx *err)
{
	*out = NULL;
	int rc = bench_load_check(cfg, err);
	if (rc != 0)
		return rc;
	struct bench_load *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return dl_errf(err, DL_ENOMEM, "load");
	l->cfg = *cfg;
	l->body = malloc(cfg->payload_bytes ? cfg->payload_bytes : 1);
	l->bufs = calloc(cfg->batch, sizeof(*l->bufs));
	l->cl = calloc(cfg->clients, sizeof(*l->cl));
	if (l->body == NULL || l->bufs == NULL || l->cl == NULL) {
		bench_load_stop(l);
		return dl_errf(err, DL_ENOMEM, "load buffers");
	}
	memset(l->body, 'x', cfg->payload_bytes ? cfg->payload_bytes : 1);
	for (uint32_t i = 0; i < cfg->batch; i++)
		l->bufs[i] = (struct dl_client_buf){l->body, cfg->payload_bytes};
	for (; l->n_cl < cfg->clients; l->n_cl++) {
		rc = client_open(l, &l->cl[l->n_cl], l->n_cl, err);
		if (rc != 0) {
			l->n_cl++; /* half-open: stop frees what it has */
			bench_load_stop(l);
			return rc;
		}
	}
	/* A little ahead, so the first due times are not already late. */
	l->t0_ns = bench_now_ns() + 10000000u;
	if (open_loop(l)) {
		int e = pthread_create(&l->pacer, NULL, pacer, l);
		l->pacer_started = e == 0;
		if (e != 0) {
			bench_load_stop(l);
			return dl_errf(err, DL_ENOMEM, "pacer thread: %s", strerror(e));
		}
	}
	for (uint32_t k = 0; k < l->n_cl && !open_loop(l); k++) {
		struct lclient *c = &l->cl[k];
		pthread_mutex_lock(&c->mu);
		c->outstanding = cfg->inflight;
		c->n_free = 0;
		pthread_mutex_unlock(&c->mu);
		for (uint32_t s = 0; s < cfg->inflight; s++)
			submit(&c->slots[s], bench_now_ns());
	}
	*out = l;
	return 0;
}

void bench_load_measure(struct bench_load *l, bool on)
{
	atomic_store(&l->measuring, on);
}

void bench_load_counts(struct bench_load *l, uint64_t *requests, uint64_t *entries,
                       uint64_t *errors)
{
	*requests = *entries = *errors = 0;
	for (uint32_t k = 0; k < l->n_cl; k++) {
		struct lclient *c = &l->cl[k];
		pthread_mutex_lock(&c->mu);
		*requests += c->requests;
		*entries += c->entries;
		*errors += c->errors;
		pthread_mutex_unlock(&c->mu);
	}
}

void bench_load_result(struct bench_load *l, struct bench_load_result *out)
{
	memset(out, 0, sizeof(*out));
	for (uint32_t k = 0; k < l->n_cl; k++) {
		struct lclient *c = &l->cl[k];
		pthread_mutex_lock(&c->mu);
		out->requests += c->requests;
		out->entries += c->entries;
		if (out->errors == 0 && c->errors > 0)
			snprintf(out->first_error, sizeof(out->first_error), "%s", c->first_error);
		out->errors += c->errors;
		bench_hist_merge(&out->hist, &c->hist);
		pthread_mutex_unlock(&c->mu);
	}
}

/* Waits until none of c's requests is outstanding, at most until deadline;
 * dl_client_close() answers whatever is left. */
static void drain(struct lclient *c, uint64_t deadline_ns)
{
	pthread_mutex_lock(&c->mu);
	while (c->outstanding > 0 && bench_now_ns() < deadline_ns)
		wait_a_little(c);
	pthread_mutex_unlock(&c->mu);
}

void bench_load_stop(struct bench_load *l)
{
	if (l == NULL)
		return;
	atomic_store(&l->stop, true);
	if (l->pacer_started)
		pthread_join(l->pacer, NULL);
	/* No callback may be submitting on a client while it closes: with stop
	 * set none submits again, so wait for the answers first. */
	uint64_t deadline = bench_now_ns() + (uint64_t)l->cfg.timeout_ms * 1000000u + 1000000000u;
	for (uint32_t k = 0; k < l->n_cl; k++)
		drain(&l->cl[k], deadline);
	for (uint32_t k = 0; k < l->n_cl; k++) {
		struct lclient *c = &l->cl[k];
		for (uint32_t i = 0; c->dcs != NULL && i < c->n_dcs; i++)
			dl_client_close(c->dcs[i]);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->cv);
		free(c->dcs);
		free(c->slots);
		free(c->free_slot);
	}
	free(l->cl);
	free(l->bufs);
	free(l->body);
	free(l);
}
