/* The core's assertions are invariants of the core alone: no message, however
 * absurd or well aimed, may trip one (raft.h, "Impossible messages"). One core
 * is fed a seeded stream of random messages from its peers (any type, terms
 * around its own, indexes around its log, entries well formed or not), mixed
 * with ticks, proposals and persistence reports, for many steps; it may do
 * anything a lied-to member does except abort. Safety is not checked here:
 * forged messages can break it, the other suites check it for honest peers. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "raft/raft.h"

#define LOG_CAP 4096
#define STEPS 20000

struct tlog {
	uint64_t terms[LOG_CAP + 1]; /* by index, [0] unused */
	uint64_t last;
};

struct hostile {
	struct tlog log;
	struct raft *r;
	uint64_t rng;
	uint64_t step;
	uint64_t seed;
	uint64_t inc[4]; /* each peer's incarnation, by id */
};

static struct hostile *current; /* for the assertion handler */

static void on_raft_assert(const char *file, int line, const char *expr)
{
	cr_assert_fail("raft assertion %s:%d: %s (seed %llu, step %llu)", file, line, expr,
	               (unsigned long long)current->seed, (unsigned long long)current->step);
}

static bool log_term_at(void *ctx, uint64_t index, uint64_t *term)
{
	const struct tlog *l = ctx;
	if (index > l->last)
		return false;
	*term = index == 0 ? 0 : l->terms[index];
	return true;
}

static uint32_t log_entry_bytes(void *ctx, uint64_t index)
{
	(void)ctx;
	(void)index;
	return 16;
}

static const struct raft_log_ops ops = {.term_at = log_term_at, .entry_bytes = log_entry_bytes};

static uint64_t rnd(struct hostile *h, uint64_t bound)
{
	uint64_t z = (h->rng += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return bound == 0 ? 0 : z % bound;
}

/* Carries out an update at once: the log changes, and every write durable. */
static void step(struct hostile *h, const struct raft_event *ev);

static void apply(struct hostile *h, const struct raft_update *u)
{
	if (u->truncate)
		h->log.last = u->truncate_after;
	for (uint32_t i = 0; i < u->n_entries; i++)
		h->log.terms[u->first_index + i] = u->entries[i].term;
	if (u->n_entries > 0)
		h->log.last = u->first_index + u->n_entries - 1;
	uint64_t term = u->term;
	raft_id vote = u->vote;
	bool state = u->hard_state_changed, entries = u->n_entries > 0 || u->truncate;
	if (state && rnd(h, 4) != 0) {
		struct raft_event ev = {.type = RAFT_EV_STATE_PERSISTED};
		ev.state.term = term;
		ev.state.vote = vote;
		step(h, &ev);
	}
	if (entries && h->log.last > 0 && rnd(h, 4) != 0) {
		struct raft_event ev = {.type = RAFT_EV_PERSISTED};
		ev.persisted.index = h->log.last;
		ev.persisted.term = h->log.terms[h->log.last];
		step(h, &ev);
	}
}

static void step(struct hostile *h, const struct raft_event *ev)
{
	struct raft_update u;
	raft_step(h->r, ev, &u);
	cr_assert(u.n_entries == 0 || u.first_index + u.n_entries - 1 <= LOG_CAP);
	apply(h, &u);
}

/* A value near `base`: mostly close, sometimes anything. */
static uint64_t near(struct hostile *h, uint64_t base, uint64_t spread)
{
	switch (rnd(h, 8)) {
	case 0: return rnd(h, UINT64_MAX);
	case 1: return 0;
	default: {
		uint64_t d = rnd(h, 2 * spread + 1);
		return d >= spread ? base + (d - spread) : (base > spread - d ? base - (spread - d) : 0);
	}
	}
}

static void random_message(struct hostile *h, struct raft_message *m, struct raft_entry *e)
{
	struct raft_status st;
	raft_get_status(h->r, &st);
	memset(m, 0, sizeof(*m));
	m->type = (uint8_t)(rnd(h, 20) == 0 ? rnd(h, 256) : 1 + rnd(h, RAFT_MSG_TYPE_MAX));
	/* Mostly what moves the core on: votes to a candidate, answers to a
	 * leader; the rest at random. */
	if (st.role == RAFT_PRECANDIDATE && rnd(h, 2) == 0)
		m->type = RAFT_MSG_PREVOTE_RESP;
	else if (st.role == RAFT_CANDIDATE && rnd(h, 2) == 0)
		m->type = RAFT_MSG_VOTE_RESP;
	else if (st.role == RAFT_LEADER && rnd(h, 2) == 0)
		m->type = rnd(h, 3) == 0 ? RAFT_MSG_HEARTBEAT_RESP : RAFT_MSG_APPEND_RESP;
	m->from = rnd(h, 20) == 0 ? (raft_id)rnd(h, 5) : (raft_id)(2 + rnd(h, 2));
	m->to = rnd(h, 20) == 0 ? (raft_id)rnd(h, 5) : 1;
	uint64_t dt = rnd(h, 50);
	m->term = dt == 0 ? near(h, st.term, 3) : dt == 1 ? st.term + 1 : st.term;
	if (m->type == RAFT_MSG_PREVOTE_RESP && st.role == RAFT_PRECANDIDATE && dt > 1)
		m->term = st.term + 1;
	/* A peer's store is replaced now and then; old messages linger. */
	uint64_t *inc = &h->inc[m->from < 4 ? m->from : 0];
	if (rnd(h, 500) == 0)
		(*inc)++;
	m->incarnation = rnd(h, 50) == 0 ? rnd(h, *inc + 1) : *inc;
	m->voter = rnd(h, 4) != 0;
	m->peer_voter_inc = rnd(h, 8) == 0 ? rnd(h, 3) : 0;
	const uint64_t last = st.last_index;
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		m->vote.last_index = near(h, last, 3);
		m->vote.last_term = near(h, st.last_term, 1);
		m->vote.transfer = rnd(h, 4) == 0;
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		m->vote_resp.granted = rnd(h, 5) != 0;
		break;
	case RAFT_MSG_APPEND: {
		uint64_t prev = rnd(h, 8) == 0 ? near(h, last, 5) : (last > 3 ? last - rnd(h, 4) : 0);
		uint64_t pt = 0;
		if (!log_term_at(&h->log, prev, &pt) || rnd(h, 6) == 0)
			pt = near(h, m->term, 1);
		m->append.prev_index = prev;
		m->append.prev_term = pt;
		m->append.commit = near(h, st.commit_index, 4);
		uint32_t n = (uint32_t)rnd(h, 5);
		uint64_t t = pt;
		for (uint32_t i = 0; i < n; i++) {
			if (rnd(h, 3) == 0 && t < m->term)
				t++;
			e[i].term = rnd(h, 30) == 0 ? rnd(h, m->term + 2) : t;
			e[i].data = "x";
			e[i].len = 1;
		}
		m->append.n_entries = rnd(h, 50) == 0 ? 7 : n; /* 7: past the entries */
		m->append.entries = rnd(h, 50) == 0 ? NULL : e;
		if (m->append.n_entries == 7)
			m->append.entries = NULL;
		break;
	}
	case RAFT_MSG_APPEND_RESP:
		m->append_resp.reject = rnd(h, 4) == 0;
		m->append_resp.last_index = rnd(h, 4) == 0 ? near(h, last, 3) : rnd(h, last + 1);
		m->append_resp.match_index = rnd(h, 4) == 0 ? near(h, last, 3)
		                                            : rnd(h, m->append_resp.last_index + 1);
		m->append_resp.rejected_index = near(h, last, 3);
		m->append_resp.hint_index = near(h, last, 3);
		m->append_resp.hint_term = near(h, st.last_term, 1);
		break;
	case RAFT_MSG_HEARTBEAT:
		m->heartbeat.commit = near(h, st.commit_index, 3);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		m->heartbeat_resp.match_index = near(h, last, 3);
		m->heartbeat_resp.want_lead = rnd(h, 2) == 0;
		break;
	default:
		break;
	}
}

static void run(uint64_t seed, bool prevote, bool thin)
{
	struct hostile *h = calloc(1, sizeof(*h));
	cr_assert_not_null(h);
	h->seed = seed;
	h->rng = seed;
	current = h;
	raft_assert_handler = on_raft_assert;

	struct raft_config cfg;
	raft_config_defaults(&cfg);
	cfg.self = 1;
	cfg.n_members = 3;
	cfg.members[0] = 1, cfg.members[1] = 2, cfg.members[2] = 3;
	cfg.prevote = prevote;
	cfg.thin_heartbeat_acks = thin;
	cfg.preferred_id = 1;
	cfg.max_inflight_msgs = 4;
	cfg.max_append_entries = 3;
	cfg.seed = seed;
	struct raft_boot boot = {.first_index = 1, .incarnation = 1, .voter = true};
	cr_assert_eq(raft_new(&cfg, &ops, &h->log, &boot, &h->r), RAFT_OK);

	struct raft_message m;
	struct raft_entry e[8], prop[3];
	for (h->step = 0; h->step < STEPS; h->step++) {
		struct raft_event ev = {0};
		uint64_t pick = rnd(h, 10);
		if (pick < 6) {
			random_message(h, &m, e);
			ev.type = RAFT_EV_MESSAGE;
			ev.msg = &m;
		} else if (pick < 8) {
			ev.type = RAFT_EV_TICK;
		} else if (pick < 9 && h->log.last + 8 < LOG_CAP) {
			memset(prop, 0, sizeof(prop));
			ev.type = RAFT_EV_PROPOSE;
			ev.propose.entries = prop;
			ev.propose.n = 1 + (uint32_t)rnd(h, 3);
		} else {
			ev.type = RAFT_EV_TRANSFER;
			ev.target = (raft_id)rnd(h, 4);
		}
		if (ev.type == RAFT_EV_MESSAGE && h->log.last + 8 >= LOG_CAP)
			break; /* the test log is full: enough */
		step(h, &ev);
	}
	raft_free(h->r);
	raft_assert_handler = NULL;
	current = NULL;
	free(h);
}

Test(raft_hostile, random_messages_never_trip_an_assertion)
{
	for (uint64_t seed = 1; seed <= 8; seed++)
		run(seed, seed % 2 == 0, seed % 4 == 1);
}
