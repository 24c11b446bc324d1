/*
 * fsutil.c - directories, segment listings, refcounted files, the test
 * hooks of the fault layer. No state of its own; any thread.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "storage/sto_internal.h"

struct sto_test_hooks *sto_test_hooks;

void sto_hook_file_synced(const char *path, uint64_t lo, uint64_t hi)
{
	if (sto_test_hooks != NULL && sto_test_hooks->file_synced != NULL)
		sto_test_hooks->file_synced(sto_test_hooks->ctx, path, lo, hi);
}

void sto_hook_dir_synced(const char *path)
{
	if (sto_test_hooks != NULL && sto_test_hooks->dir_synced != NULL)
		sto_test_hooks->dir_synced(sto_test_hooks->ctx, path);
}

int sto_hook_alloc(const char *path, uint64_t off, uint64_t len)
{
	if (sto_test_hooks == NULL || sto_test_hooks->alloc == NULL)
		return 0;
	return sto_test_hooks->alloc(sto_test_hooks->ctx, path, off, len);
}

int sto_hook_write(const char *path, uint64_t off, uint64_t len)
{
	if (sto_test_hooks == NULL || sto_test_hooks->write == NULL)
		return 0;
	return sto_test_hooks->write(sto_test_hooks->ctx, path, off, len);
}

int sto_hook_sync(const char *path)
{
	if (sto_test_hooks == NULL || sto_test_hooks->sync == NULL)
		return 0;
	return sto_test_hooks->sync(sto_test_hooks->ctx, path);
}

uint64_t sto_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

struct sto_file *sto_file_new(int fd, const char *path)
{
	size_t n = strlen(path) + 1;
	struct sto_file *f = calloc(1, sizeof(*f) + n);
	if (f == NULL)
		return NULL;
	atomic_init(&f->refs, 1);
	f->fd = fd;
	memcpy(f->path, path, n);
	return f;
}

void sto_file_ref(struct sto_file *f)
{
	unsigned old = atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
	STO_ASSERT(old > 0);
}

void sto_file_unref(struct sto_file *f)
{
	if (f == NULL)
		return;
	/* acq_rel: the last owner must see every write of the others before
	 * it closes the descriptor and frees. */
	unsigned old = atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel);
	STO_ASSERT(old > 0);
	if (old == 1) {
		STO_ASSERT(!f->dirty && !f->fl_listed);
		if (f->map != NULL)
			munmap(f->map, f->map_bytes);
		close(f->fd);
		free(f);
	}
}

/* mkdir -p; each directory it creates is made durable in its parent
 * (fsync of the parent) before the next level, so a store's directories
 * survive a crash before anything in them does. Existing ones cost
 * nothing. */
int sto_mkdirs(const char *path, struct dl_errctx *err)
{
	char buf[STO_PATH_MAX];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof(buf))
		return dl_errf(err, DL_EINVAL, "path too long: %s", path);
	memcpy(buf, path, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0755) == 0) {
			int e = sto_fsync_parent(buf);
			if (e != 0)
				return dl_errf(err, DL_EIO, "fsync parent of %s: %s", buf,
				               strerror(e));
		} else if (errno != EEXIST) {
			return dl_errf(err, DL_EIO, "mkdir %s: %s", buf, strerror(errno));
		}
		buf[i] = c;
	}
	return DL_OK;
}

int sto_fsync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int rc = fsync(fd) == 0 ? 0 : errno;
	close(fd);
	if (rc == 0)
		sto_hook_dir_synced(dir);
	return rc;
}

int sto_fsync_parent(const char *path)
{
	char buf[STO_PATH_MAX];
	size_t n = strlen(path);
	if (n >= sizeof(buf))
		return ENAMETOOLONG;
	memcpy(buf, path, n + 1);
	char *slash = strrchr(buf, '/');
	if (slash == NULL)
		return sto_fsync_dir(".");
	*slash = '\0';
	return sto_fsync_dir(buf[0] ? buf : "/");
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool parse_segment_name(const char *name, uint64_t *base)
{
	uint64_t v = 0;
	for (int i = 0; i < STO_SEG_NAME_DIGITS; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		uint64_t d = (uint64_t)(name[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (name[STO_SEG_NAME_DIGITS] != '\0')
		return false;
	*base = v;
	return true;
}

int sto_list_segments(const char *dir, uint64_t **bases, size_t *n, struct dl_errctx *err)
{
	*bases = NULL;
	*n = 0;
	DIR *d = opendir(dir);
	if (d == NULL) {
		if (errno == ENOENT)
			return DL_OK;
		return dl_errf(err, DL_EIO, "opendir %s: %s", dir, strerror(errno));
	}
	size_t cap = 0;
	int rc = DL_OK;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		uint64_t base;
		if (!parse_segment_name(de->d_name, &base))
			continue;
		if (*n == cap) {
			size_t ncap = cap ? cap * 2 : 16;
			uint64_t *nb = realloc(*bases, ncap * sizeof(**bases));
			if (nb == NULL) {
				rc = dl_errf(err, DL_ENOMEM, "listing %s", dir);
				break;
			}
			*bases = nb;
			cap = ncap;
		}
		(*bases)[(*n)++] = base;
	}
	closedir(d);
	if (rc != DL_OK) {
		free(*bases);
		*bases = NULL;
		*n = 0;
		return rc;
	}
	if (*n > 1)
		qsort(*bases, *n, sizeof(**bases), cmp_u64);
	return DL_OK;
}

/* Blocks allocated under `path` (a file, or a directory two levels deep). */
static uint64_t blocks_bytes(const char *path, int depth)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	uint64_t total = (uint64_t)st.st_blocks * 512u;
	if (!S_ISDIR(st.st_mode) || depth > 2)
		return total;
	DIR *d = opendir(path);
	if (d == NULL)
		return total;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		char sub[STO_PATH_MAX];
		int k = snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (k > 0 && (size_t)k < sizeof(sub))
			total += blocks_bytes(sub, depth + 1);
	}
	closedir(d);
	return total;
}

uint64_t sto_path_blocks_bytes(const char *path)
{
	return blocks_bytes(path, 0);
}
