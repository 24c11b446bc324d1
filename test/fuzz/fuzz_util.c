/*
 * fuzz_util.c - the helpers of fuzz.h.
 */
#include "test/fuzz/fuzz.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char scratch[256];

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void fz_rmtree(const char *path)
{
	if (access(path, F_OK) == 0)
		(void)nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_scratch(void)
{
	if (scratch[0] != '\0')
		fz_rmtree(scratch);
}

const char *fz_scratch_dir(void)
{
	if (scratch[0] != '\0')
		return scratch;
	const char *base = getenv("TMPDIR");
	struct stat st;
	if (base == NULL || base[0] == '\0')
		base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp";
	snprintf(scratch, sizeof(scratch), "%s/dledger-fuzz-XXXXXX", base);
	if (mkdtemp(scratch) == NULL) {
		perror(scratch);
		abort();
	}
	atexit(remove_scratch);
	return scratch;
}
