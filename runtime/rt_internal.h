/*
 * rt_internal.h - what the files of the runtime share (runtime.h is the
 * public side).
 *
 * The files, lower layers first; each calls only into the files above it
 * in this list (and into its own):
 *   base.c      member names, rate-limited log lines, reads of the store
 *   status.c    the published status and metadata
 *   requests.c  client requests: replies, pending appends, reply slots
 *   update.c    carrying out a Raft update; the pass's proposal; actor_fail
 *   repair.c    damaged entries: hand-off and repair in place
 *   local.c     local requests (the embedding API): proposals and reads
 *               made in this process, on the actor
 *   actor.c     mail, the actor loop, the actor lifecycle
 *   registry.c  the (group, id) table and the router's delivery
 *   node.c      rt_node_*
 *
 * Ownership:
 *  - struct rt_actor: everything but the fields named below belongs to the
 *    actor thread. Other threads reach it by mail (mb_push). The durable
 *    report fields (dur_*) are written by the flush thread under dur_mu;
 *    `st` (the published status) is guarded by st_mu; `stopping` is atomic.
 *  - struct rt_node: `table` (the registry) is an immutable array swapped
 *    atomically by writers holding `mu`; the router thread reads it without
 *    a lock inside a "delivery" bracket (router_in/router_epoch) so that a
 *    writer knows when the old table (and a removed actor) is unreachable.
 */
#ifndef DLEDGER_RT_INTERNAL_H
#define DLEDGER_RT_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/dl_hist.h"
#include "common/dl_time.h"
#include "runtime/mailbox.h"
#include "runtime/runtime.h"
#include "transport/transport.h"

#define RT_DRAIN_MAX 4096          /* mails per loop pass before ticking */
#define RT_PUBLISH_INTERVAL_NS 10000000ull /* at most this often while busy */
/* A leader steps RAFT_EV_NOTIFY (raft.h, "Commit notices") once it has had
 * no mail for this long: under load the next append carries the commit
 * index and a notice costs no message; idle, a follower learns a commit
 * about this much after a round trip. */
#define RT_NOTICE_IDLE_NS 1000000ull
#define RT_MAX_PROPOSE STO_MAX_BATCH
#define RT_APPLY_PER_PASS 1024 /* committed entries applied per loop pass */
#define RT_TICKS_PER_HEARTBEAT 10
#define RT_PEND_INITIAL 16 /* pending appends a member has room for before it grows */
/* Reads of an index past the commit index that wait for it, per member
 * (more get DL_EBUSY); their records grow from RT_WGET_INITIAL. */
#define RT_MAX_WAITING_GETS 1024
#define RT_WGET_INITIAL 8
/* A member stopped by a storage error retries after 1 s, doubling to 16 s. */
#define RT_RETRY_MIN_NS 1000000000ull
#define RT_RETRY_MAX_NS 16000000000ull
#define RT_LOG_GAP_NS 1000000000ull     /* rate-limited lines: one a second per kind ... */
#define RT_LOG_REPEAT_NS 30000000000ull /* ... and the same subject again after 30 s */

enum mail_kind { MAIL_FRAME = 1, MAIL_DURABLE, MAIL_TRANSFER, MAIL_STOP, MAIL_PROPOSE, MAIL_READ };

struct mail {
	struct mb_node node;
	uint8_t kind;
	struct tp_frame *frame; /* MAIL_FRAME: held */
	struct tp_hdr hdr;      /* MAIL_FRAME; body points into frame */
	raft_id target;         /* MAIL_TRANSFER */
};

/* A local request (rt_node_propose, rt_node_read): one allocation with its
 * mail first, the entries and their bodies after it. Owned by the mailbox
 * until popped, then by the actor (a proposal's pending record holds it);
 * freed with free() once answered. */
struct rt_local {
	struct mail mail; /* kind MAIL_PROPOSE or MAIL_READ */
	rt_propose_fn propose_cb;
	rt_read_fn read_cb;
	void *arg;
	uint64_t index;          /* MAIL_READ */
	uint32_t wait_ms;        /* MAIL_READ: how long it may wait for the commit */
	uint32_t n;              /* MAIL_PROPOSE: entries */
	uint64_t bytes;          /* their bodies */
	struct raft_entry *ents; /* n, bodies in this allocation */
};

struct pending {
	struct tp_frame *frame; /* held: the reply goes back over its pipe; NULL: local */
	struct rt_local *local; /* a local proposal (owned), when frame is NULL */
	uint64_t request_id;
	uint64_t first_index; /* 0: in the pass's batch, not proposed yet */
	uint64_t term;
	uint32_t n;
	uint64_t proposed_ns; /* dl_now_ns() at arrival (commit latency) */
	uint64_t bytes;       /* body bytes of the n entries */
};

/* A client read of an index past the commit index, waiting for the commit
 * to reach it until deadline_ns (rt_on_get). */
struct waiting_get {
	struct tp_frame *frame; /* held: the reply goes back over its pipe; NULL: local */
	struct rt_local *local; /* a local read (owned), when frame is NULL */
	uint64_t request_id;
	struct tp_get g;
	uint64_t deadline_ns;
	uint32_t wait_ms; /* as asked, for the timeout's message */
};

/* Replies to one client connection, built while answering committed
 * appends and sent as one frame (one nng message instead of one each). */
#define RT_REPLY_SLOTS 8
struct reply_slot {
	struct tp_frame *frame; /* held: its header routes the reply; NULL: free */
	uint32_t pipe;
	struct tp_fb fb;
};

/* A log line that a flood of retries could repeat (rt_log_due). */
struct rt_ratelog {
	bool used;
	uint64_t key; /* what the last line written was about (an index) */
	uint64_t last_ns;
	uint64_t skipped; /* lines not written since; told by the next one */
};

struct member {
	struct rt_peer p;
	struct tp_peer *peer; /* NULL for self */
	bool touched;         /* has frames to flush at the end of the pass */
	bool urgent;          /* ... other than heartbeats: send at once */
};

struct rt_actor {
	struct rt_node *node;
	struct rt_member_config cfg;
	raft_id self;
	struct member members[RAFT_MAX_MEMBERS];

	struct raft *raft;
	struct sto *store;
	struct raft_log_ops log_ops;
	struct mailbox mb;
	pthread_t thread;
	bool thread_started;
	_Atomic bool stopping;
	_Atomic uint64_t mailbox_full; /* messages refused by this full mailbox (router) */

	/* Durable reports from the flush thread (dur_mu). */
	pthread_mutex_t dur_mu;
	struct mail dur_mail;
	struct mail stop_mail;
	bool stop_sent; /* node threads only, under the node's mutex or after unregistering */
	bool dur_queued;
	uint64_t dur_index, dur_term;
	bool dur_state;
	uint64_t dur_state_term;
	uint32_t dur_state_vote;
	int dur_error;

	/* Actor-thread state. */
	uint8_t role;
	raft_id leader;
	uint64_t commit;
	uint64_t applied;
	struct pending *pend; /* ring of pend_cap, grown up to max_pending_appends */
	uint32_t pend_head, pend_count, pend_cap;
	uint64_t pend_bytes; /* entry bytes of the pend_count records */
	/* Reads waiting for the commit (wget_count of wget_cap, arrival
	 * order), the earliest deadline among them, and counters. */
	struct waiting_get *wgets;
	uint32_t wget_count, wget_cap;
	uint64_t wget_next_ns; /* UINT64_MAX: none */
	uint64_t notice_ns;    /* leader: when to step RAFT_EV_NOTIFY; 0: none due */
	uint64_t gets_waited, get_wait_timeouts, get_wait_busy;
	struct raft_entry *ents; /* decode buffer */
	size_t ents_cap;
	/* The appends of one loop pass, proposed together at its end: entries
	 * borrow from the frames their pending records hold. */
	struct raft_entry *prop;
	size_t prop_cap;
	uint32_t prop_n;
	uint32_t prop_reqs; /* the newest pending records, not yet proposed */
	struct reply_slot rslots[RT_REPLY_SLOTS];
	uint8_t *scratch;        /* entry copies for encoding */
	uint32_t scratch_cap;
	uint64_t tick_ns;
	uint64_t last_tick_ns;     /* on the node-wide grid */
	uint64_t max_catchup_ticks;
	uint64_t next_clean_ns;
	uint64_t last_publish_ns;
	bool dirty; /* something the status shows may have changed */
	/* Stopped by a storage error (rt_actor_fail): takes no part in Raft,
	 * answers appends with DL_ENOTLEADER, and retries (actor_resume) at
	 * retry_ns: reopens the store and boots a new core, as a restart of
	 * this member alone would. */
	bool failed;
	int fail_code;
	char fail_reason[TP_REASON_MAX + 1];
	uint64_t retry_ns;
	uint32_t retries;
	struct raft_config raft_cfg;
	/* Damage met by reads of the store ("damaged entries" below). */
	struct dl_errctx read_err; /* of the last failed read */
	uint64_t read_err_index;   /* its index (0: none since it was cleared) */
	uint64_t damaged_index;    /* lowest entry found damaged; published */
	uint64_t send_failures;    /* messages that could not be encoded; published */
	uint64_t handoff_index;    /* leader: a damaged entry it must send (0: none) */
	uint64_t handoff_next_ns;  /* no hand-off before */
	uint64_t damage_handoffs;  /* published */
	uint64_t repair_from;      /* the next reopen cuts the log before it (0: none) */
	uint64_t fetch_index;      /* a damaged entry being repaired in place (0: none) */
	uint64_t fetch_next_ns;    /* when to ask the next peer for it */
	uint32_t fetch_asked;      /* peers asked for it so far */
	uint64_t repaired_in_place; /* published */
	uint64_t commit_conflicts;  /* published */
	struct rt_ratelog damage_log, send_log, handoff_log, conflict_log;
	uint64_t appended_entries;
	uint64_t committed_bytes;
	struct tp_fb reply_fb;

	pthread_mutex_t st_mu;
	struct rt_member_status st;
};

struct rt_table {
	uint32_t n;
	struct rt_actor *a[]; /* sorted by (group, id) */
};

struct rt_node {
	struct rt_node_config cfg;
	struct tp_endpoint *ep;
	struct sto_flusher *flusher;
	pthread_mutex_t mu; /* writers of the table, add/remove/stop */
	_Atomic(struct rt_table *) table;
	_Atomic uint32_t router_in;
	_Atomic uint64_t router_epoch;
	_Atomic uint64_t not_member; /* peer messages from a non-member, refused */
	_Atomic uint64_t not_node;   /* peer messages from a connection that is not a node's */
	_Atomic uint64_t mailbox_full; /* messages refused by a full mailbox */
	struct rt_ratelog not_node_log; /* the router's alone */
	/* The router's alone: the message it delivered last left the wake of
	 * its member to the next one, of the same frame and member. */
	bool wake_owed;
	_Atomic bool closing;
	/* Where this node's tick grid starts: random, so that two nodes on one
	 * machine (one CLOCK_MONOTONIC) do not tick at the same instants. */
	uint64_t grid_seed;
	/* Recorded by the flush thread and the actors, read by anyone. */
	struct dl_hist fsync_latency, commit_latency;
};

/* ---- base.c ------------------------------------------------------------------ */

raft_id rt_member_rid(const struct rt_actor *a, const char *id);
const char *rt_rid_name(const struct rt_actor *a, raft_id id);
bool rt_log_term_at(void *ctx, uint64_t index, uint64_t *term);
uint32_t rt_log_entry_bytes(void *ctx, uint64_t index);
bool rt_log_due(struct rt_ratelog *l, uint64_t key, uint64_t now_ns);
const char *rt_log_skipped(struct rt_ratelog *l, const char *what, char *buf, size_t cap);
int rt_read_view(struct rt_actor *a, uint64_t index, struct sto_view *v);
int rt_read_entry(void *ctx, uint64_t index, struct raft_entry *out);
const char *rt_fail_reason(int rc);
/* Room for n entries in *arr (the decode buffer, the pass's batch): false
 * when out of memory, *arr and *cap then unchanged (dl_grow). */
bool rt_entries_reserve(struct raft_entry **arr, size_t *cap, size_t n);
struct tp_addr rt_reply_addr(const struct rt_actor *a, const struct tp_hdr *h);

/* ---- status.c ---------------------------------------------------------------- */

void rt_publish(struct rt_actor *a);
void rt_on_metadata(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h);
int rt_metadata_all(struct rt_node *n, const struct rt_table *t, struct tp_frame *f,
			 const struct tp_hdr *h);

/* ---- requests.c -------------------------------------------------------------- */

void rt_reply_error(struct rt_actor *a, struct tp_frame *f, uint64_t request_id, int code,
			const char *msg);
void rt_local_answer(struct rt_actor *a, struct rt_local *l, int code, uint64_t first_index,
		     uint64_t term, const char *msg);
void rt_pend_fail(struct rt_actor *a, struct pending *p, int code, const char *why);
bool rt_pend_reserve(struct rt_actor *a);
struct pending *rt_pend_at(struct rt_actor *a, uint32_t i);
void rt_pend_pop(struct rt_actor *a);
void rt_pend_pop_newest(struct rt_actor *a);
void rt_pend_resolve(struct rt_actor *a);
void rt_pend_fail_all(struct rt_actor *a, int code, const char *why);
uint32_t rt_admit_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h,
			 uint64_t *bytes_out);
void rt_queue_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h, uint32_t n,
		     uint64_t bytes);
void rt_on_get(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h);
/* Waiting reads: answer those the commit reached; those whose deadline
 * passed (DL_ENOTCOMMITTED); all of them (stop, removal). */
void rt_gets_resolve(struct rt_actor *a);
void rt_gets_expire(struct rt_actor *a, uint64_t now_ns);
void rt_gets_fail_all(struct rt_actor *a, int code, const char *why);
/* A local read (local.c) of an index past the commit index joins them. */
void rt_get_wait_local(struct rt_actor *a, struct rt_local *l);

/* ---- update.c ---------------------------------------------------------------- */

void rt_flush_peers(struct rt_actor *a);
void rt_step(struct rt_actor *a, const struct raft_event *ev, struct raft_update *u);
void rt_propose_batch(struct rt_actor *a);
void rt_actor_fail(struct rt_actor *a, int rc, const char *what, const char *detail);
void rt_apply_committed(struct rt_actor *a);
void rt_note_role(struct rt_actor *a);

/* ---- repair.c ---------------------------------------------------------------- */

void rt_maybe_hand_off(struct rt_actor *a);
void rt_on_fetch(struct rt_actor *a, const struct tp_hdr *h);
void rt_on_fetch_resp(struct rt_actor *a, const struct tp_hdr *h);
void rt_maybe_repair(struct rt_actor *a);

/* ---- local.c ----------------------------------------------------------------- */

void rt_on_local_propose(struct rt_actor *a, struct rt_local *l);
void rt_on_local_read(struct rt_actor *a, struct rt_local *l);
/* Answers a local read whose index the commit reached (or why not), and
 * frees it. */
void rt_local_read_answer(struct rt_actor *a, struct rt_local *l);
void rt_local_drop(struct rt_actor *a, struct rt_local *l, int code, const char *why);

/* ---- actor.c ----------------------------------------------------------------- */

int rt_actor_new(struct rt_node *n, const struct rt_member_config *mc, struct rt_actor **out,
		     struct dl_errctx *err);
int rt_actor_start(struct rt_node *n, struct rt_actor *a, struct dl_errctx *err);
void rt_actor_signal_stop(struct rt_actor *a);
void rt_actor_stop(struct rt_actor *a);

/* ---- registry.c -------------------------------------------------------------- */

struct rt_actor *rt_table_find(const struct rt_table *t, const char *g, const char *id,
				   uint32_t *pos);
void rt_table_swap(struct rt_node *n, struct rt_table *t);
int rt_deliver(void *arg, struct tp_frame *f, const struct tp_hdr *h);
void rt_on_conn(void *arg, const char *addr, bool outbound, bool up);

#endif
