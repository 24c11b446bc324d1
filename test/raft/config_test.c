/* raft_new validates its config: a member that is not in its own group, or
 * a group with duplicate or zero ids, or timings that cannot work, is
 * refused with RAFT_EINVAL instead of running with a broken quorum. */
#include <criterion/criterion.h>

#include "harness.h"

static bool no_term(void *ctx, uint64_t index, uint64_t *term)
{
	(void)ctx;
	*term = 0;
	return index == 0;
}

static uint32_t no_bytes(void *ctx, uint64_t index)
{
	(void)ctx;
	(void)index;
	return 0;
}

static const struct raft_log_ops empty_ops = {.term_at = no_term, .entry_bytes = no_bytes};

static struct raft_config good_config(void)
{
	struct raft_config cfg;
	raft_config_defaults(&cfg);
	cfg.self = 1;
	cfg.members[0] = 1;
	cfg.members[1] = 2;
	cfg.members[2] = 3;
	cfg.n_members = 3;
	cfg.election_ticks = 10;
	cfg.heartbeat_ticks = 2;
	return cfg;
}

static int try_new(const struct raft_config *cfg)
{
	struct raft_boot boot = {.first_index = 1};
	struct raft *r = NULL;
	int rc = raft_new(cfg, &empty_ops, NULL, &boot, &r);
	if (rc == RAFT_OK) {
		cr_assert_not_null(r);
		raft_free(r);
	}
	return rc;
}

Test(raft_config, defaults_with_self_and_members_are_accepted)
{
	struct raft_config cfg;
	raft_config_defaults(&cfg);
	cfg.self = 2;
	cfg.members[0] = 1;
	cfg.members[1] = 2;
	cfg.members[2] = 3;
	cfg.n_members = 3;
	cr_assert_lt(cfg.heartbeat_ticks, cfg.election_ticks);
	cr_assert_gt(cfg.max_append_entries, 0);
	cr_assert_gt(cfg.max_inflight_msgs, 0);
	cr_assert_eq(try_new(&cfg), RAFT_OK);
}

Test(raft_config, a_valid_config_is_accepted)
{
	struct raft_config cfg = good_config();
	cr_assert_eq(try_new(&cfg), RAFT_OK);
}

Test(raft_config, self_not_a_member_is_rejected)
{
	struct raft_config cfg = good_config();
	cfg.self = 4;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
}

Test(raft_config, duplicate_member_ids_are_rejected)
{
	struct raft_config cfg = good_config();
	cfg.members[2] = 2;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
}

Test(raft_config, zero_member_id_is_rejected)
{
	struct raft_config cfg = good_config();
	cfg.members[2] = 0;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
}

Test(raft_config, zero_self_id_is_rejected)
{
	struct raft_config cfg = good_config();
	cfg.self = 0;
	cfg.members[0] = 0;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
}

Test(raft_config, heartbeat_not_below_election_timeout_is_rejected)
{
	struct raft_config cfg = good_config();
	cfg.heartbeat_ticks = cfg.election_ticks;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
	cfg.heartbeat_ticks = cfg.election_ticks + 5;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
	cfg.heartbeat_ticks = cfg.election_ticks - 1;
	cr_assert_eq(try_new(&cfg), RAFT_OK);
}

Test(raft_config, empty_or_oversized_groups_are_rejected)
{
	struct raft_config cfg = good_config();
	cfg.n_members = 0;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
	cfg = good_config();
	cfg.n_members = RAFT_MAX_MEMBERS + 1;
	cr_assert_eq(try_new(&cfg), RAFT_EINVAL);
}
