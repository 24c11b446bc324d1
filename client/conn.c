/*
 * conn.c - connections: one link each (transport.h, "Links": it dials,
 * redials with backoff and writes), the per-connection send window and
 * packing, sending and retrying, redirects, and the links' callbacks that
 * match replies to ops and follow connections up and down
 * (client_internal.h has the order of the files and which thread owns
 * what).
 */
#include <nng/nng.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client_internal.h"

_Thread_local struct dl_client *cl_tl_client;
_Thread_local struct dl_client *cl_tl_cork;

static struct conn *conn_find(struct dl_client *c, const char *addr);

/* ---- targets ------------------------------------------------------------------------ */

/* Whether the member at `addr` is taken for down (conn->suspect_until_ns). */
bool cl_addr_suspect(struct dl_client *c, const char *addr, uint64_t now)
{
	const struct conn *cn = conn_find(c, addr);
	return cn != NULL && cn->suspect_until_ns > now;
}

/* The member after `from` in peers order (from the first when `from` < 0)
 * that is not taken for down; `from` itself comes last. When every member
 * is, the plain next: suspicion only orders the search, it never ends it. */
int cl_member_after(struct dl_client *c, int from, uint64_t now)
{
	int n = (int)c->peers.n_members;
	DL_ASSERT(n > 0 && from < n);
	int first = from < 0 ? 0 : (from + 1) % n;
	for (int k = 0; k < n; k++) {
		int i = (first + k) % n;
		if (!cl_addr_suspect(c, c->addrs[i], now))
			return i;
	}
	return first;
}

/* The first member to ask: `member` if given (and then only it), else the
 * leader last learned of, else the first member of peers not taken for
 * down. */
int cl_target_initial(struct dl_client *c, struct op *op, const char *member,
			  struct dl_errctx *err)
{
	if (member != NULL && member[0] != '\0') {
		int i = cfg_peers_find(&c->peers, member);
		if (i < 0)
			return dl_errf(err, DL_EINVAL, "member '%s' is not in peers", member);
		cl_set_target_peer(c, op, i);
		op->pinned = true;
	} else if (c->hint) {
		cl_set_target(c, op, c->hint_id, c->hint_addr, c->hint_peer);
	} else {
		cl_set_target_peer(c, op, cl_member_after(c, -1, now_ns()));
	}
	return 0;
}

/* ---- connections --------------------------------------------------------------------- */

static void conn_state(void *arg, bool up);
static void conn_msg(void *arg, const uint8_t *msg, size_t len);

static struct conn *conn_find(struct dl_client *c, const char *addr)
{
	for (uint32_t i = 0; i < c->n_conns; i++)
		if (strcmp(c->conns[i]->addr, addr) == 0)
			return c->conns[i];
	return NULL;
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
		cl_detailf(detail, "too many node addresses (%u)", DL_CLIENT_MAX_CONNS);
		return DL_ETOOBIG;
	}
	cn = calloc(1, sizeof(*cn));
	if (cn == NULL) {
		cl_detailf(detail, "out of memory");
		return DL_ENOMEM;
	}
	cn->c = c;
	cn->wq_head = cn->wq_tail = NO_SLOT;
	snprintf(cn->addr, sizeof(cn->addr), "%s", addr);
	/* With TLS the link checks that the node's certificate names the
	 * host of the address and is a node certificate. Its callbacks take
	 * mu, which we hold: they wait until the conn is published. */
	struct tp_link_config lc = {
		.addr = addr,
		.tls = c->tls,
		.max_frame_bytes = c->o.max_frame_bytes,
		.queue_bytes = CONN_QUEUE_BYTES,
		.send_timeout_ms = c->o.timeout_ms,
		.reconnect_min_ms = CONN_REDIAL_MIN_MS,
		.reconnect_max_ms = CONN_REDIAL_MAX_MS,
		.hello_timeout_ms = 0, /* the default: ops move on after connect_timeout_ms anyway */
		.on_state = conn_state,
		.on_msg = conn_msg,
		.arg = cn,
	};
	struct dl_errctx err = {0};
	int rc = tp_link_open(&lc, &cn->link, &err);
	if (rc != 0) {
		free(cn);
		cl_detailf(detail, "cannot dial %s: %s", addr, err.msg);
		return rc == DL_ENOMEM ? DL_ENOMEM : DL_EINVAL;
	}
	c->conns[c->n_conns++] = cn;
	*out = cn;
	return 0;
}

/* ---- sending and retrying ------------------------------------------------------------ */

/* Tries again after a pause: the next member in peers order not taken for
 * down, unless the op is pinned to its target. Returns 0, or an error if
 * the new attempt could not be encoded. */
int cl_retry_later(struct dl_client *c, struct op *op, uint64_t now, const char *reason)
{
	cl_op_detach(c, op);
	if (op->id[0] != '\0')
		cl_detailf(op->last, "%s at %s: %s", op->id, op->addr, reason);
	else
		cl_detailf(op->last, "%s: %s", op->addr, reason);
	if (!op->pinned && c->peers.n_members > 0)
		cl_set_target_peer(c, op, cl_member_after(c, op->peer, now));
	op->backoff_ms = op->backoff_ms == 0 ? c->o.backoff_min_ms : op->backoff_ms * 2;
	if (op->backoff_ms > c->o.backoff_max_ms)
		op->backoff_ms = c->o.backoff_max_ms;
	int rc = cl_new_attempt(c, op);
	if (rc != 0)
		return rc;
	op->state = OP_BACKOFF;
	op->conn = NULL;
	op->wake_ns = min_u64(now + ms_ns(op->backoff_ms), op->deadline_ns);
	DL_ASSERT(op->backoff_ms >= c->o.backoff_min_ms && op->backoff_ms <= c->o.backoff_max_ms);
	DL_ASSERT(op->wake_ns <= op->deadline_ns);
	timer_kick(c, op->wake_ns);
	return 0;
}

/* Sends ops[0..k) (NEW, all for `cn`) in one message: the first
 * request's frame whole, then the messages of the others without their
 * frame header. The node answers each on its own. The link writes it from
 * this thread when the connection is idle. Every op ends SENT, or in
 * BACKOFF (or failed) when the send does not go through. */
static void send_reqs(struct dl_client *c, struct conn *cn, struct op **ops, uint32_t k,
		      uint64_t now)
{
	DL_ASSERT(k > 0 && k <= CONN_WINDOW);
	DL_ASSERT(cn->n_sent + k <= CONN_WINDOW);
	struct tp_iov parts[CONN_WINDOW] = {{NULL, 0}};
	for (uint32_t i = 0; i < k; i++) {
		struct op *op = ops[i];
		DL_ASSERT(op->conn == cn && op->req != NULL && op->state == OP_NEW);
		size_t off = 0;
		if (i > 0)
			DL_ASSERT(tp_frame_begin(op->req, op->req_len, &off) == 0);
		parts[i] = (struct tp_iov){.buf = op->req + off, .len = op->req_len - off};
	}
	int rc = tp_link_send(cn->link, parts, k);
	if (rc != 0) {
		char why[96];
		snprintf(why, sizeof(why), "send failed: %s", dl_strerror(rc));
		for (uint32_t i = 0; i < k; i++) {
			int rrc = cl_retry_later(c, ops[i], now, why);
			if (rrc != 0)
				cl_fail_later(c, ops[i], rrc);
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
 * as many per message as fit in PACK_MAX_BYTES: each message costs the
 * node a pass of its router, so a burst goes out together. */
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
			cl_op_detach(c, op);
			batch[k++] = op;
			bytes += op->req_len;
		}
		DL_ASSERT(k > 0); /* the window had room and the queue an op */
		send_reqs(c, cn, batch, k, now);
	}
	DL_ASSERT(cn->n_sent <= CONN_WINDOW);
}

void cl_pump_all(struct dl_client *c, uint64_t now)
{
	for (uint32_t i = 0; i < c->n_conns; i++)
		pump(c, c->conns[i], now);
}

/* Sends the op's current request to its target, or parks it until the
 * connection is up. Returns 0, or an error that ends the op. */
int cl_transmit(struct dl_client *c, struct op *op, uint64_t now)
{
	DL_ASSERT(op->state != OP_FREE && op->req != NULL);
	struct conn *cn;
	int rc = conn_get(c, op->addr, &cn, op->detail);
	if (rc != 0)
		return rc;
	cl_op_detach(c, op);
	op->conn = cn;
	if (cn->up && cn->n_sent < CONN_WINDOW && cn->wq_head == NO_SLOT && cl_tl_cork != c) {
		send_reqs(c, cn, &op, 1, now);
		DL_ASSERT(op->state == OP_SENT || op->state == OP_BACKOFF);
		return 0;
	}
	if (!cn->up && cn->failed && !op->pinned)
		return cl_retry_later(c, op, now, "not connected");
	cl_wq_push(c, cn, op);
	op->state = OP_PARKED;
	/* Waiting for room in the window is bounded by the deadline only. */
	op->wake_ns = cn->up ? op->deadline_ns
			     : min_u64(now + ms_ns(c->o.connect_timeout_ms), op->deadline_ns);
	DL_ASSERT(op->wake_ns <= op->deadline_ns && cn->wq_tail == op->slot);
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
		cl_hint_drop(c, op->addr);
		return cl_retry_later(c, op, now, why);
	}
	if (op->hops >= c->o.max_hops) {
		cl_detailf(op->detail, "not leader after %u hops (last tried %s at %s)", op->hops,
			op->id, op->addr);
		return DL_ENOTLEADER;
	}
	op->hops++;
	cl_hint_set(c, e->leader, addr, peer);
	cl_set_target(c, op, e->leader, addr, peer);
	op->last[0] = '\0'; /* a leader found: no longer searching */
	int rc = cl_new_attempt(c, op);
	return rc != 0 ? rc : cl_transmit(c, op, now);
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
			return cl_retry_later(c, op, now, "member shutting down");
		break;
	case DL_EBUSY:
		if (c->o.retry_busy)
			return cl_retry_later(c, op, now, e->message[0] ? e->message : "busy");
		break;
	default: break;
	}
	if (op->id[0] != '\0')
		cl_detailf(op->detail, "%s at %s: %s", op->id, op->addr,
			e->message[0] ? e->message : dl_strerror(e->code));
	else
		cl_detailf(op->detail, "%s: %s", op->addr,
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
	cl_op_detach(c, op);
	if (cl_tl_cork != c)
		pump(c, cn, now);
	int rc;
	if (h->type == TP_ERROR) {
		struct tp_error e;
		if (tp_decode_error(h, &e) != 0) {
			cl_detailf(op->detail, "%s: malformed error reply", op->addr);
			rc = DL_EPROTO;
			c->bad_replies++;
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
			cl_detailf(op->detail, "%s: answer for %u entries, sent %u", op->addr, ar.n,
				op->n_entries);
			rc = DL_EPROTO;
			c->bad_replies++;
		} else if (rc == 0 && ar.first_index == 0) {
			cl_detailf(op->detail, "%s: malformed append reply (index 0)", op->addr);
			rc = DL_EPROTO;
			c->bad_replies++;
		} else if (rc == 0) {
			cl_hint_set(c, op->id, op->addr, op->peer);
			cl_op_finish(c, op, 0, NULL, NULL, cp);
			cp->ar = ar;
			return true;
		} else {
			cl_detailf(op->detail, "%s: malformed append reply", op->addr);
			c->bad_replies++;
		}
	} else if (h->type == reply_type(op->kind)) {
		nng_msg *m = msg;
		struct tp_hdr hh = *h;
		if (!last) { /* more messages follow in this frame: keep a copy */
			if (nng_msg_dup(&m, msg) != 0) {
				cl_detailf(op->detail, "out of memory");
				cl_op_finish(c, op, DL_ENOMEM, NULL, NULL, cp);
				return true;
			}
			hh.body = (const uint8_t *)nng_msg_body(m) +
				  (h->body - (const uint8_t *)nng_msg_body(msg));
		}
		*msg_taken = last;
		cl_op_finish(c, op, 0, m, &hh, cp);
		return true;
	} else {
		cl_detailf(op->detail, "%s: unexpected reply type %u", op->addr, h->type);
		rc = DL_EPROTO;
		c->bad_replies++;
	}
	if (rc == 0)
		return false;
	cl_op_finish(c, op, rc, NULL, NULL, cp);
	return true;
}

static void on_frame(struct dl_client *c, struct conn *cn, nng_msg *msg)
{
	const uint8_t *buf = nng_msg_body(msg);
	size_t len = nng_msg_len(msg), off = 0;
	bool taken = false;
	if (tp_frame_begin(buf, len, &off) != 0) {
		pthread_mutex_lock(&c->mu);
		c->bad_replies++;
		pthread_mutex_unlock(&c->mu);
		nng_msg_free(msg);
		return;
	}
	cl_tl_cork = c;
	for (uint32_t guard = 0; guard < TP_MAX_ENTRIES && !taken; guard++) {
		struct tp_hdr h;
		if (tp_frame_next(buf, len, &off, &h) != 0)
			break;
		struct completion cp;
		pthread_mutex_lock(&c->mu);
		bool done = on_reply(c, cn, msg, &h, off == len, &cp, &taken);
		pthread_mutex_unlock(&c->mu);
		if (done)
			cl_run_completion(&cp);
	}
	cl_tl_cork = NULL;
	/* What the completions submitted, and what the answers made room for. */
	pthread_mutex_lock(&c->mu);
	if (off < len) /* a message that did not decode, and what followed it */
		c->bad_replies++;
	cl_pump_all(c, now_ns());
	pthread_mutex_unlock(&c->mu);
	if (!taken)
		nng_msg_free(msg);
}

/* A reply frame from the node (the link's receive callback, on nng's
 * threads): copied into an nng message, which a GET or METADATA answer
 * hands to its callback. */
static void conn_msg(void *arg, const uint8_t *msg, size_t len)
{
	struct conn *cn = arg;
	struct dl_client *c = cn->c;
	nng_msg *m;
	if (nng_msg_alloc(&m, len) != 0) {
		pthread_mutex_lock(&c->mu);
		c->bad_replies++; /* its ops time out and are retried */
		pthread_mutex_unlock(&c->mu);
		return;
	}
	memcpy(nng_msg_body(m), msg, len);
	struct dl_client *outer = cl_tl_client;
	cl_tl_client = c;
	on_frame(c, cn, m);
	cl_tl_client = outer;
}

/* Ends an op from a context that must not run callbacks: the timer does. */
void cl_fail_later(struct dl_client *c, struct op *op, int rc)
{
	cl_op_detach(c, op);
	op->fail_rc = rc;
	op->state = OP_BACKOFF;
	op->wake_ns = now_ns();
	timer_kick(c, op->wake_ns);
}

/* Connection up or down (the link's callback, on nng's threads). */
static void conn_state(void *arg, bool up)
{
	struct conn *cn = arg;
	struct dl_client *c = cn->c;
	pthread_mutex_lock(&c->mu);
	uint64_t now = now_ns();
	cn->up = up;
	if (up) {
		cn->failed = false;
	} else {
		cn->failed = true;
		cl_hint_drop(c, cn->addr);
	}
	for (uint32_t i = 0; i < c->cap && !cn->up && !c->closing; i++) {
		struct op *op = &c->ops[i];
		if (op->conn != cn || op->fail_rc != 0)
			continue;
		int rc = 0;
		if (op->state == OP_SENT || (op->state == OP_PARKED && !op->pinned))
			rc = cl_retry_later(c, op, now, "connection lost");
		if (rc != 0)
			cl_fail_later(c, op, rc);
	}
	pump(c, cn, now);
	pthread_mutex_unlock(&c->mu);
}
