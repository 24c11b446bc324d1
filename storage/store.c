/*
 * store.c - what both store implementations share: the config, the calls
 * through the ops table, and the hand-over to the flush thread. It knows
 * neither implementation: sto_open() (open.c) picks one.
 *
 * Threads: the owner thread calls everything here except sto_durable()
 * (any thread). The hand-over block of struct sto is
 * guarded by s->mu (see sto_internal.h); the flush thread takes it in
 * flush.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/statvfs.h>
#include <time.h>

#include "common/dl_time.h"
#include "storage/sto_internal.h"

void sto_config_defaults(struct sto_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->type = STO_TYPE_MMAP;
	cfg->segment_bytes = 1ull << 30;               /* DLedger: 1 GiB */
	cfg->index_segment_bytes = 32ull * 5000000ull; /* DLedger: 5M records */
	cfg->max_entry_bytes = 4u << 20;
	cfg->prealloc_max_bytes = 4u << 20;
	cfg->flush_mode = STO_FLUSH_SYNC;
	cfg->flush_interval_ms = 10;
	cfg->verify = STO_VERIFY_TAIL;
	cfg->checkpoint_interval_ms = 1000;
	cfg->file_reserved_hours = 72;
	cfg->enable_disk_force_clean = true;
	cfg->disk_space_ratio_to_force_clean = 0.85;
	cfg->disk_full_ratio = 0.90;
	cfg->disk_check_interval_ms = 1000;
	cfg->memory_max_bytes = 1ull << 30;
}

static bool name_ok(const char *name)
{
	if (name == NULL || name[0] == '\0' || strlen(name) > STO_NAME_MAX)
		return false;
	if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return false;
	return strchr(name, '/') == NULL;
}

static int check_config(const struct sto_config *c, struct dl_errctx *err)
{
	if (c->type != STO_TYPE_MMAP && c->type != STO_TYPE_MEMORY)
		return dl_errf(err, DL_ECONFIG, "storeType %d unknown", (int)c->type);
	if (!name_ok(c->group))
		return dl_errf(err, DL_ECONFIG, "group: 1..%u bytes, no '/'", STO_NAME_MAX);
	if (!name_ok(c->self_id))
		return dl_errf(err, DL_ECONFIG, "selfId: 1..%u bytes, no '/'", STO_NAME_MAX);
	if (c->type == STO_TYPE_MMAP && (c->base_dir == NULL || c->base_dir[0] == '\0'))
		return dl_errf(err, DL_ECONFIG, "storeBaseDir is empty");
	if (c->base_dir != NULL) {
		size_t len = strlen(c->base_dir) + strlen(c->group) + strlen(c->self_id) + 2;
		if (len > STO_DIR_MAX)
			return dl_errf(err, DL_ECONFIG,
			               "storeBaseDir: the member's directory would be %zu bytes long, "
			               "at most %u (%.80s...)",
			               len, STO_DIR_MAX, c->base_dir);
	}
	if (c->segment_bytes < 4096 || c->segment_bytes % 4096 != 0 ||
	    c->segment_bytes > (1ull << 40))
		return dl_errf(
		        err, DL_ECONFIG,
		        "mappedFileSizeForEntryData %llu: a multiple of 4096 in 4 KiB..1 TiB",
		        (unsigned long long)c->segment_bytes);
	if (c->index_segment_bytes < 4096 || c->index_segment_bytes % STO_IDX_BYTES != 0 ||
	    c->index_segment_bytes > (1ull << 40))
		return dl_errf(err, DL_ECONFIG,
		               "mappedFileSizeForEntryIndex %llu: a multiple of 32, at least 4096",
		               (unsigned long long)c->index_segment_bytes);
	if (c->max_entry_bytes == 0)
		return dl_errf(err, DL_ECONFIG, "max_entry_bytes is 0");
	if (c->checkpoint_interval_ms > 3600000)
		return dl_errf(err, DL_ECONFIG, "checkpoint_interval_ms %u over an hour",
		               c->checkpoint_interval_ms);
	if (c->verify != STO_VERIFY_TAIL && c->verify != STO_VERIFY_ALL)
		return dl_errf(err, DL_ECONFIG, "verify mode %d unknown", (int)c->verify);
	if (c->flush_mode != STO_FLUSH_SYNC && c->flush_mode != STO_FLUSH_ASYNC)
		return dl_errf(err, DL_ECONFIG, "flushMode %d unknown", (int)c->flush_mode);
	if (c->flush_mode == STO_FLUSH_ASYNC &&
	    (c->flush_interval_ms == 0 || c->flush_interval_ms > 3600000))
		return dl_errf(err, DL_ECONFIG, "flushFileIntervalMs %u not in 1..3600000",
		               c->flush_interval_ms);
	if (!(c->disk_full_ratio > 0 && c->disk_full_ratio <= 1) ||
	    !(c->disk_space_ratio_to_force_clean > 0 && c->disk_space_ratio_to_force_clean <= 1))
		return dl_errf(err, DL_ECONFIG, "disk ratios must be in (0, 1]");
	return DL_OK;
}

int sto_common_init(struct sto *s, const struct sto_ops *ops, const struct sto_impl *impl,
                    const struct sto_config *cfg, struct dl_errctx *err)
{
	int rc = check_config(cfg, err);
	if (rc != DL_OK)
		return rc;
	s->ops = ops;
	s->impl = impl;
	s->cfg = *cfg;
	memcpy(s->group, cfg->group, strlen(cfg->group) + 1);
	memcpy(s->self_id, cfg->self_id, strlen(cfg->self_id) + 1);
	s->cfg.group = s->group;
	s->cfg.self_id = s->self_id;
	s->cfg.base_dir = NULL;
	if (cfg->base_dir != NULL) {
		size_t n = strlen(cfg->base_dir);
		size_t dn = n + 2 * STO_NAME_MAX + 3;
		s->base_dir = malloc(n + 1);
		s->dir = malloc(dn);
		if (s->base_dir == NULL || s->dir == NULL)
			return dl_errf(err, DL_ENOMEM, "store paths");
		memcpy(s->base_dir, cfg->base_dir, n + 1);
		snprintf(s->dir, dn, "%s/%s/%s", cfg->base_dir, s->group, s->self_id);
		s->cfg.base_dir = s->base_dir;
	}
	pthread_mutex_init(&s->mu, NULL);
	dl_cond_init_monotonic(&s->cv);
	return DL_OK;
}

void sto_common_fini(struct sto *s)
{
	STO_ASSERT(s->dirty == NULL && !s->busy && !s->registered);
	STO_ASSERT(s->deferred == NULL && s->lazy == NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->base_dir);
	free(s->dir);
}

void sto_common_drop_dirty(struct sto *s)
{
	STO_ASSERT(!s->registered && !s->busy);
	pthread_mutex_lock(&s->mu);
	struct sto_file *f = s->dirty;
	s->dirty = NULL;
	pthread_mutex_unlock(&s->mu);
	while (f != NULL) {
		struct sto_file *next = f->dirty_next;
		STO_ASSERT(f->dirty);
		f->dirty = false;
		f->dirty_next = NULL;
		sto_file_unref(f); /* the reference the dirty range held */
		f = next;
	}
}

int sto_attach(struct sto *s, struct sto_flusher *fl, struct dl_errctx *err)
{
	if (fl == NULL)
		return DL_OK;
	int rc = sto_flusher_register(fl, err);
	if (rc != DL_OK)
		return rc;
	s->fl = fl;
	s->registered = true;
	return DL_OK;
}

void sto_detach(struct sto *s)
{
	if (s->fl == NULL) {
		sto_flush_pass_inline(s);
		return;
	}
	pthread_mutex_lock(&s->mu);
	s->leaving = true;
	bool need = !s->queued;
	s->queued = true;
	pthread_mutex_unlock(&s->mu);
	if (need)
		sto_flusher_enqueue(s->fl, s);
	pthread_mutex_lock(&s->mu);
	while (s->registered)
		pthread_cond_wait(&s->cv, &s->mu);
	pthread_mutex_unlock(&s->mu);
	sto_flusher_unregister(s->fl);
	s->fl = NULL;
}

void sto_lock(struct sto *s)
{
	pthread_mutex_lock(&s->mu);
}

void sto_mark_dirty_locked(struct sto *s, struct sto_file *f, uint64_t lo, uint64_t hi,
                           bool dirsync)
{
	STO_ASSERT(lo <= hi);
	if (!f->dirty) {
		sto_file_ref(f);
		f->dirty = true;
		f->dirty_lo = lo;
		f->dirty_hi = hi;
		f->dirty_dirsync = dirsync;
		f->dirty_next = s->dirty;
		s->dirty = f;
		return;
	}
	f->dirty_lo = lo < f->dirty_lo ? lo : f->dirty_lo;
	f->dirty_hi = hi > f->dirty_hi ? hi : f->dirty_hi;
	f->dirty_dirsync |= dirsync;
}

void sto_publish_and_unlock(struct sto *s, bool has_entries, uint64_t index, uint64_t term)
{
	if (has_entries) {
		STO_ASSERT(!s->pend || index >= s->pend_index);
		s->pend = true;
		s->pend_index = index;
		s->pend_term = term;
	}
	bool work = s->dirty != NULL || s->pend || s->state_pend;
	bool need = s->fl != NULL && work && !s->queued;
	if (need)
		s->queued = true;
	pthread_mutex_unlock(&s->mu);
	if (need)
		sto_flusher_enqueue(s->fl, s);
}

/* Entries after `index` are gone: nothing above it may be reported
 * durable, now or by a sync already under way (flush.c clamps those to the
 * floor, the lowest truncation point since their snapshot). */
void sto_note_truncate(struct sto *s, uint64_t index, uint64_t term)
{
	s->epoch++;
	if (s->durable_index > index) {
		s->durable_index = index;
		s->durable_term = term;
	}
	if (s->synced_index > index) {
		s->synced_index = index;
		s->synced_term = term;
	}
	if (s->pend && s->pend_index > index) {
		s->pend_index = index;
		s->pend_term = term;
	}
	if (!s->floor_set || index < s->floor_index) {
		s->floor_set = true;
		s->floor_index = index;
		s->floor_term = term;
	}
	STO_ASSERT(s->commit <= index);
}

void sto_set_recovered(struct sto *s, uint64_t index, uint64_t term, uint64_t commit)
{
	STO_ASSERT(commit <= index);
	s->synced_index = s->durable_index = index;
	s->synced_term = s->durable_term = term;
	s->commit = commit;
	s->ckpt_written = commit;
	s->recovered_commit = commit;
}

void sto_common_durable(const struct sto *s, uint64_t *index, uint64_t *term)
{
	struct sto *m = (struct sto *)s; /* the mutex, not the data */
	pthread_mutex_lock(&m->mu);
	*index = s->durable_index;
	*term = s->durable_term;
	pthread_mutex_unlock(&m->mu);
}

void sto_common_set_commit(struct sto *s, uint64_t commit)
{
	pthread_mutex_lock(&s->mu);
	if (commit > s->commit)
		s->commit = commit;
	uint64_t ck = s->commit < s->synced_index ? s->commit : s->synced_index;
	/* Queue the store so the checkpoint moves even without appends. */
	bool need = s->fl != NULL && ck > s->ckpt_written && !s->queued && !s->busy;
	if (need)
		s->queued = true;
	pthread_mutex_unlock(&s->mu);
	if (need)
		sto_flusher_enqueue(s->fl, s);
}

int sto_common_save_state(struct sto *s, uint64_t term, uint32_t vote, struct dl_errctx *err)
{
	if (term < s->st_term)
		return dl_errf(err, DL_EINVAL, "term goes down: %llu after %llu",
		               (unsigned long long)term, (unsigned long long)s->st_term);
	s->st_term = term;
	s->st_vote = vote;
	sto_lock(s); /* released by sto_publish_and_unlock() below */
	s->state_pend = true;
	s->state_term = term;
	s->state_vote = vote;
	s->state_voter = s->st_voter;
	sto_publish_and_unlock(s, false, 0, 0);
	if (s->fl == NULL) {
		sto_flush_pass_inline(s);
		int rc = sto_common_io_err(s);
		if (rc != DL_OK)
			return dl_errf(err, rc, "state file of %s: sync failed", s->dir);
	}
	return DL_OK;
}

void sto_common_get_state(const struct sto *s, uint64_t *term, uint32_t *vote)
{
	*term = s->st_term;
	*vote = s->st_vote;
}

uint64_t sto_common_recovered_commit(const struct sto *s)
{
	return s->recovered_commit;
}

int sto_check_batch(struct sto *s, uint64_t last, uint64_t last_term, uint64_t first_index,
                    const struct sto_entry *e, uint32_t n, uint32_t max_body, struct dl_errctx *err)
{
	if (n == 0 || n > STO_MAX_BATCH || e == NULL)
		return dl_errf(err, DL_EINVAL, "batch of %u entries (1..%u)", n, STO_MAX_BATCH);
	if (first_index != last + 1)
		return dl_errf(err, DL_EINVAL, "append at %llu, expected %llu",
		               (unsigned long long)first_index, (unsigned long long)last + 1);
	if (last > STO_MAX_INDEX - n)
		return dl_errf(err, DL_ERANGE, "the log would pass index %llu, its largest",
		               (unsigned long long)STO_MAX_INDEX);
	uint64_t term = last_term;
	for (uint32_t i = 0; i < n; i++) {
		if (e[i].len > max_body) {
			atomic_fetch_add_explicit(&s->n_toobig, 1, memory_order_relaxed);
			return dl_errf(err, DL_ETOOBIG, "entry of %u bytes, the maximum is %u",
			               e[i].len, max_body);
		}
		if (e[i].len > 0 && e[i].data == NULL)
			return dl_errf(err, DL_EINVAL, "entry %u has no data", i);
		if (e[i].term < term)
			return dl_errf(err, DL_EINVAL, "term goes down: %llu after %llu",
			               (unsigned long long)e[i].term, (unsigned long long)term);
		term = e[i].term;
	}
	return DL_OK;
}

int sto_check_truncate(const struct sto *s, uint64_t index, uint64_t first, struct dl_errctx *err)
{
	if (index + 1 < first || (index + 1 == first && first > 1))
		return dl_errf(err, DL_ECOMPACTED,
		               "truncating after %llu would empty a log that starts at %llu",
		               (unsigned long long)index, (unsigned long long)first);
	if (index < s->commit)
		return dl_errf(err, DL_EINVAL,
		               "truncating after %llu would remove committed entries (commit %llu)",
		               (unsigned long long)index, (unsigned long long)s->commit);
	return DL_OK;
}

int sto_common_io_err(struct sto *s)
{
	pthread_mutex_lock(&s->mu);
	int rc = s->io_err;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void sto_common_set_io_err(struct sto *s, int rc)
{
	STO_ASSERT(rc != DL_OK);
	pthread_mutex_lock(&s->mu);
	if (s->io_err == DL_OK)
		s->io_err = rc;
	pthread_mutex_unlock(&s->mu);
}

int sto_common_sync(struct sto *s, uint64_t last_index, struct dl_errctx *err)
{
	if (s->fl == NULL) {
		sto_flush_pass_inline(s);
		int rc = sto_common_io_err(s);
		return rc == DL_OK ? DL_OK : dl_errf(err, rc, "%s: an earlier sync failed", s->dir);
	}
	pthread_mutex_lock(&s->mu);
	s->urgent = true;
	bool need = !s->queued;
	s->queued = true;
	s->sync_waiters++;
	pthread_mutex_unlock(&s->mu);
	if (need)
		sto_flusher_enqueue(s->fl, s);
	struct timespec until = dl_timespec_at(dl_now_ns() + 60ull * 1000000000u);
	int rc = DL_OK;
	pthread_mutex_lock(&s->mu);
	while (s->io_err == DL_OK && (s->synced_index < last_index || s->state_pend ||
	                              s->state_busy || s->queued || s->busy)) {
		if (pthread_cond_timedwait(&s->cv, &s->mu, &until) == ETIMEDOUT) {
			rc = dl_errf(err, DL_ETIMEDOUT, "%s: sync took over 60 s", s->dir);
			break;
		}
	}
	if (rc == DL_OK && s->io_err != DL_OK)
		rc = dl_errf(err, s->io_err, "%s: a sync failed", s->dir);
	s->sync_waiters--;
	pthread_mutex_unlock(&s->mu);
	return rc;
}

void sto_common_info(const struct sto *s, struct sto_info *info)
{
	struct sto *m = (struct sto *)s;
	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&m->mu);
	info->durable_index = s->durable_index;
	info->synced_index = s->synced_index;
	info->checkpoint = s->ckpt_written;
	pthread_mutex_unlock(&m->mu);
	info->appended_entries = atomic_load_explicit(&m->n_appended, memory_order_relaxed);
	info->enospc_refusals = atomic_load_explicit(&m->n_enospc, memory_order_relaxed);
	info->too_big_refusals = atomic_load_explicit(&m->n_toobig, memory_order_relaxed);
	info->corrupt_reads = atomic_load_explicit(&m->n_corrupt_reads, memory_order_relaxed);
	info->segments_deleted = atomic_load_explicit(&m->n_segs_deleted, memory_order_relaxed);
}

uint64_t sto_corrupt_reads(const struct sto *s)
{
	struct sto *m = (struct sto *)s; /* an atomic load, not a write */
	return atomic_load_explicit(&m->n_corrupt_reads, memory_order_relaxed);
}

uint64_t sto_clock_ms(const struct sto *s)
{
	if (s->cfg.clock != NULL)
		return s->cfg.clock(s->cfg.clock_ctx);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* DLedger's getDiskPartitionSpaceUsedPercent: (total - free) / total. */
int sto_disk_ratio(const struct sto *s, double *ratio, uint64_t *total_bytes)
{
	const char *path = s->dir != NULL ? s->dir : ".";
	*total_bytes = 0;
	if (s->cfg.disk_usage != NULL)
		return s->cfg.disk_usage(s->cfg.disk_usage_ctx, path, ratio, total_bytes);
	struct statvfs v;
	if (statvfs(path, &v) != 0 || v.f_blocks == 0)
		return DL_EIO;
	*ratio = (double)(v.f_blocks - v.f_bfree) / (double)v.f_blocks;
	*total_bytes = (uint64_t)v.f_blocks * (uint64_t)v.f_frsize;
	return DL_OK;
}

/* ------------------------------------------------- the table, dispatched */

const struct sto_ops *sto_ops_of(const struct sto *s)
{
	return s->ops;
}

int sto_append(struct sto *s, uint64_t first_index, const struct sto_entry *entries, uint32_t n,
               struct dl_errctx *err)
{
	return s->ops->append(s, first_index, entries, n, err);
}

int sto_read(struct sto *s, uint64_t index, void *buf, uint32_t cap, struct sto_view *out,
             struct dl_errctx *err)
{
	return s->ops->read(s, index, buf, cap, out, err);
}

uint64_t sto_first_index(const struct sto *s)
{
	return s->ops->first_index(s);
}

uint64_t sto_last_index(const struct sto *s)
{
	return s->ops->last_index(s);
}

bool sto_term_at(struct sto *s, uint64_t index, uint64_t *term)
{
	return s->ops->term_at(s, index, term);
}

uint32_t sto_entry_bytes(struct sto *s, uint64_t index)
{
	return s->ops->entry_bytes(s, index);
}

int sto_truncate_after(struct sto *s, uint64_t index, struct dl_errctx *err)
{
	return s->ops->truncate_after(s, index, err);
}

int sto_rewrite(struct sto *s, uint64_t index, const struct sto_entry *e,
                struct dl_errctx *err)
{
	if (s->ops->rewrite == NULL)
		return dl_errf(err, DL_EINVAL, "this store cannot repair entries in place");
	return s->ops->rewrite(s, index, e, err);
}

int sto_drop_prefix(struct sto *s, uint64_t upto, struct dl_errctx *err)
{
	return s->ops->drop_prefix(s, upto, err);
}

void sto_durable(const struct sto *s, uint64_t *index, uint64_t *term)
{
	s->ops->durable(s, index, term);
}

void sto_set_commit(struct sto *s, uint64_t commit)
{
	s->ops->set_commit(s, commit);
}

int sto_save_state(struct sto *s, uint64_t term, uint32_t vote, struct dl_errctx *err)
{
	return s->ops->save_state(s, term, vote, err);
}

int sto_save_hard_state(struct sto *s, uint64_t term, uint32_t vote, bool voter,
                        struct dl_errctx *err)
{
	bool was = s->st_voter;
	s->st_voter = voter;
	int rc = s->ops->save_state(s, term, vote, err);
	if (rc != DL_OK)
		s->st_voter = was;
	return rc;
}

void sto_get_hard_state(const struct sto *s, struct sto_hard *out, bool *made_afresh)
{
	*out = (struct sto_hard){.term = s->st_term,
	                         .vote = s->st_vote,
	                         .voter = s->st_voter,
	                         .incarnation = s->incarnation};
	if (made_afresh != NULL)
		*made_afresh = s->made_afresh;
}

uint64_t sto_new_incarnation(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	uint16_t rnd = 0;
	if (getrandom(&rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
		rnd = (uint16_t)ts.tv_nsec;
	uint64_t inc = (ms << 16) | rnd;
	return inc != 0 ? inc : 1;
}

void sto_get_state(const struct sto *s, uint64_t *term, uint32_t *vote)
{
	s->ops->get_state(s, term, vote);
}

uint64_t sto_recovered_commit(const struct sto *s)
{
	return s->ops->recovered_commit(s);
}

int sto_sync(struct sto *s, struct dl_errctx *err)
{
	return s->ops->sync(s, err);
}

int sto_clean(struct sto *s, uint64_t allowed_index, struct sto_clean_result *res,
              struct dl_errctx *err)
{
	return s->ops->clean(s, allowed_index, res, err);
}

void sto_get_info(const struct sto *s, struct sto_info *info)
{
	s->ops->get_info(s, info);
}

void sto_close(struct sto *s)
{
	if (s != NULL)
		s->ops->close(s);
}
