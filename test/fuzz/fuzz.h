/*
 * fuzz.h - what the libFuzzer targets of test/fuzz/ share: a check that
 * stays on in every build and says which one failed (libFuzzer then saves
 * the input), and a per-process scratch directory.
 */
#ifndef DLEDGER_TEST_FUZZ_H
#define DLEDGER_TEST_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An oracle of the target (not of the code under test's own asserts):
 * prints the expression and aborts, which libFuzzer reports as a crash. */
#define FZ_CHECK(cond)                                                                             \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: fuzz check failed: %s\n", __FILE__, __LINE__,      \
			        #cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A directory of this process (mkdtemp under $TMPDIR, else /dev/shm when
 * it exists, else /tmp), made at the first call and removed at exit. Its
 * path, never NULL (aborts when it cannot be made). */
const char *fz_scratch_dir(void);
/* rm -r of `path` (no error when it does not exist). */
void fz_rmtree(const char *path);

#endif
