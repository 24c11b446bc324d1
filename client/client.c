/*
 * client.c - the API of the C client (client.h): options, open and close,
 * submitting, cork, the blocking calls. The machinery is in ops.c, conn.c
 * and timer.c; client_internal.h says their order and which thread owns
 * what.
 */
#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "client/client_internal.h"
#include "common/dl_time.h"

/* ---- options ------------------------------------------------------------------ */

static int resolve_opts(const struct dl_client_opts *in, struct dl_client_opts *o,
			struct dl_errctx *err)
{
	if (in)
		*o = *in;
	else
		memset(o, 0, sizeof(*o));
	if (o->timeout_ms == 0)
		o->timeout_ms = 5000;
	if (o->max_hops == 0)
		o->max_hops = 3;
	if (o->max_inflight == 0)
		o->max_inflight = 256;
	if (o->connect_timeout_ms == 0)
		o->connect_timeout_ms = 500;
	if (o->backoff_min_ms == 0)
		o->backoff_min_ms = 10;
	if (o->backoff_max_ms == 0)
		o->backoff_max_ms = 200;
	if (o->max_frame_bytes == 0)
		o->max_frame_bytes = TP_DEFAULT_MAX_FRAME_BYTES;
	if (o->max_inflight > DL_CLIENT_MAX_INFLIGHT)
		return dl_errf(err, DL_EINVAL, "max_inflight %u is over %u", o->max_inflight,
			       DL_CLIENT_MAX_INFLIGHT);
	if (o->max_hops > DL_CLIENT_MAX_HOPS)
		return dl_errf(err, DL_EINVAL, "max_hops %u is over %u", o->max_hops,
			       DL_CLIENT_MAX_HOPS);
	if (o->get_wait_ms != DL_CLIENT_NO_WAIT &&
	    (o->get_wait_ms > TP_GET_WAIT_MAX_MS || o->get_wait_ms >= o->timeout_ms))
		return dl_errf(err, DL_EINVAL,
			       "get_wait_ms %u must be at most %u and below timeout_ms %u",
			       o->get_wait_ms, TP_GET_WAIT_MAX_MS, o->timeout_ms);
	if (o->backoff_min_ms > o->backoff_max_ms)
		return dl_errf(err, DL_EINVAL, "backoff_min_ms %u is over backoff_max_ms %u",
			       o->backoff_min_ms, o->backoff_max_ms);
	if (o->max_frame_bytes < 4096 || o->max_frame_bytes > UINT32_MAX)
		return dl_errf(err, DL_EINVAL, "max_frame_bytes %zu is out of range",
			       o->max_frame_bytes);
	bool any_tls = o->tls_cert_file != NULL || o->tls_key_file != NULL ||
		       o->tls_ca_file != NULL;
	if (any_tls && (o->tls_cert_file == NULL || o->tls_key_file == NULL ||
			o->tls_ca_file == NULL))
		return dl_errf(err, DL_ECONFIG, "TLS needs a certificate, its key and the CA file "
						"together; %s is missing",
			       o->tls_cert_file == NULL ? "the certificate"
			       : o->tls_key_file == NULL ? "the key"
							 : "the CA file");
	return 0;
}

/* ---- slots ---------------------------------------------------------------------- */

/* Takes a free slot, waiting (unless `wait` is false) until `deadline`. */
static int op_alloc(struct dl_client *c, bool wait, uint64_t deadline, struct op **out,
		    struct dl_errctx *err)
{
	while (c->free_head == UINT32_MAX) {
		if (c->closing)
			return dl_errf(err, DL_ECLOSED, "client closing");
		if (!wait)
			return dl_errf(err, DL_EBUSY, "%u requests in flight already",
				       c->o.max_inflight);
		uint64_t now = now_ns();
		if (now >= deadline)
			return dl_errf(err, DL_ETIMEDOUT,
				       "no free in-flight slot within %u ms (%u in flight)",
				       c->o.timeout_ms, c->o.max_inflight);
		if (cl_tl_cork == c) {
			/* Corked: what waits for the uncork must go now, or
			 * no slot would ever come free. */
			cl_tl_cork = NULL;
			cl_pump_all(c, now);
		}
		struct timespec ts = dl_timespec_at(deadline);
		pthread_cond_timedwait(&c->slot_cv, &c->mu, &ts);
	}
	if (c->closing)
		return dl_errf(err, DL_ECLOSED, "client closing");
	DL_ASSERT(c->free_head < c->cap && c->n_active < c->cap);
	struct op *op = &c->ops[c->free_head];
	DL_ASSERT(op->state == OP_FREE && op->slot == c->free_head);
	c->free_head = op->next_free;
	uint32_t slot = op->slot;
	memset(op, 0, sizeof(*op));
	op->slot = slot;
	op->state = OP_NEW;
	op->peer = -1;
	c->n_active++;
	DL_ASSERT(c->n_active <= c->cap);
	*out = op;
	return 0;
}

/* ---- cork ---------------------------------------------------------------------------- */

void dl_client_cork(struct dl_client *c)
{
	if (cl_tl_client == c)
		return; /* a callback: its reply frame corks already */
	cl_tl_cork = c;
}

void dl_client_uncork(struct dl_client *c)
{
	if (cl_tl_client == c || cl_tl_cork != c)
		return;
	cl_tl_cork = NULL;
	pthread_mutex_lock(&c->mu);
	cl_pump_all(c, now_ns());
	pthread_mutex_unlock(&c->mu);
}

/* ---- open and close ---------------------------------------------------------------------- */

static int open_peers(struct dl_client *c, const char *peers, const char *group,
		      struct dl_errctx *err)
{
	int rc = cfg_parse_peers(peers ? peers : "", &c->peers, err);
	if (rc != 0)
		return rc;
	for (uint32_t i = 0; i < c->peers.n_members; i++)
		if (cfg_format_addr(c->peers.members[i].host, c->peers.members[i].port,
				    c->addrs[i], sizeof(c->addrs[i])) < 0)
			return dl_errf(err, DL_ECONFIG, "member %s: address too long",
				       c->peers.members[i].id);
	if (group != NULL && group[0] != '\0') {
		if (!tp_name_is_valid(group, strlen(group)))
			return dl_errf(err, DL_ECONFIG, "invalid group name '%s'", group);
		snprintf(c->group, sizeof(c->group), "%s", group);
	}
	return 0;
}

static int init_sync(struct dl_client *c)
{
	if (dl_cond_init_monotonic(&c->slot_cv) != 0)
		return DL_ENOMEM;
	if (dl_cond_init_monotonic(&c->timer_cv) != 0) {
		pthread_cond_destroy(&c->slot_cv);
		return DL_ENOMEM;
	}
	pthread_mutex_init(&c->mu, NULL);
	return 0;
}

int dl_client_open(const char *peers, const char *group, const struct dl_client_opts *opts,
		   struct dl_client **out, struct dl_errctx *err)
{
	*out = NULL;
	struct dl_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	int rc = resolve_opts(opts, &c->o, err);
	if (rc == 0)
		rc = open_peers(c, peers, group, err);
	if (rc == 0 && c->o.tls_cert_file != NULL) {
		rc = tp_tls_load(c->o.tls_cert_file, c->o.tls_key_file, c->o.tls_ca_file, false,
				 &c->tls, err);
		if (rc == DL_EIO)
			rc = DL_ECONFIG; /* an unreadable file is a bad option here */
	}
	c->o.tls_cert_file = c->o.tls_key_file = c->o.tls_ca_file = NULL;
	if (rc != 0)
		goto err_free;
	c->cap = c->o.max_inflight;
	c->ops = calloc(c->cap, sizeof(*c->ops));
	if (c->ops == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	c->free_head = UINT32_MAX;
	for (uint32_t i = c->cap; i-- > 0;) {
		c->ops[i].slot = i;
		c->ops[i].next_free = c->free_head;
		c->free_head = i;
	}
	c->kick_min_ns = NO_WAKE;
	if (init_sync(c) != 0) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	if (pthread_create(&c->timer, NULL, cl_timer_main, c) != 0) {
		rc = dl_errf(err, DL_ENOMEM, "cannot start the timer thread");
		goto err_sync;
	}
	c->timer_started = true;
	*out = c;
	return 0;
err_sync:
	pthread_cond_destroy(&c->timer_cv);
	pthread_cond_destroy(&c->slot_cv);
	pthread_mutex_destroy(&c->mu);
err_free:
	free(c->ops);
	cfg_peers_free(&c->peers);
	tp_tls_free(c->tls);
	free(c);
	return rc;
}

void dl_client_close(struct dl_client *c)
{
	if (c == NULL)
		return;
	DL_ASSERT(cl_tl_client != c);
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_cond_broadcast(&c->timer_cv);
	pthread_cond_broadcast(&c->slot_cv);
	uint32_t n_conns = c->n_conns;
	pthread_mutex_unlock(&c->mu);
	if (c->timer_started)
		pthread_join(c->timer, NULL);
	/* Conns are only added with mu held and not while closing. When a
	 * link's close returns, none of its callbacks runs or will run (they
	 * take mu: not held here). */
	for (uint32_t i = 0; i < n_conns; i++)
		tp_link_close(c->conns[i]->link);
	cl_tl_client = c;
	pthread_mutex_lock(&c->mu);
	for (uint32_t i = 0; i < c->cap; i++) {
		struct op *op = &c->ops[i];
		if (op->state != OP_SENT && op->state != OP_PARKED && op->state != OP_BACKOFF)
			continue;
		cl_detailf(op->detail, "client closed");
		struct completion cp;
		cl_op_finish(c, op, DL_ECLOSED, NULL, NULL, &cp);
		pthread_mutex_unlock(&c->mu);
		cl_run_completion(&cp);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	cl_tl_client = NULL;
	/* Only conn_get() uses it, and no conn is made while closing; the
	 * links' dialers hold copies of what they need. */
	tp_tls_free(c->tls);
	c->tls = NULL;
	for (uint32_t i = 0; i < c->n_conns; i++)
		free(c->conns[i]);
	for (uint32_t i = 0; i < c->cap; i++)
		free(c->ops[i].req);
	free(c->ops);
	pthread_cond_destroy(&c->timer_cv);
	pthread_cond_destroy(&c->slot_cv);
	pthread_mutex_destroy(&c->mu);
	cfg_peers_free(&c->peers);
	free(c);
}

/* ---- submitting ---------------------------------------------------------------------------- */

struct submit_args {
	enum op_kind kind;
	const char *member;               /* pin to this member (NULL: any) */
	const char *addr;                 /* OP_NODE_META */
	const struct dl_client_buf *bufs; /* OP_APPEND */
	uint32_t n;
	const struct tp_get *get; /* OP_GET */
	op_done_fn done;
	dl_client_append_fn append_fn;
	void *arg;
};

static int submit_target(struct dl_client *c, struct op *op, const struct submit_args *sa,
			 struct dl_errctx *err)
{
	if (sa->kind != OP_NODE_META)
		return cl_target_initial(c, op, sa->member, err);
	cl_set_target(c, op, "", sa->addr, -1);
	op->pinned = true;
	return 0;
}

/* Queues a request; its completion runs once later unless this fails. */
static int submit(struct dl_client *c, const struct submit_args *sa, struct dl_errctx *err)
{
	uint64_t start = now_ns();
	struct op *op = NULL;
	pthread_mutex_lock(&c->mu);
	int rc = op_alloc(c, cl_tl_client != c, start + ms_ns(c->o.timeout_ms), &op, err);
	if (rc != 0) {
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	op->kind = sa->kind;
	op->deadline_ns = start + ms_ns(c->o.timeout_ms);
	op->n_entries = sa->n;
	if (sa->get)
		op->get = *sa->get;
	op->done = sa->done;
	op->append_fn = sa->append_fn;
	op->arg = sa->arg;
	c->seq++;
	op->rid = (c->seq << SLOT_BITS) | op->slot;
	rc = submit_target(c, op, sa, err);
	pthread_mutex_unlock(&c->mu);

	/* The op is NEW: only this thread touches it. Copy the bodies without
	 * holding the lock. */
	if (rc == 0) {
		rc = cl_encode_req(c, op, sa->bufs);
		if (rc != 0)
			dl_errf(err, rc, "%s", op->detail);
	}
	pthread_mutex_lock(&c->mu);
	if (rc == 0 && c->closing)
		rc = dl_errf(err, DL_ECLOSED, "client closing");
	if (rc == 0) {
		rc = cl_transmit(c, op, now_ns());
		if (rc != 0)
			dl_errf(err, rc, "%s", op->detail);
	}
	DL_ASSERT(rc != 0 || op->state == OP_SENT || op->state == OP_PARKED ||
		  op->state == OP_BACKOFF);
	if (rc == 0)
		timer_kick(c, op->deadline_ns);
	else
		cl_op_release(c, op);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

static int check_append(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			struct dl_errctx *err)
{
	if (c->group[0] == '\0')
		return dl_errf(err, DL_EINVAL, "the client was opened without a group");
	if (n == 0 || entries == NULL)
		return dl_errf(err, DL_EINVAL, "no entries to append");
	if (n > TP_MAX_ENTRIES)
		return dl_errf(err, DL_ETOOBIG, "%u entries in one batch, at most %u", n,
			       TP_MAX_ENTRIES);
	size_t total = 0;
	for (uint32_t i = 0; i < n; i++) {
		if (entries[i].len > 0 && entries[i].data == NULL)
			return dl_errf(err, DL_EINVAL, "entry %u has no data", i);
		if (entries[i].len > c->o.max_frame_bytes - total)
			return dl_errf(err, DL_ETOOBIG,
				       "the batch is over max_frame_bytes (%zu bytes)",
				       c->o.max_frame_bytes);
		total += entries[i].len;
	}
	return 0;
}

int dl_client_append_async(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			   dl_client_append_fn fn, void *arg, struct dl_errctx *err)
{
	if (c == NULL || fn == NULL)
		return dl_errf(err, DL_EINVAL, "no client or no callback");
	int rc = check_append(c, entries, n, err);
	if (rc != 0)
		return rc;
	struct submit_args sa = {.kind = OP_APPEND, .bufs = entries, .n = n, .append_fn = fn,
				 .arg = arg};
	return submit(c, &sa, err);
}

/* ---- blocking calls -------------------------------------------------------------------------- */

/* The one way to wait for an op: the op's completion callback copies its
 * completion here and wakes the caller. Used by every blocking call. */
struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	struct completion cp;
};

static void waiter_init(struct waiter *w)
{
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->done = false;
	memset(&w->cp, 0, sizeof(w->cp));
}

static void waiter_done(void *arg, struct completion *cp)
{
	struct waiter *w = arg;
	pthread_mutex_lock(&w->mu);
	DL_ASSERT(!w->done); /* a completion runs exactly once */
	w->cp = *cp;
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void waiter_wait(struct waiter *w)
{
	pthread_mutex_lock(&w->mu);
	while (!w->done)
		pthread_cond_wait(&w->cv, &w->mu);
	pthread_mutex_unlock(&w->mu);
	DL_ASSERT(w->cp.rc != 0 || w->cp.detail[0] == '\0');
}

static void waiter_destroy(struct waiter *w)
{
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

/* Submits and waits. On 0, w->cp.msg (if any) is the caller's to free. */
static int call(struct dl_client *c, struct submit_args *sa, struct waiter *w,
		struct dl_errctx *err)
{
	if (cl_tl_client == c)
		return dl_errf(err, DL_EINVAL, "blocking client call from a client callback");
	if (sa->kind == OP_APPEND) {
		int rc = check_append(c, sa->bufs, sa->n, err);
		if (rc != 0)
			return rc;
	}
	waiter_init(w);
	sa->done = waiter_done;
	sa->arg = w;
	int rc = submit(c, sa, err);
	if (rc == 0)
		waiter_wait(w);
	waiter_destroy(w);
	if (rc != 0)
		return rc;
	if (w->cp.rc != 0)
		return dl_errf(err, w->cp.rc, "%s", w->cp.detail);
	return 0;
}

int dl_client_append_batch(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			   uint64_t *first_index, uint64_t *term, struct dl_errctx *err)
{
	if (c == NULL)
		return dl_errf(err, DL_EINVAL, "no client");
	struct submit_args sa = {.kind = OP_APPEND, .bufs = entries, .n = n};
	struct waiter w;
	int rc = call(c, &sa, &w, err);
	if (rc != 0)
		return rc;
	DL_ASSERT(w.cp.kind == OP_APPEND && w.cp.msg == NULL);
	DL_ASSERT(w.cp.ar.first_index > 0 && w.cp.ar.n == n);
	if (first_index)
		*first_index = w.cp.ar.first_index;
	if (term)
		*term = w.cp.ar.term;
	return 0;
}

int dl_client_append(struct dl_client *c, const void *data, size_t len, uint64_t *index,
		     uint64_t *term, struct dl_errctx *err)
{
	struct dl_client_buf b = {.data = data, .len = len};
	return dl_client_append_batch(c, &b, 1, index, term, err);
}

/* Hands the entries of one get reply to `fn`; advances *next. */
static int get_deliver(const struct tp_hdr *h, uint64_t *next, uint64_t to,
		       struct raft_entry *ents, uint32_t cap, dl_client_read_fn fn, void *arg,
		       bool *end, struct dl_errctx *err)
{
	struct tp_get_resp r;
	int rc = tp_decode_get_resp(h, &r, ents, cap);
	if (rc != 0)
		return dl_errf(err, rc, "malformed get reply (%s)", dl_strerror(rc));
	if (r.code != 0)
		return dl_errf(err, r.code, "%s", dl_strerror(r.code));
	if (r.first_index != *next || r.n == 0 || r.n - 1 > to - *next)
		return dl_errf(err, DL_EPROTO, "get reply for %llu+%u, asked %llu..%llu",
			       (unsigned long long)r.first_index, r.n,
			       (unsigned long long)*next, (unsigned long long)to);
	for (uint32_t i = 0; i < r.n; i++) {
		struct dl_client_entry e = {.index = *next + i, .term = ents[i].term,
					    .type = ents[i].type, .data = ents[i].data,
					    .len = ents[i].len};
		rc = fn(arg, &e);
		if (rc != 0)
			return rc;
	}
	*end = r.n - 1 == to - *next;
	*next += r.n;
	return 0;
}

int dl_client_read(struct dl_client *c, uint64_t index, uint64_t to, const char *member,
		   dl_client_read_fn fn, void *arg, struct dl_errctx *err)
{
	if (c == NULL || fn == NULL)
		return dl_errf(err, DL_EINVAL, "no client or no callback");
	if (c->group[0] == '\0')
		return dl_errf(err, DL_EINVAL, "the client was opened without a group");
	if (index == 0 || to < index)
		return dl_errf(err, DL_EINVAL, "bad range %llu..%llu", (unsigned long long)index,
			       (unsigned long long)to);
	uint64_t want = to - index + 1; /* >= 1: index >= 1 */
	uint32_t cap = want > TP_MAX_ENTRIES ? TP_MAX_ENTRIES : (uint32_t)want;
	struct raft_entry *ents = malloc(cap * sizeof(*ents));
	if (ents == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	uint64_t next = index;
	bool end = false;
	int rc = 0;
	/* Each round hands at least one entry on, or ends. */
	while (!end && rc == 0) {
		struct tp_get g = {.index = next, .to = to, .max_bytes = c->o.get_max_bytes};
		/* Left out when unset: the member's default, and a GET that
		 * nodes older than the field read too. */
		if (c->o.get_wait_ms != 0) {
			g.has_wait = true;
			g.wait_ms = c->o.get_wait_ms == DL_CLIENT_NO_WAIT ? 0 : c->o.get_wait_ms;
		} else if (c->o.timeout_ms <= TP_GET_WAIT_DEFAULT_MS) {
			/* The default wait would outlast the request. */
			g.has_wait = true;
			g.wait_ms = c->o.timeout_ms / 2;
		}
		struct submit_args sa = {.kind = OP_GET, .member = member, .get = &g};
		struct waiter w;
		rc = call(c, &sa, &w, err);
		if (rc == 0) {
			rc = get_deliver(&w.cp.h, &next, to, ents, cap, fn, arg, &end, err);
			nng_msg_free(w.cp.msg);
		}
	}
	free(ents);
	return rc;
}

struct get_adapter {
	dl_client_entry_fn fn;
	void *arg;
};

static int get_adapt(void *arg, const struct dl_client_entry *e)
{
	const struct get_adapter *ga = arg;
	return ga->fn(ga->arg, e->index, e->term, e->data, e->len);
}

int dl_client_get(struct dl_client *c, uint64_t index, uint64_t to, const char *member,
		  dl_client_entry_fn fn, void *arg, struct dl_errctx *err)
{
	if (fn == NULL)
		return dl_errf(err, DL_EINVAL, "no callback");
	struct get_adapter ga = {.fn = fn, .arg = arg};
	return dl_client_read(c, index, to, member, get_adapt, &ga, err);
}

int dl_client_metadata(struct dl_client *c, const char *member, struct tp_group_meta *out,
		       struct dl_errctx *err)
{
	if (c == NULL || out == NULL)
		return dl_errf(err, DL_EINVAL, "no client or no output");
	if (c->group[0] == '\0')
		return dl_errf(err, DL_EINVAL, "the client was opened without a group");
	struct submit_args sa = {.kind = OP_META, .member = member};
	struct waiter w;
	int rc = call(c, &sa, &w, err);
	if (rc != 0)
		return rc;
	size_t cursor = 0;
	rc = tp_decode_metadata_resp(&w.cp.h, &cursor, out);
	nng_msg_free(w.cp.msg);
	if (rc != 0)
		return dl_errf(err, DL_EPROTO, "malformed metadata reply (%s)", dl_strerror(rc));
	if (out->leader[0] != '\0' && strcmp(out->group, c->group) == 0) {
		pthread_mutex_lock(&c->mu);
		int peer = cfg_peers_find(&c->peers, out->leader);
		const char *addr = peer >= 0 ? c->addrs[peer] : out->leader_addr;
		/* Not a member taken for down: its followers name it until
		 * they elect another (see redirect()). */
		if (addr[0] != '\0' && !cl_addr_suspect(c, addr, now_ns()))
			cl_hint_set(c, out->leader, addr, peer);
		pthread_mutex_unlock(&c->mu);
	}
	return 0;
}

int dl_client_node_metadata(struct dl_client *c, const char *addr, struct tp_group_meta **rows,
			    uint32_t *n, struct dl_errctx *err)
{
	*rows = NULL;
	*n = 0;
	if (c == NULL || addr == NULL || addr[0] == '\0' || strlen(addr) > TP_ADDR_MAX)
		return dl_errf(err, DL_EINVAL, "no client or bad address");
	struct submit_args sa = {.kind = OP_NODE_META, .addr = addr};
	struct waiter w;
	int rc = call(c, &sa, &w, err);
	if (rc != 0)
		return rc;
	struct tp_group_meta *v = NULL;
	uint32_t cnt = 0, cap = 0;
	size_t cursor = 0;
	for (;;) {
		if (cnt == cap) {
			cap = cap ? cap * 2 : 8;
			struct tp_group_meta *nv = realloc(v, cap * sizeof(*v));
			if (nv == NULL) {
				rc = dl_errf(err, DL_ENOMEM, "out of memory");
				break;
			}
			v = nv;
		}
		rc = tp_decode_metadata_resp(&w.cp.h, &cursor, &v[cnt]);
		if (rc == DL_ENOTFOUND) {
			rc = 0;
			break;
		}
		if (rc != 0) {
			rc = dl_errf(err, DL_EPROTO, "malformed metadata reply from %s", addr);
			break;
		}
		cnt++;
	}
	nng_msg_free(w.cp.msg);
	if (rc != 0 || cnt == 0) {
		free(v);
		return rc;
	}
	*rows = v;
	*n = cnt;
	return 0;
}

uint32_t dl_client_members(const struct dl_client *c) { return c->peers.n_members; }

const char *dl_client_member_id(const struct dl_client *c, uint32_t i)
{
	return i < c->peers.n_members ? c->peers.members[i].id : NULL;
}

const char *dl_client_member_addr(const struct dl_client *c, uint32_t i)
{
	return i < c->peers.n_members ? c->addrs[i] : NULL;
}
