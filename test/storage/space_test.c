/*
 * space_test.c - a full disk and failed syncs (issue 12, finding 4).
 *
 * A fake disk (the store's disk_usage hook) says how much of it is used:
 * a base plus the blocks the member's files hold. The store's fault hooks
 * (sto_test_hooks.alloc/write/sync) make fallocate, pwritev or fdatasync
 * fail as a full or failing disk would. What is checked:
 *  - appends are refused by the diskFullRatio check before a preallocation
 *    can fail for lack of space;
 *  - a preallocation or a write that finds no space refuses that append
 *    only (DL_ENOSPC): the store stays usable, and the next append after
 *    space returns succeeds without a reopen;
 *  - a failed fdatasync is sticky (DL_EIO from then on) until the store is
 *    reopened, and the reopen recovers every entry reported durable.
 *
 * Threads: the sync hook runs on the flush threads; what it reads is
 * atomic. Everything else is the test thread's.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "storage/sto_internal.h"
#include "test/storage/helpers.h"

#define MIB (1024ull * 1024ull)

static struct {
	uint64_t total_bytes;  /* the fake disk's size; 0: report none */
	uint64_t base_bytes;   /* used by others */
	char dir[1024];        /* the member's directory: its blocks count as used */
	bool fail_alloc;       /* every fallocate fails with ENOSPC */
	uint64_t alloc_room;   /* fallocates larger than this fail (0: no limit) */
	bool fail_write;       /* every pwritev fails with ENOSPC */
	atomic_bool fail_sync; /* every fdatasync fails with EIO */
	int alloc_failures, write_failures;
	atomic_int sync_failures;
	/* What the flush thread reported. */
	atomic_int durable_error;
	atomic_uint_fast64_t durable_index;
} D;

static uint64_t du_sum;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)path;
	(void)flag;
	(void)ftw;
	du_sum += (uint64_t)st->st_blocks * 512u;
	return 0;
}

/* Bytes the member's files hold on disk (allocated blocks). */
static uint64_t member_bytes(void)
{
	du_sum = 0;
	(void)nftw(D.dir, du_one, 16, FTW_PHYS);
	return du_sum;
}

static int fake_usage(void *ctx, const char *path, double *ratio, uint64_t *total_bytes)
{
	(void)ctx;
	(void)path;
	*ratio = (double)(D.base_bytes + member_bytes()) / (double)D.total_bytes;
	*total_bytes = D.total_bytes;
	return DL_OK;
}

/* The store's files are allocated from their start, so the part of
 * [off, off + len) past the blocks a file holds is what an allocation
 * takes: it fails when that does not fit what is left (a range already
 * allocated needs no space, as on a real disk). */
static int hook_alloc(void *ctx, const char *path, uint64_t off, uint64_t len)
{
	(void)ctx;
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	uint64_t held = (uint64_t)st.st_blocks * 512u;
	uint64_t fresh = off + len > held ? off + len - (held > off ? held : off) : 0;
	if (fresh == 0)
		return 0;
	bool full = D.fail_alloc || (D.alloc_room != 0 && fresh > D.alloc_room) ||
	            (D.total_bytes != 0 && D.base_bytes + member_bytes() + fresh > D.total_bytes);
	D.alloc_failures += full;
	return full ? ENOSPC : 0;
}

static int hook_write(void *ctx, const char *path, uint64_t off, uint64_t len)
{
	(void)ctx;
	(void)path;
	(void)off;
	(void)len;
	D.write_failures += D.fail_write;
	return D.fail_write ? ENOSPC : 0;
}

static int hook_sync(void *ctx, const char *path)
{
	(void)ctx;
	(void)path;
	if (!atomic_load(&D.fail_sync))
		return 0;
	atomic_fetch_add(&D.sync_failures, 1);
	return EIO;
}

static void on_durable(void *ctx, const struct sto_durable *d)
{
	(void)ctx;
	if (d->error != 0)
		atomic_store(&D.durable_error, d->error);
	atomic_store(&D.durable_index, d->index);
}

static struct sto_test_hooks hooks = {.alloc = hook_alloc, .write = hook_write, .sync = hook_sync};

static void setup(void)
{
	th_setup();
	memset(&D, 0, sizeof(D));
	snprintf(D.dir, sizeof(D.dir), "%s/%s/%s", th_dir, TH_GROUP, TH_SELF);
	sto_test_hooks = &hooks;
}

static void teardown(void)
{
	sto_test_hooks = NULL;
	th_teardown();
}

TestSuite(space, .init = setup, .fini = teardown);

/* Appends entry i alone (term 1, th_body of th_len(i, max_len) bytes). */
static int append_one(struct sto *s, uint64_t i, uint32_t max_len, struct dl_errctx *err)
{
	static uint8_t buf[4096];
	uint32_t len = th_len(i, max_len);
	cr_assert_leq(len, sizeof(buf));
	th_body(i, 1, buf, len);
	struct sto_entry e = {.term = 1, .data = buf, .len = len, .type = (uint8_t)(i % 2)};
	memset(err, 0, sizeof(*err));
	return sto_append(s, i, &e, 1, err);
}

static struct sto_flusher *start_flusher(void)
{
	struct sto_flusher_config fc;
	sto_flusher_config_defaults(&fc);
	struct sto_flusher *fl;
	struct dl_errctx err;
	cr_assert_eq(sto_flusher_start(&fc, &fl, &err), DL_OK);
	return fl;
}

Test(space, a_store_at_its_full_ratio_refuses_appends_before_any_preallocation_fails)
{
	D.total_bytes = 4 * MIB;
	D.base_bytes = 2 * MIB;
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.segment_bytes = 8 * MIB;
	cfg.index_segment_bytes = 1 * MIB;
	cfg.max_entry_bytes = 4096;
	cfg.prealloc_max_bytes = 1 * MIB; /* steps up to a quarter of the disk */
	cfg.disk_full_ratio = 0.90;
	cfg.disk_space_ratio_to_force_clean = 0.85;
	cfg.disk_check_interval_ms = 0;
	cfg.disk_usage = fake_usage;
	struct sto *s = th_open(&cfg, NULL);
	struct dl_errctx err;
	int rc = DL_OK;
	uint64_t i = 1;
	for (; i < 100000; i++) {
		rc = append_one(s, i, 2000, &err);
		if (rc != DL_OK)
			break;
	}
	uint64_t last = i - 1;
	cr_assert_eq(rc, DL_ENOSPC, "entry %" PRIu64 ": %s: %s", i, dl_strerror(rc), err.msg);
	cr_assert_eq(D.alloc_failures, 0, "no fallocate failed for lack of space (%d did): %s",
	             D.alloc_failures, err.msg);
	cr_assert(strstr(err.msg, "diskFullRatio") != NULL, "refused by the ratio: %s", err.msg);
	double used = (double)(D.base_bytes + member_bytes()) / (double)D.total_bytes;
	cr_log_info("refused at %.5f of the disk: %s", used, err.msg);
	/* Under the ratio, but for the file system's own blocks: writeback
	 * splits the preallocated extents, which may take an extent block. */
	double fs_blocks = 2.0 * 4096 / (double)D.total_bytes;
	cr_assert_leq(used, 0.90 + fs_blocks, "preallocation stays under the ratio (%.5f)", used);
	cr_assert_geq(used, 0.80, "and the store used most of the room up to it (%.3f)", used);
	th_check_range(s, 1, last, 1, 2000);
	/* Space comes back: appends go on, no reopen. */
	D.base_bytes = 1 * MIB;
	cr_assert_eq(append_one(s, last + 1, 2000, &err), DL_OK, "%s", err.msg);
	th_check_range(s, 1, last + 1, 1, 2000);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_eq(info.enospc_refusals, 1);
	sto_close(s);
}

/* Appends one entry at a time until `refusals` appends were refused
 * (each must be DL_ENOSPC, never DL_EIO); returns the last index stored. */
static uint64_t append_until_refused(struct sto *s, uint64_t last, int refusals)
{
	struct dl_errctx err;
	int seen = 0;
	for (int tries = 0; tries < 10000 && seen < refusals; tries++) {
		int rc = append_one(s, last + 1, 100, &err);
		if (rc == DL_OK) {
			cr_assert_eq(seen, 0,
			             "an append after a refusal, still without space, "
			             "succeeded");
			last++;
			continue;
		}
		cr_assert_eq(rc, DL_ENOSPC, "entry %" PRIu64 ": %s: %s", last + 1, dl_strerror(rc),
		             err.msg);
		seen++;
	}
	cr_assert_eq(seen, refusals, "the disk filled up");
	return last;
}

static void failed_preallocation_leaves_the_store_usable(bool with_flusher)
{
	struct sto_flusher *fl = with_flusher ? start_flusher() : NULL;
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir); /* 4 KiB segments: rolls in the way */
	struct sto *s = th_open(&cfg, fl);
	struct dl_errctx err;
	th_append_range(s, 1, 20, 1, 100);
	D.fail_alloc = true;
	uint64_t last = append_until_refused(s, 20, 3);
	cr_assert_gt(D.alloc_failures, 0, "refused for lack of space to preallocate");
	th_check_range(s, 1, last, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK, "a refusal is not a sync failure: %s", err.msg);
	/* Space comes back: the next append succeeds, no reopen. */
	D.fail_alloc = false;
	cr_assert_eq(append_one(s, last + 1, 100, &err), DL_OK, "%s", err.msg);
	th_append_range(s, last + 2, last + 200, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
	th_check_range(s, 1, last + 200, 1, 100);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_eq(info.enospc_refusals, 3, "each refusal is counted once (%" PRIu64 ")",
	             info.enospc_refusals);
	sto_close(s);
	s = th_open(&cfg, fl);
	cr_assert_eq(sto_last_index(s), last + 200, "what was appended survives a reopen");
	th_check_range(s, 1, last + 200, 1, 100);
	sto_close(s);
	sto_flusher_stop(fl);
}

Test(space, a_failed_preallocation_refuses_that_append_and_the_next_one_succeeds)
{
	failed_preallocation_leaves_the_store_usable(false);
}

Test(space, a_failed_preallocation_with_the_flush_thread_leaves_the_store_usable)
{
	failed_preallocation_leaves_the_store_usable(true);
}

Test(space, a_preallocation_step_that_does_not_fit_falls_back_to_what_the_append_needs)
{
	D.alloc_room = 8 << 10; /* a disk with a few KiB left */
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.segment_bytes = 1 * MIB;
	cfg.prealloc_max_bytes = 1 * MIB;
	struct sto *s = th_open(&cfg, NULL);
	struct dl_errctx err;
	for (uint64_t i = 1; i <= 200; i++) {
		int rc = append_one(s, i, 100, &err);
		cr_assert_eq(rc, DL_OK, "entry %" PRIu64 ": %s: %s", i, dl_strerror(rc), err.msg);
	}
	th_check_range(s, 1, 200, 1, 100);
	sto_close(s);
}

Test(space, a_write_that_finds_no_space_refuses_that_append_and_is_not_sticky)
{
	struct sto_flusher *fl = start_flusher();
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	struct sto *s = th_open(&cfg, fl);
	struct dl_errctx err;
	th_append_range(s, 1, 30, 1, 100);
	D.fail_write = true;
	uint64_t last = append_until_refused(s, 30, 2);
	cr_assert_eq(last, 30);
	cr_assert_gt(D.write_failures, 0);
	D.fail_write = false;
	th_append_range(s, 31, 120, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
	th_check_range(s, 1, 120, 1, 100);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_eq(info.enospc_refusals, 2, "each refusal is counted (%" PRIu64 ")",
	             info.enospc_refusals);
	sto_close(s);
	s = th_open(&cfg, fl);
	th_check_range(s, 1, 120, 1, 100);
	sto_close(s);
	sto_flusher_stop(fl);
}

Test(space, a_failed_sync_is_sticky_until_a_reopen_which_recovers_what_was_durable)
{
	struct sto_flusher *fl = start_flusher();
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.on_durable = on_durable;
	struct sto *s = th_open(&cfg, fl);
	struct dl_errctx err = {{0}};
	th_append_range(s, 1, 30, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
	uint64_t di, dt;
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 30);
	atomic_store(&D.fail_sync, true);
	th_append_range(s, 31, 40, 1, 100); /* appends return before their sync */
	cr_assert_eq(sto_sync(s, &err), DL_EIO);
	cr_assert_gt(atomic_load(&D.sync_failures), 0);
	/* The report reaches on_durable on the flush thread, which may run
	 * after sto_sync() returned: wait for it, bounded. */
	for (int i = 0; i < 5000 && atomic_load(&D.durable_error) != DL_EIO; i++)
		usleep(1000);
	cr_assert_eq(atomic_load(&D.durable_error), DL_EIO, "the flush thread reported it");
	/* Sticky: the kernel may have dropped the dirty pages, so nothing
	 * after the failure is trusted, even once syncs work again. */
	atomic_store(&D.fail_sync, false);
	cr_assert_eq(append_one(s, 41, 100, &err), DL_EIO);
	cr_assert(strstr(err.msg, "sync failed") != NULL, "%s", err.msg);
	cr_assert_eq(sto_sync(s, &err), DL_EIO);
	sto_durable(s, &di, &dt);
	cr_assert_eq(di, 30, "nothing more is reported durable");
	sto_close(s);
	/* The way out: reopen, which reads the log back from the disk. */
	s = th_open(&cfg, fl);
	uint64_t last = sto_last_index(s);
	cr_assert_geq(last, 30, "every entry reported durable is back (last %" PRIu64 ")", last);
	cr_assert_leq(last, 40);
	th_check_range(s, 1, last, 1, 100);
	th_append_range(s, last + 1, last + 10, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
	th_check_range(s, 1, last + 10, 1, 100);
	sto_close(s);
	sto_flusher_stop(fl);
}
