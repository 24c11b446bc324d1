/*
 * registry.c - the (group, id) registry and the router's delivery into mailboxes.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_log.h"

static int actor_cmp(const char *g, const char *id, const struct rt_actor *a)
{
	int c = strcmp(g, a->cfg.group);
	return c != 0 ? c : strcmp(id, a->cfg.self_id);
}

struct rt_actor *rt_table_find(const struct rt_table *t, const char *g, const char *id,
				   uint32_t *pos)
{
	uint32_t lo = 0, hi = t ? t->n : 0;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = actor_cmp(g, id, t->a[mid]);
		if (c == 0) {
			if (pos)
				*pos = mid;
			return t->a[mid];
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	DL_ASSERT(lo <= (t ? t->n : 0));
	if (pos)
		*pos = lo;
	return NULL;
}

/* Publishes `t` and waits until the router cannot hold the old table. The
 * router brackets each delivery with router_in=1 ... router_in=0 and an
 * epoch bump (seq_cst on both sides: if we read router_in==0 after our
 * swap, the router's next bracket starts after the swap and sees `t`). */
void rt_table_swap(struct rt_node *n, struct rt_table *t)
{
	/* Sorted by (group, id), each member once: what rt_table_find needs. */
	for (uint32_t i = 1; t != NULL && i < t->n; i++)
		DL_ASSERT(actor_cmp(t->a[i - 1]->cfg.group, t->a[i - 1]->cfg.self_id, t->a[i]) < 0);
	struct rt_table *old = atomic_exchange_explicit(&n->table, t, memory_order_seq_cst);
	DL_ASSERT(old != t);
	uint64_t epoch = atomic_load_explicit(&n->router_epoch, memory_order_seq_cst);
	for (uint32_t spins = 0; atomic_load_explicit(&n->router_in, memory_order_seq_cst) != 0 &&
				 atomic_load_explicit(&n->router_epoch, memory_order_seq_cst) == epoch;
	     spins++) {
		if (spins > 100)
			sched_yield();
	}
	free(old);
}

/* True when the message after `h` in frame `f` goes to the same member
 * (group and target): the router delivers it right after this one (it
 * hands over every message of a frame, in order), and that delivery wakes
 * the member. A next message that does not decode ends the router's walk
 * of the frame: false. */
static bool next_to_same_member(const struct tp_frame *f, const struct tp_hdr *h)
{
	size_t len;
	const uint8_t *buf = tp_frame_data(f, &len);
	/* The body is a view into the frame (codec.h); if a router ever hands
	 * over a copy, every message just wakes its member. */
	uintptr_t at = (uintptr_t)h->body, lo = (uintptr_t)buf;
	if (at < lo || at - lo > len || h->body_len > len - (at - lo))
		return false;
	size_t off = (size_t)(at - lo) + h->body_len;
	if (off >= len)
		return false;
	struct tp_hdr next;
	return tp_frame_next(buf, len, &off, &next) == 0 && strcmp(next.group, h->group) == 0 &&
	       strcmp(next.target, h->target) == 0;
}

/* One wake per member per run of a frame's messages to it: each is queued
 * without a wake, and the member is woken after the last, so it finds
 * them all at once (one pass, one proposal). Called on every path of a
 * delivery: `wake` when this message or an earlier one of the run needs
 * the member awake; `a` the member when it was looked up. */
static void settle_wake(struct rt_node *n, const struct rt_table *t, struct rt_actor *a,
			const struct tp_frame *f, const struct tp_hdr *h, bool wake)
{
	n->wake_owed = false;
	if (!wake)
		return;
	if (next_to_same_member(f, h)) {
		n->wake_owed = true;
		return;
	}
	if (a == NULL)
		a = rt_table_find(t, h->group, h->target, NULL);
	if (a != NULL) /* none: it left the table, and its stop mail woke it */
		mb_wake(&a->mb);
}

int rt_deliver(void *arg, struct tp_frame *f, const struct tp_hdr *h)
{
	struct rt_node *n = arg;
	/* seq_cst: pairs with rt_table_swap(). */
	atomic_store_explicit(&n->router_in, 1, memory_order_seq_cst);
	const struct rt_table *t = atomic_load_explicit(&n->table, memory_order_seq_cst);
	int rc = 0;
	/* The previous message was to this member and left its wake to us. */
	bool wake = n->wake_owed;
	struct rt_actor *a = NULL;
	/* Peer messages (Raft's, and the repair ones) only over connections
	 * whose certificate is a node's (with TLS; without it every
	 * connection counts as a node's): a client certificate may append,
	 * read and ask for metadata, never speak Raft. */
	if (h->type <= TP_PEER_MAX && tp_frame_role(f) != TP_ROLE_NODE) {
		atomic_fetch_add_explicit(&n->not_node, 1, memory_order_relaxed);
		if (rt_log_due(&n->not_node_log, tp_frame_pipe(f), dl_now_ns())) {
			char more[80];
			dl_log(DL_LOG_WARN, NULL, NULL,
			       "refused peer message '%s' for %s/%s sent as '%s': its "
			       "connection's certificate is a %s certificate, not a node "
			       "certificate (OU=%s)%s",
			       tp_type_name(h->type), h->group, h->target, h->sender,
			       tp_role_name(tp_frame_role(f)), TP_TLS_NODE_OU,
			       rt_log_skipped(&n->not_node_log, "such messages", more, sizeof(more)));
		}
		rc = DL_EPROTO;
		goto out;
	}
	if (h->type == TP_METADATA && h->group[0] == '\0') {
		rc = rt_metadata_all(n, t, f, h);
		goto out;
	}
	a = rt_table_find(t, h->group, h->target, NULL);
	if (a == NULL) {
		rc = DL_ENOTFOUND;
		goto out;
	}
	/* Peer messages (Raft's, and the repair ones) only from another member
	 * of the group: counted and refused here, before any mailbox. */
	if (h->type <= TP_PEER_MAX) {
		raft_id from = rt_member_rid(a, h->sender);
		if (from == 0 || from == a->self) {
			atomic_fetch_add_explicit(&n->not_member, 1, memory_order_relaxed);
			rc = DL_EPROTO;
			goto out;
		}
	}
	if (atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		rc = DL_ECLOSED;
		goto out;
	}
	struct mail *m = malloc(sizeof(*m));
	if (m == NULL) {
		rc = DL_ENOMEM;
		goto out;
	}
	m->kind = MAIL_FRAME;
	m->frame = f;
	m->hdr = *h;
	/* Queued without a wake: settle_wake() wakes the member once for the
	 * frame's run of messages to it. A heartbeat answer only feeds the
	 * leader's liveness bookkeeping, which it reads at its next tick: it
	 * needs no wake at all. That halves an idle node's wake-ups. */
	tp_frame_hold(f);
	bool queued = mb_offer_lazy(&a->mb, &m->node);
	if (queued && h->type != RAFT_MSG_HEARTBEAT_RESP)
		wake = true;
	if (!queued) {
		/* A full mailbox (RT_MAILBOX_MAX_MAILS): the transport answers a
		 * client DL_EBUSY and drops a peer's message, which Raft resends. */
		tp_frame_release(f);
		free(m);
		atomic_fetch_add_explicit(&n->mailbox_full, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&a->mailbox_full, 1, memory_order_relaxed);
		rc = DL_EBUSY;
	}
out:
	settle_wake(n, t, a, f, h, wake);
	atomic_fetch_add_explicit(&n->router_epoch, 1, memory_order_seq_cst);
	atomic_store_explicit(&n->router_in, 0, memory_order_seq_cst);
	return rc;
}

void rt_on_conn(void *arg, const char *addr, bool outbound, bool up)
{
	(void)arg;
	/* Clients come and go: their connections are debug noise. */
	enum dl_log_level level = !outbound ? DL_LOG_DEBUG : up ? DL_LOG_INFO : DL_LOG_WARN;
	dl_log(level, NULL, NULL, "%s %s %s", outbound ? "peer" : "inbound", addr,
	       up ? "connected" : "lost");
}
