/*
 * The C client (client/client.h) against an in-process 3-node cluster on
 * loopback: redirects, many appends in flight, reads from a follower, reads
 * cut by size, errors, node metadata, and fail-over when the leader's node
 * stops. A plain program (tt.h) so that it also runs under ThreadSanitizer.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "test/lib/tt_net.h"
#include "client/client.h"
#include "common/dl_log.h"
#include "common/dl_time.h"
#include "runtime/runtime.h"
#include "test/lib/tt.h"

TT_MAIN_STATE;

#define NODES        3
#define GROUPS       3
#define HEARTBEAT_MS 100
#define ELECTION_MS  1000
#define MANY         1000
#define WINDOW       64

struct cluster {
	char dir[64];
	char addr[NODES][32];
	struct rt_node *node[NODES];
};

static struct cluster cl;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) { usleep(ms * 1000); }

static void group_name(uint32_t g, char *buf) { snprintf(buf, 16, "g%u", g); }
static void member_name(uint32_t k, char *buf) { snprintf(buf, 16, "n%u", k); }

static void start_node(uint32_t k)
{
	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	snprintf(nc.listen_addr, sizeof(nc.listen_addr), "%s", cl.addr[k]);
	struct dl_errctx err = {{0}};
	int rc = rt_node_start(&nc, &cl.node[k], &err);
	tt_assert(rc == 0, "node %u: %s", k, err.msg);
	for (uint32_t g = 0; g < GROUPS; g++) {
		struct rt_member_config mc;
		rt_member_config_defaults(&mc);
		group_name(g, mc.group);
		member_name(k, mc.self_id);
		mc.n_peers = NODES;
		for (uint32_t i = 0; i < NODES; i++) {
			member_name(i, mc.peers[i].id);
			snprintf(mc.peers[i].addr, sizeof(mc.peers[i].addr), "%s", cl.addr[i]);
		}
		member_name(g % NODES, mc.preferred_id);
		mc.heartbeat_ms = HEARTBEAT_MS;
		mc.election_ms = ELECTION_MS;
		mc.store.base_dir = cl.dir;
		mc.store.segment_bytes = 1u << 20;
		mc.store.index_segment_bytes = 1u << 16;
		rc = rt_node_add(cl.node[k], &mc, &err);
		tt_assert(rc == 0, "add %s/%s: %s", mc.group, mc.self_id, err.msg);
	}
}

static bool member_status(uint32_t k, uint32_t g, struct rt_member_status *st)
{
	char gn[16], id[16];
	group_name(g, gn);
	member_name(k, id);
	return cl.node[k] != NULL && rt_node_member_status(cl.node[k], gn, id, st) == 0;
}

/* The node whose member leads g as every running member agrees; -1 if none. */
static int leader_of(uint32_t g)
{
	int leader = -1;
	for (uint32_t k = 0; k < NODES; k++) {
		struct rt_member_status st;
		if (!member_status(k, g, &st))
			continue;
		if (st.leader[0] != 'n')
			return -1;
		int l = atoi(st.leader + 1);
		if (leader != -1 && l != leader)
			return -1;
		leader = l;
	}
	struct rt_member_status st;
	if (leader < 0 || !member_status((uint32_t)leader, g, &st) || st.role != RAFT_LEADER)
		return -1;
	return leader;
}

/* Waits for g's leader; while every node runs, for the preferred one, so
 * that no leadership transfer happens during a test. */
static int wait_leader(uint32_t g, unsigned timeout_ms)
{
	bool all_up = true;
	for (uint32_t k = 0; k < NODES; k++)
		all_up = all_up && cl.node[k] != NULL;
	uint64_t deadline = now_ms() + timeout_ms;
	while (now_ms() < deadline) {
		int l = leader_of(g);
		if (l >= 0 && (!all_up || l == (int)(g % NODES)))
			return l;
		sleep_ms(10);
	}
	return -1;
}

static uint64_t term_of(uint32_t k, uint32_t g)
{
	struct rt_member_status st;
	tt_assert(member_status(k, g, &st));
	return st.term;
}

static bool wait_commit(uint32_t k, uint32_t g, uint64_t index, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	while (now_ms() < deadline) {
		struct rt_member_status st;
		if (member_status(k, g, &st) && st.commit_index >= index)
			return true;
		sleep_ms(5);
	}
	return false;
}

/* "nA-addr;nB-addr;nC-addr" with node `first` first. */
static void peers_string(uint32_t first, char *buf, size_t cap)
{
	size_t off = 0;
	for (uint32_t i = 0; i < NODES; i++) {
		uint32_t k = (first + i) % NODES;
		off += (size_t)snprintf(buf + off, cap - off, "n%u-%s;", k, cl.addr[k]);
	}
}

static struct dl_client *open_client(uint32_t first, const char *group,
				     const struct dl_client_opts *o)
{
	char peers[256];
	peers_string(first, peers, sizeof(peers));
	struct dl_client *c = NULL;
	struct dl_errctx err = {{0}};
	int rc = dl_client_open(peers, group, o, &c, &err);
	tt_assert(rc == 0, "open: %s", err.msg);
	return c;
}

/* ---- async appends ---------------------------------------------------------------- */

struct many {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	uint32_t done;
	uint64_t index[MANY];
	uint64_t term[MANY];
	int code[MANY];
	char member[MANY][16];
};

struct many_arg {
	struct many *m;
	uint32_t i;
};

static void many_cb(void *arg, const struct dl_client_result *r)
{
	struct many_arg *a = arg;
	struct many *m = a->m;
	pthread_mutex_lock(&m->mu);
	m->code[a->i] = r->code;
	m->index[a->i] = r->first_index;
	m->term[a->i] = r->term;
	snprintf(m->member[a->i], sizeof(m->member[a->i]), "%s", r->member);
	if (r->code != 0)
		fprintf(stderr, "append %u: %s\n", a->i, r->detail);
	m->done++;
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static void body_of(uint32_t i, char *buf, size_t cap) { snprintf(buf, cap, "entry-%04u", i); }

/* Answers of n async appends: *args[i] goes with append i. */
static struct many *many_new(uint32_t n, struct many_arg **args)
{
	struct many *m = calloc(1, sizeof(*m));
	*args = calloc(n, sizeof(**args));
	tt_assert(m && *args);
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	for (uint32_t i = 0; i < n; i++)
		(*args)[i] = (struct many_arg){m, i};
	return m;
}

static void many_wait(struct many *m, uint32_t n)
{
	pthread_mutex_lock(&m->mu);
	while (m->done < n)
		pthread_cond_wait(&m->cv, &m->mu);
	pthread_mutex_unlock(&m->mu);
}

static void many_free(struct many *m, struct many_arg *args)
{
	pthread_cond_destroy(&m->cv);
	pthread_mutex_destroy(&m->mu);
	free(args);
	free(m);
}

/* Submits append i (body_of(i)) of m; the test fails if it is refused. */
static void submit_numbered(struct dl_client *c, struct many_arg *args, uint32_t i)
{
	char body[32];
	body_of(i, body, sizeof(body));
	struct dl_client_buf b = {body, strlen(body)};
	struct dl_errctx err = {{0}};
	int rc = dl_client_append_async(c, &b, 1, many_cb, &args[i], &err);
	tt_assert(rc == 0, "submit %u: %s", i, err.msg);
}

/* ---- the tests --------------------------------------------------------------------- */

static uint64_t g_first, g_last; /* the MANY entries of g0 */

static void redirect_from_follower_reaches_the_leader(void)
{
	int l = wait_leader(0, 10000);
	tt_assert(l >= 0, "no leader for g0");
	uint32_t follower = ((uint32_t)l + 1) % NODES;
	struct dl_client *c = open_client(follower, "g0", NULL);
	struct many m = {.done = 0};
	pthread_mutex_init(&m.mu, NULL);
	pthread_cond_init(&m.cv, NULL);
	struct many_arg a = {&m, 0};
	struct dl_client_buf b = {"hello", 5};
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append_async(c, &b, 1, many_cb, &a, &err) == 0, "%s", err.msg);
	pthread_mutex_lock(&m.mu);
	while (m.done < 1)
		pthread_cond_wait(&m.cv, &m.mu);
	pthread_mutex_unlock(&m.mu);
	tt_assert(m.code[0] == 0, "append: %s", dl_strerror(m.code[0]));
	char lid[16];
	member_name((uint32_t)l, lid);
	tt_assert(strcmp(m.member[0], lid) == 0, "answered by %s, leader %s", m.member[0], lid);
	tt_assert(m.index[0] >= 1);
	tt_assert(m.term[0] == term_of((uint32_t)l, 0));
	/* The client now goes to the leader straight away. */
	uint64_t idx, term;
	tt_assert(dl_client_append(c, "again", 5, &idx, &term, &err) == 0, "%s", err.msg);
	tt_assert(idx == m.index[0] + 1, "index %llu after %llu", (unsigned long long)idx,
		  (unsigned long long)m.index[0]);
	dl_client_close(c);
	pthread_cond_destroy(&m.cv);
	pthread_mutex_destroy(&m.mu);
}

static void thousand_appends_64_in_flight_get_contiguous_indexes(void)
{
	int l = wait_leader(0, 10000);
	tt_assert(l >= 0);
	struct dl_client_opts o = {.max_inflight = WINDOW, .timeout_ms = 20000};
	struct dl_client *c = open_client(((uint32_t)l + 2) % NODES, "g0", &o);
	struct many_arg *args;
	struct many *m = many_new(MANY, &args);
	for (uint32_t i = 0; i < MANY; i++)
		submit_numbered(c, args, i);
	many_wait(m, MANY);
	uint64_t lo = UINT64_MAX, hi = 0;
	uint64_t term = term_of((uint32_t)l, 0);
	for (uint32_t i = 0; i < MANY; i++) {
		tt_assert(m->code[i] == 0, "append %u: %s", i, dl_strerror(m->code[i]));
		tt_assert(m->term[i] == term, "append %u in term %llu, leader's %llu", i,
			  (unsigned long long)m->term[i], (unsigned long long)term);
		lo = m->index[i] < lo ? m->index[i] : lo;
		hi = m->index[i] > hi ? m->index[i] : hi;
	}
	tt_assert(hi - lo + 1 == MANY, "indexes %llu..%llu", (unsigned long long)lo,
		  (unsigned long long)hi);
	/* All distinct: a range of MANY values holding MANY indexes. */
	uint8_t *seen = calloc(MANY, 1);
	for (uint32_t i = 0; i < MANY; i++) {
		tt_assert(!seen[m->index[i] - lo], "index %llu twice",
			  (unsigned long long)m->index[i]);
		seen[m->index[i] - lo] = 1;
	}
	free(seen);
	g_first = lo;
	g_last = hi;
	dl_client_close(c);
	many_free(m, args);
}

struct collect {
	uint64_t next;
	uint32_t count;
	char (*bodies)[32];
};

static int collect_cb(void *arg, uint64_t index, uint64_t term, const void *data, size_t len)
{
	struct collect *co = arg;
	tt_assert(index == co->next, "entry %llu, expected %llu", (unsigned long long)index,
		  (unsigned long long)co->next);
	tt_assert(term > 0);
	tt_assert(len < 32);
	memcpy(co->bodies[co->count], data, len);
	co->bodies[co->count][len] = '\0';
	co->count++;
	co->next++;
	return 0;
}

/* Reads [g_first, g_last] from `member` and checks that every body is one
 * of the MANY, each once. */
static void read_back(struct dl_client *c, const char *member)
{
	struct collect co = {.next = g_first, .bodies = calloc(MANY, 32)};
	struct dl_errctx err = {{0}};
	int rc = dl_client_get(c, g_first, g_last, member, collect_cb, &co, &err);
	tt_assert(rc == 0, "get from %s: %s", member ? member : "any", err.msg);
	tt_assert(co.count == MANY, "%u entries", co.count);
	uint8_t *seen = calloc(MANY, 1);
	for (uint32_t i = 0; i < MANY; i++) {
		unsigned k;
		tt_assert(sscanf(co.bodies[i], "entry-%4u", &k) == 1 && k < MANY, "body '%s'",
			  co.bodies[i]);
		tt_assert(!seen[k], "body %u twice", k);
		seen[k] = 1;
	}
	free(seen);
	free(co.bodies);
}

struct kinds {
	uint64_t next, normal, noop;
};

static int kinds_cb(void *arg, const struct dl_client_entry *e)
{
	struct kinds *k = arg;
	tt_assert(e->index == k->next);
	k->next++;
	if (e->type == RAFT_ENTRY_NOOP) {
		tt_assert(e->len == 0);
		k->noop++;
	} else {
		tt_assert(e->type == RAFT_ENTRY_NORMAL);
		k->normal++;
	}
	return 0;
}

static void read_tells_noop_entries_apart(void)
{
	struct dl_client *c = open_client(2, "g0", NULL);
	struct kinds k = {.next = 1};
	struct dl_errctx err = {{0}};
	int rc = dl_client_read(c, 1, g_last, NULL, kinds_cb, &k, &err);
	tt_assert(rc == 0, "%s", err.msg);
	tt_assert(k.noop >= 1, "no no-op entry in 1..%llu", (unsigned long long)g_last);
	tt_assert(k.normal >= MANY + 2, "%llu normal entries", (unsigned long long)k.normal);
	tt_assert(k.noop + k.normal == g_last);
	dl_client_close(c);
}

static void get_from_a_follower_returns_the_same_bodies(void)
{
	tt_assert(g_last > 0, "needs the previous test");
	int l = wait_leader(0, 10000);
	tt_assert(l >= 0);
	uint32_t f = ((uint32_t)l + 1) % NODES;
	tt_assert(wait_commit(f, 0, g_last, 5000), "follower did not commit");
	char fid[16];
	member_name(f, fid);
	struct dl_client *c = open_client(0, "g0", NULL);
	read_back(c, fid);
	read_back(c, NULL);
	dl_client_close(c);
	/* Replies cut at ~1 KiB: the client continues where each stopped. */
	struct dl_client_opts o = {.get_max_bytes = 1024};
	c = open_client(0, "g0", &o);
	read_back(c, fid);
	dl_client_close(c);
}

static void get_beyond_commit_is_not_committed(void)
{
	int l = wait_leader(0, 10000);
	tt_assert(l >= 0);
	struct rt_member_status st;
	tt_assert(member_status((uint32_t)l, 0, &st));
	struct dl_client *c = open_client(0, "g0", NULL);
	struct collect co = {.next = st.commit_index + 1000, .bodies = calloc(4, 32)};
	struct dl_errctx err = {{0}};
	int rc = dl_client_get(c, co.next, co.next + 3, NULL, collect_cb, &co, &err);
	tt_assert(rc == DL_ENOTCOMMITTED, "got %s (%s)", dl_strerror(rc), err.msg);
	tt_assert(co.count == 0);
	rc = dl_client_get(c, 0, 1, NULL, collect_cb, &co, &err);
	tt_assert(rc == DL_EINVAL, "index 0: %s", dl_strerror(rc));
	dl_client_close(c);
	/* The wait: the member's default (1 s) above; the caller's own; none. */
	struct dl_client_opts o = {.get_wait_ms = 200};
	c = open_client(0, "g0", &o);
	uint64_t t0 = dl_now_ns();
	rc = dl_client_get(c, co.next, co.next, NULL, collect_cb, &co, &err);
	double ms = (double)(dl_now_ns() - t0) / 1e6;
	tt_assert(rc == DL_ENOTCOMMITTED, "got %s (%s)", dl_strerror(rc), err.msg);
	tt_assert(strstr(err.msg, "after waiting 200 ms") != NULL, "detail '%s'", err.msg);
	tt_assert(ms >= 190 && ms < 2000, "answered after %.0f ms", ms);
	dl_client_close(c);
	o.get_wait_ms = DL_CLIENT_NO_WAIT;
	c = open_client(0, "g0", &o);
	rc = dl_client_get(c, co.next, co.next, NULL, collect_cb, &co, &err);
	tt_assert(rc == DL_ENOTCOMMITTED, "got %s (%s)", dl_strerror(rc), err.msg);
	tt_assert(strstr(err.msg, "waiting") == NULL, "detail '%s'", err.msg);
	dl_client_close(c);
	/* A wait must end before the request's timeout. */
	char peers[256];
	peers_string(0, peers, sizeof(peers));
	struct dl_client_opts bad = {.timeout_ms = 1000, .get_wait_ms = 1000};
	rc = dl_client_open(peers, "g0", &bad, &c, &err);
	tt_assert(rc == DL_EINVAL, "wait as long as the timeout: %s", dl_strerror(rc));
	bad = (struct dl_client_opts){.timeout_ms = 120000, .get_wait_ms = 60001};
	rc = dl_client_open(peers, "g0", &bad, &c, &err);
	tt_assert(rc == DL_EINVAL, "wait over 60 s: %s", dl_strerror(rc));
	free(co.bodies);
}

static void unknown_group_is_not_found(void)
{
	struct dl_client *c = open_client(0, "no-such-group", NULL);
	struct dl_errctx err = {{0}};
	int rc = dl_client_append(c, "x", 1, NULL, NULL, &err);
	tt_assert(rc == DL_ENOTFOUND, "append: %s (%s)", dl_strerror(rc), err.msg);
	tt_assert(strstr(err.msg, "n0") != NULL, "detail '%s'", err.msg);
	struct collect co = {.next = 1, .bodies = calloc(1, 32)};
	rc = dl_client_get(c, 1, 1, NULL, collect_cb, &co, &err);
	tt_assert(rc == DL_ENOTFOUND, "get: %s (%s)", dl_strerror(rc), err.msg);
	struct tp_group_meta gm;
	rc = dl_client_metadata(c, "n1", &gm, &err);
	tt_assert(rc == DL_ENOTFOUND, "metadata: %s (%s)", dl_strerror(rc), err.msg);
	free(co.bodies);
	dl_client_close(c);
}

static void node_metadata_lists_every_group(void)
{
	/* A node-metadata request is bound to its address and waits only
	 * connect_timeout_ms for the first dial: 500 ms was once too short
	 * under TSan with the other core busy. */
	struct dl_client_opts o = {.connect_timeout_ms = 5000};
	struct dl_client *c = open_client(0, NULL, &o);
	for (uint32_t k = 0; k < NODES; k++) {
		struct tp_group_meta *rows = NULL;
		uint32_t n = 0;
		struct dl_errctx err = {{0}};
		int rc = dl_client_node_metadata(c, cl.addr[k], &rows, &n, &err);
		tt_assert(rc == 0, "node %u: %s", k, err.msg);
		tt_assert(n == GROUPS, "node %u: %u groups", k, n);
		uint32_t mask = 0;
		char id[16];
		member_name(k, id);
		for (uint32_t i = 0; i < n; i++) {
			unsigned g;
			tt_assert(sscanf(rows[i].group, "g%u", &g) == 1 && g < GROUPS);
			mask |= 1u << g;
			tt_assert(strcmp(rows[i].self, id) == 0, "self %s", rows[i].self);
			tt_assert(rows[i].n_members == NODES);
		}
		tt_assert(mask == (1u << GROUPS) - 1, "groups mask %x", mask);
		free(rows);
	}
	/* One group through a client of it. */
	dl_client_close(c);
	c = open_client(1, "g0", &o);
	struct tp_group_meta gm;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_metadata(c, "n2", &gm, &err) == 0, "%s", err.msg);
	tt_assert(strcmp(gm.group, "g0") == 0 && strcmp(gm.self, "n2") == 0);
	int l = wait_leader(0, 10000);
	tt_assert(l >= 0 && gm.leader[0] == 'n' && atoi(gm.leader + 1) == l, "leader '%s'",
		  gm.leader);
	tt_assert(gm.commit_index >= g_last);
	dl_client_close(c);
}

struct nested {
	struct dl_client *c;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int blocking_rc; /* a blocking call made inside a callback */
	int submit_rc;   /* an async submit made inside a callback */
	int inner_code;  /* the outcome of that submit */
	uint32_t done;
};

static void nested_inner_cb(void *arg, const struct dl_client_result *r)
{
	struct nested *n = arg;
	pthread_mutex_lock(&n->mu);
	n->inner_code = r->code;
	n->done++;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
}

static void nested_outer_cb(void *arg, const struct dl_client_result *r)
{
	struct nested *n = arg;
	tt_assert(r->code == 0, "%s", r->detail);
	struct dl_errctx err = {{0}};
	int brc = dl_client_append(n->c, "inner", 5, NULL, NULL, &err);
	struct dl_client_buf b = {"inner-async", 11};
	int src = dl_client_append_async(n->c, &b, 1, nested_inner_cb, n, &err);
	pthread_mutex_lock(&n->mu);
	n->blocking_rc = brc;
	n->submit_rc = src;
	n->done++;
	pthread_cond_signal(&n->cv);
	pthread_mutex_unlock(&n->mu);
}

static void callbacks_may_submit_but_not_block(void)
{
	struct nested n = {.c = open_client(0, "g0", NULL), .inner_code = -1};
	pthread_mutex_init(&n.mu, NULL);
	pthread_cond_init(&n.cv, NULL);
	struct dl_client_buf b = {"outer", 5};
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append_async(n.c, &b, 1, nested_outer_cb, &n, &err) == 0);
	pthread_mutex_lock(&n.mu);
	while (n.done < 2)
		pthread_cond_wait(&n.cv, &n.mu);
	pthread_mutex_unlock(&n.mu);
	tt_assert(n.blocking_rc == DL_EINVAL, "blocking call in a callback: %s",
		  dl_strerror(n.blocking_rc));
	tt_assert(n.submit_rc == 0, "submit in a callback: %s", dl_strerror(n.submit_rc));
	tt_assert(n.inner_code == 0, "inner append: %s", dl_strerror(n.inner_code));
	dl_client_close(n.c);
	pthread_cond_destroy(&n.cv);
	pthread_mutex_destroy(&n.mu);
}

static void count_cb(void *arg, const struct dl_client_result *r)
{
	int *codes = arg;
	__atomic_store_n(codes, r->code, __ATOMIC_RELEASE);
}

static void unreachable_member_times_out_and_close_fails_pending(void)
{
	char peers[64];
	snprintf(peers, sizeof(peers), "x0-127.0.0.1:%u", tt_port());
	struct dl_client_opts o = {.timeout_ms = 300};
	struct dl_client *c = NULL;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g0", &o, &c, &err) == 0, "%s", err.msg);
	uint64_t t0 = now_ms();
	int rc = dl_client_append(c, "x", 1, NULL, NULL, &err);
	uint64_t took = now_ms() - t0;
	tt_assert(rc == DL_ETIMEDOUT, "%s (%s)", dl_strerror(rc), err.msg);
	tt_assert(took >= 250 && took < 2000, "took %llu ms", (unsigned long long)took);
	dl_client_close(c);

	o.timeout_ms = 60000;
	tt_assert(dl_client_open(peers, "g0", &o, &c, &err) == 0);
	int code = -1;
	struct dl_client_buf b = {"y", 1};
	tt_assert(dl_client_append_async(c, &b, 1, count_cb, &code, &err) == 0);
	sleep_ms(50);
	dl_client_close(c);
	tt_assert(__atomic_load_n(&code, __ATOMIC_ACQUIRE) == DL_ECLOSED, "code %d", code);

	rc = dl_client_open("bad peers", "g0", NULL, &c, &err);
	tt_assert(rc == DL_ECONFIG, "%s", dl_strerror(rc));
}

static void appends_fail_over_when_the_leaders_node_stops(void)
{
	int l = wait_leader(1, 10000);
	tt_assert(l >= 0, "no leader for g1");
	struct dl_client_opts o = {.timeout_ms = 15000};
	struct dl_client *c = open_client((uint32_t)l, "g1", &o);
	uint64_t idx0, term0;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append(c, "before", 6, &idx0, &term0, &err) == 0, "%s", err.msg);

	/* Appends in flight while the node stops, and after. */
	struct many_arg *args;
	struct many *m = many_new(200, &args);
	for (uint32_t i = 0; i < 100; i++) {
		struct dl_client_buf b = {"during", 6};
		tt_assert(dl_client_append_async(c, &b, 1, many_cb, &args[i], &err) == 0);
	}
	uint64_t t0 = now_ms();
	rt_node_stop(cl.node[l]);
	cl.node[l] = NULL;
	for (uint32_t i = 100; i < 200; i++) {
		struct dl_client_buf b = {"after", 5};
		tt_assert(dl_client_append_async(c, &b, 1, many_cb, &args[i], &err) == 0);
	}
	many_wait(m, 200);
	uint64_t took = now_ms() - t0;
	int nl = leader_of(1);
	tt_assert(nl >= 0 && nl != l, "new leader %d, old %d", nl, l);
	char nid[16];
	member_name((uint32_t)nl, nid);
	for (uint32_t i = 100; i < 200; i++) {
		tt_assert(m->code[i] == 0, "append %u after the stop: %s", i,
			  dl_strerror(m->code[i]));
		tt_assert(m->term[i] > term0, "append %u in term %llu", i,
			  (unsigned long long)m->term[i]);
		tt_assert(strcmp(m->member[i], nid) == 0, "answered by %s", m->member[i]);
	}
	printf("  fail-over: 200 appends done %llu ms after the stop, new leader %s\n",
	       (unsigned long long)took, nid);
	uint64_t idx, term;
	tt_assert(dl_client_append(c, "later", 5, &idx, &term, &err) == 0, "%s", err.msg);
	tt_assert(idx > idx0 && term > term0);
	dl_client_close(c);
	many_free(m, args);
}

/* ---- fake nodes: a follower, a silent node, a leader --------------------------------- */

enum fake_mode {
	FAKE_REDIRECT, /* answers every append with DL_ENOTLEADER naming `leader` */
	FAKE_SILENT,   /* takes the connection and the requests, answers nothing (a
			  leader cut off by a partition) */
	FAKE_LEADER,   /* commits every append: index = its count of appends */
};

struct fake {
	nng_socket s;
	pthread_t t;
	atomic_bool stop;
	atomic_uint hits;
	enum fake_mode mode; /* set before fake_start() */
	char self[16];
	char addr[32];
	char leader[16]; /* whom it names as leader ("" for none) */
	char leader_addr[32];
};

/* The answer to one append of the request frame, added to `fb`. */
static void fake_answer(struct fake *f, const struct tp_hdr *h, struct tp_fb *fb)
{
	tt_assert(h->type == TP_APPEND && strcmp(h->target, f->self) == 0, "type %u target %s",
		  h->type, h->target);
	/* Count before answering: the client may act on the answer at once. */
	unsigned hit = atomic_fetch_add_explicit(&f->hits, 1, memory_order_seq_cst) + 1;
	struct tp_addr a = {.group = h->group, .target = "", .sender = f->self,
			    .request_id = h->request_id};
	if (f->mode == FAKE_LEADER) {
		struct raft_entry ents[4];
		uint32_t n = 0;
		tt_assert(tp_decode_append(h, ents, 4, &n) == 0 && n == 1);
		struct tp_append_resp r = {.first_index = hit, .term = 7, .n = n};
		tt_assert(tp_fb_add_append_resp(fb, &a, &r) == 0);
		return;
	}
	struct tp_error e = {.code = DL_ENOTLEADER};
	snprintf(e.message, sizeof(e.message), "not leader");
	snprintf(e.leader, sizeof(e.leader), "%s", f->leader);
	snprintf(e.leader_addr, sizeof(e.leader_addr), "%s", f->leader_addr);
	tt_assert(tp_fb_add_error(fb, &a, &e) == 0);
}

/* Answers each request of the frame (the client packs what is queued for a
 * connection into one), all in one reply frame; a silent fake only counts. */
static void fake_reply(struct fake *f, nng_msg *req)
{
	const uint8_t *buf = nng_msg_body(req);
	size_t len = nng_msg_len(req), off = 0;
	tt_assert(tp_frame_begin(buf, len, &off) == 0);
	struct tp_fb fb;
	tp_fb_init(&fb, 1u << 20);
	for (uint32_t i = 0; i < TP_MAX_ENTRIES && off < len; i++) {
		struct tp_hdr h;
		tt_assert(tp_frame_next(buf, len, &off, &h) == 0);
		if (f->mode == FAKE_SILENT)
			atomic_fetch_add_explicit(&f->hits, 1, memory_order_seq_cst);
		else
			fake_answer(f, &h, &fb);
	}
	tt_assert(off == len, "frame not read to its end");
	if (f->mode == FAKE_SILENT) {
		tp_fb_free(&fb);
		return;
	}
	nng_msg *m;
	tt_assert(nng_msg_alloc(&m, 0) == 0);
	nng_msg_header_append(m, nng_msg_header(req), nng_msg_header_len(req));
	nng_msg_append(m, fb.buf, fb.len);
	if (nng_sendmsg(f->s, m, 0) != 0)
		nng_msg_free(m);
	tp_fb_free(&fb);
}

static void *fake_main(void *arg)
{
	struct fake *f = arg;
	while (!atomic_load_explicit(&f->stop, memory_order_relaxed)) {
		nng_msg *m;
		if (nng_recvmsg(f->s, &m, 0) != 0)
			continue;
		fake_reply(f, m);
		nng_msg_free(m);
	}
	return NULL;
}

/* A fake at `addr` (NULL: a free port). A port just let go of by an
 * earlier fake may take a moment to be free again: retried, bounded. */
static void fake_start_at(struct fake *f, const char *self, const char *addr)
{
	snprintf(f->self, sizeof(f->self), "%s", self);
	if (addr != NULL)
		snprintf(f->addr, sizeof(f->addr), "%s", addr);
	else
		snprintf(f->addr, sizeof(f->addr), "127.0.0.1:%u", tt_port());
	char url[64];
	snprintf(url, sizeof(url), "tcp://%s", f->addr);
	tt_assert(nng_rep0_open_raw(&f->s) == 0);
	nng_socket_set_ms(f->s, NNG_OPT_RECVTIMEO, 50);
	int rv = -1;
	for (int i = 0; i < 500 && rv != 0; i++) {
		rv = nng_listen(f->s, url, NULL, 0);
		if (rv != 0)
			sleep_ms(10);
	}
	tt_assert(rv == 0, "listen %s: %s", url, nng_strerror(rv));
	tt_assert(pthread_create(&f->t, NULL, fake_main, f) == 0);
}

static void fake_start(struct fake *f, const char *self) { fake_start_at(f, self, NULL); }

/* The receiver stops before its socket closes (nng 1.5: a receive racing
 * a close can hang). */
static void fake_stop(struct fake *f)
{
	atomic_store_explicit(&f->stop, true, memory_order_relaxed);
	pthread_join(f->t, NULL);
	nng_close(f->s);
}

/* A client of group g9 whose members are the fakes f[0..n), in order. */
static struct dl_client *open_on_fakes(const struct fake *f, int n,
				       const struct dl_client_opts *o)
{
	char peers[256];
	size_t off = 0;
	for (int i = 0; i < n; i++)
		off += (size_t)snprintf(peers + off, sizeof(peers) - off, "%s-%s;", f[i].self,
					f[i].addr);
	tt_assert(off < sizeof(peers));
	struct dl_client *c = NULL;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g9", o, &c, &err) == 0, "%s", err.msg);
	return c;
}

static void redirects_stop_after_the_hop_limit(void)
{
	static struct fake f[2]; /* each names the other as leader */
	fake_start(&f[0], "f0");
	fake_start(&f[1], "f1");
	snprintf(f[0].leader, sizeof(f[0].leader), "f1");
	snprintf(f[1].leader, sizeof(f[1].leader), "f0");
	/* f1 is named by id (found in peers); f0 by an address only. */
	snprintf(f[1].leader_addr, sizeof(f[1].leader_addr), "%s", f[0].addr);
	struct dl_client_opts o = {.max_hops = 3};
	struct dl_client *c = open_on_fakes(f, 2, &o);
	struct dl_errctx err = {{0}};
	int rc = dl_client_append(c, "x", 1, NULL, NULL, &err);
	tt_assert(rc == DL_ENOTLEADER, "%s (%s)", dl_strerror(rc), err.msg);
	char want[128];
	snprintf(want, sizeof(want), "not leader after 3 hops (last tried f1 at %s)", f[1].addr);
	tt_assert(strcmp(err.msg, want) == 0, "detail '%s'", err.msg);
	unsigned hits = atomic_load(&f[0].hits) + atomic_load(&f[1].hits);
	tt_assert(hits == 4, "%u requests for 3 hops", hits);
	dl_client_close(c);
	fake_stop(&f[0]);
	fake_stop(&f[1]);
}

static void no_leader_known_tries_members_until_the_timeout(void)
{
	static struct fake f[2]; /* both know no leader */
	fake_start(&f[0], "f0");
	fake_start(&f[1], "f1");
	/* 1 s: with 400 ms, two first dials under TSan on a busy core left
	 * time for one try in all. */
	struct dl_client_opts o = {.timeout_ms = 1000, .backoff_max_ms = 50};
	struct dl_client *c = open_on_fakes(f, 2, &o);
	struct dl_errctx err = {{0}};
	uint64_t t0 = now_ms();
	int rc = dl_client_append(c, "x", 1, NULL, NULL, &err);
	uint64_t took = now_ms() - t0;
	tt_assert(rc == DL_ETIMEDOUT, "%s (%s)", dl_strerror(rc), err.msg);
	tt_assert(strstr(err.msg, "no leader of group g9 reachable within 1000 ms (last: f") != NULL,
		  "detail '%s'", err.msg);
	tt_assert(took >= 950 && took < 3000, "took %llu ms", (unsigned long long)took);
	unsigned h0 = atomic_load(&f[0].hits), h1 = atomic_load(&f[1].hits);
	tt_assert(h0 >= 2 && h1 >= 2, "tries %u and %u", h0, h1);
	tt_assert(h0 + h1 < 100, "%u tries: the backoff is not working", h0 + h1);
	dl_client_close(c);
	fake_stop(&f[0]);
	fake_stop(&f[1]);
}

/* The deadline of a request still looking for a leader may fall while an
 * attempt is out (under load, the previous test's answer from f1 can come
 * late): the detail says no leader was found, whatever the request was
 * doing then. Here f1 never answers, so the deadline always falls so. */
static void the_deadline_of_a_search_says_no_leader_was_found(void)
{
	static struct fake f[2];
	f[1].mode = FAKE_SILENT;
	fake_start(&f[0], "f0");
	fake_start(&f[1], "f1");
	struct dl_client_opts o = {.timeout_ms = 400};
	struct dl_client *c = open_on_fakes(f, 2, &o);
	struct dl_errctx err = {{0}};
	int rc = dl_client_append(c, "x", 1, NULL, NULL, &err);
	tt_assert(rc == DL_ETIMEDOUT, "%s (%s)", dl_strerror(rc), err.msg);
	char want[256];
	snprintf(want, sizeof(want),
		 "no leader of group g9 reachable within 400 ms (last: f0 at %s: not leader, "
		 "leader unknown; then no answer yet from f1 at %s)",
		 f[0].addr, f[1].addr);
	tt_assert(strcmp(err.msg, want) == 0, "detail '%s'", err.msg);
	tt_assert(atomic_load(&f[0].hits) == 1 && atomic_load(&f[1].hits) == 1);
	dl_client_close(c);
	fake_stop(&f[0]);
	fake_stop(&f[1]);
}

/* Waits (bounded) until `f` got at least `n` requests. */
static void wait_hits(struct fake *f, unsigned n, unsigned timeout_ms)
{
	uint64_t deadline = now_ms() + timeout_ms;
	for (;;) {
		unsigned hits = atomic_load(&f->hits);
		if (hits >= n)
			return;
		tt_assert(now_ms() < deadline, "%s got %u requests in %u ms, expected %u", f->self,
			  hits, timeout_ms, n);
		sleep_ms(1);
	}
}

/* Long enough for B below to dial f1 and f2 for the first time after A's
 * timeout, also under TSan with the other core busy. */
#define SILENT_TIMEOUT_MS 1000

/* f0 takes requests and answers none (a leader cut off by a partition: its
 * connections stay up), f1 names `f1_names` as leader, f2 leads. A client
 * on "f0;f1;f2" first asks f0, as its believed leader. */
static struct dl_client *silent_leader_setup(struct fake *f, const char *f1_names)
{
	f[0].mode = FAKE_SILENT;
	f[1].mode = FAKE_REDIRECT;
	f[2].mode = FAKE_LEADER;
	snprintf(f[1].leader, sizeof(f[1].leader), "%s", f1_names);
	fake_start(&f[0], "f0");
	fake_start(&f[1], "f1");
	fake_start(&f[2], "f2");
	struct dl_client_opts o = {.timeout_ms = SILENT_TIMEOUT_MS};
	return open_on_fakes(f, 3, &o);
}

static void silent_leader_teardown(struct dl_client *c, struct fake *f)
{
	dl_client_close(c);
	for (int i = 0; i < 3; i++)
		fake_stop(&f[i]);
}

/* Issue 12: after one timeout against the member it takes for the leader,
 * the client asks the others and follows the leader they name; the
 * requests still waiting on the silent member move then, not at their own
 * deadlines, and it is not asked again. */
static void a_silent_leader_is_left_for_the_leader_the_others_name(void)
{
	static struct fake f[3];
	struct dl_client *c = silent_leader_setup(f, "f2");
	struct many_arg *args;
	struct many *m = many_new(2, &args);
	uint64_t t0 = now_ms();
	submit_numbered(c, args, 0); /* A: times out at f0 */
	wait_hits(&f[0], 1, SILENT_TIMEOUT_MS);
	/* B leaves 3/5 of a timeout later, to f0 as well (unless this thread
	 * slept past A's deadline: then to f1 at once), so it has 2/5 of its
	 * timeout left when A times out. */
	sleep_ms(SILENT_TIMEOUT_MS * 3 / 5);
	submit_numbered(c, args, 1);
	many_wait(m, 2);
	uint64_t took = now_ms() - t0;
	tt_assert(m->code[0] == DL_ETIMEDOUT, "A: %s", dl_strerror(m->code[0]));
	tt_assert(m->code[1] == 0, "B, sent to f0 before A timed out there: %s",
		  dl_strerror(m->code[1]));
	tt_assert(strcmp(m->member[1], "f2") == 0, "B answered by %s", m->member[1]);
	tt_assert(took < SILENT_TIMEOUT_MS * 2, "both done after %llu ms",
		  (unsigned long long)took);
	/* Later appends go straight to the leader, none to f0. */
	struct dl_errctx err = {{0}};
	unsigned f1_hits = atomic_load(&f[1].hits);
	for (int i = 0; i < 3; i++)
		tt_assert(dl_client_append(c, "later", 5, NULL, NULL, &err) == 0, "%s", err.msg);
	tt_assert(atomic_load(&f[1].hits) == f1_hits, "redirected again");
	tt_assert(atomic_load(&f[0].hits) <= 2, "f0 asked %u times", atomic_load(&f[0].hits));
	printf("  silent leader: A failed, B done %llu ms after A was sent\n",
	       (unsigned long long)took);
	silent_leader_teardown(c, f);
	many_free(m, args);
}

/* Until they elect another, the followers of a silent leader still name it;
 * the client does not go back to it but asks the remaining members. */
static void a_member_naming_the_silent_leader_is_not_followed_back_to_it(void)
{
	static struct fake f[3];
	struct dl_client *c = silent_leader_setup(f, "f0");
	struct dl_errctx err = {{0}};
	uint64_t t0 = now_ms();
	int rc = dl_client_append(c, "a", 1, NULL, NULL, &err);
	uint64_t t1 = now_ms();
	tt_assert(rc == DL_ETIMEDOUT, "%s (%s)", dl_strerror(rc), err.msg);
	char want[96];
	snprintf(want, sizeof(want), "no answer from f0 at %s within %u ms", f[0].addr,
		 SILENT_TIMEOUT_MS);
	tt_assert(strcmp(err.msg, want) == 0, "detail '%s'", err.msg);
	uint64_t idx = 0;
	rc = dl_client_append(c, "b", 1, &idx, NULL, &err);
	uint64_t t2 = now_ms();
	tt_assert(rc == 0, "the append after the timeout: %s (%s)", dl_strerror(rc), err.msg);
	tt_assert(t2 - t1 < SILENT_TIMEOUT_MS, "took %llu ms", (unsigned long long)(t2 - t1));
	tt_assert(t2 - t0 < SILENT_TIMEOUT_MS * 2, "errors for %llu ms",
		  (unsigned long long)(t2 - t0));
	unsigned h0 = atomic_load(&f[0].hits), h1 = atomic_load(&f[1].hits);
	tt_assert(h0 == 1 && h1 == 1 && idx == 1, "f0 %u, f1 %u requests, index %llu", h0, h1,
		  (unsigned long long)idx);
	silent_leader_teardown(c, f);
}

/* Corked requests leave at the latest at the uncork, all of them, in
 * order; a corked submitter that finds the window full sends what waits
 * instead of waiting for itself (without that, the ninth submit below would
 * time out, and without the uncork's send the parked ones would). When
 * they leave before the uncork is not promised: an answer arriving on the
 * connection's receive callback may send what waits (see client.h). */
static void corked_appends_all_leave_and_a_full_window_drains(void)
{
	enum { W = 8, N = 3 * W };
	int l = wait_leader(2, 10000);
	tt_assert(l >= 0);
	struct dl_client_opts o = {.max_inflight = W, .timeout_ms = 10000};
	struct dl_client *c = open_client((uint32_t)l, "g2", &o);
	struct many_arg *args;
	struct many *m = many_new(N, &args);
	dl_client_cork(c);
	for (uint32_t i = 0; i < N; i++)
		submit_numbered(c, args, i);
	dl_client_uncork(c);
	many_wait(m, N);
	for (uint32_t i = 0; i < N; i++) {
		tt_assert(m->code[i] == 0, "append %u: %s", i, dl_strerror(m->code[i]));
		if (i > 0)
			tt_assert(m->index[i] == m->index[i - 1] + 1, "append %u at %llu after %llu",
				  i, (unsigned long long)m->index[i],
				  (unsigned long long)m->index[i - 1]);
	}
	dl_client_close(c);
	many_free(m, args);
}

/* The client's connection to a node that restarts on the same address is
 * redialed (a link's backoff: 50 ms after a loss, doubling up to 1 s): an
 * append after the restart gets through within a bound, over a new
 * connection, and nothing is answered twice. */
static void a_client_reconnects_after_its_node_restarts(void)
{
	static struct fake f, g;
	f.mode = FAKE_LEADER;
	fake_start(&f, "f0");
	struct dl_client_opts o = {.timeout_ms = 10000};
	struct dl_client *c = open_on_fakes(&f, 1, &o);
	struct dl_errctx err = {{0}};
	uint64_t idx = 0;
	tt_assert(dl_client_append(c, "x", 1, &idx, NULL, &err) == 0, "%s", err.msg);
	tt_assert(idx == 1 && atomic_load(&f.hits) == 1, "index %llu, hits %u",
		  (unsigned long long)idx, atomic_load(&f.hits));
	fake_stop(&f);
	/* While it is down an append waits (connect timeout, retries). */
	struct many_arg *args;
	struct many *m = many_new(1, &args);
	struct dl_client_buf b = {"y", 1};
	tt_assert(dl_client_append_async(c, &b, 1, many_cb, &args[0], &err) == 0, "%s", err.msg);
	sleep_ms(300); /* the node stays down a while: the client retries meanwhile */
	uint64_t t0 = now_ms();
	g.mode = FAKE_LEADER;
	fake_start_at(&g, "f0", f.addr);
	many_wait(m, 1);
	uint64_t took = now_ms() - t0;
	tt_assert(m->code[0] == 0, "append across the restart: %s", dl_strerror(m->code[0]));
	tt_assert(took < 5000, "reconnected after %llu ms", (unsigned long long)took);
	tt_assert(atomic_load(&g.hits) >= 1, "the restarted node got nothing");
	idx = 0;
	tt_assert(dl_client_append(c, "z", 1, &idx, NULL, &err) == 0, "%s", err.msg);
	printf("  restart: the waiting append done %llu ms after the node came back\n",
	       (unsigned long long)took);
	dl_client_close(c);
	many_free(m, args);
	fake_stop(&g);
}

static const struct tt_test tt_tests[] = {
	TT_T(redirects_stop_after_the_hop_limit),
	TT_T(no_leader_known_tries_members_until_the_timeout),
	TT_T(the_deadline_of_a_search_says_no_leader_was_found),
	TT_T(a_silent_leader_is_left_for_the_leader_the_others_name),
	TT_T(a_member_naming_the_silent_leader_is_not_followed_back_to_it),
	TT_T(redirect_from_follower_reaches_the_leader),
	TT_T(thousand_appends_64_in_flight_get_contiguous_indexes),
	TT_T(get_from_a_follower_returns_the_same_bodies),
	TT_T(read_tells_noop_entries_apart),
	TT_T(get_beyond_commit_is_not_committed),
	TT_T(unknown_group_is_not_found),
	TT_T(node_metadata_lists_every_group),
	TT_T(callbacks_may_submit_but_not_block),
	TT_T(corked_appends_all_leave_and_a_full_window_drains),
	TT_T(unreachable_member_times_out_and_close_fails_pending),
	TT_T(appends_fail_over_when_the_leaders_node_stops),
	TT_T(a_client_reconnects_after_its_node_restarts),
};

/* Also when a check fails (tt_assert exits): no store left in /tmp. */
static void remove_dir(void)
{
	if (cl.dir[0] == '\0')
		return;
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cl.dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", cl.dir);
	cl.dir[0] = '\0';
}

int main(void)
{
	dl_log_set_level(DL_LOG_WARN);
	snprintf(cl.dir, sizeof(cl.dir), "/tmp/dl-client-XXXXXX");
	tt_assert(mkdtemp(cl.dir) != NULL);
	atexit(remove_dir);
	for (uint32_t k = 0; k < NODES; k++)
		snprintf(cl.addr[k], sizeof(cl.addr[k]), "127.0.0.1:%u", tt_port());
	for (uint32_t k = 0; k < NODES; k++)
		start_node(k);
	int rc = tt_run("client", tt_tests, TT_COUNT(tt_tests));
	for (uint32_t k = 0; k < NODES; k++)
		rt_node_stop(cl.node[k]);
	remove_dir();
	return rc;
}
