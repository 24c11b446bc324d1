/*
 * flush_test.c - the shared flush thread: many stores and appender threads
 * on one flusher (group commit), async mode, state reports, idling.
 * A plain program on test/lib/tt.h (Criterion cannot run under
 * ThreadSanitizer), registered in the 'unit' and 'tsan' suites.
 *
 * Threads: appender threads each own a set of stores; the flush thread
 * runs on_durable, which updates per-store atomics and signals the
 * owner's condition variable.
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "storage/sto_internal.h" /* sto_test_hooks */
#include "test/lib/tt.h"
#include "test/storage/helpers.h"

TT_MAIN_STATE;

struct owner;

struct tstore {
	struct sto *s;
	struct owner *owner;
	uint64_t last;            /* owner thread */
	_Atomic uint64_t durable; /* flush thread writes */
	_Atomic uint64_t reports;
	atomic_bool went_down;
	atomic_bool state_seen;
	_Atomic int error; /* the last report's */
};

struct owner {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct tstore *stores;
	int n;
	int batches;
	bool ok;
};

static void on_durable(void *ctx, const struct sto_durable *d)
{
	struct tstore *t = ctx;
	uint64_t prev = atomic_load(&t->durable);
	if (d->index < prev)
		atomic_store(&t->went_down, true);
	if (d->state_durable)
		atomic_store(&t->state_seen, true);
	atomic_store(&t->durable, d->index);
	atomic_store(&t->error, d->error);
	atomic_fetch_add(&t->reports, 1);
	pthread_mutex_lock(&t->owner->mu);
	pthread_cond_broadcast(&t->owner->cv);
	pthread_mutex_unlock(&t->owner->mu);
}

/* Waits (bounded) until every store of the owner is durable to its end. */
static bool wait_all_durable(struct owner *o, int timeout_s)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_s;
	pthread_mutex_lock(&o->mu);
	for (;;) {
		bool all = true;
		for (int i = 0; i < o->n && all; i++)
			all = atomic_load(&o->stores[i].durable) >= o->stores[i].last;
		if (all)
			break;
		if (pthread_cond_timedwait(&o->cv, &o->mu, &until) != 0) {
			pthread_mutex_unlock(&o->mu);
			return false;
		}
	}
	pthread_mutex_unlock(&o->mu);
	return true;
}

static void *appender(void *arg)
{
	struct owner *o = arg;
	uint64_t x = (uint64_t)(uintptr_t)o;
	for (int b = 0; b < o->batches; b++) {
		for (int i = 0; i < o->n; i++) {
			struct tstore *t = &o->stores[i];
			x = x * 6364136223846793005ull + 1442695040888963407ull;
			uint64_t n = 1 + (x >> 60) % 8;
			th_append_range(t->s, t->last + 1, t->last + n, 1, 64);
			t->last += n;
		}
	}
	o->ok = wait_all_durable(o, 60);
	for (int i = 0; i < o->n && o->ok; i++)
		th_check_range(o->stores[i].s, 1, o->stores[i].last, 1, 64);
	return NULL;
}

/* io_uring where the kernel gives a ring, as the flusher decides. */
static bool uring_works(void)
{
	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0) != 0)
		return false;
	io_uring_queue_exit(&ring);
	return true;
}

static struct sto_flusher *start_on(enum sto_sync_engine engine)
{
	struct sto_flusher *fl;
	struct sto_flusher_config fc;
	sto_flusher_config_defaults(&fc);
	fc.sync_engine = engine;
	struct dl_errctx err;
	tt_assert(sto_flusher_start(&fc, &fl, &err) == DL_OK, "%s", err.msg);
	return fl;
}

static void many_stores_on(enum sto_sync_engine engine, int nstores, int nthreads, int batches,
                           enum sto_type type, enum sto_flush_mode mode)
{
	struct sto_flusher *fl = start_on(engine);
	static struct tstore ts[256];
	static struct owner os[8];
	tt_assert(nstores <= 256 && nthreads <= 8 && nstores % nthreads == 0, "sizes");
	memset(ts, 0, sizeof(ts));
	memset(os, 0, sizeof(os));
	for (int k = 0; k < nthreads; k++) {
		pthread_mutex_init(&os[k].mu, NULL);
		pthread_cond_init(&os[k].cv, NULL);
		os[k].stores = &ts[k * (nstores / nthreads)];
		os[k].n = nstores / nthreads;
		os[k].batches = batches;
	}
	for (int i = 0; i < nstores; i++) {
		struct sto_config cfg;
		th_config(&cfg, type, th_dir);
		char group[16];
		snprintf(group, sizeof(group), "g%d", i);
		cfg.group = group;
		cfg.segment_bytes = 64 << 10;
		cfg.flush_mode = mode;
		cfg.flush_interval_ms = 1;
		cfg.on_durable = on_durable;
		cfg.on_durable_ctx = &ts[i];
		ts[i].owner = &os[i / (nstores / nthreads)];
		ts[i].s = th_open(&cfg, fl);
	}
	for (int k = 0; k < nthreads; k++)
		pthread_create(&os[k].th, NULL, appender, &os[k]);
	for (int k = 0; k < nthreads; k++) {
		pthread_join(os[k].th, NULL);
		tt_assert(os[k].ok, "thread %d: every store became durable in time", k);
	}
	struct sto_flusher_stats st;
	sto_flusher_get_stats(fl, &st);
	printf("%d stores: %" PRIu64 " passes, up to %" PRIu64 " stores in one pass, %" PRIu64
	       " fdatasync calls (%s)\n",
	       nstores, st.passes, st.max_stores_in_pass, st.file_syncs,
	       st.uring ? "io_uring" : "sync pool");
	tt_assert(st.uring == (engine == STO_SYNC_AUTO && uring_works()), "the engine asked for");
	tt_assert(st.stores == (uint64_t)nstores, "registered");
	tt_assert(st.max_stores_in_pass > 1, "passes group stores together");
	for (int i = 0; i < nstores; i++) {
		tt_assert(!atomic_load(&ts[i].went_down), "durable never goes down");
		uint64_t di, dt;
		sto_durable(ts[i].s, &di, &dt);
		tt_assert(di == ts[i].last, "store %d durable %" PRIu64, i, di);
		sto_close(ts[i].s);
	}
	sto_flusher_get_stats(fl, &st);
	tt_assert(st.stores == 0, "all left the flusher");
	sto_flusher_stop(fl);
	for (int k = 0; k < nthreads; k++) {
		pthread_mutex_destroy(&os[k].mu);
		pthread_cond_destroy(&os[k].cv);
	}
}

static void many_stores(int nstores, int nthreads, int batches, enum sto_type type,
                        enum sto_flush_mode mode)
{
	many_stores_on(STO_SYNC_AUTO, nstores, nthreads, batches, type, mode);
}

static void
two_hundred_fifty_six_stores_on_one_flush_thread_with_concurrent_appenders_all_become_durable(void)
{
	many_stores(256, 4, 30, STO_TYPE_MMAP, STO_FLUSH_SYNC);
}

static void the_pool_of_sync_threads_makes_many_stores_durable_when_asked_for(void)
{
	many_stores_on(STO_SYNC_POOL, 64, 4, 30, STO_TYPE_MMAP, STO_FLUSH_SYNC);
}

static void memory_stores_report_through_the_flush_thread_too(void)
{
	many_stores(64, 4, 20, STO_TYPE_MEMORY, STO_FLUSH_SYNC);
}

static void stores_in_async_mode_with_concurrent_appenders_report_everything(void)
{
	many_stores(16, 4, 1500, STO_TYPE_MMAP, STO_FLUSH_ASYNC);
}

static struct owner one_owner;

static struct sto *open_one(struct tstore *t, struct sto_flusher *fl, enum sto_flush_mode mode)
{
	memset(t, 0, sizeof(*t));
	memset(&one_owner, 0, sizeof(one_owner));
	pthread_mutex_init(&one_owner.mu, NULL);
	pthread_cond_init(&one_owner.cv, NULL);
	one_owner.stores = t;
	one_owner.n = 1;
	t->owner = &one_owner;
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, th_dir);
	cfg.flush_mode = mode;
	cfg.flush_interval_ms = 20;
	cfg.on_durable = on_durable;
	cfg.on_durable_ctx = t;
	t->s = th_open(&cfg, fl);
	return t->s;
}

static struct sto_flusher *start(void) { return start_on(STO_SYNC_AUTO); }

static void a_saved_state_is_reported_durable_by_the_flush_thread(void)
{
	struct sto_flusher *fl = start();
	struct tstore t;
	struct sto *s = open_one(&t, fl, STO_FLUSH_SYNC);
	struct dl_errctx err;
	tt_assert(sto_save_state(s, 3, 1, &err) == DL_OK, "%s", err.msg);
	tt_assert(sto_sync(s, &err) == DL_OK, "%s", err.msg);
	/* The state file is replaced on the flush thread, reported by its own
	 * callback, which may come a pass after the data's: wait for it. */
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		if (atomic_load(&t.state_seen))
			break;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		tt_assert(now.tv_sec - t0.tv_sec < 10, "state reported durable within 10 s");
		struct timespec nap = {0, 1000000};
		nanosleep(&nap, NULL);
	}
	sto_close(s);
	s = open_one(&t, fl, STO_FLUSH_SYNC);
	uint64_t term;
	uint32_t vote;
	sto_get_state(s, &term, &vote);
	tt_assert(term == 3 && vote == 1, "state read back");
	sto_close(s);
	sto_flusher_stop(fl);
}

static void async_mode_reports_at_once_and_syncs_within_the_interval(void)
{
	struct sto_flusher *fl = start();
	struct tstore t;
	struct sto *s = open_one(&t, fl, STO_FLUSH_ASYNC);
	th_append_range(s, 1, 50, 1, 64);
	t.last = 50;
	tt_assert(wait_all_durable(&one_owner, 10), "reported without sync()");
	/* synced within about an interval, without anyone asking */
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += 10;
	struct sto_info info;
	for (;;) {
		sto_get_info(s, &info);
		if (info.synced_index == 50)
			break;
		struct timespec now, nap = {0, 2000000};
		clock_gettime(CLOCK_MONOTONIC, &now);
		tt_assert(now.tv_sec < until.tv_sec, "synced within 10 s");
		nanosleep(&nap, NULL);
	}
	tt_assert(info.checkpoint == 0, "nothing committed, nothing checkpointed");
	sto_close(s);
	sto_flusher_stop(fl);
}

static void an_idle_flush_thread_sleeps_until_woken(void)
{
	struct sto_flusher *fl = start();
	struct tstore t;
	struct sto *s = open_one(&t, fl, STO_FLUSH_SYNC);
	th_append_range(s, 1, 10, 1, 64);
	struct dl_errctx err;
	tt_assert(sto_sync(s, &err) == DL_OK, "%s", err.msg);
	struct sto_flusher_stats a, b;
	for (int i = 0; i < 5000; i++) { /* until it went to sleep (bounded) */
		sto_flusher_get_stats(fl, &a);
		if (a.idle)
			break;
		struct timespec nap = {0, 1000000};
		nanosleep(&nap, NULL);
	}
	tt_assert(a.idle, "the flush thread went to sleep");
	struct timespec idle = {0, 100000000}; /* observe 100 ms of idleness */
	nanosleep(&idle, NULL);
	sto_flusher_get_stats(fl, &b);
	tt_assert(b.passes == a.passes, "no pass without work");
	tt_assert(b.wakeups == a.wakeups, "no polling while idle");
	tt_assert(b.idle, "still idle");
	th_append_range(s, 11, 20, 1, 64);
	tt_assert(sto_sync(s, &err) == DL_OK, "%s", err.msg);
	sto_flusher_get_stats(fl, &b);
	tt_assert(b.passes > a.passes, "woken by work");
	sto_close(s);
	sto_flusher_stop(fl);
}

static void a_truncation_lowers_the_durable_index_at_once_and_later_reports_follow_the_new_log(void)
{
	struct sto_flusher *fl = start();
	struct tstore t;
	struct sto *s = open_one(&t, fl, STO_FLUSH_SYNC);
	struct dl_errctx err;
	for (int round = 0; round < 20; round++) {
		uint64_t base = (uint64_t)round * 10;
		th_append_range(s, base + 1, base + 30, (uint64_t)round + 1, 64);
		/* truncate while the flush of those entries may be under way */
		tt_assert(sto_truncate_after(s, base + 10, &err) == DL_OK, "%s", err.msg);
		uint64_t di, dt;
		sto_durable(s, &di, &dt);
		tt_assert(di <= base + 10, "durable %" PRIu64 " after truncation", di);
	}
	th_append_range(s, 201, 210, 21, 64);
	tt_assert(sto_sync(s, &err) == DL_OK, "%s", err.msg);
	uint64_t di, dt;
	sto_durable(s, &di, &dt);
	tt_assert(di == 210 && dt == 21, "durable (%" PRIu64 ", %" PRIu64 ")", di, dt);
	sto_close(s);
	sto_flusher_stop(fl);
}

/* The sync hook: every fdatasync of a store whose group starts with
 * "bad" fails with EIO (made on the flush thread). */
static int fail_bad_syncs(void *ctx, const char *path)
{
	(void)ctx;
	return strstr(path, "/bad") != NULL ? EIO : 0;
}

/* Half the stores of each pass fail their sync: those report DL_EIO and
 * never an index durable; the others of the same passes become durable. */
static void failed_syncs_on(enum sto_sync_engine engine)
{
	struct sto_flusher *fl = start_on(engine);
	struct dl_errctx err;
	static struct sto_test_hooks hooks = {.sync = fail_bad_syncs};
	sto_test_hooks = &hooks;
	enum { N = 16 };
	static struct tstore ts[N];
	static struct owner o;
	memset(ts, 0, sizeof(ts));
	memset(&o, 0, sizeof(o));
	pthread_mutex_init(&o.mu, NULL);
	pthread_cond_init(&o.cv, NULL);
	for (int i = 0; i < N; i++) {
		struct sto_config cfg;
		th_config(&cfg, STO_TYPE_MMAP, th_dir);
		char group[16];
		snprintf(group, sizeof(group), "%s%d", i % 2 ? "bad" : "ok", i);
		cfg.group = group;
		cfg.on_durable = on_durable;
		cfg.on_durable_ctx = &ts[i];
		ts[i].owner = &o;
		ts[i].s = th_open(&cfg, fl);
	}
	/* One batch on every store, then more on the good ones (a store
	 * whose sync failed refuses appends until it is reopened). */
	for (int i = 0; i < N; i++)
		th_append_range(ts[i].s, 1, 10, 1, 64);
	for (uint64_t b = 1; b < 20; b++)
		for (int i = 0; i < N; i += 2)
			th_append_range(ts[i].s, b * 10 + 1, b * 10 + 10, 1, 64);
	for (int i = 0; i < N; i++) {
		int want = i % 2 ? DL_EIO : DL_OK;
		memset(&err, 0, sizeof(err));
		tt_assert(sto_sync(ts[i].s, &err) == want, "store %d: sync gives %s", i,
		          dl_strerror(want));
		uint64_t di, dt;
		sto_durable(ts[i].s, &di, &dt);
		tt_assert(di == (i % 2 ? 0u : 200u), "store %d durable %" PRIu64, i, di);
		/* The callback runs just after sto_sync's waiters are woken. */
		int want_err = i % 2 ? DL_EIO : DL_OK;
		for (int k = 0; k < 5000 && (atomic_load(&ts[i].durable) != di ||
		                             atomic_load(&ts[i].error) != want_err);
		     k++) {
			struct timespec nap = {0, 1000000};
			nanosleep(&nap, NULL);
		}
		tt_assert(atomic_load(&ts[i].durable) == di, "store %d: reported %" PRIu64, i,
		          atomic_load(&ts[i].durable));
		tt_assert(atomic_load(&ts[i].error) == want_err, "store %d: error reported", i);
	}
	for (int i = 0; i < N; i++)
		sto_close(ts[i].s);
	/* Only once the flush thread is joined: it reads the hook pointer
	 * on every sync (the index files' too), so clearing it earlier
	 * races with it. */
	sto_flusher_stop(fl);
	sto_test_hooks = NULL;
	pthread_mutex_destroy(&o.mu);
	pthread_cond_destroy(&o.cv);
}

static void a_failed_sync_through_io_uring_fails_its_store_alone(void)
{
	failed_syncs_on(STO_SYNC_AUTO);
}

static void a_failed_sync_on_the_pool_fails_its_store_alone(void)
{
	failed_syncs_on(STO_SYNC_POOL);
}

static void run(void (*fn)(void))
{
	th_setup();
	fn();
	th_teardown();
}

#define T(name)                                                                                    \
	static void t_##name(void)                                                                 \
	{                                                                                          \
		run(name);                                                                         \
	}
T(two_hundred_fifty_six_stores_on_one_flush_thread_with_concurrent_appenders_all_become_durable)
T(memory_stores_report_through_the_flush_thread_too)
T(stores_in_async_mode_with_concurrent_appenders_report_everything)
T(a_saved_state_is_reported_durable_by_the_flush_thread)
T(async_mode_reports_at_once_and_syncs_within_the_interval)
T(an_idle_flush_thread_sleeps_until_woken)
T(a_truncation_lowers_the_durable_index_at_once_and_later_reports_follow_the_new_log)
T(the_pool_of_sync_threads_makes_many_stores_durable_when_asked_for)
T(a_failed_sync_through_io_uring_fails_its_store_alone)
T(a_failed_sync_on_the_pool_fails_its_store_alone)

int main(void)
{
	atexit(th_teardown); /* a failed check exits: remove the directory anyway */
	static const struct tt_test tests[] = {
#define E(name) {#name, t_##name},
	        E(two_hundred_fifty_six_stores_on_one_flush_thread_with_concurrent_appenders_all_become_durable)
	                E(memory_stores_report_through_the_flush_thread_too) E(
	                        stores_in_async_mode_with_concurrent_appenders_report_everything)
	                        E(a_saved_state_is_reported_durable_by_the_flush_thread) E(
	                                async_mode_reports_at_once_and_syncs_within_the_interval)
	                                E(an_idle_flush_thread_sleeps_until_woken) E(
	                                        a_truncation_lowers_the_durable_index_at_once_and_later_reports_follow_the_new_log)
	                                                E(the_pool_of_sync_threads_makes_many_stores_durable_when_asked_for)
	                                                        E(a_failed_sync_through_io_uring_fails_its_store_alone)
	                                                                E(a_failed_sync_on_the_pool_fails_its_store_alone)
#undef E
	};
	return tt_run("storage-flush", tests, TT_COUNT(tests));
}
