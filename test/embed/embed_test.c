/*
 * embed_test.c - the embedding API (include/dledger/dledger.h), seen as an
 * application sees it: three nodes in this process, each a dl_node on its
 * own loopback port and store directory, with one group of three members.
 * Only the installed header is used.
 *
 * A tt.h suite (not Criterion) so that it runs under ThreadSanitizer too:
 * the callbacks run on the members' actor threads while the test's thread
 * appends and reads. Every wait is bounded (wait_until()).
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dledger/dledger.h"
#include "test/lib/tt.h"
#include "test/lib/tt_net.h"

TT_MAIN_STATE;

#define NODES 3
#define MAX_EV 256
#define WAIT_MS 20000

/* ---- what one member's callbacks saw ----------------------------------------------- */

struct role_ev {
	enum dl_role role;
	uint64_t term;
	char leader[DL_NAME_MAX + 1];
};

struct rec {
	pthread_mutex_t mu;
	uint64_t first;    /* first index applied in this run (0: none yet) */
	uint64_t last;     /* last index applied */
	uint64_t *hash;    /* per index: a hash of the body (0: noop) */
	size_t cap;
	unsigned problems; /* an index out of order, twice, or skipped */
	_Atomic unsigned sleep_us; /* a slow application */
	int blocking_rc;   /* what dl_append returned when called from apply */
	bool tried_blocking;
	dl_node *node;
	struct role_ev ev[MAX_EV];
	size_t n_ev;
};

static uint64_t body_hash(const void *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++)
		h = (h ^ ((const uint8_t *)p)[i]) * 1099511628211ull;
	return h | 1; /* never 0 */
}

static void on_apply(void *arg, const char *group, const struct dl_entry *e)
{
	struct rec *r = arg;
	(void)group;
	unsigned us = atomic_load_explicit(&r->sleep_us, memory_order_relaxed);
	if (us)
		usleep(us);
	pthread_mutex_lock(&r->mu);
	if (r->first != 0 && e->index != r->last + 1)
		r->problems++;
	if (r->first == 0)
		r->first = e->index;
	r->last = e->index;
	if (e->index >= r->cap) {
		size_t cap = r->cap ? r->cap : 1024;
		while (cap <= e->index)
			cap *= 2;
		uint64_t *h = realloc(r->hash, cap * sizeof(*h));
		tt_assert(h != NULL);
		memset(h + r->cap, 0, (cap - r->cap) * sizeof(*h));
		r->hash = h;
		r->cap = cap;
	}
	if (r->hash[e->index] != 0)
		r->problems++; /* applied twice */
	r->hash[e->index] = e->noop ? 2 : body_hash(e->data, e->len);
	bool try_blocking = !r->tried_blocking && !e->noop;
	r->tried_blocking = r->tried_blocking || try_blocking;
	pthread_mutex_unlock(&r->mu);
	if (try_blocking) {
		/* A blocking call from a callback is refused, not a deadlock. */
		struct dl_buf b = {"x", 1};
		int rc = dl_append(r->node, "g0", &b, 1, 1000, NULL);
		pthread_mutex_lock(&r->mu);
		r->blocking_rc = rc;
		pthread_mutex_unlock(&r->mu);
	}
}

static void on_role(void *arg, const char *group, const char *member, enum dl_role role,
		    uint64_t term, const char *leader)
{
	struct rec *r = arg;
	tt_assert(group[0] != '\0' && member[0] != '\0');
	pthread_mutex_lock(&r->mu);
	if (r->n_ev < MAX_EV) {
		r->ev[r->n_ev].role = role;
		r->ev[r->n_ev].term = term;
		snprintf(r->ev[r->n_ev].leader, sizeof(r->ev[0].leader), "%s", leader);
		r->n_ev++;
	}
	pthread_mutex_unlock(&r->mu);
}

/* ---- a cluster of three nodes in this process ------------------------------------------ */

struct tc {
	char dir[64];
	char peers[256];
	uint16_t port[NODES];
	dl_node *n[NODES];
	struct rec r[NODES];
	const char *max_pending; /* maxPendingRequestsNum, or NULL */
};

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls `cond(c, k)` every 5 ms until it holds or timeout_ms pass. */
static bool wait_until(bool (*cond)(struct tc *, int), struct tc *c, int k, uint64_t timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	while (!cond(c, k)) {
		if (now_ms() >= deadline)
			return false;
		usleep(5000);
	}
	return true;
}

static void tc_init(struct tc *c)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->dir, sizeof(c->dir), "/tmp/dl-embedtest-XXXXXX");
	tt_assert(mkdtemp(c->dir) != NULL);
	for (int k = 0; k < NODES; k++) {
		c->port[k] = tt_port();
		pthread_mutex_init(&c->r[k].mu, NULL);
	}
	snprintf(c->peers, sizeof(c->peers), "n0-127.0.0.1:%u;n1-127.0.0.1:%u;n2-127.0.0.1:%u",
		 c->port[0], c->port[1], c->port[2]);
}

/* Opens and starts node k; its apply starts after `applied`. */
static void tc_start(struct tc *c, int k, uint64_t applied)
{
	char dir[128], id[8];
	snprintf(dir, sizeof(dir), "%s/n%d", c->dir, k);
	snprintf(id, sizeof(id), "n%d", k);
	struct dl_kv gkeys[1];
	size_t ng = 0;
	if (c->max_pending != NULL)
		gkeys[ng++] = (struct dl_kv){"maxPendingRequestsNum", c->max_pending};
	struct dl_group_config g = {.group = "g0", .id = id, .peers = c->peers,
				    .keys = gkeys, .n_keys = ng};
	struct dl_kv keys[] = {{"heartBeatTimeIntervalMs", "50"}, {"electionTimeoutMs", "1000"},
			       {"logLevel", "warn"}};
	struct dl_node_config cfg = {.store_base_dir = dir, .keys = keys, .n_keys = 3,
				     .groups = &g, .n_groups = 1};
	struct dl_node_options opts = {.no_control_socket = true};
	char err[256];
	int rc = dl_node_open(&cfg, &opts, &c->n[k], err, sizeof(err));
	tt_assert(rc == DL_OK, "open n%d: %s: %s", k, dl_strerror(rc), err);
	struct rec *r = &c->r[k];
	pthread_mutex_lock(&r->mu);
	r->node = c->n[k];
	r->first = 0;
	r->last = applied;
	pthread_mutex_unlock(&r->mu);
	struct dl_group_handlers h = {.apply = on_apply, .on_role = on_role, .arg = r,
				      .applied_index = applied};
	tt_assert(dl_group_set_handlers(c->n[k], "g0", &h) == DL_OK);
	rc = dl_node_start(c->n[k], err, sizeof(err));
	tt_assert(rc == DL_OK, "start n%d: %s: %s", k, dl_strerror(rc), err);
	/* Handlers are fixed once started. */
	tt_assert(dl_group_set_handlers(c->n[k], "g0", &h) == DL_EBUSY);
}

static void tc_stop(struct tc *c, int k)
{
	dl_node_close(c->n[k]);
	c->n[k] = NULL;
}

static void tc_fini(struct tc *c)
{
	for (int k = 0; k < NODES; k++) {
		tc_stop(c, k);
		free(c->r[k].hash);
		pthread_mutex_destroy(&c->r[k].mu);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	tt_assert(system(cmd) == 0);
}

/* The node whose member leads with every running node following it, or -1. */
static int leader_of(struct tc *c)
{
	int leader = -1;
	char id[DL_NAME_MAX + 1] = "";
	for (int k = 0; k < NODES; k++) {
		struct dl_member_status st;
		if (c->n[k] == NULL)
			continue;
		if (dl_group_status(c->n[k], "g0", &st) != DL_OK)
			return -1;
		if (st.role == DL_ROLE_LEADER)
			leader = k;
		if (id[0] == '\0')
			snprintf(id, sizeof(id), "%s", st.leader);
		if (st.leader[0] == '\0' || strcmp(id, st.leader) != 0)
			return -1;
	}
	return leader;
}

static bool has_leader(struct tc *c, int k)
{
	(void)k;
	return leader_of(c) >= 0;
}

static int wait_leader(struct tc *c)
{
	tt_assert(wait_until(has_leader, c, 0, WAIT_MS), "no leader within %d ms", WAIT_MS);
	return leader_of(c);
}

static uint64_t want_last;
static bool applied_up_to(struct tc *c, int k)
{
	pthread_mutex_lock(&c->r[k].mu);
	bool ok = c->r[k].last >= want_last;
	pthread_mutex_unlock(&c->r[k].mu);
	return ok;
}

static void wait_applied(struct tc *c, int k, uint64_t index)
{
	want_last = index;
	tt_assert(wait_until(applied_up_to, c, k, WAIT_MS), "n%d did not apply up to %llu", k,
		  (unsigned long long)index);
}

/* ---- appends and their completions ---------------------------------------------------- */

struct done {
	pthread_mutex_t mu;
	unsigned calls, ok, busy, other;
	unsigned twice; /* a completion called twice */
	uint64_t max_index;
	uint64_t *index_of; /* per request: its index (0: not OK) */
	bool *seen;
};

struct req {
	struct done *d;
	unsigned i;
};

static void on_done(void *arg, const struct dl_append_result *res)
{
	struct req *q = arg;
	struct done *d = q->d;
	pthread_mutex_lock(&d->mu);
	if (d->seen[q->i])
		d->twice++;
	d->seen[q->i] = true;
	d->calls++;
	if (res->code == DL_OK) {
		d->ok++;
		tt_assert(res->count == 1 && res->index >= 1 && res->term >= 1);
		d->index_of[q->i] = res->index;
		if (res->index > d->max_index)
			d->max_index = res->index;
	} else if (res->code == DL_EBUSY) {
		d->busy++;
	} else {
		d->other++;
	}
	pthread_mutex_unlock(&d->mu);
}

static struct done *d_wait;
static unsigned want_calls;
static bool all_done(struct tc *c, int k)
{
	(void)c;
	(void)k;
	pthread_mutex_lock(&d_wait->mu);
	bool ok = d_wait->calls >= want_calls;
	pthread_mutex_unlock(&d_wait->mu);
	return ok;
}

static void body_of(unsigned i, char *buf, size_t cap)
{
	snprintf(buf, cap, "entry-%u-%u", i, i * 2654435761u);
}

/* n asynchronous appends of "entry-i-..." to node k; returns how many were
 * accepted (DL_OK returned); the completions go to d. */
static unsigned append_many(struct tc *c, int k, unsigned from, unsigned n, struct done *d,
			    struct req *reqs, unsigned *refused_busy)
{
	unsigned accepted = 0;
	for (unsigned i = from; i < from + n; i++) {
		char body[64];
		body_of(i, body, sizeof(body));
		struct dl_buf b = {body, strlen(body)};
		reqs[i] = (struct req){d, i};
		int rc = dl_append_async(c->n[k], "g0", &b, 1, on_done, &reqs[i]);
		if (rc == DL_OK)
			accepted++;
		else if (rc == DL_EBUSY && refused_busy != NULL)
			(*refused_busy)++;
		else
			tt_assert(rc == DL_OK, "append %u: %s", i, dl_strerror(rc));
	}
	return accepted;
}

static struct done *done_new(unsigned n)
{
	struct done *d = calloc(1, sizeof(*d));
	tt_assert(d != NULL);
	pthread_mutex_init(&d->mu, NULL);
	d->index_of = calloc(n, sizeof(*d->index_of));
	d->seen = calloc(n, sizeof(*d->seen));
	tt_assert(d->index_of != NULL && d->seen != NULL);
	return d;
}

static void done_free(struct done *d)
{
	pthread_mutex_destroy(&d->mu);
	free(d->index_of);
	free(d->seen);
	free(d);
}

/* Every member applied 1..last once, in order, the same bodies; the
 * acknowledged appends are at their indexes. */
static void check_applied(struct tc *c, uint64_t last, const struct done *d, unsigned n)
{
	/* Every record locked (in order) while it is read: members still apply. */
	for (int k = 0; k < NODES; k++)
		pthread_mutex_lock(&c->r[k].mu);
	for (int k = 0; k < NODES; k++) {
		struct rec *r = &c->r[k];
		tt_assert(r->problems == 0, "n%d: %u entries out of order or twice", k, r->problems);
		tt_assert(r->last >= last && r->cap > last);
		for (uint64_t i = r->first; i <= last; i++)
			tt_assert(r->hash[i] != 0, "n%d: index %llu never applied", k,
				  (unsigned long long)i);
	}
	for (uint64_t i = 1; i <= last; i++) {
		uint64_t h = 0;
		for (int k = 0; k < NODES; k++) {
			if (c->r[k].first > i)
				continue;
			if (h == 0)
				h = c->r[k].hash[i];
			tt_assert(c->r[k].hash[i] == h, "members disagree at index %llu",
				  (unsigned long long)i);
		}
	}
	for (unsigned i = 0; d != NULL && i < n; i++) {
		if (d->index_of[i] == 0)
			continue;
		char body[64];
		body_of(i, body, sizeof(body));
		for (int k = 0; k < NODES; k++)
			tt_assert(c->r[k].first > d->index_of[i] ||
					  c->r[k].hash[d->index_of[i]] == body_hash(body, strlen(body)),
				  "n%d: append %u is not at its index %llu", k, i,
				  (unsigned long long)d->index_of[i]);
	}
	for (int k = NODES - 1; k >= 0; k--)
		pthread_mutex_unlock(&c->r[k].mu);
}

/* ---- the tests -------------------------------------------------------------------------- */

static void apply_sees_every_committed_entry_once_in_order_on_every_member(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	enum { N = 600 };
	struct done *d = done_new(N + 40);
	struct req *reqs = calloc(N + 40, sizeof(*reqs));
	unsigned accepted = append_many(&c, l, 0, N, d, reqs, NULL);
	tt_assert(accepted == N);
	/* And batches through the blocking helper. */
	uint64_t max_blocking = 0;
	for (unsigned b = 0; b < 8; b++) {
		char bodies[5][64];
		struct dl_buf bufs[5];
		for (unsigned j = 0; j < 5; j++) {
			body_of(N + b * 5 + j, bodies[j], sizeof(bodies[j]));
			bufs[j] = (struct dl_buf){bodies[j], strlen(bodies[j])};
		}
		struct dl_append_result res;
		int rc = dl_append(c.n[l], "g0", bufs, 5, WAIT_MS, &res);
		tt_assert(rc == DL_OK && res.code == DL_OK && res.count == 5, "blocking append: %s",
			  res.message);
		for (unsigned j = 0; j < 5; j++)
			d->index_of[N + b * 5 + j] = res.index + j;
		max_blocking = res.index + 4;
	}
	d_wait = d;
	want_calls = N;
	tt_assert(wait_until(all_done, &c, 0, WAIT_MS), "%u of %u completions", d->calls, N);
	tt_assert(d->ok == N && d->twice == 0, "ok %u, twice %u", d->ok, d->twice);
	uint64_t last = d->max_index > max_blocking ? d->max_index : max_blocking;
	for (int k = 0; k < NODES; k++)
		wait_applied(&c, k, last);
	check_applied(&c, last, d, N + 40);
	/* A blocking call from a callback was refused. */
	for (int k = 0; k < NODES; k++) {
		pthread_mutex_lock(&c.r[k].mu);
		tt_assert(c.r[k].tried_blocking && c.r[k].blocking_rc == DL_EINVAL,
			  "n%d: dl_append in apply gave %d", k, c.r[k].blocking_rc);
		pthread_mutex_unlock(&c.r[k].mu);
	}
	/* A read of a committed entry, from a follower, is the acknowledged body. */
	int f = (l + 1) % NODES;
	struct dl_entry_copy e;
	tt_assert(dl_read(c.n[f], "g0", d->index_of[7], WAIT_MS, &e) == DL_OK);
	char body[64];
	body_of(7, body, sizeof(body));
	tt_assert(e.len == strlen(body) && memcmp(e.data, body, e.len) == 0 && !e.noop);
	free(e.data);
	int rc = dl_read(c.n[f], "g0", last + 1000, 200, &e);
	tt_assert(rc == DL_ENOTCOMMITTED || rc == DL_ETIMEDOUT, "read past the log: %d", rc);
	tt_assert(dl_read(c.n[f], "nosuch", 1, WAIT_MS, &e) == DL_ENOTFOUND);
	done_free(d);
	free(reqs);
	tc_fini(&c);
}

static void restart_resumes_from_the_applications_applied_index(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	enum { N = 200 };
	struct done *d = done_new(2 * N);
	struct req *reqs = calloc(2 * N, sizeof(*reqs));
	tt_assert(append_many(&c, l, 0, N, d, reqs, NULL) == N);
	d_wait = d;
	want_calls = N;
	tt_assert(wait_until(all_done, &c, 0, WAIT_MS));
	int f = (l + 1) % NODES;
	wait_applied(&c, f, d->max_index);
	/* The application "persisted" an index 20 below what it applied. */
	uint64_t saved = d->max_index - 20;
	tc_stop(&c, f);
	tt_assert(append_many(&c, l, N, N, d, reqs, NULL) == N);
	want_calls = 2 * N;
	tt_assert(wait_until(all_done, &c, 0, WAIT_MS));
	tt_assert(d->ok == 2 * N, "%u of %u appends committed with a follower down", d->ok, 2 * N);
	/* Its record as the application would rebuild it: up to `saved`. */
	pthread_mutex_lock(&c.r[f].mu);
	memset(c.r[f].hash + saved + 1, 0, (c.r[f].cap - saved - 1) * sizeof(uint64_t));
	pthread_mutex_unlock(&c.r[f].mu);
	tc_start(&c, f, saved);
	wait_applied(&c, f, d->max_index);
	pthread_mutex_lock(&c.r[f].mu);
	uint64_t first = c.r[f].first;
	pthread_mutex_unlock(&c.r[f].mu);
	tt_assert(first == saved + 1, "resumed at %llu, wanted %llu", (unsigned long long)first,
		  (unsigned long long)saved + 1);
	for (int k = 0; k < NODES; k++)
		wait_applied(&c, k, d->max_index);
	pthread_mutex_lock(&c.r[f].mu);
	c.r[f].first = 1; /* its record holds 1..saved from the first run */
	pthread_mutex_unlock(&c.r[f].mu);
	check_applied(&c, d->max_index, d, 2 * N);
	done_free(d);
	free(reqs);
	tc_fini(&c);
}

static bool saw_leader_event(struct tc *c, int k)
{
	char id[8];
	snprintf(id, sizeof(id), "n%d", k);
	bool seen = false;
	pthread_mutex_lock(&c->r[k].mu);
	for (size_t i = 0; i < c->r[k].n_ev; i++)
		seen = seen || (c->r[k].ev[i].role == DL_ROLE_LEADER &&
				strcmp(c->r[k].ev[i].leader, id) == 0);
	pthread_mutex_unlock(&c->r[k].mu);
	return seen;
}

static int follows_target; /* for follows() */
static bool follows(struct tc *c, int k)
{
	char id[8];
	snprintf(id, sizeof(id), "n%d", follows_target);
	pthread_mutex_lock(&c->r[k].mu);
	bool ok = c->r[k].n_ev > 0 && strcmp(c->r[k].ev[c->r[k].n_ev - 1].leader, id) == 0 &&
		  c->r[k].ev[c->r[k].n_ev - 1].role ==
			  (k == follows_target ? DL_ROLE_LEADER : DL_ROLE_FOLLOWER);
	pthread_mutex_unlock(&c->r[k].mu);
	return ok;
}

static void role_change_callback_tells_every_member_the_leader(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	follows_target = l;
	for (int k = 0; k < NODES; k++)
		tt_assert(wait_until(follows, &c, k, WAIT_MS), "n%d was not told n%d leads", k, l);
	tt_assert(saw_leader_event(&c, l));
	pthread_mutex_lock(&c.r[l].mu);
	uint64_t term = c.r[l].ev[c.r[l].n_ev - 1].term;
	pthread_mutex_unlock(&c.r[l].mu);
	tt_assert(term >= 1);
	/* A transfer: every member is told the new leader, in a later term. */
	int to = (l + 1) % NODES;
	char to_id[8];
	snprintf(to_id, sizeof(to_id), "n%d", to);
	int rc = dl_transfer_leader(c.n[l], "g0", to_id);
	tt_assert(rc == DL_OK, "transfer: %s", dl_strerror(rc));
	follows_target = to;
	for (int k = 0; k < NODES; k++)
		tt_assert(wait_until(follows, &c, k, WAIT_MS), "n%d was not told n%d leads", k, to);
	pthread_mutex_lock(&c.r[to].mu);
	tt_assert(c.r[to].ev[c.r[to].n_ev - 1].term > term);
	pthread_mutex_unlock(&c.r[to].mu);
	tt_assert(dl_transfer_leader(c.n[to], "g0", "n9") == DL_EINVAL);
	tc_fini(&c);
}

static struct dl_append_result follower_res;
static _Atomic bool follower_done;
static void on_follower_done(void *arg, const struct dl_append_result *r)
{
	(void)arg;
	follower_res = *r;
	atomic_store_explicit(&follower_done, true, memory_order_release); /* pairs with the test */
}
static bool follower_answered(struct tc *c, int k)
{
	(void)c;
	(void)k;
	return atomic_load_explicit(&follower_done, memory_order_acquire);
}

static void append_on_a_follower_names_the_leader(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	int f = (l + 2) % NODES;
	char leader_id[8], leader_addr[32];
	snprintf(leader_id, sizeof(leader_id), "n%d", l);
	snprintf(leader_addr, sizeof(leader_addr), "127.0.0.1:%u", c.port[l]);
	struct dl_buf b = {"hello", 5};
	struct dl_append_result res;
	int rc = dl_append(c.n[f], "g0", &b, 1, WAIT_MS, &res);
	tt_assert(rc == DL_ENOTLEADER && res.code == DL_ENOTLEADER, "got %s", dl_strerror(rc));
	tt_assert(strcmp(res.leader_id, leader_id) == 0 && strcmp(res.leader_addr, leader_addr) == 0,
		  "leader hint '%s' '%s', wanted '%s' '%s'", res.leader_id, res.leader_addr,
		  leader_id, leader_addr);
	tt_assert(strstr(res.message, leader_id) != NULL, "message: %s", res.message);
	/* The asynchronous form says the same in its completion. */
	atomic_store(&follower_done, false);
	tt_assert(dl_append_async(c.n[f], "g0", &b, 1, on_follower_done, NULL) == DL_OK);
	tt_assert(wait_until(follower_answered, &c, 0, WAIT_MS));
	tt_assert(follower_res.code == DL_ENOTLEADER && strcmp(follower_res.leader_id, leader_id) == 0);
	/* Bad arguments are refused at once. */
	tt_assert(dl_append(c.n[l], "g0", &b, 0, 100, NULL) == DL_EINVAL);
	tt_assert(dl_append(c.n[l], "g0", NULL, 1, 100, NULL) == DL_EINVAL);
	tt_assert(dl_append(c.n[l], "nosuch", &b, 1, 100, NULL) == DL_ENOTFOUND);
	tt_assert(dl_append(c.n[l], "", &b, 1, 100, NULL) == DL_EINVAL);
	tc_fini(&c);
}

static uint32_t max_pending_seen;
static bool pending_sampled_until_done(struct tc *c, int k)
{
	struct dl_member_status st;
	if (dl_group_status(c->n[k], "g0", &st) == DL_OK && st.pending_appends > max_pending_seen)
		max_pending_seen = st.pending_appends;
	return all_done(c, k);
}

static void slow_apply_back_pressures_within_the_bounds(void)
{
	struct tc c;
	tc_init(&c);
	c.max_pending = "64";
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	for (int k = 0; k < NODES; k++)
		atomic_store(&c.r[k].sleep_us, 500); /* each entry takes 0.5 ms to apply */
	enum { N = 6000, WAVE = 200, WANT = 600 };
	struct done *d = done_new(N);
	struct req *reqs = calloc(N, sizeof(*reqs));
	unsigned refused = 0, accepted = 0, next = 0, ok = 0;
	d_wait = d;
	max_pending_seen = 0;
	/* Waves of appends, each sent at once, as a producer faster than the
	 * application would: the slow apply holds the pipeline, the rest of
	 * each wave is refused busy, and the producer goes on. */
	uint64_t t0 = now_ms();
	while (ok < WANT && next + WAVE <= N && now_ms() < t0 + 60000) {
		accepted += append_many(&c, l, next, WAVE, d, reqs, &refused);
		next += WAVE;
		want_calls = accepted;
		tt_assert(wait_until(pending_sampled_until_done, &c, l, 60000),
			  "%u of %u completions", d->calls, accepted);
		pthread_mutex_lock(&d->mu);
		ok = d->ok;
		pthread_mutex_unlock(&d->mu);
	}
	tt_assert(ok >= WANT, "only %u appends committed in %u waves", ok, next / WAVE);
	/* The leader applied each committed entry, 0.5 ms each, before it
	 * answered (an append is acknowledged once applied there). */
	tt_assert(now_ms() - t0 >= ok / 2, "%u entries applied in %llu ms", ok,
		  (unsigned long long)(now_ms() - t0));
	printf("  %u appends in %u waves: %u refused at once, %u committed, %u busy; at most %u "
	       "waited\n", next, next / WAVE, refused, d->ok, d->busy, max_pending_seen);
	tt_assert(d->twice == 0 && d->calls == accepted);
	tt_assert(d->ok + d->busy + d->other == accepted);
	tt_assert(d->busy + refused > 0, "nothing was refused: no back-pressure");
	tt_assert(max_pending_seen <= 64, "%u appends waited for commit", max_pending_seen);
	tt_assert(d->other == 0, "%u appends failed otherwise", d->other);
	for (int k = 0; k < NODES; k++)
		wait_applied(&c, k, d->max_index);
	check_applied(&c, d->max_index, d, N);
	done_free(d);
	free(reqs);
	tc_fini(&c);
}

static struct rec g1rec[NODES];
static int g1_leader(struct tc *c)
{
	for (int k = 0; k < NODES; k++) {
		struct dl_member_status st;
		if (dl_group_status(c->n[k], "g1", &st) == DL_OK && st.role == DL_ROLE_LEADER)
			return k;
	}
	return -1;
}
static bool g1_has_leader(struct tc *c, int k)
{
	(void)k;
	return g1_leader(c) >= 0;
}
static bool g1_applied(struct tc *c, int k)
{
	(void)c;
	pthread_mutex_lock(&g1rec[k].mu);
	bool ok = g1rec[k].last >= want_last;
	pthread_mutex_unlock(&g1rec[k].mu);
	return ok;
}

/* A read on a follower right after dl_append returned finds the entry: the
 * follower waits for the commit, which the leader's next append or its
 * commit notice brings about a millisecond and a round trip later. A read
 * past the log waits the call's timeout and no longer. */
static void a_follower_reads_an_entry_right_after_its_append(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	int l = wait_leader(&c);
	enum { N = 40 };
	uint64_t index = 0;
	for (unsigned i = 0; i < N; i++) {
		char body[64];
		body_of(i, body, sizeof(body));
		struct dl_buf b = {body, strlen(body)};
		struct dl_append_result res;
		int rc = dl_append(c.n[l], "g0", &b, 1, WAIT_MS, &res);
		for (unsigned tries = 0; rc == DL_ENOTLEADER && tries < 50; tries++) {
			l = wait_leader(&c); /* a transfer to the preferred leader */
			rc = dl_append(c.n[l], "g0", &b, 1, WAIT_MS, &res);
		}
		tt_assert(rc == DL_OK && res.code == DL_OK, "append %u: %s", i, res.message);
		index = res.index;
		for (int f = 0; f < NODES; f++) {
			if (f == l)
				continue;
			struct dl_entry_copy e;
			uint64_t t0 = now_ms();
			rc = dl_read(c.n[f], "g0", index, 5000, &e);
			tt_assert(rc == DL_OK, "n%d: read of %llu right after its append: %s (%llu ms)",
				  f, (unsigned long long)index, dl_strerror(rc),
				  (unsigned long long)(now_ms() - t0));
			tt_assert(e.index == index && e.len == strlen(body) &&
				  memcmp(e.data, body, e.len) == 0);
			free(e.data);
		}
	}
	int f = (l + 1) % NODES;
	struct dl_entry_copy e;
	uint64_t t0 = now_ms();
	int rc = dl_read(c.n[f], "g0", index + 100, 300, &e);
	uint64_t took = now_ms() - t0;
	tt_assert(rc == DL_ENOTCOMMITTED || rc == DL_ETIMEDOUT, "read past the log: %d", rc);
	tt_assert(took >= 250 && took < 5000, "read past the log took %llu ms",
		  (unsigned long long)took);
	tc_fini(&c);
}

static void groups_are_added_and_removed_at_run_time(void)
{
	struct tc c;
	tc_init(&c);
	for (int k = 0; k < NODES; k++)
		tc_start(&c, k, 0);
	char peers[256];
	snprintf(peers, sizeof(peers), "a0-127.0.0.1:%u;a1-127.0.0.1:%u;a2-127.0.0.1:%u", c.port[0],
		 c.port[1], c.port[2]);
	for (int k = 0; k < NODES; k++) {
		memset(&g1rec[k], 0, sizeof(g1rec[k]));
		pthread_mutex_init(&g1rec[k].mu, NULL);
		g1rec[k].node = c.n[k];
		char id[8], err[256];
		snprintf(id, sizeof(id), "a%d", k);
		struct dl_group_config g = {.group = "g1", .id = id, .peers = peers,
					    .preferred_leader_id = "a1"};
		struct dl_group_handlers h = {.apply = on_apply, .on_role = on_role, .arg = &g1rec[k]};
		int rc = dl_group_add(c.n[k], &g, &h, err, sizeof(err));
		tt_assert(rc == DL_OK, "add g1 on n%d: %s", k, err);
		tt_assert(dl_group_add(c.n[k], &g, &h, err, sizeof(err)) == DL_EEXIST);
	}
	/* Another self address than the node's is refused, naming it. */
	struct dl_group_config other = {.group = "g2", .id = "b0", .peers = "b0-127.0.0.1:1"};
	char err[256];
	tt_assert(dl_group_add(c.n[0], &other, NULL, err, sizeof(err)) == DL_ECONFIG);
	tt_assert(err[0] != '\0');
	/* The preferred leader a1 (node 1) takes over once elected elsewhere;
	 * appends made meanwhile may meet the transfer (busy) or a follower:
	 * each is retried on the leader of the moment, within the deadline. */
	tt_assert(wait_until(g1_has_leader, &c, 0, WAIT_MS), "g1 elected no leader");
	uint64_t last = 0, deadline = now_ms() + WAIT_MS;
	for (unsigned i = 0; i < 50; i++) {
		char body[64];
		body_of(i, body, sizeof(body));
		struct dl_buf b = {body, strlen(body)};
		struct dl_append_result res;
		int rc, l;
		do {
			l = g1_leader(&c);
			rc = l < 0 ? DL_ENOTLEADER : dl_append(c.n[l], "g1", &b, 1, WAIT_MS, &res);
			if (rc == DL_ENOTLEADER || rc == DL_EBUSY)
				usleep(5000);
		} while ((rc == DL_ENOTLEADER || rc == DL_EBUSY) && now_ms() < deadline);
		tt_assert(rc == DL_OK, "g1 append: %s", dl_strerror(rc));
		last = res.index;
	}
	want_last = last;
	for (int k = 0; k < NODES; k++)
		tt_assert(wait_until(g1_applied, &c, k, WAIT_MS), "g1/a%d did not apply", k);
	for (int k = 0; k < NODES; k++) {
		pthread_mutex_lock(&g1rec[k].mu);
		tt_assert(g1rec[k].problems == 0 && g1rec[k].first == 1);
		for (uint64_t i = 1; i <= last; i++)
			tt_assert(g1rec[k].hash[i] == g1rec[0].hash[i], "g1 members disagree at %llu",
				  (unsigned long long)i);
		pthread_mutex_unlock(&g1rec[k].mu);
	}
	/* Removed: gone from the node, and none of its callbacks runs after. */
	for (int k = 0; k < NODES; k++) {
		tt_assert(dl_group_remove(c.n[k], "g1") == DL_OK);
		pthread_mutex_lock(&g1rec[k].mu);
		size_t events = g1rec[k].n_ev;
		uint64_t applied = g1rec[k].last;
		pthread_mutex_unlock(&g1rec[k].mu);
		tt_assert(dl_group_remove(c.n[k], "g1") == DL_ENOTFOUND);
		struct dl_member_status st;
		tt_assert(dl_group_status(c.n[k], "g1", &st) == DL_ENOTFOUND);
		usleep(100 * 1000);
		pthread_mutex_lock(&g1rec[k].mu);
		tt_assert(g1rec[k].n_ev == events && g1rec[k].last == applied);
		pthread_mutex_unlock(&g1rec[k].mu);
	}
	/* g0 goes on. */
	int l0 = wait_leader(&c);
	struct dl_buf b = {"after", 5};
	tt_assert(dl_append(c.n[l0], "g0", &b, 1, WAIT_MS, NULL) == DL_OK);
	size_t total = 0;
	struct dl_member_status all[4];
	tt_assert(dl_node_status(c.n[l0], all, 4, &total) == 1 && total == 1);
	tt_assert(strcmp(all[0].group, "g0") == 0 && all[0].role == DL_ROLE_LEADER);
	tc_fini(&c);
	for (int k = 0; k < NODES; k++) {
		free(g1rec[k].hash);
		pthread_mutex_destroy(&g1rec[k].mu);
	}
}

static void bad_configurations_name_the_key(void)
{
	struct dl_group_config g = {.group = "g0", .id = "n0", .peers = "n0-127.0.0.1:1"};
	struct dl_kv bad[] = {{"heartBeatTimeIntervalMs", "fast"}};
	struct dl_node_config cfg = {.store_base_dir = "/tmp/dl-embedtest-none", .keys = bad,
				     .n_keys = 1, .groups = &g, .n_groups = 1};
	struct dl_node_options opts = {.no_control_socket = true};
	dl_node *n = (dl_node *)&g;
	char err[256];
	int rc = dl_node_open(&cfg, &opts, &n, err, sizeof(err));
	tt_assert(rc == DL_ECONFIG && n == NULL, "rc %d", rc);
	tt_assert(strstr(err, "heartBeatTimeIntervalMs") != NULL, "%s", err);
	struct dl_kv inject[] = {{"storeType", "memory'\nlogLevel: 'debug"}};
	cfg.keys = inject;
	tt_assert(dl_node_open(&cfg, &opts, &n, err, sizeof(err)) == DL_ECONFIG);
	struct dl_kv weird[] = {{"a: b", "c"}};
	cfg.keys = weird;
	tt_assert(dl_node_open(&cfg, &opts, &n, err, sizeof(err)) == DL_ECONFIG);
	cfg.keys = NULL;
	cfg.n_keys = 0;
	g.peers = "n1-127.0.0.1:1";
	rc = dl_node_open(&cfg, &opts, &n, err, sizeof(err));
	tt_assert(rc == DL_ECONFIG && strstr(err, "peers") != NULL, "%s", err);
	tt_assert(dl_node_open_file("/nonexistent/dl.yaml", &opts, &n, err, sizeof(err)) != DL_OK);
	tt_assert(n == NULL && err[0] != '\0');
	tt_assert(dl_node_open(NULL, &opts, &n, err, sizeof(err)) == DL_EINVAL);
	/* Calls on a node that is not started. */
	g.peers = "n0-127.0.0.1:1";
	rc = dl_node_open(&cfg, &opts, &n, err, sizeof(err));
	tt_assert(rc == DL_OK, "%s", err);
	struct dl_buf b = {"x", 1};
	tt_assert(dl_append(n, "g0", &b, 1, 10, NULL) == DL_ECLOSED);
	tt_assert(dl_group_set_handlers(n, "nosuch", &(struct dl_group_handlers){0}) ==
		  DL_ENOTFOUND);
	dl_node_close(n);
	dl_node_close(NULL);
	tt_assert(strcmp(dl_strerror(DL_ENOTLEADER), "not leader") == 0);
	tt_assert(strcmp(dl_strerror(-5), "unknown error") == 0);
}

int main(void)
{
	static const struct tt_test tests[] = {
		TT_T(bad_configurations_name_the_key),
		TT_T(apply_sees_every_committed_entry_once_in_order_on_every_member),
		TT_T(restart_resumes_from_the_applications_applied_index),
		TT_T(role_change_callback_tells_every_member_the_leader),
		TT_T(append_on_a_follower_names_the_leader),
		TT_T(a_follower_reads_an_entry_right_after_its_append),
		TT_T(groups_are_added_and_removed_at_run_time),
		TT_T(slow_apply_back_pressures_within_the_bounds),
	};
	return tt_run("embed", tests, TT_COUNT(tests));
}
