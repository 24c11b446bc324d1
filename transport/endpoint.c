/*
 * endpoint.c - the node's nng endpoint: listener + router callback, and the
 * per-peer senders. See transport.h.
 *
 * Ownership:
 *  - struct tp_endpoint: immutable after open, except `peers` (guarded by
 *    peers_mu), `paused` (guarded by deliver_mu) and the counters (atomics,
 *    relaxed: they are statistics only).
 *  - struct tp_peer: `cur`, the frame queue and `stop` are guarded by the
 *    peer's `mu`; the sender thread owns a frame once it popped it.
 *  - struct tp_frame: immutable after the router built it; freed by the last
 *    tp_frame_release() (refs is atomic, acq_rel on the final drop).
 *  - the role table (TLS only: inbound pipe id -> role), guarded by
 *    roles_mu: filled by nng's ADD_PRE pipe callback, before the pipe
 *    delivers anything, emptied by REM_POST, read by the router per frame.
 */
#include "transport/transport.h"

#include "common/dl_log.h"
#include "transport/tls_internal.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TP_PEER_QUEUE_FRAMES 1024

struct tp_frame {
	_Atomic uint32_t refs;
	nng_msg *msg;
	enum tp_role role;
};

/* Open addressing, linear probing; at most half full. */
#define ROLE_SLOTS (2u * TP_MAX_TLS_CONNS)
_Static_assert((ROLE_SLOTS & (ROLE_SLOTS - 1)) == 0, "a power of two");
struct role_slot {
	uint32_t pipe; /* 0: free (nng never gives pipe id 0) */
	uint8_t role;
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
	nng_socket sock;
	nng_aio *rx_aio; /* the router's receive (router_cb) */
	bool router_started;

	pthread_mutex_t deliver_mu;
	bool paused;
	_Atomic bool stopping; /* the router asks for no further frame */

	pthread_mutex_t peers_mu;
	struct tp_peer *peers;

	pthread_mutex_t roles_mu;
	struct role_slot *roles; /* ROLE_SLOTS; NULL without TLS */
	uint32_t n_roles;
	bool closing_inbound; /* new connections are closed at once (restart, close) */
	_Atomic uint64_t refused_log_ns; /* last "connection refused" line */

	/* The TLS watchdog (see "nng 1.5.2's accept and dial loops"). */
	char url[TP_ADDR_MAX + 16];
	nng_listener listener; /* the watchdog's once started */
	_Atomic uint64_t accepted; /* inbound connections that reached ADD_PRE */
	_Atomic uint64_t listener_restarts, dialer_restarts;
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

/* ---- roles of inbound connections (TLS) ---------------------------------------- */

static uint32_t role_home(uint32_t pipe) { return (pipe * 0x9e3779b1u) & (ROLE_SLOTS - 1); }

static enum tp_role roles_get(struct tp_endpoint *ep, uint32_t pipe)
{
	enum tp_role r = TP_ROLE_NONE;
	pthread_mutex_lock(&ep->roles_mu);
	for (uint32_t i = role_home(pipe); ep->roles[i].pipe != 0; i = (i + 1) & (ROLE_SLOTS - 1))
		if (ep->roles[i].pipe == pipe) {
			r = (enum tp_role)ep->roles[i].role;
			break;
		}
	pthread_mutex_unlock(&ep->roles_mu);
	return r;
}

/* 1: recorded; 0: the table is full; -1: closing_inbound. */
static int roles_put(struct tp_endpoint *ep, uint32_t pipe, enum tp_role role)
{
	pthread_mutex_lock(&ep->roles_mu);
	int ok = ep->closing_inbound ? -1 : ep->n_roles < TP_MAX_TLS_CONNS;
	if (ok == 1) {
		uint32_t i = role_home(pipe);
		while (ep->roles[i].pipe != 0)
			i = (i + 1) & (ROLE_SLOTS - 1);
		ep->roles[i].pipe = pipe;
		ep->roles[i].role = (uint8_t)role;
		ep->n_roles++;
	}
	pthread_mutex_unlock(&ep->roles_mu);
	return ok;
}

/* Removes the pipe's entry (backward-shift deletion keeps every probe
 * chain whole); returns the role it had, TP_ROLE_NONE if none. */
static enum tp_role roles_del(struct tp_endpoint *ep, uint32_t pipe)
{
	enum tp_role r = TP_ROLE_NONE;
	const uint32_t mask = ROLE_SLOTS - 1;
	pthread_mutex_lock(&ep->roles_mu);
	uint32_t i = role_home(pipe);
	while (ep->roles[i].pipe != 0 && ep->roles[i].pipe != pipe)
		i = (i + 1) & mask;
	if (ep->roles[i].pipe == pipe) {
		r = (enum tp_role)ep->roles[i].role;
		ep->n_roles--;
		uint32_t hole = i;
		for (uint32_t j = (i + 1) & mask; ep->roles[j].pipe != 0; j = (j + 1) & mask) {
			/* An entry moves into the hole if its home is not in (hole, j]. */
			uint32_t home = role_home(ep->roles[j].pipe);
			if (((j - home) & mask) >= ((j - hole) & mask)) {
				ep->roles[hole] = ep->roles[j];
				hole = j;
			}
		}
		ep->roles[hole].pipe = 0;
	}
	pthread_mutex_unlock(&ep->roles_mu);
	return r;
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
	*len = nng_msg_len(f->msg);
	return nng_msg_body(f->msg);
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
	nng_msg_free(f->msg);
	free(f);
}

uint32_t tp_frame_pipe(const struct tp_frame *f)
{
	return nng_pipe_id(nng_msg_get_pipe(f->msg));
}

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

/* The router is nng's receive callback: it runs on one of nng's own
 * threads as each frame arrives, routes it and asks for the next one, so a
 * frame reaches its actors' mailboxes without a hop through a thread of
 * ours. One receive is pending at a time, so deliveries never overlap (the
 * runtime's table swap relies on one deliverer). The callback never
 * blocks: delivery is a mailbox push, a refusal a non-blocking send.
 * Closing stops the aio first (nng_aio_stop waits for a running callback),
 * so no receive is pending when the socket closes: nng 1.5 to 1.7 can
 * deadlock in nng_close() against a pending receive (nng issues #1813,
 * #1827). */
static void router_cb(void *arg)
{
	struct tp_endpoint *ep = arg;
	int rv = nng_aio_result(ep->rx_aio);
	if (rv == NNG_ECLOSED || rv == NNG_ECANCELED ||
	    atomic_load_explicit(&ep->stopping, memory_order_relaxed)) {
		if (rv == 0)
			nng_msg_free(nng_aio_get_msg(ep->rx_aio));
		return;
	}
	if (rv == 0) {
		nng_msg *msg = nng_aio_get_msg(ep->rx_aio);
		count(&ep->frames_in, 1);
		count(&ep->bytes_in, nng_msg_len(msg));
		struct tp_frame *f = malloc(sizeof(*f));
		if (f == NULL) {
			nng_msg_free(msg);
			count(&ep->rejected, 1);
		} else {
			atomic_init(&f->refs, 1);
			f->msg = msg;
			f->role = ep->roles == NULL ? TP_ROLE_NODE
						    : roles_get(ep, tp_frame_pipe(f));
			pthread_mutex_lock(&ep->deliver_mu);
			if (!ep->paused)
				route_frame(ep, f);
			pthread_mutex_unlock(&ep->deliver_mu);
			tp_frame_release(f);
		}
	}
	nng_recv_aio(ep->sock, ep->rx_aio);
}

int tp_reply(struct tp_endpoint *ep, const struct tp_frame *f, struct tp_fb *fb)
{
	nng_msg *m;
	int rc = DL_EIO;
	if (fb->n_msgs == 0)
		return 0;
	if (nng_msg_alloc(&m, 0) != 0)
		goto out;
	if (nng_msg_header_append(m, nng_msg_header(f->msg), nng_msg_header_len(f->msg)) != 0 ||
	    nng_msg_append(m, fb->buf, fb->len) != 0) {
		nng_msg_free(m);
		goto out;
	}
	size_t n = fb->len;
	int rv = nng_sendmsg(ep->sock, m, NNG_FLAG_NONBLOCK);
	if (rv != 0) {
		nng_msg_free(m);
		count(&ep->dropped_sends, fb->n_msgs);
		rc = rv == NNG_ECLOSED ? DL_ECLOSED : DL_EIO;
		goto out;
	}
	count(&ep->frames_out, 1);
	count(&ep->msgs_out, fb->n_msgs);
	count(&ep->bytes_out, n);
	rc = 0;
out:
	tp_fb_reset(fb);
	return rc;
}

/* ---- connection events -------------------------------------------------------- */

static void pipe_event(nng_pipe p, nng_pipe_ev ev, void *arg, bool outbound, const char *addr)
{
	struct tp_endpoint *ep = arg;
	char buf[TP_ADDR_MAX + 1];
	if (addr == NULL) {
		nng_sockaddr sa;
		buf[0] = '\0';
		if (nng_pipe_get_addr(p, NNG_OPT_REMADDR, &sa) == 0 && sa.s_family == NNG_AF_INET) {
			const uint8_t *a = (const uint8_t *)&sa.s_in.sa_addr;
			snprintf(buf, sizeof(buf), "%u.%u.%u.%u:%u", a[0], a[1], a[2], a[3],
				 (unsigned)__builtin_bswap16(sa.s_in.sa_port));
		} else {
			snprintf(buf, sizeof(buf), "(inbound)");
		}
		addr = buf;
	}
	bool up = ev == NNG_PIPE_EV_ADD_POST;
	if (!outbound && ep->cfg.on_conn == NULL)
		return;
	if (outbound) {
		if (up)
			count(&ep->peers_connected, 1);
		else
			atomic_fetch_sub_explicit(&ep->peers_connected, 1, memory_order_relaxed);
	}
	if (ep->cfg.on_conn != NULL)
		ep->cfg.on_conn(ep->cfg.arg, addr, outbound, up);
}

/* TLS: an inbound connection was verified (the handshake is done) and is
 * about to deliver. Record its role, or close it: not verified (cannot
 * happen with auth mode REQUIRED, but a pipe without a role must not
 * speak), or too many connections. */
static void tls_pipe_added(struct tp_endpoint *ep, nng_pipe p)
{
	count(&ep->accepted, 1);
	enum tp_role role = tp_tls_pipe_role(p);
	char why[96] = "";
	int put = role == TP_ROLE_NONE ? 0 : roles_put(ep, nng_pipe_id(p), role);
	if (put < 0) {
		nng_pipe_close(p); /* the listener is closing: no log, no count */
		return;
	}
	if (role == TP_ROLE_NONE)
		snprintf(why, sizeof(why), "its certificate was not verified");
	else if (put == 0)
		snprintf(why, sizeof(why), "too many TLS connections open (at most %d)",
			 TP_MAX_TLS_CONNS);
	if (why[0] == '\0') {
		count(role == TP_ROLE_NODE ? &ep->conns_node : &ep->conns_client, 1);
		return;
	}
	count(&ep->conns_refused, 1);
	nng_pipe_close(p);
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	uint64_t last = atomic_load_explicit(&ep->refused_log_ns, memory_order_relaxed);
	if ((last == 0 || now - last >= 1000000000ull) &&
	    atomic_compare_exchange_strong(&ep->refused_log_ns, &last, now))
		dl_log(DL_LOG_WARN, NULL, NULL, "inbound connection closed: %s", why);
}

static void inbound_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct tp_endpoint *ep = arg;
	if (ev == NNG_PIPE_EV_ADD_PRE) {
		tls_pipe_added(ep, p);
		return;
	}
	if (ev == NNG_PIPE_EV_REM_POST && ep->roles != NULL) {
		enum tp_role r = roles_del(ep, nng_pipe_id(p));
		if (r != TP_ROLE_NONE)
			atomic_fetch_sub_explicit(r == TP_ROLE_NODE ? &ep->conns_node
								 : &ep->conns_client,
						  1, memory_order_relaxed);
	}
	pipe_event(p, ev, arg, false, NULL);
}

static void outbound_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	struct tp_peer *peer = arg;
	if (ev == NNG_PIPE_EV_ADD_POST) {
		atomic_store(&peer->pipe, nng_pipe_id(p));
	} else {
		uint32_t id = nng_pipe_id(p);
		atomic_compare_exchange_strong(&peer->pipe, &id, 0);
	}
	pipe_event(p, ev, peer->ep, true, peer->addr);
}

/* Closes a pipe by id (protocol first, then transport; tp_close_bounded). */
static void close_pipe_id(uint32_t id)
{
	nng_pipe p = NNG_PIPE_INITIALIZER;
	p.id = id;
	nng_pipe_close(p);
}

void tp_close_pipe_first(nng_dialer d, uint32_t pipe)
{
	if (nng_dialer_id(d) > 0)
		nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 3600 * 1000);
	if (pipe != 0)
		close_pipe_id(pipe);
}

/* TLS: every inbound connection, before the listener (or the socket)
 * closes, pipe by pipe (see tp_close_bounded), and from here on every new
 * one at once: nng closes what is left transport first, so no connection
 * of the socket's may be open then. Until reopen_inbound(). */
static void close_inbound_pipes(struct tp_endpoint *ep)
{
	if (ep->roles == NULL)
		return;
	uint32_t *ids = malloc(TP_MAX_TLS_CONNS * sizeof(*ids)), n = 0;
	pthread_mutex_lock(&ep->roles_mu);
	ep->closing_inbound = true;
	if (ids == NULL) {
		pthread_mutex_unlock(&ep->roles_mu);
		return;
	}
	for (uint32_t i = 0; i < ROLE_SLOTS && n < TP_MAX_TLS_CONNS; i++)
		if (ep->roles[i].pipe != 0)
			ids[n++] = ep->roles[i].pipe;
	pthread_mutex_unlock(&ep->roles_mu);
	for (uint32_t i = 0; i < n; i++)
		close_pipe_id(ids[i]); /* REM_POST (roles_mu) runs later, on nng's reaper */
	free(ids);
}

/* ---- nng 1.5.2's accept and dial loops (TLS) -----------------------------------
 *
 * nng 1.5.2 can end a listener's accept loop for good: when a connection
 * closes while its TLS handshake or SP negotiation is under way, nng's TLS
 * layer may fail the negotiation with NNG_ECLOSED (a send completing after
 * it closed the TCP stream), which the negotiation hands to the socket's
 * pending accept, and nng's listener takes NNG_ECLOSED as "the listener was
 * closed": it stops accepting. TLS handshakes still complete below it, but no
 * connection reaches the socket again, peers' and clients' alike. (Seen here
 * within a few hundred dledger-ctl runs; nng 1.8 maps that error to
 * NNG_ECONNSHUT.) A dialer's redial loop ends the same way. Anyone who can
 * open a TCP connection can cause it. So with TLS a watchdog thread:
 *  - when TLS handshakes completed as a server in the last tick (our
 *    engine counts them, process-wide, less those of these probes) but no
 *    connection reached the socket, or none did for WATCH_IDLE_MS, dials
 *    this node itself with its own certificate; if that connection comes up
 *    on its side (the handshake and negotiation work) but neither it nor
 *    any other connection reaches the socket within PROBE_GRACE_MS, and a
 *    second probe right after finds the same, the accept loop is dead: the listener is closed (its
 *    connections first, pipe by pipe: tp_close_bounded) and opened again,
 *    logged and counted. Twice and over two seconds, because a restart
 *    drops every connection, and a node that is merely slow (a storm of
 *    handshakes on a busy machine) must not be mistaken for a dead one;
 *  - gives a peer that has had no connection for REDIAL_AFTER_MS a new
 *    dialer (a dialer that ended its loop never connects again). Not
 *    sooner: closing a dialer whose handshake is under way is itself what
 *    can end the other side's accept loop. */
#define WATCH_TICK_MS   1000
#define WATCH_IDLE_MS   10000
#define PROBE_WAIT_MS   2000 /* for the probe to come up at all */
#define PROBE_GRACE_MS  1000 /* once up on its side, for it to reach the socket */
#define REDIAL_AFTER_MS 5000

/* Server handshakes of the probes (process-wide, as the engine's count). */
static _Atomic uint64_t probe_handshakes;

static uint64_t other_server_handshakes(void)
{
	struct tp_tls_stats st;
	tp_tls_stats(&st);
	return st.server_handshakes - atomic_load(&probe_handshakes);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Waits on watch_cv until `ns` from now or a stop; true when stopping. */
static bool watch_sleep(struct tp_endpoint *ep, uint64_t ns)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	uint64_t at = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec + ns;
	ts.tv_sec = (time_t)(at / 1000000000ull);
	ts.tv_nsec = (long)(at % 1000000000ull);
	pthread_mutex_lock(&ep->watch_mu);
	while (!ep->watch_stop && pthread_cond_timedwait(&ep->watch_cv, &ep->watch_mu, &ts) == 0)
		;
	bool stop = ep->watch_stop;
	pthread_mutex_unlock(&ep->watch_mu);
	return stop;
}

static int listener_open(struct tp_endpoint *ep, nng_listener *out)
{
	nng_listener l;
	int rv = nng_listener_create(&l, ep->sock, ep->url);
	if (rv == 0 && ep->cfg.tls != NULL)
		rv = tp_tls_setup_listener(ep->cfg.tls, l);
	if (rv == 0)
		rv = nng_listener_start(l, 0);
	if (rv != 0) {
		if (nng_listener_id(l) > 0)
			nng_listener_close(l);
		return rv;
	}
	*out = l;
	return 0;
}

static void probe_pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	(void)ev;
	atomic_store((_Atomic uint32_t *)arg, nng_pipe_id(p));
}

/* Dials this node with its own certificate. 1: the connection reached the
 * socket (or another one did meanwhile); 0: it came up on the dialing side
 * but never reached the socket (the accept loop is dead); -1: it did not
 * come up at all (nothing learnt); -2: its socket did not close in time
 * (nng's reaper is stuck: probing on would only pile up threads). */
static int probe_listener(struct tp_endpoint *ep)
{
	uint64_t before = atomic_load(&ep->accepted);
	/* On the heap: should the close not finish (tp_close_bounded), nng's
	 * pipe callback may still write it. */
	_Atomic uint32_t *pipe = calloc(1, sizeof(*pipe));
	if (pipe == NULL)
		return -1;
	/* A wildcard address is dialed on loopback; the certificate's names
	 * are not checked (it is our own). */
	char url[TP_ADDR_MAX + 16];
	const char *port = strrchr(ep->listen_addr, ':');
	if (strncmp(ep->listen_addr, "0.0.0.0:", 8) == 0)
		snprintf(url, sizeof(url), "tls+tcp://127.0.0.1%s", port);
	else if (strncmp(ep->listen_addr, "[::]:", 5) == 0)
		snprintf(url, sizeof(url), "tls+tcp://[::1]%s", port);
	else
		snprintf(url, sizeof(url), "%s", ep->url);
	nng_socket s;
	nng_dialer d = NNG_DIALER_INITIALIZER;
	if (nng_req0_open_raw(&s) != 0) {
		free(pipe);
		return -1;
	}
	nng_pipe_notify(s, NNG_PIPE_EV_ADD_POST, probe_pipe_cb, (void *)pipe);
	int result = -1;
	if (nng_dialer_create(&d, s, url) == 0 && tp_tls_setup_dialer_self(ep->cfg.tls, d) == 0 &&
	    nng_dialer_start(d, NNG_FLAG_NONBLOCK) == 0) {
		uint64_t end = mono_ns() + PROBE_WAIT_MS * 1000000ull, up_at = 0;
		while (atomic_load(&ep->accepted) == before && mono_ns() < end) {
			if (up_at == 0 && atomic_load(pipe) != 0) {
				up_at = mono_ns();
				count(&probe_handshakes, 1);
				end = up_at + PROBE_GRACE_MS * 1000000ull;
			}
			if (watch_sleep(ep, 10 * 1000000ull))
				break;
		}
		result = atomic_load(&ep->accepted) != before ? 1 : atomic_load(pipe) != 0 ? 0 : -1;
		if (up_at == 0 && atomic_load(pipe) != 0)
			count(&probe_handshakes, 1);
	}
	tp_close_pipe_first(d, atomic_load(pipe));
	if (!tp_close_bounded(s, "probe", pipe))
		return -2;
	free(pipe);
	return result;
}

static void reopen_inbound(struct tp_endpoint *ep)
{
	pthread_mutex_lock(&ep->roles_mu);
	ep->closing_inbound = false;
	pthread_mutex_unlock(&ep->roles_mu);
}

static void restart_listener(struct tp_endpoint *ep)
{
	count(&ep->listener_restarts, 1);
	close_inbound_pipes(ep);
	/* Until nng has torn them down (REM_POST empties the role table),
	 * at most 2 s: then nothing of the socket's is left to close. */
	for (uint64_t end = mono_ns() + 2000000000ull; mono_ns() < end;) {
		pthread_mutex_lock(&ep->roles_mu);
		uint32_t left = ep->n_roles;
		pthread_mutex_unlock(&ep->roles_mu);
		if (left == 0 || watch_sleep(ep, 10 * 1000000ull))
			break;
	}
	nng_listener_close(ep->listener);
	reopen_inbound(ep);
	int rv = listener_open(ep, &ep->listener);
	if (rv == 0)
		dl_log(DL_LOG_ERROR, NULL, NULL,
		       "the TLS listener on %s stopped taking connections (nng 1.5.2: a connection "
		       "that closed during its handshake ended the accept loop); restarted it "
		       "(connections closed, peers redial)",
		       ep->listen_addr);
	else
		dl_log(DL_LOG_ERROR, NULL, NULL,
		       "the TLS listener on %s stopped taking connections (nng 1.5.2); restarting it "
		       "failed: %s; trying again in %d ms",
		       ep->listen_addr, nng_strerror(rv), WATCH_TICK_MS);
	if (rv != 0)
		ep->listener.id = 0;
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
	uint64_t seen = atomic_load(&ep->accepted), seen_hs = other_server_handshakes();
	uint64_t idle_since = mono_ns();
	while (!watch_sleep(ep, WATCH_TICK_MS * 1000000ull)) {
		uint64_t now = mono_ns(), acc = atomic_load(&ep->accepted);
		bool suspicious = acc == seen && other_server_handshakes() != seen_hs;
		if (acc != seen)
			idle_since = now;
		if (ep->listener.id == 0) {
			restart_listener(ep); /* a restart that failed */
		} else if (suspicious || now - idle_since >= WATCH_IDLE_MS * 1000000ull) {
			/* Dead only when a second probe, right after, agrees. */
			int r = probe_listener(ep);
			if (r == 0)
				r = probe_listener(ep);
			if (r == 0)
				restart_listener(ep);
			if (r == -2) {
				dl_log(DL_LOG_ERROR, NULL, NULL,
				       "TLS watchdog: nng no longer finishes closing sockets (its "
				       "reaper is stuck, nng 1.5.2); the watchdog stops: restart "
				       "this node");
				break;
			}
			idle_since = mono_ns();
		}
		seen = atomic_load(&ep->accepted);
		seen_hs = other_server_handshakes();
		redial_idle_peers(ep, mono_ns());
	}
	return NULL;
}

/* ---- endpoint ---------------------------------------------------------------- */

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
	pthread_mutex_init(&ep->roles_mu, NULL);

	pthread_mutex_init(&ep->watch_mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ep->watch_cv, &ca);
	pthread_condattr_destroy(&ca);

	char *url = ep->url;
	int rc = tp_make_url(cfg->tls, cfg->listen_addr, url, sizeof(ep->url));
	if (rc != 0) {
		dl_errf(err, rc, "transport: bad listen address '%s'", cfg->listen_addr);
		goto err_free;
	}
	if (cfg->tls != NULL && (ep->roles = calloc(ROLE_SLOTS, sizeof(*ep->roles))) == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "transport: out of memory");
		goto err_free;
	}
	int rv = nng_rep0_open_raw(&ep->sock);
	if (rv != 0) {
		rc = dl_errf(err, DL_EIO, "transport: socket: %s", nng_strerror(rv));
		goto err_free;
	}
	nng_socket_set_size(ep->sock, NNG_OPT_RECVMAXSZ, cfg->max_frame_bytes);
	nng_socket_set_int(ep->sock, NNG_OPT_RECVBUF, 1024);
	nng_socket_set_int(ep->sock, NNG_OPT_SENDBUF, 1024);
	if (cfg->tls != NULL)
		nng_pipe_notify(ep->sock, NNG_PIPE_EV_ADD_PRE, inbound_pipe_cb, ep);
	nng_pipe_notify(ep->sock, NNG_PIPE_EV_ADD_POST, inbound_pipe_cb, ep);
	nng_pipe_notify(ep->sock, NNG_PIPE_EV_REM_POST, inbound_pipe_cb, ep);
	rv = listener_open(ep, &ep->listener);
	if (rv != 0) {
		rc = dl_errf(err, rv == NNG_EADDRINUSE ? DL_EEXIST : DL_EIO,
			     "transport: cannot listen on %s: %s", cfg->listen_addr, nng_strerror(rv));
		goto err_sock;
	}
	rv = nng_aio_alloc(&ep->rx_aio, router_cb, ep);
	if (rv != 0) {
		rc = dl_errf(err, DL_ENOMEM, "transport: cannot start the router: %s",
			     nng_strerror(rv));
		goto err_sock;
	}
	ep->router_started = true;
	nng_recv_aio(ep->sock, ep->rx_aio);
	if (cfg->tls != NULL && pthread_create(&ep->watch, NULL, watch_main, ep) == 0)
		ep->watch_started = true;
	*out = ep;
	return 0;

err_sock:
	nng_close(ep->sock);
err_free:
	pthread_mutex_destroy(&ep->deliver_mu);
	pthread_mutex_destroy(&ep->peers_mu);
	pthread_mutex_destroy(&ep->roles_mu);
	pthread_mutex_destroy(&ep->watch_mu);
	pthread_cond_destroy(&ep->watch_cv);
	free(ep->roles);
	free(ep);
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
	if (ep->router_started) {
		nng_aio_stop(ep->rx_aio); /* cancels the receive, waits for router_cb */
		nng_aio_free(ep->rx_aio);
	}
	close_inbound_pipes(ep);
	bool closed = tp_close_bounded(ep->sock, "listening", ep);
	pthread_mutex_lock(&ep->peers_mu);
	struct tp_peer *p = ep->peers;
	ep->peers = NULL;
	pthread_mutex_unlock(&ep->peers_mu);
	while (p != NULL) {
		struct tp_peer *next = p->next;
		peer_destroy(p);
		p = next;
	}
	pthread_mutex_destroy(&ep->deliver_mu);
	pthread_mutex_destroy(&ep->peers_mu);
	if (closed) { /* else nng may still call inbound_pipe_cb with it */
		pthread_mutex_destroy(&ep->roles_mu);
		pthread_mutex_destroy(&ep->watch_mu);
		pthread_cond_destroy(&ep->watch_cv);
		free(ep->roles);
		free(ep);
	}
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
	st->listener_restarts = LOAD(listener_restarts);
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
