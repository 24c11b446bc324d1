/*
 * check.h - invariant checkers for the Raft simulator, over an abstract history.
 *
 * The checker knows nothing of the Raft core: the caller records what happened
 * (a member became leader in a term, appended or truncated its log, made
 * entries or its hard state durable, restarted from its durable state, applied
 * an entry, acknowledged a proposal to a client) and the checker objects as
 * soon as the history breaks one of these rules, per group (groups are
 * independent):
 *
 *   election_safety      at most one leader per term (Raft §5.2);
 *   log_matching         two logs holding an entry with the same (index, term)
 *                        are identical up to that index (Raft §5.3). Each log
 *                        keeps a chained hash h[i] = H(h[i-1], term_i, body_i),
 *                        so only the entries that changed are compared, and
 *                        only at their own index;
 *   leader_completeness  a new leader holds every entry known committed
 *                        (applied anywhere or acknowledged) (Raft §5.4);
 *   state_machine_safety no two members apply different entries at one index;
 *   ack_contradicted     an acknowledged entry is never contradicted by a
 *                        later apply or acknowledgement;
 *   ack_not_durable      at acknowledgement the entry is durable on a majority
 *                        (flush mode sync), a member that is not a voter
 *                        counting as if it held it (see below);
 *   committed_truncated  no member ever truncates a committed entry from its
 *                        log (what its core sees);
 *   committed_not_durable every committed entry is durable on a majority of
 *                        the members, a member that is not a voter (raft.h,
 *                        "Voters": its store was made afresh and no leader
 *                        vouched for it yet) counting as if it held it;
 *                        checked whenever the caller says a durable log may
 *                        have shrunk (chk_durable_majority(): after a disk
 *                        completion, a crash, a member stopped by a failed
 *                        write, a restart). A member loses durable entries
 *                        by a durable truncation, a wipe (chk_wipe()) or a
 *                        damaged tail (chk_lose_tail(), which also makes it
 *                        a non-voter; a tail cut with chk_durable_truncate()
 *                        keeps it a voter, and so must be one it never
 *                        acknowledged, else this rule objects). A durable
 *                        truncation of a committed entry is not itself a
 *                        violation: one decided while the entry was not yet
 *                        committed may land after it committed elsewhere;
 *   ack_missing_at_end   chk_holds_committed(): a member holds every committed
 *                        entry (the end of the liveness phase);
 *   vote_safety          a member's durable term never goes down and its
 *                        durable vote in one term never changes;
 *   checker_usage        the caller broke the checker's own contract (append
 *                        not at the end of the log, id out of range, ...).
 *
 * Each recording function returns true when the history is still valid. The
 * first violation is kept (chk_failed()) and later calls keep recording.
 * Members are 1..n_members. Indexes start at 1. Single-threaded.
 *
 * Cost: appends O(members), truncations O(removed committed range), leader
 * changes O(1) (chained hashes), restarts O(log2 n + restored suffix).
 * Memory: three words per entry per log (volatile and durable) and per
 * committed index.
 */
#ifndef DLEDGER_SIM_CHECK_H
#define DLEDGER_SIM_CHECK_H

#include <stdbool.h>
#include <stdint.h>

#define CHK_MAX_MEMBERS 9
#define CHK_MAX_TERM (1u << 24) /* bound on the leader-per-term table */

struct chk;

struct chk_violation {
	char invariant[32];
	char detail[320];
};

/* Returns NULL when out of memory or when the sizes are out of range. */
struct chk *chk_new(uint32_t n_groups, uint32_t n_members);
void chk_free(struct chk *c);

/* The first violation recorded, or NULL. */
const struct chk_violation *chk_failed(const struct chk *c);

/* `member` became leader of `group` in `term`. */
bool chk_leader(struct chk *c, uint32_t group, uint64_t term, uint32_t member);

/* The member's log (what its Raft core sees, durable or not) got the entry
 * (index, term, body_hash); index is one past its last entry. */
bool chk_log_append(struct chk *c, uint32_t group, uint32_t member, uint64_t index, uint64_t term,
		    uint64_t body_hash);
/* The member's log dropped every entry after `after_index`. */
bool chk_log_truncate(struct chk *c, uint32_t group, uint32_t member, uint64_t after_index);

/* The same two for the member's durable log (what survives a crash). */
bool chk_durable_append(struct chk *c, uint32_t group, uint32_t member, uint64_t index,
			uint64_t term, uint64_t body_hash);
bool chk_durable_truncate(struct chk *c, uint32_t group, uint32_t member, uint64_t after_index);
/* The member's (term, vote) became durable. */
bool chk_durable_state(struct chk *c, uint32_t group, uint32_t member, uint64_t term,
		       uint32_t vote);

/* The member's voter flag became durable (members start as voters: plain
 * Raft; a caller that models new stores says otherwise at the start). */
bool chk_durable_voter(struct chk *c, uint32_t group, uint32_t member, bool voter);
/* The member's store was lost and replaced by an empty one (not a voter):
 * its logs, term and vote are gone. */
bool chk_wipe(struct chk *c, uint32_t group, uint32_t member);
/* The member's store lost its tail (a damaged entry at or below what it
 * acknowledged, cut with everything after it): its logs end at `keep` and
 * it is not a voter (a new incarnation; its term and vote are kept). */
bool chk_lose_tail(struct chk *c, uint32_t group, uint32_t member, uint64_t keep);
/* committed_not_durable, for the group's committed prefix. */
bool chk_durable_majority(struct chk *c, uint32_t group);

/* The member crashed and restarted: its log is now exactly its durable log. */
bool chk_restart(struct chk *c, uint32_t group, uint32_t member);

/* The member applied the entry at `index` to its state machine. */
bool chk_apply(struct chk *c, uint32_t group, uint32_t member, uint64_t index, uint64_t term,
	       uint64_t body_hash);
/* A client got the acknowledgement that (index, term, body) is committed. */
bool chk_ack(struct chk *c, uint32_t group, uint64_t index, uint64_t term, uint64_t body_hash);

/* The member's log holds every entry known committed (applied or acked). */
bool chk_holds_committed(struct chk *c, uint32_t group, uint32_t member);

/* Counters, for reports and tests. */
uint64_t chk_acked(const struct chk *c, uint32_t group);
uint64_t chk_committed_max(const struct chk *c, uint32_t group);

/* The chained hash as the checker computes it, for callers that want to
 * compare logs themselves. */
uint64_t chk_chain(uint64_t prev, uint64_t term, uint64_t body_hash);

#endif
