/*
 * progress.c - the leader's view of each member (etcd's Progress): in-flight
 * window, incarnation and voter flag (raft.h, "Voters"), and the commit
 * count over them. See raft_internal.h.
 */
#include "raft/raft_internal.h"

#include <stdlib.h>

void raft_inflight_reset(struct progress *pr)
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
void raft_progress_restart(struct raft *r, struct progress *pr, uint64_t match)
{
	RAFT_ASSERT(r->role == RAFT_LEADER && pr->id != r->cfg.self);
	RAFT_ASSERT(match <= pr->match);
	pr->match = match;
	pr->next = match + 1;
	pr->state = PR_PROBE;
	pr->probe_sent = false;
	raft_inflight_reset(pr);
	RAFT_ASSERT(pr->next <= r->last_index + 1);
}

/* A member's answer raises its match (etcd's MaybeUpdate); a probe below
 * what it holds moves up with it, so that match < next always, also while
 * the commit that follows sends appends. Returns whether match rose. */
bool raft_progress_update(struct progress *pr, uint64_t match)
{
	if (match <= pr->match)
		return false;
	pr->match = match;
	if (pr->next <= match)
		pr->next = match + 1;
	RAFT_ASSERT(pr->match < pr->next);
	return true;
}

void raft_inflight_free_to(struct raft *r, struct progress *pr, uint64_t index)
{
	uint32_t cap = r->cfg.max_inflight_msgs;
	RAFT_ASSERT(pr->infl_count <= cap);
	while (pr->infl_count > 0) {
		struct inflight *f = &pr->infl[pr->infl_head];
		if (f->last_index > index)
			break;
		pr->infl_bytes -= f->bytes;
		pr->infl_head = (pr->infl_head + 1) % cap;
		pr->infl_count--;
	}
	/* The window's bytes are the sum of its records'. */
	RAFT_ASSERT(pr->infl_count > 0 || pr->infl_bytes == 0);
}

bool raft_inflight_full(const struct raft *r, const struct progress *pr)
{
	return pr->infl_count >= r->cfg.max_inflight_msgs ||
	       pr->infl_bytes >= r->cfg.max_inflight_bytes;
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
	RAFT_ASSERT(r->role == RAFT_LEADER && r->voter);
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
		/* Only we append entries of our term, from term_start on. */
		RAFT_ASSERT(idx <= r->last_index && idx >= r->term_start);
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

void raft_maybe_commit(struct raft *r)
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
void raft_maybe_certify(struct raft *r, const struct progress *pr)
{
	RAFT_ASSERT(r->role == RAFT_LEADER);
	if (counts(r, pr) || pr->incarnation == 0 || r->transferee != 0 || r->u->n_entries != 0)
		return;
	if (pr->match < r->last_index || r->last_index > pr->first_seen_last)
		return;
	raft_append_noop(r);
}

/* Tracks the sender's incarnation. Returns false for a message of an older
 * incarnation than one already heard (from before its store was replaced). */
bool raft_note_incarnation(struct raft *r, struct progress *pr, const struct raft_message *m)
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
	RAFT_ASSERT(pr->heard && pr->incarnation == m->incarnation);
	return true;
}

/* Follower: the leader vouches for this incarnation (raft.h, "Voters"). */
void raft_note_vouched(struct raft *r, const struct raft_message *m)
{
	if (!r->voter && m->peer_voter_inc != 0 && m->peer_voter_inc == r->incarnation)
		r->voter = true;
}
