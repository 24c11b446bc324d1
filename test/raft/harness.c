/*
 * harness.c - see harness.h. Failures of the invariants listed there are
 * reported with cr_assert from inside the step that broke them.
 */
#include "harness.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define H_MAX_DELIVERIES   200000u
#define H_MAX_SETTLE_STEPS 64

static void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	cr_assert_not_null(q, "out of memory");
	return q;
}

static uint64_t fnv1a(const uint8_t *p, uint32_t len, uint8_t type)
{
	uint64_t h = 1469598103934665603ull ^ type;
	for (uint32_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ull;
	}
	return h;
}

/* ---- in-memory log ---------------------------------------------------- */

static void log_reserve(struct h_log *l, uint64_t n)
{
	if (n <= l->cap)
		return;
	uint64_t cap = l->cap ? l->cap * 2 : 64;
	while (cap < n)
		cap *= 2;
	l->e = xrealloc(l->e, (size_t)cap * sizeof(*l->e));
	l->cap = cap;
}

static void log_truncate(struct h_log *l, uint64_t after)
{
	for (uint64_t i = after; i < l->last; i++)
		free(l->e[i].data);
	if (after < l->last)
		l->last = after;
	if (l->durable > l->last)
		l->durable = l->last;
}

static void log_append(struct h_log *l, uint64_t term, uint8_t type, const void *data, uint32_t len)
{
	log_reserve(l, l->last + 1);
	struct h_entry *e = &l->e[l->last];
	e->term = term;
	e->type = type;
	e->len = len;
	e->data = xrealloc(NULL, len);
	if (len)
		memcpy(e->data, data, len);
	l->last++;
}

static void log_free(struct h_log *l)
{
	log_truncate(l, 0);
	free(l->e);
	memset(l, 0, sizeof(*l));
}

static bool ops_term_at(void *ctx, uint64_t index, uint64_t *term)
{
	const struct h_node *n = ctx;
	if (index == 0) {
		*term = 0;
		return true;
	}
	if (index > n->log.last)
		return false;
	*term = n->log.e[index - 1].term;
	return true;
}

static uint32_t ops_entry_bytes(void *ctx, uint64_t index)
{
	const struct h_node *n = ctx;
	if (index == 0 || index > n->log.last)
		return 0;
	return n->log.e[index - 1].len;
}

static const struct raft_log_ops h_ops = {
        .term_at = ops_term_at,
        .entry_bytes = ops_entry_bytes,
};

/* ---- setup ------------------------------------------------------------ */

void h_init(struct h_cluster *c, uint32_t n)
{
	cr_assert(n >= 1 && n <= H_MAX_NODES);
	memset(c, 0, sizeof(*c));
	c->n = n;
	raft_config_defaults(&c->cfg);
	c->cfg.n_members = n;
	for (uint32_t i = 0; i < n; i++)
		c->cfg.members[i] = i + 1;
	c->cfg.election_ticks = H_ELECTION_TICKS;
	c->cfg.heartbeat_ticks = H_HEARTBEAT_TICKS;
	c->cfg.prevote = true;
	c->cfg.check_quorum = true;
	c->cfg.preferred_id = 0;
	c->cfg.fixed_leader = 0;
	c->cfg.max_append_entries = 64;
	c->cfg.max_append_bytes = 1u << 20;
	c->cfg.max_inflight_msgs = 64;
	c->cfg.max_inflight_bytes = 1ull << 26;
	c->cfg.max_outbox = 4096;
	c->cfg.seed = 1;
	for (raft_id id = 1; id <= n; id++) {
		c->nodes[id].id = id;
		c->nodes[id].dur_voter = c->nodes[id].hs_voter = true;
	}
	c->next_incarnation = 1000;
}

struct h_node *h_node(struct h_cluster *c, raft_id id)
{
	cr_assert(id >= 1 && id <= c->n, "no member %u", id);
	return &c->nodes[id];
}

static void applied_reserve(struct h_cluster *c, uint64_t index)
{
	if (index < c->applied_cap)
		return;
	uint64_t cap = c->applied_cap ? c->applied_cap : 64;
	while (cap <= index)
		cap *= 2;
	c->applied = xrealloc(c->applied, (size_t)cap * sizeof(*c->applied));
	memset(c->applied + c->applied_cap, 0,
	       (size_t)(cap - c->applied_cap) * sizeof(*c->applied));
	c->applied_cap = cap;
}

/* Raft State Machine Safety: no two members apply different entries at one
 * index. */
static void record_applied(struct h_cluster *c, struct h_node *n, uint64_t index)
{
	cr_assert(index >= 1 && index <= n->log.last, "member %u applies %llu past its log (%llu)",
	          n->id, (unsigned long long)index, (unsigned long long)n->log.last);
	const struct h_entry *e = &n->log.e[index - 1];
	uint64_t hash = fnv1a(e->data, e->len, e->type);
	applied_reserve(c, index);
	struct h_applied *a = &c->applied[index];
	if (!a->set) {
		a->set = true;
		a->term = e->term;
		a->hash = hash;
	} else {
		cr_assert(a->term == e->term && a->hash == hash,
		          "member %u applies (index %llu, term %llu) but (term %llu) was applied "
		          "there before",
		          n->id, (unsigned long long)index, (unsigned long long)e->term,
		          (unsigned long long)a->term);
	}
	if (index > c->max_applied)
		c->max_applied = index;
}

static void boot_node(struct h_node *n)
{
	cr_assert(!n->up);
	struct raft_boot boot = {
	        .term = n->dur_term,
	        .vote = n->dur_vote,
	        .first_index = 1,
	        .last_index = n->log.last,
	        .last_term = n->log.last ? n->log.e[n->log.last - 1].term : 0,
	        .commit = n->commit < n->log.last ? n->commit : n->log.last,
	        .incarnation = n->incarnation,
	        .voter = n->dur_voter,
	};
	n->commit = boot.commit;
	n->applied = boot.commit;
	n->hs_term = n->dur_term;
	n->hs_vote = n->dur_vote;
	n->hs_voter = n->dur_voter;
	n->hs_dirty = false;
	int rc = raft_new(&n->cfg, &h_ops, n, &boot, &n->r);
	cr_assert_eq(rc, RAFT_OK, "raft_new of member %u failed: %d", n->id, rc);
	n->up = true;
	raft_get_status(n->r, &n->st);
	cr_assert_eq(n->st.term, boot.term);
	cr_assert_eq(n->st.commit_index, boot.commit);
	cr_assert_eq(n->st.last_index, boot.last_index);
}

void h_start(struct h_cluster *c)
{
	cr_assert(!c->started);
	for (raft_id id = 1; id <= c->n; id++) {
		struct h_node *n = &c->nodes[id];
		n->cfg = c->cfg;
		n->cfg.self = id;
		n->cfg.seed = c->cfg.seed * 1000003ull + id * 7919ull;
		boot_node(n);
	}
	c->started = true;
}

void h_load(struct h_cluster *c, raft_id id, const uint64_t *terms, uint64_t count, uint64_t term,
            raft_id vote, uint64_t commit)
{
	struct h_node *n = h_node(c, id);
	bool was_up = n->up;
	if (was_up)
		h_crash(c, id);
	log_truncate(&n->log, 0);
	for (uint64_t i = 0; i < count; i++) {
		char body[48];
		/* Same (index, term), same body: Raft's Log Matching. */
		int len = snprintf(body, sizeof(body), "boot-i%llu-t%llu",
		                   (unsigned long long)(i + 1), (unsigned long long)terms[i]);
		cr_assert(i == 0 || terms[i] >= terms[i - 1], "terms of a log never go down");
		log_append(&n->log, terms[i], RAFT_ENTRY_NORMAL, body, (uint32_t)len);
	}
	n->log.durable = n->log.last;
	cr_assert(count == 0 || term >= terms[count - 1]);
	n->dur_term = n->hs_term = term;
	n->dur_vote = n->hs_vote = vote;
	cr_assert(commit <= count);
	n->commit = n->applied = commit;
	for (uint64_t i = 1; i <= commit; i++)
		record_applied(c, n, i);
	if (was_up || c->started)
		boot_node(n);
}

static void msg_free(struct h_msg *m)
{
	for (uint32_t i = 0; m->ents && i < m->m.append.n_entries; i++)
		free(m->ents[i].data);
	free(m->ents);
	m->ents = NULL;
}

void h_fini(struct h_cluster *c)
{
	for (raft_id id = 1; id <= c->n; id++) {
		struct h_node *n = &c->nodes[id];
		if (n->up)
			raft_free(n->r);
		n->up = false;
		log_free(&n->log);
	}
	for (size_t i = 0; i < c->net_len; i++)
		msg_free(&c->net[i]);
	free(c->net);
	free(c->applied);
	memset(c, 0, sizeof(*c));
}

/* ---- carrying out an update ------------------------------------------- */

static bool hs_pending(const struct h_node *n)
{
	return n->hs_term != n->dur_term || n->hs_vote != n->dur_vote;
}

static void capture_msg(struct h_cluster *c, struct h_node *n, const struct raft_message *m)
{
	cr_assert(m->type >= RAFT_MSG_PREVOTE && m->type <= RAFT_MSG_TYPE_MAX, "bad type %u",
	          m->type);
	cr_assert_eq(m->from, n->id, "message from %u sent by member %u", m->from, n->id);
	cr_assert(m->to >= 1 && m->to <= c->n && m->to != n->id, "member %u sends to %u", n->id,
	          m->to);
	n->msgs_sent[m->type]++;
	n->sent_to[m->to][m->type]++;
	if (m->type == RAFT_MSG_APPEND_RESP && m->append_resp.reject)
		n->append_rejects++;

	/* The follower acknowledges only what is durable (raft.h: match_index
	 * is "the highest index that the follower holds durably"). */
	if (m->type == RAFT_MSG_APPEND_RESP && !m->append_resp.reject)
		cr_assert(m->append_resp.match_index <= n->log.durable,
		          "member %u acks match %llu but only %llu is durable", n->id,
		          (unsigned long long)m->append_resp.match_index,
		          (unsigned long long)n->log.durable);
	if (m->type == RAFT_MSG_HEARTBEAT_RESP)
		cr_assert(m->heartbeat_resp.match_index <= n->log.durable,
		          "member %u heartbeat-acks match %llu but only %llu is durable", n->id,
		          (unsigned long long)m->heartbeat_resp.match_index,
		          (unsigned long long)n->log.durable);

	if (c->net_len == c->net_cap) {
		c->net_cap = c->net_cap ? c->net_cap * 2 : 256;
		c->net = xrealloc(c->net, c->net_cap * sizeof(*c->net));
	}
	struct h_msg *hm = &c->net[c->net_len++];
	memset(hm, 0, sizeof(*hm));
	hm->m = *m;
	hm->seq = c->next_seq++;
	if (m->type != RAFT_MSG_APPEND)
		return;

	uint64_t prev = m->append.prev_index;
	uint32_t cnt = m->append.n_entries;
	cr_assert(prev + cnt <= n->log.last,
	          "member %u sends entries %llu..%llu but holds only %llu", n->id,
	          (unsigned long long)(prev + 1), (unsigned long long)(prev + cnt),
	          (unsigned long long)n->log.last);
	uint64_t t = 0;
	cr_assert(ops_term_at(n, prev, &t) && t == m->append.prev_term,
	          "member %u sends prev (%llu, %llu) but holds term %llu there", n->id,
	          (unsigned long long)prev, (unsigned long long)m->append.prev_term,
	          (unsigned long long)t);
	hm->m.append.entries = NULL;
	hm->ents = xrealloc(NULL, (size_t)cnt * sizeof(*hm->ents));
	for (uint32_t i = 0; i < cnt; i++) {
		const struct h_entry *src = &n->log.e[prev + i];
		hm->ents[i] = *src;
		hm->ents[i].data = xrealloc(NULL, src->len);
		if (src->len)
			memcpy(hm->ents[i].data, src->data, src->len);
		hm->bytes += src->len;
	}
}

/* Leader Completeness: a leader holds every entry applied anywhere. */
static void check_new_leader(struct h_cluster *c, struct h_node *n)
{
	uint64_t term = n->st.term;
	cr_assert(term < H_MAX_TERMS);
	cr_assert(c->leader_of_term[term] == 0 || c->leader_of_term[term] == n->id,
	          "two leaders in term %llu: %u and %u", (unsigned long long)term,
	          c->leader_of_term[term], n->id);
	c->leader_of_term[term] = n->id;
	for (uint64_t i = 1; i <= c->max_applied; i++) {
		if (i >= c->applied_cap || !c->applied[i].set)
			continue;
		cr_assert(i <= n->log.last && n->log.e[i - 1].term == c->applied[i].term,
		          "leader %u of term %llu lacks applied entry %llu", n->id,
		          (unsigned long long)term, (unsigned long long)i);
	}
}

static void carry_out(struct h_cluster *c, struct h_node *n, const struct raft_update *u)
{
	uint64_t old_term = n->st.term;
	uint64_t old_commit = n->commit;
	uint8_t old_role = n->st.role;

	/* 1. hard state */
	if (u->hard_state_changed) {
		cr_assert(u->term >= n->hs_term, "member %u: term goes down %llu -> %llu", n->id,
		          (unsigned long long)n->hs_term, (unsigned long long)u->term);
		n->hs_term = u->term;
		n->hs_vote = u->vote;
		n->hs_voter = u->voter;
		n->hs_dirty = true;
		n->hs_changes++;
	}
	/* 2. truncate */
	if (u->truncate) {
		cr_assert(u->truncate_after >= old_commit,
		          "member %u truncates after %llu below its commit %llu", n->id,
		          (unsigned long long)u->truncate_after, (unsigned long long)old_commit);
		cr_assert(u->truncate_after <= n->log.last);
		log_truncate(&n->log, u->truncate_after);
		n->truncations++;
	}
	/* 3. append */
	if (u->n_entries > 0) {
		cr_assert_eq(u->first_index, n->log.last + 1,
		             "member %u appends at %llu but its log ends at %llu", n->id,
		             (unsigned long long)u->first_index, (unsigned long long)n->log.last);
		cr_assert_not_null(u->entries);
		for (uint32_t i = 0; i < u->n_entries; i++) {
			const struct raft_entry *e = &u->entries[i];
			uint64_t prev = n->log.last ? n->log.e[n->log.last - 1].term : 0;
			cr_assert(e->term >= prev, "member %u: entry terms go down", n->id);
			log_append(&n->log, e->term, e->type, e->data, e->len);
		}
	}
	/* 4. send: raft.h releases no message before (term, vote) is durable. */
	cr_assert_leq(u->n_msgs, n->cfg.max_outbox, "member %u: %u messages past max_outbox %u",
	              n->id, u->n_msgs, n->cfg.max_outbox);
	if (u->n_msgs > 0) {
		cr_assert(!hs_pending(n),
		          "member %u sends %u message(s) (first %s) while (term %llu, vote %u) is "
		          "not durable",
		          n->id, u->n_msgs, raft_msg_type_name(u->msgs[0].type),
		          (unsigned long long)n->hs_term, n->hs_vote);
		for (uint32_t i = 0; i < u->n_msgs; i++)
			capture_msg(c, n, &u->msgs[i]);
	}
	/* 5. apply */
	if (u->commit_changed) {
		cr_assert(u->commit_index >= old_commit, "member %u: commit goes down", n->id);
		cr_assert(u->commit_index <= n->log.last,
		          "member %u commits %llu past its log end %llu", n->id,
		          (unsigned long long)u->commit_index, (unsigned long long)n->log.last);
		for (uint64_t i = old_commit + 1; i <= u->commit_index; i++)
			record_applied(c, n, i);
		n->commit = n->applied = u->commit_index;
	}

	raft_get_status(n->r, &n->st);
	cr_assert(n->st.term >= old_term, "member %u: term goes down", n->id);
	cr_assert_eq(n->st.commit_index, n->commit, "member %u: status commit differs", n->id);
	cr_assert_eq(n->st.last_index, n->log.last, "member %u: status last_index %llu, log %llu",
	             n->id, (unsigned long long)n->st.last_index, (unsigned long long)n->log.last);
	cr_assert_eq(u->role, n->st.role);
	if (n->st.role != old_role) {
		if (n->st.role == RAFT_LEADER) {
			n->times_leader++;
			check_new_leader(c, n);
		} else if (n->st.role == RAFT_CANDIDATE) {
			n->times_candidate++;
		} else if (n->st.role == RAFT_PRECANDIDATE) {
			n->times_precandidate++;
		}
	}
}

static void raw_step(struct h_cluster *c, struct h_node *n, const struct raft_event *ev,
                     struct raft_update *u)
{
	cr_assert(n->up, "stepping member %u which is down", n->id);
	memset(u, 0, sizeof(*u));
	raft_step(n->r, ev, u);
	carry_out(c, n, u);
}

static void persist_state(struct h_cluster *c, struct h_node *n)
{
	struct raft_update u;
	n->dur_term = n->hs_term;
	n->dur_vote = n->hs_vote;
	n->dur_voter = n->hs_voter;
	n->hs_dirty = false;
	struct raft_event ev = {.type = RAFT_EV_STATE_PERSISTED};
	ev.state.term = n->dur_term;
	ev.state.vote = n->dur_vote;
	raw_step(c, n, &ev, &u);
}

static void persist_log(struct h_cluster *c, struct h_node *n, uint64_t upto)
{
	struct raft_update u;
	cr_assert(upto <= n->log.last);
	if (upto > n->log.durable)
		n->log.durable = upto;
	if (upto == 0)
		return;
	struct raft_event ev = {.type = RAFT_EV_PERSISTED};
	ev.persisted.index = upto;
	ev.persisted.term = n->log.e[upto - 1].term;
	raw_step(c, n, &ev, &u);
}

/* Automatic persistence: state first, then the log, until nothing is left. */
static void settle(struct h_cluster *c, struct h_node *n)
{
	for (int guard = 0; guard < H_MAX_SETTLE_STEPS; guard++) {
		if (!n->up)
			return;
		if (!n->manual_state && n->hs_dirty) {
			persist_state(c, n);
			continue;
		}
		if (!n->manual_log && n->log.durable < n->log.last) {
			persist_log(c, n, n->log.last);
			continue;
		}
		return;
	}
	cr_assert_fail("member %u does not settle", n->id);
}

const struct raft_update *h_step(struct h_cluster *c, raft_id id, const struct raft_event *ev)
{
	struct h_node *n = h_node(c, id);
	struct raft_update u;
	raw_step(c, n, ev, &u);
	n->last_update = u;
	n->last_update.entries = NULL;
	n->last_update.msgs = NULL;
	settle(c, n);
	return &n->last_update;
}

void h_tick(struct h_cluster *c, raft_id id, uint32_t ticks)
{
	struct raft_event ev = {.type = RAFT_EV_TICK};
	for (uint32_t i = 0; i < ticks; i++)
		h_step(c, id, &ev);
}

void h_tick_all(struct h_cluster *c)
{
	for (raft_id id = 1; id <= c->n; id++)
		if (c->nodes[id].up)
			h_tick(c, id, 1);
}

void h_run(struct h_cluster *c, uint32_t ticks)
{
	for (uint32_t i = 0; i < ticks; i++) {
		h_tick_all(c);
		h_deliver_all(c);
	}
}

int h_propose(struct h_cluster *c, raft_id id, const char *s)
{
	struct raft_entry e = {.data = s, .len = (uint32_t)strlen(s), .type = RAFT_ENTRY_NORMAL};
	struct raft_event ev = {.type = RAFT_EV_PROPOSE};
	ev.propose.entries = &e;
	ev.propose.n = 1;
	return h_step(c, id, &ev)->propose_rc;
}

int h_propose_n(struct h_cluster *c, raft_id id, uint32_t count, uint32_t len)
{
	static uint64_t counter;
	cr_assert(count >= 1);
	struct raft_entry *es = xrealloc(NULL, count * sizeof(*es));
	uint8_t *buf = xrealloc(NULL, (size_t)count * len);
	for (uint32_t i = 0; i < count; i++) {
		counter++;
		for (uint32_t j = 0; j < len; j++)
			buf[(size_t)i * len + j] = (uint8_t)((counter * 131 + j) & 0xff);
		es[i] = (struct raft_entry){
		        .data = buf + (size_t)i * len, .len = len, .type = RAFT_ENTRY_NORMAL};
	}
	struct raft_event ev = {.type = RAFT_EV_PROPOSE};
	ev.propose.entries = es;
	ev.propose.n = count;
	int rc = h_step(c, id, &ev)->propose_rc;
	free(es);
	free(buf);
	return rc;
}

void h_transfer(struct h_cluster *c, raft_id id, raft_id target)
{
	struct raft_event ev = {.type = RAFT_EV_TRANSFER};
	ev.target = target;
	h_step(c, id, &ev);
}

void h_confirm_state(struct h_cluster *c, raft_id id, uint64_t term, raft_id vote)
{
	struct h_node *n = h_node(c, id);
	struct raft_update u;
	n->dur_term = term;
	n->dur_vote = vote;
	n->hs_dirty = hs_pending(n);
	struct raft_event ev = {.type = RAFT_EV_STATE_PERSISTED};
	ev.state.term = term;
	ev.state.vote = vote;
	raw_step(c, n, &ev, &u);
	settle(c, n);
}

const struct raft_update *h_inject(struct h_cluster *c, const struct raft_message *m)
{
	struct raft_event ev = {.type = RAFT_EV_MESSAGE};
	ev.msg = m;
	return h_step(c, m->to, &ev);
}

void h_persist_state(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	persist_state(c, n);
	settle(c, n);
}

void h_persist_log(struct h_cluster *c, raft_id id, uint64_t upto)
{
	struct h_node *n = h_node(c, id);
	persist_log(c, n, upto ? upto : n->log.last);
	settle(c, n);
}

void h_crash(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	cr_assert(n->up);
	raft_free(n->r);
	n->r = NULL;
	n->up = false;
	log_truncate(&n->log, n->log.durable);
	n->hs_term = n->dur_term;
	n->hs_vote = n->dur_vote;
	n->hs_dirty = false;
	/* Its connections reset: what it had queued and what was on the way
	 * to it are lost. */
	h_drop_match(c, id, 0, 0);
	h_drop_match(c, 0, id, 0);
}

void h_restart(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	boot_node(n);
}

void h_fresh(struct h_cluster *c)
{
	cr_assert(!c->started);
	for (raft_id id = 1; id <= c->n; id++) {
		struct h_node *n = h_node(c, id);
		cr_assert(n->log.last == 0 && n->dur_term == 0);
		n->incarnation = ++c->next_incarnation;
		n->dur_voter = n->hs_voter = false;
	}
}

void h_lose_tail(struct h_cluster *c, raft_id id, uint64_t keep)
{
	struct h_node *n = h_node(c, id);
	bool was_up = n->up;
	if (was_up)
		h_crash(c, id);
	log_truncate(&n->log, keep);
	if (n->commit > keep)
		n->commit = n->applied = keep;
	if (was_up)
		h_restart(c, id);
}

void h_wipe(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	bool was_up = n->up;
	if (was_up)
		h_crash(c, id);
	log_truncate(&n->log, 0);
	n->log.durable = 0;
	n->dur_term = n->hs_term = 0;
	n->dur_vote = n->hs_vote = 0;
	n->dur_voter = n->hs_voter = false;
	n->commit = n->applied = 0;
	n->incarnation = ++c->next_incarnation;
	if (was_up)
		h_restart(c, id);
}

/* ---- network ---------------------------------------------------------- */

void h_block(struct h_cluster *c, raft_id from, raft_id to, uint32_t type_mask)
{
	for (raft_id f = 1; f <= c->n; f++)
		for (raft_id t = 1; t <= c->n; t++)
			if ((from == 0 || f == from) && (to == 0 || t == to))
				c->drop_mask[f][t] |= type_mask;
}

void h_cut(struct h_cluster *c, raft_id a, raft_id b)
{
	h_block(c, a, b, H_ALL_TYPES);
	h_block(c, b, a, H_ALL_TYPES);
}

void h_isolate(struct h_cluster *c, raft_id id)
{
	h_block(c, id, 0, H_ALL_TYPES);
	h_block(c, 0, id, H_ALL_TYPES);
}

void h_heal(struct h_cluster *c)
{
	memset(c->drop_mask, 0, sizeof(c->drop_mask));
}

static void net_remove(struct h_cluster *c, size_t i, struct h_msg *out)
{
	cr_assert(i < c->net_len);
	*out = c->net[i];
	memmove(&c->net[i], &c->net[i + 1], (c->net_len - i - 1) * sizeof(*c->net));
	c->net_len--;
}

bool h_deliver_one(struct h_cluster *c, size_t i)
{
	struct h_msg hm;
	net_remove(c, i, &hm);
	struct h_node *to = &c->nodes[hm.m.to];
	bool lost = !to->up || (c->drop_mask[hm.m.from][hm.m.to] & H_TYPE_BIT(hm.m.type)) ||
	            (c->drop_fn && c->drop_fn(c, &hm));
	if (lost) {
		c->dropped++;
		msg_free(&hm);
		return false;
	}
	struct raft_entry *es = NULL;
	if (hm.m.type == RAFT_MSG_APPEND) {
		uint32_t cnt = hm.m.append.n_entries;
		es = xrealloc(NULL, (size_t)cnt * sizeof(*es));
		for (uint32_t k = 0; k < cnt; k++)
			es[k] = (struct raft_entry){.term = hm.ents[k].term,
			                            .data = hm.ents[k].data,
			                            .len = hm.ents[k].len,
			                            .type = hm.ents[k].type};
		hm.m.append.entries = es;
	}
	struct raft_event ev = {.type = RAFT_EV_MESSAGE};
	ev.msg = &hm.m;
	c->delivered++;
	h_step(c, hm.m.to, &ev);
	free(es);
	msg_free(&hm);
	return true;
}

size_t h_deliver_all(struct h_cluster *c)
{
	size_t n = 0;
	while (c->net_len > 0) {
		cr_assert(n < H_MAX_DELIVERIES, "the network does not quiesce");
		h_deliver_one(c, 0);
		n++;
	}
	return n;
}

static bool matches(const struct h_msg *m, raft_id from, raft_id to, uint8_t type)
{
	return (from == 0 || m->m.from == from) && (to == 0 || m->m.to == to) &&
	       (type == 0 || m->m.type == type);
}

size_t h_deliver_all_except(struct h_cluster *c, raft_id from, raft_id to, uint8_t type)
{
	size_t n = 0;
	size_t i = 0;
	while (i < c->net_len) {
		cr_assert(n < H_MAX_DELIVERIES, "the network does not quiesce");
		if (matches(&c->net[i], from, to, type)) {
			i++;
		} else {
			h_deliver_one(c, i);
			n++;
			i = 0;
		}
	}
	return n;
}

size_t h_deliver_match(struct h_cluster *c, raft_id from, raft_id to, uint8_t type)
{
	/* Only messages queued now; replies go to the back of the queue. */
	uint64_t horizon = c->next_seq;
	size_t n = 0;
	size_t i = 0;
	while (i < c->net_len) {
		if (c->net[i].seq < horizon && matches(&c->net[i], from, to, type)) {
			h_deliver_one(c, i);
			n++;
		} else {
			i++;
		}
	}
	return n;
}

size_t h_drop_match(struct h_cluster *c, raft_id from, raft_id to, uint8_t type)
{
	size_t n = 0;
	size_t i = 0;
	while (i < c->net_len) {
		if (matches(&c->net[i], from, to, type)) {
			struct h_msg hm;
			net_remove(c, i, &hm);
			msg_free(&hm);
			c->dropped++;
			n++;
		} else {
			i++;
		}
	}
	return n;
}

void h_drop_all(struct h_cluster *c)
{
	h_drop_match(c, 0, 0, 0);
}

size_t h_count(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < c->net_len; i++)
		if (matches(&c->net[i], from, to, type))
			n++;
	return n;
}

const struct h_msg *h_find(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type,
                           size_t nth)
{
	for (size_t i = 0; i < c->net_len; i++)
		if (matches(&c->net[i], from, to, type) && nth-- == 0)
			return &c->net[i];
	return NULL;
}

size_t h_index_of(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type, size_t nth)
{
	for (size_t i = 0; i < c->net_len; i++)
		if (matches(&c->net[i], from, to, type) && nth-- == 0)
			return i;
	cr_assert_fail("no such message queued");
	return SIZE_MAX;
}

void h_drop_one(struct h_cluster *c, size_t i)
{
	struct h_msg hm;
	net_remove(c, i, &hm);
	msg_free(&hm);
	c->dropped++;
}

void h_duplicate(struct h_cluster *c, size_t i)
{
	cr_assert(i < c->net_len);
	if (c->net_len == c->net_cap) {
		c->net_cap = c->net_cap ? c->net_cap * 2 : 256;
		c->net = xrealloc(c->net, c->net_cap * sizeof(*c->net));
	}
	struct h_msg *src = &c->net[i];
	struct h_msg *dst = &c->net[c->net_len++];
	*dst = *src;
	dst->seq = c->next_seq++;
	if (src->ents) {
		uint32_t cnt = src->m.append.n_entries;
		dst->ents = xrealloc(NULL, (size_t)cnt * sizeof(*dst->ents));
		for (uint32_t k = 0; k < cnt; k++) {
			dst->ents[k] = src->ents[k];
			dst->ents[k].data = xrealloc(NULL, src->ents[k].len);
			if (src->ents[k].len)
				memcpy(dst->ents[k].data, src->ents[k].data, src->ents[k].len);
		}
	}
}

void h_swap(struct h_cluster *c, size_t i, size_t j)
{
	cr_assert(i < c->net_len && j < c->net_len);
	struct h_msg t = c->net[i];
	c->net[i] = c->net[j];
	c->net[j] = t;
}

/* ---- queries ---------------------------------------------------------- */

const struct raft_status *h_status(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	if (n->up)
		raft_get_status(n->r, &n->st);
	return &n->st;
}

const struct raft_peer_status *h_peer(struct h_cluster *c, raft_id id, raft_id peer)
{
	const struct raft_status *st = h_status(c, id);
	for (uint32_t i = 0; i < st->n_peers; i++)
		if (st->peers[i].id == peer)
			return &st->peers[i];
	cr_assert_fail("member %u has no progress for %u", id, peer);
	return NULL;
}

raft_id h_leader(struct h_cluster *c)
{
	raft_id best = 0;
	uint64_t best_term = 0;
	for (raft_id id = 1; id <= c->n; id++) {
		struct h_node *n = &c->nodes[id];
		if (n->up && n->st.role == RAFT_LEADER && (best == 0 || n->st.term > best_term)) {
			best = id;
			best_term = n->st.term;
		}
	}
	return best;
}

uint64_t h_term_at(const struct h_cluster *c, raft_id id, uint64_t index)
{
	const struct h_node *n = &c->nodes[id];
	if (index == 0 || index > n->log.last)
		return 0;
	return n->log.e[index - 1].term;
}

uint64_t h_last(const struct h_cluster *c, raft_id id)
{
	return c->nodes[id].log.last;
}

bool h_logs_equal(const struct h_cluster *c, raft_id a, raft_id b)
{
	const struct h_log *x = &c->nodes[a].log;
	const struct h_log *y = &c->nodes[b].log;
	if (x->last != y->last)
		return false;
	for (uint64_t i = 0; i < x->last; i++) {
		if (x->e[i].term != y->e[i].term || x->e[i].type != y->e[i].type ||
		    x->e[i].len != y->e[i].len ||
		    (x->e[i].len && memcmp(x->e[i].data, y->e[i].data, x->e[i].len) != 0))
			return false;
	}
	return true;
}

bool h_elect(struct h_cluster *c, raft_id id)
{
	struct h_node *n = h_node(c, id);
	uint32_t limit = 20 * n->cfg.election_ticks;
	for (uint32_t t = 0; t < limit; t++) {
		h_tick(c, id, 1);
		h_deliver_all(c);
		if (n->up && n->st.role == RAFT_LEADER) {
			h_deliver_all(c);
			return true;
		}
	}
	return false;
}

uint32_t h_run_until_leader(struct h_cluster *c, raft_id id, uint32_t max_ticks)
{
	for (uint32_t t = 0; t <= max_ticks; t++) {
		if (c->nodes[id].up && c->nodes[id].st.role == RAFT_LEADER)
			return t;
		if (t < max_ticks)
			h_run(c, 1);
	}
	return UINT32_MAX;
}

void h_dump(const struct h_cluster *c, const char *what)
{
	fprintf(stderr, "-- %s (queue %zu, delivered %llu, dropped %llu)\n", what, c->net_len,
	        (unsigned long long)c->delivered, (unsigned long long)c->dropped);
	for (raft_id id = 1; id <= c->n; id++) {
		const struct h_node *n = &c->nodes[id];
		fprintf(stderr,
		        "  %u: %s %-12s term %llu vote %u leader %u last %llu durable %llu "
		        "commit %llu led %u cand %u trunc %u\n",
		        id, n->up ? "up  " : "down", raft_role_name(n->st.role),
		        (unsigned long long)n->st.term, n->st.vote, n->st.leader_id,
		        (unsigned long long)n->log.last, (unsigned long long)n->log.durable,
		        (unsigned long long)n->commit, n->times_leader, n->times_candidate,
		        n->truncations);
	}
}
