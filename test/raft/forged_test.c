/* Impossible messages (raft.h): whatever its sender claims, a message no
 * correct member can send is refused, counted and changes nothing: a term
 * far above ours (issue 13, finding 2: one vote of term 2^64-1 wedged a
 * group for good), an append of our term from a second leader, and an append
 * that disagrees with our committed entries (finding 1's forged entries,
 * found when the real leader's append meets them). */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "harness.h"

#define T H_ELECTION_TICKS

static void propose_some(struct h_cluster *c, raft_id leader, int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(h_propose(c, leader, "real"), RAFT_OK);
	h_run(c, 2 * H_HEARTBEAT_TICKS);
}

/* A three-member group led by 1, with entries committed everywhere. */
static void committed_group(struct h_cluster *c)
{
	h_init(c, 3);
	h_start(c);
	cr_assert(h_elect(c, 1));
	propose_some(c, 1, 10);
	for (raft_id id = 1; id <= 3; id++)
		cr_assert_eq(h_status(c, id)->commit_index, h_last(c, 1));
}

/* The group still commits a proposal through leader 1. */
static void still_commits(struct h_cluster *c)
{
	uint64_t before = h_status(c, 1)->commit_index;
	propose_some(c, 1, 1);
	h_run(c, 2 * T);
	cr_assert_eq(h_leader(c), 1);
	cr_assert_gt(h_status(c, 1)->commit_index, before);
	for (raft_id id = 2; id <= 3; id++)
		cr_assert(h_logs_equal(c, 1, id));
}

Test(raft_forged, a_term_far_above_ours_is_refused_whatever_the_message)
{
	struct h_cluster c;
	committed_group(&c);
	uint64_t term = h_status(&c, 3)->term;
	const uint64_t absurd[] = {UINT64_MAX, UINT64_MAX / 2 + 1, term + RAFT_MAX_TERM_JUMP + 1};
	const uint8_t types[] = {RAFT_MSG_PREVOTE, RAFT_MSG_VOTE, RAFT_MSG_APPEND,
	                         RAFT_MSG_HEARTBEAT, RAFT_MSG_TIMEOUT_NOW, RAFT_MSG_VOTE_RESP};
	uint64_t refused = h_status(&c, 3)->refused_msgs;
	for (size_t i = 0; i < sizeof(absurd) / sizeof(absurd[0]); i++) {
		for (size_t k = 0; k < sizeof(types); k++) {
			struct raft_message m = {.type = types[k], .from = 2, .to = 3, .term = absurd[i]};
			m.vote.last_index = UINT64_MAX;
			m.vote.last_term = absurd[i];
			m.append.prev_index = h_last(&c, 3);
			m.append.prev_term = h_term_at(&c, 3, h_last(&c, 3));
			h_inject(&c, &m);
			refused++;
			cr_assert_eq(h_status(&c, 3)->term, term, "type %u, term %llu taken", types[k],
			             (unsigned long long)absurd[i]);
			cr_assert_eq(h_status(&c, 3)->refused_msgs, refused);
		}
	}
	cr_assert_eq(h_status(&c, 3)->leader_id, 1);
	still_commits(&c);
	/* A jump of exactly the limit is a term like any other. */
	struct raft_message v = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3,
	                         .term = term + RAFT_MAX_TERM_JUMP};
	h_inject(&c, &v);
	cr_assert_eq(h_status(&c, 3)->term, term + RAFT_MAX_TERM_JUMP);
	h_fini(&c);
}

Test(raft_forged, an_append_of_our_term_from_a_second_leader_is_refused)
{
	struct h_cluster c;
	committed_group(&c);
	uint64_t term = h_status(&c, 3)->term, last = h_last(&c, 3);
	uint64_t refused = h_status(&c, 3)->refused_msgs;
	struct raft_entry e = {.term = term, .data = "FORGED", .len = 6};
	struct raft_message m = {.type = RAFT_MSG_APPEND, .from = 2, .to = 3, .term = term};
	m.append.prev_index = last;
	m.append.prev_term = h_term_at(&c, 3, last);
	m.append.commit = last + 1;
	m.append.n_entries = 1;
	m.append.entries = &e;
	h_inject(&c, &m);
	cr_assert_eq(h_last(&c, 3), last, "the forged entry was appended");
	cr_assert_eq(h_status(&c, 3)->refused_msgs, refused + 1);
	cr_assert_eq(h_status(&c, 3)->leader_id, 1);
	struct raft_message hb = {.type = RAFT_MSG_HEARTBEAT, .from = 2, .to = 3, .term = term};
	hb.heartbeat.commit = last;
	h_inject(&c, &hb);
	cr_assert_eq(h_status(&c, 3)->refused_msgs, refused + 2);
	cr_assert_eq(h_status(&c, 3)->leader_id, 1);
	still_commits(&c);
	h_fini(&c);
}

/* Finding 1 of issue 13: forged entries taken as committed stayed for good,
 * unseen, since a follower skips what a leader sends at or below its
 * commit. Now an append that disagrees with committed entries is refused,
 * changes nothing, and the first index that disagrees is reported (the
 * runtime logs it); which copy is the group's only TLS can settle. */
Test(raft_forged, an_append_disagreeing_with_committed_entries_is_refused_and_reported)
{
	struct h_cluster c;
	committed_group(&c);
	uint64_t last = h_last(&c, 3), term = h_status(&c, 3)->term;
	/* Entries last-2..last of member 3 as a leader of another term would
	 * have them: first a wrong entry term, then a wrong prev term. */
	struct raft_entry es[3];
	for (int i = 0; i < 3; i++)
		es[i] = (struct raft_entry){.term = i == 0 ? term : term + 1, .data = "x", .len = 1};
	struct raft_message m = {.type = RAFT_MSG_APPEND, .from = 1, .to = 3, .term = term + 1};
	m.append.prev_index = last - 3;
	m.append.prev_term = h_term_at(&c, 3, last - 3);
	m.append.commit = last;
	m.append.n_entries = 3;
	m.append.entries = es;
	/* Member 3 follows 1 in the new term first, so that the update
	 * h_inject returns is the append's (no hard state to persist). */
	struct raft_message hb = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 3, .term = term + 1};
	hb.heartbeat.commit = last;
	h_inject(&c, &hb);
	cr_assert_eq(h_status(&c, 3)->term, term + 1);
	uint64_t refused = h_status(&c, 3)->refused_msgs;
	const struct raft_update *u = h_inject(&c, &m);
	cr_assert_eq(u->conflict_index, last - 1);
	cr_assert_eq(h_status(&c, 3)->refused_msgs, refused + 1);
	cr_assert_eq(h_term_at(&c, 3, last - 1), term, "a committed entry changed");
	m.append.prev_term = term + 1;
	es[0].term = term + 1;
	u = h_inject(&c, &m);
	cr_assert_eq(u->conflict_index, last - 3);
	/* What agrees is taken as before. */
	m.append.prev_term = h_term_at(&c, 3, last - 3);
	for (int i = 0; i < 3; i++)
		es[i].term = h_term_at(&c, 3, last - 2 + (uint64_t)i);
	u = h_inject(&c, &m);
	cr_assert_eq(u->conflict_index, 0);
	cr_assert_eq(h_status(&c, 3)->refused_msgs, refused + 2);
	cr_assert_eq(h_last(&c, 3), last);
	h_fini(&c);
}
