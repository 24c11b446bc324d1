/* Members that lose their disk (raft.h, "Voters"): a store made afresh has
 * a new incarnation and is not a voter; the leader repairs it from the
 * start; it neither votes towards a win nor counts towards commit until a
 * leader vouches for it; a new group elects its first leader with every
 * member's grant. Also the follower rules that a lost store stresses:
 * a new term or leader forgets the old leader's agreed index, a PERSISTED
 * report from before a truncation is ignored, a vote in a durable term. */
#include <criterion/criterion.h>
#include <stdio.h>

#include "harness.h"

#define T H_ELECTION_TICKS


static void propose_all(struct h_cluster *c, raft_id leader, int n)
{
	for (int i = 0; i < n; i++) {
		char body[32];
		snprintf(body, sizeof(body), "e%d", i);
		cr_assert_eq(h_propose(c, leader, body), RAFT_OK);
	}
}

/* Finding 1 of issue 12: a wiped follower stayed at an empty log for good,
 * because the leader never let its next index drop below the match index
 * the old store had acknowledged. */
Test(raft_disk_loss, a_wiped_follower_is_repaired_from_the_start)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	propose_all(&c, 1, 20);
	h_run(&c, 2);
	cr_assert_eq(h_peer(&c, 1, 3)->match_index, h_last(&c, 1));
	h_wipe(&c, 3);
	cr_assert_eq(h_last(&c, 3), 0);
	propose_all(&c, 1, 5);
	h_run(&c, 4 * T);
	cr_assert(h_logs_equal(&c, 1, 3), "the wiped follower was not repaired (last %llu of %llu)",
	          (unsigned long long)h_last(&c, 3), (unsigned long long)h_last(&c, 1));
	cr_assert_geq(h_status(&c, 1)->member_resets, 1);
	cr_assert(h_status(&c, 3)->voter, "caught up and vouched for: a voter again");
	cr_assert(h_peer(&c, 1, 3)->voter);
	h_fini(&c);
}

/* The same without a new incarnation: a disk that lied about a sync (the
 * follower's log ends below what it acknowledged). */
Test(raft_disk_loss, a_follower_whose_log_ends_below_its_match_is_repaired)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	propose_all(&c, 1, 20);
	h_run(&c, 2);
	uint64_t last = h_last(&c, 1);
	cr_assert_eq(h_peer(&c, 1, 3)->match_index, last);
	/* Member 3 comes back with the first 5 entries only, same store. */
	h_lose_tail(&c, 3, 5);
	propose_all(&c, 1, 1);
	h_run(&c, 4 * T);
	cr_assert(h_logs_equal(&c, 1, 3), "not repaired: last %llu of %llu",
	          (unsigned long long)h_last(&c, 3), (unsigned long long)h_last(&c, 1));
	cr_assert_geq(h_status(&c, 1)->member_resets, 1);
	h_fini(&c);
}

/* Finding 2 of issue 12. An entry committed on {1, 2} only; 2 then loses its
 * store and 1 stops. 3 (which never got the entry) and the new 2 are a
 * majority of live members, but 2 is not a voter: they must not elect, or
 * the committed entry is gone. Once 1 is back, the group elects a leader
 * holding it and 2 is repaired. (The harness checks on every step that a
 * new leader holds every applied entry.) */
Test(raft_disk_loss, a_member_that_lost_its_log_does_not_vote_a_committed_entry_away)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_run(&c, 2);
	h_isolate(&c, 3);
	propose_all(&c, 1, 3);
	h_run(&c, 2);
	uint64_t committed = h_status(&c, 1)->commit_index;
	cr_assert_eq(committed, h_last(&c, 1));
	cr_assert_lt(h_last(&c, 3), committed);
	h_crash(&c, 1);
	h_wipe(&c, 2);
	h_heal(&c);
	h_run(&c, 20 * T);
	cr_assert_eq(h_leader(&c), 0, "members 2 (wiped) and 3 (behind) elected member %u",
	             h_leader(&c));
	h_restart(&c, 1);
	h_run(&c, 20 * T);
	raft_id l = h_leader(&c);
	cr_assert_neq(l, 0);
	cr_assert_geq(h_last(&c, l), committed);
	cr_assert(h_logs_equal(&c, l, 2));
	cr_assert(h_logs_equal(&c, l, 3));
	h_fini(&c);
}

/* A new group: every store is new. The first election takes every
 * member's grant; with one member missing none happens; the followers
 * become voters on their first round trip with the leader. */
Test(raft_disk_loss, a_new_group_elects_once_every_member_grants)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_fresh(&c);
	h_start(&c);
	h_crash(&c, 3);
	h_run(&c, 20 * T);
	cr_assert_eq(h_leader(&c), 0, "elected without member 3's grant");
	h_restart(&c, 3);
	h_run(&c, 20 * T);
	raft_id l = h_leader(&c);
	cr_assert_neq(l, 0);
	propose_all(&c, l, 3);
	h_run(&c, 2);
	for (raft_id id = 1; id <= 3; id++) {
		cr_assert(h_status(&c, id)->voter, "member %u is not a voter", id);
		cr_assert(h_logs_equal(&c, l, id));
	}
	cr_assert_eq(h_status(&c, l)->commit_index, h_last(&c, l));
	/* Now a plain majority elects. */
	h_crash(&c, l);
	h_run(&c, 20 * T);
	cr_assert_neq(h_leader(&c), 0);
	h_fini(&c);
}

/* A wiped member of an idle group: nothing new is committed, so the leader
 * appends a no-op to vouch for it once it caught up. */
Test(raft_disk_loss, an_idle_leader_vouches_for_a_repaired_member)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	propose_all(&c, 1, 4);
	h_run(&c, 2);
	uint64_t before = h_last(&c, 1);
	h_wipe(&c, 2);
	h_run(&c, 6 * T);
	cr_assert(h_status(&c, 2)->voter);
	cr_assert_eq(h_last(&c, 1), before + 1, "one no-op to vouch: last %llu, before %llu",
	             (unsigned long long)h_last(&c, 1), (unsigned long long)before);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(h_status(&c, 1)->promotions, 1);
	h_fini(&c);
}

/* A message of an older incarnation (sent before the store was replaced)
 * that arrives late is ignored, so an acknowledgement the old store made
 * is not counted again after the leader knew of the new one. */
Test(raft_disk_loss, a_late_message_of_an_old_incarnation_is_ignored)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_fresh(&c);
	h_start(&c);
	h_run(&c, 20 * T);
	raft_id l = h_leader(&c);
	cr_assert_neq(l, 0);
	raft_id f = l == 3 ? 2 : 3;
	propose_all(&c, l, 2);
	h_run(&c, 2);
	struct raft_message old = {.type = RAFT_MSG_APPEND_RESP,
	                           .from = f,
	                           .to = l,
	                           .term = h_status(&c, l)->term,
	                           .incarnation = h_status(&c, f)->incarnation,
	                           .voter = true};
	old.append_resp.match_index = h_last(&c, l);
	old.append_resp.last_index = h_last(&c, l);
	uint64_t old_inc = old.incarnation;
	h_wipe(&c, f);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert_gt(h_peer(&c, l, f)->incarnation, old_inc);
	uint64_t ignored = h_status(&c, l)->ignored_msgs;
	uint64_t match = h_peer(&c, l, f)->match_index;
	bool voter = h_peer(&c, l, f)->voter;
	h_block(&c, f, l, H_ALL_TYPES); /* only the old answer reaches it */
	h_inject(&c, &old);
	cr_assert_eq(h_status(&c, l)->ignored_msgs, ignored + 1);
	cr_assert_eq(h_peer(&c, l, f)->match_index, match);
	cr_assert_eq(h_peer(&c, l, f)->voter, voter);
	h_fini(&c);
}

/* A follower that had agreed up to index 10 with leader 1 in term 2, and then
 * hears from leader 1 again in term 3, whose log lost 8..10 in a crash and
 * holds other entries there now, must not report the old agreement: the
 * leader would count entries the follower does not hold. (Mutation testing
 * found that keeping leader_match across become_follower went unnoticed.) */
Test(raft_disk_loss, a_new_term_of_the_same_leader_forgets_the_old_agreed_index)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	propose_all(&c, 1, 6);
	h_run(&c, 2);
	uint64_t base = h_last(&c, 1);
	cr_assert_eq(h_status(&c, 1)->commit_index, base);
	/* 8..10 reach member 3 only, and stay volatile on member 1. */
	h_node(&c, 1)->manual_log = true;
	h_isolate(&c, 2);
	propose_all(&c, 1, 3);
	h_deliver_all(&c);
	cr_assert_eq(h_last(&c, 3), base + 3);
	h_crash(&c, 1);
	h_node(&c, 1)->manual_log = false;
	cr_assert_eq(h_node(&c, 1)->log.last, base);
	/* Member 1 wins term 3 with member 2 while 3 hears nothing. */
	h_heal(&c);
	h_isolate(&c, 3);
	h_tick(&c, 2, T); /* member 2's lease of old leader 1 runs out */
	h_restart(&c, 1);
	cr_assert(h_elect(&c, 1));
	propose_all(&c, 1, 2);
	h_node(&c, 2)->manual_log = true; /* 2 holds them, not durably */
	h_deliver_all(&c);
	cr_assert_eq(h_last(&c, 1), base + 3, "no-op of term 3 and two entries");
	cr_assert_lt(h_status(&c, 1)->commit_index, base + 3);
	/* 3 hears leader 1 again, in the new term: heartbeats first. */
	h_heal(&c);
	h_block(&c, 1, 3, H_TYPE_BIT(RAFT_MSG_APPEND));
	h_block(&c, 1, 2, H_ALL_TYPES);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert_lt(h_status(&c, 1)->commit_index, base + 3,
	             "committed on member 3's agreement with an older term of its log");
	cr_assert_eq(h_peer(&c, 1, 3)->match_index, 0);
	h_heal(&c);
	h_node(&c, 2)->manual_log = false;
	h_persist_log(&c, 2, 0);
	h_run(&c, 4 * T);
	cr_assert(h_logs_equal(&c, 1, 3));
	cr_assert_eq(h_status(&c, 1)->commit_index, h_last(&c, 1));
	h_fini(&c);
}

/* A PERSISTED report for entries that a truncation since replaced is
 * stale: it must not make the new entries count as durable. */
Test(raft_disk_loss, a_stale_persisted_after_a_truncation_is_ignored)
{
	struct h_cluster c;
	h_init(&c, 3);
	static const uint64_t mine[] = {1, 2, 2, 2};
	static const uint64_t theirs[] = {1, 3, 3};
	h_load(&c, 1, theirs, 3, 3, 0, 1);
	h_load(&c, 2, theirs, 3, 3, 0, 1);
	h_load(&c, 3, mine, 4, 2, 0, 1);
	h_node(&c, 3)->manual_log = true;
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	/* Member 3 truncated after 1 and appended 2..5 of terms 3 and 4,
	 * none of it durable yet. */
	cr_assert(h_logs_equal(&c, 1, 3));
	uint64_t durable = h_status(&c, 3)->durable_index;
	cr_assert_eq(durable, 1);
	/* The report for its old entry 4 (term 2) arrives now. */
	struct raft_event ev = {.type = RAFT_EV_PERSISTED, .persisted = {.index = 4, .term = 2}};
	h_step(&c, 3, &ev);
	cr_assert_eq(h_status(&c, 3)->durable_index, durable);
	cr_assert_leq(h_peer(&c, 1, 3)->match_index, 1);
	h_persist_log(&c, 3, 0);
	h_run(&c, 2);
	cr_assert_eq(h_peer(&c, 1, 3)->match_index, h_last(&c, 1));
	h_fini(&c);
}

/* A member already durable in term 5 with no vote grants a vote in term 5:
 * the grant leaves only once the vote is durable, and a crash before that
 * lets it vote for someone else in term 5 without two leaders. */
Test(raft_disk_loss, a_vote_in_an_already_durable_term_waits_for_the_vote)
{
	struct h_cluster c;
	h_init(&c, 3);
	static const uint64_t log[] = {1, 1};
	for (raft_id id = 1; id <= 3; id++)
		h_load(&c, id, log, 2, 4, 0, 2);
	h_start(&c);
	h_node(&c, 2)->manual_state = true;
	/* Member 1 campaigns: pre-vote, then term 5. */
	h_isolate(&c, 3);
	h_tick(&c, 1, 2 * T);
	h_deliver_all(&c);
	h_tick(&c, 1, 0);
	struct h_node *n2 = h_node(&c, 2);
	if (h_status(&c, 1)->role != RAFT_CANDIDATE) {
		/* Not yet: keep ticking member 1 alone until it asks. */
		for (int i = 0; i < 4 * T && h_status(&c, 1)->role != RAFT_CANDIDATE; i++) {
			h_tick(&c, 1, 1);
			h_deliver_all(&c);
		}
	}
	cr_assert_eq(h_status(&c, 1)->role, RAFT_CANDIDATE);
	h_deliver_all(&c);
	cr_assert_eq(n2->hs_vote, 1, "member 2 granted in its state");
	cr_assert_eq(h_count(&c, 2, 1, RAFT_MSG_VOTE_RESP), 0, "the grant left before the vote was durable");
	cr_assert_eq(h_status(&c, 1)->role, RAFT_CANDIDATE);
	/* Crash before the vote is durable: the grant never left. */
	h_crash(&c, 2);
	n2->manual_state = false;
	cr_assert_eq(n2->dur_vote, 0);
	h_restart(&c, 2);
	h_heal(&c);
	h_isolate(&c, 1);
	h_run(&c, 20 * T);
	raft_id l = h_leader(&c);
	cr_assert(l == 2 || l == 3);
	cr_assert_neq(h_status(&c, 1)->role, RAFT_LEADER);
	h_fini(&c);
}
