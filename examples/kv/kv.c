/*
 * kv - a replicated key-value store on libdledger's embedding API, using
 * only the installed header <dledger/dledger.h> (build: Makefile, with
 * pkg-config alone).
 *
 *   kv serve --id n0 --peers 'n0-127.0.0.1:20000;n1-...;n2-...' --dir DIR \
 *            --listen 127.0.0.1:21000 [--group kv]
 *   kv serve --config node.yaml --listen 127.0.0.1:21000 [--group kv] [--dir DIR]
 *   kv put    --servers 127.0.0.1:21000,127.0.0.1:21001,... KEY VALUE
 *   kv get    --servers ... KEY
 *   kv status --servers ...
 *
 * How it works. A put is one entry "KEY\nVALUE" appended to the group
 * through dl_append() on the node that leads it (never through the
 * network); it is acknowledged once committed and applied here. The state
 * is the in-memory table that the apply callback builds, in index order.
 * Every SNAP_EVERY entries (and at a clean stop) the apply callback writes
 * the table and its applied index to DIR/kv-GROUP.snap (write, fsync,
 * rename): at the next start the table is loaded from it and its index is
 * handed to the library, which applies only the entries after it. A get is
 * served by the leader once it has applied an entry of its own term (the
 * no-op every new leader commits) and everything it knows committed, so an
 * acknowledged put is always seen (Raft, section 8; a leader cut off from
 * the others could still serve a stale value until it steps down).
 *
 * The server speaks lines over TCP, one request per connection:
 *   PUT KEY VALUE -> "OK INDEX" | "NOTLEADER LEADER" | "ERR TEXT"
 *   GET KEY       -> "VALUE VALUE" | "NOTFOUND" | "NOTLEADER LEADER" | "ERR TEXT"
 *   STATUS        -> "ROLE ROLE TERM LEADER APPLIED"
 * Keys are 1..64 bytes of [A-Za-z0-9_.-]; values 0..512 printable bytes.
 * The client tries the servers in turn until one answers, within a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <dledger/dledger.h>

#define KEY_MAX     64
#define VAL_MAX     512
#define LINE_MAX    (KEY_MAX + VAL_MAX + 16)
#define BUCKETS     4096
#define SNAP_EVERY  100
#define MAX_CONNS   64
#define WAIT_MS     5000
#define CLIENT_MS   20000

/* ---- the table and what the apply callback maintains ------------------------ */

struct item {
	struct item *next;
	char key[KEY_MAX + 1];
	char *val;
};

struct kv {
	pthread_mutex_t mu; /* everything below: the apply callback writes, servers read */
	pthread_cond_t cv;  /* applied moved */
	struct item *b[BUCKETS];
	uint64_t applied, applied_term, snap_index;
	char snap_path[4096];
	char group[DL_NAME_MAX + 1];
	dl_node *node;
};

static unsigned hash(const char *s)
{
	unsigned h = 2166136261u;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 16777619u;
	return h % BUCKETS;
}

static int table_put(struct kv *kv, const char *key, const char *val)
{
	struct item **p = &kv->b[hash(key)];
	while (*p != NULL && strcmp((*p)->key, key) != 0)
		p = &(*p)->next;
	char *v = strdup(val);
	if (v == NULL)
		return -1;
	if (*p == NULL) {
		*p = calloc(1, sizeof(**p));
		if (*p == NULL) {
			free(v);
			return -1;
		}
		snprintf((*p)->key, sizeof((*p)->key), "%s", key);
	}
	free((*p)->val);
	(*p)->val = v;
	return 0;
}

static const char *table_get(struct kv *kv, const char *key)
{
	for (struct item *it = kv->b[hash(key)]; it != NULL; it = it->next)
		if (strcmp(it->key, key) == 0)
			return it->val;
	return NULL;
}

static bool key_ok(const char *k, size_t n)
{
	if (n == 0 || n > KEY_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') ||
		      (k[i] >= '0' && k[i] <= '9') || k[i] == '_' || k[i] == '.' || k[i] == '-'))
			return false;
	return true;
}

static bool val_ok(const char *v, size_t n)
{
	if (n > VAL_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)v[i] < 0x20 || v[i] == 0x7f)
			return false;
	return true;
}

/* The table and its applied index, all or nothing: write, fsync, rename. */
static int snap_write(struct kv *kv)
{
	char tmp[4200];
	snprintf(tmp, sizeof(tmp), "%s.tmp", kv->snap_path);
	FILE *f = fopen(tmp, "w");
	if (f == NULL)
		return -1;
	fprintf(f, "kvsnap 1 %llu %llu\n", (unsigned long long)kv->applied,
		(unsigned long long)kv->applied_term);
	for (int i = 0; i < BUCKETS; i++)
		for (struct item *it = kv->b[i]; it != NULL; it = it->next)
			fprintf(f, "%s %s\n", it->key, it->val);
	int ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = (fclose(f) == 0) && ok;
	if (!ok || rename(tmp, kv->snap_path) != 0) {
		unlink(tmp);
		return -1;
	}
	kv->snap_index = kv->applied;
	return 0;
}

/* Loads the last snapshot, if any; -1 when it is damaged. */
static int snap_load(struct kv *kv)
{
	FILE *f = fopen(kv->snap_path, "r");
	if (f == NULL)
		return errno == ENOENT ? 0 : -1;
	char line[LINE_MAX + 2];
	unsigned long long a = 0, t = 0;
	int rc = fgets(line, sizeof(line), f) != NULL &&
			 sscanf(line, "kvsnap 1 %llu %llu", &a, &t) == 2 ? 0 : -1;
	while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
		size_t n = strlen(line);
		if (n == 0 || line[n - 1] != '\n') {
			rc = -1;
			break;
		}
		line[n - 1] = '\0';
		char *sp = strchr(line, ' ');
		if (sp == NULL || !key_ok(line, (size_t)(sp - line))) {
			rc = -1;
			break;
		}
		*sp = '\0';
		rc = table_put(kv, line, sp + 1);
	}
	fclose(f);
	kv->applied = kv->snap_index = a;
	kv->applied_term = t;
	return rc;
}

/* On the member's actor thread, in index order, once per entry. */
static void on_apply(void *arg, const char *group, const struct dl_entry *e)
{
	(void)group;
	struct kv *kv = arg;
	pthread_mutex_lock(&kv->mu);
	const char *nl = e->noop ? NULL : memchr(e->data, '\n', e->len);
	if (nl != NULL) {
		size_t kn = (size_t)(nl - (const char *)e->data), vn = e->len - kn - 1;
		char key[KEY_MAX + 1], val[VAL_MAX + 1];
		if (key_ok(e->data, kn) && val_ok(nl + 1, vn)) {
			memcpy(key, e->data, kn);
			key[kn] = '\0';
			memcpy(val, nl + 1, vn);
			val[vn] = '\0';
			if (table_put(kv, key, val) != 0)
				abort(); /* out of memory: the state would diverge */
		}
	}
	kv->applied = e->index;
	kv->applied_term = e->term;
	/* Back-pressure: the snapshot is written here, on the member's thread. */
	if (kv->applied - kv->snap_index >= SNAP_EVERY && snap_write(kv) != 0)
		fprintf(stderr, "kv: cannot write %s: %s\n", kv->snap_path, strerror(errno));
	pthread_cond_broadcast(&kv->cv);
	pthread_mutex_unlock(&kv->mu);
}

static void on_role(void *arg, const char *group, const char *member, enum dl_role role,
		    uint64_t term, const char *leader)
{
	(void)arg;
	dl_log(DL_LOG_INFO, group, member, "kv: role %s term %llu leader %s", dl_role_name(role),
	       (unsigned long long)term, leader[0] ? leader : "(none)");
}

/* ---- serving ---------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits (kv->mu held) until `cond` or the deadline; the condition is
 * re-checked at least every 20 ms since status changes do not signal. */
static void wait_a_little(struct kv *kv)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_nsec += 20 * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_cond_timedwait(&kv->cv, &kv->mu, &ts);
}

/* The leader's read barrier: this member leads, has applied an entry of its
 * term and everything it knows committed. Writes the answer when not. */
static bool read_barrier(struct kv *kv, char *out, size_t cap)
{
	uint64_t deadline = now_ms() + WAIT_MS;
	struct dl_member_status st;
	pthread_mutex_lock(&kv->mu);
	for (;;) {
		int rc = dl_group_status(kv->node, kv->group, &st);
		if (rc != DL_OK) {
			snprintf(out, cap, "ERR %s\n", dl_strerror(rc));
			break;
		}
		if (st.role != DL_ROLE_LEADER) {
			snprintf(out, cap, "NOTLEADER %s\n", st.leader[0] ? st.leader : "-");
			break;
		}
		if (kv->applied_term == st.term && kv->applied >= st.commit_index)
			return true; /* kv->mu stays held for the read */
		if (now_ms() >= deadline) {
			snprintf(out, cap, "ERR not caught up yet\n");
			break;
		}
		wait_a_little(kv);
	}
	pthread_mutex_unlock(&kv->mu);
	return false;
}

static void do_put(struct kv *kv, const char *key, const char *val, char *out, size_t cap)
{
	char entry[KEY_MAX + 1 + VAL_MAX];
	size_t kn = strlen(key), vn = strlen(val);
	memcpy(entry, key, kn);
	entry[kn] = '\n';
	memcpy(entry + kn + 1, val, vn);
	struct dl_buf b = {entry, kn + 1 + vn};
	struct dl_append_result r;
	int rc = dl_append(kv->node, kv->group, &b, 1, WAIT_MS, &r);
	if (rc == DL_ENOTLEADER) {
		snprintf(out, cap, "NOTLEADER %s\n", r.leader_id[0] ? r.leader_id : "-");
		return;
	}
	if (rc != DL_OK) {
		snprintf(out, cap, "ERR %s\n", r.message);
		return;
	}
	/* Acknowledged once applied here, so a get right after sees it. */
	uint64_t deadline = now_ms() + WAIT_MS;
	pthread_mutex_lock(&kv->mu);
	while (kv->applied < r.index && now_ms() < deadline)
		wait_a_little(kv);
	bool applied = kv->applied >= r.index;
	pthread_mutex_unlock(&kv->mu);
	if (applied)
		snprintf(out, cap, "OK %llu\n", (unsigned long long)r.index);
	else
		snprintf(out, cap, "ERR committed at %llu but not applied in time\n",
			 (unsigned long long)r.index);
}

static void do_get(struct kv *kv, const char *key, char *out, size_t cap)
{
	if (!read_barrier(kv, out, cap))
		return;
	const char *v = table_get(kv, key);
	if (v != NULL)
		snprintf(out, cap, "VALUE %s\n", v);
	else
		snprintf(out, cap, "NOTFOUND\n");
	pthread_mutex_unlock(&kv->mu);
}

static void do_status(struct kv *kv, char *out, size_t cap)
{
	struct dl_member_status st;
	int rc = dl_group_status(kv->node, kv->group, &st);
	pthread_mutex_lock(&kv->mu);
	uint64_t applied = kv->applied;
	pthread_mutex_unlock(&kv->mu);
	if (rc != DL_OK)
		snprintf(out, cap, "ERR %s\n", dl_strerror(rc));
	else
		snprintf(out, cap, "ROLE %s %llu %s %llu\n", dl_role_name(st.role),
			 (unsigned long long)st.term, st.leader[0] ? st.leader : "-",
			 (unsigned long long)applied);
}

/* Reads one line (without its '\n') within the socket's timeout. */
static int read_line(int fd, char *buf, size_t cap)
{
	size_t n = 0;
	while (n + 1 < cap) {
		ssize_t k = recv(fd, buf + n, 1, 0);
		if (k <= 0)
			return -1;
		if (buf[n] == '\n') {
			buf[n] = '\0';
			return 0;
		}
		n++;
	}
	return -1;
}

static void answer(struct kv *kv, char *line, char *out, size_t cap)
{
	char *arg = strchr(line, ' ');
	if (arg != NULL)
		*arg++ = '\0';
	if (strcmp(line, "STATUS") == 0) {
		do_status(kv, out, cap);
	} else if (strcmp(line, "GET") == 0 && arg != NULL && key_ok(arg, strlen(arg))) {
		do_get(kv, arg, out, cap);
	} else if (strcmp(line, "PUT") == 0 && arg != NULL) {
		char *val = strchr(arg, ' ');
		if (val != NULL)
			*val++ = '\0';
		if (val == NULL || !key_ok(arg, strlen(arg)) || !val_ok(val, strlen(val)))
			snprintf(out, cap, "ERR bad key or value\n");
		else
			do_put(kv, arg, val, out, cap);
	} else {
		snprintf(out, cap, "ERR unknown request\n");
	}
}

static pthread_mutex_t conns_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t conns_cv = PTHREAD_COND_INITIALIZER;
static int conns;

struct conn {
	struct kv *kv;
	int fd;
};

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	char line[LINE_MAX + 2], out[LINE_MAX + 32];
	if (read_line(c->fd, line, sizeof(line)) == 0) {
		answer(c->kv, line, out, sizeof(out));
		ssize_t w = send(c->fd, out, strlen(out), MSG_NOSIGNAL);
		(void)w;
	}
	close(c->fd);
	free(c);
	pthread_mutex_lock(&conns_mu);
	conns--;
	pthread_cond_broadcast(&conns_cv);
	pthread_mutex_unlock(&conns_mu);
	return NULL;
}

static int parse_hostport(const char *s, struct sockaddr_in *sa)
{
	char host[64];
	const char *colon = strrchr(s, ':');
	if (colon == NULL || (size_t)(colon - s) >= sizeof(host))
		return -1;
	memcpy(host, s, (size_t)(colon - s));
	host[colon - s] = '\0';
	char *end;
	long port = strtol(colon + 1, &end, 10);
	memset(sa, 0, sizeof(*sa));
	sa->sin_family = AF_INET;
	sa->sin_port = htons((uint16_t)port);
	if (*end != '\0' || port < 1 || port > 65535 || inet_pton(AF_INET, host, &sa->sin_addr) != 1)
		return -1;
	return 0;
}

static volatile sig_atomic_t stopping;
static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void serve_loop(struct kv *kv, int lfd)
{
	while (!stopping) {
		int fd = accept(lfd, NULL, NULL);
		if (fd < 0)
			continue; /* EINTR on a signal: the loop checks `stopping` */
		struct timeval tv = {.tv_sec = 10};
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		struct conn *c = malloc(sizeof(*c));
		pthread_mutex_lock(&conns_mu);
		bool room = conns < MAX_CONNS && c != NULL;
		if (room)
			conns++;
		pthread_mutex_unlock(&conns_mu);
		pthread_t t;
		if (room) {
			*c = (struct conn){kv, fd};
			if (pthread_create(&t, NULL, conn_main, c) == 0) {
				pthread_detach(t);
				continue;
			}
			pthread_mutex_lock(&conns_mu);
			conns--;
			pthread_mutex_unlock(&conns_mu);
		}
		ssize_t w = send(fd, "ERR busy\n", 9, MSG_NOSIGNAL);
		(void)w;
		close(fd);
		free(c);
	}
	/* Every request ends within its timeouts; wait for them. */
	pthread_mutex_lock(&conns_mu);
	while (conns > 0)
		pthread_cond_wait(&conns_cv, &conns_mu);
	pthread_mutex_unlock(&conns_mu);
}

static int usage(void)
{
	fprintf(stderr,
		"usage: kv serve (--config FILE | --id ID --peers PEERS --dir DIR) --listen HOST:PORT "
		"[--group G] [--dir DIR]\n"
		"       kv put --servers H:P,... KEY VALUE\n"
		"       kv get --servers H:P,... KEY\n"
		"       kv status --servers H:P,...\n");
	return 2;
}

static int open_node(const char *config, const char *id, const char *peers, const char *dir,
		     const char *group, dl_node **node)
{
	char err[512];
	int rc;
	if (config != NULL) {
		rc = dl_node_open_file(config, NULL, node, err, sizeof(err));
	} else {
		struct dl_kv keys[] = {{"heartBeatTimeIntervalMs", "100"},
				       {"electionTimeoutMs", "600"}};
		struct dl_group_config g = {.group = group, .id = id, .peers = peers};
		struct dl_node_config c = {.store_base_dir = dir, .keys = keys, .n_keys = 2,
					   .groups = &g, .n_groups = 1};
		rc = dl_node_open(&c, NULL, node, err, sizeof(err));
	}
	if (rc != DL_OK)
		fprintf(stderr, "kv: %s\n", err[0] ? err : dl_strerror(rc));
	return rc;
}

static int serve(int argc, char **argv)
{
	const char *config = NULL, *id = NULL, *peers = NULL, *dir = NULL, *listen_at = NULL;
	const char *group = "kv";
	for (int i = 2; i + 1 < argc; i += 2) {
		const char **slot = strcmp(argv[i], "--config") == 0   ? &config
				    : strcmp(argv[i], "--id") == 0     ? &id
				    : strcmp(argv[i], "--peers") == 0  ? &peers
				    : strcmp(argv[i], "--dir") == 0    ? &dir
				    : strcmp(argv[i], "--listen") == 0 ? &listen_at
				    : strcmp(argv[i], "--group") == 0  ? &group
								       : NULL;
		if (slot == NULL)
			return usage();
		*slot = argv[i + 1];
	}
	struct sockaddr_in sa;
	if ((argc % 2) != 0 || listen_at == NULL || parse_hostport(listen_at, &sa) != 0 ||
	    (config == NULL && (id == NULL || peers == NULL || dir == NULL)) ||
	    strlen(group) > DL_NAME_MAX)
		return usage();
	static struct kv kv;
	pthread_mutex_init(&kv.mu, NULL);
	pthread_cond_init(&kv.cv, NULL);
	snprintf(kv.group, sizeof(kv.group), "%s", group);
	snprintf(kv.snap_path, sizeof(kv.snap_path), "%s/kv-%s.snap", dir ? dir : ".", group);
	if (snap_load(&kv) != 0) {
		fprintf(stderr, "kv: %s is damaged\n", kv.snap_path);
		return 1;
	}
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, NULL); /* the library's threads inherit it */
	if (open_node(config, id, peers, dir, group, &kv.node) != DL_OK)
		return 2;
	struct dl_group_handlers h = {.apply = on_apply, .on_role = on_role, .arg = &kv,
				      .applied_index = kv.applied};
	char err[512];
	int rc = dl_group_set_handlers(kv.node, group, &h);
	if (rc == DL_OK)
		rc = dl_node_start(kv.node, err, sizeof(err));
	else
		snprintf(err, sizeof(err), "group '%s': %s", group, dl_strerror(rc));
	int lfd = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (rc == DL_OK && (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 64) != 0)) {
		snprintf(err, sizeof(err), "listen %s: %s", listen_at, strerror(errno));
		rc = DL_EIO;
	}
	if (rc != DL_OK) {
		fprintf(stderr, "kv: %s\n", err);
		close(lfd);
		dl_node_close(kv.node);
		return 1;
	}
	dl_log(DL_LOG_INFO, group, NULL, "kv: serving on %s from applied index %llu", listen_at,
	       (unsigned long long)kv.applied);
	struct sigaction act = {.sa_handler = on_signal}; /* no SA_RESTART: accept returns */
	sigaction(SIGTERM, &act, NULL);
	sigaction(SIGINT, &act, NULL);
	pthread_sigmask(SIG_UNBLOCK, &block, NULL); /* only this thread takes them */
	serve_loop(&kv, lfd);
	close(lfd);
	dl_node_close(kv.node); /* no apply runs after this */
	pthread_mutex_lock(&kv.mu);
	rc = snap_write(&kv);
	pthread_mutex_unlock(&kv.mu);
	return rc == 0 ? 0 : 1;
}

/* ---- the client --------------------------------------------------------------------- */

/* One request to one server; the answer line into out. */
static int request(const char *server, const char *req, char *out, size_t cap)
{
	struct sockaddr_in sa;
	if (parse_hostport(server, &sa) != 0)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct timeval tv = {.tv_sec = 12};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	int rc = -1;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req))
		rc = read_line(fd, out, cap);
	close(fd);
	return rc;
}

static int client(int argc, char **argv)
{
	if (argc < 4 || strcmp(argv[2], "--servers") != 0)
		return usage();
	const char *op = argv[1];
	if (argc >= 5 && strcmp(op, "status") != 0 && !key_ok(argv[4], strlen(argv[4]))) {
		fprintf(stderr, "kv: a key is 1..%d bytes of [A-Za-z0-9_.-]\n", KEY_MAX);
		return 2;
	}
	if (argc == 6 && !val_ok(argv[5], strlen(argv[5]))) {
		fprintf(stderr, "kv: a value is 0..%d printable bytes\n", VAL_MAX);
		return 2;
	}
	char req[LINE_MAX + 8];
	if (strcmp(op, "put") == 0 && argc == 6)
		snprintf(req, sizeof(req), "PUT %s %s\n", argv[4], argv[5]);
	else if (strcmp(op, "get") == 0 && argc == 5)
		snprintf(req, sizeof(req), "GET %s\n", argv[4]);
	else if (strcmp(op, "status") == 0 && argc == 4)
		snprintf(req, sizeof(req), "STATUS\n");
	else
		return usage();
	char servers[4096];
	snprintf(servers, sizeof(servers), "%s", argv[3]);
	char *list[16];
	int n = 0;
	for (char *s = strtok(servers, ","); s != NULL && n < 16; s = strtok(NULL, ","))
		list[n++] = s;
	char out[LINE_MAX + 32] = "";
	if (strcmp(op, "status") == 0) {
		for (int i = 0; i < n; i++)
			printf("%s %s\n", list[i],
			       request(list[i], req, out, sizeof(out)) == 0 ? out : "DOWN");
		return 0;
	}
	/* Try the servers in turn (the leader answers; the others say
	 * NOTLEADER) until one answers or the deadline passes. */
	uint64_t deadline = now_ms() + CLIENT_MS;
	for (int i = 0; now_ms() < deadline; i = (i + 1) % n) {
		if (request(list[i], req, out, sizeof(out)) != 0 ||
		    strncmp(out, "NOTLEADER", 9) == 0 || strncmp(out, "ERR", 3) == 0) {
			if (i == n - 1)
				usleep(100 * 1000);
			continue;
		}
		if (strncmp(out, "OK ", 3) == 0) {
			printf("%s\n", out + 3);
			return 0;
		}
		if (strncmp(out, "VALUE ", 6) == 0) {
			printf("%s\n", out + 6);
			return 0;
		}
		if (strcmp(out, "NOTFOUND") == 0) {
			fprintf(stderr, "kv: %s: not found\n", argv[4]);
			return 3;
		}
		fprintf(stderr, "kv: unexpected answer '%s'\n", out);
		return 1;
	}
	fprintf(stderr, "kv: no server answered within %d ms (last: %s)\n", CLIENT_MS, out);
	return 1;
}

int main(int argc, char **argv)
{
	if (argc < 2)
		return usage();
	if (strcmp(argv[1], "serve") == 0)
		return serve(argc, argv);
	if (strcmp(argv[1], "put") == 0 || strcmp(argv[1], "get") == 0 ||
	    strcmp(argv[1], "status") == 0)
		return client(argc, argv);
	return usage();
}
