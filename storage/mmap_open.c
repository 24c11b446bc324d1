/*
 * mmap_open.c - opening an mmap segment store: its directories and files,
 * the state and checkpoint, recovery (mmap_recover.c), and the repair that
 * cuts a damaged tail under a new incarnation.
 *
 * Apart from mmap_store.c so that the files depend on each other one way:
 * this file calls recovery and the store's ops table, recovery calls the
 * store's helpers, and mmap_store.c calls neither (sto_internal.h,
 * "Layers").
 *
 * Threads: the caller of sto_open(), before the store is handed to anyone.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/mmap_internal.h"

static int open_dirs(struct msto *m, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	size_t n = strlen(s->dir) + 8;
	m->data_dir = malloc(n);
	m->index_dir = malloc(n);
	if (m->data_dir == NULL || m->index_dir == NULL)
		return dl_errf(err, DL_ENOMEM, "paths");
	snprintf(m->data_dir, n, "%s/data", s->dir);
	snprintf(m->index_dir, n, "%s/index", s->dir);
	int rc = sto_mkdirs(s->dir, err);
	if (rc != DL_OK)
		return rc;
	bool made = false;
	const char *subs[2] = {m->data_dir, m->index_dir};
	for (int i = 0; i < 2; i++) {
		if (mkdir(subs[i], 0755) == 0)
			made = true;
		else if (errno != EEXIST)
			return dl_errf(err, DL_EIO, "mkdir %s: %s", subs[i], strerror(errno));
	}
	if (made && sto_fsync_dir(s->dir) != 0)
		return dl_errf(err, DL_EIO, "fsync %s: %s", s->dir, strerror(errno));
	m->dir_fd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (m->dir_fd < 0)
		return dl_errf(err, DL_EIO, "open %s: %s", s->dir, strerror(errno));
	if (flock(m->dir_fd, LOCK_EX | LOCK_NB) != 0)
		return dl_errf(err, errno == EWOULDBLOCK ? DL_EBUSY : DL_EIO,
		               "%s is open in another store: %s", s->dir, strerror(errno));
	return DL_OK;
}

static int open_meta(struct msto *m, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	bool found;
	struct sto_hard h;
	int rc = sto_state_load(s->dir, &found, &h, err);
	if (rc != DL_OK)
		return rc;
	if (found) {
		s->st_term = h.term;
		s->st_vote = h.vote;
		s->st_voter = h.voter;
		s->incarnation = h.incarnation;
	} else {
		/* No state file: a new store, or one that never took part
		 * (every message a member sends waits for its state file).
		 * Either way it holds nothing it acknowledged: a new
		 * incarnation, not a voter (raft/raft.h, "Voters"). */
		s->incarnation = sto_new_incarnation();
		s->made_afresh = true;
	}
	char path[STO_PATH_MAX];
	snprintf(path, sizeof(path), "%s/checkpoint", s->dir);
	m->ckpt_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (m->ckpt_fd < 0)
		return dl_errf(err, DL_EIO, "open %s: %s", path, strerror(errno));
	uint64_t commit;
	if (sto_ckpt_load(m->ckpt_fd, &m->ckpt_seq, &commit) != 0)
		return dl_errf(err, DL_EIO, "read %s: %s", path, strerror(errno));
	s->recovered_commit = commit;
	return DL_OK;
}

static int repair(struct msto *m, uint64_t from, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	/* The first entry kept of a log whose older entries were cleaned
	 * cannot be cut away: the log would be empty with its prefix gone,
	 * which truncate_after refuses (the leader could not repair it
	 * either). Refused before the repair changes anything. */
	if (from > 1 && from == m->first)
		return dl_errf(err, DL_ECORRUPT,
		               "%s: entry %" PRIu64 " is damaged and is the first one kept (the "
		               "older ones were cleaned): a cut before it would empty the log; "
		               "reseed this member (docs/OPERATIONS.md, \"Replacing a disk\")",
		               m->data_dir, from);
	int rc = msto_new_identity(m, err);
	if (rc != DL_OK)
		return rc;
	if (from > 0 && from >= m->first && from <= m->last) { /* below first: not stored */
		STO_ASSERT(s->commit < from);
		rc = msto_ops.truncate_after(s, from - 1, err);
		if (rc != DL_OK)
			return rc;
		s->repaired_from = from;
	}
	msto_impl.write_checkpoint(s, s->commit);
	rc = msto_ops.sync(s, err);
	if (rc != DL_OK)
		return rc;
	if (fdatasync(m->ckpt_fd) != 0)
		return dl_errf(err, DL_EIO, "%s: checkpoint after a repair: %s", s->dir,
		               strerror(errno));
	return DL_OK;
}

int sto_mmap_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
                  struct dl_errctx *err)
{
	*out = NULL;
	struct msto *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return dl_errf(err, DL_ENOMEM, "store");
	m->dir_fd = m->ckpt_fd = -1;
	int rc = sto_common_init(&m->base, &msto_ops, &msto_impl, cfg, err);
	if (rc != DL_OK) {
		free(m->base.base_dir);
		free(m->base.dir);
		free(m);
		return rc;
	}
	m->seg_bytes = cfg->segment_bytes;
	m->iseg_bytes = cfg->index_segment_bytes;
	uint64_t room = m->seg_bytes - 2 * STO_HDR_BYTES - STO_ALIGN_BYTES;
	m->max_body = cfg->max_entry_bytes < room ? cfg->max_entry_bytes : (uint32_t)room;
	m->first = 1;
	rc = open_dirs(m, err);
	if (rc == DL_OK)
		rc = open_meta(m, err);
	/* Repair: the log is cut before the damaged entry below, so the
	 * checkpoint may not ask for more. */
	uint64_t from = cfg->repair_from;
	if (rc == DL_OK && from > 0 && m->base.recovered_commit >= from)
		m->base.recovered_commit = from - 1;
	if (rc == DL_OK)
		rc = msto_recover(m, err);
	if (rc == DL_OK && (from > 0 || m->rec_cut))
		rc = repair(m, from, err);
	if (rc == DL_OK)
		rc = sto_attach(&m->base, fl, err);
	if (rc != DL_OK) {
		sto_common_drop_dirty(&m->base);
		msto_free(m);
		return rc;
	}
	*out = &m->base;
	return DL_OK;
}
