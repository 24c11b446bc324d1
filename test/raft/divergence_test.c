/* Divergence (Raft §5.3, figure 7; DLedger's COMPARE/TRUNCATE): followers
 * whose logs miss entries or hold extra, uncommitted ones converge to the
 * leader's log, finding the match point in about one round trip from the
 * reject hint, and never lose a committed entry. */
#include <criterion/criterion.h>

#include "harness.h"

#define T H_ELECTION_TICKS

/* Figure 7: the leader for term 8 and the possible followers (a)-(f). */
static const uint64_t fig7_leader[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6};
static const uint64_t fig7_a[] = {1, 1, 1, 4, 4, 5, 5, 6, 6};
static const uint64_t fig7_b[] = {1, 1, 1, 4};
static const uint64_t fig7_c[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6};
static const uint64_t fig7_d[] = {1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7};
static const uint64_t fig7_e[] = {1, 1, 1, 4, 4, 4, 4};
static const uint64_t fig7_f[] = {1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3};

#define LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Member 1 holds the leader's log, member 3 too (it gives 1 its majority),
 * member 2 the follower's. 1 wins term 8 and repairs 2 with messages
 * alone: no tick after the election. */
static void fig7(const uint64_t *follower, uint64_t n, bool truncates)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 1, fig7_leader, LEN(fig7_leader), 7, 0, 3);
	h_load(&c, 3, fig7_leader, LEN(fig7_leader), 7, 0, 3);
	h_load(&c, 2, follower, n, 7, 0, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	cr_assert_eq(c.nodes[1].st.term, 8);
	cr_assert_eq(h_last(&c, 1), 11, "leader log plus the NOOP of term 8");
	cr_assert(h_logs_equal(&c, 1, 2), "follower did not converge by messages alone");
	struct h_node *f = h_node(&c, 2);
	cr_assert_leq(f->append_rejects, 1, "%u rejects: the hint was not used", f->append_rejects);
	cr_assert_leq(c.nodes[1].sent_to[2][RAFT_MSG_APPEND], 3, "%u appends to converge",
	              c.nodes[1].sent_to[2][RAFT_MSG_APPEND]);
	cr_assert_eq(f->truncations, truncates ? 1u : 0u);
	cr_assert_eq(c.nodes[1].commit, 11);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert_eq(f->commit, 11);
	h_fini(&c);
}

Test(raft_divergence, figure7_a_missing_one_entry_converges_in_one_round_trip)
{
	fig7(fig7_a, LEN(fig7_a), false);
}

Test(raft_divergence, figure7_b_missing_many_entries_converges_in_one_round_trip)
{
	fig7(fig7_b, LEN(fig7_b), false);
}

Test(raft_divergence, figure7_c_with_an_extra_entry_of_the_leaders_term_converges)
{
	fig7(fig7_c, LEN(fig7_c), true);
}

Test(raft_divergence, figure7_d_with_extra_entries_of_a_newer_term_converges)
{
	fig7(fig7_d, LEN(fig7_d), true);
}

Test(raft_divergence, figure7_e_missing_and_extra_entries_converges_in_one_round_trip)
{
	fig7(fig7_e, LEN(fig7_e), true);
}

Test(raft_divergence, figure7_f_with_a_long_divergent_suffix_converges_in_one_round_trip)
{
	fig7(fig7_f, LEN(fig7_f), true);
}

Test(raft_divergence, figure7_all_followers_at_once_converge)
{
	/* Seven members: the leader and a..f. a, b, e and f vote for it (its
	 * log is at least as up to date); c and d refuse. */
	struct h_cluster c;
	h_init(&c, 7);
	h_load(&c, 1, fig7_leader, LEN(fig7_leader), 7, 0, 3);
	h_load(&c, 2, fig7_a, LEN(fig7_a), 7, 0, 3);
	h_load(&c, 3, fig7_b, LEN(fig7_b), 7, 0, 3);
	h_load(&c, 4, fig7_c, LEN(fig7_c), 7, 0, 3);
	h_load(&c, 5, fig7_d, LEN(fig7_d), 7, 0, 3);
	h_load(&c, 6, fig7_e, LEN(fig7_e), 7, 0, 3);
	h_load(&c, 7, fig7_f, LEN(fig7_f), 7, 0, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	for (raft_id id = 2; id <= 7; id++) {
		cr_assert(h_logs_equal(&c, 1, id), "member %u did not converge", id);
		cr_assert_leq(c.nodes[id].append_rejects, 1);
	}
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	for (raft_id id = 2; id <= 7; id++)
		cr_assert_eq(c.nodes[id].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_divergence, follower_never_truncates_committed_entries_on_a_stale_append)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	cr_assert(h_elect(&c, 1));
	uint64_t old_term = c.nodes[1].st.term;
	/* A delayed append of leader 1's term, which will conflict later. */
	cr_assert_eq(h_propose(&c, 1, "old"), RAFT_OK);
	size_t i = h_index_of(&c, 1, 2, RAFT_MSG_APPEND, 0);
	h_duplicate(&c, i);
	struct h_msg stale = c.net[c.net_len - 1];
	c.net_len--; /* keep it aside (owned here) */
	h_drop_all(&c);
	/* 1 is cut off; 3 leads a newer term and commits on 2. */
	h_crash(&c, 1);
	h_run(&c, 1);
	uint32_t t = 0;
	while (h_leader(&c) == 0) {
		cr_assert_lt(t++, 10 * T);
		h_run(&c, 1);
	}
	raft_id l = h_leader(&c);
	cr_assert_gt(c.nodes[l].st.term, old_term);
	cr_assert_eq(h_propose(&c, l, "new"), RAFT_OK);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	uint64_t commit = c.nodes[2].commit;
	cr_assert_eq(commit, h_last(&c, l));
	cr_assert_neq(h_term_at(&c, 2, stale.m.append.prev_index + 1), old_term);
	uint32_t trunc = c.nodes[2].truncations;
	/* The stale append of the deposed leader arrives now. */
	struct raft_entry es[1];
	cr_assert_eq(stale.m.append.n_entries, 1);
	es[0] = (struct raft_entry){.term = stale.ents[0].term,
	                            .data = stale.ents[0].data,
	                            .len = stale.ents[0].len,
	                            .type = stale.ents[0].type};
	stale.m.append.entries = es;
	h_inject(&c, &stale.m);
	cr_assert_eq(c.nodes[2].truncations, trunc, "a stale append truncated the log");
	cr_assert_eq(c.nodes[2].commit, commit);
	cr_assert(h_logs_equal(&c, 2, l));
	free(stale.ents[0].data);
	free(stale.ents);
	h_fini(&c);
}

Test(raft_divergence, follower_truncates_only_its_uncommitted_suffix)
{
	/* 2 holds five entries of term 2 that 3, the new leader, never saw;
	 * only index 1 is committed. */
	static const uint64_t leader[] = {1, 3, 3};
	static const uint64_t stale[] = {1, 2, 2, 2, 2, 2};
	struct h_cluster c;
	h_init(&c, 3);
	h_load(&c, 1, leader, LEN(leader), 3, 0, 1);
	h_load(&c, 2, stale, LEN(stale), 3, 0, 1);
	h_load(&c, 3, leader, LEN(leader), 3, 0, 1);
	h_start(&c);
	cr_assert(h_elect(&c, 3));
	cr_assert(h_logs_equal(&c, 2, 3));
	cr_assert_eq(c.nodes[2].truncations, 1);
	cr_assert_eq(h_term_at(&c, 2, 1), 1);
	cr_assert_eq(h_term_at(&c, 2, 2), 3);
	h_fini(&c);
}
