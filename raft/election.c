/*
 * election.c - roles and their transitions, votes and pre-votes, the term
 * rules of Raft §5.1, election and leader timers, leadership transfer. See
 * raft_internal.h.
 */
#include "raft/raft_internal.h"

static uint64_t rng_next(struct raft *r)
{
	/* splitmix64 */
	uint64_t z = (r->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

/* Fast bring-up: until it has known a leader since it booted, the
 * preferred member, as a follower, draws its timeouts from [T/4, T/2)
 * instead of [T, 2T), so on a fresh cluster it stands first and leads
 * about T/4..T/2 after the start, with no election of another member and
 * no transfer after it. As a (pre-)candidate it waits the usual [T, 2T)
 * for its answers, which take a round trip and a disk write.
 * Only a timing choice: it campaigns by the same rules (pre-vote first, so
 * one that cannot win, or that a leader's lease protects against, raises
 * no term; hence only with pre-vote and check-quorum on, as the runtime
 * runs); once any leader is known, its timeouts are the usual ones. */
static bool stands_first(const struct raft *r)
{
	return !r->leader_seen && r->role == RAFT_FOLLOWER && r->cfg.preferred_id == r->cfg.self &&
	       r->cfg.fixed_leader == 0 && r->cfg.prevote && r->cfg.check_quorum &&
	       r->cfg.election_ticks >= 4;
}

void raft_reset_election_timer(struct raft *r)
{
	r->election_elapsed = 0;
	uint32_t t = r->cfg.election_ticks;
	if (stands_first(r)) {
		uint32_t lo = t / 4, span = t / 2 - t / 4;
		r->randomized_timeout = lo + (uint32_t)(rng_next(r) % span);
		RAFT_ASSERT(r->randomized_timeout >= 1 && r->randomized_timeout < t);
		return;
	}
	r->randomized_timeout = t + (uint32_t)(rng_next(r) % t);
	RAFT_ASSERT(r->randomized_timeout >= t && r->randomized_timeout < 2 * t);
}

static void set_leader(struct raft *r, raft_id leader)
{
	/* Set after the role: we name ourselves leader exactly when we lead. */
	RAFT_ASSERT((leader == r->cfg.self) == (r->role == RAFT_LEADER));
	if (leader != r->leader && leader != 0)
		r->leader_changes++;
	if (leader != 0)
		r->leader_seen = true;
	r->leader = leader;
}

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

void raft_become_follower(struct raft *r, uint64_t term, raft_id leader)
{
	RAFT_ASSERT(term >= r->term && leader != r->cfg.self);
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
	RAFT_ASSERT(r->term == term && r->role == RAFT_FOLLOWER && r->leader == leader);
}

/* `unanimous`: every member granted the vote, so every member's log is
 * behind ours and ours holds every committed entry; each member is vouched
 * for once it holds our log up to this term's first entry (raft.h,
 * "Voters", (a)). A leader is a voter: elected by voters or by all, its log
 * holds every committed entry. */
void raft_become_leader(struct raft *r, bool unanimous)
{
	/* Raft §5.2: a candidate that won its own vote in this term; or the
	 * fixed leader at boot, in a term of its own (fixed_boot()). */
	RAFT_ASSERT(r->role == RAFT_CANDIDATE || r->cfg.fixed_leader == r->cfg.self);
	RAFT_ASSERT(r->role != RAFT_LEADER && r->vote == r->cfg.self && r->term > r->last_term);
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
		pr->commit_told = 0;
		pr->notice_out = false;
		raft_inflight_reset(pr);
	}
	/* Raft §5.4.2: commit earlier terms through an entry of our own. */
	raft_append_noop(r);
	raft_maybe_commit(r);
	RAFT_ASSERT(r->last_index == r->term_start && r->last_term == r->term);
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

/* Counts answers; wins or gives up as soon as the outcome is certain. A
 * win takes the grants of a majority of voters, or the grants of every
 * member (raft.h, "Voters"). */
static void tally_votes(struct raft *r)
{
	RAFT_ASSERT(r->role == RAFT_PRECANDIDATE || r->role == RAFT_CANDIDATE);
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

void raft_become_candidate(struct raft *r, bool transfer)
{
	RAFT_ASSERT(r->role == RAFT_FOLLOWER || r->role == RAFT_PRECANDIDATE);
	RAFT_ASSERT(r->cfg.fixed_leader == 0 && r->term < UINT64_MAX);
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
	RAFT_ASSERT(r->role == RAFT_FOLLOWER || r->role == RAFT_PRECANDIDATE);
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

void raft_send_timeout_now(struct raft *r, raft_id to)
{
	(void)raft_msg_new(r, RAFT_MSG_TIMEOUT_NOW, to);
}

void raft_handle_vote_request(struct raft *r, const struct raft_message *m)
{
	bool prevote = m->type == RAFT_MSG_PREVOTE;
	bool can_vote = r->vote == m->from || (r->vote == 0 && r->leader == 0) ||
			(prevote && m->term > r->term);
	bool granted = can_vote && raft_log_up_to_date(r, m->vote.last_index, m->vote.last_term);
	/* raft_handle_term() took a vote's term; a pre-vote may be ahead. */
	RAFT_ASSERT(prevote ? m->term >= r->term : m->term == r->term);
	if (granted && !prevote) {
		/* Raft §5.2: one vote per term. A candidate or leader voted for
		 * itself, so only a follower or pre-candidate grants one. */
		RAFT_ASSERT(r->vote == 0 || r->vote == m->from);
		RAFT_ASSERT(r->role == RAFT_FOLLOWER || r->role == RAFT_PRECANDIDATE);
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

void raft_handle_vote_resp(struct raft *r, const struct raft_message *m)
{
	bool want = (r->role == RAFT_PRECANDIDATE && m->type == RAFT_MSG_PREVOTE_RESP) ||
		    (r->role == RAFT_CANDIDATE && m->type == RAFT_MSG_VOTE_RESP);
	if (!want)
		return;
	struct progress *pr = progress_of(r, m->from);
	RAFT_ASSERT(pr != NULL && pr->id != r->cfg.self);
	if (pr->vote_responded)
		return;
	pr->vote_responded = true;
	pr->vote_granted = m->vote_resp.granted;
	pr->vote_voter = m->voter || r->cfg.fixed_leader != 0;
	tally_votes(r);
}

static bool in_lease(const struct raft *r)
{
	return r->cfg.check_quorum && r->leader != 0 && r->election_elapsed < r->cfg.election_ticks;
}

/* Raft §5.1 term rules, with pre-vote and lease exceptions (etcd).
 * Returns false when the message is done with. */
bool raft_handle_term(struct raft *r, const struct raft_message *m)
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
		RAFT_ASSERT(r->term == m->term && r->vote == 0);
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
	RAFT_ASSERT(m->term == r->term);
	return true;
}

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

void raft_start_transfer(struct raft *r, raft_id target)
{
	RAFT_ASSERT(r->role == RAFT_LEADER);
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
	RAFT_ASSERT(r->role == RAFT_LEADER && r->leader == r->cfg.self);
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

void raft_tick(struct raft *r)
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
