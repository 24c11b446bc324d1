/*
 * tt_cluster.h - three node processes for the multi-process tests: a fresh
 * directory, a free loopback port and a config and log path per node,
 * starting and stopping nodes, and the clean-up every test ends with.
 *
 *   struct tt_cluster c;
 *   tt_cluster_init(&c, actors_bin, "dl-node");  (then write c.conf[k])
 *   tt_cluster_start(&c, k); ... tt_cluster_stop(&c, k, SIGKILL);
 *   tt_cluster_fini(&c);     (every node must exit 0 on SIGTERM)
 *
 * main() registers tt_cluster_kill_all with atexit(), so a failed check
 * leaves no process behind: it kills the nodes of the cluster most recently
 * initialised and not yet finished.
 */
#ifndef DLEDGER_TEST_TT_CLUSTER_H
#define DLEDGER_TEST_TT_CLUSTER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "test/lib/tt.h"
#include "test/lib/tt_net.h"
#include "test/lib/tt_proc.h"

#define TT_NODES 3

struct tt_cluster {
	const char *bin; /* dledger-actors */
	char dir[64];
	uint16_t port[TT_NODES];
	char conf[TT_NODES][128], logf[TT_NODES][128]; /* DIR/nodeK.yaml, DIR/nodeK.log */
	pid_t pid[TT_NODES];                           /* 0: not running */
};

static struct tt_cluster *tt_cluster_live;

/* A directory /tmp/NAME-XXXXXX, a port per node, the paths. */
static inline void tt_cluster_init(struct tt_cluster *c, const char *bin, const char *name)
{
	memset(c, 0, sizeof(*c));
	c->bin = bin;
	snprintf(c->dir, sizeof(c->dir), "/tmp/%s-XXXXXX", name);
	tt_assert(mkdtemp(c->dir) != NULL, "mkdtemp %s", c->dir);
	for (int k = 0; k < TT_NODES; k++) {
		c->port[k] = tt_port();
		snprintf(c->conf[k], sizeof(c->conf[k]), "%s/node%d.yaml", c->dir, k);
		snprintf(c->logf[k], sizeof(c->logf[k]), "%s/node%d.log", c->dir, k);
	}
	tt_cluster_live = c;
}

/* "P0-127.0.0.1:PORT0;P1-127.0.0.1:PORT1;P2-127.0.0.1:PORT2": a group's
 * peers, its members named by `prefix` and the node number. */
static inline void tt_cluster_peers(const struct tt_cluster *c, const char *prefix, char *buf,
				    size_t cap)
{
	int n = snprintf(buf, cap, "%s0-127.0.0.1:%u;%s1-127.0.0.1:%u;%s2-127.0.0.1:%u", prefix,
			 c->port[0], prefix, c->port[1], prefix, c->port[2]);
	tt_assert(n > 0 && (size_t)n < cap);
}

static inline void tt_cluster_write(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	tt_assert(f != NULL, "%s", path);
	fputs(text, f);
	tt_assert(fclose(f) == 0, "%s", path);
}

static inline void tt_cluster_start(struct tt_cluster *c, int k)
{
	tt_assert(c->pid[k] == 0, "node %d already runs", k);
	c->pid[k] = tt_spawn_node(c->bin, c->conf[k], c->logf[k]);
	tt_assert(c->pid[k] > 0, "fork");
}

/* Signals node k and waits (bounded, see tt_stop_pid) for it to exit;
 * returns its wait status, -1 if it was not running. */
static inline int tt_cluster_stop(struct tt_cluster *c, int k, int sig)
{
	if (c->pid[k] == 0)
		return -1;
	int status = tt_stop_pid(c->pid[k], sig);
	c->pid[k] = 0;
	return status;
}

/* Stops every running node with SIGTERM (each must exit 0) and removes
 * the directory. */
static inline void tt_cluster_fini(struct tt_cluster *c)
{
	for (int k = 0; k < TT_NODES; k++) {
		if (c->pid[k] == 0)
			continue;
		int st = tt_cluster_stop(c, k, SIGTERM);
		tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			  "node %d: wait status %d on SIGTERM (see %s)", k, st, c->logf[k]);
	}
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", c->dir);
	tt_assert(system(cmd) == 0, "%s", cmd);
	if (tt_cluster_live == c)
		tt_cluster_live = NULL;
}

/* For atexit(): SIGKILL to what still runs. */
static inline void tt_cluster_kill_all(void)
{
	if (tt_cluster_live == NULL)
		return;
	for (int k = 0; k < TT_NODES; k++)
		if (tt_cluster_live->pid[k] != 0)
			kill(tt_cluster_live->pid[k], SIGKILL);
}

#endif
