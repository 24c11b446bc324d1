/*
 * tt.h - a tiny test runner for the concurrent suites.
 *
 * Criterion cannot run under ThreadSanitizer (its inheritable arena fails
 * to map: Criterion issue #274), so the suites that must also run under
 * TSan (runtime, transport, flush thread) are plain programs built on this
 * header. A failed check prints file, line and message and ends the
 * program at once (threads may be mid-flight; continuing would only add
 * noise), after the summary line "NAME: N passed, 1 failed".
 *
 * TT_ONLY=NAME runs one test, TT_SKIP=NAME all but one; a NAME ending in
 * '*' is a prefix (TT_ONLY='tls_*').
 *
 *   static void groups_elect(void) { tt_assert(x == 1, "x is %d", x); }
 *   int main(void)
 *   {
 *           static const struct tt_test tests[] = {TT_T(groups_elect)};
 *           return tt_run("runtime", tests, TT_COUNT(tests));
 *   }
 *
 * TT_T(fn) names the test after its function, so a name is typed once.
 */
#ifndef DLEDGER_TEST_TT_H
#define DLEDGER_TEST_TT_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tt_test {
	const char *name;
	void (*fn)(void);
};

extern const char *tt_suite;
extern unsigned tt_passed;

#define TT_COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define TT_T(fn)    {#fn, fn}

#define tt_assert(cond, ...)                                                              \
	do {                                                                              \
		if (!(cond)) {                                                            \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond); \
			fprintf(stderr, " " __VA_ARGS__);                                 \
			fputc('\n', stderr);                                              \
			printf("%s: %u passed, 1 failed\n", tt_suite, tt_passed);         \
			fflush(stdout);                                                   \
			exit(1);                                                          \
		}                                                                         \
	} while (0)

/* Whether `name` is `pattern`, or starts with it when it ends in '*'. */
static inline int tt_match(const char *pattern, const char *name)
{
	size_t n = strlen(pattern);
	if (n > 0 && pattern[n - 1] == '*')
		return strncmp(pattern, name, n - 1) == 0;
	return strcmp(pattern, name) == 0;
}

static inline int tt_run(const char *suite, const struct tt_test *tests, size_t n)
{
	tt_suite = suite;
	const char *only = getenv("TT_ONLY"); /* run one test by name */
	const char *skip = getenv("TT_SKIP"); /* or all but one */
	for (size_t i = 0; i < n; i++) {
		if ((only != NULL && !tt_match(only, tests[i].name)) ||
		    (skip != NULL && tt_match(skip, tests[i].name)))
			continue;
		printf("[RUN ] %s::%s\n", suite, tests[i].name);
		fflush(stdout);
		tests[i].fn();
		printf("[PASS] %s::%s\n", suite, tests[i].name);
		tt_passed++;
	}
	printf("%s: %u passed, 0 failed\n", suite, tt_passed);
	return 0;
}

#define TT_MAIN_STATE                 \
	const char *tt_suite = "tests"; \
	unsigned tt_passed

#endif
