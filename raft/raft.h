/*
 * raft.h - the Raft protocol as a pure, deterministic state machine.
 *
 * One `struct raft` is one member of one group. It owns no thread, socket,
 * file, clock or random source: time arrives as ticks, randomness comes from
 * the seed in its config, messages arrive and leave as plain values. The
 * caller feeds it one event at a time with raft_step() and carries out the
 * `struct raft_update` it gets back before feeding the next event:
 *
 *   1. if update.hard_state_changed: start persisting (term, vote); once it is
 *      durable, step RAFT_EV_STATE_PERSISTED with the same pair;
 *   2. if update.truncate: drop every stored entry after update.truncate_after;
 *   3. append update.entries (update.n_entries, first at update.first_index)
 *      to the store (not yet durable), and later, once durable, step
 *      RAFT_EV_PERSISTED with the index and term of the last durable entry;
 *   4. send update.msgs (RAFT_MSG_APPEND messages describe a range of the
 *      local log; the caller reads the bodies from its store when encoding);
 *   5. apply the entries in (old commit, update.commit_index].
 *
 * Commit notices: a leader tells each follower of a new commit index in the
 * next append it sends it. When no append goes out (the follower holds the
 * leader's whole log), the caller steps RAFT_EV_NOTIFY once it has nothing
 * more queued (the runtime: after 1 ms without mail, so that under load the
 * next append carries the commit index instead): the leader then
 * sends a heartbeat carrying the commit index to each follower that was not
 * told the commit index it can take, at most one such notice outstanding
 * per follower (until it answers, or the next regular heartbeat). So a
 * follower learns a commit in about one round trip (plus that wait), not
 * one heartbeat interval.
 *
 * The log itself lives in the caller's store; the core reads terms and body
 * sizes back through `struct raft_log_ops`, which must reflect every update
 * already carried out (step 2 and 3 of the previous updates).
 *
 * Rules kept here (Raft paper, etcd raft, DLedger):
 *  - term and vote are handed out for persistence, and no message is released
 *    while the current (term, vote) is not confirmed durable;
 *  - randomized election timeouts in [T, 2T) ticks (the preferred member:
 *    [T/4, T/2) until it has known a leader since boot, so that a fresh
 *    group elects it first: fast bring-up); pre-vote; check-quorum;
 *  - one vote per term, granted only to an up-to-date log (last term, then
 *    last index);
 *  - per-follower progress (probe / replicate) with an in-flight window
 *    bounded in messages and bytes; many entries per message;
 *  - divergence resolved in about one round trip from the reject hint;
 *  - commit: highest index durable on a majority whose entry is of the
 *    current term; the local member counts only what storage reported
 *    durable;
 *  - leadership transfer (on request and towards preferred_id);
 *  - members whose store was lost or replaced (a new incarnation) are
 *    repaired from the leader and do not vote or count towards commit until
 *    a leader vouches that they hold every committed entry (see "Voters"
 *    below and docs/ARCHITECTURE.md, "A member that lost its disk").
 *
 * Limits: at most RAFT_MAX_MEMBERS members per group; every queue is bounded
 * (see struct raft_config), and drops are counted in struct raft_status.
 */
#ifndef DLEDGER_RAFT_H
#define DLEDGER_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_MAX_MEMBERS 9

/* Member ids are small positive integers; 0 means "none". The runtime maps
 * DLedger's string ids ("n0", "n1", ...) to 1..n by their order in peers. */
typedef uint32_t raft_id;

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRECANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* Result codes of raft_init() and of proposals. */
enum raft_rc {
	RAFT_OK = 0,
	RAFT_EINVAL,     /* bad config or event */
	RAFT_ENOTLEADER, /* proposal to a non-leader; update.leader_id tells who */
	RAFT_EBUSY,      /* leadership transfer in progress; retry later */
	RAFT_ENOMEM,
};

enum raft_entry_type {
	RAFT_ENTRY_NORMAL = 0,
	RAFT_ENTRY_NOOP = 1, /* appended by a new leader to commit earlier terms */
};

/* One log entry. `data` is borrowed: for a proposal, from the caller's
 * buffer; for an inbound append, from the decoded frame. The core never
 * frees or keeps it past the step that received it. */
struct raft_entry {
	uint64_t term;
	const void *data;
	uint32_t len;
	uint8_t type; /* enum raft_entry_type */
};

enum raft_msg_type {
	RAFT_MSG_PREVOTE = 1,
	RAFT_MSG_PREVOTE_RESP,
	RAFT_MSG_VOTE,
	RAFT_MSG_VOTE_RESP,
	RAFT_MSG_APPEND,
	RAFT_MSG_APPEND_RESP,
	RAFT_MSG_HEARTBEAT,
	RAFT_MSG_HEARTBEAT_RESP,
	RAFT_MSG_TIMEOUT_NOW,
	RAFT_MSG_TYPE_MAX = RAFT_MSG_TIMEOUT_NOW,
};

/*
 * Voters. Raft's safety assumes a member never forgets its vote or an entry
 * it acknowledged. A store made afresh (a new disk, a wiped directory, the
 * memory store at every start) has forgotten both, so each store carries an
 * incarnation, drawn when it is created and larger than any earlier one of
 * the same member (raft_boot.incarnation), and a durable `voter` flag that a
 * new store starts without. A member that is not a voter:
 *  - grants votes as usual, but a candidate counts such a grant only when
 *    every member of the group granted (a unanimous election);
 *  - does not count towards commit, nor towards the leader's check-quorum;
 *  - becomes a voter when a leader vouches for it (peer_voter_inc in an
 *    append or heartbeat): the leader does so once the member durably holds
 *    (a) the leader's log up to its term's first entry, when the leader won
 *    a unanimous election that this incarnation took part in, or (b) the
 *    leader's commit index, once that index is of the leader's term and was
 *    counted by voters after the leader first heard of this incarnation.
 * A leader that hears a new incarnation of a member (or a log shorter than
 * the member acknowledged) forgets what it knew of it and repairs it from
 * the start. With incarnation 0 everywhere and voter set at boot, the core
 * behaves as plain Raft.
 */
/*
 * Impossible messages. Whatever its sender, a message that no correct
 * member can send is refused, counted (raft_status.refused_msgs) and
 * changes nothing:
 *  - a term more than RAFT_MAX_TERM_JUMP above ours: elections raise terms
 *    one at a time, so a jump that large is forged or corrupt, and taking it
 *    would let one message push the term to its maximum, where no election
 *    can start again;
 *  - an append or heartbeat of our current term from a member other than the
 *    leader we follow in that term: a term has one leader;
 *  - an append whose entries, or whose prev entry, disagree with our
 *    committed entries: committed entries are in every later leader's log.
 *    Two members then hold different committed entries (a forged append got
 *    in, or a store lied), and the core reports the first index that
 *    disagrees (raft_update.conflict_index) for the caller to log; it
 *    cannot tell which copy is the group's, so it changes nothing.
 * No single message can thus push a term to its end, or overwrite what a
 * member holds as committed. A forged message of a new term cannot be told
 * from a real new leader's, though: only authenticating peers (TLS) keeps a
 * non-member from speaking as a member (docs/ARCHITECTURE.md, "Impossible
 * messages").
 */
#define RAFT_MAX_TERM_JUMP (1ull << 32)

struct raft_message {
	uint8_t type; /* enum raft_msg_type */
	raft_id from;
	raft_id to;
	uint64_t term;
	/* Every message: the sender's incarnation (0: none) and whether it is
	 * a voter. */
	uint64_t incarnation;
	bool voter;
	/* RAFT_MSG_APPEND and RAFT_MSG_HEARTBEAT: the recipient's incarnation
	 * that the leader counts as a voter (0: none). */
	uint64_t peer_voter_inc;
	union {
		/* RAFT_MSG_PREVOTE, RAFT_MSG_VOTE. `term` is the term the
		 * candidate would take (pre-vote) or has taken (vote). */
		struct {
			uint64_t last_index;
			uint64_t last_term;
			bool transfer; /* leadership transfer: ignore the lease */
		} vote;
		/* RAFT_MSG_PREVOTE_RESP, RAFT_MSG_VOTE_RESP */
		struct {
			bool granted;
		} vote_resp;
		/* RAFT_MSG_APPEND: entries prev_index+1 .. prev_index+n_entries.
		 * Outbound, `entries` is NULL: the caller reads that range from
		 * its store. Inbound, `entries` points at n_entries decoded
		 * entries (borrowed for the step). */
		struct {
			uint64_t prev_index;
			uint64_t prev_term;
			uint64_t commit;
			uint32_t n_entries;
			const struct raft_entry *entries;
		} append;
		/* RAFT_MSG_APPEND_RESP. On success `match_index` is the highest
		 * index that the follower holds durably and knows to agree with
		 * this leader. On reject, the hint: the follower's log agrees at
		 * best up to (hint_index, hint_term); `last_index` is its last. */
		struct {
			bool reject;
			uint64_t match_index;
			uint64_t last_index;
			uint64_t rejected_index; /* prev_index of the rejected append */
			uint64_t hint_index;
			uint64_t hint_term;
		} append_resp;
		/* RAFT_MSG_HEARTBEAT: the commit index the follower may take,
		 * already capped at what the leader knows it holds. */
		struct {
			uint64_t commit;
		} heartbeat;
		/* RAFT_MSG_HEARTBEAT_RESP: the follower's durable agreed index;
		 * want_lead: it is the group's preferred leader and ready to
		 * take over (not backing off after a failed takeover). */
		struct {
			uint64_t match_index;
			bool want_lead;
		} heartbeat_resp;
	};
};

/* Read-only view of the caller's log. Both functions must answer for every
 * index in [first_index, last_index] of the log as the updates so far left
 * it. */
struct raft_log_ops {
	/* Term of the entry at `index`. Index 0 has term 0. Returns false when
	 * the entry is not available (dropped prefix, or past the end). */
	bool (*term_at)(void *ctx, uint64_t index, uint64_t *term);
	/* Size in bytes of the body of the entry at `index` (0 if unknown). */
	uint32_t (*entry_bytes)(void *ctx, uint64_t index);
};

struct raft_config {
	raft_id self;
	raft_id members[RAFT_MAX_MEMBERS]; /* includes self, each once, non-zero */
	uint32_t n_members;

	uint32_t election_ticks;  /* T: timeouts drawn from [T, 2T) (see the top) */
	uint32_t heartbeat_ticks; /* < election_ticks */
	bool prevote;
	bool check_quorum;
	raft_id preferred_id; /* 0: none */
	/* DLedger's enableLeaderElector=false: no elections; fixed_leader
	 * leads (0: elections on). */
	raft_id fixed_leader;

	uint32_t max_append_entries;  /* per message */
	uint32_t max_append_bytes;    /* per message (at least one entry goes) */
	uint32_t max_inflight_msgs;   /* per follower, replicate state */
	uint64_t max_inflight_bytes;  /* per follower, replicate state */
	uint32_t max_outbox;          /* messages per update; more are dropped */
	/* Idle groups: a follower answers only every other heartbeat while
	 * its answer would not change (the leader still hears from it at
	 * least once per two heartbeats, which check-quorum tolerates when
	 * election_ticks >= 3 * heartbeat_ticks; required then). */
	bool thin_heartbeat_acks;
	uint64_t seed;                /* for randomized election timeouts */
};

/* Fill `cfg` with defaults (everything but self and members). */
void raft_config_defaults(struct raft_config *cfg);

/* What storage recovered at start. */
struct raft_boot {
	uint64_t term;
	raft_id vote;
	uint64_t first_index; /* first entry still stored (1 when nothing dropped) */
	uint64_t last_index;  /* 0: empty log */
	uint64_t last_term;
	uint64_t commit;      /* checkpoint; <= last_index */
	uint64_t incarnation; /* the store's (0: none); see "Voters" */
	bool voter;           /* durable flag; false for a store made afresh */
};

enum raft_event_type {
	RAFT_EV_TICK = 1,
	RAFT_EV_MESSAGE,
	RAFT_EV_PROPOSE,
	RAFT_EV_PERSISTED,       /* entries durable up to (index, term) */
	RAFT_EV_STATE_PERSISTED, /* (term, vote) durable */
	RAFT_EV_TRANSFER,        /* transfer leadership to `target` */
	RAFT_EV_NOTIFY,          /* the caller's queue is drained: commit notices */
};

struct raft_event {
	uint8_t type; /* enum raft_event_type */
	union {
		/* RAFT_EV_TICK: the caller's tick count (0: not given). When
		 * given, a leader sends heartbeats on the ticks divisible by
		 * heartbeat_ticks, so the heartbeats of all groups that share a
		 * clock leave together (and coalesce on the wire). */
		struct {
			uint64_t now;
		} tick;
		const struct raft_message *msg;
		/* The core sets each entry's term; bodies stay borrowed. */
		struct {
			struct raft_entry *entries;
			uint32_t n;
		} propose;
		struct {
			uint64_t index;
			uint64_t term;
		} persisted;
		struct {
			uint64_t term;
			raft_id vote;
		} state;
		raft_id target;
	};
};

/* The outcome of one step. Valid until the next raft_step() on the same
 * core; pointers in it borrow from the core or from the event. */
struct raft_update {
	/* Hard state: persist before step RAFT_EV_STATE_PERSISTED. `voter`
	 * is persisted with it; messages wait for (term, vote) only, since a
	 * voter's claim rests on its log, which survives with the store. */
	bool hard_state_changed;
	uint64_t term;
	raft_id vote;
	bool voter;

	/* Log changes, in order: truncate, then append. */
	bool truncate;
	uint64_t truncate_after;
	uint64_t first_index;
	uint32_t n_entries;
	const struct raft_entry *entries; /* terms set; borrowed from the event */

	/* Messages to send (bounded by max_outbox). */
	const struct raft_message *msgs;
	uint32_t n_msgs;

	/* Commit: apply (old, commit_index] when commit_changed. */
	bool commit_changed;
	uint64_t commit_index;

	/* Role and leader, always filled; *_changed tell what moved. */
	bool role_changed;
	bool leader_changed;
	uint8_t role; /* enum raft_role */
	raft_id leader_id;

	/* RAFT_EV_PROPOSE: RAFT_OK with the index and term of the first
	 * entry (the rest follow contiguously), or RAFT_ENOTLEADER (see
	 * leader_id, 0 if unknown) or RAFT_EBUSY. */
	int propose_rc;
	uint64_t propose_index;
	uint64_t propose_term;

	/* An append disagreed with our committed entry at this index (0:
	 * none); see "Impossible messages". */
	uint64_t conflict_index;
};

struct raft_peer_status {
	raft_id id;
	uint64_t match_index;
	uint64_t next_index;
	bool replicating; /* false: probing */
	bool active;      /* heard from within the last election timeout */
	bool voter;       /* counts towards commit (leader's view) */
	uint64_t incarnation; /* last heard (0: none) */
};

struct raft_status {
	raft_id self;
	uint8_t role;
	uint64_t term;
	raft_id vote;
	raft_id leader_id;
	uint64_t first_index;
	uint64_t last_index;
	uint64_t last_term;
	uint64_t commit_index;
	uint64_t durable_index;
	uint64_t incarnation;
	bool voter;
	raft_id transferee; /* 0: no transfer in progress */
	uint32_t n_peers;
	struct raft_peer_status peers[RAFT_MAX_MEMBERS];
	/* Counters. */
	uint64_t elections;      /* campaigns started (vote phase) */
	uint64_t leader_changes; /* times leader_id moved to a non-zero id */
	uint64_t dropped_msgs;   /* outbox overflow */
	uint64_t ignored_msgs;   /* from non-members, malformed, or stale */
	uint64_t refused_msgs;   /* impossible: see "Impossible messages" */
	uint64_t member_resets;  /* leader: a member came back with a new
	                          * incarnation or a shorter log than it acked */
	uint64_t promotions;     /* leader: members vouched for as voters */
};

struct raft;

/* Allocates a core. Returns RAFT_OK and sets *out, or RAFT_EINVAL when the
 * config is inconsistent (self not a member, duplicate ids, timings), or
 * RAFT_ENOMEM. `ops`/`ctx` must outlive the core. */
int raft_new(const struct raft_config *cfg, const struct raft_log_ops *ops, void *ctx,
	     const struct raft_boot *boot, struct raft **out);
void raft_free(struct raft *r);

/* Feeds one event; fills `u` (which is reset first). */
void raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *u);

void raft_get_status(const struct raft *r, struct raft_status *st);

/* Ticks until a tick can change anything (a heartbeat or an election is
 * due); at least 1. An idle caller may sleep that long and then step that
 * many ticks (a message in between resets what it resets). */
uint32_t raft_ticks_until_due(const struct raft *r);

/* Called when an always-on assertion fails (a broken invariant that would
 * corrupt data), before abort(). Default NULL: abort() at once. Set by the
 * process (the node logs, the simulator prints its seed). */
extern void (*raft_assert_handler)(const char *file, int line, const char *expr);
const char *raft_role_name(uint8_t role);
const char *raft_msg_type_name(uint8_t type);

#endif
