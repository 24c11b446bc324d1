/*
 * log.c - the log as the core sees it: the caller's store (through raft_log_ops)
 * and the entries of the update being built; appends and truncations go
 * out through the update. See raft_internal.h.
 */
#include "raft/raft_internal.h"

/* Term at `index`, seeing entries of the update being built too. */
bool raft_term_at(struct raft *r, uint64_t index, uint64_t *term)
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

uint64_t raft_term_or_zero(struct raft *r, uint64_t index)
{
	uint64_t t = 0;
	return raft_term_at(r, index, &t) ? t : 0;
}

uint32_t raft_entry_bytes(struct raft *r, uint64_t index)
{
	struct raft_update *u = r->u;
	if (u != NULL && u->n_entries > 0 && index >= u->first_index &&
	    index < u->first_index + u->n_entries)
		return u->entries[index - u->first_index].len;
	return r->ops->entry_bytes(r->ctx, index);
}

/* Append entries to the log through the update (the caller stores them). */
void raft_log_append(struct raft *r, const struct raft_entry *entries, uint32_t n)
{
	struct raft_update *u = r->u;
	RAFT_ASSERT(u->n_entries == 0);
	RAFT_ASSERT(n > 0 && r->last_index <= UINT64_MAX - n);
	/* Entries come from a leader of our term: terms rise through the
	 * batch and none is above ours (raft.h, "Impossible messages"). */
	RAFT_ASSERT(entries[0].term > 0 && entries[0].term <= entries[n - 1].term);
	RAFT_ASSERT(entries[n - 1].term <= r->term);
	u->first_index = r->last_index + 1;
	u->entries = entries;
	u->n_entries = n;
	r->last_index += n;
	r->last_term = entries[n - 1].term;
	/* Contiguity: the batch follows the truncation point, if any. */
	RAFT_ASSERT(!u->truncate || u->first_index == u->truncate_after + 1);
	RAFT_ASSERT(r->last_index == u->first_index + n - 1 && r->last_index > r->commit);
}

void raft_log_truncate(struct raft *r, uint64_t after)
{
	struct raft_update *u = r->u;
	/* Raft §5.3: only uncommitted entries may be removed. */
	RAFT_ASSERT(after >= r->commit);
	RAFT_ASSERT(after < r->last_index);
	RAFT_ASSERT(u->n_entries == 0 && !u->truncate);
	/* A leader's log only grows in its term (Raft §5.3, Leader
	 * Append-Only). */
	RAFT_ASSERT(r->role != RAFT_LEADER);
	u->truncate = true;
	u->truncate_after = after;
	r->last_index = after;
	r->last_term = raft_term_or_zero(r, after);
	if (r->durable > after)
		r->durable = after;
	RAFT_ASSERT(r->durable <= r->last_index && r->commit <= r->last_index);
}

bool raft_log_up_to_date(struct raft *r, uint64_t last_index, uint64_t last_term)
{
	/* Raft §5.4.1: compare last terms, then last indexes. */
	return last_term > r->last_term || (last_term == r->last_term && last_index >= r->last_index);
}

/* Largest index <= index whose term is <= term (etcd findConflictByTerm),
 * never below `floor`. */
uint64_t raft_find_by_term(struct raft *r, uint64_t index, uint64_t term, uint64_t floor)
{
	if (index > r->last_index)
		index = r->last_index;
	const uint64_t start = index;
	while (index > floor) {
		uint64_t t;
		if (!raft_term_at(r, index, &t))
			break;
		if (t <= term)
			break;
		index--;
	}
	RAFT_ASSERT(index <= start && index <= r->last_index);
	return index;
}
