/*
 * cluster_bench.h - internal to the cluster benchmark: what the driver
 * (cluster_bench.c) hands to the report (cluster_report.c: the text report,
 * the CSV, the CDF files, the gnuplot plots). One thread.
 */
#ifndef DLEDGER_BENCH_CLUSTER_BENCH_H
#define DLEDGER_BENCH_CLUSTER_BENCH_H

#include <stdbool.h>
#include <stdint.h>

#include "bench/bench.h"

#define CB_LABEL_MAX 48

/* One run's shape and load. groups 0: an idle run (no load, node figures
 * only). */
struct cb_row {
	char label[CB_LABEL_MAX];
	uint32_t groups, idle_groups;
	uint32_t payload, clients, inflight, batch;
	uint32_t rate_pct; /* sweep: open loop at this % of the best closed-loop rate so far */
	uint64_t rate_rps; /* open loop when > 0 */
	uint32_t heartbeat_ms; /* of the spawned cluster; 0: --heartbeat-ms */
	bool tls; /* mutual TLS between the nodes and for the load */
};

/* The disk's figures, when --calibrate measured them. */
struct cb_calib {
	bool done;
	struct bench_disk d;
};

/* What one run measured. A figure that could not be had is negative. */
struct cb_result {
	struct cb_row row;
	bool spawned, flush_async, store_memory;
	uint32_t duration_s, warmup_s;
	double secs; /* the measured window */
	struct bench_load_result load;
	double cpu_s[BENCH_NODES];
	double peak_rss_mb[BENCH_NODES];
	double rss_mb[BENCH_NODES];
	double bench_cpu_s;
	double frames_per_s, messages_per_s, fsyncs_per_s;
	double store_disk_mb;
	char cdf_file[256]; /* basename next to the CSV; "" if none */
};

/* Text report of one run (stdout). */
void cb_print_run(const struct cb_result *r, const struct cb_calib *cal, unsigned n, unsigned of);
/* One line per run (stdout). */
void cb_print_table(const struct cb_result *rs, unsigned n, const struct cb_calib *cal);
/* For each run with TLS that follows the same shape in plaintext: what TLS
 * costs (stdout). */
void cb_print_tls_cost(const struct cb_result *rs, unsigned n);

/* Checks that `path` can take rows (creating its directory and the header
 * if new; refusing a file with another header). Returns 0, or 1 with a
 * message on stderr. */
int cb_csv_check(const char *path);
/* Writes the run's CDF file next to the CSV (sets r->cdf_file), then appends
 * its row. Returns 0, or 1 with a message on stderr. */
int cb_csv_append(const char *path, struct cb_result *r, const struct cb_calib *cal);
/* True when gnuplot can be started (from PATH). */
bool cb_have_gnuplot(void);
/* Writes STEM.gp next to the CSV and runs gnuplot on it: STEM-throughput.png
 * and STEM-latency-cdf.png, of the runs in rs. Returns 0, or 1 with a
 * message on stderr. */
int cb_plot(const char *csv_path, const struct cb_result *rs, unsigned n);

#endif
