/* Proposals: only the leader takes them; others answer RAFT_ENOTLEADER with
 * the leader they know. A new leader starts its term with a NOOP entry
 * (Raft §8) so that earlier entries can commit. */
#include <criterion/criterion.h>

#include "harness.h"

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

Test(raft_proposal, proposal_to_a_follower_gets_enotleader_with_the_leader_id)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 2));
	uint64_t last = h_last(&c, 1);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_ENOTLEADER);
	cr_assert_eq(c.nodes[1].last_update.leader_id, 2);
	cr_assert_eq(h_last(&c, 1), last, "a follower appended a proposal");
	cr_assert_eq(h_count(&c, 1, 0, 0), 0);
	h_fini(&c);
}

Test(raft_proposal, proposal_with_no_known_leader_gets_enotleader_and_no_id)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_ENOTLEADER);
	cr_assert_eq(c.nodes[1].last_update.leader_id, 0);
	cr_assert_eq(h_last(&c, 1), 0);
	h_fini(&c);
}

Test(raft_proposal, proposal_to_a_candidate_gets_enotleader)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	h_isolate(&c, 1);
	while (c.nodes[1].st.role == RAFT_FOLLOWER)
		h_tick(&c, 1, 1);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_ENOTLEADER);
	cr_assert_eq(c.nodes[1].last_update.leader_id, 0);
	h_fini(&c);
}

Test(raft_proposal, new_leader_appends_a_noop_of_its_term)
{
	static const uint64_t log[] = {1, 1, 2};
	struct h_cluster c;
	h_init(&c, 3);
	for (raft_id id = 1; id <= 3; id++)
		h_load(&c, id, log, LEN(log), 2, 0, 1);
	h_start(&c);
	cr_assert(h_elect(&c, 3));
	struct h_node *l = h_node(&c, 3);
	cr_assert_gt(l->st.term, 2);
	cr_assert_eq(h_last(&c, 3), 4);
	cr_assert_eq(l->log.e[3].type, RAFT_ENTRY_NOOP);
	cr_assert_eq(l->log.e[3].term, l->st.term);
	cr_assert_eq(l->commit, 4, "the NOOP commits the entries of term 2 with it");
	for (raft_id id = 1; id <= 2; id++)
		cr_assert(h_logs_equal(&c, id, 3));
	h_fini(&c);
}

Test(raft_proposal, leader_returns_index_and_term_of_the_first_of_a_batch)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t last = h_last(&c, 1);
	cr_assert_eq(h_propose_n(&c, 1, 3, 5), RAFT_OK);
	const struct raft_update *u = &c.nodes[1].last_update;
	cr_assert_eq(u->propose_index, last + 1);
	cr_assert_eq(u->propose_term, c.nodes[1].st.term);
	cr_assert_eq(h_last(&c, 1), last + 3);
	for (uint64_t i = last + 1; i <= last + 3; i++) {
		cr_assert_eq(h_term_at(&c, 1, i), c.nodes[1].st.term);
		cr_assert_eq(c.nodes[1].log.e[i - 1].type, RAFT_ENTRY_NORMAL);
		cr_assert_eq(c.nodes[1].log.e[i - 1].len, 5);
	}
	cr_assert_eq(h_propose(&c, 1, "next"), RAFT_OK);
	cr_assert_eq(c.nodes[1].last_update.propose_index, last + 4);
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].commit, last + 4);
	h_fini(&c);
}

Test(raft_proposal, deposed_leader_refuses_proposals_and_names_the_new_leader)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	h_isolate(&c, 1);
	h_run(&c, 6 * H_ELECTION_TICKS);
	raft_id l = h_leader(&c);
	cr_assert(l == 2 || l == 3);
	h_heal(&c);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_ENOTLEADER);
	cr_assert_eq(c.nodes[1].last_update.leader_id, l);
	h_fini(&c);
}
