/*
 * Multi-process test of leaderBalance: three `dledger-actors` processes
 * on loopback ports share 30 groups without a preferredLeaderId. Two nodes
 * start first, so they take every leadership; then the third starts and
 * the balancers must bring the spread of leaders per node to at most one
 * within BALANCED_WITHIN_MS, and then leave the leaders alone.
 * Usage: balance_test PATH/TO/dledger-actors
 *
 * Every process started is stopped before the program exits; every wait is
 * bounded in time.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "test/lib/tt.h"
#include "test/lib/tt_cluster.h"

TT_MAIN_STATE;

#define NODES TT_NODES
#define GROUPS 30
#define BALANCED_WITHIN_MS 20000
#define QUIET_MS 4000 /* after balance: no leader may change in this long */

static const char *actors_bin;

static struct tt_cluster C;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) { usleep(ms * 1000u); }

/* leader[g] = the node whose member of group g says it leads (-1: none);
 * count[k] = how many node k leads. False if a node did not answer or one of
 * its members is not a voter yet (raft/raft.h, "Voters"). */
static bool leaders(const bool up[NODES], int leader[GROUPS], int count[NODES])
{
	char peers[32];
	snprintf(peers, sizeof(peers), "n0-127.0.0.1:%u", C.port[0]);
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	struct dl_client_opts o = {.timeout_ms = 1000};
	tt_assert(dl_client_open(peers, NULL, &o, &cl, &err) == 0, "%s", err.msg);
	bool ok = true;
	for (int g = 0; g < GROUPS; g++)
		leader[g] = -1;
	for (int k = 0; k < NODES; k++) {
		count[k] = 0;
		if (!up[k])
			continue;
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", C.port[k]);
		struct tp_group_meta *rows = NULL;
		uint32_t n = 0;
		if (dl_client_node_metadata(cl, addr, &rows, &n, &err) != 0) {
			ok = false;
			continue;
		}
		for (uint32_t i = 0; i < n; i++) {
			int g = atoi(rows[i].group + 1);
			if (!rows[i].voter)
				ok = false; /* callers wait for every member to vote */
			if (rows[i].role == RAFT_LEADER && g >= 0 && g < GROUPS) {
				leader[g] = k;
				count[k]++;
			}
		}
		free(rows);
	}
	dl_client_close(cl);
	return ok;
}

static int spread(const int count[NODES])
{
	int lo = count[0], hi = count[0];
	for (int k = 1; k < NODES; k++) {
		lo = count[k] < lo ? count[k] : lo;
		hi = count[k] > hi ? count[k] : hi;
	}
	return hi - lo;
}

static void write_confs(void)
{
	tt_cluster_init(&C, actors_bin, "dl-bal");
	char peers[256];
	tt_cluster_peers(&C, "n", peers, sizeof(peers));
	for (int k = 0; k < NODES; k++) {
		FILE *f = fopen(C.conf[k], "w");
		tt_assert(f != NULL);
		fprintf(f,
			"storeBaseDir: %s/node%d\nleaderBalance: true\nmappedFileSizeForEntryData: 4194304\n"
			"mappedFileSizeForEntryIndex: 1048576\n"
			"heartBeatTimeIntervalMs: 100\nelectionTimeoutMs: 500\nDLedgerConfigs:\n",
			C.dir, k);
		for (int g = 0; g < GROUPS; g++)
			fprintf(f, "  - group: g%d\n    id: n%d\n    peers: %s\n", g, k, peers);
		fclose(f);
	}
}

/* A new group elects its first leader once every member has started
 * (raft/raft.h, "Voters"), so all three start, and node 2 then stops and
 * comes back late: the groups it led move to nodes 0 and 1 meanwhile. */
static void leaders_spread_evenly_after_a_node_joins_late(void)
{
	write_confs();
	bool up[NODES] = {true, true, true};
	for (int k = 0; k < NODES; k++)
		tt_cluster_start(&C, k);
	int leader[GROUPS], count[NODES];
	uint64_t end = now_ms() + 15000;
	/* leaders() is true once every member is a voter as well. */
	while (now_ms() < end && !(leaders(up, leader, count) &&
				   count[0] + count[1] + count[2] == GROUPS))
		sleep_ms(100);
	tt_assert(count[0] + count[1] + count[2] == GROUPS, "only %d groups have a leader",
		  count[0] + count[1] + count[2]);
	tt_assert(tt_cluster_stop(&C, 2, SIGTERM) == 0);
	up[2] = false;
	/* Two nodes: every group elects one of them. */
	end = now_ms() + 15000;
	while (now_ms() < end && !(leaders(up, leader, count) && count[0] + count[1] == GROUPS))
		sleep_ms(100);
	printf("two nodes: %d/%d/%d leaders\n", count[0], count[1], count[2]);
	tt_assert(count[0] + count[1] == GROUPS, "only %d groups have a leader",
		  count[0] + count[1]);
	tt_cluster_start(&C, 2);
	up[2] = true;
	uint64_t t0 = now_ms();
	end = t0 + BALANCED_WITHIN_MS;
	bool balanced = false;
	while (now_ms() < end && !balanced) {
		sleep_ms(200);
		balanced = leaders(up, leader, count) &&
			   count[0] + count[1] + count[2] == GROUPS && spread(count) <= 1;
	}
	printf("three nodes: %d/%d/%d leaders after %llu ms\n", count[0], count[1], count[2],
	       (unsigned long long)(now_ms() - t0));
	tt_assert(balanced, "leaders %d/%d/%d after %d ms", count[0], count[1], count[2],
		  BALANCED_WITHIN_MS);
	/* Balanced: no further transfer. */
	int before[GROUPS];
	memcpy(before, leader, sizeof(before));
	for (end = now_ms() + QUIET_MS; now_ms() < end;) {
		sleep_ms(250);
		if (!leaders(up, leader, count))
			continue;
		for (int g = 0; g < GROUPS; g++)
			tt_assert(leader[g] == before[g], "g%d: leader n%d -> n%d after balance", g,
				  before[g], leader[g]);
	}
	tt_cluster_fini(&C);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: balance_test PATH/TO/dledger-actors\n");
		return 2;
	}
	actors_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	atexit(tt_cluster_kill_all);
	static const struct tt_test tests[] = {
		TT_T(leaders_spread_evenly_after_a_node_joins_late),
	};
	return tt_run("balance", tests, TT_COUNT(tests));
}
