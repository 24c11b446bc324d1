/*
 * raft_internal.h - what the files of the Raft core share; not for use
 * outside raft/ (the public contract is raft.h).
 *
 * The core is one `struct raft` and pure functions of it, in files by
 * concern: raft.c (raft_step and the public API, message dispatch, the
 * outbox), log.c (the log as the core sees it: the caller's store plus the
 * update being built), election.c (roles, votes, term rules, timers,
 * leadership transfer), replication.c (appends and heartbeats, leader and
 * follower side; proposals, persistence reports), progress.c (the leader's
 * view of each member: in-flight window, incarnation, voter, commit count).
 */
#ifndef DLEDGER_RAFT_INTERNAL_H
#define DLEDGER_RAFT_INTERNAL_H

#include "raft/raft.h"

void raft_assert_fail(const char *file, int line, const char *expr);

/* Always on: these guard invariants whose failure would corrupt data. */
#define RAFT_ASSERT(x) ((x) ? (void)0 : raft_assert_fail(__FILE__, __LINE__, #x))

enum progress_state { PR_PROBE = 0, PR_REPLICATE };

struct inflight {
	uint64_t last_index;
	uint64_t bytes;
};

/* The leader's view of one other member (etcd's Progress, DLedger's
 * EntryDispatcher state). */
struct progress {
	raft_id id;
	uint64_t next;
	uint64_t match; /* durable on the member and agreed with us */
	uint8_t state;
	bool probe_sent;      /* probe: one message out, wait for an answer */
	bool active;          /* heard from since the last quorum check */
	bool vote_responded;
	bool vote_granted;
	bool want_lead;       /* its last heartbeat answer asked to lead */
	bool vote_voter;      /* its vote answer came from a voter */
	bool voter;           /* counts towards commit (raft.h, "Voters") */
	bool genesis;         /* granted our unanimous election (this incarnation) */
	uint64_t incarnation; /* the newest heard from it */
	bool heard;           /* incarnation is known */
	uint64_t first_seen_last; /* our last index when we first heard it */
	uint32_t stall_ticks; /* replicate: ticks without progress while busy */
	uint64_t hole;        /* replicate: resent from here after a gap; 0: none */
	/* Commit notices (raft.h): the highest commit index it was told it
	 * may take, and whether a notice waits for its answer. */
	uint64_t commit_told;
	bool notice_out;
	/* Ring of in-flight appends (replicate state). */
	struct inflight *infl;
	uint32_t infl_head;
	uint32_t infl_count;
	uint64_t infl_bytes;
};

struct raft {
	struct raft_config cfg;
	const struct raft_log_ops *ops;
	void *ctx;

	/* Hard state, and what of it the caller confirmed durable. */
	uint64_t term;
	raft_id vote;
	uint64_t confirmed_term;
	raft_id confirmed_vote;
	uint64_t reported_term; /* last handed out in an update */
	raft_id reported_vote;
	bool reported_voter;

	/* Our store's incarnation, and whether we count as a voter. */
	uint64_t incarnation;
	bool voter;
	uint64_t term_start; /* leader: index of this term's first entry */

	uint8_t role;
	raft_id leader;

	uint64_t first_index;
	uint64_t last_index;
	uint64_t last_term;
	uint64_t commit;
	uint64_t durable;

	/* Follower: highest index known to agree with the current leader's
	 * log in the current term, and the match last reported to it. */
	uint64_t leader_match;
	uint64_t acked_match;
	uint64_t hb_acked_match; /* match in the last heartbeat answer */
	bool hb_acked_want;      /* want_lead in it */
	bool hb_skipped;         /* the last heartbeat went unanswered */

	uint32_t election_elapsed;
	uint32_t heartbeat_elapsed;
	uint64_t now_ticks; /* the caller's clock, 0 when it gives none */
	uint32_t randomized_timeout;
	uint64_t rng;

	raft_id transferee;
	uint32_t transfer_elapsed;
	/* Leader: wait before retrying a transfer to the preferred member. */
	uint32_t preferred_backoff_ticks;
	uint32_t preferred_failures;
	/* Preferred member: campaigning on a TIMEOUT_NOW; how often such a
	 * takeover failed in a row, and how long it stays out of the running.
	 * Kept by the member itself, so it holds across changes of leader. */
	bool takeover;
	/* A leader (any, ourselves included) was known since boot; until then
	 * the preferred member stands first (raft_reset_election_timer). */
	bool leader_seen;
	uint32_t takeover_failures;
	uint32_t takeover_backoff_ticks;
	bool fixed_boot_pending;

	uint32_t self_slot;
	struct progress prs[RAFT_MAX_MEMBERS];

	/* Outbox: released to the caller only while (term, vote) is confirmed. */
	struct raft_message *out;
	uint32_t n_out;
	bool out_released;

	/* During a step: the update being filled (for entries not yet stored). */
	struct raft_update *u;
	struct raft_entry noop;

	uint64_t elections;
	uint64_t leader_changes;
	uint64_t dropped_msgs;
	uint64_t ignored_msgs;
	uint64_t refused_msgs;
	uint64_t member_resets;
	uint64_t promotions;
};

static inline uint32_t quorum(const struct raft *r) { return r->cfg.n_members / 2 + 1; }

/* Counts towards commit and check-quorum (raft.h, "Voters"). With a fixed
 * leader there are no elections, and every member counts. */
static inline bool counts(const struct raft *r, const struct progress *pr)
{
	if (r->cfg.fixed_leader != 0)
		return true;
	return pr->id == r->cfg.self ? r->voter : pr->voter;
}

static inline struct progress *progress_of(struct raft *r, raft_id id)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

/* raft.c: the step dispatch and the outbox. */
struct raft_message *raft_msg_new(struct raft *r, uint8_t type, raft_id to);
void raft_outbox_purge_stale(struct raft *r);

/* log.c: the log as the core sees it. */
bool raft_term_at(struct raft *r, uint64_t index, uint64_t *term);
uint64_t raft_term_or_zero(struct raft *r, uint64_t index);
uint32_t raft_entry_bytes(struct raft *r, uint64_t index);
void raft_log_append(struct raft *r, const struct raft_entry *entries, uint32_t n);
void raft_log_truncate(struct raft *r, uint64_t after);
bool raft_log_up_to_date(struct raft *r, uint64_t last_index, uint64_t last_term);
uint64_t raft_find_by_term(struct raft *r, uint64_t index, uint64_t term, uint64_t floor);

/* progress.c: the leader's view of each member; commit; voters. */
void raft_inflight_reset(struct progress *pr);
void raft_progress_restart(struct raft *r, struct progress *pr, uint64_t match);
bool raft_progress_update(struct progress *pr, uint64_t match);
void raft_inflight_free_to(struct raft *r, struct progress *pr, uint64_t index);
bool raft_inflight_full(const struct raft *r, const struct progress *pr);
void raft_maybe_commit(struct raft *r);
void raft_maybe_certify(struct raft *r, const struct progress *pr);
bool raft_note_incarnation(struct raft *r, struct progress *pr, const struct raft_message *m);
void raft_note_vouched(struct raft *r, const struct raft_message *m);

/* election.c: roles, votes, term rules, timers, leadership transfer. */
void raft_reset_election_timer(struct raft *r);
void raft_become_follower(struct raft *r, uint64_t term, raft_id leader);
void raft_become_leader(struct raft *r, bool unanimous);
void raft_become_candidate(struct raft *r, bool transfer);
void raft_send_timeout_now(struct raft *r, raft_id to);
void raft_handle_vote_request(struct raft *r, const struct raft_message *m);
void raft_handle_vote_resp(struct raft *r, const struct raft_message *m);
bool raft_handle_term(struct raft *r, const struct raft_message *m);
void raft_start_transfer(struct raft *r, raft_id target);
void raft_tick(struct raft *r);

/* replication.c: appends and heartbeats, both sides; proposals. */
void raft_append_noop(struct raft *r);
void raft_send_append_all(struct raft *r, struct progress *pr);
void raft_bcast_heartbeat(struct raft *r);
void raft_send_commit_notices(struct raft *r);
void raft_handle_append_resp(struct raft *r, const struct raft_message *m);
void raft_handle_heartbeat_resp(struct raft *r, const struct raft_message *m);
void raft_handle_append(struct raft *r, const struct raft_message *m);
void raft_handle_heartbeat(struct raft *r, const struct raft_message *m);
void raft_propose(struct raft *r, struct raft_entry *entries, uint32_t n, struct raft_update *u);
void raft_persisted(struct raft *r, uint64_t index, uint64_t term);

#endif
