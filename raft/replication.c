/*
 * replication.c - appends and heartbeats: the leader sending and reading
 * the answers, the follower taking them; proposals and persistence reports.
 * See raft_internal.h.
 */
#include "raft/raft_internal.h"

static void bcast_append(struct raft *r);

/* Leader: an empty entry of the current term, sent to everyone. */
void raft_append_noop(struct raft *r)
{
	RAFT_ASSERT(r->role == RAFT_LEADER);
	r->noop.term = r->term;
	r->noop.data = NULL;
	r->noop.len = 0;
	r->noop.type = RAFT_ENTRY_NOOP;
	raft_log_append(r, &r->noop, 1);
	bcast_append(r);
}

static void send_append(struct raft *r, struct progress *pr, bool allow_empty)
{
	RAFT_ASSERT(r->role == RAFT_LEADER && pr->id != r->cfg.self);
	RAFT_ASSERT(pr->match < pr->next && pr->next <= r->last_index + 1);
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
	/* The follower takes the commit up to the append's end at least. */
	uint64_t told = r->commit < prev + n ? r->commit : prev + n;
	if (told > pr->commit_told)
		pr->commit_told = told;
	m->append.entries = NULL;
	RAFT_ASSERT(prev + n <= r->last_index && n <= r->cfg.max_append_entries);
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
		RAFT_ASSERT(pr->infl_count <= cap && pr->next <= r->last_index + 1);
	}
}

/* Sends as much as the window allows. */
void raft_send_append_all(struct raft *r, struct progress *pr)
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

/* A heartbeat to one member; it carries the commit index the member may
 * take. Returns false when the outbox is full. */
static bool send_heartbeat(struct raft *r, struct progress *pr)
{
	RAFT_ASSERT(r->role == RAFT_LEADER && pr->id != r->cfg.self);
	struct raft_message *m = raft_msg_new(r, RAFT_MSG_HEARTBEAT, pr->id);
	if (m == NULL)
		return false;
	/* etcd: never tell a member to commit what it may not hold. */
	m->heartbeat.commit = pr->match < r->commit ? pr->match : r->commit;
	m->peer_voter_inc = pr->voter ? pr->incarnation : 0;
	if (m->heartbeat.commit > pr->commit_told)
		pr->commit_told = m->heartbeat.commit;
	RAFT_ASSERT(m->heartbeat.commit <= r->commit && pr->commit_told <= r->commit);
	return true;
}

void raft_bcast_heartbeat(struct raft *r)
{
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self)
			continue;
		/* A notice lost with its answer waits no longer than this. */
		pr->notice_out = false;
		(void)send_heartbeat(r, pr);
	}
}

/* RAFT_EV_NOTIFY (raft.h, "Commit notices"): a heartbeat to each member
 * that holds more of our commit index than it was told, unless a notice
 * to it waits for its answer. Appends sent in the same pass told it
 * already (send_append), so a busy follower gets none. */
void raft_send_commit_notices(struct raft *r)
{
	if (r->role != RAFT_LEADER)
		return;
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self || pr->notice_out)
			continue;
		uint64_t c = pr->match < r->commit ? pr->match : r->commit;
		if (c <= pr->commit_told)
			continue;
		if (send_heartbeat(r, pr))
			pr->notice_out = true;
		RAFT_ASSERT(!pr->notice_out || pr->commit_told == c);
	}
}

static void maybe_send_timeout_now(struct raft *r, struct progress *pr)
{
	if (r->transferee == pr->id && pr->match == r->last_index)
		raft_send_timeout_now(r, pr->id);
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
	RAFT_ASSERT(pr->match < pr->next && pr->next <= r->last_index + 1);
	raft_send_append_all(r, pr);
}

void raft_handle_append_resp(struct raft *r, const struct raft_message *m)
{
	struct progress *pr = progress_of(r, m->from);
	RAFT_ASSERT(r->role == RAFT_LEADER && pr != NULL && pr->id != r->cfg.self);
	pr->active = true;
	pr->notice_out = false;
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
		RAFT_ASSERT(pr->match < next && next <= r->last_index + 1);
		pr->next = next;
		pr->state = PR_PROBE;
		pr->probe_sent = false;
		raft_inflight_reset(pr);
		send_append(r, pr, true);
		return;
	}
	uint64_t match = m->append_resp.match_index;
	uint64_t last = m->append_resp.last_index;
	/* A member acknowledges at most what it agreed to (raft.h). */
	if (match > r->last_index || last > r->last_index || match > last) {
		r->ignored_msgs++;
		return;
	}
	if (raft_progress_update(pr, match)) {
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
	RAFT_ASSERT(pr->match < pr->next && pr->next <= r->last_index + 1);
	maybe_send_timeout_now(r, pr);
	raft_send_append_all(r, pr);
}

void raft_handle_heartbeat_resp(struct raft *r, const struct raft_message *m)
{
	struct progress *pr = progress_of(r, m->from);
	RAFT_ASSERT(r->role == RAFT_LEADER && pr != NULL && pr->id != r->cfg.self);
	pr->active = true;
	pr->notice_out = false;
	pr->want_lead = m->heartbeat_resp.want_lead;
	uint64_t match = m->heartbeat_resp.match_index;
	if (match <= r->last_index && raft_progress_update(pr, match))
		raft_maybe_commit(r);
	raft_maybe_certify(r, pr);
	if (pr->state == PR_PROBE) {
		pr->probe_sent = false;
		send_append(r, pr, true);
	} else if (pr->infl_count == 0 && pr->match < r->last_index) {
		raft_send_append_all(r, pr);
	}
	maybe_send_timeout_now(r, pr);
}

static void send_append_ack(struct raft *r, raft_id to)
{
	struct raft_message *m = raft_msg_new(r, RAFT_MSG_APPEND_RESP, to);
	if (m == NULL)
		return;
	uint64_t match = r->durable < r->leader_match ? r->durable : r->leader_match;
	/* A follower acknowledges only what is durable (raft.h). */
	RAFT_ASSERT(r->role == RAFT_FOLLOWER && match <= r->durable && r->durable <= r->last_index);
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

void raft_handle_append(struct raft *r, const struct raft_message *m)
{
	RAFT_ASSERT(r->role == RAFT_FOLLOWER && r->leader == m->from && r->term == m->term);
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
	/* Log Matching: our log now holds the append's range as sent. */
	RAFT_ASSERT(r->last_index >= prev + n && r->last_index >= r->commit);
	uint64_t agreed = prev + n > r->commit ? prev + n : r->commit;
	if (agreed > r->leader_match)
		r->leader_match = agreed;
	uint64_t c = m->append.commit < agreed ? m->append.commit : agreed;
	if (c > r->commit)
		r->commit = c;
	RAFT_ASSERT(r->commit <= agreed && agreed <= r->last_index);
	/* Ack what is durable now; the rest is acked from RAFT_EV_PERSISTED. */
	if (r->durable >= r->leader_match || r->u->n_entries == 0)
		send_append_ack(r, m->from);
}

void raft_handle_heartbeat(struct raft *r, const struct raft_message *m)
{
	RAFT_ASSERT(r->role == RAFT_FOLLOWER && r->leader == m->from && r->term == m->term);
	uint64_t c = m->heartbeat.commit;
	if (c > r->last_index)
		c = r->last_index;
	if (c > r->commit)
		r->commit = c;
	RAFT_ASSERT(r->commit <= r->last_index);
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

void raft_propose(struct raft *r, struct raft_entry *entries, uint32_t n, struct raft_update *u)
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
	RAFT_ASSERT(r->last_index - n + 1 == u->propose_index && r->last_term == r->term);
	bcast_append(r);
}

void raft_persisted(struct raft *r, uint64_t index, uint64_t term)
{
	uint64_t t;
	if (index <= r->durable || index > r->last_index || !raft_term_at(r, index, &t) || t != term)
		return; /* stale report from before a truncation, or a repeat */
	RAFT_ASSERT(index > r->durable && index <= r->last_index);
	r->durable = index;
	if (r->role == RAFT_LEADER) {
		raft_maybe_commit(r);
	} else if (r->role == RAFT_FOLLOWER && r->leader != 0) {
		uint64_t match = r->durable < r->leader_match ? r->durable : r->leader_match;
		if (match > r->acked_match)
			send_append_ack(r, r->leader);
	}
}
