/*
 * ctl_data.c - the data subcommands of dledger-ctl: append, get, metadata,
 * on the C client (client/client.h).
 *
 * Threads: main, plus the client's threads, which run append callbacks;
 * those only mark a batch done under `struct pipeline.mu`.
 */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cmd/ctl.h"

#define LINE_MAX_BYTES  (16u << 20) /* one stdin line (entry) */
#define FILE_MAX_BYTES  (64u << 20) /* --file */
#define BATCH_MAX       4096        /* --batch */
#define INFLIGHT_MAX    4096        /* --inflight */

/* ---- append ---------------------------------------------------------------------- */

static const char append_usage[] =
	"Usage: dledger-ctl append --peers PEERS --group G\n"
	"                          (--data TEXT | --file F | lines on stdin) [options]\n"
	"\n"
	"Appends entries to group G and prints 'INDEX TERM' for each, once committed.\n"
	"Leader redirects are followed; with no leader known the members are tried in\n"
	"turn until the timeout.\n"
	"\n"
	"  --peers PEERS    the group's members: id-host:port;id-host:port;...\n"
	"  --group G        the group\n"
	"  --data TEXT      append TEXT as one entry\n"
	"  --file F         append the whole file F as one entry\n"
	"                   (neither: each line of stdin, without its newline, is one\n"
	"                   entry; lines are sent in batches with many in flight and\n"
	"                   printed in input order)\n"
	"  --batch N        stdin: at most N lines per request (default 64)\n"
	"  --inflight N     stdin: at most N requests in flight (default 64)\n"
	"  --timeout MS     per request, redirects and retries included (default 5000)\n"
	"  --max-hops N     leader redirects followed per request (default 3)\n"
	TLS_USAGE
	"  --help           this text\n"
	"\n"
	"After a failed request no more input is read; what was already sent is\n"
	"still printed in order, and the first error goes to stderr.\n"
	"Exit status: 0 all appended, 1 an append failed, 2 usage error.\n";

struct append_args {
	const char *data;
	const char *file;
	uint32_t batch;
	uint32_t inflight;
};

static int append_opt(void *ctx, int id, const char *arg)
{
	struct append_args *a = ctx;
	switch (id) {
	case OPT_DATA: a->data = arg; return 0;
	case OPT_FILE: a->file = arg; return 0;
	case OPT_BATCH:
		if (!parse_u32(arg, 1, BATCH_MAX, &a->batch))
			return usage_error("--batch: expected 1..%u, got '%s'", BATCH_MAX, arg);
		return 0;
	case OPT_INFLIGHT:
		if (!parse_u32(arg, 1, INFLIGHT_MAX, &a->inflight))
			return usage_error("--inflight: expected 1..%u, got '%s'", INFLIGHT_MAX,
					   arg);
		return 0;
	default: return usage_error("unexpected option");
	}
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		fail_msg("%s: %s", path, strerror(errno));
		return EXIT_OP;
	}
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);
	int rc = 0;
	while (buf != NULL) {
		if (n == cap) {
			if (cap >= FILE_MAX_BYTES) {
				fail_msg("%s: larger than %u bytes", path, FILE_MAX_BYTES);
				rc = EXIT_OP;
				break;
			}
			cap *= 2;
			char *nb = realloc(buf, cap);
			if (nb == NULL) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		size_t got = fread(buf + n, 1, cap - n, f);
		n += got;
		if (got == 0)
			break;
	}
	if (buf == NULL && rc == 0) {
		fail_msg("out of memory");
		rc = EXIT_OP;
	} else if (rc == 0 && ferror(f)) {
		fail_msg("%s: read error", path);
		rc = EXIT_OP;
	}
	fclose(f);
	if (rc != 0) {
		free(buf);
		return rc;
	}
	*out = buf;
	*len = n;
	return 0;
}

static int append_one(struct dl_client *c, const void *data, size_t len)
{
	uint64_t index, term;
	struct dl_errctx err = {{0}};
	int rc = dl_client_append(c, data, len, &index, &term, &err);
	if (rc != 0)
		return op_error(rc, &err);
	printf("%" PRIu64 " %" PRIu64 "\n", index, term);
	return fflush(stdout) == 0 ? 0 : EXIT_OP;
}

/* stdin lines: batches in a ring, submitted in order, printed in order. */
struct pipeline;

struct batch {
	struct pipeline *p;
	uint32_t n;
	bool done;
	int code;
	uint64_t first_index, term;
	char detail[256];
};

struct pipeline {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct batch *ring;
	uint32_t cap, head, count; /* batches submitted, not yet printed */
	bool stop;   /* a batch failed: submit no more */
	bool failed; /* a failure was printed */
};

static void batch_done_cb(void *arg, const struct dl_client_result *r)
{
	struct batch *b = arg;
	struct pipeline *p = b->p;
	pthread_mutex_lock(&p->mu);
	b->code = r->code;
	b->first_index = r->first_index;
	b->term = r->term;
	snprintf(b->detail, sizeof(b->detail), "%s", r->detail);
	b->done = true;
	if (r->code != 0)
		p->stop = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* Prints finished batches at the head, in order; with `all`, waits for
 * every submitted one. Called with p->mu held. */
static void drain(struct pipeline *p, bool all)
{
	while (p->count > 0) {
		struct batch *b = &p->ring[p->head];
		if (!b->done) {
			if (!all && p->count < p->cap)
				return;
			pthread_cond_wait(&p->cv, &p->mu);
			continue;
		}
		if (b->code == 0) {
			for (uint32_t i = 0; i < b->n; i++)
				printf("%" PRIu64 " %" PRIu64 "\n", b->first_index + i, b->term);
		} else if (!p->failed) { /* one error line: the first failure */
			fail_msg("%s", b->detail[0] ? b->detail : dl_strerror(b->code));
			p->failed = true;
		}
		p->head = (p->head + 1) % p->cap;
		p->count--;
	}
	fflush(stdout);
}

struct linebuf {
	char *buf;
	size_t cap, start, end;
	bool eof;
};

/* Is more input ready without blocking (buffered or on the fd)? */
static bool input_ready(const struct linebuf *lb)
{
	if (lb->start < lb->end || lb->eof)
		return true;
	struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
	return poll(&pfd, 1, 0) > 0;
}

/* Next line (without '\n') as a view into lb, valid until the next call.
 * Returns 1, 0 at the end, -1 on error (message printed). */
static int next_line(struct linebuf *lb, const char **line, size_t *len)
{
	for (;;) {
		char *nl = memchr(lb->buf + lb->start, '\n', lb->end - lb->start);
		if (nl != NULL || (lb->eof && lb->end > lb->start)) {
			size_t l = nl ? (size_t)(nl - (lb->buf + lb->start)) : lb->end - lb->start;
			*line = lb->buf + lb->start;
			*len = l;
			lb->start += l + (nl ? 1 : 0);
			return 1;
		}
		if (lb->eof)
			return 0;
		if (lb->start > 0) {
			memmove(lb->buf, lb->buf + lb->start, lb->end - lb->start);
			lb->end -= lb->start;
			lb->start = 0;
		}
		if (lb->end == lb->cap) {
			if (lb->cap >= LINE_MAX_BYTES) {
				fail_msg("stdin: a line is longer than %u bytes", LINE_MAX_BYTES);
				return -1;
			}
			char *nb = realloc(lb->buf, lb->cap * 2);
			if (nb == NULL) {
				fail_msg("out of memory");
				return -1;
			}
			lb->buf = nb;
			lb->cap *= 2;
		}
		ssize_t got = read(STDIN_FILENO, lb->buf + lb->end, lb->cap - lb->end);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			fail_msg("stdin: %s", strerror(errno));
			return -1;
		}
		if (got == 0)
			lb->eof = true;
		lb->end += (size_t)got;
	}
}

/* Entries of the batch being filled: copies of the lines. */
struct filling {
	struct dl_client_buf *bufs;
	char **copies;
	uint32_t n;
};

static int submit_batch(struct dl_client *c, struct pipeline *p, struct filling *f)
{
	pthread_mutex_lock(&p->mu);
	drain(p, false); /* makes room: waits while the ring is full */
	struct batch *b = &p->ring[(p->head + p->count) % p->cap];
	memset(b, 0, sizeof(*b));
	b->p = p;
	b->n = f->n;
	p->count++;
	pthread_mutex_unlock(&p->mu);
	struct dl_errctx err = {{0}};
	int rc = dl_client_append_async(c, f->bufs, f->n, batch_done_cb, b, &err);
	for (uint32_t i = 0; i < f->n; i++)
		free(f->copies[i]);
	f->n = 0;
	if (rc != 0) {
		pthread_mutex_lock(&p->mu);
		b->code = rc;
		snprintf(b->detail, sizeof(b->detail), "%s",
			 err.msg[0] ? err.msg : dl_strerror(rc));
		b->done = true;
		p->stop = true;
		pthread_mutex_unlock(&p->mu);
	}
	return rc;
}

static int add_line(struct filling *f, const char *line, size_t len)
{
	char *copy = malloc(len + 1);
	if (copy == NULL) {
		fail_msg("out of memory");
		return -1;
	}
	memcpy(copy, line, len);
	f->copies[f->n] = copy;
	f->bufs[f->n] = (struct dl_client_buf){.data = copy, .len = len};
	f->n++;
	return 0;
}

static int append_stdin(struct dl_client *c, const struct append_args *a)
{
	struct pipeline p = {.cap = a->inflight};
	struct linebuf lb = {.cap = 65536};
	struct filling f = {0};
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	p.ring = calloc(p.cap, sizeof(*p.ring));
	lb.buf = malloc(lb.cap);
	f.bufs = calloc(a->batch, sizeof(*f.bufs));
	f.copies = calloc(a->batch, sizeof(*f.copies));
	int rc = p.ring && lb.buf && f.bufs && f.copies ? 0 : -1;
	if (rc != 0)
		fail_msg("out of memory");
	while (rc == 0) {
		/* A partial batch leaves as soon as no more input is waiting, so
		 * lines typed by hand are answered at once. */
		bool ready = input_ready(&lb);
		if (f.n > 0 && (f.n == a->batch || !ready)) {
			submit_batch(c, &p, &f);
			pthread_mutex_lock(&p.mu);
			bool stop = p.stop;
			pthread_mutex_unlock(&p.mu);
			if (stop)
				break;
		}
		if (!ready) { /* input is slow: show what is done before waiting */
			pthread_mutex_lock(&p.mu);
			drain(&p, true);
			pthread_mutex_unlock(&p.mu);
		}
		const char *line;
		size_t len;
		int got = next_line(&lb, &line, &len);
		if (got < 0)
			rc = -1;
		if (got <= 0)
			break;
		rc = add_line(&f, line, len);
	}
	if (rc == 0 && f.n > 0)
		submit_batch(c, &p, &f);
	for (uint32_t i = 0; i < f.n; i++)
		free(f.copies[i]);
	pthread_mutex_lock(&p.mu);
	drain(&p, true);
	bool failed = p.failed;
	pthread_mutex_unlock(&p.mu);
	/* The client is closed before `p` goes away: no callback is pending. */
	free(f.bufs);
	free(f.copies);
	free(lb.buf);
	free(p.ring);
	pthread_cond_destroy(&p.cv);
	pthread_mutex_destroy(&p.mu);
	return rc != 0 || failed ? EXIT_OP : 0;
}

int cmd_append(int argc, char **argv)
{
	static const struct option opts[] = {
		COMMON_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"max-hops", required_argument, NULL, OPT_HOPS},
		{"data", required_argument, NULL, OPT_DATA},
		{"file", required_argument, NULL, OPT_FILE},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"inflight", required_argument, NULL, OPT_INFLIGHT},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct append_args a = {.batch = 64, .inflight = 64};
	int rc = parse_opts(argc, argv, opts, &co, append_opt, &a);
	if (rc != 0)
		return rc;
	if (co.help) {
		fputs(append_usage, stdout);
		return 0;
	}
	if (co.peers == NULL)
		return usage_error("--peers is required");
	if (co.group == NULL)
		return usage_error("--group is required");
	if (a.data != NULL && a.file != NULL)
		return usage_error("--data and --file exclude each other");
	struct dl_client *c;
	rc = open_client(&co, co.group, a.inflight, &c);
	if (rc != 0)
		return rc;
	if (a.data != NULL) {
		rc = append_one(c, a.data, strlen(a.data));
	} else if (a.file != NULL) {
		char *buf = NULL;
		size_t len = 0;
		rc = read_file(a.file, &buf, &len);
		if (rc == 0)
			rc = append_one(c, buf, len);
		free(buf);
	} else {
		rc = append_stdin(c, &a);
	}
	dl_client_close(c);
	return rc;
}

/* ---- get -------------------------------------------------------------------------- */

static const char get_usage[] =
	"Usage: dledger-ctl get --peers PEERS --group G --index N [--to N2] [options]\n"
	"\n"
	"Writes the bodies of the committed entries N..N2 (default N2 = N) to stdout.\n"
	"Without --lines the bodies are written back to back, exactly as stored (for\n"
	"one entry: just its body). With --lines each body is followed by a newline,\n"
	"so entries appended from stdin lines come back as those lines. The empty\n"
	"no-op entries that each new leader appends are skipped.\n"
	"\n"
	"  --peers PEERS    the group's members: id-host:port;id-host:port;...\n"
	"  --group G        the group\n"
	"  --index N        first entry (>= 1)\n"
	"  --to N2          last entry, inclusive (>= N)\n"
	"  --member ID      read from this member only (e.g. a follower); default the\n"
	"                   leader, or any member that answers\n"
	"  --lines          a newline after each body\n"
	"  --wait MS        an entry past the member's commit index is waited for up\n"
	"                   to MS ms (0: not at all; at most 60000 and below\n"
	"                   --timeout); default the member's, 1000 ms\n"
	"  --timeout MS     per request (default 5000)\n"
	TLS_USAGE
	"  --help           this text\n"
	"\n"
	"Exit status: 0 all written, 1 an error (entry not committed, compacted, no such\n"
	"group, timeout), 2 usage error.\n";

struct get_args {
	uint64_t index, to;
	bool has_index, has_to, lines;
	bool has_wait;
	uint32_t wait_ms;
};

static int get_opt(void *ctx, int id, const char *arg)
{
	struct get_args *g = ctx;
	switch (id) {
	case OPT_INDEX:
		if (!parse_u64(arg, 1, UINT64_MAX, &g->index))
			return usage_error("--index: expected an index >= 1, got '%s'", arg);
		g->has_index = true;
		return 0;
	case OPT_TO:
		if (!parse_u64(arg, 1, UINT64_MAX, &g->to))
			return usage_error("--to: expected an index >= 1, got '%s'", arg);
		g->has_to = true;
		return 0;
	case OPT_LINES: g->lines = true; return 0;
	case OPT_WAIT:
		if (!parse_u32(arg, 0, TP_GET_WAIT_MAX_MS, &g->wait_ms))
			return usage_error("--wait: expected milliseconds 0..%u, got '%s'",
					   TP_GET_WAIT_MAX_MS, arg);
		g->has_wait = true;
		return 0;
	default: return usage_error("unexpected option");
	}
}

static int write_entry(void *arg, const struct dl_client_entry *e)
{
	const struct get_args *g = arg;
	if (e->type != RAFT_ENTRY_NORMAL)
		return 0; /* a new leader's no-op: not a client's entry */
	if (e->len > 0 && fwrite(e->data, 1, e->len, stdout) != e->len)
		return DL_EIO;
	if (g->lines && putchar('\n') == EOF)
		return DL_EIO;
	return 0;
}

int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		COMMON_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"member", required_argument, NULL, OPT_MEMBER},
		{"index", required_argument, NULL, OPT_INDEX},
		{"to", required_argument, NULL, OPT_TO},
		{"lines", no_argument, NULL, OPT_LINES},
		{"wait", required_argument, NULL, OPT_WAIT},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct get_args g = {0};
	int rc = parse_opts(argc, argv, opts, &co, get_opt, &g);
	if (rc != 0)
		return rc;
	if (co.help) {
		fputs(get_usage, stdout);
		return 0;
	}
	if (co.peers == NULL)
		return usage_error("--peers is required");
	if (co.group == NULL)
		return usage_error("--group is required");
	if (!g.has_index)
		return usage_error("--index is required");
	if (!g.has_to)
		g.to = g.index;
	if (g.to < g.index)
		return usage_error("--to %" PRIu64 " is below --index %" PRIu64, g.to, g.index);
	if (g.has_wait) {
		uint32_t timeout = co.timeout_ms ? co.timeout_ms : 5000;
		if (g.wait_ms >= timeout)
			return usage_error("--wait %u must be below --timeout %u", g.wait_ms, timeout);
		co.get_wait_ms = g.wait_ms == 0 ? DL_CLIENT_NO_WAIT : g.wait_ms;
	}
	struct dl_client *c;
	rc = open_client(&co, co.group, 16, &c);
	if (rc != 0)
		return rc;
	if (co.member != NULL && co.member[0] != '\0') {
		bool found = false;
		for (uint32_t i = 0; i < dl_client_members(c); i++)
			found = found || strcmp(dl_client_member_id(c, i), co.member) == 0;
		if (!found) {
			dl_client_close(c);
			return usage_error("--member '%s' is not in --peers", co.member);
		}
	}
	struct dl_errctx err = {{0}};
	rc = dl_client_read(c, g.index, g.to, co.member, write_entry, &g, &err);
	if (fflush(stdout) != 0 && rc == 0)
		rc = DL_EIO;
	dl_client_close(c);
	if (rc == DL_EIO && err.msg[0] == '\0')
		snprintf(err.msg, sizeof(err.msg), "writing to stdout: %s", strerror(errno));
	return rc != 0 ? op_error(rc, &err) : 0;
}

/* ---- metadata ------------------------------------------------------------------------ */

static const char metadata_usage[] =
	"Usage: dledger-ctl metadata --peers PEERS [--group G] [--json] [options]\n"
	"\n"
	"One row per group and member, each as that member's own node knows it: group,\n"
	"member id, address, role, term, leader, first/last/commit/durable index.\n"
	"With --group, every member of G in PEERS is asked about G. Without it, every\n"
	"address in PEERS is asked about all the groups its node hosts.\n"
	"\n"
	"  --peers PEERS    members: id-host:port;id-host:port;...\n"
	"  --group G        only this group\n"
	"  --json           a JSON array of objects (with each member's view of the\n"
	"                   others: role and match index) instead of a table\n"
	"  --timeout MS     per request (default 5000)\n"
	TLS_USAGE
	"  --help           this text\n"
	"\n"
	"A node that does not answer is reported on stderr and the others are still\n"
	"shown. Exit status: 0 every node answered, 1 one did not, 2 usage error.\n";

static const char *role_name(uint8_t role)
{
	switch (role) {
	case 0: return "follower";
	case 1: return "precandidate";
	case 2: return "candidate";
	case 3: return "leader";
	default: return "unknown";
	}
}

static const char *self_addr(const struct tp_group_meta *gm, const char *fallback)
{
	for (uint32_t i = 0; i < gm->n_members; i++)
		if (strcmp(gm->members[i].id, gm->self) == 0 && gm->members[i].addr[0])
			return gm->members[i].addr;
	return fallback;
}

static json_t *meta_json(const struct tp_group_meta *gm, const char *addr)
{
	json_t *members = json_array();
	for (uint32_t i = 0; i < gm->n_members; i++) {
		const struct tp_member_meta *m = &gm->members[i];
		json_array_append_new(members,
				      json_pack("{s:s, s:s, s:s, s:I}", "id", m->id, "address",
						m->addr, "role", role_name(m->role),
						"match_index", (json_int_t)m->match_index));
	}
	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:I, s:I, s:I, s:I, s:b, s:s, s:o}",
			 "group", gm->group, "member", gm->self, "address", addr, "role",
			 gm->stopped[0] ? "stopped" : role_name(gm->role), "term", (json_int_t)gm->term, "leader", gm->leader,
			 "leader_address", gm->leader_addr, "first_index",
			 (json_int_t)gm->first_index, "last_index", (json_int_t)gm->last_index,
			 "commit_index", (json_int_t)gm->commit_index, "durable_index",
			 (json_int_t)gm->durable_index, "voter", gm->voter, "stopped", gm->stopped,
			 "members", members);
}

struct meta_out {
	bool json;
	json_t *rows;
	bool header_done;
};

static void meta_row(struct meta_out *mo, const struct tp_group_meta *gm, const char *addr)
{
	if (mo->json) {
		json_t *row = meta_json(gm, addr);
		if (row != NULL)
			json_array_append_new(mo->rows, row);
		return;
	}
	if (!mo->header_done) {
		printf("%-16s %-8s %-21s %-12s %6s %-8s %10s %10s %10s %10s %5s\n", "GROUP",
		       "MEMBER", "ADDRESS", "ROLE", "TERM", "LEADER", "FIRST", "LAST", "COMMIT",
		       "DURABLE", "VOTER");
		mo->header_done = true;
	}
	printf("%-16s %-8s %-21s %-12s %6" PRIu64 " %-8s %10" PRIu64 " %10" PRIu64 " %10" PRIu64
	       " %10" PRIu64 " %5s\n",
	       gm->group, gm->self, addr, gm->stopped[0] ? "stopped" : role_name(gm->role), gm->term,
	       gm->leader[0] ? gm->leader : "-", gm->first_index, gm->last_index,
	       gm->commit_index, gm->durable_index, gm->voter ? "yes" : "no");
}

static int meta_group(struct dl_client *c, struct meta_out *mo)
{
	int rc = 0;
	for (uint32_t i = 0; i < dl_client_members(c); i++) {
		struct tp_group_meta gm;
		struct dl_errctx err = {{0}};
		int r = dl_client_metadata(c, dl_client_member_id(c, i), &gm, &err);
		if (r != 0) {
			op_error(r, &err);
			rc = EXIT_OP;
			continue;
		}
		meta_row(mo, &gm, self_addr(&gm, dl_client_member_addr(c, i)));
	}
	return rc;
}

static int meta_nodes(struct dl_client *c, struct meta_out *mo)
{
	int rc = 0;
	for (uint32_t i = 0; i < dl_client_members(c); i++) {
		const char *addr = dl_client_member_addr(c, i);
		struct tp_group_meta *rows;
		uint32_t n;
		struct dl_errctx err = {{0}};
		int r = dl_client_node_metadata(c, addr, &rows, &n, &err);
		if (r != 0) {
			op_error(r, &err);
			rc = EXIT_OP;
			continue;
		}
		for (uint32_t k = 0; k < n; k++)
			meta_row(mo, &rows[k], self_addr(&rows[k], addr));
		free(rows);
	}
	return rc;
}

int cmd_metadata(int argc, char **argv)
{
	static const struct option opts[] = {
		COMMON_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	int rc = parse_opts(argc, argv, opts, &co, NULL, NULL);
	if (rc != 0)
		return rc;
	if (co.help) {
		fputs(metadata_usage, stdout);
		return 0;
	}
	if (co.peers == NULL)
		return usage_error("--peers is required");
	struct dl_client *c;
	rc = open_client(&co, co.group, 16, &c);
	if (rc != 0)
		return rc;
	struct meta_out mo = {.json = co.json, .rows = co.json ? json_array() : NULL};
	rc = co.group ? meta_group(c, &mo) : meta_nodes(c, &mo);
	dl_client_close(c);
	if (mo.json) {
		if (json_dumpf(mo.rows, stdout, JSON_INDENT(2)) != 0)
			rc = EXIT_OP;
		putchar('\n');
		json_decref(mo.rows);
	}
	if (fflush(stdout) != 0)
		rc = EXIT_OP;
	return rc;
}
