/*
 * dledger-actors - runs one node: every configured member, one endpoint,
 * one flush thread. Logs to stderr; SIGTERM/SIGINT stop it gracefully;
 * SIGHUP reloads the config file (as `dledger-ctl reload`).
 *
 *   dledger-actors --config node0.yaml
 *   dledger-actors --group g0 --id n0 --peers 'n0-127.0.0.1:10000;...' \
 *                  --store-base-dir /var/lib/dledger
 *
 * Exit status: 0 after a graceful stop, 1 when the node cannot start (address
 * in use, a damaged store), 2 for a bad configuration or bad flags (a TLS
 * file that cannot be read or does not check out included).
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
#include "control/control.h"
#include "metrics/metrics.h"
#include "runtime/runtime.h"
#include "transport/transport.h"

#ifndef DLEDGER_VERSION
#define DLEDGER_VERSION "0.1.0"
#endif

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

	/* TLS files: read and checked before anything starts. */
	struct tp_tls *tls = NULL;
	if (cfg.node.tls_cert_file != NULL) {
		rc = tp_tls_load(cfg.node.tls_cert_file, cfg.node.tls_key_file,
				 cfg.node.tls_ca_file, true, &tls, &err);
		if (rc != 0) {
			fprintf(stderr, "dledger-actors: TLS (tlsCertFile, tlsKeyFile, tlsCaFile): "
					"%s\n", err.msg[0] ? err.msg : dl_strerror(rc));
			cfg_free(&cfg);
			return 2;
		}
	}

	/* The control socket's groups.yaml (run-time additions and removals)
	 * on top of the configuration; refuses a socket a live node holds. */
	struct ctl_server *ctl = NULL;
	rc = ctl_open(&cfg, &ctl, &err);
	if (rc != 0) {
		fprintf(stderr, "dledger-actors: %s\n", err.msg[0] ? err.msg : dl_strerror(rc));
		cfg_free(&cfg);
		tp_tls_free(tls);
		return rc == DL_ECONFIG ? 2 : 1;
	}

	struct rt_node_config nc;
	rt_node_config_defaults(&nc);
	cfg_format_addr(cfg.node.self_host, cfg.node.self_port, nc.listen_addr,
			sizeof(nc.listen_addr));
	if (cfg.node.max_frame_bytes != 0)
		nc.max_frame_bytes = cfg.node.max_frame_bytes;
	nc.tls = tls;
	struct rt_node *node = NULL;
	rc = rt_node_start(&nc, &node, &err);
	if (rc != 0) {
		dl_log(DL_LOG_ERROR, NULL, NULL, "cannot start: %s", err.msg);
		ctl_close(ctl);
		cfg_free(&cfg);
		tp_tls_free(tls);
		return 1;
	}
	struct met_server *metrics = NULL;
	if (cfg.node.metrics_address != NULL) {
		rc = met_start(cfg.node.metrics_address, node, &metrics, &err);
		if (rc != 0) {
			dl_log(DL_LOG_ERROR, NULL, NULL, "cannot serve metrics: %s", err.msg);
			ctl_close(ctl);
			rt_node_stop(node);
			cfg_free(&cfg);
			tp_tls_free(tls);
			return 1;
		}
	}
	dl_log(DL_LOG_INFO, NULL, NULL, "dledger-actors %s: %zu groups from %s", DLEDGER_VERSION,
	       cfg.n_groups, cfg.source ? cfg.source : "flags");
	int status = 0;
	for (size_t i = 0; i < cfg.n_groups; i++) {
		struct rt_member_config mc;
		ctl_member_config(&cfg, &cfg.groups[i], &mc);
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
	/* From here the control thread owns `cfg` until ctl_close(). */
	if (status == 0 && (rc = ctl_start(ctl, node, &err)) != 0) {
		dl_log(DL_LOG_ERROR, NULL, NULL, "cannot start: %s", err.msg);
		status = 1;
	}
	while (status == 0) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			/* The control socket's "reload", serialized with its requests. */
			dl_log(DL_LOG_INFO, NULL, NULL, "SIGHUP: reloading the configuration");
			ctl_reload_signal(ctl);
			continue;
		}
		dl_log(DL_LOG_INFO, NULL, NULL, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	ctl_close(ctl);
	met_stop(metrics);
	rt_node_stop(node);
	cfg_free(&cfg);
	tp_tls_free(tls);
	return status;
}
