/*
 * balance.c - leaderBalance: spread the leaders of groups without a
 * preferredLeaderId evenly over the nodes, by leadership transfers.
 *
 * Every round (period_ms, with up to 50% random extra so the nodes' rounds
 * drift apart) the balancer asks every node that shares a group with this
 * one for its node metadata (this node included, through its own
 * endpoint), counts the members each node leads, and, when this node leads
 * at least two more than the least-loaded node, hands one of its led groups
 * without a preferred leader to that group's member on the least-loaded
 * node, if that member is caught up (lag <= BAL_MAX_LAG entries) and
 * active. At most one transfer per round per node, then a pause of
 * BAL_PAUSE_ROUNDS rounds so every node sees the new counts before acting
 * again. Only the nodes above min + 1 move leaders, so a balanced cluster
 * (spread <= 1) makes no transfer at all. A round in which any node does not
 * answer is skipped: partial counts would move leaders for nothing.
 *
 * Threads: one balancer thread owns everything here; ctl_balance_stop()
 * reaches it through `stop` under `mu` (and the condition it sleeps on).
 * It uses the rt_node_* functions (any thread may) and its own client.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client.h"
#include "common/dl_log.h"
#include "common/dl_time.h"
#include "control/control_internal.h"

#define BAL_MAX_NODES    64 /* distinct node addresses considered; more are ignored (counted) */
#define BAL_MAX_LAG      64 /* entries a target may be behind the leader */
#define BAL_PAUSE_ROUNDS 1  /* rounds without a transfer after one */
#define BAL_RPC_MS       1000

struct bal_node {
	char addr[TP_ADDR_MAX + 1];
	struct tp_group_meta *rows; /* malloc'ed by the client */
	uint32_t n_rows;
	uint32_t leaders;
};

struct ctl_balancer {
	struct rt_node *node;
	char self_addr[CFG_ADDR_STR_MAX];
	uint32_t period_ms;
	unsigned seed;
	struct dl_client *cl;
	struct rt_member_status *st; /* RT_MAX_MEMBERS */
	struct bal_node nodes[BAL_MAX_NODES];
	uint32_t n_nodes;
	uint64_t transfers, skipped_rounds, nodes_ignored;
	pthread_t thread;
	bool started;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* signalled by ctl_balance_stop() */
	bool stop;         /* under mu */
};

static void nodes_clear(struct ctl_balancer *b)
{
	for (uint32_t i = 0; i < b->n_nodes; i++)
		free(b->nodes[i].rows);
	memset(b->nodes, 0, sizeof(b->nodes[0]) * b->n_nodes);
	b->n_nodes = 0;
}

static int node_index(struct ctl_balancer *b, const char *addr, bool add)
{
	for (uint32_t i = 0; i < b->n_nodes; i++)
		if (strcmp(b->nodes[i].addr, addr) == 0)
			return (int)i;
	if (!add)
		return -1;
	if (b->n_nodes == BAL_MAX_NODES) {
		b->nodes_ignored++;
		return -1;
	}
	snprintf(b->nodes[b->n_nodes].addr, sizeof(b->nodes[0].addr), "%s", addr);
	return (int)b->n_nodes++;
}

/* Fetches every node's rows (this one first); false if one did not answer. */
static bool gather(struct ctl_balancer *b)
{
	nodes_clear(b);
	DL_ASSERT(node_index(b, b->self_addr, true) == 0);
	for (uint32_t i = 0; i < b->n_nodes; i++) { /* n_nodes grows as addresses are learnt */
		struct bal_node *nd = &b->nodes[i];
		struct dl_errctx err = {{0}};
		if (dl_client_node_metadata(b->cl, nd->addr, &nd->rows, &nd->n_rows, &err) != DL_OK) {
			dl_log(DL_LOG_DEBUG, NULL, NULL, "balance: node %s: %s", nd->addr, err.msg);
			return false;
		}
		for (uint32_t r = 0; r < nd->n_rows; r++) {
			nd->leaders += nd->rows[r].role == RAFT_LEADER;
			for (uint32_t m = 0; i == 0 && m < nd->rows[r].n_members; m++)
				(void)node_index(b, nd->rows[r].members[m].addr, true);
		}
	}
	return true;
}

/* The member id of `group` on node k, or NULL. */
static const char *member_on(const struct bal_node *nd, const char *group)
{
	for (uint32_t r = 0; r < nd->n_rows; r++)
		if (strcmp(nd->rows[r].group, group) == 0)
			return nd->rows[r].role == RAFT_LEADER ? NULL : nd->rows[r].self;
	return NULL;
}

/* One of our led groups without a preferred leader whose member on node t
 * is caught up; transfers it. True if a transfer was asked. */
static bool move_one(struct ctl_balancer *b, uint32_t t)
{
	uint32_t total = 0;
	uint32_t n = rt_node_status(b->node, b->st, RT_MAX_MEMBERS, &total);
	for (uint32_t i = 0; i < n; i++) {
		const struct rt_member_status *m = &b->st[i];
		if (m->role != RAFT_LEADER || m->preferred[0] != '\0' || m->failed)
			continue;
		const char *to = member_on(&b->nodes[t], m->group);
		for (uint32_t p = 0; to != NULL && p < m->n_peers; p++) {
			const struct rt_peer_status *ps = &m->peers[p];
			if (strcmp(ps->id, to) != 0 || !ps->active ||
			    ps->match_index + BAL_MAX_LAG < m->last_index)
				continue;
			int rc = rt_node_transfer(b->node, m->group, m->id, to);
			dl_log(rc == DL_OK ? DL_LOG_INFO : DL_LOG_WARN, m->group, m->id,
			       "balance: leaders here %u, on %s %u: transfer to %s%s%s", b->nodes[0].leaders,
			       b->nodes[t].addr, b->nodes[t].leaders, to, rc == DL_OK ? "" : ": ",
			       rc == DL_OK ? "" : dl_strerror(rc));
			if (rc == DL_OK) {
				b->transfers++;
				return true;
			}
		}
	}
	return false;
}

/* One round; true if a transfer was asked. */
static bool round_once(struct ctl_balancer *b)
{
	if (!gather(b)) {
		b->skipped_rounds++;
		return false;
	}
	uint32_t mine = b->nodes[0].leaders;
	/* Least-loaded nodes first; only those at least two below us. */
	bool tried[BAL_MAX_NODES] = {false};
	for (uint32_t round = 1; round < b->n_nodes; round++) {
		uint32_t t = 0;
		for (uint32_t i = 1; i < b->n_nodes; i++)
			if (!tried[i] && (t == 0 || b->nodes[i].leaders < b->nodes[t].leaders))
				t = i;
		if (t == 0 || b->nodes[t].leaders + 2 > mine)
			return false;
		tried[t] = true;
		if (move_one(b, t))
			return true;
	}
	return false;
}

/* Sleeps ms unless stopped; returns whether to stop. */
static bool nap(struct ctl_balancer *b, uint32_t ms)
{
	struct timespec ts = dl_timespec_at(dl_now_ns() + (uint64_t)ms * 1000000u);
	pthread_mutex_lock(&b->mu);
	while (!b->stop && pthread_cond_timedwait(&b->cv, &b->mu, &ts) == 0)
		;
	bool stop = b->stop;
	pthread_mutex_unlock(&b->mu);
	return stop;
}

static void *balance_main(void *arg)
{
	struct ctl_balancer *b = arg;
	uint32_t pause = 0;
	for (;;) {
		uint32_t ms = b->period_ms + (uint32_t)rand_r(&b->seed) % (b->period_ms / 2 + 1);
		if (nap(b, ms))
			break;
		if (pause > 0) {
			pause--;
			continue;
		}
		if (round_once(b))
			pause = BAL_PAUSE_ROUNDS;
		nodes_clear(b);
	}
	return NULL;
}

int ctl_balance_start(struct rt_node *n, const struct cfg_node *node, const char *self_addr,
		      uint32_t period_ms, struct ctl_balancer **out, struct dl_errctx *err)
{
	DL_ASSERT(n != NULL && self_addr != NULL && out != NULL && period_ms > 0);
	*out = NULL;
	struct ctl_balancer *b = calloc(1, sizeof(*b));
	if (b == NULL || (b->st = calloc(RT_MAX_MEMBERS, sizeof(*b->st))) == NULL) {
		free(b);
		return dl_errf(err, DL_ENOMEM, "out of memory");
	}
	b->node = n;
	b->period_ms = period_ms;
	snprintf(b->self_addr, sizeof(b->self_addr), "%s", self_addr);
	b->seed = (unsigned)time(NULL) ^ (unsigned)(uintptr_t)b;
	pthread_mutex_init(&b->mu, NULL);
	dl_cond_init_monotonic(&b->cv);
	char peers[CFG_ADDR_STR_MAX + 8];
	snprintf(peers, sizeof(peers), "self-%s", self_addr);
	struct dl_client_opts o = {.timeout_ms = BAL_RPC_MS,
				   .connect_timeout_ms = BAL_RPC_MS / 2,
				   .tls_cert_file = node->tls_cert_file,
				   .tls_key_file = node->tls_key_file,
				   .tls_ca_file = node->tls_ca_file};
	int rc = dl_client_open(peers, NULL, &o, &b->cl, err);
	if (rc == DL_OK && pthread_create(&b->thread, NULL, balance_main, b) != 0)
		rc = dl_errf(err, DL_ENOMEM, "leader balance: cannot start its thread");
	if (rc != DL_OK) {
		ctl_balance_stop(b);
		return rc;
	}
	b->started = true;
	dl_log(DL_LOG_INFO, NULL, NULL, "leader balance: on, a round every %u ms", period_ms);
	*out = b;
	return DL_OK;
}

void ctl_balance_stop(struct ctl_balancer *b)
{
	if (b == NULL)
		return;
	if (b->started) {
		pthread_mutex_lock(&b->mu);
		b->stop = true;
		pthread_cond_signal(&b->cv);
		pthread_mutex_unlock(&b->mu);
		pthread_join(b->thread, NULL);
		dl_log(DL_LOG_INFO, NULL, NULL, "leader balance: %" PRIu64 " transfers asked",
		       b->transfers);
	}
	nodes_clear(b);
	dl_client_close(b->cl);
	pthread_cond_destroy(&b->cv);
	pthread_mutex_destroy(&b->mu);
	free(b->st);
	free(b);
}
