/* Commit (Raft §5.3, §5.4.2): the highest index durable on a majority whose
 * entry is of the current term; the leader counts itself only once its own
 * storage reported the entry durable; followers learn the commit index from
 * appends and heartbeats, capped by what they hold in agreement. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "harness.h"

#define T      H_ELECTION_TICKS
#define LEN(a) (sizeof(a) / sizeof((a)[0]))

Test(raft_commit, leader_counts_its_own_entries_only_once_persisted)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_crash(&c, 3); /* 1 and 2 must both count */
	struct h_node *l = h_node(&c, 1);
	l->manual_log = true;
	uint64_t commit = l->commit;
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = l->last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(h_peer(&c, 1, 2)->match_index, idx, "2 acked");
	cr_assert_lt(l->st.durable_index, idx);
	cr_assert_eq(l->commit, commit, "leader counted an entry it has not persisted");
	h_persist_log(&c, 1, 0);
	cr_assert_eq(l->st.durable_index, idx);
	cr_assert_eq(l->commit, idx);
	h_fini(&c);
}

Test(raft_commit, leader_commits_with_followers_alone_before_its_own_persist)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	struct h_node *l = h_node(&c, 1);
	l->manual_log = true;
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = l->last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(l->commit, idx, "2 and 3 are a majority without the leader");
	h_fini(&c);
}

/* Figure 8 of the Raft paper, five members. S1 led term 2 and put index 2
 * on S2; S5 led term 3 and put its own index 2 on itself only. Now S5 is
 * down and S1 leads again (term >= 4). */
static void fig8_setup(struct h_cluster *c)
{
	static const uint64_t s12[] = {1, 2};
	static const uint64_t s34[] = {1};
	static const uint64_t s5[] = {1, 3};
	h_init(c, 5);
	c->cfg.max_append_entries = 1;
	h_load(c, 1, s12, 2, 2, 1, 1);
	h_load(c, 2, s12, 2, 2, 1, 1);
	h_load(c, 3, s34, 1, 3, 5, 1);
	h_load(c, 4, s34, 1, 3, 5, 1);
	h_load(c, 5, s5, 2, 3, 5, 1);
	c->leader_of_term[2] = 1;
	c->leader_of_term[3] = 5;
	h_start(c);
	h_crash(c, 5);
}

/* Keeps index 3 (the new leader's NOOP) from every follower: appends that
 * would carry it lose those entries on the way. */
static void clip_after_2(struct h_cluster *c)
{
	for (size_t i = 0; i < c->net_len; i++) {
		struct h_msg *m = &c->net[i];
		if (m->m.type != RAFT_MSG_APPEND)
			continue;
		uint64_t keep = m->m.append.prev_index >= 2 ? 0 : 2 - m->m.append.prev_index;
		while (m->m.append.n_entries > keep) {
			m->m.append.n_entries--;
			m->bytes -= m->ents[m->m.append.n_entries].len;
			free(m->ents[m->m.append.n_entries].data);
		}
	}
}

static void deliver_clipped(struct h_cluster *c)
{
	for (uint32_t guard = 0; c->net_len > 0; guard++) {
		cr_assert_lt(guard, 100000);
		clip_after_2(c);
		h_deliver_one(c, 0);
	}
}

Test(raft_commit, figure8_leader_never_commits_an_older_term_entry_by_counting_replicas)
{
	struct h_cluster c;
	fig8_setup(&c);
	for (uint32_t t = 0; t < 20 * T; t++) {
		h_tick(&c, 1, 1);
		deliver_clipped(&c);
	}
	struct h_node *s1 = h_node(&c, 1);
	cr_assert_eq(s1->st.role, RAFT_LEADER);
	cr_assert_geq(s1->st.term, 4);
	cr_assert_eq(h_term_at(&c, 1, 3), s1->st.term);
	/* Index 2 (term 2) is now on S1, S2, S3 (and S4): a majority of 5. */
	for (raft_id id = 2; id <= 3; id++) {
		cr_assert_eq(h_term_at(&c, id, 2), 2);
		cr_assert_geq(h_peer(&c, 1, id)->match_index, 2, "S1 knows S%u holds index 2", id);
	}
	cr_assert_eq(s1->commit, 1, "S1 committed index 2 of term 2 by counting replicas");
	/* Why: S5 can still win (its last term 3 beats term 2) and overwrite
	 * index 2. Only S5 may campaign. */
	h_crash(&c, 1);
	h_restart(&c, 5);
	for (raft_id id = 2; id <= 4; id++)
		h_block(&c, id, 0, H_TYPE_BIT(RAFT_MSG_PREVOTE) | H_TYPE_BIT(RAFT_MSG_VOTE));
	cr_assert_neq(h_run_until_leader(&c, 5, 20 * T), UINT32_MAX, "S5 did not win");
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	for (raft_id id = 2; id <= 4; id++)
		cr_assert_eq(h_term_at(&c, id, 2), 3, "S%u's index 2 was replaced", id);
	h_fini(&c);
}

Test(raft_commit, figure8_older_term_entry_commits_through_an_entry_of_the_current_term)
{
	struct h_cluster c;
	fig8_setup(&c);
	cr_assert(h_elect(&c, 1));
	struct h_node *s1 = h_node(&c, 1);
	cr_assert_geq(s1->st.term, 4);
	cr_assert_eq(s1->commit, 3, "the NOOP of term %llu commits index 2 with it",
	             (unsigned long long)s1->st.term);
	/* Now S5 can no longer win. */
	h_restart(&c, 5);
	h_crash(&c, 1);
	h_run(&c, 20 * T);
	cr_assert_eq(c.nodes[5].times_leader, 0);
	raft_id l = h_leader(&c);
	cr_assert_neq(l, 0);
	cr_assert_eq(h_term_at(&c, l, 2), 2);
	cr_assert_eq(h_term_at(&c, 5, 2), 2, "S5's index 2 was replaced");
	h_fini(&c);
}

Test(raft_commit, followers_learn_the_commit_from_appends)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	cr_assert_eq(h_propose(&c, 1, "a"), RAFT_OK);
	uint64_t a = c.nodes[1].last_update.propose_index;
	h_deliver_match(&c, 1, 0, RAFT_MSG_APPEND);
	h_deliver_match(&c, 0, 1, RAFT_MSG_APPEND_RESP);
	cr_assert_eq(c.nodes[1].commit, a);
	h_drop_all(&c);
	cr_assert_lt(c.nodes[2].commit, a);
	cr_assert_eq(h_propose(&c, 1, "b"), RAFT_OK);
	const struct h_msg *m = h_find(&c, 1, 2, RAFT_MSG_APPEND, 0);
	cr_assert_not_null(m);
	cr_assert_eq(m->m.append.commit, a);
	h_deliver_match(&c, 1, 2, RAFT_MSG_APPEND);
	cr_assert_eq(c.nodes[2].commit, a);
	h_fini(&c);
}

Test(raft_commit, followers_learn_the_commit_from_heartbeats)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	cr_assert_eq(h_propose(&c, 1, "a"), RAFT_OK);
	uint64_t a = c.nodes[1].last_update.propose_index;
	h_deliver_match(&c, 1, 0, RAFT_MSG_APPEND);
	h_deliver_match(&c, 0, 1, RAFT_MSG_APPEND_RESP);
	cr_assert_eq(c.nodes[1].commit, a);
	h_drop_all(&c);
	cr_assert_lt(c.nodes[2].commit, a);
	uint32_t t = 0;
	while (h_count(&c, 1, 2, RAFT_MSG_HEARTBEAT) == 0) {
		cr_assert_leq(t++, H_HEARTBEAT_TICKS);
		h_tick(&c, 1, 1);
	}
	cr_assert_eq(h_find(&c, 1, 2, RAFT_MSG_HEARTBEAT, 0)->m.heartbeat.commit, a);
	h_deliver_match(&c, 1, 2, RAFT_MSG_HEARTBEAT);
	cr_assert_eq(c.nodes[2].commit, a);
	h_fini(&c);
}

Test(raft_commit, heartbeat_commit_is_capped_by_what_the_follower_holds)
{
	/* 3 holds six uncommitted entries of term 2 that 1 and 2 never had. */
	static const uint64_t good[] = {1, 3, 3, 3, 3};
	static const uint64_t stale[] = {1, 2, 2, 2, 2, 2, 2};
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 1, good, LEN(good), 3, 0, 1);
	h_load(&c, 2, good, LEN(good), 3, 0, 1);
	h_load(&c, 3, stale, LEN(stale), 3, 0, 1);
	h_start(&c);
	h_block(&c, 1, 3, H_TYPE_BIT(RAFT_MSG_APPEND));
	cr_assert(h_elect(&c, 1));
	cr_assert_eq(c.nodes[1].commit, 6);
	for (uint32_t t = 0; t < 5 * T; t++) {
		h_tick(&c, 1, 1);
		const struct h_msg *m;
		for (size_t i = 0; (m = h_find(&c, 1, 3, RAFT_MSG_HEARTBEAT, i)) != NULL; i++)
			cr_assert_leq(m->m.heartbeat.commit, 1,
			              "heartbeat offers commit %llu to a follower known to hold 1",
			              (unsigned long long)m->m.heartbeat.commit);
		h_deliver_all(&c);
	}
	cr_assert_eq(c.nodes[3].st.leader_id, 1, "3 hears the heartbeats");
	cr_assert_leq(c.nodes[3].commit, 1, "3 committed its divergent entries");
	cr_assert_eq(c.nodes[3].truncations, 0);
	h_heal(&c);
	h_run(&c, 3 * H_HEARTBEAT_TICKS);
	cr_assert(h_logs_equal(&c, 1, 3));
	cr_assert_eq(c.nodes[3].commit, 6);
	h_fini(&c);
}

Test(raft_commit, append_commit_is_capped_by_the_end_of_the_appended_range)
{
	/* 3 holds an extra entry of term 3 that never committed. */
	static const uint64_t s3[] = {1, 3, 3, 3};
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 3, s3, LEN(s3), 3, 0, 1);
	h_start(&c);
	/* Leader 1 of term 4 re-sends index 2 with commit 4: 3 may take the
	 * commit only up to 2, the end of what it knows to agree. */
	struct raft_entry e = {.term = 3, .data = "boot-i2-t3", .len = 10};
	struct raft_message m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 3, .term = 4};
	m.append.prev_index = 1;
	m.append.prev_term = 1;
	m.append.commit = 4;
	m.append.n_entries = 1;
	m.append.entries = &e;
	h_inject(&c, &m);
	cr_assert_eq(c.nodes[3].st.term, 4);
	cr_assert_eq(c.nodes[3].truncations, 0, "a matching entry is no conflict");
	cr_assert_eq(h_last(&c, 3), 4);
	cr_assert_leq(c.nodes[3].commit, 2, "commit %llu reaches past the appended range",
	              (unsigned long long)c.nodes[3].commit);
	h_fini(&c);
}
