/* Heartbeat answers of an idle follower (raft_config.thin_heartbeat_acks)
 * and heartbeats on the caller's clock (RAFT_EV_TICK .now). */
#include <criterion/criterion.h>
#include <string.h>

#include "raft/raft.h"

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

static const struct raft_log_ops ops = {no_term, no_bytes};

static struct raft *follower(bool thin)
{
	struct raft_config c;
	raft_config_defaults(&c);
	c.self = 2;
	c.n_members = 3;
	c.members[0] = 1;
	c.members[1] = 2;
	c.members[2] = 3;
	c.election_ticks = 30;
	c.heartbeat_ticks = 10;
	c.thin_heartbeat_acks = thin;
	struct raft_boot b = {.term = 1, .first_index = 1};
	struct raft *r;
	cr_assert_eq(raft_new(&c, &ops, NULL, &b, &r), RAFT_OK);
	return r;
}

static uint32_t answers_to_heartbeats(struct raft *r, int n)
{
	uint32_t answers = 0;
	for (int i = 0; i < n; i++) {
		struct raft_message m = {.type = RAFT_MSG_HEARTBEAT, .from = 1, .to = 2, .term = 1};
		struct raft_event ev = {.type = RAFT_EV_MESSAGE, .msg = &m};
		struct raft_update u;
		raft_step(r, &ev, &u);
		for (uint32_t k = 0; k < u.n_msgs; k++)
			answers += u.msgs[k].type == RAFT_MSG_HEARTBEAT_RESP;
	}
	return answers;
}

Test(raft_idle, idle_follower_answers_every_other_heartbeat_when_thinning)
{
	struct raft *r = follower(true);
	/* The first answer is sent (nothing answered yet), then one in two. */
	cr_assert_eq(answers_to_heartbeats(r, 10), 5);
	raft_free(r);
}

Test(raft_idle, follower_answers_every_heartbeat_without_thinning)
{
	struct raft *r = follower(false);
	cr_assert_eq(answers_to_heartbeats(r, 10), 10);
	raft_free(r);
}

Test(raft_idle, thinning_needs_three_heartbeats_per_election_timeout)
{
	struct raft_config c;
	raft_config_defaults(&c);
	c.self = 1;
	c.n_members = 1;
	c.members[0] = 1;
	c.election_ticks = 20;
	c.heartbeat_ticks = 10;
	c.thin_heartbeat_acks = true;
	struct raft_boot b = {.first_index = 1};
	struct raft *r = NULL;
	cr_assert_eq(raft_new(&c, &ops, NULL, &b, &r), RAFT_EINVAL);
	c.election_ticks = 30;
	cr_assert_eq(raft_new(&c, &ops, NULL, &b, &r), RAFT_OK);
	raft_free(r);
}

Test(raft_idle, leader_beats_on_the_callers_clock)
{
	/* A one-member group leads at once; with .now given, heartbeats go
	 * out exactly on ticks divisible by heartbeat_ticks: raft_ticks_until_due
	 * counts to the next such tick. */
	struct raft_config c;
	raft_config_defaults(&c);
	c.self = 1;
	c.n_members = 1;
	c.members[0] = 1;
	c.election_ticks = 30;
	c.heartbeat_ticks = 10;
	struct raft_boot b = {.first_index = 1};
	struct raft *r;
	cr_assert_eq(raft_new(&c, &ops, NULL, &b, &r), RAFT_OK);
	struct raft_update u;
	for (uint64_t now = 1; now < 200; now++) {
		struct raft_event ev = {.type = RAFT_EV_TICK, .tick = {.now = now}};
		raft_step(r, &ev, &u);
		struct raft_status st;
		raft_get_status(r, &st);
		if (st.role == RAFT_LEADER)
			cr_assert_eq(raft_ticks_until_due(r), 10 - now % 10, "at tick %llu",
				     (unsigned long long)now);
	}
	raft_free(r);
}
