/*
 * requests.c - client requests: replies, the ring of pending appends and the reply
 * slots that coalesce their answers, append and get handling.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_hist.h"
#include "common/dl_mem.h"

void rt_reply_error(struct rt_actor *a, struct tp_frame *f, uint64_t request_id, int code,
			const char *msg)
{
	struct tp_error e;
	memset(&e, 0, sizeof(e));
	e.code = code;
	snprintf(e.message, sizeof(e.message), "%s", msg ? msg : dl_strerror(code));
	if (code == DL_ENOTLEADER && a->leader != 0) {
		snprintf(e.leader, sizeof(e.leader), "%s", rt_rid_name(a, a->leader));
		snprintf(e.leader_addr, sizeof(e.leader_addr), "%s",
			 a->members[a->leader - 1].p.addr);
	}
	struct tp_addr ad = {.group = a->cfg.group, .target = "", .sender = a->cfg.self_id,
			     .request_id = request_id};
	tp_fb_reset(&a->reply_fb);
	if (tp_fb_add_error(&a->reply_fb, &ad, &e) == 0)
		(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

struct pending *rt_pend_at(struct rt_actor *a, uint32_t i)
{
	/* i == pend_count: the free record after the newest. */
	DL_ASSERT(i <= a->pend_count && i < a->pend_cap);
	DL_ASSERT(a->pend_head < a->pend_cap);
	return &a->pend[(a->pend_head + i) % a->pend_cap];
}

/* What a pending record holds: a client's frame, or a local proposal
 * (answered before, or never to be: the actor frees it). */
static void pend_release(struct pending *p)
{
	if (p->frame != NULL)
		tp_frame_release(p->frame);
	free(p->local);
	p->frame = NULL;
	p->local = NULL;
}

/* The answer to a local proposal, on the actor thread; the callback runs
 * here (docs/EMBEDDING.md, "Threads"). A not-leader answer names the leader
 * this member knows. */
void rt_local_answer(struct rt_actor *a, struct rt_local *l, int code, uint64_t first_index,
		     uint64_t term, const char *msg)
{
	DL_ASSERT(l->mail.kind == MAIL_PROPOSE && l->propose_cb != NULL);
	DL_ASSERT(code != 0 || (first_index >= 1 && term >= 1));
	struct rt_propose_result r = {.code = code, .first_index = code ? 0 : first_index,
				      .term = code ? 0 : term, .n = l->n, .leader_id = "",
				      .leader_addr = "", .message = msg ? msg : dl_strerror(code)};
	if (code == DL_ENOTLEADER && a->leader != 0 && a->leader <= a->cfg.n_peers) {
		r.leader_id = rt_rid_name(a, a->leader);
		r.leader_addr = a->members[a->leader - 1].p.addr;
	}
	l->propose_cb(l->arg, &r);
}

/* A pending append that will not commit: its client, or its local caller,
 * gets `code`. The record stays; the caller pops it. */
void rt_pend_fail(struct rt_actor *a, struct pending *p, int code, const char *why)
{
	DL_ASSERT(code != 0);
	if (p->local != NULL)
		rt_local_answer(a, p->local, code, 0, 0, why);
	else
		rt_reply_error(a, p->frame, p->request_id, code, why);
}

void rt_pend_pop(struct rt_actor *a)
{
	DL_ASSERT(a->pend_count > 0);
	struct pending *p = rt_pend_at(a, 0);
	DL_ASSERT((p->frame != NULL) != (p->local != NULL) && a->pend_bytes >= p->bytes);
	pend_release(p);
	a->pend_bytes -= p->bytes;
	a->pend_head = (a->pend_head + 1) % a->pend_cap;
	a->pend_count--;
	DL_ASSERT(a->pend_count > 0 || a->pend_bytes == 0);
}

void rt_pend_pop_newest(struct rt_actor *a)
{
	DL_ASSERT(a->pend_count > 0);
	struct pending *p = rt_pend_at(a, a->pend_count - 1);
	DL_ASSERT((p->frame != NULL) != (p->local != NULL) && a->pend_bytes >= p->bytes);
	pend_release(p);
	a->pend_bytes -= p->bytes;
	a->pend_count--;
	DL_ASSERT(a->pend_count > 0 || a->pend_bytes == 0);
}

static void rslot_flush(struct rt_actor *a, struct reply_slot *s)
{
	if (s->frame == NULL)
		return;
	DL_ASSERT(s >= a->rslots && s < a->rslots + RT_REPLY_SLOTS);
	(void)tp_reply(a->node->ep, s->frame, &s->fb); /* a drop is counted there */
	tp_frame_release(s->frame);
	s->frame = NULL;
}

static void rslots_flush(struct rt_actor *a)
{
	for (uint32_t i = 0; i < RT_REPLY_SLOTS; i++)
		rslot_flush(a, &a->rslots[i]);
}

/* The slot collecting replies for the connection `f` came on; when every
 * slot is taken by another connection, the first one is sent to make room. */
static struct reply_slot *rslot_for(struct rt_actor *a, struct tp_frame *f)
{
	uint32_t pipe = tp_frame_pipe(f);
	struct reply_slot *free_slot = NULL;
	for (uint32_t i = 0; i < RT_REPLY_SLOTS; i++) {
		struct reply_slot *s = &a->rslots[i];
		if (s->frame != NULL && s->pipe == pipe)
			return s;
		if (s->frame == NULL && free_slot == NULL)
			free_slot = s;
	}
	if (free_slot == NULL) {
		free_slot = &a->rslots[0];
		rslot_flush(a, free_slot);
	}
	DL_ASSERT(free_slot >= a->rslots && free_slot < a->rslots + RT_REPLY_SLOTS);
	DL_ASSERT(free_slot->frame == NULL);
	tp_frame_hold(f);
	free_slot->frame = f;
	free_slot->pipe = pipe;
	return free_slot;
}

static void reply_append_ok(struct rt_actor *a, struct tp_frame *f, const struct tp_addr *ad,
			    const struct tp_append_resp *r)
{
	struct reply_slot *s = rslot_for(a, f);
	if (tp_fb_add_append_resp(&s->fb, ad, r) == 0)
		return;
	/* The frame is full: send it and start the next one. */
	rslot_flush(a, s);
	s = rslot_for(a, f);
	(void)tp_fb_add_append_resp(&s->fb, ad, r);
}

/* Answers every pending append whose entries are now committed (and applied,
 * with an apply callback): success if
 * the log still holds them in the term they were given, else they were
 * replaced by another leader's entries. */
void rt_pend_resolve(struct rt_actor *a)
{
	uint64_t now_ns = a->pend_count > 0 ? dl_now_ns() : 0;
	/* With an apply callback, an append is answered once it is applied
	 * here too (docs/EMBEDDING.md, "Apply"), not merely committed. */
	uint64_t done = a->cfg.apply != NULL && a->applied < a->commit ? a->applied : a->commit;
	while (a->pend_count > 0) {
		struct pending *p = rt_pend_at(a, 0);
		DL_ASSERT(p->n >= 1);
		uint64_t last = p->first_index + p->n - 1;
		if (p->first_index == 0 || last > done)
			break;
		DL_ASSERT(p->first_index <= a->commit && (p->frame != NULL || p->local != NULL));
		uint64_t t = 0;
		bool kept = sto_term_at(a->store, p->first_index, &t) && t == p->term;
		if (kept && p->local != NULL) {
			rt_local_answer(a, p->local, 0, p->first_index, p->term, NULL);
			dl_hist_record(&a->node->commit_latency, now_ns - p->proposed_ns);
			a->committed_bytes += p->bytes;
		} else if (kept) {
			struct tp_append_resp r = {.code = 0, .first_index = p->first_index,
						   .term = p->term, .n = p->n};
			struct tp_addr ad = {.group = a->cfg.group, .target = "",
					     .sender = a->cfg.self_id, .request_id = p->request_id};
			reply_append_ok(a, p->frame, &ad, &r);
			dl_hist_record(&a->node->commit_latency, now_ns - p->proposed_ns);
			a->committed_bytes += p->bytes;
		} else {
			rt_pend_fail(a, p, DL_ENOTLEADER,
				     "leadership changed before the entries committed; they were "
				     "replaced");
		}
		rt_pend_pop(a);
	}
	rslots_flush(a);
}

void rt_pend_fail_all(struct rt_actor *a, int code, const char *why)
{
	a->prop_n = 0;
	a->prop_reqs = 0;
	while (a->pend_count > 0) {
		struct pending *p = rt_pend_at(a, 0);
		rt_pend_fail(a, p, code, why);
		rt_pend_pop(a);
	}
	DL_ASSERT(a->pend_count == 0 && a->pend_bytes == 0);
}

/* Room for one more pending record: the ring starts small (an idle member
 * keeps 1 KiB, not max_pending_appends records) and doubles, in order,
 * up to max_pending_appends. */
bool rt_pend_reserve(struct rt_actor *a)
{
	/* The caller checked the count against the bound. */
	DL_ASSERT(a->pend_count < a->cfg.max_pending_appends);
	DL_ASSERT(a->pend_count <= a->pend_cap && a->pend_cap <= a->cfg.max_pending_appends);
	if (a->pend_count < a->pend_cap)
		return true;
	uint32_t cap = a->pend_cap * 2;
	if (cap > a->cfg.max_pending_appends)
		cap = a->cfg.max_pending_appends;
	DL_ASSERT(cap > a->pend_count);
	struct pending *p = malloc((size_t)cap * sizeof(*p));
	if (p == NULL)
		return false;
	for (uint32_t i = 0; i < a->pend_count; i++)
		p[i] = *rt_pend_at(a, i);
	free(a->pend);
	a->pend = p;
	a->pend_head = 0;
	a->pend_cap = cap;
	return true;
}

/* A client append, first half: refuses what can be refused, at once, and
 * decodes the entries into a->ents. Returns how many (0: refused, and
 * answered). Nothing here calls Raft: rt_queue_append() adds them to the
 * pass's batch, which rt_propose_batch() (update.c) proposes. */
uint32_t rt_admit_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h,
			 uint64_t *bytes_out)
{
	if (a->role != RAFT_LEADER) {
		rt_reply_error(a, f, h->request_id, DL_ENOTLEADER, NULL);
		return 0;
	}
	if (a->pend_count >= a->cfg.max_pending_appends || !rt_pend_reserve(a)) {
		rt_reply_error(a, f, h->request_id, DL_EBUSY, "too many appends waiting for commit");
		return 0;
	}
	uint32_t n = 0;
	int rc;
	for (;;) {
		rc = tp_decode_append(h, a->ents, a->ents_cap, &n);
		if (rc != DL_ETOOBIG || a->ents_cap >= RT_MAX_PROPOSE ||
		    !rt_entries_reserve(&a->ents, &a->ents_cap, a->ents_cap ? a->ents_cap * 2 : 64))
			break;
	}
	if (rc == 0 && n == 0)
		rc = DL_EINVAL;
	if (rc != 0) {
		rt_reply_error(a, f, h->request_id, rc, "bad append request");
		return 0;
	}
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < n; i++) {
		a->ents[i].type = RAFT_ENTRY_NORMAL;
		bytes += a->ents[i].len;
		if (a->ents[i].len > a->cfg.store.max_entry_bytes) {
			rt_reply_error(a, f, h->request_id, DL_ETOOBIG, "entry larger than the limit");
			return 0;
		}
	}
	/* One append alone is always taken, so that one larger than the bound
	 * is not refused for ever. */
	if (a->pend_bytes > 0 && a->pend_bytes + bytes > a->cfg.max_pending_bytes) {
		rt_reply_error(a, f, h->request_id, DL_EBUSY,
			       "too many bytes of appends waiting for commit");
		return 0;
	}
	DL_ASSERT(n >= 1 && n <= a->ents_cap);
	DL_ASSERT(a->pend_count < a->pend_cap); /* rt_pend_reserve() made room */
	*bytes_out = bytes;
	return n;
}

/* A client append, second half: the n entries rt_admit_append() decoded
 * join the pass's batch (they borrow from the frame, which the pending
 * record holds) and a pending record waits for their commit. The caller
 * made room in the batch. */
void rt_queue_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h, uint32_t n,
		     uint64_t bytes)
{
	DL_ASSERT(n >= 1 && a->prop_n + n <= RT_MAX_PROPOSE);
	DL_ASSERT(a->pend_count < a->pend_cap);
	if (!rt_entries_reserve(&a->prop, &a->prop_cap, a->prop_n + n)) {
		rt_reply_error(a, f, h->request_id, DL_ENOMEM, NULL);
		return;
	}
	memcpy(a->prop + a->prop_n, a->ents, n * sizeof(*a->ents));
	a->prop_n += n;
	a->prop_reqs++;
	struct pending *p = rt_pend_at(a, a->pend_count);
	tp_frame_hold(f);
	*p = (struct pending){.frame = f, .request_id = h->request_id, .n = n,
			      .proposed_ns = dl_now_ns(), .bytes = bytes};
	a->pend_count++;
	a->pend_bytes += bytes;
	/* Past the bound only by an append taken alone (rt_admit_append). */
	DL_ASSERT(a->pend_bytes <= a->cfg.max_pending_bytes || a->pend_bytes == bytes);
	DL_ASSERT(a->prop_reqs <= a->pend_count && a->prop_reqs <= a->prop_n);
}

/* Answers a read whose first index is committed: the entries, or why not. */
static void get_answer(struct rt_actor *a, struct tp_frame *f, uint64_t request_id,
		       const struct tp_get *g)
{
	DL_ASSERT(g->index >= 1 && g->index <= a->commit && g->to >= g->index);
	if (g->index < sto_first_index(a->store)) {
		rt_reply_error(a, f, request_id, DL_ECOMPACTED, "entry compacted");
		return;
	}
	uint64_t to = g->to < a->commit ? g->to : a->commit;
	uint64_t want = to - g->index + 1;
	uint32_t n = want > TP_MAX_ENTRIES ? TP_MAX_ENTRIES : (uint32_t)want;
	uint32_t max_bytes = g->max_bytes ? g->max_bytes : 4u * 1024 * 1024;
	struct tp_addr ad = {.group = a->cfg.group, .target = "", .sender = a->cfg.self_id,
			     .request_id = request_id};
	uint32_t added = 0;
	tp_fb_reset(&a->reply_fb);
	a->read_err_index = 0;
	int rc = tp_fb_add_get_resp(&a->reply_fb, &ad, 0, g->index, n, max_bytes, rt_read_entry, a,
				    &added);
	if (rc != 0) {
		/* The index first: a long path may cut the message at 255 bytes. */
		char msg[sizeof(((struct tp_error *)0)->message)];
		if (a->read_err_index == 0 ||
		    snprintf(msg, sizeof(msg), "cannot read entry %llu (%s): %s",
			     (unsigned long long)a->read_err_index, dl_strerror(rc),
			     a->read_err.msg) < 0)
			snprintf(msg, sizeof(msg), "cannot read the entries");
		rt_reply_error(a, f, request_id, rc, msg);
		return;
	}
	(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

/* Room for one more waiting read: the records start small and double up
 * to RT_MAX_WAITING_GETS (the caller checked the bound). */
static bool wget_reserve(struct rt_actor *a)
{
	DL_ASSERT(a->wget_count < RT_MAX_WAITING_GETS && a->wget_count <= a->wget_cap);
	if (a->wget_count < a->wget_cap)
		return true;
	uint32_t cap = a->wget_cap ? a->wget_cap * 2 : RT_WGET_INITIAL;
	if (cap > RT_MAX_WAITING_GETS)
		cap = RT_MAX_WAITING_GETS;
	struct waiting_get *w = realloc(a->wgets, (size_t)cap * sizeof(*w));
	if (w == NULL)
		return false;
	a->wgets = w;
	a->wget_cap = cap;
	DL_ASSERT(a->wget_count < a->wget_cap);
	return true;
}

/* A read past the commit index waits for it (up to w.wait_ms; its
 * deadline is set here), bounded per member: false beyond
 * RT_MAX_WAITING_GETS (the caller answers busy). */
static bool wget_add(struct rt_actor *a, struct waiting_get w)
{
	DL_ASSERT(w.g.index > a->commit && w.wait_ms > 0 && w.wait_ms <= TP_GET_WAIT_MAX_MS);
	DL_ASSERT((w.frame == NULL) != (w.local == NULL));
	a->dirty = true;
	if (a->wget_count >= RT_MAX_WAITING_GETS || !wget_reserve(a)) {
		a->get_wait_busy++;
		return false;
	}
	w.deadline_ns = dl_now_ns() + (uint64_t)w.wait_ms * 1000000ull;
	a->wgets[a->wget_count++] = w;
	if (a->wget_count == 1 || w.deadline_ns < a->wget_next_ns)
		a->wget_next_ns = w.deadline_ns;
	a->gets_waited++;
	return true;
}

static void get_wait(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h,
		     const struct tp_get *g, uint32_t wait_ms)
{
	if (!wget_add(a, (struct waiting_get){.frame = f, .request_id = h->request_id, .g = *g,
					      .wait_ms = wait_ms})) {
		char msg[96];
		snprintf(msg, sizeof(msg), "too many reads waiting for the commit here (%u)",
			 a->wget_count);
		rt_reply_error(a, f, h->request_id, DL_EBUSY, msg);
		return;
	}
	tp_frame_hold(f);
}

void rt_get_wait_local(struct rt_actor *a, struct rt_local *l)
{
	DL_ASSERT(l->mail.kind == MAIL_READ && l->index > a->commit);
	uint32_t wait_ms = l->wait_ms > TP_GET_WAIT_MAX_MS ? TP_GET_WAIT_MAX_MS : l->wait_ms;
	if (!wget_add(a, (struct waiting_get){.local = l, .g = {.index = l->index, .to = l->index},
					      .wait_ms = wait_ms})) {
		l->read_cb(l->arg, DL_EBUSY, l->index, NULL);
		free(l);
	}
}

/* Answers waiting read w, which the commit reached. */
static void wget_answer(struct rt_actor *a, struct waiting_get *w)
{
	DL_ASSERT(w->g.index <= a->commit);
	if (w->local != NULL) {
		rt_local_read_answer(a, w->local); /* frees it */
		w->local = NULL;
	} else {
		get_answer(a, w->frame, w->request_id, &w->g);
	}
}

/* Answers waiting read w with an error. */
static void wget_fail(struct rt_actor *a, struct waiting_get *w, int code, const char *why)
{
	DL_ASSERT(code != 0);
	if (w->local != NULL) {
		w->local->read_cb(w->local->arg, code, w->local->index, NULL);
		free(w->local);
		w->local = NULL;
	} else {
		rt_reply_error(a, w->frame, w->request_id, code, why);
	}
}

void rt_on_get(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	struct tp_get g;
	if (tp_decode_get(h, &g) != 0 || g.index == 0 || g.to < g.index) {
		rt_reply_error(a, f, h->request_id, DL_EINVAL, "bad get request");
		return;
	}
	uint32_t wait_ms = g.has_wait ? g.wait_ms : TP_GET_WAIT_DEFAULT_MS;
	if (wait_ms > TP_GET_WAIT_MAX_MS) {
		char msg[96];
		snprintf(msg, sizeof(msg), "bad get request: wait_ms %u is over %u", wait_ms,
			 TP_GET_WAIT_MAX_MS);
		rt_reply_error(a, f, h->request_id, DL_EINVAL, msg);
		return;
	}
	if (g.index <= a->commit) {
		get_answer(a, f, h->request_id, &g);
		return;
	}
	if (wait_ms == 0 || a->failed || atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		rt_reply_error(a, f, h->request_id, DL_ENOTCOMMITTED, "entry not committed (yet)");
		return;
	}
	get_wait(a, f, h, &g, wait_ms);
}

/* Drops waiting read i (answered), keeping arrival order. */
static void wget_remove(struct rt_actor *a, uint32_t i)
{
	DL_ASSERT(i < a->wget_count && a->wgets[i].local == NULL);
	if (a->wgets[i].frame != NULL)
		tp_frame_release(a->wgets[i].frame);
	memmove(&a->wgets[i], &a->wgets[i + 1], (a->wget_count - i - 1) * sizeof(*a->wgets));
	a->wget_count--;
}

static void wget_recompute_next(struct rt_actor *a)
{
	a->wget_next_ns = UINT64_MAX;
	for (uint32_t i = 0; i < a->wget_count; i++)
		if (a->wgets[i].deadline_ns < a->wget_next_ns)
			a->wget_next_ns = a->wgets[i].deadline_ns;
}

void rt_gets_resolve(struct rt_actor *a)
{
	if (a->wget_count == 0)
		return;
	for (uint32_t i = 0; i < a->wget_count;) {
		struct waiting_get *w = &a->wgets[i];
		if (w->g.index > a->commit) {
			i++;
			continue;
		}
		wget_answer(a, w);
		wget_remove(a, i);
	}
	wget_recompute_next(a);
	a->dirty = true;
}

void rt_gets_expire(struct rt_actor *a, uint64_t now_ns)
{
	if (a->wget_count == 0 || now_ns < a->wget_next_ns)
		return;
	for (uint32_t i = 0; i < a->wget_count;) {
		struct waiting_get *w = &a->wgets[i];
		if (w->deadline_ns > now_ns) {
			i++;
			continue;
		}
		if (w->g.index <= a->commit) {
			/* The commit reached it without rt_gets_resolve (a
			 * member rebooted after a storage error). */
			wget_answer(a, w);
			wget_remove(a, i);
			continue;
		}
		char msg[128];
		snprintf(msg, sizeof(msg),
			 "entry not committed (yet): commit index %llu after waiting %u ms",
			 (unsigned long long)a->commit, w->wait_ms);
		wget_fail(a, w, DL_ENOTCOMMITTED, msg);
		a->get_wait_timeouts++;
		wget_remove(a, i);
	}
	wget_recompute_next(a);
	a->dirty = true;
}

void rt_gets_fail_all(struct rt_actor *a, int code, const char *why)
{
	for (uint32_t i = 0; i < a->wget_count; i++) { /* in arrival order */
		struct waiting_get *w = &a->wgets[i];
		wget_fail(a, w, code, why);
		if (w->frame != NULL)
			tp_frame_release(w->frame);
	}
	a->wget_count = 0;
	a->wget_next_ns = UINT64_MAX;
}
