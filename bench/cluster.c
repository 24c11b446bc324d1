/*
 * cluster.c - the 3-node cluster the cluster benchmark starts on loopback
 * (`dledger-bench --spawn`), and what it reads off a node: CPU and memory
 * from /proc, disk use, counters from the node's Prometheus /metrics.
 *
 * A cluster lives in a fresh directory: nodeK.yaml, nodeK.log and the
 * nodes' stores (nodeK/). Every process started is a child of the bench:
 * bench_cluster_stop() stops and reaps them all (SIGTERM, then SIGKILL after
 * STOP_WAIT_MS), and each child asks the kernel for SIGTERM should the bench
 * itself die first (PR_SET_PDEATHSIG).
 *
 * Threads: the caller's only. The disk-usage walk keeps its sum in a
 * thread-local, nftw() having no context argument.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "client/client.h"
#include "config/config.h"

#define HEARTBEAT_MS     200
#define ELECTION_MS      1000
#define STOP_WAIT_MS     10000
#define POLL_MS          100
#define PROGRESS_MS      500
#define SCRAPE_TIMEOUT_S 2
#define SCRAPE_MAX_BYTES (64u << 20)

static void sleep_ms(unsigned ms)
{
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* ---- starting ----------------------------------------------------------------------------- */

/* Free loopback ports: bound to port 0 all at once (so no two are the same),
 * read back, released. Another process may take one meanwhile; the node
 * then fails to start and says so in its log. */
static int free_ports(uint16_t *ports, unsigned n, struct dl_errctx *err)
{
	int fds[2 * BENCH_NODES];
	DL_ASSERT(n <= 2 * BENCH_NODES);
	int rc = 0;
	unsigned made = 0;
	for (; made < n && rc == 0; made++) {
		struct sockaddr_in a = {.sin_family = AF_INET,
		                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		socklen_t len = sizeof(a);
		fds[made] = socket(AF_INET, SOCK_STREAM, 0);
		if (fds[made] < 0 || bind(fds[made], (struct sockaddr *)&a, sizeof(a)) != 0 ||
		    getsockname(fds[made], (struct sockaddr *)&a, &len) != 0)
			rc = dl_errf(err, DL_EIO, "picking a free port: %s", strerror(errno));
		else
			ports[made] = ntohs(a.sin_port);
	}
	for (unsigned i = 0; i < made; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	return rc;
}

static void put_group(FILE *f, char kind, uint32_t k, unsigned node, const char *peers)
{
	fprintf(f,
	        "  - group: %c%" PRIu32 "\n    id: n%u\n    peers: %s\n"
	        "    preferredLeaderId: n%" PRIu32 "\n",
	        kind, k, node, peers, k % BENCH_NODES);
}

static int write_config(const struct bench_cluster *c, unsigned node, struct dl_errctx *err)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/node%u.yaml", c->dir, node);
	FILE *f = fopen(path, "w");
	if (f == NULL)
		return dl_errf(err, DL_EIO, "%s: %s", path, strerror(errno));
	fprintf(f, "# written by dledger-bench --spawn\n");
	if (c->cfg.make_certs != NULL)
		fprintf(f,
		        "tlsCertFile: %s/certs/node-127.0.0.1.crt\n"
		        "tlsKeyFile: %s/certs/node-127.0.0.1.key\ntlsCaFile: %s\n",
		        c->dir, c->dir, c->tls_ca);
	fprintf(f,
	        "storeBaseDir: %s/node%u\nmetricsAddress: 127.0.0.1:%u\n"
	        "heartBeatTimeIntervalMs: %d\nelectionTimeoutMs: %d\n"
	        "flushMode: %s\nstoreType: %s\nDLedgerConfigs:\n",
	        c->dir, node, c->metrics_port[node],
	        c->cfg.heartbeat_ms ? (int)c->cfg.heartbeat_ms : HEARTBEAT_MS,
	        c->cfg.election_ms ? (int)c->cfg.election_ms : ELECTION_MS,
	        c->cfg.flush_async ? "async" : "sync", c->cfg.store_memory ? "memory" : "file");
	for (uint32_t k = 0; k < c->cfg.groups; k++)
		put_group(f, 'g', k, node, c->peers);
	for (uint32_t k = 0; k < c->cfg.idle_groups; k++)
		put_group(f, 'i', k, node, c->peers);
	if (fclose(f) != 0)
		return dl_errf(err, DL_EIO, "%s: %s", path, strerror(errno));
	return 0;
}

/* Everything is prepared before fork(): the child of a threaded process
 * may only call async-signal-safe functions before exec. */
static int spawn(struct bench_cluster *c, unsigned node, struct dl_errctx *err)
{
	char conf[4200], logf[4200];
	snprintf(conf, sizeof(conf), "%s/node%u.yaml", c->dir, node);
	snprintf(logf, sizeof(logf), "%s/node%u.log", c->dir, node);
	char *const argv[] = {(char *)c->cfg.actors_path, "--config", conf, NULL};
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0)
		return dl_errf(err, DL_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		/* The node must not outlive a bench that is killed. */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) != 0 || getppid() != parent)
			_exit(127);
		int out = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
		int in = open("/dev/null", O_RDONLY);
		if (out < 0 || in < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		static const char msg[] = "dledger-bench: could not exec the node binary\n";
		(void)!write(2, msg, sizeof(msg) - 1); /* into the log, for the report */
		_exit(127);
	}
	c->pid[node] = pid;
	return 0;
}

/* TLS: scripts/make-certs.sh DIR/certs 127.0.0.1 (its output in
 * DIR/make-certs.log), and the client's paths. */
static int make_certs(struct bench_cluster *c, struct dl_errctx *err)
{
	if (c->cfg.make_certs == NULL)
		return 0;
	char certs[4200], logf[4200];
	snprintf(certs, sizeof(certs), "%s/certs", c->dir);
	snprintf(logf, sizeof(logf), "%s/make-certs.log", c->dir);
	char *const argv[] = {(char *)c->cfg.make_certs, certs, "127.0.0.1", NULL};
	pid_t pid = fork();
	if (pid < 0)
		return dl_errf(err, DL_EIO, "fork: %s", strerror(errno));
	if (pid == 0) {
		int out = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (out < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		return dl_errf(err, DL_EIO, "%s %s 127.0.0.1 failed (see %s)", c->cfg.make_certs,
		               certs, logf);
	snprintf(c->tls_cert, sizeof(c->tls_cert), "%s/certs/client.crt", c->dir);
	snprintf(c->tls_key, sizeof(c->tls_key), "%s/certs/client.key", c->dir);
	snprintf(c->tls_ca, sizeof(c->tls_ca), "%s/certs/ca.crt", c->dir);
	return 0;
}

static int name_groups(struct bench_cluster *c, struct dl_errctx *err)
{
	c->group_names = calloc(c->cfg.groups ? c->cfg.groups : 1, sizeof(*c->group_names));
	if (c->group_names == NULL)
		return dl_errf(err, DL_ENOMEM, "group names");
	for (uint32_t k = 0; k < c->cfg.groups; k++) {
		c->group_names[k] = malloc(16);
		if (c->group_names[k] == NULL)
			return dl_errf(err, DL_ENOMEM, "group names");
		snprintf(c->group_names[k], 16, "g%" PRIu32, k);
	}
	return 0;
}

static int make_dir(struct bench_cluster *c, struct dl_errctx *err)
{
	int n = snprintf(c->dir, sizeof(c->dir), "%s/dledger-bench-XXXXXX", c->cfg.tmp_parent);
	if (n < 0 || (size_t)n >= sizeof(c->dir) || mkdtemp(c->dir) == NULL) {
		c->dir[0] = '\0';
		return dl_errf(err, DL_EIO, "mkdtemp in %s: %s", c->cfg.tmp_parent,
		               n < 0 || (size_t)n >= sizeof(c->dir) ? "path too long"
		                                                    : strerror(errno));
	}
	/* Each node's control socket is DIR/nodeK/control.sock. */
	if (strlen(c->dir) + strlen("/node0/control.sock") > CFG_SOCKPATH_MAX)
		return dl_errf(err, DL_ECONFIG,
		               "%s is too long for the nodes' control sockets (at most %d bytes "
		               "with /node0/control.sock): set TMPDIR to a shorter directory",
		               c->dir, CFG_SOCKPATH_MAX);
	return 0;
}

int bench_cluster_start(const struct bench_cluster_cfg *cfg, struct bench_cluster *c,
                        struct dl_errctx *err)
{
	memset(c, 0, sizeof(*c));
	c->cfg = *cfg;
	uint16_t ports[2 * BENCH_NODES];
	int rc = make_dir(c, err);
	if (rc == 0)
		rc = make_certs(c, err);
	if (rc == 0)
		rc = name_groups(c, err);
	if (rc == 0)
		rc = free_ports(ports, 2 * BENCH_NODES, err);
	if (rc != 0) {
		bench_cluster_stop(c);
		return rc;
	}
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		c->port[k] = ports[k];
		c->metrics_port[k] = ports[BENCH_NODES + k];
	}
	snprintf(c->peers, sizeof(c->peers), "n0-127.0.0.1:%u;n1-127.0.0.1:%u;n2-127.0.0.1:%u",
	         c->port[0], c->port[1], c->port[2]);
	for (unsigned k = 0; k < BENCH_NODES && rc == 0; k++)
		rc = write_config(c, k, err);
	for (unsigned k = 0; k < BENCH_NODES && rc == 0; k++)
		rc = spawn(c, k, err);
	if (rc != 0)
		bench_cluster_stop(c);
	return rc;
}

/* ---- waiting for leaders ----------------------------------------------------------------- */

/* Group index of a name: g<k> -> k, i<k> -> groups + k; -1 if not ours. */
static long group_index(const struct bench_cluster *c, const char *name)
{
	char *end;
	if (name[0] != 'g' && name[0] != 'i')
		return -1;
	unsigned long k = strtoul(name + 1, &end, 10);
	if (end == name + 1 || *end != '\0')
		return -1;
	if (name[0] == 'g')
		return k < c->cfg.groups ? (long)k : -1;
	return k < c->cfg.idle_groups ? (long)(c->cfg.groups + k) : -1;
}

/* leader[node * total + g]: the leader's node as that node sees it, -1 if none. */
static bool read_leaders(struct bench_cluster *c, struct dl_client *cl, int8_t *leader,
                         uint32_t total)
{
	memset(leader, -1, (size_t)BENCH_NODES * total);
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "127.0.0.1:%u", c->port[k]);
		struct tp_group_meta *rows = NULL;
		uint32_t n = 0;
		struct dl_errctx err = {{0}};
		if (dl_client_node_metadata(cl, addr, &rows, &n, &err) != 0)
			return false;
		for (uint32_t i = 0; i < n; i++) {
			long g = group_index(c, rows[i].group);
			const char *l = rows[i].leader;
			if (g >= 0 && l[0] == 'n' && l[1] >= '0' && l[1] < '0' + BENCH_NODES &&
			    l[2] == '\0')
				leader[k * total + (uint32_t)g] = (int8_t)(l[1] - '0');
		}
		free(rows);
	}
	return true;
}

/* How far the elections are: groups with a leader all nodes agree on, and
 * loaded groups led by their preferred leader; the first group missing
 * from each (-1 when none is). */
struct settled {
	uint32_t agreed, preferred;
	long first_unagreed, first_unpreferred;
};

static void count_settled(const struct bench_cluster *c, const int8_t *leader, uint32_t total,
                          struct settled *s)
{
	*s = (struct settled){0, 0, -1, -1};
	for (uint32_t g = 0; g < total; g++) {
		int8_t l = leader[g];
		bool agreed = l >= 0;
		for (unsigned k = 1; k < BENCH_NODES && agreed; k++)
			agreed = leader[k * total + g] == l;
		s->agreed += agreed;
		if (!agreed && s->first_unagreed < 0)
			s->first_unagreed = (long)g;
		if (g >= c->cfg.groups)
			continue;
		bool preferred = agreed && (uint32_t)l == g % BENCH_NODES;
		s->preferred += preferred;
		if (!preferred && s->first_unpreferred < 0)
			s->first_unpreferred = (long)g;
	}
}

static void group_name(const struct bench_cluster *c, long g, char *out, size_t cap)
{
	if ((uint32_t)g < c->cfg.groups)
		snprintf(out, cap, "g%ld", g);
	else
		snprintf(out, cap, "i%ld", g - (long)c->cfg.groups);
}

/* The outcome once the loop ended with `rc` and the last count `s`. */
static int wait_outcome(const struct bench_cluster *c, int rc, const struct settled *s,
                        uint32_t timeout_ms, struct dl_errctx *err)
{
	char name[32];
	if (rc != DL_ETIMEDOUT)
		return rc;
	if (s->first_unagreed >= 0 || s->first_unpreferred < 0) {
		group_name(c, s->first_unagreed >= 0 ? s->first_unagreed : 0, name, sizeof(name));
		return dl_errf(err, rc,
		               "after %u ms %u of %u groups have a leader all nodes agree on "
		               "(%s has none)",
		               timeout_ms, s->agreed, c->cfg.groups + c->cfg.idle_groups, name);
	}
	group_name(c, s->first_unpreferred, name, sizeof(name));
	fprintf(stderr,
	        "dledger-bench: every group has a leader, but %u of %u loaded groups are "
	        "not led by their preferred leader yet (%s); going on\n",
	        c->cfg.groups - s->preferred, c->cfg.groups, name);
	return 0;
}

int bench_cluster_wait_leaders(struct bench_cluster *c, uint32_t timeout_ms,
                               const _Atomic bool *interrupted, bool progress,
                               struct dl_errctx *err)
{
	uint32_t total = c->cfg.groups + c->cfg.idle_groups;
	struct dl_client *cl;
	bool tls = c->cfg.make_certs != NULL;
	struct dl_client_opts o = {.timeout_ms = 1000,
	                           .tls_cert_file = tls ? c->tls_cert : NULL,
	                           .tls_key_file = tls ? c->tls_key : NULL,
	                           .tls_ca_file = tls ? c->tls_ca : NULL};
	int rc = dl_client_open(c->peers, NULL, &o, &cl, err);
	if (rc != 0)
		return rc;
	int8_t *leader = malloc((size_t)BENCH_NODES * total + 1);
	if (leader == NULL) {
		dl_client_close(cl);
		return dl_errf(err, DL_ENOMEM, "leader table");
	}
	uint64_t t0 = bench_now_ns(), deadline = t0 + (uint64_t)timeout_ms * 1000000u;
	struct settled s = {0, 0, total > 0 ? 0 : -1, c->cfg.groups > 0 ? 0 : -1};
	uint64_t next_progress = t0;
	rc = DL_ETIMEDOUT;
	while (bench_now_ns() < deadline) {
		if (atomic_load(interrupted)) {
			rc = dl_errf(err, DL_ECLOSED, "interrupted");
			break;
		}
		if (!bench_cluster_alive(c, err)) {
			rc = DL_ECLOSED;
			break;
		}
		if (read_leaders(c, cl, leader, total))
			count_settled(c, leader, total, &s);
		if (progress && bench_now_ns() >= next_progress) {
			fprintf(stderr,
			        "\r  %.0f s: %u of %u groups have a leader, %u of %u loaded "
			        "groups their preferred one   ",
			        (double)(bench_now_ns() - t0) / 1e9, s.agreed, total, s.preferred,
			        c->cfg.groups);
			next_progress = bench_now_ns() + PROGRESS_MS * 1000000ull;
		}
		if (s.first_unagreed < 0 && s.first_unpreferred < 0) {
			rc = 0;
			break;
		}
		sleep_ms(POLL_MS);
	}
	if (progress)
		fprintf(stderr, "\n");
	free(leader);
	dl_client_close(cl);
	return wait_outcome(c, rc, &s, timeout_ms, err);
}

/* ---- liveness and stopping ----------------------------------------------------------------- */

bool bench_cluster_alive(struct bench_cluster *c, struct dl_errctx *err)
{
	bool alive = true;
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		if (c->pid[k] == 0)
			continue;
		int st;
		if (waitpid(c->pid[k], &st, WNOHANG) != c->pid[k])
			continue;
		c->pid[k] = 0;
		c->status[k] = st;
		if (alive)
			dl_errf(err, DL_ECLOSED, "node %u exited (%s %d); its log is %s/node%u.log",
			        k, WIFSIGNALED(st) ? "signal" : "status",
			        WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), c->dir, k);
		alive = false;
	}
	return alive;
}

void bench_cluster_print_logs(const struct bench_cluster *c)
{
	for (unsigned k = 0; k < BENCH_NODES && c->dir[0]; k++) {
		char path[4200], tail[2048];
		snprintf(path, sizeof(path), "%s/node%u.log", c->dir, k);
		FILE *f = fopen(path, "r");
		if (f == NULL)
			continue;
		if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof(tail) - 1)
			fseek(f, -(long)sizeof(tail) + 1, SEEK_END);
		else
			fseek(f, 0, SEEK_SET);
		size_t n = fread(tail, 1, sizeof(tail) - 1, f);
		tail[n] = '\0';
		fclose(f);
		fprintf(stderr, "---- end of %s\n%s", path, tail);
	}
	if (!c->cfg.keep)
		fprintf(stderr, "---- (the directory goes on exit; --keep leaves it)\n");
}

bool bench_cluster_stop(struct bench_cluster *c)
{
	bool clean = true;
	for (unsigned k = 0; k < BENCH_NODES; k++)
		if (c->pid[k] != 0)
			kill(c->pid[k], SIGTERM);
	for (unsigned waited = 0;; waited += 10) {
		bool any = false;
		for (unsigned k = 0; k < BENCH_NODES; k++) {
			int st;
			if (c->pid[k] != 0 && waitpid(c->pid[k], &st, WNOHANG) == c->pid[k]) {
				c->pid[k] = 0;
				c->status[k] = st;
			}
			any = any || c->pid[k] != 0;
		}
		if (!any || waited >= STOP_WAIT_MS)
			break;
		sleep_ms(10);
	}
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		if (c->pid[k] != 0) {
			fprintf(stderr,
			        "dledger-bench: node %u ignored SIGTERM for %d ms: SIGKILL\n", k,
			        STOP_WAIT_MS);
			kill(c->pid[k], SIGKILL);
			waitpid(c->pid[k], &c->status[k], 0);
			c->pid[k] = 0;
			clean = false;
		} else if (c->status[k] != 0) {
			clean = false;
		}
	}
	if (c->dir[0] != '\0' && !c->cfg.keep)
		bench_rm_rf(c->dir);
	else if (c->dir[0] != '\0')
		fprintf(stderr, "dledger-bench: kept %s\n", c->dir);
	c->dir[0] = '\0';
	for (uint32_t k = 0; c->group_names != NULL && k < c->cfg.groups; k++)
		free(c->group_names[k]);
	free(c->group_names);
	c->group_names = NULL;
	return clean;
}

/* ---- observing a node -------------------------------------------------------------------- */

double bench_proc_cpu_s(pid_t pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return -1;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* The command name may hold spaces and parentheses: fields are
	 * counted after its last ')'. utime and stime are fields 14 and 15,
	 * the 12th and 13th after it. */
	char *p = strrchr(buf, ')');
	unsigned long long ut, st;
	if (p == NULL ||
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

bool bench_proc_mem(pid_t pid, uint64_t *hwm_bytes, uint64_t *rss_bytes)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return false;
	unsigned long long kb;
	int found = 0;
	while (fgets(line, sizeof(line), f) != NULL) {
		if (sscanf(line, "VmHWM: %llu kB", &kb) == 1)
			*hwm_bytes = (uint64_t)kb << 10, found++;
		else if (sscanf(line, "VmRSS: %llu kB", &kb) == 1)
			*rss_bytes = (uint64_t)kb << 10, found++;
	}
	fclose(f);
	return found == 2;
}

static _Thread_local uint64_t du_sum;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (flag == FTW_F)
		du_sum += (uint64_t)st->st_blocks * 512u;
	return 0;
}

uint64_t bench_disk_usage(const char *dir)
{
	du_sum = 0;
	if (nftw(dir, du_one, 16, FTW_PHYS) != 0)
		return 0;
	return du_sum;
}

/* Reads the whole answer (the server closes after an HTTP/1.0 answer; a
 * Content-Length, when given, ends it sooner). *text is malloc'ed and
 * NUL-terminated. */
static int http_read(int fd, char **text, struct dl_errctx *err)
{
	size_t cap = 64u << 10, n = 0;
	char *buf = malloc(cap + 1);
	if (buf == NULL)
		return dl_errf(err, DL_ENOMEM, "scrape buffer");
	for (;;) {
		if (n == cap) {
			char *p = cap < SCRAPE_MAX_BYTES ? realloc(buf, 2 * cap + 1) : NULL;
			if (p == NULL) {
				free(buf);
				return dl_errf(err, DL_EPROTO, "metrics text over %u bytes",
				               SCRAPE_MAX_BYTES);
			}
			buf = p;
			cap *= 2;
		}
		ssize_t r = recv(fd, buf + n, cap - n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			return dl_errf(err, e == EAGAIN ? DL_ETIMEDOUT : DL_EIO,
			               "reading metrics: %s", strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
		buf[n] = '\0';
		char *body = strstr(buf, "\r\n\r\n");
		char *cl = strcasestr(buf, "\r\nContent-Length:");
		if (body != NULL && cl != NULL && cl < body &&
		    n >= (size_t)(body + 4 - buf) + strtoull(cl + 17, NULL, 10))
			break;
	}
	buf[n] = '\0';
	*text = buf;
	return 0;
}

static const char *const metric_names[BENCH_M_COUNT] = {
        [BENCH_M_FRAMES_SENT] = "dledger_frames_sent_total",
        [BENCH_M_MESSAGES_SENT] = "dledger_messages_sent_total",
        [BENCH_M_FSYNCS] = "dledger_fsyncs_total",
};

static void parse_metrics(const char *body, double out[BENCH_M_COUNT])
{
	for (const char *line = body; line != NULL && *line != '\0';) {
		for (unsigned m = 0; m < BENCH_M_COUNT; m++) {
			size_t len = strlen(metric_names[m]);
			if (strncmp(line, metric_names[m], len) == 0 && line[len] == ' ')
				out[m] = strtod(line + len + 1, NULL);
		}
		line = strchr(line, '\n');
		line = line != NULL ? line + 1 : NULL;
	}
}

int bench_scrape(const char *host, uint16_t port, double out[BENCH_M_COUNT], struct dl_errctx *err)
{
	memset(out, 0, BENCH_M_COUNT * sizeof(out[0]));
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return dl_errf(err, DL_EINVAL, "metrics host '%s' is not an IPv4 address", host);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		return dl_errf(err, DL_EIO, "socket: %s", strerror(errno));
	/* Bounds connect, send and every recv. */
	struct timeval tv = {.tv_sec = SCRAPE_TIMEOUT_S};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	char req[300];
	int n = snprintf(req, sizeof(req),
	                 "GET /metrics HTTP/1.0\r\nHost: %s:%u\r\nConnection: close\r\n\r\n", host,
	                 port);
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
	    send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
		int e = errno;
		close(fd);
		return dl_errf(err, DL_EIO, "metrics at %s:%u: %s", host, port, strerror(e));
	}
	char *text = NULL;
	int rc = http_read(fd, &text, err);
	close(fd);
	if (rc != 0)
		return rc;
	char *body = strstr(text, "\r\n\r\n");
	if (strncmp(text, "HTTP/1.", 7) != 0 || strlen(text) < 12 ||
	    strncmp(text + 9, "200", 3) != 0 || body == NULL) {
		rc = dl_errf(err, DL_EPROTO, "metrics at %s:%u: answer '%.40s'", host, port, text);
		free(text);
		return rc;
	}
	parse_metrics(body + 4, out);
	free(text);
	return 0;
}
