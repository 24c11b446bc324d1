/*
 * chaos_check.c - the checker of the chaos suite (test/chaos/README.md).
 *
 * Reads every committed entry of every member of every group (the client's
 * read bound to one member, dl_client_read with `member`), and the load
 * driver's ack file ("group index term body" per acknowledged append), and
 * classifies:
 *   per acknowledged append (group, index):
 *     verified      every member holds the acked (term, body) at that index;
 *     lost          fewer than a majority hold it committed there, even
 *                   counting those with the index uncommitted (absent, different,
 *                   or another append was acked at the same index too);
 *     mismatched    a member holds a different committed entry there;
 *     behind        a majority holds it, some member does not have it (not
 *                   committed on that member yet, or unreadable there); or
 *                   too few members have committed it, but enough have it
 *                   in their log past their commit index to make a
 *                   majority (a cluster that did not heal: unseen, so not
 *                   called lost);
 *   per index of a group (acked or not):
 *     disagreeing   two members hold different committed entries;
 *     unreadable    a member's read of a committed index failed (e.g. a
 *                   corrupt entry: DL_ECORRUPT), counted per member-index.
 * Prints one line per group and a total; the first few problems of each
 * kind are printed with their details.
 *
 * Exit status: 0 clean; 1 lost, mismatched or disagreeing (safety); 3 only
 * behind or unreadable (the cluster did not heal: liveness); 2 usage or a
 * member that could not be asked at all.
 *
 * Usage: chaos-check --peers P --groups g1,g2,... --acks FILE
 * Single-threaded (apart from the client's own threads).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client/client.h"
#include "raft/raft.h"

#define MAX_GROUPS  64
#define MAX_MEMBERS 9
#define READ_CHUNK  20000u /* indexes per read, so an error is localized */
#define READ_TRIES  5
#define SHOW_MAX    10

enum { E_NONE = 0, E_OK, E_UNREADABLE };

struct ent {
	uint8_t state, type;
	uint32_t len;
	uint64_t term;
	char *body;
};

struct member_log {
	char id[TP_NAME_MAX + 1];
	uint64_t first, commit; /* as its metadata said before the read */
	uint64_t last;          /* its last index, committed or not */
	struct ent *e;          /* e[i] for 1 <= i <= commit */
	bool asked;             /* metadata answered */
};

struct ack {
	uint64_t index, term;
	char *body;
	uint32_t len;
};

struct totals {
	uint64_t acked, verified, lost, mismatched, behind, disagreeing, unreadable;
};

static struct ack *acks;
static size_t n_acks, cap_acks;
static char *group_of_ack_buf; /* parallel array of group names, packed */

struct read_ctx {
	struct member_log *m;
	uint64_t next; /* the next index expected */
};

static int on_entry(void *arg, const struct dl_client_entry *e)
{
	struct read_ctx *r = arg;
	if (e->index < 1 || e->index > r->m->commit)
		return 0; /* past what we sized for: a later commit, ignore */
	struct ent *x = &r->m->e[e->index];
	x->state = E_OK;
	x->type = e->type;
	x->term = e->term;
	x->len = (uint32_t)e->len;
	x->body = malloc(e->len + 1);
	if (!x->body) {
		fprintf(stderr, "chaos-check: out of memory\n");
		exit(2);
	}
	memcpy(x->body, e->data, e->len);
	x->body[e->len] = 0;
	r->next = e->index + 1;
	return 0;
}

/* Reads [first, commit] of one member into m->e, going on past errors. A
 * node fails a whole read whose range holds a damaged entry, so a failed
 * read is retried on a smaller range (down to one index); an index whose
 * read alone fails READ_TRIES times is marked unreadable. DL_ENOTCOMMITTED
 * ends the member's log where it says (its commit went back, e.g. after a
 * restart): the rest counts as not held. */
static void read_member(struct dl_client *c, const char *group, struct member_log *m)
{
	m->e = calloc(m->commit + 1, sizeof(*m->e));
	if (!m->e) {
		fprintf(stderr, "chaos-check: out of memory\n");
		exit(2);
	}
	uint64_t i = m->first < 1 ? 1 : m->first, chunk = READ_CHUNK, bad = 0, bad_lo = 0;
	int tries = 0;
	while (i <= m->commit) {
		uint64_t to = i + chunk - 1 < m->commit ? i + chunk - 1 : m->commit;
		struct read_ctx r = {m, i};
		struct dl_errctx err = {{0}};
		int rc = dl_client_read(c, i, to, m->id, on_entry, &r, &err);
		if (rc == 0 && r.next > to) {
			i = to + 1;
			tries = 0;
			chunk = chunk * 2 < READ_CHUNK ? chunk * 2 : READ_CHUNK;
			continue;
		}
		if (r.next > i) { /* progress: the failure is at r.next */
			i = r.next;
			tries = 0;
			continue;
		}
		if (rc == DL_ENOTCOMMITTED) {
			printf("  %s/%s: reads stop at index %" PRIu64 " (metadata said commit %" PRIu64
			       "): %s\n", group, m->id, i, m->commit, err.msg);
			m->commit = i - 1;
			break;
		}
		if (chunk > 1) {
			chunk = chunk / 16 > 1 ? chunk / 16 : 1;
			continue;
		}
		if (++tries < READ_TRIES)
			continue;
		if (rc != DL_ECORRUPT && rc != DL_EIO) {
			/* not this index but the member: stop asking it */
			printf("  %s/%s: reads fail at index %" PRIu64 ", giving up on it: %s%s%s\n",
			       group, m->id, i, dl_strerror(rc), err.msg[0] ? ": " : "", err.msg);
			break;
		}
		m->e[i].state = E_UNREADABLE;
		if (bad++ == 0)
			bad_lo = i;
		if (bad <= 3)
			printf("  %s/%s: index %" PRIu64 " unreadable: %s%s%s\n", group, m->id, i,
			       dl_strerror(rc), err.msg[0] ? ": " : "", err.msg);
		i++;
		tries = 0;
	}
	if (bad > 3)
		printf("  %s/%s: %" PRIu64 " unreadable indexes in all, from %" PRIu64 "\n", group,
		       m->id, bad, bad_lo);
}

static bool same(const struct ent *a, const struct ent *b)
{
	return a->term == b->term && a->type == b->type && a->len == b->len &&
	       memcmp(a->body, b->body, a->len) == 0;
}

static const struct ent *at(const struct member_log *m, uint64_t i)
{
	if (!m->e || i < 1 || i > m->commit || m->e[i].state != E_OK)
		return NULL;
	return &m->e[i];
}

static int cmp_ack(const void *a, const void *b)
{
	const struct ack *x = a, *y = b;
	return x->index < y->index ? -1 : x->index > y->index;
}

/* Classifies the acks of one group (sorted by index) against the members. */
static void check_acks(const char *group, struct member_log *ms, uint32_t n, struct ack *a,
		       size_t na, struct totals *t)
{
	uint32_t majority = n / 2 + 1;
	qsort(a, na, sizeof(*a), cmp_ack);
	for (size_t k = 0; k < na; k++) {
		t->acked++;
		bool dup = (k > 0 && a[k - 1].index == a[k].index) ||
			   (k + 1 < na && a[k + 1].index == a[k].index);
		struct ent want = {E_OK, RAFT_ENTRY_NORMAL, a[k].len, a[k].term, a[k].body};
		uint32_t holders = 0, differ = 0, unknown = 0;
		for (uint32_t j = 0; j < n; j++) {
			const struct ent *e = at(&ms[j], a[k].index);
			if (e && same(e, &want))
				holders++;
			else if (e)
				differ++;
			else if (ms[j].asked && a[k].index > ms[j].commit &&
				 a[k].index <= ms[j].last)
				unknown++; /* in its log, not committed there (yet): unseen */
		}
		/* An entry a majority may hold uncommitted (a cluster that did not
		 * heal) is "behind", not lost: the checker sees committed entries
		 * only, and it never calls lost what it cannot see. */
		if ((holders + unknown < majority) || dup) {
			if (t->lost++ < SHOW_MAX)
				printf("  LOST %s index %" PRIu64 " term %" PRIu64
				       " '%s': on %u of %u members%s\n",
				       group, a[k].index, a[k].term, a[k].body, holders, n,
				       dup ? " (another append was acked at this index too)" : "");
		}
		if (differ) {
			if (t->mismatched++ < SHOW_MAX)
				printf("  MISMATCHED %s index %" PRIu64 " term %" PRIu64
				       " '%s': %u member(s) hold another entry\n",
				       group, a[k].index, a[k].term, a[k].body, differ);
		}
		if (holders == n)
			t->verified++;
		else if (holders + unknown >= majority && !differ && !dup)
			t->behind++;
	}
}

static void check_agreement(const char *group, struct member_log *ms, uint32_t n,
			    struct totals *t)
{
	uint64_t maxc = 0;
	for (uint32_t j = 0; j < n; j++)
		if (ms[j].commit > maxc)
			maxc = ms[j].commit;
	for (uint64_t i = 1; i <= maxc; i++) {
		const struct ent *first = NULL;
		uint32_t who = 0;
		for (uint32_t j = 0; j < n; j++) {
			if (ms[j].e && i <= ms[j].commit && ms[j].e[i].state == E_UNREADABLE)
				t->unreadable++;
			const struct ent *e = at(&ms[j], i);
			if (!e)
				continue;
			if (!first) {
				first = e;
				who = j;
			} else if (!same(first, e)) {
				if (t->disagreeing++ < SHOW_MAX)
					printf("  DISAGREEING %s index %" PRIu64
					       ": %s has term %" PRIu64 " '%.40s', %s has term %" PRIu64
					       " '%.40s'\n",
					       group, i, ms[who].id, first->term, first->body, ms[j].id,
					       e->term, e->body);
				break;
			}
		}
	}
}

static int check_group(const char *peers, const char *group, struct totals *t)
{
	struct dl_client_opts o = {.timeout_ms = 10000, .connect_timeout_ms = 2000};
	struct dl_client *c = NULL;
	struct dl_errctx err = {{0}};
	if (dl_client_open(peers, group, &o, &c, &err) != 0) {
		fprintf(stderr, "chaos-check: open %s: %s\n", group, err.msg);
		return 2;
	}
	uint32_t n = dl_client_members(c);
	struct member_log ms[MAX_MEMBERS] = {0};
	int rc = 0;
	for (uint32_t j = 0; j < n && j < MAX_MEMBERS; j++) {
		struct tp_group_meta meta;
		snprintf(ms[j].id, sizeof(ms[j].id), "%s", dl_client_member_id(c, j));
		int r = 1;
		for (int k = 0; k < READ_TRIES && r != 0; k++)
			r = dl_client_metadata(c, ms[j].id, &meta, &err);
		if (r != 0) {
			printf("  %s/%s: metadata failed: %s: %s\n", group, ms[j].id, dl_strerror(r),
			       err.msg);
			rc = 2;
			continue;
		}
		ms[j].asked = true;
		ms[j].first = meta.first_index;
		ms[j].commit = meta.commit_index;
		ms[j].last = meta.last_index;
		read_member(c, group, &ms[j]);
	}
	struct totals g = {0};
	/* acks of this group: gather them */
	struct ack *mine = malloc((n_acks + 1) * sizeof(*mine));
	size_t nm = 0;
	const char *gname = group_of_ack_buf;
	for (size_t k = 0; k < n_acks; k++, gname += strlen(gname) + 1)
		if (!strcmp(gname, group))
			mine[nm++] = acks[k];
	check_acks(group, ms, n, mine, nm, &g);
	check_agreement(group, ms, n, &g);
	printf("%s:", group);
	for (uint32_t j = 0; j < n; j++)
		printf(" %s commit %" PRIu64 "%s", ms[j].id, ms[j].commit, j + 1 < n ? "," : "");
	printf(" | acked %" PRIu64 " verified %" PRIu64 " lost %" PRIu64 " mismatched %" PRIu64
	       " disagreeing %" PRIu64 " behind %" PRIu64 " unreadable %" PRIu64 "\n",
	       g.acked, g.verified, g.lost, g.mismatched, g.disagreeing, g.behind, g.unreadable);
	t->acked += g.acked;
	t->verified += g.verified;
	t->lost += g.lost;
	t->mismatched += g.mismatched;
	t->disagreeing += g.disagreeing;
	t->behind += g.behind;
	t->unreadable += g.unreadable;
	free(mine);
	for (uint32_t j = 0; j < n; j++) {
		if (ms[j].e)
			for (uint64_t i = 0; i <= ms[j].commit; i++)
				free(ms[j].e[i].body);
		free(ms[j].e);
	}
	dl_client_close(c);
	return rc;
}

/* Reads "group index term body" lines; a malformed line (a torn last line)
 * is counted and skipped. */
static int load_acks(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f) {
		fprintf(stderr, "chaos-check: %s: %s\n", path, strerror(errno));
		return -1;
	}
	char line[512], g[128], body[256];
	size_t gbytes = 0, gcap = 0, bad = 0;
	uint64_t idx, term;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%127s %" SCNu64 " %" SCNu64 " %255s", g, &idx, &term, body) != 4) {
			bad++;
			continue;
		}
		if (n_acks == cap_acks) {
			cap_acks = cap_acks ? cap_acks * 2 : 4096;
			acks = realloc(acks, cap_acks * sizeof(*acks));
		}
		size_t gl = strlen(g) + 1;
		if (gbytes + gl > gcap) {
			gcap = gcap ? gcap * 2 : 65536;
			group_of_ack_buf = realloc(group_of_ack_buf, gcap);
		}
		if (!acks || !group_of_ack_buf) {
			fprintf(stderr, "chaos-check: out of memory\n");
			exit(2);
		}
		memcpy(group_of_ack_buf + gbytes, g, gl);
		gbytes += gl;
		acks[n_acks++] = (struct ack){idx, term, strdup(body), (uint32_t)strlen(body)};
	}
	fclose(f);
	if (bad)
		printf("ack file: %zu malformed line(s) skipped\n", bad);
	return 0;
}

int main(int argc, char **argv)
{
	const char *peers = NULL, *ackf = NULL;
	char *groups = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--peers"))
			peers = argv[i + 1];
		else if (!strcmp(argv[i], "--groups"))
			groups = argv[i + 1];
		else if (!strcmp(argv[i], "--acks"))
			ackf = argv[i + 1];
	}
	if (!peers || !groups || !ackf || argc % 2 == 0) {
		fprintf(stderr, "usage: chaos-check --peers P --groups g1,g2 --acks FILE\n");
		return 2;
	}
	if (load_acks(ackf) != 0)
		return 2;
	struct totals t = {0};
	int rc = 0;
	char *save = NULL;
	for (char *g = strtok_r(groups, ",", &save); g; g = strtok_r(NULL, ",", &save)) {
		int r = check_group(peers, g, &t);
		if (r > rc)
			rc = r;
	}
	printf("total: acked %" PRIu64 " verified %" PRIu64 " lost %" PRIu64 " mismatched %" PRIu64
	       " disagreeing %" PRIu64 " behind %" PRIu64 " unreadable %" PRIu64 "\n",
	       t.acked, t.verified, t.lost, t.mismatched, t.disagreeing, t.behind, t.unreadable);
	for (size_t k = 0; k < n_acks; k++)
		free(acks[k].body);
	free(acks);
	free(group_of_ack_buf);
	if (t.lost || t.mismatched || t.disagreeing)
		return 1;
	if (rc)
		return rc;
	return t.behind || t.unreadable ? 3 : 0;
}
