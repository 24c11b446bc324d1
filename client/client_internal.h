/*
 * client_internal.h - shared by the files of the C client (client.h) only.
 *
 * The files, lower first; each calls only into the ones above it in this
 * list (and this header):
 *   ops.c    op slots: release and completion, the per-connection queue
 *            links, targets and the leader hint, encoding a request
 *   conn.c   connections (transport's links): the send window and
 *            packing, sending and retrying, redirects, matching replies,
 *            the links' callbacks (up, down, a reply frame)
 *   timer.c  the timer thread: deadlines, backoff ends, connect timeouts,
 *            silent members
 *   client.c the API of client.h: options, open and close, submitting,
 *            the blocking calls
 *
 * Threads and data:
 *  - everything in struct dl_client and its ops and conns is guarded by
 *    `mu`, except what is immutable after dl_client_open() (options, peers,
 *    group) and each conn's link (set before the conn is published, closed
 *    by dl_client_close());
 *  - each conn is a link (transport.h, "Links"): it dials, redials with
 *    backoff and writes; its reply callback (on nng's threads, one at a
 *    time per conn) matches each reply of a frame to its op under `mu` and
 *    runs the completions without it; a request is written by the thread
 *    that sends it when the connection is idle;
 *  - the links' state callbacks (connection up/down) take `mu` to send the
 *    ops parked on the conn or to retry those in flight on it; they never
 *    run a user callback (an op to fail from there is handed to the timer);
 *  - the timer thread wakes at the earliest deadline, backoff end or connect
 *    timeout (`timer_wake_ns`, lowered by timer_kick());
 *  - callbacks always run without `mu`, in a link's reply callback or on the
 *    timer thread (or in dl_client_close()). cl_tl_client marks those so the
 *    blocking calls can refuse to run there (they would wait for themselves).
 *
 * An op is one request in a slot of `ops`: FREE -> NEW (being encoded by the
 * submitter, or between states) -> SENT / PARKED (in its conn's FIFO queue,
 * waiting for the connection or for room in its window) / BACKOFF (waiting
 * to be sent again) -> FREE. Each attempt gets a new request_id,
 * (seq << SLOT_BITS) | slot, so a late answer to an earlier attempt is
 * recognised and dropped.
 *
 * At most CONN_WINDOW requests are outstanding per connection. (It was
 * nng's xrep0 per-pipe reply queue; the node's listener is ours now and
 * queues up to peerQueueBytes of replies per connection, but the window
 * also bounds what one connection's loss sends back into retries.)
 */
#ifndef DLEDGER_CLIENT_INTERNAL_H
#define DLEDGER_CLIENT_INTERNAL_H

#include <nng/nng.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "client/client.h"
#include "config/peers.h"
#include "transport/transport.h"

#define SLOT_BITS 16
#define SLOT_MASK ((1u << SLOT_BITS) - 1)
#define NO_WAKE   UINT64_MAX
#define NO_SLOT   UINT32_MAX
#define CONN_WINDOW 64 /* see above */
#define DETAIL_MAX 256
#define PACK_MAX_BYTES (256u * 1024) /* requests packed into one message */
#define CONN_QUEUE_BYTES (64u * 1024 * 1024) /* waiting behind a write in progress */
#define CONN_REDIAL_MIN_MS 50
#define CONN_REDIAL_MAX_MS 1000

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
	struct tp_link *link; /* dials and redials itself (transport.h, "Links") */
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
	/* Reply frames or messages from a node that did not decode: the op
	 * they answer fails with DL_EPROTO, the frame is dropped, and they are
	 * counted here (a debugger's view; client.h does not report it). */
	uint64_t bad_replies;

	/* The leader as last learned (from a success or a redirect). */
	bool hint;
	int hint_peer;
	char hint_id[TP_NAME_MAX + 1];
	char hint_addr[TP_ADDR_MAX + 1];
};

extern _Thread_local struct dl_client *cl_tl_client;
/* Set by a receiver while it runs the completions of one reply frame:
 * requests the callbacks submit to this client wait (PARKED) and leave
 * together when the frame is done (see pump()). */
extern _Thread_local struct dl_client *cl_tl_cork;

static inline uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ms_ns(uint32_t ms) { return (uint64_t)ms * 1000000ull; }

static inline uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Asks the timer thread to wake by `when` (under mu). */
static inline void timer_kick(struct dl_client *c, uint64_t when)
{
	if (when < c->kick_min_ns)
		c->kick_min_ns = when;
	if (c->timer_wake_ns != 0 && when < c->timer_wake_ns)
		pthread_cond_signal(&c->timer_cv);
}

/* ---- ops.c ---- */

/* printf into a DETAIL_MAX buffer. */
void cl_detailf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cl_op_release(struct dl_client *c, struct op *op);
/* Frees the slot and fills `cp` for the callback (run it without `mu`).
 * `msg` (may be NULL) goes to the callback. */
void cl_op_finish(struct dl_client *c, struct op *op, int rc, nng_msg *msg,
		  const struct tp_hdr *h, struct completion *cp);
void cl_run_completion(struct completion *cp);
void cl_set_target(struct dl_client *c, struct op *op, const char *id, const char *addr,
		   int peer);
void cl_set_target_peer(struct dl_client *c, struct op *op, int i);
void cl_hint_set(struct dl_client *c, const char *id, const char *addr, int peer);
/* Forgets the leader if it is the member at `addr`. */
void cl_hint_drop(struct dl_client *c, const char *addr);
/* Encodes the op's request for its target and rid into op->req. For an
 * append, the bodies come from `bufs` the first time and from the previous
 * encoding after. */
int cl_encode_req(struct dl_client *c, struct op *op, const struct dl_client_buf *bufs);
/* A new attempt: a new request id, so an answer to the old one is dropped. */
int cl_new_attempt(struct dl_client *c, struct op *op);
void cl_wq_push(struct dl_client *c, struct conn *cn, struct op *op);
/* Takes the op off its connection (window or queue): it is NEW again,
 * in the hands of the caller, which gives it its next state. */
void cl_op_detach(struct dl_client *c, struct op *op);

/* ---- conn.c ---- */

/* Whether the member at `addr` is taken for down (conn->suspect_until_ns). */
bool cl_addr_suspect(struct dl_client *c, const char *addr, uint64_t now);
/* The member after `from` in peers order that is not taken for down. */
int cl_member_after(struct dl_client *c, int from, uint64_t now);
/* The first member to ask (`member` pins the op to it). */
int cl_target_initial(struct dl_client *c, struct op *op, const char *member,
		      struct dl_errctx *err);
void cl_pump_all(struct dl_client *c, uint64_t now);
/* Sends the op's current request to its target, or parks it until the
 * connection is up. Returns 0, or an error that ends the op. */
int cl_transmit(struct dl_client *c, struct op *op, uint64_t now);
/* Tries again after a pause (see conn.c). */
int cl_retry_later(struct dl_client *c, struct op *op, uint64_t now, const char *reason);
/* Ends an op from a context that must not run callbacks: the timer does. */
void cl_fail_later(struct dl_client *c, struct op *op, int rc);

/* ---- timer.c ---- */

void *cl_timer_main(void *arg);

#endif
