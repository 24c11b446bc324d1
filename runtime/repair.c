/*
 * repair.c - damaged entries: a leader's hand-off to a follower that holds one, and
 * the repair in place (FETCH / FETCH_RESP) of a member's own copy.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <string.h>

#include "common/dl_log.h"

/* The leader could not send entry I (damaged here; send_failed): it hands
 * leadership to the follower with the highest match index that holds I
 * (match >= I), whose copy is good, so that replication goes on from
 * there (Raft's leadership transfer: the core tops the target up and sends
 * it TIMEOUT_NOW). At most once per two election timeouts; with no such
 * follower it can only say so. Stepped after the pass, not from inside
 * carry_out(), whose update the step would overwrite. */
void rt_maybe_hand_off(struct rt_actor *a)
{
	uint64_t index = a->handoff_index;
	if (index == 0)
		return;
	a->handoff_index = 0;
	uint64_t now = dl_now_ns();
	if (a->failed || a->role != RAFT_LEADER || now < a->handoff_next_ns)
		return;
	if (a->fetch_index == index && a->fetch_asked < a->cfg.n_peers)
		return; /* being repaired in place (rt_maybe_repair): hand off if that fails */
	struct raft_status rs;
	raft_get_status(a->raft, &rs);
	if (rs.transferee != 0)
		return; /* one is under way */
	raft_id best = 0;
	uint64_t best_match = 0;
	for (uint32_t i = 0; i < rs.n_peers; i++) {
		const struct raft_peer_status *p = &rs.peers[i];
		if (p->id != a->self && p->match_index >= index &&
		    (best == 0 || p->match_index > best_match)) {
			best = p->id;
			best_match = p->match_index;
		}
	}
	if (best == 0) {
		char more[80];
		if (rt_log_due(&a->handoff_log, index, now))
			dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
			       "entry %llu is damaged here and no follower holds it: followers "
			       "behind it cannot catch up until it is restored%s",
			       (unsigned long long)index,
			       rt_log_skipped(&a->handoff_log, "such checks", more, sizeof(more)));
		return;
	}
	a->handoff_next_ns = now + 2ull * a->cfg.election_ms * 1000000ull;
	a->damage_handoffs++;
	a->dirty = true;
	dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
	       "entry %llu is damaged here: handing leadership to %s (match %llu), which holds it",
	       (unsigned long long)index, rt_rid_name(a, best), (unsigned long long)best_match);
	struct raft_event ev = {.type = RAFT_EV_TRANSFER, .target = best};
	struct raft_update u;
	rt_step(a, &ev, &u);
}

/* ---- repair in place -------------------------------------------------------------
 * FETCH asks one peer for one entry; FETCH_RESP brings it, or the reason the
 * peer cannot (docs/PROTOCOL.md). Both are one-way, like Raft's messages. */

#define RT_FETCH_WAIT_NS (500ull * 1000000ull) /* for one peer's answer */
#define RT_FETCH_ROUNDS 3u                      /* asks of each peer before a cut */


struct enc_fetch_ctx {
	struct rt_actor *a;
	raft_id to;
	uint8_t type;
	int code;
	uint64_t index;
};


static int enc_fetch(void *ctx, struct tp_fb *fb)
{
	struct enc_fetch_ctx *c = ctx;
	struct tp_addr ad = {.group = c->a->cfg.group,
			     .target = rt_rid_name(c->a, c->to),
			     .sender = c->a->cfg.self_id,
			     .request_id = 0};
	if (c->type == TP_FETCH)
		return tp_fb_add_fetch(fb, &ad, c->index);
	return tp_fb_add_fetch_resp(fb, &ad, c->code, c->index, rt_read_entry, c->a);
}

static void send_fetch(struct rt_actor *a, raft_id to, uint8_t type, int code, uint64_t index)
{
	DL_ASSERT(to >= 1 && to <= a->cfg.n_peers && to != a->self);
	DL_ASSERT(type == TP_FETCH || type == TP_FETCH_RESP);
	struct member *mem = &a->members[to - 1];
	struct enc_fetch_ctx c = {a, to, type, code, index};
	a->read_err_index = 0;
	int rc = tp_peer_enqueue(mem->peer, enc_fetch, &c);
	if (rc != 0 && rc != DL_EBUSY)
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id, "cannot send %s of entry %llu to %s: %s",
		       tp_type_name(type), (unsigned long long)index, rt_rid_name(a, to), dl_strerror(rc));
	mem->touched = true;
	mem->urgent = true;
}

/* A peer asks for our copy of an entry it holds damaged. Any entry we hold
 * will do, committed or not: the asker checks that its index and term are
 * those of the damaged one. A read that finds our copy damaged too is
 * answered with that code (and noted here, to be repaired in turn). */
void rt_on_fetch(struct rt_actor *a, const struct tp_hdr *h)
{
	raft_id from = rt_member_rid(a, h->sender);
	struct tp_get g;
	if (from == 0 || from == a->self || tp_decode_get(h, &g) != 0) {
		dl_log(DL_LOG_DEBUG, a->cfg.group, a->cfg.self_id, "dropped a bad fetch from '%s'",
		       h->sender);
		return;
	}
	struct sto_view v;
	int code = rt_read_view(a, g.index, &v);
	send_fetch(a, from, TP_FETCH_RESP, code, g.index);
}

/* A peer's answer: the entry, written over the damaged one when it is that
 * entry (sto_rewrite checks index record, term, size and type). */
void rt_on_fetch_resp(struct rt_actor *a, const struct tp_hdr *h)
{
	raft_id from = rt_member_rid(a, h->sender);
	struct tp_get_resp r;
	struct raft_entry ent;
	if (from == 0 || from == a->self || tp_decode_get_resp(h, &r, &ent, 1) != 0) {
		dl_log(DL_LOG_DEBUG, a->cfg.group, a->cfg.self_id,
		       "dropped a bad fetch answer from '%s'", h->sender);
		return;
	}
	if (a->fetch_index == 0 || r.first_index != a->fetch_index)
		return; /* late: repaired already, or given up */
	const char *peer = rt_rid_name(a, from);
	if (r.code != 0) {
		dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id,
		       "%s has no good copy of entry %llu (%s): asking the next member", peer,
		       (unsigned long long)r.first_index, dl_strerror(r.code));
		a->fetch_next_ns = 0;
		return;
	}
	struct sto_entry e = {.term = ent.term, .data = ent.data, .len = ent.len, .type = ent.type};
	struct dl_errctx err = {{0}};
	int rc = sto_rewrite(a->store, r.first_index, &e, &err);
	if (rc == DL_EINVAL) {
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
		       "the copy of entry %llu from %s is another entry (%s): asking the next member",
		       (unsigned long long)r.first_index, peer, err.msg);
		a->fetch_next_ns = 0;
		return;
	}
	if (rc != DL_OK) {
		dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
		       "cannot repair entry %llu in place: %s", (unsigned long long)r.first_index,
		       err.msg);
		if (rc == DL_EIO || rc == DL_ENOSPC)
			rt_actor_fail(a, rc, "repairing a damaged entry", NULL);
		else
			a->fetch_asked = UINT32_MAX; /* the cut, at the next pass */
		return;
	}
	dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
	       "damaged entry %llu repaired in place with the copy of %s",
	       (unsigned long long)r.first_index, peer);
	a->repaired_in_place++;
	a->damaged_index = 0; /* a later read finds any other damage */
	a->fetch_index = 0;
	a->dirty = true;
}

/* Returns true while the damaged entry is being repaired in place (or
 * needs no repair any more), false when it cannot be: the caller cuts. */
static bool repair_in_place(struct rt_actor *a, uint64_t now)
{
	uint64_t index = a->damaged_index;
	if (index > sto_last_index(a->store) || index < sto_first_index(a->store)) {
		a->damaged_index = 0; /* truncated or cleaned away since */
		a->fetch_index = 0;
		return true;
	}
	if (a->fetch_index != index) {
		a->fetch_index = index;
		a->fetch_asked = 0;
		a->fetch_next_ns = 0;
	}
	uint64_t term;
	uint32_t others = a->cfg.n_peers - 1;
	if (!sto_term_at(a->store, index, &term) || others == 0 ||
	    a->fetch_asked >= RT_FETCH_ROUNDS * others) {
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
		       "damaged entry %llu cannot be repaired in place: %s",
		       (unsigned long long)index,
		       others == 0 ? "no peers"
		       : a->fetch_asked >= RT_FETCH_ROUNDS * others ? "no member sent a good copy"
								  : "its index record is damaged");
		a->fetch_index = 0;
		return false;
	}
	if (now < a->fetch_next_ns)
		return true;
	/* The leader first (it holds every committed entry), then the others
	 * in turn. */
	raft_id start = a->leader != 0 && a->leader != a->self ? a->leader : a->self % a->cfg.n_peers + 1;
	raft_id to = start;
	for (uint32_t k = 0; k < a->fetch_asked % others; k++) {
		to = to % a->cfg.n_peers + 1;
		if (to == a->self)
			to = to % a->cfg.n_peers + 1;
	}
	a->fetch_asked++;
	a->fetch_next_ns = now + RT_FETCH_WAIT_NS;
	if (a->fetch_asked == 1)
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
		       "repairing damaged entry %llu (term %llu) in place: asking %s for its copy",
		       (unsigned long long)index, (unsigned long long)term, rt_rid_name(a, to));
	send_fetch(a, to, TP_FETCH, 0, index);
	return true;
}

/* A member that found a damaged entry and does not lead repairs it in
 * place (repair_in_place) when its index record is sound: it asks its peers
 * in turn, the leader first, for their copy, and writes a copy of the same
 * index and term over the damaged one (by log matching it is the same
 * entry). It keeps its role meanwhile: nothing it acknowledged is lost. Only
 * when that cannot be (the record itself is damaged, or no peer sent a good
 * copy in RT_FETCH_ROUNDS rounds) does it stop, and its reopen cuts the log
 * before the damage (even committed entries) under a new incarnation, so
 * the leader sends it all again and it votes only once vouched for
 * (raft/raft.h, "Voters"). A leader that must send the entry waits for one
 * round of asks before it hands leadership to a member with a good copy
 * (rt_maybe_hand_off); when the entry cannot be repaired in place it hands off
 * first, and is cut once it follows. */
void rt_maybe_repair(struct rt_actor *a)
{
	if (a->damaged_index == 0 || a->failed || a->cfg.store.type != STO_TYPE_MMAP)
		return;
	if (repair_in_place(a, dl_now_ns()))
		return;
	if (a->role == RAFT_LEADER) {
		/* Not in place: hand off, at the next pass, so that the copy here
		 * gets repaired by a cut once this member follows. */
		if (a->handoff_index == 0)
			a->handoff_index = a->damaged_index;
		return;
	}
	a->repair_from = a->damaged_index;
	char what[64];
	snprintf(what, sizeof(what), "reading entry %llu", (unsigned long long)a->repair_from);
	rt_actor_fail(a, DL_ECORRUPT, what, "repairing from the leader");
	a->retry_ns = dl_now_ns(); /* at once */
}
