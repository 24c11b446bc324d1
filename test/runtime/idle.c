/*
 * idle: N idle groups on three in-process nodes; reports the CPU the whole
 * process used per node over a quiet period (getrusage), and the transport's
 * frames/messages ratio. Usage: idle GROUPS SECONDS [HEARTBEAT_MS]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "test/lib/tt_net.h"
#include "common/dl_log.h"
#include "runtime/mailbox.h"
#include "runtime/runtime.h"

static uint16_t free_port(void)
{
	uint16_t port = tt_free_port();
	if (port == 0)
		exit(2);
	return port;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv)
{
	uint32_t groups = argc > 1 ? (uint32_t)atoi(argv[1]) : 1024;
	uint32_t secs = argc > 2 ? (uint32_t)atoi(argv[2]) : 10;
	uint32_t hb = argc > 3 ? (uint32_t)atoi(argv[3]) : 2000;
	dl_log_set_level(DL_LOG_WARN);
	char dir[] = "/tmp/dl-idle-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	char addr[3][32];
	for (int k = 0; k < 3; k++)
		snprintf(addr[k], sizeof(addr[k]), "127.0.0.1:%u", free_port());
	struct rt_node *node[3];
	for (uint32_t k = 0; k < 3; k++) {
		struct rt_node_config nc;
		rt_node_config_defaults(&nc);
		snprintf(nc.listen_addr, sizeof(nc.listen_addr), "%s", addr[k]);
		struct dl_errctx err = {{0}};
		if (rt_node_start(&nc, &node[k], &err) != 0) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		for (uint32_t g = 0; g < groups; g++) {
			struct rt_member_config mc;
			rt_member_config_defaults(&mc);
			snprintf(mc.group, sizeof(mc.group), "g%u", g);
			snprintf(mc.self_id, sizeof(mc.self_id), "n%u", k);
			mc.n_peers = 3;
			for (uint32_t i = 0; i < 3; i++) {
				snprintf(mc.peers[i].id, sizeof(mc.peers[i].id), "n%u", i);
				snprintf(mc.peers[i].addr, sizeof(mc.peers[i].addr), "%s", addr[i]);
			}
			snprintf(mc.preferred_id, sizeof(mc.preferred_id), "n%u", g % 3);
			mc.heartbeat_ms = hb;
			mc.election_ms = 3 * hb;
			mc.store.base_dir = dir;
			mc.store.segment_bytes = 1u << 20;
			mc.store.index_segment_bytes = 1u << 16;
			if (rt_node_add(node[k], &mc, &err) != 0) {
				fprintf(stderr, "%s\n", err.msg);
				return 1;
			}
		}
	}
	/* Wait for leaders everywhere (bounded). */
	struct rt_member_status *st = calloc(groups, sizeof(*st));
	uint64_t deadline = mb_now_ns() + 120ull * 1000000000ull;
	uint32_t led = 0;
	while (mb_now_ns() < deadline) {
		led = 0;
		for (uint32_t k = 0; k < 3; k++) {
			uint32_t n = rt_node_status(node[k], st, groups, NULL);
			for (uint32_t i = 0; i < n; i++)
				led += st[i].role == RAFT_LEADER && strcmp(st[i].leader, st[i].preferred) == 0;
		}
		if (led == groups)
			break;
		usleep(100000);
	}
	printf("idle: %u groups x 3 nodes, heartbeat %u ms: %u/%u groups led by their preferred member\n",
	       groups, hb, led, groups);
	sleep(5); /* let transfers, catch-up and preallocation settle */
	struct rt_node_stats s0[3], s1[3];
	for (int k = 0; k < 3; k++)
		rt_node_stats(node[k], &s0[k]);
	double c0 = cpu_s();
	uint64_t t0 = mb_now_ns();
	sleep(secs);
	double c1 = cpu_s();
	double wall = (double)(mb_now_ns() - t0) / 1e9;
	uint64_t frames = 0, msgs = 0;
	for (int k = 0; k < 3; k++) {
		rt_node_stats(node[k], &s1[k]);
		frames += s1[k].frames_out - s0[k].frames_out;
		msgs += s1[k].msgs_out - s0[k].msgs_out;
	}
	double per_node = (c1 - c0) / wall / 3 * 100;
	printf("idle: cpu %.3f s in %.1f s for 3 nodes = %.2f%% of one core per node; %llu messages in %llu frames (%.1f per frame)\n",
	       c1 - c0, wall, per_node, (unsigned long long)msgs, (unsigned long long)frames,
	       frames ? (double)msgs / (double)frames : 0.0);
	for (int k = 0; k < 3; k++)
		rt_node_stop(node[k]);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	free(st);
	return 0;
}
