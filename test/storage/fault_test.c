/*
 * fault_test.c - a fault layer that drops unsynced writes.
 *
 * The store's test hooks tell us each range it relies on being durable
 * after an fdatasync, and each directory fsync. A shadow keeps, per inode,
 * the bytes as they were when last synced and, per directory, the listing
 * at its last fsync. A crash image is built from the shadow: files that a
 * directory fsync listed, each 512-byte sector either as last synced or
 * (with probability keep) as in the page cache now, since the kernel may
 * have written any of it back. Then the image is opened and checked:
 * no entry reported durable (and not truncated since) is lost, nothing
 * that was never appended appears, and the state is one that was saved,
 * not older than the last one reported durable.
 *
 * Threads: the hooks run on the flush thread; the shadow and the reports
 * are guarded by F.mu. The test thread owns the store.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage/sto_internal.h"
#include "test/storage/helpers.h"

#define MAX_FILES   512
#define MAX_NAMES   256
#define MAX_LOG     4096
#define MAX_REPORTS 8192
#define MAX_STATES  256

struct sh_file {
	ino_t ino;
	uint8_t *data;
	uint64_t size;
};

struct sh_dir {
	char path[1024];
	int n;
	char names[MAX_NAMES][256];
	ino_t inos[MAX_NAMES];
};

static struct {
	pthread_mutex_t mu;
	struct sh_file files[MAX_FILES];
	int nfiles;
	struct sh_dir dirs[16];
	int ndirs;
	uint64_t rep_index[MAX_REPORTS], rep_term[MAX_REPORTS];
	int nreps;
	bool st_reported;
	uint64_t st_term;
} F = {.mu = PTHREAD_MUTEX_INITIALIZER};

static struct sh_file *sh_file(ino_t ino)
{
	for (int i = 0; i < F.nfiles; i++)
		if (F.files[i].ino == ino)
			return &F.files[i];
	cr_assert_lt(F.nfiles, MAX_FILES);
	struct sh_file *f = &F.files[F.nfiles++];
	memset(f, 0, sizeof(*f));
	f->ino = ino;
	return f;
}

static void hook_file(void *ctx, const char *path, uint64_t lo, uint64_t hi)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	int fd = open(path, O_RDONLY);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0) {
		struct sh_file *f = sh_file(st.st_ino);
		uint64_t size = (uint64_t)st.st_size;
		if (size > f->size) {
			f->data = realloc(f->data, size);
			memset(f->data + f->size, 0, size - f->size);
		}
		f->size = size > f->size ? size : f->size;
		if (hi > size)
			hi = size;
		if (lo < hi)
			cr_assert_eq(pread(fd, f->data + lo, hi - lo, (off_t)lo),
			             (ssize_t)(hi - lo));
	}
	if (fd >= 0)
		close(fd);
	pthread_mutex_unlock(&F.mu);
}

static void hook_dir(void *ctx, const char *path)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	struct sh_dir *d = NULL;
	for (int i = 0; i < F.ndirs; i++)
		if (strcmp(F.dirs[i].path, path) == 0)
			d = &F.dirs[i];
	if (d == NULL) {
		cr_assert_lt(F.ndirs, 16);
		d = &F.dirs[F.ndirs++];
		snprintf(d->path, sizeof(d->path), "%s", path);
	}
	d->n = 0;
	DIR *dir = opendir(path);
	struct dirent *de;
	while (dir != NULL && (de = readdir(dir)) != NULL) {
		char p[2048];
		struct stat st;
		snprintf(p, sizeof(p), "%s/%s", path, de->d_name);
		if (lstat(p, &st) != 0 || !S_ISREG(st.st_mode))
			continue;
		cr_assert_lt(d->n, MAX_NAMES);
		snprintf(d->names[d->n], sizeof(d->names[0]), "%s", de->d_name);
		d->inos[d->n++] = st.st_ino;
	}
	if (dir != NULL)
		closedir(dir);
	pthread_mutex_unlock(&F.mu);
}

static void on_durable(void *ctx, const struct sto_durable *d)
{
	(void)ctx;
	pthread_mutex_lock(&F.mu);
	cr_assert_eq(d->error, 0);
	if (F.nreps < MAX_REPORTS) {
		F.rep_index[F.nreps] = d->index;
		F.rep_term[F.nreps] = d->term;
		F.nreps++;
	}
	if (d->state_durable) {
		F.st_reported = true;
		F.st_term = d->state_term;
	}
	pthread_mutex_unlock(&F.mu);
}

static struct sto_test_hooks hooks = {.file_synced = hook_file, .dir_synced = hook_dir};

static void reset_shadow(void)
{
	for (int i = 0; i < F.nfiles; i++)
		free(F.files[i].data);
	F.nfiles = F.ndirs = F.nreps = 0;
	F.st_reported = false;
	F.st_term = 0;
}

/* ------------------------------------------------------------ the model */

static uint64_t rnd_state;
static uint64_t rnd(void)
{
	uint64_t z = (rnd_state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

struct model {
	uint64_t last, term, commit;
	uint64_t terms[MAX_LOG + 1];  /* the log now */
	uint8_t ever[MAX_LOG + 1][8]; /* terms ever appended at an index (small) */
	int never;
	uint64_t saved_terms[MAX_STATES];
	uint32_t saved_votes[MAX_STATES];
	int nsaved;
};

static uint32_t body_len(uint64_t index, uint64_t term)
{
	return th_len(index * 31 + term, 200);
}

static void m_append(struct sto *s, struct model *m, uint32_t n)
{
	static uint8_t bufs[8][256];
	struct sto_entry e[8];
	for (uint32_t k = 0; k < n; k++) {
		uint64_t i = m->last + 1 + k;
		uint32_t len = body_len(i, m->term);
		th_body(i, m->term, bufs[k], len);
		e[k] = (struct sto_entry){.term = m->term, .data = bufs[k], .len = len};
	}
	struct dl_errctx err;
	int rc = sto_append(s, m->last + 1, e, n, &err);
	cr_assert_eq(rc, DL_OK, "%s", err.msg);
	for (uint32_t k = 0; k < n; k++) {
		uint64_t i = ++m->last;
		m->terms[i] = m->term;
		cr_assert_lt(m->term, 8);
		m->ever[i][m->term] = 1;
	}
}

static void run_ops(struct sto *s, struct model *m, int steps)
{
	struct dl_errctx err;
	for (int step = 0; step < steps; step++) {
		uint64_t r = rnd() % 100;
		if (r < 55 && m->last + 8 < MAX_LOG) {
			m_append(s, m, 1 + (uint32_t)(rnd() % 8));
		} else if (r < 62 && m->last > m->commit && m->term < 7) {
			uint64_t k = m->commit + rnd() % (m->last - m->commit);
			cr_assert_eq(sto_truncate_after(s, k, &err), DL_OK, "%s", err.msg);
			m->last = k;
			m->term++; /* a new leader's entries follow a truncation */
		} else if (r < 72) {
			uint64_t di, dt;
			sto_durable(s, &di, &dt);
			if (di > m->commit && di <= m->last && m->terms[di] == dt) {
				sto_set_commit(s, di);
				m->commit = di;
			}
		} else if (r < 77 && m->nsaved < MAX_STATES) {
			uint64_t t = m->nsaved ? m->saved_terms[m->nsaved - 1] + rnd() % 2 : 1;
			uint32_t v = (uint32_t)(rnd() % 5);
			cr_assert_eq(sto_save_state(s, t, v, &err), DL_OK);
			m->saved_terms[m->nsaved] = t;
			m->saved_votes[m->nsaved++] = v;
		} else if (r < 82) {
			cr_assert_eq(sto_sync(s, &err), DL_OK, "%s", err.msg);
		}
	}
}

/* ------------------------------------------------------- the crash image */

static void image_file(const char *dst_dir, const char *src_dir, const char *name, ino_t ino,
                       double keep)
{
	char src[2048], dst[2048];
	snprintf(src, sizeof(src), "%s/%s", src_dir, name);
	snprintf(dst, sizeof(dst), "%s/%s", dst_dir, name);
	struct sh_file *f = NULL;
	for (int i = 0; i < F.nfiles; i++)
		if (F.files[i].ino == ino)
			f = &F.files[i];
	/* the page cache now, if that inode is still there */
	uint8_t *cur = NULL;
	uint64_t cur_size = 0;
	struct stat st;
	int fd = open(src, O_RDONLY);
	if (fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == ino) {
		cur_size = (uint64_t)st.st_size;
		cur = calloc(1, cur_size + 1);
		cr_assert_eq(pread(fd, cur, cur_size, 0), (ssize_t)cur_size);
	}
	if (fd >= 0)
		close(fd);
	uint64_t size = cur != NULL ? cur_size : (f ? f->size : 0);
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	cr_assert(out >= 0);
	cr_assert_eq(ftruncate(out, (off_t)size), 0);
	for (uint64_t off = 0; off < size; off += 512) {
		uint64_t n = size - off < 512 ? size - off : 512;
		uint8_t sec[512] = {0};
		bool from_cache =
		        cur != NULL && off < cur_size && (double)(rnd() % 1000) < keep * 1000;
		if (from_cache)
			memcpy(sec, cur + off, n);
		else if (f != NULL && off < f->size)
			memcpy(sec, f->data + off, (f->size - off < n ? f->size - off : n));
		bool zero = true;
		for (uint64_t i = 0; i < n && zero; i++)
			zero = sec[i] == 0;
		if (!zero)
			cr_assert_eq(pwrite(out, sec, n, (off_t)off), (ssize_t)n);
	}
	close(out);
	free(cur);
}

static void build_image(const char *real_base, const char *img_base, double keep)
{
	const char *subs[] = {"", "/data", "/index"};
	for (int k = 0; k < 3; k++) {
		char src[1024], dst[1024];
		snprintf(src, sizeof(src), "%s/%s/%s%s", real_base, TH_GROUP, TH_SELF, subs[k]);
		snprintf(dst, sizeof(dst), "%s/%s/%s%s", img_base, TH_GROUP, TH_SELF, subs[k]);
		char mk[1200];
		snprintf(mk, sizeof(mk), "mkdir -p '%s'", dst);
		cr_assert_eq(system(mk), 0);
		for (int i = 0; i < F.ndirs; i++) {
			if (strcmp(F.dirs[i].path, src) != 0)
				continue;
			for (int j = 0; j < F.dirs[i].n; j++)
				image_file(dst, src, F.dirs[i].names[j], F.dirs[i].inos[j], keep);
		}
	}
}

static void check_image(const char *img_base, const struct model *m, uint64_t max_valid,
                        bool st_reported, uint64_t st_term)
{
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, img_base);
	cfg.segment_bytes = 8192;
	struct sto *s = NULL;
	struct dl_errctx err = {{0}};
	int rc = sto_open(&cfg, NULL, &s, &err);
	cr_assert_eq(rc, DL_OK, "the crash image opens: %s", err.msg);
	uint64_t last = sto_last_index(s);
	cr_assert_geq(last, max_valid, "entries reported durable survive (last %" PRIu64 ")", last);
	static uint8_t buf[4096], want[4096];
	for (uint64_t i = 1; i <= last; i++) {
		struct sto_view v;
		cr_assert_eq(sto_read(s, i, buf, sizeof(buf), &v, &err), DL_OK, "%s", err.msg);
		if (i <= max_valid)
			cr_assert_eq(v.term, m->terms[i], "entry %" PRIu64 " is the durable one",
			             i);
		cr_assert(v.term < 8 && m->ever[i][v.term],
		          "entry %" PRIu64 " term %" PRIu64 " was appended once", i, v.term);
		uint32_t len = body_len(i, v.term);
		th_body(i, v.term, want, len);
		cr_assert(v.len == len && memcmp(v.data, want, len) == 0, "entry %" PRIu64 " body",
		          i);
	}
	uint64_t t;
	uint32_t vote;
	sto_get_state(s, &t, &vote);
	bool known = t == 0 && vote == 0;
	for (int i = 0; i < m->nsaved; i++)
		known |= m->saved_terms[i] == t && m->saved_votes[i] == vote;
	cr_assert(known, "state (%" PRIu64 ", %u) was saved once", t, vote);
	if (st_reported)
		cr_assert_geq(t, st_term, "a state reported durable survives");
	sto_close(s);
}

static void one_run(uint64_t seed, bool with_flusher, double keep)
{
	rnd_state = seed;
	reset_shadow();
	sto_test_hooks = &hooks;
	char real[512], img[512];
	snprintf(real, sizeof(real), "%s/real%" PRIu64, th_dir, seed);
	snprintf(img, sizeof(img), "%s/img%" PRIu64, th_dir, seed);
	struct sto_flusher *fl = NULL;
	if (with_flusher) {
		struct sto_flusher_config fc;
		sto_flusher_config_defaults(&fc);
		struct dl_errctx err;
		cr_assert_eq(sto_flusher_start(&fc, &fl, &err), DL_OK);
	}
	struct sto_config cfg;
	th_config(&cfg, STO_TYPE_MMAP, real);
	cfg.segment_bytes = 8192;
	cfg.checkpoint_interval_ms = seed % 3 == 0 ? 1000 : 0; /* index synced lazily or often */
	cfg.on_durable = on_durable;
	struct sto *s = th_open(&cfg, fl);
	static struct model m;
	memset(&m, 0, sizeof(m));
	m.term = 1;
	run_ops(s, &m, 150 + (int)(rnd() % 150));
	/* crash: freeze the owner, snapshot shadow and reports together */
	pthread_mutex_lock(&F.mu);
	uint64_t max_valid = 0;
	for (int i = 0; i < F.nreps; i++) {
		uint64_t idx = F.rep_index[i];
		if (idx <= m.last && idx > max_valid && m.terms[idx] == F.rep_term[i])
			max_valid = idx;
	}
	bool st_rep = F.st_reported;
	uint64_t st_term = F.st_term;
	build_image(real, img, keep);
	pthread_mutex_unlock(&F.mu);
	sto_close(s);
	sto_flusher_stop(fl);
	sto_test_hooks = NULL;
	check_image(img, &m, max_valid, st_rep, st_term);
	th_rmdir(real);
	th_rmdir(img);
}

TestSuite(fault, .init = th_setup, .fini = th_teardown);

Test(fault, dropping_unsynced_writes_loses_no_entry_reported_durable, .timeout = 120)
{
	for (uint64_t seed = 1; seed <= 9; seed++)
		one_run(seed, true, 0.0);
}

Test(fault, keeping_some_unsynced_sectors_loses_nothing_reported_and_invents_nothing,
     .timeout = 120)
{
	for (uint64_t seed = 101; seed <= 109; seed++)
		one_run(seed, seed % 2 == 0, seed % 4 < 2 ? 0.5 : 0.9);
}

/* DLEDGER_FAULT_SEEDS=N runs N more seeds (a longer soak; off by default). */
Test(fault, a_soak_over_more_seeds_when_asked, .timeout = 3600)
{
	const char *n = getenv("DLEDGER_FAULT_SEEDS");
	uint64_t count = n != NULL ? strtoull(n, NULL, 10) : 0;
	for (uint64_t seed = 1000; seed < 1000 + count; seed++)
		one_run(seed, seed % 2 == 0, (double)(seed % 5) / 4.0);
}
