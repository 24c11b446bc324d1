/*
 * dledger-ctl - the command-line client: append, get, metadata (data
 * subcommands, on the C client of client/client.h), and status, add-group,
 * remove-group, transfer-leader (control subcommands: one msgpack request
 * to a node's control socket, docs/OPERATIONS.md "Control socket"), and
 * reload.
 *
 * Exit status: 0 success, 1 the operation failed (one line on stderr:
 * "dledger-ctl: append: not leader after 3 hops (last tried n1 at ...)"),
 * 2 usage error.
 *
 * Threads: main, plus the client's threads, which run append callbacks;
 * those only mark a batch done under `struct pipeline.mu`.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <msgpack.h>

#include "client/client.h"
#include "control/ctl_client.h"
#include "control/ctl_pack.h"

#ifndef DLEDGER_VERSION
#define DLEDGER_VERSION "dev"
#endif

#define EXIT_OP    1
#define EXIT_USAGE 2

#define LINE_MAX_BYTES  (16u << 20) /* one stdin line (entry) */
#define FILE_MAX_BYTES  (64u << 20) /* --file */
#define BATCH_MAX       4096        /* --batch */
#define INFLIGHT_MAX    4096        /* --inflight */
#define CTL_TEXT_MAX    128         /* a name or path in a control reply */

static const char *g_cmd = "dledger-ctl";

static void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void fail_msg(const char *fmt, ...)
{
	va_list ap;
	fflush(stdout); /* keep the order of output and errors on a terminal */
	fprintf(stderr, "dledger-ctl: %s: ", g_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, "dledger-ctl: %s: ", g_cmd);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'dledger-ctl %s --help'.\n", g_cmd);
	return EXIT_USAGE;
}

static int op_error(int rc, const struct dl_errctx *err)
{
	fail_msg("%s", err->msg[0] ? err->msg : dl_strerror(rc));
	return EXIT_OP;
}

/* ---- common options --------------------------------------------------------------- */

struct common {
	const char *peers;
	const char *group;
	const char *member;
	uint32_t timeout_ms;
	uint32_t max_hops;
	const char *tls_cert, *tls_key, *tls_ca; /* all three or none */
	bool json;
	bool help;
};

static bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s == NULL || *s == '\0' || *s == '-' || *s == '+')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out)
{
	uint64_t v;
	if (!parse_u64(s, min, max, &v))
		return false;
	*out = (uint32_t)v;
	return true;
}

enum opt_id {
	OPT_PEERS = 1000,
	OPT_GROUP,
	OPT_MEMBER,
	OPT_TIMEOUT,
	OPT_HOPS,
	OPT_JSON,
	OPT_DATA,
	OPT_FILE,
	OPT_INDEX,
	OPT_TO,
	OPT_LINES,
	OPT_BATCH,
	OPT_INFLIGHT,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CA,
	OPT_HELP,
};

/* Handles the options every subcommand shares. Returns 1 if taken, 0 if
 * not one of them, or EXIT_USAGE (negated) on a bad value. */
static int common_opt(struct common *co, int id, const char *arg)
{
	switch (id) {
	case OPT_PEERS: co->peers = arg; return 1;
	case OPT_GROUP: co->group = arg; return 1;
	case OPT_MEMBER: co->member = arg; return 1;
	case OPT_JSON: co->json = true; return 1;
	case OPT_TLS_CERT: co->tls_cert = arg; return 1;
	case OPT_TLS_KEY: co->tls_key = arg; return 1;
	case OPT_TLS_CA: co->tls_ca = arg; return 1;
	case OPT_HELP: co->help = true; return 1;
	case OPT_TIMEOUT:
		if (!parse_u32(arg, 1, 3600u * 1000u, &co->timeout_ms))
			return -usage_error("--timeout: expected milliseconds 1..3600000, got '%s'",
					    arg);
		return 1;
	case OPT_HOPS:
		if (!parse_u32(arg, 1, DL_CLIENT_MAX_HOPS, &co->max_hops))
			return -usage_error("--max-hops: expected 1..%u, got '%s'",
					    DL_CLIENT_MAX_HOPS, arg);
		return 1;
	default: return 0;
	}
}

/* getopt_long over `opts`; each option not shared goes to `own`. Returns 0,
 * or EXIT_USAGE. */
typedef int (*own_opt_fn)(void *ctx, int id, const char *arg);

static int parse_opts(int argc, char **argv, const struct option *opts, struct common *co,
		      own_opt_fn own, void *ctx)
{
	opterr = 0;
	optind = 1;
	for (;;) {
		int id = getopt_long(argc, argv, ":h", opts, NULL);
		if (id == -1)
			break;
		if (id == 'h')
			id = OPT_HELP;
		if (id == '?')
			return usage_error("unknown option '%s'", argv[optind - 1]);
		if (id == ':')
			return usage_error("option '%s' needs a value", argv[optind - 1]);
		int rc = common_opt(co, id, optarg);
		if (rc < 0)
			return -rc;
		if (rc == 0 && own != NULL) {
			rc = own(ctx, id, optarg);
			if (rc != 0)
				return rc;
		}
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'", argv[optind]);
	return 0;
}

static int open_client(const struct common *co, const char *group, uint32_t inflight,
		       struct dl_client **c)
{
	struct dl_client_opts o = {.timeout_ms = co->timeout_ms,
				   .max_hops = co->max_hops,
				   .max_inflight = inflight,
				   .retry_busy = true,
				   .tls_cert_file = co->tls_cert,
				   .tls_key_file = co->tls_key,
				   .tls_ca_file = co->tls_ca};
	if ((co->tls_cert || co->tls_key || co->tls_ca) &&
	    !(co->tls_cert && co->tls_key && co->tls_ca))
		return usage_error("--tls-cert, --tls-key and --tls-ca go together");
	struct dl_errctx err = {{0}};
	int rc = dl_client_open(co->peers, group, &o, c, &err);
	/* A bad peers string, or a TLS file that cannot be read or does not
	 * check out: the message names the member or the file. */
	if (rc == DL_ECONFIG || rc == DL_EINVAL)
		return usage_error("%s%s", co->tls_cert != NULL ? "" : "--peers: ", err.msg);
	if (rc != 0)
		return op_error(rc, &err);
	return 0;
}

#define COMMON_OPTS                                                            \
	{"peers", required_argument, NULL, OPT_PEERS},                         \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                     \
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},                   \
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},                     \
	{"tls-ca", required_argument, NULL, OPT_TLS_CA},                       \
	{"help", no_argument, NULL, OPT_HELP}

#define TLS_USAGE                                                                        \
	"  --tls-cert FILE  with --tls-key and --tls-ca: mutual TLS (tls+tcp://) with this\n" \
	"                   client certificate (PEM; scripts/make-certs.sh makes one)\n"     \
	"  --tls-key FILE   its private key (PEM)\n"                                          \
	"  --tls-ca FILE    the cluster's CA certificate (PEM)\n"

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

static int cmd_append(int argc, char **argv)
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
	"  --timeout MS     per request (default 5000)\n"
	TLS_USAGE
	"  --help           this text\n"
	"\n"
	"Exit status: 0 all written, 1 an error (entry not committed, compacted, no such\n"
	"group, timeout), 2 usage error.\n";

struct get_args {
	uint64_t index, to;
	bool has_index, has_to, lines;
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

static int cmd_get(int argc, char **argv)
{
	static const struct option opts[] = {
		COMMON_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"member", required_argument, NULL, OPT_MEMBER},
		{"index", required_argument, NULL, OPT_INDEX},
		{"to", required_argument, NULL, OPT_TO},
		{"lines", no_argument, NULL, OPT_LINES},
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

static int cmd_metadata(int argc, char **argv)
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

/* ---- control subcommands: the node's control socket (docs/OPERATIONS.md) ------------ */

#define SET_MAX 48 /* --set KEY=VALUE per add-group */

enum ctl_opt_id {
	OPT_CONTROL = 1100,
	OPT_ID,
	OPT_PREFERRED,
	OPT_SET,
	OPT_DELETE_DATA,
	OPT_TO_ID,
};

struct ctl_args {
	const char *control;
	const char *id;
	const char *preferred;
	const char *to;
	const char *peers; /* add-group: COMMON_OPTS takes --peers into common */
	bool delete_data;
	uint32_t n_set;
	const char *set[SET_MAX];
};

static int ctl_opt(void *ctx, int id, const char *arg)
{
	struct ctl_args *a = ctx;
	switch (id) {
	case OPT_CONTROL: a->control = arg; return 0;
	case OPT_ID: a->id = arg; return 0;
	case OPT_PREFERRED: a->preferred = arg; return 0;
	case OPT_TO_ID: a->to = arg; return 0;
	case OPT_DELETE_DATA: a->delete_data = true; return 0;
	case OPT_SET:
		if (strchr(arg, '=') == NULL || arg[0] == '=')
			return usage_error("--set: expected KEY=VALUE, got '%s'", arg);
		if (a->n_set == SET_MAX)
			return usage_error("--set: at most %d", SET_MAX);
		a->set[a->n_set++] = arg;
		return 0;
	default: return usage_error("unexpected option");
	}
}

#define CTL_OPTS                                                               \
	{"control", required_argument, NULL, OPT_CONTROL},                     \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                     \
	{"help", no_argument, NULL, OPT_HELP}

/* Sends the request in `sb` to the node at `path` and waits (bounded) for
 * the reply into `r` (free it with ctl_reply_free() whatever this returns).
 * An error, or an error reply, is printed. Returns 0 or EXIT_OP. */
static int ctl_call(const char *path, const msgpack_sbuffer *sb, uint32_t timeout_ms,
		    struct ctl_reply *r)
{
	struct dl_errctx err = {{0}};
	if (ctl_client_call(path, sb->data, sb->size, timeout_ms, r, &err) == DL_OK)
		return 0;
	fail_msg("%s", err.msg);
	return EXIT_OP;
}

/* Parses the options, checks --control, prints help. Returns 0 to go on,
 * -1 after --help, or an exit status. */
static int ctl_parse(int argc, char **argv, const struct option *opts, const char *usage,
		     struct common *co, struct ctl_args *a)
{
	int rc = parse_opts(argc, argv, opts, co, ctl_opt, a);
	if (rc != 0)
		return rc;
	if (co->help) {
		fputs(usage, stdout);
		return -1;
	}
	if (a->control == NULL)
		return usage_error("--control is required");
	if (co->timeout_ms == 0)
		co->timeout_ms = 5000;
	return 0;
}

static const char add_group_usage[] =
	"Usage: dledger-ctl add-group --control SOCK --group G --id ID --peers PEERS\n"
	"                             [--preferred-leader ID] [--set KEY=VALUE ...]\n"
	"\n"
	"Starts a member of group G on the node at SOCK and records it in the node's\n"
	"groups.yaml, so it comes back after a restart. Only a group the node does not\n"
	"host may be added: a new one, or one removed earlier (it resumes from its data).\n"
	"\n"
	"  --control SOCK          the node's control socket (controlSocket)\n"
	"  --group G, --id ID      the group, and this node's member id in it\n"
	"  --peers PEERS           every member: id-host:port;id-host:port;...\n"
	"  --preferred-leader ID   preferredLeaderId\n"
	"  --set KEY=VALUE         any per-group configuration key (repeatable)\n"
	"  --timeout MS            wait for the node's answer (default 5000)\n";

static int cmd_add_group(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"id", required_argument, NULL, OPT_ID},
		{"peers", required_argument, NULL, OPT_PEERS},
		{"preferred-leader", required_argument, NULL, OPT_PREFERRED},
		{"set", required_argument, NULL, OPT_SET},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, add_group_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.id == NULL || co.peers == NULL)
		return usage_error("--group, --id and --peers are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 1, "add-group");
	ctl_pack_str(&pk, "keys");
	msgpack_pack_map(&pk, 3 + (a.preferred != NULL) + a.n_set);
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "id", a.id);
	ctl_pack_kstr(&pk, "peers", co.peers);
	if (a.preferred != NULL)
		ctl_pack_kstr(&pk, "preferredLeaderId", a.preferred);
	for (uint32_t i = 0; i < a.n_set; i++) {
		const char *eq = strchr(a.set[i], '=');
		msgpack_pack_str(&pk, (size_t)(eq - a.set[i]));
		msgpack_pack_str_body(&pk, a.set[i], (size_t)(eq - a.set[i]));
		ctl_pack_str(&pk, eq + 1);
	}
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	if (rc == 0) {
		const msgpack_object *r = ctl_map_get(u.map, "resumed");
		printf("added group %s member %s%s\n", co.group, a.id,
		       r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean
			       ? " (resumed from its data)"
			       : "");
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char remove_group_usage[] =
	"Usage: dledger-ctl remove-group --control SOCK --group G --id ID [--delete-data]\n"
	"\n"
	"Stops this node's member ID of group G (its pending requests are answered or\n"
	"failed first) and records the removal in the node's groups.yaml. Its data stays\n"
	"on disk, so add-group can bring it back later, unless --delete-data.\n"
	"\n"
	"  --control SOCK   the node's control socket\n"
	"  --timeout MS     wait for the node's answer (default 5000)\n";

static int cmd_remove_group(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"id", required_argument, NULL, OPT_ID},
		{"delete-data", no_argument, NULL, OPT_DELETE_DATA},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, remove_group_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.id == NULL)
		return usage_error("--group and --id are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 3, "remove-group");
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "id", a.id);
	ctl_pack_str(&pk, "delete_data");
	if (a.delete_data)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	if (rc == 0) {
		char data[4096];
		ctl_reply_str(u.map, "data", data, sizeof(data));
		printf("removed group %s member %s (data %s%s)\n", co.group, a.id,
		       a.delete_data ? "" : "kept in ", data);
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char transfer_usage[] =
	"Usage: dledger-ctl transfer-leader --control SOCK --group G --to ID [--timeout MS]\n"
	"\n"
	"Asks this node's member of group G, which must lead, to hand leadership to\n"
	"member ID, and waits until ID leads or the timeout (default 5000 ms) passes.\n";

static int cmd_transfer_leader(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"to", required_argument, NULL, OPT_TO_ID},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, transfer_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.to == NULL)
		return usage_error("--group and --to are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 3, "transfer-leader");
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "to", a.to);
	ctl_pack_str(&pk, "timeout_ms");
	msgpack_pack_uint32(&pk, co.timeout_ms);
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms + 2000, &u);
	if (rc == 0)
		printf("%s: %s leads (term %" PRIu64 ", after %" PRIu64 " ms)\n", co.group, a.to,
		       ctl_reply_u64(u.map, "term"), ctl_reply_u64(u.map, "elapsed_ms"));
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char status_usage[] =
	"Usage: dledger-ctl status --control SOCK [--json]\n"
	"\n"
	"One row per member hosted by the node: group, member id, role (lead, foll,\n"
	"cand, pre), term, leader, first/last/committed/durable index, client appends\n"
	"pending, and for a leader each follower's lag in entries (id:lag). Names longer\n"
	"than their column end in '~'; --json has them whole, with match indexes.\n";

static json_t *mp_to_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a, mp_to_json(&o->via.array.ptr[i]));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type != MSGPACK_OBJECT_STR)
				continue;
			char key[128];
			snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
			json_object_set_new(m, key, mp_to_json(&o->via.map.ptr[i].val));
		}
		return m;
	}
	default: return json_null();
	}
}

/* `s` in at most `width` bytes: longer ones are cut and end in '~'. */
static const char *abbrev(const char *s, size_t width, char *buf, size_t cap)
{
	size_t n = strlen(s);
	if (n <= width || width + 1 > cap)
		return s;
	memcpy(buf, s, width - 1);
	buf[width - 1] = '~';
	buf[width] = '\0';
	return buf;
}

static void status_row(const msgpack_object *m)
{
	char group[CTL_TEXT_MAX], id[CTL_TEXT_MAX], role[128], leader[CTL_TEXT_MAX];
	char note[160] = "";
	char b1[16], b2[16], b3[16], lag[256] = "";
	ctl_reply_str(m, "group", group, sizeof(group));
	ctl_reply_str(m, "id", id, sizeof(id));
	ctl_reply_str(m, "role", role, sizeof(role));
	ctl_reply_str(m, "leader", leader, sizeof(leader));
	const msgpack_object *f = ctl_map_get(m, "followers");
	size_t n = 0;
	for (uint32_t i = 0; f && f->type == MSGPACK_OBJECT_ARRAY && i < f->via.array.size; i++) {
		char fid[CTL_TEXT_MAX], b4[16];
		ctl_reply_str(&f->via.array.ptr[i], "id", fid, sizeof(fid));
		n += (size_t)snprintf(lag + n, n < sizeof(lag) ? sizeof(lag) - n : 0, "%s%s:%" PRIu64,
				      n ? " " : "", abbrev(fid, 5, b4, sizeof(b4)),
				      ctl_reply_u64(&f->via.array.ptr[i], "lag"));
		if (n >= sizeof(lag))
			break;
	}
	uint64_t damaged = ctl_reply_u64(m, "damaged_index");
	size_t k = strlen(lag);
	if (damaged != 0 && k + 1 < sizeof(lag))
		snprintf(lag + k, sizeof(lag) - k, "%sdamaged:%" PRIu64, k ? " " : "", damaged);
	const msgpack_object *failed = ctl_map_get(m, "failed");
	const msgpack_object *voter = ctl_map_get(m, "voter");
	if (failed && failed->type == MSGPACK_OBJECT_BOOLEAN && failed->via.boolean) {
		snprintf(note, sizeof(note), "  [%s]", role); /* "stopped: disk full" */
		snprintf(role, sizeof(role), "STOP");
	} else if (voter && voter->type == MSGPACK_OBJECT_BOOLEAN && !voter->via.boolean) {
		snprintf(note, sizeof(note), "  [not a voter yet]");
	}
	if (strcmp(role, "STOP") == 0)
		;
	else if (role[0] == 'p')
		snprintf(role, sizeof(role), "pre");
	else
		role[4] = '\0'; /* lead, foll, cand */
	printf("%-8s %-5s %-4s %4" PRIu64 " %-5s %6" PRIu64 " %7" PRIu64 " %7" PRIu64 " %7" PRIu64
	       " %4" PRIu64 " %s%s\n",
	       abbrev(group, 8, b1, sizeof(b1)), abbrev(id, 5, b2, sizeof(b2)), role,
	       ctl_reply_u64(m, "term"), abbrev(leader[0] ? leader : "-", 5, b3, sizeof(b3)),
	       ctl_reply_u64(m, "first"), ctl_reply_u64(m, "last"), ctl_reply_u64(m, "committed"), ctl_reply_u64(m, "durable"),
	       ctl_reply_u64(m, "pending"), lag, note);
}

static int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, status_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 0, "status");
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	const msgpack_object *ms = rc == 0 ? ctl_map_get(u.map, "members") : NULL;
	uint32_t n = ms && ms->type == MSGPACK_OBJECT_ARRAY ? ms->via.array.size : 0;
	if (rc == 0 && co.json) {
		json_t *j = mp_to_json(u.map);
		json_object_del(j, "ok");
		if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
			rc = EXIT_OP;
		putchar('\n');
		json_decref(j);
	} else if (rc == 0) {
		printf("%-8s %-5s %-4s %4s %-5s %6s %7s %7s %7s %4s %s\n", "GROUP", "ID", "ROLE",
		       "TERM", "LEADR", "FIRST", "LAST", "COMMIT", "DURABLE", "PEND", "LAG");
		for (uint32_t i = 0; i < n; i++)
			status_row(&ms->via.array.ptr[i]);
		printf("%u members, %" PRIu64 " leading on this node\n", n,
		       ctl_reply_u64(u.map, "leaders"));
	}
	if (fflush(stdout) != 0)
		rc = EXIT_OP;
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char reload_usage[] =
	"Usage: dledger-ctl reload --control SOCK [--timeout MS]\n"
	"\n"
	"Makes the node re-read its config file (as SIGHUP does): groups.yaml still\n"
	"applies on top; members that appeared start, those that disappeared stop\n"
	"(their data stays); changed keys of a running member and node-wide keys are\n"
	"listed, not applied. An invalid file changes nothing; the error names it.\n"
	"Exit status 1 also when a new member could not be started.\n";

static int cmd_reload(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, reload_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 0, "reload");
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms + 30000, &u);
	if (rc == 0) {
		const msgpack_object *rep = ctl_map_get(u.map, "report");
		const msgpack_object *failed = ctl_map_get(u.map, "failed");
		if (rep != NULL && rep->type == MSGPACK_OBJECT_STR)
			printf("%.*s\n", (int)rep->via.str.size, rep->via.str.ptr);
		if (failed != NULL && failed->type == MSGPACK_OBJECT_ARRAY && failed->via.array.size)
			rc = EXIT_OP;
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

/* ---- the table ------------------------------------------------------------------------ */

struct subcmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static const struct subcmd subcmds[] = {
	{"append", "append entries to a group, print INDEX TERM per entry", cmd_append},
	{"get", "write committed entries' bodies to stdout", cmd_get},
	{"metadata", "show groups and members as their nodes know them", cmd_metadata},
	{"status", "show the members of a node (control socket)", cmd_status},
	{"add-group", "start a member of a group on a node at run time", cmd_add_group},
	{"remove-group", "stop a member of a group on a node at run time", cmd_remove_group},
	{"transfer-leader", "hand a group's leadership to another member", cmd_transfer_leader},
	{"reload", "re-read a node's config file and apply the group changes", cmd_reload},
};

static void main_usage(FILE *f)
{
	fprintf(f, "Usage: dledger-ctl COMMAND [options]   (dledger-ctl COMMAND --help)\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
		fprintf(f, "  %-16s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(f, "\nExit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		if (strcmp(name, "help") == 0 && argc > 2) {
			char *help_argv[] = {argv[2], "--help", NULL};
			for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
				if (strcmp(subcmds[i].name, argv[2]) == 0) {
					g_cmd = subcmds[i].name;
					return subcmds[i].run(2, help_argv);
				}
		}
		main_usage(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0) {
		printf("dledger-ctl %s\n", DLEDGER_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++) {
		if (strcmp(subcmds[i].name, name) == 0) {
			g_cmd = subcmds[i].name;
			return subcmds[i].run(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "dledger-ctl: unknown command '%s'\n", name);
	main_usage(stderr);
	return EXIT_USAGE;
}
