/*
 * mmap_store.c - the mmap segment store (DLedger's DLedgerMmapFileStore).
 *
 * Layout under <storeBaseDir>/<group>/<selfId>/ (docs/STORAGE.md):
 *   data/<20-digit log offset>   segments of segment_bytes, written with
 *                                pwritev; the last one is also mapped
 *                                (MAP_SHARED) and read through the
 *                                mapping, older ones are read with pread
 *                                into the caller's buffer
 *   index/<20-digit offset>      32-byte records, entry i at offset 32 * i,
 *                                written with pwritev, read through a
 *                                mapping
 *   state, checkpoint            see state.c
 *
 * Threads: the owner thread makes every call; dirty ranges go to the flush
 * thread through sto_mark_dirty_locked()/sto_publish_and_unlock() (store.c), which
 * hold a reference to each file until it is synced, so rolling past,
 * truncating or deleting a segment never pulls a file from under a sync.
 * The flush thread also writes the checkpoint (ckpt_fd).
 *
 * Bounds: at most STO_MAX_MAPS mappings (the active data segment and two
 * index segments), at most STO_MAX_SEGMENTS segments, space preallocated
 * ahead of the write position in steps from 64 KiB up to
 * prealloc_max_bytes (a store that never writes allocates nothing), and
 * write buffers of STO_WR_STAGE_BYTES + STO_WR_IDX_STAGE_BYTES + 4 KiB of
 * iovecs per store, allocated by its first append.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "storage/mmap_internal.h"

static struct msto *M(struct sto *s)
{
	return (struct msto *)s;
}
static const struct msto *CM(const struct sto *s)
{
	return (const struct msto *)s;
}

void msto_seg_path(const struct msto *m, uint64_t base, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%020" PRIu64, m->data_dir, base);
}

void msto_idx_path(const struct msto *m, uint64_t base, char *buf, size_t n)
{
	snprintf(buf, n, "%s/%020" PRIu64, m->index_dir, base);
}

/* Opens (or creates) a segment file and makes it `size` bytes long: a
 * shorter one (cut, or created just before a crash) is extended with
 * zeros, sparse. A longer one means the configured size changed. */
int msto_open_file(const char *path, uint64_t size, bool create, struct sto_file **out,
                   struct dl_errctx *err)
{
	*out = NULL;
	int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
	int fd = open(path, flags, 0644);
	if (fd < 0) {
		if (errno == ENOENT && !create)
			return DL_ENOTFOUND;
		return dl_errf(err, DL_EIO, "open %s: %s", path, strerror(errno));
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		int e = errno;
		close(fd);
		return dl_errf(err, DL_EIO, "stat %s: %s", path, strerror(e));
	}
	if ((uint64_t)st.st_size > size) {
		close(fd);
		return dl_errf(err, DL_ECONFIG,
		               "%s is %lld bytes, more than the configured segment size %" PRIu64,
		               path, (long long)st.st_size, size);
	}
	if ((uint64_t)st.st_size < size && ftruncate(fd, (off_t)size) != 0) {
		int e = errno;
		close(fd);
		return dl_errf(err, e == ENOSPC ? DL_ENOSPC : DL_EIO, "ftruncate %s: %s", path,
		               strerror(e));
	}
	*out = sto_file_new(fd, path);
	if (*out == NULL) {
		close(fd);
		return dl_errf(err, DL_ENOMEM, "file %s", path);
	}
	return DL_OK;
}

static uint8_t *map_file(struct sto_file *f, uint64_t size, struct dl_errctx *err, int *rc)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (p == MAP_FAILED) {
		*rc = dl_errf(err, errno == ENOMEM ? DL_ENOMEM : DL_EIO, "mmap %s: %s", f->path,
		              strerror(errno));
		return NULL;
	}
	/* No read-around on faults. Appends do not fault here (they write
	 * with pwritev, see "writing"); reads do, and a read of one entry or
	 * index record of a cold segment would otherwise make the kernel read
	 * a window of pages around it that nobody asked for (recovery's
	 * forward walk asks for read-ahead itself). */
	(void)madvise(p, size, MADV_RANDOM);
	f->map = p;
	f->map_bytes = size;
	*rc = DL_OK;
	return p;
}

/* Bytes this store may still allocate before the disk reaches
 * disk_full_ratio: the room under the ratio at the last reading of the
 * disk's use (refresh_disk), less what the store allocated since.
 * UINT64_MAX when the disk's size is unknown. Other stores on the disk are
 * seen only at the next reading (disk_check_interval_ms). */
static uint64_t alloc_headroom(const struct msto *m)
{
	if (!m->disk_checked || m->disk_total_bytes == 0)
		return UINT64_MAX;
	double room = (m->base.cfg.disk_full_ratio - m->disk_ratio) * (double)m->disk_total_bytes;
	if (room <= (double)m->alloc_unchecked_bytes)
		return 0;
	return (uint64_t)room - m->alloc_unchecked_bytes;
}

static uint64_t file_blocks_bytes(int fd)
{
	struct stat st;
	return fstat(fd, &st) == 0 ? (uint64_t)st.st_blocks * 512u : 0;
}

/* fallocate [from, end) of f; 0 or an errno. */
static int try_fallocate(struct sto_file *f, uint64_t from, uint64_t end)
{
	int e = EINTR;
	for (int tries = 0; tries < 8 && e == EINTR; tries++) {
		e = sto_hook_alloc(f->path, from, end - from);
		if (e == 0 && fallocate(f->fd, 0, (off_t)from, (off_t)(end - from)) != 0)
			e = errno;
	}
	return e;
}

/* Where a step from `from` for `need` ends: steps grow with what was
 * used, from 64 KiB up to prealloc_max_bytes, and never take the disk
 * past disk_full_ratio (alloc_headroom); at least `min_end`. */
static uint64_t step_end(const struct msto *m, uint64_t from, uint64_t need, uint64_t min_end,
                         uint64_t file_bytes)
{
	uint64_t step = from < STO_PREALLOC_MIN_BYTES ? STO_PREALLOC_MIN_BYTES : from;
	if (step > m->base.cfg.prealloc_max_bytes)
		step = m->base.cfg.prealloc_max_bytes;
	uint64_t end = need + step - 1;
	end -= end % STO_PREALLOC_MIN_BYTES;
	if (end > file_bytes)
		end = file_bytes;
	uint64_t room = alloc_headroom(m);
	if (end - from > room) {
		end = from + room;
		end -= end % STO_ALLOC_ALIGN_BYTES;
	}
	return end < min_end ? min_end : end;
}

/* Allocates file space ahead of the write position, so that a full disk
 * is DL_ENOSPC here, before any byte of a batch is written, and the few
 * writes that go through the mapping (recovery and truncation zeroing a
 * header) can never fault for lack of space (which would be SIGBUS).
 * A step is held under disk_full_ratio (so m_append's ratio check refuses
 * appends before a step can fail), and a step that finds no space is
 * retried with only what is needed: DL_ENOSPC means `need` itself did not
 * fit, and then nothing changed (the caller's append is refused, the store
 * stays usable). */
int msto_ensure_alloc(struct msto *m, struct sto_file *f, uint64_t *alloc_end, uint64_t need,
                      uint64_t file_bytes, struct dl_errctx *err)
{
	if (need <= *alloc_end)
		return DL_OK;
	STO_ASSERT(need <= file_bytes);
	if (m->no_fallocate) {
		*alloc_end = file_bytes;
		return DL_OK;
	}
	uint64_t from = *alloc_end;
	uint64_t min_end = need + STO_ALLOC_ALIGN_BYTES - 1;
	min_end -= min_end % STO_ALLOC_ALIGN_BYTES;
	if (min_end > file_bytes)
		min_end = file_bytes;
	uint64_t end = step_end(m, from, need, min_end, file_bytes);
	uint64_t before = file_blocks_bytes(f->fd);
	int e = try_fallocate(f, from, end);
	if ((e == ENOSPC || e == EDQUOT) && end > min_end) {
		end = min_end;
		e = try_fallocate(f, from, end);
	}
	if (e == 0) {
		uint64_t after = file_blocks_bytes(f->fd);
		m->alloc_unchecked_bytes += after > before ? after - before : 0;
		*alloc_end = end;
		STO_ASSERT(*alloc_end >= need && *alloc_end <= file_bytes);
		return DL_OK;
	}
	if (e == EOPNOTSUPP) {
		m->no_fallocate = true;
		*alloc_end = file_bytes;
		return DL_OK;
	}
	if (e == ENOSPC || e == EDQUOT)
		return dl_errf(err, DL_ENOSPC, "no space to allocate %s up to byte %" PRIu64 ": %s",
		               f->path, min_end, strerror(e));
	return dl_errf(err, DL_EIO, "fallocate %s: %s", f->path, strerror(e));
}

size_t msto_seg_of(const struct msto *m, uint64_t pos)
{
	STO_ASSERT(m->nsegs > 0 && pos >= m->segs[0].base);
	return (size_t)((pos - m->segs[0].base) / m->seg_bytes);
}

void msto_deactivate(struct msto *m)
{
	m->act_map = NULL; /* unmapped with the file's last reference */
	sto_file_unref(m->act);
	m->act = NULL;
	m->act_alloc = 0;
}

/* Makes segment j the mapped one. */
int msto_activate(struct msto *m, size_t j, struct dl_errctx *err)
{
	STO_ASSERT(j < m->nsegs);
	msto_deactivate(m);
	char path[STO_PATH_MAX];
	msto_seg_path(m, m->segs[j].base, path, sizeof(path));
	struct sto_file *f;
	int rc = msto_open_file(path, m->seg_bytes, false, &f, err);
	if (rc == DL_ENOTFOUND)
		return dl_errf(err, DL_ECORRUPT, "segment %s is missing", path);
	if (rc != DL_OK)
		return rc;
	uint8_t *p = map_file(f, m->seg_bytes, err, &rc);
	if (p == NULL) {
		sto_file_unref(f);
		return rc;
	}
	m->act = f;
	m->act_base = m->segs[j].base;
	m->act_map = p;
	m->act_alloc = 0;
	return DL_OK;
}

/* ------------------------------------------------------------ the index */

static void imap_drop(struct imap *im)
{
	if (!im->used)
		return;
	if (im->written)
		(void)fdatasync(im->f->fd); /* recovery's rewrites; see msto_recover */
	sto_file_unref(im->f);              /* unmaps with the last reference */
	memset(im, 0, sizeof(*im));
}

/* Pointer to the index record of `index` in a mapped index segment,
 * mapping it (and, to write, creating it and allocating its space) when
 * needed. NULL with *rc = DL_ENOTFOUND when the file does not exist. */
uint8_t *msto_idx_rec(struct msto *m, uint64_t index, bool write, int *rc, struct dl_errctx *err)
{
	uint64_t off = index * STO_IDX_BYTES;
	uint64_t base = off - off % m->iseg_bytes;
	struct imap *im = NULL;
	for (int i = 0; i < 2; i++)
		if (m->im[i].used && m->im[i].base == base)
			im = &m->im[i];
	if (im == NULL) {
		im = !m->im[0].used   ? &m->im[0]
		     : !m->im[1].used ? &m->im[1]
		                      : (m->im[0].tick < m->im[1].tick ? &m->im[0] : &m->im[1]);
		imap_drop(im);
		char path[STO_PATH_MAX];
		msto_idx_path(m, base, path, sizeof(path));
		struct sto_file *f;
		*rc = msto_open_file(path, m->iseg_bytes, write, &f, err);
		if (*rc != DL_OK)
			return NULL;
		f->lazy = true;
		uint8_t *p = map_file(f, m->iseg_bytes, err, rc);
		if (p == NULL) {
			sto_file_unref(f);
			return NULL;
		}
		im->used = true;
		im->base = base;
		im->f = f;
		im->map = p;
		im->alloc_end = 0;
		if (write) { /* a new file's name must be durable with its records */
			sto_lock(&m->base);
			sto_mark_dirty_locked(&m->base, f, 0, 0, true);
			sto_publish_and_unlock(&m->base, false, 0, 0);
		}
	}
	im->tick = ++m->im_tick;
	uint64_t foff = off - base;
	if (write) {
		*rc = msto_ensure_alloc(m, im->f, &im->alloc_end, foff + STO_IDX_BYTES,
		                        m->iseg_bytes, err);
		if (*rc != DL_OK)
			return NULL;
	}
	*rc = DL_OK;
	return im->map + foff;
}

static struct imap *imap_of(struct msto *m, uint64_t index)
{
	uint64_t off = index * STO_IDX_BYTES;
	uint64_t base = off - off % m->iseg_bytes;
	for (int i = 0; i < 2; i++)
		if (m->im[i].used && m->im[i].base == base)
			return &m->im[i];
	return NULL;
}

bool msto_idx_get(struct msto *m, uint64_t index, struct sto_idx *r)
{
	int rc;
	uint8_t *p = msto_idx_rec(m, index, false, &rc, NULL);
	if (p == NULL || !sto_idx_decode(p, index, r))
		return false;
	/* A record whose entry could not fit in a segment from its position
	 * is damaged too, though its checksum matches: a read would ask its
	 * caller for a buffer of that size (up to 4 GiB) first. */
	return (uint64_t)STO_HDR_BYTES + r->body_bytes <= m->seg_bytes - r->pos % m->seg_bytes;
}

/* Deletes index files holding only records outside [first, last + 1]. */
void msto_unlink_index_outside(struct msto *m, uint64_t first, uint64_t last)
{
	uint64_t *bases;
	size_t n;
	if (sto_list_segments(m->index_dir, &bases, &n, NULL) != DL_OK)
		return;
	uint64_t lo = first * STO_IDX_BYTES, hi = (last + 1) * STO_IDX_BYTES;
	for (size_t i = 0; i < n; i++) {
		if (bases[i] + m->iseg_bytes > lo && bases[i] <= hi)
			continue;
		for (int k = 0; k < 2; k++)
			if (m->im[k].used && m->im[k].base == bases[i]) {
				m->im[k].written = false;
				imap_drop(&m->im[k]);
			}
		char path[STO_PATH_MAX];
		msto_idx_path(m, bases[i], path, sizeof(path));
		(void)unlink(path);
	}
	free(bases);
}

/* ------------------------------------------------------------- writing */

/*
 * Appends write entry bytes into the segment file with pwritev, not
 * through the mapping. A store through the mapping faults on every fresh
 * page (filemap_fault zeroes it, ext4_page_mkwrite maps its blocks), which
 * took about half the CPU of an append; a write into the page cache does
 * neither. The page cache is one: the MAP_SHARED mapping sees what pwritev
 * wrote, so reads (a view into the mapping) and recovery still use it.
 *
 * A batch's entries are one run of consecutive file bytes, written with
 * one pwritev: headers, padding and small bodies are copied into a staging
 * buffer (a 128-byte entry costs no syscall of its own), larger bodies are
 * written from the caller's memory (no second copy). A full stage or
 * iovec array, or a roll to the next segment, writes the run so far. Its
 * index records are a second run (`iwr`), written the same way: records
 * written through the mapping would bring back the page faults, and the
 * flush thread would have to drop their page table entries before
 * writeback to avoid a TLB shootdown per page. m_append writes both runs
 * before it hands the batch's ranges to the flush thread (which must find
 * the bytes in the page cache) and before it returns (a read must see
 * them).
 */

/* The buffers start small and double on demand up to stage_max and
 * iov_max: a member that appends only now and then (a term's no-op entry)
 * keeps about 1 KiB, a busy one reaches the full sizes. */
static int wr_init(struct mwr *w, size_t stage_max, unsigned iov_max)
{
	if (w->stage != NULL)
		return DL_OK;
	size_t stage_cap = stage_max < STO_WR_STAGE_MIN ? stage_max : STO_WR_STAGE_MIN;
	unsigned iov_cap = iov_max < STO_WR_IOVS_MIN ? iov_max : STO_WR_IOVS_MIN;
	w->stage = malloc(stage_cap);
	w->iov = malloc(iov_cap * sizeof(*w->iov));
	if (w->stage == NULL || w->iov == NULL) {
		free(w->stage);
		free(w->iov);
		w->stage = NULL;
		w->iov = NULL;
		return DL_ENOMEM;
	}
	w->stage_cap = stage_cap;
	w->stage_max = stage_max;
	w->iov_cap = iov_cap;
	w->iov_max = iov_max;
	return DL_OK;
}

/* A bigger staging buffer, for an empty run only (iovecs point into it). */
static bool wr_grow_stage(struct mwr *w, size_t need)
{
	STO_ASSERT(w->staged == 0 && w->niov == 0);
	size_t cap = w->stage_cap * 2;
	while (cap < need)
		cap *= 2;
	if (cap > w->stage_max)
		cap = w->stage_max;
	uint8_t *p = malloc(cap);
	if (p == NULL)
		return false;
	free(w->stage);
	w->stage = p;
	w->stage_cap = cap;
	return true;
}

static bool wr_grow_iov(struct mwr *w)
{
	unsigned cap = w->iov_cap * 2 > w->iov_max ? w->iov_max : w->iov_cap * 2;
	struct iovec *v = realloc(w->iov, cap * sizeof(*v));
	if (v == NULL)
		return false;
	w->iov = v;
	w->iov_cap = cap;
	return true;
}

static void wr_fini(struct mwr *w)
{
	STO_ASSERT(w->f == NULL);
	free(w->stage);
	free(w->iov);
}

/* Allocated at the first append only: a member that never writes (most of
 * a thousand on a node may be idle) costs nothing. The index records of a
 * batch are consecutive, so they are one staged run: one iovec. */
static int wr_alloc(struct msto *m, struct dl_errctx *err)
{
	if (wr_init(&m->wr, STO_WR_STAGE_BYTES, STO_WR_IOVS) != DL_OK ||
	    wr_init(&m->iwr, STO_WR_IDX_STAGE_BYTES, 1) != DL_OK)
		return dl_errf(err, DL_ENOMEM, "%s: write buffers", m->data_dir);
	return DL_OK;
}

/* Forgets the run without writing it (a failed batch). */
static void wr_discard(struct mwr *w)
{
	sto_file_unref(w->f);
	w->f = NULL;
	w->off = w->len = 0;
	w->staged = 0;
	w->niov = 0;
}

/* Writes the run; on return the writer is empty. */
static int wr_flush(struct mwr *w, struct dl_errctx *err)
{
	struct iovec *iov = w->iov;
	unsigned n = w->niov;
	uint64_t off = w->off;
	int rc = DL_OK;
	while (n > 0) {
		int injected = sto_hook_write(w->f->path, off, w->off + w->len - off);
		ssize_t k = injected != 0 ? -1 : pwritev(w->f->fd, iov, (int)n, (off_t)off);
		if (k < 0 && injected == 0 && errno == EINTR)
			continue;
		if (k <= 0) {
			/* The space was allocated, so this is an I/O error
			 * (or ENOSPC from a file system without fallocate). */
			int e = injected != 0 ? injected : k < 0 ? errno : EIO;
			rc = dl_errf(err, e == ENOSPC ? DL_ENOSPC : DL_EIO,
			             "write %s at %" PRIu64 ": %s", w->f->path, off, strerror(e));
			break;
		}
		off += (uint64_t)k; /* a short write: go on from where it stopped */
		size_t done = (size_t)k;
		while (n > 0 && done >= iov->iov_len) {
			done -= iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= done;
		}
	}
	wr_discard(w);
	return rc;
}

/* Makes the run continue at `off` of f with room for `stage` more staged
 * bytes and, when `iov`, one more iovec; writes what is pending first
 * when the run is elsewhere or full. */
static int wr_room(struct mwr *w, struct sto_file *f, uint64_t off, size_t stage, bool iov,
                   struct dl_errctx *err)
{
	STO_ASSERT(stage <= w->stage_max);
	bool joins = w->f == f && w->off + w->len == off;
	if (iov && w->niov == w->iov_cap && w->iov_cap < w->iov_max)
		(void)wr_grow_iov(w); /* else the run is written below */
	bool stage_full = w->staged + stage > w->stage_cap;
	if (w->f != NULL && (!joins || stage_full || (iov && w->niov == w->iov_cap))) {
		int rc = wr_flush(w, err);
		if (rc != DL_OK)
			return rc;
	}
	/* Outgrown: a bigger stage for what follows (the run is empty now). */
	if (stage_full && w->stage_cap < w->stage_max && !wr_grow_stage(w, stage))
		return dl_errf(err, DL_ENOMEM, "%s: write buffer", f->path);
	if (w->f == NULL) {
		sto_file_ref(f); /* the owner may drop its own (an index file's LRU slot) */
		w->f = f;
		w->off = off;
	}
	return DL_OK;
}

/* n bytes of the staging buffer for the caller to fill, to be written at
 * `off` of f (the end of the run). Bytes staged right after the last
 * staged ones extend its iovec: a batch of small entries is one iovec. */
static uint8_t *wr_stage(struct mwr *w, struct sto_file *f, uint64_t off, size_t n, int *rc,
                         struct dl_errctx *err)
{
	struct iovec *last = w->niov > 0 ? &w->iov[w->niov - 1] : NULL;
	bool extends =
	        last != NULL && (uint8_t *)last->iov_base + last->iov_len == w->stage + w->staged;
	*rc = wr_room(w, f, off, n, !extends, err);
	if (*rc != DL_OK)
		return NULL;
	uint8_t *p = w->stage + w->staged;
	if (w->niov > 0 && extends) /* (niov is 0 if wr_room wrote the run) */
		w->iov[w->niov - 1].iov_len += n;
	else if (n > 0)
		w->iov[w->niov++] = (struct iovec){p, n};
	w->staged += n;
	w->len += n;
	return p;
}

/* The caller's n bytes at p, to be written at `off` of f (the end of the
 * run); p must stay valid until the run is written (the end of m_append). */
static int wr_ref(struct mwr *w, struct sto_file *f, uint64_t off, const void *p, size_t n,
                  struct dl_errctx *err)
{
	int rc = wr_room(w, f, off, 0, true, err);
	if (rc != DL_OK)
		return rc;
	w->iov[w->niov++] = (struct iovec){(void *)p, n};
	w->len += n;
	return DL_OK;
}

/* ------------------------------------------------------------ appending */

/* A range of one file written by this batch, handed over at the end. */
struct acc {
	struct sto_file *f;
	uint64_t lo, hi;
	bool dirsync;
};

static void acc_flush(struct sto *s, struct acc *a)
{
	if (a->f == NULL)
		return;
	sto_lock(s);
	sto_mark_dirty_locked(s, a->f, a->lo, a->hi, a->dirsync);
	sto_publish_and_unlock(s, false, 0, 0);
	memset(a, 0, sizeof(*a));
}

static void acc_add(struct sto *s, struct acc *a, struct sto_file *f, uint64_t lo, uint64_t hi)
{
	if (a->f != f)
		acc_flush(s, a);
	if (a->f == NULL) {
		a->f = f;
		a->lo = lo;
		a->hi = hi;
		return;
	}
	a->lo = lo < a->lo ? lo : a->lo;
	a->hi = hi > a->hi ? hi : a->hi;
}

static int grow_table(struct msto *m, struct dl_errctx *err)
{
	if (m->nsegs < m->cap)
		return DL_OK;
	if (m->cap >= STO_MAX_SEGMENTS)
		return dl_errf(err, DL_ERANGE, "%s: %u segments, the maximum", m->data_dir,
		               STO_MAX_SEGMENTS);
	size_t ncap = m->cap ? m->cap * 2 : 16;
	struct mseg *n = realloc(m->segs, ncap * sizeof(*n));
	if (n == NULL)
		return dl_errf(err, DL_ENOMEM, "segment table");
	m->segs = n;
	m->cap = ncap;
	return DL_OK;
}

static int write_marker(struct msto *m, struct acc *a, struct dl_errctx *err)
{
	uint64_t off = m->wpos - m->segs[m->nsegs - 1].base;
	STO_ASSERT(off + STO_HDR_BYTES <= m->seg_bytes);
	int rc =
	        msto_ensure_alloc(m, m->act, &m->act_alloc, off + STO_HDR_BYTES, m->seg_bytes, err);
	if (rc != DL_OK)
		return rc;
	struct sto_hdr h = {
	        .magic = STO_ENTRY_MAGIC,
	        .version = STO_FORMAT_VERSION,
	        .flags = STO_FLAG_SEG_END,
	        .total_bytes = STO_HDR_BYTES,
	        .index = m->last + 1,
	        .term = m->last_term,
	        .pos = m->wpos,
	        .body_crc = sto_crc32c("", 0),
	};
	uint8_t *p = wr_stage(&m->wr, m->act, off, STO_HDR_BYTES, &rc, err);
	if (p == NULL)
		return rc;
	sto_hdr_encode(p, &h);
	acc_add(&m->base, a, m->act, off, off + STO_HDR_BYTES);
	return DL_OK;
}

/* The header of entry `index` (body e) placed at log offset pos. */
static struct sto_hdr entry_hdr(const struct sto_entry *e, uint64_t index, uint32_t total,
                                uint64_t pos)
{
	return (struct sto_hdr){
	        .magic = STO_ENTRY_MAGIC,
	        .version = STO_FORMAT_VERSION,
	        .type = e->type,
	        .total_bytes = total,
	        .body_bytes = e->len,
	        .index = index,
	        .term = e->term,
	        .pos = pos,
	        .body_crc = e->len > 0 ? sto_crc32c(e->data, e->len) : sto_crc32c("", 0),
	};
}

/* Ends the active segment with a marker and starts the next one. */
static int roll(struct msto *m, struct acc *a, struct dl_errctx *err)
{
	int rc = grow_table(m, err);
	if (rc != DL_OK)
		return rc;
	uint64_t base = m->wpos;
	if (m->act != NULL) {
		rc = write_marker(m, a, err);
		if (rc == DL_OK)
			rc = wr_flush(&m->wr, err); /* the segment's last bytes */
		if (rc != DL_OK)
			return rc;
		acc_flush(&m->base, a);
		m->segs[m->nsegs - 1].closed_ms = sto_clock_ms(&m->base);
		base = m->segs[m->nsegs - 1].base + m->seg_bytes;
		msto_deactivate(m);
	}
	STO_ASSERT(base % m->seg_bytes == 0);
	char path[STO_PATH_MAX];
	msto_seg_path(m, base, path, sizeof(path));
	struct sto_file *f;
	rc = msto_open_file(path, m->seg_bytes, true, &f, err);
	if (rc != DL_OK)
		return rc;
	uint8_t *p = map_file(f, m->seg_bytes, err, &rc);
	if (p == NULL) {
		sto_file_unref(f);
		(void)unlink(path);
		return rc;
	}
	m->segs[m->nsegs++] = (struct mseg){.base = base, .closed_ms = 0};
	m->act = f;
	m->act_base = base;
	m->act_map = p;
	m->act_alloc = 0;
	m->wpos = base;
	a->f = f; /* the new file's first range also syncs its directory entry */
	a->lo = a->hi = 0;
	a->dirsync = true;
	return DL_OK;
}

/* Ends a batch that stops short of stale_end with a zeroed header: the
 * recovery walk stops at it instead of reading the old bytes after it (the
 * middle of a truncated entry: a cut that makes a new incarnation; or a
 * truncated entry that fits after the new ones: a log that never was). Its
 * room is allocated already: each entry is placed with room for a header
 * after it (put_entry). */
static int put_end(struct msto *m, struct acc *da, struct dl_errctx *err)
{
	if (m->act == NULL || m->wpos >= m->stale_end)
		return DL_OK;
	uint64_t off = m->wpos - m->act_base;
	STO_ASSERT(off + STO_HDR_BYTES <= m->seg_bytes && off + STO_HDR_BYTES <= m->act_alloc);
	int rc;
	uint8_t *p = wr_stage(&m->wr, m->act, off, STO_HDR_BYTES, &rc, err);
	if (p == NULL)
		return rc;
	memset(p, 0, STO_HDR_BYTES);
	acc_add(&m->base, da, m->act, off, off + STO_HDR_BYTES);
	return DL_OK;
}

static int put_entry(struct msto *m, const struct sto_entry *e, struct acc *da, struct acc *ia,
                     struct dl_errctx *err)
{
	uint32_t total = sto_entry_total(e->len);
	int rc;
	if (m->act == NULL ||
	    m->wpos - m->segs[m->nsegs - 1].base + total + STO_HDR_BYTES > m->seg_bytes) {
		rc = roll(m, da, err);
		if (rc != DL_OK)
			return rc;
	}
	struct mseg *sg = &m->segs[m->nsegs - 1];
	uint64_t off = m->wpos - sg->base;
	rc = msto_ensure_alloc(m, m->act, &m->act_alloc, off + total + STO_HDR_BYTES, m->seg_bytes,
	                       err);
	if (rc != DL_OK)
		return rc;
	uint64_t index = m->last + 1;
	/* Creates, maps and allocates the index file as needed; the record
	 * itself is written with the batch's index run, below. */
	if (msto_idx_rec(m, index, true, &rc, err) == NULL)
		return rc;
	struct imap *im = imap_of(m, index);
	uint64_t roff = index * STO_IDX_BYTES - im->base;
	uint8_t *rec = wr_stage(&m->iwr, im->f, roff, STO_IDX_BYTES, &rc, err);
	if (rec == NULL)
		return rc;
	uint32_t pad = total - STO_HDR_BYTES - e->len;
	struct sto_hdr h = entry_hdr(e, index, total, m->wpos);
	uint8_t *p = wr_stage(&m->wr, m->act, off, STO_HDR_BYTES, &rc, err);
	if (p == NULL)
		return rc;
	sto_hdr_encode(p, &h);
	uint64_t boff = off + STO_HDR_BYTES;
	if (e->len > STO_WR_COPY_MAX) {
		rc = wr_ref(&m->wr, m->act, boff, e->data, e->len, err);
		if (rc != DL_OK)
			return rc;
		boff += e->len;
	}
	uint32_t copy = e->len > STO_WR_COPY_MAX ? 0 : e->len;
	p = wr_stage(&m->wr, m->act, boff, copy + pad, &rc, err);
	if (p == NULL)
		return rc;
	if (copy > 0)
		memcpy(p, e->data, copy);
	memset(p + copy, 0, pad);
	struct sto_idx r = {.pos = m->wpos, .term = e->term, .body_bytes = e->len, .type = e->type};
	sto_idx_encode(rec, index, &r);
	acc_add(&m->base, ia, im->f, roff, roff + STO_IDX_BYTES);
	acc_add(&m->base, da, m->act, off, off + total);
	if (sg->first_index == 0)
		sg->first_index = index;
	m->wpos += total;
	m->last = index;
	m->last_term = e->term;
	return DL_OK;
}

/* Cuts the log back to end at `pos` (the header position of entry
 * last + 1): deletes later segments, maps the one holding pos, zeroes the
 * header there so that no later recovery reads past it, and tells the
 * hand-over block (the durable index drops to `last`). */
static int cut_to(struct msto *m, uint64_t pos, uint64_t last, uint64_t last_term,
                  struct dl_errctx *err)
{
	STO_ASSERT(m->wr.f == NULL && m->iwr.f == NULL);
	size_t keep = 0;
	if (m->nsegs > 0 && pos >= m->segs[0].base)
		keep = msto_seg_of(m, pos) + 1;
	bool deleted = false;
	/* Old bytes from pos on: up to the old end when it was in the kept
	 * segment (after it there are zeros, or the old bytes stale_end
	 * already covers), else to the segment's end. */
	uint64_t pos_seg_end = pos - pos % m->seg_bytes + m->seg_bytes;
	uint64_t old_end = m->wpos > m->stale_end ? m->wpos : m->stale_end;
	m->stale_end = old_end < pos_seg_end ? old_end : pos_seg_end;
	if (keep < m->nsegs && m->act != NULL)
		msto_deactivate(m);
	while (m->nsegs > keep) {
		uint64_t base = m->segs[--m->nsegs].base;
		char path[STO_PATH_MAX];
		msto_seg_path(m, base, path, sizeof(path));
		if (m->rd != NULL && m->rd_base == base) {
			sto_file_unref(m->rd);
			m->rd = NULL;
		}
		(void)unlink(path);
		deleted = true;
	}
	m->wpos = pos;
	m->last = last;
	m->last_term = last_term;
	if (keep == 0) {
		if (deleted)
			(void)sto_fsync_dir(m->data_dir);
		sto_lock(&m->base);
		sto_note_truncate(&m->base, last, last_term);
		sto_publish_and_unlock(&m->base, false, 0, 0);
		return DL_OK;
	}
	if (m->act == NULL) {
		int rc = msto_activate(m, keep - 1, err);
		if (rc != DL_OK)
			return rc;
	}
	if (m->rd != NULL && m->rd_base == m->segs[keep - 1].base) {
		sto_file_unref(m->rd);
		m->rd = NULL;
	}
	struct mseg *sg = &m->segs[keep - 1];
	uint64_t off = pos - sg->base;
	STO_ASSERT(off + STO_HDR_BYTES <= m->seg_bytes);
	if (sg->first_index > last)
		sg->first_index = 0;
	int rc =
	        msto_ensure_alloc(m, m->act, &m->act_alloc, off + STO_HDR_BYTES, m->seg_bytes, err);
	sto_lock(&m->base);
	if (rc == DL_OK) {
		memset(m->act_map + off, 0, STO_HDR_BYTES);
		sto_mark_dirty_locked(&m->base, m->act, off, off + STO_HDR_BYTES, deleted);
	}
	sto_note_truncate(&m->base, last, last_term);
	sto_publish_and_unlock(&m->base, false, 0, 0);
	return rc;
}

static void refresh_disk(struct msto *m, bool force)
{
	struct sto *s = &m->base;
	uint64_t now = sto_clock_ms(s);
	if (!force && m->disk_checked && now - m->disk_checked_ms < s->cfg.disk_check_interval_ms)
		return;
	double r;
	uint64_t total;
	if (sto_disk_ratio(s, &r, &total) == DL_OK) {
		m->disk_ratio = r;
		m->disk_total_bytes = total;
		m->disk_full = r >= s->cfg.disk_full_ratio;
		m->alloc_unchecked_bytes = 0; /* the reading counts them */
	}
	m->disk_checked = true;
	m->disk_checked_ms = now;
}

/* diskFullRatio: refused while disk use is at or past it, and when the
 * batch's `bytes` would take it there (so the preallocation for the batch
 * never fails before this check refuses; see msto_ensure_alloc). */
static int check_disk(struct msto *m, uint64_t bytes, struct dl_errctx *err)
{
	struct sto *s = &m->base;
	refresh_disk(m, false);
	if (m->disk_full)
		return dl_errf(err, DL_ENOSPC,
		               "disk use %.1f%% is past diskFullRatio %.1f%%: appends refused",
		               m->disk_ratio * 100, s->cfg.disk_full_ratio * 100);
	if (bytes > alloc_headroom(m))
		return dl_errf(err, DL_ENOSPC,
		               "disk use %.1f%% and this append's %" PRIu64
		               " bytes would pass diskFullRatio %.1f%%: appends refused",
		               m->disk_ratio * 100, bytes, s->cfg.disk_full_ratio * 100);
	return DL_OK;
}

/* Disk bytes a batch takes at most: its entries, an end marker, its index
 * records, and a page for each file it may allocate in (an allocation
 * ends on a page): the active and the next data segment, two index
 * segments. */
static uint64_t batch_bytes(const struct sto_entry *e, uint32_t n)
{
	uint64_t b = STO_HDR_BYTES + (uint64_t)n * STO_IDX_BYTES + 4u * STO_ALLOC_ALIGN_BYTES;
	for (uint32_t i = 0; i < n; i++)
		b += sto_entry_total(e[i].len);
	return b;
}

/* Takes back a batch that failed part way (nothing of it was handed over
 * as appended): the log ends where it did before. Should that fail too,
 * the tail is not known any more and the store refuses appends until it
 * is reopened (sticky, like a failed sync). */
static void undo_batch(struct msto *m, struct acc *da, struct acc *ia, uint64_t pos, uint64_t last,
                       uint64_t last_term)
{
	struct sto *s = &m->base;
	wr_discard(&m->wr);
	wr_discard(&m->iwr);
	acc_flush(s, da);
	acc_flush(s, ia);
	struct dl_errctx err = {{0}};
	if (cut_to(m, pos, last, last_term, &err) != DL_OK)
		sto_common_set_io_err(s, DL_EIO);
	STO_ASSERT(m->last == last && m->wpos == pos);
}

static int m_append(struct sto *s, uint64_t first_index, const struct sto_entry *e, uint32_t n,
                    struct dl_errctx *err)
{
	struct msto *m = M(s);
	int rc = sto_common_io_err(s);
	if (rc != DL_OK)
		return dl_errf(err, rc,
		               "%s: a sync failed earlier; appends refused until the store is "
		               "reopened",
		               s->dir);
	rc = sto_check_batch(s, m->last, m->last_term, first_index, e, n, m->max_body, err);
	if (rc == DL_OK)
		rc = check_disk(m, batch_bytes(e, n), err);
	if (rc == DL_OK)
		rc = wr_alloc(m, err);
	uint64_t undo_pos = m->wpos, undo_last = m->last, undo_term = m->last_term;
	struct acc da = {0}, ia = {0};
	bool started = rc == DL_OK;
	for (uint32_t i = 0; i < n && rc == DL_OK; i++)
		rc = put_entry(m, &e[i], &da, &ia, err);
	if (rc == DL_OK)
		rc = put_end(m, &da, err);
	if (rc == DL_OK)
		rc = wr_flush(&m->wr, err); /* before the hand-over and any read */
	if (rc == DL_OK)
		rc = wr_flush(&m->iwr, err);
	if (rc != DL_OK) {
		if (started)
			undo_batch(m, &da, &ia, undo_pos, undo_last, undo_term);
		if (rc == DL_ENOSPC) /* one count per refused append, whatever refused it */
			atomic_fetch_add_explicit(&s->n_enospc, 1, memory_order_relaxed);
		return rc;
	}
	sto_lock(s);
	if (da.f != NULL)
		sto_mark_dirty_locked(s, da.f, da.lo, da.hi, da.dirsync);
	if (ia.f != NULL)
		sto_mark_dirty_locked(s, ia.f, ia.lo, ia.hi, ia.dirsync);
	sto_publish_and_unlock(s, true, m->last, m->last_term);
	atomic_fetch_add_explicit(&s->n_appended, n, memory_order_relaxed);
	return DL_OK;
}

/* ------------------------------------------------------------- reading */

static int corrupt(struct msto *m, struct dl_errctx *err, const char *path, uint64_t off,
                   uint64_t index, const char *why)
{
	atomic_fetch_add_explicit(&m->base.n_corrupt_reads, 1, memory_order_relaxed);
	return dl_errf(err, DL_ECORRUPT, "%s offset %" PRIu64 ": entry %" PRIu64 ": %s", path, off,
	               index, why);
}

static const char *entry_problem(const uint8_t *hb, const struct sto_idx *r, uint64_t index,
                                 struct sto_hdr *h)
{
	int why = sto_hdr_check(hb, h);
	if (why != STO_HDR_OK)
		return sto_hdr_bad_text(why);
	if (h->flags & STO_FLAG_SEG_END)
		return "segment end marker where an entry should be";
	if (h->index != index || h->term != r->term || h->pos != r->pos ||
	    h->body_bytes != r->body_bytes)
		return "header does not match the index record";
	return NULL;
}

static int read_copy(struct msto *m, const struct mseg *sg, const struct sto_idx *r, uint64_t index,
                     void *buf, uint32_t cap, struct sto_view *out, struct dl_errctx *err)
{
	out->len = r->body_bytes;
	if (cap < r->body_bytes)
		return dl_errf(err, DL_ETOOBIG, "entry %" PRIu64 " has %u bytes, buffer %u", index,
		               r->body_bytes, cap);
	char path[STO_PATH_MAX];
	msto_seg_path(m, sg->base, path, sizeof(path));
	if (m->rd == NULL || m->rd_base != sg->base) {
		sto_file_unref(m->rd);
		m->rd = NULL;
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return dl_errf(err, DL_EIO, "open %s: %s", path, strerror(errno));
		m->rd = sto_file_new(fd, path);
		if (m->rd == NULL) {
			close(fd);
			return dl_errf(err, DL_ENOMEM, "file %s", path);
		}
		m->rd_base = sg->base;
	}
	uint8_t hb[STO_HDR_BYTES];
	struct iovec iov[2] = {{hb, sizeof(hb)}, {buf, r->body_bytes}};
	uint64_t off = r->pos - sg->base;
	ssize_t k = preadv(m->rd->fd, iov, 2, (off_t)off);
	if (k < 0)
		return dl_errf(err, DL_EIO, "read %s: %s", path, strerror(errno));
	if ((size_t)k < sizeof(hb) + r->body_bytes)
		return corrupt(m, err, path, off, index, "short segment file");
	struct sto_hdr h;
	const char *why = entry_problem(hb, r, index, &h);
	if (why == NULL && sto_crc32c(buf, r->body_bytes) != h.body_crc)
		why = "body checksum mismatch";
	if (why != NULL)
		return corrupt(m, err, path, off, index, why);
	out->data = buf;
	out->copied = true;
	out->term = h.term;
	out->type = h.type;
	return DL_OK;
}

static int m_read(struct sto *s, uint64_t index, void *buf, uint32_t cap, struct sto_view *out,
                  struct dl_errctx *err)
{
	struct msto *m = M(s);
	memset(out, 0, sizeof(*out));
	if (index > m->last)
		return dl_errf(err, DL_ERANGE, "entry %" PRIu64 " is past the last (%" PRIu64 ")",
		               index, m->last);
	if (index < m->first || index == 0)
		return dl_errf(err, DL_ECOMPACTED,
		               "entry %" PRIu64 " is before the first (%" PRIu64 ")", index,
		               m->first);
	struct sto_idx r;
	bool rec_ok = msto_idx_get(m, index, &r);
	if (!rec_ok || r.pos < m->segs[0].base || r.pos >= m->wpos) {
		char path[STO_PATH_MAX];
		uint64_t off = index * STO_IDX_BYTES;
		msto_idx_path(m, off - off % m->iseg_bytes, path, sizeof(path));
		return corrupt(m, err, path, off % m->iseg_bytes, index,
		               rec_ok ? "index record points outside the log" : "bad index record");
	}
	size_t j = msto_seg_of(m, r.pos);
	const struct mseg *sg = &m->segs[j];
	if (j + 1 != m->nsegs)
		return read_copy(m, sg, &r, index, buf, cap, out, err);
	uint64_t off = r.pos - sg->base;
	const uint8_t *p = m->act_map + off;
	struct sto_hdr h;
	const char *why = entry_problem(p, &r, index, &h);
	if (why == NULL && sto_crc32c(p + STO_HDR_BYTES, h.body_bytes) != h.body_crc)
		why = "body checksum mismatch";
	if (why != NULL)
		return corrupt(m, err, m->act->path, off, index, why);
	out->data = p + STO_HDR_BYTES;
	out->len = h.body_bytes;
	out->term = h.term;
	out->type = h.type;
	out->copied = false;
	return DL_OK;
}

/* sto_ops.rewrite: the copy goes where the damaged entry is, byte for byte
 * what the append wrote (same header, body, padding), and is synced before
 * this returns; then it is read back through the checks of m_read. */
static int m_rewrite(struct sto *s, uint64_t index, const struct sto_entry *e,
                     struct dl_errctx *err)
{
	struct msto *m = M(s);
	if (index > m->last)
		return dl_errf(err, DL_ERANGE, "entry %" PRIu64 " is past the last (%" PRIu64 ")",
		               index, m->last);
	if (index < m->first || index == 0)
		return dl_errf(err, DL_ECOMPACTED, "entry %" PRIu64 " is before the first (%" PRIu64 ")",
		               index, m->first);
	struct sto_idx r;
	if (!msto_idx_get(m, index, &r) || r.pos < m->segs[0].base || r.pos >= m->wpos)
		return dl_errf(err, DL_ECORRUPT,
		               "entry %" PRIu64 ": its index record is damaged: it cannot be repaired "
		               "in place",
		               index);
	if (e->term != r.term || e->len != r.body_bytes || e->type != r.type)
		return dl_errf(err, DL_EINVAL,
		               "entry %" PRIu64 ": the copy (term %" PRIu64 ", %u bytes, type %u) is not "
		               "the entry stored here (term %" PRIu64 ", %u bytes, type %u)",
		               index, e->term, e->len, e->type, r.term, r.body_bytes, r.type);
	uint32_t total = (STO_HDR_BYTES + e->len + 7u) & ~7u;
	struct sto_idx next;
	uint64_t end = m->wpos;
	if (index < m->last && msto_idx_get(m, index + 1, &next) && next.pos > r.pos)
		end = next.pos;
	size_t j = msto_seg_of(m, r.pos);
	const struct mseg *sg = &m->segs[j];
	uint64_t off = r.pos - sg->base;
	if (r.pos + total > end || off + total > m->seg_bytes)
		return dl_errf(err, DL_ECORRUPT,
		               "entry %" PRIu64 ": its index record leaves no room for it: it cannot be "
		               "repaired in place",
		               index);
	uint8_t *buf = calloc(1, total);
	if (buf == NULL)
		return dl_errf(err, DL_ENOMEM, "entry %" PRIu64 ": a buffer of %u bytes", index, total);
	struct sto_hdr h = entry_hdr(e, index, total, r.pos);
	sto_hdr_encode(buf, &h);
	if (e->len > 0)
		memcpy(buf + STO_HDR_BYTES, e->data, e->len);
	char path[STO_PATH_MAX];
	msto_seg_path(m, sg->base, path, sizeof(path));
	int rc = DL_OK;
	int fd = open(path, O_RDWR | O_CLOEXEC);
	uint8_t old[STO_HDR_BYTES];
	struct sto_hdr oh;
	if (fd < 0) {
		rc = dl_errf(err, DL_EIO, "open %s: %s", path, strerror(errno));
	} else if (pread(fd, old, sizeof(old), (off_t)off) == (ssize_t)sizeof(old) &&
	           entry_problem(old, &r, index, &oh) == NULL && oh.body_crc != h.body_crc) {
		/* Only the body is damaged: its stored checksum says which body
		 * the entry had, and this copy is not it. */
		rc = dl_errf(err, DL_EINVAL,
		             "entry %" PRIu64 ": the copy's body checksum %08x is not the stored "
		             "entry's %08x",
		             index, h.body_crc, oh.body_crc);
		close(fd);
	} else {
		int injected = sto_hook_write(path, off, total);
		ssize_t k = injected != 0 ? -1 : pwrite(fd, buf, total, (off_t)off);
		int e2 = injected != 0 ? injected : errno;
		if (k != (ssize_t)total)
			rc = dl_errf(err, DL_EIO, "write %s at %" PRIu64 ": %s", path, off,
			             k < 0 ? strerror(e2) : "short write");
		else if (fdatasync(fd) != 0)
			rc = dl_errf(err, DL_EIO, "sync %s: %s", path, strerror(errno));
		close(fd);
	}
	free(buf);
	if (rc != DL_OK)
		return rc;
	/* Read back through the checks of a read; the copy of a non-active
	 * segment goes to a scratch buffer of the body's size. */
	uint8_t *back = malloc(e->len > 0 ? e->len : 1);
	if (back == NULL)
		return dl_errf(err, DL_ENOMEM, "entry %" PRIu64 ": a buffer of %u bytes", index, e->len);
	struct sto_view v;
	rc = m_read(s, index, back, e->len, &v, err);
	if (rc == DL_OK && (v.len != e->len || memcmp(v.data, e->data, e->len) != 0))
		rc = dl_errf(err, DL_EIO, "%s offset %" PRIu64 ": entry %" PRIu64 ": reads back "
		             "otherwise than written",
		             path, off, index);
	free(back);
	return rc;
}

static uint64_t m_first_index(const struct sto *s)
{
	return CM(s)->first;
}

static uint64_t m_last_index(const struct sto *s)
{
	return CM(s)->last;
}

static bool m_term_at(struct sto *s, uint64_t index, uint64_t *term)
{
	struct msto *m = M(s);
	if (index == 0) {
		*term = 0;
		return true;
	}
	if (index < m->first || index > m->last)
		return false;
	if (index == m->last) {
		*term = m->last_term;
		return true;
	}
	struct sto_idx r;
	if (!msto_idx_get(m, index, &r)) {
		atomic_fetch_add_explicit(&s->n_corrupt_reads, 1, memory_order_relaxed);
		return false;
	}
	*term = r.term;
	return true;
}

static uint32_t m_entry_bytes(struct sto *s, uint64_t index)
{
	struct msto *m = M(s);
	struct sto_idx r;
	if (index == 0 || index < m->first || index > m->last || !msto_idx_get(m, index, &r))
		return 0;
	return r.body_bytes;
}

/* ------------------------------------------------- truncation, cleaning */

static int m_truncate_after(struct sto *s, uint64_t index, struct dl_errctx *err)
{
	struct msto *m = M(s);
	if (index >= m->last)
		return DL_OK;
	int rc = sto_check_truncate(s, index, m->first, err);
	if (rc != DL_OK)
		return rc;
	struct sto_idx next, prev = {0};
	if (!msto_idx_get(m, index + 1, &next) || (index > 0 && !msto_idx_get(m, index, &prev)))
		return dl_errf(err, DL_ECORRUPT, "%s: index record of %" PRIu64 " is damaged",
		               m->index_dir, index + 1);
	rc = cut_to(m, next.pos, index, prev.term, err);
	msto_unlink_index_outside(m, m->first, index); /* keeps the next record's file */
	return rc;
}

static void delete_first_segment(struct msto *m)
{
	STO_ASSERT(m->nsegs >= 2);
	char path[STO_PATH_MAX];
	msto_seg_path(m, m->segs[0].base, path, sizeof(path));
	if (m->rd != NULL && m->rd_base == m->segs[0].base) {
		sto_file_unref(m->rd);
		m->rd = NULL;
	}
	(void)unlink(path);
	memmove(&m->segs[0], &m->segs[1], (m->nsegs - 1) * sizeof(m->segs[0]));
	m->nsegs--;
	m->first = m->segs[0].first_index;
	atomic_fetch_add_explicit(&m->base.n_segs_deleted, 1, memory_order_relaxed);
}

/* Segment 0 may go when the entries it holds are all below `allowed`:
 * the next segment's first entry is <= allowed, so entry `allowed` stays
 * and the log can never be truncated to empty. */
static bool first_segment_deletable(const struct msto *m, uint64_t allowed)
{
	return m->nsegs >= 2 && m->segs[1].first_index != 0 && m->segs[1].first_index <= allowed;
}

static int m_drop_prefix(struct sto *s, uint64_t upto, struct dl_errctx *err)
{
	(void)err;
	struct msto *m = M(s);
	uint64_t old_first = m->first;
	bool any = false;
	while (first_segment_deletable(m, upto)) {
		delete_first_segment(m);
		any = true;
	}
	if (any) {
		msto_unlink_index_outside(m, m->first, m->last);
		(void)sto_fsync_dir(m->data_dir);
	}
	STO_ASSERT(m->first >= old_first);
	return DL_OK;
}

static int m_clean(struct sto *s, uint64_t allowed, struct sto_clean_result *res,
                   struct dl_errctx *err)
{
	struct msto *m = M(s);
	memset(res, 0, sizeof(*res));
	refresh_disk(m, true);
	bool forced = s->cfg.enable_disk_force_clean &&
	              m->disk_ratio >= s->cfg.disk_space_ratio_to_force_clean;
	res->forced = forced;
	uint64_t now = sto_clock_ms(s);
	uint64_t keep_ms = (uint64_t)s->cfg.file_reserved_hours * 3600000u;
	while (res->segments_deleted < STO_CLEAN_MAX_PER_PASS &&
	       first_segment_deletable(m, allowed)) {
		bool old = now >= m->segs[0].closed_ms + keep_ms;
		if (!old && !forced)
			break;
		delete_first_segment(m);
		res->segments_deleted++;
		if (forced) { /* DLedger deletes until use is back under the ratio */
			refresh_disk(m, true);
			forced = m->disk_ratio >= s->cfg.disk_space_ratio_to_force_clean;
		}
	}
	if (res->segments_deleted > 0) {
		msto_unlink_index_outside(m, m->first, m->last);
		if (sto_fsync_dir(m->data_dir) != 0)
			return dl_errf(err, DL_EIO, "fsync %s", m->data_dir);
		refresh_disk(m, true);
	}
	res->first_index = m->first;
	res->disk_full = m->disk_full;
	return DL_OK;
}

/* --------------------------------------------------- state, info, close */

static int m_persist_state(struct sto *s, uint64_t term, uint32_t vote, bool voter)
{
	struct sto_hard h = {
	        .term = term, .vote = vote, .voter = voter, .incarnation = s->incarnation};
	return sto_state_store(s->dir, &h);
}

static void m_write_checkpoint(struct sto *s, uint64_t commit)
{
	struct msto *m = M(s);
	STO_ASSERT(m->ckpt_seq < UINT64_MAX); /* loaded below STO_CKPT_SEQ_MAX */
	m->ckpt_seq++;
	m->ckpt_dirty = true;
	(void)sto_ckpt_write(m->ckpt_fd, m->ckpt_seq, commit);
}

static int m_sync(struct sto *s, struct dl_errctx *err)
{
	return sto_common_sync(s, M(s)->last, err);
}

static void m_get_info(const struct sto *s, struct sto_info *info)
{
	const struct msto *m = CM(s);
	sto_common_info(s, info);
	info->first_index = m->first;
	info->last_index = m->last;
	info->last_term = m->last_term;
	info->maps =
	        (uint32_t)(m->act_map != NULL) + (uint32_t)m->im[0].used + (uint32_t)m->im[1].used;
	info->segments = (uint32_t)m->nsegs;
	info->disk_bytes = sto_path_blocks_bytes(s->dir);
	info->recovered_entries_verified = m->rec_verified;
	info->recovered_index_records_rewritten = m->rec_rewritten;
	info->recovered_cut = m->rec_cut;
	info->repaired_from = s->repaired_from;
	info->recovered_cut_offset = m->rec_cut_offset;
}

void msto_free(struct msto *m)
{
	msto_deactivate(m);
	sto_file_unref(m->rd);
	for (int i = 0; i < 2; i++)
		imap_drop(&m->im[i]);
	if (m->ckpt_fd >= 0)
		close(m->ckpt_fd);
	if (m->dir_fd >= 0)
		close(m->dir_fd); /* releases the flock */
	wr_fini(&m->wr);
	wr_fini(&m->iwr);
	free(m->segs);
	free(m->data_dir);
	free(m->index_dir);
	sto_common_fini(&m->base);
	free(m);
}

static void m_close(struct sto *s)
{
	if (s == NULL)
		return;
	struct msto *m = M(s);
	sto_detach(s);
	if (m->ckpt_dirty && fdatasync(m->ckpt_fd) == 0) {
		char path[STO_PATH_MAX];
		snprintf(path, sizeof(path), "%s/checkpoint", s->dir);
		sto_hook_file_synced(path, 0, UINT64_MAX);
	}
	msto_free(m);
}

const struct sto_ops msto_ops = {
        .append = m_append,
        .read = m_read,
        .first_index = m_first_index,
        .last_index = m_last_index,
        .term_at = m_term_at,
        .entry_bytes = m_entry_bytes,
        .truncate_after = m_truncate_after,
        .rewrite = m_rewrite,
        .drop_prefix = m_drop_prefix,
        .durable = sto_common_durable,
        .set_commit = sto_common_set_commit,
        .save_state = sto_common_save_state,
        .get_state = sto_common_get_state,
        .recovered_commit = sto_common_recovered_commit,
        .sync = m_sync,
        .clean = m_clean,
        .get_info = m_get_info,
        .close = m_close,
};

const struct sto_impl msto_impl = {
        .persist_state = m_persist_state,
        .write_checkpoint = m_write_checkpoint,
};

/* ------------------------------------------------------------- opening */

int msto_new_identity(struct msto *m, struct dl_errctx *err)
{
	if (m->identity_renewed)
		return DL_OK;
	struct sto *s = &m->base;
	s->incarnation = sto_new_incarnation();
	s->st_voter = false;
	struct sto_hard h = {.term = s->st_term, .vote = s->st_vote, .voter = false,
	                     .incarnation = s->incarnation};
	int e = sto_state_store(s->dir, &h);
	if (e != 0)
		return dl_errf(err, DL_EIO, "%s: state file for a repair: %s", s->dir, strerror(e));
	m->identity_renewed = true;
	return DL_OK;
}

/* At open, before the store serves anything: record a new incarnation, not
 * a voter, in the state file, durably (recovery did so already if it cut a
 * tail); then cut the log before `from` (0: nothing beyond what recovery
 * cut) and make the cut and the lowered checkpoint durable. In this order a
 * crash half-way leaves the new identity over the old log (the damage is
 * found again, and repaired again), never the old identity over a log that
 * lost entries. */
