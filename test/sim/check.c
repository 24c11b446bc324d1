/*
 * check.c - invariant checkers over an abstract Raft history (see check.h).
 *
 * Logs are arrays of (term, body hash, chained hash); entry i is at e[i - 1].
 * The committed table of a group holds every entry known committed (applied by
 * some member or acknowledged to a client), and the chained hash of its
 * contiguous prefix, so "log L holds every committed entry" is one comparison.
 */
#include "check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct chk_ent {
	uint64_t term;
	uint64_t hash;
	uint64_t chain; /* H(chain of the previous entry, term, hash) */
};

struct chk_log {
	struct chk_ent *e;
	uint64_t len;
	uint64_t cap;
};

struct chk_member {
	struct chk_log vol; /* what the core sees, durable or not */
	struct chk_log dur; /* what survives a crash */
	uint64_t d_term;
	uint32_t d_vote;
	bool non_voter; /* durable voter flag cleared (a new store) */
};

enum { COM_SET = 1, COM_ACKED = 2 };

struct chk_com {
	uint64_t term;
	uint64_t hash;
	uint64_t chain; /* valid for indexes <= com_contig */
	uint32_t member; /* who applied it first (0: a client ack) */
	uint8_t flags;
};

struct chk_group {
	struct chk_member m[CHK_MAX_MEMBERS + 1]; /* by member id, 0 unused */
	uint32_t *leader; /* leader[term], 0: none seen */
	uint64_t leader_cap;
	struct chk_com *com; /* com[i - 1]: committed entry at index i */
	uint64_t com_cap;
	uint64_t com_max;    /* highest committed index known */
	uint64_t com_contig; /* every index in 1..com_contig is known */
	uint64_t acked;
};

struct chk {
	uint32_t n_groups;
	uint32_t n_members;
	struct chk_group *g;
	bool failed;
	struct chk_violation v;
};

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

uint64_t chk_chain(uint64_t prev, uint64_t term, uint64_t body_hash)
{
	uint64_t x = mix64(prev ^ 0x9e3779b97f4a7c15ull);
	x = mix64(x ^ term);
	return mix64(x ^ body_hash);
}

/* Out of memory in a test tool: there is nobody to report to but stderr. */
static void *xrealloc(void *p, size_t size)
{
	void *q = realloc(p, size);
	if (q == NULL) {
		fprintf(stderr, "check: out of memory (%zu bytes)\n", size);
		abort();
	}
	return q;
}

static uint64_t grow_cap(uint64_t cap, uint64_t need)
{
	uint64_t n = cap ? cap : 64;
	while (n < need)
		n *= 2;
	return n;
}

__attribute__((format(printf, 3, 4))) static bool violate(struct chk *c, const char *invariant,
							  const char *fmt, ...)
{
	if (c->failed)
		return false;
	c->failed = true;
	snprintf(c->v.invariant, sizeof(c->v.invariant), "%s", invariant);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(c->v.detail, sizeof(c->v.detail), fmt, ap);
	va_end(ap);
	return false;
}

struct chk *chk_new(uint32_t n_groups, uint32_t n_members)
{
	if (n_groups == 0 || n_members == 0 || n_members > CHK_MAX_MEMBERS)
		return NULL;
	struct chk *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->g = calloc(n_groups, sizeof(*c->g));
	if (c->g == NULL) {
		free(c);
		return NULL;
	}
	c->n_groups = n_groups;
	c->n_members = n_members;
	return c;
}

void chk_free(struct chk *c)
{
	if (c == NULL)
		return;
	for (uint32_t g = 0; g < c->n_groups; g++) {
		struct chk_group *grp = &c->g[g];
		for (uint32_t m = 0; m <= CHK_MAX_MEMBERS; m++) {
			free(grp->m[m].vol.e);
			free(grp->m[m].dur.e);
		}
		free(grp->leader);
		free(grp->com);
	}
	free(c->g);
	free(c);
}

const struct chk_violation *chk_failed(const struct chk *c)
{
	return c->failed ? &c->v : NULL;
}

static struct chk_group *group_of(struct chk *c, uint32_t group)
{
	if (group >= c->n_groups) {
		violate(c, "checker_usage", "group %u out of range (%u groups)", group, c->n_groups);
		return NULL;
	}
	return &c->g[group];
}

static struct chk_member *member_of(struct chk *c, uint32_t group, uint32_t member)
{
	struct chk_group *grp = group_of(c, group);
	if (grp == NULL)
		return NULL;
	if (member == 0 || member > c->n_members) {
		violate(c, "checker_usage", "g%u: member %u out of range 1..%u", group, member,
			c->n_members);
		return NULL;
	}
	return &grp->m[member];
}

static void log_push(struct chk_log *l, uint64_t term, uint64_t hash)
{
	if (l->len == l->cap) {
		l->cap = grow_cap(l->cap, l->len + 1);
		l->e = xrealloc(l->e, l->cap * sizeof(*l->e));
	}
	uint64_t prev = l->len ? l->e[l->len - 1].chain : 0;
	l->e[l->len] = (struct chk_ent){term, hash, chk_chain(prev, term, hash)};
	l->len++;
}

/* Raft §5.3: compare the entry at `index` of the member's log with the
 * entries that the other members hold at that index. */
static bool log_matching_at(struct chk *c, uint32_t group, uint32_t member, uint64_t index)
{
	struct chk_group *grp = &c->g[group];
	const struct chk_ent *e = &grp->m[member].vol.e[index - 1];
	for (uint32_t o = 1; o <= c->n_members; o++) {
		const struct chk_log *ol = &grp->m[o].vol;
		if (o == member || ol->len < index)
			continue;
		const struct chk_ent *oe = &ol->e[index - 1];
		if (oe->term != e->term || oe->chain == e->chain)
			continue;
		return violate(c, "log_matching",
			       "g%u: members %u and %u both hold (index %llu, term %llu) but %s",
			       group, member, o, (unsigned long long)index,
			       (unsigned long long)e->term,
			       oe->hash != e->hash ? "with different bodies"
						   : "their logs differ before it");
	}
	return true;
}

static bool append_checked(struct chk *c, uint32_t group, uint32_t member, struct chk_log *l,
			   const char *what, uint64_t index, uint64_t term, uint64_t body_hash)
{
	if (index != l->len + 1)
		return violate(c, "checker_usage",
			       "g%u m%u: %s append at index %llu but the log ends at %llu", group,
			       member, what, (unsigned long long)index, (unsigned long long)l->len);
	if (l->len && term < l->e[l->len - 1].term)
		return violate(c, "log_matching",
			       "g%u m%u: %s entry %llu has term %llu below the previous term %llu",
			       group, member, what, (unsigned long long)index,
			       (unsigned long long)term, (unsigned long long)l->e[l->len - 1].term);
	log_push(l, term, body_hash);
	return true;
}

bool chk_log_append(struct chk *c, uint32_t group, uint32_t member, uint64_t index, uint64_t term,
		    uint64_t body_hash)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	if (!append_checked(c, group, member, &m->vol, "log", index, term, body_hash))
		return false;
	return log_matching_at(c, group, member, index);
}

bool chk_durable_append(struct chk *c, uint32_t group, uint32_t member, uint64_t index,
			uint64_t term, uint64_t body_hash)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	return append_checked(c, group, member, &m->dur, "durable", index, term, body_hash);
}

static bool same_as_committed(const struct chk_group *grp, const struct chk_ent *e,
			      uint64_t index)
{
	const struct chk_com *ce = &grp->com[index - 1];
	return (ce->flags & COM_SET) && ce->term == e->term && ce->hash == e->hash;
}

/* A committed entry is in every later leader's log, so no member ever has a
 * reason to drop it (Raft §5.4); a durable copy dropped could make an
 * acknowledged entry lose its majority. */
static bool truncate_checked(struct chk *c, uint32_t group, uint32_t member, struct chk_log *l,
			     const char *what, uint64_t after_index)
{
	struct chk_group *grp = &c->g[group];
	if (after_index >= l->len)
		return true;
	uint64_t end = l->len < grp->com_max ? l->len : grp->com_max;
	for (uint64_t i = after_index + 1; i <= end; i++) {
		if (!same_as_committed(grp, &l->e[i - 1], i))
			continue;
		return violate(c, "committed_truncated",
			       "g%u m%u: %s truncated after %llu drops committed%s entry %llu "
			       "(term %llu)",
			       group, member, what, (unsigned long long)after_index,
			       (grp->com[i - 1].flags & COM_ACKED) ? " and acknowledged" : "",
			       (unsigned long long)i, (unsigned long long)l->e[i - 1].term);
	}
	l->len = after_index;
	return true;
}

bool chk_log_truncate(struct chk *c, uint32_t group, uint32_t member, uint64_t after_index)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	return truncate_checked(c, group, member, &m->vol, "log", after_index);
}

bool chk_durable_truncate(struct chk *c, uint32_t group, uint32_t member, uint64_t after_index)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	/* Judged by chk_durable_majority(), not here (check.h). */
	if (after_index < m->dur.len)
		m->dur.len = after_index;
	return true;
}

bool chk_durable_voter(struct chk *c, uint32_t group, uint32_t member, bool voter)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	m->non_voter = !voter;
	return true;
}

bool chk_lose_tail(struct chk *c, uint32_t group, uint32_t member, uint64_t keep)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	if (keep < m->vol.len)
		m->vol.len = keep;
	if (keep < m->dur.len)
		m->dur.len = keep;
	m->non_voter = true;
	return true;
}

/* A wipe loses the whole log, and the term and vote with it. */
bool chk_wipe(struct chk *c, uint32_t group, uint32_t member)
{
	if (!chk_lose_tail(c, group, member, 0))
		return false;
	c->g[group].m[member].d_term = 0;
	c->g[group].m[member].d_vote = 0;
	return true;
}

bool chk_durable_state(struct chk *c, uint32_t group, uint32_t member, uint64_t term,
		       uint32_t vote)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	if (term < m->d_term)
		return violate(c, "vote_safety", "g%u m%u: durable term goes down from %llu to %llu",
			       group, member, (unsigned long long)m->d_term,
			       (unsigned long long)term);
	if (term == m->d_term && m->d_vote != 0 && vote != m->d_vote)
		return violate(c, "vote_safety",
			       "g%u m%u: durable vote in term %llu changes from %u to %u", group,
			       member, (unsigned long long)term, m->d_vote, vote);
	m->d_term = term;
	m->d_vote = vote;
	return true;
}

/* The longest common prefix of two logs: chained hashes agree on a prefix
 * and disagree after it, so a binary search finds its end. */
static uint64_t common_prefix(const struct chk_log *a, const struct chk_log *b)
{
	uint64_t lo = 0, hi = a->len < b->len ? a->len : b->len;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (a->e[mid - 1].chain == b->e[mid - 1].chain)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

/* How much of the committed prefix 1..com_contig the log holds. */
static uint64_t committed_prefix_held(const struct chk_group *grp, const struct chk_log *l)
{
	uint64_t lo = 0, hi = l->len < grp->com_contig ? l->len : grp->com_contig;
	while (lo < hi) {
		uint64_t mid = lo + (hi - lo + 1) / 2;
		if (l->e[mid - 1].chain == grp->com[mid - 1].chain)
			lo = mid;
		else
			hi = mid - 1;
	}
	return lo;
}

bool chk_durable_majority(struct chk *c, uint32_t group)
{
	struct chk_group *grp = group_of(c, group);
	if (grp == NULL || grp->com_contig == 0)
		return grp != NULL;
	const uint64_t need = grp->com_contig;
	const uint32_t q = c->n_members / 2 + 1;
	uint64_t held[CHK_MAX_MEMBERS];
	for (uint32_t id = 1; id <= c->n_members; id++) {
		const struct chk_member *m = &grp->m[id];
		held[id - 1] = m->non_voter ? need : committed_prefix_held(grp, &m->dur);
	}
	/* The q-th largest: what a majority holds. */
	for (uint32_t i = 0; i < q; i++)
		for (uint32_t j = i + 1; j < c->n_members; j++)
			if (held[j] > held[i]) {
				uint64_t t = held[i];
				held[i] = held[j];
				held[j] = t;
			}
	if (held[q - 1] >= need)
		return true;
	uint64_t lost = held[q - 1] + 1;
	return violate(c, "committed_not_durable",
		       "g%u: committed entry %llu (term %llu) is durable on fewer than %u of %u "
		       "members (counting members that are not voters)",
		       group, (unsigned long long)lost, (unsigned long long)grp->com[lost - 1].term,
		       q, c->n_members);
}

bool chk_restart(struct chk *c, uint32_t group, uint32_t member)
{
	struct chk_member *m = member_of(c, group, member);
	if (m == NULL)
		return false;
	uint64_t same = common_prefix(&m->vol, &m->dur);
	if (m->vol.cap < m->dur.len) {
		m->vol.cap = grow_cap(m->vol.cap, m->dur.len);
		m->vol.e = xrealloc(m->vol.e, m->vol.cap * sizeof(*m->vol.e));
	}
	if (m->dur.len > same)
		memcpy(m->vol.e + same, m->dur.e + same, (m->dur.len - same) * sizeof(*m->vol.e));
	m->vol.len = m->dur.len;
	/* Entries the crash brought back (a truncation that never became
	 * durable) meet the others' logs again. */
	for (uint64_t i = same + 1; i <= m->vol.len; i++)
		if (!log_matching_at(c, group, member, i))
			return false;
	return true;
}

static bool commit_record(struct chk *c, uint32_t group, uint32_t member, uint64_t index,
			  uint64_t term, uint64_t body_hash, bool ack)
{
	struct chk_group *grp = &c->g[group];
	if (index == 0)
		return violate(c, "checker_usage", "g%u: commit of index 0", group);
	if (index > grp->com_cap) {
		uint64_t cap = grow_cap(grp->com_cap, index);
		grp->com = xrealloc(grp->com, cap * sizeof(*grp->com));
		memset(grp->com + grp->com_cap, 0, (cap - grp->com_cap) * sizeof(*grp->com));
		grp->com_cap = cap;
	}
	struct chk_com *ce = &grp->com[index - 1];
	if ((ce->flags & COM_SET) && (ce->term != term || ce->hash != body_hash)) {
		bool acked = ack || (ce->flags & COM_ACKED);
		return violate(c, acked ? "ack_contradicted" : "state_machine_safety",
			       "g%u: index %llu: %s%u has (term %llu, body %016llx) but %s%u had "
			       "(term %llu, body %016llx)",
			       group, (unsigned long long)index, ack ? "ack by m" : "apply by m",
			       member, (unsigned long long)term, (unsigned long long)body_hash,
			       (ce->flags & COM_ACKED) ? "ack/apply by m" : "apply by m",
			       ce->member, (unsigned long long)ce->term,
			       (unsigned long long)ce->hash);
	}
	if (!(ce->flags & COM_SET)) {
		*ce = (struct chk_com){.term = term, .hash = body_hash, .member = member};
		ce->flags = COM_SET;
	}
	if (ack)
		ce->flags |= COM_ACKED;
	if (index > grp->com_max)
		grp->com_max = index;
	while (grp->com_contig < grp->com_max && (grp->com[grp->com_contig].flags & COM_SET)) {
		struct chk_com *n = &grp->com[grp->com_contig];
		uint64_t prev = grp->com_contig ? grp->com[grp->com_contig - 1].chain : 0;
		n->chain = chk_chain(prev, n->term, n->hash);
		grp->com_contig++;
	}
	return true;
}

bool chk_apply(struct chk *c, uint32_t group, uint32_t member, uint64_t index, uint64_t term,
	       uint64_t body_hash)
{
	if (member_of(c, group, member) == NULL)
		return false;
	return commit_record(c, group, member, index, term, body_hash, false);
}

bool chk_ack(struct chk *c, uint32_t group, uint64_t index, uint64_t term, uint64_t body_hash)
{
	struct chk_group *grp = group_of(c, group);
	if (grp == NULL)
		return false;
	uint32_t durable = 0;
	for (uint32_t m = 1; m <= c->n_members; m++) {
		const struct chk_log *d = &grp->m[m].dur;
		if (grp->m[m].non_voter ||
		    (index >= 1 && d->len >= index && d->e[index - 1].term == term &&
		     d->e[index - 1].hash == body_hash))
			durable++;
	}
	if (durable < c->n_members / 2 + 1)
		return violate(c, "ack_not_durable",
			       "g%u: ack of (index %llu, term %llu) while durable on %u of %u members",
			       group, (unsigned long long)index, (unsigned long long)term, durable,
			       c->n_members);
	if (!commit_record(c, group, 0, index, term, body_hash, true))
		return false;
	grp->acked++;
	return true;
}

/* 0 when the log holds every committed entry, else the first index missing. */
static uint64_t first_missing_committed(const struct chk_group *grp, const struct chk_log *l)
{
	uint64_t k = grp->com_contig;
	if (k && (l->len < k || l->e[k - 1].chain != grp->com[k - 1].chain)) {
		for (uint64_t i = 1; i <= k; i++)
			if (i > l->len || !same_as_committed(grp, &l->e[i - 1], i))
				return i;
	}
	for (uint64_t i = k + 1; i <= grp->com_max; i++) {
		if (!(grp->com[i - 1].flags & COM_SET))
			continue;
		if (i > l->len || !same_as_committed(grp, &l->e[i - 1], i))
			return i;
	}
	return 0;
}

static bool holds_committed(struct chk *c, uint32_t group, uint32_t member, const char *invariant,
			    const char *why)
{
	struct chk_group *grp = &c->g[group];
	const struct chk_log *l = &grp->m[member].vol;
	uint64_t i = first_missing_committed(grp, l);
	if (i == 0)
		return true;
	const struct chk_com *ce = &grp->com[i - 1];
	return violate(c, invariant,
		       "g%u m%u %s but lacks committed%s entry %llu (term %llu); its log ends at "
		       "%llu%s%llu",
		       group, member, why, (ce->flags & COM_ACKED) ? " and acknowledged" : "",
		       (unsigned long long)i, (unsigned long long)ce->term,
		       (unsigned long long)l->len, i <= l->len ? ", its entry there has term " : "",
		       i <= l->len ? (unsigned long long)l->e[i - 1].term : 0ull);
}

bool chk_leader(struct chk *c, uint32_t group, uint64_t term, uint32_t member)
{
	struct chk_group *grp = group_of(c, group);
	if (grp == NULL || member_of(c, group, member) == NULL)
		return false;
	if (term == 0 || term >= CHK_MAX_TERM)
		return violate(c, "checker_usage", "g%u m%u: leader in term %llu (bound %u)", group,
			       member, (unsigned long long)term, CHK_MAX_TERM);
	if (term >= grp->leader_cap) {
		uint64_t cap = grow_cap(grp->leader_cap, term + 1);
		grp->leader = xrealloc(grp->leader, cap * sizeof(*grp->leader));
		memset(grp->leader + grp->leader_cap, 0,
		       (cap - grp->leader_cap) * sizeof(*grp->leader));
		grp->leader_cap = cap;
	}
	if (grp->leader[term] != 0 && grp->leader[term] != member)
		return violate(c, "election_safety", "g%u: members %u and %u both lead term %llu",
			       group, grp->leader[term], member, (unsigned long long)term);
	grp->leader[term] = member;
	char why[48];
	snprintf(why, sizeof(why), "leads term %llu", (unsigned long long)term);
	return holds_committed(c, group, member, "leader_completeness", why);
}

bool chk_holds_committed(struct chk *c, uint32_t group, uint32_t member)
{
	if (member_of(c, group, member) == NULL)
		return false;
	return holds_committed(c, group, member, "ack_missing_at_end", "ends the run");
}

uint64_t chk_acked(const struct chk *c, uint32_t group)
{
	return group < c->n_groups ? c->g[group].acked : 0;
}

uint64_t chk_committed_max(const struct chk *c, uint32_t group)
{
	return group < c->n_groups ? c->g[group].com_max : 0;
}
