/* Leadership transfer (Raft thesis §3.10): the leader stops taking
 * proposals, brings the target up to date, sends TIMEOUT_NOW; the target
 * campaigns at once, past the other members' leases, and wins. A target
 * that does not answer is given up after an election timeout. preferred_id
 * makes the leader hand over to that member once it is caught up. */
#include <criterion/criterion.h>

#include "harness.h"

#define T          H_ELECTION_TICKS
#define APPEND_BIT H_TYPE_BIT(RAFT_MSG_APPEND)

/* 1 leads; 3 lags behind by five entries. */
static void setup_lagging_3(struct h_cluster *c)
{
	h_start(c);
	cr_assert(h_elect(c, 1));
	h_block(c, 1, 3, APPEND_BIT);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(h_propose(c, 1, "e"), RAFT_OK);
	h_deliver_all(c);
	cr_assert_lt(h_last(c, 3), h_last(c, 1));
}

Test(raft_transfer, leader_refuses_proposals_while_transferring)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup_lagging_3(&c);
	h_transfer(&c, 1, 3);
	cr_assert_eq(h_status(&c, 1)->transferee, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_EBUSY);
	cr_assert_eq(h_propose_n(&c, 1, 2, 4), RAFT_EBUSY);
	h_fini(&c);
}

Test(raft_transfer, target_is_brought_up_to_date_before_timeout_now_and_wins)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup_lagging_3(&c);
	uint64_t term = c.nodes[1].st.term;
	/* Long enough for the leader to see that 3 lags (not just that its
	 * appends are still on the way). */
	h_run(&c, 2 * T);
	cr_assert_lt(h_peer(&c, 1, 3)->match_index, h_last(&c, 1));
	h_heal(&c);
	h_transfer(&c, 1, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_EBUSY);
	bool seen = false;
	for (uint32_t t = 0; t < 3 * T && h_leader(&c) != 3; t++) {
		h_tick_all(&c);
		while (c.net_len > 0) {
			if (!seen && h_count(&c, 1, 3, RAFT_MSG_TIMEOUT_NOW) > 0) {
				seen = true;
				cr_assert(h_logs_equal(&c, 1, 3),
				          "TIMEOUT_NOW sent before 3 caught up");
				cr_assert_eq(h_peer(&c, 1, 3)->match_index, h_last(&c, 1));
			}
			h_deliver_one(&c, 0);
		}
	}
	cr_assert(seen, "no TIMEOUT_NOW");
	cr_assert_eq(h_leader(&c), 3);
	cr_assert_eq(c.nodes[3].st.term, term + 1, "the target won at the next term");
	cr_assert_eq(c.nodes[1].st.role, RAFT_FOLLOWER);
	cr_assert_eq(h_status(&c, 1)->transferee, 0);
	cr_assert_eq(h_propose(&c, 3, "after"), RAFT_OK);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert(h_logs_equal(&c, 1, 3));
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 3));
	h_fini(&c);
}

Test(raft_transfer, transfer_to_an_up_to_date_member_completes_without_ticks)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_transfer(&c, 1, 2);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_TIMEOUT_NOW), 1);
	h_deliver_all(&c);
	cr_assert_eq(h_leader(&c), 2);
	cr_assert_eq(c.nodes[1].st.leader_id, 2);
	h_fini(&c);
}

Test(raft_transfer, transfer_to_an_unreachable_member_is_abandoned_after_an_election_timeout)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	h_isolate(&c, 3);
	h_transfer(&c, 1, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_EBUSY);
	uint32_t t = 0;
	while (h_status(&c, 1)->transferee != 0) {
		cr_assert_leq(t++, 2 * T, "transfer still pending after %u ticks", t);
		h_run(&c, 1);
	}
	cr_assert_geq(t, T / 2, "abandoned after only %u ticks", t);
	cr_assert_eq(h_leader(&c), 1);
	cr_assert_eq(c.nodes[1].st.term, term);
	cr_assert_eq(h_propose(&c, 1, "y"), RAFT_OK);
	h_run(&c, H_HEARTBEAT_TICKS + 1);
	cr_assert_eq(c.nodes[2].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_transfer, transfer_to_self_or_a_stranger_changes_nothing)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_transfer(&c, 1, 1);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_transfer(&c, 1, 7);
	cr_assert_eq(h_propose(&c, 1, "y"), RAFT_OK);
	cr_assert_eq(h_status(&c, 1)->transferee, 0);
	h_fini(&c);
}

Test(raft_transfer, leadership_moves_to_the_preferred_member_once_it_is_caught_up)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	h_block(&c, 1, 3, APPEND_BIT);
	cr_assert(h_elect(&c, 1));
	for (int i = 0; i < 5; i++)
		cr_assert_eq(h_propose(&c, 1, "e"), RAFT_OK);
	h_run(&c, 3 * T);
	cr_assert_eq(h_leader(&c), 1, "3 cannot lead before it has caught up");
	cr_assert_eq(c.nodes[3].times_leader, 0);
	h_heal(&c);
	uint32_t took = h_run_until_leader(&c, 3, 5 * T);
	cr_assert_neq(took, UINT32_MAX, "leadership never moved to the preferred member");
	h_run(&c, 10 * T);
	cr_assert_eq(h_leader(&c), 3, "leadership did not stay with the preferred member");
	cr_assert_eq(c.nodes[3].times_leader, 1);
	cr_assert_eq(c.nodes[1].times_leader, 1);
	cr_assert_eq(h_propose(&c, 3, "z"), RAFT_OK);
	h_run(&c, H_HEARTBEAT_TICKS + 1);
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 3));
	h_fini(&c);
}
