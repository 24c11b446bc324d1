/*
 * cluster_bench.c - `dledger-bench [cluster] OPTIONS`: append load on a
 * 3-node cluster that the bench starts itself (--spawn, cluster.c) or that
 * runs already (--peers), with the nodes' CPU, memory and network figures
 * read over the measured window; one run, or a sweep of runs (--sweep).
 * DESIGN.md section 9 and issue 8 say what is measured and why; the report,
 * CSV and plots are cluster_report.c's. --help documents every option.
 *
 * Threads: main drives everything; the load's threads are load.c's. A
 * signal (SIGINT, SIGTERM, SIGHUP) only sets `interrupted`, which every
 * wait looks at within POLL_MS, so the cluster is always stopped and reaped
 * on the way out.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/cluster_bench.h"
#include "client/client.h"

#define POLL_MS                  100
#define PROGRESS_MS              500
#define LEADER_WAIT_MS           30000 /* plus LEADER_WAIT_MS_PER_GROUP for each group */
#define LEADER_WAIT_MS_PER_GROUP 20
#define REQUEST_TIMEOUT_MS       10000
#define CALIBRATE_MIB            1024
#define MAX_BATCH_BYTES          (32u << 20) /* half the default frame limit */
#define EXIT_INTERRUPTED         130

static _Atomic bool interrupted;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&interrupted, true);
}

/* ---- options ------------------------------------------------------------------------------- */

struct cb_opts {
	bool spawn, keep, sweep, plot, calibrate, progress, tls, tls_compare;
	const char *actors, *flush_mode, *store_type, *peers, *group, *pids, *metrics, *csv, *label;
	const char *make_certs, *tls_cert, *tls_key, *tls_ca;
	uint32_t groups, idle_groups, payload, clients, inflight, batch, duration_s, warmup_s;
	uint32_t heartbeat_ms, election_ms;
	uint64_t rate;
	/* derived */
	char actors_buf[4096], make_certs_buf[4096];
	bool flush_async, store_memory;
	unsigned n_pids, n_metrics;
	pid_t pid[BENCH_NODES];
	char metrics_host[BENCH_NODES][64];
	uint16_t metrics_port[BENCH_NODES];
};

enum opt_kind { OPT_FLAG, OPT_STR, OPT_U32, OPT_U64 };

struct opt_def {
	const char *name;
	enum opt_kind kind;
	size_t off;
	uint64_t min, max;
	bool load; /* a load or shape option, which --sweep sets itself */
};

#define OFF(f) offsetof(struct cb_opts, f)
static const struct opt_def opt_defs[] = {
        {"--spawn", OPT_FLAG, OFF(spawn), 0, 0, false},
        {"--keep", OPT_FLAG, OFF(keep), 0, 0, false},
        {"--sweep", OPT_FLAG, OFF(sweep), 0, 0, false},
        {"--plot", OPT_FLAG, OFF(plot), 0, 0, false},
        {"--calibrate", OPT_FLAG, OFF(calibrate), 0, 0, false},
        {"--progress", OPT_FLAG, OFF(progress), 0, 0, false},
        {"--actors", OPT_STR, OFF(actors), 0, 0, false},
        {"--flush-mode", OPT_STR, OFF(flush_mode), 0, 0, false},
        {"--store-type", OPT_STR, OFF(store_type), 0, 0, false},
        {"--peers", OPT_STR, OFF(peers), 0, 0, false},
        {"--group", OPT_STR, OFF(group), 0, 0, false},
        {"--pids", OPT_STR, OFF(pids), 0, 0, false},
        {"--metrics", OPT_STR, OFF(metrics), 0, 0, false},
        {"--csv", OPT_STR, OFF(csv), 0, 0, false},
        {"--label", OPT_STR, OFF(label), 0, 0, true},
        {"--groups", OPT_U32, OFF(groups), 0, 1024, true},
        {"--idle-groups", OPT_U32, OFF(idle_groups), 0, 8192, true},
        {"--payload", OPT_U32, OFF(payload), 0, 4u << 20, true},
        {"--clients", OPT_U32, OFF(clients), 1, 1024, true},
        {"--inflight", OPT_U32, OFF(inflight), 1, DL_CLIENT_MAX_INFLIGHT, true},
        {"--batch", OPT_U32, OFF(batch), 1, TP_MAX_ENTRIES, true},
        {"--duration", OPT_U32, OFF(duration_s), 1, 3600, false},
        {"--warmup", OPT_U32, OFF(warmup_s), 0, 600, false},
        {"--heartbeat-ms", OPT_U32, OFF(heartbeat_ms), 10, 60000, false},
        {"--election-ms", OPT_U32, OFF(election_ms), 30, 600000, false},
        {"--rate", OPT_U64, OFF(rate), 1, 100000000, true},
        {"--tls", OPT_FLAG, OFF(tls), 0, 0, false},
        {"--tls-compare", OPT_FLAG, OFF(tls_compare), 0, 0, false},
        {"--make-certs", OPT_STR, OFF(make_certs), 0, 0, false},
        {"--tls-cert", OPT_STR, OFF(tls_cert), 0, 0, false},
        {"--tls-key", OPT_STR, OFF(tls_key), 0, 0, false},
        {"--tls-ca", OPT_STR, OFF(tls_ca), 0, 0, false},
};
#define N_OPTS (sizeof(opt_defs) / sizeof(opt_defs[0]))

static void usage(FILE *f)
{
	fprintf(f,
	        "usage: dledger-bench [cluster] --spawn [shape] [load] [output]\n"
	        "       dledger-bench [cluster] --peers P --group G [--pids P0,P1,P2]\n"
	        "                     [--metrics HOST:PORT,...] [load] [output]\n"
	        "Append load on a 3-node cluster on loopback, through the C client.\n"
	        "\n"
	        "Target:\n"
	        "  --spawn             start a 3-node cluster in a fresh directory under $TMPDIR\n"
	        "                      (else /tmp), on free 127.0.0.1 ports; wait (30 s + 20 ms\n"
	        "                      a group, + 2 election timeouts) for every leader; stop\n"
	        "                      and reap the nodes on every way out\n"
	        "  --heartbeat-ms H    the spawned cluster's heartBeatTimeIntervalMs [200]\n"
	        "  --election-ms E     its electionTimeoutMs [1000, or 3 H when H > 200 (DLedger:\n"
	        "                      a leader is suspected after 3 missed heartbeats)]\n"
	        "  --actors PATH       the node binary [DIR/../cmd/dledger-actors, DIR being\n"
	        "                      where this dledger-bench is]\n"
	        "  --flush-mode M      sync | async [sync]\n"
	        "  --store-type T      mmap | memory (mmap: the file store) [mmap]\n"
	        "  --groups N          loaded groups g0..g{N-1}, 0..1024 [1]; 0 (with\n"
	        "                      --idle-groups): an idle run, node figures only\n"
	        "  --idle-groups M     more groups i0..i{M-1}, without load, 0..8192 [0]\n"
	        "                      Group k's preferred leader is n{k mod 3}: leaders, and\n"
	        "                      so the load, are spread over the three nodes.\n"
	        "  --keep              leave the cluster's directory (configs, logs, stores)\n"
	        "  --tls               mutual TLS between the nodes and for the load, with\n"
	        "                      certificates made for the run in the cluster's directory\n"
	        "                      (scripts/make-certs.sh); the run's label gets '+tls'\n"
	        "  --tls-compare       the rows 1x1 (1 in flight), 4x64 (256 in flight) and\n"
	        "                      64groups (64x4), each in plaintext and then with --tls,\n"
	        "                      and what TLS costs in each (5 s after 8 s of warm-up a\n"
	        "                      row; --duration, --warmup change that). About 3 minutes\n"
	        "  --make-certs PATH   scripts/make-certs.sh [the source tree's]\n"
	        "  --peers P --group G a running cluster instead; CPU and memory only of the\n"
	        "                      processes in --pids, frames/s only from --metrics\n"
	        "  --tls-cert F --tls-key F --tls-ca F\n"
	        "                      with --peers: mutual TLS with this client certificate\n"
	        "\n"
	        "Load (defaults: 128 B, 1 client x 1 in flight, 1 entry a request):\n"
	        "  --payload B         bytes per entry, 0..4m [128]\n"
	        "  --clients C         load clients, 1..1024 [1]. With G groups, client k\n"
	        "                      serves group k mod G when C >= G, else groups k, k+C,\n"
	        "                      ...; one dl_client per (client, group), the client's\n"
	        "                      slots spread over its groups\n"
	        "  --inflight I        requests in flight per client, 1..%u [1]; a dl_client\n"
	        "                      has at most 64 on the wire per node, more wait in it\n"
	        "  --batch K           entries per request, 1..%u [1]\n"
	        "  --duration S        measured seconds, 1..3600 [10; --sweep: 5 a row]\n"
	        "  --warmup S          seconds of load before measuring, 0..600 [2; --sweep: 1]\n"
	        "  --rate R            open loop: R requests/s in total on a fixed schedule,\n"
	        "                      each timed from when it was due, also when it had to\n"
	        "                      wait for one of the --inflight slots [closed loop]\n"
	        "\n"
	        "Figures, over the measured window: committed entries/s and requests/s, MB/s\n"
	        "of payload; latency p50, p99, p99.9, max (log-linear histogram, within 0.8%%);\n"
	        "per node CPU seconds (utime + stime, /proc/PID/stat), peak resident memory\n"
	        "(VmHWM: since the node started, and --sweep reuses a cluster while the shape\n"
	        "stays) and resident memory at the end (VmRSS); frames/s, messages/s and\n"
	        "fsyncs/s sent by all nodes (their /metrics); the stores' disk use; the\n"
	        "bench's own CPU; errors (failed requests, warm-up included).\n"
	        "\n"
	        "Output (stdout: a report per run and, for several runs, a table; stderr: a\n"
	        "progress line when it is a tty or with --progress):\n"
	        "  --csv FILE          append one row per run (a header first when the file is\n"
	        "                      new), and write each run's latency CDF next to it:\n"
	        "                      STEM-runNNN-LABEL.cdf\n"
	        "  --label NAME        the run's name in the report and CSV [run]\n"
	        "  --calibrate         first measure the disk where the stores are (--peers:\n"
	        "                      in $TMPDIR): 4 KiB write + fdatasync p50 and p99,\n"
	        "                      sequential MB/s over 1 GiB; adds the ratios p50 /\n"
	        "                      fdatasync p50 and MB/s / sequential MB/s\n"
	        "  --plot              with --csv: gnuplot draws STEM-throughput.png (entries/s\n"
	        "                      against requests in flight) and STEM-latency-cdf.png of\n"
	        "                      this invocation's runs (script: STEM.gp)\n"
	        "  --progress          the progress line even when stderr is not a tty\n"
	        "  --sweep             with --spawn: the rows below, 5 s after 1 s of warm-up\n"
	        "                      each (--duration, --warmup change that); implies\n"
	        "                      --calibrate; restarts the cluster only where the groups\n"
	        "                      change. About 3 minutes in all on a 2-core machine.\n"
	        "                      Rows (128 B unless said; clients x in flight):\n"
	        "                        1x1 1x4 1x16 4x16 1x64 4x64 (1 to 256 requests in\n"
	        "                        flight);\n"
	        "                        open80 (4x64, open loop at 80%% of the best of those);\n"
	        "                        batch64 (4x16, 64 entries a request); 1KiB (4x16, 64\n"
	        "                        entries of 1 KiB); 16groups (16x16, 16 groups);\n"
	        "                        64groups (64x4, 64 groups);\n"
	        "                        64groups+960idle (the same and 960 idle groups);\n"
	        "                        1024idle (1024 idle groups, no load)\n"
	        "\n"
	        "Exit status: 0 done; 1 a failure (cluster, node, disk, CSV; --plot without\n"
	        "gnuplot, after the CSV is written); 2 a bad option; 130 interrupted.\n",
	        DL_CLIENT_MAX_INFLIGHT, TP_MAX_ENTRIES);
}

/* A bad command line: says why, returns the exit status 2. */
__attribute__((format(printf, 1, 2))) static int bad(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "dledger-bench: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n(dledger-bench --help lists the options)\n");
	va_end(ap);
	return 2;
}

static int parse_one(struct cb_opts *o, bool *given, int argc, char **argv, int *i)
{
	const char *a = argv[*i];
	for (size_t d = 0; d < N_OPTS; d++) {
		const struct opt_def *od = &opt_defs[d];
		if (strcmp(a, od->name) != 0)
			continue;
		if (given[d])
			return bad("%s given twice", a);
		given[d] = true;
		char *field = (char *)o + od->off;
		if (od->kind == OPT_FLAG) {
			*(bool *)field = true;
			return 0;
		}
		if (*i + 1 >= argc)
			return bad("%s needs a value", a);
		const char *v = argv[++*i];
		uint64_t x;
		if (od->kind == OPT_STR) {
			*(const char **)field = v;
			return 0;
		}
		if (!bench_parse_u64(v, &x) || x < od->min || x > od->max)
			return bad("%s '%s': want a whole number in %" PRIu64 "..%" PRIu64
			           " (k, m, g: x 1024)",
			           a, v, od->min, od->max);
		if (od->kind == OPT_U32)
			*(uint32_t *)field = (uint32_t)x;
		else
			*(uint64_t *)field = x;
		return 0;
	}
	return bad("unknown option '%s'", a);
}

static int parse_pids(struct cb_opts *o)
{
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", o->pids);
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		uint64_t v;
		if (o->n_pids == BENCH_NODES || !bench_parse_u64(t, &v) || v == 0 ||
		    v > INT32_MAX || kill((pid_t)v, 0) != 0)
			return bad("--pids '%s': want up to 3 running process ids, comma-separated "
			           "(bad: '%s')",
			           o->pids, t);
		o->pid[o->n_pids++] = (pid_t)v;
	}
	return 0;
}

static int parse_metrics_list(struct cb_opts *o)
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", o->metrics);
	for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
		char *colon = strrchr(t, ':');
		uint64_t port;
		if (o->n_metrics == BENCH_NODES || colon == NULL || colon == t ||
		    (size_t)(colon - t) >= sizeof(o->metrics_host[0]) ||
		    !bench_parse_u64(colon + 1, &port) || port == 0 || port > 65535)
			return bad("--metrics '%s': want up to 3 IPV4:PORT, comma-separated "
			           "(bad: '%s')",
			           o->metrics, t);
		*colon = '\0';
		snprintf(o->metrics_host[o->n_metrics], sizeof(o->metrics_host[0]), "%s", t);
		o->metrics_port[o->n_metrics++] = (uint16_t)port;
	}
	return 0;
}

static int resolve_actors(struct cb_opts *o)
{
	if (o->actors == NULL) {
		char self[4096];
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
		if (n <= 0)
			return bad("cannot read /proc/self/exe (%s); give --actors PATH",
			           strerror(errno));
		self[n] = '\0';
		snprintf(o->actors_buf, sizeof(o->actors_buf), "%s/../cmd/dledger-actors",
		         dirname(self));
		o->actors = o->actors_buf;
	}
	if (access(o->actors, X_OK) != 0)
		return bad("no executable dledger-actors at '%s' (%s); give --actors PATH",
		           o->actors, strerror(errno));
	/* The canonical path is what `ps` and the logs then show. */
	char real[4096];
	if (realpath(o->actors, real) != NULL) {
		snprintf(o->actors_buf, sizeof(o->actors_buf), "%s", real);
		o->actors = o->actors_buf;
	}
	return 0;
}

static bool label_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n >= CB_LABEL_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._+-") == n;
}

static bool given_opt(const bool *given, const char *name)
{
	for (size_t d = 0; d < N_OPTS; d++)
		if (strcmp(opt_defs[d].name, name) == 0)
			return given[d];
	DL_ASSERT(!"option in the table");
	return false;
}

/* Options that only make sense with one target. */
static int check_target(const struct cb_opts *o, const bool *given)
{
	static const char *const spawn_only[] = {
	        "--actors", "--flush-mode", "--store-type", "--groups",     "--idle-groups",
	        "--keep",   "--sweep",      "--tls",        "--tls-compare", "--make-certs"};
	static const char *const peers_only[] = {"--group", "--pids", "--metrics",
	                                         "--tls-cert", "--tls-key", "--tls-ca"};
	if (o->spawn == (o->peers != NULL))
		return bad("give either --spawn (start a cluster) or --peers P --group G (a "
		           "running one)");
	for (size_t i = 0; o->peers != NULL && i < sizeof(spawn_only) / sizeof(*spawn_only); i++)
		if (given_opt(given, spawn_only[i]))
			return bad("%s is for --spawn, not --peers", spawn_only[i]);
	for (size_t i = 0; o->spawn && i < sizeof(peers_only) / sizeof(*peers_only); i++)
		if (given_opt(given, peers_only[i]))
			return bad("%s is for --peers, not --spawn", peers_only[i]);
	if (o->peers != NULL && o->group == NULL)
		return bad("--peers needs --group G");
	if ((o->tls_cert || o->tls_key || o->tls_ca) && !(o->tls_cert && o->tls_key && o->tls_ca))
		return bad("--tls-cert, --tls-key and --tls-ca go together");
	if (o->sweep && o->tls_compare)
		return bad("--sweep and --tls-compare are two sets of rows: give one");
	if (o->tls && o->tls_compare)
		return bad("--tls-compare runs each row with and without TLS: no --tls");
	return 0;
}

/* scripts/make-certs.sh: --make-certs, else the source tree's (built in),
 * else DIR/../../scripts/make-certs.sh, DIR being where this binary is. */
static int resolve_make_certs(struct cb_opts *o)
{
	if (o->make_certs == NULL) {
#ifdef DL_SOURCE_DIR
		snprintf(o->make_certs_buf, sizeof(o->make_certs_buf),
		         "%s/scripts/make-certs.sh", DL_SOURCE_DIR);
#endif
		if (o->make_certs_buf[0] == '\0' || access(o->make_certs_buf, X_OK) != 0) {
			char self[4096];
			ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
			self[n > 0 ? n : 0] = '\0';
			snprintf(o->make_certs_buf, sizeof(o->make_certs_buf),
			         "%s/../../scripts/make-certs.sh", dirname(self));
		}
		o->make_certs = o->make_certs_buf;
	}
	if (access(o->make_certs, X_OK) != 0)
		return bad("no executable make-certs.sh at '%s' (%s); give --make-certs PATH",
		           o->make_certs, strerror(errno));
	return 0;
}

static int check_values(struct cb_opts *o)
{
	if (o->flush_mode != NULL && strcmp(o->flush_mode, "sync") != 0 &&
	    strcmp(o->flush_mode, "async") != 0)
		return bad("--flush-mode '%s': want sync or async", o->flush_mode);
	o->flush_async = o->flush_mode != NULL && strcmp(o->flush_mode, "async") == 0;
	if (o->store_type != NULL && strcmp(o->store_type, "mmap") != 0 &&
	    strcmp(o->store_type, "file") != 0 && strcmp(o->store_type, "memory") != 0)
		return bad("--store-type '%s': want mmap (or file) or memory", o->store_type);
	o->store_memory = o->store_type != NULL && strcmp(o->store_type, "memory") == 0;
	if (o->label != NULL && !label_ok(o->label))
		return bad("--label '%s': want 1..%d of A-Z a-z 0-9 . _ + -", o->label,
		           CB_LABEL_MAX - 1);
	if (o->plot && o->csv == NULL)
		return bad("--plot needs --csv FILE (the plots and their data go next to it)");
	if ((uint64_t)o->payload * o->batch > MAX_BATCH_BYTES)
		return bad("--payload x --batch is %" PRIu64 " bytes a request; at most %u",
		           (uint64_t)o->payload * o->batch, MAX_BATCH_BYTES);
	if (o->pids != NULL && parse_pids(o) != 0)
		return 2;
	if (o->metrics != NULL && parse_metrics_list(o) != 0)
		return 2;
	if (o->spawn && (o->tls || o->tls_compare) && resolve_make_certs(o) != 0)
		return 2;
	if (o->spawn)
		return resolve_actors(o);
	return 0;
}

static int check_shape(struct cb_opts *o, const bool *given)
{
	if (o->sweep || o->tls_compare) {
		for (size_t d = 0; d < N_OPTS; d++)
			if (given[d] && opt_defs[d].load)
				return bad("%s: %s sets the load and shape of each row itself",
				           opt_defs[d].name, o->sweep ? "--sweep" : "--tls-compare");
		o->calibrate = o->calibrate || o->sweep;
		return 0;
	}
	if (o->groups == 0 && o->idle_groups == 0)
		return bad("--groups 0 is an idle run: give --idle-groups M too");
	if (o->groups == 0 && o->rate > 0)
		return bad("--rate needs loaded groups (--groups at least 1)");
	const char *g = o->group;
	struct bench_load_cfg cfg = {.n_groups = o->groups > 0 ? o->groups : 1,
	                             .groups = &g,
	                             .clients = o->clients,
	                             .inflight = o->inflight,
	                             .batch = o->batch};
	struct dl_errctx err = {{0}};
	if (o->groups > 0 && bench_load_check(&cfg, &err) != 0)
		return bad("%s", err.msg);
	return 0;
}

/* Returns -1 to go on, else the exit status (0 after --help). */
static int parse(int argc, char **argv, struct cb_opts *o)
{
	bool given[N_OPTS] = {false};
	*o = (struct cb_opts){.groups = 1, .payload = 128, .clients = 1, .inflight = 1, .batch = 1};
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		}
		int rc = parse_one(o, given, argc, argv, &i);
		if (rc != 0)
			return rc;
	}
	if (!given_opt(given, "--duration"))
		o->duration_s = o->sweep || o->tls_compare ? 5 : 10;
	/* --tls-compare: 8 s, so that the 192 TLS handshakes of 64groups's
	 * clients are over before measuring (after 3 s, one request in 1,000
	 * still waited seconds for its connection): steady state both ways. */
	if (!given_opt(given, "--warmup"))
		o->warmup_s = o->sweep ? 1 : o->tls_compare ? 8 : 2;
	if (!given_opt(given, "--heartbeat-ms"))
		o->heartbeat_ms = 200;
	if (o->election_ms != 0 && o->election_ms <= o->heartbeat_ms) {
		fprintf(stderr, "dledger-bench: --election-ms must be longer than the heartbeat "
		                "(%u ms)\n",
		        o->heartbeat_ms);
		return 2;
	}
	int rc = check_target(o, given);
	if (rc == 0)
		rc = check_values(o);
	if (rc == 0)
		rc = check_shape(o, given);
	return rc == 0 ? -1 : rc;
}

#define IDLE_SETTLE_S  5
#define IDLE_MEASURE_S 10

/* ---- the runs --------------------------------------------------------------------------- */

/* The sweep's rows: the target figures of issues 8 and 15. 1x16, 1x64
 * and 16groups have the in-flight counts of the peers' rows
 * (../shared/peers: canonical raft's K=16, K=64 and 16 groups x 16). */
static const struct cb_row sweep_rows[] = {
        /* label, groups, idle, payload, clients, inflight, batch, rate % */
        {"1x1", 1, 0, 128, 1, 1, 1, 0, 0},
        {"1x4", 1, 0, 128, 1, 4, 1, 0, 0},
        {"1x16", 1, 0, 128, 1, 16, 1, 0, 0},
        {"4x16", 1, 0, 128, 4, 16, 1, 0, 0},
        {"1x64", 1, 0, 128, 1, 64, 1, 0, 0},
        {"4x64", 1, 0, 128, 4, 64, 1, 0, 0},
        {"open80", 1, 0, 128, 4, 64, 1, 80, 0},
        {"batch64", 1, 0, 128, 4, 16, 64, 0, 0},
        {"1KiB", 1, 0, 1024, 4, 16, 64, 0, 0},
        /* Many groups at DLedger's default heartbeat (2 s), which an idle
         * group's cost is measured against. */
        {"16groups", 16, 0, 128, 16, 16, 1, 0, 0, 2000},
        {"64groups", 64, 0, 128, 64, 4, 1, 0, 0, 2000},
        {"64groups+960idle", 64, 960, 128, 64, 4, 1, 0, 0, 2000},
        {"1024idle", 0, 1024, 0, 0, 0, 0, 0, 0, 2000},
};
#define N_SWEEP (sizeof(sweep_rows) / sizeof(sweep_rows[0]))

/* --tls-compare: issue 13's shapes, each in plaintext and then with TLS, on
 * a cluster started afresh for each (the same shape otherwise). */
static const struct cb_row tls_rows[] = {
        {"1x1", 1, 0, 128, 1, 1, 1, 0, 0, 0, false},
        {"1x1", 1, 0, 128, 1, 1, 1, 0, 0, 0, true},
        {"4x64", 1, 0, 128, 4, 64, 1, 0, 0, 0, false},
        {"4x64", 1, 0, 128, 4, 64, 1, 0, 0, 0, true},
        {"64groups", 64, 0, 128, 64, 4, 1, 0, 0, 2000, false},
        {"64groups", 64, 0, 128, 64, 4, 1, 0, 0, 2000, true},
};
#define N_TLS_ROWS (sizeof(tls_rows) / sizeof(tls_rows[0]))

struct cb_ctx {
	const struct cb_opts *o;
	struct bench_cluster cl;
	bool cluster_up;
	struct cb_calib cal;
	bool show_progress;
	unsigned n_rows;
	struct cb_result *res; /* n_done of n_rows */
	unsigned n_done;
};

/* Open loop at pct % of the best closed-loop requests/s of the earlier runs
 * with the same payload, batch and groups. 0 when there is none. */
static uint64_t rate_from_earlier(const struct cb_ctx *x, const struct cb_row *row)
{
	double best = 0;
	for (unsigned i = 0; i < x->n_done; i++) {
		const struct cb_result *r = &x->res[i];
		if (r->row.rate_rps == 0 && r->row.groups == row->groups &&
		    r->row.payload == row->payload && r->row.batch == row->batch && r->secs > 0 &&
		    (double)r->load.requests / r->secs > best)
			best = (double)r->load.requests / r->secs;
	}
	return (uint64_t)(best * row->rate_pct / 100.0);
}

/* Where fresh directories go: $TMPDIR, else /tmp. */
static const char *tmp_parent(void)
{
	const char *tmp = getenv("TMPDIR");
	return tmp != NULL && tmp[0] != '\0' ? tmp : "/tmp";
}

static int ensure_cluster(struct cb_ctx *x, const struct cb_row *row)
{
	uint32_t hb = row->heartbeat_ms ? row->heartbeat_ms : x->o->heartbeat_ms;
	uint32_t el = x->o->election_ms && hb == x->o->heartbeat_ms ? x->o->election_ms
	              : hb > 200                                    ? 3 * hb
	                                                            : 1000;
	if (x->cluster_up && x->cl.cfg.groups == row->groups &&
	    x->cl.cfg.idle_groups == row->idle_groups && x->cl.cfg.heartbeat_ms == hb &&
	    (x->cl.cfg.make_certs != NULL) == row->tls)
		return 0;
	if (x->cluster_up && !bench_cluster_stop(&x->cl))
		fprintf(stderr, "dledger-bench: a node of the previous cluster did not stop "
		                "cleanly\n");
	x->cluster_up = false;
	struct bench_cluster_cfg cfg = {.actors_path = x->o->actors,
	                                .tmp_parent = tmp_parent(),
	                                .groups = row->groups,
	                                .idle_groups = row->idle_groups,
	                                .flush_async = x->o->flush_async,
	                                .store_memory = x->o->store_memory,
	                                .keep = x->o->keep,
	                                .heartbeat_ms = hb,
	                                .election_ms = el,
	                                .make_certs = row->tls ? x->o->make_certs : NULL};
	struct dl_errctx err = {{0}};
	fprintf(stderr, "dledger-bench: starting 3 nodes, %u loaded + %u idle groups%s...\n",
	        row->groups, row->idle_groups, row->tls ? ", mutual TLS" : "");
	uint64_t t0 = bench_now_ns();
	if (bench_cluster_start(&cfg, &x->cl, &err) != 0) {
		fprintf(stderr, "dledger-bench: %s\n", err.msg);
		return 1;
	}
	x->cluster_up = true;
	uint32_t total = row->groups + row->idle_groups;
	int rc = bench_cluster_wait_leaders(&x->cl,
	                                    LEADER_WAIT_MS + LEADER_WAIT_MS_PER_GROUP * total +
	                                            2 * el,
	                                    &interrupted, x->show_progress, &err);
	if (rc != 0) {
		fprintf(stderr, "dledger-bench: %s\n", err.msg);
		if (!atomic_load(&interrupted))
			bench_cluster_print_logs(&x->cl);
		return atomic_load(&interrupted) ? EXIT_INTERRUPTED : 1;
	}
	fprintf(stderr, "dledger-bench: cluster in %s ready after %.1f s (peers %s)\n", x->cl.dir,
	        (double)(bench_now_ns() - t0) / 1e9, x->cl.peers);
	return 0;
}

static int calibrate(struct cb_ctx *x)
{
	char dir[4096];
	if (x->o->spawn) {
		snprintf(dir, sizeof(dir), "%s", x->cl.dir);
	} else {
		snprintf(dir, sizeof(dir), "%s/dledger-bench-XXXXXX", tmp_parent());
		if (mkdtemp(dir) == NULL) {
			fprintf(stderr, "dledger-bench: mkdtemp %s: %s\n", dir, strerror(errno));
			return 1;
		}
	}
	fprintf(stderr, "dledger-bench: measuring the disk in %s...\n", dir);
	int rc = bench_disk_figures(dir, CALIBRATE_MIB, &x->cal.d);
	int e = errno;
	if (!x->o->spawn)
		bench_rm_rf(dir);
	if (rc != 0) {
		fprintf(stderr, "dledger-bench: disk figures in %s: %s\n", dir, strerror(e));
		return 1;
	}
	x->cal.done = true;
	printf("disk: 4 KiB write + fdatasync p50 %.0f us, p99 %.0f us; sequential write %.0f MB/s "
	       "(%u MiB)\n",
	       x->cal.d.fsync_p50_us, x->cal.d.fsync_p99_us, x->cal.d.seq_mb_per_s, CALIBRATE_MIB);
	return 0;
}

/* ---- observing the nodes over a window ----------------------------------------------------- */

struct node_snap {
	double cpu_s[BENCH_NODES];
	double m[BENCH_NODES][BENCH_M_COUNT];
	bool m_ok[BENCH_NODES];
	double bench_cpu_s;
	uint64_t t_ns;
};

static unsigned n_pids(const struct cb_ctx *x)
{
	return x->o->spawn ? BENCH_NODES : x->o->n_pids;
}

static pid_t pid_of(const struct cb_ctx *x, unsigned k)
{
	return x->o->spawn ? x->cl.pid[k] : x->o->pid[k];
}

static unsigned n_metrics(const struct cb_ctx *x)
{
	return x->o->spawn ? BENCH_NODES : x->o->n_metrics;
}

static double self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void snap(const struct cb_ctx *x, struct node_snap *s)
{
	for (unsigned k = 0; k < n_pids(x); k++)
		s->cpu_s[k] = bench_proc_cpu_s(pid_of(x, k));
	for (unsigned k = 0; k < n_metrics(x); k++) {
		struct dl_errctx err = {{0}};
		const char *host = x->o->spawn ? "127.0.0.1" : x->o->metrics_host[k];
		uint16_t port = x->o->spawn ? x->cl.metrics_port[k] : x->o->metrics_port[k];
		s->m_ok[k] = bench_scrape(host, port, s->m[k], &err) == 0;
		if (!s->m_ok[k])
			fprintf(stderr, "dledger-bench: %s\n", err.msg);
	}
	s->bench_cpu_s = self_cpu_s();
	s->t_ns = bench_now_ns();
}

/* Per-second rate of metric m summed over the nodes; -1 unless every node
 * answered both scrapes. */
static double metric_rate(const struct cb_ctx *x, const struct node_snap *a,
                          const struct node_snap *b, enum bench_metric m)
{
	double sum = 0, secs = (double)(b->t_ns - a->t_ns) / 1e9;
	if (n_metrics(x) == 0 || secs <= 0)
		return -1;
	for (unsigned k = 0; k < n_metrics(x); k++) {
		if (!a->m_ok[k] || !b->m_ok[k])
			return -1;
		sum += b->m[k][m] - a->m[k][m];
	}
	return sum / secs;
}

static void figures(const struct cb_ctx *x, const struct node_snap *a, const struct node_snap *b,
                    struct cb_result *r)
{
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		r->cpu_s[k] = r->peak_rss_mb[k] = r->rss_mb[k] = -1;
		uint64_t hwm, rss;
		if (k >= n_pids(x))
			continue;
		if (a->cpu_s[k] >= 0 && b->cpu_s[k] >= 0)
			r->cpu_s[k] = b->cpu_s[k] - a->cpu_s[k];
		if (bench_proc_mem(pid_of(x, k), &hwm, &rss)) {
			r->peak_rss_mb[k] = (double)hwm / (1 << 20);
			r->rss_mb[k] = (double)rss / (1 << 20);
		}
	}
	r->bench_cpu_s = b->bench_cpu_s - a->bench_cpu_s;
	r->frames_per_s = metric_rate(x, a, b, BENCH_M_FRAMES_SENT);
	r->messages_per_s = metric_rate(x, a, b, BENCH_M_MESSAGES_SENT);
	r->fsyncs_per_s = metric_rate(x, a, b, BENCH_M_FSYNCS);
	r->store_disk_mb = -1;
	if (x->o->spawn) {
		uint64_t sum = 0;
		for (unsigned k = 0; k < BENCH_NODES; k++) {
			char d[4200];
			snprintf(d, sizeof(d), "%s/node%u", x->cl.dir, k);
			sum += bench_disk_usage(d);
		}
		r->store_disk_mb = (double)sum / 1e6;
	}
}

/* ---- one run ------------------------------------------------------------------------------- */

static void progress(const struct cb_ctx *x, const struct cb_row *row, struct bench_load *l,
                     const char *phase, double done_s, double of_s, uint64_t t0_ns)
{
	uint64_t rq = 0, e = 0, er = 0;
	if (l != NULL)
		bench_load_counts(l, &rq, &e, &er);
	double secs = t0_ns ? (double)(bench_now_ns() - t0_ns) / 1e9 : 0;
	fprintf(stderr, "\r  [%u/%u %s] %s %.1f/%.0f s", x->n_done + 1, x->n_rows, row->label,
	        phase, done_s, of_s);
	if (secs > 0 && l != NULL)
		fprintf(stderr, ": %.0f entries/s, %.0f requests/s", (double)e / secs,
		        (double)rq / secs);
	fprintf(stderr, ", %" PRIu64 " errors   ", er);
}

/* Waits `secs` seconds, drawing the progress line. Returns 0, or the exit
 * status when interrupted (130) or a node died (1). */
static int phase(struct cb_ctx *x, const struct cb_row *row, struct bench_load *l, const char *name,
                 uint32_t secs, uint64_t t0_ns)
{
	uint64_t start = bench_now_ns(), end = start + (uint64_t)secs * 1000000000u;
	uint64_t next_progress = start;
	for (uint64_t now = start; now < end; now = bench_now_ns()) {
		if (atomic_load(&interrupted))
			return EXIT_INTERRUPTED;
		struct dl_errctx err = {{0}};
		if (x->o->spawn && !bench_cluster_alive(&x->cl, &err)) {
			fprintf(stderr, "\ndledger-bench: %s\n", err.msg);
			bench_cluster_print_logs(&x->cl);
			return 1;
		}
		if (x->show_progress && now >= next_progress) {
			progress(x, row, l, name, (double)(now - start) / 1e9, secs, t0_ns);
			next_progress = now + PROGRESS_MS * 1000000ull;
		}
		uint64_t left_ms = (end - now) / 1000000u;
		struct timespec ts = {.tv_nsec = (long)(left_ms < POLL_MS ? left_ms : POLL_MS) *
		                                 1000000L};
		nanosleep(&ts, NULL);
	}
	return 0;
}

static int start_load(struct cb_ctx *x, const struct cb_row *row, struct bench_load **l)
{
	*l = NULL;
	if (row->groups == 0)
		return 0;
	const char *one[1] = {x->o->group};
	struct bench_load_cfg cfg = {
	        .peers = x->o->spawn ? x->cl.peers : x->o->peers,
	        .groups = x->o->spawn ? (const char *const *)x->cl.group_names : one,
	        .n_groups = x->o->spawn ? row->groups : 1,
	        .clients = row->clients,
	        .inflight = row->inflight,
	        .batch = row->batch,
	        .payload_bytes = row->payload,
	        .rate_rps = (double)row->rate_rps,
	        .timeout_ms = REQUEST_TIMEOUT_MS,
	};
	if (row->tls && x->o->spawn) {
		cfg.tls_cert = x->cl.tls_cert;
		cfg.tls_key = x->cl.tls_key;
		cfg.tls_ca = x->cl.tls_ca;
	} else if (row->tls) {
		cfg.tls_cert = x->o->tls_cert;
		cfg.tls_key = x->o->tls_key;
		cfg.tls_ca = x->o->tls_ca;
	}
	struct dl_errctx err = {{0}};
	if (bench_load_start(&cfg, l, &err) != 0) {
		fprintf(stderr, "dledger-bench: %s\n", err.msg);
		return 1;
	}
	return 0;
}

static int run_row(struct cb_ctx *x, const struct cb_row *row, struct cb_result *r)
{
	memset(r, 0, sizeof(*r));
	r->row = *row;
	r->spawned = x->o->spawn;
	r->flush_async = x->o->flush_async;
	r->store_memory = x->o->store_memory;
	r->duration_s = x->o->duration_s;
	r->warmup_s = x->o->warmup_s;
	/* An idle run in a sweep: measure a settled cluster (preferred leaders
	 * taking over, first checkpoints) over a longer window, since its
	 * figures are small. */
	if (x->o->sweep && row->groups == 0) {
		r->warmup_s = r->warmup_s < IDLE_SETTLE_S ? IDLE_SETTLE_S : r->warmup_s;
		r->duration_s = r->duration_s < IDLE_MEASURE_S ? IDLE_MEASURE_S : r->duration_s;
	}
	struct bench_load *l;
	int rc = start_load(x, row, &l);
	if (rc == 0)
		rc = phase(x, row, l, "warm-up", r->warmup_s, 0);
	struct node_snap a, b;
	uint64_t t_on = 0;
	if (rc == 0) {
		snap(x, &a);
		if (l != NULL)
			bench_load_measure(l, true);
		t_on = bench_now_ns();
		rc = phase(x, row, l, "measuring", r->duration_s, t_on);
	}
	if (rc == 0) {
		if (l != NULL)
			bench_load_measure(l, false);
		r->secs = (double)(bench_now_ns() - t_on) / 1e9;
		snap(x, &b);
		figures(x, &a, &b, r);
		if (l != NULL)
			bench_load_result(l, &r->load);
	}
	if (x->show_progress)
		fprintf(stderr, "\r%100s\r", "");
	bench_load_stop(l);
	return rc;
}

/* ---- driving -------------------------------------------------------------------------------- */

static void row_from_opts(const struct cb_opts *o, struct cb_row *row)
{
	*row = (struct cb_row){.groups = o->spawn ? o->groups : 1,
	                       .idle_groups = o->idle_groups,
	                       .payload = o->payload,
	                       .clients = o->clients,
	                       .inflight = o->inflight,
	                       .batch = o->batch,
	                       .rate_rps = o->rate,
	                       .tls = o->tls || o->tls_cert != NULL};
	snprintf(row->label, sizeof(row->label), "%s", o->label != NULL ? o->label : "run");
	if (row->groups == 0)
		row->payload = row->clients = row->inflight = row->batch = 0;
}

static int run_all(struct cb_ctx *x, const struct cb_row *rows)
{
	for (; x->n_done < x->n_rows; x->n_done++) {
		struct cb_row row = rows[x->n_done];
		if (x->o->tls || x->o->tls_cert != NULL)
			row.tls = true;
		size_t len = strlen(row.label);
		if (row.tls && (len < 4 || strcmp(row.label + len - 4, "+tls") != 0) &&
		    len + 4 < sizeof(row.label))
			strcat(row.label, "+tls");
		if (row.rate_pct > 0) {
			row.rate_rps = rate_from_earlier(x, &row);
			if (row.rate_rps == 0) {
				fprintf(stderr,
				        "dledger-bench: %s: no earlier closed-loop rate to take "
				        "%u%% of; skipped\n",
				        row.label, row.rate_pct);
				continue;
			}
		}
		int rc = x->o->spawn ? ensure_cluster(x, &row) : 0;
		row.heartbeat_ms = x->o->spawn ? x->cl.cfg.heartbeat_ms : 0;
		if (rc == 0 && x->o->calibrate && !x->cal.done)
			rc = calibrate(x);
		struct cb_result *r = &x->res[x->n_done];
		if (rc == 0)
			rc = run_row(x, &row, r);
		if (rc != 0)
			return rc;
		cb_print_run(r, &x->cal, x->n_done + 1, x->n_rows);
		if (x->o->csv != NULL && cb_csv_append(x->o->csv, r, &x->cal) != 0)
			return 1;
	}
	return 0;
}

static void on_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: a sleep returns at once and the loop looks at the flag. */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
}

int bench_cluster_main(int argc, char **argv)
{
	struct cb_opts o;
	int rc = parse(argc, argv, &o);
	if (rc >= 0)
		return rc;
	if (o.csv != NULL && cb_csv_check(o.csv) != 0)
		return 1;
	if (o.plot && !cb_have_gnuplot())
		fprintf(stderr, "dledger-bench: gnuplot is not installed (Debian: gnuplot-nox); "
		                "--plot will fail after the CSV is written\n");
	on_signals();
	struct cb_row single;
	row_from_opts(&o, &single);
	struct cb_ctx x = {.o = &o,
	                   .show_progress = o.progress || isatty(2),
	                   .n_rows = o.sweep         ? (unsigned)N_SWEEP
	                             : o.tls_compare ? (unsigned)N_TLS_ROWS
	                                             : 1};
	x.res = calloc(x.n_rows, sizeof(*x.res));
	if (x.res == NULL)
		return 1;
	rc = run_all(&x, o.sweep ? sweep_rows : o.tls_compare ? tls_rows : &single);
	if (x.cluster_up && !bench_cluster_stop(&x.cl))
		fprintf(stderr, "dledger-bench: a node did not stop cleanly (see above)\n");
	if (rc == EXIT_INTERRUPTED)
		fprintf(stderr, "dledger-bench: interrupted; the cluster is stopped\n");
	unsigned done = 0;
	for (unsigned i = 0; i < x.n_done; i++)
		done += x.res[i].secs > 0;
	if (done > 1)
		cb_print_table(x.res, x.n_done, &x.cal);
	if (o.tls_compare)
		cb_print_tls_cost(x.res, x.n_done);
	if (rc == 0 && o.plot)
		rc = cb_plot(o.csv, x.res, x.n_done);
	free(x.res);
	return rc;
}
