/*
 * flush.c - the node's flush thread: group commit for every store.
 *
 * Threads and ownership:
 *  - Owner threads hand work over under their store's `mu` (dirty files,
 *    appended index, state request) and put the store on the flusher's
 *    queue (fl->mu) when it was not queued yet.
 *  - The flush thread owns `items`, the deferred list (async mode) and the
 *    fl_* fields of files while they are listed. One pass: snapshot every
 *    queued store (under its mu), start writeback of every range
 *    (sync_file_range), fdatasync every file, replace state files, then
 *    complete each store (under its mu) and run its callback.
 *  - Nothing in a pass holds fl->mu, so owners never wait for a sync.
 *  - The fdatasync() calls of a pass go through an io_uring that only the
 *    flush thread touches (`ring`): one submit for up to FL_URING_DEPTH
 *    files, the kernel runs them concurrently, the flush thread reaps the
 *    completions. When the kernel refuses a ring at start (seccomp, an old
 *    kernel), the calls are shared instead between the flush thread and
 *    sync_threads - 1 workers (the pool, guarded by pool_mu): they only
 *    sync. Either way everything else of the pass stays on the flush thread.
 *  - With pending work the thread loops without sleeping; idle, it waits on
 *    fl->cv (no polling), or until the earliest async deadline.
 *
 * Bounds: at most max_stores stores, so a pass has at most max_stores
 * items; a store is in at most one pass at a time (`busy`); at most
 * FL_URING_DEPTH syncs in the ring at once (a pass with more files
 * submits them in rounds).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/dl_hist.h"
#include "common/dl_log.h"
#include "common/dl_mem.h"
#include "common/dl_time.h"
#include "storage/sto_internal.h"

struct fl_item {
	struct sto *s;
	bool from_queue;        /* taken off the queue (else: an async deadline came) */
	struct sto_file *files; /* to sync in this pass */
	bool report;            /* report (index, term) after this pass */
	bool has;
	uint64_t index, term, epoch;
	bool def_sync; /* async: the deferred files are synced in this pass */
	uint64_t def_index, def_term, def_epoch;
	bool state;
	uint64_t st_term;
	uint32_t st_vote;
	bool st_voter;
	bool leaving;
	bool ckpt_ok; /* data and index synced together: the checkpoint may move */
	bool done;    /* completed */
	int err;
};

/* One fdatasync() of a pass, done by any thread of the pool. */
struct fl_job {
	struct sto_file *f;
	uint32_t item;
	int rc; /* errno of fdatasync, 0: synced */
};

#define FL_MAX_SYNC_THREADS 64
/* Syncs in the ring at once: a round of a pass. */
#define FL_URING_DEPTH 256u

struct sto_flusher {
	pthread_t thread;
	/* io_uring: set at start, then the flush thread's alone. `uring` is
	 * cleared for good if a submit fails in a way no retry fixes. */
	bool uring;
	bool ring_open; /* ring to close at stop */
	struct io_uring ring;
	struct fl_job *round[FL_URING_DEPTH]; /* a round's jobs, in submission order */
	/* The sync pool: the pass's jobs, taken in order by whoever is free. */
	pthread_t workers[FL_MAX_SYNC_THREADS];
	uint32_t nworkers;
	pthread_mutex_t pool_mu;
	pthread_cond_t pool_cv, pool_done;
	struct fl_job *jobs; /* capacity jobs_cap; flush thread only */
	size_t jobs_cap;
	size_t njobs, next, finished; /* guarded by pool_mu */
	bool pool_stop;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	/* guarded by mu */
	bool stop, sleeping;
	uint32_t max_stores, nstores;
	struct sto *qhead, *qtail;
	/* flush thread only */
	struct sto *deferred;
	struct fl_item *items;
	/* any thread */
	atomic_uint_fast64_t passes, wakeups, file_syncs, state_syncs, max_in_pass;
	struct dl_hist *sync_latency; /* set at start; may be NULL */
};

/* ---------------------------------------------------------------- pass */

/* Adds a range of f to a flusher-owned list, merging with f's range when
 * it is there already (the extra reference is dropped). */
static void add_to(struct sto_file **list, struct sto_file *f, uint64_t lo, uint64_t hi,
                   bool dirsync)
{
	if (f->fl_listed) {
		for (struct sto_file *g = *list; g != NULL; g = g->fl_next) {
			if (g != f)
				continue;
			g->fl_lo = lo < g->fl_lo ? lo : g->fl_lo;
			g->fl_hi = hi > g->fl_hi ? hi : g->fl_hi;
			g->fl_dirsync |= dirsync;
			sto_file_unref(f);
			return;
		}
		STO_ASSERT(!"file listed on another list");
	}
	f->fl_listed = true;
	f->fl_lo = lo;
	f->fl_hi = hi;
	f->fl_dirsync = dirsync;
	f->fl_next = *list;
	*list = f;
}

static bool def_due(const struct sto *s, uint64_t now_ns)
{
	if (s->deferred == NULL && !s->def_pend)
		return false;
	uint64_t interval_ns = (uint64_t)s->cfg.flush_interval_ms * 1000000u;
	return now_ns >= s->def_since_ns + interval_ns;
}

/* Takes what the store handed over. `force`: sync everything now. */
/* Under s->mu: moves the store's dirty files to where this pass wants
 * them: the async deferred list, the lazy index list (sync mode, while the
 * checkpoint is not due), or the files to sync now. */
static void take_files(struct sto *s, struct fl_item *it, bool async, bool ck_due)
{
	struct sto_file *f = s->dirty;
	s->dirty = NULL;
	while (f != NULL) {
		struct sto_file *next = f->dirty_next;
		STO_ASSERT(f->dirty);
		bool dirsync = f->dirty_dirsync;
		f->dirty = false;
		f->dirty_dirsync = false;
		f->dirty_next = NULL;
		if (async)
			add_to(&s->deferred, f, f->dirty_lo, f->dirty_hi, dirsync);
		else if (f->lazy && !ck_due)
			add_to(&s->lazy, f, f->dirty_lo, f->dirty_hi, dirsync);
		else
			add_to(&it->files, f, f->dirty_lo, f->dirty_hi, dirsync);
		f = next;
	}
}

/* DLedger's async mode: what was appended is reported at once and joins
 * the deferred list, which is synced when its interval is up (or now, when
 * forced). */
static void async_merge(struct sto *s, struct fl_item *it, uint64_t now_ns, bool force,
                        bool was_empty)
{
	if (it->has) {
		s->def_pend = true;
		s->def_index = it->index;
		s->def_term = it->term;
	}
	s->def_epoch = it->epoch; /* def_index was clamped to this epoch */
	bool nonempty = s->deferred != NULL || s->def_pend;
	if (nonempty && was_empty)
		s->def_since_ns = now_ns;
	if (!nonempty || !(force || def_due(s, now_ns)))
		return;
	it->files = s->deferred;
	s->deferred = NULL;
	it->def_sync = true;
	it->ckpt_ok = true;
	it->def_index = s->def_pend ? s->def_index : 0;
	it->def_term = s->def_pend ? s->def_term : 0;
	it->def_epoch = s->def_epoch;
	s->def_pend = false;
}

/* Takes what the store handed over. `force`: sync everything now. */
static void snapshot(struct sto *s, struct fl_item *it, uint64_t now_ns, bool force)
{
	bool from_queue = it->from_queue;
	memset(it, 0, sizeof(*it));
	it->s = s;
	pthread_mutex_lock(&s->mu);
	STO_ASSERT(!s->busy);
	s->busy = true;
	/* A store that came for its async deadline may have been queued
	 * since: it stays queued (and on the queue) for the next pass. */
	if (from_queue)
		s->queued = false;
	it->has = s->pend;
	it->index = s->pend_index;
	it->term = s->pend_term;
	it->epoch = s->epoch;
	s->pend = false;
	it->state = s->state_pend;
	it->st_term = s->state_term;
	it->st_vote = s->state_vote;
	it->st_voter = s->state_voter;
	s->state_busy = s->state_pend;
	s->state_pend = false;
	it->leaving = s->leaving;
	force = force || s->leaving || s->urgent;
	s->urgent = false;
	bool async = s->cfg.flush_mode == STO_FLUSH_ASYNC;
	bool was_empty = s->deferred == NULL && !s->def_pend;
	if (async && s->def_pend && s->floor_set && s->def_index > s->floor_index) {
		s->def_index = s->floor_index; /* a truncation since the merge */
		s->def_term = s->floor_term;
	}
	s->floor_set = false;
	/* Sync mode: index files wait for the checkpoint (rate-limited). */
	bool ck_due = force || (s->commit > s->ckpt_written &&
	                        now_ns - s->ckpt_ns >= s->cfg.checkpoint_interval_ms * 1000000ull);
	if (!async && ck_due) {
		it->files = s->lazy;
		s->lazy = NULL;
		it->ckpt_ok = true;
	}
	take_files(s, it, async, ck_due);
	pthread_mutex_unlock(&s->mu);
	it->report = it->has;
	if (async)
		async_merge(s, it, now_ns, force, was_empty);
}

static void sync_job(struct sto_flusher *fl, struct fl_job *j)
{
	uint64_t t0 = fl != NULL && fl->sync_latency ? sto_now_ns() : 0;
	j->rc = fdatasync(j->f->fd) == 0 ? 0 : errno;
	if (t0 != 0)
		dl_hist_record(fl->sync_latency, sto_now_ns() - t0);
}

static void run_job(struct sto_flusher *fl, struct fl_job *j)
{
	j->rc = sto_hook_sync(j->f->path);
	if (j->rc == 0)
		sync_job(fl, j);
}

/* Takes and runs jobs until none is left; pool_mu held on entry and exit. */
static void take_jobs(struct sto_flusher *fl)
{
	while (fl->next < fl->njobs) {
		struct fl_job *j = &fl->jobs[fl->next++];
		pthread_mutex_unlock(&fl->pool_mu);
		run_job(fl, j);
		pthread_mutex_lock(&fl->pool_mu);
		if (++fl->finished == fl->njobs)
			pthread_cond_signal(&fl->pool_done);
	}
}

static void *sync_worker_main(void *arg)
{
	struct sto_flusher *fl = arg;
	pthread_setname_np(pthread_self(), "dl-sync");
	pthread_mutex_lock(&fl->pool_mu);
	while (!fl->pool_stop) {
		if (fl->next >= fl->njobs) {
			pthread_cond_wait(&fl->pool_cv, &fl->pool_mu);
			continue;
		}
		take_jobs(fl);
	}
	pthread_mutex_unlock(&fl->pool_mu);
	return NULL;
}

/* ------------------------------------------------------------ io_uring */

static void uring_give_up(struct sto_flusher *fl, int rc)
{
	fl->uring = false;
	dl_log(DL_LOG_WARN, NULL, NULL,
	       "flush thread: io_uring failed (%s); fdatasync one file at a time from now on",
	       strerror(-rc));
}

/* Submits the round's n prepared syncs; returns how many the kernel took
 * (it takes them in order). A submit that stops early (an SQE it could not
 * start, whose error arrives as its completion) is continued. */
static unsigned uring_submit(struct sto_flusher *fl, unsigned n)
{
	unsigned taken = 0;
	for (unsigned tries = 0; taken < n && tries < 2 * FL_URING_DEPTH; tries++) {
		int r = io_uring_submit(&fl->ring);
		if (r > 0) {
			taken += (unsigned)r;
		} else if (r != -EINTR && r != -EAGAIN && r != -EBUSY) {
			uring_give_up(fl, r == 0 ? -EIO : r);
			break;
		}
	}
	if (taken < n && fl->uring)
		uring_give_up(fl, -EAGAIN);
	DL_ASSERT(taken <= n);
	return taken;
}

/* Reaps `n` completions: each job gets its sync's result. A completion
 * that cannot be waited for (never seen here) counts as a failed sync:
 * nothing is reported durable without its fdatasync having succeeded. */
static void uring_reap(struct sto_flusher *fl, unsigned n, uint64_t t0)
{
	unsigned seen = 0, tries = 0;
	while (seen < n) {
		struct io_uring_cqe *cqe;
		int r = io_uring_wait_cqe(&fl->ring, &cqe);
		if (r != 0) {
			if (r == -EINTR || ++tries < 1000)
				continue;
			/* Completions may still come: the ring is not reused. */
			uring_give_up(fl, r);
			break;
		}
		/* All that completed meanwhile, with one clock read. */
		uint64_t now = fl->sync_latency != NULL ? sto_now_ns() : 0;
		do {
			struct fl_job *j = io_uring_cqe_get_data(cqe);
			DL_ASSERT(j != NULL && j->rc == -1);
			j->rc = cqe->res < 0 ? -cqe->res : 0;
			if (now != 0)
				dl_hist_record(fl->sync_latency, now - t0);
			io_uring_cqe_seen(&fl->ring, cqe);
			seen++;
		} while (seen < n && io_uring_peek_cqe(&fl->ring, &cqe) == 0);
	}
	for (unsigned i = 0; i < n; i++)
		if (fl->round[i]->rc == -1)
			fl->round[i]->rc = EIO; /* never completed here: not durable */
}

/* One round: up to FL_URING_DEPTH syncs of jobs[*next..n) in one submit,
 * all reaped before it returns. Jobs the test hook fails are not
 * submitted; jobs the kernel did not take are synced here one by one. */
static void uring_round(struct sto_flusher *fl, struct fl_job *jobs, size_t n, size_t *next)
{
	unsigned k = 0;
	uint64_t t0 = sto_now_ns();
	for (; *next < n && k < FL_URING_DEPTH; (*next)++) {
		struct fl_job *j = &jobs[*next];
		j->rc = sto_hook_sync(j->f->path);
		if (j->rc != 0)
			continue;
		struct io_uring_sqe *sqe = io_uring_get_sqe(&fl->ring);
		DL_ASSERT(sqe != NULL); /* at most FL_URING_DEPTH, all reaped */
		io_uring_prep_fsync(sqe, j->f->fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_data(sqe, j);
		j->rc = -1; /* in the ring */
		fl->round[k++] = j;
	}
	unsigned taken = k > 0 ? uring_submit(fl, k) : 0;
	uring_reap(fl, taken, t0);
	for (unsigned i = taken; i < k; i++)
		sync_job(fl, fl->round[i]);
}

/* ---------------------------------------------------------------- pool */

/* Runs jobs[0..n) through the ring, or on the pool (the calling flush
 * thread takes its share), and returns once all are done. */
static void run_jobs(struct sto_flusher *fl, struct fl_job *jobs, size_t n)
{
	if (fl != NULL && fl->uring && n >= 2) {
		for (size_t next = 0; next < n;)
			uring_round(fl, jobs, n, &next);
		return;
	}
	if (fl == NULL || fl->nworkers == 0 || n < 2) {
		for (size_t i = 0; i < n; i++)
			run_job(fl, &jobs[i]);
		return;
	}
	pthread_mutex_lock(&fl->pool_mu);
	fl->njobs = n;
	fl->next = 0;
	fl->finished = 0;
	pthread_cond_broadcast(&fl->pool_cv);
	take_jobs(fl);
	while (fl->finished < fl->njobs)
		pthread_cond_wait(&fl->pool_done, &fl->pool_mu);
	fl->njobs = fl->next = fl->finished = 0;
	pthread_mutex_unlock(&fl->pool_mu);
}

static bool jobs_reserve(struct sto_flusher *fl, size_t n)
{
	if (n <= fl->jobs_cap)
		return true;
	struct fl_job *j = dl_grow(fl->jobs, &fl->jobs_cap, n, sizeof(*j));
	if (j == NULL)
		return false;
	fl->jobs = j;
	return true;
}

static void sync_files(struct fl_item *items, size_t n, struct sto_flusher *fl)
{
	/* Start writeback of every range of every store first, so the disk
	 * sees one stream of writes; then fdatasync every file, on the pool. */
	size_t nfiles = 0;
	for (size_t i = 0; i < n; i++)
		for (struct sto_file *f = items[i].files; f != NULL; f = f->fl_next) {
			nfiles++;
			if (f->fl_hi <= f->fl_lo)
				continue;
			(void)sync_file_range(f->fd, (off_t)f->fl_lo, (off_t)(f->fl_hi - f->fl_lo),
			                      SYNC_FILE_RANGE_WRITE);
		}
	struct fl_job one[1];
	struct fl_job *jobs = one;
	if (nfiles > 1 && fl != NULL && jobs_reserve(fl, nfiles))
		jobs = fl->jobs;
	else if (nfiles > 1)
		jobs = NULL; /* no room for the list: sync one by one below */
	size_t k = 0;
	for (size_t i = 0; i < n && jobs != NULL; i++)
		for (struct sto_file *f = items[i].files; f != NULL; f = f->fl_next)
			jobs[k++] = (struct fl_job){.f = f, .item = (uint32_t)i};
	if (jobs != NULL)
		run_jobs(fl, jobs, k);
	/* Results, directory syncs and the hooks, in order, on this thread. */
	k = 0;
	for (size_t i = 0; i < n; i++) {
		struct sto_file *f = items[i].files;
		items[i].files = NULL;
		while (f != NULL) {
			struct sto_file *next = f->fl_next;
			int rc;
			if (jobs != NULL) {
				rc = jobs[k++].rc;
			} else {
				struct fl_job j = {.f = f};
				run_job(fl, &j);
				rc = j.rc;
			}
			if (rc != 0) {
				items[i].err = DL_EIO;
			} else if (items[i].err == DL_OK) {
				sto_hook_file_synced(f->path, f->fl_lo, f->fl_hi);
			}
			if (fl != NULL)
				atomic_fetch_add_explicit(&fl->file_syncs, 1, memory_order_relaxed);
			if (items[i].err == DL_OK && f->fl_dirsync &&
			    sto_fsync_parent(f->path) != 0)
				items[i].err = DL_EIO;
			f->fl_listed = false;
			f->fl_next = NULL;
			sto_file_unref(f);
			f = next;
		}
	}
}

/* The index a sync covers, less whatever a truncation since the snapshot
 * removed (the floor: lowest truncation point since then). */
static void clamp(const struct sto *s, uint64_t epoch, uint64_t *index, uint64_t *term)
{
	if (s->epoch == epoch)
		return;
	STO_ASSERT(s->floor_set);
	if (*index > s->floor_index) {
		*index = s->floor_index;
		*term = s->floor_term;
	}
}

static void complete(struct fl_item *it)
{
	struct sto *s = it->s;
	STO_ASSERT(!it->done);
	it->done = true;
	struct sto_durable d;
	memset(&d, 0, sizeof(d));
	bool async = s->cfg.flush_mode == STO_FLUSH_ASYNC;
	pthread_mutex_lock(&s->mu);
	if (it->err != DL_OK && s->io_err == DL_OK)
		s->io_err = it->err;
	bool report = it->err != DL_OK || it->state;
	if (s->io_err == DL_OK) {
		uint64_t idx = it->index, term = it->term;
		clamp(s, it->epoch, &idx, &term);
		if (it->report && idx > s->durable_index) {
			s->durable_index = idx;
			s->durable_term = term;
			report = true;
		}
		if (!async && it->has && idx > s->synced_index) {
			s->synced_index = idx;
			s->synced_term = term;
		}
		if (it->def_sync) {
			idx = it->def_index;
			term = it->def_term;
			clamp(s, it->def_epoch, &idx, &term);
			if (idx > s->synced_index) {
				s->synced_index = idx;
				s->synced_term = term;
			}
		}
	}
	s->busy = false;
	s->state_busy = false;
	uint64_t ck = s->commit < s->synced_index ? s->commit : s->synced_index;
	bool write_ck = it->ckpt_ok && ck > s->ckpt_written && s->io_err == DL_OK;
	if (write_ck)
		s->ckpt_written = ck;
	d.index = s->durable_index;
	d.term = s->durable_term;
	d.error = s->io_err;
	if (it->state && it->err == DL_OK) {
		d.state_durable = true;
		d.state_term = it->st_term;
		d.state_vote = it->st_vote;
	}
	if (s->sync_waiters > 0)
		pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
	if (write_ck) {
		s->ckpt_ns = sto_now_ns();
		s->impl->write_checkpoint(s, ck);
	}
	if (report && s->cfg.on_durable != NULL)
		s->cfg.on_durable(s->cfg.on_durable_ctx, &d);
}

/* An item with nothing to sync and no state to write: an async-mode report
 * (or a checkpoint-only visit), which need not wait for other stores'
 * syncs. */
static bool nothing_to_wait_for(const struct fl_item *it)
{
	return it->files == NULL && !it->state;
}

static void run_pass(struct sto_flusher *fl, struct fl_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (nothing_to_wait_for(&items[i]))
			complete(&items[i]);
	sync_files(items, n, fl);
	for (size_t i = 0; i < n; i++) {
		struct fl_item *it = &items[i];
		if (!it->state || it->err != DL_OK)
			continue;
		if (it->s->impl->persist_state(it->s, it->st_term, it->st_vote, it->st_voter) != 0)
			it->err = DL_EIO;
		if (fl != NULL)
			atomic_fetch_add_explicit(&fl->state_syncs, 1, memory_order_relaxed);
	}
	for (size_t i = 0; i < n; i++)
		if (!items[i].done)
			complete(&items[i]);
}

/* A store without a flusher: the owner thread runs a pass for it alone. */
void sto_flush_pass_inline(struct sto *s)
{
	STO_ASSERT(s->fl == NULL);
	struct fl_item it = {.from_queue = true};
	snapshot(s, &it, sto_now_ns(), true);
	run_pass(NULL, &it, 1);
}

/* ---------------------------------------------------------- the thread */

static void deferred_remove(struct sto_flusher *fl, struct sto *s)
{
	if (!s->def_listed)
		return;
	for (struct sto **pp = &fl->deferred; *pp != NULL; pp = &(*pp)->def_next) {
		if (*pp == s) {
			*pp = s->def_next;
			s->def_next = NULL;
			s->def_listed = false;
			return;
		}
	}
	STO_ASSERT(!"listed store not on the deferred list");
}

/* After a pass: keep the deferred list to stores with unsynced data, and
 * let leaving stores go (after which they are not touched again). */
static void after_pass(struct sto_flusher *fl, struct fl_item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct sto *s = items[i].s;
		s->in_pass = false;
		bool has_def = s->deferred != NULL || s->def_pend;
		if (items[i].leaving) {
			STO_ASSERT(!has_def);
			deferred_remove(fl, s);
			pthread_mutex_lock(&s->mu);
			s->registered = false;
			pthread_cond_broadcast(&s->cv);
			pthread_mutex_unlock(&s->mu);
			continue;
		}
		if (has_def && !s->def_listed) {
			s->def_listed = true;
			s->def_next = fl->deferred;
			fl->deferred = s;
		} else if (!has_def) {
			deferred_remove(fl, s);
		}
	}
}

/* Earliest async deadline, or 0 when nothing is deferred. */
static uint64_t next_deadline(const struct sto_flusher *fl)
{
	uint64_t best = 0;
	for (const struct sto *s = fl->deferred; s != NULL; s = s->def_next) {
		uint64_t d = s->def_since_ns + (uint64_t)s->cfg.flush_interval_ms * 1000000u;
		if (best == 0 || d < best)
			best = d;
	}
	return best;
}

static size_t collect(struct sto_flusher *fl, uint64_t now_ns)
{
	size_t n = 0;
	while (fl->qhead != NULL && n < fl->max_stores) {
		struct sto *s = fl->qhead;
		fl->qhead = s->fl_next;
		if (fl->qhead == NULL)
			fl->qtail = NULL;
		s->fl_next = NULL;
		STO_ASSERT(!s->in_pass);
		s->in_pass = true;
		fl->items[n].from_queue = true;
		fl->items[n++].s = s;
	}
	for (struct sto *s = fl->deferred; s != NULL && n < fl->max_stores; s = s->def_next) {
		if (!s->in_pass && def_due(s, now_ns)) {
			s->in_pass = true;
			fl->items[n].from_queue = false;
			fl->items[n++].s = s;
		}
	}
	return n;
}

static void wait_for_work(struct sto_flusher *fl)
{
	uint64_t deadline = next_deadline(fl);
	fl->sleeping = true;
	if (deadline == 0) {
		pthread_cond_wait(&fl->cv, &fl->mu);
	} else {
		if (deadline > dl_now_ns()) {
			struct timespec ts = dl_timespec_at(deadline);
			pthread_cond_timedwait(&fl->cv, &fl->mu, &ts);
		}
	}
	fl->sleeping = false;
	atomic_fetch_add_explicit(&fl->wakeups, 1, memory_order_relaxed);
}

static void *flusher_main(void *arg)
{
	pthread_setname_np(pthread_self(), "dl-flush");
	struct sto_flusher *fl = arg;
	pthread_mutex_lock(&fl->mu);
	for (;;) {
		uint64_t now = sto_now_ns();
		size_t n = collect(fl, now);
		if (n == 0) {
			if (fl->stop)
				break;
			wait_for_work(fl);
			continue;
		}
		pthread_mutex_unlock(&fl->mu);
		atomic_fetch_add_explicit(&fl->passes, 1, memory_order_relaxed);
		for (size_t i = 0; i < n; i++) {
			struct sto *s = fl->items[i].s;
			snapshot(s, &fl->items[i], now, false);
		}
		run_pass(fl, fl->items, n);
		after_pass(fl, fl->items, n);
		if (n > atomic_load_explicit(&fl->max_in_pass, memory_order_relaxed))
			atomic_store_explicit(&fl->max_in_pass, n, memory_order_relaxed);
		pthread_mutex_lock(&fl->mu);
	}
	pthread_mutex_unlock(&fl->mu);
	return NULL;
}

void sto_flusher_enqueue(struct sto_flusher *fl, struct sto *s)
{
	pthread_mutex_lock(&fl->mu);
	STO_ASSERT(s->fl_next == NULL && fl->qtail != s);
	if (fl->qtail != NULL)
		fl->qtail->fl_next = s;
	else
		fl->qhead = s;
	fl->qtail = s;
	if (fl->sleeping)
		pthread_cond_signal(&fl->cv);
	pthread_mutex_unlock(&fl->mu);
}

int sto_flusher_register(struct sto_flusher *fl, struct dl_errctx *err)
{
	int rc = DL_OK;
	pthread_mutex_lock(&fl->mu);
	if (fl->stop)
		rc = dl_errf(err, DL_ECLOSED, "flusher is stopping");
	else if (fl->nstores >= fl->max_stores)
		rc = dl_errf(err, DL_EBUSY, "flusher serves its maximum of %u stores",
		             fl->max_stores);
	else
		fl->nstores++;
	pthread_mutex_unlock(&fl->mu);
	return rc;
}

void sto_flusher_unregister(struct sto_flusher *fl)
{
	pthread_mutex_lock(&fl->mu);
	STO_ASSERT(fl->nstores > 0);
	fl->nstores--;
	pthread_mutex_unlock(&fl->mu);
}

void sto_flusher_config_defaults(struct sto_flusher_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->max_stores = 4096;
	cfg->sync_threads = 8;
}

/* Picks the engine: io_uring unless the config asks for the pool or the
 * kernel refuses a ring. Said once per process (every node has one
 * flusher; tests start many). */
static void uring_start(struct sto_flusher *fl, enum sto_sync_engine engine)
{
	static atomic_bool said;
	int r = engine == STO_SYNC_POOL ? 0 : io_uring_queue_init(FL_URING_DEPTH, &fl->ring, 0);
	fl->uring = engine != STO_SYNC_POOL && r == 0;
	fl->ring_open = fl->uring;
	if (engine == STO_SYNC_POOL || atomic_exchange_explicit(&said, true, memory_order_relaxed))
		return;
	if (fl->uring)
		dl_log(DL_LOG_INFO, NULL, NULL, "flush thread: fdatasync through io_uring, up to %u at once",
		       FL_URING_DEPTH);
	else
		dl_log(DL_LOG_WARN, NULL, NULL,
		       "flush thread: no io_uring (%s): fdatasync on a pool of sync threads",
		       strerror(-r));
}

static void pool_stop(struct sto_flusher *fl)
{
	pthread_mutex_lock(&fl->pool_mu);
	fl->pool_stop = true;
	pthread_cond_broadcast(&fl->pool_cv);
	pthread_mutex_unlock(&fl->pool_mu);
	for (uint32_t i = 0; i < fl->nworkers; i++)
		pthread_join(fl->workers[i], NULL);
	fl->nworkers = 0;
}

/* Stops the pool, closes the ring, frees: once the flush thread is gone
 * (or was never started). */
static void flusher_free(struct sto_flusher *fl)
{
	pool_stop(fl);
	if (fl->ring_open)
		io_uring_queue_exit(&fl->ring);
	pthread_cond_destroy(&fl->pool_cv);
	pthread_cond_destroy(&fl->pool_done);
	pthread_mutex_destroy(&fl->pool_mu);
	pthread_cond_destroy(&fl->cv);
	pthread_mutex_destroy(&fl->mu);
	free(fl->jobs);
	free(fl->items);
	free(fl);
}

int sto_flusher_start(const struct sto_flusher_config *cfg, struct sto_flusher **out,
                      struct dl_errctx *err)
{
	*out = NULL;
	if (cfg->max_stores == 0 || cfg->max_stores > (1u << 20))
		return dl_errf(err, DL_EINVAL, "max_stores %u not in 1..%u", cfg->max_stores,
		               1u << 20);
	if (cfg->sync_engine != STO_SYNC_AUTO && cfg->sync_engine != STO_SYNC_POOL)
		return dl_errf(err, DL_EINVAL, "sync_engine %d unknown", (int)cfg->sync_engine);
	if (cfg->sync_threads == 0 || cfg->sync_threads > FL_MAX_SYNC_THREADS)
		return dl_errf(err, DL_EINVAL, "sync_threads %u not in 1..%u", cfg->sync_threads,
		               FL_MAX_SYNC_THREADS);
	struct sto_flusher *fl = calloc(1, sizeof(*fl));
	if (fl == NULL)
		return dl_errf(err, DL_ENOMEM, "flusher");
	fl->max_stores = cfg->max_stores;
	fl->sync_latency = cfg->sync_latency;
	fl->items = calloc(cfg->max_stores, sizeof(*fl->items));
	if (fl->items == NULL) {
		free(fl);
		return dl_errf(err, DL_ENOMEM, "flusher items");
	}
	dl_cond_init_monotonic(&fl->cv);
	pthread_mutex_init(&fl->mu, NULL);
	pthread_mutex_init(&fl->pool_mu, NULL);
	pthread_cond_init(&fl->pool_cv, NULL);
	pthread_cond_init(&fl->pool_done, NULL);
	uring_start(fl, cfg->sync_engine);
	int e = 0;
	for (uint32_t i = 0; !fl->uring && i + 1 < cfg->sync_threads && e == 0; i++) {
		e = pthread_create(&fl->workers[i], NULL, sync_worker_main, fl);
		if (e == 0)
			fl->nworkers++;
	}
	if (e == 0)
		e = pthread_create(&fl->thread, NULL, flusher_main, fl);
	if (e != 0) {
		flusher_free(fl);
		return dl_errf(err, DL_EIO, "pthread_create: %s", strerror(e));
	}
	*out = fl;
	return DL_OK;
}

void sto_flusher_stop(struct sto_flusher *fl)
{
	if (fl == NULL)
		return;
	pthread_mutex_lock(&fl->mu);
	STO_ASSERT(fl->nstores == 0); /* close every store first */
	fl->stop = true;
	pthread_cond_signal(&fl->cv);
	pthread_mutex_unlock(&fl->mu);
	pthread_join(fl->thread, NULL);
	STO_ASSERT(fl->qhead == NULL && fl->deferred == NULL);
	flusher_free(fl);
}

void sto_flusher_get_stats(const struct sto_flusher *fl, struct sto_flusher_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->passes = atomic_load_explicit(&fl->passes, memory_order_relaxed);
	st->wakeups = atomic_load_explicit(&fl->wakeups, memory_order_relaxed);
	st->file_syncs = atomic_load_explicit(&fl->file_syncs, memory_order_relaxed);
	st->state_syncs = atomic_load_explicit(&fl->state_syncs, memory_order_relaxed);
	st->max_stores_in_pass = atomic_load_explicit(&fl->max_in_pass, memory_order_relaxed);
	st->uring = fl->ring_open;
	pthread_mutex_lock((pthread_mutex_t *)&fl->mu);
	st->stores = fl->nstores;
	st->idle = fl->sleeping && fl->qhead == NULL;
	pthread_mutex_unlock((pthread_mutex_t *)&fl->mu);
}
