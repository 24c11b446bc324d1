/* Check-quorum: a leader that has not heard from a majority within an
 * election timeout steps down, so a partitioned leader stops serving. */
#include <criterion/criterion.h>

#include "harness.h"

#define T H_ELECTION_TICKS

Test(raft_check_quorum, leader_cut_off_from_the_majority_steps_down_within_an_election_timeout)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_isolate(&c, 1);
	uint32_t t = 0;
	while (c.nodes[1].st.role == RAFT_LEADER) {
		cr_assert_leq(t, 2 * T, "still leader %u ticks after losing its quorum", t);
		h_tick(&c, 1, 1);
		h_deliver_all(&c);
		t++;
	}
	cr_assert_geq(t, T / 2, "stepped down after only %u ticks", t);
	cr_assert_eq(c.nodes[1].st.role, RAFT_FOLLOWER);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_ENOTLEADER);
	h_fini(&c);
}

Test(raft_check_quorum, leader_hearing_from_a_majority_keeps_leading)
{
	struct h_cluster c;
	h_init(&c, 5);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	h_crash(&c, 4);
	h_crash(&c, 5);
	h_run(&c, 20 * T);
	cr_assert_eq(c.nodes[1].st.role, RAFT_LEADER);
	cr_assert_eq(c.nodes[1].st.term, term);
	cr_assert_eq(c.nodes[1].times_leader, 1);
	h_fini(&c);
}

Test(raft_check_quorum, leader_that_hears_from_a_minority_steps_down)
{
	struct h_cluster c;
	h_init(&c, 5);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_cut(&c, 1, 3);
	h_cut(&c, 1, 4);
	h_cut(&c, 1, 5);
	/* Only 2 answers: 2 of 5 is no majority. Run 1 and 2 alone so that
	 * 3..5 elect nobody who would depose 1 by term. */
	uint32_t t = 0;
	while (c.nodes[1].st.role == RAFT_LEADER) {
		cr_assert_leq(t, 2 * T, "still leader %u ticks after losing its quorum", t);
		h_tick(&c, 1, 1);
		h_tick(&c, 2, 1);
		h_deliver_all(&c);
		t++;
	}
	cr_assert_eq(c.nodes[1].st.term, c.nodes[2].st.term, "it stepped down by itself");
	h_fini(&c);
}

Test(raft_check_quorum, followers_elect_a_new_leader_after_the_old_one_is_cut_off)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	h_isolate(&c, 1);
	h_run(&c, 6 * T);
	raft_id l = h_leader(&c);
	cr_assert(l == 2 || l == 3, "no new leader among 2 and 3");
	cr_assert_gt(c.nodes[l].st.term, term);
	cr_assert_neq(c.nodes[1].st.role, RAFT_LEADER);
	h_heal(&c);
	h_run(&c, 2 * T);
	cr_assert_eq(c.nodes[1].st.leader_id, l);
	h_fini(&c);
}
