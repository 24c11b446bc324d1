/*
 * mmap_internal.h - the mmap segment store's state, shared by
 * mmap_store.c (the ops) and mmap_recover.c (recovery at open).
 *
 * Threads: everything in struct msto belongs to the owner thread, except
 * `base` (see sto_internal.h) and the ckpt_* fields, which the flush
 * thread uses (the owner only at open and after leaving the flusher).
 */
#ifndef DLEDGER_MMAP_INTERNAL_H
#define DLEDGER_MMAP_INTERNAL_H

#include <sys/uio.h>

#include "storage/sto_internal.h"

#define STO_MAX_SEGMENTS       (1u << 20)
#define STO_PREALLOC_MIN_BYTES (64u << 10)
#define STO_ALLOC_ALIGN_BYTES  4096u /* a step cut short ends on a page */
#define STO_CLEAN_MAX_PER_PASS 64u
#define STO_WR_STAGE_BYTES     (32u << 10) /* staging buffer of an append's entry bytes */
#define STO_WR_IOVS            256u        /* iovecs a pwritev takes (IOV_MAX is 1024) */
#define STO_WR_IDX_STAGE_BYTES (8u << 10)  /* staging buffer of its index records */
#define STO_WR_COPY_MAX        512u        /* bodies up to this are copied into the stage */
#define STO_WR_STAGE_MIN       1024u       /* the buffers start this small and double */
#define STO_WR_IOVS_MIN        8u

/* One data segment. */
struct mseg {
	uint64_t base;        /* log offset of its first byte (= its name) */
	uint64_t first_index; /* first entry in it; 0 while it holds none */
	uint64_t closed_ms;   /* wall time of its last write (cleaning age) */
};

/* A mapped index segment (two slots, least recently used goes); the
 * mapping itself belongs to `f` (unmapped with its last reference). */
struct imap {
	bool used;
	bool written;  /* written at recovery: synced before open returns */
	uint64_t base; /* offset in the index log */
	struct sto_file *f;
	uint8_t *map;
	uint64_t alloc_end; /* file offset allocated up to */
	uint64_t tick;
};

/* A run of consecutive file bytes that an append is writing (mmap_store.c,
 * "writing"), written with pwritev before the batch is handed over. */
struct mwr {
	struct sto_file *f; /* file of the run (a reference); NULL: nothing pending */
	uint64_t off, len;  /* the run is the file bytes [off, off + len) */
	uint8_t *stage;     /* staging buffer; allocated by the first append */
	size_t staged, stage_cap, stage_max;
	struct iovec *iov;
	unsigned niov, iov_cap, iov_max;
};

struct msto {
	struct sto base;
	uint64_t seg_bytes, iseg_bytes;
	uint32_t max_body;
	char *data_dir, *index_dir;
	int dir_fd;  /* member directory, flock()ed while open */
	int ckpt_fd; /* flush thread, see above */
	uint64_t ckpt_seq;
	bool ckpt_dirty; /* written in this session: synced at close */

	struct mseg *segs; /* contiguous: segs[i].base = segs[0].base + i * seg_bytes */
	size_t nsegs, cap;
	/* The active segment: always the last one, mapped read-write. */
	struct sto_file *act;
	uint64_t act_base; /* log offset of the mapped segment */
	uint8_t *act_map;
	uint64_t act_alloc; /* file offset allocated up to */
	bool no_fallocate;  /* the file system cannot preallocate */

	struct mwr wr, iwr; /* entries, index records; empty between calls */

	uint64_t wpos; /* log offset of the next header */
	/* Log offset up to which the bytes after wpos, in its segment, may
	 * be old ones rather than zeros: a cut (truncation, a failed batch,
	 * recovery) leaves what lay after it. A batch that ends below it is
	 * followed by a zeroed header (mmap_store.c, put_end), so recovery
	 * finds the end of the log there and never reads old bytes, or a
	 * truncated entry, as the log's continuation. */
	uint64_t stale_end;
	uint64_t first, last, last_term;

	struct sto_file *rd; /* one older data segment open for copies */
	uint64_t rd_base;
	struct imap im[2];
	uint64_t im_tick;

	bool disk_checked, disk_full;
	uint64_t disk_checked_ms;
	double disk_ratio;
	uint64_t disk_total_bytes;      /* 0: unknown */
	uint64_t alloc_unchecked_bytes; /* allocated since disk_ratio was read */

	/* What recovery found. */
	uint64_t rec_verified, rec_rewritten, rec_cut_offset;
	bool rec_cut;
	bool identity_renewed; /* msto_new_identity ran in this open */
};

/* mmap_store.c helpers used by recovery. */
void msto_seg_path(const struct msto *m, uint64_t base, char *buf, size_t n);
/* At open, before any cut of the log: a new incarnation, not a voter,
 * written to the state file and synced (once per open). */
int msto_new_identity(struct msto *m, struct dl_errctx *err);
void msto_idx_path(const struct msto *m, uint64_t base, char *buf, size_t n);
int msto_open_file(const char *path, uint64_t size, bool create, struct sto_file **out,
                   struct dl_errctx *err);
int msto_activate(struct msto *m, size_t j, struct dl_errctx *err);
void msto_deactivate(struct msto *m);
uint8_t *msto_idx_rec(struct msto *m, uint64_t index, bool write, int *rc, struct dl_errctx *err);
/* The index record of `index`, checked: its CRC and index tag, and an
 * entry size that fits a segment from its position. False when damaged
 * or missing. */
bool msto_idx_get(struct msto *m, uint64_t index, struct sto_idx *r);
int msto_ensure_alloc(struct msto *m, struct sto_file *f, uint64_t *alloc_end, uint64_t need,
                      uint64_t file_bytes, struct dl_errctx *err);
size_t msto_seg_of(const struct msto *m, uint64_t pos);
void msto_unlink_index_outside(struct msto *m, uint64_t first, uint64_t last);
int msto_recover(struct msto *m, struct dl_errctx *err);
/* The mmap kind's ops and hooks (mmap_store.c), for the open path
 * (mmap_open.c); msto_free() frees what an open that failed made. */
extern const struct sto_ops msto_ops;
extern const struct sto_impl msto_impl;
void msto_free(struct msto *m);

#endif
