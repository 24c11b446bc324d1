/*
 * dledger-actors - runs one node: every configured member, one endpoint,
 * one flush thread. Logs to stderr; SIGTERM/SIGINT stop it gracefully.
 *
 *   dledger-actors --config node0.yaml
 *   dledger-actors --group g0 --id n0 --peers 'n0-127.0.0.1:10000;...' \
 *                  --store-base-dir /var/lib/dledger
 *
 * Exit status: 0 after a graceful stop, 1 when the node cannot start (address
 * in use, a damaged store), 2 for a bad configuration or bad flags.
 *
 * Threads: main starts the node with every signal blocked (so every thread
 * the node starts inherits the mask) and then waits in sigwait(); the
 * node's own threads never see a signal.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_log.h"
#include "config/config.h"
#include "runtime/runtime.h"

#ifndef DLEDGER_VERSION
#define DLEDGER_VERSION "0.1.0"
#endif

static void member_from_cfg(const struct cfg *c, const struct cfg_group *g,
			    struct rt_member_config *mc)
{
	rt_member_config_defaults(mc);
	snprintf(mc->group, sizeof(mc->group), "%s", g->group);
	snprintf(mc->self_id, sizeof(mc->self_id), "%s", g->self_id);
	mc->n_peers = g->peers.n_members;
	for (uint32_t i = 0; i < g->peers.n_members; i++) {
		const struct cfg_peer *p = &g->peers.members[i];
		snprintf(mc->peers[i].id, sizeof(mc->peers[i].id), "%s", p->id);
		cfg_format_addr(p->host, p->port, mc->peers[i].addr, sizeof(mc->peers[i].addr));
	}
	if (g->preferred_leader_id != NULL)
		snprintf(mc->preferred_id, sizeof(mc->preferred_id), "%s", g->preferred_leader_id);
	if (!g->o.enable_leader_elector && g->leader_id != NULL)
		snprintf(mc->fixed_leader_id, sizeof(mc->fixed_leader_id), "%s", g->leader_id);
	mc->heartbeat_ms = g->o.heart_beat_time_interval_ms;
	mc->election_ms = g->o.election_timeout_ms;
	mc->max_pending_appends = g->o.max_pending_requests_num;

	struct sto_config *s = &mc->store;
	s->type = g->o.store_type == CFG_STORE_MEMORY ? STO_TYPE_MEMORY : STO_TYPE_MMAP;
	s->base_dir = g->o.store_base_dir != NULL ? g->o.store_base_dir : c->node.store_base_dir;
	s->segment_bytes = g->o.mapped_file_size_for_entry_data_bytes;
	s->index_segment_bytes = g->o.mapped_file_size_for_entry_index_bytes;
	s->flush_mode = g->o.flush_mode == CFG_FLUSH_ASYNC ? STO_FLUSH_ASYNC : STO_FLUSH_SYNC;
	s->flush_interval_ms = g->o.flush_file_interval_ms;
	s->file_reserved_hours = g->o.file_reserved_hours;
	s->enable_disk_force_clean = g->o.enable_disk_force_clean;
	s->disk_space_ratio_to_force_clean = g->o.disk_space_ratio_to_force_clean;
	s->disk_full_ratio = g->o.disk_full_ratio;
}

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dledger-actors --config FILE\n"
		"       dledger-actors --group G --id ID --peers 'ID-HOST:PORT;...' "
		"[--store-base-dir DIR] [--preferred-leader-id ID] [...]\n\n%s",
		cfg_flags_usage());
}

static int log_level_of(enum cfg_log_level l)
{
	switch (l) {
	case CFG_LOG_ERROR: return DL_LOG_ERROR;
	case CFG_LOG_WARN: return DL_LOG_WARN;
	case CFG_LOG_DEBUG: return DL_LOG_DEBUG;
	default: return DL_LOG_INFO;
	}
}

int main(int argc, char **argv)
{
	struct cfg cfg;
	struct dl_errctx err = {{0}};
	int rc = cfg_from_args(argc, argv, &cfg, &err);
	if (rc == CFG_HELP) {
		usage(stdout);
		return 0;
	}
	if (rc == CFG_VERSION) {
		printf("dledger-actors %s\n", DLEDGER_VERSION);
		return 0;
	}
	if (rc != 0) {
		fprintf(stderr, "dledger-actors: %s\n", err.msg[0] ? err.msg : dl_strerror(rc));
		return 2;
	}
	dl_log_set_level((enum dl_log_level)log_level_of(cfg.node.log_level));

	/* Block the signals we wait for before any thread exists. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	cfg_format_addr(cfg.node.self_host, cfg.node.self_port, nc.listen_addr,
			sizeof(nc.listen_addr));
	if (cfg.node.max_frame_bytes != 0)
		nc.max_frame_bytes = cfg.node.max_frame_bytes;
	struct rt_node *node = NULL;
	rc = rt_node_start(&nc, &node, &err);
	if (rc != 0) {
		dl_log(DL_LOG_ERROR, NULL, NULL, "cannot start: %s", err.msg);
		cfg_free(&cfg);
		return 1;
	}
	dl_log(DL_LOG_INFO, NULL, NULL, "dledger-actors %s: %zu groups from %s", DLEDGER_VERSION,
	       cfg.n_groups, cfg.source ? cfg.source : "flags");
	int status = 0;
	for (size_t i = 0; i < cfg.n_groups; i++) {
		struct rt_member_config mc;
		member_from_cfg(&cfg, &cfg.groups[i], &mc);
		memset(&err, 0, sizeof(err));
		rc = rt_node_add(node, &mc, &err);
		if (rc != 0) {
			/* A member that cannot start (a damaged store) stops the
			 * node: running without it would hide the damage. */
			dl_log(DL_LOG_ERROR, mc.group, mc.self_id, "cannot start: %s",
			       err.msg[0] ? err.msg : dl_strerror(rc));
			status = 1;
			break;
		}
	}
	while (status == 0) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			dl_log(DL_LOG_WARN, NULL, NULL,
			       "SIGHUP: configuration reload is not supported yet; ignored");
			continue;
		}
		dl_log(DL_LOG_INFO, NULL, NULL, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	rt_node_stop(node);
	cfg_free(&cfg);
	return status;
}
