/*
 * bench.h - what the dledger-bench subcommands share: a clock, a latency
 * histogram, and option parsing helpers. Single-threaded helpers; a
 * histogram is owned by one thread at a time.
 */
#ifndef DLEDGER_BENCH_H
#define DLEDGER_BENCH_H

#include <stdbool.h>
#include <stdint.h>

uint64_t bench_now_ns(void);

/* Log-linear histogram of nanosecond values: 32 sub-buckets per power of
 * two, so a percentile is within about 3% of the true value. */
#define BENCH_HIST_SUB     32
#define BENCH_HIST_BUCKETS (64 * BENCH_HIST_SUB)
struct bench_hist {
	uint64_t count;
	uint64_t max_ns;
	uint64_t n[BENCH_HIST_BUCKETS];
};

void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* Value at quantile q in [0, 1] (0 when empty). */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);

/* Parses an unsigned number with an optional k/m/g suffix (powers of
 * 1024). Returns false on garbage. */
bool bench_parse_u64(const char *s, uint64_t *out);

int bench_store_main(int argc, char **argv);
int bench_crc_main(int argc, char **argv);
int bench_append_main(int argc, char **argv);

#endif
