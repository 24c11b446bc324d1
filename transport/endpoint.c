/*
 * endpoint.c - the node's endpoint: the listener, its inbound connections
 * and the router, and the per-peer senders. See transport.h.
 *
 * Inbound connections are nng streams (nng_stream_listener), not an nng
 * socket: each connection reads its bytes into a buffer of its own, cuts
 * them into frames and routes each one from its receive callback; a reply
 * is written by the thread that has it when the connection is idle, else
 * queued behind the write in progress and sent with what else queued
 * meanwhile. The wire is nng's SP over TCP as a REP peer speaks it
 * (docs/PROTOCOL.md, "Transport"), so REQ sockets (peers' and clients')
 * talk to it unchanged.
 *
 * Ownership:
 *  - struct tp_endpoint: immutable after open, except `peers` (guarded by
 *    peers_mu), `paused` (guarded by deliver_mu), the connection table
 *    (conns_mu) and the counters (atomics, relaxed: statistics only).
 *  - struct conn: the receive state is its receive callback's (one receive
 *    pending at a time); the send state, `dead` and `up` are guarded by its
 *    `mu`; `users` counts the threads between finding it in the table and
 *    being done with it. A connection that ends leaves the table at once
 *    and is freed by the reaper thread once no one uses it.
 *  - struct tp_peer: `cur`, the frame queue and `stop` are guarded by the
 *    peer's `mu`; the sender thread owns a frame once it popped it.
 *  - struct tp_frame: immutable after the router built it; freed by the last
 *    tp_frame_release() (refs is atomic, acq_rel on the final drop). It
 *    names its connection by id, so it may outlive it.
 */
#include "transport/transport.h"

#include "common/dl_log.h"
#include "common/dl_time.h"
#include "transport/tls_internal.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/tls/tls.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TP_PEER_QUEUE_FRAMES 1024

/* nng's SP over TCP: each side first sends 0 'S' 'P' 0, its protocol
 * (16 bits, big endian) and two zero bytes; then every message is a 64-bit
 * big-endian length and that many bytes. REQ's raw messages start with the
 * request id (a 32-bit word with the high bit set), which a reply carries
 * back first (with any hops before it: a "backtrace"). */
#define SP_HDR_BYTES 8
#define SP_PROTO_REQ 0x30         /* NNG_REQ0_SELF */
#define SP_PROTO_REP 0x31         /* NNG_REP0_SELF */
#define SP_MAX_HOPS  8            /* nng's default NNG_OPT_MAXTTL */
#define RX_BUF_BYTES (64u * 1024) /* a connection's receive buffer, at rest */

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

struct obuf {
	uint8_t *buf;
	size_t len, cap;
};

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
	uint8_t *rx_buf;
	size_t rx_len, rx_cap;
	bool hdr_done;

	/* send: guarded by mu */
	pthread_mutex_t mu;
	nng_aio *tx_aio;
	struct obuf out;  /* replies waiting for the write in progress */
	struct obuf wire; /* the write in progress */
	size_t wire_off;
	bool sending;
	bool dead;
	bool up; /* its SP header came, and it counts as connected */
};

struct sealed {
	uint8_t *buf;
	size_t len;
	uint32_t n_msgs;
};

struct tp_peer {
	struct tp_endpoint *ep;
	struct tp_peer *next; /* in ep->peers */
	char addr[TP_ADDR_MAX + 1];
	char url[TP_ADDR_MAX + 16];
	nng_socket sock;
	nng_dialer dialer;     /* replaced by the TLS watchdog (under ep->peers_mu) */
	uint64_t down_since_ns; /* the watchdog's: when it first saw no connection (0: up) */
	_Atomic uint32_t pipe; /* the connection up (nng pipe id; 0: none) */
	pthread_t thread;
	bool thread_started;
	uint32_t refs; /* guarded by ep->peers_mu */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tp_fb cur;
	struct sealed q[TP_PEER_QUEUE_FRAMES];
	uint32_t q_head, q_count;
	size_t q_bytes;
	bool flush_requested; /* cur has messages whose pass ended */
	bool sending;         /* a frame is between the queue and nng (no lock held) */
	bool stop;
	uint32_t req_id;
};

struct tp_endpoint {
	struct tp_config cfg;
	char listen_addr[TP_ADDR_MAX + 1];
	char url[TP_ADDR_MAX + 16];
	nng_stream_listener *listener;
	nng_aio *accept_aio;
	bool accept_sleeping; /* accept_aio is a pause after errors (its callback's) */
	uint32_t accept_errs; /* in a row (its callback's) */

	pthread_mutex_t deliver_mu;
	bool paused;
	_Atomic bool stopping; /* no further accept, receive or delivery */

	pthread_mutex_t peers_mu;
	struct tp_peer *peers;

	pthread_mutex_t conns_mu;
	struct conn **conns; /* CONN_SLOTS: id -> connection, while it lives */
	uint32_t n_conns, next_id;
	_Atomic uint64_t refused_log_ns; /* last "connection refused" line */

	/* The reaper frees ended connections (never one of their own
	 * callbacks: nng_aio_free there would wait for itself). */
	pthread_mutex_t dead_mu;
	pthread_cond_t dead_cv;
	struct conn *dead;
	bool reaper_stop;
	bool reaper_started;
	pthread_t reaper;

	/* The TLS watchdog of the dialers (see "nng 1.5.2's dial loops"). */
	_Atomic uint64_t dialer_restarts;
	pthread_mutex_t watch_mu;
	pthread_cond_t watch_cv; /* CLOCK_MONOTONIC */
	bool watch_stop;
	bool watch_started;
	pthread_t watch;

	_Atomic uint64_t frames_in, msgs_in, bytes_in;
	_Atomic uint64_t frames_out, msgs_out, bytes_out;
	_Atomic uint64_t decode_errors, unknown_target, rejected, dropped_sends;
	_Atomic uint64_t peers_connected;
	_Atomic uint64_t conns_node, conns_client, conns_refused;
};

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

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

/* ---- closing sockets ----------------------------------------------------------

 * nng_close() can block for good on a socket that still has pipes with
 * traffic in flight (nng issues #1219, #1813, #1827; seen here with 1.5.2 on
 * the listening socket after a stop under load). Nothing durable depends on
 * the close: stores are flushed and closed before the endpoint goes. So a
 * close that does not return within CLOSE_WAIT_MS is left to finish on its
 * own thread, logged, and the process goes on; what it holds stays reachable
 * from `abandoned` (so leak checkers do not flag it) until the process ends. */
#define CLOSE_WAIT_MS 2000

struct closer {
	nng_socket sock;
	void *keep; /* what nng's callbacks may still use while it closes */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static struct closer *_Atomic abandoned[64];
static _Atomic uint32_t n_abandoned;

static void *closer_main(void *arg)
{
	struct closer *c = arg;
	nng_close(c->sock);
	pthread_mutex_lock(&c->mu);
	c->done = true;
	pthread_cond_signal(&c->cv);
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

bool tp_close_bounded(nng_socket sock, const char *what, void *keep)
{
	struct closer *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		nng_close(sock);
		return true;
	}
	c->sock = sock;
	c->keep = keep;
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->cv, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, closer_main, c) != 0) {
		nng_close(sock);
		free(c);
		return true;
	}
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += CLOSE_WAIT_MS / 1000;
	pthread_mutex_lock(&c->mu);
	while (!c->done && pthread_cond_timedwait(&c->cv, &c->mu, &deadline) == 0)
		;
	bool done = c->done;
	pthread_mutex_unlock(&c->mu);
	if (done) {
		pthread_join(t, NULL);
		pthread_cond_destroy(&c->cv);
		pthread_mutex_destroy(&c->mu);
		free(c);
		return true;
	}
	pthread_detach(t);
	uint32_t i = atomic_fetch_add(&n_abandoned, 1);
	if (i < 64)
		atomic_store(&abandoned[i], c);
	fprintf(stderr, "transport: closing the %s socket did not finish within %d ms (nng); "
			"left to finish in the background\n",
		what, CLOSE_WAIT_MS);
	return false;
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
		count(&ep->decode_errors, 1);
		return;
	}
	for (uint32_t guard = 0; guard < 1u << 20; guard++) {
		struct tp_hdr h;
		memset(&h, 0, sizeof(h));
		int rc = tp_frame_next(buf, len, &off, &h);
		if (rc == DL_ENOTFOUND)
			return;
		if (rc != 0) {
			count(&ep->decode_errors, 1);
			if (h.type != 0 && from_client(&h))
				reply_error(ep, f, &h, DL_EPROTO, "malformed or unknown message");
			return; /* the rest of the frame cannot be trusted */
		}
		count(&ep->msgs_in, 1);
		rc = ep->cfg.deliver(ep->cfg.arg, f, &h);
		if (rc == DL_ENOTFOUND) {
			count(&ep->unknown_target, 1);
			if (from_client(&h))
				reply_error(ep, f, &h, DL_ENOTFOUND, "no such group or member on this node");
		} else if (rc != 0) {
			count(&ep->rejected, 1);
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
	size_t bt = 0;
	for (;;) {
		if (bt + 4 > len)
			return false;
		bt += 4;
		if (msg[bt - 4] & 0x80u)
			break;
	}
	if (bt / 4 > SP_MAX_HOPS)
		return true; /* too many hops: dropped, as nng drops it */
	count(&ep->frames_in, 1);
	count(&ep->bytes_in, len - bt);
	struct tp_frame *f = malloc(sizeof(*f) + len);
	if (f == NULL) {
		count(&ep->rejected, 1);
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

static void obuf_free(struct obuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->len = b->cap = 0;
}

static bool obuf_reserve(struct obuf *b, size_t more)
{
	if (b->len + more <= b->cap)
		return true;
	size_t cap = b->cap < 4096 ? 4096 : b->cap;
	while (cap < b->len + more)
		cap *= 2;
	uint8_t *nb = realloc(b->buf, cap);
	if (nb == NULL)
		return false;
	b->buf = nb;
	b->cap = cap;
	return true;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

/* Starts writing c->wire from wire_off. Caller holds c->mu, with `sending`
 * set. The write runs on the caller's thread as far as the socket takes it
 * (nng's TCP and TLS streams write at once when nothing is queued before);
 * its completion comes on one of nng's threads (tx_cb). */
static void conn_write(struct conn *c)
{
	DL_ASSERT(c->sending && c->wire_off < c->wire.len);
	nng_iov iov = {.iov_buf = c->wire.buf + c->wire_off, .iov_len = c->wire.len - c->wire_off};
	nng_aio_set_iov(c->tx_aio, 1, &iov);
	nng_stream_send(c->s, c->tx_aio);
}

/* Swaps what waits into the wire and writes it, or marks the connection
 * idle. Caller holds c->mu. */
static void conn_send_next(struct conn *c)
{
	c->wire.len = 0;
	c->wire_off = 0;
	if (c->dead || c->out.len == 0) {
		c->sending = false;
		return;
	}
	struct obuf t = c->wire;
	c->wire = c->out;
	c->out = t;
	c->sending = true;
	conn_write(c);
}

static void conn_end(struct conn *c);

static void tx_cb(void *arg)
{
	struct conn *c = arg;
	int rv = nng_aio_result(c->tx_aio);
	pthread_mutex_lock(&c->mu);
	if (rv != 0) {
		c->sending = false;
		pthread_mutex_unlock(&c->mu);
		conn_end(c);
		return;
	}
	c->wire_off += nng_aio_count(c->tx_aio);
	if (c->wire_off < c->wire.len && !c->dead)
		conn_write(c); /* the rest of a partial write */
	else
		conn_send_next(c);
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

static void refused_log(struct tp_endpoint *ep, const char *why)
{
	count(&ep->conns_refused, 1);
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
	if (h[0] != 0 || h[1] != 'S' || h[2] != 'P' || h[3] != 0 || h[4] != 0 ||
	    h[5] != SP_PROTO_REQ || h[6] != 0 || h[7] != 0)
		return false; /* not a REQ peer: as nng's negotiation, no count */
	if (ep->cfg.tls != NULL) {
		c->role = tp_tls_stream_role(c->s);
		if (c->role == TP_ROLE_NONE) {
			/* cannot happen with auth mode REQUIRED, but a connection
			 * without a role must not speak */
			refused_log(ep, "its certificate was not verified");
			return false;
		}
	}
	pthread_mutex_lock(&c->mu);
	bool up = c->up = !c->dead;
	if (up && ep->cfg.tls != NULL)
		count(c->role == TP_ROLE_NODE ? &ep->conns_node : &ep->conns_client, 1);
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
	size_t off = 0;
	if (!c->hdr_done) {
		if (c->rx_len < SP_HDR_BYTES)
			return true;
		if (!conn_hello(c, c->rx_buf))
			return false;
		c->hdr_done = true;
		off = SP_HDR_BYTES;
	}
	while (c->rx_len - off >= 8) {
		uint64_t len = get_be64(c->rx_buf + off);
		if (len > ep->cfg.max_frame_bytes) {
			/* Refused before it is read, as nng's NNG_OPT_RECVMAXSZ
			 * did: the connection closes (a peer redials). */
			count(&ep->decode_errors, 1);
			return false;
		}
		if (c->rx_len - off - 8 < len) {
			if (8 + len > c->rx_cap) {
				memmove(c->rx_buf, c->rx_buf + off, c->rx_len - off);
				c->rx_len -= off;
				off = 0;
				uint8_t *nb = realloc(c->rx_buf, 8 + len);
				if (nb == NULL)
					return false;
				c->rx_buf = nb;
				c->rx_cap = 8 + len;
			}
			break;
		}
		if (atomic_load_explicit(&ep->stopping, memory_order_relaxed))
			return false;
		if (!route_msg(c, c->rx_buf + off + 8, (size_t)len))
			return false;
		off += 8 + (size_t)len;
	}
	memmove(c->rx_buf, c->rx_buf + off, c->rx_len - off);
	c->rx_len -= off;
	if (c->rx_len == 0 && c->rx_cap > RX_BUF_BYTES) { /* back to its size at rest */
		uint8_t *nb = realloc(c->rx_buf, RX_BUF_BYTES);
		if (nb != NULL) {
			c->rx_buf = nb;
			c->rx_cap = RX_BUF_BYTES;
		}
	}
	return true;
}

/* Asks for more bytes, into the free end of the buffer; not once the
 * connection ended (under mu: conn_end closes the stream under it too). */
static void conn_recv(struct conn *c)
{
	pthread_mutex_lock(&c->mu);
	if (!c->dead) {
		nng_iov iov = {.iov_buf = c->rx_buf + c->rx_len, .iov_len = c->rx_cap - c->rx_len};
		nng_aio_set_iov(c->rx_aio, 1, &iov);
		nng_stream_recv(c->s, c->rx_aio);
	}
	pthread_mutex_unlock(&c->mu);
}

/* The receive callback: one per connection, on nng's threads; a frame is
 * routed from here, with no thread of ours or queue in between. */
static void rx_cb(void *arg)
{
	struct conn *c = arg;
	int rv = nng_aio_result(c->rx_aio);
	if (rv != 0 || atomic_load_explicit(&c->ep->stopping, memory_order_relaxed)) {
		conn_end(c);
		return;
	}
	c->rx_len += nng_aio_count(c->rx_aio);
	DL_ASSERT(c->rx_len <= c->rx_cap);
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
	free(c->rx_buf);
	obuf_free(&c->out);
	obuf_free(&c->wire);
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
	c->rx_cap = RX_BUF_BYTES;
	if ((c->rx_buf = malloc(c->rx_cap)) == NULL || !obuf_reserve(&c->wire, SP_HDR_BYTES) ||
	    nng_aio_alloc(&c->rx_aio, rx_cb, c) != 0 || nng_aio_alloc(&c->tx_aio, tx_cb, c) != 0) {
		conn_free(c);
		return;
	}
	if (!conns_put(ep, c)) {
		char why[96];
		snprintf(why, sizeof(why), "too many connections open (at most %d)", TP_MAX_CONNS);
		refused_log(ep, why);
		conn_free(c);
		return;
	}
	const uint8_t hello[SP_HDR_BYTES] = {0, 'S', 'P', 0, 0, SP_PROTO_REP, 0, 0};
	memcpy(c->wire.buf, hello, sizeof(hello));
	c->wire.len = sizeof(hello);
	pthread_mutex_lock(&c->mu);
	c->sending = true;
	conn_write(c);
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
	} else if (c->out.len + n > ep->cfg.peer_queue_bytes || !obuf_reserve(&c->out, n)) {
		rc = DL_EIO; /* a client that does not read its replies */
	} else {
		uint8_t *p = c->out.buf + c->out.len;
		put_be64(p, f->bt_len + body);
		memcpy(p + 8, f->data, f->bt_len);
		memcpy(p + 8 + f->bt_len, fb->buf, body);
		c->out.len += n;
		if (!c->sending)
			conn_send_next(c); /* idle: this thread writes it */
		rc = 0;
	}
	pthread_mutex_unlock(&c->mu);
	conn_unuse(c);
out:
	if (rc != 0) {
		count(&ep->dropped_sends, n_msgs);
	} else {
		count(&ep->frames_out, 1);
		count(&ep->msgs_out, n_msgs);
		count(&ep->bytes_out, body);
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
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 10 * 1000000;
			if (ts.tv_nsec >= 1000000000) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000;
			}
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

/* ---- outbound connection events -------------------------------------------------- */

static void outbound_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct tp_peer *peer = arg;
	struct tp_endpoint *ep = peer->ep;
	bool up = ev == NNG_PIPE_EV_ADD_POST;
	if (up) {
		atomic_store(&peer->pipe, nng_pipe_id(p));
		count(&ep->peers_connected, 1);
	} else {
		uint32_t id = nng_pipe_id(p);
		atomic_compare_exchange_strong(&peer->pipe, &id, 0);
		atomic_fetch_sub_explicit(&ep->peers_connected, 1, memory_order_relaxed);
	}
	if (ep->cfg.on_conn != NULL)
		ep->cfg.on_conn(ep->cfg.arg, peer->addr, true, up);
}

void tp_close_pipe_first(nng_dialer d, uint32_t pipe)
{
	if (nng_dialer_id(d) > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 3600 * 1000);
	if (pipe != 0) {
		/* protocol first, then transport (tp_close_bounded) */
		nng_pipe p = NNG_PIPE_INITIALIZER;
		p.id = pipe;
		nng_pipe_close(p);
	}
}

/* ---- nng 1.5.2's dial loops (TLS) -----------------------------------------------
 *
 * nng 1.5.2 can end a dialer's redial loop for good: when a connection
 * closes while its TLS handshake or SP negotiation is under way, nng's TLS
 * layer may fail the negotiation with NNG_ECLOSED (a send completing after
 * it closed the TCP stream), and nng's dialer takes NNG_ECLOSED as "the
 * dialer was closed": it stops redialing. (nng 1.8 maps that error to
 * NNG_ECONNSHUT.) So with TLS a watchdog thread gives a peer that has had
 * no connection for REDIAL_AFTER_MS a new dialer. Not sooner: closing a
 * dialer whose handshake is under way is itself what can end a loop.
 *
 * The listener had the same bug in its accept loop; inbound connections
 * are now nng streams with an accept loop of ours (accept_cb), which no
 * error ends. */
#define WATCH_TICK_MS   1000
#define REDIAL_AFTER_MS 5000

/* Waits on watch_cv until `ns` from now or a stop; true when stopping. */
static bool watch_sleep(struct tp_endpoint *ep, uint64_t ns)
{
	uint64_t at = dl_now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(at / 1000000000ull),
			      .tv_nsec = (long)(at % 1000000000ull)};
	pthread_mutex_lock(&ep->watch_mu);
	while (!ep->watch_stop && pthread_cond_timedwait(&ep->watch_cv, &ep->watch_mu, &ts) == 0)
		;
	bool stop = ep->watch_stop;
	pthread_mutex_unlock(&ep->watch_mu);
	return stop;
}

static int peer_dial(struct tp_peer *p);

static void redial_idle_peers(struct tp_endpoint *ep, uint64_t now)
{
	pthread_mutex_lock(&ep->peers_mu);
	for (struct tp_peer *p = ep->peers; p != NULL; p = p->next) {
		if (atomic_load(&p->pipe) != 0) {
			p->down_since_ns = 0;
			continue;
		}
		if (p->down_since_ns == 0) {
			p->down_since_ns = now;
			continue;
		}
		if (now - p->down_since_ns < REDIAL_AFTER_MS * 1000000ull)
			continue;
		/* A dialer that ended its loop never connects again: a new one. */
		nng_dialer_close(p->dialer);
		(void)peer_dial(p);
		count(&ep->dialer_restarts, 1);
		p->down_since_ns = now;
	}
	pthread_mutex_unlock(&ep->peers_mu);
}

static void *watch_main(void *arg)
{
	struct tp_endpoint *ep = arg;
	pthread_setname_np(pthread_self(), "dl-tlswatch");
	while (!watch_sleep(ep, WATCH_TICK_MS * 1000000ull))
		redial_idle_peers(ep, dl_now_ns());
	return NULL;
}

/* ---- endpoint ---------------------------------------------------------------- */

static int listener_open(struct tp_endpoint *ep)
{
	int rv = nng_stream_listener_alloc(&ep->listener, ep->url);
	if (rv != 0)
		return rv;
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
	pthread_mutex_destroy(&ep->watch_mu);
	pthread_cond_destroy(&ep->watch_cv);
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
	pthread_cond_init(&ep->dead_cv, NULL);
	pthread_mutex_init(&ep->watch_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ep->watch_cv, &ca);
	pthread_condattr_destroy(&ca);

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
	if (cfg->tls != NULL && pthread_create(&ep->watch, NULL, watch_main, ep) == 0)
		ep->watch_started = true;
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

static void peer_destroy(struct tp_peer *p);

void tp_endpoint_close(struct tp_endpoint *ep)
{
	if (ep == NULL)
		return;
	tp_endpoint_quiesce(ep);
	atomic_store_explicit(&ep->stopping, true, memory_order_relaxed);
	if (ep->watch_started) {
		pthread_mutex_lock(&ep->watch_mu);
		ep->watch_stop = true;
		pthread_cond_signal(&ep->watch_cv);
		pthread_mutex_unlock(&ep->watch_mu);
		pthread_join(ep->watch, NULL);
	}
	/* No new connection (the pending accept fails), then none left. */
	nng_stream_listener_close(ep->listener);
	nng_aio_stop(ep->accept_aio); /* waits for accept_cb */
	nng_aio_free(ep->accept_aio);
	close_all_conns(ep);
	reaper_join(ep);
	nng_stream_listener_free(ep->listener);
	pthread_mutex_lock(&ep->peers_mu);
	struct tp_peer *p = ep->peers;
	ep->peers = NULL;
	pthread_mutex_unlock(&ep->peers_mu);
	while (p != NULL) {
		struct tp_peer *next = p->next;
		peer_destroy(p);
		p = next;
	}
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
	st->listener_restarts = 0; /* no longer needed (accept_cb) */
	st->dialer_restarts = LOAD(dialer_restarts);
#undef LOAD
}

/* ---- peers ------------------------------------------------------------------- */

static void seal_locked(struct tp_peer *p);

/* Hands one sealed frame to nng and frees it. Returns nng's result; with
 * NNG_FLAG_NONBLOCK, NNG_EAGAIN leaves the frame with the caller. */
static int send_sealed(struct tp_peer *p, struct sealed *s, uint32_t id, int flags)
{
	struct tp_endpoint *ep = p->ep;
	nng_msg *m = NULL;
	int rv = nng_msg_alloc(&m, 0);
	if (rv == 0)
		rv = nng_msg_header_append_u32(m, id);
	if (rv == 0)
		rv = nng_msg_append(m, s->buf, s->len);
	if (rv == 0)
		rv = nng_sendmsg(p->sock, m, flags);
	if (rv != 0) {
		if (m != NULL)
			nng_msg_free(m);
		if (rv == NNG_EAGAIN && (flags & NNG_FLAG_NONBLOCK))
			return rv;
		count(&ep->dropped_sends, s->n_msgs);
	} else {
		count(&ep->frames_out, 1);
		count(&ep->msgs_out, s->n_msgs);
		count(&ep->bytes_out, s->len);
	}
	free(s->buf);
	s->buf = NULL;
	return rv;
}

static void *sender_main(void *arg)
{
	struct tp_peer *p = arg;
	pthread_setname_np(pthread_self(), "dl-send");
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (!p->stop &&
		       (p->sending ||
			(p->q_count == 0 && !(p->flush_requested && p->cur.n_msgs > 0))))
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->stop)
			break;
		if (p->q_count == 0) {
			/* Seal here, not in tp_peer_flush(): every sender that
			 * flushed while we were busy shares this frame. */
			seal_locked(p);
			p->flush_requested = false;
		}
		struct sealed s = p->q[p->q_head];
		p->q_head = (p->q_head + 1) % TP_PEER_QUEUE_FRAMES;
		p->q_count--;
		p->q_bytes -= s.len;
		uint32_t id = 0x80000000u | (p->req_id++ & 0x7fffffffu);
		p->sending = true;
		pthread_mutex_unlock(&p->mu);
		(void)send_sealed(p, &s, id, 0);
		pthread_mutex_lock(&p->mu);
		p->sending = false;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static void peer_destroy(struct tp_peer *p)
{
	if (p->thread_started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true;
		pthread_cond_signal(&p->cv);
		pthread_mutex_unlock(&p->mu);
		/* A send in progress ends within send_timeout_ms; closing the
		 * socket under it could deadlock nng (see router_cb). */
		pthread_join(p->thread, NULL);
	}
	if (p->ep->cfg.tls != NULL)
		tp_close_pipe_first(p->dialer, atomic_load(&p->pipe));
	if (!tp_close_bounded(p->sock, "peer", p)) {
		/* nng may still call outbound_pipe_cb with p: keep it. */
		return;
	}
	while (p->q_count > 0) {
		free(p->q[p->q_head].buf);
		p->q_head = (p->q_head + 1) % TP_PEER_QUEUE_FRAMES;
		p->q_count--;
	}
	tp_fb_free(&p->cur);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

/* Non-blocking dial: nng keeps retrying with backoff in the background
 * while the peer is down. With TLS the server name is the peer's host, and
 * its certificate must be a node's. */
static int peer_dial(struct tp_peer *p)
{
	struct tp_endpoint *ep = p->ep;
	nng_dialer d = NNG_DIALER_INITIALIZER;
	int rv = nng_dialer_create(&d, p->sock, p->url);
	if (rv == 0 && ep->cfg.tls != NULL)
		rv = tp_tls_setup_dialer(ep->cfg.tls, d, p->addr);
	if (rv == 0)
		rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK);
	if (rv != 0)
		dl_log(DL_LOG_ERROR, NULL, NULL, "cannot dial peer %s: %s", p->addr, nng_strerror(rv));
	p->dialer = d;
	return rv;
}

static struct tp_peer *peer_create(struct tp_endpoint *ep, const char *addr)
{
	struct tp_peer *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->ep = ep;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	if (tp_make_url(ep->cfg.tls, addr, p->url, sizeof(p->url)) != 0) {
		free(p);
		return NULL;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	tp_fb_init(&p->cur, ep->cfg.max_frame_bytes);
	if (nng_req0_open_raw(&p->sock) != 0) {
		tp_fb_free(&p->cur);
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		free(p);
		return NULL;
	}
	nng_socket_set_ms(p->sock, NNG_OPT_SENDTIMEO, (nng_duration)ep->cfg.send_timeout_ms);
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMINT, (nng_duration)ep->cfg.reconnect_min_ms);
	nng_socket_set_ms(p->sock, NNG_OPT_RECONNMAXT, (nng_duration)ep->cfg.reconnect_max_ms);
	nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, 256);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_ADD_POST, outbound_pipe_cb, p);
	nng_pipe_notify(p->sock, NNG_PIPE_EV_REM_POST, outbound_pipe_cb, p);
	(void)peer_dial(p);
	if (pthread_create(&p->thread, NULL, sender_main, p) != 0) {
		peer_destroy(p);
		return NULL;
	}
	p->thread_started = true;
	return p;
}

struct tp_peer *tp_peer_open(struct tp_endpoint *ep, const char *addr)
{
	pthread_mutex_lock(&ep->peers_mu);
	struct tp_peer *p;
	for (p = ep->peers; p != NULL; p = p->next)
		if (strcmp(p->addr, addr) == 0)
			break;
	if (p == NULL) {
		p = peer_create(ep, addr);
		if (p != NULL) {
			p->next = ep->peers;
			ep->peers = p;
		}
	}
	if (p != NULL)
		p->refs++;
	pthread_mutex_unlock(&ep->peers_mu);
	return p;
}

void tp_peer_put(struct tp_peer *p)
{
	if (p == NULL)
		return;
	struct tp_endpoint *ep = p->ep;
	pthread_mutex_lock(&ep->peers_mu);
	bool last = --p->refs == 0;
	if (last) {
		struct tp_peer **pp = &ep->peers;
		while (*pp != p)
			pp = &(*pp)->next;
		*pp = p->next;
	}
	pthread_mutex_unlock(&ep->peers_mu);
	if (last)
		peer_destroy(p);
}

const char *tp_peer_addr(const struct tp_peer *p) { return p->addr; }

/* Moves the frame being built into the send queue. Caller holds p->mu. */
static void seal_locked(struct tp_peer *p)
{
	if (p->cur.n_msgs == 0)
		return;
	if (p->q_count == TP_PEER_QUEUE_FRAMES) {
		count(&p->ep->dropped_sends, p->cur.n_msgs);
		tp_fb_reset(&p->cur);
		return;
	}
	struct sealed *s = &p->q[(p->q_head + p->q_count) % TP_PEER_QUEUE_FRAMES];
	s->n_msgs = p->cur.n_msgs;
	s->buf = tp_fb_take(&p->cur, &s->len);
	p->q_count++;
	p->q_bytes += s->len;
}

int tp_peer_enqueue(struct tp_peer *p, tp_encode_fn encode, void *ctx)
{
	pthread_mutex_lock(&p->mu);
	int rc;
	if (p->q_bytes + p->cur.len >= p->ep->cfg.peer_queue_bytes) {
		rc = DL_EBUSY;
		goto drop;
	}
	rc = encode(ctx, &p->cur);
	if (rc == DL_ETOOBIG && p->cur.n_msgs > 0) {
		seal_locked(p);
		pthread_cond_signal(&p->cv);
		rc = encode(ctx, &p->cur);
	}
	if (rc != 0)
		goto drop;
	pthread_mutex_unlock(&p->mu);
	return 0;
drop:
	pthread_mutex_unlock(&p->mu);
	count(&p->ep->dropped_sends, 1);
	return rc;
}

/* With `now`, when nothing is queued or being sent, the caller hands its
 * frame to nng itself (without blocking): that saves waking the sender
 * thread, one context switch per frame and hop. Otherwise, or when nng's
 * queue is full, the sender thread sends it, after what is queued before
 * it. */
void tp_peer_flush(struct tp_peer *p, bool now)
{
	pthread_mutex_lock(&p->mu);
	if (p->cur.n_msgs == 0) {
		pthread_mutex_unlock(&p->mu);
		return;
	}
	if (!now || p->sending || p->q_count > 0 || p->stop) {
		if (!p->flush_requested) {
			p->flush_requested = true;
			pthread_cond_signal(&p->cv);
		}
		pthread_mutex_unlock(&p->mu);
		return;
	}
	struct sealed s = {.n_msgs = p->cur.n_msgs};
	s.buf = tp_fb_take(&p->cur, &s.len);
	p->flush_requested = false;
	uint32_t id = 0x80000000u | (p->req_id++ & 0x7fffffffu);
	p->sending = true;
	pthread_mutex_unlock(&p->mu);
	int rv = send_sealed(p, &s, id, NNG_FLAG_NONBLOCK);
	pthread_mutex_lock(&p->mu);
	p->sending = false;
	if (rv == NNG_EAGAIN) {
		/* Back to the head of the queue: nothing can have passed it. */
		p->q_head = (p->q_head + TP_PEER_QUEUE_FRAMES - 1) % TP_PEER_QUEUE_FRAMES;
		p->q[p->q_head] = s;
		p->q_count++;
		p->q_bytes += s.len;
	}
	if (p->q_count > 0 || (p->flush_requested && p->cur.n_msgs > 0))
		pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}
