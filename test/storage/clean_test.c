/*
 * clean_test.c - cleaning by age and by disk use, refusing appends on a
 * full disk, and what an idle or a thousand members cost. The clock and
 * the disk-usage source are injected, so nothing here depends on the
 * machine's time or disk.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "test/storage/helpers.h"

TestSuite(clean, .init = th_setup, .fini = th_teardown);

#define HOUR_MS 3600000ull

struct fake {
	uint64_t now_ms;
	double base_ratio;  /* disk use with no segment */
	double per_segment; /* added by each data segment on disk */
	char data_dir[1024];
};

static uint64_t fake_clock(void *ctx)
{
	return ((struct fake *)ctx)->now_ms;
}

static int count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return 0;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static int fake_usage(void *ctx, const char *path, double *ratio, uint64_t *total_bytes)
{
	(void)path;
	(void)total_bytes; /* unknown: preallocation is not limited here */
	struct fake *f = ctx;
	*ratio = f->base_ratio + f->per_segment * count_segments(f->data_dir);
	return DL_OK;
}

static struct sto *open_fake(struct fake *f, struct sto_config *cfg)
{
	th_config(cfg, STO_TYPE_MMAP, th_dir);
	cfg->clock = fake_clock;
	cfg->clock_ctx = f;
	cfg->disk_usage = fake_usage;
	cfg->disk_usage_ctx = f;
	cfg->disk_check_interval_ms = 0;
	cfg->disk_full_ratio = 0.90;
	cfg->disk_space_ratio_to_force_clean = 0.85;
	snprintf(f->data_dir, sizeof(f->data_dir), "%s/%s/%s/data", th_dir, TH_GROUP, TH_SELF);
	return th_open(cfg, NULL);
}

/* Appends `per_hour` entries, then moves the clock an hour, `hours` times:
 * segments are closed at different times. */
static uint64_t fill(struct sto *s, struct fake *f, uint64_t from, int hours, uint64_t per_hour)
{
	for (int h = 0; h < hours; h++) {
		th_append_range(s, from, from + per_hour - 1, 1, 100);
		from += per_hour;
		f->now_ms += HOUR_MS;
	}
	return from - 1;
}

Test(clean, segments_older_than_the_reserved_hours_are_deleted_and_younger_ones_kept)
{
	struct fake f = {.now_ms = 1000 * HOUR_MS};
	struct sto_config cfg;
	struct sto *s = open_fake(&f, &cfg);
	uint64_t last = fill(s, &f, 1, 10, 60); /* ~3 segments an hour */
	struct sto_info before;
	sto_get_info(s, &before);
	struct sto_clean_result r;
	struct dl_errctx err;
	cr_assert_eq(sto_clean(s, last, &r, &err), DL_OK);
	cr_assert_eq(r.segments_deleted, 0, "nothing is 72 hours old yet");
	f.now_ms += 65 * HOUR_MS; /* the first hours' segments pass 72 h */
	cr_assert_eq(sto_clean(s, last, &r, &err), DL_OK);
	cr_assert_gt(r.segments_deleted, 0);
	cr_assert_lt(r.segments_deleted, before.segments - 1, "younger segments stay");
	cr_assert_eq(r.first_index, sto_first_index(s));
	th_check_range(s, sto_first_index(s), last, 1, 100);
	sto_close(s);
	s = open_fake(&f, &cfg);
	cr_assert_eq(sto_first_index(s), r.first_index, "the first index survives a reopen");
	th_check_range(s, r.first_index, last, 1, 100);
	sto_close(s);
}

Test(clean, cleaning_never_passes_the_index_the_caller_allows)
{
	struct fake f = {.now_ms = 1000 * HOUR_MS};
	struct sto_config cfg;
	struct sto *s = open_fake(&f, &cfg);
	uint64_t last = fill(s, &f, 1, 4, 100);
	f.now_ms += 1000 * HOUR_MS; /* everything is old */
	struct sto_clean_result r;
	struct dl_errctx err;
	for (uint64_t allowed = 0; allowed <= last; allowed += 37) {
		cr_assert_eq(sto_clean(s, allowed, &r, &err), DL_OK);
		cr_assert_leq(sto_first_index(s), allowed > 0 ? allowed : 1,
		              "first %" PRIu64 " allowed %" PRIu64, sto_first_index(s), allowed);
	}
	th_check_range(s, sto_first_index(s), last, 1, 100);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_geq(info.segments, 1, "the last segment always stays");
	sto_close(s);
}

Test(clean, force_clean_deletes_the_oldest_segments_while_disk_use_is_past_the_ratio)
{
	struct fake f = {.now_ms = 1000 * HOUR_MS, .base_ratio = 0.70, .per_segment = 0.01};
	struct sto_config cfg;
	struct sto *s = open_fake(&f, &cfg);
	uint64_t last = fill(s, &f, 1, 1, 700); /* ~30 young segments: 0.70 + 0.30 */
	struct sto_clean_result r;
	struct dl_errctx err;
	cr_assert_eq(sto_clean(s, last, &r, &err), DL_OK);
	cr_assert(r.forced);
	cr_assert_gt(r.segments_deleted, 0);
	double now = 0.70 + 0.01 * count_segments(f.data_dir);
	cr_assert_lt(now, 0.85, "deleted until use is under the ratio (%.2f)", now);
	cr_assert_geq(now, 0.84 - 1e-9, "and no further (%.2f)", now);
	th_check_range(s, sto_first_index(s), last, 1, 100);
	sto_close(s);
}

Test(clean, without_force_clean_young_segments_stay_however_full_the_disk)
{
	struct fake f = {.now_ms = 1000 * HOUR_MS, .base_ratio = 0.70, .per_segment = 0.01};
	struct sto_config cfg;
	struct sto *s = open_fake(&f, &cfg);
	sto_close(s);
	cfg.enable_disk_force_clean = false;
	s = th_open(&cfg, NULL);
	uint64_t last = fill(s, &f, 1, 1, 700);
	struct sto_clean_result r;
	struct dl_errctx err;
	cr_assert_eq(sto_clean(s, last, &r, &err), DL_OK);
	cr_assert_eq(r.segments_deleted, 0);
	sto_close(s);
}

Test(clean, appends_are_refused_with_no_space_while_disk_use_is_past_the_full_ratio)
{
	struct fake f = {.now_ms = 1000 * HOUR_MS, .base_ratio = 0.5};
	struct sto_config cfg;
	struct sto *s = open_fake(&f, &cfg);
	th_append_range(s, 1, 10, 1, 50);
	f.base_ratio = 0.93;
	struct sto_entry e = {.term = 1, .data = "x", .len = 1};
	struct dl_errctx err = {{0}};
	cr_assert_eq(sto_append(s, 11, &e, 1, &err), DL_ENOSPC);
	cr_assert(strstr(err.msg, "diskFullRatio") != NULL, "%s", err.msg);
	struct sto_clean_result r;
	cr_assert_eq(sto_clean(s, 10, &r, &err), DL_OK);
	cr_assert(r.disk_full);
	f.base_ratio = 0.5;
	cr_assert_eq(sto_append(s, 11, &e, 1, &err), DL_OK, "appends resume: %s", err.msg);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_eq(info.enospc_refusals, 1);
	cr_assert_eq(info.last_index, 11);
	sto_close(s);
}

Test(clean, an_idle_member_costs_at_most_one_mebibyte_of_disk)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.segment_bytes = 1ull << 30; /* DLedger's default */
	cfg.index_segment_bytes = 32ull * 5000000ull;
	struct sto *s = th_open(&cfg, NULL);
	struct dl_errctx err;
	cr_assert_eq(sto_save_state(s, 1, 1, &err), DL_OK);
	struct sto_info info;
	sto_get_info(s, &info);
	cr_assert_leq(info.disk_bytes, 1u << 20, "idle: %" PRIu64 " bytes", info.disk_bytes);
	cr_assert_eq(info.segments, 0, "no segment before the first append");
	/* a member that writes a little allocates a little, not a segment */
	th_append_range(s, 1, 20, 1, 100);
	cr_assert_eq(sto_sync(s, &err), DL_OK);
	sto_get_info(s, &info);
	cr_assert_leq(info.disk_bytes, 1u << 20, "one small write: %" PRIu64 " bytes",
	              info.disk_bytes);
	sto_close(s);
}

static int count_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	cr_assert_not_null(f);
	int n = 0, c;
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

Test(clean, a_thousand_and_twenty_four_stores_keep_at_most_three_maps_each, .timeout = 120)
{
	enum { N = 1024 };
	struct rlimit rl;
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < 8 * N && rl.rlim_max >= 8 * N) {
		rl.rlim_cur = 8 * N;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	struct sto_flusher *fl;
	struct sto_flusher_config fc;
	sto_flusher_config_defaults(&fc);
	struct dl_errctx err;
	cr_assert_eq(sto_flusher_start(&fc, &fl, &err), DL_OK);
	static struct sto *s[N];
	int maps0 = count_maps();
	for (int i = 0; i < N; i++) {
		struct sto_config cfg;
		th_config(&cfg, STO_TYPE_MMAP, th_dir);
		char self[16];
		snprintf(self, sizeof(self), "n%d", i);
		cfg.self_id = self;
		cfg.segment_bytes = 1ull << 30;
		cfg.index_segment_bytes = 32ull * 5000000ull;
		s[i] = th_open(&cfg, fl);
		th_append_range(s[i], 1, 3, 1, 100);
	}
	int maps1 = count_maps();
	for (int i = 0; i < N; i++) {
		cr_assert_eq(sto_sync(s[i], &err), DL_OK);
		struct sto_info info;
		sto_get_info(s[i], &info);
		cr_assert_leq(info.maps, 3);
	}
	cr_log_info("%d stores: %d mappings more (vm.max_map_count is 65530)", N, maps1 - maps0);
	cr_assert_leq(maps1 - maps0, 3 * N);
	for (int i = 0; i < N; i++)
		sto_close(s[i]);
	sto_flusher_stop(fl);
}
