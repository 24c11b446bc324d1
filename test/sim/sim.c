/*
 * sim.c - the deterministic cluster simulator (see sim.h).
 *
 * Everything random comes from one xoshiro256** generator seeded from the
 * run's seed, and every queue is ordered by (tick, sequence number), so a
 * seed replays exactly. Single-threaded; the only global is the pointer the
 * raft assert hook uses to report which seed and step broke.
 *
 * Storage model, per member: `log` is what the core sees (every update
 * carried out at once), `dlog` and (d_term, d_vote) are what survives a crash.
 * Writes go through two FIFO queues, one for the hard state and one for the
 * log (truncations and appends, in order), each write completing after a
 * random delay; on completion the durable copy changes and the core hears
 * RAFT_EV_STATE_PERSISTED or RAFT_EV_PERSISTED. So the durable log is always
 * a state the log went through, and a crash brings back exactly that state.
 */
#include "sim.h"

#include "check.h"
#include "raft/raft.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SIM_BODY_MAX 24
#define SIM_MAX_BATCH 4         /* entries per client proposal */
#define SIM_MAX_DISK_OPS (1u << 20)   /* queued writes per member */
#define SIM_MAX_MSGS_QUEUED (1u << 22) /* messages in flight */
#define SIM_MAX_DELAY_TICKS 80         /* longest network delay */
#define SIM_WHEEL_SLOTS 128            /* > SIM_MAX_DELAY_TICKS */
/* leader_without_quorum: check-quorum steps a leader down at the second
 * election timeout without answers from a majority (raft.c, tick_leader),
 * so at most 2 * SIM_ELECTION_TICKS after the last answer; twice that is
 * the bound. */
#define SIM_QUORUM_LOSS_TICKS (2 * 2 * SIM_ELECTION_TICKS)
/* no_election: a majority of voters that are up, with healthy disks and
 * healthy links among them, has a leader within this many election
 * timeouts. An election takes a timeout of [T, 2T), a pre-vote and a vote
 * round trip and two hard-state writes; it may have to wait out a lease
 * (T), a leader elsewhere that lost its quorum (2T), the backoff of a
 * failed takeover (up to 8T), and retries after split votes, which are
 * common here: a seed's network delay reaches 6 ticks each way (plus 1% of
 * long delays up to SIM_MAX_DELAY_TICKS) against a 10-tick timeout, so two
 * members often pass their pre-votes together, and 15% loss fails a round
 * outright. Measured over the first 1,000 seeds of each CI run: median of
 * each seed's longest wait 10 to 12 timeouts, 99th percentile 22 to 27,
 * longest 37. The bound leaves a margin of more than two on that: a core
 * that cannot elect at all (a stuck candidate, a lease that never ends)
 * still fails it within the fault phase. Overridable at build time for
 * measuring (-DSIM_ELECTION_BOUND_TIMEOUTS=...). */
#ifndef SIM_ELECTION_BOUND_TIMEOUTS
#define SIM_ELECTION_BOUND_TIMEOUTS 100
#endif
#define SIM_MAX_QMASKS 126 /* majorities of SIM_MAX_NODES members: C(9, 5) */

typedef unsigned long long ull;

/* ---- random numbers ---------------------------------------------------- */

struct rng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void rng_seed(struct rng *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(struct rng *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Uniform in [0, n); n > 0. */
static uint64_t rng_below(struct rng *r, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

static double rng_unit(struct rng *r)
{
	return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static bool rng_chance(struct rng *r, double p)
{
	return rng_unit(r) < p;
}

static double rng_range(struct rng *r, double lo, double hi)
{
	return lo + (hi - lo) * rng_unit(r);
}

/* ---- model ------------------------------------------------------------- */

struct sim_entry {
	uint64_t term;
	uint64_t hash;
	uint32_t len;
	uint8_t type;
	raft_id prop_member; /* the leader that accepted it from a client, 0: none */
	uint32_t prop_inc;   /* ... in this run of it (sim_member.run) */
	char body[SIM_BODY_MAX];
};

struct sim_log {
	struct sim_entry *e; /* entry i at e[i - 1] */
	uint64_t len;
	uint64_t cap;
};

enum disk_kind { DISK_STATE = 1, DISK_TRUNCATE, DISK_APPEND };

struct disk_op {
	uint64_t done_tick;
	uint8_t kind;
	uint32_t n;          /* DISK_APPEND: entries */
	uint64_t arg;        /* term, truncate-after index, or first index */
	raft_id vote;        /* DISK_STATE */
	bool voter;          /* DISK_STATE */
	struct sim_entry *ents; /* DISK_APPEND: owned copy */
};

struct disk_q {
	struct disk_op *ops; /* ring, cap a power of two */
	uint32_t head;
	uint32_t len;
	uint32_t cap;
	uint64_t last_done; /* FIFO: completions never overtake */
};

struct sim_member {
	struct raft *r; /* NULL while the node is down */
	uint32_t group;
	raft_id id;
	struct sim_log log;  /* what the core sees */
	struct sim_log dlog; /* durable */
	uint64_t d_term;
	raft_id d_vote;
	bool d_voter;          /* durable voter flag (raft.h, "Voters") */
	uint64_t incarnation;  /* of its store; a wipe draws a higher one */
	uint64_t commit; /* applied up to here */
	uint64_t ckpt;   /* durable commit checkpoint, the boot commit */
	/* Highest index a core of this store was told durable (by a
	 * completion or at boot): what it may have acknowledged. */
	uint64_t acked;
	uint64_t stopped_until; /* its disk failed: down until (0: not stopped) */
	uint32_t run;           /* boots of this member, for its proposals */
	uint8_t role;
	raft_id leader;
	uint64_t term;
	/* Leader: tick of the last answer of its term from each member. */
	uint64_t heard[SIM_MAX_NODES];
	uint64_t times_leader;
	struct disk_q sq; /* hard state writes */
	struct disk_q lq; /* log writes */
};

struct sim_node {
	bool up;
	uint32_t inc; /* incarnation, +1 per crash */
	uint64_t restart_tick;
	uint64_t stall_until; /* disk stalled: no write completes before */
	uint64_t full_until;  /* disk full: writes fail with ENOSPC before */
	uint64_t blocked_until[SIM_MAX_NODES]; /* link to node j cut until */
};

struct sim_msg {
	uint64_t due;
	uint64_t seq;
	uint32_t group;
	uint32_t src_node, dst_node;
	uint32_t src_inc, dst_inc;
	struct raft_message m;
	struct sim_entry *ents; /* APPEND: owned copies of the bodies */
	struct sim_msg *next;   /* in its wheel slot, or in the free list */
};

struct sim_params {
	double loss, dup, long_delay; /* per message */
	uint32_t delay_max;           /* ticks, >= 1 */
	uint32_t disk_delay_max;      /* ticks */
	double disk_slow;             /* per write */
	uint32_t disk_slow_max;       /* ticks */
	double fault;                 /* per step */
	uint32_t down_max, partition_max; /* ticks */
	double propose, misdirect, transfer; /* per group per step */
	double wipe;                  /* per member restart: its store is lost */
	double leader_bias;           /* per crash: the leader, back at once */
	double torn;                  /* per member crash: queued writes land, the last torn */
	double eio;                   /* per write or sync: fails with EIO */
	double disk_full;             /* per step: a node's disk fills up */
	double flip;                  /* per member restart: a byte of an entry flipped */
	bool crash_drops_outbound;
	uint32_t heartbeat_ticks;
	uint32_t max_append_entries, max_inflight_msgs, max_outbox;
};

struct sim {
	struct sim_config cfg;
	struct sim_params p;
	struct rng rng;
	uint64_t tick;
	uint32_t n; /* nodes, members per group */
	struct sim_node node[SIM_MAX_NODES];
	struct sim_member *m; /* m[group * n + id - 1] */
	raft_id client_leader[SIM_MAX_GROUPS];
	uint64_t next_seq[SIM_MAX_GROUPS];
	struct chk *chk;
	/* Messages in flight, by due tick: slot due % SIM_WHEEL_SLOTS holds
	 * the messages due at that one tick, in the order they were sent. */
	struct sim_msg *wheel_head[SIM_WHEEL_SLOTS];
	struct sim_msg *wheel_tail[SIM_WHEEL_SLOTS];
	uint64_t in_flight;
	uint64_t msg_seq;
	uint64_t next_incarnation;
	struct sim_msg *free_msgs;
	struct raft_entry *scratch; /* inbound append entries */
	uint32_t scratch_cap;
	/* no_election: the majorities of members (bit id - 1), and per group
	 * and majority the last tick it was not a connected set of voters or
	 * had a leader. */
	uint32_t qmask[SIM_MAX_QMASKS];
	uint32_t n_qmasks;
	uint64_t *cq_since; /* [group * n_qmasks + j] */
	struct sim_result *res;
	bool failed;
	jmp_buf assert_env;
};

/* ---- reporting --------------------------------------------------------- */

static void *xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);
	if (p == NULL) {
		fprintf(stderr, "sim: out of memory (%zu bytes)\n", size);
		abort();
	}
	return p;
}

static void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size ? size : 1);
	if (q == NULL) {
		fprintf(stderr, "sim: out of memory (%zu bytes)\n", size);
		abort();
	}
	return q;
}

__attribute__((format(printf, 3, 4))) static bool sim_fail(struct sim *s, const char *invariant,
							   const char *fmt, ...)
{
	if (s->failed)
		return false;
	s->failed = true;
	s->res->ok = false;
	s->res->step = s->tick;
	snprintf(s->res->invariant, sizeof(s->res->invariant), "%s", invariant);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(s->res->detail, sizeof(s->res->detail), fmt, ap);
	va_end(ap);
	return false;
}

/* Takes over the checker's first violation; false once anything failed. */
static bool healthy(struct sim *s)
{
	if (!s->failed) {
		const struct chk_violation *v = chk_failed(s->chk);
		if (v != NULL)
			sim_fail(s, v->invariant, "%s", v->detail);
	}
	return !s->failed;
}

__attribute__((format(printf, 2, 3))) static void trace_line(struct sim *s, const char *fmt, ...)
{
	fprintf(s->cfg.trace, "t=%llu ", (ull)s->tick);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(s->cfg.trace, fmt, ap);
	va_end(ap);
	fputc('\n', s->cfg.trace);
}

#define TRACE(s, ...)                             \
	do {                                      \
		if ((s)->cfg.trace != NULL)       \
			trace_line(s, __VA_ARGS__); \
	} while (0)

static const char *msg_str(const struct raft_message *m, char *buf, size_t size)
{
	const char *name = raft_msg_type_name(m->type);
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		snprintf(buf, size, "%s term=%llu last=%llu/%llu%s", name, (ull)m->term,
			 (ull)m->vote.last_index, (ull)m->vote.last_term,
			 m->vote.transfer ? " transfer" : "");
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		snprintf(buf, size, "%s term=%llu %s", name, (ull)m->term,
			 m->vote_resp.granted ? "granted" : "rejected");
		break;
	case RAFT_MSG_APPEND:
		snprintf(buf, size, "%s term=%llu prev=%llu/%llu n=%u commit=%llu", name,
			 (ull)m->term, (ull)m->append.prev_index, (ull)m->append.prev_term,
			 m->append.n_entries, (ull)m->append.commit);
		break;
	case RAFT_MSG_APPEND_RESP:
		if (m->append_resp.reject)
			snprintf(buf, size, "%s term=%llu reject prev=%llu last=%llu hint=%llu/%llu",
				 name, (ull)m->term, (ull)m->append_resp.rejected_index,
				 (ull)m->append_resp.last_index, (ull)m->append_resp.hint_index,
				 (ull)m->append_resp.hint_term);
		else
			snprintf(buf, size, "%s term=%llu ok match=%llu last=%llu", name,
				 (ull)m->term, (ull)m->append_resp.match_index,
				 (ull)m->append_resp.last_index);
		break;
	case RAFT_MSG_HEARTBEAT:
		snprintf(buf, size, "%s term=%llu commit=%llu", name, (ull)m->term,
			 (ull)m->heartbeat.commit);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		snprintf(buf, size, "%s term=%llu match=%llu", name, (ull)m->term,
			 (ull)m->heartbeat_resp.match_index);
		break;
	default:
		snprintf(buf, size, "%s term=%llu", name, (ull)m->term);
		break;
	}
	return buf;
}

/* The raft core's own assertions (raft.c) report through this hook when it
 * exists; the run then ends as a violation instead of an abort. */
extern void (*raft_assert_handler)(const char *file, int line, const char *expr)
	__attribute__((weak));
static struct sim *assert_sim;

static void on_raft_assert(const char *file, int line, const char *expr)
{
	struct sim *s = assert_sim;
	if (s == NULL)
		return;
	sim_fail(s, "raft_assert", "%s:%d: %s", file, line, expr);
	longjmp(s->assert_env, 1);
}

/* ---- logs -------------------------------------------------------------- */

static uint64_t body_hash(const void *data, uint32_t len, uint8_t type)
{
	uint64_t h = 0xcbf29ce484222325ull ^ type;
	const unsigned char *p = data;
	for (uint32_t i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ ((uint64_t)len << 56);
}

static void log_reserve(struct sim_log *l, uint64_t n)
{
	if (n <= l->cap)
		return;
	uint64_t cap = l->cap ? l->cap : 256;
	while (cap < n)
		cap *= 2;
	l->e = xrealloc(l->e, cap * sizeof(*l->e));
	l->cap = cap;
}

static struct sim_entry *log_at(const struct sim_log *l, uint64_t index)
{
	return &l->e[index - 1];
}

static void log_copy(struct sim_log *dst, const struct sim_log *src)
{
	log_reserve(dst, src->len);
	if (src->len)
		memcpy(dst->e, src->e, src->len * sizeof(*dst->e));
	dst->len = src->len;
}

static bool ops_term_at(void *ctx, uint64_t index, uint64_t *term)
{
	const struct sim_member *m = ctx;
	if (index == 0) {
		*term = 0;
		return true;
	}
	if (index > m->log.len)
		return false;
	*term = log_at(&m->log, index)->term;
	return true;
}

static uint32_t ops_entry_bytes(void *ctx, uint64_t index)
{
	const struct sim_member *m = ctx;
	if (index == 0 || index > m->log.len)
		return 0;
	return log_at(&m->log, index)->len;
}

static const struct raft_log_ops sim_log_ops = {ops_term_at, ops_entry_bytes};

/* ---- disks ------------------------------------------------------------- */

static struct disk_op *dq_front(struct disk_q *q)
{
	return q->len ? &q->ops[q->head] : NULL;
}

static void dq_pop(struct disk_q *q)
{
	free(q->ops[q->head].ents);
	q->head = (q->head + 1) & (q->cap - 1);
	q->len--;
}

static void dq_clear(struct disk_q *q)
{
	while (q->len)
		dq_pop(q);
	q->last_done = 0;
}

static void dq_grow(struct disk_q *q)
{
	uint32_t cap = q->cap ? q->cap * 2 : 64;
	struct disk_op *ops = xmalloc(cap * sizeof(*ops));
	for (uint32_t i = 0; i < q->len; i++)
		ops[i] = q->ops[(q->head + i) & (q->cap - 1)];
	free(q->ops);
	q->ops = ops;
	q->cap = cap;
	q->head = 0;
}

/* Queues a write that completes after a random delay, never before the
 * writes queued earlier on the same queue. */
static struct disk_op *dq_push(struct sim *s, struct sim_member *m, struct disk_q *q, uint8_t kind)
{
	if (q->len >= SIM_MAX_DISK_OPS) {
		sim_fail(s, "sim_bound", "g%u m%u: more than %u queued writes", m->group, m->id,
			 SIM_MAX_DISK_OPS);
		return NULL;
	}
	if (q->len == q->cap)
		dq_grow(q);
	uint64_t done = s->tick + rng_below(&s->rng, s->p.disk_delay_max + 1);
	if (s->p.disk_slow > 0 && rng_chance(&s->rng, s->p.disk_slow)) {
		done += 10 + rng_below(&s->rng, s->p.disk_slow_max);
		s->res->stats.slow_writes++;
	}
	const struct sim_node *nd = &s->node[m->id - 1];
	if (done < nd->stall_until)
		done = nd->stall_until;
	if (done < q->last_done)
		done = q->last_done;
	q->last_done = done;
	struct disk_op *op = &q->ops[(q->head + q->len) & (q->cap - 1)];
	q->len++;
	*op = (struct disk_op){.done_tick = done, .kind = kind};
	return op;
}

/* ---- carrying out an update -------------------------------------------- */

static struct sim_member *member_of(struct sim *s, uint32_t group, raft_id id)
{
	return &s->m[group * s->n + id - 1];
}

static bool step(struct sim *s, struct sim_member *m, const struct raft_event *ev,
		 struct raft_update *u);

static void store_state(struct sim *s, struct sim_member *m, const struct raft_update *u)
{
	struct disk_op *op = dq_push(s, m, &m->sq, DISK_STATE);
	if (op == NULL)
		return;
	op->arg = u->term;
	op->vote = u->vote;
	op->voter = u->voter;
	TRACE(s, "g%u m%u state term=%llu vote=%u voter=%d", m->group, m->id, (ull)u->term, u->vote,
	      u->voter);
}

static void store_truncate(struct sim *s, struct sim_member *m, uint64_t after)
{
	if (after >= m->log.len) {
		sim_fail(s, "update_contract", "g%u m%u: truncate after %llu but the log ends at %llu",
			 m->group, m->id, (ull)after, (ull)m->log.len);
		return;
	}
	TRACE(s, "g%u m%u truncate after %llu (last %llu)", m->group, m->id, (ull)after,
	      (ull)m->log.len);
	m->log.len = after;
	s->res->stats.truncations++;
	chk_log_truncate(s->chk, m->group, m->id, after);
	struct disk_op *op = dq_push(s, m, &m->lq, DISK_TRUNCATE);
	if (op != NULL)
		op->arg = after;
}

static void store_append(struct sim *s, struct sim_member *m, const struct raft_update *u)
{
	if (u->first_index != m->log.len + 1) {
		sim_fail(s, "update_contract", "g%u m%u: append at %llu but the log ends at %llu",
			 m->group, m->id, (ull)u->first_index, (ull)m->log.len);
		return;
	}
	log_reserve(&m->log, m->log.len + u->n_entries);
	for (uint32_t i = 0; i < u->n_entries; i++) {
		const struct raft_entry *re = &u->entries[i];
		if (re->len > SIM_BODY_MAX || (re->len && re->data == NULL)) {
			sim_fail(s, "update_contract", "g%u m%u: entry %llu has a bad body (%u bytes)",
				 m->group, m->id, (ull)(u->first_index + i), re->len);
			return;
		}
		struct sim_entry *e = &m->log.e[m->log.len];
		*e = (struct sim_entry){.term = re->term, .len = re->len, .type = re->type};
		if (re->len)
			memcpy(e->body, re->data, re->len);
		e->hash = body_hash(e->body, e->len, e->type);
		m->log.len++;
		chk_log_append(s->chk, m->group, m->id, m->log.len, e->term, e->hash);
	}
	TRACE(s, "g%u m%u append %llu..%llu term=%llu", m->group, m->id, (ull)u->first_index,
	      (ull)m->log.len, (ull)m->log.e[m->log.len - 1].term);
	struct disk_op *op = dq_push(s, m, &m->lq, DISK_APPEND);
	if (op == NULL)
		return;
	op->arg = u->first_index;
	op->n = u->n_entries;
	op->ents = xmalloc(u->n_entries * sizeof(*op->ents));
	memcpy(op->ents, log_at(&m->log, u->first_index), u->n_entries * sizeof(*op->ents));
}

/* ---- network ----------------------------------------------------------- */

static void wheel_push(struct sim *s, struct sim_msg *msg)
{
	uint32_t slot = (uint32_t)(msg->due % SIM_WHEEL_SLOTS);
	msg->next = NULL;
	if (s->wheel_tail[slot] != NULL)
		s->wheel_tail[slot]->next = msg;
	else
		s->wheel_head[slot] = msg;
	s->wheel_tail[slot] = msg;
	s->in_flight++;
}

/* Detaches the messages due at `tick`, in the order they were sent. */
static struct sim_msg *wheel_take(struct sim *s, uint64_t tick)
{
	uint32_t slot = (uint32_t)(tick % SIM_WHEEL_SLOTS);
	struct sim_msg *list = s->wheel_head[slot];
	s->wheel_head[slot] = s->wheel_tail[slot] = NULL;
	return list;
}

static struct sim_msg *msg_alloc(struct sim *s)
{
	struct sim_msg *msg = s->free_msgs;
	if (msg != NULL)
		s->free_msgs = msg->next;
	else
		msg = xmalloc(sizeof(*msg));
	memset(msg, 0, sizeof(*msg));
	return msg;
}

static void msg_release(struct sim *s, struct sim_msg *msg)
{
	free(msg->ents);
	msg->ents = NULL;
	msg->next = s->free_msgs;
	s->free_msgs = msg;
}

static uint64_t net_delay(struct sim *s)
{
	uint64_t d = 1 + rng_below(&s->rng, s->p.delay_max);
	if (s->p.long_delay > 0 && rng_chance(&s->rng, s->p.long_delay))
		d += 10 + rng_below(&s->rng, 60);
	return d < SIM_MAX_DELAY_TICKS ? d : SIM_MAX_DELAY_TICKS;
}

static bool msg_enqueue(struct sim *s, struct sim_msg *msg)
{
	if (s->in_flight >= SIM_MAX_MSGS_QUEUED) {
		msg_release(s, msg);
		return sim_fail(s, "sim_bound", "more than %u messages in flight",
				SIM_MAX_MSGS_QUEUED);
	}
	msg->due = s->tick + net_delay(s);
	msg->seq = s->msg_seq++;
	wheel_push(s, msg);
	if (s->in_flight > s->res->stats.peak_in_flight)
		s->res->stats.peak_in_flight = s->in_flight;
	return true;
}

/* An APPEND names a range of the sender's log; the wire carries copies. */
static bool copy_append_bodies(struct sim *s, struct sim_member *m, struct sim_msg *msg)
{
	const struct raft_message *rm = &msg->m;
	uint64_t prev = rm->append.prev_index;
	uint32_t n = rm->append.n_entries;
	uint64_t prev_term = 0;
	if (prev > m->log.len || n > m->log.len - prev ||
	    (prev && (prev_term = log_at(&m->log, prev)->term) != rm->append.prev_term))
		return sim_fail(s, "update_contract",
				"g%u m%u: APPEND prev=%llu/%llu n=%u does not match its log (last "
				"%llu, term at prev %llu)",
				m->group, m->id, (ull)prev, (ull)rm->append.prev_term, n,
				(ull)m->log.len, (ull)prev_term);
	if (n == 0)
		return true;
	msg->ents = xmalloc(n * sizeof(*msg->ents));
	memcpy(msg->ents, log_at(&m->log, prev + 1), n * sizeof(*msg->ents));
	if (msg->ents[n - 1].term > rm->term)
		return sim_fail(s, "update_contract",
				"g%u m%u: APPEND of term %llu carries an entry of term %llu",
				m->group, m->id, (ull)rm->term, (ull)msg->ents[n - 1].term);
	return true;
}

/* raft.h: no message leaves while the (term, vote) it depends on is not
 * durable. Pre-votes carry a term the sender has not taken, so they are
 * exempt. */
static bool durable_before_send(struct sim *s, struct sim_member *m, const struct raft_message *rm)
{
	char buf[128];
	if (rm->type == RAFT_MSG_PREVOTE || rm->type == RAFT_MSG_PREVOTE_RESP)
		return true;
	bool bad = rm->term > m->d_term;
	if (rm->type == RAFT_MSG_VOTE)
		bad = bad || m->d_term != rm->term || m->d_vote != m->id;
	if (rm->type == RAFT_MSG_VOTE_RESP && rm->vote_resp.granted)
		bad = bad || m->d_term != rm->term || m->d_vote != rm->to;
	if (!bad)
		return true;
	return sim_fail(s, "durable_before_send",
			"g%u m%u sends %s to m%u while its durable state is (term %llu, vote %u)",
			m->group, m->id, msg_str(rm, buf, sizeof(buf)), rm->to, (ull)m->d_term,
			m->d_vote);
}

/* The match index a follower reports (append and heartbeat responses);
 * 0 for other messages. */
static uint64_t reported_match(const struct raft_message *rm)
{
	if (rm->type == RAFT_MSG_APPEND_RESP && !rm->append_resp.reject)
		return rm->append_resp.match_index;
	if (rm->type == RAFT_MSG_HEARTBEAT_RESP)
		return rm->heartbeat_resp.match_index;
	return 0;
}

/* raft.h: a follower's match index (append and heartbeat responses) is
 * what it holds durably; with flush mode sync the leader commits on it. */
static bool match_is_durable(struct sim *s, struct sim_member *m, const struct raft_message *rm)
{
	uint64_t match = reported_match(rm);
	if (match == 0)
		return true;
	const struct sim_entry *d = match <= m->dlog.len ? log_at(&m->dlog, match) : NULL;
	const struct sim_entry *e = match <= m->log.len ? log_at(&m->log, match) : NULL;
	if (d != NULL && e != NULL && d->term == e->term && d->hash == e->hash)
		return true;
	return sim_fail(s, "match_not_durable",
			"g%u m%u tells m%u match %llu but holds durably only up to %llu%s", m->group,
			m->id, rm->to, (ull)match, (ull)m->dlog.len,
			d != NULL ? " (a different entry there)" : "");
}

/* raft.h: a follower's match index is a prefix it shares with the leader
 * it answers, in that leader's term. By log matching, one entry tells: the
 * follower's entry at the match must be the leader's. This finds a follower
 * that carries an agreed index over from an earlier term or leader before
 * any wrong commit follows from it (a kept leader_match, disk_loss_test.c). */
static bool match_agrees_with_leader(struct sim *s, struct sim_member *m,
				     const struct raft_message *rm)
{
	uint64_t match = reported_match(rm);
	const struct sim_member *l = member_of(s, m->group, rm->to);
	if (match == 0 || l->r == NULL || l->role != RAFT_LEADER || l->term != rm->term)
		return true;
	const struct sim_entry *le = match <= l->log.len ? log_at(&l->log, match) : NULL;
	const struct sim_entry *e = match <= m->log.len ? log_at(&m->log, match) : NULL;
	if (le != NULL && e != NULL && le->term == e->term && le->hash == e->hash)
		return true;
	return sim_fail(s, "match_not_agreed",
			"g%u m%u tells leader m%u of term %llu match %llu, but %s", m->group,
			m->id, rm->to, (ull)rm->term, (ull)match,
			le == NULL ? "the leader's log is shorter" : "its entry there differs");
}

static const char *send_blocked(struct sim *s, uint32_t src, uint32_t dst)
{
	if (!s->node[dst].up)
		return "down";
	if (s->node[src].blocked_until[dst] > s->tick)
		return "partition";
	if (s->p.loss > 0 && rng_chance(&s->rng, s->p.loss))
		return "loss";
	return NULL;
}

static void send_one(struct sim *s, struct sim_member *m, const struct raft_message *rm)
{
	char buf[128];
	s->res->stats.msgs++;
	if (rm->to == 0 || rm->to > s->n || rm->to == m->id || rm->from != m->id) {
		sim_fail(s, "update_contract", "g%u m%u: message from %u to %u", m->group, m->id,
			 rm->from, rm->to);
		return;
	}
	if (!durable_before_send(s, m, rm) || !match_is_durable(s, m, rm) ||
	    !match_agrees_with_leader(s, m, rm))
		return;
	uint32_t src = m->id - 1, dst = rm->to - 1;
	const char *why = send_blocked(s, src, dst);
	if (why != NULL) {
		s->res->stats.dropped++;
		TRACE(s, "g%u drop %u->%u %s (%s)", m->group, m->id, rm->to,
		      msg_str(rm, buf, sizeof(buf)), why);
		return;
	}
	struct sim_msg *msg = msg_alloc(s);
	*msg = (struct sim_msg){.group = m->group, .src_node = src, .dst_node = dst,
				.src_inc = s->node[src].inc, .dst_inc = s->node[dst].inc, .m = *rm};
	if (rm->type == RAFT_MSG_APPEND && !copy_append_bodies(s, m, msg)) {
		msg_release(s, msg);
		return;
	}
	if (rm->type == RAFT_MSG_APPEND)
		msg->m.append.entries = NULL; /* bound at delivery, to msg->ents */
	if (s->p.dup > 0 && rng_chance(&s->rng, s->p.dup)) {
		struct sim_msg *copy = msg_alloc(s);
		*copy = *msg;
		uint32_t n = rm->type == RAFT_MSG_APPEND ? rm->append.n_entries : 0;
		copy->ents = n ? xmalloc(n * sizeof(*copy->ents)) : NULL;
		if (n)
			memcpy(copy->ents, msg->ents, n * sizeof(*copy->ents));
		s->res->stats.duplicated++;
		if (!msg_enqueue(s, copy)) {
			msg_release(s, msg);
			return;
		}
	}
	msg_enqueue(s, msg);
}

static const char *deliver_blocked(struct sim *s, const struct sim_msg *msg)
{
	const struct sim_node *dst = &s->node[msg->dst_node];
	const struct sim_node *src = &s->node[msg->src_node];
	if (!dst->up || dst->inc != msg->dst_inc)
		return "receiver crashed";
	if (member_of(s, msg->group, msg->m.to)->r == NULL)
		return "receiver stopped";
	if (s->p.crash_drops_outbound && src->inc != msg->src_inc)
		return "sender crashed";
	if (src->blocked_until[msg->dst_node] > s->tick)
		return "partition";
	return NULL;
}

static void deliver(struct sim *s, struct sim_msg *msg)
{
	char buf[128];
	struct raft_message *rm = &msg->m;
	const char *why = deliver_blocked(s, msg);
	if (why != NULL) {
		s->res->stats.dropped++;
		TRACE(s, "g%u drop %u->%u %s (%s)", msg->group, rm->from, rm->to,
		      msg_str(rm, buf, sizeof(buf)), why);
		return;
	}
	if (rm->type == RAFT_MSG_APPEND && rm->append.n_entries) {
		uint32_t n = rm->append.n_entries;
		if (n > s->scratch_cap) {
			s->scratch_cap = n;
			s->scratch = xrealloc(s->scratch, n * sizeof(*s->scratch));
		}
		for (uint32_t i = 0; i < n; i++) {
			const struct sim_entry *e = &msg->ents[i];
			s->scratch[i] = (struct raft_entry){.term = e->term, .data = e->body,
							    .len = e->len, .type = e->type};
		}
		rm->append.entries = s->scratch;
	}
	s->res->stats.delivered++;
	TRACE(s, "g%u deliver %u->%u %s", msg->group, rm->from, rm->to,
	      msg_str(rm, buf, sizeof(buf)));
	struct sim_member *to = member_of(s, msg->group, rm->to);
	if (to->role == RAFT_LEADER && rm->term == to->term &&
	    (rm->type == RAFT_MSG_APPEND_RESP || rm->type == RAFT_MSG_HEARTBEAT_RESP))
		to->heard[rm->from - 1] = s->tick;
	struct raft_event ev = {.type = RAFT_EV_MESSAGE, .msg = rm};
	struct raft_update u;
	step(s, to, &ev, &u);
}

/* ---- members ----------------------------------------------------------- */

/* Apply (m->commit, commit]; the member that accepted a proposal answers its
 * client when it applies it, as long as it has not crashed since. */
static void apply_committed(struct sim *s, struct sim_member *m, uint64_t commit)
{
	if (commit < m->commit || commit > m->log.len) {
		sim_fail(s, "update_contract",
			 "g%u m%u: commit index %llu (applied %llu, log ends at %llu)", m->group,
			 m->id, (ull)commit, (ull)m->commit, (ull)m->log.len);
		return;
	}
	for (uint64_t i = m->commit + 1; i <= commit; i++) {
		struct sim_entry *e = log_at(&m->log, i);
		chk_apply(s->chk, m->group, m->id, i, e->term, e->hash);
		if (e->prop_member == m->id && e->prop_inc == m->run) {
			e->prop_member = 0;
			chk_ack(s->chk, m->group, i, e->term, e->hash);
			s->res->stats.commits++;
			TRACE(s, "g%u m%u ack %llu/%llu \"%.*s\"", m->group, m->id, (ull)i,
			      (ull)e->term, (int)e->len, e->body);
		}
	}
	TRACE(s, "g%u m%u commit %llu", m->group, m->id, (ull)commit);
	m->commit = commit;
}

static void note_role(struct sim *s, struct sim_member *m, const struct raft_update *u)
{
	m->role = u->role;
	m->leader = u->leader_id;
	m->term = u->term;
	if (u->role_changed && u->role == RAFT_LEADER) {
		/* A new leader counts every member as heard (raft.c,
		 * become_leader). */
		for (uint32_t j = 0; j < s->n; j++)
			m->heard[j] = s->tick;
	}
	if (u->role_changed) {
		struct raft_status st;
		raft_get_status(m->r, &st);
		TRACE(s, "g%u m%u role %s term=%llu", m->group, m->id, raft_role_name(u->role),
		      (ull)st.term);
		if (u->role == RAFT_LEADER) {
			s->res->stats.elections++;
			m->times_leader++;
			chk_leader(s->chk, m->group, st.term, m->id);
		}
	}
	if (u->leader_changed) {
		TRACE(s, "g%u m%u leader %u", m->group, m->id, u->leader_id);
		if (u->leader_id != 0)
			s->client_leader[m->group] = u->leader_id;
	}
}

/* Carries out an update in the order raft.h gives: hard state, truncate,
 * append, send, apply. */
static bool carry_out(struct sim *s, struct sim_member *m, const struct raft_update *u)
{
	if (u->conflict_index != 0) {
		/* No member here forges, so a leader's append never disagrees
		 * with a committed entry (raft.h, "Impossible messages"). */
		sim_fail(s, "committed_conflict",
			 "g%u m%u: an append disagrees with committed entry %llu", m->group, m->id,
			 (ull)u->conflict_index);
		return false;
	}
	if (u->hard_state_changed)
		store_state(s, m, u);
	if (u->truncate && healthy(s))
		store_truncate(s, m, u->truncate_after);
	if (u->n_entries && healthy(s))
		store_append(s, m, u);
	for (uint32_t i = 0; i < u->n_msgs && healthy(s); i++)
		send_one(s, m, &u->msgs[i]);
	if ((u->commit_changed || u->commit_index != m->commit) && healthy(s))
		apply_committed(s, m, u->commit_index);
	if (healthy(s))
		note_role(s, m, u);
	return healthy(s);
}

static bool step(struct sim *s, struct sim_member *m, const struct raft_event *ev,
		 struct raft_update *u)
{
	raft_step(m->r, ev, u);
	return carry_out(s, m, u);
}

/* The write reaches the disk: the durable copy and the checker change. `n`:
 * the entries of a DISK_APPEND that land (all of them, but at a torn write). */
static bool disk_land(struct sim *s, struct sim_member *m, const struct disk_op *op, uint32_t n)
{
	if (op->kind == DISK_STATE) {
		m->d_term = op->arg;
		m->d_vote = op->vote;
		m->d_voter = op->voter;
		chk_durable_state(s->chk, m->group, m->id, op->arg, op->vote);
		chk_durable_voter(s->chk, m->group, m->id, op->voter);
		return true;
	}
	if (op->kind == DISK_TRUNCATE) {
		if (op->arg < m->dlog.len)
			m->dlog.len = op->arg;
		chk_durable_truncate(s->chk, m->group, m->id, op->arg);
		return true;
	}
	/* The durable log is the log as it was when this write was queued,
	 * so the write lands right at its end. */
	if (op->arg != m->dlog.len + 1)
		return sim_fail(s, "sim_bug", "g%u m%u: durable append at %llu after %llu",
				m->group, m->id, (ull)op->arg, (ull)m->dlog.len);
	if (n > op->n)
		return sim_fail(s, "sim_bug", "g%u m%u: %u of %u entries land", m->group, m->id, n,
				op->n);
	log_reserve(&m->dlog, m->dlog.len + n);
	for (uint32_t i = 0; i < n; i++) {
		m->dlog.e[m->dlog.len++] = op->ents[i];
		chk_durable_append(s->chk, m->group, m->id, m->dlog.len, op->ents[i].term,
				   op->ents[i].hash);
	}
	return true;
}

static void disk_complete(struct sim *s, struct sim_member *m, struct disk_op *op)
{
	if (!disk_land(s, m, op, op->n))
		return;
	struct raft_event ev = {0};
	if (op->kind == DISK_STATE) {
		ev.type = RAFT_EV_STATE_PERSISTED;
		ev.state.term = op->arg;
		ev.state.vote = op->vote;
	} else if (op->kind == DISK_TRUNCATE) {
		chk_durable_majority(s->chk, m->group);
		return;
	} else {
		chk_durable_majority(s->chk, m->group);
		ev.type = RAFT_EV_PERSISTED;
		ev.persisted.index = m->dlog.len;
		ev.persisted.term = op->ents[op->n - 1].term;
		if (m->dlog.len > m->acked)
			m->acked = m->dlog.len;
	}
	TRACE(s, "g%u m%u persisted %s %llu/%llu", m->group, m->id,
	      op->kind == DISK_STATE ? "state" : "log",
	      (ull)(op->kind == DISK_STATE ? ev.state.term : ev.persisted.index),
	      (ull)(op->kind == DISK_STATE ? ev.state.vote : ev.persisted.term));
	struct raft_update u;
	if (healthy(s))
		step(s, m, &ev, &u);
}

static void member_stop(struct sim *s, struct sim_member *m, uint64_t until);

static const char *disk_op_name(uint8_t kind)
{
	return kind == DISK_STATE ? "state write" : kind == DISK_TRUNCATE ? "truncation" : "append";
}

/* A write or sync fails: ENOSPC while the node's disk is full (a truncation
 * frees space, so it does not fail), EIO at random. The runtime then closes
 * the member alone, as at a crash (member_stop()), and opens its store again
 * later, once there is space. A failed state write did not persist the
 * (term, vote); a failed append persisted none of its entries. */
static bool disk_fails(struct sim *s, struct sim_member *m, const struct disk_op *op)
{
	const struct sim_node *nd = &s->node[m->id - 1];
	const char *err;
	uint64_t until;
	if (nd->full_until > s->tick && op->kind != DISK_TRUNCATE) {
		err = "ENOSPC";
		until = nd->full_until + 1 + rng_below(&s->rng, 2 * SIM_ELECTION_TICKS);
		s->res->stats.disk_full++;
	} else if (s->p.eio > 0 && rng_chance(&s->rng, s->p.eio)) {
		err = "EIO";
		until = s->tick + 1 + rng_below(&s->rng, s->p.down_max);
		s->res->stats.disk_errors++;
	} else {
		return false;
	}
	TRACE(s, "g%u m%u %s fails with %s (%s): the member stops until t=%llu", m->group, m->id,
	      disk_op_name(op->kind), err,
	      op->kind == DISK_STATE ? "term and vote not persisted" : "nothing of it persisted",
	      (ull)until);
	member_stop(s, m, until);
	return true;
}

static void complete_writes(struct sim *s, struct sim_member *m, struct disk_q *q)
{
	struct disk_op *op;
	while (healthy(s) && m->r != NULL && (op = dq_front(q)) != NULL &&
	       op->done_tick <= s->tick) {
		struct disk_op done = *op;
		op->ents = NULL; /* `done` owns them now */
		dq_pop(q);
		if (!disk_fails(s, m, &done))
			disk_complete(s, m, &done);
		free(done.ents);
	}
}

/* The largest index up to which the durable log and the log agree. */
static uint64_t durable_agreed(const struct sim_member *m)
{
	uint64_t end = m->log.len < m->dlog.len ? m->log.len : m->dlog.len;
	uint64_t i = 0;
	while (i < end && m->log.e[i].term == m->dlog.e[i].term &&
	       m->log.e[i].hash == m->dlog.e[i].hash)
		i++;
	return i;
}

static bool member_boot(struct sim *s, struct sim_member *m)
{
	struct raft_config cfg;
	raft_config_defaults(&cfg);
	cfg.self = m->id;
	cfg.n_members = s->n;
	for (uint32_t i = 0; i < s->n; i++)
		cfg.members[i] = i + 1;
	cfg.election_ticks = SIM_ELECTION_TICKS;
	cfg.heartbeat_ticks = s->p.heartbeat_ticks;
	cfg.prevote = true;
	cfg.check_quorum = true;
	cfg.preferred_id = m->group % s->n + 1;
	cfg.max_append_entries = s->p.max_append_entries;
	cfg.max_inflight_msgs = s->p.max_inflight_msgs;
	cfg.max_outbox = s->p.max_outbox;
	m->run++;
	uint64_t x = s->cfg.seed ^ ((uint64_t)m->group << 40) ^ ((uint64_t)m->id << 32) ^ m->run;
	cfg.seed = splitmix64(&x);
	struct raft_boot boot = {.term = m->d_term, .vote = m->d_vote, .first_index = 1,
				 .last_index = m->dlog.len, .commit = m->ckpt,
				 .incarnation = m->incarnation, .voter = m->d_voter};
	if (m->dlog.len)
		boot.last_term = log_at(&m->dlog, m->dlog.len)->term;
	int rc = raft_new(&cfg, &sim_log_ops, m, &boot, &m->r);
	if (rc != RAFT_OK)
		return sim_fail(s, "sim_setup", "g%u m%u: raft_new() = %d", m->group, m->id, rc);
	m->commit = m->ckpt;
	m->role = RAFT_FOLLOWER;
	m->leader = 0;
	m->term = m->d_term;
	/* What the store recovered counts as durable in the core. */
	if (m->dlog.len > m->acked)
		m->acked = m->dlog.len;
	return true;
}

/* A crash in the middle of writing: the writes queued first may reach the
 * disk whole, and the append after them torn. Entries are whole or absent,
 * since the store's recovery cuts a torn tail at the first bad checksum, so
 * a torn append lands a prefix of its entries. Each queue lands in order, so
 * the durable log is still a state the log went through. The core is not
 * told: it is gone. */
static void land_at_crash(struct sim *s, struct sim_member *m)
{
	if (s->p.torn == 0 || (m->sq.len == 0 && m->lq.len == 0) ||
	    !rng_chance(&s->rng, s->p.torn))
		return;
	uint32_t states = (uint32_t)rng_below(&s->rng, m->sq.len + 1);
	for (uint32_t i = 0; i < states; i++) {
		disk_land(s, m, dq_front(&m->sq), 0);
		dq_pop(&m->sq);
	}
	uint32_t whole = m->lq.len ? (uint32_t)rng_below(&s->rng, m->lq.len) : 0;
	for (uint32_t i = 0; i < whole; i++) {
		struct disk_op *op = dq_front(&m->lq);
		disk_land(s, m, op, op->n);
		dq_pop(&m->lq);
	}
	struct disk_op *op = dq_front(&m->lq);
	uint32_t part = 0, of = 0;
	if (op != NULL && op->kind == DISK_APPEND) {
		of = op->n;
		part = (uint32_t)rng_below(&s->rng, op->n);
		disk_land(s, m, op, part);
	}
	if (states + whole + part == 0)
		return;
	s->res->stats.torn_writes++;
	TRACE(s, "g%u m%u crash mid-write: %u state and %u log writes landed, then %u of %u "
		 "entries of the next append (durable last %llu)",
	      m->group, m->id, states, whole, part, of, (ull)m->dlog.len);
}

/* Everything not durable is gone. The commit checkpoint kept is at most
 * what was both committed and durable; sometimes older, sometimes 0, so
 * that restarts also re-apply. */
static void member_crash(struct sim *s, struct sim_member *m)
{
	uint64_t ckpt = durable_agreed(m);
	if (m->commit < ckpt)
		ckpt = m->commit;
	uint64_t pick = rng_below(&s->rng, 4);
	m->ckpt = pick == 0 ? 0 : pick == 1 ? rng_below(&s->rng, ckpt + 1) : ckpt;
	raft_free(m->r);
	m->r = NULL;
	dq_clear(&m->sq);
	dq_clear(&m->lq);
	m->role = RAFT_FOLLOWER;
	m->leader = 0;
}

static bool others_are_voters(struct sim *s, const struct sim_member *m)
{
	for (raft_id id = 1; id <= s->n; id++)
		if (id != m->id && !member_of(s, m->group, id)->d_voter)
			return false;
	return true;
}

/* Its store is lost and a new one made (a replaced disk): log, term, vote,
 * checkpoint and voter flag gone, a new and higher incarnation. Drawn only
 * while every other member of the group is a voter, so at most one member of
 * a group is ever short of what it acknowledged (more is a loss no protocol
 * can undo). */
static void maybe_wipe(struct sim *s, struct sim_member *m)
{
	if (s->p.wipe == 0 || !rng_chance(&s->rng, s->p.wipe) || !others_are_voters(s, m))
		return;
	TRACE(s, "g%u m%u store wiped (last %llu, term %llu)", m->group, m->id,
	      (ull)m->dlog.len, (ull)m->d_term);
	m->dlog.len = 0;
	m->d_term = 0;
	m->d_vote = 0;
	m->d_voter = false;
	m->ckpt = 0;
	m->commit = 0;
	m->acked = 0;
	m->incarnation = ++s->next_incarnation;
	s->res->stats.wipes++;
	chk_wipe(s->chk, m->group, m->id);
}

/* A byte of a durable entry flipped while the member was down; the store
 * finds the entry's checksum wrong when it opens and cuts the log before it.
 * An entry above what the member acknowledged (and above its commit
 * checkpoint) was never counted by anyone: the member stays what it was. At
 * or below, the member lost an entry it may have acknowledged, which Raft
 * forbids of a voter, so the store is treated as partly wiped: a new
 * incarnation, not a voter, its term and vote kept (the state file is
 * fine), and the leader repairs it from the start. Drawn only while every
 * other member of the group is a voter, as maybe_wipe(). */
static void maybe_flip(struct sim *s, struct sim_member *m)
{
	if (s->p.flip == 0 || m->dlog.len == 0 || !rng_chance(&s->rng, s->p.flip) ||
	    !others_are_voters(s, m))
		return;
	/* Half the time in the tail that no core was told is durable (what
	 * landed at a crash), when there is one. */
	uint64_t bad = 1 + rng_below(&s->rng, m->dlog.len);
	if (m->dlog.len > m->acked && rng_chance(&s->rng, 0.5))
		bad = m->acked + 1 + rng_below(&s->rng, m->dlog.len - m->acked);
	uint64_t keep = bad - 1;
	bool lost_ack = bad <= m->acked || bad <= m->ckpt;
	s->res->stats.flips++;
	TRACE(s, "g%u m%u flipped byte in durable entry %llu (last %llu, acknowledged up to %llu, "
		 "checkpoint %llu): log cut after %llu%s",
	      m->group, m->id, (ull)bad, (ull)m->dlog.len, (ull)m->acked, (ull)m->ckpt, (ull)keep,
	      lost_ack ? ", a new incarnation, not a voter" : "");
	m->dlog.len = keep;
	if (!lost_ack) {
		chk_durable_truncate(s->chk, m->group, m->id, keep);
		return;
	}
	s->res->stats.flip_resets++;
	m->d_voter = false;
	m->incarnation = ++s->next_incarnation;
	if (m->ckpt > keep)
		m->ckpt = keep;
	m->acked = keep;
	chk_lose_tail(s->chk, m->group, m->id, keep);
}

static void member_restart(struct sim *s, struct sim_member *m)
{
	m->stopped_until = 0;
	maybe_wipe(s, m);
	maybe_flip(s, m);
	log_copy(&m->log, &m->dlog);
	chk_restart(s->chk, m->group, m->id);
	TRACE(s, "g%u m%u boot term=%llu vote=%u last=%llu commit=%llu", m->group, m->id,
	      (ull)m->d_term, m->d_vote, (ull)m->dlog.len, (ull)m->ckpt);
	member_boot(s, m);
}

/* ---- faults ------------------------------------------------------------ */

static void node_crash(struct sim *s, uint32_t k, uint64_t down_ticks)
{
	struct sim_node *nd = &s->node[k];
	nd->up = false;
	nd->inc++;
	nd->restart_tick = s->tick + down_ticks;
	nd->stall_until = 0;
	s->res->stats.crashes++;
	TRACE(s, "crash node %u for %llu ticks", k + 1, (ull)down_ticks);
	for (uint32_t g = 0; g < s->cfg.n_groups; g++) {
		struct sim_member *m = member_of(s, g, k + 1);
		if (m->r != NULL) { /* else stopped already: nothing in flight */
			land_at_crash(s, m);
			member_crash(s, m);
		}
		m->stopped_until = 0; /* it comes back with its node */
		chk_durable_majority(s->chk, g);
	}
}

static void member_stop(struct sim *s, struct sim_member *m, uint64_t until)
{
	member_crash(s, m);
	m->stopped_until = until;
	chk_durable_majority(s->chk, m->group);
}

static void node_restart(struct sim *s, uint32_t k)
{
	struct sim_node *nd = &s->node[k];
	nd->up = true;
	TRACE(s, "restart node %u", k + 1);
	for (uint32_t g = 0; g < s->cfg.n_groups && healthy(s); g++) {
		member_restart(s, member_of(s, g, k + 1));
		chk_durable_majority(s->chk, g);
	}
}

static void block(struct sim *s, uint32_t a, uint32_t b, uint64_t until)
{
	if (s->node[a].blocked_until[b] < until)
		s->node[a].blocked_until[b] = until;
}

/* A random split of the nodes into two sides, cut both ways. */
static void fault_split(struct sim *s, uint64_t until)
{
	uint32_t mask;
	do
		mask = (uint32_t)rng_below(&s->rng, 1u << s->n);
	while (mask == 0 || mask == (1u << s->n) - 1);
	for (uint32_t a = 0; a < s->n; a++)
		for (uint32_t b = 0; b < s->n; b++)
			if (((mask >> a) & 1) != ((mask >> b) & 1))
				block(s, a, b, until);
	TRACE(s, "partition nodes mask=%#x | rest until t=%llu", mask, (ull)until);
}

/* One-way: a random link, or everything a node sends, or receives. */
static void fault_one_way(struct sim *s, uint64_t until)
{
	uint32_t a = (uint32_t)rng_below(&s->rng, s->n);
	uint32_t b = (uint32_t)rng_below(&s->rng, s->n - 1);
	b += b >= a;
	switch (rng_below(&s->rng, 3)) {
	case 0:
		block(s, a, b, until);
		TRACE(s, "cut link %u->%u until t=%llu", a + 1, b + 1, (ull)until);
		break;
	case 1:
		for (uint32_t j = 0; j < s->n; j++)
			block(s, a, j, until);
		TRACE(s, "cut all sends of node %u until t=%llu", a + 1, (ull)until);
		break;
	default:
		for (uint32_t j = 0; j < s->n; j++)
			block(s, j, a, until);
		TRACE(s, "cut all receives of node %u until t=%llu", a + 1, (ull)until);
		break;
	}
}

static void heal_partitions(struct sim *s)
{
	for (uint32_t a = 0; a < s->n; a++)
		memset(s->node[a].blocked_until, 0, sizeof(s->node[a].blocked_until));
	TRACE(s, "heal partitions");
}

static int32_t random_node(struct sim *s, bool up)
{
	uint32_t start = (uint32_t)rng_below(&s->rng, s->n);
	for (uint32_t i = 0; i < s->n; i++) {
		uint32_t k = (start + i) % s->n;
		if (s->node[k].up == up)
			return (int32_t)k;
	}
	return -1;
}

/* The node of some group's leader: crashing leaders is what exercises
 * elections with divergent logs (Raft figure 8). */
static int32_t leader_node(struct sim *s)
{
	uint32_t g = (uint32_t)rng_below(&s->rng, s->cfg.n_groups);
	for (raft_id id = 1; id <= s->n; id++) {
		const struct sim_member *m = member_of(s, g, id);
		if (m->r != NULL && m->role == RAFT_LEADER)
			return (int32_t)id - 1;
	}
	return random_node(s, true);
}

/* The node of a leader whose log runs past what it has durable while a
 * follower already holds more of it durably: crashed now and back at once,
 * it loses that tail and may be elected again in a new term, with other
 * entries where that follower holds the old ones. -1 if there is none. */
static int32_t leader_with_lost_tail(struct sim *s)
{
	uint32_t g0 = (uint32_t)rng_below(&s->rng, s->cfg.n_groups);
	for (uint32_t i = 0; i < s->cfg.n_groups; i++) {
		uint32_t g = (g0 + i) % s->cfg.n_groups;
		for (raft_id id = 1; id <= s->n; id++) {
			const struct sim_member *l = member_of(s, g, id);
			if (l->r == NULL || l->role != RAFT_LEADER || l->log.len <= l->dlog.len)
				continue;
			for (raft_id f = 1; f <= s->n; f++) {
				const struct sim_member *m = member_of(s, g, f);
				if (f != id && m->r != NULL && m->dlog.len > l->dlog.len)
					return (int32_t)id - 1;
			}
		}
	}
	return -1;
}

/* A node's disk fills up; every write but a truncation fails until it has
 * room again (disk_fails()). */
static void maybe_fill_disk(struct sim *s)
{
	if (s->p.disk_full == 0 || !rng_chance(&s->rng, s->p.disk_full))
		return;
	uint32_t k = (uint32_t)rng_below(&s->rng, s->n);
	s->node[k].full_until = s->tick + 20 + rng_below(&s->rng, 200);
	TRACE(s, "disk of node %u full until t=%llu", k + 1, (ull)s->node[k].full_until);
}

static void maybe_fault(struct sim *s)
{
	maybe_fill_disk(s);
	if (!rng_chance(&s->rng, s->p.fault))
		return;
	uint64_t r = rng_below(&s->rng, 100);
	uint64_t until = s->tick + 10 + rng_below(&s->rng, s->p.partition_max);
	int32_t k;
	if (r < 30) {
		/* Leader bias: a leader that crashes with an unsynced tail and
		 * comes back at once is often elected again, in a new term,
		 * with other entries where its followers hold the old ones. */
		bool bounce = rng_chance(&s->rng, s->p.leader_bias);
		k = bounce ? leader_with_lost_tail(s) : -1;
		if (k < 0)
			k = bounce || rng_chance(&s->rng, 0.5) ? leader_node(s) : random_node(s, true);
		uint64_t down = bounce ? 1 + rng_below(&s->rng, 2 * SIM_ELECTION_TICKS)
				       : 1 + rng_below(&s->rng, s->p.down_max);
		if (k >= 0)
			node_crash(s, (uint32_t)k, down);
	} else if (r < 38) {
		if ((k = random_node(s, false)) >= 0)
			node_restart(s, (uint32_t)k);
	} else if (r < 60) {
		fault_split(s, until);
		s->res->stats.partitions++;
	} else if (r < 80) {
		fault_one_way(s, until);
		s->res->stats.partitions++;
	} else if (r < 90) {
		heal_partitions(s);
	} else {
		k = (int32_t)rng_below(&s->rng, s->n);
		s->node[k].stall_until = s->tick + 20 + rng_below(&s->rng, 200);
		TRACE(s, "stall disk of node %d until t=%llu", k + 1, (ull)s->node[k].stall_until);
	}
}

/* ---- clients ----------------------------------------------------------- */

/* The member a client of the group talks to: the leader it believes in,
 * sometimes anyone. NULL when that member is down (connection refused). */
static struct sim_member *client_target(struct sim *s, uint32_t g, bool misdirect)
{
	raft_id id = s->client_leader[g];
	if (id == 0 || (misdirect && s->p.misdirect > 0 && rng_chance(&s->rng, s->p.misdirect)))
		id = (raft_id)(1 + rng_below(&s->rng, s->n));
	struct sim_member *m = member_of(s, g, id);
	if (m->r == NULL) {
		s->client_leader[g] = 0;
		return NULL;
	}
	return m;
}

static void propose_accepted(struct sim *s, struct sim_member *m, const struct raft_update *u,
			     const struct raft_entry *ents, uint32_t n)
{
	if (u->role != RAFT_LEADER || u->propose_index == 0 ||
	    u->propose_index + n - 1 > m->log.len) {
		sim_fail(s, "update_contract",
			 "g%u m%u: proposal accepted at %llu as %s with log ending at %llu",
			 m->group, m->id, (ull)u->propose_index, raft_role_name(u->role),
			 (ull)m->log.len);
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		struct sim_entry *e = log_at(&m->log, u->propose_index + i);
		if (e->term != u->propose_term ||
		    e->hash != body_hash(ents[i].data, ents[i].len, ents[i].type)) {
			sim_fail(s, "update_contract", "g%u m%u: proposal %u not at %llu/%llu",
				 m->group, m->id, i, (ull)(u->propose_index + i),
				 (ull)u->propose_term);
			return;
		}
		e->prop_member = m->id;
		e->prop_inc = m->run;
	}
	s->res->stats.proposals += n;
	TRACE(s, "g%u m%u propose %u -> ok %llu/%llu", m->group, m->id, n,
	      (ull)u->propose_index, (ull)u->propose_term);
}

static void client_propose(struct sim *s, uint32_t g, bool misdirect)
{
	struct sim_member *m = client_target(s, g, misdirect);
	if (m == NULL)
		return;
	char bodies[SIM_MAX_BATCH][SIM_BODY_MAX];
	struct raft_entry ents[SIM_MAX_BATCH];
	uint32_t n = rng_chance(&s->rng, 0.8) ? 1 : 2 + (uint32_t)rng_below(&s->rng, 3);
	for (uint32_t i = 0; i < n; i++) {
		int len = snprintf(bodies[i], SIM_BODY_MAX, "g%u/%llu", g, (ull)s->next_seq[g]++);
		ents[i] = (struct raft_entry){.data = bodies[i], .len = (uint32_t)len,
					      .type = RAFT_ENTRY_NORMAL};
	}
	struct raft_event ev = {.type = RAFT_EV_PROPOSE, .propose = {ents, n}};
	struct raft_update u;
	if (!step(s, m, &ev, &u))
		return;
	if (u.propose_rc == RAFT_OK) {
		propose_accepted(s, m, &u, ents, n);
	} else if (u.propose_rc == RAFT_ENOTLEADER || u.propose_rc == RAFT_EBUSY) {
		s->res->stats.rejected++;
		if (u.propose_rc == RAFT_ENOTLEADER)
			s->client_leader[g] = u.leader_id;
		TRACE(s, "g%u m%u propose %u -> %s (leader %u)", g, m->id, n,
		      u.propose_rc == RAFT_EBUSY ? "busy" : "not leader", u.leader_id);
	} else {
		sim_fail(s, "update_contract", "g%u m%u: proposal answered %d", g, m->id,
			 u.propose_rc);
	}
}

static void client_transfer(struct sim *s, uint32_t g)
{
	struct sim_member *m = client_target(s, g, true);
	if (m == NULL)
		return;
	raft_id target = (raft_id)(1 + rng_below(&s->rng, s->n));
	s->res->stats.transfers++;
	TRACE(s, "g%u m%u transfer to %u", g, m->id, target);
	struct raft_event ev = {.type = RAFT_EV_TRANSFER, .target = target};
	struct raft_update u;
	step(s, m, &ev, &u);
}

static void clients(struct sim *s, bool faults)
{
	for (uint32_t g = 0; g < s->cfg.n_groups && healthy(s); g++) {
		if (rng_chance(&s->rng, s->p.propose))
			client_propose(s, g, faults);
		if (faults && s->p.transfer > 0 && healthy(s) && rng_chance(&s->rng, s->p.transfer))
			client_transfer(s, g);
	}
}

/* ---- checks of the fault phase ------------------------------------------ */

/* leader_without_quorum: a leader that has had no answer (an append or
 * heartbeat answer of its term, delivered) from a majority, itself counted,
 * for SIM_QUORUM_LOSS_TICKS is no longer leader (check-quorum). Answers
 * stop when links are cut, the other members are down or stopped, or they
 * follow someone else; counting delivered answers rather than healthy links
 * keeps the rule exact under long delays and slow disks (an answer may
 * arrive long after its link was cut at the sender's end). */
static void check_leaders(struct sim *s)
{
	const uint32_t q = s->n / 2 + 1;
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups; i++) {
		const struct sim_member *m = &s->m[i];
		if (m->r == NULL || m->role != RAFT_LEADER)
			continue;
		uint32_t heard = 1;
		for (uint32_t j = 0; j < s->n; j++)
			if (j + 1 != m->id && s->tick - m->heard[j] <= SIM_QUORUM_LOSS_TICKS)
				heard++;
		if (heard >= q)
			continue;
		sim_fail(s, "leader_without_quorum",
			 "g%u m%u still leads term %llu with answers from %u of %u members "
			 "(itself counted) in the last %u ticks",
			 m->group, m->id, (ull)m->term, heard, s->n, SIM_QUORUM_LOSS_TICKS);
		return;
	}
}

/* Nodes (bit k) with healthy links both ways to each node. */
static void links_both_ways(const struct sim *s, uint32_t *adj)
{
	for (uint32_t a = 0; a < s->n; a++) {
		adj[a] = 1u << a;
		for (uint32_t b = 0; b < s->n; b++)
			if (s->node[a].blocked_until[b] <= s->tick &&
			    s->node[b].blocked_until[a] <= s->tick)
				adj[a] |= 1u << b;
	}
}

/* Members (bit id - 1) of the group that could win or grant a vote now:
 * up, durable voters (a majority with a non-voter elects only unanimously),
 * disk neither stalled nor full and no slow state write queued (term and
 * vote must be durable before a vote request or grant leaves); and members
 * that lead or follow a member that leads. */
static void group_masks(const struct sim *s, uint32_t g, uint32_t *ready, uint32_t *led)
{
	*ready = *led = 0;
	for (raft_id id = 1; id <= s->n; id++) {
		const struct sim_member *m = &s->m[g * s->n + id - 1];
		const struct sim_node *nd = &s->node[id - 1];
		if (m->r == NULL)
			continue;
		if (m->d_voter && nd->stall_until <= s->tick && nd->full_until <= s->tick &&
		    m->sq.last_done <= s->tick + s->p.disk_delay_max)
			*ready |= 1u << (id - 1);
		const struct sim_member *l = m->leader ? &s->m[g * s->n + m->leader - 1] : NULL;
		if (m->role == RAFT_LEADER || (l != NULL && l->r != NULL && l->role == RAFT_LEADER))
			*led |= 1u << (id - 1);
	}
}

/* no_election: a majority of members that are ready (group_masks()) and
 * linked both ways among themselves has, within SIM_ELECTION_BOUND_TIMEOUTS
 * election timeouts, a leader among them or follows one. */
static void check_elections(struct sim *s)
{
	uint32_t adj[SIM_MAX_NODES];
	links_both_ways(s, adj);
	const uint64_t bound = (uint64_t)SIM_ELECTION_BOUND_TIMEOUTS * SIM_ELECTION_TICKS;
	for (uint32_t g = 0; g < s->cfg.n_groups; g++) {
		uint32_t ready, led;
		group_masks(s, g, &ready, &led);
		for (uint32_t j = 0; j < s->n_qmasks; j++) {
			const uint32_t set = s->qmask[j];
			uint64_t *since = &s->cq_since[(size_t)g * s->n_qmasks + j];
			bool waiting = (set & ready) == set && (set & led) == 0;
			for (uint32_t k = 0; k < s->n && waiting; k++)
				waiting = !((set >> k) & 1) || (adj[k] & set) == set;
			if (!waiting) {
				*since = s->tick;
				continue;
			}
			uint64_t waited = s->tick - *since;
			if (waited > s->res->stats.slowest_election)
				s->res->stats.slowest_election = waited;
			if (waited <= bound)
				continue;
			sim_fail(s, "no_election",
				 "g%u: members %#x (bit id - 1), a majority of voters up and "
				 "linked both ways, have had no leader for %llu ticks (bound %llu)",
				 g, set, (ull)waited, (ull)bound);
			return;
		}
	}
}

/* ---- the step ---------------------------------------------------------- */

static void restarts_due(struct sim *s)
{
	for (uint32_t k = 0; k < s->n && healthy(s); k++)
		if (!s->node[k].up && s->node[k].restart_tick <= s->tick)
			node_restart(s, k);
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups && healthy(s); i++) {
		struct sim_member *m = &s->m[i];
		if (m->r != NULL || m->stopped_until == 0 || m->stopped_until > s->tick)
			continue;
		TRACE(s, "g%u m%u reopens its store", m->group, m->id);
		member_restart(s, m);
		chk_durable_majority(s->chk, m->group);
	}
}

static void writes_due(struct sim *s)
{
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups && healthy(s); i++) {
		struct sim_member *m = &s->m[i];
		if (m->r == NULL)
			continue;
		complete_writes(s, m, &m->sq);
		complete_writes(s, m, &m->lq);
	}
}

static void messages_due(struct sim *s)
{
	struct sim_msg *msg = wheel_take(s, s->tick);
	while (msg != NULL) {
		struct sim_msg *next = msg->next;
		s->in_flight--;
		if (msg->due != s->tick)
			sim_fail(s, "sim_bug", "message due at %llu found at %llu", (ull)msg->due,
				 (ull)s->tick);
		if (healthy(s))
			deliver(s, msg);
		msg_release(s, msg);
		msg = next;
	}
}

/* All members of a node tick in the same step. */
static void tick_all(struct sim *s)
{
	struct raft_event ev = {.type = RAFT_EV_TICK};
	struct raft_update u;
	for (uint32_t k = 0; k < s->n; k++) {
		if (!s->node[k].up)
			continue;
		for (uint32_t g = 0; g < s->cfg.n_groups && healthy(s); g++) {
			struct sim_member *m = member_of(s, g, k + 1);
			if (m->r != NULL) /* else stopped: its disk failed */
				step(s, m, &ev, &u);
		}
	}
}

/* The end of each member's pass (raft.h, "Commit notices"): a leader
 * tells the followers a commit index no append carried. */
static void notify_all(struct sim *s)
{
	struct raft_event ev = {.type = RAFT_EV_NOTIFY};
	struct raft_update u;
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups && healthy(s); i++) {
		struct sim_member *m = &s->m[i];
		if (m->r != NULL && s->node[m->id - 1].up && m->role == RAFT_LEADER)
			step(s, m, &ev, &u);
	}
}

static void sim_step(struct sim *s, bool faults, bool propose)
{
	s->tick++;
	restarts_due(s);
	writes_due(s);
	messages_due(s);
	tick_all(s);
	notify_all(s);
	if (faults && healthy(s))
		maybe_fault(s);
	if (propose && healthy(s))
		clients(s, faults);
	if (healthy(s))
		check_leaders(s);
	if (healthy(s))
		check_elections(s);
}

/* ---- liveness ---------------------------------------------------------- */

/* Restart every node, mend the network, make the disks fast; writes already
 * queued complete within a tick (the FIFO order stays). */
static void heal_all(struct sim *s)
{
	TRACE(s, "heal: liveness phase");
	heal_partitions(s);
	for (uint32_t k = 0; k < s->n && healthy(s); k++) {
		s->node[k].stall_until = 0;
		s->node[k].full_until = 0;
		if (!s->node[k].up)
			node_restart(s, k);
	}
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups && healthy(s); i++) {
		if (s->m[i].r == NULL) {
			member_restart(s, &s->m[i]);
			chk_durable_majority(s->chk, s->m[i].group);
		}
	}
	s->p.loss = s->p.dup = s->p.long_delay = s->p.disk_slow = s->p.eio = 0;
	s->p.delay_max = 2;
	s->p.disk_delay_max = 1;
	for (uint32_t i = 0; i < s->n * s->cfg.n_groups; i++) {
		struct disk_q *qs[2] = {&s->m[i].sq, &s->m[i].lq};
		for (int j = 0; j < 2; j++) {
			struct disk_q *q = qs[j];
			for (uint32_t o = 0; o < q->len; o++) {
				struct disk_op *op = &q->ops[(q->head + o) & (q->cap - 1)];
				if (op->done_tick > s->tick + 1)
					op->done_tick = s->tick + 1;
			}
			if (q->last_done > s->tick + 1)
				q->last_done = s->tick + 1;
		}
	}
}

static int describe_member(const struct sim_member *m, char *buf, size_t size)
{
	return snprintf(buf, size, " m%u %s leader=%u last=%llu/%llu commit=%llu;", m->id,
			m->r ? raft_role_name(m->role) : "down", m->leader, (ull)m->log.len,
			(ull)(m->log.len ? log_at(&m->log, m->log.len)->term : 0),
			(ull)m->commit);
}

/* One leader, the preferred one, that all agree on; every member holds
 * the leader's whole log and applied it. */
static bool group_converged(struct sim *s, uint32_t g)
{
	raft_id pref = g % s->n + 1;
	const struct sim_member *l = member_of(s, g, pref);
	if (l->r == NULL || l->role != RAFT_LEADER || l->commit != l->log.len)
		return false;
	const struct sim_entry *last = l->log.len ? log_at(&l->log, l->log.len) : NULL;
	for (raft_id id = 1; id <= s->n; id++) {
		const struct sim_member *m = member_of(s, g, id);
		if (m->r == NULL || m->leader != pref || m->log.len != l->log.len ||
		    m->commit != l->log.len)
			return false;
		if (id != pref && m->role != RAFT_FOLLOWER)
			return false;
		if (last && log_at(&m->log, m->log.len)->hash != last->hash)
			return false;
	}
	return true;
}

static void liveness_failed(struct sim *s, uint64_t ticks)
{
	for (uint32_t g = 0; g < s->cfg.n_groups; g++) {
		if (group_converged(s, g))
			continue;
		char buf[320];
		size_t off = 0;
		for (raft_id id = 1; id <= s->n && off < sizeof(buf); id++)
			off += (size_t)describe_member(member_of(s, g, id), buf + off,
						       sizeof(buf) - off);
		sim_fail(s, "liveness",
			 "g%u not converged %llu ticks after the heal (the bound; preferred m%u):%s",
			 g, (ull)ticks, g % s->n + 1, buf);
		return;
	}
}

/* SIM_LIVENESS_TIMEOUTS election timeouts, plus the time to ship the largest
 * backlog at one message per round trip: a seed may allow one entry per
 * message, and a member that crashed may re-apply from 0. Not at the whole
 * in-flight window: the healed network still reorders (delays of 1 or 2
 * ticks), a follower takes appends only in order, and the leader resends a
 * gap once per hole (raft.c, handle_gap), so a window of one-entry messages
 * moved a wiped member's backlog of 5,400 entries at about 11 entries per
 * round trip, not 64 (seeds 1235 at 3 members, 101235 at 5). */
static uint64_t liveness_bound(struct sim *s)
{
	uint64_t lag = 0;
	for (uint32_t g = 0; g < s->cfg.n_groups; g++) {
		uint64_t hi = 0, lo = UINT64_MAX;
		for (raft_id id = 1; id <= s->n; id++) {
			const struct sim_member *m = member_of(s, g, id);
			hi = m->log.len > hi ? m->log.len : hi;
			lo = m->commit < lo ? m->commit : lo;
		}
		lag = hi - lo > lag ? hi - lo : lag;
	}
	lag += SIM_LIVENESS_PROPOSE_TICKS * SIM_MAX_BATCH;
	uint64_t window = s->p.max_append_entries;
	uint64_t rtt_ticks = 2 * s->p.delay_max + s->p.disk_delay_max + 3;
	return (uint64_t)SIM_LIVENESS_TIMEOUTS * SIM_ELECTION_TICKS +
	       (lag + window - 1) / window * rtt_ticks;
}

static void report_groups(struct sim *s)
{
	for (uint32_t g = 0; g < s->cfg.n_groups; g++) {
		struct sim_group_report *rep = &s->res->groups[g];
		for (raft_id id = 1; id <= s->n; id++) {
			struct sim_member *m = member_of(s, g, id);
			if (m->r == NULL)
				continue;
			struct raft_status st;
			raft_get_status(m->r, &st);
			rep->elections += m->times_leader;
			if (st.role == RAFT_LEADER) {
				rep->leader = id;
				rep->term = st.term;
				rep->commit = st.commit_index;
				rep->last = st.last_index;
			}
		}
	}
}

static void run_liveness(struct sim *s)
{
	heal_all(s);
	uint64_t bound = liveness_bound(s);
	TRACE(s, "liveness bound %llu ticks", (ull)bound);
	uint64_t t;
	for (t = 1; t <= bound && healthy(s); t++) {
		sim_step(s, false, t <= SIM_LIVENESS_PROPOSE_TICKS);
		if (t <= SIM_LIVENESS_PROPOSE_TICKS || !healthy(s))
			continue;
		bool all = true;
		for (uint32_t g = 0; g < s->cfg.n_groups && all; g++)
			all = group_converged(s, g);
		if (all)
			break;
	}
	if (!healthy(s))
		return;
	s->res->stats.liveness_ticks = t;
	if (t > bound) {
		liveness_failed(s, bound);
		return;
	}
	for (uint32_t g = 0; g < s->cfg.n_groups; g++)
		for (raft_id id = 1; id <= s->n; id++)
			chk_holds_committed(s->chk, g, id);
	healthy(s);
	report_groups(s);
}

/* ---- setup ------------------------------------------------------------- */

/* Fault rates and sizes vary per seed, so that some seeds are calm and
 * some are storms. */
static void params_draw(struct sim *s)
{
	struct rng *r = &s->rng;
	struct sim_params *p = &s->p;
	static const uint32_t entries[] = {1, 4, 64};
	static const uint32_t inflight[] = {1, 4, 64};
	p->loss = rng_range(r, 0, 0.15);
	p->dup = rng_range(r, 0, 0.05);
	p->long_delay = rng_range(r, 0, 0.01);
	p->delay_max = 1 + (uint32_t)rng_below(r, 6);
	p->disk_delay_max = (uint32_t)rng_below(r, 5);
	p->disk_slow = rng_range(r, 0, 0.05);
	p->disk_slow_max = 10 + (uint32_t)rng_below(r, 90);
	p->fault = rng_range(r, 0.002, 0.02);
	p->down_max = 20 + (uint32_t)rng_below(r, 400);
	p->partition_max = 20 + (uint32_t)rng_below(r, 400);
	p->propose = rng_range(r, 0.05, 0.5);
	p->misdirect = rng_range(r, 0, 0.1);
	p->transfer = rng_range(r, 0, 0.004);
	p->crash_drops_outbound = rng_chance(r, 0.5);
	p->heartbeat_ticks = 2 + (uint32_t)rng_below(r, 2);
	p->max_append_entries = entries[rng_below(r, 3)];
	p->max_inflight_msgs = inflight[rng_below(r, 3)];
	p->max_outbox = rng_chance(r, 0.2) ? 16 : 256;
	p->wipe = rng_chance(r, 0.5) ? rng_range(r, 0.02, 0.3) : 0;
	/* Three-member groups are where a re-elected leader meets followers
	 * that hold its lost tail most often: bias every such seed. A follower
	 * that keeps an agreed index across a change of leader fails
	 * match_not_agreed within a few seeds (seed 16 of 1..200 with the reset
	 * in become_follower removed). Keeping it across a new term of the
	 * *same* leader needs that follower to sit out the election in its
	 * lease, or lose its vote request, and then hear a heartbeat of the
	 * new term before any append and before its own timeout: 0 of 3,000
	 * seeds make that schedule, nor did 3,000 more with that vote request
	 * and append lost on purpose after a quick bounce, so the unit test
	 * a_new_term_of_the_same_leader_forgets_the_old_agreed_index is what
	 * guards that half of the rule. */
	p->leader_bias = s->n == 3 ? rng_range(r, 0.3, 0.9) : 0;
	/* Storage faults, each in about half of the seeds. */
	p->torn = rng_chance(r, 0.5) ? rng_range(r, 0.3, 1) : 0;
	p->eio = rng_chance(r, 0.5) ? rng_range(r, 0.00002, 0.0003) : 0;
	p->disk_full = rng_chance(r, 0.5) ? rng_range(r, 0.0001, 0.001) : 0;
	p->flip = rng_chance(r, 0.5) ? rng_range(r, 0.02, 0.2) : 0;
}

static void sim_free(struct sim *s)
{
	if (s->m != NULL) {
		for (uint32_t i = 0; i < s->n * s->cfg.n_groups; i++) {
			struct sim_member *m = &s->m[i];
			raft_free(m->r);
			free(m->log.e);
			free(m->dlog.e);
			dq_clear(&m->sq);
			dq_clear(&m->lq);
			free(m->sq.ops);
			free(m->lq.ops);
		}
	}
	free(s->m);
	for (uint32_t slot = 0; slot < SIM_WHEEL_SLOTS; slot++) {
		for (struct sim_msg *msg = wheel_take(s, slot), *next; msg != NULL; msg = next) {
			next = msg->next;
			msg_release(s, msg);
		}
	}
	while (s->free_msgs != NULL) {
		struct sim_msg *next = s->free_msgs->next;
		free(s->free_msgs);
		s->free_msgs = next;
	}
	free(s->scratch);
	free(s->cq_since);
	chk_free(s->chk);
	free(s);
}

static struct sim *sim_new(const struct sim_config *cfg, struct sim_result *res)
{
	struct sim *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->cfg = *cfg;
	s->res = res;
	s->n = cfg->n_nodes;
	rng_seed(&s->rng, cfg->seed);
	params_draw(s);
	s->chk = chk_new(cfg->n_groups, cfg->n_nodes);
	s->m = calloc((size_t)s->n * cfg->n_groups, sizeof(*s->m));
	for (uint32_t set = 0; set < (1u << s->n); set++)
		if ((uint32_t)__builtin_popcount(set) == s->n / 2 + 1)
			s->qmask[s->n_qmasks++] = set;
	s->cq_since = calloc((size_t)cfg->n_groups * s->n_qmasks, sizeof(*s->cq_since));
	if (s->chk == NULL || s->m == NULL || s->cq_since == NULL) {
		sim_free(s);
		return NULL;
	}
	for (uint32_t k = 0; k < s->n; k++)
		s->node[k].up = true;
	for (uint32_t g = 0; g < cfg->n_groups; g++) {
		for (raft_id id = 1; id <= s->n; id++) {
			struct sim_member *m = member_of(s, g, id);
			/* A new group: every store is new, none a voter. */
			*m = (struct sim_member){.group = g, .id = id,
						 .incarnation = ++s->next_incarnation};
			member_boot(s, m);
			chk_durable_voter(s->chk, g, id, false);
		}
	}
	return s;
}

int sim_run(const struct sim_config *cfg, struct sim_result *res)
{
	memset(res, 0, sizeof(*res));
	if (cfg->n_nodes == 0 || cfg->n_nodes > SIM_MAX_NODES || cfg->n_groups == 0 ||
	    cfg->n_groups > SIM_MAX_GROUPS) {
		snprintf(res->detail, sizeof(res->detail),
			 "nodes must be 1..%d and groups 1..%d", SIM_MAX_NODES, SIM_MAX_GROUPS);
		return -1;
	}
	res->ok = true;
	struct sim *s = sim_new(cfg, res);
	if (s == NULL) {
		snprintf(res->detail, sizeof(res->detail), "out of memory");
		return -1;
	}
	assert_sim = s;
	if (&raft_assert_handler != NULL)
		raft_assert_handler = on_raft_assert;
	if (setjmp(s->assert_env) == 0 && healthy(s)) {
		TRACE(s, "seed %llu: nodes %u groups %u loss %.3f dup %.3f delay<=%u disk<=%u "
			 "slow %.3f fault %.4f propose %.2f heartbeat %u append<=%u inflight<=%u "
			 "outbox<=%u torn %.2f eio %.5f full %.4f flip %.2f wipe %.2f",
		      (ull)cfg->seed, s->n, cfg->n_groups, s->p.loss, s->p.dup, s->p.delay_max,
		      s->p.disk_delay_max, s->p.disk_slow, s->p.fault, s->p.propose,
		      s->p.heartbeat_ticks, s->p.max_append_entries, s->p.max_inflight_msgs,
		      s->p.max_outbox, s->p.torn, s->p.eio, s->p.disk_full, s->p.flip, s->p.wipe);
		while (s->tick < cfg->steps && healthy(s))
			sim_step(s, true, true);
		if (healthy(s))
			run_liveness(s);
	}
	if (&raft_assert_handler != NULL)
		raft_assert_handler = NULL;
	assert_sim = NULL;
	res->stats.ticks = s->tick;
	res->ok = !s->failed;
	sim_free(s);
	return 0;
}
