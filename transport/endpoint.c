/*
 * endpoint.c - the node's endpoint: the listener, its inbound connections,
 * the router and replies; opening and closing the whole (the outbound side
 * is peer.c). See transport.h; tp_internal.h has the order of the files.
 *
 * Inbound connections are nng streams (nng_stream_listener), not an nng
 * socket: each connection reads its bytes into a buffer of its own, cuts
 * them into frames and routes each one from its receive callback; a reply
 * is written by the thread that has it when the connection is idle, else
 * queued behind the write in progress and sent with what else queued
 * meanwhile. The wire is nng's SP over TCP as a REP peer speaks it
 * (sp_internal.h, docs/PROTOCOL.md "Transport"), so our links and nng's
 * REQ sockets talk to it alike. A connection whose header has not come
 * within hello_timeout_ms of its accept (the TLS handshake included) is
 * closed and counted.
 *
 * Ownership:
 *  - struct tp_endpoint (tp_internal.h): immutable after open, except
 *    `paused` (guarded by deliver_mu), the connection table (conns_mu),
 *    the reaper's list (dead_mu), the peers (peer.c) and the counters
 *    (atomics, relaxed: statistics only).
 *  - struct conn: the receive state is its receive callback's (one receive
 *    pending at a time); the send state, `dead` and `up` are guarded by its
 *    `mu`; `users` counts the threads between finding it in the table and
 *    being done with it. A connection that ends leaves the table at once
 *    and is freed by the reaper thread once no one uses it.
 *  - struct tp_frame: immutable after the router built it; freed by the last
 *    tp_frame_release() (refs is atomic, acq_rel on the final drop). It
 *    names its connection by id, so it may outlive it.
 */
#include "transport/tp_internal.h"

#include "common/dl_log.h"
#include "common/dl_time.h"
#include "transport/sp_internal.h"
#include "transport/tls_internal.h"

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


struct tp_frame {
	_Atomic uint32_t refs;
	enum tp_role role;
	uint32_t conn_id;
	uint32_t bt_len; /* the backtrace, before the body in data[] */
	size_t len;      /* of the body */
	uint8_t data[];
};

/* Connection table: open addressing, linear probing; at most half full. */
#define CONN_SLOTS (2u * TP_MAX_CONNS)
_Static_assert((CONN_SLOTS & (CONN_SLOTS - 1)) == 0, "a power of two");

struct conn {
	struct tp_endpoint *ep;
	nng_stream *s;
	uint32_t id;
	enum tp_role role;
	char addr[64];
	_Atomic uint32_t users;
	struct conn *next_dead; /* in ep->dead (dead_mu) */

	/* receive: the receive callback's */
	nng_aio *rx_aio;
	struct sp_in rx;

	/* send: guarded by mu */
	pthread_mutex_t mu;
	nng_aio *tx_aio;
	struct sp_out tx; /* replies: the write in progress and what waits */
	bool dead;
	bool up; /* its SP header came, and it counts as connected */
};

void tp_config_defaults(struct tp_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_frame_bytes = TP_DEFAULT_MAX_FRAME_BYTES;
	cfg->peer_queue_bytes = 64u * 1024 * 1024;
	cfg->send_timeout_ms = 1000;
	cfg->reconnect_min_ms = 50;
	cfg->reconnect_max_ms = 1000;
}

/* ---- the connection table ------------------------------------------------------ */

static uint32_t conn_home(uint32_t id) { return (id * 0x9e3779b1u) & (CONN_SLOTS - 1); }

/* Caller holds conns_mu. */
static struct conn *conns_find(struct tp_endpoint *ep, uint32_t id)
{
	for (uint32_t i = conn_home(id); ep->conns[i] != NULL; i = (i + 1) & (CONN_SLOTS - 1))
		if (ep->conns[i]->id == id)
			return ep->conns[i];
	return NULL;
}

/* Adds c with a new id; false when TP_MAX_CONNS are open. */
static bool conns_put(struct tp_endpoint *ep, struct conn *c)
{
	pthread_mutex_lock(&ep->conns_mu);
	bool ok = ep->n_conns < TP_MAX_CONNS;
	if (ok) {
		uint32_t id;
		do /* not 0, not in use (at most TP_MAX_CONNS are) */
			id = ++ep->next_id;
		while (id == 0 || conns_find(ep, id) != NULL);
		c->id = id;
		uint32_t i = conn_home(id);
		while (ep->conns[i] != NULL)
			i = (i + 1) & (CONN_SLOTS - 1);
		ep->conns[i] = c;
		ep->n_conns++;
	}
	pthread_mutex_unlock(&ep->conns_mu);
	return ok;
}

/* The connection with this id, with a use taken (conn_unuse), or NULL. */
static struct conn *conns_use(struct tp_endpoint *ep, uint32_t id)
{
	pthread_mutex_lock(&ep->conns_mu);
	struct conn *c = conns_find(ep, id);
	/* relaxed: conns_mu orders it before the reaper's check */
	if (c != NULL)
		atomic_fetch_add_explicit(&c->users, 1, memory_order_relaxed);
	pthread_mutex_unlock(&ep->conns_mu);
	return c;
}

static void conn_unuse(struct conn *c)
{
	/* release: pairs with the reaper's acquire load before it frees c */
	atomic_fetch_sub_explicit(&c->users, 1, memory_order_release);
}

/* Removes c (backward-shift deletion keeps every probe chain whole); a
 * no-op when it is not there. */
static void conns_del(struct tp_endpoint *ep, struct conn *c)
{
	const uint32_t mask = CONN_SLOTS - 1;
	pthread_mutex_lock(&ep->conns_mu);
	uint32_t i = conn_home(c->id);
	while (ep->conns[i] != NULL && ep->conns[i] != c)
		i = (i + 1) & mask;
	if (ep->conns[i] == c) {
		ep->n_conns--;
		uint32_t hole = i;
		for (uint32_t j = (i + 1) & mask; ep->conns[j] != NULL; j = (j + 1) & mask) {
			/* An entry moves into the hole if its home is not in (hole, j]. */
			uint32_t home = conn_home(ep->conns[j]->id);
			if (((j - home) & mask) >= ((j - hole) & mask)) {
				ep->conns[hole] = ep->conns[j];
				hole = j;
			}
		}
		ep->conns[hole] = NULL;
	}
	pthread_mutex_unlock(&ep->conns_mu);
}

/* ---- frames --------------------------------------------------------------- */

const uint8_t *tp_frame_data(const struct tp_frame *f, size_t *len)
{
	*len = f->len;
	return f->data + f->bt_len;
}

void tp_frame_hold(struct tp_frame *f)
{
	atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void tp_frame_release(struct tp_frame *f)
{
	if (f == NULL)
		return;
	/* acq_rel: the last releaser must see every other holder's reads done. */
	if (atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
		return;
	free(f);
}

uint32_t tp_frame_pipe(const struct tp_frame *f) { return f->conn_id; }

enum tp_role tp_frame_role(const struct tp_frame *f) { return f->role; }

/* ---- router ----------------------------------------------------------------- */

static void reply_error(struct tp_endpoint *ep, const struct tp_frame *f, const struct tp_hdr *h,
			int code, const char *text)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 4096);
	struct tp_error e;
	memset(&e, 0, sizeof(e));
	e.code = code;
	snprintf(e.message, sizeof(e.message), "%s", text);
	struct tp_addr a = {.group = h->group, .target = "", .sender = h->target,
			    .request_id = h->request_id};
	if (!tp_name_is_valid(a.group, strlen(a.group)))
		a.group = "-";
	if (!tp_name_is_valid(a.sender, strlen(a.sender)))
		a.sender = "";
	if (tp_fb_add_error(&fb, &a, &e) == 0)
		(void)tp_reply(ep, f, &fb);
	tp_fb_free(&fb);
}

/* Clients (no sender id) get an error reply; peers only a counter, since
 * they never read replies. */
static bool from_client(const struct tp_hdr *h) { return h->sender[0] == '\0'; }

static void route_frame(struct tp_endpoint *ep, struct tp_frame *f)
{
	size_t len, off = 0;
	const uint8_t *buf = tp_frame_data(f, &len);
	if (len > ep->cfg.max_frame_bytes || tp_frame_begin(buf, len, &off) != 0) {
		tp_count(&ep->decode_errors, 1);
		return;
	}
	for (uint32_t guard = 0; guard < 1u << 20; guard++) {
		struct tp_hdr h;
		memset(&h, 0, sizeof(h));
		int rc = tp_frame_next(buf, len, &off, &h);
		if (rc == DL_ENOTFOUND)
			return;
		if (rc != 0) {
			tp_count(&ep->decode_errors, 1);
			if (h.type != 0 && from_client(&h))
				reply_error(ep, f, &h, DL_EPROTO, "malformed or unknown message");
			return; /* the rest of the frame cannot be trusted */
		}
		tp_count(&ep->msgs_in, 1);
		rc = ep->cfg.deliver(ep->cfg.arg, f, &h);
		if (rc == DL_ENOTFOUND) {
			tp_count(&ep->unknown_target, 1);
			if (from_client(&h))
				reply_error(ep, f, &h, DL_ENOTFOUND, "no such group or member on this node");
		} else if (rc != 0) {
			tp_count(&ep->rejected, 1);
			if (from_client(&h))
				reply_error(ep, f, &h, rc, dl_strerror(rc));
		}
	}
}

/* Routes one SP message (`msg`, `len` bytes: the backtrace, then the body)
 * of connection c. Deliveries never overlap (deliver_mu: the runtime's
 * table swap relies on one deliverer at a time), whichever connection's
 * callback runs them. False when the message is malformed (its backtrace
 * runs past its end: nng's REP closes such a connection too). */
static bool route_msg(struct conn *c, const uint8_t *msg, size_t len)
{
	struct tp_endpoint *ep = c->ep;
	size_t bt = sp_backtrace_len(msg, len);
	if (bt == 0)
		return false;
	if (bt / SP_WORD_BYTES > SP_MAX_HOPS)
		return true; /* too many hops: dropped, as nng drops it */
	tp_count(&ep->frames_in, 1);
	tp_count(&ep->bytes_in, len - bt);
	struct tp_frame *f = malloc(sizeof(*f) + len);
	if (f == NULL) {
		tp_count(&ep->rejected, 1);
		return true;
	}
	atomic_init(&f->refs, 1);
	f->role = c->role;
	f->conn_id = c->id;
	f->bt_len = (uint32_t)bt;
	f->len = len - bt;
	memcpy(f->data, msg, len);
	pthread_mutex_lock(&ep->deliver_mu);
	if (!ep->paused)
		route_frame(ep, f);
	pthread_mutex_unlock(&ep->deliver_mu);
	tp_frame_release(f);
	return true;
}

/* ---- inbound connections --------------------------------------------------------- */

static void conn_end(struct conn *c);

static void tx_cb(void *arg)
{
	struct conn *c = arg;
	int rv = nng_aio_result(c->tx_aio);
	pthread_mutex_lock(&c->mu);
	if (rv != 0) {
		c->tx.active = false;
		pthread_mutex_unlock(&c->mu);
		conn_end(c);
		return;
	}
	sp_out_sent(&c->tx, nng_aio_count(c->tx_aio), c->s, c->tx_aio, c->dead);
	pthread_mutex_unlock(&c->mu);
}

/* The remote address of the stream, "a.b.c.d:port", for log lines. */
static void stream_addr(nng_stream *s, char *buf, size_t cap)
{
	nng_sockaddr sa;
	if (nng_stream_get_addr(s, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INET) {
		const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
		snprintf(buf, cap, "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
			 (unsigned)__builtin_bswap16(sa.s_in.sa_port));
	} else {
		snprintf(buf, cap, "(inbound)");
	}
}

/* Counts in `c` and logs, at most once a second, a connection closed. */
static void refused_log(struct tp_endpoint *ep, _Atomic uint64_t *c, const char *why)
{
	tp_count(c, 1);
	uint64_t now = dl_now_ns();
	uint64_t last = atomic_load_explicit(&ep->refused_log_ns, memory_order_relaxed);
	if ((last == 0 || now - last >= 1000000000ull) &&
	    atomic_compare_exchange_strong(&ep->refused_log_ns, &last, now))
		dl_log(DL_LOG_WARN, NULL, NULL, "inbound connection closed: %s", why);
}

/* The peer's SP header came (so with TLS the handshake is done): check it,
 * take the connection's role from its certificate (before any message of
 * it is routed), count it as up. False: close it. */
static bool conn_hello(struct conn *c, const uint8_t *h)
{
	struct tp_endpoint *ep = c->ep;
	if (!sp_hello_is(h, SP_PROTO_REQ))
		return false; /* not a REQ peer: as nng's negotiation, no count */
	if (ep->cfg.tls != NULL) {
		c->role = tp_tls_stream_role(c->s);
		if (c->role == TP_ROLE_NONE) {
			/* cannot happen with auth mode REQUIRED, but a connection
			 * without a role must not speak */
			refused_log(ep, &ep->conns_refused, "its certificate was not verified");
			return false;
		}
	}
	pthread_mutex_lock(&c->mu);
	bool up = c->up = !c->dead;
	if (up && ep->cfg.tls != NULL)
		tp_count(c->role == TP_ROLE_NODE ? &ep->conns_node : &ep->conns_client, 1);
	pthread_mutex_unlock(&c->mu);
	if (up && ep->cfg.on_conn != NULL)
		ep->cfg.on_conn(ep->cfg.arg, c->addr, false, true);
	return true;
}

/* Cuts what the buffer holds into messages and routes them; keeps a
 * partial one, growing the buffer for it (up to max_frame_bytes). False:
 * close the connection. */
static bool conn_parse(struct conn *c)
{
	struct tp_endpoint *ep = c->ep;
	if (!c->rx.hdr_done) {
		const uint8_t *h = sp_in_hello(&c->rx);
		if (h == NULL)
			return true;
		if (!conn_hello(c, h))
			return false;
	}
	for (uint32_t guard = 0; guard < (1u << 24); guard++) {
		const uint8_t *msg = NULL;
		size_t len = 0;
		enum sp_next r = sp_in_next(&c->rx, ep->cfg.max_frame_bytes, &msg, &len);
		if (r == SP_NEXT_MORE)
			break;
		if (r == SP_NEXT_TOO_BIG) {
			/* Refused before it is read, as nng's NNG_OPT_RECVMAXSZ
			 * did: the connection closes (a peer redials). */
			tp_count(&ep->decode_errors, 1);
			return false;
		}
		if (r != SP_NEXT_MSG || atomic_load_explicit(&ep->stopping, memory_order_relaxed))
			return false;
		if (!route_msg(c, msg, len))
			return false;
	}
	sp_in_compact(&c->rx);
	return true;
}

/* Asks for more bytes; not once the connection ended (under mu: conn_end
 * closes the stream under it too). */
static void conn_recv(struct conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (!c->dead)
		sp_in_recv(&c->rx, c->s, c->rx_aio);
	pthread_mutex_unlock(&c->mu);
}

/* The receive callback: one per connection, on nng's threads; a frame is
 * routed from here, with no thread of ours or queue in between. */
static void rx_cb(void *arg)
{
	struct conn *c = arg;
	int rv = nng_aio_result(c->rx_aio);
	if (sp_in_hello_timed_out(&c->rx, rv))
		refused_log(c->ep, &c->ep->hello_timeouts_in,
			    "no TLS handshake or SP header within the hello timeout");
	if (rv != 0 || atomic_load_explicit(&c->ep->stopping, memory_order_relaxed)) {
		conn_end(c);
		return;
	}
	c->rx.len += nng_aio_count(c->rx_aio);
	DL_ASSERT(c->rx.len <= c->rx.cap);
	if (!conn_parse(c)) {
		conn_end(c);
		return;
	}
	conn_recv(c);
}

/* Ends c: it leaves the table (no new reply finds it), its stream closes
 * (what is pending fails), it is counted down and logged, and it goes to
 * the reaper. Any thread, any number of times. */
static void conn_end(struct conn *c)
{
	struct tp_endpoint *ep = c->ep;
	pthread_mutex_lock(&c->mu);
	bool first = !c->dead, was_up = c->up;
	c->dead = true;
	c->up = false;
	if (first)
		nng_stream_close(c->s);
	pthread_mutex_unlock(&c->mu);
	if (!first)
		return;
	conns_del(ep, c);
	if (was_up && ep->cfg.tls != NULL)
		atomic_fetch_sub_explicit(c->role == TP_ROLE_NODE ? &ep->conns_node
								   : &ep->conns_client,
					  1, memory_order_relaxed);
	if (was_up && ep->cfg.on_conn != NULL)
		ep->cfg.on_conn(ep->cfg.arg, c->addr, false, false);
	pthread_mutex_lock(&ep->dead_mu);
	c->next_dead = ep->dead;
	ep->dead = c;
	pthread_cond_signal(&ep->dead_cv);
	pthread_mutex_unlock(&ep->dead_mu);
}

static void conn_free(struct conn *c)
{
	if (c == NULL)
		return;
	if (c->rx_aio != NULL) {
		nng_aio_stop(c->rx_aio); /* waits for a callback under way */
		nng_aio_free(c->rx_aio);
	}
	if (c->tx_aio != NULL) {
		nng_aio_stop(c->tx_aio);
		nng_aio_free(c->tx_aio);
	}
	nng_stream_free(c->s);
	sp_in_free(&c->rx);
	sp_out_free(&c->tx);
	pthread_mutex_destroy(&c->mu);
	free(c);
}

/* A new connection from the listener: our SP header goes out first, then
 * it reads. Takes ownership of s. */
static void conn_start(struct tp_endpoint *ep, nng_stream *s)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		nng_stream_free(s);
		return;
	}
	c->ep = ep;
	c->s = s;
	c->role = TP_ROLE_NODE; /* without TLS; with TLS set by conn_hello */
	/* A use of ours until it reads: it may end (tx_cb) as soon as it is
	 * written to, and the reaper must not free it under us. */
	atomic_init(&c->users, 1);
	pthread_mutex_init(&c->mu, NULL);
	stream_addr(s, c->addr, sizeof(c->addr));
	if (!sp_in_init(&c->rx) || !obuf_reserve(&c->tx.wire, SP_HDR_BYTES) ||
	    nng_aio_alloc(&c->rx_aio, rx_cb, c) != 0 || nng_aio_alloc(&c->tx_aio, tx_cb, c) != 0) {
		conn_free(c);
		return;
	}
	if (!conns_put(ep, c)) {
		char why[96];
		snprintf(why, sizeof(why), "too many connections open (at most %d)", TP_MAX_CONNS);
		refused_log(ep, &ep->conns_refused, why);
		conn_free(c);
		return;
	}
	sp_in_start(&c->rx, ep->cfg.hello_timeout_ms);
	pthread_mutex_lock(&c->mu);
	bool ok = sp_out_hello(&c->tx, SP_PROTO_REP, c->s, c->tx_aio);
	DL_ASSERT(ok); /* its buffer was reserved above */
	pthread_mutex_unlock(&c->mu);
	conn_recv(c);
	conn_unuse(c);
}

int tp_reply(struct tp_endpoint *ep, const struct tp_frame *f, struct tp_fb *fb)
{
	if (fb->n_msgs == 0)
		return 0;
	uint32_t n_msgs = fb->n_msgs;
	size_t body = fb->len;
	struct conn *c = conns_use(ep, f->conn_id);
	int rc = DL_ECLOSED;
	if (c == NULL)
		goto out;
	pthread_mutex_lock(&c->mu);
	size_t n = 8 + f->bt_len + body;
	if (c->dead) {
		rc = DL_ECLOSED;
	} else if (c->tx.out.len + n > ep->cfg.peer_queue_bytes || !obuf_reserve(&c->tx.out, n)) {
		rc = DL_EIO; /* a client that does not read its replies */
	} else {
		uint8_t *p = c->tx.out.buf + c->tx.out.len;
		sp_put_be64(p, f->bt_len + body);
		memcpy(p + 8, f->data, f->bt_len);
		memcpy(p + 8 + f->bt_len, fb->buf, body);
		c->tx.out.len += n;
		if (!c->tx.active) /* idle: this thread writes it */
			sp_out_next(&c->tx, c->s, c->tx_aio, c->dead);
		rc = 0;
	}
	pthread_mutex_unlock(&c->mu);
	conn_unuse(c);
out:
	if (rc != 0) {
		tp_count(&ep->dropped_sends, n_msgs);
	} else {
		tp_count(&ep->frames_out, 1);
		tp_count(&ep->msgs_out, n_msgs);
		tp_count(&ep->bytes_out, body);
	}
	tp_fb_reset(fb);
	return rc;
}

/* The reaper thread: frees ended connections once no reply uses them. */
static void *reaper_main(void *arg)
{
	struct tp_endpoint *ep = arg;
	pthread_setname_np(pthread_self(), "dl-reap");
	pthread_mutex_lock(&ep->dead_mu);
	for (;;) {
		struct conn *list = ep->dead, *keep = NULL;
		ep->dead = NULL;
		bool stop = ep->reaper_stop;
		pthread_mutex_unlock(&ep->dead_mu);
		while (list != NULL) {
			struct conn *c = list;
			list = c->next_dead;
			/* acquire: pairs with conn_unuse's release */
			if (atomic_load_explicit(&c->users, memory_order_acquire) == 0) {
				conn_free(c);
			} else {
				c->next_dead = keep;
				keep = c;
			}
		}
		pthread_mutex_lock(&ep->dead_mu);
		while (keep != NULL) {
			struct conn *c = keep;
			keep = c->next_dead;
			c->next_dead = ep->dead;
			ep->dead = c;
		}
		if (stop && ep->dead == NULL)
			break;
		if (ep->dead != NULL) { /* in use: look again soon */
			struct timespec ts = dl_timespec_at(dl_now_ns() + 10 * 1000000u);
			pthread_cond_timedwait(&ep->dead_cv, &ep->dead_mu, &ts);
		} else if (!ep->reaper_stop) {
			pthread_cond_wait(&ep->dead_cv, &ep->dead_mu);
		}
	}
	pthread_mutex_unlock(&ep->dead_mu);
	return NULL;
}

/* The accept loop: ours, so no error ends it (nng 1.5.2's socket listener
 * ended its loop for good when a connection closed during negotiation and
 * its error reached the accept). An error is that connection's only,
 * NNG_ECLOSED included unless we are closing; after ACCEPT_ERRS_PAUSE
 * errors in a row (out of descriptors, say) it pauses briefly rather than
 * spin. */
#define ACCEPT_ERRS_PAUSE 16
#define ACCEPT_PAUSE_MS   20

static void accept_cb(void *arg)
{
	struct tp_endpoint *ep = arg;
	int rv = nng_aio_result(ep->accept_aio);
	if (atomic_load_explicit(&ep->stopping, memory_order_relaxed)) {
		if (rv == 0 && !ep->accept_sleeping)
			nng_stream_free(nng_aio_get_output(ep->accept_aio, 0));
		return;
	}
	if (ep->accept_sleeping) {
		ep->accept_sleeping = false;
	} else if (rv == 0) {
		ep->accept_errs = 0;
		conn_start(ep, nng_aio_get_output(ep->accept_aio, 0));
	} else if (++ep->accept_errs >= ACCEPT_ERRS_PAUSE) {
		ep->accept_errs = 0;
		ep->accept_sleeping = true;
		nng_sleep_aio(ACCEPT_PAUSE_MS, ep->accept_aio);
		return;
	}
	nng_stream_listener_accept(ep->listener, ep->accept_aio);
}

/* Every connection, closed (for tp_endpoint_close). */
static void close_all_conns(struct tp_endpoint *ep)
{
	for (;;) {
		struct conn *c = NULL;
		pthread_mutex_lock(&ep->conns_mu);
		for (uint32_t i = 0; i < CONN_SLOTS && c == NULL; i++)
			c = ep->conns[i];
		/* relaxed: conns_mu orders it before the reaper's check */
		if (c != NULL)
			atomic_fetch_add_explicit(&c->users, 1, memory_order_relaxed);
		pthread_mutex_unlock(&ep->conns_mu);
		if (c == NULL)
			return;
		conn_end(c); /* takes it out of the table */
		conn_unuse(c);
	}
}

/* ---- endpoint ---------------------------------------------------------------- */

static int listener_open(struct tp_endpoint *ep)
{
	int rv = nng_stream_listener_alloc(&ep->listener, ep->url);
	if (rv != 0)
		return rv;
	/* Nagle off, as nng's sockets have it (link.c, dialer_make). */
	rv = nng_stream_listener_set_bool(ep->listener, NNG_OPT_TCP_NODELAY, true);
	if (rv == 0)
		rv = nng_stream_listener_set_bool(ep->listener, NNG_OPT_TCP_KEEPALIVE, true);
	if (ep->cfg.tls != NULL)
		rv = tp_tls_setup_stream_listener(ep->cfg.tls, ep->listener);
	if (rv == 0)
		rv = nng_stream_listener_listen(ep->listener);
	if (rv == 0)
		rv = nng_aio_alloc(&ep->accept_aio, accept_cb, ep);
	if (rv != 0) {
		nng_stream_listener_free(ep->listener);
		ep->listener = NULL;
		return rv;
	}
	nng_stream_listener_accept(ep->listener, ep->accept_aio);
	return 0;
}

static void endpoint_free(struct tp_endpoint *ep)
{
	pthread_mutex_destroy(&ep->deliver_mu);
	pthread_mutex_destroy(&ep->peers_mu);
	pthread_mutex_destroy(&ep->conns_mu);
	pthread_mutex_destroy(&ep->dead_mu);
	pthread_cond_destroy(&ep->dead_cv);
	free(ep->conns);
	free(ep);
}

/* Stops the reaper once it freed every ended connection. */
static void reaper_join(struct tp_endpoint *ep)
{
	if (!ep->reaper_started)
		return;
	pthread_mutex_lock(&ep->dead_mu);
	ep->reaper_stop = true;
	pthread_cond_signal(&ep->dead_cv);
	pthread_mutex_unlock(&ep->dead_mu);
	pthread_join(ep->reaper, NULL);
}

int tp_endpoint_open(const struct tp_config *cfg, struct tp_endpoint **out, struct dl_errctx *err)
{
	*out = NULL;
	if (cfg == NULL || cfg->listen_addr == NULL || cfg->deliver == NULL ||
	    cfg->max_frame_bytes == 0)
		return dl_errf(err, DL_EINVAL, "transport: incomplete configuration");
	struct tp_endpoint *ep = calloc(1, sizeof(*ep));
	if (ep == NULL)
		return dl_errf(err, DL_ENOMEM, "transport: out of memory");
	ep->cfg = *cfg;
	snprintf(ep->listen_addr, sizeof(ep->listen_addr), "%s", cfg->listen_addr);
	ep->cfg.listen_addr = ep->listen_addr;
	pthread_mutex_init(&ep->deliver_mu, NULL);
	pthread_mutex_init(&ep->peers_mu, NULL);
	pthread_mutex_init(&ep->conns_mu, NULL);
	pthread_mutex_init(&ep->dead_mu, NULL);
	dl_cond_init_monotonic(&ep->dead_cv);
	if (ep->cfg.hello_timeout_ms == 0)
		ep->cfg.hello_timeout_ms = TP_DEFAULT_HELLO_TIMEOUT_MS;

	int rc = tp_make_url(cfg->tls, cfg->listen_addr, ep->url, sizeof(ep->url));
	if (rc != 0) {
		dl_errf(err, rc, "transport: bad listen address '%s'", cfg->listen_addr);
		goto err_free;
	}
	if ((ep->conns = calloc(CONN_SLOTS, sizeof(*ep->conns))) == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "transport: out of memory");
		goto err_free;
	}
	if (pthread_create(&ep->reaper, NULL, reaper_main, ep) != 0) {
		rc = dl_errf(err, DL_ENOMEM, "transport: cannot start a thread");
		goto err_free;
	}
	ep->reaper_started = true;
	int rv = listener_open(ep);
	if (rv != 0) {
		rc = dl_errf(err, rv == NNG_EADDRINUSE ? DL_EEXIST : DL_EIO,
			     "transport: cannot listen on %s: %s", cfg->listen_addr, nng_strerror(rv));
		goto err_reaper;
	}
	*out = ep;
	return 0;

err_reaper:
	reaper_join(ep);
err_free:
	endpoint_free(ep);
	return rc;
}

void tp_endpoint_quiesce(struct tp_endpoint *ep)
{
	pthread_mutex_lock(&ep->deliver_mu);
	ep->paused = true;
	pthread_mutex_unlock(&ep->deliver_mu);
}

void tp_endpoint_close(struct tp_endpoint *ep)
{
	if (ep == NULL)
		return;
	tp_endpoint_quiesce(ep);
	atomic_store_explicit(&ep->stopping, true, memory_order_relaxed);
	/* No new connection (the pending accept fails), then none left. */
	nng_stream_listener_close(ep->listener);
	nng_aio_stop(ep->accept_aio); /* waits for accept_cb */
	nng_aio_free(ep->accept_aio);
	close_all_conns(ep);
	reaper_join(ep);
	nng_stream_listener_free(ep->listener);
	tp_peers_close_all(ep);
	endpoint_free(ep);
}

void tp_endpoint_stats(struct tp_endpoint *ep, struct tp_stats *st)
{
#define LOAD(x) atomic_load_explicit(&ep->x, memory_order_relaxed)
	st->frames_in = LOAD(frames_in);
	st->msgs_in = LOAD(msgs_in);
	st->bytes_in = LOAD(bytes_in);
	st->frames_out = LOAD(frames_out);
	st->msgs_out = LOAD(msgs_out);
	st->bytes_out = LOAD(bytes_out);
	st->decode_errors = LOAD(decode_errors);
	st->unknown_target = LOAD(unknown_target);
	st->rejected = LOAD(rejected);
	st->dropped_sends = LOAD(dropped_sends);
	st->peers_connected = LOAD(peers_connected);
	st->conns_node = LOAD(conns_node);
	st->conns_client = LOAD(conns_client);
	st->conns_refused = LOAD(conns_refused);
	st->hello_timeouts = LOAD(hello_timeouts_in) + LOAD(link_counters.hello_timeouts);
	st->peer_connects = LOAD(link_counters.connects);
	st->peer_dial_failures = LOAD(link_counters.dial_failures);
	st->peer_send_timeouts = LOAD(link_counters.send_timeouts);
	st->decode_errors += LOAD(link_counters.protocol_errors);
	st->listener_restarts = 0; /* our accept loop does not end (accept_cb) */
	st->dialer_restarts = 0;   /* our links redial themselves (link.c) */
#undef LOAD
}
