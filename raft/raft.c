/*
 * raft.c - the pure Raft core. See raft.h for the contract.
 *
 * No thread, file, socket, clock or random source is used here; all memory
 * is allocated in raft_new(). The step path does not allocate.
 */
#include "raft/raft_internal.h"

#include <stdlib.h>
#include <string.h>

void (*raft_assert_handler)(const char *file, int line, const char *expr);

void raft_assert_fail(const char *file, int line, const char *expr)
{
	if (raft_assert_handler != NULL)
		raft_assert_handler(file, line, expr);
	abort();
}

struct raft_message *raft_msg_new(struct raft *r, uint8_t type, raft_id to)
{
	if (r->n_out >= r->cfg.max_outbox) {
		r->dropped_msgs++;
		return NULL;
	}
	struct raft_message *m = &r->out[r->n_out++];
	memset(m, 0, sizeof(*m));
	m->type = type;
	m->from = r->cfg.self;
	m->to = to;
	m->term = r->term;
	m->incarnation = r->incarnation;
	m->voter = r->voter;
	return m;
}

/* Messages of an older term are useless once the term moved: drop them. */
void raft_outbox_purge_stale(struct raft *r)
{
	uint32_t k = 0;
	for (uint32_t i = 0; i < r->n_out; i++)
		if (r->out[i].term >= r->term)
			r->out[k++] = r->out[i];
	r->n_out = k;
}

static bool message_is_valid(struct raft *r, const struct raft_message *m)
{
	if (m == NULL || m->type < RAFT_MSG_PREVOTE || m->type > RAFT_MSG_TYPE_MAX)
		return false;
	if (m->to != r->cfg.self || m->from == r->cfg.self || m->from == 0)
		return false;
	return progress_of(r, m->from) != NULL;
}

static void handle_message(struct raft *r, const struct raft_message *m)
{
	if (!message_is_valid(r, m)) {
		r->ignored_msgs++;
		return;
	}
	if (!raft_note_incarnation(r, progress_of(r, m->from), m))
		return;
	if (!raft_handle_term(r, m))
		return;
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		raft_handle_vote_request(r, m);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		raft_handle_vote_resp(r, m);
		break;
	case RAFT_MSG_APPEND:
	case RAFT_MSG_HEARTBEAT:
		if (r->role == RAFT_LEADER) {
			/* Two leaders in one term cannot be: drop it. */
			r->ignored_msgs++;
			return;
		}
		if (r->role == RAFT_FOLLOWER && r->leader != 0 && r->leader != m->from) {
			/* A second leader of our term: raft.h, "Impossible
			 * messages". */
			r->refused_msgs++;
			return;
		}
		if (r->role != RAFT_FOLLOWER || r->leader != m->from)
			raft_become_follower(r, m->term, m->from);
		r->election_elapsed = 0;
		raft_note_vouched(r, m);
		if (m->type == RAFT_MSG_APPEND)
			raft_handle_append(r, m);
		else
			raft_handle_heartbeat(r, m);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_append_resp(r, m);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		if (r->role == RAFT_LEADER)
			raft_handle_heartbeat_resp(r, m);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		if (r->role == RAFT_FOLLOWER && r->leader == m->from && r->cfg.fixed_leader == 0) {
			raft_become_candidate(r, true);
			r->takeover = r->role == RAFT_CANDIDATE;
		}
		break;
	}
}

/* What holds between any two steps, whatever the messages were. */
static void check_invariants(const struct raft *r)
{
	RAFT_ASSERT(r->role <= RAFT_LEADER && r->n_out <= r->cfg.max_outbox);
	RAFT_ASSERT(r->commit <= r->last_index && r->durable <= r->last_index);
	/* Entries carry the term of the leader that made them, at most ours;
	 * the caller confirms only the hard state we handed out. */
	RAFT_ASSERT(r->last_term <= r->term && r->confirmed_term <= r->term);
	/* A candidate and a leader voted for themselves in their term. */
	RAFT_ASSERT(r->role < RAFT_CANDIDATE || r->vote == r->cfg.self);
	if (r->role != RAFT_LEADER)
		return;
	RAFT_ASSERT(r->leader == r->cfg.self && r->voter && r->term_start <= r->last_index);
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		const struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self)
			continue;
		/* etcd's Progress: match < next <= last + 1. */
		RAFT_ASSERT(pr->match < pr->next && pr->next <= r->last_index + 1);
		RAFT_ASSERT(pr->infl_count <= r->cfg.max_inflight_msgs);
		RAFT_ASSERT(pr->commit_told <= r->commit);
	}
}

static void fixed_boot(struct raft *r)
{
	r->fixed_boot_pending = false;
	if (r->cfg.fixed_leader != r->cfg.self) {
		r->leader = r->cfg.fixed_leader;
		return;
	}
	/* A restarted fixed leader takes a new term so that entries it lost
	 * in the crash cannot clash with what it sends now. */
	r->term = (r->term > r->last_term ? r->term : r->last_term) + 1;
	r->vote = r->cfg.self;
	raft_become_leader(r, false);
	RAFT_ASSERT(r->role == RAFT_LEADER && r->term == r->last_term);
}

void raft_config_defaults(struct raft_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->election_ticks = 10;
	cfg->heartbeat_ticks = 2;
	cfg->prevote = true;
	cfg->check_quorum = true;
	cfg->max_append_entries = 1024;
	cfg->max_append_bytes = 1024 * 1024;
	cfg->max_inflight_msgs = 64;
	cfg->max_inflight_bytes = 32ull * 1024 * 1024;
	cfg->max_outbox = 256;
}

static bool config_is_valid(const struct raft_config *cfg)
{
	if (cfg->self == 0 || cfg->n_members == 0 || cfg->n_members > RAFT_MAX_MEMBERS)
		return false;
	bool self_found = false;
	for (uint32_t i = 0; i < cfg->n_members; i++) {
		if (cfg->members[i] == 0)
			return false;
		if (cfg->members[i] == cfg->self)
			self_found = true;
		for (uint32_t j = 0; j < i; j++)
			if (cfg->members[i] == cfg->members[j])
				return false;
	}
	if (!self_found)
		return false;
	if (cfg->election_ticks < 2 || cfg->heartbeat_ticks == 0 ||
	    cfg->heartbeat_ticks >= cfg->election_ticks)
		return false;
	if (cfg->thin_heartbeat_acks && cfg->election_ticks < 3 * cfg->heartbeat_ticks)
		return false;
	if (cfg->max_append_entries == 0 || cfg->max_append_bytes == 0 ||
	    cfg->max_inflight_msgs == 0 || cfg->max_inflight_bytes == 0 ||
	    cfg->max_outbox < 2 * cfg->n_members)
		return false;
	if (cfg->preferred_id != 0) {
		bool ok = false;
		for (uint32_t i = 0; i < cfg->n_members; i++)
			ok = ok || cfg->members[i] == cfg->preferred_id;
		if (!ok)
			return false;
	}
	if (cfg->fixed_leader != 0) {
		bool ok = false;
		for (uint32_t i = 0; i < cfg->n_members; i++)
			ok = ok || cfg->members[i] == cfg->fixed_leader;
		if (!ok)
			return false;
	}
	return true;
}

static bool boot_is_valid(const struct raft_boot *b)
{
	if (b->first_index == 0 || b->first_index > b->last_index + 1)
		return false;
	if (b->commit > b->last_index)
		return false;
	if ((b->last_index == 0) != (b->last_term == 0))
		return false;
	return true;
}

int raft_new(const struct raft_config *cfg, const struct raft_log_ops *ops, void *ctx,
	     const struct raft_boot *boot, struct raft **out)
{
	*out = NULL;
	if (cfg == NULL || ops == NULL || ops->term_at == NULL || ops->entry_bytes == NULL ||
	    boot == NULL || !config_is_valid(cfg) || !boot_is_valid(boot))
		return RAFT_EINVAL;
	struct raft *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return RAFT_ENOMEM;
	r->cfg = *cfg;
	r->ops = ops;
	r->ctx = ctx;
	/* malloc, not calloc: raft_msg_new() clears each message it hands out and
	 * in-flight records are written before they are read, so pages a
	 * member never uses (an idle follower's outbox) stay untouched, not
	 * resident. */
	r->out = malloc(cfg->max_outbox * sizeof(*r->out));
	if (r->out == NULL)
		goto err_free;
	for (uint32_t i = 0; i < cfg->n_members; i++) {
		r->prs[i].id = cfg->members[i];
		if (cfg->members[i] == cfg->self) {
			r->self_slot = i;
			continue;
		}
		r->prs[i].infl = malloc(cfg->max_inflight_msgs * sizeof(struct inflight));
		if (r->prs[i].infl == NULL)
			goto err_free;
	}
	r->rng = cfg->seed ^ ((uint64_t)cfg->self << 32);
	r->term = r->confirmed_term = r->reported_term = boot->term;
	r->vote = r->confirmed_vote = r->reported_vote = boot->vote;
	r->incarnation = boot->incarnation;
	r->voter = r->reported_voter = boot->voter;
	r->prs[r->self_slot].incarnation = boot->incarnation;
	r->first_index = boot->first_index;
	r->last_index = boot->last_index;
	r->last_term = boot->last_term;
	/* What survived the crash is what storage recovered: durable. */
	r->durable = boot->last_index;
	r->commit = boot->commit;
	if (r->last_term > r->term) {
		/* Entries of a newer term reached the disk before the term did;
		 * no vote of that term was ever released (raft.h), so it is safe
		 * to take the term with no vote. */
		r->term = r->last_term;
		r->vote = 0;
	}
	r->role = RAFT_FOLLOWER;
	raft_reset_election_timer(r);
	r->fixed_boot_pending = cfg->fixed_leader != 0;
	check_invariants(r);
	*out = r;
	return RAFT_OK;

err_free:
	raft_free(r);
	return RAFT_ENOMEM;
}

void raft_free(struct raft *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < RAFT_MAX_MEMBERS; i++)
		free(r->prs[i].infl);
	free(r->out);
	free(r);
}

/* One event of raft.h's list, with `u` already reset. */
static void step_event(struct raft *r, const struct raft_event *ev, struct raft_update *u)
{
	switch (ev->type) {
	case RAFT_EV_TICK:
		r->now_ticks = ev->tick.now;
		raft_tick(r);
		break;
	case RAFT_EV_MESSAGE:
		handle_message(r, ev->msg);
		break;
	case RAFT_EV_PROPOSE:
		raft_propose(r, ev->propose.entries, ev->propose.n, u);
		break;
	case RAFT_EV_PERSISTED:
		raft_persisted(r, ev->persisted.index, ev->persisted.term);
		break;
	case RAFT_EV_STATE_PERSISTED:
		if (ev->state.term == r->term && ev->state.vote == r->vote) {
			r->confirmed_term = r->term;
			r->confirmed_vote = r->vote;
		}
		break;
	case RAFT_EV_TRANSFER:
		if (r->role == RAFT_LEADER)
			raft_start_transfer(r, ev->target);
		break;
	case RAFT_EV_NOTIFY:
		raft_send_commit_notices(r);
		break;
	default:
		r->ignored_msgs++;
		break;
	}
}

void raft_step(struct raft *r, const struct raft_event *ev, struct raft_update *u)
{
	memset(u, 0, sizeof(*u));
	if (r->out_released) {
		r->n_out = 0;
		r->out_released = false;
	}
	r->u = u;
	uint8_t role0 = r->role;
	raft_id leader0 = r->leader;
	uint64_t commit0 = r->commit;
	uint64_t term0 = r->term;
	raft_id vote0 = r->vote;
	uint64_t last0 = r->last_index;

	bool booted = false;
	if (r->fixed_boot_pending) {
		fixed_boot(r);
		booted = r->role == RAFT_LEADER;
	}
	if (booted && ev->type == RAFT_EV_PROPOSE) {
		/* The boot appended a no-op to this update, and an update holds
		 * one append: the caller retries the proposal. */
		u->propose_rc = RAFT_EBUSY;
	} else {
		step_event(r, ev, u);
	}

	/* Post-conditions: terms never go down; commit never passes the log
	 * and never moves back. */
	RAFT_ASSERT(r->term >= term0);
	RAFT_ASSERT(r->commit >= commit0);
	RAFT_ASSERT(r->commit <= r->last_index);
	/* Raft §5.2: at most one vote per term, never taken back. */
	RAFT_ASSERT(r->term != term0 || vote0 == 0 || r->vote == vote0);
	/* Raft §5.3: a leader never truncates its log in its term. */
	RAFT_ASSERT(role0 != RAFT_LEADER || r->term != term0 || (!u->truncate && r->last_index >= last0));
	check_invariants(r);

	if (r->term != r->reported_term || r->vote != r->reported_vote ||
	    r->voter != r->reported_voter) {
		u->hard_state_changed = true;
		r->reported_term = r->term;
		r->reported_vote = r->vote;
		r->reported_voter = r->voter;
	}
	u->term = r->term;
	u->vote = r->vote;
	u->voter = r->voter;
	if (r->term == r->confirmed_term && r->vote == r->confirmed_vote) {
		u->msgs = r->out;
		u->n_msgs = r->n_out;
		r->out_released = true;
	}
	u->commit_changed = r->commit != commit0;
	u->commit_index = r->commit;
	u->role = r->role;
	u->leader_id = r->leader;
	u->role_changed = r->role != role0;
	u->leader_changed = r->leader != leader0;
	r->u = NULL;
}

void raft_get_status(const struct raft *r, struct raft_status *st)
{
	memset(st, 0, sizeof(*st));
	st->self = r->cfg.self;
	st->role = r->role;
	st->term = r->term;
	st->vote = r->vote;
	st->leader_id = r->leader;
	st->first_index = r->first_index;
	st->last_index = r->last_index;
	st->last_term = r->last_term;
	st->commit_index = r->commit;
	st->durable_index = r->durable;
	st->incarnation = r->incarnation;
	st->voter = r->voter;
	st->transferee = r->transferee;
	for (uint32_t i = 0; i < r->cfg.n_members; i++) {
		const struct progress *pr = &r->prs[i];
		if (pr->id == r->cfg.self)
			continue;
		struct raft_peer_status *ps = &st->peers[st->n_peers++];
		ps->id = pr->id;
		ps->match_index = pr->match;
		ps->next_index = pr->next;
		ps->replicating = pr->state == PR_REPLICATE;
		ps->active = pr->active;
		ps->voter = counts(r, pr);
		ps->incarnation = pr->incarnation;
	}
	st->elections = r->elections;
	st->leader_changes = r->leader_changes;
	st->dropped_msgs = r->dropped_msgs;
	st->ignored_msgs = r->ignored_msgs;
	st->refused_msgs = r->refused_msgs;
	st->member_resets = r->member_resets;
	st->promotions = r->promotions;
}

uint32_t raft_ticks_until_due(const struct raft *r)
{
	uint32_t due;
	if (r->role == RAFT_LEADER && r->now_ticks != 0) {
		due = r->cfg.heartbeat_ticks - (uint32_t)(r->now_ticks % r->cfg.heartbeat_ticks);
	} else if (r->role == RAFT_LEADER) {
		due = r->cfg.heartbeat_ticks - r->heartbeat_elapsed;
	} else if (r->cfg.fixed_leader != 0) {
		due = UINT32_MAX;
	} else {
		due = r->randomized_timeout > r->election_elapsed
			      ? r->randomized_timeout - r->election_elapsed
			      : 1;
	}
	return due == 0 ? 1 : due;
}

const char *raft_role_name(uint8_t role)
{
	switch (role) {
	case RAFT_FOLLOWER: return "follower";
	case RAFT_PRECANDIDATE: return "precandidate";
	case RAFT_CANDIDATE: return "candidate";
	case RAFT_LEADER: return "leader";
	default: return "unknown";
	}
}

const char *raft_msg_type_name(uint8_t type)
{
	static const char *const names[] = {
		[RAFT_MSG_PREVOTE] = "prevote",
		[RAFT_MSG_PREVOTE_RESP] = "prevote_resp",
		[RAFT_MSG_VOTE] = "vote",
		[RAFT_MSG_VOTE_RESP] = "vote_resp",
		[RAFT_MSG_APPEND] = "append",
		[RAFT_MSG_APPEND_RESP] = "append_resp",
		[RAFT_MSG_HEARTBEAT] = "heartbeat",
		[RAFT_MSG_HEARTBEAT_RESP] = "heartbeat_resp",
		[RAFT_MSG_TIMEOUT_NOW] = "timeout_now",
	};
	if (type < RAFT_MSG_PREVOTE || type > RAFT_MSG_TYPE_MAX)
		return "unknown";
	return names[type];
}
