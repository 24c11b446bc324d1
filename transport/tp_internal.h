/*
 * tp_internal.h - shared by the files of transport/ only.
 *
 * The files, lower first; each calls only into the ones above it in this
 * list (and this header):
 *   codec.c      the frames and messages on the wire (codec.h)
 *   tls.c,       our TLS: files, configs, roles (tls.c) and the mbedTLS
 *   tls_engine.c engine for nng (tls_internal.h)
 *   link.c       an outbound connection that keeps itself up: dial,
 *                backoff, SP framing as a REQ peer (sp_internal.h)
 *   peer.c       the endpoint's outbound side: a link per remote node and
 *                the frame its members build (tp_peer_*)
 *   endpoint.c   the endpoint: the listener, inbound connections, the
 *                router, replies (tp_reply), open and close, counters
 *
 * struct tp_endpoint is defined here for peer.c and endpoint.c; what guards
 * each field is said at the field.
 */
#ifndef DLEDGER_TP_INTERNAL_H
#define DLEDGER_TP_INTERNAL_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>

#include "transport/transport.h"

struct conn;

struct tp_endpoint {
	struct tp_config cfg; /* immutable after open */
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
	struct tp_peer *peers; /* peer.c's list */

	pthread_mutex_t conns_mu;
	struct conn **conns; /* id -> inbound connection, while it lives */
	uint32_t n_conns, next_id;
	_Atomic uint64_t refused_log_ns; /* last "connection closed" line */

	/* The reaper frees ended connections (never one of their own
	 * callbacks: nng_aio_free there would wait for itself). */
	pthread_mutex_t dead_mu;
	pthread_cond_t dead_cv;
	struct conn *dead;
	bool reaper_stop;
	bool reaper_started;
	pthread_t reaper;

	/* Counters: atomics, relaxed (statistics only). */
	_Atomic uint64_t frames_in, msgs_in, bytes_in;
	_Atomic uint64_t frames_out, msgs_out, bytes_out;
	_Atomic uint64_t decode_errors, unknown_target, rejected, dropped_sends;
	_Atomic uint64_t peers_connected;
	_Atomic uint64_t conns_node, conns_client, conns_refused;
	_Atomic uint64_t hello_timeouts_in;    /* inbound: no header within hello_timeout_ms */
	struct tp_link_counters link_counters; /* every peer's link */
};

static inline void tp_count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- peer.c ---- */

/* Closes every peer, whatever its references (tp_endpoint_close). */
void tp_peers_close_all(struct tp_endpoint *ep);

#endif
