/* Fast bring-up (raft/raft.h; raft/election.c, stands_first): until it has
 * known a leader since boot, the preferred member draws its election
 * timeouts from [T/4, T/2), so a fresh group elects it first, in one
 * election, well within one election timeout; it campaigns by the usual
 * rules (pre-vote), so a restarted preferred member does not disturb a
 * group whose leader holds its lease; once it has known a leader its
 * timeouts are the usual [T, 2T). */
#include <criterion/criterion.h>

#include "harness.h"

#define T H_ELECTION_TICKS

Test(raft_bringup, a_fresh_group_elects_its_preferred_member_first_within_half_a_timeout)
{
	for (uint64_t seed = 1; seed <= 50; seed++) {
		struct h_cluster c;
		h_init(&c, 3);
		c.cfg.seed = seed;
		c.cfg.preferred_id = (raft_id)(seed % 3 + 1);
		h_start(&c);
		raft_id p = c.cfg.preferred_id;
		uint32_t ticks = h_run_until_leader(&c, p, 2 * T);
		cr_assert_lt(ticks, T / 2 + 1, "seed %llu: preferred %u led after %u ticks",
		             (unsigned long long)seed, p, ticks);
		uint64_t elections = 0;
		for (raft_id id = 1; id <= 3; id++)
			elections += h_status(&c, id)->elections;
		cr_assert_eq(elections, 1, "seed %llu: one election, the preferred member's",
		             (unsigned long long)seed);
		cr_assert_eq(h_leader(&c), p);
		h_fini(&c);
	}
}

Test(raft_bringup, without_a_preferred_member_timeouts_are_the_usual_ones)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	for (raft_id id = 1; id <= 3; id++)
		cr_assert_geq(raft_ticks_until_due(h_node(&c, id)->r), T);
	h_fini(&c);
}

Test(raft_bringup, once_it_has_known_a_leader_the_preferred_member_waits_as_the_others)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	cr_assert_lt(raft_ticks_until_due(h_node(&c, 3)->r), T / 2);
	cr_assert(h_elect(&c, 1)); /* 3 is not ticked: 1 wins */
	cr_assert_eq(h_status(&c, 3)->leader_id, 1);
	/* 3 heard 1: its next timeouts are drawn from [T, 2T). */
	h_crash(&c, 1);
	cr_assert_geq(raft_ticks_until_due(h_node(&c, 3)->r), T);
	h_tick(&c, 3, T - 1);
	h_deliver_all(&c);
	cr_assert_eq(h_status(&c, 3)->role, RAFT_FOLLOWER, "campaigned before T");
	h_fini(&c);
}

Test(raft_bringup, a_restarted_preferred_member_does_not_disturb_a_leader_in_its_lease)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = h_status(&c, 1)->term;
	h_crash(&c, 3);
	h_restart(&c, 3);
	/* Back with no leader known: it stands first, but 1 and 2 heard a
	 * leader within the election timeout and refuse its pre-votes. */
	for (uint32_t i = 0; i < T; i++) {
		h_tick(&c, 3, 1);
		h_deliver_all(&c);
	}
	cr_assert_eq(h_status(&c, 1)->role, RAFT_LEADER);
	cr_assert_eq(h_status(&c, 1)->term, term, "no term was raised");
	cr_assert_eq(h_status(&c, 2)->term, term);
	cr_assert_eq(h_status(&c, 3)->term, term);
	/* The leader's heartbeat makes it a follower with the usual timeouts. */
	h_tick(&c, 1, H_HEARTBEAT_TICKS);
	h_deliver_all(&c);
	cr_assert_eq(h_status(&c, 3)->leader_id, 1);
	cr_assert_geq(raft_ticks_until_due(h_node(&c, 3)->r), T - H_HEARTBEAT_TICKS);
	h_fini(&c);
}
