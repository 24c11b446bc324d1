/*
 * local.c - local requests (the embedding API, include/dledger/dledger.h):
 * proposals and reads made by the node's own process. They arrive in the
 * member's mailbox like a client's frame (rt_node_propose, rt_node_read in
 * node.c) but never touch the network; a proposal joins the pass's batch
 * with the clients' appends and is bounded by the same limits
 * (max_pending_appends, max_pending_bytes).
 * See rt_internal.h for who owns what: a popped rt_local belongs to the
 * actor thread, which answers it exactly once and frees it.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>

/* Answers a request the actor will not carry out, and frees it. */
void rt_local_drop(struct rt_actor *a, struct rt_local *l, int code, const char *why)
{
	DL_ASSERT(code != 0);
	DL_ASSERT(l->mail.kind == MAIL_PROPOSE || l->mail.kind == MAIL_READ);
	if (l->mail.kind == MAIL_PROPOSE)
		rt_local_answer(a, l, code, 0, 0, why);
	else
		l->read_cb(l->arg, code, l->index, NULL);
	free(l);
}

/* Room for one more pending record: 0, or the code and why, as for a
 * client's append (requests.c: rt_admit_append). */
static int local_admit(struct rt_actor *a, const struct rt_local *l, const char **why)
{
	if (a->pend_count >= a->cfg.max_pending_appends) {
		*why = "too many appends waiting for commit";
		return DL_EBUSY;
	}
	/* One append alone is always taken (as a client's, requests.c). */
	if (a->pend_bytes > 0 && a->pend_bytes + l->bytes > a->cfg.max_pending_bytes) {
		*why = "too many bytes of appends waiting for commit";
		return DL_EBUSY;
	}
	if (!rt_pend_reserve(a)) {
		*why = NULL;
		return DL_ENOMEM;
	}
	DL_ASSERT(a->pend_count < a->pend_cap);
	return 0;
}

void rt_on_local_propose(struct rt_actor *a, struct rt_local *l)
{
	DL_ASSERT(l->mail.kind == MAIL_PROPOSE && l->n >= 1 && l->n <= RT_MAX_LOCAL_ENTRIES);
	if (a->failed) {
		char why[128];
		snprintf(why, sizeof(why), "member stopped (%s)", a->fail_reason);
		rt_local_drop(a, l, DL_ENOTLEADER, why);
		return;
	}
	if (a->role != RAFT_LEADER) {
		rt_local_drop(a, l, DL_ENOTLEADER, NULL);
		return;
	}
	for (uint32_t i = 0; i < l->n; i++) {
		if (l->ents[i].len > a->cfg.store.max_entry_bytes) {
			rt_local_drop(a, l, DL_ETOOBIG, "entry larger than the limit");
			return;
		}
	}
	const char *why = NULL;
	int rc = local_admit(a, l, &why);
	if (rc != 0) {
		rt_local_drop(a, l, rc, why);
		return;
	}
	if (a->prop_n + l->n > RT_MAX_PROPOSE)
		rt_propose_batch(a);
	if (!rt_entries_reserve(&a->prop, &a->prop_cap, a->prop_n + l->n)) {
		rt_local_drop(a, l, DL_ENOMEM, NULL);
		return;
	}
	DL_ASSERT(a->prop_n + l->n <= RT_MAX_PROPOSE);
	for (uint32_t i = 0; i < l->n; i++)
		a->prop[a->prop_n + i] = l->ents[i]; /* bodies stay in `l`, held below */
	a->prop_n += l->n;
	a->prop_reqs++;
	struct pending *p = rt_pend_at(a, a->pend_count);
	*p = (struct pending){.local = l, .n = l->n, .proposed_ns = dl_now_ns(), .bytes = l->bytes};
	a->pend_count++;
	a->pend_bytes += l->bytes;
	DL_ASSERT(a->prop_reqs <= a->pend_count && a->prop_reqs <= a->prop_n);
}

void rt_on_local_read(struct rt_actor *a, struct rt_local *l)
{
	DL_ASSERT(l->mail.kind == MAIL_READ && l->read_cb != NULL);
	if (l->index > a->commit && l->wait_ms > 0 && a->store != NULL && !a->failed &&
	    !atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		rt_get_wait_local(a, l); /* answered on commit, timeout or stop */
		return;
	}
	rt_local_read_answer(a, l);
}

void rt_local_read_answer(struct rt_actor *a, struct rt_local *l)
{
	DL_ASSERT(l->mail.kind == MAIL_READ && l->read_cb != NULL);
	int code = 0;
	struct sto_view v;
	if (a->store == NULL)
		code = a->fail_code ? a->fail_code : DL_ECLOSED;
	else if (l->index == 0 || l->index > a->commit)
		code = DL_ENOTCOMMITTED;
	else if (l->index < sto_first_index(a->store))
		code = DL_ECOMPACTED;
	else
		code = rt_read_view(a, l->index, &v);
	l->read_cb(l->arg, code, l->index, code == 0 ? &v : NULL);
	free(l);
}
