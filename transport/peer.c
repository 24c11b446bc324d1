/*
 * peer.c - the outbound side of a node's endpoint: one link (link.c) per
 * remote node, shared by every group that has a member there, and the
 * frame the actors build for it (transport.h, tp_peer_*).
 *
 * Actors add their messages to the peer's frame being built (`cur`); a
 * flush hands it to the link, which writes it from the flushing thread
 * when the connection is idle, else after the write in progress together
 * with what else was handed over meanwhile. Heartbeats (a flush without
 * `now`) wait PEER_LAZY_MS on an nng timer, so that the heartbeats of every
 * group towards a node, queued on the same tick of the node's grid, leave
 * in one frame. No thread of ours.
 *
 * Ownership: `cur`, `lazy_armed` and `stop` are guarded by the peer's `mu`,
 * which is also held around tp_link_send() so that the frames of a peer
 * leave in the order they were flushed (the messages of one member stay in
 * order); the link calls back into the peer without it (peer_state). `refs`
 * and `next` are guarded by the endpoint's peers_mu.
 */
#include "transport/tp_internal.h"

#include "common/dl_log.h"

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PEER_LAZY_MS 1 /* how long a heartbeat flush waits for others to join */

struct tp_peer {
	struct tp_endpoint *ep;
	struct tp_peer *next; /* in ep->peers */
	char addr[TP_ADDR_MAX + 1];
	uint32_t refs; /* guarded by ep->peers_mu */
	struct tp_link *link;
	nng_aio *lazy_aio; /* the wait of a flush without `now` */

	pthread_mutex_t mu;
	struct tp_fb cur;
	bool lazy_armed;
	bool stop;
};

/* Hands the frame being built to the link (caller holds p->mu). */
static void send_cur_locked(struct tp_peer *p)
{
	struct tp_endpoint *ep = p->ep;
	if (p->cur.n_msgs == 0)
		return;
	struct tp_iov iov = {.buf = p->cur.buf, .len = p->cur.len};
	int rc = tp_link_send(p->link, &iov, 1);
	if (rc != 0) {
		/* down, or the node does not keep up: Raft retransmits */
		tp_count(&ep->dropped_sends, p->cur.n_msgs);
	} else {
		tp_count(&ep->frames_out, 1);
		tp_count(&ep->msgs_out, p->cur.n_msgs);
		tp_count(&ep->bytes_out, p->cur.len);
	}
	tp_fb_reset(&p->cur);
	DL_ASSERT(p->cur.n_msgs == 0 && p->cur.len == 0);
}

static void lazy_cb(void *arg)
{
	struct tp_peer *p = arg;
	pthread_mutex_lock(&p->mu);
	p->lazy_armed = false;
	if (!p->stop)
		send_cur_locked(p);
	pthread_mutex_unlock(&p->mu);
}

/* The link came up or went down (nng's thread, no lock held). */
static void peer_state(void *arg, bool up)
{
	struct tp_peer *p = arg;
	struct tp_endpoint *ep = p->ep;
	if (up)
		tp_count(&ep->peers_connected, 1);
	else
		atomic_fetch_sub_explicit(&ep->peers_connected, 1, memory_order_relaxed);
	if (ep->cfg.on_conn != NULL)
		ep->cfg.on_conn(ep->cfg.arg, p->addr, true, up);
}

static void peer_destroy(struct tp_peer *p)
{
	pthread_mutex_lock(&p->mu);
	p->stop = true;
	pthread_mutex_unlock(&p->mu);
	if (p->lazy_aio != NULL) {
		nng_aio_stop(p->lazy_aio); /* waits for lazy_cb */
		nng_aio_free(p->lazy_aio);
	}
	tp_link_close(p->link); /* waits for peer_state */
	if (p->cur.n_msgs > 0)
		tp_count(&p->ep->dropped_sends, p->cur.n_msgs);
	tp_fb_free(&p->cur);
	pthread_mutex_destroy(&p->mu);
	free(p);
}

static struct tp_peer *peer_create(struct tp_endpoint *ep, const char *addr)
{
	struct tp_peer *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return NULL;
	p->ep = ep;
	snprintf(p->addr, sizeof(p->addr), "%s", addr);
	pthread_mutex_init(&p->mu, NULL);
	tp_fb_init(&p->cur, ep->cfg.max_frame_bytes);
	struct tp_link_config lc = {
	        .addr = addr,
	        .tls = ep->cfg.tls,
	        .max_frame_bytes = ep->cfg.max_frame_bytes,
	        .queue_bytes = ep->cfg.peer_queue_bytes,
	        .send_timeout_ms = ep->cfg.send_timeout_ms,
	        .reconnect_min_ms = ep->cfg.reconnect_min_ms,
	        .reconnect_max_ms = ep->cfg.reconnect_max_ms,
	        .hello_timeout_ms = ep->cfg.hello_timeout_ms,
	        .on_state = peer_state,
	        .on_msg = NULL, /* a node never answers a peer's frame (PROTOCOL.md) */
	        .arg = p,
	        .counters = &ep->link_counters,
	};
	struct dl_errctx err = {0};
	if (nng_aio_alloc(&p->lazy_aio, lazy_cb, p) != 0 ||
	    tp_link_open(&lc, &p->link, &err) != 0) {
		if (err.msg[0] != '\0')
			dl_log(DL_LOG_ERROR, NULL, NULL, "cannot dial peer %s: %s", addr, err.msg);
		peer_destroy(p);
		return NULL;
	}
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
	DL_ASSERT(p->refs > 0);
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

void tp_peers_close_all(struct tp_endpoint *ep)
{
	pthread_mutex_lock(&ep->peers_mu);
	struct tp_peer *p = ep->peers;
	ep->peers = NULL;
	pthread_mutex_unlock(&ep->peers_mu);
	for (uint32_t guard = 0; p != NULL && guard < UINT32_MAX; guard++) {
		struct tp_peer *next = p->next;
		peer_destroy(p);
		p = next;
	}
}

const char *tp_peer_addr(const struct tp_peer *p)
{
	return p->addr;
}

int tp_peer_enqueue(struct tp_peer *p, tp_encode_fn encode, void *ctx)
{
	pthread_mutex_lock(&p->mu);
	int rc;
	if (p->cur.len >= p->ep->cfg.peer_queue_bytes) {
		rc = DL_EBUSY;
		goto drop;
	}
	rc = encode(ctx, &p->cur);
	if (rc == DL_ETOOBIG && p->cur.n_msgs > 0) {
		send_cur_locked(p); /* the frame is full: it leaves now */
		rc = encode(ctx, &p->cur);
	}
	if (rc != 0)
		goto drop;
	pthread_mutex_unlock(&p->mu);
	return 0;
drop:
	pthread_mutex_unlock(&p->mu);
	tp_count(&p->ep->dropped_sends, 1);
	return rc;
}

/* With `now` the frame goes to the link at once (written by this thread
 * when the connection is idle); without, after PEER_LAZY_MS, with what
 * other members add meanwhile. */
void tp_peer_flush(struct tp_peer *p, bool now)
{
	pthread_mutex_lock(&p->mu);
	if (p->cur.n_msgs > 0 && !p->stop) {
		if (now) {
			send_cur_locked(p);
		} else if (!p->lazy_armed) {
			p->lazy_armed = true;
			nng_sleep_aio(PEER_LAZY_MS, p->lazy_aio);
		}
	}
	pthread_mutex_unlock(&p->mu);
}
