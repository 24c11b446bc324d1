/* Elections: randomized timeouts, pre-vote, one durable vote per term, the
 * up-to-date rule (Raft §5.4.1), and votes released only once durable. */
#include <criterion/criterion.h>

#include "harness.h"

#define T H_ELECTION_TICKS

/* A hand-made vote request from `from` to `to`. */
static struct raft_message vote_req(uint8_t type, raft_id from, raft_id to, uint64_t term,
                                    uint64_t last_index, uint64_t last_term)
{
	struct raft_message m = {.type = type, .from = from, .to = to, .term = term};
	m.vote.last_index = last_index;
	m.vote.last_term = last_term;
	return m;
}

/* The n-th queued VOTE_RESP/PREVOTE_RESP from `from` to `to`, which must
 * exist. */
static bool granted(const struct h_cluster *c, raft_id from, raft_id to, uint8_t type)
{
	const struct h_msg *m = h_find(c, from, to, type, 0);
	cr_assert_not_null(m, "no %s from %u to %u", raft_msg_type_name(type), from, to);
	return m->m.vote_resp.granted;
}

static uint32_t ticks_until_campaign(uint64_t seed, uint32_t election_ticks)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.election_ticks = election_ticks;
	c.cfg.seed = seed;
	h_start(&c);
	uint32_t ticks = 0;
	while (c.nodes[1].st.role == RAFT_FOLLOWER) {
		cr_assert_lt(ticks, 4 * election_ticks, "seed %llu: no campaign",
		             (unsigned long long)seed);
		h_tick(&c, 1, 1);
		ticks++;
	}
	cr_assert_eq(c.nodes[1].st.role, RAFT_PRECANDIDATE);
	h_fini(&c);
	return ticks;
}

Test(raft_election, timeout_is_randomized_within_T_to_2T_over_many_seeds)
{
	const uint32_t et = 20;
	uint32_t hist[2 * 20 + 1] = {0};
	uint32_t lo = UINT32_MAX, hi = 0, distinct = 0;
	for (uint64_t seed = 1; seed <= 300; seed++) {
		uint32_t t = ticks_until_campaign(seed, et);
		cr_assert(t >= et && t < 2 * et, "seed %llu: timeout %u outside [%u, %u)",
		          (unsigned long long)seed, t, et, 2 * et);
		if (hist[t]++ == 0)
			distinct++;
		lo = t < lo ? t : lo;
		hi = t > hi ? t : hi;
	}
	/* 300 draws from 20 values: all but a few must show up. */
	cr_assert_geq(distinct, 15, "only %u distinct timeouts", distinct);
	cr_assert_leq(lo, et + 2);
	cr_assert_geq(hi, 2 * et - 3);
}

Test(raft_election, timeout_is_redrawn_for_every_wait)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.election_ticks = 20;
	h_start(&c);
	h_isolate(&c, 1);
	uint64_t last_tick = 0, rounds = 0;
	bool varied = false;
	uint64_t first_gap = 0;
	for (uint64_t t = 1; t <= 40 * 20; t++) {
		uint64_t before = c.nodes[1].msgs_sent[RAFT_MSG_PREVOTE];
		h_tick(&c, 1, 1);
		h_drop_all(&c);
		if (c.nodes[1].msgs_sent[RAFT_MSG_PREVOTE] == before)
			continue;
		uint64_t gap = t - last_tick;
		cr_assert(gap >= 20 && gap < 40, "wait of %llu ticks outside [T, 2T)",
		          (unsigned long long)gap);
		if (rounds == 0)
			first_gap = gap;
		else if (gap != first_gap)
			varied = true;
		last_tick = t;
		rounds++;
	}
	cr_assert_geq(rounds, 20);
	cr_assert(varied, "every wait was %llu ticks", (unsigned long long)first_gap);
	h_fini(&c);
}

Test(raft_election, prevote_does_not_raise_the_term)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	h_isolate(&c, 1);
	h_run(&c, 10 * T);
	struct h_node *n = h_node(&c, 1);
	cr_assert_geq(n->msgs_sent[RAFT_MSG_PREVOTE], 4, "it did campaign");
	cr_assert_eq(n->msgs_sent[RAFT_MSG_VOTE], 0);
	cr_assert_eq(n->st.term, 0);
	cr_assert_eq(n->hs_changes, 0, "pre-vote touched the hard state");
	cr_assert_eq(n->st.elections, 0);
	cr_assert_eq(n->times_candidate, 0);
	h_fini(&c);
}

Test(raft_election, prevote_request_carries_the_next_term_and_leaves_the_voters_term)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	while (c.nodes[1].st.role != RAFT_PRECANDIDATE)
		h_tick(&c, 1, 1);
	const struct h_msg *pv = h_find(&c, 1, 2, RAFT_MSG_PREVOTE, 0);
	cr_assert_not_null(pv);
	cr_assert_eq(pv->m.term, 1, "a pre-vote asks about term + 1");
	h_deliver_match(&c, 1, 2, RAFT_MSG_PREVOTE);
	cr_assert_eq(c.nodes[2].st.term, 0);
	cr_assert_eq(c.nodes[2].hs_changes, 0);
	cr_assert(granted(&c, 2, 1, RAFT_MSG_PREVOTE_RESP));
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].st.role, RAFT_LEADER);
	cr_assert_eq(c.nodes[1].st.term, 1);
	h_fini(&c);
}

Test(raft_election, member_cut_off_and_returning_does_not_disrupt_a_healthy_leader)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	h_isolate(&c, 3);
	h_run(&c, 10 * T);
	cr_assert_geq(c.nodes[3].msgs_sent[RAFT_MSG_PREVOTE], 2, "member 3 did try");
	cr_assert_eq(c.nodes[3].st.term, term, "pre-vote kept member 3's term");
	h_heal(&c);
	/* Member 3 asks again, now reachable; 1 leads and 2 has a live leader
	 * (lease), so both refuse. */
	uint64_t asked = c.nodes[3].msgs_sent[RAFT_MSG_PREVOTE];
	while (c.nodes[3].msgs_sent[RAFT_MSG_PREVOTE] == asked)
		h_tick(&c, 3, 1);
	cr_assert_eq(h_count(&c, 3, 0, RAFT_MSG_PREVOTE), 2);
	h_run(&c, 10 * T);
	cr_assert_eq(h_leader(&c), 1);
	cr_assert_eq(c.nodes[1].st.term, term);
	cr_assert_eq(c.nodes[1].times_leader, 1);
	cr_assert_eq(c.nodes[3].st.role, RAFT_FOLLOWER);
	cr_assert_eq(c.nodes[3].st.leader_id, 1);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_run(&c, 2);
	cr_assert_eq(c.nodes[3].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_election, follower_with_a_live_leader_refuses_prevote_even_to_an_up_to_date_log)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	struct raft_message m = vote_req(RAFT_MSG_PREVOTE, 3, 2, term + 1, h_last(&c, 1),
	                                 h_term_at(&c, 1, h_last(&c, 1)));
	h_inject(&c, &m);
	/* Refused: either answered "no" or ignored (etcd ignores it). */
	const struct h_msg *r = h_find(&c, 2, 3, RAFT_MSG_PREVOTE_RESP, 0);
	cr_assert(r == NULL || !r->m.vote_resp.granted, "pre-vote granted despite the lease");
	cr_assert_eq(c.nodes[2].st.term, term);
	cr_assert_eq(c.nodes[2].st.leader_id, 1);
	h_fini(&c);
}

Test(raft_election, follower_with_a_live_leader_ignores_a_disruptive_vote_request)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t term = c.nodes[1].st.term;
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 3, 2, term + 5, h_last(&c, 1),
	                                 h_term_at(&c, 1, h_last(&c, 1)));
	h_inject(&c, &m);
	cr_assert_eq(c.nodes[2].st.term, term, "a lease-holding follower kept its term");
	cr_assert_eq(c.nodes[2].st.leader_id, 1);
	h_fini(&c);
}

Test(raft_election, one_vote_per_term)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 1, 0, 0);
	h_inject(&c, &m);
	cr_assert(granted(&c, 1, 2, RAFT_MSG_VOTE_RESP));
	cr_assert_eq(c.nodes[1].st.vote, 2);
	h_drop_all(&c);
	m = vote_req(RAFT_MSG_VOTE, 3, 1, 1, 0, 0);
	h_inject(&c, &m);
	cr_assert(!granted(&c, 1, 3, RAFT_MSG_VOTE_RESP), "second vote in term 1");
	cr_assert_eq(c.nodes[1].st.vote, 2);
	h_drop_all(&c);
	/* A new term frees the vote. */
	m = vote_req(RAFT_MSG_VOTE, 3, 1, 2, 0, 0);
	h_inject(&c, &m);
	cr_assert(granted(&c, 1, 3, RAFT_MSG_VOTE_RESP));
	h_fini(&c);
}

/* Voter 1 holds [1, 1, 2] at term 2; a candidate of term 3 asks with the
 * given last entry. */
static bool vote_for_log(uint64_t last_index, uint64_t last_term)
{
	static const uint64_t voter[] = {1, 1, 2};
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 1, voter, 3, 2, 0, 0);
	h_start(&c);
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 3, last_index, last_term);
	h_inject(&c, &m);
	const struct h_msg *r = h_find(&c, 1, 2, RAFT_MSG_VOTE_RESP, 0);
	cr_assert_not_null(r);
	cr_assert_eq(r->m.term, 3, "the voter took the candidate's term");
	bool g = r->m.vote_resp.granted;
	cr_assert_eq(c.nodes[1].st.vote, g ? 2 : 0);
	h_fini(&c);
	return g;
}

Test(raft_election, candidate_with_shorter_log_gets_no_vote)
{
	cr_assert(!vote_for_log(2, 2));
}

Test(raft_election, candidate_with_older_last_term_gets_no_vote_even_with_a_longer_log)
{
	cr_assert(!vote_for_log(10, 1));
}

Test(raft_election, candidate_with_newer_last_term_gets_the_vote_even_with_a_shorter_log)
{
	cr_assert(vote_for_log(1, 3));
}

Test(raft_election, candidate_with_equal_or_longer_log_of_the_same_term_gets_the_vote)
{
	cr_assert(vote_for_log(3, 2));
	cr_assert(vote_for_log(4, 2));
}

Test(raft_election, prevote_follows_the_up_to_date_rule_too)
{
	static const uint64_t voter[] = {1, 1, 2};
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 1, voter, 3, 2, 0, 0);
	h_start(&c);
	struct raft_message m = vote_req(RAFT_MSG_PREVOTE, 2, 1, 3, 10, 1);
	h_inject(&c, &m);
	cr_assert(!granted(&c, 1, 2, RAFT_MSG_PREVOTE_RESP));
	h_drop_all(&c);
	m = vote_req(RAFT_MSG_PREVOTE, 3, 1, 3, 3, 2);
	h_inject(&c, &m);
	cr_assert(granted(&c, 1, 3, RAFT_MSG_PREVOTE_RESP));
	cr_assert_eq(c.nodes[1].st.term, 2);
	h_fini(&c);
}

Test(raft_election, vote_is_not_released_before_the_vote_is_durable)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct h_node *n = h_node(&c, 1);
	n->manual_state = true;
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 1, 0, 0);
	const struct raft_update *u = h_inject(&c, &m);
	cr_assert(u->hard_state_changed);
	cr_assert_eq(u->term, 1);
	cr_assert_eq(u->vote, 2);
	cr_assert_eq(h_count(&c, 1, 0, RAFT_MSG_VOTE_RESP), 0, "vote released before durable");
	h_tick(&c, 1, 1);
	cr_assert_eq(h_count(&c, 1, 0, 0), 0);
	h_persist_state(&c, 1);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_VOTE_RESP), 1);
	cr_assert(granted(&c, 1, 2, RAFT_MSG_VOTE_RESP));
	h_fini(&c);
}

Test(raft_election, candidate_asks_for_votes_only_after_its_term_and_vote_are_durable)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct h_node *n = h_node(&c, 1);
	n->manual_state = true;
	while (n->st.role == RAFT_FOLLOWER)
		h_tick(&c, 1, 1);
	h_deliver_all(&c); /* pre-vote round */
	cr_assert_eq(n->st.role, RAFT_CANDIDATE);
	cr_assert_eq(n->hs_term, 1);
	cr_assert_eq(n->hs_vote, 1);
	cr_assert_eq(h_count(&c, 1, 0, RAFT_MSG_VOTE), 0, "votes requested before durable");
	h_persist_state(&c, 1);
	cr_assert_eq(h_count(&c, 1, 0, RAFT_MSG_VOTE), 2);
	const struct h_msg *v = h_find(&c, 1, 2, RAFT_MSG_VOTE, 0);
	cr_assert_eq(v->m.term, 1);
	cr_assert_eq(v->m.vote.last_index, 0);
	h_deliver_all(&c);
	cr_assert_eq(n->st.role, RAFT_LEADER);
	h_fini(&c);
}

Test(raft_election, late_confirmation_of_an_older_vote_releases_nothing)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct h_node *n = h_node(&c, 1);
	n->manual_state = true;
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 1, 0, 0);
	h_inject(&c, &m);
	m = vote_req(RAFT_MSG_VOTE, 3, 1, 2, 0, 0);
	h_inject(&c, &m);
	cr_assert_eq(n->hs_term, 2);
	cr_assert_eq(n->hs_vote, 3);
	h_confirm_state(&c, 1, 1, 2);
	cr_assert_eq(h_count(&c, 1, 3, RAFT_MSG_VOTE_RESP), 0,
	             "vote of term 2 released on the confirmation of term 1");
	h_persist_state(&c, 1);
	cr_assert(granted(&c, 1, 3, RAFT_MSG_VOTE_RESP));
	h_fini(&c);
}

Test(raft_election, restarted_member_does_not_vote_twice_in_a_term)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 1, 0, 0);
	h_inject(&c, &m);
	cr_assert(granted(&c, 1, 2, RAFT_MSG_VOTE_RESP));
	h_crash(&c, 1);
	h_restart(&c, 1);
	cr_assert_eq(c.nodes[1].st.term, 1);
	cr_assert_eq(c.nodes[1].st.vote, 2);
	m = vote_req(RAFT_MSG_VOTE, 3, 1, 1, 0, 0);
	h_inject(&c, &m);
	cr_assert(!granted(&c, 1, 3, RAFT_MSG_VOTE_RESP), "voted twice in term 1");
	h_fini(&c);
}

Test(raft_election, member_that_crashes_before_its_vote_is_durable_never_sent_it)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	struct h_node *n = h_node(&c, 1);
	n->manual_state = true;
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, 1, 0, 0);
	h_inject(&c, &m);
	h_crash(&c, 1);
	cr_assert_eq(n->msgs_sent[RAFT_MSG_VOTE_RESP], 0);
	h_restart(&c, 1);
	cr_assert_eq(n->st.term, 0);
	cr_assert_eq(n->st.vote, 0);
	n->manual_state = false;
	m = vote_req(RAFT_MSG_VOTE, 3, 1, 1, 0, 0);
	h_inject(&c, &m);
	cr_assert(granted(&c, 1, 3, RAFT_MSG_VOTE_RESP), "the lost vote binds nothing");
	h_fini(&c);
}

Test(raft_election, candidate_that_restarts_does_not_vote_for_another_in_its_term)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	h_isolate(&c, 1);
	c.nodes[1].cfg.prevote = false;
	h_crash(&c, 1);
	h_restart(&c, 1);
	while (c.nodes[1].st.role != RAFT_CANDIDATE)
		h_tick(&c, 1, 1);
	uint64_t term = c.nodes[1].st.term;
	h_crash(&c, 1);
	h_restart(&c, 1);
	h_heal(&c);
	struct raft_message m = vote_req(RAFT_MSG_VOTE, 2, 1, term, 0, 0);
	h_inject(&c, &m);
	cr_assert(!granted(&c, 1, 2, RAFT_MSG_VOTE_RESP), "it voted for itself in term %llu",
	          (unsigned long long)term);
	h_fini(&c);
}
