/*
 * state.c - the state file (current term, voted-for, voter flag, incarnation),
 * replaced atomically,
 * and the checkpoint file (committed index) in two alternating slots.
 * Formats in docs/STORAGE.md. No state of its own: the caller's thread
 * (the flush thread for writes, the owner thread at open).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "storage/sto_internal.h"

/* Version 2, 48 bytes (docs/STORAGE.md, "State file"). */
static void state_encode(uint8_t out[STO_STATE_V2_BYTES], const struct sto_hard *h)
{
	memset(out, 0, STO_STATE_V2_BYTES);
	sto_put32(out + 0, STO_STATE_MAGIC);
	sto_put32(out + 4, STO_STATE_VERSION);
	sto_put64(out + 8, h->term);
	sto_put32(out + 16, h->vote);
	sto_put32(out + 20, h->voter ? 1u : 0u);
	sto_put64(out + 24, h->incarnation);
	sto_put32(out + 44, sto_crc32c(out, 44));
}

/* Version 1 (32 bytes: term, vote) from before incarnations: a store that
 * has taken part all along, so a voter, incarnation 0. */
static int state_decode(const uint8_t *buf, ssize_t k, const char *path, struct sto_hard *h,
                        struct dl_errctx *err)
{
	if (k >= (ssize_t)STO_STATE_BYTES && sto_get32(buf) == STO_STATE_MAGIC &&
	    sto_get32(buf + 4) == 1u && sto_get32(buf + 28) == sto_crc32c(buf, 28)) {
		*h = (struct sto_hard){.term = sto_get64(buf + 8), .vote = sto_get32(buf + 16),
		                       .voter = true};
		return DL_OK;
	}
	if (k < (ssize_t)STO_STATE_V2_BYTES)
		return dl_errf(err, DL_ECORRUPT, "state file %s: short (%zd bytes) at offset 0",
		               path, k);
	if (sto_get32(buf) != STO_STATE_MAGIC || sto_get32(buf + 4) != STO_STATE_VERSION ||
	    sto_get32(buf + 44) != sto_crc32c(buf, 44) || (sto_get32(buf + 20) & ~1u) != 0)
		return dl_errf(err, DL_ECORRUPT,
		               "state file %s: bad magic, version, flags or checksum at offset 0",
		               path);
	*h = (struct sto_hard){.term = sto_get64(buf + 8),
	                       .vote = sto_get32(buf + 16),
	                       .voter = (sto_get32(buf + 20) & 1u) != 0,
	                       .incarnation = sto_get64(buf + 24)};
	return DL_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n, off_t off)
{
	while (n > 0) {
		ssize_t k = pwrite(fd, p, n, off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return errno;
		}
		p += k;
		n -= (size_t)k;
		off += k;
	}
	return 0;
}

/* Write state.tmp, fdatasync it, rename it over state, fsync the
 * directory: after a crash at any point the file named `state` is the old
 * one or the new one, whole (rename is atomic; the data is synced before
 * the name points at it). Returns 0 or an errno. */
int sto_state_store(const char *dir, const struct sto_hard *h)
{
	char tmp[STO_PATH_MAX], path[STO_PATH_MAX];
	if (snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir) >= (int)sizeof(tmp) ||
	    snprintf(path, sizeof(path), "%s/state", dir) >= (int)sizeof(path))
		return ENAMETOOLONG;
	uint8_t buf[STO_STATE_V2_BYTES];
	state_encode(buf, h);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return errno;
	int rc = sto_hook_write(tmp, 0, sizeof(buf));
	if (rc == 0)
		rc = write_all(fd, buf, sizeof(buf), 0);
	if (rc == 0 && fdatasync(fd) != 0)
		rc = errno;
	if (rc == 0)
		sto_hook_file_synced(tmp, 0, sizeof(buf));
	close(fd);
	if (rc == 0 && rename(tmp, path) != 0)
		rc = errno;
	if (rc == 0)
		rc = sto_fsync_dir(dir);
	return rc;
}

int sto_state_load(const char *dir, bool *found, struct sto_hard *out, struct dl_errctx *err)
{
	char tmp[STO_PATH_MAX], path[STO_PATH_MAX];
	*found = false;
	memset(out, 0, sizeof(*out));
	if (snprintf(tmp, sizeof(tmp), "%s/state.tmp", dir) >= (int)sizeof(tmp) ||
	    snprintf(path, sizeof(path), "%s/state", dir) >= (int)sizeof(path))
		return dl_errf(err, DL_EINVAL, "path too long: %s", dir);
	/* A leftover temp file is a replace that never reached its rename:
	 * that state was never reported durable, so it is dropped. */
	if (unlink(tmp) != 0 && errno != ENOENT)
		return dl_errf(err, DL_EIO, "unlink %s: %s", tmp, strerror(errno));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return DL_OK;
		return dl_errf(err, DL_EIO, "open %s: %s", path, strerror(errno));
	}
	uint8_t buf[STO_STATE_V2_BYTES];
	ssize_t k = pread(fd, buf, sizeof(buf), 0);
	int e = errno;
	close(fd);
	if (k < 0)
		return dl_errf(err, DL_EIO, "read %s: %s", path, strerror(e));
	int rc = state_decode(buf, k, path, out, err);
	if (rc != DL_OK)
		return rc;
	*found = true;
	return DL_OK;
}

/* Checkpoint slot: magic @0, version @4, seq u64 @8, commit u64 @16, zero
 * u32 @24, CRC32C of 0..27 @28. Slot seq%2 lives at offset 0 or 4096, so a
 * torn write can spoil only the slot being written and the other one,
 * older, still stands. */
int sto_ckpt_write(int fd, uint64_t seq, uint64_t commit)
{
	uint8_t buf[STO_CKPT_SLOT_BYTES];
	memset(buf, 0, sizeof(buf));
	sto_put32(buf + 0, STO_CKPT_MAGIC);
	sto_put32(buf + 4, STO_FORMAT_VERSION);
	sto_put64(buf + 8, seq);
	sto_put64(buf + 16, commit);
	sto_put32(buf + 28, sto_crc32c(buf, 28));
	off_t off = (seq & 1) ? STO_CKPT_SLOT1_OFFSET : 0;
	return write_all(fd, buf, sizeof(buf), off);
}

int sto_ckpt_load(int fd, uint64_t *seq, uint64_t *commit)
{
	*seq = 0;
	*commit = 0;
	for (int slot = 0; slot < 2; slot++) {
		uint8_t buf[STO_CKPT_SLOT_BYTES];
		ssize_t k = pread(fd, buf, sizeof(buf), slot ? STO_CKPT_SLOT1_OFFSET : 0);
		if (k < 0)
			return errno;
		if ((size_t)k < sizeof(buf))
			continue;
		if (sto_get32(buf) != STO_CKPT_MAGIC || sto_get32(buf + 4) != STO_FORMAT_VERSION ||
		    sto_get32(buf + 28) != sto_crc32c(buf, 28))
			continue;
		uint64_t s = sto_get64(buf + 8);
		if (s >= STO_CKPT_SEQ_MAX) /* damaged though sealed: see the limit */
			continue;
		if (s >= *seq && s > 0) {
			*seq = s;
			*commit = sto_get64(buf + 16);
		}
	}
	return 0;
}
