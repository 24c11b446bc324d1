/*
 * client.c - the C client (client.h).
 *
 * Threads and data:
 *  - everything in struct dl_client and its ops and conns is guarded by
 *    `mu`, except what is immutable after dl_client_open() (options, peers,
 *    group) and each conn's socket and thread handle (set before the conn is
 *    published, read by dl_client_close() after the threads are joined);
 *  - one receiver thread per conn reads replies (nng_recvmsg, without the
 *    lock), then matches each to its op under `mu`;
 *  - nng's pipe callbacks (connection up/down) take `mu` to send the ops
 *    parked on the conn or to retry those in flight on it; they never run a
 *    user callback (an op to fail from there is handed to the timer);
 *  - the timer thread wakes at the earliest deadline, backoff end or connect
 *    timeout (`timer_wake_ns`, lowered by timer_kick());
 *  - callbacks always run without `mu`, on the receiver or timer thread (or
 *    in dl_client_close()). tl_client marks those threads so the blocking
 *    calls can refuse to run there (they would wait for themselves).
 *
 * An op is one request in a slot of `ops`: FREE -> NEW (being encoded by the
 * submitter, or between states) -> SENT / PARKED (in its conn's FIFO queue,
 * waiting for the connection or for room in its window) / BACKOFF (waiting
 * to be sent again) -> FREE. Each attempt gets a new request_id,
 * (seq << SLOT_BITS) | slot, so a late answer to an earlier attempt is
 * recognised and dropped.
 *
 * At most CONN_WINDOW requests are outstanding per connection: the node's
 * raw REP socket queues at most 64 replies per connection (nng's xrep0
 * per-pipe send queue) and sends without blocking, so a larger burst of
 * replies would be dropped and those requests would only time out.
 */
#include "client/client.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config/config.h"
#include "transport/transport.h"

#define SLOT_BITS 16
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define NO_WAKE   UINT64_MAX
#define NO_SLOT   UINT32_MAX
#define CONN_WINDOW 64 /* == nng xrep0's per-pipe reply queue; see above */
/* The receiver wakes this often to check rx_stop. With nng 1.5 an
 * nng_recvmsg() that races nng_close() can wait forever (the socket's
 * receive queue takes a get after it was closed), so a receiver is stopped
 * and joined before its socket is closed, never the other way round. */
#define RX_POLL_MS 100
#define DETAIL_MAX 256
#define PACK_MAX_BYTES (256u * 1024) /* requests packed into one nng message */
#define REDIAL_NS      10000000000ull /* see struct conn's dialer; not sooner: closing a dialer
					   * mid-handshake can end the node's accept loop */

_Static_assert(DL_CLIENT_MAX_INFLIGHT <= (1u << SLOT_BITS), "slots fit the request id");

enum op_kind { OP_APPEND, OP_GET, OP_META, OP_NODE_META };
enum op_state { OP_FREE = 0, OP_NEW, OP_PARKED, OP_SENT, OP_BACKOFF };

struct completion;
typedef void (*op_done_fn)(void *arg, struct completion *cp);

/* What a finished op hands to its callback, copied out of the slot so the
 * slot is free again before the callback runs. `msg` (GET and METADATA
 * replies) belongs to the callback; `h` points into it. */
struct completion {
	enum op_kind kind;
	int rc;
	char detail[DETAIL_MAX];
	char member[TP_NAME_MAX + 1];
	struct tp_append_resp ar;
	nng_msg *msg;
	struct tp_hdr h;
	op_done_fn done;
	dl_client_append_fn append_fn;
	void *arg;
};

struct conn {
	struct dl_client *c;
	char addr[TP_ADDR_MAX + 1];
	nng_socket sock;
	pthread_t rx;
	bool rx_started;
	atomic_bool rx_stop; /* the receiver exits; its socket is closed after */
	uint32_t pipes; /* connections up (0 or 1 for a dialer) */
	nng_pipe pipe;  /* the one up (id 0: none); closed first (tp_close_bounded) */
	/* TLS: the dialer, replaced by the timer thread when the connection has
	 * been down for REDIAL_NS (nng 1.5.2 can end a TLS dialer's redial loop
	 * for good: transport/endpoint.c, "nng 1.5.2's accept and dial loops") */
	nng_dialer dialer;
	uint64_t down_since_ns; /* 0: up */
	bool up;
	bool failed; /* lost, or not made within connect_timeout_ms; cleared when up */
	uint32_t n_sent;          /* ops SENT here, <= CONN_WINDOW */
	uint32_t wq_head, wq_tail; /* PARKED ops, FIFO (slots; NO_SLOT: none) */
	/* Until then the member here is taken for down although its
	 * connection is up: it left a request unanswered for half the timeout
	 * (a partitioned leader keeps its TCP connections). Not asked first,
	 * not followed when named as leader; see suspect_silent(). */
	uint64_t suspect_until_ns;
};

struct op {
	enum op_kind kind;
	enum op_state state;
	uint32_t slot;
	uint32_t next_free;
	uint32_t wq_prev, wq_next; /* in conn->wq while PARKED */
	uint64_t rid;
	uint64_t deadline_ns;
	uint64_t wake_ns; /* BACKOFF: when to send; PARKED: connect timeout */
	uint64_t sent_ns; /* SENT: when this attempt left */
	struct conn *conn;
	char id[TP_NAME_MAX + 1];   /* target member; "" for node metadata */
	char addr[TP_ADDR_MAX + 1]; /* its address */
	int peer;                   /* its place in peers, -1 if not there */
	bool pinned;                /* never moves to another member */
	uint32_t hops;
	uint32_t backoff_ms;
	int fail_rc; /* set by a pipe callback: the timer fails the op with it */
	uint32_t n_entries;
	uint8_t *req; /* the encoded request for (id, rid) */
	size_t req_len;
	struct tp_get get;
	char last[DETAIL_MAX];   /* the last reason to try elsewhere */
	char detail[DETAIL_MAX]; /* why it failed */
	op_done_fn done;
	dl_client_append_fn append_fn;
	void *arg;
};

struct dl_client {
	struct dl_client_opts o; /* the tls_* paths are not kept: see tls */
	struct tp_tls *tls;      /* NULL: plaintext */
	struct cfg_peers peers;
	char addrs[CFG_MAX_MEMBERS][CFG_ADDR_STR_MAX];
	char group[TP_NAME_MAX + 1]; /* "" when opened without one */

	pthread_mutex_t mu;
	pthread_cond_t slot_cv;  /* a slot was freed, or closing */
	pthread_cond_t timer_cv; /* an earlier wake-up, or closing */
	pthread_t timer;
	bool timer_started;
	bool closing;
	uint64_t timer_wake_ns; /* when the timer sleeps until; 0 while it scans */
	uint64_t kick_min_ns;   /* earliest wake asked for while it scanned */

	struct op *ops;
	uint32_t cap;
	uint32_t free_head; /* UINT32_MAX: none */
	uint32_t n_active;
	uint64_t seq;

	struct conn *conns[DL_CLIENT_MAX_CONNS];
	uint32_t n_conns;

	/* The leader as last learned (from a success or a redirect). */
	bool hint;
	int hint_peer;
	char hint_id[TP_NAME_MAX + 1];
	char hint_addr[TP_ADDR_MAX + 1];
};

static _Thread_local struct dl_client *tl_client;
/* Set by a receiver while it runs the completions of one reply frame:
 * requests the callbacks submit to this client wait (PARKED) and leave
 * together when the frame is done (see pump()). */
static _Thread_local struct dl_client *tl_cork;

static void op_detach(struct dl_client *c, struct op *op);
static struct conn *conn_find(struct dl_client *c, const char *addr);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t ms_ns(uint32_t ms) { return (uint64_t)ms * 1000000ull; }

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static void detailf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void detailf(char *buf, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, DETAIL_MAX, fmt, ap);
	va_end(ap);
}

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
static void pump(struct dl_client *c, struct conn *cn, uint64_t now);
static void pump_all(struct dl_client *c, uint64_t now);

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
		if (tl_cork == c) {
			/* Corked: what waits for the uncork must go now, or
			 * no slot would ever come free. */
			tl_cork = NULL;
			pump_all(c, now);
		}
		struct timespec ts = {.tv_sec = (time_t)(deadline / 1000000000ull),
				      .tv_nsec = (long)(deadline % 1000000000ull)};
		pthread_cond_timedwait(&c->slot_cv, &c->mu, &ts);
	}
	if (c->closing)
		return dl_errf(err, DL_ECLOSED, "client closing");
	struct op *op = &c->ops[c->free_head];
	DL_ASSERT(op->state == OP_FREE);
	c->free_head = op->next_free;
	uint32_t slot = op->slot;
	memset(op, 0, sizeof(*op));
	op->slot = slot;
	op->state = OP_NEW;
	op->peer = -1;
	c->n_active++;
	*out = op;
	return 0;
}

static void op_release(struct dl_client *c, struct op *op)
{
	DL_ASSERT(op->state != OP_FREE);
	DL_ASSERT(c->n_active > 0);
	free(op->req);
	op->req = NULL;
	op->state = OP_FREE;
	op->next_free = c->free_head;
	c->free_head = op->slot;
	c->n_active--;
	pthread_cond_signal(&c->slot_cv);
}

/* Frees the slot and fills `cp` for the callback (run it without `mu`).
 * `msg` (may be NULL) goes to the callback. */
static void op_finish(struct dl_client *c, struct op *op, int rc, nng_msg *msg,
		      const struct tp_hdr *h, struct completion *cp)
{
	op_detach(c, op);
	memset(cp, 0, sizeof(*cp));
	cp->kind = op->kind;
	cp->rc = rc;
	memcpy(cp->detail, rc != 0 ? op->detail : "", rc != 0 ? DETAIL_MAX : 1);
	snprintf(cp->member, sizeof(cp->member), "%s", op->id);
	cp->msg = msg;
	if (h)
		cp->h = *h;
	cp->done = op->done;
	cp->append_fn = op->append_fn;
	cp->arg = op->arg;
	op_release(c, op);
}

static void run_completion(struct completion *cp)
{
	if (cp->append_fn) {
		struct dl_client_result r = {.code = cp->rc, .member = cp->member,
					     .detail = cp->detail};
		if (cp->rc == 0) {
			r.first_index = cp->ar.first_index;
			r.term = cp->ar.term;
			r.n = cp->ar.n;
		}
		cp->append_fn(cp->arg, &r);
		if (cp->msg)
			nng_msg_free(cp->msg);
		return;
	}
	DL_ASSERT(cp->done != NULL);
	cp->done(cp->arg, cp);
}

/* ---- timer kicks ------------------------------------------------------------------- */

static void timer_kick(struct dl_client *c, uint64_t when)
{
	if (when < c->kick_min_ns)
		c->kick_min_ns = when;
	if (c->timer_wake_ns != 0 && when < c->timer_wake_ns)
		pthread_cond_signal(&c->timer_cv);
}

/* ---- targets ------------------------------------------------------------------------ */

static void set_target(struct dl_client *c, struct op *op, const char *id, const char *addr,
		       int peer)
{
	DL_ASSERT(peer < (int)c->peers.n_members);
	snprintf(op->id, sizeof(op->id), "%s", id);
	snprintf(op->addr, sizeof(op->addr), "%s", addr);
	op->peer = peer;
}

static void set_target_peer(struct dl_client *c, struct op *op, int i)
{
	DL_ASSERT(i >= 0 && (uint32_t)i < c->peers.n_members);
	set_target(c, op, c->peers.members[i].id, c->addrs[i], i);
}

static void hint_set(struct dl_client *c, const char *id, const char *addr, int peer)
{
	c->hint = true;
	c->hint_peer = peer;
	snprintf(c->hint_id, sizeof(c->hint_id), "%s", id);
	snprintf(c->hint_addr, sizeof(c->hint_addr), "%s", addr);
}

/* Forgets the leader if it is the member at `addr`. */
static void hint_drop(struct dl_client *c, const char *addr)
{
	if (c->hint && strcmp(c->hint_addr, addr) == 0)
		c->hint = false;
}

/* Whether the member at `addr` is taken for down (conn->suspect_until_ns). */
static bool addr_suspect(struct dl_client *c, const char *addr, uint64_t now)
{
	const struct conn *cn = conn_find(c, addr);
	return cn != NULL && cn->suspect_until_ns > now;
}

/* The member after `from` in peers order (from the first when `from` < 0)
 * that is not taken for down; `from` itself comes last. When every member
 * is, the plain next: suspicion only orders the search, it never ends it. */
static int member_after(struct dl_client *c, int from, uint64_t now)
{
	int n = (int)c->peers.n_members;
	DL_ASSERT(n > 0 && from < n);
	int first = from < 0 ? 0 : (from + 1) % n;
	for (int k = 0; k < n; k++) {
		int i = (first + k) % n;
		if (!addr_suspect(c, c->addrs[i], now))
			return i;
	}
	return first;
}

/* The first member to ask: `member` if given (and then only it), else the
 * leader last learned of, else the first member of peers not taken for
 * down. */
static int target_initial(struct dl_client *c, struct op *op, const char *member,
			  struct dl_errctx *err)
{
	if (member != NULL && member[0] != '\0') {
		int i = cfg_peers_find(&c->peers, member);
		if (i < 0)
			return dl_errf(err, DL_EINVAL, "member '%s' is not in peers", member);
		set_target_peer(c, op, i);
		op->pinned = true;
	} else if (c->hint) {
		set_target(c, op, c->hint_id, c->hint_addr, c->hint_peer);
	} else {
		set_target_peer(c, op, member_after(c, -1, now_ns()));
	}
	return 0;
}

/* ---- encoding ------------------------------------------------------------------------- */

/* Appends `n` bodies of an earlier encoding of this op (views into `old`). */
static int entries_from_frame(const uint8_t *old, size_t old_len, uint32_t n,
			      struct raft_entry *ents)
{
	size_t off = 0;
	struct tp_hdr h;
	uint32_t got = 0;
	int rc = tp_frame_begin(old, old_len, &off);
	if (rc == 0)
		rc = tp_frame_next(old, old_len, &off, &h);
	if (rc == 0)
		rc = tp_decode_append(&h, ents, n, &got);
	if (rc == 0 && got != n)
		rc = DL_EPROTO;
	return rc;
}

/* Encodes the op's request for its target and rid into op->req. For an
 * append, the bodies come from `bufs` the first time and from the previous
 * encoding after. */
static int encode_req(struct dl_client *c, struct op *op, const struct dl_client_buf *bufs)
{
	struct tp_fb fb;
	tp_fb_init(&fb, c->o.max_frame_bytes);
	struct tp_addr a = {.group = c->group, .target = op->id, .sender = "",
			    .request_id = op->rid};
	struct raft_entry stack[16];
	struct raft_entry *ents = stack;
	int rc = 0;
	switch (op->kind) {
	case OP_APPEND:
		if (op->n_entries > 16)
			ents = malloc(op->n_entries * sizeof(*ents));
		if (ents == NULL) {
			rc = DL_ENOMEM;
			break;
		}
		if (bufs != NULL) {
			for (uint32_t i = 0; i < op->n_entries; i++)
				ents[i] = (struct raft_entry){.data = bufs[i].data,
							      .len = (uint32_t)bufs[i].len};
		} else {
			rc = entries_from_frame(op->req, op->req_len, op->n_entries, ents);
		}
		if (rc == 0)
			rc = tp_fb_add_append(&fb, &a, ents, op->n_entries);
		if (ents != stack)
			free(ents);
		break;
	case OP_GET: rc = tp_fb_add_get(&fb, &a, &op->get); break;
	case OP_META: rc = tp_fb_add_metadata(&fb, &a); break;
	case OP_NODE_META:
		a.group = "";
		rc = tp_fb_add_metadata(&fb, &a);
		break;
	}
	if (rc == 0) {
		free(op->req);
		op->req = tp_fb_take(&fb, &op->req_len);
		DL_ASSERT(op->req != NULL && op->req_len > 0);
	} else {
		detailf(op->detail, "cannot encode the request: %s", dl_strerror(rc));
	}
	tp_fb_free(&fb);
	return rc;
}

/* A new attempt: a new request id, so an answer to the old one is dropped. */
static int new_attempt(struct dl_client *c, struct op *op)
{
	c->seq++;
	op->rid = (c->seq << SLOT_BITS) | op->slot;
	return encode_req(c, op, NULL);
}

/* ---- connections --------------------------------------------------------------------- */

static void *rx_main(void *arg);
static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg);

static struct conn *conn_find(struct dl_client *c, const char *addr)
{
	for (uint32_t i = 0; i < c->n_conns; i++)
		if (strcmp(c->conns[i]->addr, addr) == 0)
			return c->conns[i];
	return NULL;
}

/* With TLS the server name is the host of the address, and the node must
 * present a node certificate naming it. */
static int conn_dial(struct dl_client *c, struct conn *cn)
{
	char url[TP_ADDR_MAX + 16];
	nng_dialer d = NNG_DIALER_INITIALIZER;
	int rv = tp_make_url(c->tls, cn->addr, url, sizeof(url)) == 0 ? 0 : NNG_EADDRINVAL;
	if (rv == 0)
		rv = nng_dialer_create(&d, cn->sock, url);
	if (rv == 0 && c->tls != NULL)
		rv = tp_tls_setup_dialer(c->tls, d, cn->addr);
	if (rv == 0)
		rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
	cn->dialer = d;
	return rv;
}

/* The connection to `addr`, dialed in the background on first use. */
static int conn_get(struct dl_client *c, const char *addr, struct conn **out, char *detail)
{
	struct conn *cn = conn_find(c, addr);
	if (cn != NULL) {
		*out = cn;
		return 0;
	}
	if (c->n_conns >= DL_CLIENT_MAX_CONNS) {
		detailf(detail, "too many node addresses (%u)", DL_CLIENT_MAX_CONNS);
		return DL_ETOOBIG;
	}
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL) {
		detailf(detail, "out of memory");
		return DL_ENOMEM;
	}
	cn->c = c;
	atomic_init(&cn->rx_stop, false);
	cn->wq_head = cn->wq_tail = NO_SLOT;
	snprintf(cn->addr, sizeof(cn->addr), "%s", addr);
	char url[TP_ADDR_MAX + 16];
	if (tp_make_url(c->tls, addr, url, sizeof(url)) != 0) {
		free(cn);
		detailf(detail, "not an address: '%s'", addr);
		return DL_EINVAL;
	}
	int rv = nng_req0_open_raw(&cn->sock);
	if (rv != 0) {
		free(cn);
		detailf(detail, "cannot open a socket: %s", nng_strerror(rv));
		return DL_EIO;
	}
	uint32_t sendbuf = c->o.max_inflight < 8192 ? c->o.max_inflight : 8192;
	nng_socket_set_int(cn->sock, NNG_OPT_SENDBUF, (int)sendbuf);
	nng_socket_set_int(cn->sock, NNG_OPT_RECVBUF, 1024);
	nng_socket_set_size(cn->sock, NNG_OPT_RECVMAXSZ, c->o.max_frame_bytes);
	nng_socket_set_ms(cn->sock, NNG_OPT_RECVTIMEO, RX_POLL_MS);
	nng_socket_set_ms(cn->sock, NNG_OPT_RECONNMINT, 50);
	nng_socket_set_ms(cn->sock, NNG_OPT_RECONNMAXT, 1000);
	nng_pipe_notify(cn->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, cn);
	nng_pipe_notify(cn->sock, NNG_PIPE_EV_REM_POST, pipe_cb, cn);
	/* The receiver starts before the dial, so that on any failure below
	 * no pipe exists yet: nng_close() then runs no pipe callback (they
	 * take mu, which we hold). */
	if (pthread_create(&cn->rx, NULL, rx_main, cn) != 0) {
		nng_close(cn->sock);
		free(cn);
		detailf(detail, "cannot start a receiver thread");
		return DL_ENOMEM;
	}
	rv = conn_dial(c, cn);
	cn->down_since_ns = now_ns();
	if (rv != 0) { /* a malformed address: rare enough to wait here */
		atomic_store_explicit(&cn->rx_stop, true, memory_order_relaxed);
		pthread_join(cn->rx, NULL);
		nng_close(cn->sock);
		free(cn);
		detailf(detail, "cannot dial %s: %s", addr, nng_strerror(rv));
		return DL_EINVAL;
	}
	cn->rx_started = true;
	c->conns[c->n_conns++] = cn;
	*out = cn;
	return 0;
}

/* ---- per-connection queue and window ---------------------------------------------- */

static void wq_push(struct dl_client *c, struct conn *cn, struct op *op)
{
	op->wq_next = NO_SLOT;
	op->wq_prev = cn->wq_tail;
	if (cn->wq_tail != NO_SLOT)
		c->ops[cn->wq_tail].wq_next = op->slot;
	else
		cn->wq_head = op->slot;
	cn->wq_tail = op->slot;
}

static void wq_remove(struct dl_client *c, struct conn *cn, struct op *op)
{
	if (op->wq_prev != NO_SLOT)
		c->ops[op->wq_prev].wq_next = op->wq_next;
	else
		cn->wq_head = op->wq_next;
	if (op->wq_next != NO_SLOT)
		c->ops[op->wq_next].wq_prev = op->wq_prev;
	else
		cn->wq_tail = op->wq_prev;
	op->wq_prev = op->wq_next = NO_SLOT;
}

/* Takes the op off its connection (window or queue): it is NEW again,
 * in the hands of the caller, which gives it its next state. */
static void op_detach(struct dl_client *c, struct op *op)
{
	if (op->state == OP_SENT) {
		DL_ASSERT(op->conn->n_sent > 0);
		op->conn->n_sent--;
	} else if (op->state == OP_PARKED) {
		wq_remove(c, op->conn, op);
	}
	if (op->state == OP_SENT || op->state == OP_PARKED || op->state == OP_BACKOFF)
		op->state = OP_NEW;
}

/* ---- sending and retrying ------------------------------------------------------------ */

static int transmit(struct dl_client *c, struct op *op, uint64_t now);
static void fail_later(struct dl_client *c, struct op *op, int rc);

/* Tries again after a pause: the next member in peers order not taken for
 * down, unless the op is pinned to its target. Returns 0, or an error if
 * the new attempt could not be encoded. */
static int retry_later(struct dl_client *c, struct op *op, uint64_t now, const char *reason)
{
	op_detach(c, op);
	if (op->id[0] != '\0')
		detailf(op->last, "%s at %s: %s", op->id, op->addr, reason);
	else
		detailf(op->last, "%s: %s", op->addr, reason);
	if (!op->pinned && c->peers.n_members > 0)
		set_target_peer(c, op, member_after(c, op->peer, now));
	op->backoff_ms = op->backoff_ms == 0 ? c->o.backoff_min_ms : op->backoff_ms * 2;
	if (op->backoff_ms > c->o.backoff_max_ms)
		op->backoff_ms = c->o.backoff_max_ms;
	int rc = new_attempt(c, op);
	if (rc != 0)
		return rc;
	op->state = OP_BACKOFF;
	op->conn = NULL;
	op->wake_ns = min_u64(now + ms_ns(op->backoff_ms), op->deadline_ns);
	timer_kick(c, op->wake_ns);
	return 0;
}

/* Sends ops[0..k) (NEW, all for `cn`) in one nng message: the first
 * request's frame whole, then the messages of the others without their
 * frame header. The node answers each on its own. Every op ends SENT, or in
 * BACKOFF (or failed) when the send does not go through. */
static void send_reqs(struct dl_client *c, struct conn *cn, struct op **ops, uint32_t k,
		      uint64_t now)
{
	nng_msg *m = NULL;
	/* Raw REQ: we supply the request-id word nng's REQ would, high bit
	 * set; the node echoes it, we match on each message's request_id. */
	int rv = nng_msg_alloc(&m, 0);
	if (rv == 0)
		rv = nng_msg_header_append_u32(m, 0x80000000u |
						     (uint32_t)(ops[0]->rid & 0x7fffffffu));
	for (uint32_t i = 0; i < k && rv == 0; i++) {
		struct op *op = ops[i];
		DL_ASSERT(op->conn == cn && op->req != NULL);
		size_t off = 0;
		if (i > 0)
			DL_ASSERT(tp_frame_begin(op->req, op->req_len, &off) == 0);
		rv = nng_msg_append(m, op->req + off, op->req_len - off);
	}
	if (rv == 0)
		rv = nng_sendmsg(cn->sock, m, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		if (m != NULL)
			nng_msg_free(m);
		char why[96];
		snprintf(why, sizeof(why), "send failed: %s", nng_strerror(rv));
		for (uint32_t i = 0; i < k; i++) {
			int rc = retry_later(c, ops[i], now, why);
			if (rc != 0)
				fail_later(c, ops[i], rc);
		}
		return;
	}
	for (uint32_t i = 0; i < k; i++) {
		ops[i]->state = OP_SENT;
		ops[i]->sent_ns = now;
	}
	cn->n_sent += k;
	DL_ASSERT(cn->n_sent <= CONN_WINDOW);
}

/* Sends queued ops while the connection is up and its window has room,
 * as many per nng message as fit in PACK_MAX_BYTES: each message costs
 * the node a trip through nng's threads, so a burst goes out together. */
static void pump(struct dl_client *c, struct conn *cn, uint64_t now)
{
	while (cn->up && cn->n_sent < CONN_WINDOW && cn->wq_head != NO_SLOT && !c->closing) {
		struct op *batch[CONN_WINDOW];
		uint32_t k = 0;
		size_t bytes = 0;
		while (cn->n_sent + k < CONN_WINDOW && cn->wq_head != NO_SLOT) {
			struct op *op = &c->ops[cn->wq_head];
			DL_ASSERT(op->state == OP_PARKED && op->conn == cn);
			if (k > 0 && bytes + op->req_len > PACK_MAX_BYTES)
				break;
			op_detach(c, op);
			batch[k++] = op;
			bytes += op->req_len;
		}
		send_reqs(c, cn, batch, k, now);
	}
}

static void pump_all(struct dl_client *c, uint64_t now)
{
	for (uint32_t i = 0; i < c->n_conns; i++)
		pump(c, c->conns[i], now);
}

/* Sends the op's current request to its target, or parks it until the
 * connection is up. Returns 0, or an error that ends the op. */
static int transmit(struct dl_client *c, struct op *op, uint64_t now)
{
	struct conn *cn;
	int rc = conn_get(c, op->addr, &cn, op->detail);
	if (rc != 0)
		return rc;
	op_detach(c, op);
	op->conn = cn;
	if (cn->up && cn->n_sent < CONN_WINDOW && cn->wq_head == NO_SLOT && tl_cork != c) {
		send_reqs(c, cn, &op, 1, now);
		return 0;
	}
	if (!cn->up && cn->failed && !op->pinned)
		return retry_later(c, op, now, "not connected");
	wq_push(c, cn, op);
	op->state = OP_PARKED;
	/* Waiting for room in the window is bounded by the deadline only. */
	op->wake_ns = cn->up ? op->deadline_ns
			     : min_u64(now + ms_ns(c->o.connect_timeout_ms), op->deadline_ns);
	timer_kick(c, op->wake_ns);
	return 0;
}

/* DL_ENOTLEADER to an append: follow the named leader, or try the others.
 * A leader we lost or take for down is not followed: its followers name it
 * until they elect another (one election timeout), and following them back
 * would leave the request unanswered there until its deadline. */
static int redirect(struct dl_client *c, struct op *op, const struct tp_error *e, uint64_t now)
{
	int peer = e->leader[0] ? cfg_peers_find(&c->peers, e->leader) : -1;
	const char *addr = peer >= 0 ? c->addrs[peer] : e->leader_addr;
	bool known = e->leader[0] != '\0' && addr[0] != '\0';
	if (known && strcmp(e->leader, op->id) == 0 && strcmp(addr, op->addr) == 0)
		known = false; /* names itself: it is between roles */
	const char *why = "not leader, leader unknown";
	char buf[TP_NAME_MAX + 64];
	if (known) {
		struct conn *lc = conn_find(c, addr);
		if (lc != NULL && lc->failed && !lc->up) {
			known = false; /* a stale leader we already lost */
		} else if (lc != NULL && lc->suspect_until_ns > now) {
			known = false;
			snprintf(buf, sizeof(buf), "not leader, names %s, which did not answer",
				 e->leader);
			why = buf;
		}
	}
	if (!known) {
		hint_drop(c, op->addr);
		return retry_later(c, op, now, why);
	}
	if (op->hops >= c->o.max_hops) {
		detailf(op->detail, "not leader after %u hops (last tried %s at %s)", op->hops,
			op->id, op->addr);
		return DL_ENOTLEADER;
	}
	op->hops++;
	hint_set(c, e->leader, addr, peer);
	set_target(c, op, e->leader, addr, peer);
	op->last[0] = '\0'; /* a leader found: no longer searching */
	int rc = new_attempt(c, op);
	return rc != 0 ? rc : transmit(c, op, now);
}

/* An error answer. Returns 0 when the op goes on (retried), else the code
 * that ends it, with op->detail filled. */
static int on_error(struct dl_client *c, struct op *op, const struct tp_error *e, uint64_t now)
{
	switch (e->code) {
	case DL_ENOTLEADER:
		if (op->kind == OP_APPEND)
			return redirect(c, op, e, now);
		break;
	case DL_ECLOSED:
		if (!op->pinned)
			return retry_later(c, op, now, "member shutting down");
		break;
	case DL_EBUSY:
		if (c->o.retry_busy)
			return retry_later(c, op, now, e->message[0] ? e->message : "busy");
		break;
	default: break;
	}
	if (op->id[0] != '\0')
		detailf(op->detail, "%s at %s: %s", op->id, op->addr,
			e->message[0] ? e->message : dl_strerror(e->code));
	else
		detailf(op->detail, "%s: %s", op->addr,
			e->message[0] ? e->message : dl_strerror(e->code));
	return e->code != 0 ? e->code : DL_EPROTO;
}

static uint8_t reply_type(enum op_kind k)
{
	switch (k) {
	case OP_APPEND: return TP_APPEND_RESP;
	case OP_GET: return TP_GET_RESP;
	default: return TP_METADATA_RESP;
	}
}

/* ---- receiving ------------------------------------------------------------------------- */

/* Matches one reply message to its op (under mu). Returns true when the op
 * finished: `cp` is filled, and *msg_taken tells whether it took `msg`. */
static bool on_reply(struct dl_client *c, struct conn *cn, nng_msg *msg, const struct tp_hdr *h,
		     bool last, struct completion *cp, bool *msg_taken)
{
	uint32_t slot = (uint32_t)(h->request_id & SLOT_MASK);
	if (slot >= c->cap)
		return false;
	struct op *op = &c->ops[slot];
	if (op->state != OP_SENT || op->rid != h->request_id || op->conn != cn)
		return false; /* a late answer to an earlier attempt */
	uint64_t now = now_ns();
	cn->suspect_until_ns = 0; /* it answers */
	op_detach(c, op);
	if (tl_cork != c)
		pump(c, cn, now);
	int rc;
	if (h->type == TP_ERROR) {
		struct tp_error e;
		if (tp_decode_error(h, &e) != 0) {
			detailf(op->detail, "%s: malformed error reply", op->addr);
			rc = DL_EPROTO;
		} else {
			rc = on_error(c, op, &e, now);
		}
	} else if (h->type == reply_type(op->kind) && op->kind == OP_APPEND) {
		struct tp_append_resp ar;
		rc = tp_decode_append_resp(h, &ar);
		if (rc == 0 && ar.code != 0) {
			struct tp_error e = {.code = ar.code};
			rc = on_error(c, op, &e, now);
		} else if (rc == 0 && ar.n != op->n_entries) {
			detailf(op->detail, "%s: answer for %u entries, sent %u", op->addr, ar.n,
				op->n_entries);
			rc = DL_EPROTO;
		} else if (rc == 0) {
			hint_set(c, op->id, op->addr, op->peer);
			op_finish(c, op, 0, NULL, NULL, cp);
			cp->ar = ar;
			return true;
		} else {
			detailf(op->detail, "%s: malformed append reply", op->addr);
		}
	} else if (h->type == reply_type(op->kind)) {
		nng_msg *m = msg;
		struct tp_hdr hh = *h;
		if (!last) { /* more messages follow in this frame: keep a copy */
			if (nng_msg_dup(&m, msg) != 0) {
				detailf(op->detail, "out of memory");
				op_finish(c, op, DL_ENOMEM, NULL, NULL, cp);
				return true;
			}
			hh.body = (const uint8_t *)nng_msg_body(m) +
				  (h->body - (const uint8_t *)nng_msg_body(msg));
		}
		*msg_taken = last;
		op_finish(c, op, 0, m, &hh, cp);
		return true;
	} else {
		detailf(op->detail, "%s: unexpected reply type %u", op->addr, h->type);
		rc = DL_EPROTO;
	}
	if (rc == 0)
		return false;
	op_finish(c, op, rc, NULL, NULL, cp);
	return true;
}

static void on_frame(struct dl_client *c, struct conn *cn, nng_msg *msg)
{
	const uint8_t *buf = nng_msg_body(msg);
	size_t len = nng_msg_len(msg), off = 0;
	bool taken = false;
	if (tp_frame_begin(buf, len, &off) != 0) {
		nng_msg_free(msg);
		return;
	}
	tl_cork = c;
	for (uint32_t guard = 0; guard < TP_MAX_ENTRIES && !taken; guard++) {
		struct tp_hdr h;
		if (tp_frame_next(buf, len, &off, &h) != 0)
			break;
		struct completion cp;
		pthread_mutex_lock(&c->mu);
		bool done = on_reply(c, cn, msg, &h, off == len, &cp, &taken);
		pthread_mutex_unlock(&c->mu);
		if (done)
			run_completion(&cp);
	}
	tl_cork = NULL;
	/* What the completions submitted, and what the answers made room for. */
	pthread_mutex_lock(&c->mu);
	pump_all(c, now_ns());
	pthread_mutex_unlock(&c->mu);
	if (!taken)
		nng_msg_free(msg);
}

static void *rx_main(void *arg)
{
	struct conn *cn = arg;
	tl_client = cn->c;
	/* relaxed: a late look only costs one more RX_POLL_MS. */
	while (!atomic_load_explicit(&cn->rx_stop, memory_order_relaxed)) {
		nng_msg *msg;
		int rv = nng_recvmsg(cn->sock, &msg, 0);
		if (rv == NNG_ECLOSED)
			break; /* not expected: closed only after we exit */
		if (rv != 0)
			continue;
		on_frame(cn->c, cn, msg);
	}
	return NULL;
}

void dl_client_cork(struct dl_client *c)
{
	if (tl_client == c)
		return; /* a callback: its reply frame corks already */
	tl_cork = c;
}

void dl_client_uncork(struct dl_client *c)
{
	if (tl_client == c || tl_cork != c)
		return;
	tl_cork = NULL;
	pthread_mutex_lock(&c->mu);
	pump_all(c, now_ns());
	pthread_mutex_unlock(&c->mu);
}

/* Ends an op from a context that must not run callbacks: the timer does. */
static void fail_later(struct dl_client *c, struct op *op, int rc)
{
	op_detach(c, op);
	op->fail_rc = rc;
	op->state = OP_BACKOFF;
	op->wake_ns = now_ns();
	timer_kick(c, op->wake_ns);
}

/* Connection up or down (an nng thread). */
static void pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct conn *cn = arg;
	struct dl_client *c = cn->c;
	pthread_mutex_lock(&c->mu);
	uint64_t now = now_ns();
	if (ev == NNG_PIPE_EV_ADD_POST) {
		cn->pipes++;
		cn->pipe = p;
		cn->down_since_ns = 0;
		cn->up = true;
		cn->failed = false;
	} else if (ev == NNG_PIPE_EV_REM_POST && cn->pipes > 0) {
		cn->pipes--;
		if (nng_pipe_id(cn->pipe) == nng_pipe_id(p))
			cn->pipe = (nng_pipe)NNG_PIPE_INITIALIZER;
		if (cn->pipes == 0) {
			cn->up = false;
			cn->failed = true;
			cn->down_since_ns = now;
			hint_drop(c, cn->addr);
		}
	}
	for (uint32_t i = 0; i < c->cap && !cn->up && !c->closing; i++) {
		struct op *op = &c->ops[i];
		if (op->conn != cn || op->fail_rc != 0)
			continue;
		int rc = 0;
		if (op->state == OP_SENT || (op->state == OP_PARKED && !op->pinned))
			rc = retry_later(c, op, now, "connection lost");
		if (rc != 0)
			fail_later(c, op, rc);
	}
	pump(c, cn, now);
	pthread_mutex_unlock(&c->mu);
}

/* ---- timer ------------------------------------------------------------------------------ */

static void timeout_detail(struct dl_client *c, struct op *op)
{
	uint32_t ms = c->o.timeout_ms;
	char who[TP_NAME_MAX + TP_ADDR_MAX + 8];
	if (op->id[0])
		snprintf(who, sizeof(who), "%s at %s", op->id, op->addr);
	else
		snprintf(who, sizeof(who), "%s", op->addr);
	bool waiting = op->state == OP_BACKOFF || (op->state == OP_PARKED && !op->conn->up);
	/* Still looking for a leader (op->last is cleared when one is named):
	 * the deadline may fall while an attempt is out, but what the caller
	 * learns is that none was found, whichever state the op is in. */
	bool searching = !op->pinned && op->last[0] != '\0';
	const char *what = op->kind == OP_APPEND ? "leader" : "member";
	if (op->state == OP_SENT && searching)
		detailf(op->detail, "no %s of group %s reachable within %u ms (last: %s; then "
			"no answer yet from %s)", what, c->group, ms, op->last, who);
	else if (op->state == OP_SENT)
		detailf(op->detail, "no answer from %s within %u ms", who, ms);
	else if (op->state == OP_PARKED && op->conn->up)
		detailf(op->detail, "no answer from %s within %u ms (queued behind %u requests)",
			who, ms, op->conn->n_sent);
	else if (waiting && searching)
		detailf(op->detail, "no %s of group %s reachable within %u ms (last: %s)", what,
			c->group, ms, op->last);
	else if (op->state == OP_PARKED)
		detailf(op->detail, "cannot connect to %s within %u ms", who, ms);
	else if (op->last[0])
		detailf(op->detail, "no answer within %u ms (last: %s)", ms, op->last);
	else
		detailf(op->detail, "no answer within %u ms", ms);
}

/* The deadline of `op` passed with its request unanswered at its member.
 * If the attempt was out for half the timeout or more, the member is taken
 * for down for one timeout (a leader cut off by a partition keeps its TCP
 * connections, so nng reports nothing): the client forgets it as leader,
 * asks the others first, does not follow them back to it (they name it
 * until they elect another), and moves the requests waiting on it,
 * unless bound to it, to the others now rather than at their deadlines.
 * An answer from it ends the suspicion early. */
static void suspect_silent(struct dl_client *c, struct op *op, uint64_t now)
{
	struct conn *cn = op->conn;
	DL_ASSERT(op->state == OP_SENT && cn != NULL);
	DL_ASSERT(op->sent_ns != 0 && cn->c == c);
	if (op->pinned || now < op->sent_ns + ms_ns(c->o.timeout_ms) / 2)
		return; /* asked only just now: that tells nothing */
	cn->suspect_until_ns = now + ms_ns(c->o.timeout_ms);
	hint_drop(c, cn->addr);
	char why[64];
	snprintf(why, sizeof(why), "another request got no answer within %u ms",
		 c->o.timeout_ms);
	for (uint32_t i = 0; i < c->cap; i++) {
		struct op *o = &c->ops[i];
		if (o == op || o->conn != cn || o->pinned || o->fail_rc != 0 ||
		    (o->state != OP_SENT && o->state != OP_PARKED))
			continue;
		int rc = retry_later(c, o, now, why);
		if (rc != 0)
			fail_later(c, o, rc);
	}
}

/* An op about to be sent again whose member was taken for down since it
 * was picked goes to the next member instead. */
static int avoid_suspect(struct dl_client *c, struct op *op, uint64_t now)
{
	if (op->pinned || c->peers.n_members == 0 || !addr_suspect(c, op->addr, now))
		return 0;
	int next = member_after(c, op->peer, now);
	if (addr_suspect(c, c->addrs[next], now))
		return 0; /* all are: ask it anyway */
	set_target_peer(c, op, next);
	return new_attempt(c, op);
}

/* One op's due work (under mu). Returns true when it finished into `cp`. */
static bool timer_op(struct dl_client *c, struct op *op, uint64_t now, struct completion *cp)
{
	int rc = 0;
	if (op->fail_rc != 0) {
		rc = op->fail_rc;
	} else if (now >= op->deadline_ns) {
		timeout_detail(c, op);
		if (op->state == OP_SENT)
			suspect_silent(c, op, now);
		rc = DL_ETIMEDOUT;
	} else if (op->state == OP_BACKOFF && now >= op->wake_ns) {
		rc = avoid_suspect(c, op, now);
		if (rc == 0)
			rc = transmit(c, op, now);
	} else if (op->state == OP_PARKED && !op->conn->up && now >= op->wake_ns) {
		op->conn->failed = true;
		if (op->pinned) { /* no one else to ask */
			if (op->id[0])
				detailf(op->detail, "cannot connect to %s at %s within %u ms",
					op->id, op->addr, c->o.connect_timeout_ms);
			else
				detailf(op->detail, "cannot connect to %s within %u ms", op->addr,
					c->o.connect_timeout_ms);
			rc = DL_ETIMEDOUT;
		} else {
			rc = retry_later(c, op, now, "cannot connect");
		}
	}
	if (rc == 0)
		return false;
	op_finish(c, op, rc, NULL, NULL, cp);
	return true;
}

/* TLS: a new dialer for each connection down for REDIAL_NS (see struct
 * conn). Called and returns with mu held; drops it around nng's calls.
 * Returns when to look again. */
static uint64_t redial_down_conns(struct dl_client *c)
{
	uint64_t next = NO_WAKE, now = now_ns();
	struct conn *redial[DL_CLIENT_MAX_CONNS];
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->n_conns; i++) {
		struct conn *cn = c->conns[i];
		if (cn->up || cn->down_since_ns == 0)
			continue;
		if (now - cn->down_since_ns >= REDIAL_NS) {
			redial[n++] = cn;
			cn->down_since_ns = now;
		}
		next = min_u64(next, cn->down_since_ns + REDIAL_NS);
	}
	if (n == 0)
		return next;
	/* Only this thread replaces dialers, and dl_client_close() joins it
	 * before closing the sockets. */
	pthread_mutex_unlock(&c->mu);
	for (uint32_t i = 0; i < n; i++) {
		nng_dialer_close(redial[i]->dialer);
		(void)conn_dial(c, redial[i]);
	}
	pthread_mutex_lock(&c->mu);
	return next;
}

static void *timer_main(void *arg)
{
	struct dl_client *c = arg;
	tl_client = c;
	pthread_mutex_lock(&c->mu);
	while (!c->closing) {
		c->timer_wake_ns = 0;
		c->kick_min_ns = NO_WAKE;
		uint64_t next = NO_WAKE;
		for (uint32_t i = 0; i < c->cap; i++) {
			struct op *op = &c->ops[i];
			if (op->state != OP_SENT && op->state != OP_PARKED &&
			    op->state != OP_BACKOFF)
				continue;
			struct completion cp;
			if (timer_op(c, op, now_ns(), &cp)) {
				pthread_mutex_unlock(&c->mu);
				run_completion(&cp);
				pthread_mutex_lock(&c->mu);
				continue;
			}
			uint64_t w = op->deadline_ns;
			if (op->state == OP_BACKOFF ||
			    (op->state == OP_PARKED && !op->conn->up))
				w = min_u64(w, op->wake_ns);
			next = min_u64(next, w);
		}
		next = min_u64(next, c->kick_min_ns);
		if (c->tls != NULL)
			next = min_u64(next, redial_down_conns(c));
		if (c->closing)
			break;
		if (next <= now_ns())
			continue;
		c->timer_wake_ns = next;
		if (next == NO_WAKE) {
			pthread_cond_wait(&c->timer_cv, &c->mu);
		} else {
			struct timespec ts = {.tv_sec = (time_t)(next / 1000000000ull),
					      .tv_nsec = (long)(next % 1000000000ull)};
			pthread_cond_timedwait(&c->timer_cv, &c->mu, &ts);
		}
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
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
	pthread_condattr_t ca;
	if (pthread_condattr_init(&ca) != 0)
		return DL_ENOMEM;
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->slot_cv, &ca);
	pthread_cond_init(&c->timer_cv, &ca);
	pthread_condattr_destroy(&ca);
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
	if (pthread_create(&c->timer, NULL, timer_main, c) != 0) {
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
	DL_ASSERT(tl_client != c);
	pthread_mutex_lock(&c->mu);
	c->closing = true;
	pthread_cond_broadcast(&c->timer_cv);
	pthread_cond_broadcast(&c->slot_cv);
	uint32_t n_conns = c->n_conns;
	pthread_mutex_unlock(&c->mu);
	if (c->timer_started)
		pthread_join(c->timer, NULL);
	/* Conns are only added with mu held and not while closing. Receivers
	 * stop first (see RX_POLL_MS), then the sockets close. */
	for (uint32_t i = 0; i < n_conns; i++)
		atomic_store_explicit(&c->conns[i]->rx_stop, true, memory_order_relaxed);
	for (uint32_t i = 0; i < n_conns; i++)
		if (c->conns[i]->rx_started)
			pthread_join(c->conns[i]->rx, NULL);
	/* nng 1.5.2 can block in nng_close() for good (tp_close_bounded);
	 * a close left to finish in the background may still call pipe_cb(),
	 * which uses the client: then the client is kept, not freed. */
	bool keep = false;
	for (uint32_t i = 0; i < n_conns; i++) {
		pthread_mutex_lock(&c->mu);
		nng_pipe p = c->conns[i]->pipe;
		pthread_mutex_unlock(&c->mu);
		if (c->tls != NULL) /* see tp_close_bounded() */
			tp_close_pipe_first(c->conns[i]->dialer, nng_pipe_id(p));
		if (!tp_close_bounded(c->conns[i]->sock, "client", c))
			keep = true;
	}
	tl_client = c;
	pthread_mutex_lock(&c->mu);
	for (uint32_t i = 0; i < c->cap; i++) {
		struct op *op = &c->ops[i];
		if (op->state != OP_SENT && op->state != OP_PARKED && op->state != OP_BACKOFF)
			continue;
		detailf(op->detail, "client closed");
		struct completion cp;
		op_finish(c, op, DL_ECLOSED, NULL, NULL, &cp);
		pthread_mutex_unlock(&c->mu);
		run_completion(&cp);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	tl_client = NULL;
	/* Only conn_get() uses it, and no conn is made while closing; the
	 * dialers hold copies of what they need. */
	tp_tls_free(c->tls);
	c->tls = NULL;
	if (keep)
		return;
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
		return target_initial(c, op, sa->member, err);
	set_target(c, op, "", sa->addr, -1);
	op->pinned = true;
	return 0;
}

/* Queues a request; its completion runs once later unless this fails. */
static int submit(struct dl_client *c, const struct submit_args *sa, struct dl_errctx *err)
{
	uint64_t start = now_ns();
	struct op *op = NULL;
	pthread_mutex_lock(&c->mu);
	int rc = op_alloc(c, tl_client != c, start + ms_ns(c->o.timeout_ms), &op, err);
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
		rc = encode_req(c, op, sa->bufs);
		if (rc != 0)
			dl_errf(err, rc, "%s", op->detail);
	}
	pthread_mutex_lock(&c->mu);
	if (rc == 0 && c->closing)
		rc = dl_errf(err, DL_ECLOSED, "client closing");
	if (rc == 0) {
		rc = transmit(c, op, now_ns());
		if (rc != 0)
			dl_errf(err, rc, "%s", op->detail);
	}
	if (rc == 0)
		timer_kick(c, op->deadline_ns);
	else
		op_release(c, op);
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
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
}

/* Submits and waits. On 0, w->cp.msg (if any) is the caller's to free. */
static int call(struct dl_client *c, struct submit_args *sa, struct waiter *w,
		struct dl_errctx *err)
{
	if (tl_client == c)
		return dl_errf(err, DL_EINVAL, "blocking client call from a client callback");
	waiter_init(w);
	sa->done = waiter_done;
	sa->arg = w;
	int rc = submit(c, sa, err);
	if (rc != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		return rc;
	}
	waiter_wait(w);
	if (w->cp.rc != 0)
		return dl_errf(err, w->cp.rc, "%s", w->cp.detail);
	return 0;
}

struct append_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	int code;
	uint64_t first_index, term;
	char detail[DETAIL_MAX];
};

static void append_wait_done(void *arg, const struct dl_client_result *r)
{
	struct append_wait *aw = arg;
	pthread_mutex_lock(&aw->mu);
	aw->code = r->code;
	aw->first_index = r->first_index;
	aw->term = r->term;
	snprintf(aw->detail, sizeof(aw->detail), "%s", r->detail);
	aw->done = true;
	pthread_cond_signal(&aw->cv);
	pthread_mutex_unlock(&aw->mu);
}

int dl_client_append_batch(struct dl_client *c, const struct dl_client_buf *entries, uint32_t n,
			   uint64_t *first_index, uint64_t *term, struct dl_errctx *err)
{
	if (c == NULL)
		return dl_errf(err, DL_EINVAL, "no client");
	if (tl_client == c)
		return dl_errf(err, DL_EINVAL, "blocking client call from a client callback");
	struct append_wait aw = {.done = false};
	pthread_mutex_init(&aw.mu, NULL);
	pthread_cond_init(&aw.cv, NULL);
	int rc = dl_client_append_async(c, entries, n, append_wait_done, &aw, err);
	if (rc == 0) {
		pthread_mutex_lock(&aw.mu);
		while (!aw.done)
			pthread_cond_wait(&aw.cv, &aw.mu);
		pthread_mutex_unlock(&aw.mu);
		rc = aw.code;
		if (rc != 0)
			dl_errf(err, rc, "%s", aw.detail);
		DL_ASSERT(rc != 0 || aw.first_index > 0);
	}
	pthread_cond_destroy(&aw.cv);
	pthread_mutex_destroy(&aw.mu);
	if (rc == 0 && first_index)
		*first_index = aw.first_index;
	if (rc == 0 && term)
		*term = aw.term;
	return rc;
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
		if (addr[0] != '\0' && !addr_suspect(c, addr, now_ns()))
			hint_set(c, out->leader, addr, peer);
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
