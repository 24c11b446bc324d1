/*
 * runtime.c - the node and its member actors. See runtime.h.
 *
 * Ownership:
 *  - struct rt_actor: everything but the fields named below belongs to the
 *    actor thread. Other threads reach it by mail (mb_push). The durable
 *    report fields (dur_*) are written by the flush thread under dur_mu;
 *    `st` (the published status) is guarded by st_mu; `stopping` is atomic.
 *  - struct rt_node: `table` (the registry) is an immutable array swapped
 *    atomically by writers holding `mu`; the router thread reads it without
 *    a lock inside a "delivery" bracket (router_in/router_epoch) so that a
 *    writer knows when the old table (and a removed actor) is unreachable.
 */
#include "runtime/runtime.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "common/dl_hist.h"
#include "common/dl_log.h"
#include "common/dl_mem.h"
#include "runtime/mailbox.h"
#include "transport/transport.h"

#define RT_DRAIN_MAX 4096          /* mails per loop pass before ticking */
#define RT_PUBLISH_INTERVAL_NS 10000000ull /* at most this often while busy */
#define RT_MAX_PROPOSE STO_MAX_BATCH
#define RT_TICKS_PER_HEARTBEAT 10
#define RT_PEND_INITIAL 16 /* pending appends a member has room for before it grows */
/* A member stopped by a storage error retries after 1 s, doubling to 16 s. */
#define RT_RETRY_MIN_NS 1000000000ull
#define RT_RETRY_MAX_NS 16000000000ull
#define RT_LOG_GAP_NS 1000000000ull     /* rate-limited lines: one a second per kind ... */
#define RT_LOG_REPEAT_NS 30000000000ull /* ... and the same subject again after 30 s */

enum mail_kind { MAIL_FRAME = 1, MAIL_DURABLE, MAIL_TRANSFER, MAIL_STOP };

struct mail {
	struct mb_node node;
	uint8_t kind;
	struct tp_frame *frame; /* MAIL_FRAME: held */
	struct tp_hdr hdr;      /* MAIL_FRAME; body points into frame */
	raft_id target;         /* MAIL_TRANSFER */
};

struct pending {
	struct tp_frame *frame; /* held: the reply goes back over its pipe */
	uint64_t request_id;
	uint64_t first_index; /* 0: in the pass's batch, not proposed yet */
	uint64_t term;
	uint32_t n;
	uint64_t proposed_ns; /* mb_now_ns() at arrival (commit latency) */
	uint64_t bytes;       /* body bytes of the n entries */
};

/* Replies to one client connection, built while answering committed
 * appends and sent as one frame (one nng message instead of one each). */
#define RT_REPLY_SLOTS 8
struct reply_slot {
	struct tp_frame *frame; /* held: its header routes the reply; NULL: free */
	uint32_t pipe;
	struct tp_fb fb;
};

/* A log line that a flood of retries could repeat (rt_log_due). */
struct rt_ratelog {
	bool used;
	uint64_t key; /* what the last line written was about (an index) */
	uint64_t last_ns;
	uint64_t skipped; /* lines not written since; told by the next one */
};

struct member {
	struct rt_peer p;
	struct tp_peer *peer; /* NULL for self */
	bool touched;         /* has frames to flush at the end of the pass */
	bool urgent;          /* ... other than heartbeats: send at once */
};

struct rt_actor {
	struct rt_node *node;
	struct rt_member_config cfg;
	raft_id self;
	struct member members[RAFT_MAX_MEMBERS];

	struct raft *raft;
	struct sto *store;
	struct raft_log_ops log_ops;
	struct mailbox mb;
	pthread_t thread;
	bool thread_started;
	_Atomic bool stopping;

	/* Durable reports from the flush thread (dur_mu). */
	pthread_mutex_t dur_mu;
	struct mail dur_mail;
	struct mail stop_mail;
	bool stop_sent; /* node threads only, under the node's mutex or after unregistering */
	bool dur_queued;
	uint64_t dur_index, dur_term;
	bool dur_state;
	uint64_t dur_state_term;
	uint32_t dur_state_vote;
	int dur_error;

	/* Actor-thread state. */
	uint8_t role;
	raft_id leader;
	uint64_t commit;
	uint64_t applied;
	struct pending *pend; /* ring of pend_cap, grown up to max_pending_appends */
	uint32_t pend_head, pend_count, pend_cap;
	struct raft_entry *ents; /* decode buffer */
	size_t ents_cap;
	/* The appends of one loop pass, proposed together at its end: entries
	 * borrow from the frames their pending records hold. */
	struct raft_entry *prop;
	size_t prop_cap;
	uint32_t prop_n;
	uint32_t prop_reqs; /* the newest pending records, not yet proposed */
	struct reply_slot rslots[RT_REPLY_SLOTS];
	uint8_t *scratch;        /* entry copies for encoding */
	uint32_t scratch_cap;
	uint64_t tick_ns;
	uint64_t last_tick_ns;     /* on the node-wide grid */
	uint64_t max_catchup_ticks;
	uint64_t next_clean_ns;
	uint64_t last_publish_ns;
	bool dirty; /* something the status shows may have changed */
	/* Stopped by a storage error (actor_fail): takes no part in Raft,
	 * answers appends with DL_ENOTLEADER, and retries (actor_resume) at
	 * retry_ns: reopens the store and boots a new core, as a restart of
	 * this member alone would. */
	bool failed;
	int fail_code;
	char fail_reason[TP_REASON_MAX + 1];
	uint64_t retry_ns;
	uint32_t retries;
	struct raft_config raft_cfg;
	/* Damage met by reads of the store ("damaged entries" below). */
	struct dl_errctx read_err; /* of the last failed read */
	uint64_t read_err_index;   /* its index (0: none since it was cleared) */
	uint64_t damaged_index;    /* lowest entry found damaged; published */
	uint64_t send_failures;    /* messages that could not be encoded; published */
	uint64_t handoff_index;    /* leader: a damaged entry it must send (0: none) */
	uint64_t handoff_next_ns;  /* no hand-off before */
	uint64_t damage_handoffs;  /* published */
	uint64_t repair_from;      /* the next reopen cuts the log before it (0: none) */
	uint64_t fetch_index;      /* a damaged entry being repaired in place (0: none) */
	uint64_t fetch_next_ns;    /* when to ask the next peer for it */
	uint32_t fetch_asked;      /* peers asked for it so far */
	uint64_t repaired_in_place; /* published */
	uint64_t commit_conflicts;  /* published */
	struct rt_ratelog damage_log, send_log, handoff_log, conflict_log;
	uint64_t appended_entries;
	uint64_t committed_bytes;
	struct tp_fb reply_fb;

	pthread_mutex_t st_mu;
	struct rt_member_status st;
};

struct rt_table {
	uint32_t n;
	struct rt_actor *a[]; /* sorted by (group, id) */
};

struct rt_node {
	struct rt_node_config cfg;
	struct tp_endpoint *ep;
	struct sto_flusher *flusher;
	pthread_mutex_t mu; /* writers of the table, add/remove/stop */
	_Atomic(struct rt_table *) table;
	_Atomic uint32_t router_in;
	_Atomic uint64_t router_epoch;
	_Atomic uint64_t not_member; /* peer messages from a non-member, refused */
	_Atomic uint64_t not_node;   /* peer messages from a connection that is not a node's */
	struct rt_ratelog not_node_log; /* the router's alone */
	_Atomic bool closing;
	/* Where this node's tick grid starts: random, so that two nodes on one
	 * machine (one CLOCK_MONOTONIC) do not tick at the same instants. */
	uint64_t grid_seed;
	/* Recorded by the flush thread and the actors, read by anyone. */
	struct dl_hist fsync_latency, commit_latency;
};

/* ---- defaults ------------------------------------------------------------ */

void rt_member_config_defaults(struct rt_member_config *mc)
{
	memset(mc, 0, sizeof(*mc));
	mc->heartbeat_ms = 100;
	mc->election_ms = 1000;
	mc->max_pending_appends = 10000;
	mc->max_append_entries = 1024;
	mc->max_append_bytes = 1024 * 1024;
	mc->max_inflight_msgs = 64;
	mc->clean_interval_ms = 10000;
	sto_config_defaults(&mc->store);
}

void rt_node_config_defaults(struct rt_node_config *nc)
{
	memset(nc, 0, sizeof(*nc));
	nc->max_frame_bytes = TP_DEFAULT_MAX_FRAME_BYTES;
	nc->stack_bytes = 256 * 1024;
}

/* ---- registry -------------------------------------------------------------- */

static int actor_cmp(const char *g, const char *id, const struct rt_actor *a)
{
	int c = strcmp(g, a->cfg.group);
	return c != 0 ? c : strcmp(id, a->cfg.self_id);
}

static struct rt_actor *table_find(const struct rt_table *t, const char *g, const char *id,
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
	if (pos)
		*pos = lo;
	return NULL;
}

/* Publishes `t` and waits until the router cannot hold the old table. The
 * router brackets each delivery with router_in=1 ... router_in=0 and an
 * epoch bump (seq_cst on both sides: if we read router_in==0 after our
 * swap, the router's next bracket starts after the swap and sees `t`). */
static void table_swap(struct rt_node *n, struct rt_table *t)
{
	struct rt_table *old = atomic_exchange_explicit(&n->table, t, memory_order_seq_cst);
	uint64_t epoch = atomic_load_explicit(&n->router_epoch, memory_order_seq_cst);
	for (uint32_t spins = 0; atomic_load_explicit(&n->router_in, memory_order_seq_cst) != 0 &&
				 atomic_load_explicit(&n->router_epoch, memory_order_seq_cst) == epoch;
	     spins++) {
		if (spins > 100)
			sched_yield();
	}
	free(old);
}

/* ---- actor: helpers --------------------------------------------------------- */

static raft_id member_rid(const struct rt_actor *a, const char *id)
{
	for (uint32_t i = 0; i < a->cfg.n_peers; i++)
		if (strcmp(a->members[i].p.id, id) == 0)
			return i + 1;
	return 0;
}

static const char *rid_name(const struct rt_actor *a, raft_id id)
{
	return id >= 1 && id <= a->cfg.n_peers ? a->members[id - 1].p.id : "";
}

static bool log_term_at(void *ctx, uint64_t index, uint64_t *term)
{
	struct rt_actor *a = ctx;
	return sto_term_at(a->store, index, term);
}

static uint32_t log_entry_bytes(void *ctx, uint64_t index)
{
	struct rt_actor *a = ctx;
	return sto_entry_bytes(a->store, index);
}

/* ---- damaged entries ----------------------------------------------------------------
 * A store read that finds damage (DL_ECORRUPT: a bad checksum, a header that
 * disagrees with its index record) fails with a message naming the file,
 * the byte offset and the index. The actor logs it at ERROR, rate-limited
 * (a follower's retries would repeat it many times a second), records the
 * lowest damaged index in its status (damaged_index), and answers a client
 * `get` that meets it with the message. A leader that cannot send a damaged
 * entry hands leadership to a follower that holds it (maybe_hand_off).
 */

/* Whether to write a line about `key` now: a new subject at most once a
 * second, the same one again after 30 s; a line not written is counted and
 * the next one written tells how many were skipped. */
static bool rt_log_due(struct rt_ratelog *l, uint64_t key, uint64_t now_ns)
{
	bool fresh = !l->used || key != l->key;
	uint64_t since = now_ns - l->last_ns;
	if (l->used && since < (fresh ? RT_LOG_GAP_NS : RT_LOG_REPEAT_NS)) {
		l->skipped++;
		return false;
	}
	l->used = true;
	l->key = key;
	l->last_ns = now_ns;
	return true;
}

/* " (N more ... since the last such line)" when lines were skipped, else "". */
static const char *rt_log_skipped(struct rt_ratelog *l, const char *what, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (l->skipped > 0)
		snprintf(buf, cap, " (%llu more %s since the last such line)",
			 (unsigned long long)l->skipped, what);
	l->skipped = 0;
	return buf;
}

static void note_damage(struct rt_actor *a, uint64_t index)
{
	DL_ASSERT(index > 0);
	a->dirty = true;
	if (a->damaged_index == 0 || index < a->damaged_index)
		a->damaged_index = index;
	if (!rt_log_due(&a->damage_log, index, mb_now_ns()))
		return;
	char more[80];
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id, "damaged entry %llu: %s%s",
	       (unsigned long long)index, a->read_err.msg,
	       rt_log_skipped(&a->damage_log, "damaged reads", more, sizeof(more)));
}

/* Reads an entry: a view into the map, or a copy into the actor's scratch
 * buffer, valid until the next read (the codec uses one entry at a time).
 * On failure a->read_err says why (file, offset, index). */
static int read_view(struct rt_actor *a, uint64_t index, struct sto_view *v)
{
	int rc = sto_read(a->store, index, a->scratch, a->scratch_cap, v, &a->read_err);
	if (rc == DL_ETOOBIG) {
		uint8_t *buf = realloc(a->scratch, v->len);
		if (buf == NULL) {
			rc = dl_errf(&a->read_err, DL_ENOMEM, "entry %llu: a buffer of %u bytes",
				     (unsigned long long)index, v->len);
		} else {
			a->scratch = buf;
			a->scratch_cap = v->len;
			rc = sto_read(a->store, index, a->scratch, a->scratch_cap, v, &a->read_err);
		}
	}
	if (rc != 0) {
		a->read_err_index = index;
		if (rc == DL_ECORRUPT)
			note_damage(a, index);
	}
	return rc;
}

static int read_entry(void *ctx, uint64_t index, struct raft_entry *out)
{
	struct rt_actor *a = ctx;
	struct sto_view v;
	int rc = read_view(a, index, &v);
	if (rc != 0)
		return rc;
	out->term = v.term;
	out->data = v.data;
	out->len = v.len;
	out->type = v.type;
	return 0;
}

static void pend_fail_all(struct rt_actor *a, int code, const char *why);
static void send_raft(struct rt_actor *a, const struct raft_message *m);

/* What status, metadata and metrics show for a stopped member. */
static const char *fail_reason_of(int rc)
{
	switch (rc) {
	case DL_ENOSPC: return "disk full";
	case DL_ECORRUPT: return "damaged data";
	case DL_EIO: return "I/O error";
	default: return dl_strerror(rc);
	}
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
static void actor_fail(struct rt_actor *a, int rc, const char *what, const char *detail)
{
	if (a->failed)
		return;
	hand_off(a);
	a->failed = true;
	a->fail_code = rc;
	snprintf(a->fail_reason, sizeof(a->fail_reason), "%s", fail_reason_of(rc));
	a->retries = 0;
	a->retry_ns = mb_now_ns() + RT_RETRY_MIN_NS;
	a->role = RAFT_FOLLOWER;
	a->leader = 0;
	a->dirty = true;
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
	       "%s failed: %s%s%s; this member stops taking part and retries by itself", what,
	       dl_strerror(rc), detail && *detail ? ": " : "", detail ? detail : "");
	char why[160];
	snprintf(why, sizeof(why),
		 "member stopped (%s); an append already in its log may still commit",
		 a->fail_reason);
	pend_fail_all(a, DL_ENOTLEADER, why);
}

/* ---- replies ------------------------------------------------------------------ */

static struct tp_addr reply_addr(const struct rt_actor *a, const struct tp_hdr *h)
{
	return (struct tp_addr){.group = a->cfg.group, .target = "", .sender = a->cfg.self_id,
				.request_id = h->request_id};
}

static void reply_error(struct rt_actor *a, struct tp_frame *f, uint64_t request_id, int code,
			const char *msg)
{
	struct tp_error e;
	memset(&e, 0, sizeof(e));
	e.code = code;
	snprintf(e.message, sizeof(e.message), "%s", msg ? msg : dl_strerror(code));
	if (code == DL_ENOTLEADER && a->leader != 0) {
		snprintf(e.leader, sizeof(e.leader), "%s", rid_name(a, a->leader));
		snprintf(e.leader_addr, sizeof(e.leader_addr), "%s",
			 a->members[a->leader - 1].p.addr);
	}
	struct tp_addr ad = {.group = a->cfg.group, .target = "", .sender = a->cfg.self_id,
			     .request_id = request_id};
	tp_fb_reset(&a->reply_fb);
	if (tp_fb_add_error(&a->reply_fb, &ad, &e) == 0)
		(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

/* ---- pending client appends ------------------------------------------------------ */

static struct pending *pend_at(struct rt_actor *a, uint32_t i)
{
	return &a->pend[(a->pend_head + i) % a->pend_cap];
}

static void pend_pop(struct rt_actor *a)
{
	struct pending *p = pend_at(a, 0);
	tp_frame_release(p->frame);
	p->frame = NULL;
	a->pend_head = (a->pend_head + 1) % a->pend_cap;
	a->pend_count--;
}

static void pend_pop_newest(struct rt_actor *a)
{
	struct pending *p = pend_at(a, a->pend_count - 1);
	tp_frame_release(p->frame);
	p->frame = NULL;
	a->pend_count--;
}

/* ---- coalesced replies ---------------------------------------------------------- */

static void rslot_flush(struct rt_actor *a, struct reply_slot *s)
{
	if (s->frame == NULL)
		return;
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

/* Answers every pending append whose entries are now committed: success if
 * the log still holds them in the term they were given, else they were
 * replaced by another leader's entries. */
static void pend_resolve(struct rt_actor *a)
{
	uint64_t now_ns = a->pend_count > 0 ? mb_now_ns() : 0;
	while (a->pend_count > 0) {
		struct pending *p = pend_at(a, 0);
		uint64_t last = p->first_index + p->n - 1;
		if (p->first_index == 0 || last > a->commit)
			break;
		uint64_t t = 0;
		if (sto_term_at(a->store, p->first_index, &t) && t == p->term) {
			struct tp_append_resp r = {.code = 0, .first_index = p->first_index,
						   .term = p->term, .n = p->n};
			struct tp_addr ad = {.group = a->cfg.group, .target = "",
					     .sender = a->cfg.self_id, .request_id = p->request_id};
			reply_append_ok(a, p->frame, &ad, &r);
			dl_hist_record(&a->node->commit_latency, now_ns - p->proposed_ns);
			a->committed_bytes += p->bytes;
		} else {
			reply_error(a, p->frame, p->request_id, DL_ENOTLEADER,
				    "leadership changed before the entries committed; they were "
				    "replaced");
		}
		pend_pop(a);
	}
	rslots_flush(a);
}

static void pend_fail_all(struct rt_actor *a, int code, const char *why)
{
	a->prop_n = 0;
	a->prop_reqs = 0;
	while (a->pend_count > 0) {
		struct pending *p = pend_at(a, 0);
		reply_error(a, p->frame, p->request_id, code, why);
		pend_pop(a);
	}
}

/* ---- carrying out a Raft update ---------------------------------------------------- */

struct enc_raft_ctx {
	struct rt_actor *a;
	const struct raft_message *m;
};

static int enc_raft(void *ctx, struct tp_fb *fb)
{
	struct enc_raft_ctx *c = ctx;
	struct tp_addr ad = {.group = c->a->cfg.group,
			     .target = rid_name(c->a, c->m->to),
			     .sender = c->a->cfg.self_id,
			     .request_id = 0};
	return tp_fb_add_raft(fb, &ad, c->m, read_entry, c->a);
}

/* A message that could not be encoded, most likely because an entry it
 * carries cannot be read here: counted, logged (rate-limited) naming the
 * peer and the entry; a leader that cannot send a damaged entry asks for a
 * hand-off (maybe_hand_off, after the pass). */
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
	if (!rt_log_due(&a->send_log, index, mb_now_ns()))
		return;
	const char *peer = rid_name(a, m->to);
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
	struct enc_raft_ctx c = {a, m};
	a->read_err_index = 0;
	int rc = tp_peer_enqueue(mem->peer, enc_raft, &c);
	if (rc != 0 && rc != DL_EBUSY) /* a full queue is counted there (dropped sends) */
		send_failed(a, m, rc);
	mem->touched = true;
	if (m->type != RAFT_MSG_HEARTBEAT && m->type != RAFT_MSG_HEARTBEAT_RESP)
		mem->urgent = true;
}

static void flush_peers(struct rt_actor *a)
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
	for (uint32_t i = 0; i < u->n_entries;) {
		uint32_t k = 0;
		for (; k < 64 && i + k < u->n_entries; k++) {
			const struct raft_entry *e = &u->entries[i + k];
			chunk[k] = (struct sto_entry){e->term, e->data, e->len, e->type};
		}
		int rc = sto_append(a->store, u->first_index + i, chunk, k, &err);
		if (rc != 0) {
			actor_fail(a, rc, "store append", err.msg);
			return rc;
		}
		i += k;
	}
	return 0;
}

static void apply_committed(struct rt_actor *a)
{
	if (a->cfg.apply == NULL) {
		a->applied = a->commit;
		return;
	}
	while (a->applied < a->commit) {
		struct sto_view v;
		uint64_t idx = a->applied + 1;
		int rc = read_view(a, idx, &v);
		if (rc != 0) {
			actor_fail(a, rc, "reading a committed entry", a->read_err.msg);
			return;
		}
		a->cfg.apply(a->cfg.apply_arg, a->cfg.group, a->cfg.self_id, idx, &v);
		a->applied = idx;
	}
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
			       u->leader_id ? rid_name(a, u->leader_id) : "(none)",
			       (unsigned long long)st.term);
		a->last_publish_ns = 0; /* publish now */
	}
	a->role = u->role;
	a->leader = u->leader_id;
}

/* raft.h's order: hard state, truncate, append, send, apply. */
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
	if (!rt_log_due(&a->conflict_log, index, mb_now_ns()))
		return;
	char more[80];
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id,
	       "an append of leader %s disagrees with committed entry %llu here: two members hold "
	       "different committed entries (a forged message got in, or a disk lied); refused%s",
	       rid_name(a, a->leader), (unsigned long long)index,
	       rt_log_skipped(&a->conflict_log, "such appends", more, sizeof(more)));
}

static void carry_out(struct rt_actor *a, const struct raft_update *u)
{
	if (u->hard_state_changed || u->truncate || u->n_entries || u->commit_changed ||
	    u->role_changed || u->leader_changed)
		a->dirty = true;
	struct dl_errctx err = {{0}};
	if (u->hard_state_changed) {
		int rc = sto_save_hard_state(a->store, u->term, u->vote, u->voter, &err);
		if (rc != 0) {
			actor_fail(a, rc, "saving term and vote", err.msg);
			return;
		}
	}
	if (u->truncate) {
		int rc = sto_truncate_after(a->store, u->truncate_after, &err);
		if (rc != 0) {
			actor_fail(a, rc, "truncating the log", err.msg);
			return;
		}
	}
	if (u->n_entries > 0 && store_append(a, u) != 0)
		return;
	for (uint32_t i = 0; i < u->n_msgs; i++)
		send_raft(a, &u->msgs[i]);
	if (u->commit_changed) {
		a->commit = u->commit_index;
		sto_set_commit(a->store, a->commit);
		apply_committed(a);
		pend_resolve(a);
	}
	note_changes(a, u);
	if (u->conflict_index != 0)
		on_commit_conflict(a, u->conflict_index);
}

static void step(struct rt_actor *a, const struct raft_event *ev, struct raft_update *u)
{
	raft_step(a->raft, ev, u);
	carry_out(a, u);
}

/* ---- inbound messages --------------------------------------------------------------- */

static bool ents_reserve(struct rt_actor *a, size_t n)
{
	if (n <= a->ents_cap)
		return true;
	struct raft_entry *e = dl_grow(a->ents, &a->ents_cap, n, sizeof(*e));
	if (e == NULL)
		return false;
	a->ents = e;
	return true;
}

static void on_raft_msg(struct rt_actor *a, const struct tp_hdr *h)
{
	struct raft_message m;
	int rc;
	for (;;) {
		memset(&m, 0, sizeof(m));
		rc = tp_decode_raft(h, &m, a->ents, a->ents_cap);
		if (rc != DL_ETOOBIG || a->ents_cap >= TP_MAX_ENTRIES ||
		    !ents_reserve(a, a->ents_cap ? a->ents_cap * 2 : 64))
			break;
	}
	raft_id from = member_rid(a, h->sender);
	if (rc != 0 || from == 0) {
		dl_log(DL_LOG_DEBUG, a->cfg.group, a->cfg.self_id, "dropped %s from '%s': %s",
		       tp_type_name(h->type), h->sender, rc ? dl_strerror(rc) : "not a member");
		return;
	}
	m.from = from;
	m.to = a->self;
	/* A leader's view of its followers (match, activity) moves on answers. */
	if (a->role == RAFT_LEADER)
		a->dirty = true;
	struct raft_event ev = {.type = RAFT_EV_MESSAGE, .msg = &m};
	struct raft_update u;
	step(a, &ev, &u);
}

static bool prop_reserve(struct rt_actor *a, size_t n)
{
	if (n <= a->prop_cap)
		return true;
	struct raft_entry *e = dl_grow(a->prop, &a->prop_cap, n, sizeof(*e));
	if (e == NULL)
		return false;
	a->prop = e;
	return true;
}

/* Room for one more pending record: the ring starts small (an idle member
 * keeps 1 KiB, not max_pending_appends records) and doubles, in order,
 * up to max_pending_appends. */
static bool pend_reserve(struct rt_actor *a)
{
	if (a->pend_count < a->pend_cap)
		return true;
	uint32_t cap = a->pend_cap * 2;
	if (cap > a->cfg.max_pending_appends)
		cap = a->cfg.max_pending_appends;
	struct pending *p = malloc((size_t)cap * sizeof(*p));
	if (p == NULL)
		return false;
	for (uint32_t i = 0; i < a->pend_count; i++)
		p[i] = *pend_at(a, i);
	free(a->pend);
	a->pend = p;
	a->pend_head = 0;
	a->pend_cap = cap;
	return true;
}

/* Proposes the pass's batch of appends as one proposal: one step, one store
 * append, one APPEND message per follower, however many requests it holds.
 * On success each pending record learns its indexes; otherwise every request
 * of the batch is answered with the error. */
static void propose_batch(struct rt_actor *a)
{
	uint32_t reqs = a->prop_reqs, n = a->prop_n;
	if (reqs == 0)
		return;
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
				struct pending *p = pend_at(a, i);
				p->first_index = index;
				p->term = u.propose_term;
				index += p->n;
			}
			a->appended_entries += n;
		}
		carry_out(a, &u);
		if (u.propose_rc == RAFT_OK || a->failed)
			return; /* a failure answered the whole batch */
		code = u.propose_rc == RAFT_ENOTLEADER ? DL_ENOTLEADER
		       : u.propose_rc == RAFT_EBUSY    ? DL_EBUSY
						       : DL_EINVAL;
		why = u.propose_rc == RAFT_EBUSY ? "leadership transfer in progress" : NULL;
	}
	/* Answer in arrival order, then drop the records (the newest ones). */
	for (uint32_t i = a->pend_count - reqs; i < a->pend_count; i++) {
		struct pending *p = pend_at(a, i);
		reply_error(a, p->frame, p->request_id, code, why);
	}
	for (uint32_t i = 0; i < reqs; i++)
		pend_pop_newest(a);
}

/* An append joins the pass's batch (propose_batch() at the end of the pass);
 * what can be refused is refused here, at once. */
static void on_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	if (a->role != RAFT_LEADER) {
		reply_error(a, f, h->request_id, DL_ENOTLEADER, NULL);
		return;
	}
	if (a->pend_count >= a->cfg.max_pending_appends || !pend_reserve(a)) {
		reply_error(a, f, h->request_id, DL_EBUSY, "too many appends waiting for commit");
		return;
	}
	uint32_t n = 0;
	int rc;
	for (;;) {
		rc = tp_decode_append(h, a->ents, a->ents_cap, &n);
		if (rc != DL_ETOOBIG || a->ents_cap >= RT_MAX_PROPOSE ||
		    !ents_reserve(a, a->ents_cap ? a->ents_cap * 2 : 64))
			break;
	}
	if (rc == 0 && n == 0)
		rc = DL_EINVAL;
	if (rc != 0) {
		reply_error(a, f, h->request_id, rc, "bad append request");
		return;
	}
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < n; i++) {
		a->ents[i].type = RAFT_ENTRY_NORMAL;
		bytes += a->ents[i].len;
		if (a->ents[i].len > a->cfg.store.max_entry_bytes) {
			reply_error(a, f, h->request_id, DL_ETOOBIG, "entry larger than the limit");
			return;
		}
	}
	if (a->prop_n + n > RT_MAX_PROPOSE)
		propose_batch(a);
	if (!prop_reserve(a, a->prop_n + n)) {
		reply_error(a, f, h->request_id, DL_ENOMEM, NULL);
		return;
	}
	memcpy(a->prop + a->prop_n, a->ents, n * sizeof(*a->ents));
	a->prop_n += n;
	a->prop_reqs++;
	struct pending *p = pend_at(a, a->pend_count);
	tp_frame_hold(f);
	*p = (struct pending){.frame = f, .request_id = h->request_id, .n = n,
			      .proposed_ns = mb_now_ns(), .bytes = bytes};
	a->pend_count++;
}

static void on_get(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	struct tp_get g;
	if (tp_decode_get(h, &g) != 0 || g.index == 0 || g.to < g.index) {
		reply_error(a, f, h->request_id, DL_EINVAL, "bad get request");
		return;
	}
	if (g.index > a->commit) {
		reply_error(a, f, h->request_id, DL_ENOTCOMMITTED, "entry not committed (yet)");
		return;
	}
	if (g.index < sto_first_index(a->store)) {
		reply_error(a, f, h->request_id, DL_ECOMPACTED, "entry compacted");
		return;
	}
	uint64_t to = g.to < a->commit ? g.to : a->commit;
	uint64_t want = to - g.index + 1;
	uint32_t n = want > TP_MAX_ENTRIES ? TP_MAX_ENTRIES : (uint32_t)want;
	uint32_t max_bytes = g.max_bytes ? g.max_bytes : 4u * 1024 * 1024;
	struct tp_addr ad = reply_addr(a, h);
	uint32_t added = 0;
	tp_fb_reset(&a->reply_fb);
	a->read_err_index = 0;
	int rc = tp_fb_add_get_resp(&a->reply_fb, &ad, 0, g.index, n, max_bytes, read_entry, a,
				    &added);
	if (rc != 0) {
		/* The index first: a long path may cut the message at 255 bytes. */
		char msg[sizeof(((struct tp_error *)0)->message)];
		if (a->read_err_index == 0 ||
		    snprintf(msg, sizeof(msg), "cannot read entry %llu (%s): %s",
			     (unsigned long long)a->read_err_index, dl_strerror(rc),
			     a->read_err.msg) < 0)
			snprintf(msg, sizeof(msg), "cannot read the entries");
		reply_error(a, f, h->request_id, rc, msg);
		return;
	}
	(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

static void fill_meta(struct rt_actor *a, const struct rt_member_status *st,
		      struct tp_group_meta *gm)
{
	memset(gm, 0, sizeof(*gm));
	snprintf(gm->group, sizeof(gm->group), "%s", st->group);
	snprintf(gm->self, sizeof(gm->self), "%s", st->id);
	snprintf(gm->leader, sizeof(gm->leader), "%s", st->leader);
	for (uint32_t i = 0; i < a->cfg.n_peers; i++)
		if (strcmp(a->members[i].p.id, st->leader) == 0)
			snprintf(gm->leader_addr, sizeof(gm->leader_addr), "%s",
				 a->members[i].p.addr);
	gm->role = st->role;
	gm->term = st->term;
	gm->first_index = st->first_index;
	gm->last_index = st->last_index;
	gm->commit_index = st->commit_index;
	gm->durable_index = st->durable_index;
	gm->voter = st->voter;
	snprintf(gm->stopped, sizeof(gm->stopped), "%s", st->failed ? st->stopped : "");
	gm->n_members = a->cfg.n_peers;
	for (uint32_t i = 0; i < a->cfg.n_peers; i++) {
		struct tp_member_meta *mm = &gm->members[i];
		snprintf(mm->id, sizeof(mm->id), "%s", a->members[i].p.id);
		snprintf(mm->addr, sizeof(mm->addr), "%s", a->members[i].p.addr);
		mm->role = strcmp(mm->id, st->id) == 0 ? st->role
			   : strcmp(mm->id, st->leader) == 0 ? RAFT_LEADER
							     : RAFT_FOLLOWER;
		for (uint32_t k = 0; k < st->n_peers; k++)
			if (strcmp(st->peers[k].id, mm->id) == 0)
				mm->match_index = st->peers[k].match_index;
		if (strcmp(mm->id, st->id) == 0)
			mm->match_index = st->durable_index;
	}
}

static void publish(struct rt_actor *a);

static void on_metadata(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	publish(a);
	struct rt_member_status st;
	pthread_mutex_lock(&a->st_mu);
	st = a->st;
	pthread_mutex_unlock(&a->st_mu);
	struct tp_group_meta gm;
	fill_meta(a, &st, &gm);
	struct tp_addr ad = reply_addr(a, h);
	tp_fb_reset(&a->reply_fb);
	if (tp_fb_add_metadata_resp(&a->reply_fb, &ad, &gm, 1) == 0)
		(void)tp_reply(a->node->ep, f, &a->reply_fb);
}

static void on_fetch(struct rt_actor *a, const struct tp_hdr *h);
static void on_fetch_resp(struct rt_actor *a, const struct tp_hdr *h);

static void on_frame_mail(struct rt_actor *a, struct mail *m)
{
	const struct tp_hdr *h = &m->hdr;
	if (h->type >= TP_RAFT_MIN && h->type <= TP_RAFT_MAX) {
		if (!a->failed)
			on_raft_msg(a, h);
		return;
	}
	if (h->type == TP_FETCH || h->type == TP_FETCH_RESP) {
		if (!a->failed)
			(h->type == TP_FETCH ? on_fetch : on_fetch_resp)(a, h);
		return;
	}
	if (a->failed && (h->type == TP_APPEND || (h->type == TP_GET && a->store == NULL))) {
		char why[128];
		snprintf(why, sizeof(why), "member stopped (%s)", a->fail_reason);
		reply_error(a, m->frame, h->request_id,
			    h->type == TP_APPEND ? DL_ENOTLEADER : a->fail_code, why);
		return;
	}
	switch (h->type) {
	case TP_APPEND: on_append(a, m->frame, h); break;
	case TP_GET: on_get(a, m->frame, h); break;
	case TP_METADATA: on_metadata(a, m->frame, h); break;
	default:
		if (h->sender[0] == '\0')
			reply_error(a, m->frame, h->request_id, DL_EPROTO, "unexpected message type");
		break;
	}
}

static void on_durable_mail(struct rt_actor *a)
{
	pthread_mutex_lock(&a->dur_mu);
	uint64_t index = a->dur_index, term = a->dur_term;
	bool state = a->dur_state;
	uint64_t st_term = a->dur_state_term;
	uint32_t st_vote = a->dur_state_vote;
	int error = a->dur_error;
	a->dirty = true;
	a->dur_state = false;
	a->dur_queued = false;
	pthread_mutex_unlock(&a->dur_mu);
	if (a->failed)
		return; /* about a store that is closed, or will be */
	if (error != 0) {
		actor_fail(a, error, "flushing to disk", NULL);
		return;
	}
	struct raft_update u;
	if (state) {
		struct raft_event ev = {.type = RAFT_EV_STATE_PERSISTED,
					.state = {.term = st_term, .vote = st_vote}};
		step(a, &ev, &u);
	}
	if (index > 0) {
		struct raft_event ev = {.type = RAFT_EV_PERSISTED,
					.persisted = {.index = index, .term = term}};
		step(a, &ev, &u);
	}
}

/* Flush thread: record the report and post the actor's one durable mail
 * unless it is already queued (reports coalesce). */
static void on_durable(void *ctx, const struct sto_durable *d)
{
	struct rt_actor *a = ctx;
	pthread_mutex_lock(&a->dur_mu);
	a->dur_index = d->index;
	a->dur_term = d->term;
	if (d->error != 0)
		a->dur_error = d->error;
	if (d->state_durable) {
		a->dur_state = true;
		a->dur_state_term = d->state_term;
		a->dur_state_vote = d->state_vote;
	}
	bool post = !a->dur_queued;
	a->dur_queued = true;
	pthread_mutex_unlock(&a->dur_mu);
	if (post)
		mb_push(&a->mb, &a->dur_mail.node);
}

/* ---- actor loop ---------------------------------------------------------------------- */

static void publish(struct rt_actor *a)
{
	struct raft_status rs;
	if (a->raft != NULL)
		raft_get_status(a->raft, &rs);
	else
		rs = (struct raft_status){.role = RAFT_FOLLOWER, .commit_index = a->commit};
	if (a->failed) {
		/* Stopped: no role in the group, whatever the old core says. */
		rs.role = RAFT_FOLLOWER;
		rs.leader_id = 0;
		rs.n_peers = 0;
	}
	struct rt_member_status *st = &a->st;
	pthread_mutex_lock(&a->st_mu);
	st->role = rs.role;
	st->term = rs.term;
	snprintf(st->leader, sizeof(st->leader), "%s", rid_name(a, rs.leader_id));
	st->first_index = rs.first_index;
	st->last_index = rs.last_index;
	st->commit_index = rs.commit_index;
	st->durable_index = rs.durable_index;
	st->pending_appends = a->pend_count;
	st->mailbox_depth = atomic_load_explicit(&a->mb.depth, memory_order_relaxed);
	st->appended_entries = a->appended_entries;
	st->committed_bytes = a->committed_bytes;
	st->elections = rs.elections;
	st->leader_changes = rs.leader_changes;
	st->failed = a->failed;
	snprintf(st->stopped, sizeof(st->stopped), "%s", a->failed ? a->fail_reason : "");
	st->voter = rs.voter;
	st->incarnation = rs.incarnation;
	st->member_resets = rs.member_resets;
	st->promotions = rs.promotions;
	st->corrupt_reads = a->store != NULL ? sto_corrupt_reads(a->store) : st->corrupt_reads;
	st->send_failures = a->send_failures;
	st->damaged_index = a->damaged_index;
	st->damage_handoffs = a->damage_handoffs;
	st->repaired_in_place = a->repaired_in_place;
	st->commit_conflicts = a->commit_conflicts;
	st->refused_msgs = rs.refused_msgs;
	st->n_peers = rs.n_peers;
	for (uint32_t i = 0; i < rs.n_peers; i++) {
		snprintf(st->peers[i].id, sizeof(st->peers[i].id), "%s", rid_name(a, rs.peers[i].id));
		st->peers[i].match_index = rs.peers[i].match_index;
		st->peers[i].active = rs.peers[i].active;
	}
	pthread_mutex_unlock(&a->st_mu);
	a->dirty = false;
}

static void handle_mail(struct rt_actor *a, struct mail *m)
{
	switch (m->kind) {
	case MAIL_FRAME:
		on_frame_mail(a, m);
		tp_frame_release(m->frame);
		free(m);
		break;
	case MAIL_DURABLE:
		on_durable_mail(a); /* the embedded mail: not freed */
		break;
	case MAIL_TRANSFER: {
		struct raft_event ev = {.type = RAFT_EV_TRANSFER, .target = m->target};
		struct raft_update u;
		if (!a->failed)
			step(a, &ev, &u);
		free(m);
		break;
	}
	case MAIL_STOP: /* the embedded stop mail: not freed */
		atomic_store_explicit(&a->stopping, true, memory_order_relaxed);
		break;
	default:
		free(m);
		break;
	}
}

/* The newest instant on or before `now` of the node's tick grid for this
 * actor's tick_ns: phase + k * tick_ns, where the phase comes from the
 * node's random grid_seed. Every actor of a node with the same tick_ns shares
 * the grid; nodes do not. Were the grids of two nodes on one machine the
 * same (plain multiples of tick_ns), two followers that drew the same
 * randomized timeout would campaign in the same instant and split the vote
 * (one fail-over in N, for N distinct timeouts); with distinct
 * phases one of them sees the other's request first. */
static uint64_t grid_start(const struct rt_actor *a, uint64_t now)
{
	uint64_t phase = a->node->grid_seed % a->tick_ns;
	if (now < phase)
		return phase; /* not reached in practice: the clock counts from boot */
	return now - (now - phase) % a->tick_ns;
}

/* Steps the ticks that elapsed since the last one. Ticks sit on a grid
 * (grid_start) shared by every actor of the node, so the heartbeats of all
 * groups leave together and coalesce into one frame per peer. An
 * idle member sleeps until raft_ticks_until_due() says a tick matters and
 * then steps all the ticks it slept through. */
static void run_ticks(struct rt_actor *a, uint64_t now)
{
	if (now < a->last_tick_ns + a->tick_ns)
		return;
	uint64_t k = (now - a->last_tick_ns) / a->tick_ns;
	a->last_tick_ns += k * a->tick_ns;
	uint64_t grid = a->last_tick_ns / a->tick_ns; /* the node-wide tick count (phase < tick_ns) */
	if (k > a->max_catchup_ticks) /* a long stall: do not replay it all */
		k = a->max_catchup_ticks;
	struct raft_update u;
	for (uint64_t i = 0; i < k && !a->failed; i++) {
		struct raft_event ev = {.type = RAFT_EV_TICK, .tick = {.now = grid - k + 1 + i}};
		step(a, &ev, &u);
	}
}

static void maybe_clean(struct rt_actor *a, uint64_t now)
{
	if (now < a->next_clean_ns)
		return;
	a->next_clean_ns = now + (uint64_t)a->cfg.clean_interval_ms * 1000000ull;
	struct sto_clean_result res;
	struct dl_errctx err = {{0}};
	if (sto_clean(a->store, a->commit, &res, &err) == 0 && res.segments_deleted > 0)
		dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id,
		       "cleaned %u segments; first index now %llu%s", res.segments_deleted,
		       (unsigned long long)res.first_index, res.forced ? " (disk full)" : "");
}

static int member_boot(struct rt_actor *a, struct dl_errctx *err);

/* A stopped member tries again (actor_fail): the old core and store go,
 * as in a crash of this member alone, and a new core boots from what the
 * reopened store holds, if the disk has room again. */
static void actor_resume(struct rt_actor *a, uint64_t now)
{
	if (!a->failed || now < a->retry_ns)
		return;
	a->retry_ns = now + (a->retries < 4 ? RT_RETRY_MIN_NS << a->retries : RT_RETRY_MAX_NS);
	a->retries++;
	raft_free(a->raft);
	a->raft = NULL;
	sto_close(a->store);
	a->store = NULL;
	pthread_mutex_lock(&a->dur_mu);
	a->dur_error = 0;
	a->dur_state = false;
	a->dur_index = 0;
	pthread_mutex_unlock(&a->dur_mu);
	struct dl_errctx err = {{0}};
	a->cfg.store.repair_from = a->repair_from;
	int rc = member_boot(a, &err);
	struct sto_clean_result res;
	if (rc == 0 && sto_clean(a->store, a->commit, &res, &err) == 0 && res.disk_full)
		rc = dl_errf(&err, DL_ENOSPC, "disk use is still past diskFullRatio");
	a->dirty = true;
	if (rc != 0) {
		raft_free(a->raft); /* the store stays open, for reads */
		a->raft = NULL;
		a->fail_code = rc;
		snprintf(a->fail_reason, sizeof(a->fail_reason), "%s", fail_reason_of(rc));
		if ((a->retries & (a->retries - 1)) == 0) /* 1, 2, 4, 8, ... */
			dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
			       "still stopped after %u tries: %s", a->retries, err.msg);
		return;
	}
	if (a->repair_from != 0) {
		struct sto_info info;
		sto_get_info(a->store, &info);
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id,
		       "repaired: the log was cut before damaged entry %llu (now ends at %llu); a "
		       "new incarnation, not a voter until the leader has sent it all again",
		       (unsigned long long)a->repair_from, (unsigned long long)info.last_index);
		a->repair_from = 0;
		a->cfg.store.repair_from = 0;
		a->damaged_index = 0;
	}
	a->failed = false;
	a->fail_reason[0] = '\0';
	a->last_tick_ns = grid_start(a, now);
	dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "resumed after %u tries", a->retries);
}

/* The leader could not send entry I (damaged here; send_failed): it hands
 * leadership to the follower with the highest match index that holds I
 * (match >= I), whose copy is good, so that replication goes on from
 * there (Raft's leadership transfer: the core tops the target up and sends
 * it TIMEOUT_NOW). At most once per two election timeouts; with no such
 * follower it can only say so. Stepped after the pass, not from inside
 * carry_out(), whose update the step would overwrite. */
static void maybe_hand_off(struct rt_actor *a)
{
	uint64_t index = a->handoff_index;
	if (index == 0)
		return;
	a->handoff_index = 0;
	uint64_t now = mb_now_ns();
	if (a->failed || a->role != RAFT_LEADER || now < a->handoff_next_ns)
		return;
	if (a->fetch_index == index && a->fetch_asked < a->cfg.n_peers)
		return; /* being repaired in place (maybe_repair): hand off if that fails */
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
	       (unsigned long long)index, rid_name(a, best), (unsigned long long)best_match);
	struct raft_event ev = {.type = RAFT_EV_TRANSFER, .target = best};
	struct raft_update u;
	step(a, &ev, &u);
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
			     .target = rid_name(c->a, c->to),
			     .sender = c->a->cfg.self_id,
			     .request_id = 0};
	if (c->type == TP_FETCH)
		return tp_fb_add_fetch(fb, &ad, c->index);
	return tp_fb_add_fetch_resp(fb, &ad, c->code, c->index, read_entry, c->a);
}

static void send_fetch(struct rt_actor *a, raft_id to, uint8_t type, int code, uint64_t index)
{
	struct member *mem = &a->members[to - 1];
	struct enc_fetch_ctx c = {a, to, type, code, index};
	a->read_err_index = 0;
	int rc = tp_peer_enqueue(mem->peer, enc_fetch, &c);
	if (rc != 0 && rc != DL_EBUSY)
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id, "cannot send %s of entry %llu to %s: %s",
		       tp_type_name(type), (unsigned long long)index, rid_name(a, to), dl_strerror(rc));
	mem->touched = true;
	mem->urgent = true;
}

/* A peer asks for our copy of an entry it holds damaged. Any entry we hold
 * will do, committed or not: the asker checks that its index and term are
 * those of the damaged one. A read that finds our copy damaged too is
 * answered with that code (and noted here, to be repaired in turn). */
static void on_fetch(struct rt_actor *a, const struct tp_hdr *h)
{
	raft_id from = member_rid(a, h->sender);
	struct tp_get g;
	if (from == 0 || from == a->self || tp_decode_get(h, &g) != 0) {
		dl_log(DL_LOG_DEBUG, a->cfg.group, a->cfg.self_id, "dropped a bad fetch from '%s'",
		       h->sender);
		return;
	}
	struct sto_view v;
	int code = read_view(a, g.index, &v);
	send_fetch(a, from, TP_FETCH_RESP, code, g.index);
}

/* A peer's answer: the entry, written over the damaged one when it is that
 * entry (sto_rewrite checks index record, term, size and type). */
static void on_fetch_resp(struct rt_actor *a, const struct tp_hdr *h)
{
	raft_id from = member_rid(a, h->sender);
	struct tp_get_resp r;
	struct raft_entry ent;
	if (from == 0 || from == a->self || tp_decode_get_resp(h, &r, &ent, 1) != 0) {
		dl_log(DL_LOG_DEBUG, a->cfg.group, a->cfg.self_id,
		       "dropped a bad fetch answer from '%s'", h->sender);
		return;
	}
	if (a->fetch_index == 0 || r.first_index != a->fetch_index)
		return; /* late: repaired already, or given up */
	const char *peer = rid_name(a, from);
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
			actor_fail(a, rc, "repairing a damaged entry", NULL);
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
		       (unsigned long long)index, (unsigned long long)term, rid_name(a, to));
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
 * (maybe_hand_off); when the entry cannot be repaired in place it hands off
 * first, and is cut once it follows. */
static void maybe_repair(struct rt_actor *a)
{
	if (a->damaged_index == 0 || a->failed || a->cfg.store.type != STO_TYPE_MMAP)
		return;
	if (repair_in_place(a, mb_now_ns()))
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
	actor_fail(a, DL_ECORRUPT, what, "repairing from the leader");
	a->retry_ns = mb_now_ns(); /* at once */
}

static uint64_t next_wake_ns(struct rt_actor *a)
{
	if (a->failed)
		return a->retry_ns;
	uint64_t due = a->last_tick_ns + (uint64_t)raft_ticks_until_due(a->raft) * a->tick_ns;
	if (a->fetch_index != 0 && a->fetch_next_ns < due)
		due = a->fetch_next_ns;
	return due < a->next_clean_ns ? due : a->next_clean_ns;
}

static void *actor_main(void *arg)
{
	struct rt_actor *a = arg;
	/* "g0/n1" in top -H and perf (at most 15 characters are kept). */
	char name[16];
	size_t g = strnlen(a->cfg.group, 14);
	memcpy(name, a->cfg.group, g);
	name[g] = '/';
	size_t k = strnlen(a->cfg.self_id, 14 - g);
	memcpy(name + g + 1, a->cfg.self_id, k);
	name[g + 1 + k] = '\0';
	pthread_setname_np(pthread_self(), name);
	uint64_t now = mb_now_ns();
	a->last_tick_ns = grid_start(a, now);
	a->next_clean_ns = now + (uint64_t)a->cfg.clean_interval_ms * 1000000ull;
	while (!atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		now = mb_now_ns();
		actor_resume(a, now);
		if (!a->failed) {
			run_ticks(a, now);
			maybe_clean(a, now);
		}
		for (uint32_t i = 0; i < RT_DRAIN_MAX; i++) {
			struct mb_node *nd = mb_pop(&a->mb);
			if (nd == NULL)
				break;
			handle_mail(a, (struct mail *)nd);
		}
		propose_batch(a);
		maybe_repair(a);
		maybe_hand_off(a);
		flush_peers(a);
		bool idle = mb_empty(&a->mb);
		uint64_t since = now - a->last_publish_ns;
		if (a->dirty && (idle || since >= RT_PUBLISH_INTERVAL_NS)) {
			publish(a);
			a->last_publish_ns = now;
		}
		if (idle && !atomic_load_explicit(&a->stopping, memory_order_relaxed))
			mb_wait(&a->mb, next_wake_ns(a));
	}
	/* Stopping: whatever is still in the mailbox gets an answer. */
	for (struct mb_node *nd; (nd = mb_pop(&a->mb)) != NULL;) {
		struct mail *m = (struct mail *)nd;
		if (m->kind == MAIL_FRAME) {
			if (m->hdr.sender[0] == '\0')
				reply_error(a, m->frame, m->hdr.request_id, DL_ECLOSED,
					    "member is stopping");
			tp_frame_release(m->frame);
			free(m);
		} else if (m->kind == MAIL_TRANSFER) {
			free(m);
		}
	}
	/* Flush what is appended, then answer what that committed. */
	struct dl_errctx err = {{0}};
	if (!a->failed && sto_sync(a->store, &err) != 0)
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id, "final sync: %s", err.msg);
	pend_fail_all(a, DL_ECLOSED, "member stopped before the entries committed");
	publish(a);
	return NULL;
}

/* ---- actor lifecycle --------------------------------------------------------------------- */

static void actor_free(struct rt_actor *a)
{
	if (a == NULL)
		return;
	if (a->pend != NULL) {
		while (a->pend_count > 0)
			pend_pop(a);
		free(a->pend);
	}
	raft_free(a->raft);
	sto_close(a->store);
	for (uint32_t i = 0; i < a->cfg.n_peers; i++)
		tp_peer_put(a->members[i].peer);
	tp_fb_free(&a->reply_fb);
	free(a->ents);
	free(a->prop);
	for (uint32_t i = 0; i < RT_REPLY_SLOTS; i++)
		tp_fb_free(&a->rslots[i].fb);
	free(a->scratch);
	pthread_mutex_destroy(&a->dur_mu);
	pthread_mutex_destroy(&a->st_mu);
	free(a);
}

static int check_member_config(const struct rt_member_config *mc, raft_id *self,
			       struct dl_errctx *err)
{
	if (!tp_name_is_valid(mc->group, strlen(mc->group)) ||
	    !tp_name_is_valid(mc->self_id, strlen(mc->self_id)))
		return dl_errf(err, DL_EINVAL, "bad group or member id '%s/%s'", mc->group,
			       mc->self_id);
	if (mc->n_peers == 0 || mc->n_peers > RAFT_MAX_MEMBERS)
		return dl_errf(err, DL_EINVAL, "%s: 1..%d peers needed", mc->group, RAFT_MAX_MEMBERS);
	*self = 0;
	for (uint32_t i = 0; i < mc->n_peers; i++)
		if (strcmp(mc->peers[i].id, mc->self_id) == 0)
			*self = i + 1;
	if (*self == 0)
		return dl_errf(err, DL_EINVAL, "%s: self id '%s' is not in peers", mc->group,
			       mc->self_id);
	if (mc->heartbeat_ms < 2 || mc->election_ms <= mc->heartbeat_ms ||
	    mc->max_pending_appends == 0)
		return dl_errf(err, DL_EINVAL,
			       "%s: heartbeat must be >= 2 ms and shorter than the election timeout",
			       mc->group);
	return 0;
}

/* The Raft configuration of a member, kept for the boots that follow a
 * storage error (member_boot). */
static void build_raft_config(struct rt_actor *a, const struct rt_member_config *mc)
{
	raft_config_defaults(&a->raft_cfg);
	a->raft_cfg.self = a->self;
	a->raft_cfg.n_members = mc->n_peers;
	for (uint32_t i = 0; i < mc->n_peers; i++)
		a->raft_cfg.members[i] = i + 1;
	/* Ten ticks per heartbeat: an idle member wakes only when a tick
	 * matters (raft_ticks_until_due), so fine ticks cost nothing, and they
	 * spread the randomized election timeouts over many distinct values.
	 * With two ticks per heartbeat, two followers of a dead leader drew the
	 * same timeout one time in ten and split the vote. */
	a->raft_cfg.heartbeat_ticks = RT_TICKS_PER_HEARTBEAT;
	a->tick_ns = (uint64_t)mc->heartbeat_ms * 1000000ull / RT_TICKS_PER_HEARTBEAT;
	uint64_t et = (uint64_t)mc->election_ms * 1000000ull / a->tick_ns;
	a->raft_cfg.election_ticks = et <= RT_TICKS_PER_HEARTBEAT ? RT_TICKS_PER_HEARTBEAT + 1 : (uint32_t)et;
	a->max_catchup_ticks = 4ull * a->raft_cfg.election_ticks;
	a->raft_cfg.preferred_id = mc->preferred_id[0] ? member_rid(a, mc->preferred_id) : 0;
	a->raft_cfg.fixed_leader = mc->fixed_leader_id[0] ? member_rid(a, mc->fixed_leader_id) : 0;
	a->raft_cfg.max_append_entries = mc->max_append_entries;
	a->raft_cfg.max_append_bytes = mc->max_append_bytes;
	a->raft_cfg.max_inflight_msgs = mc->max_inflight_msgs;
	a->raft_cfg.thin_heartbeat_acks = a->raft_cfg.election_ticks >= 3 * a->raft_cfg.heartbeat_ticks;
}

/* Opens the member's store (running its recovery) and boots a Raft core
 * from what it holds: at creation, and again after a storage error. */
static int member_boot(struct rt_actor *a, struct dl_errctx *err)
{
	const struct rt_member_config *mc = &a->cfg;
	int rc = sto_open(&a->cfg.store, a->node->flusher, &a->store, err);
	if (rc != 0)
		return rc;

	struct sto_info info;
	sto_get_info(a->store, &info);
	struct raft_boot boot = {.first_index = info.first_index,
				 .last_index = info.last_index,
				 .last_term = info.last_term,
				 .commit = sto_recovered_commit(a->store)};
	struct sto_hard hard;
	bool afresh;
	sto_get_hard_state(a->store, &hard, &afresh);
	boot.term = hard.term;
	boot.vote = hard.vote;
	boot.voter = hard.voter;
	boot.incarnation = hard.incarnation;
	if (afresh)
		dl_log(DL_LOG_INFO, mc->group, mc->self_id,
		       "store made afresh (incarnation %llx): not a voter until a leader "
		       "vouches for it",
		       (unsigned long long)hard.incarnation);
	if (boot.commit > boot.last_index)
		boot.commit = boot.last_index;
	a->commit = a->applied = boot.commit;

	a->log_ops = (struct raft_log_ops){log_term_at, log_entry_bytes};
	a->raft_cfg.seed = mb_now_ns() ^ ((uint64_t)(uintptr_t)a << 16);
	if (raft_new(&a->raft_cfg, &a->log_ops, a, &boot, &a->raft) != RAFT_OK)
		return dl_errf(err, DL_EINVAL, "%s/%s: the Raft configuration or the recovered state is "
					       "inconsistent", mc->group, mc->self_id);
	dl_log(DL_LOG_INFO, mc->group, mc->self_id,
	       "store recovered: entries %llu..%llu, committed %llu, term %llu%s",
	       (unsigned long long)info.first_index, (unsigned long long)info.last_index,
	       (unsigned long long)boot.commit, (unsigned long long)boot.term,
	       info.recovered_cut ? ", torn tail cut" : "");
	return 0;
}

static int actor_new(struct rt_node *n, const struct rt_member_config *mc, struct rt_actor **out,
		     struct dl_errctx *err)
{
	raft_id self = 0;
	int rc = check_member_config(mc, &self, err);
	if (rc != 0)
		return rc;
	struct rt_actor *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	a->node = n;
	a->cfg = *mc;
	a->self = self;
	a->cfg.store.group = a->cfg.group;
	a->cfg.store.self_id = a->cfg.self_id;
	a->cfg.store.on_durable = on_durable;
	a->cfg.store.on_durable_ctx = a;
	pthread_mutex_init(&a->dur_mu, NULL);
	pthread_mutex_init(&a->st_mu, NULL);
	mb_init(&a->mb);
	a->dur_mail.kind = MAIL_DURABLE;
	a->stop_mail.kind = MAIL_STOP;
	tp_fb_init(&a->reply_fb, n->cfg.max_frame_bytes);
	for (uint32_t i = 0; i < RT_REPLY_SLOTS; i++)
		tp_fb_init(&a->rslots[i].fb, n->cfg.max_frame_bytes);
	snprintf(a->st.group, sizeof(a->st.group), "%s", mc->group);
	snprintf(a->st.id, sizeof(a->st.id), "%s", mc->self_id);
	snprintf(a->st.preferred, sizeof(a->st.preferred), "%s", mc->preferred_id);
	a->pend_cap = mc->max_pending_appends < RT_PEND_INITIAL ? mc->max_pending_appends
								   : RT_PEND_INITIAL;
	a->pend = calloc(a->pend_cap, sizeof(*a->pend));
	if (a->pend == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto err_free;
	}
	for (uint32_t i = 0; i < mc->n_peers; i++) {
		a->members[i].p = mc->peers[i];
		if (i + 1 == self)
			continue;
		a->members[i].peer = tp_peer_open(n->ep, mc->peers[i].addr);
		if (a->members[i].peer == NULL) {
			rc = dl_errf(err, DL_EINVAL, "%s: bad peer address '%s'", mc->group,
				     mc->peers[i].addr);
			goto err_free;
		}
	}
	build_raft_config(a, mc);
	rc = member_boot(a, err);
	if (rc != 0)
		goto err_free;
	publish(a);
	*out = a;
	return 0;

err_free:
	actor_free(a);
	return rc;
}

static int actor_start(struct rt_node *n, struct rt_actor *a, struct dl_errctx *err)
{
	pthread_attr_t attr;
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, n->cfg.stack_bytes);
	int rv = pthread_create(&a->thread, &attr, actor_main, a);
	pthread_attr_destroy(&attr);
	if (rv != 0)
		return dl_errf(err, DL_ENOMEM, "cannot start the actor thread");
	a->thread_started = true;
	return 0;
}

static void actor_signal_stop(struct rt_actor *a)
{
	if (a->thread_started && !a->stop_sent) {
		a->stop_sent = true;
		mb_push(&a->mb, &a->stop_mail.node);
	}
}

static void actor_stop(struct rt_actor *a)
{
	if (a->thread_started) {
		actor_signal_stop(a);
		pthread_join(a->thread, NULL);
		a->thread_started = false;
	}
	dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "stopped");
	actor_free(a);
}

/* ---- router delivery ---------------------------------------------------------------------- */

static int node_metadata(struct rt_node *n, const struct rt_table *t, struct tp_frame *f,
			 const struct tp_hdr *h)
{
	struct tp_fb fb;
	tp_fb_init(&fb, n->cfg.max_frame_bytes);
	struct tp_group_meta *gm = calloc((t ? t->n : 0) + 1, sizeof(*gm));
	uint32_t k = 0;
	for (uint32_t i = 0; gm != NULL && t != NULL && i < t->n; i++) {
		struct rt_actor *a = t->a[i];
		struct rt_member_status st;
		pthread_mutex_lock(&a->st_mu);
		st = a->st;
		pthread_mutex_unlock(&a->st_mu);
		fill_meta(a, &st, &gm[k++]);
	}
	struct tp_addr ad = {.group = "", .target = "", .sender = "", .request_id = h->request_id};
	int rc = gm == NULL ? DL_ENOMEM : tp_fb_add_metadata_resp(&fb, &ad, gm, k);
	if (rc == 0)
		(void)tp_reply(n->ep, f, &fb);
	size_t bytes = fb.len + (size_t)k * sizeof(*gm);
	free(gm);
	tp_fb_free(&fb);
	dl_trim_after(bytes);
	return rc;
}

static int deliver(void *arg, struct tp_frame *f, const struct tp_hdr *h)
{
	struct rt_node *n = arg;
	/* seq_cst: pairs with table_swap(). */
	atomic_store_explicit(&n->router_in, 1, memory_order_seq_cst);
	const struct rt_table *t = atomic_load_explicit(&n->table, memory_order_seq_cst);
	int rc = 0;
	/* Peer messages (Raft's, and the repair ones) only over connections
	 * whose certificate is a node's (with TLS; without it every
	 * connection counts as a node's): a client certificate may append,
	 * read and ask for metadata, never speak Raft. */
	if (h->type <= TP_PEER_MAX && tp_frame_role(f) != TP_ROLE_NODE) {
		atomic_fetch_add_explicit(&n->not_node, 1, memory_order_relaxed);
		if (rt_log_due(&n->not_node_log, tp_frame_pipe(f), mb_now_ns())) {
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
		rc = node_metadata(n, t, f, h);
		goto out;
	}
	struct rt_actor *a = table_find(t, h->group, h->target, NULL);
	if (a == NULL) {
		rc = DL_ENOTFOUND;
		goto out;
	}
	/* Peer messages (Raft's, and the repair ones) only from another member
	 * of the group: counted and refused here, before any mailbox. */
	if (h->type <= TP_PEER_MAX) {
		raft_id from = member_rid(a, h->sender);
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
	tp_frame_hold(f);
	m->frame = f;
	m->hdr = *h;
	/* A heartbeat answer only feeds the leader's liveness bookkeeping,
	 * which it reads at its next tick: it need not wake the leader. That
	 * halves an idle node's wake-ups. */
	if (h->type == RAFT_MSG_HEARTBEAT_RESP)
		mb_push_lazy(&a->mb, &m->node);
	else
		mb_push(&a->mb, &m->node);
out:
	atomic_fetch_add_explicit(&n->router_epoch, 1, memory_order_seq_cst);
	atomic_store_explicit(&n->router_in, 0, memory_order_seq_cst);
	return rc;
}

static void on_conn(void *arg, const char *addr, bool outbound, bool up)
{
	(void)arg;
	/* Clients come and go: their connections are debug noise. */
	enum dl_log_level level = !outbound ? DL_LOG_DEBUG : up ? DL_LOG_INFO : DL_LOG_WARN;
	dl_log(level, NULL, NULL, "%s %s %s", outbound ? "peer" : "inbound", addr,
	       up ? "connected" : "lost");
}

/* ---- node ------------------------------------------------------------------------------------ */

/* "127.x.y.z:port", "[::1]:port" or "localhost:port": only this machine can
 * connect. */
static bool addr_is_loopback(const char *addr)
{
	return strncmp(addr, "127.", 4) == 0 || strncmp(addr, "[::1]:", 6) == 0 ||
	       strncmp(addr, "localhost:", 10) == 0;
}

int rt_node_start(const struct rt_node_config *nc, struct rt_node **out, struct dl_errctx *err)
{
	*out = NULL;
	struct rt_node *n = calloc(1, sizeof(*n));
	if (n == NULL)
		return dl_errf(err, DL_ENOMEM, "out of memory");
	n->cfg = *nc;
	if (getrandom(&n->grid_seed, sizeof(n->grid_seed), GRND_NONBLOCK) != sizeof(n->grid_seed))
		n->grid_seed = mb_now_ns() * 0x9e3779b97f4a7c15ull;
	if (n->cfg.stack_bytes < 64 * 1024)
		n->cfg.stack_bytes = 64 * 1024;
	pthread_mutex_init(&n->mu, NULL);
	struct sto_flusher_config fc;
	sto_flusher_config_defaults(&fc);
	fc.max_stores = RT_MAX_MEMBERS;
	dl_hist_init(&n->fsync_latency);
	dl_hist_init(&n->commit_latency);
	fc.sync_latency = &n->fsync_latency;
	int rc = sto_flusher_start(&fc, &n->flusher, err);
	if (rc != 0)
		goto err_free;
	struct tp_config tc;
	tp_config_defaults(&tc);
	tc.listen_addr = nc->listen_addr;
	tc.max_frame_bytes = nc->max_frame_bytes;
	tc.tls = nc->tls;
	tc.deliver = deliver;
	tc.on_conn = on_conn;
	tc.arg = n;
	rc = tp_endpoint_open(&tc, &n->ep, err);
	if (rc != 0)
		goto err_flusher;
	if (nc->tls != NULL) {
		dl_log(DL_LOG_INFO, NULL, NULL,
		       "node listening on %s with mutual TLS (certificate %s); Raft only from "
		       "node certificates (OU=%s)",
		       nc->listen_addr, tp_tls_subject(nc->tls), TP_TLS_NODE_OU);
	} else {
		dl_log(DL_LOG_INFO, NULL, NULL, "node listening on %s", nc->listen_addr);
		if (!addr_is_loopback(nc->listen_addr))
			dl_log(DL_LOG_WARN, NULL, NULL,
			       "listening on %s without TLS: anyone who can reach this address can "
			       "send Raft messages and client requests; set tlsCertFile, tlsKeyFile "
			       "and tlsCaFile (docs/OPERATIONS.md, \"Securing a cluster\")",
			       nc->listen_addr);
	}
	*out = n;
	return 0;

err_flusher:
	sto_flusher_stop(n->flusher);
err_free:
	pthread_mutex_destroy(&n->mu);
	free(n);
	return rc;
}

int rt_node_add(struct rt_node *n, const struct rt_member_config *mc, struct dl_errctx *err)
{
	pthread_mutex_lock(&n->mu);
	int rc;
	struct rt_actor *a = NULL;
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t pos;
	if (atomic_load_explicit(&n->closing, memory_order_relaxed)) {
		rc = dl_errf(err, DL_ECLOSED, "node is stopping");
		goto out;
	}
	if (table_find(t, mc->group, mc->self_id, &pos) != NULL) {
		rc = dl_errf(err, DL_EEXIST, "%s/%s is already running", mc->group, mc->self_id);
		goto out;
	}
	uint32_t count = t ? t->n : 0;
	if (count >= RT_MAX_MEMBERS) {
		rc = dl_errf(err, DL_EBUSY, "node already runs %d members", RT_MAX_MEMBERS);
		goto out;
	}
	rc = actor_new(n, mc, &a, err);
	if (rc != 0)
		goto out;
	struct rt_table *nt = malloc(sizeof(*nt) + (count + 1) * sizeof(nt->a[0]));
	if (nt == NULL) {
		rc = dl_errf(err, DL_ENOMEM, "out of memory");
		goto out;
	}
	nt->n = count + 1;
	for (uint32_t i = 0, k = 0; i < nt->n; i++)
		nt->a[i] = i == pos ? a : t->a[k++];
	rc = actor_start(n, a, err);
	if (rc != 0) {
		free(nt);
		goto out;
	}
	table_swap(n, nt);
	a = NULL;
	dl_log(DL_LOG_INFO, mc->group, mc->self_id, "started (%u members, preferred leader %s)",
	       mc->n_peers, mc->preferred_id[0] ? mc->preferred_id : "none");
out:
	pthread_mutex_unlock(&n->mu);
	if (a != NULL)
		actor_stop(a);
	return rc;
}

/* Takes the actor out of the table; returns it (the caller stops it). */
static struct rt_actor *unregister(struct rt_node *n, const char *group, const char *id)
{
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t pos;
	struct rt_actor *a = table_find(t, group, id, &pos);
	if (a == NULL)
		return NULL;
	struct rt_table *nt = malloc(sizeof(*nt) + t->n * sizeof(nt->a[0]));
	if (nt == NULL)
		return NULL;
	nt->n = t->n - 1;
	for (uint32_t i = 0, k = 0; i < t->n; i++)
		if (i != pos)
			nt->a[k++] = t->a[i];
	table_swap(n, nt);
	return a;
}

int rt_node_remove(struct rt_node *n, const char *group, const char *id)
{
	pthread_mutex_lock(&n->mu);
	struct rt_actor *a = unregister(n, group, id);
	pthread_mutex_unlock(&n->mu);
	if (a == NULL)
		return DL_ENOTFOUND;
	actor_stop(a);
	return 0;
}

void rt_node_stop(struct rt_node *n)
{
	if (n == NULL)
		return;
	atomic_store_explicit(&n->closing, true, memory_order_relaxed);
	struct rt_node_stats st;
	rt_node_stats(n, &st);
	dl_log(DL_LOG_INFO, NULL, NULL,
	       "node stopping: frames in %llu out %llu, messages in %llu out %llu, decode errors "
	       "%llu, unknown group or member %llu, rejected %llu, dropped sends %llu, not a "
	       "member %llu, not a node %llu",
	       (unsigned long long)st.frames_in, (unsigned long long)st.frames_out,
	       (unsigned long long)st.msgs_in, (unsigned long long)st.msgs_out,
	       (unsigned long long)st.decode_errors, (unsigned long long)st.unknown_target,
	       (unsigned long long)st.rejected, (unsigned long long)st.dropped_sends,
	       (unsigned long long)st.not_member, (unsigned long long)st.not_node);
	tp_endpoint_quiesce(n->ep);
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_exchange_explicit(&n->table, NULL, memory_order_seq_cst);
	pthread_mutex_unlock(&n->mu);
	if (t != NULL) {
		/* Stop all actors at once, then wait for each. */
		for (uint32_t i = 0; i < t->n; i++)
			actor_signal_stop(t->a[i]);
		for (uint32_t i = 0; i < t->n; i++)
			actor_stop(t->a[i]);
		free(t);
	}
	tp_endpoint_close(n->ep);
	sto_flusher_stop(n->flusher);
	pthread_mutex_destroy(&n->mu);
	dl_log(DL_LOG_INFO, NULL, NULL, "node stopped");
	free(n);
}

/* ---- status ------------------------------------------------------------------------------------ */

uint32_t rt_node_status(struct rt_node *n, struct rt_member_status *out, uint32_t cap,
			uint32_t *total)
{
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	uint32_t k = 0, count = t ? t->n : 0;
	for (uint32_t i = 0; i < count && k < cap; i++) {
		pthread_mutex_lock(&t->a[i]->st_mu);
		out[k++] = t->a[i]->st;
		pthread_mutex_unlock(&t->a[i]->st_mu);
	}
	pthread_mutex_unlock(&n->mu);
	if (total)
		*total = count;
	return k;
}

int rt_node_member_status(struct rt_node *n, const char *group, const char *id,
			  struct rt_member_status *out)
{
	pthread_mutex_lock(&n->mu);
	struct rt_actor *a = table_find(atomic_load_explicit(&n->table, memory_order_relaxed), group,
					id, NULL);
	if (a != NULL) {
		pthread_mutex_lock(&a->st_mu);
		*out = a->st;
		pthread_mutex_unlock(&a->st_mu);
	}
	pthread_mutex_unlock(&n->mu);
	return a != NULL ? 0 : DL_ENOTFOUND;
}

int rt_node_transfer(struct rt_node *n, const char *group, const char *id, const char *to_id)
{
	pthread_mutex_lock(&n->mu);
	int rc = 0;
	struct rt_actor *a = table_find(atomic_load_explicit(&n->table, memory_order_relaxed), group,
					id, NULL);
	raft_id target = a ? member_rid(a, to_id) : 0;
	if (a == NULL)
		rc = DL_ENOTFOUND;
	else if (target == 0)
		rc = DL_EINVAL;
	if (rc == 0) {
		struct mail *m = calloc(1, sizeof(*m));
		if (m == NULL) {
			rc = DL_ENOMEM;
		} else {
			m->kind = MAIL_TRANSFER;
			m->target = target;
			mb_push(&a->mb, &m->node);
		}
	}
	pthread_mutex_unlock(&n->mu);
	return rc;
}

void rt_node_stats(struct rt_node *n, struct rt_node_stats *st)
{
	memset(st, 0, sizeof(*st));
	struct tp_stats ts;
	tp_endpoint_stats(n->ep, &ts);
	st->frames_in = ts.frames_in;
	st->msgs_in = ts.msgs_in;
	st->frames_out = ts.frames_out;
	st->msgs_out = ts.msgs_out;
	st->bytes_in = ts.bytes_in;
	st->bytes_out = ts.bytes_out;
	st->decode_errors = ts.decode_errors;
	st->unknown_target = ts.unknown_target;
	st->dropped_sends = ts.dropped_sends;
	st->rejected = ts.rejected;
	st->not_member = atomic_load_explicit(&n->not_member, memory_order_relaxed);
	st->not_node = atomic_load_explicit(&n->not_node, memory_order_relaxed);
	st->tls_conns_node = ts.conns_node;
	st->tls_conns_client = ts.conns_client;
	st->tls_conns_refused = ts.conns_refused;
	st->tls_listener_restarts = ts.listener_restarts;
	st->tls_dialer_restarts = ts.dialer_restarts;
	struct sto_flusher_stats fs;
	sto_flusher_get_stats(n->flusher, &fs);
	st->flush_passes = fs.passes;
	st->file_syncs = fs.file_syncs;
	pthread_mutex_lock(&n->mu);
	struct rt_table *t = atomic_load_explicit(&n->table, memory_order_relaxed);
	st->members = t ? t->n : 0;
	pthread_mutex_unlock(&n->mu);
}

const struct dl_hist *rt_node_fsync_latency(const struct rt_node *n)
{
	return &n->fsync_latency;
}

const struct dl_hist *rt_node_commit_latency(const struct rt_node *n)
{
	return &n->commit_latency;
}
