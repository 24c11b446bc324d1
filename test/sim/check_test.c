/*
 * check_test.c - the simulator's checkers object to histories that break
 * their invariant, and accept histories that keep it.
 */
#include "check.h"

#include <criterion/criterion.h>
#include <string.h>

static struct chk *c;

static void setup(void)
{
	c = chk_new(2, 3);
	cr_assert_not_null(c);
}

static void teardown(void)
{
	chk_free(c);
}

TestSuite(sim_check, .init = setup, .fini = teardown);

/* Body hash of the entry at (index, term) in the "normal" history; `alt`
 * gives a different body for the same place. */
static uint64_t body(uint64_t index, uint64_t term, int alt)
{
	return index * 1000003u + term * 7919u + (uint64_t)alt * 0x9e3779b9u;
}

/* Appends entries with the given terms to the member's log and, when
 * `durable`, to its durable log too. */
static void append_terms(uint32_t member, const uint64_t *terms, size_t n, int alt, bool durable)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t index = i + 1;
		cr_assert(chk_log_append(c, 0, member, index, terms[i], body(index, terms[i], alt)),
			  "%s", chk_failed(c) ? chk_failed(c)->detail : "");
		if (durable)
			cr_assert(chk_durable_append(c, 0, member, index, terms[i],
						     body(index, terms[i], alt)));
	}
}

static void assert_violation(const char *invariant)
{
	const struct chk_violation *v = chk_failed(c);
	cr_assert_not_null(v, "expected a %s violation, got none", invariant);
	cr_assert_str_eq(v->invariant, invariant, "got %s: %s", v->invariant, v->detail);
	cr_assert(strlen(v->detail) > 0);
}

static void assert_valid(void)
{
	const struct chk_violation *v = chk_failed(c);
	cr_assert_null(v, "unexpected %s: %s", v ? v->invariant : "", v ? v->detail : "");
}

Test(sim_check, two_leaders_in_one_term_are_caught)
{
	cr_assert(chk_leader(c, 0, 1, 1));
	cr_assert_not(chk_leader(c, 0, 1, 2));
	assert_violation("election_safety");
}

Test(sim_check, one_leader_per_term_and_per_group_passes)
{
	cr_assert(chk_leader(c, 0, 1, 1));
	cr_assert(chk_leader(c, 0, 2, 2));
	cr_assert(chk_leader(c, 0, 2, 2));
	cr_assert(chk_leader(c, 1, 1, 3)); /* another group, its own terms */
	cr_assert(chk_leader(c, 0, 100, 3));
	assert_valid();
}

Test(sim_check, same_index_and_term_with_different_bodies_is_caught)
{
	const uint64_t terms[] = {1, 1, 2};
	append_terms(1, terms, 3, 0, false);
	cr_assert(chk_log_append(c, 0, 2, 1, 1, body(1, 1, 0)));
	cr_assert(chk_log_append(c, 0, 2, 2, 1, body(2, 1, 0)));
	cr_assert_not(chk_log_append(c, 0, 2, 3, 2, body(3, 2, 1)));
	assert_violation("log_matching");
}

Test(sim_check, logs_that_differ_before_a_shared_entry_are_caught)
{
	/* Same (2, term 2) and even the same body, but different entries at 1. */
	cr_assert(chk_log_append(c, 0, 1, 1, 1, body(1, 1, 0)));
	cr_assert(chk_log_append(c, 0, 1, 2, 2, body(2, 2, 0)));
	cr_assert(chk_log_append(c, 0, 2, 1, 2, body(1, 2, 0)));
	cr_assert_not(chk_log_append(c, 0, 2, 2, 2, body(2, 2, 0)));
	assert_violation("log_matching");
	cr_assert(strstr(chk_failed(c)->detail, "differ before") != NULL);
}

Test(sim_check, shared_prefix_with_divergent_later_terms_passes)
{
	const uint64_t a[] = {1, 1, 2, 2};
	const uint64_t b[] = {1, 1, 3};
	append_terms(1, a, 4, 0, false);
	append_terms(2, b, 3, 0, false);
	/* Member 2 takes member 1's log after truncating its own tail. */
	cr_assert(chk_log_truncate(c, 0, 2, 2));
	cr_assert(chk_log_append(c, 0, 2, 3, 2, body(3, 2, 0)));
	cr_assert(chk_log_append(c, 0, 2, 4, 2, body(4, 2, 0)));
	assert_valid();
}

Test(sim_check, log_term_going_down_is_caught)
{
	cr_assert(chk_log_append(c, 0, 1, 1, 3, body(1, 3, 0)));
	cr_assert_not(chk_log_append(c, 0, 1, 2, 2, body(2, 2, 0)));
	assert_violation("log_matching");
}

Test(sim_check, entry_brought_back_by_a_crash_meets_the_other_logs)
{
	/* Member 1 holds (3, term 2) durably, truncates it in memory only and
	 * crashes; meanwhile member 2 holds a different (3, term 2). */
	const uint64_t t[] = {1, 1, 2};
	append_terms(1, t, 3, 0, true);
	cr_assert(chk_log_truncate(c, 0, 1, 2));
	cr_assert(chk_log_append(c, 0, 2, 1, 1, body(1, 1, 0)));
	cr_assert(chk_log_append(c, 0, 2, 2, 1, body(2, 1, 0)));
	cr_assert(chk_log_append(c, 0, 2, 3, 2, body(3, 2, 1)));
	assert_valid();
	cr_assert_not(chk_restart(c, 0, 1));
	assert_violation("log_matching");
}

Test(sim_check, restart_restores_exactly_the_durable_log)
{
	const uint64_t t[] = {1, 1, 2};
	append_terms(1, t, 3, 0, true);
	cr_assert(chk_log_append(c, 0, 1, 4, 2, body(4, 2, 0))); /* not durable */
	cr_assert(chk_restart(c, 0, 1));
	/* The lost entry 4 is appended again at the end of the durable log. */
	cr_assert(chk_log_append(c, 0, 1, 4, 3, body(4, 3, 0)));
	cr_assert_not(chk_log_append(c, 0, 1, 6, 3, body(6, 3, 0)));
	assert_violation("checker_usage");
}

Test(sim_check, leader_without_a_committed_entry_is_caught)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	cr_assert(chk_log_append(c, 0, 3, 1, 1, body(1, 1, 0)));
	cr_assert(chk_apply(c, 0, 1, 1, 1, body(1, 1, 0)));
	cr_assert(chk_apply(c, 0, 1, 2, 1, body(2, 1, 0)));
	cr_assert_not(chk_leader(c, 0, 2, 3));
	assert_violation("leader_completeness");
}

Test(sim_check, leader_holding_every_committed_entry_passes)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	cr_assert(chk_apply(c, 0, 1, 1, 1, body(1, 1, 0)));
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	cr_assert(chk_leader(c, 0, 2, 2));
	assert_valid();
}

Test(sim_check, two_members_applying_different_entries_at_one_index_are_caught)
{
	cr_assert(chk_apply(c, 0, 1, 1, 1, body(1, 1, 0)));
	cr_assert(chk_apply(c, 0, 2, 1, 1, body(1, 1, 0)));
	cr_assert_not(chk_apply(c, 0, 3, 1, 2, body(1, 2, 0)));
	assert_violation("state_machine_safety");
}

Test(sim_check, applies_in_other_groups_do_not_interfere)
{
	cr_assert(chk_apply(c, 0, 1, 1, 1, body(1, 1, 0)));
	cr_assert(chk_apply(c, 1, 1, 1, 5, body(1, 5, 1)));
	cr_assert(chk_apply(c, 0, 2, 1, 1, body(1, 1, 0))); /* re-apply after restart */
	cr_assert(chk_apply(c, 0, 2, 1, 1, body(1, 1, 0)));
	assert_valid();
}

Test(sim_check, ack_contradicted_by_a_later_apply_is_caught)
{
	const uint64_t t[] = {1};
	append_terms(1, t, 1, 0, true);
	append_terms(2, t, 1, 0, true);
	cr_assert(chk_ack(c, 0, 1, 1, body(1, 1, 0)));
	cr_assert_not(chk_apply(c, 0, 3, 1, 2, body(1, 2, 0)));
	assert_violation("ack_contradicted");
}

Test(sim_check, ack_of_an_entry_durable_on_a_minority_is_caught)
{
	const uint64_t t[] = {1};
	append_terms(1, t, 1, 0, true);
	append_terms(2, t, 1, 0, false); /* in memory only */
	cr_assert_not(chk_ack(c, 0, 1, 1, body(1, 1, 0)));
	assert_violation("ack_not_durable");
}

Test(sim_check, ack_of_an_entry_durable_on_a_majority_passes)
{
	const uint64_t t[] = {1, 2};
	append_terms(1, t, 2, 0, true);
	append_terms(3, t, 2, 0, true);
	cr_assert(chk_ack(c, 0, 2, 2, body(2, 2, 0)));
	cr_assert(chk_ack(c, 0, 2, 2, body(2, 2, 0)));
	cr_assert_eq(chk_acked(c, 0), 2);
	assert_valid();
}

Test(sim_check, truncating_a_committed_entry_is_caught)
{
	const uint64_t t[] = {1, 1, 1};
	append_terms(1, t, 3, 0, true);
	append_terms(2, t, 3, 0, true);
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	cr_assert(chk_log_truncate(c, 0, 2, 2)); /* uncommitted tail: fine */
	cr_assert_not(chk_log_truncate(c, 0, 2, 1));
	assert_violation("committed_truncated");
}

Test(sim_check, dropping_an_acked_entry_from_a_durable_majority_is_caught)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	cr_assert(chk_ack(c, 0, 1, 1, body(1, 1, 0)));
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	/* The truncation alone is judged by the majority rule ... */
	cr_assert(chk_durable_truncate(c, 0, 1, 1));
	assert_valid();
	/* ... which it breaks: entry 2 is durable on member 2 only. */
	cr_assert_not(chk_durable_majority(c, 0));
	assert_violation("committed_not_durable");
}

/* The false positive of the old rule (seed 105394 at 5 members): a
 * truncation decided while the entry was not committed lands on a stalled
 * disk after the entry committed on the others. */
Test(sim_check, a_late_durable_truncation_that_leaves_a_majority_passes)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	append_terms(3, t, 2, 0, true);
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	cr_assert(chk_durable_truncate(c, 0, 3, 1));
	cr_assert(chk_durable_majority(c, 0));
	assert_valid();
}

/* A member whose store was replaced counts as holding what it lost until a
 * leader vouches for it; a second loss before that is caught. */
Test(sim_check, a_wiped_member_counts_until_it_is_a_voter_again)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	cr_assert(chk_ack(c, 0, 1, 1, body(1, 1, 0)));
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	cr_assert(chk_wipe(c, 0, 2));
	cr_assert(chk_durable_majority(c, 0));
	cr_assert(chk_durable_state(c, 0, 2, 1, 3)); /* may vote again */
	cr_assert(chk_durable_voter(c, 0, 2, true)); /* vouched, wrongly */
	cr_assert_not(chk_durable_majority(c, 0));
	assert_violation("committed_not_durable");
}

/* A member that lost an acknowledged entry to a damaged byte comes back as
 * a non-voter with its log cut before the damage: it counts as holding the
 * entry until vouched for, it keeps its vote, and its logs end at `keep`. */
Test(sim_check, a_member_that_lost_its_tail_counts_until_it_is_a_voter_again)
{
	const uint64_t t[] = {1, 1, 1};
	append_terms(1, t, 3, 0, true);
	append_terms(2, t, 3, 0, true);
	cr_assert(chk_durable_state(c, 0, 2, 1, 1));
	for (uint64_t i = 1; i <= 3; i++)
		cr_assert(chk_ack(c, 0, i, 1, body(i, 1, 0)));
	cr_assert(chk_lose_tail(c, 0, 2, 1));
	cr_assert(chk_restart(c, 0, 2));
	cr_assert(chk_durable_majority(c, 0));
	cr_assert_not(chk_durable_state(c, 0, 2, 1, 3)); /* its vote is kept */
	assert_violation("vote_safety");
}

Test(sim_check, a_member_that_lost_its_tail_and_is_vouched_too_early_is_caught)
{
	const uint64_t t[] = {1, 1, 1};
	append_terms(1, t, 3, 0, true);
	append_terms(2, t, 3, 0, true);
	for (uint64_t i = 1; i <= 3; i++)
		cr_assert(chk_ack(c, 0, i, 1, body(i, 1, 0)));
	cr_assert(chk_lose_tail(c, 0, 2, 1));
	cr_assert(chk_restart(c, 0, 2));
	cr_assert(chk_durable_majority(c, 0));
	/* Its log is cut: appending at 2 is where it now ends. */
	cr_assert(chk_log_append(c, 0, 2, 2, 1, body(2, 1, 0)));
	cr_assert(chk_durable_voter(c, 0, 2, true));
	cr_assert_not(chk_durable_majority(c, 0));
	assert_violation("committed_not_durable");
}

Test(sim_check, member_missing_an_acked_entry_at_the_end_is_caught)
{
	const uint64_t t[] = {1, 1};
	append_terms(1, t, 2, 0, true);
	append_terms(2, t, 2, 0, true);
	cr_assert(chk_log_append(c, 0, 3, 1, 1, body(1, 1, 0)));
	cr_assert(chk_ack(c, 0, 1, 1, body(1, 1, 0)));
	cr_assert(chk_ack(c, 0, 2, 1, body(2, 1, 0)));
	cr_assert(chk_holds_committed(c, 0, 1));
	cr_assert(chk_holds_committed(c, 0, 2));
	cr_assert_not(chk_holds_committed(c, 0, 3));
	assert_violation("ack_missing_at_end");
}

Test(sim_check, durable_term_going_down_is_caught)
{
	cr_assert(chk_durable_state(c, 0, 1, 3, 1));
	cr_assert(chk_durable_state(c, 0, 1, 4, 0));
	cr_assert(chk_durable_state(c, 0, 1, 4, 2));
	cr_assert_not(chk_durable_state(c, 0, 1, 3, 2));
	assert_violation("vote_safety");
}

Test(sim_check, second_durable_vote_in_one_term_is_caught)
{
	cr_assert(chk_durable_state(c, 0, 1, 4, 2));
	cr_assert_not(chk_durable_state(c, 0, 1, 4, 3));
	assert_violation("vote_safety");
}

Test(sim_check, the_first_violation_is_kept)
{
	cr_assert(chk_leader(c, 0, 1, 1));
	cr_assert_not(chk_leader(c, 0, 1, 2));
	cr_assert_not(chk_apply(c, 0, 1, 0, 1, 1));
	assert_violation("election_safety");
}

Test(sim_check, ids_out_of_range_are_usage_errors)
{
	cr_assert_not(chk_leader(c, 0, 1, 4));
	assert_violation("checker_usage");
}

Test(sim_check, chained_hashes_tell_prefixes_apart)
{
	uint64_t a = chk_chain(chk_chain(0, 1, 10), 1, 11);
	uint64_t b = chk_chain(chk_chain(0, 1, 12), 1, 11);
	uint64_t a2 = chk_chain(chk_chain(0, 1, 10), 1, 11);
	cr_assert_neq(a, b);
	cr_assert_eq(a, a2);
}
