/*
 * fuzz_recovery.c - libFuzzer target: the mmap store's recovery at open
 * from a damaged member directory (storage/storage.h, docs/STORAGE.md).
 *
 * Once per process it writes a pristine store: 150 entries in three terms
 * (bodies of 0..199 bytes) over 4 KiB data segments and two 4 KiB index
 * files, a state file, and a checkpoint at entry 100. Each input then
 * damages a copy of that directory and opens it (sto_open).
 *
 * Input: one options byte (bit 0: verify every entry, else the tail;
 * bit 1: a repair_from index follows, one byte), then operations, each an
 * op byte and its arguments, applied in order to the files of the copy
 * (state, checkpoint, data/..., index/..., a file chosen by a byte modulo
 * their number):
 *   0 patch       file, offset (u16), n (1..16), n bytes
 *   1 truncate    file, size (u16, modulo the file's size + 1)
 *   2 entry       data file, k, field offset, n (1..8), bytes: patches the
 *                 k-th header of the file (k modulo the headers there)
 *                 and seals it again (body CRC unless patched, header CRC)
 *   3 record      index file, record (u16), field offset, n, bytes, sealed
 *   4 state       field offset, n, bytes; sealed (version 1 or 2 CRC)
 *   5 checkpoint  slot, field offset, n, bytes; that slot sealed
 *   6 delete      file
 *   7 create      kind (data segment, index file, state.tmp), number,
 *                 size (u16), and the bytes of a file to copy from
 * Sealed damage gets past the checksums to the checks behind them (index
 * chain, positions, terms, sizes, the checkpoint against the log).
 *
 * Asserts: open returns DL_OK or a documented error, never crashes, hangs
 * or leaks. When it opens: first <= last + 1; the checkpoint is within the
 * log; a cut tail means a new incarnation that is not a voter; every entry
 * first..last reads back (or fails its read with DL_ECORRUPT), its term
 * and size agreeing with term_at and entry_bytes; the next entry appends
 * and syncs; and the directory it leaves opens again, without a cut, with
 * that entry as its last.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/sto_internal.h"
#include "test/fuzz/fuzz.h"

#define GROUP     "g0"
#define SELF      "n1"
#define N_ENTRIES 150u
#define COMMIT    100u
#define MAX_FILES 64
#define FILE_MAX  (64u << 10) /* a file the input makes or grows */

static char pristine[512], work[512];
static uint8_t body_buf[8192];

/* ---- the pristine store ----------------------------------------------------------- */

static void config(struct sto_config *cfg, const char *base)
{
	sto_config_defaults(cfg);
	cfg->type = STO_TYPE_MMAP;
	cfg->base_dir = base;
	cfg->group = GROUP;
	cfg->self_id = SELF;
	cfg->segment_bytes = 4096;
	cfg->index_segment_bytes = 4096;
	cfg->max_entry_bytes = 1024;
	cfg->prealloc_max_bytes = 64 << 10;
	cfg->disk_full_ratio = 1.0;
	cfg->disk_space_ratio_to_force_clean = 1.0;
	cfg->enable_disk_force_clean = false;
}

static void must(int rc, const struct dl_errctx *err, const char *what)
{
	if (rc != DL_OK) {
		fprintf(stderr, "pristine store: %s: %s: %s\n", what, dl_strerror(rc), err->msg);
		abort();
	}
}

static void make_pristine(void)
{
	struct sto_config cfg;
	config(&cfg, pristine);
	struct sto *s = NULL;
	struct dl_errctx err = {{0}};
	must(sto_open(&cfg, NULL, &s, &err), &err, "open");
	for (uint64_t i = 1; i <= N_ENTRIES; i++) {
		uint32_t len = (uint32_t)((i * 37u) % 200u);
		for (uint32_t j = 0; j < len; j++)
			body_buf[j] = (uint8_t)(i * 7u + j);
		struct sto_entry e = {
		        .term = 1 + i / 60, .data = body_buf, .len = len, .type = (uint8_t)(i % 2)};
		must(sto_append(s, i, &e, 1, &err), &err, "append");
	}
	must(sto_save_hard_state(s, 3, 2, true, &err), &err, "state");
	must(sto_sync(s, &err), &err, "sync");
	sto_set_commit(s, COMMIT);
	must(sto_sync(s, &err), &err, "sync");
	struct sto_info info;
	sto_get_info(s, &info);
	FZ_CHECK(info.checkpoint == COMMIT && info.last_index == N_ENTRIES);
	sto_close(s);
}

static void setup(void)
{
	if (pristine[0] != '\0')
		return;
	const char *dir = fz_scratch_dir();
	snprintf(pristine, sizeof(pristine), "%s/pristine", dir);
	snprintf(work, sizeof(work), "%s/work", dir);
	make_pristine();
}

/* ---- copying and listing ------------------------------------------------------------ */

static size_t src_len;

static void copy_file(const char *from, const char *to, uint64_t limit)
{
	int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	FZ_CHECK(out >= 0);
	uint64_t done = 0;
	ssize_t k;
	static uint8_t buf[16384];
	while (in >= 0 && done < limit && (k = read(in, buf, sizeof(buf))) > 0) {
		size_t n = (uint64_t)k < limit - done ? (size_t)k : (size_t)(limit - done);
		FZ_CHECK(write(out, buf, n) == (ssize_t)n);
		done += n;
	}
	if (in >= 0)
		close(in);
	close(out);
}

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	char dst[1024];
	snprintf(dst, sizeof(dst), "%s%s", work, path + src_len);
	if (flag == FTW_D)
		return mkdir(dst, 0755) == 0 || errno == EEXIST ? 0 : -1;
	if (flag == FTW_F)
		copy_file(path, dst, UINT64_MAX);
	return 0;
}

struct files {
	char path[MAX_FILES][1024];
	uint32_t n, n_data, n_index; /* path: state, checkpoint, data..., index... */
	uint32_t data0, index0;
};

static int by_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static void list_dir(struct files *f, const char *dir, uint32_t *count)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	uint32_t first = f->n;
	for (struct dirent *e; (e = readdir(d)) != NULL && f->n < MAX_FILES;) {
		if (e->d_name[0] == '.')
			continue;
		snprintf(f->path[f->n++], sizeof(f->path[0]), "%s/%s", dir, e->d_name);
	}
	closedir(d);
	qsort(f->path[first], f->n - first, sizeof(f->path[0]), by_name);
	*count = f->n - first;
}

static void list_files(struct files *f, const char *member)
{
	f->n = 0;
	snprintf(f->path[f->n++], sizeof(f->path[0]), "%s/state", member);
	snprintf(f->path[f->n++], sizeof(f->path[0]), "%s/checkpoint", member);
	char dir[1024];
	f->data0 = f->n;
	snprintf(dir, sizeof(dir), "%s/data", member);
	list_dir(f, dir, &f->n_data);
	f->index0 = f->n;
	snprintf(dir, sizeof(dir), "%s/index", member);
	list_dir(f, dir, &f->n_index);
}

/* ---- the operations ------------------------------------------------------------------ */

struct in {
	const uint8_t *p;
	size_t n;
};

static bool take(struct in *in, void *out, size_t n)
{
	if (in->n < n)
		return false;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return true;
}

static uint8_t u8(struct in *in)
{
	uint8_t v = 0;
	take(in, &v, 1);
	return v;
}

static uint16_t u16(struct in *in)
{
	uint8_t b[2] = {0, 0};
	take(in, b, 2);
	return (uint16_t)(b[0] | b[1] << 8);
}

/* A file's bytes, read whole (at most FILE_MAX); *len 0 when absent. */
static uint8_t *slurp(const char *path, size_t *len)
{
	static uint8_t buf[FILE_MAX];
	*len = 0;
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return buf;
	ssize_t k = read(fd, buf, sizeof(buf));
	close(fd);
	*len = k > 0 ? (size_t)k : 0;
	return buf;
}

static void spill(const char *path, const uint8_t *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return; /* deleted directory, say */
	FZ_CHECK(write(fd, buf, len) == (ssize_t)len);
	close(fd);
}

/* Patches bytes [off, off + n) of a field area of `area` bytes at `at` in
 * buf; the patch is clipped to the area and the file. Returns whether the
 * patch touched [lo, hi) of the area. */
static bool patch_area(struct in *in, uint8_t *buf, size_t len, size_t at, size_t area, size_t lo,
                       size_t hi)
{
	size_t off = u8(in) % area, n = u8(in) % 8 + 1;
	uint8_t b[8] = {0};
	take(in, b, n);
	if (off + n > area)
		n = area - off;
	if (at + off + n > len)
		return false;
	memcpy(buf + at + off, b, n);
	return off < hi && off + n > lo;
}

static void op_patch(struct in *in, const char *path)
{
	uint16_t off = u16(in);
	size_t n = u8(in) % 16 + 1, len;
	uint8_t b[16] = {0};
	take(in, b, n);
	uint8_t *buf = slurp(path, &len);
	if (len == 0)
		return;
	off %= len;
	if (off + n > len)
		n = len - off;
	memcpy(buf + off, b, n);
	spill(path, buf, len);
}

static void op_truncate(struct in *in, const char *path)
{
	struct stat st;
	uint16_t size = u16(in);
	if (stat(path, &st) == 0)
		FZ_CHECK(truncate(path, (off_t)(size % ((uint64_t)st.st_size + 1))) == 0);
}

/* The k-th header of a data file, following total sizes from offset 0. */
static size_t nth_header(const uint8_t *buf, size_t len, uint8_t k)
{
	size_t offs[256], n = 0;
	for (size_t off = 0; off + STO_HDR_BYTES <= len && n < 256;) {
		uint32_t total = sto_get32(buf + off + 8);
		if (sto_get32(buf + off) != STO_ENTRY_MAGIC || total < STO_HDR_BYTES ||
		    total % STO_ALIGN_BYTES != 0)
			break;
		offs[n++] = off;
		if (sto_get32(buf + off + 4) >> 16 & STO_FLAG_SEG_END)
			break;
		off += total;
	}
	return n == 0 ? 0 : offs[k % n];
}

static void op_entry(struct in *in, const char *path)
{
	uint8_t k = u8(in);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	size_t at = nth_header(buf, len, k);
	bool crc_patched = patch_area(in, buf, len, at, 44, 40, 44);
	if (at + STO_HDR_BYTES > len)
		return;
	uint8_t *h = buf + at;
	uint32_t body = sto_get32(h + 12);
	if (!crc_patched && body <= len - at - STO_HDR_BYTES)
		sto_put32(h + 40, sto_crc32c(h + STO_HDR_BYTES, body));
	sto_put32(h + 44, sto_crc32c(h, 44));
	spill(path, buf, len);
}

static void op_record(struct in *in, const char *path)
{
	uint16_t r = u16(in);
	size_t len;
	uint8_t *buf = slurp(path, &len);
	if (len < STO_IDX_BYTES) {
		u8(in), u8(in);
		return;
	}
	size_t at = (size_t)(r % (len / STO_IDX_BYTES)) * STO_IDX_BYTES;
	patch_area(in, buf, len, at, 28, 0, 0);
	sto_put32(buf + at + 28, sto_crc32c(buf + at, 28));
	spill(path, buf, len);
}

static void op_state(struct in *in, const char *path)
{
	size_t len;
	uint8_t *buf = slurp(path, &len);
	patch_area(in, buf, len, 0, 44, 0, 0);
	if (len >= STO_STATE_BYTES && sto_get32(buf + 4) == 1)
		sto_put32(buf + 28, sto_crc32c(buf, 28));
	else if (len >= STO_STATE_V2_BYTES)
		sto_put32(buf + 44, sto_crc32c(buf, 44));
	spill(path, buf, len);
}

static void op_checkpoint(struct in *in, const char *path)
{
	size_t at = u8(in) & 1 ? STO_CKPT_SLOT1_OFFSET : 0, len;
	uint8_t *buf = slurp(path, &len);
	patch_area(in, buf, len, at, 28, 0, 0);
	if (at + STO_CKPT_SLOT_BYTES <= len) {
		sto_put32(buf + at + 28, sto_crc32c(buf + at, 28));
		spill(path, buf, len);
	}
}

static void op_create(struct in *in, const char *member, const struct files *f)
{
	uint8_t kind = u8(in) % 3, num = u8(in);
	uint16_t size = u16(in);
	const char *from = f->path[u8(in) % f->n];
	char path[1100];
	if (kind == 0)
		snprintf(path, sizeof(path), "%s/data/%020" PRIu64, member, (uint64_t)num * 4096);
	else if (kind == 1)
		snprintf(path, sizeof(path), "%s/index/%020" PRIu64, member, (uint64_t)num * 4096);
	else
		snprintf(path, sizeof(path), "%s/state.tmp", member);
	if (strcmp(path, from) != 0)
		copy_file(from, path, size);
	(void)truncate(path, size);
}

static void damage(struct in *in)
{
	char member[1024];
	snprintf(member, sizeof(member), "%s/%s/%s", work, GROUP, SELF);
	struct files *f = malloc(sizeof(*f));
	FZ_CHECK(f != NULL);
	for (uint32_t ops = 0; in->n > 0 && ops < 64; ops++) {
		list_files(f, member);
		uint8_t op = u8(in), sel = u8(in);
		const char *any = f->path[sel % f->n];
		const char *data = f->n_data ? f->path[f->data0 + sel % f->n_data] : NULL;
		const char *index = f->n_index ? f->path[f->index0 + sel % f->n_index] : NULL;
		switch (op % 8) {
		case 0: op_patch(in, any); break;
		case 1: op_truncate(in, any); break;
		case 2:
			if (data != NULL)
				op_entry(in, data);
			break;
		case 3:
			if (index != NULL)
				op_record(in, index);
			break;
		case 4: op_state(in, f->path[0]); break;
		case 5: op_checkpoint(in, f->path[1]); break;
		case 6: (void)unlink(any); break;
		case 7: op_create(in, member, f); break;
		}
	}
	free(f);
}

/* ---- opening what is left ------------------------------------------------------------- */

/* Reads every entry; false when one failed its read (found damaged). */
static bool read_all(struct sto *s)
{
	bool all = true;
	uint64_t first = sto_first_index(s), last = sto_last_index(s);
	FZ_CHECK(first >= 1 && first <= last + 1);
	for (uint64_t i = first; i <= last; i++) {
		struct sto_view v;
		struct dl_errctx err = {{0}};
		int rc = sto_read(s, i, body_buf, sizeof(body_buf), &v, &err);
		if (rc != DL_OK) {
			if (getenv("FUZZ_VERBOSE") != NULL)
				fprintf(stderr, "read %" PRIu64 ": %s: %s\n", i, dl_strerror(rc),
				        err.msg);
			FZ_CHECK(rc == DL_ECORRUPT);
			FZ_CHECK(err.msg[0] != '\0');
			all = false;
			continue;
		}
		FZ_CHECK(v.len <= 1024 && (v.len == 0 || v.data != NULL));
		uint64_t t;
		FZ_CHECK(sto_term_at(s, i, &t) && t == v.term);
		FZ_CHECK(sto_entry_bytes(s, i) == v.len);
	}
	struct sto_view v;
	FZ_CHECK(sto_read(s, last + 1, body_buf, sizeof(body_buf), &v, NULL) == DL_ERANGE);
	return all;
}

/* The next entry appends, syncs and reads back, unless the log already
 * ends at STO_MAX_INDEX: then the append is refused with DL_ERANGE and
 * nothing changes. Returns the new last. */
static uint64_t append_one(struct sto *s)
{
	uint64_t last = sto_last_index(s);
	struct sto_info info;
	sto_get_info(s, &info);
	uint64_t term = info.last_term > 1 ? info.last_term : 1;
	static const char body[] = "after recovery";
	struct sto_entry e = {.term = term, .data = body, .len = sizeof(body), .type = 0};
	struct dl_errctx err = {{0}};
	int rc = sto_append(s, last + 1, &e, 1, &err);
	if (last >= STO_MAX_INDEX) {
		FZ_CHECK(rc == DL_ERANGE && sto_last_index(s) == last);
		return last;
	}
	if (rc != DL_OK)
		fprintf(stderr, "append after recovery: %s: %s\n", dl_strerror(rc), err.msg);
	FZ_CHECK(rc == DL_OK);
	FZ_CHECK(sto_sync(s, &err) == DL_OK);
	struct sto_view v;
	FZ_CHECK(sto_read(s, last + 1, body_buf, sizeof(body_buf), &v, &err) == DL_OK);
	FZ_CHECK(v.len == sizeof(body) && memcmp(v.data, body, sizeof(body)) == 0);
	return last + 1;
}

static void open_damaged(uint8_t opts, uint64_t repair_from)
{
	struct sto_config cfg;
	config(&cfg, work);
	cfg.verify = opts & 1 ? STO_VERIFY_ALL : STO_VERIFY_TAIL;
	cfg.repair_from = repair_from;
	struct sto *s = NULL;
	struct dl_errctx err = {{0}};
	int rc = sto_open(&cfg, NULL, &s, &err);
	if (rc != DL_OK) {
		if (getenv("FUZZ_VERBOSE") != NULL)
			fprintf(stderr, "open: %s: %s\n", dl_strerror(rc), err.msg);
		FZ_CHECK(s == NULL);
		FZ_CHECK(rc == DL_ECORRUPT || rc == DL_ECONFIG || rc == DL_EIO);
		FZ_CHECK(err.msg[0] != '\0');
		return;
	}
	struct sto_info info;
	sto_get_info(s, &info);
	FZ_CHECK(info.first_index <= info.last_index + 1);
	FZ_CHECK(sto_recovered_commit(s) <= info.last_index);
	struct sto_hard hs;
	bool afresh;
	sto_get_hard_state(s, &hs, &afresh);
	FZ_CHECK(!(info.recovered_cut || info.repaired_from) || !hs.voter);
	bool whole = read_all(s);
	uint64_t last = append_one(s);
	sto_close(s);

	/* What it left opens again as it was, plus the entry. */
	cfg.repair_from = 0;
	s = NULL;
	rc = sto_open(&cfg, NULL, &s, &err);
	if (rc != DL_OK)
		fprintf(stderr, "reopen: %s: %s\n", dl_strerror(rc), err.msg);
	FZ_CHECK(rc == DL_OK || (rc == DL_ECORRUPT && !whole));
	if (rc != DL_OK)
		return;
	sto_get_info(s, &info);
	FZ_CHECK(!info.recovered_cut);
	FZ_CHECK(info.last_index == last);
	sto_close(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	setup();
	fz_rmtree(work);
	src_len = strlen(pristine);
	FZ_CHECK(nftw(pristine, copy_one, 16, FTW_PHYS) == 0);
	struct in in = {data, size};
	uint8_t opts = u8(&in);
	uint64_t repair_from = opts & 2 ? u8(&in) : 0;
	damage(&in);
	open_damaged(opts, repair_from);
	return 0;
}
