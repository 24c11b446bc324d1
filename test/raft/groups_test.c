/* Groups of 1, 3 and 5 members elect a leader and commit; a majority is
 * needed and enough. */
#include <criterion/criterion.h>

#include "harness.h"

/* Runs whole-group ticks until some member leads. */
static raft_id await_leader(struct h_cluster *c, uint32_t max_ticks)
{
	for (uint32_t t = 0; t < max_ticks; t++) {
		raft_id l = h_leader(c);
		if (l)
			return l;
		h_run(c, 1);
	}
	return h_leader(c);
}

static void elect_and_commit(uint32_t n)
{
	struct h_cluster c;
	h_init(&c, n);
	h_start(&c);
	raft_id l = await_leader(&c, 20 * H_ELECTION_TICKS);
	cr_assert_neq(l, 0, "a group of %u elects no leader", n);
	uint32_t leaders = 0;
	for (raft_id id = 1; id <= n; id++)
		leaders += c.nodes[id].st.role == RAFT_LEADER;
	cr_assert_eq(leaders, 1);

	cr_assert_eq(h_propose(&c, l, "hello"), RAFT_OK);
	uint64_t idx = c.nodes[l].last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_geq(c.nodes[l].commit, idx, "leader of %u does not commit", n);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	for (raft_id id = 1; id <= n; id++) {
		cr_assert_geq(c.nodes[id].commit, idx, "member %u of %u does not learn the commit",
		              id, n);
		cr_assert(h_logs_equal(&c, id, l));
	}
	h_fini(&c);
}

Test(raft_groups, single_member_group_elects_itself)
{
	struct h_cluster c;
	h_init(&c, 1);
	h_start(&c);
	h_tick(&c, 1, 2 * H_ELECTION_TICKS);
	cr_assert_eq(c.nodes[1].st.role, RAFT_LEADER);
	cr_assert_eq(c.nodes[1].st.leader_id, 1);
	cr_assert_eq(c.net_len, 0, "a single member has nobody to talk to");
	h_fini(&c);
}

Test(raft_groups, single_member_group_commits_only_after_its_own_persist)
{
	struct h_cluster c;
	h_init(&c, 1);
	h_start(&c);
	struct h_node *n = h_node(&c, 1);
	n->manual_log = true;
	h_tick(&c, 1, 2 * H_ELECTION_TICKS);
	cr_assert_eq(n->st.role, RAFT_LEADER);
	cr_assert_eq(h_last(&c, 1), 1, "the NOOP of the new term");
	cr_assert_eq(n->commit, 0, "the NOOP is not durable yet");
	h_persist_log(&c, 1, 0);
	cr_assert_eq(n->commit, 1);

	cr_assert_eq(h_propose(&c, 1, "a"), RAFT_OK);
	cr_assert_eq(h_propose(&c, 1, "b"), RAFT_OK);
	cr_assert_eq(n->commit, 1, "proposals commit only once durable");
	h_persist_log(&c, 1, 2);
	cr_assert_eq(n->commit, 2);
	h_persist_log(&c, 1, 3);
	cr_assert_eq(n->commit, 3);
	h_fini(&c);
}

Test(raft_groups, three_member_group_elects_and_commits)
{
	elect_and_commit(3);
}

Test(raft_groups, five_member_group_elects_and_commits)
{
	elect_and_commit(5);
}

Test(raft_groups, five_member_group_commits_with_two_members_down)
{
	struct h_cluster c;
	h_init(&c, 5);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_crash(&c, 4);
	h_crash(&c, 5);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = c.nodes[1].last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].commit, idx);
	h_fini(&c);
}

Test(raft_groups, five_member_group_does_not_commit_with_three_members_down)
{
	struct h_cluster c;
	h_init(&c, 5);
	c.cfg.check_quorum = false; /* keep the leader to watch it not commit */
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t before = c.nodes[1].commit;
	h_crash(&c, 3);
	h_crash(&c, 4);
	h_crash(&c, 5);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_run(&c, 3 * H_ELECTION_TICKS);
	cr_assert_eq(c.nodes[1].commit, before, "committed without a majority");
	cr_assert_eq(c.nodes[2].commit, before);
	h_fini(&c);
}

Test(raft_groups, five_member_group_elects_a_new_leader_after_the_leader_crashes)
{
	struct h_cluster c;
	h_init(&c, 5);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	cr_assert_eq(h_propose(&c, 1, "before"), RAFT_OK);
	uint64_t idx = c.nodes[1].last_update.propose_index;
	h_deliver_all(&c);
	h_crash(&c, 1);
	raft_id l = await_leader(&c, 20 * H_ELECTION_TICKS);
	cr_assert(l != 0 && l != 1);
	cr_assert_eq(h_term_at(&c, l, idx), h_term_at(&c, 2, idx));
	cr_assert_eq(h_propose(&c, l, "after"), RAFT_OK);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	for (raft_id id = 2; id <= 5; id++)
		cr_assert_eq(c.nodes[id].commit, h_last(&c, l));
	h_fini(&c);
}
