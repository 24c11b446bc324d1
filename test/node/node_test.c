/*
 * Multi-process tests of the node: three `dledger-actors` processes on
 * loopback ports, the seed's three groups, driven through the C client.
 * Usage: node_test PATH/TO/dledger-actors
 *
 * Every process started is stopped (SIGTERM, then SIGKILL after a bound)
 * before the program exits; every wait is bounded in time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "client/client.h"
#include "common/dl_time.h"
#include "test/lib/tt.h"
#include "test/lib/tt_cluster.h"

TT_MAIN_STATE;

#define NODES TT_NODES
#define GROUPS 3
#define HEARTBEAT_MS 100
#define ELECTION_MS 500

static const char *actors_bin;
static const char *const gname[GROUPS] = {"g0", "g1", "g2"};
static const char *const prefix[GROUPS] = {"n", "a", "b"};

struct cluster {
	struct tt_cluster n;
	char peers[GROUPS][256];
};

static void sleep_ms(unsigned ms) { usleep(ms * 1000u); }
static uint64_t now_ms(void) { return dl_now_ns() / 1000000u; }

/* The seed's three groups on three nodes, each group's preferred leader
 * on its own node. */
static void cluster_init(struct cluster *c)
{
	tt_cluster_init(&c->n, actors_bin, "dl-node");
	for (int g = 0; g < GROUPS; g++)
		tt_cluster_peers(&c->n, prefix[g], c->peers[g], sizeof(c->peers[g]));
	for (int k = 0; k < NODES; k++) {
		char text[2048];
		int n = snprintf(text, sizeof(text),
				 "storeBaseDir: %s/node%d\nheartBeatTimeIntervalMs: %d\n"
				 "electionTimeoutMs: %d\nmappedFileSizeForEntryData: 4194304\n"
				 "DLedgerConfigs:\n",
				 c->n.dir, k, HEARTBEAT_MS, ELECTION_MS);
		for (int g = 0; g < GROUPS; g++)
			n += snprintf(text + n, sizeof(text) - (size_t)n,
				      "  - DLedgerConfig:\n      group: %s\n      id: %s%d\n"
				      "      peers: %s\n      preferredLeaderId: %s%d\n",
				      gname[g], prefix[g], k, c->peers[g], prefix[g], g);
		tt_cluster_write(c->n.conf[k], text);
	}
}

static void node_start(struct cluster *c, int k) { tt_cluster_start(&c->n, k); }
static int node_stop(struct cluster *c, int k, int sig) { return tt_cluster_stop(&c->n, k, sig); }
static void cluster_fini(struct cluster *c) { tt_cluster_fini(&c->n); }

/* ---- observing the cluster through node metadata ---------------------------- */

static int leader_node(const char *leader, int g)
{
	if (leader[0] != prefix[g][0] || leader[1] < '0' || leader[1] > '2')
		return -1;
	return leader[1] - '0';
}

/* The node whose member leads g as every running node agrees; -1 if none. */
static int agreed_leader(struct cluster *c, int g, uint64_t *commit_min)
{
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(c->peers[g], NULL, NULL, &cl, &err) == 0, "%s", err.msg);
	int leader = -2;
	uint64_t cmin = UINT64_MAX;
	for (int k = 0; k < NODES && leader != -1; k++) {
		if (c->n.pid[k] == 0)
			continue;
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", c->n.port[k]);
		struct tp_group_meta *rows = NULL;
		uint32_t n = 0;
		if (dl_client_node_metadata(cl, addr, &rows, &n, &err) != 0) {
			leader = -1;
			break;
		}
		int l = -1;
		for (uint32_t i = 0; i < n; i++) {
			if (strcmp(rows[i].group, gname[g]) == 0) {
				l = leader_node(rows[i].leader, g);
				if (rows[i].commit_index < cmin)
					cmin = rows[i].commit_index;
			}
		}
		free(rows);
		if (l < 0 || (leader >= 0 && l != leader))
			leader = -1;
		else
			leader = l;
	}
	dl_client_close(cl);
	if (commit_min)
		*commit_min = cmin;
	return leader < 0 ? -1 : leader;
}

static bool wait_preferred(struct cluster *c, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while (now_ms() < end) {
		bool all = true;
		for (int g = 0; g < GROUPS && all; g++)
			all = agreed_leader(c, g, NULL) == g;
		if (all)
			return true;
		sleep_ms(20);
	}
	return false;
}

static bool wait_commit(struct cluster *c, int g, uint64_t index, unsigned timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	while (now_ms() < end) {
		uint64_t cmin = 0;
		if (agreed_leader(c, g, &cmin) >= 0 && cmin != UINT64_MAX && cmin >= index)
			return true;
		sleep_ms(20);
	}
	return false;
}

/* ---- load -------------------------------------------------------------------- */

struct acked {
	pthread_mutex_t mu;
	uint64_t *index_of; /* per sequence number: its index once acknowledged */
	uint64_t count;
	_Atomic uint64_t done, failed;
};

struct append_arg {
	struct acked *a;
	uint64_t seq;
};

static void on_appended(void *arg, const struct dl_client_result *r)
{
	struct append_arg *x = arg;
	if (r->code == 0) {
		pthread_mutex_lock(&x->a->mu);
		x->a->index_of[x->seq] = r->first_index;
		pthread_mutex_unlock(&x->a->mu);
		atomic_fetch_add(&x->a->done, 1);
	} else {
		atomic_fetch_add(&x->a->failed, 1);
	}
	free(x);
}

static int body_of(int g, uint64_t seq, char *buf, size_t cap)
{
	return snprintf(buf, cap, "%s-entry-%llu", gname[g], (unsigned long long)seq);
}

/* Submits `count` appends to group g with many in flight and waits for all
 * answers (bounded). Returns the number acknowledged. */
static uint64_t load(struct cluster *c, int g, struct acked *a, uint64_t first_seq, uint64_t count,
		     unsigned timeout_ms, volatile bool *stop)
{
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	struct dl_client_opts o = {.timeout_ms = timeout_ms, .max_inflight = 128, .retry_busy = true};
	tt_assert(dl_client_open(c->peers[g], gname[g], &o, &cl, &err) == 0, "%s", err.msg);
	uint64_t before = atomic_load(&a->done) + atomic_load(&a->failed);
	uint64_t submitted = 0;
	for (uint64_t s = first_seq; s < first_seq + count && !(stop && *stop); s++) {
		char body[64];
		int len = body_of(g, s, body, sizeof(body));
		struct dl_client_buf b = {body, (size_t)len};
		struct append_arg *x = malloc(sizeof(*x));
		*x = (struct append_arg){a, s};
		if (dl_client_append_async(cl, &b, 1, on_appended, x, &err) != 0) {
			free(x);
			atomic_fetch_add(&a->failed, 1);
		}
		submitted++;
	}
	uint64_t end = now_ms() + timeout_ms + 5000;
	while (atomic_load(&a->done) + atomic_load(&a->failed) - before < submitted && now_ms() < end)
		sleep_ms(5);
	dl_client_close(cl); /* fails what is left */
	return atomic_load(&a->done);
}

static void acked_init(struct acked *a, uint64_t count)
{
	pthread_mutex_init(&a->mu, NULL);
	a->index_of = calloc(count, sizeof(uint64_t));
	a->count = count;
	atomic_init(&a->done, 0);
	atomic_init(&a->failed, 0);
}

struct read_ctx {
	uint64_t sum;
	uint64_t n;
	char **by_index; /* optional: copies of bodies */
	uint64_t cap;
};

static int on_entry(void *arg, uint64_t index, uint64_t term, const void *data, size_t len)
{
	(void)term;
	struct read_ctx *r = arg;
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < len; i++)
		h = (h ^ ((const uint8_t *)data)[i]) * 1099511628211ull;
	r->sum += h * (index | 1);
	r->n++;
	if (r->by_index != NULL && index < r->cap) {
		free(r->by_index[index]);
		r->by_index[index] = strndup(data, len);
	}
	return 0;
}

/* Reads [1, to] of g from member k; returns the checksum. */
static uint64_t read_all(struct cluster *c, int g, int k, uint64_t to, struct read_ctx *r)
{
	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(c->peers[g], gname[g], NULL, &cl, &err) == 0);
	char member[16];
	snprintf(member, sizeof(member), "%s%d", prefix[g], k);
	int rc = dl_client_get(cl, 1, to, member, on_entry, r, &err);
	tt_assert(rc == 0, "get %s from %s: %s %s", gname[g], member, dl_strerror(rc), err.msg);
	dl_client_close(cl);
	return r->sum;
}

/* ---- tests --------------------------------------------------------------------- */

static void seed_config_on_three_processes(void)
{
	struct cluster c;
	cluster_init(&c);
	uint64_t t0 = now_ms();
	for (int k = 0; k < NODES; k++)
		node_start(&c, k);
	tt_assert(wait_preferred(&c, 5000), "preferred leaders not in place within 5 s");
	printf("preferred leaders in place after %llu ms\n", (unsigned long long)(now_ms() - t0));
	enum { N = 10000 };
	uint64_t last[GROUPS];
	for (int g = 0; g < GROUPS; g++) {
		struct acked a;
		acked_init(&a, N);
		uint64_t t1 = now_ms();
		uint64_t done = load(&c, g, &a, 0, N, 20000, NULL);
		tt_assert(done == N, "%s: %llu of %d appends acknowledged", gname[g],
			  (unsigned long long)done, N);
		printf("%s: %d appends in %llu ms\n", gname[g], N, (unsigned long long)(now_ms() - t1));
		last[g] = 0;
		for (uint64_t s = 0; s < N; s++)
			last[g] = a.index_of[s] > last[g] ? a.index_of[s] : last[g];
		free(a.index_of);
	}
	for (int g = 0; g < GROUPS; g++) {
		tt_assert(wait_commit(&c, g, last[g], 10000), "%s not committed everywhere", gname[g]);
		uint64_t sum[NODES];
		for (int k = 0; k < NODES; k++) {
			struct read_ctx r = {0};
			sum[k] = read_all(&c, g, k, last[g], &r);
			tt_assert(r.n == last[g]);
		}
		tt_assert(sum[0] == sum[1] && sum[1] == sum[2], "%s: members differ", gname[g]);
	}
	cluster_fini(&c);
}

static void kill9_of_a_leader_fails_over_and_it_recovers(void)
{
	struct cluster c;
	cluster_init(&c);
	for (int k = 0; k < NODES; k++)
		node_start(&c, k);
	tt_assert(wait_preferred(&c, 5000));
	struct acked a;
	acked_init(&a, 2000);
	tt_assert(load(&c, 0, &a, 0, 500, 10000, NULL) == 500);
	/* Node 0 leads g0: kill -9. */
	tt_assert(agreed_leader(&c, 0, NULL) == 0);
	node_stop(&c, 0, SIGKILL);
	uint64_t t0 = now_ms();
	int l = -1;
	while (now_ms() - t0 < 3u * 2 * ELECTION_MS + 2000 && (l = agreed_leader(&c, 0, NULL)) <= 0)
		sleep_ms(10);
	uint64_t took = now_ms() - t0;
	tt_assert(l > 0, "no new leader for g0 (the members still name n%d)", l);
	printf("g0: new leader n%d %llu ms after kill -9 (election timeout %d ms)\n", l,
	       (unsigned long long)took, ELECTION_MS);
	tt_assert(took <= 3u * 2 * ELECTION_MS, "failover took %llu ms",
		  (unsigned long long)took);
	tt_assert(load(&c, 0, &a, 500, 1000, 10000, NULL) == 1500, "appends did not go on");
	uint64_t last = 0;
	for (uint64_t s = 0; s < 1500; s++)
		last = a.index_of[s] > last ? a.index_of[s] : last;
	/* Restart: recovery, catch-up, and g0 comes back to its preferred n0. */
	node_start(&c, 0);
	tt_assert(wait_commit(&c, 0, last, 10000), "node 0 did not catch up");
	tt_assert(wait_preferred(&c, 10000), "preferred leaders did not come back");
	struct read_ctx r0 = {0}, r1 = {0};
	tt_assert(read_all(&c, 0, 0, last, &r0) == read_all(&c, 0, 1, last, &r1));
	free(a.index_of);
	cluster_fini(&c);
}

struct bg_load {
	struct cluster *c;
	struct acked a;
	volatile bool stop;
	pthread_t t;
	int g;
};

static void *bg_main(void *arg)
{
	struct bg_load *b = arg;
	load(b->c, b->g, &b->a, 0, b->a.count, 3000, &b->stop);
	return NULL;
}

static void graceful_stop_under_load_loses_nothing_acknowledged(void)
{
	struct cluster c;
	cluster_init(&c);
	for (int k = 0; k < NODES; k++)
		node_start(&c, k);
	tt_assert(wait_preferred(&c, 5000));
	struct bg_load b[GROUPS];
	for (int g = 0; g < GROUPS; g++) {
		b[g] = (struct bg_load){.c = &c, .g = g};
		acked_init(&b[g].a, 200000);
		pthread_create(&b[g].t, NULL, bg_main, &b[g]);
	}
	sleep_ms(1500);
	for (int k = 0; k < NODES; k++) {
		int st = node_stop(&c, k, SIGTERM);
		tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node %d: status %d", k, st);
	}
	for (int g = 0; g < GROUPS; g++)
		b[g].stop = true;
	for (int g = 0; g < GROUPS; g++)
		pthread_join(b[g].t, NULL);
	for (int k = 0; k < NODES; k++)
		node_start(&c, k);
	tt_assert(wait_preferred(&c, 10000));
	for (int g = 0; g < GROUPS; g++) {
		uint64_t last = 0, acked = 0;
		for (uint64_t s = 0; s < b[g].a.count; s++) {
			last = b[g].a.index_of[s] > last ? b[g].a.index_of[s] : last;
			acked += b[g].a.index_of[s] != 0;
		}
		tt_assert(acked > 0, "%s: nothing acknowledged before the stop", gname[g]);
		tt_assert(wait_commit(&c, g, last, 10000));
		struct read_ctx r = {.cap = last + 1};
		r.by_index = calloc(last + 1, sizeof(char *));
		read_all(&c, g, (g + 1) % NODES, last, &r);
		for (uint64_t s = 0; s < b[g].a.count; s++) {
			uint64_t i = b[g].a.index_of[s];
			if (i == 0)
				continue;
			char body[64];
			body_of(g, s, body, sizeof(body));
			tt_assert(r.by_index[i] != NULL && strcmp(r.by_index[i], body) == 0,
				  "%s: acknowledged entry %llu (%s) is missing or different", gname[g],
				  (unsigned long long)i, body);
		}
		printf("%s: %llu acknowledged entries all present after a graceful stop under load\n",
		       gname[g], (unsigned long long)acked);
		for (uint64_t i = 0; i <= last; i++)
			free(r.by_index[i]);
		free(r.by_index);
		free(b[g].a.index_of);
	}
	for (int k = 0; k < NODES; k++) {
		char cmd[256];
		snprintf(cmd, sizeof(cmd), "grep -q 'torn tail' %s", c.n.logf[k]);
		tt_assert(system(cmd) != 0, "node %d reported a torn tail after a graceful stop", k);
	}
	cluster_fini(&c);
}

/* ---- bad configs ----------------------------------------------------------------- */

struct bad {
	const char *what;
	const char *yaml;
	int line;
	const char *key;
};

static void bad_configs_exit_2_naming_file_line_and_key(void)
{
	static const struct bad cases[] = {
		{"tab indentation (the seed's)",
		 "DLedgerConfigs:\n  - \n\tgroup: g0\n", 3, NULL},
		{"unknown key", "storeBaseDir: /tmp/x\nstoreBseDir: /tmp/y\nDLedgerConfigs:\n"
				"  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:1\n",
		 2, "storeBseDir"},
		{"wrong type", "DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:1\n"
			       "    heartBeatTimeIntervalMs: fast\n",
		 5, "heartBeatTimeIntervalMs"},
		{"out of range", "DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:1\n"
				 "    diskSpaceRatioToForceClean: 7\n",
		 5, "diskSpaceRatioToForceClean"},
		{"bad port", "DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:70000\n",
		 4, "peers"},
		{"self not in peers", "DLedgerConfigs:\n  - group: g0\n    id: n3\n"
				      "    peers: n0-127.0.0.1:1;n1-127.0.0.1:2\n",
		 4, "peers"},
		{"duplicate ids", "DLedgerConfigs:\n  - group: g0\n    id: n0\n"
				  "    peers: n0-127.0.0.1:1;n0-127.0.0.1:2\n",
		 4, "peers"},
		{"group twice", "DLedgerConfigs:\n  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:1\n"
				"  - group: g0\n    id: n0\n    peers: n0-127.0.0.1:1\n",
		 5, NULL},
		{"self address disagrees", "DLedgerConfigs:\n  - group: g0\n    id: n0\n"
					   "    peers: n0-127.0.0.1:1\n  - group: g1\n    id: a0\n"
					   "    peers: a0-127.0.0.1:2\n",
		 7, "peers"},
		{"unsafe name", "DLedgerConfigs:\n  - group: ../g0\n    id: n0\n    peers: n0-127.0.0.1:1\n",
		 2, "group"},
		{"preferred leader not a member", "DLedgerConfigs:\n  - group: g0\n    id: n0\n"
						  "    peers: n0-127.0.0.1:1\n    preferredLeaderId: n9\n",
		 5, "preferredLeaderId"},
		{"bad flush mode", "flushMode: sometimes\nDLedgerConfigs:\n  - group: g0\n    id: n0\n"
				   "    peers: n0-127.0.0.1:1\n",
		 1, "flushMode"},
	};
	char dir[] = "/tmp/dl-badcfg-XXXXXX";
	tt_assert(mkdtemp(dir) != NULL);
	for (size_t i = 0; i < TT_COUNT(cases); i++) {
		char path[128], out[160];
		snprintf(path, sizeof(path), "%s/bad%zu.yaml", dir, i);
		snprintf(out, sizeof(out), "%s/bad%zu.err", dir, i);
		tt_cluster_write(path, cases[i].yaml);
		pid_t pid = fork();
		tt_assert(pid >= 0);
		if (pid == 0) {
			int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0644);
			dup2(fd, 2);
			dup2(fd, 1);
			execl(actors_bin, actors_bin, "--config", path, (char *)NULL);
			_exit(127);
		}
		int st;
		waitpid(pid, &st, 0);
		char msg[1024] = {0};
		FILE *f = fopen(out, "r");
		tt_assert(f != NULL);
		size_t n = fread(msg, 1, sizeof(msg) - 1, f);
		msg[n] = '\0';
		fclose(f);
		tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2, "%s: exit status %d, said: %s",
			  cases[i].what, st, msg);
		char want[200];
		snprintf(want, sizeof(want), "%s:%d:", path, cases[i].line);
		tt_assert(strstr(msg, want) != NULL, "%s: wanted '%s' in: %s", cases[i].what, want, msg);
		if (cases[i].key != NULL) {
			snprintf(want, sizeof(want), "'%s'", cases[i].key);
			tt_assert(strstr(msg, want) != NULL, "%s: wanted key %s in: %s", cases[i].what,
				  want, msg);
		}
	}
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	tt_assert(system(cmd) == 0);
}

/* ---- garbage on the port --------------------------------------------------------- */

static void garbage_is_counted_and_the_node_keeps_serving(void)
{
	struct cluster c;
	cluster_init(&c);
	for (int k = 0; k < NODES; k++)
		node_start(&c, k);
	tt_assert(wait_preferred(&c, 5000));
	char url[64];
	snprintf(url, sizeof(url), "tcp://127.0.0.1:%u", c.n.port[1]);
	nng_socket s;
	tt_assert(nng_req0_open_raw(&s) == 0);
	tt_assert(nng_dial(s, url, NULL, 0) == 0);
	uint64_t rng = 12345;
	for (int i = 0; i < 2000; i++) {
		uint8_t buf[256];
		size_t len = 1 + (rng % sizeof(buf));
		for (size_t j = 0; j < len; j++) {
			rng = rng * 6364136223846793005ull + 1442695040888963407ull;
			buf[j] = (uint8_t)(rng >> 56);
		}
		if (i % 3 == 0)
			buf[0] = TP_VERSION; /* a valid start, then junk or a cut */
		nng_msg *m;
		nng_msg_alloc(&m, 0);
		nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)i);
		nng_msg_append(m, buf, len);
		if (nng_sendmsg(s, m, 0) != 0)
			nng_msg_free(m);
	}
	/* Well-formed requests for a group that does not exist: each gets an
	 * error answer; waiting for the last one's answer makes sure the node
	 * has read everything sent before it (nng keeps order on a pipe). */
	bool answered = false;
	for (uint64_t id = 1; id <= 10; id++) {
		struct tp_fb fb;
		tp_fb_init(&fb, 0);
		struct tp_addr a = {.group = "nosuchgroup", .target = "x0", .sender = "", .request_id = id};
		struct tp_get g = {.index = 1, .to = 1};
		tt_assert(tp_fb_add_get(&fb, &a, &g) == 0);
		nng_msg *m;
		nng_msg_alloc(&m, 0);
		nng_msg_header_append_u32(m, 0x80000000u | (uint32_t)(5000 + id));
		nng_msg_append(m, fb.buf, fb.len);
		if (nng_sendmsg(s, m, 0) != 0)
			nng_msg_free(m);
		tp_fb_free(&fb);
	}
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 10000);
	for (int i = 0; i < 5000 && !answered; i++) {
		nng_msg *r;
		if (nng_recvmsg(s, &r, 0) != 0)
			break;
		size_t off = 0, len = nng_msg_len(r);
		const uint8_t *buf = nng_msg_body(r);
		struct tp_hdr h;
		if (tp_frame_begin(buf, len, &off) == 0 && tp_frame_next(buf, len, &off, &h) == 0 &&
		    h.request_id == 10) {
			struct tp_error e;
			tt_assert(h.type == TP_ERROR && tp_decode_error(&h, &e) == 0 &&
				  e.code == DL_ENOTFOUND, "unknown group: got %s", tp_type_name(h.type));
			answered = true;
		}
		nng_msg_free(r);
	}
	tt_assert(answered, "no error answer for a request to an unknown group");
	nng_close(s);
	/* Still serving: appends commit and metadata answers. */
	struct acked ack;
	acked_init(&ack, 100);
	tt_assert(load(&c, 1, &ack, 0, 100, 10000, NULL) == 100);
	free(ack.index_of);
	tt_assert(agreed_leader(&c, 1, NULL) == 1);
	/* Its counters, as it reports them when it stops. */
	int st = node_stop(&c, 1, SIGTERM);
	tt_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "grep -Eq 'decode errors [1-9][0-9]*, unknown group or member [1-9]' %s",
		 c.n.logf[1]);
	tt_assert(system(cmd) == 0, "the node's counters did not rise (see %s)", c.n.logf[1]);
	cluster_fini(&c);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: node_test PATH/TO/dledger-actors\n");
		return 2;
	}
	actors_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	atexit(tt_cluster_kill_all);
	static const struct tt_test tests[] = {
		TT_T(bad_configs_exit_2_naming_file_line_and_key),
		TT_T(seed_config_on_three_processes),
		TT_T(kill9_of_a_leader_fails_over_and_it_recovers),
		TT_T(graceful_stop_under_load_loses_nothing_acknowledged),
		TT_T(garbage_is_counted_and_the_node_keeps_serving),
	};
	return tt_run("node", tests, TT_COUNT(tests));
}
