/* Scenarios from DLedger's issue tracker, as the Raft core must handle
 * them:
 *  - #52: a member whose log lags never wins an election;
 *  - #85, #247: a preferred leader that cannot win (behind and partly cut
 *    off, down, or losing every election) neither blocks the group nor
 *    stays stuck as candidate;
 *  - #61, #278: a divergent follower converges, and replication does not
 *    stall under loss, duplication and reordering. */
#include <criterion/criterion.h>

#include "harness.h"

#define T          H_ELECTION_TICKS
#define APPEND_BIT H_TYPE_BIT(RAFT_MSG_APPEND)
#define LEN(a)     (sizeof(a) / sizeof((a)[0]))

/* 1 leads; 3 is cut off while ten entries commit on 1 and 2; then 1
 * crashes and 3 comes back. */
static void lagging_member_campaigns(bool prevote)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.prevote = prevote;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_isolate(&c, 3);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(h_propose(&c, 1, "committed"), RAFT_OK);
	h_run(&c, 5 * T);
	uint64_t commit = c.nodes[1].commit;
	cr_assert_eq(commit, h_last(&c, 1));
	h_crash(&c, 1);
	h_heal(&c);
	/* 3 has waited longest: it campaigns first, again and again. */
	for (uint32_t t = 0; t < 30 * T; t++) {
		h_tick(&c, 3, 1);
		h_tick(&c, 2, 1);
		h_deliver_all(&c);
		cr_assert_neq(c.nodes[3].st.role, RAFT_LEADER, "the lagging member won (tick %u)",
		              t);
	}
	cr_assert_eq(c.nodes[3].times_leader, 0);
	cr_assert_eq(h_leader(&c), 2);
	cr_assert(h_logs_equal(&c, 2, 3));
	cr_assert_geq(c.nodes[3].commit, commit);
	h_fini(&c);
}

Test(raft_dledger, lagging_member_never_wins_an_election_issue_52)
{
	lagging_member_campaigns(true);
}

Test(raft_dledger, lagging_member_with_a_higher_term_never_wins_an_election_issue_52)
{
	lagging_member_campaigns(false);
}

Test(raft_dledger,
     preferred_leader_behind_and_cut_off_from_the_leader_does_not_block_the_group_issue_85)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	h_block(&c, 1, 3, APPEND_BIT);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	h_heal(&c);
	h_cut(&c, 1, 3); /* 3 still reaches 2 */
	uint32_t busy = 0;
	for (uint32_t t = 0; t < 20 * T; t++) {
		int rc = h_propose(&c, 1, "work");
		cr_assert(rc == RAFT_OK || rc == RAFT_EBUSY, "tick %u: rc %d", t, rc);
		busy += rc == RAFT_EBUSY;
		h_run(&c, 1);
	}
	cr_assert_eq(busy, 0, "%u proposals refused for a transfer that cannot happen", busy);
	cr_assert_eq(h_leader(&c), 1);
	cr_assert_eq(c.nodes[1].st.term, term, "the group was disrupted");
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 1));
	cr_assert_eq(c.nodes[3].times_candidate, 0, "3 raised its term without a chance to win");
	cr_assert_eq(c.nodes[3].st.term, term);
	/* Healed, 3 catches up and takes over as preferred. */
	h_heal(&c);
	cr_assert_neq(h_run_until_leader(&c, 3, 10 * T), UINT32_MAX);
	h_run(&c, 5 * T);
	cr_assert_eq(h_leader(&c), 3);
	h_fini(&c);
}

Test(raft_dledger, preferred_leader_that_is_down_does_not_make_proposals_busy_issue_247)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_crash(&c, 3);
	/* The leader may try 3 once while it still counts as alive. */
	h_run(&c, 3 * T);
	cr_assert_eq(h_leader(&c), 1);
	uint32_t busy = 0, ok = 0;
	for (uint32_t round = 0; round < 4; round++) {
		h_run(&c, 3 * T); /* idle: 3 looks caught up on paper */
		for (uint32_t t = 0; t < 3 * T; t++) {
			int rc = h_propose(&c, 1, "work");
			busy += rc == RAFT_EBUSY;
			ok += rc == RAFT_OK;
			h_run(&c, 1);
		}
	}
	cr_assert_eq(busy, 0, "%u of %u proposals refused for a member that is down", busy,
	             busy + ok);
	cr_assert_eq(h_leader(&c), 1);
	h_run(&c, H_HEARTBEAT_TICKS);
	cr_assert_eq(c.nodes[2].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_dledger, preferred_leader_that_keeps_losing_does_not_block_the_group_issue_247)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	/* 3 is caught up, but its vote requests never arrive (a one-way
	 * fault of that path): it cannot win, however often it is asked to. */
	h_block(&c, 3, 0, H_TYPE_BIT(RAFT_MSG_VOTE));
	uint32_t ok = 0, tries = 0, as_candidate = 0, longest = 0;
	for (uint32_t t = 0; t < 40 * T; t++) {
		raft_id l = h_leader(&c);
		if (l != 0) {
			tries++;
			ok += h_propose(&c, l, "work") == RAFT_OK;
		}
		h_run(&c, 1);
		as_candidate = c.nodes[3].st.role == RAFT_CANDIDATE ? as_candidate + 1 : 0;
		longest = as_candidate > longest ? as_candidate : longest;
	}
	cr_assert_eq(c.nodes[3].times_leader, 0);
	cr_assert_geq(ok, 40 * T / 2,
	              "only %u of %u ticks took a proposal (%u with a leader; %u leaderships, "
	              "term %llu)",
	              ok, 40 * T, tries, c.nodes[1].times_leader + c.nodes[2].times_leader,
	              (unsigned long long)c.nodes[2].st.term);
	cr_assert_leq(longest, 2 * T, "3 stayed candidate for %u ticks", longest);
	/* Healed, the group settles with the preferred member leading. */
	h_heal(&c);
	cr_assert_neq(h_run_until_leader(&c, 3, 10 * T), UINT32_MAX);
	h_fini(&c);
}

Test(raft_dledger, preferred_leader_whose_timeout_now_arrives_late_loses_and_recovers_issue_247)
{
	/* #247: n0 (preferred) got the transfer request but campaigned only
	 * after the leader had given up and taken writes again; it lost, stayed
	 * candidate with a higher term and fell ever further behind. */
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	h_block(&c, 1, 3, APPEND_BIT);
	cr_assert(h_elect(&c, 1));
	h_heal(&c);
	/* 3 catches up and the leader hands over; hold the first TIMEOUT_NOW
	 * and lose any repeat. */
	h_block(&c, 1, 3, H_TYPE_BIT(RAFT_MSG_TIMEOUT_NOW));
	struct h_msg late;
	bool held = false;
	for (uint32_t t = 0; t < 5 * T && !held; t++) {
		h_tick_all(&c);
		while (c.net_len > 0 && !held) {
			if (c.net[0].m.type == RAFT_MSG_TIMEOUT_NOW) {
				late = c.net[0];
				h_drop_one(&c, 0);
				held = true;
			} else {
				h_deliver_one(&c, 0);
			}
		}
		h_deliver_all(&c);
	}
	cr_assert(held, "the leader never tried to hand over to 3");
	cr_assert_eq(late.m.from, 1);
	cr_assert_eq(late.m.to, 3);
	/* The leader gives up and takes writes again; 3 misses them. */
	h_block(&c, 1, 3, APPEND_BIT);
	uint32_t t = 0;
	while (h_status(&c, 1)->transferee != 0) {
		cr_assert_leq(t++, 2 * T);
		h_run(&c, 1);
	}
	for (int i = 0; i < 10; i++)
		cr_assert_eq(h_propose(&c, 1, "after the transfer failed"), RAFT_OK);
	h_run(&c, 1);
	uint64_t commit = c.nodes[1].commit;
	cr_assert_lt(h_last(&c, 3), h_last(&c, 1));
	/* Now the stale TIMEOUT_NOW arrives: 3 campaigns with a lagging log. */
	h_inject(&c, &late.m);
	h_heal(&c);
	h_run(&c, 1);
	uint32_t cand = 0;
	for (t = 0; t < 10 * T; t++) {
		cand = c.nodes[3].st.role == RAFT_CANDIDATE ? cand + 1 : 0;
		cr_assert_leq(cand, T, "3 stuck as candidate");
		cr_assert(!(c.nodes[3].st.role == RAFT_LEADER && h_last(&c, 3) < commit),
		          "3 leads without the committed entries");
		h_run(&c, 1);
	}
	raft_id l = h_leader(&c);
	cr_assert_neq(l, 0, "the group has no leader");
	cr_assert(h_logs_equal(&c, l, 3), "3 never caught up");
	cr_assert_geq(c.nodes[3].commit, commit);
	cr_assert_neq(h_run_until_leader(&c, 3, 20 * T), UINT32_MAX,
	              "the preferred member never took over");
	h_fini(&c);
}

Test(raft_dledger, preferred_leader_that_campaigns_with_a_lagging_log_returns_to_follower_issue_85)
{
	/* #85: the preferred member started an election while behind, lost,
	 * and stayed candidate with a term larger than everyone's. */
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	h_block(&c, 1, 3, APPEND_BIT);
	cr_assert(h_elect(&c, 1));
	for (int i = 0; i < 10; i++)
		cr_assert_eq(h_propose(&c, 1, "e"), RAFT_OK);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert_eq(c.nodes[3].st.leader_id, 1);
	uint64_t term = c.nodes[1].st.term;
	uint64_t commit = c.nodes[1].commit;
	/* 3 campaigns at once (as on a TIMEOUT_NOW), its log behind. */
	struct raft_message tn = {.type = RAFT_MSG_TIMEOUT_NOW, .from = 1, .to = 3, .term = term};
	h_inject(&c, &tn);
	cr_assert_eq(c.nodes[3].st.role, RAFT_CANDIDATE);
	cr_assert_eq(c.nodes[3].st.term, term + 1);
	h_deliver_all(&c);
	cr_assert_neq(c.nodes[3].st.role, RAFT_CANDIDATE, "3 lost but stays candidate");
	cr_assert_neq(c.nodes[3].st.role, RAFT_LEADER);
	h_heal(&c);
	uint32_t t = 0;
	while (h_leader(&c) == 0 || !h_logs_equal(&c, h_leader(&c), 3)) {
		cr_assert_lt(t++, 5 * T, "the group did not recover");
		h_run(&c, 1);
		cr_assert(!(c.nodes[3].st.role == RAFT_LEADER && h_last(&c, 3) < commit),
		          "3 leads without the committed entries");
	}
	cr_assert_gt(c.nodes[h_leader(&c)].st.term, term);
	cr_assert_geq(c.nodes[3].commit, commit);
	cr_assert_neq(h_run_until_leader(&c, 3, 20 * T), UINT32_MAX);
	h_fini(&c);
}

Test(raft_dledger, preferred_leader_that_returns_catches_up_and_takes_over_issue_247)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.preferred_id = 3;
	h_start(&c);
	h_crash(&c, 3);
	cr_assert(h_elect(&c, 1));
	for (int i = 0; i < 20; i++)
		cr_assert_eq(h_propose(&c, 1, "while 3 was down"), RAFT_OK);
	h_run(&c, 5 * T);
	h_restart(&c, 3);
	cr_assert_neq(h_run_until_leader(&c, 3, 10 * T), UINT32_MAX);
	h_run(&c, 5 * T);
	cr_assert_eq(h_leader(&c), 3);
	cr_assert(h_logs_equal(&c, 1, 3));
	h_fini(&c);
}

/* A tiny deterministic generator for network chaos. */
static uint64_t lcg(uint64_t *s)
{
	*s = *s * 6364136223846793005ull + 1442695040888963407ull;
	return *s >> 33;
}

Test(raft_dledger, divergent_follower_converges_and_replication_does_not_stall_issue_61_278)
{
	/* 3 holds 40 uncommitted entries of term 2; 1 and 2 moved on in
	 * term 3. Small batches and windows make many round trips. */
	uint64_t good[30], stale[41];
	good[0] = stale[0] = 1;
	for (int i = 1; i < 30; i++)
		good[i] = 3;
	for (int i = 1; i < 41; i++)
		stale[i] = 2;
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 3;
	c.cfg.max_inflight_msgs = 4;
	h_load(&c, 1, good, LEN(good), 3, 0, 1);
	h_load(&c, 2, good, LEN(good), 3, 0, 1);
	h_load(&c, 3, stale, LEN(stale), 3, 0, 1);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	/* Meanwhile the client keeps writing; the network to and from 3
	 * loses, duplicates and reorders messages. */
	uint64_t seed = 278;
	for (uint32_t t = 0; t < 20 * T; t++) {
		if (t % 3 == 0)
			cr_assert_eq(h_propose_n(&c, 1, 2, 16), RAFT_OK);
		h_tick_all(&c);
		for (uint32_t guard = 0; c.net_len > 0; guard++) {
			cr_assert_lt(guard, 100000);
			size_t i = (size_t)(lcg(&seed) % c.net_len);
			bool chaos = c.net[i].m.to == 3 || c.net[i].m.from == 3;
			uint64_t roll = lcg(&seed) % 10;
			if (chaos && roll == 0) {
				h_drop_one(&c, i);
			} else {
				if (chaos && roll == 1)
					h_duplicate(&c, i);
				h_deliver_one(&c, i);
			}
		}
	}
	/* Calm network: everything converges within a few heartbeats. */
	uint32_t t = 0;
	while (!h_logs_equal(&c, 1, 3) || c.nodes[3].commit != c.nodes[1].commit) {
		cr_assert_lt(t++, 3 * T, "replication to 3 stalled");
		h_run(&c, 1);
	}
	cr_assert_eq(h_leader(&c), 1, "the chaos on 3's links disrupted the leader");
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 1));
	cr_assert_geq(c.nodes[3].truncations, 1);
	cr_assert_eq(h_term_at(&c, 3, 2), 3);
	h_fini(&c);
}

Test(raft_dledger, follower_that_restarts_with_a_shorter_durable_log_is_caught_up_issue_278)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 2;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	c.nodes[3].manual_log = true;
	cr_assert_eq(h_propose_n(&c, 1, 10, 8), RAFT_OK);
	h_deliver_all(&c);
	cr_assert_eq(h_last(&c, 3), h_last(&c, 1));
	/* 3 crashes before persisting and forgets the entries it held. */
	h_crash(&c, 3);
	c.nodes[3].manual_log = false;
	h_restart(&c, 3);
	cr_assert_lt(h_last(&c, 3), h_last(&c, 1));
	uint32_t t = 0;
	while (!h_logs_equal(&c, 1, 3)) {
		cr_assert_lt(t++, 3 * T, "replication to the restarted member stalled");
		h_run(&c, 1);
	}
	cr_assert_eq(h_leader(&c), 1);
	h_fini(&c);
}
