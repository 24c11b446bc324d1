/*
 * storage.h - the log store of one member, and the node's flush thread.
 *
 * A store holds one member's Raft log (entries by index), its hard state
 * (current term, voted-for) and a checkpoint of its committed index. Two
 * implementations share one ops table (struct sto_ops): the mmap segment
 * store (STO_TYPE_MMAP, DLedger's DLedgerMmapFileStore; on-disk format and
 * recovery rule in docs/STORAGE.md) and the memory store (STO_TYPE_MEMORY,
 * DLedgerMemoryStore).
 *
 * Threads. A store belongs to one owner thread (its member's actor), which
 * makes every call on it; only sto_durable() may be called from any
 * thread. An append returns once the entries are copied; it
 * becomes durable when the node's flush thread (struct sto_flusher, one per
 * node, shared by every store) has synced it. The flush thread reports each
 * store's durable (index, term) through the store's on_durable callback,
 * which runs on the flush thread and must be cheap (post a message, signal
 * a condition) and must not call the store. A store opened without a
 * flusher is made durable by sto_sync() on the owner thread, which then
 * also runs the callback.
 *
 * Limits. A body is at most max_entry_bytes and always smaller than a
 * segment; indexes go up to STO_MAX_INDEX; one append carries at most
 * STO_MAX_BATCH entries; an mmap store keeps at most STO_MAX_MAPS mappings
 * (one data segment, two index segments) and at most six file
 * descriptors; a flusher serves at most max_stores stores. Every limit
 * that is hit returns an error and is counted in struct sto_info.
 *
 * Failures (docs/STORAGE.md, "Failures"). Most fail the one call and
 * change nothing: an append refused with DL_ENOSPC (disk at or near
 * disk_full_ratio, or no space to allocate or write), DL_ETOOBIG or
 * DL_EINVAL leaves the log as it was, and the next append may succeed; a
 * read that fails (DL_ECORRUPT, DL_EIO) fails that read only. One kind is
 * sticky: a failed fdatasync of a segment or index file, a failed fsync of
 * a directory, a failed replace of the state file (whatever its errno,
 * ENOSPC included), or an append whose failed batch could not be taken
 * back. Linux may drop the dirty pages of a failed sync and report the
 * error once only, so a store cannot tell what of its tail reached the
 * disk: from then on it reports nothing more durable (on_durable carries
 * DL_EIO), refuses appends and syncs with DL_EIO, and still serves reads
 * and close. The only way back is sto_close() and sto_open(): recovery
 * reads the log back from the disk, keeps every entry that was reported
 * durable, and syncs what it keeps.
 */
#ifndef DLEDGER_STORAGE_H
#define DLEDGER_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/dl_err.h"

#define STO_MAX_BATCH 65536u /* entries per append */
/* The largest index a log holds (an index record's offset, 32 x index,
 * stays far from overflow). Appends beyond it are refused; recovery takes
 * an entry beyond it for damage. */
#define STO_MAX_INDEX ((1ull << 58) - 1)
#define STO_MAX_MAPS  3u     /* mappings an mmap store holds at once */
#define STO_NAME_MAX  128u   /* bytes of a group or member id */
#define STO_DIR_MAX   960u   /* bytes of a member's directory, <base>/<group>/<id> */

enum sto_type { STO_TYPE_MMAP = 0, STO_TYPE_MEMORY };

/* DLedger's flushMode. SYNC (default): an entry is reported durable once
 * synced to disk. ASYNC: reported as soon as the flush thread sees it, and
 * synced every flush_interval_ms; a crash may lose what was reported. */
enum sto_flush_mode { STO_FLUSH_SYNC = 0, STO_FLUSH_ASYNC };

/* How much recovery reads at open (docs/STORAGE.md, "Recovery").
 * TAIL (default): every entry after the checkpoint, the checkpoint entry,
 * and every index record up to the checkpoint. ALL: every entry. */
enum sto_verify { STO_VERIFY_TAIL = 0, STO_VERIFY_ALL };

/* One entry to append. `data` is borrowed for the call. Same fields as
 * struct raft_entry. */
struct sto_entry {
	uint64_t term;
	const void *data;
	uint32_t len;
	uint8_t type; /* the caller's entry type (RAFT_ENTRY_*), stored as is */
};

/* An entry read back. `data` points either into the store's mapping (a
 * view, `copied` false) or into the caller's buffer (`copied` true). A view
 * stays valid until the next append, truncate_after, drop_prefix, clean or
 * close on the store. */
struct sto_view {
	const void *data;
	uint32_t len;
	uint8_t type;
	bool copied;
	uint64_t term;
};

/* What the flush thread reports. */
struct sto_durable {
	uint64_t index;     /* every entry <= index is durable (0: none) */
	uint64_t term;      /* term of entry `index` (0 when index is 0) */
	int error;          /* DL_OK, or DL_EIO once a sync failed: sticky (see
	                     * "Failures" above); the store reports nothing
	                     * durable after that and refuses appends until it
	                     * is closed and opened again */
	bool state_durable; /* (state_term, state_vote) is now durable */
	uint64_t state_term;
	uint32_t state_vote;
};

typedef void (*sto_durable_fn)(void *ctx, const struct sto_durable *d);

/* A member's hard state as the state file holds it (raft/raft.h,
 * "Voters"): the incarnation is drawn when the store is made (no state
 * file at open: a new disk, a wiped directory, the memory store at every
 * open) and never changes; `voter` starts false in a store made afresh. */
struct sto_hard {
	uint64_t term;
	uint32_t vote;
	bool voter;
	uint64_t incarnation;
};
/* Wall clock in milliseconds since the epoch (segment ages). */
typedef uint64_t (*sto_clock_fn)(void *ctx);
/* Fraction of the disk holding `path` that is in use, in [0, 1], and the
 * disk's size in bytes (0: unknown; then preallocation is not held under
 * disk_full_ratio, see the append contract). Returns DL_OK or DL_EIO. */
typedef int (*sto_disk_usage_fn)(void *ctx, const char *path, double *used_ratio,
                                 uint64_t *total_bytes);

struct sto_config {
	enum sto_type type;             /* storeType */
	const char *base_dir;           /* storeBaseDir */
	const char *group;              /* group name */
	const char *self_id;            /* this member's id */
	uint64_t segment_bytes;         /* mappedFileSizeForEntryData (1 GiB) */
	uint64_t index_segment_bytes;   /* mappedFileSizeForEntryIndex (160 MB) */
	uint32_t max_entry_bytes;       /* largest body (4 MiB) */
	uint64_t prealloc_max_bytes;    /* largest preallocation step (4 MiB) */
	enum sto_flush_mode flush_mode; /* flushMode (sync) */
	uint32_t flush_interval_ms;     /* flushFileIntervalMs, async mode (10) */
	enum sto_verify verify;         /* recovery depth (tail) */
	/* The checkpoint moves at most this often (sync mode); index files are
	 * synced only then, since recovery rebuilds the index past the
	 * checkpoint from the data (1000). */
	uint32_t checkpoint_interval_ms;

	/* Cleaning (DLedger's keys and defaults). */
	uint32_t file_reserved_hours;           /* fileReservedHours (72) */
	bool enable_disk_force_clean;           /* enableDiskForceClean (true) */
	double disk_space_ratio_to_force_clean; /* (0.85) */
	double disk_full_ratio;                 /* diskFullRatio (0.90) */
	uint32_t disk_check_interval_ms;        /* usage re-read by appends (1000) */
	sto_clock_fn clock;                     /* NULL: CLOCK_REALTIME */
	void *clock_ctx;
	sto_disk_usage_fn disk_usage; /* NULL: statvfs() */
	void *disk_usage_ctx;

	uint64_t memory_max_bytes; /* memory store: bodies held at most (1 GiB) */

	/* Repair (docs/STORAGE.md, "Repair"): 0, or the first entry found
	 * damaged since the last open. Open then cuts the log before it, even
	 * below the checkpoint (which it lowers), and, since the store may
	 * have lost entries it acknowledged, draws a new incarnation and
	 * clears the voter flag (raft/raft.h, "Voters"), durably, before it
	 * returns. The same happens by itself when recovery cuts a tail: a
	 * torn write and a damaged entry look alike. An entry below the
	 * first one stored is gone already: nothing is cut for it. The first
	 * one stored of a log whose older entries were cleaned cannot be cut
	 * away (the log would be empty): open fails with DL_ECORRUPT and
	 * changes nothing. mmap store only. */
	uint64_t repair_from;

	sto_durable_fn on_durable; /* may be NULL */
	void *on_durable_ctx;
};

/* Fill `cfg` with DLedger's defaults; base_dir, group and self_id stay
 * NULL. */
void sto_config_defaults(struct sto_config *cfg);

struct sto;
struct sto_flusher;

/* Result of one cleaning pass. */
struct sto_clean_result {
	uint32_t segments_deleted;
	uint64_t first_index; /* after the pass */
	bool forced;          /* disk use was past the force-clean ratio */
	bool disk_full;       /* disk use is past disk_full_ratio: appends fail */
};

/* What a store found at open, holds, and counted. */
struct sto_info {
	uint64_t first_index, last_index, last_term;
	uint64_t durable_index, synced_index, checkpoint;
	uint32_t maps;       /* mappings held now (<= STO_MAX_MAPS) */
	uint32_t segments;   /* data segments */
	uint64_t disk_bytes; /* blocks allocated by this store's files */
	/* Recovery at open. */
	uint64_t recovered_entries_verified;
	uint64_t recovered_index_records_rewritten;
	uint64_t recovered_cut_offset; /* log offset where the tail was cut */
	bool recovered_cut;            /* a torn or invalid tail was cut */
	uint64_t repaired_from;        /* repair_from applied at open (0: none) */
	/* Counters. */
	uint64_t appended_entries;
	uint64_t enospc_refusals; /* appends refused for a full disk */
	uint64_t too_big_refusals;
	uint64_t corrupt_reads; /* reads that found damage: a bad checksum, a header
	                         * that disagrees with its index record, a bad
	                         * index record (each read's error names file,
	                         * offset and index) */
	uint64_t segments_deleted;
};

/*
 * The ops table. Both implementations keep these promises; the functions
 * below (sto_append(), ...) call through it. Indexes start at 1; index 0
 * has term 0. All calls but durable are made by the owner thread.
 */
struct sto_ops {
	/* Appends n (1..STO_MAX_BATCH) entries, the first at `first_index`,
	 * which must be last_index + 1; terms must not go down. Copies the
	 * bodies and returns: the entries are readable at once and durable
	 * later (on_durable). All or nothing: on error nothing was appended.
	 * Fails with DL_EINVAL (not contiguous, term goes down), DL_ERANGE
	 * (past STO_MAX_INDEX), DL_ETOOBIG (a body over max_entry_bytes),
	 * DL_ENOSPC (disk use at disk_full_ratio or within this batch of
	 * it, which is checked before any space is allocated; or the file
	 * system had no space to allocate or write the batch; memory store:
	 * over memory_max_bytes),
	 * DL_EIO (a write failed; or, sticky, an earlier sync failed). None
	 * but the sticky DL_EIO outlasts the call: after DL_ENOSPC the store
	 * is as before, and the next append succeeds once there is room.
	 * Preallocation steps are held under disk_full_ratio (when the disk's
	 * size is known), so that the ratio refuses appends before a step can
	 * fail for lack of space, and a step that finds no space is retried
	 * with only what the batch needs. */
	int (*append)(struct sto *s, uint64_t first_index, const struct sto_entry *entries,
	              uint32_t n, struct dl_errctx *err);

	/* Reads entry `index` into *out, verifying its checksums. A view into
	 * the mapping when the entry is in the mapped segment (memory store:
	 * always), else a copy into buf (cap bytes, caller-owned). Fails with
	 * DL_ERANGE (past last_index), DL_ECOMPACTED (before first_index),
	 * DL_ETOOBIG (a copy is needed and cap is short: out->len tells the
	 * size), DL_ECORRUPT (bad checksum; err names file and offset),
	 * DL_EIO. */
	int (*read)(struct sto *s, uint64_t index, void *buf, uint32_t cap, struct sto_view *out,
	            struct dl_errctx *err);

	/* Repair in place: writes `e`, a good copy of entry `index` got from a
	 * peer, over the stored one (damaged), at the same place, and makes it
	 * durable before it returns (a write and fdatasync on this thread).
	 * The index record must be sound and agree with the copy (term, body
	 * size, type): by log matching an entry of the same index and term is
	 * the same entry, so the copy is the one that was written. Fails with
	 * DL_ERANGE/DL_ECOMPACTED (not stored here), DL_ECORRUPT (the index
	 * record is damaged: only a cut can repair that), DL_EINVAL (the copy
	 * is not that entry; or a store that cannot be damaged, the memory
	 * store, where this is NULL), DL_EIO. */
	int (*rewrite)(struct sto *s, uint64_t index, const struct sto_entry *e,
	               struct dl_errctx *err);

	/* First entry still stored (1 when nothing was dropped). */
	uint64_t (*first_index)(const struct sto *s);
	/* Last entry (first_index - 1 when empty). */
	uint64_t (*last_index)(const struct sto *s);

	/* Term of entry `index`; index 0 has term 0. False when not stored
	 * (dropped, past the end) or its index record is damaged. */
	bool (*term_at)(struct sto *s, uint64_t index, uint64_t *term);
	/* Body size of entry `index`; 0 when not stored. */
	uint32_t (*entry_bytes)(struct sto *s, uint64_t index);

	/* Removes every entry after `index` (Raft's follower truncation).
	 * No-op when index >= last_index. Fails with DL_EINVAL when `index`
	 * is below the committed index given to set_commit (committed entries
	 * are never removed), DL_ECOMPACTED when it would empty a log whose
	 * prefix was dropped (index < first_index or, with first_index > 1,
	 * index == first_index - 1). The durable index drops to `index` if it
	 * was higher. */
	int (*truncate_after)(struct sto *s, uint64_t index, struct dl_errctx *err);

	/* Drops entries up to `upto` where it can: the mmap store deletes
	 * whole segments only, keeps the last segment, and keeps at least
	 * entry `upto` itself; the memory store drops exactly the entries
	 * < upto. Afterwards first_index <= upto (when upto >= the old first
	 * index). Never drops past last_index. */
	int (*drop_prefix)(struct sto *s, uint64_t upto, struct dl_errctx *err);

	/* Entries durable up to (index, term), as last reported. Any thread. */
	void (*durable)(const struct sto *s, uint64_t *index, uint64_t *term);

	/* The committed index, for the checkpoint (which records
	 * min(commit, synced index); it never goes down). */
	void (*set_commit)(struct sto *s, uint64_t commit);

	/* Persists (term, vote): the state file is replaced atomically by the
	 * flush thread, which then reports state_durable (without a flusher:
	 * at once, before returning). get_state returns the last value given
	 * (or recovered at open). */
	int (*save_state)(struct sto *s, uint64_t term, uint32_t vote, struct dl_errctx *err);
	void (*get_state)(const struct sto *s, uint64_t *term, uint32_t *vote);

	/* Committed index found at open (the checkpoint), 0 if none. */
	uint64_t (*recovered_commit)(const struct sto *s);

	/* Makes everything appended so far durable (in async mode too) and
	 * returns. With a flusher it waits for the flush thread (bounded:
	 * DL_ETIMEDOUT after a minute); without one it syncs on this thread
	 * and runs on_durable here. DL_EIO when a sync failed, now or
	 * earlier (sticky: close and reopen the store). */
	int (*sync)(struct sto *s, struct dl_errctx *err);

	/* One cleaning pass: deletes whole segments older than
	 * file_reserved_hours, or the oldest ones while disk use is past
	 * disk_space_ratio_to_force_clean (when enable_disk_force_clean);
	 * never an entry above `allowed_index` (pass the committed index).
	 * Also refreshes the disk-full state that appends check. */
	int (*clean)(struct sto *s, uint64_t allowed_index, struct sto_clean_result *res,
	             struct dl_errctx *err);

	/* Fills *info (owner thread). Not free: disk_bytes walks the member's
	 * directory. */
	void (*get_info)(const struct sto *s, struct sto_info *info);

	/* Makes everything durable (as sync), leaves the flusher, releases
	 * everything. Safe on NULL. */
	void (*close)(struct sto *s);
};

/* Opens (creating if needed) the store that cfg names, running recovery
 * (docs/STORAGE.md). `fl` may be NULL (then call sto_sync()). Fails with
 * DL_EINVAL/DL_ECONFIG (bad config), DL_EBUSY (the store is open elsewhere,
 * or the flusher is full), DL_ECORRUPT (damage in the durable part of the
 * log or in the state file: err names the file and byte offset), DL_EIO,
 * DL_ENOMEM. */
int sto_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
             struct dl_errctx *err);

/* The table of an open store, and one-line calls through it. */
const struct sto_ops *sto_ops_of(const struct sto *s);
int sto_append(struct sto *s, uint64_t first_index, const struct sto_entry *entries, uint32_t n,
               struct dl_errctx *err);
int sto_read(struct sto *s, uint64_t index, void *buf, uint32_t cap, struct sto_view *out,
             struct dl_errctx *err);
uint64_t sto_first_index(const struct sto *s);
uint64_t sto_last_index(const struct sto *s);
bool sto_term_at(struct sto *s, uint64_t index, uint64_t *term);
uint32_t sto_entry_bytes(struct sto *s, uint64_t index);
int sto_truncate_after(struct sto *s, uint64_t index, struct dl_errctx *err);
int sto_rewrite(struct sto *s, uint64_t index, const struct sto_entry *e,
                struct dl_errctx *err);
int sto_drop_prefix(struct sto *s, uint64_t upto, struct dl_errctx *err);
void sto_durable(const struct sto *s, uint64_t *index, uint64_t *term);
void sto_set_commit(struct sto *s, uint64_t commit);
int sto_save_state(struct sto *s, uint64_t term, uint32_t vote, struct dl_errctx *err);
void sto_get_state(const struct sto *s, uint64_t *term, uint32_t *vote);
/* The same with the voter flag (sto_save_state() keeps the flag as it
 * is); get also tells the incarnation and whether the store was made
 * afresh at this open. Owner thread. */
int sto_save_hard_state(struct sto *s, uint64_t term, uint32_t vote, bool voter,
                        struct dl_errctx *err);
void sto_get_hard_state(const struct sto *s, struct sto_hard *out, bool *made_afresh);
uint64_t sto_recovered_commit(const struct sto *s);
int sto_sync(struct sto *s, struct dl_errctx *err);
int sto_clean(struct sto *s, uint64_t allowed_index, struct sto_clean_result *res,
              struct dl_errctx *err);
void sto_get_info(const struct sto *s, struct sto_info *info);
void sto_close(struct sto *s);
/* sto_info.corrupt_reads alone, without get_info's directory walk: cheap
 * enough for every status publish. Any thread. */
uint64_t sto_corrupt_reads(const struct sto *s);

/* The flush thread. */
struct dl_hist; /* common/dl_hist.h */
/* How a pass issues its fdatasync() calls. A disk serves concurrent syncs
 * of different files together (one cache flush for several), so a pass
 * over many stores takes about as long as its slowest sync instead of
 * their sum; both engines issue them concurrently. */
enum sto_sync_engine {
	/* io_uring (IORING_OP_FSYNC, datasync): the flush thread submits a
	 * pass's syncs at once and reaps them, no thread of ours per sync;
	 * the pool below when the kernel refuses a ring (logged once). */
	STO_SYNC_AUTO = 0,
	STO_SYNC_POOL, /* always the pool of sync_threads */
};

struct sto_flusher_config {
	uint32_t max_stores; /* stores served at once (4096) */
	enum sto_sync_engine sync_engine; /* STO_SYNC_AUTO */
	/* The pool: threads that call fdatasync() in a pass, the flush thread
	 * included (8; 1: the flush thread alone). Not started when io_uring
	 * is used. */
	uint32_t sync_threads;
	/* Optional: the flush thread records the duration of each fdatasync()
	 * of a pass here (NULL: not measured). Borrowed; must outlive the
	 * flusher. */
	struct dl_hist *sync_latency;
};

struct sto_flusher_stats {
	uint64_t passes;      /* group commits */
	uint64_t wakeups;     /* times the thread woke from sleep */
	uint64_t file_syncs;  /* fdatasync() calls */
	uint64_t state_syncs; /* state file replacements */
	uint64_t max_stores_in_pass;
	uint64_t stores; /* registered now */
	bool idle;       /* asleep with nothing queued */
	bool uring;      /* syncs go through io_uring (else the pool) */
};

void sto_flusher_config_defaults(struct sto_flusher_config *cfg);
/* Starts the thread. DL_EINVAL, DL_ENOMEM, DL_EIO (thread creation). */
int sto_flusher_start(const struct sto_flusher_config *cfg, struct sto_flusher **out,
                      struct dl_errctx *err);
/* Stops and frees it; every store on it must be closed first. NULL-safe. */
void sto_flusher_stop(struct sto_flusher *fl);
void sto_flusher_get_stats(const struct sto_flusher *fl, struct sto_flusher_stats *st);

#endif
