/*
 * actor.c - the actor: its mail, its loop (ticks, cleaning, retries) and its
 * lifecycle (config checks, boot, start, stop).
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_log.h"

static void on_raft_msg(struct rt_actor *a, const struct tp_hdr *h)
{
	struct raft_message m;
	int rc;
	for (;;) {
		memset(&m, 0, sizeof(m));
		rc = tp_decode_raft(h, &m, a->ents, a->ents_cap);
		if (rc != DL_ETOOBIG || a->ents_cap >= TP_MAX_ENTRIES ||
		    !rt_entries_reserve(&a->ents, &a->ents_cap, a->ents_cap ? a->ents_cap * 2 : 64))
			break;
	}
	raft_id from = rt_member_rid(a, h->sender);
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
	rt_step(a, &ev, &u);
}

/* A client append joins the pass's batch; it reaches Raft with the rest of
 * the batch at the end of the pass (rt_propose_batch in actor_main), or
 * here first when the batch would outgrow one proposal. */
static void on_append(struct rt_actor *a, struct tp_frame *f, const struct tp_hdr *h)
{
	uint64_t bytes = 0;
	uint32_t n = rt_admit_append(a, f, h, &bytes);
	if (n == 0)
		return;
	if (a->prop_n + n > RT_MAX_PROPOSE)
		rt_propose_batch(a);
	DL_ASSERT(a->prop_n + n <= RT_MAX_PROPOSE);
	rt_queue_append(a, f, h, n, bytes);
}

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
			(h->type == TP_FETCH ? rt_on_fetch : rt_on_fetch_resp)(a, h);
		return;
	}
	if (a->failed && (h->type == TP_APPEND || (h->type == TP_GET && a->store == NULL))) {
		char why[128];
		snprintf(why, sizeof(why), "member stopped (%s)", a->fail_reason);
		rt_reply_error(a, m->frame, h->request_id,
			    h->type == TP_APPEND ? DL_ENOTLEADER : a->fail_code, why);
		return;
	}
	switch (h->type) {
	case TP_APPEND: on_append(a, m->frame, h); break;
	case TP_GET: rt_on_get(a, m->frame, h); break;
	case TP_METADATA: rt_on_metadata(a, m->frame, h); break;
	default:
		if (h->sender[0] == '\0')
			rt_reply_error(a, m->frame, h->request_id, DL_EPROTO, "unexpected message type");
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
		rt_actor_fail(a, error, "flushing to disk", NULL);
		return;
	}
	struct raft_update u;
	if (state) {
		struct raft_event ev = {.type = RAFT_EV_STATE_PERSISTED,
					.state = {.term = st_term, .vote = st_vote}};
		rt_step(a, &ev, &u);
	}
	if (index > 0) {
		struct raft_event ev = {.type = RAFT_EV_PERSISTED,
					.persisted = {.index = index, .term = term}};
		rt_step(a, &ev, &u);
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
			rt_step(a, &ev, &u);
		free(m);
		break;
	}
	case MAIL_PROPOSE: /* a local request: local.c owns it from here */
		rt_on_local_propose(a, (struct rt_local *)m);
		break;
	case MAIL_READ:
		rt_on_local_read(a, (struct rt_local *)m);
		break;
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
	DL_ASSERT(a->tick_ns > 0);
	uint64_t phase = a->node->grid_seed % a->tick_ns;
	if (now < phase)
		return phase; /* not reached in practice: the clock counts from boot */
	uint64_t start = now - (now - phase) % a->tick_ns;
	DL_ASSERT(start <= now && start + a->tick_ns > now);
	return start;
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
	DL_ASSERT(k >= 1);
	a->last_tick_ns += k * a->tick_ns;
	DL_ASSERT(a->last_tick_ns <= now);
	uint64_t grid = a->last_tick_ns / a->tick_ns; /* the node-wide tick count (phase < tick_ns) */
	if (k > a->max_catchup_ticks) /* a long stall: do not replay it all */
		k = a->max_catchup_ticks;
	struct raft_update u;
	for (uint64_t i = 0; i < k && !a->failed; i++) {
		struct raft_event ev = {.type = RAFT_EV_TICK, .tick = {.now = grid - k + 1 + i}};
		rt_step(a, &ev, &u);
	}
}

static void maybe_clean(struct rt_actor *a, uint64_t now)
{
	if (now < a->next_clean_ns)
		return;
	a->next_clean_ns = now + (uint64_t)a->cfg.clean_interval_ms * 1000000ull;
	struct sto_clean_result res;
	struct dl_errctx err = {{0}};
	/* Never past what the application has applied (embedding API). */
	uint64_t upto = a->applied < a->commit ? a->applied : a->commit;
	if (sto_clean(a->store, upto, &res, &err) == 0 && res.segments_deleted > 0)
		dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id,
		       "cleaned %u segments; first index now %llu%s", res.segments_deleted,
		       (unsigned long long)res.first_index, res.forced ? " (disk full)" : "");
}

static int member_boot(struct rt_actor *a, struct dl_errctx *err);


/* A stopped member tries again (rt_actor_fail): the old core and store go,
 * as in a crash of this member alone, and a new core boots from what the
 * reopened store holds, if the disk has room again. */
static void actor_resume(struct rt_actor *a, uint64_t now)
{
	if (!a->failed || now < a->retry_ns)
		return;
	DL_ASSERT(a->pend_count == 0 && a->prop_reqs == 0);
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
		snprintf(a->fail_reason, sizeof(a->fail_reason), "%s", rt_fail_reason(rc));
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
	DL_ASSERT(a->raft != NULL && a->store != NULL);
	DL_ASSERT(a->pend_count == 0); /* all answered when it failed */
	a->failed = false;
	a->fail_reason[0] = '\0';
	a->last_tick_ns = grid_start(a, now);
	rt_gets_resolve(a); /* reads the recovered commit index covers */
	dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "resumed after %u tries", a->retries);
}

static uint64_t next_wake_ns(struct rt_actor *a)
{
	if (a->failed)
		return a->retry_ns < a->wget_next_ns ? a->retry_ns : a->wget_next_ns;
	uint64_t due = a->last_tick_ns + (uint64_t)raft_ticks_until_due(a->raft) * a->tick_ns;
	if (a->wget_next_ns < due)
		due = a->wget_next_ns;
	if (a->fetch_index != 0 && a->fetch_next_ns < due)
		due = a->fetch_next_ns;
	if (a->notice_ns != 0 && a->notice_ns < due)
		due = a->notice_ns;
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
	uint64_t now = dl_now_ns();
	a->last_tick_ns = grid_start(a, now);
	a->next_clean_ns = now + (uint64_t)a->cfg.clean_interval_ms * 1000000ull;
	while (!atomic_load_explicit(&a->stopping, memory_order_relaxed)) {
		now = dl_now_ns();
		actor_resume(a, now);
		if (!a->failed) {
			run_ticks(a, now);
			maybe_clean(a, now);
		}
		uint32_t handled = 0;
		for (; handled < RT_DRAIN_MAX; handled++) {
			struct mb_node *nd = mb_pop(&a->mb);
			if (nd == NULL)
				break;
			handle_mail(a, (struct mail *)nd);
		}
		/* The one step of the pass for client appends: every append
		 * queued above (rt_queue_append) is proposed to Raft here, as
		 * one proposal, rather than one step per request. */
		rt_propose_batch(a);
		DL_ASSERT(a->prop_reqs == 0 && a->prop_n == 0);
		if (!a->failed && a->applied < a->commit) {
			rt_apply_committed(a); /* a backlog, RT_APPLY_PER_PASS at a time */
			rt_pend_resolve(a);    /* the appends it applied */
		}
		rt_maybe_repair(a);
		rt_maybe_hand_off(a);
		if (a->failed || a->role != RAFT_LEADER) {
			a->notice_ns = 0;
		} else if (handled > 0) {
			/* raft.h, "Commit notices": mail may have moved the
			 * commit index; if no more comes for a while, tell the
			 * followers what no append carried. */
			a->notice_ns = now + RT_NOTICE_IDLE_NS;
		} else if (a->notice_ns != 0 && now >= a->notice_ns) {
			a->notice_ns = 0;
			struct raft_event ev = {.type = RAFT_EV_NOTIFY};
			struct raft_update u;
			rt_step(a, &ev, &u);
		}
		rt_flush_peers(a);
		rt_gets_expire(a, dl_now_ns());
		bool idle = mb_empty(&a->mb) && (a->cfg.apply == NULL || a->failed ||
						  a->applied >= a->commit);
		uint64_t since = now - a->last_publish_ns;
		if (a->dirty && (idle || since >= RT_PUBLISH_INTERVAL_NS)) {
			rt_publish(a);
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
				rt_reply_error(a, m->frame, m->hdr.request_id, DL_ECLOSED,
					    "member is stopping");
			tp_frame_release(m->frame);
			free(m);
		} else if (m->kind == MAIL_TRANSFER) {
			free(m);
		} else if (m->kind == MAIL_PROPOSE || m->kind == MAIL_READ) {
			rt_local_drop(a, (struct rt_local *)m, DL_ECLOSED, "member is stopping");
		}
	}
	/* Flush what is appended, then answer what that committed. */
	struct dl_errctx err = {{0}};
	if (!a->failed && sto_sync(a->store, &err) != 0)
		dl_log(DL_LOG_WARN, a->cfg.group, a->cfg.self_id, "final sync: %s", err.msg);
	rt_pend_fail_all(a, DL_ECLOSED, "member stopped before the entries committed");
	rt_gets_fail_all(a, DL_ECLOSED, "member stopped before the entry committed");
	rt_publish(a);
	return NULL;
}

static void actor_free(struct rt_actor *a)
{
	if (a == NULL)
		return;
	DL_ASSERT(!a->thread_started); /* joined, or never started */
	if (a->pend != NULL) {
		while (a->pend_count > 0)
			rt_pend_pop(a);
		free(a->pend);
	}
	DL_ASSERT(a->wget_count == 0); /* answered when the thread ended */
	free(a->wgets);
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
	if (mc->max_pending_bytes == 0)
		return dl_errf(err, DL_EINVAL, "%s: max_pending_bytes must be above 0", mc->group);
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
	a->raft_cfg.preferred_id = mc->preferred_id[0] ? rt_member_rid(a, mc->preferred_id) : 0;
	a->raft_cfg.fixed_leader = mc->fixed_leader_id[0] ? rt_member_rid(a, mc->fixed_leader_id) : 0;
	a->raft_cfg.max_append_entries = mc->max_append_entries;
	a->raft_cfg.max_append_bytes = mc->max_append_bytes;
	a->raft_cfg.max_inflight_msgs = mc->max_inflight_msgs;
	a->raft_cfg.thin_heartbeat_acks = a->raft_cfg.election_ticks >= 3 * a->raft_cfg.heartbeat_ticks;
	/* check_member_config: heartbeat >= 2 ms, shorter than the election timeout. */
	DL_ASSERT(a->tick_ns > 0);
	DL_ASSERT(a->raft_cfg.election_ticks > a->raft_cfg.heartbeat_ticks);
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
	a->commit = boot.commit;
	/* With an apply callback, `applied` is the application's (set at
	 * creation, then moved by each apply) and survives a reboot after a
	 * storage error: an entry is applied once per run whatever the
	 * recovered commit says. */
	if (a->cfg.apply == NULL)
		a->applied = boot.commit;

	a->log_ops = (struct raft_log_ops){rt_log_term_at, rt_log_entry_bytes};
	a->raft_cfg.seed = dl_now_ns() ^ ((uint64_t)(uintptr_t)a << 16);
	if (raft_new(&a->raft_cfg, &a->log_ops, a, &boot, &a->raft) != RAFT_OK)
		return dl_errf(err, DL_EINVAL, "%s/%s: the Raft configuration or the recovered state is "
					       "inconsistent", mc->group, mc->self_id);
	DL_ASSERT(a->raft != NULL && a->commit <= boot.last_index);
	dl_log(DL_LOG_INFO, mc->group, mc->self_id,
	       "store recovered: entries %llu..%llu, committed %llu, term %llu%s",
	       (unsigned long long)info.first_index, (unsigned long long)info.last_index,
	       (unsigned long long)boot.commit, (unsigned long long)boot.term,
	       info.recovered_cut ? ", torn tail cut" : "");
	return 0;
}

int rt_actor_new(struct rt_node *n, const struct rt_member_config *mc, struct rt_actor **out,
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
	a->wget_next_ns = UINT64_MAX;
	a->cfg.store.group = a->cfg.group;
	a->cfg.store.self_id = a->cfg.self_id;
	a->cfg.store.on_durable = on_durable;
	a->cfg.store.on_durable_ctx = a;
	pthread_mutex_init(&a->dur_mu, NULL);
	pthread_mutex_init(&a->st_mu, NULL);
	mb_init(&a->mb, RT_MAILBOX_MAX_MAILS);
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
	a->applied = mc->apply != NULL ? mc->applied_index : 0;
	rc = member_boot(a, err);
	if (rc != 0)
		goto err_free;
	if (mc->apply != NULL && sto_first_index(a->store) > a->applied + 1 &&
	    sto_last_index(a->store) >= sto_first_index(a->store)) {
		rc = dl_errf(err, DL_ECOMPACTED,
			     "%s/%s: applied index %llu given, but the log starts at %llu: entries "
			     "%llu..%llu were cleaned",
			     mc->group, mc->self_id, (unsigned long long)a->applied,
			     (unsigned long long)sto_first_index(a->store),
			     (unsigned long long)a->applied + 1,
			     (unsigned long long)sto_first_index(a->store) - 1);
		goto err_free;
	}
	rt_publish(a);
	*out = a;
	return 0;

err_free:
	actor_free(a);
	return rc;
}

int rt_actor_start(struct rt_node *n, struct rt_actor *a, struct dl_errctx *err)
{
	DL_ASSERT(!a->thread_started && !a->stop_sent);
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

void rt_actor_signal_stop(struct rt_actor *a)
{
	if (a->thread_started && !a->stop_sent) {
		a->stop_sent = true;
		mb_push(&a->mb, &a->stop_mail.node);
	}
}

void rt_actor_stop(struct rt_actor *a)
{
	if (a->thread_started) {
		rt_actor_signal_stop(a);
		DL_ASSERT(a->stop_sent);
		pthread_join(a->thread, NULL);
		a->thread_started = false;
		/* The actor answered everything before its thread ended. */
		DL_ASSERT(a->pend_count == 0 && atomic_load(&a->stopping));
	}
	dl_log(DL_LOG_INFO, a->cfg.group, a->cfg.self_id, "stopped");
	actor_free(a);
}
