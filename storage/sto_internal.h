/*
 * sto_internal.h - what the storage files share and nothing else sees:
 * the on-disk entry record (record.c, docs/STORAGE.md), the refcounted
 * file handle that the owner thread and the flush thread both hold, the
 * common part of every store (the hand-over to the flush thread), and test
 * hooks.
 *
 * Threads: see the comment on struct sto below; every field says who owns
 * it.
 *
 * Layers: the files depend on each other one way, top to bottom; none
 * calls a file above it.
 *   open.c                      sto_open(): picks a kind by config
 *   mmap_open.c                 opening an mmap store: files, recovery,
 *                               the repair of a damaged tail
 *   mmap_recover.c              the mmap kind's recovery walk
 *   mmap_store.c, mem_store.c   the two kinds (their sto_ops tables) and
 *                               the mmap kind's helpers (mmap_internal.h)
 *   store.c                     common to both kinds: config checks, the
 *                               public calls through the ops table (never
 *                               a kind by name), the flush hand-over
 *   flush.c, state.c            the flush thread; the state and checkpoint files
 *   fsutil.c                    files, directories, mappings
 *   record.c                    the on-disk entry record, CRC32C, asserts
 */
#ifndef DLEDGER_STO_INTERNAL_H
#define DLEDGER_STO_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/storage.h"

/* ---- assertions: always on (TIGER_STYLE); a failure would corrupt data. */
extern void (*sto_assert_handler)(const char *file, int line, const char *expr);
_Noreturn void sto_assert_fail(const char *file, int line, const char *expr);
#define STO_ASSERT(x) ((x) ? (void)0 : sto_assert_fail(__FILE__, __LINE__, #x))

/* ---- paths ----
 * Every path the store builds is its directory plus at most
 * STO_SUFFIX_MAX bytes ("/index/" and 20 digits, "/state.tmp", ...), and
 * sto_common_init() refuses a directory longer than STO_DIR_MAX, so a
 * buffer of STO_PATH_MAX bytes always holds one. The
 * buffers live on the stacks of the member threads, which keep every page
 * they ever touched: with 4 KiB ones, two nested on the append and read
 * paths, each member's stack held 8 KiB more. */
#define STO_SUFFIX_MAX 64u
#define STO_PATH_MAX   (STO_DIR_MAX + STO_SUFFIX_MAX)

/* ---- on-disk format (docs/STORAGE.md; all integers little-endian) ---- */
#define STO_ENTRY_MAGIC       0x31454c44u /* bytes "DLE1" */
#define STO_FORMAT_VERSION    1u
#define STO_HDR_BYTES         48u
#define STO_IDX_BYTES         32u
#define STO_ALIGN_BYTES       8u
#define STO_FLAG_SEG_END      0x0001u     /* end-of-segment marker: continue in the next file */
#define STO_STATE_MAGIC       0x54534c44u /* "DLST" */
#define STO_CKPT_MAGIC        0x4b434c44u /* "DLCK" */
#define STO_STATE_BYTES       32u /* version 1: no incarnation, a voter */
#define STO_STATE_V2_BYTES    48u
#define STO_STATE_VERSION     2u
#define STO_CKPT_SLOT_BYTES   32u
#define STO_CKPT_SLOT1_OFFSET 4096u /* slot 0 at 0; separate pages */
/* A checkpoint's sequence number never gets near this (one write a
 * millisecond would take 146 million years): a slot at or above it is damaged,
 * and the next write (seq + 1) can never wrap. */
#define STO_CKPT_SEQ_MAX      (1ull << 62)
#define STO_SEG_NAME_DIGITS   20

struct sto_hdr {
	uint32_t magic;
	uint8_t version;
	uint8_t type;
	uint16_t flags;
	uint32_t total_bytes; /* header + body + padding to 8 */
	uint32_t body_bytes;
	uint64_t index;
	uint64_t term;
	uint64_t pos; /* log byte offset of this header */
	uint32_t body_crc;
	uint32_t hdr_crc;
};

/* Why a header is rejected (sto_hdr_check()). */
enum sto_hdr_bad {
	STO_HDR_OK = 0,
	STO_HDR_MAGIC,
	STO_HDR_VERSION,
	STO_HDR_CRC,
	STO_HDR_SIZE,
};
const char *sto_hdr_bad_text(int why);

struct sto_idx {
	uint64_t pos;
	uint64_t term;
	uint32_t body_bytes;
	uint8_t type;
};

uint32_t sto_crc32c(const void *p, size_t n);
void sto_hdr_encode(uint8_t out[STO_HDR_BYTES], struct sto_hdr *h); /* sets hdr_crc */
void sto_hdr_decode(const uint8_t in[STO_HDR_BYTES], struct sto_hdr *h);
/* Magic, version, header CRC and size fields; returns enum sto_hdr_bad. */
int sto_hdr_check(const uint8_t in[STO_HDR_BYTES], struct sto_hdr *h);
void sto_idx_encode(uint8_t out[STO_IDX_BYTES], uint64_t index, const struct sto_idx *r);
/* False when the CRC or the index tag does not match. */
bool sto_idx_decode(const uint8_t in[STO_IDX_BYTES], uint64_t index, struct sto_idx *r);

static inline uint32_t sto_entry_total(uint32_t body_bytes)
{
	uint64_t t = (uint64_t)STO_HDR_BYTES + body_bytes;
	return (uint32_t)((t + STO_ALIGN_BYTES - 1) & ~(uint64_t)(STO_ALIGN_BYTES - 1));
}

static inline void sto_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sto_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t sto_get32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}
static inline uint64_t sto_get64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

/* ---- files shared by the owner thread and the flush thread ---- */

/* One open file (a data or index segment) and its mapping. Refcounted:
 * the store's table holds one reference while the file is open there, and
 * a pending or in-flight dirty range holds another (and so does an
 * append's pending write run, mmap_store.c), so the flush thread can sync
 * a file the owner has already rolled past, truncated or deleted. The
 * last reference unmaps and closes. */
struct sto_file {
	atomic_uint refs;
	int fd;
	uint8_t *map; /* set by the owner before sharing; then fixed */
	uint64_t map_bytes;
	bool lazy; /* index file: synced only when the checkpoint moves */
	/* Dirty range not yet handed to a sync; guarded by the store's mu. */
	bool dirty;
	bool dirty_dirsync; /* the directory entry must be synced too */
	uint64_t dirty_lo, dirty_hi;
	struct sto_file *dirty_next;
	/* Range being synced; owned by the flush thread while listed. */
	bool fl_listed;
	bool fl_dirsync;
	uint64_t fl_lo, fl_hi;
	struct sto_file *fl_next;
	char path[]; /* for errors, hooks and the directory sync */
};

struct sto_file *sto_file_new(int fd, const char *path);
void sto_file_ref(struct sto_file *f);
void sto_file_unref(struct sto_file *f); /* unmaps and closes on the last reference */

/* ---- the common part of every store ---- */

/* Internal hooks of an implementation, called on the flush thread (or the
 * owner thread for a store without a flusher). */
struct sto_impl {
	/* Replace the state file atomically and sync it. */
	int (*persist_state)(struct sto *s, uint64_t term, uint32_t vote, bool voter);
	/* Record `commit` in the checkpoint (no sync needed: see STORAGE.md). */
	void (*write_checkpoint)(struct sto *s, uint64_t commit);
};

/*
 * Threads: the owner thread calls the ops; the flush thread runs passes.
 *  - `mu` guards the hand-over block (pending dirty files, pending index,
 *    truncation floor, state request, commit, synced/durable, flags).
 *  - fields marked "flusher" are touched only by the flush thread (or by
 *    sto_sync() on the owner thread when there is no flusher).
 *  - `fl_next` is guarded by the flusher's own mutex.
 */
struct sto {
	const struct sto_ops *ops;
	const struct sto_impl *impl;
	struct sto_config cfg; /* strings point into the copies below */
	char group[STO_NAME_MAX + 1];
	char self_id[STO_NAME_MAX + 1];
	char *base_dir;         /* owned copy */
	char *dir;              /* <base>/<group>/<self> */
	struct sto_flusher *fl; /* NULL: sto_sync() flushes */

	pthread_mutex_t mu;
	pthread_cond_t cv; /* sync waiters and close wait here */
	/* guarded by mu */
	struct sto_file *dirty; /* files with unsynced ranges */
	bool pend;              /* entries appended since the last snapshot */
	uint64_t pend_index, pend_term;
	uint64_t epoch; /* +1 per truncation */
	bool floor_set; /* a truncation since the last snapshot */
	uint64_t floor_index, floor_term;
	bool state_pend;
	uint64_t state_term;
	uint32_t state_vote;
	bool state_voter;
	uint64_t commit;
	uint64_t ckpt_written;                /* last checkpoint value written */
	uint64_t synced_index, synced_term;   /* on disk */
	uint64_t durable_index, durable_term; /* reported */
	bool queued, busy, leaving, registered, urgent, state_busy;
	uint32_t sync_waiters;
	int io_err;

	/* owner thread */
	uint64_t st_term; /* last (term, vote, voter) given or recovered */
	uint32_t st_vote;
	bool st_voter;
	uint64_t incarnation; /* drawn when the store was made; fixed */
	bool made_afresh;     /* no state file found at open */
	uint64_t repaired_from; /* sto_config.repair_from applied at open */
	uint64_t recovered_commit;

	/* flusher */
	struct sto *fl_next;
	struct sto *def_next;
	bool def_listed;
	struct sto_file *deferred; /* async mode: reported, not yet synced */
	struct sto_file *lazy;     /* sync mode: index files not yet synced */
	uint64_t ckpt_ns;          /* when the checkpoint was last written */
	bool def_pend;
	uint64_t def_index, def_term, def_epoch;
	uint64_t def_since_ns;
	bool in_pass;

	/* counters, any thread */
	atomic_uint_fast64_t n_appended, n_enospc, n_toobig, n_corrupt_reads, n_segs_deleted;
};

/* Common set-up: copies and checks the config, builds the member path. */
int sto_common_init(struct sto *s, const struct sto_ops *ops, const struct sto_impl *impl,
                    const struct sto_config *cfg, struct dl_errctx *err);
void sto_common_fini(struct sto *s);
/* An open that fails after its recovery or repair marked ranges dirty (a
 * rebuilt index file, a zeroed header): forgets them unsynced and drops
 * their references, as sto_common_fini() requires. Nothing was reported
 * durable or served; the next open finds and does the same again. Not
 * attached to a flusher. */
void sto_common_drop_dirty(struct sto *s);

/* Registers with the flusher (or notes there is none). DL_EBUSY when full. */
int sto_attach(struct sto *s, struct sto_flusher *fl, struct dl_errctx *err);
/* Flushes everything and leaves the flusher (waits for it). */
void sto_detach(struct sto *s);

/* Owner thread: a dirty range of `f` (file offsets [lo, hi)). Takes a
 * reference to f if it was clean. Call between sto_lock()/sto_publish_and_unlock(). */
void sto_mark_dirty_locked(struct sto *s, struct sto_file *f, uint64_t lo, uint64_t hi,
                           bool dirsync);
/* Takes the store's lock; sto_publish_and_unlock() releases it, in the same
 * function as the sto_lock() it pairs with. */
void sto_lock(struct sto *s);
/* Ends a hand-over: records that entries up to (index, term) were appended
 * (when has_entries), releases the caller's sto_lock(), and wakes the
 * flusher if needed. */
void sto_publish_and_unlock(struct sto *s, bool has_entries, uint64_t index, uint64_t term);
/* Owner thread, after removing the entries after `index` (term `term`). */
void sto_note_truncate(struct sto *s, uint64_t index, uint64_t term);
/* Initial durable/synced point at open. */
void sto_set_recovered(struct sto *s, uint64_t index, uint64_t term, uint64_t commit);

/* Common ops. */
void sto_common_durable(const struct sto *s, uint64_t *index, uint64_t *term);
void sto_common_set_commit(struct sto *s, uint64_t commit);
int sto_common_save_state(struct sto *s, uint64_t term, uint32_t vote, struct dl_errctx *err);
int sto_common_sync(struct sto *s, uint64_t last_index, struct dl_errctx *err);
/* The sticky error (docs/STORAGE.md, "Failures"): DL_OK, or the first
 * failure that made the store stop trusting its tail; set by the flush
 * pass, or by the owner when an append could not be taken back. */
int sto_common_io_err(struct sto *s);
void sto_common_set_io_err(struct sto *s, int rc);
void sto_common_get_state(const struct sto *s, uint64_t *term, uint32_t *vote);
uint64_t sto_common_recovered_commit(const struct sto *s);
/* Owner thread: what every implementation checks before an append (the
 * log ends at (last, last_term)) and before a truncation after `index`
 * (the log starts at `first`, index < last). */
int sto_check_batch(struct sto *s, uint64_t last, uint64_t last_term, uint64_t first_index,
                    const struct sto_entry *e, uint32_t n, uint32_t max_body,
                    struct dl_errctx *err);
int sto_check_truncate(const struct sto *s, uint64_t index, uint64_t first, struct dl_errctx *err);
void sto_common_info(const struct sto *s, struct sto_info *info);

/* flush.c: one pass over n stores (group commit). Used by the flusher
 * thread, and by sto_common_sync() for a store without a flusher. */
void sto_flush_pass_inline(struct sto *s);
void sto_flusher_enqueue(struct sto_flusher *fl, struct sto *s);
int sto_flusher_register(struct sto_flusher *fl, struct dl_errctx *err);
void sto_flusher_unregister(struct sto_flusher *fl);

uint64_t sto_now_ns(void); /* CLOCK_MONOTONIC */
uint64_t sto_clock_ms(const struct sto *s);
int sto_disk_ratio(const struct sto *s, double *ratio, uint64_t *total_bytes);

/* ---- files and directories (fsutil.c) ---- */
int sto_mkdirs(const char *path, struct dl_errctx *err);
int sto_fsync_dir(const char *dir); /* 0 or errno */
int sto_fsync_parent(const char *path);
/* Fills 20-digit names found in `dir` into a sorted array (malloc'd). */
int sto_list_segments(const char *dir, uint64_t **bases, size_t *n, struct dl_errctx *err);
uint64_t sto_path_blocks_bytes(const char *path);

/* State file and checkpoint (state.c). */
/* A new incarnation: wall-clock milliseconds in the high bits, random low
 * bits, never 0; larger than any drawn earlier on a clock that moved on. */
uint64_t sto_new_incarnation(void);
/* The state file: (term, vote, voter, incarnation). A version-1 file
 * (no incarnation) loads as incarnation 0, a voter. */
int sto_state_load(const char *dir, bool *found, struct sto_hard *out,
                   struct dl_errctx *err);
int sto_state_store(const char *dir, const struct sto_hard *h);
int sto_ckpt_load(int fd, uint64_t *seq, uint64_t *commit);
int sto_ckpt_write(int fd, uint64_t seq, uint64_t commit);

/* ---- test hooks: a fault layer records what each sync made durable ---- */
struct sto_test_hooks {
	void *ctx;
	/* fdatasync() of `path` succeeded; [lo, hi) is the range the store
	 * relies on being durable now. */
	void (*file_synced)(void *ctx, const char *path, uint64_t lo, uint64_t hi);
	/* fsync() of directory `path` succeeded. */
	void (*dir_synced)(void *ctx, const char *path);
	/* Fault injection (each may be NULL). Called before the store
	 * allocates [off, off + len) of `path` (fallocate), writes it
	 * (pwritev), or syncs `path` (fdatasync, on the flush thread, or any
	 * thread of its sync pool when it has one); a non-zero return is taken
	 * as the errno of that call, which is then not made. */
	int (*alloc)(void *ctx, const char *path, uint64_t off, uint64_t len);
	int (*write)(void *ctx, const char *path, uint64_t off, uint64_t len);
	int (*sync)(void *ctx, const char *path);
};
extern struct sto_test_hooks *sto_test_hooks; /* NULL outside tests */
void sto_hook_file_synced(const char *path, uint64_t lo, uint64_t hi);
void sto_hook_dir_synced(const char *path);
/* 0, or the errno a test injects (see struct sto_test_hooks). */
int sto_hook_alloc(const char *path, uint64_t off, uint64_t len);
int sto_hook_write(const char *path, uint64_t off, uint64_t len);
int sto_hook_sync(const char *path);

/* The two kinds; called by sto_open() (open.c) only. */
int sto_mmap_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
                  struct dl_errctx *err);
int sto_mem_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
                 struct dl_errctx *err);

#endif
