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
 * A thin program over the embedding API (include/dledger/dledger.h): the
 * node, its control socket and its metrics are the library's.
 *
 * Threads: main blocks every signal it waits for before the node exists (so
 * every thread the library starts inherits the mask) and then waits in
 * sigwait(); the node's own threads never see a signal.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>

#include "dledger/dledger.h"

static void usage(FILE *f)
{
	fprintf(f,
		"usage: dledger-actors --config FILE\n"
		"       dledger-actors --group G --id ID --peers 'ID-HOST:PORT;...' "
		"[--store-base-dir DIR] [--preferred-leader-id ID] [...]\n\n%s",
		dl_node_args_usage());
}

int main(int argc, char **argv)
{
	/* Block the signals we wait for before any thread exists. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	char err[512];
	dl_node *node = NULL;
	int rc = dl_node_open_args(argc, argv, NULL, &node, err, sizeof(err));
	if (rc == DL_ARGS_HELP) {
		usage(stdout);
		return 0;
	}
	if (rc == DL_ARGS_VERSION) {
		printf("dledger-actors %s\n", dl_version());
		return 0;
	}
	if (rc != DL_OK) {
		/* A bad configuration (flags, file, TLS files, groups.yaml):
		 * 2; anything else (a live node on the control socket): 1. */
		fprintf(stderr, "dledger-actors: %s\n", err[0] ? err : dl_strerror(rc));
		return rc == DL_ECONFIG || rc == DL_EIO || rc == DL_EINVAL ? 2 : 1;
	}
	/* The library logs why a start failed (address in use, a damaged
	 * store) and stops what it had started. */
	if (dl_node_start(node, err, sizeof(err)) != DL_OK) {
		dl_node_close(node);
		return 1;
	}
	for (;;) {
		int sig = 0;
		if (sigwait(&set, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			/* The control socket's "reload", serialized with its requests. */
			dl_log(DL_LOG_INFO, NULL, NULL, "SIGHUP: reloading the configuration");
			(void)dl_node_reload(node);
			continue;
		}
		dl_log(DL_LOG_INFO, NULL, NULL, "%s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
		break;
	}
	dl_node_close(node);
	return 0;
}
