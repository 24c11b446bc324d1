/*
 * tls_internal.h - our TLS engine for nng (tls_engine.c), inside transport/.
 *
 * nng 1.5 runs the TLS record layer itself and asks an "engine" (its
 * supplemental/tls/engine.h contract) for the handshake, encryption and
 * verification of each connection. Ours is a plain mbedTLS engine plus one
 * thing nng 1.5 cannot tell us otherwise: the ROLE of the peer that a
 * connection authenticated, read from its verified certificate (subject
 * OU=dledger-node: a node; any other verified certificate: a client).
 *
 * nng gives no stream -> engine connection mapping, so the role travels
 * through a thread-local: the engine's `verified` op, which nng calls
 * synchronously on the caller's thread for nng_stream_get_bool(s,
 * NNG_OPT_TLS_VERIFIED), stores the connection's role there as a side
 * effect, and tp_tls_stream_role() reads it right after that call.
 */
#ifndef DLEDGER_TLS_INTERNAL_H
#define DLEDGER_TLS_INTERNAL_H

#include <nng/nng.h>

#include "transport/transport.h"

/* Registers the engine with nng, once per process (later calls return the
 * first result). Must run before any nng_tls_config is allocated; nng's own
 * initialization resets the engine, so this initializes nng first. Returns
 * 0 or an nng error. */
int tp_tls_engine_register(void);

/* The role stored by the engine's last `verified` call on this thread, and
 * clears it (TP_ROLE_NONE when there was none or the peer was not
 * verified). */
enum tp_role tp_tls_take_role(void);

/* Mutual TLS on a stream listener not yet listening (every client must
 * present a certificate). Returns 0 or an nng error. */
int tp_tls_setup_stream_listener(const struct tp_tls *t, nng_stream_listener *l);
/* Mutual TLS on a stream dialer not yet dialing: server name = the host of
 * `addr`, whose certificate must name it and be a node certificate.
 * Returns 0 or an nng error. */
int tp_tls_setup_stream_dialer(const struct tp_tls *t, nng_stream_dialer *d, const char *addr);
/* The role of an inbound stream whose handshake is done (it delivered
 * bytes): asks nng whether it is verified and takes the role our engine
 * records. TP_ROLE_NONE when it is not. */
enum tp_role tp_tls_stream_role(nng_stream *s);

/* What identifies a tp_tls's credentials (equal ids: the same certificate,
 * key and CA); all zero for NULL. */
#define TP_TLS_ID_BYTES 32
void tp_tls_id(const struct tp_tls *t, uint8_t id[TP_TLS_ID_BYTES]);

/* True when `pem` holds a certificate with subject OU=dledger-node. */
bool tp_tls_pem_is_node(const char *pem);

#endif
