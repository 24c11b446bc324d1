/*
 * Multi-process tests of the control socket: three `dledger-actors`
 * processes on loopback ports with one configured group (g0), groups added
 * and removed at run time through `dledger-ctl`, appends through the C
 * client. Usage: control_test PATH/TO/dledger-actors PATH/TO/dledger-ctl
 *
 * The tests share one cluster and run in order. Every process started is
 * stopped before the program exits; every wait is bounded in time.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"
#include "control/ctl_client.h"
#include "test/lib/tt.h"
#include "test/lib/tt_cluster.h"

TT_MAIN_STATE;

#define NODES TT_NODES
#define ADDED 100  /* groups added at run time: g1..g100 (the figures) */
#define REMOVED 50 /* of which g51..g100 are removed again */
#define PER_GROUP 5

static const char *actors_bin, *ctl_bin;

static struct tt_cluster C;
static char sock[NODES][128]; /* node k's control socket: DIR/nodeK/control.sock */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms) { usleep(ms * 1000u); }

static void peers_of(char *buf, size_t cap) { tt_cluster_peers(&C, "n", buf, cap); }

static void node_start(int k)
{
	tt_cluster_start(&C, k);
	/* Up once its control socket answers. */
	for (int i = 0; i < 500 && access(sock[k], F_OK) != 0; i++)
		sleep_ms(10);
}

/* Runs dledger-ctl with the arguments (NULL-terminated); its stdout and
 * stderr go to `out`. Returns its exit status. */
static int run_ctl(char *out, size_t cap, ...)
{
	char *argv[32];
	int n = 0;
	argv[n++] = (char *)ctl_bin;
	va_list ap;
	va_start(ap, cap);
	for (char *a; (a = va_arg(ap, char *)) != NULL && n < 31;)
		argv[n++] = a;
	va_end(ap);
	argv[n] = NULL;
	char path[128];
	snprintf(path, sizeof(path), "%s/ctl.out", tt_cluster_live ? tt_cluster_live->dir : C.dir);
	pid_t pid = fork();
	tt_assert(pid >= 0);
	if (pid == 0) {
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		dup2(fd, 1);
		dup2(fd, 2);
		execv(ctl_bin, argv);
		_exit(127);
	}
	int st;
	waitpid(pid, &st, 0);
	FILE *f = fopen(path, "r");
	size_t got = f ? fread(out, 1, cap - 1, f) : 0;
	out[got] = '\0';
	if (f)
		fclose(f);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void ctl_ok(const char *what, int rc, const char *out)
{
	tt_assert(rc == 0, "%s: exit %d: %s", what, rc, out);
}

static void add_group(int k, const char *g)
{
	char peers[256], id[8], out[1024];
	peers_of(peers, sizeof(peers));
	snprintf(id, sizeof(id), "n%d", k);
	int rc = run_ctl(out, sizeof(out), "add-group", "--control", sock[k], "--group", g, "--id",
			 id, "--peers", peers, (char *)NULL);
	ctl_ok("add-group", rc, out);
}

static void remove_group(int k, const char *g)
{
	char id[8], out[1024];
	snprintf(id, sizeof(id), "n%d", k);
	int rc = run_ctl(out, sizeof(out), "remove-group", "--control", sock[k], "--group", g,
			 "--id", id, (char *)NULL);
	ctl_ok("remove-group", rc, out);
}

static struct dl_client *client_of(const char *g, uint32_t timeout_ms)
{
	char peers[256];
	peers_of(peers, sizeof(peers));
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	struct dl_client_opts o = {.timeout_ms = timeout_ms, .retry_busy = true};
	tt_assert(dl_client_open(peers, g, &o, &cl, &err) == 0, "%s", err.msg);
	return cl;
}

/* Node k's metadata rows (free() them); asserts that it answers. */
static uint32_t node_rows(int k, struct tp_group_meta **rows)
{
	struct dl_client *cl = client_of(NULL, 2000);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", C.port[k]);
	uint32_t n = 0;
	struct dl_errctx err = {{0}};
	*rows = NULL;
	int rc = dl_client_node_metadata(cl, addr, rows, &n, &err);
	dl_client_close(cl);
	tt_assert(rc == 0, "node %d metadata: %s", k, err.msg);
	return n;
}

/* Whether node k hosts group g, as its node metadata says. */
static bool node_hosts(int k, const char *g)
{
	struct tp_group_meta *rows;
	uint32_t n = node_rows(k, &rows);
	bool found = false;
	for (uint32_t i = 0; i < n; i++)
		found |= strcmp(rows[i].group, g) == 0;
	free(rows);
	return found;
}

/* ---- background load on g0 -------------------------------------------------------- */

static struct {
	pthread_t t;
	atomic_bool stop;
	_Atomic uint64_t done, failed;
	char last_error[256];
} bg;

static void *bg_main(void *arg)
{
	(void)arg;
	struct dl_client *cl = client_of("g0", 5000);
	while (!atomic_load(&bg.stop)) {
		uint64_t index, term;
		struct dl_errctx err = {{0}};
		int rc = dl_client_append(cl, "bg", 2, &index, &term, &err);
		if (rc == 0) {
			atomic_fetch_add(&bg.done, 1);
		} else {
			snprintf(bg.last_error, sizeof(bg.last_error), "%.40s %.200s", dl_strerror(rc),
				 err.msg);
			atomic_fetch_add(&bg.failed, 1);
		}
		sleep_ms(2);
	}
	dl_client_close(cl);
	return NULL;
}

/* ---- tests ------------------------------------------------------------------------- */

static void cluster_starts_with_a_0600_control_socket(void)
{
	tt_cluster_init(&C, actors_bin, "dl-ctl");
	char peers[256];
	peers_of(peers, sizeof(peers));
	for (int k = 0; k < NODES; k++) {
		snprintf(sock[k], sizeof(sock[k]), "%s/node%d/control.sock", C.dir, k);
		FILE *f = fopen(C.conf[k], "w");
		tt_assert(f != NULL);
		fprintf(f,
			"storeBaseDir: %s/node%d\nheartBeatTimeIntervalMs: 100\n"
			"electionTimeoutMs: 500\nmappedFileSizeForEntryData: 4194304\n"
			"mappedFileSizeForEntryIndex: 1048576\n"
			"DLedgerConfigs:\n  - group: g0\n    id: n%d\n    peers: %s\n"
			"    preferredLeaderId: n0\n",
			C.dir, k, k, peers);
		fclose(f);
	}
	for (int k = 0; k < NODES; k++)
		node_start(k);
	for (int k = 0; k < NODES; k++) {
		struct stat sb;
		tt_assert(stat(sock[k], &sb) == 0, "node %d has no control socket", k);
		tt_assert(S_ISSOCK(sb.st_mode) && (sb.st_mode & 0777) == 0600, "mode %o",
			  sb.st_mode & 0777);
	}
	struct dl_client *cl = client_of("g0", 10000);
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append(cl, "first", 5, NULL, NULL, &err) == 0, "%s", err.msg);
	dl_client_close(cl);
}

static void a_second_node_on_the_same_socket_is_refused(void)
{
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "%s --config %s >%s/second.log 2>&1", actors_bin, C.conf[1],
		 C.dir);
	int st = system(cmd);
	tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "status %d", st);
	snprintf(cmd, sizeof(cmd), "grep -q 'another node is running there' %s/second.log", C.dir);
	tt_assert(system(cmd) == 0);
	tt_assert(access(sock[1], F_OK) == 0, "the live node's socket was removed");
}

/* Sends raw bytes to node k's control socket; returns the reply's "ok" and
 * copies its "error". */
static bool raw_request(int k, const void *buf, size_t len, char *error, size_t cap)
{
	struct ctl_reply r;
	struct dl_errctx err = {{0}};
	int rc = ctl_client_call(sock[k], buf, len, 5000, &r, &err);
	tt_assert(r.map != NULL, "no reply to a malformed request: %s", err.msg);
	snprintf(error, cap, "%s", rc == DL_OK ? "" : err.msg);
	ctl_reply_free(&r);
	return rc == DL_OK;
}

static void malformed_requests_get_an_error_and_the_node_keeps_running(void)
{
	char error[256], out[4096];
	tt_assert(!raw_request(1, "\xc1garbage", 8, error, sizeof(error)));
	tt_assert(strstr(error, "malformed") != NULL, "error: %s", error);
	/* A map without a known op; an add-group whose keys are not strings. */
	static const uint8_t unknown_op[] = {0x81, 0xa2, 'o', 'p', 0xa3, 'x', 'y', 'z'};
	tt_assert(!raw_request(1, unknown_op, sizeof(unknown_op), error, sizeof(error)));
	tt_assert(strstr(error, "unknown op") != NULL, "error: %s", error);
	static const uint8_t bad_keys[] = {0x82, 0xa2, 'o', 'p', 0xa9, 'a', 'd', 'd', '-', 'g',
					   'r', 'o', 'u', 'p', 0xa4, 'k', 'e', 'y', 's', 0x07};
	tt_assert(!raw_request(1, bad_keys, sizeof(bad_keys), error, sizeof(error)));
	int rc = run_ctl(out, sizeof(out), "status", "--control", sock[1], "--json", (char *)NULL);
	ctl_ok("status", rc, out);
	tt_assert(strstr(out, "\"bad_requests\": 3") != NULL, "status: %s", out);
	rc = run_ctl(out, sizeof(out), "status", "--control", sock[1], (char *)NULL);
	ctl_ok("status", rc, out);
	tt_assert(strstr(out, "g0") != NULL, "status: %s", out);
	for (char *line = out; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
		size_t w = strchr(line, '\n') ? (size_t)(strchr(line, '\n') - line) : strlen(line);
		tt_assert(w <= 80, "status line wider than 80 columns: %.*s", (int)w, line);
	}
}

static void groups_added_and_removed_at_run_time_while_appends_go_on(void)
{
	atomic_init(&bg.stop, false);
	tt_assert(pthread_create(&bg.t, NULL, bg_main, NULL) == 0);
	uint64_t t0 = now_ms();
	for (int g = 1; g <= ADDED; g++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", g);
		for (int k = 0; k < NODES; k++)
			add_group(k, name);
	}
	printf("%d groups added on %d nodes in %llu ms\n", ADDED, NODES,
	       (unsigned long long)(now_ms() - t0));
	/* Every group elects and takes appends. */
	for (int g = 1; g <= ADDED; g++) {
		char name[16], body[32];
		snprintf(name, sizeof(name), "g%d", g);
		struct dl_client *cl = client_of(name, 10000);
		for (int i = 0; i < PER_GROUP; i++) {
			struct dl_errctx err = {{0}};
			int len = snprintf(body, sizeof(body), "%s-%d", name, i);
			int rc = dl_client_append(cl, body, (size_t)len, NULL, NULL, &err);
			tt_assert(rc == 0, "%s: %s %s", name, dl_strerror(rc), err.msg);
		}
		dl_client_close(cl);
	}
	for (int g = ADDED - REMOVED + 1; g <= ADDED; g++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", g);
		for (int k = 0; k < NODES; k++)
			remove_group(k, name);
	}
	for (int k = 0; k < NODES; k++)
		tt_assert(!node_hosts(k, "g100") && node_hosts(k, "g50"));
	/* A removed group takes no appends. */
	struct dl_client *cl = client_of("g100", 500);
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append(cl, "x", 1, NULL, NULL, &err) != 0);
	dl_client_close(cl);
	atomic_store(&bg.stop, true);
	pthread_join(bg.t, NULL);
	printf("g0: %llu appends during the changes, %llu failed\n",
	       (unsigned long long)atomic_load(&bg.done), (unsigned long long)atomic_load(&bg.failed));
	tt_assert(atomic_load(&bg.done) > 0);
	tt_assert(atomic_load(&bg.failed) == 0, "g0 appends failed: %s", bg.last_error);
}

static void a_restart_keeps_the_changes_and_a_readded_group_resumes(void)
{
	int st = tt_cluster_stop(&C, 2, SIGTERM);
	tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %d", st);
	node_start(2);
	uint64_t end = now_ms() + 10000;
	while (now_ms() < end && !node_hosts(2, "g1"))
		sleep_ms(20);
	for (int g = 0; g <= ADDED; g++) {
		char name[16];
		snprintf(name, sizeof(name), "g%d", g);
		bool want = g <= ADDED - REMOVED;
		tt_assert(node_hosts(2, name) == want, "after restart node 2 %s %s", want ? "lacks" : "has",
			  name);
	}
	/* Re-add g51 everywhere: it resumes from its data. */
	for (int k = 0; k < NODES; k++)
		add_group(k, "g51");
	struct dl_client *cl = client_of("g51", 10000);
	struct dl_errctx err = {{0}};
	uint64_t index = 0;
	int rc = dl_client_append(cl, "g51-again", 9, &index, NULL, &err);
	tt_assert(rc == 0, "%s %s", dl_strerror(rc), err.msg);
	tt_assert(index > PER_GROUP, "g51 restarted from index %llu", (unsigned long long)index);
	dl_client_close(cl);
}

static int g51_check(void *arg, uint64_t index, uint64_t term, const void *data, size_t len)
{
	(void)index;
	(void)term;
	int *found = arg;
	for (int i = 0; i < PER_GROUP; i++) {
		char body[32];
		int n = snprintf(body, sizeof(body), "g51-%d", i);
		if ((size_t)n == len && memcmp(body, data, len) == 0)
			*found |= 1 << i;
	}
	return 0;
}

static void the_readded_group_has_its_old_entries(void)
{
	struct dl_client *cl = client_of("g51", 10000);
	struct dl_errctx err = {{0}};
	for (int k = 0; k < NODES; k++) { /* on every member, once it caught up */
		char member[8];
		snprintf(member, sizeof(member), "n%d", k);
		int found = 0, rc = -1;
		for (uint64_t end = now_ms() + 5000; now_ms() < end && rc != 0; sleep_ms(20)) {
			found = 0;
			rc = dl_client_get(cl, 1, PER_GROUP + 1, member, g51_check, &found, &err);
		}
		tt_assert(rc == 0, "%s: %s %s", member, dl_strerror(rc), err.msg);
		tt_assert(found == (1 << PER_GROUP) - 1, "%s: old entries of g51 missing: mask %x",
			  member, found);
	}
	dl_client_close(cl);
}

/* The node whose member leads g, as node k sees it; -1 if none. */
static int leader_of(int k, const char *g)
{
	struct tp_group_meta *rows;
	uint32_t n = node_rows(k, &rows);
	int l = -1;
	for (uint32_t i = 0; i < n; i++)
		if (strcmp(rows[i].group, g) == 0 && rows[i].leader[0] == 'n')
			l = rows[i].leader[1] - '0';
	free(rows);
	return l;
}

static void transfer_leader_moves_leadership_within_a_second(void)
{
	int l = -1;
	for (uint64_t end = now_ms() + 5000; now_ms() < end && (l = leader_of(0, "g1")) < 0;)
		sleep_ms(20);
	tt_assert(l >= 0, "g1 has no leader");
	int to = (l + 1) % NODES;
	char id[8], out[1024];
	snprintf(id, sizeof(id), "n%d", to);
	/* Asking a node whose member does not lead names the leader. */
	int rc = run_ctl(out, sizeof(out), "transfer-leader", "--control", sock[to], "--group", "g1",
			 "--to", id, (char *)NULL);
	char want[32];
	snprintf(want, sizeof(want), "the leader is 'n%d'", l);
	tt_assert(rc == 1 && strstr(out, want) != NULL, "exit %d: %s", rc, out);
	uint64_t t0 = now_ms();
	rc = run_ctl(out, sizeof(out), "transfer-leader", "--control", sock[l], "--group", "g1",
		     "--to", id, "--timeout", "1000", (char *)NULL);
	uint64_t took = now_ms() - t0;
	ctl_ok("transfer-leader", rc, out);
	printf("g1: n%d -> n%d in %llu ms: %s", l, to, (unsigned long long)took, out);
	tt_assert(took < 1000, "transfer took %llu ms", (unsigned long long)took);
	tt_assert(leader_of(to, "g1") == to);
}

/* ---- reload ------------------------------------------------------------------------ */

/* Rewrites node k's config file: g0 (as at start) plus the groups named in
 * `extra` (space-separated), and `head` (top-level keys) first. */
static void write_conf(int k, const char *head, const char *extra)
{
	char peers[256];
	peers_of(peers, sizeof(peers));
	FILE *f = fopen(C.conf[k], "w");
	tt_assert(f != NULL);
	fprintf(f,
		"%sstoreBaseDir: %s/node%d\nheartBeatTimeIntervalMs: 100\n"
		"electionTimeoutMs: 500\nmappedFileSizeForEntryData: 4194304\n"
		"mappedFileSizeForEntryIndex: 1048576\n"
		"DLedgerConfigs:\n  - group: g0\n    id: n%d\n    peers: %s\n"
		"    preferredLeaderId: n0\n",
		head, C.dir, k, k, peers);
	char names[256];
	snprintf(names, sizeof(names), "%s", extra);
	for (char *sv, *g = strtok_r(names, " ", &sv); g; g = strtok_r(NULL, " ", &sv))
		fprintf(f, "  - group: %s\n    id: n%d\n    peers: %s\n", g, k, peers);
	fclose(f);
}

static void reload_ok(int k, char *out, size_t cap)
{
	int rc = run_ctl(out, cap, "reload", "--control", sock[k], (char *)NULL);
	ctl_ok("reload", rc, out);
}

static void reload_starts_new_groups_and_stops_vanished_ones(void)
{
	char out[4096];
	for (int k = 0; k < NODES; k++) {
		write_conf(k, "", "r1");
		reload_ok(k, out, sizeof(out));
		tt_assert(strstr(out, "added r1/n") != NULL, "reply: %s", out);
	}
	/* Two groups appear, one goes. */
	for (int k = 0; k < NODES; k++) {
		write_conf(k, "", "r2 r3");
		reload_ok(k, out, sizeof(out));
		printf("node %d: %s", k, out);
		char want[64];
		snprintf(want, sizeof(want), "added r2/n%d, r3/n%d", k, k);
		tt_assert(strstr(out, want) != NULL, "reply: %s", out);
		snprintf(want, sizeof(want), "removed (data kept) r1/n%d", k);
		tt_assert(strstr(out, want) != NULL, "reply: %s", out);
		tt_assert(strstr(out, "FAILED") == NULL, "reply: %s", out);
	}
	for (int k = 0; k < NODES; k++)
		tt_assert(node_hosts(k, "r2") && node_hosts(k, "r3") && !node_hosts(k, "r1") &&
			  node_hosts(k, "g0") && node_hosts(k, "g1"));
	struct dl_client *cl = client_of("r2", 10000);
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_append(cl, "r2", 2, NULL, NULL, &err) == 0, "%s", err.msg);
	dl_client_close(cl);
}

static void reload_of_a_broken_file_changes_nothing_and_says_why(void)
{
	char out[4096];
	write_conf(0, "heartBeatTimeIntervalMs: banana\n", "r2");
	int rc = run_ctl(out, sizeof(out), "reload", "--control", sock[0], (char *)NULL);
	tt_assert(rc == 1, "exit %d: %s", rc, out);
	char want[160];
	snprintf(want, sizeof(want), "%s:1:", C.conf[0]);
	tt_assert(strstr(out, want) != NULL && strstr(out, "heartBeatTimeIntervalMs") != NULL,
		  "reply: %s", out);
	tt_assert(node_hosts(0, "r2") && node_hosts(0, "r3"), "a broken reload changed groups");
	write_conf(0, "", "r2 r3"); /* as running */
}

static void sighup_reloads_like_the_reload_command(void)
{
	/* r3 goes, a node-wide key that cannot change live is reported, and
	 * logLevel, which can, is applied. */
	write_conf(0, "logLevel: debug\nmaxFrameBytes: 8388608\n", "r2");
	tt_assert(kill(C.pid[0], SIGHUP) == 0);
	uint64_t end = now_ms() + 5000;
	while (now_ms() < end && node_hosts(0, "r3"))
		sleep_ms(20);
	tt_assert(!node_hosts(0, "r3") && node_hosts(0, "r2") && node_hosts(0, "g0"));
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
		 "grep 'reload of' %s | grep 'removed (data kept) r3/n0' | "
		 "grep 'node-wide keys changed, not applied (restart the node) maxFrameBytes' | "
		 "grep -q 'applied live logLevel'",
		 C.logf[0]);
	tt_assert(system(cmd) == 0, "no reload report in %s", C.logf[0]);
	/* The data of r3 stays: reloading it back resumes it. */
	write_conf(0, "", "r2 r3");
	char out[4096];
	reload_ok(0, out, sizeof(out));
	tt_assert(strstr(out, "added r3/n0") != NULL, "reply: %s", out);
}

static void a_stale_socket_after_kill9_is_cleaned_up(void)
{
	tt_cluster_stop(&C, 1, SIGKILL);
	tt_assert(access(sock[1], F_OK) == 0, "no socket file left behind to test with");
	node_start(1);
	char out[4096];
	int rc = -1;
	/* The socket file of the killed node is there at once; the new node
	 * answers once it removed it and listens, and lists each member once
	 * that member published its first status. */
	for (uint64_t end = now_ms() + 5000;
	     now_ms() < end && (rc != 0 || strstr(out, "g51") == NULL); sleep_ms(50))
		rc = run_ctl(out, sizeof(out), "status", "--control", sock[1], (char *)NULL);
	ctl_ok("status after kill -9", rc, out);
	tt_assert(strstr(out, "g51") != NULL && strstr(out, "g52") == NULL, "status: %s", out);
	tt_cluster_fini(&C);
}

/* ---- a node that starts with no group (issue 16) ---------------------------------- */

#define EMPTY_GROUPS 20

static struct tt_cluster E;
static char esock[NODES][128];

static uint32_t rows_at(uint16_t port)
{
	char peers[256];
	tt_cluster_peers(&E, "n", peers, sizeof(peers));
	struct dl_client *cl;
	struct dl_errctx oerr = {{0}};
	struct dl_client_opts o = {.timeout_ms = 2000};
	tt_assert(dl_client_open(peers, NULL, &o, &cl, &oerr) == 0, "%s", oerr.msg);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%u", port);
	struct tp_group_meta *rows = NULL;
	uint32_t n = 0;
	struct dl_errctx err = {{0}};
	int rc = dl_client_node_metadata(cl, addr, &rows, &n, &err);
	dl_client_close(cl);
	free(rows);
	return rc == 0 ? n : UINT32_MAX;
}

/* Appends to every group e1..e20 (each elects first) and checks the index
 * each append got is past `after`. */
static void append_to_each(uint64_t after)
{
	char peers[256];
	tt_cluster_peers(&E, "n", peers, sizeof(peers));
	for (int g = 1; g <= EMPTY_GROUPS; g++) {
		char name[16];
		snprintf(name, sizeof(name), "e%d", g);
		struct dl_client *cl;
		struct dl_errctx err = {{0}};
		struct dl_client_opts o = {.timeout_ms = 15000, .retry_busy = true};
		tt_assert(dl_client_open(peers, name, &o, &cl, &err) == 0, "%s", err.msg);
		uint64_t index = 0;
		int rc = dl_client_append(cl, name, strlen(name), &index, NULL, &err);
		tt_assert(rc == 0, "%s: %s %s", name, dl_strerror(rc), err.msg);
		tt_assert(index > after, "%s: index %llu", name, (unsigned long long)index);
		dl_client_close(cl);
	}
}

static void a_node_started_with_no_group_takes_twenty_at_run_time_and_keeps_them(void)
{
	tt_cluster_init(&E, actors_bin, "dl-empty");
	for (int k = 0; k < NODES; k++) {
		snprintf(esock[k], sizeof(esock[k]), "%s/node%d/control.sock", E.dir, k);
		char text[512];
		snprintf(text, sizeof(text),
			 "storeBaseDir: %s/node%d\nlistenAddress: 127.0.0.1:%u\n"
			 "heartBeatTimeIntervalMs: 100\nelectionTimeoutMs: 500\n"
			 "mappedFileSizeForEntryData: 4194304\nmappedFileSizeForEntryIndex: 1048576\n"
			 "DLedgerConfigs: []\n",
			 E.dir, k, E.port[k]);
		tt_cluster_write(E.conf[k], text);
	}
	for (int k = 0; k < NODES; k++) {
		tt_cluster_start(&E, k);
		for (int i = 0; i < 500 && access(esock[k], F_OK) != 0; i++)
			sleep_ms(10);
		tt_assert(access(esock[k], F_OK) == 0, "node %d has no control socket (%s)", k,
			  E.logf[k]);
		tt_assert(rows_at(E.port[k]) == 0, "node %d answers, with no group", k);
	}
	char peers[256];
	tt_cluster_peers(&E, "n", peers, sizeof(peers));
	uint64_t t0 = now_ms();
	for (int g = 1; g <= EMPTY_GROUPS; g++) {
		char name[16], pref[8], id[8], out[1024];
		snprintf(name, sizeof(name), "e%d", g);
		snprintf(pref, sizeof(pref), "n%d", g % NODES);
		for (int k = 0; k < NODES; k++) {
			snprintf(id, sizeof(id), "n%d", k);
			int rc = run_ctl(out, sizeof(out), "add-group", "--control", esock[k], "--group",
					 name, "--id", id, "--peers", peers, "--preferred-leader", pref,
					 (char *)NULL);
			ctl_ok("add-group", rc, out);
		}
	}
	printf("%d groups added to nodes started with none in %llu ms\n", EMPTY_GROUPS,
	       (unsigned long long)(now_ms() - t0));
	append_to_each(0);
	for (int k = 0; k < NODES; k++)
		tt_assert(rows_at(E.port[k]) == EMPTY_GROUPS, "node %d", k);
	/* A restart brings every node back with its 20 groups (groups.yaml). */
	for (int k = 0; k < NODES; k++) {
		int st = tt_cluster_stop(&E, k, SIGTERM);
		tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %d: status %d", k, st);
	}
	for (int k = 0; k < NODES; k++)
		tt_cluster_start(&E, k);
	for (int k = 0; k < NODES; k++) {
		uint32_t n = 0;
		for (uint64_t end = now_ms() + 10000;
		     now_ms() < end && (n = rows_at(E.port[k])) != EMPTY_GROUPS; sleep_ms(50))
			;
		tt_assert(n == EMPTY_GROUPS, "node %d came back with %u groups (%s)", k, n,
			  E.logf[k]);
	}
	append_to_each(1);
	tt_cluster_fini(&E);
}

/* ---- fast bring-up (issue 16) -------------------------------------------------------- */

/* Whether every group gN (N < n) of cluster B has its preferred member nN%3
 * leading, as that member's own node says, with its first entry of the
 * term committed. */
static bool preferred_all_lead(struct tt_cluster *b, struct dl_client *cl, int n_groups)
{
	int led = 0;
	for (int k = 0; k < NODES; k++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", b->port[k]);
		struct tp_group_meta *rows = NULL;
		uint32_t n = 0;
		struct dl_errctx err = {{0}};
		if (dl_client_node_metadata(cl, addr, &rows, &n, &err) != 0)
			return false;
		for (uint32_t i = 0; i < n; i++) {
			int g = atoi(rows[i].group + 1);
			if (g % NODES == k && rows[i].role == RAFT_LEADER &&
			    rows[i].commit_index >= 1 && rows[i].commit_index == rows[i].last_index)
				led++;
		}
		free(rows);
	}
	return led == n_groups;
}

/* Starts three nodes with `n_groups` groups (preferred leaders spread over
 * the nodes) and the given timers (0: the defaults, 2000 ms heartbeats and a
 * 6 s election timeout); returns ms from the first start until every
 * preferred member leads and committed its first entry (UINT64_MAX: not
 * within limit_ms). */
static uint64_t bringup_ms(int n_groups, unsigned hb_ms, unsigned et_ms, uint64_t limit_ms)
{
	struct tt_cluster b;
	tt_cluster_init(&b, actors_bin, "dl-bringup");
	char peers[256];
	tt_cluster_peers(&b, "n", peers, sizeof(peers));
	for (int k = 0; k < NODES; k++) {
		char text[8192], *p = text, *end = text + sizeof(text);
		p += snprintf(p, (size_t)(end - p), "storeBaseDir: %s/node%d\n", b.dir, k);
		if (hb_ms != 0)
			p += snprintf(p, (size_t)(end - p),
				      "heartBeatTimeIntervalMs: %u\nelectionTimeoutMs: %u\n", hb_ms,
				      et_ms);
		p += snprintf(p, (size_t)(end - p), "DLedgerConfigs:\n");
		for (int g = 0; g < n_groups && p < end - 400; g++)
			p += snprintf(p, (size_t)(end - p),
				      "  - group: g%d\n    id: n%d\n    peers: %s\n"
				      "    preferredLeaderId: n%d\n",
				      g, k, peers, g % NODES);
		tt_cluster_write(b.conf[k], text);
	}
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	struct dl_client_opts o = {.timeout_ms = 300, .connect_timeout_ms = 100};
	tt_assert(dl_client_open(peers, NULL, &o, &cl, &err) == 0, "%s", err.msg);
	uint64_t t0 = now_ms(), took = UINT64_MAX;
	for (int k = 0; k < NODES; k++)
		tt_cluster_start(&b, k);
	while (now_ms() - t0 < limit_ms) {
		if (preferred_all_lead(&b, cl, n_groups)) {
			took = now_ms() - t0;
			break;
		}
		sleep_ms(20);
	}
	dl_client_close(cl);
	tt_cluster_fini(&b);
	return took;
}

/* A fresh cluster has its preferred leaders in place within about one
 * election timeout of the nodes starting (before: a first election after
 * 6-12 s with the default timers, then a transfer: 8-12 s measured here,
 * 11-16 s in the issue). The bound, one election timeout (6 s with the
 * default timers; the preferred member stands after 1.5-3 s), holds on a
 * loaded 2-core machine; docs/OPERATIONS.md ("Bring-up") has the figures.
 * DL_BRINGUP_RUNS=N repeats it; DL_BRINGUP_HB_MS and DL_BRINGUP_ET_MS set
 * the timers (the demo's: 200 and 1000), DL_BRINGUP_MEASURE=1 only
 * prints. */
static void preferred_leaders_lead_within_an_election_timeout_of_a_fresh_start(void)
{
	const char *e = getenv("DL_BRINGUP_RUNS");
	int runs = e ? atoi(e) : 1;
	e = getenv("DL_BRINGUP_HB_MS");
	unsigned hb = e ? (unsigned)atoi(e) : 0;
	e = getenv("DL_BRINGUP_ET_MS");
	unsigned et = e ? (unsigned)atoi(e) : 0;
	bool measure = getenv("DL_BRINGUP_MEASURE") != NULL;
	uint64_t bound = hb == 0 ? 6000 : 4u * et + 1000;
	for (int r = 0; r < runs && r < 100; r++) {
		uint64_t ms = bringup_ms(3, hb, et, measure ? 30000 : bound);
		printf("bring-up %d (3 nodes, 3 groups, heartbeat %u ms, election %u ms): %llu ms\n",
		       r + 1, hb ? hb : 2000, hb ? et : 6000, (unsigned long long)ms);
		fflush(stdout);
		if (!measure)
			tt_assert(ms <= bound, "preferred leaders not in place within %llu ms",
				  (unsigned long long)bound);
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: control_test PATH/TO/dledger-actors PATH/TO/dledger-ctl\n");
		return 2;
	}
	actors_bin = argv[1];
	ctl_bin = argv[2];
	signal(SIGPIPE, SIG_IGN);
	atexit(tt_cluster_kill_all);
	static const struct tt_test tests[] = {
		TT_T(cluster_starts_with_a_0600_control_socket),
		TT_T(a_second_node_on_the_same_socket_is_refused),
		TT_T(malformed_requests_get_an_error_and_the_node_keeps_running),
		TT_T(groups_added_and_removed_at_run_time_while_appends_go_on),
		TT_T(a_restart_keeps_the_changes_and_a_readded_group_resumes),
		TT_T(the_readded_group_has_its_old_entries),
		TT_T(transfer_leader_moves_leadership_within_a_second),
		TT_T(reload_starts_new_groups_and_stops_vanished_ones),
		TT_T(reload_of_a_broken_file_changes_nothing_and_says_why),
		TT_T(sighup_reloads_like_the_reload_command),
		TT_T(a_stale_socket_after_kill9_is_cleaned_up),
		TT_T(a_node_started_with_no_group_takes_twenty_at_run_time_and_keeps_them),
		TT_T(preferred_leaders_lead_within_an_election_timeout_of_a_fresh_start),
	};
	return tt_run("control", tests, TT_COUNT(tests));
}
