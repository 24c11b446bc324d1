/*
 * update.c - carrying out a Raft update: the store, the messages to send, the
 * commit and the answers it brings; the pass's proposal; a member that
 * stops on a storage error.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/dl_log.h"

struct enc_raft_ctx {
	struct rt_actor *a;
	const struct raft_message *m;
};

static int enc_raft(void *ctx, struct tp_fb *fb)
{
	struct enc_raft_ctx *c = ctx;
	struct tp_addr ad = {.group = c->a->cfg.group,
			     .target = rt_rid_name(c->a, c->m->to),
			     .sender = c->a->cfg.self_id,
			     .request_id = 0};
	return tp_fb_add_raft(fb, &ad, c->m, rt_read_entry, c->a);
}

/* A message that could not be encoded, most likely because an entry it
 * carries cannot be read here: counted, logged (rate-limited) naming the
 * peer and the entry; a leader that cannot send a damaged entry asks for a
 * hand-off (rt_maybe_hand_off, after the pass). */
static void send_failed(struct rt_actor *a, const struct raft_message *m, int rc)
{
	a->send_failures++;
	a->dirty = true;
	uint64_t first = 0, last = 0, index = 0;
	if (m->type == RAFT_MSG_APPEND && m->append.n_entries > 0) {
		first = m->append.prev_index + 1;
		last = m->append.prev_index + m->append.n_entries;
		if (a->read_err_index >= first && a->read_err_index <= last)
			index = a->read_err_index; /* the read that failed the encoding */
	}
	if (index != 0 && rc == DL_ECORRUPT && a->role == RAFT_LEADER)
		a->handoff_index = index;
	if (!rt_log_due(&a->send_log, index, dl_now_ns()))
		return;
	const char *peer = rt_rid_name(a, m->to);
	char more[80];
	rt_log_skipped(&a->send_log, "failed sends", more, sizeof(more));
	if (index != 0)
		dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
		       "cannot send entries %llu..%llu to %s: entry %llu: %s: %s%s",
		       (unsigned long long)first, (unsigned long long)last, peer,
		       (unsigned long long)index, dl_strerror(rc), a->read_err.msg, more);
	else
		dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id, "cannot send %s to %s: %s%s",
		       tp_type_name(m->type), peer, dl_strerror(rc), more);
}

static void send_raft(struct rt_actor *a, const struct raft_message *m)
{
	if (m->to < 1 || m->to > a->cfg.n_peers || m->to == a->self)
		return;
	struct member *mem = &a->members[m->to - 1];
	DL_ASSERT(mem->peer != NULL); /* every member but self has one */
	struct enc_raft_ctx c = {a, m};
	a->read_err_index = 0;
	int rc = tp_peer_enqueue(mem->peer, enc_raft, &c);
	if (rc != 0 && rc != DL_EBUSY) /* a full queue is counted there (dropped sends) */
		send_failed(a, m, rc);
	mem->touched = true;
	if (m->type != RAFT_MSG_HEARTBEAT && m->type != RAFT_MSG_HEARTBEAT_RESP)
		mem->urgent = true;
}

void rt_flush_peers(struct rt_actor *a)
{
	for (uint32_t i = 0; i < a->cfg.n_peers; i++) {
		if (a->members[i].touched) {
			tp_peer_flush(a->members[i].peer, a->members[i].urgent);
			a->members[i].touched = false;
			a->members[i].urgent = false;
		}
	}
}

static int store_append(struct rt_actor *a, const struct raft_update *u)
{
	struct sto_entry chunk[64];
	struct dl_errctx err = {{0}};
	/* Log contiguity (sto_ops.append): the update's entries follow the
	 * store's last one, the core having truncated first if needed. */
	DL_ASSERT(u->first_index >= 1 && u->n_entries >= 1);
	DL_ASSERT(sto_last_index(a->store) + 1 == u->first_index);
	for (uint32_t i = 0; i < u->n_entries;) {
		uint32_t k = 0;
		for (; k < 64 && i + k < u->n_entries; k++) {
			const struct raft_entry *e = &u->entries[i + k];
			chunk[k] = (struct sto_entry){e->term, e->data, e->len, e->type};
		}
		int rc = sto_append(a->store, u->first_index + i, chunk, k, &err);
		if (rc != 0) {
			rt_actor_fail(a, rc, "store append", err.msg);
			return rc;
		}
		i += k;
		DL_ASSERT(sto_last_index(a->store) == u->first_index + i - 1);
	}
	uint64_t last = u->first_index + u->n_entries - 1, term = 0;
	DL_ASSERT(sto_term_at(a->store, last, &term) && term == u->entries[u->n_entries - 1].term);
	return 0;
}

/* The committed entries not applied yet go to the member's apply callback,
 * in index order, at most RT_APPLY_PER_PASS per call so that a long backlog
 * (a restart from an old applied index) leaves room for mail and ticks; the
 * loop calls again while some are left (actor.c). Without a callback there
 * is nothing to do. `applied` may start above the commit index (the
 * application's own, rt_member_config.applied_index): entries up to it are
 * skipped. */
void rt_apply_committed(struct rt_actor *a)
{
	if (a->cfg.apply == NULL) {
		if (a->applied < a->commit)
			a->applied = a->commit;
		return;
	}
	for (uint32_t k = 0; k < RT_APPLY_PER_PASS && a->applied < a->commit && !a->failed; k++) {
		struct sto_view v;
		uint64_t idx = a->applied + 1;
		int rc = rt_read_view(a, idx, &v);
		if (rc != 0) {
			rt_actor_fail(a, rc, "reading a committed entry", a->read_err.msg);
			return;
		}
		DL_ASSERT(idx <= a->commit);
		a->cfg.apply(a->cfg.apply_arg, a->cfg.group, a->cfg.self_id, idx, &v);
		a->applied = idx; /* exactly once: never delivered again in this run */
	}
}

/* The role callback (the member's, else the node's), on the actor thread. */
void rt_note_role(struct rt_actor *a)
{
	rt_role_fn fn = a->cfg.on_role ? a->cfg.on_role : a->node->cfg.on_role;
	void *arg = a->cfg.on_role ? a->cfg.role_arg : a->node->cfg.role_arg;
	if (fn == NULL)
		return;
	uint64_t term = 0;
	if (a->raft != NULL) {
		struct raft_status st;
		raft_get_status(a->raft, &st);
		term = st.term;
	}
	fn(arg, a->cfg.group, a->cfg.self_id, a->role, term, a->leader ? rt_rid_name(a, a->leader) : "");
}

static void note_changes(struct rt_actor *a, const struct raft_update *u)
{
	if (u->role_changed || u->leader_changed) {
		struct raft_status st;
		raft_get_status(a->raft, &st);
		if (u->role_changed)
			dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "role %s term %llu",
			       raft_role_name(u->role), (unsigned long long)st.term);
		if (u->leader_changed)
			dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "leader %s term %llu",
			       u->leader_id ? rt_rid_name(a, u->leader_id) : "(none)",
			       (unsigned long long)st.term);
		a->last_publish_ns = 0; /* publish now */
	}
	DL_ASSERT(u->leader_id <= a->cfg.n_peers);
	DL_ASSERT(u->role != RAFT_LEADER || u->leader_id == a->self);
	a->role = u->role;
	a->leader = u->leader_id;
	if (u->role_changed || u->leader_changed)
		rt_note_role(a);
}

/* The leader's append disagrees with our committed entry at `index`
 * (raft/raft.h, "Impossible messages"): two members hold different entries
 * as committed, so a forged message got in (only TLS keeps non-members from
 * speaking as members) or a disk lied. Which copy is the group's cannot be
 * told from here, so nothing is cut: the append is refused, and this is
 * counted and logged for the operator (docs/OPERATIONS.md, "When data is
 * damaged"). */
static void on_commit_conflict(struct rt_actor *a, uint64_t index)
{
	a->commit_conflicts++;
	a->dirty = true;
	if (!rt_log_due(&a->conflict_log, index, dl_now_ns()))
		return;
	char more[80];
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
	       "an append of leader %s disagrees with committed entry %llu here: two members hold "
	       "different committed entries (a forged message got in, or a disk lied); refused%s",
	       rt_rid_name(a, a->leader), (unsigned long long)index,
	       rt_log_skipped(&a->conflict_log, "such appends", more, sizeof(more)));
}

/* raft.h's order: hard state, truncate, append, send, apply. */
static void carry_out(struct rt_actor *a, const struct raft_update *u)
{
	if (u->hard_state_changed || u->truncate || u->n_entries || u->commit_changed ||
	    u->role_changed || u->leader_changed)
		a->dirty = true;
	struct dl_errctx err = {{0}};
	if (u->hard_state_changed) {
		int rc = sto_save_hard_state(a->store, u->term, u->vote, u->voter, &err);
		if (rc != 0) {
			rt_actor_fail(a, rc, "saving term and vote", err.msg);
			return;
		}
	}
	if (u->truncate) {
		/* Raft never cuts a committed entry (a conflict is refused). */
		DL_ASSERT(u->truncate_after >= a->commit);
		int rc = sto_truncate_after(a->store, u->truncate_after, &err);
		if (rc != 0) {
			rt_actor_fail(a, rc, "truncating the log", err.msg);
			return;
		}
		DL_ASSERT(sto_last_index(a->store) <= u->truncate_after);
	}
	if (u->n_entries > 0 && store_append(a, u) != 0)
		return;
	for (uint32_t i = 0; i < u->n_msgs; i++)
		send_raft(a, &u->msgs[i]);
	if (u->commit_changed) {
		/* The commit index never goes down, and covers only what we hold. */
		DL_ASSERT(u->commit_index >= a->commit);
		DL_ASSERT(u->commit_index <= sto_last_index(a->store));
		a->commit = u->commit_index;
		sto_set_commit(a->store, a->commit);
		rt_apply_committed(a);
		rt_pend_resolve(a);
		rt_gets_resolve(a);
	}
	note_changes(a, u);
	if (u->conflict_index != 0)
		on_commit_conflict(a, u->conflict_index);
}

void rt_step(struct rt_actor *a, const struct raft_event *ev, struct raft_update *u)
{
	raft_step(a->raft, ev, u);
	carry_out(a, u);
}

/* Proposes the pass's batch of appends as one proposal: one step, one store
 * append, one APPEND message per follower, however many requests it holds.
 * On success each pending record learns its indexes; otherwise every request
 * of the batch is answered with the error. */
void rt_propose_batch(struct rt_actor *a)
{
	uint32_t reqs = a->prop_reqs, n = a->prop_n;
	if (reqs == 0)
		return;
	/* The batch is the newest reqs records, each of one entry or more. */
	DL_ASSERT(reqs <= a->pend_count && reqs <= n && n <= RT_MAX_PROPOSE);
	a->prop_reqs = 0;
	a->prop_n = 0;
	int code = DL_ENOTLEADER;
	const char *why = "member stopped by a storage error";
	if (!a->failed) {
		struct raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {a->prop, n}};
		struct raft_update u;
		raft_step(a->raft, &ev, &u);
		if (u.propose_rc == RAFT_OK) {
			uint64_t index = u.propose_index;
			for (uint32_t i = a->pend_count - reqs; i < a->pend_count; i++) {
				struct pending *p = rt_pend_at(a, i);
				p->first_index = index;
				p->term = u.propose_term;
				index += p->n;
			}
			DL_ASSERT(index == u.propose_index + n);
			a->appended_entries += n;
		}
		carry_out(a, &u);
		DL_ASSERT(u.propose_rc != RAFT_OK || a->failed ||
			  sto_last_index(a->store) >= u.propose_index + n - 1);
		if (u.propose_rc == RAFT_OK || a->failed)
			return; /* a failure answered the whole batch */
		code = u.propose_rc == RAFT_ENOTLEADER ? DL_ENOTLEADER
		       : u.propose_rc == RAFT_EBUSY    ? DL_EBUSY
						       : DL_EINVAL;
		why = u.propose_rc == RAFT_EBUSY ? "leadership transfer in progress" : NULL;
	}
	/* Answer in arrival order, then drop the records (the newest ones). */
	for (uint32_t i = a->pend_count - reqs; i < a->pend_count; i++) {
		struct pending *p = rt_pend_at(a, i);
		rt_pend_fail(a, p, code, why);
	}
	uint32_t before = a->pend_count;
	for (uint32_t i = 0; i < reqs; i++)
		rt_pend_pop_newest(a);
	DL_ASSERT(a->pend_count == before - reqs);
}

/* A leader that cannot persist hands leadership to a member that holds its
 * whole log, if one does: TIMEOUT_NOW leaves now, the others elect anyway
 * once it is silent. */
static void hand_off(struct rt_actor *a)
{
	struct raft_status st;
	raft_get_status(a->raft, &st);
	if (st.role != RAFT_LEADER)
		return;
	raft_id best = 0;
	for (uint32_t i = 0; i < st.n_peers; i++)
		if (st.peers[i].voter && st.peers[i].match_index == st.last_index)
			best = st.peers[i].id;
	if (best == 0)
		return;
	struct raft_event ev = {.type = RAFT_EV_TRANSFER, .target = best};
	struct raft_update u;
	raft_step(a->raft, &ev, &u);
	for (uint32_t i = 0; i < u.n_msgs; i++)
		send_raft(a, &u.msgs[i]);
	dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id, "handing leadership to %s",
	       a->members[best - 1].p.id);
}

/* A storage error: the member stops taking part (a crash of this member
 * alone: nothing it did not persist counts) and tries again later. */
void rt_actor_fail(struct rt_actor *a, int rc, const char *what, const char *detail)
{
	if (a->failed)
		return;
	hand_off(a);
	a->failed = true;
	a->fail_code = rc;
	snprintf(a->fail_reason, sizeof(a->fail_reason), "%s", rt_fail_reason(rc));
	a->retries = 0;
	a->retry_ns = dl_now_ns() + RT_RETRY_MIN_NS;
	bool was = a->role != RAFT_FOLLOWER || a->leader != 0;
	a->role = RAFT_FOLLOWER;
	a->leader = 0;
	a->dirty = true;
	if (was)
		rt_note_role(a);
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
	       "%s failed: %s%s%s; this member stops taking part and retries by itself", what,
	       dl_strerror(rc), detail && *detail ? ": " : "", detail ? detail : "");
	char why[160];
	snprintf(why, sizeof(why),
		 "member stopped (%s); an append already in its log may still commit",
		 a->fail_reason);
	rt_pend_fail_all(a, DL_ENOTLEADER, why);
	DL_ASSERT(a->failed && a->pend_count == 0 && a->prop_reqs == 0);
}
