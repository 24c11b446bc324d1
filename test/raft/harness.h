/*
 * harness.h - a deterministic, hand-driven group of Raft cores for the unit
 * tests in test/raft/.
 *
 * Members 1..n of one group live in one `struct h_cluster`. Each member has an
 * in-memory log (implementing struct raft_log_ops) with a durable prefix, and
 * a durable (term, vote). The harness carries out every struct raft_update in
 * the order raft.h prescribes (hard state, truncate, append, send, apply).
 * Sent messages wait in one FIFO network queue until a test delivers, drops,
 * duplicates or reorders them. There is no clock and no randomness besides the
 * seeds handed to the cores, so every test replays identically.
 *
 * Persistence is automatic unless a member is switched to manual mode
 * (h_node.manual_state / manual_log); then the test decides when (term, vote)
 * and which log prefix become durable. h_crash() drops everything that is not
 * durable; h_restart() boots a new core from what is.
 *
 * Invariants checked on every step (a violation fails the running test):
 *  - no message leaves a member whose current (term, vote) is not durable,
 *    and no update carries more than max_outbox messages;
 *  - an acknowledged match_index never exceeds what the follower has durable;
 *  - an APPEND describes a range the sender holds, with the right prev_term;
 *  - a member never truncates at or below its commit index;
 *  - term and commit never go down; commit never passes the local log;
 *  - at most one leader per term; a new leader holds every applied entry;
 *  - no two members apply different entries at one index.
 *
 * Single-threaded; everything is owned by the test that built the cluster.
 */
#ifndef DLEDGER_TEST_RAFT_HARNESS_H
#define DLEDGER_TEST_RAFT_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "raft/raft.h"

#define H_MAX_NODES   RAFT_MAX_MEMBERS
#define H_MAX_TERMS   4096
#define H_ALL_TYPES   0xffffffffu
#define H_TYPE_BIT(t) (1u << (t))

/* Defaults of h_init(); tests change c->cfg before h_start(). */
#define H_ELECTION_TICKS  10
#define H_HEARTBEAT_TICKS 2

struct h_entry {
	uint64_t term;
	uint8_t type;
	uint32_t len;
	uint8_t *data; /* owned, len bytes */
};

/* An in-memory log of entries 1..last; 1..durable survive a crash. */
struct h_log {
	struct h_entry *e; /* e[i - 1] is index i */
	uint64_t last;
	uint64_t durable;
	uint64_t cap;
};

/* A message in flight, with a copy of the entries of an APPEND read from the
 * sender's store when it was sent. */
struct h_msg {
	struct raft_message m;
	struct h_entry *ents; /* m.append.n_entries copies, owned */
	uint64_t bytes;       /* sum of entry lengths (APPEND) */
	uint64_t seq;         /* order of sending */
};

struct h_node {
	raft_id id;
	bool up;
	struct raft *r;
	struct raft_config cfg;
	struct h_log log;

	/* (term, vote) as the core last handed out, and as durable. */
	uint64_t hs_term;
	raft_id hs_vote;
	bool hs_dirty;
	uint64_t dur_term;
	raft_id dur_vote;
	/* The store's incarnation (0 by default: plain Raft) and its voter
	 * flag as last handed out and as durable (true by default; h_wipe()
	 * and h_fresh() make a store afresh, without it). */
	uint64_t incarnation;
	bool hs_voter;
	bool dur_voter;

	bool manual_state; /* test calls h_persist_state() */
	bool manual_log;   /* test calls h_persist_log() */

	uint64_t commit;  /* last commit index the core reported */
	uint64_t applied; /* == commit once an update is carried out */

	struct raft_status st;          /* refreshed after every step */
	struct raft_update last_update; /* of the last direct step; pointers cleared */

	/* History. */
	uint32_t hs_changes;      /* updates with hard_state_changed */
	uint32_t times_leader;    /* became leader */
	uint32_t times_candidate; /* entered RAFT_CANDIDATE */
	uint32_t times_precandidate;
	uint32_t truncations;
	uint32_t append_rejects; /* APPEND_RESP with reject sent */
	uint64_t msgs_sent[RAFT_MSG_TYPE_MAX + 1];
	uint32_t sent_to[H_MAX_NODES + 1][RAFT_MSG_TYPE_MAX + 1];
};

struct h_applied {
	bool set;
	uint64_t term;
	uint64_t hash;
};

struct h_cluster {
	uint32_t n;
	bool started;
	struct raft_config cfg;               /* template: self and seed are set per member */
	struct h_node nodes[H_MAX_NODES + 1]; /* by id, [0] unused */

	struct h_msg *net; /* FIFO */
	size_t net_len;
	size_t net_cap;
	uint64_t next_seq;

	/* drop_mask[from][to]: message types lost on that link. */
	uint32_t drop_mask[H_MAX_NODES + 1][H_MAX_NODES + 1];
	/* Extra filter: return true to lose the message. */
	bool (*drop_fn)(struct h_cluster *c, const struct h_msg *m);
	void *user;

	uint64_t delivered;
	uint64_t dropped;
	uint64_t next_incarnation; /* handed out by h_fresh() and h_wipe() */

	raft_id leader_of_term[H_MAX_TERMS];
	struct h_applied *applied; /* by index, [0] unused */
	uint64_t applied_cap;
	uint64_t max_applied;
};

/* Builds an unstarted group of n members (ids 1..n) with default config in
 * c->cfg and empty logs. Change c->cfg, member logs (h_load) or manual modes,
 * then h_start(). */
void h_init(struct h_cluster *c, uint32_t n);
void h_start(struct h_cluster *c);
void h_fini(struct h_cluster *c);

/* Replaces member `id`'s store: entries with the given terms (all durable,
 * NORMAL, small distinct bodies), durable (term, vote), checkpointed commit.
 * A running member is crashed first and restarted after. */
void h_load(struct h_cluster *c, raft_id id, const uint64_t *terms, uint64_t n, uint64_t term,
            raft_id vote, uint64_t commit);

struct h_node *h_node(struct h_cluster *c, raft_id id);

/* Steps one event into member `id`, carries out the update and, for members
 * not in manual mode, persists and steps the confirmations. Returns the
 * update of the event itself (pointers cleared). */
const struct raft_update *h_step(struct h_cluster *c, raft_id id, const struct raft_event *ev);
void h_tick(struct h_cluster *c, raft_id id, uint32_t ticks);
void h_tick_all(struct h_cluster *c);
/* Ticks every live member once and delivers until quiet, `ticks` times. */
void h_run(struct h_cluster *c, uint32_t ticks);

/* Proposals: one entry with body `s`, or `count` entries of `len` bytes. */
int h_propose(struct h_cluster *c, raft_id id, const char *s);
int h_propose_n(struct h_cluster *c, raft_id id, uint32_t count, uint32_t len);
void h_transfer(struct h_cluster *c, raft_id id, raft_id target);

/* Manual persistence. h_persist_log(.., upto=0) persists the whole log. */
void h_persist_state(struct h_cluster *c, raft_id id);
void h_persist_log(struct h_cluster *c, raft_id id, uint64_t upto);

/* Steps RAFT_EV_STATE_PERSISTED for (term, vote), which need not be the
 * latest pair handed out (a confirmation that arrives late). */
void h_confirm_state(struct h_cluster *c, raft_id id, uint64_t term, raft_id vote);

void h_crash(struct h_cluster *c, raft_id id);
void h_restart(struct h_cluster *c, raft_id id);
/* Before h_start(): every member's store is new (a new incarnation each,
 * not a voter), as when a group is created. */
void h_fresh(struct h_cluster *c);
/* The member's store is lost and replaced by a new, empty one (a new,
 * higher incarnation, not a voter; term, vote and log gone); a running
 * member is crashed first and restarted after. */
void h_wipe(struct h_cluster *c, raft_id id);
/* The member's store keeps only its first `keep` entries (a disk that lied
 * about its syncs): same incarnation, voter flag, term and vote. A running
 * member is crashed first and restarted after. */
void h_lose_tail(struct h_cluster *c, raft_id id, uint64_t keep);

/* Network. from/to 0 means "any". */
void h_block(struct h_cluster *c, raft_id from, raft_id to, uint32_t type_mask);
void h_cut(struct h_cluster *c, raft_id a, raft_id b); /* both ways, all types */
void h_isolate(struct h_cluster *c, raft_id id);
void h_heal(struct h_cluster *c);
bool h_deliver_one(struct h_cluster *c, size_t i);
size_t h_deliver_all(struct h_cluster *c);
/* Delivers everything but messages matching (from, to, type), until only
 * those are left. */
size_t h_deliver_all_except(struct h_cluster *c, raft_id from, raft_id to, uint8_t type);
/* Steps a hand-made message into member m->to (entries borrowed). */
const struct raft_update *h_inject(struct h_cluster *c, const struct raft_message *m);
/* Delivers queued messages matching (from, to, type), in order; others stay. */
size_t h_deliver_match(struct h_cluster *c, raft_id from, raft_id to, uint8_t type);
size_t h_drop_match(struct h_cluster *c, raft_id from, raft_id to, uint8_t type);
size_t h_count(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type);
const struct h_msg *h_find(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type,
                           size_t nth);
/* Position in the queue of the nth match (fails if there is none). */
size_t h_index_of(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type, size_t nth);
void h_drop_one(struct h_cluster *c, size_t i);
void h_duplicate(struct h_cluster *c, size_t i);
void h_swap(struct h_cluster *c, size_t i, size_t j);
void h_drop_all(struct h_cluster *c);

/* Queries. */
const struct raft_status *h_status(struct h_cluster *c, raft_id id);
/* Progress that member `id` keeps for `peer` (fails if there is none). */
const struct raft_peer_status *h_peer(struct h_cluster *c, raft_id id, raft_id peer);
raft_id h_leader(struct h_cluster *c); /* live leader of the highest term, 0 if none */
uint64_t h_term_at(const struct h_cluster *c, raft_id id, uint64_t index);
uint64_t h_last(const struct h_cluster *c, raft_id id);
bool h_logs_equal(const struct h_cluster *c, raft_id a, raft_id b);
/* Prints every member's state to stderr (for diagnosing a failure). */
void h_dump(const struct h_cluster *c, const char *what);

/* Ticks `id` alone (delivering after every tick) until it leads, then
 * delivers until quiet. Returns false if it did not win within 20 election
 * timeouts. */
bool h_elect(struct h_cluster *c, raft_id id);
/* Runs whole-group ticks until `id` leads or `max_ticks` pass; returns the
 * number of ticks taken or UINT32_MAX. */
uint32_t h_run_until_leader(struct h_cluster *c, raft_id id, uint32_t max_ticks);

#endif
