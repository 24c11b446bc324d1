/* Commit notices (raft/raft.h, "Commit notices"): once the commit index
 * moves and no append goes out to a follower, RAFT_EV_NOTIFY sends it a
 * heartbeat carrying the commit index it may take (capped by what it holds),
 * at most one outstanding per follower; an append already sent with the
 * commit makes a notice unnecessary. */
#include <criterion/criterion.h>

#include "harness.h"

static const struct raft_update *notify(struct h_cluster *c, raft_id id)
{
	struct raft_event ev = {.type = RAFT_EV_NOTIFY};
	return h_step(c, id, &ev);
}

static uint32_t heartbeats_to(struct h_cluster *c, raft_id from, raft_id to)
{
	return h_node(c, from)->sent_to[to][RAFT_MSG_HEARTBEAT];
}

/* A leader elected and idle: everyone holds and knows its no-op. */
static void settled_group(struct h_cluster *c, uint32_t n)
{
	h_init(c, n);
	h_start(c);
	cr_assert(h_elect(c, 1));
	h_tick(c, 1, H_HEARTBEAT_TICKS);
	h_deliver_all(c);
	for (raft_id id = 2; id <= n; id++)
		cr_assert_eq(h_node(c, id)->commit, h_node(c, 1)->commit);
}

Test(raft_notice, follower_learns_a_commit_from_the_notice_when_no_append_follows)
{
	struct h_cluster c;
	settled_group(&c, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = h_node(&c, 1)->last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 1)->commit, idx);
	/* The appends left before the commit moved: the followers hold the
	 * entry but do not know it committed. */
	cr_assert_lt(h_node(&c, 2)->commit, idx);
	cr_assert_lt(h_node(&c, 3)->commit, idx);
	uint32_t hb2 = heartbeats_to(&c, 1, 2), hb3 = heartbeats_to(&c, 1, 3);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2 + 1, "one notice to 2");
	cr_assert_eq(heartbeats_to(&c, 1, 3), hb3 + 1, "one notice to 3");
	cr_assert_eq(h_find(&c, 1, 2, RAFT_MSG_HEARTBEAT, 0)->m.heartbeat.commit, idx);
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 2)->commit, idx, "one round trip, no heartbeat interval");
	cr_assert_eq(h_node(&c, 3)->commit, idx);
	/* Nothing new to tell: no more notices. */
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2 + 1);
	cr_assert_eq(c.net_len, 0);
	h_fini(&c);
}

Test(raft_notice, a_thousand_appends_then_every_follower_knows_the_last_is_committed)
{
	struct h_cluster c;
	settled_group(&c, 3);
	uint64_t last = 0;
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(h_propose(&c, 1, "entry"), RAFT_OK);
		last = h_node(&c, 1)->last_update.propose_index;
		if (i % 7 == 0)
			h_deliver_all(&c);
	}
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 1)->commit, last);
	notify(&c, 1);
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 2)->commit, last);
	cr_assert_eq(h_node(&c, 3)->commit, last);
	h_fini(&c);
}

Test(raft_notice, no_notice_when_an_append_carried_the_commit)
{
	struct h_cluster c;
	settled_group(&c, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_deliver_all(&c);
	uint64_t idx = h_node(&c, 1)->commit;
	/* The next proposal's appends carry commit idx, which the followers
	 * can take: a notice would say nothing new. */
	cr_assert_eq(h_propose(&c, 1, "y"), RAFT_OK);
	const struct h_msg *ap = h_find(&c, 1, 2, RAFT_MSG_APPEND, 0);
	cr_assert_eq(ap->m.append.commit, idx);
	uint32_t hb2 = heartbeats_to(&c, 1, 2);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_HEARTBEAT), 0);
	h_fini(&c);
}

Test(raft_notice, commit_told_is_capped_by_what_the_follower_holds)
{
	struct h_cluster c;
	settled_group(&c, 3);
	h_block(&c, 1, 3, H_ALL_TYPES); /* 3 holds nothing new */
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = h_node(&c, 1)->last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 1)->commit, idx, "1 and 2 commit");
	h_heal(&c);
	uint32_t hb3 = heartbeats_to(&c, 1, 3);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 3), hb3, "3 cannot take the commit: no notice");
	const struct h_msg *n2 = h_find(&c, 1, 2, RAFT_MSG_HEARTBEAT, 0);
	cr_assert_eq(n2->m.heartbeat.commit, idx);
	h_fini(&c);
}

Test(raft_notice, at_most_one_notice_outstanding_per_follower)
{
	struct h_cluster c;
	settled_group(&c, 3);
	struct h_node *l = h_node(&c, 1);
	l->manual_log = true;
	h_block(&c, 1, 3, H_ALL_TYPES);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t i1 = l->last_update.propose_index;
	cr_assert_eq(h_propose(&c, 1, "y"), RAFT_OK);
	uint64_t i2 = l->last_update.propose_index;
	h_deliver_all(&c);
	cr_assert_eq(h_peer(&c, 1, 2)->match_index, i2);
	cr_assert_lt(l->commit, i1, "the leader has not persisted, 3 is cut off");
	uint32_t hb2 = heartbeats_to(&c, 1, 2);
	h_persist_log(&c, 1, i1);
	cr_assert_eq(l->commit, i1);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2 + 1);
	cr_assert_eq(h_find(&c, 1, 2, RAFT_MSG_HEARTBEAT, 0)->m.heartbeat.commit, i1);
	/* The commit moves again before 2 answered: the notice waits. */
	h_persist_log(&c, 1, i2);
	cr_assert_eq(l->commit, i2);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2 + 1, "a second notice while one is out");
	/* 2 answers the first one: the next notice tells it i2. */
	h_deliver_match(&c, 1, 2, RAFT_MSG_HEARTBEAT);
	cr_assert_eq(h_node(&c, 2)->commit, i1);
	h_deliver_match(&c, 2, 1, RAFT_MSG_HEARTBEAT_RESP);
	notify(&c, 1);
	cr_assert_eq(heartbeats_to(&c, 1, 2), hb2 + 2);
	h_deliver_match(&c, 1, 2, RAFT_MSG_HEARTBEAT);
	cr_assert_eq(h_node(&c, 2)->commit, i2);
	h_fini(&c);
}

Test(raft_notice, a_lost_notice_is_covered_by_the_next_heartbeat)
{
	struct h_cluster c;
	settled_group(&c, 3);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	uint64_t idx = h_node(&c, 1)->last_update.propose_index;
	h_deliver_all(&c);
	h_block(&c, 1, 2, H_TYPE_BIT(RAFT_MSG_HEARTBEAT));
	notify(&c, 1);
	h_deliver_all(&c);
	cr_assert_lt(h_node(&c, 2)->commit, idx, "the notice was lost");
	h_heal(&c);
	h_tick(&c, 1, H_HEARTBEAT_TICKS);
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 2)->commit, idx);
	/* The outstanding notice no longer holds the next one back. */
	cr_assert_eq(h_propose(&c, 1, "y"), RAFT_OK);
	uint64_t i2 = h_node(&c, 1)->last_update.propose_index;
	h_deliver_all(&c);
	notify(&c, 1);
	h_deliver_all(&c);
	cr_assert_eq(h_node(&c, 2)->commit, i2);
	h_fini(&c);
}

Test(raft_notice, only_a_leader_sends_notices)
{
	struct h_cluster c;
	settled_group(&c, 3);
	const struct raft_update *u = notify(&c, 2);
	cr_assert_eq(u->n_msgs, 0);
	cr_assert_eq(c.net_len, 0);
	h_fini(&c);
}
