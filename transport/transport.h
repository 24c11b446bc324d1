/*
 * transport.h - one endpoint per node: the listener and its router, one
 * outbound connection per remote node with the frame its members build,
 * links (outbound connections that redial themselves, also the C client's),
 * and the wire codec (codec.h). Everything is on nng's stream API with
 * framing of ours; no nng socket.
 *
 * Threads:
 *  - the router is each inbound connection's receive callback (on one of
 *    nng's threads): it cuts the connection's bytes into frames, decodes
 *    only the message headers and hands each one to the delivery callback
 *    (runtime/ finds the actor and fills its mailbox), one delivery at a
 *    time across connections; it never blocks on an actor;
 *  - outbound, no thread of ours: the thread that flushes a peer's frame
 *    writes it when the connection is idle; otherwise nng's thread that
 *    completes the write in progress writes it next, with what else queued
 *    meanwhile. A dead or slow peer only fills its own bounded buffer, after
 *    which its messages are dropped and counted (Raft retransmits);
 *  - a reaper thread frees inbound connections that ended;
 *  - any thread may call tp_peer_enqueue(), tp_peer_flush() and tp_reply();
 *    a reply is written by the calling thread when its connection is idle.
 *
 * Wire (docs/PROTOCOL.md, "Transport"): nng's SP over TCP. The node listens
 * and speaks as a raw REP socket would; peers dial it as raw REQ sockets
 * would (one connection per remote node, shared by all groups) and never
 * expect replies; clients dial it the same way and get replies back over
 * the connection they came on. nng's own REQ sockets still talk to it. With
 * TLS all of them use tls+tcp:// with mutual authentication (below, "TLS").
 */
#ifndef DLEDGER_TRANSPORT_H
#define DLEDGER_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nng/nng.h>

#include "common/dl_err.h"
#include "transport/codec.h"

struct tp_endpoint;
struct tp_peer;
struct tp_frame; /* an inbound frame, reference counted */

/* ---- TLS (docs/OPERATIONS.md, "Securing a cluster") -----------------------
 *
 * With TLS every connection is mutually authenticated (tls+tcp://, auth mode
 * REQUIRED both ways) against one CA, and each inbound connection has the
 * ROLE its verified certificate gives: a node certificate has subject
 * OU=dledger-node (TP_TLS_NODE_OU), any other is a client's. Without TLS
 * every connection counts as a node's. The engine behind it is ours
 * (tls_engine.c), registered with nng by tp_tls_load(). */

#define TP_TLS_NODE_OU "dledger-node"

enum tp_role {
	TP_ROLE_NONE = 0, /* not authenticated (or unknown) */
	TP_ROLE_CLIENT,   /* a verified certificate that is not a node's */
	TP_ROLE_NODE,     /* a node certificate; every connection without TLS */
};
const char *tp_role_name(enum tp_role r);

/* Certificate, key and CA, read and checked once; immutable, shared. */
struct tp_tls;

/* Reads the three PEM files and checks them: each parses, the key is the
 * certificate's, the certificate chains to the CA and is valid now, and
 * with `node` it is a node certificate. A CRL (PEM "X509 CRL" blocks) in
 * the CA file is honoured. Errors name the file and the reason. */
int tp_tls_load(const char *cert_file, const char *key_file, const char *ca_file, bool node,
		struct tp_tls **out, struct dl_errctx *err);
void tp_tls_free(struct tp_tls *t);
/* The subject of the loaded certificate, for log lines. */
const char *tp_tls_subject(const struct tp_tls *t);

/* "tcp://ADDR", or "tls+tcp://ADDR" when t is not NULL. ADDR is "host:port"
 * ("[v6]:port"); DL_EINVAL when it cannot be one. */
int tp_make_url(const struct tp_tls *t, const char *addr, char *url, size_t cap);
/* Mutual TLS with `t` on an nng socket's dialer not yet started: server
 * name = the host of `addr`, whose certificate must name it and be a node
 * certificate. Returns 0 or an nng error. (Our own connections are links,
 * below; this is for nng REQ sockets, as tests use to check that nng's own
 * sockets still talk to our listener.) */
int tp_tls_setup_dialer(const struct tp_tls *t, nng_dialer d, const char *addr);

/* Why a handshake failed (each also logged, rate-limited, with the reason). */
enum tp_tls_fail {
	TP_TLS_FAIL_VERIFY = 0, /* certificate not trusted, expired, wrong name, revoked */
	TP_TLS_FAIL_NO_CERT,    /* the client sent no certificate */
	TP_TLS_FAIL_NOT_TLS,    /* the peer does not speak TLS (plaintext on a TLS port) */
	TP_TLS_FAIL_REFUSED,    /* the peer refused ours (a fatal alert) */
	TP_TLS_FAIL_NOT_NODE,   /* a server whose certificate is not a node's */
	TP_TLS_FAIL_OTHER,
	TP_TLS_FAIL_COUNT
};
const char *tp_tls_fail_name(enum tp_tls_fail kind); /* "verify", "no_cert", ... */
struct tp_tls_stats {
	uint64_t handshakes;        /* completed */
	uint64_t server_handshakes; /* of those, as the server (inbound) */
	uint64_t failures[TP_TLS_FAIL_COUNT];
};
/* Process-wide counters of our engine. */
void tp_tls_stats(struct tp_tls_stats *st);

/* ---- Links: outbound connections that keep themselves up (link.c) -------------
 *
 * A link is one connection to a node's listener at `addr` (tcp://, or
 * tls+tcp:// with mutual TLS when `tls` is set: the node's certificate must
 * name the host and be a node certificate), on nng's stream API: no nng
 * socket in between. It speaks SP as a raw REQ peer (docs/PROTOCOL.md), so
 * it talks to every listener of ours. Lost, refused or never made, it is
 * dialed again after a pause of reconnect_min_ms after a connection that was
 * up, else one that doubles from reconnect_min_ms up to reconnect_max_ms. A
 * connection whose dial, or whose TLS handshake and listener's header, take
 * longer than hello_timeout_ms each is closed and counted (hello_timeouts).
 *
 * Threads: on_state and on_msg run on nng's threads, never with a lock of
 * the link held, never two at once for one link; they may call
 * tp_link_send() but not tp_link_close(). Any thread may call
 * tp_link_send(). */

struct tp_link;

struct tp_iov {
	const void *buf;
	size_t len;
};

/* Counters a link adds to (shared by many links: atomics). */
struct tp_link_counters {
	_Atomic uint64_t connects;        /* connections up (both headers) */
	_Atomic uint64_t dial_failures;   /* dials refused, failed or timed out */
	_Atomic uint64_t hello_timeouts;  /* dial or handshake past hello_timeout_ms */
	_Atomic uint64_t send_timeouts;   /* a write not done within send_timeout_ms */
	_Atomic uint64_t protocol_errors; /* not a node's header, a message too big or malformed */
};

/* The connection came up (`up`: both headers went across) or went down
 * (after an up only). */
typedef void (*tp_link_state_fn)(void *arg, bool up);
/* One message from the node, without its request word(s): valid for the
 * call only. */
typedef void (*tp_link_msg_fn)(void *arg, const uint8_t *msg, size_t len);

#define TP_DEFAULT_HELLO_TIMEOUT_MS 5000

struct tp_link_config {
	const char *addr;            /* "host:port" (copied) */
	const struct tp_tls *tls;    /* borrowed until tp_link_open() returns; NULL: tcp:// */
	size_t max_frame_bytes;      /* a longer message from the node ends the connection */
	size_t queue_bytes;          /* bytes waiting behind the write in progress, at most */
	uint32_t send_timeout_ms;    /* a write not done by then ends the connection */
	uint32_t reconnect_min_ms;   /* > 0 */
	uint32_t reconnect_max_ms;   /* >= reconnect_min_ms */
	uint32_t hello_timeout_ms;   /* 0: TP_DEFAULT_HELLO_TIMEOUT_MS */
	tp_link_state_fn on_state;
	tp_link_msg_fn on_msg;       /* NULL: messages from the node are dropped */
	void *arg;
	struct tp_link_counters *counters; /* may be NULL; must outlive the link */
};

/* Starts dialing (without blocking). DL_EINVAL: not an address, or no TLS
 * for it; DL_ENOMEM. */
int tp_link_open(const struct tp_link_config *cfg, struct tp_link **out, struct dl_errctx *err);
/* Ends the connection and stops dialing; when it returns no callback of the
 * link runs or will run. What was not written is dropped. Safe on NULL. */
void tp_link_close(struct tp_link *l);
/* Sends one message, the parts one after the other: written by this thread
 * at once when the connection is idle, else after the write in progress,
 * with what else queued meanwhile. 0, or DL_ECLOSED (not up: nothing was
 * sent), DL_EBUSY (queue_bytes wait already), DL_ENOMEM. A message taken
 * is lost if the connection ends before it is written. */
int tp_link_send(struct tp_link *l, const struct tp_iov *parts, size_t n_parts);
bool tp_link_up(struct tp_link *l);
const char *tp_link_addr(const struct tp_link *l);

/* Called by the router (never twice at once) for each message of an inbound frame. `f`
 * and `h->body` stay valid for the call; to keep them longer take a
 * reference with tp_frame_hold(). Returns 0 when the message was taken,
 * DL_ENOTFOUND when no member matches (the router answers clients with
 * TP_ERROR and counts it), another code to count it as rejected. Must
 * not block. */
typedef int (*tp_deliver_fn)(void *arg, struct tp_frame *f, const struct tp_hdr *h);

/* Connection events, for logging: `up` true when a connection to or from
 * `addr` came up (inbound: once it spoke, so with TLS once its role is
 * known). Called from nng's threads; must not block. */
typedef void (*tp_conn_fn)(void *arg, const char *addr, bool outbound, bool up);

struct tp_config {
	const char *listen_addr;     /* "host:port", IPv6 as "[::1]:port" */
	size_t max_frame_bytes;      /* inbound frames above this are refused */
	size_t peer_queue_bytes;     /* per remote node, pending bytes cap */
	uint32_t send_timeout_ms;    /* a frame not sent by then is dropped */
	uint32_t reconnect_min_ms;   /* peers: redial backoff (link.c) */
	uint32_t reconnect_max_ms;
	/* An inbound connection's header (and TLS handshake), and an outbound
	 * dial and handshake, must come within this; 0: the default. */
	uint32_t hello_timeout_ms;
	/* Mutual TLS for the listener and every peer dialed (borrowed: must
	 * outlive the endpoint); NULL: plaintext, every connection a node's. */
	const struct tp_tls *tls;
	tp_deliver_fn deliver;
	tp_conn_fn on_conn;          /* may be NULL */
	void *arg;
};

void tp_config_defaults(struct tp_config *cfg);

/* Inbound connections open at once at most (more are closed, counted in
 * conns_refused). */
#define TP_MAX_CONNS 8192

/* Binds the listener and starts the router. On failure nothing is left
 * running and err says why (address in use, bad address). */
int tp_endpoint_open(const struct tp_config *cfg, struct tp_endpoint **out, struct dl_errctx *err);
/* Stops the router and every sender, closes every socket, frees. Pending
 * outbound frames are dropped. Safe on NULL. */
void tp_endpoint_close(struct tp_endpoint *ep);

/* The router stops handing messages to the callback; after it returns no
 * delivery is in progress (used before tearing down what deliver uses). */
void tp_endpoint_quiesce(struct tp_endpoint *ep);

const uint8_t *tp_frame_data(const struct tp_frame *f, size_t *len);
void tp_frame_hold(struct tp_frame *f);
void tp_frame_release(struct tp_frame *f);
/* The connection (an id, never 0, not reused while it is open) the frame
 * arrived on: replies to frames with the same one may share a reply frame. */
uint32_t tp_frame_pipe(const struct tp_frame *f);
/* The role of the connection the frame arrived on (TP_ROLE_NODE for every
 * frame when TLS is off; with TLS what its certificate says). */
enum tp_role tp_frame_role(const struct tp_frame *f);

/* Sends the frame built in `fb` to the client that sent `f` (over the
 * connection it came on): at once from this thread when the connection is
 * idle, else after the write in progress, together with what else queued
 * meanwhile (at most peer_queue_bytes wait). fb is reset. Returns 0, or
 * DL_ECLOSED (the connection is gone) / DL_EIO (its queue is full), each
 * counted in dropped_sends. */
int tp_reply(struct tp_endpoint *ep, const struct tp_frame *f, struct tp_fb *fb);

/* The outbound connection to the node at `addr`, created on first use and
 * shared; each open is matched by a tp_peer_put(). NULL if out of memory
 * or the address is malformed. */
struct tp_peer *tp_peer_open(struct tp_endpoint *ep, const char *addr);
void tp_peer_put(struct tp_peer *p);
const char *tp_peer_addr(const struct tp_peer *p);

/* Adds one message to the frame being built for this peer; `encode` runs
 * under the peer's lock and appends exactly one message to fb (one of the
 * tp_fb_add_* calls), returning its result. Returns 0, or DL_EBUSY when the
 * peer's queue is full (the message is dropped and counted), or the
 * encoder's error. The message leaves on the next tp_peer_flush(). */
typedef int (*tp_encode_fn)(void *ctx, struct tp_fb *fb);
int tp_peer_enqueue(struct tp_peer *p, tp_encode_fn encode, void *ctx);
/* Ends a send pass: what was enqueued so far goes out, coalesced.
 * `now`: the messages wait on a round trip (replication, votes), so the
 * frame goes to the peer's link at once (written by the calling thread when
 * the connection is idle); otherwise (heartbeats) it leaves 1 ms later,
 * sharing one frame with what other members queue for the same peer
 * meanwhile. */
void tp_peer_flush(struct tp_peer *p, bool now);

struct tp_stats {
	uint64_t frames_in, msgs_in, bytes_in;
	uint64_t frames_out, msgs_out, bytes_out;
	uint64_t decode_errors;    /* malformed frames or headers */
	uint64_t unknown_target;   /* no member for (group, target) */
	uint64_t rejected;         /* refused by the delivery callback */
	uint64_t dropped_sends;    /* peer queue full or send timed out */
	uint64_t peers_connected;  /* outbound connections up now */
	/* TLS: inbound connections now up by role; and those closed at once
	 * because TP_MAX_CONNS were open or (TLS) it was not verified. */
	uint64_t conns_node, conns_client;
	uint64_t conns_refused;
	/* Inbound connections without a header, and outbound dials or
	 * handshakes, past hello_timeout_ms (each closed). */
	uint64_t hello_timeouts;
	/* Outbound: connections to peers made (each redial after a loss
	 * adds one), dials that failed, writes past send_timeout_ms. */
	uint64_t peer_connects, peer_dial_failures, peer_send_timeouts;
	/* Always 0: nng 1.5.2's accept and dial loops could end for good, and
	 * a watchdog restarted them; both loops are ours now (kept for the
	 * metrics' names). */
	uint64_t listener_restarts, dialer_restarts;
};
void tp_endpoint_stats(struct tp_endpoint *ep, struct tp_stats *st);

#endif
