/*
 * mmap_recover.c - recovery of the mmap store at open (docs/STORAGE.md,
 * "Recovery"). Runs on the opening thread before the store is attached to
 * a flusher, so nothing else touches the store.
 *
 * The rule: the checkpoint C says entries 1..C were durable (and
 * committed). Entries after C are verified one by one (header checksum,
 * body checksum, index = previous + 1, term not going down, position = its
 * own offset, size within the segment); the first that fails ends the log
 * there (a torn or half-written tail) and is cut. An entry <= C that fails
 * (or is missing) makes the open fail with the file and byte offset. The
 * index is checked up to C and rebuilt from the data from the first damaged
 * or missing record on.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/mmap_internal.h"

enum look { L_ENTRY, L_MARKER, L_BAD };

struct walk {
	uint64_t pos; /* header position to look at next */
	uint64_t n;   /* its expected index; 0: the log's first entry */
	uint64_t prev_term;
	uint64_t commit;    /* C */
	uint64_t first;     /* first index found (0: none yet) */
	uint64_t sync_from; /* log offset from which data may be unsynced */
};

static uint64_t seg_end(const struct msto *m, uint64_t pos)
{
	return pos - pos % m->seg_bytes + m->seg_bytes;
}

/* Examines the header at `pos` (and the body of an entry). */
static int look(struct msto *m, const struct walk *w, struct sto_hdr *h, const char **why, int *rc,
                struct dl_errctx *err)
{
	*rc = DL_OK;
	size_t j = msto_seg_of(m, w->pos);
	STO_ASSERT(j < m->nsegs);
	if (m->act == NULL || m->act_base != m->segs[j].base) {
		*rc = msto_activate(m, j, err);
		if (*rc != DL_OK)
			return L_BAD;
		/* the walk reads forward: read ahead (undone in advise_random) */
		(void)madvise(m->act_map, m->seg_bytes, MADV_SEQUENTIAL);
	}
	uint64_t off = w->pos - m->segs[j].base;
	if (off + STO_HDR_BYTES > m->seg_bytes) {
		*why = "no room for a header";
		return L_BAD;
	}
	const uint8_t *p = m->act_map + off;
	int bad = sto_hdr_check(p, h);
	*why = sto_hdr_bad_text(bad);
	if (bad != STO_HDR_OK)
		return L_BAD;
	if (h->pos != w->pos) {
		*why = "position field does not match the offset";
		return L_BAD;
	}
	if (w->n != 0 && h->index != w->n) {
		*why = "index is not the previous one plus one";
		return L_BAD;
	}
	if (h->term < w->prev_term) {
		*why = "term goes down";
		return L_BAD;
	}
	if (h->flags & STO_FLAG_SEG_END)
		return w->n == 0 ? (*why = "segment starts with an end marker", L_BAD) : L_MARKER;
	if (h->index == 0 || off + h->total_bytes + STO_HDR_BYTES > m->seg_bytes) {
		*why = "entry does not fit in its segment";
		return L_BAD;
	}
	if (h->index > STO_MAX_INDEX) { /* only the first entry's index is free */
		*why = "index past the largest a log holds";
		return L_BAD;
	}
	if (sto_crc32c(p + STO_HDR_BYTES, h->body_bytes) != h->body_crc) {
		*why = "body checksum mismatch";
		return L_BAD;
	}
	return L_ENTRY;
}

/* Writes the index record of a verified entry unless it already says so. */
static int put_record(struct msto *m, const struct sto_hdr *h, struct dl_errctx *err)
{
	int rc;
	uint8_t *p = msto_idx_rec(m, h->index, false, &rc, NULL);
	struct sto_idx r;
	if (p != NULL && sto_idx_decode(p, h->index, &r) && r.pos == h->pos && r.term == h->term &&
	    r.body_bytes == h->body_bytes && r.type == h->type)
		return DL_OK;
	p = msto_idx_rec(m, h->index, true, &rc, err);
	if (p == NULL)
		return rc;
	r = (struct sto_idx){
	        .pos = h->pos, .term = h->term, .body_bytes = h->body_bytes, .type = h->type};
	sto_idx_encode(p, h->index, &r);
	for (int i = 0; i < 2; i++)
		if (m->im[i].used && p >= m->im[i].map && p < m->im[i].map + m->iseg_bytes)
			m->im[i].written = true;
	m->rec_rewritten++;
	return DL_OK;
}

static int durable_damage(struct msto *m, const struct walk *w, const char *why,
                          struct dl_errctx *err)
{
	char path[STO_PATH_MAX];
	size_t j = msto_seg_of(m, w->pos);
	msto_seg_path(m, m->segs[j].base, path, sizeof(path));
	return dl_errf(err, DL_ECORRUPT,
	               "%s offset %" PRIu64 " (log offset %" PRIu64 "): entry %" PRIu64
	               ": %s; the checkpoint says entries up to %" PRIu64 " are durable",
	               path, w->pos - m->segs[j].base, w->pos, w->n, why, w->commit);
}

/* Walks and verifies entries from w->pos to the end of the valid log. */
static int walk(struct msto *m, struct walk *w, struct dl_errctx *err)
{
	for (;;) {
		struct sto_hdr h;
		const char *why = NULL;
		int rc;
		int k = look(m, w, &h, &why, &rc, err);
		if (rc != DL_OK)
			return rc;
		if (k == L_BAD) {
			if (w->commit > 0 && (w->n == 0 || w->n <= w->commit))
				return durable_damage(m, w, why, err);
			return DL_OK;
		}
		size_t j = msto_seg_of(m, w->pos);
		if (k == L_MARKER) {
			if (j + 1 >= m->nsegs)
				return DL_OK; /* the next segment was never made */
			w->pos = m->segs[j + 1].base;
			continue;
		}
		if (w->n == 0) {
			w->n = h.index;
			w->first = h.index;
		}
		rc = put_record(m, &h, err);
		if (rc != DL_OK)
			return rc;
		if (m->segs[j].first_index == 0)
			m->segs[j].first_index = h.index;
		m->rec_verified++;
		w->n++;
		w->prev_term = h.term;
		w->pos += h.total_bytes;
	}
}

/* Back to the advice for serving reads (see map_file in mmap_store.c). */
static void advise_random(struct msto *m)
{
	if (m->act_map != NULL)
		(void)madvise(m->act_map, m->seg_bytes, MADV_RANDOM);
	for (int i = 0; i < 2; i++)
		if (m->im[i].used)
			(void)madvise(m->im[i].map, m->iseg_bytes, MADV_RANDOM);
}

/* Checks index records first..commit: each valid, at the position where
 * the previous entry ends (or at the start of the next segment when it
 * did not fit), terms not going down. Returns the last good index
 * (first - 1 when the first is bad) and its record. */
static uint64_t index_chain(struct msto *m, uint64_t first, uint64_t commit, struct sto_idx *last)
{
	struct sto_idx prev = {0}, r;
	uint64_t i;
	for (i = first; i <= commit; i++) {
		uint64_t off = i * STO_IDX_BYTES;
		if (i == first || off % m->iseg_bytes == 0) {
			/* a new index file, read forward: read ahead (undone
			 * in advise_random) */
			int rc;
			uint8_t *p = msto_idx_rec(m, i, false, &rc, NULL);
			if (p != NULL)
				(void)madvise(p - off % m->iseg_bytes, m->iseg_bytes,
				              MADV_SEQUENTIAL);
		}
		if (!msto_idx_get(m, i, &r))
			break;
		if (i == first) {
			if (r.pos != m->segs[0].base)
				break;
		} else {
			uint64_t end = prev.pos + sto_entry_total(prev.body_bytes);
			uint64_t next = seg_end(m, prev.pos);
			bool here = r.pos == end;
			bool rolled = r.pos == next &&
			              end + sto_entry_total(r.body_bytes) + STO_HDR_BYTES > next;
			if ((!here && !rolled) || r.term < prev.term)
				break;
		}
		if (r.pos + STO_HDR_BYTES > m->segs[0].base + m->nsegs * m->seg_bytes)
			break;
		prev = r;
	}
	*last = prev;
	return i - 1;
}

/* Where to start verifying: after the last entry the index vouches for up
 * to the checkpoint (TAIL), or at the first entry. */
static int find_start(struct msto *m, struct walk *w, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	w->pos = m->segs[0].base;
	w->n = w->pos == 0 ? 1 : 0;
	w->prev_term = 0;
	w->sync_from = w->pos;
	struct sto_hdr h;
	const char *why;
	int rc;
	if (look(m, w, &h, &why, &rc, err) != L_ENTRY)
		return rc; /* the walk will see it again and decide */
	w->first = h.index;
	if (s->cfg.verify != STO_VERIFY_TAIL || w->commit < h.index)
		return DL_OK;
	struct sto_idx r;
	uint64_t good = index_chain(m, h.index, w->commit, &r);
	if (good < h.index)
		return DL_OK;
	struct walk at = {.pos = r.pos, .n = good, .prev_term = r.term, .commit = w->commit};
	int k = look(m, &at, &h, &why, &rc, err);
	if (rc != DL_OK)
		return rc;
	if (k != L_ENTRY || h.term != r.term || h.body_bytes != r.body_bytes)
		return durable_damage(m, &at,
		                      k != L_ENTRY ? why : "does not match its index record", err);
	m->rec_verified++;
	w->pos = r.pos + h.total_bytes;
	w->n = good + 1;
	w->prev_term = r.term;
	w->sync_from = w->pos;
	return DL_OK;
}

static int load_table(struct msto *m, uint64_t **extra, size_t *nextra, struct dl_errctx *err)
{
	uint64_t *bases;
	size_t n;
	int rc = sto_list_segments(m->data_dir, &bases, &n, err);
	if (rc != DL_OK)
		return rc;
	size_t ncont = 0;
	for (size_t i = 0; i < n && rc == DL_OK; i++) {
		if (bases[i] % m->seg_bytes != 0) {
			rc = dl_errf(err, DL_ECONFIG,
			             "%s/%020" PRIu64 " does not start at a multiple of "
			             "mappedFileSizeForEntryData (%" PRIu64 ")",
			             m->data_dir, bases[i], m->seg_bytes);
			break;
		}
		if (i > 0 && bases[i] != bases[i - 1] + m->seg_bytes)
			break; /* a gap: what follows is beyond the log */
		ncont = i + 1;
	}
	for (size_t i = 0; i < ncont && rc == DL_OK; i++) {
		if (m->nsegs == m->cap) {
			size_t ncap = m->cap ? m->cap * 2 : 16;
			struct mseg *t = ncap <= STO_MAX_SEGMENTS
			                         ? realloc(m->segs, ncap * sizeof(*t))
			                         : NULL;
			if (t == NULL) {
				rc = dl_errf(err, DL_ENOMEM, "segment table");
				break;
			}
			m->segs = t;
			m->cap = ncap;
		}
		char path[STO_PATH_MAX];
		msto_seg_path(m, bases[i], path, sizeof(path));
		struct stat st;
		uint64_t mtime_ms = 0;
		if (stat(path, &st) == 0)
			mtime_ms = (uint64_t)st.st_mtim.tv_sec * 1000u +
			           (uint64_t)st.st_mtim.tv_nsec / 1000000u;
		m->segs[m->nsegs++] = (struct mseg){.base = bases[i], .closed_ms = mtime_ms};
	}
	if (rc != DL_OK) {
		free(bases);
		return rc;
	}
	if (n > ncont)
		memmove(bases, bases + ncont, (n - ncont) * sizeof(*bases));
	*extra = bases;
	*nextra = n - ncont;
	return DL_OK;
}

/* First entries of the segments before the walk (TAIL mode skips them). */
static void fill_first_indexes(struct msto *m)
{
	for (size_t i = 0; i < m->nsegs; i++) {
		if (m->segs[i].first_index != 0)
			continue;
		char path[STO_PATH_MAX];
		msto_seg_path(m, m->segs[i].base, path, sizeof(path));
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		uint8_t hb[STO_HDR_BYTES];
		struct sto_hdr h;
		if (pread(fd, hb, sizeof(hb), 0) == (ssize_t)sizeof(hb) &&
		    sto_hdr_check(hb, &h) == STO_HDR_OK && !(h.flags & STO_FLAG_SEG_END) &&
		    h.pos == m->segs[i].base)
			m->segs[i].first_index = h.index;
		close(fd);
	}
}

static int sync_path(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fdatasync(fd) == 0 ? 0 : errno;
	close(fd);
	if (rc == 0)
		sto_hook_file_synced(path, 0, UINT64_MAX);
	return rc;
}

/* Cuts the tail at w->pos, drops what lies beyond, and makes everything
 * the store will call durable really durable (the previous process may
 * have left it in the page cache only). */
static int finish(struct msto *m, struct walk *w, uint64_t *extra, size_t nextra,
                  struct dl_errctx *err)
{
	size_t j = msto_seg_of(m, w->pos);
	int rc = DL_OK;
	if (m->act == NULL || m->act_base != m->segs[j].base)
		rc = msto_activate(m, j, err);
	if (rc != DL_OK)
		return rc;
	uint64_t off = w->pos - m->segs[j].base;
	uint8_t *p = m->act_map + off;
	struct sto_hdr h;
	bool marker = sto_hdr_check(p, &h) == STO_HDR_OK && (h.flags & STO_FLAG_SEG_END) &&
	              h.pos == w->pos && h.index == w->n; /* the walk ended on it */
	static const uint8_t zero[STO_HDR_BYTES];
	if (!marker && memcmp(p, zero, STO_HDR_BYTES) != 0) {
		/* A torn or damaged tail: the store takes its new identity
		 * durably before anything is cut, so that a crash in between
		 * never leaves the old identity over a shorter log (STORAGE.md,
		 * "Repair"). */
		rc = msto_new_identity(m, err);
		if (rc != DL_OK)
			return rc;
		memset(p, 0, STO_HDR_BYTES); /* nonzero bytes are allocated already */
		m->rec_cut = true;
		m->rec_cut_offset = w->pos;
	}
	bool deleted = nextra > 0;
	char path[STO_PATH_MAX];
	for (size_t i = 0; i < nextra; i++) {
		msto_seg_path(m, extra[i], path, sizeof(path));
		(void)unlink(path);
	}
	while (m->nsegs > j + 1) {
		msto_seg_path(m, m->segs[--m->nsegs].base, path, sizeof(path));
		(void)unlink(path);
		deleted = true;
	}
	for (size_t i = msto_seg_of(m, w->sync_from); i <= j && rc == DL_OK; i++) {
		msto_seg_path(m, m->segs[i].base, path, sizeof(path));
		if (sync_path(path) != 0)
			rc = dl_errf(err, DL_EIO, "fdatasync %s: %s", path, strerror(errno));
	}
	if (rc == DL_OK && deleted && sto_fsync_dir(m->data_dir) != 0)
		rc = dl_errf(err, DL_EIO, "fsync %s: %s", m->data_dir, strerror(errno));
	for (int i = 0; i < 2 && rc == DL_OK; i++) {
		if (m->im[i].used && m->im[i].written) {
			if (fdatasync(m->im[i].f->fd) != 0)
				rc = dl_errf(err, DL_EIO, "fdatasync %s", m->im[i].f->path);
			m->im[i].written = false;
		}
	}
	return rc;
}

/* The index file that the next append writes into must be usable. The
 * walk opened every other one the log keeps (the records first..last),
 * so a bad one (longer than the configured size, which changed) failed
 * the open; this one it may not have read (an empty log, or the next
 * record starting a file). Refused at open, not by every append after. */
static int check_next_index(struct msto *m, struct dl_errctx *err)
{
	int rc;
	if (msto_idx_rec(m, m->last + 1, false, &rc, err) == NULL && rc != DL_ENOTFOUND)
		return rc;
	return DL_OK;
}

int msto_recover(struct msto *m, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	uint64_t commit = s->recovered_commit;
	uint64_t *extra = NULL;
	size_t nextra = 0;
	int rc = load_table(m, &extra, &nextra, err);
	if (rc != DL_OK)
		return rc;
	if (m->nsegs == 0) {
		free(extra);
		if (commit > 0)
			return dl_errf(
			        err, DL_ECORRUPT,
			        "%s holds no segment but the checkpoint says entries up to %" PRIu64
			        " are durable",
			        m->data_dir, commit);
		msto_unlink_index_outside(m, 1, 0);
		m->first = 1;
		rc = check_next_index(m, err);
		if (rc == DL_OK)
			sto_set_recovered(s, 0, 0, 0);
		return rc;
	}
	struct walk w = {.commit = commit};
	rc = find_start(m, &w, err);
	if (rc == DL_OK)
		rc = walk(m, &w, err);
	if (rc == DL_OK && w.first == 0 && m->segs[0].base != 0)
		rc = dl_errf(err, DL_ECORRUPT, "%s/%020" PRIu64 ": no valid first entry",
		             m->data_dir, m->segs[0].base);
	if (rc == DL_OK && w.n > 0 && w.n - 1 < commit)
		rc = durable_damage(m, &w, "missing (the log ends here)", err);
	if (rc == DL_OK)
		rc = finish(m, &w, extra, nextra, err);
	free(extra);
	if (rc != DL_OK)
		return rc;
	advise_random(m);
	m->first = w.first != 0 ? w.first : 1;
	m->last = w.n > 0 ? w.n - 1 : 0;
	m->last_term = w.prev_term;
	m->wpos = w.pos;
	/* What lies after the end, up to the end of its segment, is not known
	 * to be zeros: old bytes of a truncation or of a torn write. */
	m->stale_end = seg_end(m, w.pos);
	fill_first_indexes(m);
	msto_unlink_index_outside(m, m->first, m->last); /* keeps the next record's file */
	STO_ASSERT(m->last + 1 >= m->first);
	rc = check_next_index(m, err);
	if (rc != DL_OK)
		return rc;
	sto_set_recovered(s, m->last, m->last_term, commit);
	return DL_OK;
}
