#include "test/storage/helpers.h"

/* Built twice: with Criterion for the unit suites, and with TH_TT for the
 * plain programs that also run under ThreadSanitizer (test/lib/tt.h). */
#ifdef TH_TT
#include "test/lib/tt.h"
#define TH_ASSERT(cond, ...) tt_assert(cond, __VA_ARGS__)
#else
#include <criterion/criterion.h>
#define TH_ASSERT(cond, ...) cr_assert(cond, __VA_ARGS__)
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void th_mkdtemp(char *out, size_t n)
{
	snprintf(out, n, "/tmp/dledger-sto-test-XXXXXX");
	TH_ASSERT(mkdtemp(out) != NULL, "mkdtemp");
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void th_rmdir(const char *dir)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

char th_dir[256];

void th_setup(void)
{
	th_mkdtemp(th_dir, sizeof(th_dir));
}

void th_teardown(void)
{
	if (th_dir[0] != '\0')
		th_rmdir(th_dir);
	th_dir[0] = '\0';
}

static const char *copy_dst;
static size_t copy_src_len;

static int copy_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)ftw;
	char dst[4096];
	snprintf(dst, sizeof(dst), "%s%s", copy_dst, path + copy_src_len);
	if (flag == FTW_D)
		return mkdir(dst, 0755) == 0 || errno == EEXIST ? 0 : -1;
	if (flag != FTW_F)
		return 0;
	int in = open(path, O_RDONLY), out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	TH_ASSERT(in >= 0 && out >= 0, "copy %s", path);
	static char buf[1 << 16];
	off_t off = 0;
	ssize_t k;
	while ((k = read(in, buf, sizeof(buf))) > 0) {
		/* keep holes as holes: small files here, but segments are sparse */
		bool zero = true;
		for (ssize_t i = 0; i < k && zero; i++)
			zero = buf[i] == 0;
		if (!zero)
			TH_ASSERT(pwrite(out, buf, (size_t)k, off) == k, "write");
		off += k;
	}
	TH_ASSERT(ftruncate(out, st->st_size) == 0, "ftruncate");
	close(in);
	close(out);
	return 0;
}

void th_copy_tree(const char *from, const char *to)
{
	copy_dst = to;
	copy_src_len = strlen(from);
	TH_ASSERT(nftw(from, copy_one, 16, FTW_PHYS) == 0, "copy %s to %s", from, to);
}

void th_config(struct sto_config *cfg, enum sto_type type, const char *base_dir)
{
	sto_config_defaults(cfg);
	cfg->type = type;
	cfg->base_dir = base_dir;
	cfg->group = TH_GROUP;
	cfg->self_id = TH_SELF;
	cfg->segment_bytes = 4096;
	cfg->index_segment_bytes = 4096;
	cfg->max_entry_bytes = 1024;
	cfg->prealloc_max_bytes = 64 << 10;
	cfg->disk_full_ratio = 1.0;
	cfg->disk_space_ratio_to_force_clean = 1.0;
}

struct sto *th_open(const struct sto_config *cfg, struct sto_flusher *fl)
{
	struct sto *s = NULL;
	struct dl_errctx err = {{0}};
	int rc = sto_open(cfg, fl, &s, &err);
	TH_ASSERT(rc == DL_OK, "sto_open: %s: %s", dl_strerror(rc), err.msg);
	return s;
}

int th_open_fails(const struct sto_config *cfg, char *msg, size_t n)
{
	struct sto *s = NULL;
	struct dl_errctx err = {{0}};
	int rc = sto_open(cfg, NULL, &s, &err);
	TH_ASSERT(rc != DL_OK && s == NULL, "sto_open succeeded where it should fail");
	snprintf(msg, n, "%s", err.msg);
	return rc;
}

uint32_t th_len(uint64_t index, uint32_t max_len)
{
	return (uint32_t)((index * 7919u + 13u) % (max_len + 1u));
}

void th_body(uint64_t index, uint64_t term, uint8_t *out, uint32_t len)
{
	uint64_t x = index * 0x9e3779b97f4a7c15ull ^ term * 0xbf58476d1ce4e5b9ull;
	for (uint32_t i = 0; i < len; i++) {
		x ^= x >> 31;
		x *= 0x94d049bb133111ebull;
		out[i] = (uint8_t)(x >> 56);
	}
}

void th_append_range(struct sto *s, uint64_t first, uint64_t last, uint64_t term, uint32_t max_len)
{
	static _Thread_local uint8_t bufs[16][4096];
	struct sto_entry e[16];
	uint64_t i = first;
	while (i <= last) {
		uint32_t n = 0;
		while (n < 16 && i + n <= last) {
			uint32_t len = th_len(i + n, max_len);
			TH_ASSERT(len <= sizeof(bufs[0]), "length");
			th_body(i + n, term, bufs[n], len);
			e[n] = (struct sto_entry){.term = term,
			                          .data = bufs[n],
			                          .len = len,
			                          .type = (uint8_t)((i + n) % 2)};
			n++;
		}
		struct dl_errctx err = {{0}};
		int rc = sto_append(s, i, e, n, &err);
		TH_ASSERT(rc == DL_OK, "append %" PRIu64 ": %s: %s", i, dl_strerror(rc), err.msg);
		i += n;
	}
}

void th_check_range(struct sto *s, uint64_t first, uint64_t last, uint64_t term, uint32_t max_len)
{
	static _Thread_local uint8_t want[4096], buf[4096];
	for (uint64_t i = first; i <= last; i++) {
		struct sto_view v;
		struct dl_errctx err = {{0}};
		int rc = sto_read(s, i, buf, sizeof(buf), &v, &err);
		TH_ASSERT(rc == DL_OK, "read %" PRIu64 ": %s: %s", i, dl_strerror(rc), err.msg);
		uint32_t len = th_len(i, max_len);
		th_body(i, term, want, len);
		TH_ASSERT(v.len == len, "entry %" PRIu64 " length", i);
		TH_ASSERT(v.term == term, "entry %" PRIu64 " term", i);
		TH_ASSERT(v.type == i % 2, "entry %" PRIu64 " type", i);
		TH_ASSERT(len == 0 || memcmp(v.data, want, len) == 0, "entry %" PRIu64 " body", i);
		uint64_t t;
		TH_ASSERT(sto_term_at(s, i, &t) && t == term, "term_at %" PRIu64, i);
		TH_ASSERT(sto_entry_bytes(s, i) == len, "entry_bytes %" PRIu64, i);
	}
}

void th_seg_path(const char *base_dir, uint64_t base, char *out, size_t n)
{
	snprintf(out, n, "%s/%s/%s/data/%020" PRIu64, base_dir, TH_GROUP, TH_SELF, base);
}

void th_idx_path(const char *base_dir, uint64_t base, char *out, size_t n)
{
	snprintf(out, n, "%s/%s/%s/index/%020" PRIu64, base_dir, TH_GROUP, TH_SELF, base);
}

uint64_t th_file_size(const char *path)
{
	struct stat st;
	TH_ASSERT(stat(path, &st) == 0, "stat %s", path);
	return (uint64_t)st.st_size;
}

void th_flip_bit(const char *path, uint64_t off, int bit)
{
	int fd = open(path, O_RDWR);
	TH_ASSERT(fd >= 0, "open %s", path);
	uint8_t b;
	TH_ASSERT(pread(fd, &b, 1, (off_t)off) == 1, "read");
	b ^= (uint8_t)(1u << bit);
	TH_ASSERT(pwrite(fd, &b, 1, (off_t)off) == 1, "write");
	close(fd);
}
