/*
 * store_test.c - the ops table's promises, checked on both
 * implementations (each test runs once per store type).
 */
#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "test/storage/helpers.h"

TestSuite(store_mmap, .init = th_setup, .fini = th_teardown);
TestSuite(store_memory, .init = th_setup, .fini = th_teardown);

#define BOTH(name)                                                                                 \
	static void name##_body(enum sto_type type);                                               \
	Test(store_mmap, name)                                                                     \
	{                                                                                          \
		name##_body(STO_TYPE_MMAP);                                                        \
	}                                                                                          \
	Test(store_memory, name)                                                                   \
	{                                                                                          \
		name##_body(STO_TYPE_MEMORY);                                                      \
	}                                                                                          \
	static void name##_body(enum sto_type type)

static struct sto *open_type(enum sto_type type)
{
	struct sto_config cfg;
	th_config(&cfg, type, th_dir);
	return th_open(&cfg, NULL);
}

BOTH(an_empty_store_has_first_one_last_zero_and_term_zero_at_index_zero)
{
	struct sto *s = open_type(type);
	cr_assert_eq(sto_first_index(s), 1);
	cr_assert_eq(sto_last_index(s), 0);
	uint64_t t = 99;
	cr_assert(sto_term_at(s, 0, &t));
	cr_assert_eq(t, 0);
	cr_assert_not(sto_term_at(s, 1, &t));
	cr_assert_eq(sto_entry_bytes(s, 1), 0);
	uint64_t di, dt;
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 0);
	sto_close(s);
}

BOTH(appended_entries_read_back_with_their_terms_types_and_sizes)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 200, 3, 100); /* spans many 4 KiB segments */
	cr_assert_eq(sto_last_index(s), 200);
	th_check_range(s, 1, 200, 3, 100);
	sto_close(s);
}

BOTH(an_append_must_continue_the_log)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 5, 1, 10);
	struct sto_entry e = {.term = 1, .data = "x", .len = 1};
	struct dl_errctx err;
	cr_assert_eq(sto_append(s, 7, &e, 1, &err), DL_EINVAL);
	cr_assert_eq(sto_append(s, 5, &e, 1, &err), DL_EINVAL);
	cr_assert_eq(sto_append(s, 6, &e, 0, &err), DL_EINVAL);
	cr_assert_eq(sto_last_index(s), 5);
	sto_close(s);
}

BOTH(terms_must_not_go_down)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 3, 5, 10);
	struct sto_entry e[2] = {{.term = 5, .data = "a", .len = 1},
	                         {.term = 4, .data = "b", .len = 1}};
	struct dl_errctx err;
	cr_assert_eq(sto_append(s, 4, e, 2, &err), DL_EINVAL);
	cr_assert_eq(sto_last_index(s), 3, "nothing of a refused batch is appended");
	sto_close(s);
}

BOTH(an_oversized_entry_is_refused_as_too_big_and_nothing_of_its_batch_stays)
{
	struct sto *s = open_type(type);
	static uint8_t big[2048];
	struct sto_entry e[2] = {{.term = 1, .data = "a", .len = 1},
	                         {.term = 1, .data = big, .len = sizeof(big)}};
	struct dl_errctx err;
	cr_assert_eq(sto_append(s, 1, e, 2, &err), DL_ETOOBIG);
	cr_assert_eq(sto_last_index(s), 0);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_eq(info.too_big_refusals, 1);
	sto_close(s);
}

BOTH(reads_outside_the_log_say_which_side)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 10, 1, 50);
	uint8_t buf[64];
	struct sto_view v;
	struct dl_errctx err;
	cr_assert_eq(sto_read(s, 11, buf, sizeof(buf), &v, &err), DL_ERANGE);
	cr_assert_eq(sto_read(s, 0, buf, sizeof(buf), &v, &err), DL_ECOMPACTED);
	sto_close(s);
}

BOTH(truncate_removes_every_entry_after_the_index)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 120, 1, 80);
	struct dl_errctx err;
	cr_assert_eq(sto_truncate_after(s, 57, &err), DL_OK, "%s", err.msg);
	cr_assert_eq(sto_last_index(s), 57);
	uint64_t t;
	cr_assert_not(sto_term_at(s, 58, &t));
	th_check_range(s, 1, 57, 1, 80);
	th_append_range(s, 58, 130, 2, 80); /* a new leader's entries */
	th_check_range(s, 58, 130, 2, 80);
	th_check_range(s, 1, 57, 1, 80);
	cr_assert_eq(sto_truncate_after(s, 200, &err), DL_OK, "past the end is a no-op");
	cr_assert_eq(sto_last_index(s), 130);
	sto_close(s);
}

BOTH(truncating_committed_entries_is_refused)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 20, 1, 30);
	struct dl_errctx err;
	cr_assert_eq(sto_sync(s, &err), DL_OK);
	sto_set_commit(s, 15);
	cr_assert_eq(sto_truncate_after(s, 14, &err), DL_EINVAL);
	cr_assert_eq(sto_truncate_after(s, 15, &err), DL_OK);
	cr_assert_eq(sto_last_index(s), 15);
	sto_close(s);
}

BOTH(the_durable_index_moves_with_sync_and_drops_with_truncation)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 30, 2, 40);
	uint64_t di, dt;
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 0, "without a flusher nothing is durable before sync");
	struct dl_errctx err;
	cr_assert_eq(sto_sync(s, &err), DL_OK);
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 30);
	cr_assert_eq(dt, 2);
	cr_assert_eq(sto_truncate_after(s, 12, &err), DL_OK);
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 12);
	cr_assert_eq(dt, 2);
	sto_close(s);
}

BOTH(a_saved_state_reads_back)
{
	struct sto *s = open_type(type);
	struct dl_errctx err;
	cr_assert_eq(sto_save_state(s, 7, 3, &err), DL_OK);
	uint64_t term;
	uint32_t vote;
	sto_get_state(s, &term, &vote);
	cr_assert_eq(term, 7);
	cr_assert_eq(vote, 3);
	cr_assert_eq(sto_save_state(s, 6, 1, &err), DL_EINVAL, "terms never go down");
	sto_close(s);
}

BOTH(dropping_a_prefix_keeps_the_entry_it_was_given_and_everything_after)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 300, 1, 60);
	struct dl_errctx err;
	cr_assert_eq(sto_drop_prefix(s, 150, &err), DL_OK);
	uint64_t first = sto_first_index(s);
	cr_assert(first > 1 && first <= 150, "first %" PRIu64, first);
	th_check_range(s, first, 300, 1, 60);
	uint8_t buf[64];
	struct sto_view v;
	cr_assert_eq(sto_read(s, first - 1, buf, sizeof(buf), &v, &err), DL_ECOMPACTED);
	cr_assert_eq(sto_truncate_after(s, first - 1, &err), DL_ECOMPACTED,
	             "a compacted log is never truncated to empty");
	sto_close(s);
}

BOTH(a_copy_needs_a_buffer_large_enough_and_says_how_large)
{
	struct sto *s = open_type(type);
	th_append_range(s, 1, 100, 1, 200);
	uint8_t small[4];
	struct sto_view v;
	struct dl_errctx err;
	/* entry 1 lives in an old segment of the mmap store: a copy */
	int rc = sto_read(s, 1, small, sizeof(small), &v, &err);
	if (type == STO_TYPE_MMAP && th_len(1, 200) > sizeof(small)) {
		cr_assert_eq(rc, DL_ETOOBIG);
		cr_assert_eq(v.len, th_len(1, 200));
	} else {
		cr_assert_eq(rc, DL_OK);
	}
	sto_close(s);
}

Test(store_mmap, older_segments_are_read_as_copies_and_the_active_one_as_views)
{
	struct sto *s = open_type(STO_TYPE_MMAP);
	th_append_range(s, 1, 100, 1, 100);
	uint8_t buf[256];
	struct sto_view v;
	struct dl_errctx err;
	cr_assert_eq(sto_read(s, 1, buf, sizeof(buf), &v, &err), DL_OK);
	cr_assert(v.copied);
	cr_assert_eq(sto_read(s, 100, buf, sizeof(buf), &v, &err), DL_OK);
	cr_assert_not(v.copied);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_leq(info.maps, STO_MAX_MAPS);
	cr_assert_gt(info.segments, 2);
	sto_close(s);
}

/* Appends entries first..first + n - 1 (lengths th_len(i, max_len), term
 * 2) in one batch. */
static void append_one_batch(struct sto *s, uint64_t first, uint32_t n, uint32_t max_len)
{
	uint8_t *bodies = malloc((size_t)n * max_len);
	struct sto_entry *e = calloc(n, sizeof(*e));
	cr_assert(bodies != NULL && e != NULL);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *b = bodies + (size_t)i * max_len;
		uint32_t len = th_len(first + i, max_len);
		th_body(first + i, 2, b, len);
		e[i] = (struct sto_entry){
		        .term = 2, .data = b, .len = len, .type = (uint8_t)((first + i) % 2)};
	}
	struct dl_errctx err = {{0}};
	cr_assert_eq(sto_append(s, first, e, n, &err), DL_OK, "%s", err.msg);
	free(bodies);
	free(e);
}

/* An append writes its entries with pwritev from a staging buffer and the
 * caller's bodies (mmap_store.c, "writing"). Each batch here outgrows the
 * buffer (short bodies, copied) or the iovec array (long bodies, written
 * from the caller's memory), rolls through several segments and index
 * files, and has entries with padding. */
Test(store_mmap, batches_larger_than_the_write_buffers_read_back_and_survive_reopen)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.segment_bytes = 256 << 10;
	cfg.max_entry_bytes = 1500;
	cfg.verify = STO_VERIFY_ALL;
	struct sto *s = th_open(&cfg, NULL);
	append_one_batch(s, 1, 2000, 1500);
	append_one_batch(s, 2001, 3000, 100);
	th_check_range(s, 1, 2000, 2, 1500);
	th_check_range(s, 2001, 5000, 2, 100);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_gt(info.segments, 6);
	struct dl_errctx err = {{0}};
	cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
	sto_close(s);
	s = th_open(&cfg, NULL);
	cr_assert_eq(sto_last_index(s), 5000);
	th_check_range(s, 1, 2000, 2, 1500);
	th_check_range(s, 2001, 5000, 2, 100);
	sto_close(s);
}

Test(store_mmap, a_reopened_store_has_its_entries_state_and_checkpoint)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	struct sto *s = th_open(&cfg, NULL);
	th_append_range(s, 1, 150, 4, 90);
	struct dl_errctx err;
	cr_assert_eq(sto_save_state(s, 4, 2, &err), DL_OK);
	cr_assert_eq(sto_sync(s, &err), DL_OK);
	sto_set_commit(s, 140);
	sto_close(s);
	s = th_open(&cfg, NULL);
	cr_assert_eq(sto_first_index(s), 1);
	cr_assert_eq(sto_last_index(s), 150);
	th_check_range(s, 1, 150, 4, 90);
	cr_assert_eq(sto_recovered_commit(s), 140);
	uint64_t term, di, dt;
	uint32_t vote;
	sto_get_state(s, &term, &vote);
	cr_assert_eq(term, 4);
	cr_assert_eq(vote, 2);
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 150, "what recovery found is durable");
	cr_assert_eq(dt, 4);
	th_append_range(s, 151, 160, 5, 90);
	th_check_range(s, 151, 160, 5, 90);
	sto_close(s);
}

Test(store_mmap, a_second_open_of_the_same_store_is_refused_as_busy)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	struct sto *s = th_open(&cfg, NULL);
	char msg[256];
	cr_assert_eq(th_open_fails(&cfg, msg, sizeof(msg)), DL_EBUSY);
	sto_close(s);
	sto_close(th_open(&cfg, NULL));
}

Test(store_mmap, a_bad_config_is_refused_naming_the_key)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.segment_bytes = 1000;
	char msg[256];
	cr_assert_eq(th_open_fails(&cfg, msg, sizeof(msg)), DL_ECONFIG);
	cr_assert(strstr(msg, "mappedFileSizeForEntryData") != NULL, "%s", msg);
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.group = "../escape";
	cr_assert_eq(th_open_fails(&cfg, msg, sizeof(msg)), DL_ECONFIG);
	/* A directory too long for the store's path buffers. */
	static char longdir[1200];
	memset(longdir, 'd', sizeof(longdir) - 1);
	longdir[0] = '/';
	th_config(&cfg, STO_TYPE_MMAP, longdir);
	cr_assert_eq(th_open_fails(&cfg, msg, sizeof(msg)), DL_ECONFIG);
	cr_assert(strstr(msg, "storeBaseDir") != NULL && strstr(msg, "at most 960") != NULL, "%s",
	          msg);
}

Test(store_memory, bodies_past_the_memory_bound_are_refused_with_no_space)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MEMORY, th_dir);
	cfg.memory_max_bytes = 1000;
	struct sto *s = th_open(&cfg, NULL);
	static uint8_t body[600];
	struct sto_entry e = {.term = 1, .data = body, .len = sizeof(body)};
	struct dl_errctx err;
	cr_assert_eq(sto_append(s, 1, &e, 1, &err), DL_OK);
	cr_assert_eq(sto_append(s, 2, &e, 1, &err), DL_ENOSPC);
	cr_assert_eq(sto_truncate_after(s, 0, &err), DL_OK);
	cr_assert_eq(sto_append(s, 1, &e, 1, &err), DL_OK, "space comes back");
	sto_close(s);
}
