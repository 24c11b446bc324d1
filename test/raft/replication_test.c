/* Replication: batching up to max_append_entries / max_append_bytes, the
 * in-flight window of replicate state, one message at a time in probe
 * state, acknowledgement of durable entries only, and recovery from loss. */
#include <criterion/criterion.h>

#include "harness.h"

#define T          H_ELECTION_TICKS
#define APPEND_BIT H_TYPE_BIT(RAFT_MSG_APPEND)

/* Three members, 1 leads, 2 and 3 caught up and in replicate state. */
static void setup(struct h_cluster *c)
{
	h_start(c);
	cr_assert(h_elect(c, 1));
	h_run(c, 1);
	for (raft_id id = 2; id <= 3; id++) {
		cr_assert(h_logs_equal(c, 1, id));
		cr_assert(h_peer(c, 1, id)->replicating, "follower %u still probing", id);
	}
}

struct batch_stats {
	uint32_t msgs;
	uint32_t entries;
	uint32_t max_entries;
	uint64_t max_bytes;
	uint64_t bytes;
};

static struct batch_stats queued_appends(const struct h_cluster *c, raft_id from, raft_id to)
{
	struct batch_stats s = {0};
	const struct h_msg *m;
	for (size_t i = 0; (m = h_find(c, from, to, RAFT_MSG_APPEND, i)) != NULL; i++) {
		s.msgs++;
		s.entries += m->m.append.n_entries;
		s.bytes += m->bytes;
		if (m->m.append.n_entries > s.max_entries)
			s.max_entries = m->m.append.n_entries;
		if (m->bytes > s.max_bytes)
			s.max_bytes = m->bytes;
	}
	return s;
}

Test(raft_replication, append_carries_many_entries_up_to_max_append_entries)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 8;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 20, 16), RAFT_OK);
	struct batch_stats s = queued_appends(&c, 1, 2);
	cr_assert_eq(s.entries, 20);
	cr_assert_eq(s.max_entries, 8, "batches of %u, expected up to 8", s.max_entries);
	cr_assert_eq(s.msgs, 3, "20 entries in %u messages of at most 8", s.msgs);
	h_deliver_all(&c);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_replication, append_carries_entries_up_to_max_append_bytes)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_bytes = 350;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 20, 100), RAFT_OK);
	struct batch_stats s = queued_appends(&c, 1, 2);
	cr_assert_eq(s.entries, 20);
	cr_assert_leq(s.max_bytes, 350, "a message of %llu bytes", (unsigned long long)s.max_bytes);
	cr_assert_eq(s.max_entries, 3);
	h_deliver_all(&c);
	cr_assert(h_logs_equal(&c, 1, 3));
	h_fini(&c);
}

Test(raft_replication, entry_larger_than_max_append_bytes_goes_alone)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_bytes = 50;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 4, 100), RAFT_OK);
	struct batch_stats s = queued_appends(&c, 1, 2);
	cr_assert_eq(s.entries, 4);
	cr_assert_eq(s.max_entries, 1);
	h_deliver_all(&c);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(c.nodes[2].log.last, c.nodes[1].log.last);
	h_fini(&c);
}

Test(raft_replication, inflight_messages_are_bounded_in_replicate_state)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 1;
	c.cfg.max_inflight_msgs = 4;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 20, 10), RAFT_OK);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 4);
	cr_assert_eq(h_count(&c, 1, 3, RAFT_MSG_APPEND), 4);
	/* Single proposals do not widen the window either. */
	cr_assert_eq(h_propose(&c, 1, "more"), RAFT_OK);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 4);
	/* One ack frees one slot. */
	h_deliver_one(&c, h_index_of(&c, 1, 2, RAFT_MSG_APPEND, 0));
	cr_assert_eq(h_count(&c, 2, 1, RAFT_MSG_APPEND_RESP), 1);
	h_deliver_match(&c, 2, 1, RAFT_MSG_APPEND_RESP);
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 4);
	uint32_t rounds = 0;
	while (!h_logs_equal(&c, 1, 2) || !h_logs_equal(&c, 1, 3)) {
		cr_assert_lt(rounds++, 100);
		cr_assert_leq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 4);
		cr_assert_leq(h_count(&c, 1, 3, RAFT_MSG_APPEND), 4);
		h_deliver_one(&c, 0);
	}
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_replication, inflight_bytes_are_bounded_in_replicate_state)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 1;
	c.cfg.max_inflight_bytes = 1000;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 30, 100), RAFT_OK);
	struct batch_stats s = queued_appends(&c, 1, 2);
	cr_assert_leq(s.bytes, 1000, "%llu bytes in flight", (unsigned long long)s.bytes);
	cr_assert_geq(s.bytes, 900, "window of %llu bytes is not used",
	              (unsigned long long)s.bytes);
	while (c.net_len > 0) {
		h_deliver_one(&c, 0);
		cr_assert_leq(queued_appends(&c, 1, 2).bytes, 1000);
		cr_assert_leq(queued_appends(&c, 1, 3).bytes, 1000);
	}
	cr_assert(h_logs_equal(&c, 1, 2));
	h_fini(&c);
}

Test(raft_replication, probe_state_sends_one_message_at_a_time)
{
	struct h_cluster c;
	h_init(&c, 3);
	h_start(&c);
	/* 2's answers are lost: it stays in probe state. */
	h_block(&c, 2, 1, H_TYPE_BIT(RAFT_MSG_APPEND_RESP) | H_TYPE_BIT(RAFT_MSG_HEARTBEAT_RESP));
	cr_assert(h_elect(&c, 1));
	cr_assert(!h_peer(&c, 1, 2)->replicating);
	h_heal(&c);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(h_propose(&c, 1, "p"), RAFT_OK);
		h_deliver_all_except(&c, 1, 2, RAFT_MSG_APPEND);
		cr_assert_leq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 1);
	}
	/* A heartbeat answer revives the probe. */
	for (uint32_t t = 0; t < 3 * T && h_count(&c, 1, 2, RAFT_MSG_APPEND) == 0; t++) {
		h_tick(&c, 1, 1);
		h_deliver_all_except(&c, 1, 2, RAFT_MSG_APPEND);
		cr_assert_leq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 1);
	}
	cr_assert_eq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 1, "no probe was sent");
	h_deliver_all(&c);
	h_run(&c, 2);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert(h_peer(&c, 1, 2)->replicating);
	h_fini(&c);
}

Test(raft_replication, follower_acks_only_durable_entries)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup(&c);
	struct h_node *f = h_node(&c, 2);
	f->manual_log = true;
	uint64_t base = h_last(&c, 1);
	cr_assert_eq(h_propose_n(&c, 1, 5, 8), RAFT_OK);
	h_deliver_match(&c, 1, 2, RAFT_MSG_APPEND);
	cr_assert_eq(f->log.last, base + 5);
	cr_assert_eq(f->log.durable, base);
	/* The harness fails any ack above the durable index; look for one at
	 * the partial persist point. */
	h_persist_log(&c, 2, base + 3);
	uint64_t best = 0;
	const struct h_msg *m;
	for (size_t i = 0; (m = h_find(&c, 2, 1, RAFT_MSG_APPEND_RESP, i)) != NULL; i++)
		if (!m->m.append_resp.reject && m->m.append_resp.match_index > best)
			best = m->m.append_resp.match_index;
	cr_assert_eq(best, base + 3, "acked %llu after persisting %llu", (unsigned long long)best,
	             (unsigned long long)(base + 3));
	h_crash(&c, 3);
	h_deliver_all(&c);
	cr_assert_eq(h_peer(&c, 1, 2)->match_index, base + 3);
	cr_assert_eq(c.nodes[1].commit, base + 3, "commit follows the durable acks");
	h_persist_log(&c, 2, 0);
	h_deliver_all(&c);
	cr_assert_eq(h_peer(&c, 1, 2)->match_index, base + 5);
	cr_assert_eq(c.nodes[1].commit, base + 5);
	h_fini(&c);
}

Test(raft_replication, leader_does_not_count_a_follower_before_it_persists)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup(&c);
	c.nodes[2].manual_log = true;
	c.nodes[3].manual_log = true;
	uint64_t commit = c.nodes[1].commit;
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_deliver_all(&c);
	cr_assert_eq(h_last(&c, 2), commit + 1);
	cr_assert_eq(c.nodes[1].commit, commit);
	h_persist_log(&c, 3, 0);
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].commit, commit + 1);
	h_fini(&c);
}

Test(raft_replication, lost_appends_are_sent_again_after_the_stall)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 4;
	setup(&c);
	h_block(&c, 1, 2, APPEND_BIT);
	cr_assert_eq(h_propose_n(&c, 1, 10, 8), RAFT_OK);
	h_deliver_all(&c);
	cr_assert_eq(c.nodes[1].commit, h_last(&c, 1), "committed with 3");
	cr_assert_lt(h_last(&c, 2), h_last(&c, 1));
	h_heal(&c);
	uint32_t t = 0;
	while (!h_logs_equal(&c, 1, 2)) {
		cr_assert_lt(t++, 2 * T, "follower 2 not repaired after %u ticks", t);
		h_run(&c, 1);
	}
	h_run(&c, H_HEARTBEAT_TICKS);
	cr_assert_eq(c.nodes[2].commit, c.nodes[1].commit);
	h_fini(&c);
}

Test(raft_replication, loss_in_the_middle_of_a_pipelined_window_is_repaired)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 2;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 10, 8), RAFT_OK);
	cr_assert_geq(h_count(&c, 1, 2, RAFT_MSG_APPEND), 3);
	/* Lose the second of the window to 2. */
	h_drop_one(&c, h_index_of(&c, 1, 2, RAFT_MSG_APPEND, 1));
	h_deliver_all(&c);
	uint32_t t = 0;
	while (!h_logs_equal(&c, 1, 2)) {
		cr_assert_lt(t++, 2 * T, "follower 2 not repaired after %u ticks", t);
		h_run(&c, 1);
	}
	cr_assert_eq(c.nodes[2].truncations, 0);
	h_fini(&c);
}

Test(raft_replication, lost_acks_are_recovered)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup(&c);
	h_crash(&c, 3);
	h_block(&c, 2, 1, H_TYPE_BIT(RAFT_MSG_APPEND_RESP));
	uint64_t commit = c.nodes[1].commit;
	cr_assert_eq(h_propose(&c, 1, "x"), RAFT_OK);
	h_deliver_all(&c);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(c.nodes[1].commit, commit);
	h_heal(&c);
	uint32_t t = 0;
	while (c.nodes[1].commit == commit) {
		cr_assert_lt(t++, 2 * T, "the leader never learns of 2's copy");
		h_tick(&c, 1, 1);
		h_tick(&c, 2, 1);
		h_deliver_all(&c);
	}
	cr_assert_eq(c.nodes[1].commit, commit + 1);
	h_fini(&c);
}

Test(raft_replication, duplicated_and_reordered_appends_do_not_truncate_the_log)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 1;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 5, 8), RAFT_OK);
	size_t n = h_count(&c, 1, 2, RAFT_MSG_APPEND);
	cr_assert_eq(n, 5);
	h_drop_match(&c, 1, 3, 0);
	/* Queue: a1..a5 to 2. Duplicate them all and a1 once more, then
	 * deliver a5..a1, the duplicates, and the stale a1 last. */
	for (size_t i = 0; i < n; i++)
		h_duplicate(&c, i);
	h_duplicate(&c, 0);
	for (size_t i = 0; i < n / 2; i++)
		h_swap(&c, i, n - 1 - i);
	cr_assert_eq(c.net[0].m.append.prev_index, c.net[n - 1].m.append.prev_index + 4);
	h_deliver_all(&c);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(c.nodes[2].truncations, 0);
	h_run(&c, 2 * H_HEARTBEAT_TICKS);
	cr_assert(h_logs_equal(&c, 1, 2));
	cr_assert_eq(c.nodes[2].truncations, 0);
	cr_assert_eq(c.nodes[2].commit, h_last(&c, 1));
	h_fini(&c);
}

Test(raft_replication, outbox_overflow_is_bounded_counted_and_recovered)
{
	struct h_cluster c;
	h_init(&c, 3);
	c.cfg.max_append_entries = 1;
	c.cfg.max_outbox = 6;
	setup(&c);
	cr_assert_eq(h_propose_n(&c, 1, 20, 8), RAFT_OK);
	cr_assert_leq(c.net_len, 6);
	cr_assert_gt(h_status(&c, 1)->dropped_msgs, 0, "overflow not counted");
	uint32_t t = 0;
	while (!h_logs_equal(&c, 1, 2) || !h_logs_equal(&c, 1, 3)) {
		cr_assert_lt(t++, 3 * T, "replication stalled after an outbox overflow");
		h_run(&c, 1);
	}
	h_fini(&c);
}

Test(raft_replication, late_reject_does_not_send_a_replicating_follower_back_to_probing)
{
	struct h_cluster c;
	h_init(&c, 3);
	setup(&c);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(h_propose(&c, 1, "e"), RAFT_OK);
	h_deliver_all(&c);
	const struct raft_peer_status *p = h_peer(&c, 1, 2);
	cr_assert(p->replicating);
	uint64_t match = p->match_index, next = p->next_index;
	/* A reject of an append long since superseded (prev 1) arrives. */
	struct raft_message m = {
	        .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = c.nodes[1].st.term};
	m.append_resp.reject = true;
	m.append_resp.rejected_index = 1;
	m.append_resp.last_index = 1;
	m.append_resp.hint_index = 1;
	m.append_resp.hint_term = h_term_at(&c, 1, 1);
	h_inject(&c, &m);
	p = h_peer(&c, 1, 2);
	cr_assert(p->replicating, "a stale reject reset the follower to probing");
	cr_assert_eq(p->match_index, match);
	cr_assert_eq(p->next_index, next);
	h_fini(&c);
}
