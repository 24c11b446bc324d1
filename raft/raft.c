/*
 * raft.c - the pure Raft core. See raft.h for the contract.
 *
 * No thread, file, socket, clock or random source is used here; all memory
 * is allocated in raft_new(). The step path does not allocate.
 */
#include "raft/raft.h"

#include <stdlib.h>
#include <string.h>

void (*raft_assert_handler)(const char *file, int line, const char *expr);

static void raft_assert_fail(const char *file, int line, const char *expr)
{
	if (raft_assert_handler != NULL)
		raft_assert_handler(file, line, expr);
	abort();
}

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

/* ---- small helpers ---------------------------------------------------- */

static uint64_t rng_next(struct raft *r)
{
	/* splitmix64 */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint32_t quorum(const struct raft *r) { return r->cfg.n_members / 2 + 1; }

/* Counts towards commit and check-quorum (raft.h, "Voters"). With a fixed
 * leader there are no elections, and every member counts. */
static bool counts(const struct raft *r, const struct progress *pr)
{
	if (r->cfg.fixed_leader != 0)
		return true;
	return pr->id == r->cfg.self ? r->voter : pr->voter;
}

static struct progress *progress_of(struct raft *r, raft_id id)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++)
		if (r->prs[i].id == id)
			return &r->prs[i];
	return NULL;
}

/* Term at `index`, seeing entries of the update being built too. */
static bool raft_term_at(struct raft *r, uint64_t index, uint64_t *term)
{
	if (index == 0) {
		*term = 0;
		return true;
	}
	if (index > r->last_index)
		return false;
	struct raft_update *u = r->u;
	if (u != NULL && u->n_entries > 0 && index >= u->first_index) {
		RAFT_ASSERT(index < u->first_index + u->n_entries);
		*term = u->entries[index - u->first_index].term;
		return true;
	}
	return r->ops->term_at(r->ctx, index, term);
}

static uint64_t raft_term_or_zero(struct raft *r, uint64_t index)
{
	uint64_t t = 0;
	return raft_term_at(r, index, &t) ? t : 0;
}

static uint32_t raft_entry_bytes(struct raft *r, uint64_t index)
{
	struct raft_update *u = r->u;
	if (u != NULL && u->n_entries > 0 && index >= u->first_index &&
	    index < u->first_index + u->n_entries)
		return u->entries[index - u->first_index].len;
	return r->ops->entry_bytes(r->ctx, index);
}

static void raft_reset_election_timer(struct raft *r)
{
	r->election_elapsed = 0;
	uint32_t t = r->cfg.election_ticks;
	r->randomized_timeout = t + (uint32_t)(rng_next(r) % t);
}

static struct raft_message *raft_msg_new(struct raft *r, uint8_t type, raft_id to)
{
	if (r->n_out >= r->cfg.max_outbox) {
		r->dropped_msgs++;
		return NULL;
	}
	struct raft_message *m = &r->out[r->n_out++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->cfg.self;
	m->to = to;
	m->term = r->term;
	m->incarnation = r->incarnation;
	m->voter = r->voter;
	return m;
}

/* Messages of an older term are useless once the term moved: drop them. */
static void raft_outbox_purge_stale(struct raft *r)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n_out; i++)
		if (r->out[i].term >= r->term)
			r->out[k++] = r->out[i];
	r->n_out = k;
}

static void set_leader(struct raft *r, raft_id leader)
{
	if (leader != r->leader && leader != 0)
		r->leader_changes++;
	r->leader = leader;
}

/* Append entries to the log through the update (the caller stores them). */
static void raft_log_append(struct raft *r, const struct raft_entry *entries, uint32_t n)
{
	struct raft_update *u = r->u;
	RAFT_ASSERT(u->n_entries == 0);
	RAFT_ASSERT(n > 0);
	u->first_index = r->last_index + 1;
	u->entries = entries;
	u->n_entries = n;
	r->last_index += n;
	r->last_term = entries[n - 1].term;
}

static void raft_log_truncate(struct raft *r, uint64_t after)
{
	struct raft_update *u = r->u;
	/* Raft §5.3: only uncommitted entries may be removed. */
	RAFT_ASSERT(after >= r->commit);
	RAFT_ASSERT(after < r->last_index);
	RAFT_ASSERT(u->n_entries == 0 && !u->truncate);
	u->truncate = true;
	u->truncate_after = after;
	r->last_index = after;
	r->last_term = raft_term_or_zero(r, after);
	if (r->durable > after)
		r->durable = after;
}

static void raft_inflight_reset(struct progress *pr)
{
	pr->hole = 0;
	pr->infl_head = 0;
	pr->infl_count = 0;
	pr->infl_bytes = 0;
	pr->stall_ticks = 0;
}

/* Leader: forget what a member held beyond `match` and probe it again from
 * there (its store was replaced, or it lost entries it acknowledged). The
 * one place where a match index goes down. */
static void raft_progress_restart(struct raft *r, struct progress *pr, uint64_t match)
{
	RAFT_ASSERT(match <= pr->match);
	pr->match = match;
	pr->next = match + 1;
	pr->state = PR_PROBE;
	pr->probe_sent = false;
	raft_inflight_reset(pr);
	RAFT_ASSERT(pr->next <= r->last_index + 1);
}

static void raft_inflight_free_to(struct raft *r, struct progress *pr, uint64_t index)
{
	uint32_t cap = r->cfg.max_inflight_msgs;
	while (pr->infl_count > 0) {
		struct inflight *f = &pr->infl[pr->infl_head];
		if (f->last_index > index)
			break;
		pr->infl_bytes -= f->bytes;
		pr->infl_head = (pr->infl_head + 1) % cap;
		pr->infl_count--;
	}
}

static bool raft_inflight_full(const struct raft *r, const struct progress *pr)
{
	return pr->infl_count >= r->cfg.max_inflight_msgs ||
	       pr->infl_bytes >= r->cfg.max_inflight_bytes;
}

/* ---- roles ------------------------------------------------------------ */

/* A takeover ends: won (leader) or lost (anything else). A lost one keeps
 * the preferred member out of the running for a doubling time, so one that
 * cannot win does not depose leader after leader (DLedger #85, #247). */
static void end_takeover(struct raft *r, bool won)
{
	if (!r->takeover)
		return;
	r->takeover = false;
	if (won) {
		r->takeover_failures = 0;
		return;
	}
	if (r->takeover_failures < 3)
		r->takeover_failures++;
	r->takeover_backoff_ticks = r->cfg.election_ticks << r->takeover_failures;
}

static void raft_become_follower(struct raft *r, uint64_t term, raft_id leader)
{
	RAFT_ASSERT(term >= r->term);
	end_takeover(r, false);
	/* What we agreed with a leader holds for that leader in that term
	 * only: a new term of the same leader may have lost and rewritten the
	 * entries we agreed on (decided before the term moves below). */
	if (term != r->term || leader != r->leader || r->role != RAFT_FOLLOWER) {
		r->leader_match = 0;
		r->acked_match = 0;
	}
	if (term > r->term) {
		r->term = term;
		r->vote = 0;
		raft_outbox_purge_stale(r);
	}
	r->role = RAFT_FOLLOWER;
	set_leader(r, leader);
	r->transferee = 0;
	raft_reset_election_timer(r);
}

static void send_append(struct raft *r, struct progress *pr, bool allow_empty);
static void bcast_append(struct raft *r);
static void raft_maybe_commit(struct raft *r);

/* Leader: an empty entry of the current term, sent to everyone. */
static void raft_append_noop(struct raft *r)
{
	RAFT_ASSERT(r->role == RAFT_LEADER);
	r->noop.term = r->term;
	r->noop.data = NULL;
	r->noop.len = 0;
	r->noop.type = RAFT_ENTRY_NOOP;
	raft_log_append(r, &r->noop, 1);
	bcast_append(r);
}

/* `unanimous`: every member granted the vote, so every member's log is
 * behind ours and ours holds every committed entry; each member is vouched
 * for once it holds our log up to this term's first entry (raft.h,
 * "Voters", (a)). A leader is a voter: elected by voters or by all, its log
 * holds every committed entry. */
static void raft_become_leader(struct raft *r, bool unanimous)
{
	end_takeover(r, true);
	r->role = RAFT_LEADER;
	set_leader(r, r->cfg.self);
	r->transferee = 0;
	r->heartbeat_elapsed = 0;
	r->election_elapsed = 0;
	r->voter = true;
	r->term_start = r->last_index + 1;
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		pr->next = r->last_index + 1;
		pr->match = 0;
		pr->state = PR_PROBE;
		pr->probe_sent = false;
		pr->active = true;
		pr->want_lead = false;
		pr->genesis = unanimous && pr->id != r->cfg.self;
		raft_inflight_reset(pr);
	}
	/* Raft §5.4.2: commit earlier terms through an entry of our own. */
	raft_append_noop(r);
	raft_maybe_commit(r);
}

static bool raft_log_up_to_date(struct raft *r, uint64_t last_index, uint64_t last_term)
{
	/* Raft §5.4.1: compare last terms, then last indexes. */
	return last_term > r->last_term || (last_term == r->last_term && last_index >= r->last_index);
}

static void reset_votes(struct raft *r)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		bool self = r->prs[i].id == r->cfg.self;
		r->prs[i].vote_responded = self;
		r->prs[i].vote_granted = self;
		r->prs[i].vote_voter = self && r->voter;
	}
}

static void raft_become_candidate(struct raft *r, bool transfer);

/* Counts answers; wins or gives up as soon as the outcome is certain. A
 * win takes the grants of a majority of voters, or the grants of every
 * member (raft.h, "Voters"). */
static void tally_votes(struct raft *r)
{
	uint32_t granted = 0, granted_voters = 0, pending = 0;
	const uint32_t n = r->cfg.n_members, q = quorum(r);
	for (uint32_t i = 0; i < n; i++) {
		const struct progress *pr = &r->prs[i];
		if (!pr->vote_responded)
			pending++;
		else if (pr->vote_granted)
			granted++, granted_voters += pr->vote_voter;
	}
	RAFT_ASSERT(granted_voters <= granted && granted + pending <= n);
	if (granted_voters >= q || granted == n) {
		if (r->role == RAFT_PRECANDIDATE)
			raft_become_candidate(r, false);
		else
			raft_become_leader(r, granted == n);
	} else if (granted_voters + pending < q && granted + pending < n) {
		/* Lost: back to follower, so a member that cannot win never
		 * stays a candidate (DLedger #85, #247). */
		raft_become_follower(r, r->term, 0);
	}
}

static void send_vote_requests(struct raft *r, uint8_t type, uint64_t term, bool transfer)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		raft_id id = r->prs[i].id;
		if (id == r->cfg.self)
			continue;
		struct raft_message *m = raft_msg_new(r, type, id);
		if (m == NULL)
			continue;
		m->term = term;
		m->vote.last_index = r->last_index;
		m->vote.last_term = r->last_term;
		m->vote.transfer = transfer;
	}
}

static void raft_become_candidate(struct raft *r, bool transfer)
{
	r->term++;
	r->vote = r->cfg.self;
	raft_outbox_purge_stale(r);
	r->role = RAFT_CANDIDATE;
	set_leader(r, 0);
	r->transferee = 0;
	r->leader_match = 0;
	r->acked_match = 0;
	r->elections++;
	raft_reset_election_timer(r);
	reset_votes(r);
	send_vote_requests(r, RAFT_MSG_VOTE, r->term, transfer);
	tally_votes(r);
}

static void become_precandidate(struct raft *r)
{
	/* Pre-vote (Raft thesis §9.6): ask before raising the term. */
	r->role = RAFT_PRECANDIDATE;
	set_leader(r, 0);
	r->leader_match = 0;
	r->acked_match = 0;
	raft_reset_election_timer(r);
	reset_votes(r);
	send_vote_requests(r, RAFT_MSG_PREVOTE, r->term + 1, false);
	tally_votes(r);
}

static void campaign(struct raft *r)
{
	end_takeover(r, false);
	if (r->cfg.prevote)
		become_precandidate(r);
	else
		raft_become_candidate(r, false);
}

/* ---- replication (leader) ---------------------------------------------- */

static void raft_send_timeout_now(struct raft *r, raft_id to)
{
	(void)raft_msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
}

static void send_append(struct raft *r, struct progress *pr, bool allow_empty)
{
	if (pr->state == PR_PROBE && pr->probe_sent)
		return;
	if (pr->state == PR_REPLICATE && raft_inflight_full(r, pr))
		return;
	uint64_t prev = pr->next - 1;
	uint64_t prev_term, first_term;
	if (!raft_term_at(r, prev, &prev_term) ||
	    (pr->next <= r->last_index && !raft_term_at(r, pr->next, &first_term))) {
		/* The entry before next, or next itself, was dropped from our
		 * log: this member cannot be caught up by appends. Counted; an
		 * operator must reseed it (docs/OPERATIONS.md, "Replacing a
		 * disk"). */
		r->ignored_msgs++;
		return;
	}
	uint32_t n = 0;
	uint64_t bytes = 0;
	for (uint64_t idx = pr->next; idx <= r->last_index && n < r->cfg.max_append_entries; idx++) {
		uint32_t b = raft_entry_bytes(r, idx);
		if (n > 0 && bytes + b > r->cfg.max_append_bytes)
			break;
		n++;
		bytes += b;
	}
	if (n == 0 && !allow_empty)
		return;
	struct raft_message *m = raft_msg_new(r, RAFT_MSG_APPEND, pr->id);
	if (m == NULL)
		return;
	m->append.prev_index = prev;
	m->append.prev_term = prev_term;
	m->append.commit = r->commit;
	m->peer_voter_inc = pr->voter ? pr->incarnation : 0;
	m->append.n_entries = n;
	m->append.entries = NULL;
	if (pr->state == PR_PROBE) {
		pr->probe_sent = true;
	} else if (n > 0) {
		uint32_t cap = r->cfg.max_inflight_msgs;
		struct inflight *f = &pr->infl[(pr->infl_head + pr->infl_count) % cap];
		f->last_index = prev + n;
		f->bytes = bytes;
		pr->infl_count++;
		pr->infl_bytes += bytes;
		pr->next = prev + n + 1;
	}
}

/* Sends as much as the window allows. */
static void raft_send_append_all(struct raft *r, struct progress *pr)
{
	for (uint32_t guard = 0; guard <= r->cfg.max_inflight_msgs; guard++) {
		uint32_t before = r->n_out;
		if (pr->next > r->last_index)
			return;
		send_append(r, pr, false);
		if (r->n_out == before || pr->state == PR_PROBE)
			return;
	}
}

static void bcast_append(struct raft *r)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id != r->cfg.self)
			raft_send_append_all(r, pr);
	}
}

static void raft_bcast_heartbeat(struct raft *r)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self)
			continue;
		struct raft_message *m = raft_msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
		if (m == NULL)
			continue;
		/* etcd: never tell a member to commit what it may not hold. */
		m->heartbeat.commit = pr->match < r->commit ? pr->match : r->commit;
		m->peer_voter_inc = pr->voter ? pr->incarnation : 0;
	}
}

static int cmp_desc(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The highest index durable on a majority of voters (a non-voter counts as
 * holding nothing). */
static void commit_by_count(struct raft *r)
{
	uint64_t m[RAFT_MAX_MEMBERS];
	uint32_t n = r->cfg.n_members;
	for (uint32_t i = 0; i < n; i++) {
		const struct progress *pr = &r->prs[i];
		uint64_t held = pr->id == r->cfg.self ? r->durable : pr->match;
		m[i] = counts(r, pr) ? held : 0;
	}
	qsort(m, n, sizeof(m[0]), cmp_desc);
	uint64_t idx = m[quorum(r) - 1];
	/* Raft §5.4.2: only an entry of the current term commits by count. */
	if (idx > r->commit && raft_term_or_zero(r, idx) == r->term) {
		RAFT_ASSERT(idx <= r->last_index);
		r->commit = idx;
	}
}

/* raft.h, "Voters": (a) this incarnation granted our unanimous election and
 * holds our log up to this term's first entry; (b) it holds our commit
 * index, which is of our term (so above every entry committed before) and
 * was counted by voters after we first heard of it (so our term was still
 * current after its store was made: no newer leader had committed anything
 * it may have held before). */
static bool can_vouch(const struct raft *r, const struct progress *pr)
{
	if (counts(r, pr) || pr->id == r->cfg.self || pr->incarnation == 0)
		return false;
	if (pr->genesis && pr->match >= r->term_start)
		return true;
	return r->commit >= r->term_start && r->commit > pr->first_seen_last &&
	       pr->match >= r->commit;
}

static void raft_maybe_commit(struct raft *r)
{
	commit_by_count(r);
	if (r->role != RAFT_LEADER)
		return;
	bool vouched = false;
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (can_vouch(r, pr)) {
			pr->voter = true;
			r->promotions++;
			vouched = true;
		}
	}
	/* A new voter can only raise the count; vouching again needs a
	 * higher match, which a later answer brings. */
	if (vouched)
		commit_by_count(r);
}

/* A member caught up but not yet vouched for, because nothing was
 * committed since we first heard of it (an idle group): append a no-op,
 * whose commit by the voters vouches for it (raft.h, "Voters", (b)). */
static void raft_maybe_certify(struct raft *r, const struct progress *pr)
{
	if (counts(r, pr) || pr->incarnation == 0 || r->transferee != 0 || r->u->n_entries != 0)
		return;
	if (pr->match < r->last_index || r->last_index > pr->first_seen_last)
		return;
	raft_append_noop(r);
}

static void maybe_send_timeout_now(struct raft *r, struct progress *pr)
{
	if (r->transferee == pr->id && pr->match == r->last_index)
		raft_send_timeout_now(r, pr->id);
}

/* Largest index <= index whose term is <= term (etcd findConflictByTerm),
 * never below `floor`. */
static uint64_t raft_find_by_term(struct raft *r, uint64_t index, uint64_t term, uint64_t floor)
{
	if (index > r->last_index)
		index = r->last_index;
	while (index > floor) {
		uint64_t t;
		if (!raft_term_at(r, index, &t))
			break;
		if (t <= term)
			break;
		index--;
	}
	return index;
}

/* Replicate state, a reject that shows a gap (the member's log ends before
 * the rejected append's prev), not a conflict: an earlier append was lost
 * or overtaken. Resend from the member's end once, then ignore further gap
 * rejects until the hole is filled; rewinding on each of them would send a
 * window per reject and, with reordering, grow traffic without bound. */
static void handle_gap(struct raft *r, struct progress *pr, uint64_t member_last)
{
	if (pr->hole != 0)
		return;
	uint64_t next = member_last + 1;
	if (next <= pr->match)
		next = pr->match + 1;
	if (next > r->last_index + 1 || next >= pr->next)
		return;
	raft_inflight_reset(pr);
	pr->next = next;
	pr->hole = next;
	raft_send_append_all(r, pr);
}

static void raft_handle_append_resp(struct raft *r, const struct raft_message *m)
{
	struct progress *pr = progress_of(r, m->from);
	pr->active = true;
	if (m->append_resp.reject) {
		uint64_t rej = m->append_resp.rejected_index;
		if (rej < pr->match || (pr->state == PR_PROBE && rej != pr->next - 1))
			return; /* stale */
		if (pr->state == PR_PROBE && m->append_resp.last_index < pr->match) {
			/* The answer to our one probe (stale ones were dropped
			 * above): its log ends below what it acknowledged, so it
			 * lost entries (a disk that lied). Repair from its end.
			 * In replicate state a reject may be older than an ack
			 * that overtook it; a real loss stalls replication there
			 * and comes back here as a probe. */
			r->member_resets++;
			raft_progress_restart(r, pr, m->append_resp.last_index);
			send_append(r, pr, true);
			return;
		}
		if (pr->state == PR_REPLICATE && m->append_resp.last_index < rej) {
			handle_gap(r, pr, m->append_resp.last_index);
			return;
		}
		uint64_t next = raft_find_by_term(r, m->append_resp.hint_index, m->append_resp.hint_term,
					     pr->match) + 1;
		if (next > rej)
			next = rej; /* always move back at least one */
		if (next <= pr->match)
			next = pr->match + 1;
		pr->next = next;
		pr->state = PR_PROBE;
		pr->probe_sent = false;
		raft_inflight_reset(pr);
		send_append(r, pr, true);
		return;
	}
	uint64_t match = m->append_resp.match_index;
	uint64_t last = m->append_resp.last_index;
	if (match > r->last_index || last > r->last_index) {
		r->ignored_msgs++;
		return;
	}
	if (match > pr->match) {
		pr->match = match;
		pr->stall_ticks = 0;
		raft_maybe_commit(r);
	}
	raft_maybe_certify(r, pr);
	if (pr->state == PR_PROBE) {
		if (last + 1 >= pr->next || match + 1 >= pr->next) {
			pr->state = PR_REPLICATE;
			pr->probe_sent = false;
			raft_inflight_reset(pr);
			pr->next = (last > match ? last : match) + 1;
		}
	} else {
		raft_inflight_free_to(r, pr, last);
		if (pr->next <= last)
			pr->next = last + 1;
		if (pr->hole != 0 && last >= pr->hole)
			pr->hole = 0;
	}
	maybe_send_timeout_now(r, pr);
	raft_send_append_all(r, pr);
}

static void raft_handle_heartbeat_resp(struct raft *r, const struct raft_message *m)
{
	struct progress *pr = progress_of(r, m->from);
	pr->active = true;
	pr->want_lead = m->heartbeat_resp.want_lead;
	uint64_t match = m->heartbeat_resp.match_index;
	if (match <= r->last_index && match > pr->match) {
		pr->match = match;
		raft_maybe_commit(r);
	}
	raft_maybe_certify(r, pr);
	if (pr->state == PR_PROBE) {
		pr->probe_sent = false;
		send_append(r, pr, true);
	} else if (pr->infl_count == 0 && pr->match < r->last_index) {
		raft_send_append_all(r, pr);
	}
	maybe_send_timeout_now(r, pr);
}

/* ---- follower handling -------------------------------------------------- */

static void send_append_ack(struct raft *r, raft_id to)
{
	struct raft_message *m = raft_msg_new(r, RAFT_MSG_APPEND_RESP, to);
	if (m == NULL)
		return;
	uint64_t match = r->durable < r->leader_match ? r->durable : r->leader_match;
	m->append_resp.match_index = match;
	m->append_resp.last_index = r->leader_match;
	r->acked_match = match;
}

static void send_append_reject(struct raft *r, const struct raft_message *m)
{
	struct raft_message *out = raft_msg_new(r, RAFT_MSG_APPEND_RESP, m->from);
	if (out == NULL)
		return;
	uint64_t prev = m->append.prev_index;
	out->append_resp.reject = true;
	out->append_resp.rejected_index = prev;
	out->append_resp.last_index = r->last_index;
	uint64_t hint = raft_find_by_term(r, prev, m->append.prev_term, r->commit);
	out->append_resp.hint_index = hint;
	out->append_resp.hint_term = raft_term_or_zero(r, hint);
}

/* The first index at or before our commit where the append's prev entry or
 * its first `n` entries disagree with ours (0: none, or none we can read):
 * raft.h, "Impossible messages". */
static uint64_t committed_conflict(struct raft *r, const struct raft_message *m, uint32_t n)
{
	uint64_t prev = m->append.prev_index, t;
	if (prev > 0 && raft_term_at(r, prev, &t) && t != m->append.prev_term)
		return prev;
	for (uint32_t k = 0; k < n; k++)
		if (raft_term_at(r, prev + 1 + k, &t) && t != m->append.entries[k].term)
			return prev + 1 + k;
	return 0;
}

static bool append_is_well_formed(const struct raft_message *m)
{
	const uint32_t n = m->append.n_entries;
	if (n > 0 && m->append.entries == NULL)
		return false;
	if (m->append.prev_index > UINT64_MAX - n - 1)
		return false;
	uint64_t t = m->append.prev_term;
	if (t > m->term)
		return false;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t et = m->append.entries[i].term;
		if (et < t || et > m->term || et == 0)
			return false;
		t = et;
	}
	return true;
}

static void raft_handle_append(struct raft *r, const struct raft_message *m)
{
	if (!append_is_well_formed(m)) {
		r->ignored_msgs++;
		return;
	}
	uint64_t prev = m->append.prev_index;
	uint32_t n = m->append.n_entries;
	uint32_t i = 0;
	uint64_t t;
	if (prev < r->commit) {
		/* Raft §5.4: our prefix up to commit is in every later leader's
		 * log, so skip what the message holds of it, once it agrees. */
		uint64_t skip = r->commit - prev;
		i = skip >= n ? n : (uint32_t)skip;
		uint64_t bad = committed_conflict(r, m, i);
		if (bad != 0) {
			r->refused_msgs++;
			r->u->conflict_index = bad;
			return;
		}
	} else if (prev > r->last_index || !raft_term_at(r, prev, &t) || t != m->append.prev_term) {
		send_append_reject(r, m);
		return;
	}
	for (; i < n; i++) {
		uint64_t idx = prev + 1 + i;
		if (idx > r->last_index)
			break;
		uint64_t have;
		if (!raft_term_at(r, idx, &have) || have != m->append.entries[i].term) {
			/* DLedger TRUNCATE: drop our divergent suffix. */
			RAFT_ASSERT(idx > r->commit);
			raft_log_truncate(r, idx - 1);
			break;
		}
	}
	if (i < n)
		raft_log_append(r, m->append.entries + i, n - i);
	uint64_t agreed = prev + n > r->commit ? prev + n : r->commit;
	if (agreed > r->leader_match)
		r->leader_match = agreed;
	uint64_t c = m->append.commit < agreed ? m->append.commit : agreed;
	if (c > r->commit)
		r->commit = c;
	/* Ack what is durable now; the rest is acked from RAFT_EV_PERSISTED. */
	if (r->durable >= r->leader_match || r->u->n_entries == 0)
		send_append_ack(r, m->from);
}

static void raft_handle_heartbeat(struct raft *r, const struct raft_message *m)
{
	uint64_t c = m->heartbeat.commit;
	if (c > r->last_index)
		c = r->last_index;
	if (c > r->commit)
		r->commit = c;
	uint64_t match = r->durable < r->leader_match ? r->durable : r->leader_match;
	bool want = r->cfg.preferred_id == r->cfg.self && r->takeover_backoff_ticks == 0;
	if (r->cfg.thin_heartbeat_acks && !r->hb_skipped && match == r->hb_acked_match &&
	    want == r->hb_acked_want) {
		r->hb_skipped = true; /* nothing new: answer the next one */
		return;
	}
	struct raft_message *out = raft_msg_new(r, RAFT_MSG_HEARTBEAT_RESP, m->from);
	if (out == NULL)
		return;
	out->heartbeat_resp.match_index = match;
	out->heartbeat_resp.want_lead = want;
	r->hb_skipped = false;
	r->hb_acked_match = match;
	r->hb_acked_want = want;
}

/* ---- votes -------------------------------------------------------------- */

static void raft_handle_vote_request(struct raft *r, const struct raft_message *m)
{
	bool prevote = m->type == RAFT_MSG_PREVOTE;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
			(prevote && m->term > r->term);
	bool granted = can_vote && raft_log_up_to_date(r, m->vote.last_index, m->vote.last_term);
	if (granted && !prevote) {
		r->vote = m->from;
		raft_reset_election_timer(r);
	}
	struct raft_message *out = raft_msg_new(r, prevote ? RAFT_MSG_PREVOTE_RESP : RAFT_MSG_VOTE_RESP, m->from);
	if (out == NULL)
		return;
	/* A granted pre-vote carries the candidate's future term (etcd). */
	if (prevote && granted)
		out->term = m->term;
	out->vote_resp.granted = granted;
}

static void raft_handle_vote_resp(struct raft *r, const struct raft_message *m)
{
	bool want = (r->role == RAFT_PRECANDIDATE && m->type == RAFT_MSG_PREVOTE_RESP) ||
		    (r->role == RAFT_CANDIDATE && m->type == RAFT_MSG_VOTE_RESP);
	if (!want)
		return;
	struct progress *pr = progress_of(r, m->from);
	if (pr->vote_responded)
		return;
	pr->vote_responded = true;
	pr->vote_granted = m->vote_resp.granted;
	pr->vote_voter = m->voter || r->cfg.fixed_leader != 0;
	tally_votes(r);
}

/* ---- message dispatch ---------------------------------------------------- */

static bool in_lease(const struct raft *r)
{
	return r->cfg.check_quorum && r->leader != 0 && r->election_elapsed < r->cfg.election_ticks;
}

static bool message_is_valid(struct raft *r, const struct raft_message *m)
{
	if (m == NULL || m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_TYPE_MAX)
		return false;
	if (m->to != r->cfg.self || m->from == r->cfg.self || m->from == 0)
		return false;
	return progress_of(r, m->from) != NULL;
}

/* Raft §5.1 term rules, with pre-vote and lease exceptions (etcd).
 * Returns false when the message is done with. */
static bool raft_handle_term(struct raft *r, const struct raft_message *m)
{
	bool is_vote = m->type == RAFT_MSG_VOTE || m->type == RAFT_MSG_PREVOTE;
	if (m->term > r->term && m->term - r->term > RAFT_MAX_TERM_JUMP) {
		r->refused_msgs++; /* raft.h, "Impossible messages" */
		return false;
	}
	if (m->term > r->term) {
		if (is_vote && !m->vote.transfer && in_lease(r)) {
			/* We heard from a leader recently: a member that was
			 * cut off must not disrupt us. */
			return false;
		}
		if (m->type == RAFT_MSG_PREVOTE)
			return true;
		if (m->type == RAFT_MSG_PREVOTE_RESP && m->vote_resp.granted)
			return true;
		if (r->cfg.fixed_leader != 0 && m->from != r->cfg.fixed_leader)
			return false;
		bool from_leader = m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT ||
				   m->type == RAFT_MSG_TIMEOUT_NOW;
		raft_become_follower(r, m->term, from_leader ? m->from : 0);
		return true;
	}
	if (m->term < r->term) {
		if (m->type == RAFT_MSG_APPEND || m->type == RAFT_MSG_HEARTBEAT) {
			/* Tell a stale leader about the newer term. */
			struct raft_message *out = raft_msg_new(
				r, m->type == RAFT_MSG_APPEND ? RAFT_MSG_APPEND_RESP : RAFT_MSG_HEARTBEAT_RESP,
				m->from);
			if (out != NULL && m->type == RAFT_MSG_APPEND) {
				out->append_resp.reject = true;
				out->append_resp.rejected_index = m->append.prev_index;
				out->append_resp.hint_index = r->last_index;
				out->append_resp.hint_term = r->last_term;
			}
		} else if (m->type == RAFT_MSG_PREVOTE) {
			struct raft_message *out = raft_msg_new(r, RAFT_MSG_PREVOTE_RESP, m->from);
			if (out != NULL)
				out->vote_resp.granted = false;
		}
		return false;
	}
	return true;
}

/* Tracks the sender's incarnation. Returns false for a message of an older
 * incarnation than one already heard (from before its store was replaced). */
static bool raft_note_incarnation(struct raft *r, struct progress *pr, const struct raft_message *m)
{
	if (m->incarnation < pr->incarnation) {
		r->ignored_msgs++;
		return false;
	}
	if (m->incarnation > pr->incarnation || !pr->heard) {
		bool replaced = pr->heard;
		pr->heard = true;
		pr->incarnation = m->incarnation;
		pr->first_seen_last = r->last_index;
		pr->genesis = false;
		if (replaced) {
			pr->voter = false;
			if (r->role == RAFT_LEADER) {
				r->member_resets++;
				raft_progress_restart(r, pr, 0);
			}
		}
	}
	if (m->voter)
		pr->voter = true;
	return true;
}

/* Follower: the leader vouches for this incarnation (raft.h, "Voters"). */
static void raft_note_vouched(struct raft *r, const struct raft_message *m)
{
	if (!r->voter && m->peer_voter_inc != 0 && m->peer_voter_inc == r->incarnation)
		r->voter = true;
}

static void handle_message(struct raft *r, const struct raft_message *m)
{
	if (!message_is_valid(r, m)) {
		r->ignored_msgs++;
		return;
	}
	if (!raft_note_incarnation(r, progress_of(r, m->from), m))
		return;
	if (!raft_handle_term(r, m))
		return;
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		raft_handle_vote_request(r, m);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		raft_handle_vote_resp(r, m);
		break;
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
		if (r->role == RAFT_LEADER) {
			/* Two leaders in one term cannot be: drop it. */
			r->ignored_msgs++;
			return;
		}
		if (r->role == RAFT_FOLLOWER && r->leader != 0 && r->leader != m->from) {
			/* A second leader of our term: raft.h, "Impossible
			 * messages". */
			r->refused_msgs++;
			return;
		}
		if (r->role != RAFT_FOLLOWER || r->leader != m->from)
			raft_become_follower(r, m->term, m->from);
		r->election_elapsed = 0;
		raft_note_vouched(r, m);
		if (m->type == RAFT_MSG_APPEND)
			raft_handle_append(r, m);
		else
			raft_handle_heartbeat(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_heartbeat_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		if (r->role == RAFT_FOLLOWER && r->leader == m->from && r->cfg.fixed_leader == 0) {
			raft_become_candidate(r, true);
			r->takeover = r->role == RAFT_CANDIDATE;
		}
		break;
	}
}

/* ---- other events --------------------------------------------------------- */

static void abort_transfer(struct raft *r)
{
	if (r->transferee == r->cfg.preferred_id && r->transferee != 0) {
		/* Back off, doubling up to 16 election timeouts, so a preferred
		 * member that cannot win does not keep the group busy. */
		if (r->preferred_failures < 4)
			r->preferred_failures++;
		r->preferred_backoff_ticks = r->cfg.election_ticks << r->preferred_failures;
	}
	r->transferee = 0;
}

static void raft_start_transfer(struct raft *r, raft_id target)
{
	struct progress *pr = progress_of(r, target);
	if (pr == NULL || target == r->cfg.self || r->transferee == target)
		return;
	r->transferee = target;
	r->transfer_elapsed = 0;
	if (pr->match == r->last_index)
		raft_send_timeout_now(r, target);
	else
		raft_send_append_all(r, pr);
}

static void maybe_transfer_to_preferred(struct raft *r)
{
	raft_id p = r->cfg.preferred_id;
	if (p == 0 || p == r->cfg.self || r->transferee != 0 || r->preferred_backoff_ticks > 0)
		return;
	struct progress *pr = progress_of(r, p);
	if (pr == NULL || !pr->active || !pr->want_lead || pr->state != PR_REPLICATE ||
	    !counts(r, pr))
		return;
	/* Close enough: the transfer pauses proposals and tops it up. */
	if (r->last_index - pr->match <= r->cfg.max_append_entries)
		raft_start_transfer(r, p);
}

static void tick_leader(struct raft *r)
{
	if (r->preferred_backoff_ticks > 0)
		r->preferred_backoff_ticks--;
	if (r->transferee != 0 && ++r->transfer_elapsed >= r->cfg.election_ticks)
		abort_transfer(r);
	if (++r->election_elapsed >= r->cfg.election_ticks) {
		r->election_elapsed = 0;
		uint32_t active = 0;
		for (uint32_t i = 0; i < r->cfg.n_members; i++) {
			struct progress *pr = &r->prs[i];
			/* A member that does not count towards commit does not
			 * keep a leader in office either, but for one that
			 * granted our unanimous election and is catching up. */
			if (pr->id == r->cfg.self || (pr->active && (counts(r, pr) || pr->genesis)))
				active++;
			pr->active = false;
		}
		if (r->cfg.check_quorum && active < quorum(r)) {
			/* Check-quorum: we may be cut off; stop claiming. */
			raft_become_follower(r, r->term, 0);
			return;
		}
	}
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self || pr->state != PR_REPLICATE || pr->infl_count == 0)
			continue;
		/* Replicate: no answer for an election timeout; a message was
		 * lost. Probe again from what the member acknowledged. */
		if (++pr->stall_ticks >= r->cfg.election_ticks) {
			pr->state = PR_PROBE;
			pr->probe_sent = false;
			pr->next = pr->match + 1;
			raft_inflight_reset(pr);
		}
	}
	bool beat;
	if (r->now_ticks != 0) {
		beat = r->now_ticks % r->cfg.heartbeat_ticks == 0;
	} else {
		beat = ++r->heartbeat_elapsed >= r->cfg.heartbeat_ticks;
	}
	if (beat) {
		r->heartbeat_elapsed = 0;
		raft_bcast_heartbeat(r);
		maybe_transfer_to_preferred(r);
	}
}

static void raft_tick(struct raft *r)
{
	if (r->takeover_backoff_ticks > 0)
		r->takeover_backoff_ticks--;
	if (r->role == RAFT_LEADER) {
		tick_leader(r);
		return;
	}
	if (r->cfg.fixed_leader != 0)
		return;
	if (++r->election_elapsed < r->randomized_timeout)
		return;
	if (r->role != RAFT_CANDIDATE) {
		campaign(r);
		return;
	}
	/* A candidate that has not won within its timeout steps back
	 * and waits a fresh randomized timeout before asking again, so a
	 * member that cannot win never stays a candidate (DLedger #85, #247)
	 * and leaves the others room to elect. */
	raft_become_follower(r, r->term, 0);
}

static void raft_propose(struct raft *r, struct raft_entry *entries, uint32_t n, struct raft_update *u)
{
	if (r->role != RAFT_LEADER) {
		u->propose_rc = RAFT_ENOTLEADER;
		return;
	}
	if (r->transferee != 0) {
		u->propose_rc = RAFT_EBUSY;
		return;
	}
	if (n == 0 || entries == NULL) {
		u->propose_rc = RAFT_EINVAL;
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		entries[i].term = r->term;
	u->propose_rc = RAFT_OK;
	u->propose_index = r->last_index + 1;
	u->propose_term = r->term;
	raft_log_append(r, entries, n);
	bcast_append(r);
}

static void raft_persisted(struct raft *r, uint64_t index, uint64_t term)
{
	uint64_t t;
	if (index <= r->durable || index > r->last_index || !raft_term_at(r, index, &t) || t != term)
		return; /* stale report from before a truncation, or a repeat */
	r->durable = index;
	if (r->role == RAFT_LEADER) {
		raft_maybe_commit(r);
	} else if (r->role == RAFT_FOLLOWER && r->leader != 0) {
		uint64_t match = r->durable < r->leader_match ? r->durable : r->leader_match;
		if (match > r->acked_match)
			send_append_ack(r, r->leader);
	}
}

static void fixed_boot(struct raft *r)
{
	r->fixed_boot_pending = false;
	if (r->cfg.fixed_leader != r->cfg.self) {
		r->leader = r->cfg.fixed_leader;
		return;
	}
	/* A restarted fixed leader takes a new term so that entries it lost
	 * in the crash cannot clash with what it sends now. */
	r->term = (r->term > r->last_term ? r->term : r->last_term) + 1;
	r->vote = r->cfg.self;
	raft_become_leader(r, false);
}

/* ---- public API ------------------------------------------------------------ */

void raft_config_defaults(struct raft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->election_ticks = 10;
	cfg->heartbeat_ticks = 2;
	cfg->prevote = true;
	cfg->check_quorum = true;
	cfg->max_append_entries = 1024;
	cfg->max_append_bytes = 1024 * 1024;
	cfg->max_inflight_msgs = 64;
	cfg->max_inflight_bytes = 32ull * 1024 * 1024;
	cfg->max_outbox = 256;
}

static bool config_is_valid(const struct raft_config *cfg)
{
	if (cfg->self == 0 || cfg->n_members == 0 || cfg->n_members > RAFT_MAX_MEMBERS)
		return false;
	bool self_found = false;
	for (uint32_t i = 0; i < cfg->n_members; i++) {
		if (cfg->members[i] == 0)
			return false;
		if (cfg->members[i] == cfg->self)
			self_found = true;
		for (uint32_t j = 0; j < i; j++)
			if (cfg->members[i] == cfg->members[j])
				return false;
	}
	if (!self_found)
		return false;
	if (cfg->election_ticks < 2 || cfg->heartbeat_ticks == 0 ||
	    cfg->heartbeat_ticks >= cfg->election_ticks)
		return false;
	if (cfg->thin_heartbeat_acks && cfg->election_ticks < 3 * cfg->heartbeat_ticks)
		return false;
	if (cfg->max_append_entries == 0 || cfg->max_append_bytes == 0 ||
	    cfg->max_inflight_msgs == 0 || cfg->max_inflight_bytes == 0 ||
	    cfg->max_outbox < 2 * cfg->n_members)
		return false;
	if (cfg->preferred_id != 0) {
		bool ok = false;
		for (uint32_t i = 0; i < cfg->n_members; i++)
			ok = ok || cfg->members[i] == cfg->preferred_id;
		if (!ok)
			return false;
	}
	if (cfg->fixed_leader != 0) {
		bool ok = false;
		for (uint32_t i = 0; i < cfg->n_members; i++)
			ok = ok || cfg->members[i] == cfg->fixed_leader;
		if (!ok)
			return false;
	}
	return true;
}

static bool boot_is_valid(const struct raft_boot *b)
{
	if (b->first_index == 0 || b->first_index > b->last_index + 1)
		return false;
	if (b->commit > b->last_index)
		return false;
	if ((b->last_index == 0) != (b->last_term == 0))
		return false;
	return true;
}

int raft_new(const struct raft_config *cfg, const struct raft_log_ops *ops, void *ctx,
	     const struct raft_boot *boot, struct raft **out)
{
	*out = NULL;
	if (cfg == NULL || ops == NULL || ops->term_at == NULL || ops->entry_bytes == NULL ||
	    boot == NULL || !config_is_valid(cfg) || !boot_is_valid(boot))
		return RAFT_EINVAL;
	struct raft *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return RAFT_ENOMEM;
	r->cfg = *cfg;
	r->ops = ops;
	r->ctx = ctx;
	/* malloc, not calloc: raft_msg_new() clears each message it hands out and
	 * in-flight records are written before they are read, so pages a
	 * member never uses (an idle follower's outbox) stay untouched, not
	 * resident. */
	r->out = malloc(cfg->max_outbox * sizeof(*r->out));
	if (r->out == NULL)
		goto err_free;
	for (uint32_t i = 0; i < cfg->n_members; i++) {
		r->prs[i].id = cfg->members[i];
		if (cfg->members[i] == cfg->self) {
			r->self_slot = i;
			continue;
		}
		r->prs[i].infl = malloc(cfg->max_inflight_msgs * sizeof(struct inflight));
		if (r->prs[i].infl == NULL)
			goto err_free;
	}
	r->rng = cfg->seed ^ ((uint64_t)cfg->self << 32);
	r->term = r->confirmed_term = r->reported_term = boot->term;
	r->vote = r->confirmed_vote = r->reported_vote = boot->vote;
	r->incarnation = boot->incarnation;
	r->voter = r->reported_voter = boot->voter;
	r->prs[r->self_slot].incarnation = boot->incarnation;
	r->first_index = boot->first_index;
	r->last_index = boot->last_index;
	r->last_term = boot->last_term;
	/* What survived the crash is what storage recovered: durable. */
	r->durable = boot->last_index;
	r->commit = boot->commit;
	if (r->last_term > r->term) {
		/* Entries of a newer term reached the disk before the term did;
		 * no vote of that term was ever released (raft.h), so it is safe
		 * to take the term with no vote. */
		r->term = r->last_term;
		r->vote = 0;
	}
	r->role = RAFT_FOLLOWER;
	raft_reset_election_timer(r);
	r->fixed_boot_pending = cfg->fixed_leader != 0;
	*out = r;
	return RAFT_OK;

err_free:
	raft_free(r);
	return RAFT_ENOMEM;
}

void raft_free(struct raft *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < RAFT_MAX_MEMBERS; i++)
		free(r->prs[i].infl);
	free(r->out);
	free(r);
}

void raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *u)
{
	memset(u, 0, sizeof(*u));
	if (r->out_released) {
		r->n_out = 0;
		r->out_released = false;
	}
	r->u = u;
	uint8_t role0 = r->role;
	raft_id leader0 = r->leader;
	uint64_t commit0 = r->commit;
	uint64_t term0 = r->term;

	bool booted = false;
	if (r->fixed_boot_pending) {
		fixed_boot(r);
		booted = r->role == RAFT_LEADER;
	}

	switch (booted && ev->type == RAFT_EV_PROPOSE ? 0 : ev->type) {
	case 0: /* the boot appended a no-op in this step: retry the proposal */
		u->propose_rc = RAFT_EBUSY;
		break;
	case RAFT_EV_TICK:
		r->now_ticks = ev->tick.now;
		raft_tick(r);
		break;
	case RAFT_EV_MESSAGE:
		handle_message(r, ev->msg);
		break;
	case RAFT_EV_PROPOSE:
		raft_propose(r, ev->propose.entries, ev->propose.n, u);
		break;
	case RAFT_EV_PERSISTED:
		raft_persisted(r, ev->persisted.index, ev->persisted.term);
		break;
	case RAFT_EV_STATE_PERSISTED:
		if (ev->state.term == r->term && ev->state.vote == r->vote) {
			r->confirmed_term = r->term;
			r->confirmed_vote = r->vote;
		}
		break;
	case RAFT_EV_TRANSFER:
		if (r->role == RAFT_LEADER)
			raft_start_transfer(r, ev->target);
		break;
	default:
		r->ignored_msgs++;
		break;
	}

	/* Post-conditions: terms never go down; commit never passes the log
	 * and never moves back. */
	RAFT_ASSERT(r->term >= term0);
	RAFT_ASSERT(r->commit >= commit0);
	RAFT_ASSERT(r->commit <= r->last_index);

	if (r->term != r->reported_term || r->vote != r->reported_vote ||
	    r->voter != r->reported_voter) {
		u->hard_state_changed = true;
		r->reported_term = r->term;
		r->reported_vote = r->vote;
		r->reported_voter = r->voter;
	}
	u->term = r->term;
	u->vote = r->vote;
	u->voter = r->voter;
	if (r->term == r->confirmed_term && r->vote == r->confirmed_vote) {
		u->msgs = r->out;
		u->n_msgs = r->n_out;
		r->out_released = true;
	}
	u->commit_changed = r->commit != commit0;
	u->commit_index = r->commit;
	u->role = r->role;
	u->leader_id = r->leader;
	u->role_changed = r->role != role0;
	u->leader_changed = r->leader != leader0;
	r->u = NULL;
}

void raft_get_status(const struct raft *r, struct raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->self = r->cfg.self;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->leader_id = r->leader;
	st->first_index = r->first_index;
	st->last_index = r->last_index;
	st->last_term = r->last_term;
	st->commit_index = r->commit;
	st->durable_index = r->durable;
	st->incarnation = r->incarnation;
	st->voter = r->voter;
	st->transferee = r->transferee;
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		const struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self)
			continue;
		struct raft_peer_status *ps = &st->peers[st->n_peers++];
		ps->id = pr->id;
		ps->match_index = pr->match;
		ps->next_index = pr->next;
		ps->replicating = pr->state == PR_REPLICATE;
		ps->active = pr->active;
		ps->voter = counts(r, pr);
		ps->incarnation = pr->incarnation;
	}
	st->elections = r->elections;
	st->leader_changes = r->leader_changes;
	st->dropped_msgs = r->dropped_msgs;
	st->ignored_msgs = r->ignored_msgs;
	st->refused_msgs = r->refused_msgs;
	st->member_resets = r->member_resets;
	st->promotions = r->promotions;
}

uint32_t raft_ticks_until_due(const struct raft *r)
{
	uint32_t due;
	if (r->role == RAFT_LEADER && r->now_ticks != 0) {
		due = r->cfg.heartbeat_ticks - (uint32_t)(r->now_ticks % r->cfg.heartbeat_ticks);
	} else if (r->role == RAFT_LEADER) {
		due = r->cfg.heartbeat_ticks - r->heartbeat_elapsed;
	} else if (r->cfg.fixed_leader != 0) {
		due = UINT32_MAX;
	} else {
		due = r->randomized_timeout > r->election_elapsed
			      ? r->randomized_timeout - r->election_elapsed
			      : 1;
	}
	return due == 0 ? 1 : due;
}

const char *raft_role_name(uint8_t role)
{
	switch (role) {
	case RAFT_FOLLOWER: return "follower";
	case RAFT_PRECANDIDATE: return "precandidate";
	case RAFT_CANDIDATE: return "candidate";
	case RAFT_LEADER: return "leader";
	default: return "unknown";
	}
}

const char *raft_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
		[RAFT_MSG_PREVOTE] = "prevote",
		[RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
		[RAFT_MSG_VOTE] = "vote",
		[RAFT_MSG_VOTE_RESP] = "vote_resp",
		[RAFT_MSG_APPEND] = "append",
		[RAFT_MSG_APPEND_RESP] = "append_resp",
		[RAFT_MSG_HEARTBEAT] = "heartbeat",
		[RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
		[RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
	};
	if (type < RAFT_MSG_PREVOTE || type > RAFT_MSG_TYPE_MAX)
		return "unknown";
	return names[type];
}
