/*
 * bench.h - what the dledger-bench subcommands share: a clock, a latency
 * histogram, option parsing helpers, the disk's own figures, the append load
 * engine (load.c) and the 3-node cluster the cluster benchmark starts
 * (cluster.c).
 *
 * Threads: the histogram and parsing helpers are single-threaded (a
 * histogram is owned by one thread at a time). The load engine and the
 * cluster are driven from one thread; the load's own threads are described
 * in load.c.
 */
#ifndef DLEDGER_BENCH_H
#define DLEDGER_BENCH_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "common/dl_err.h"

uint64_t bench_now_ns(void);

/* Log-linear histogram of nanosecond values: 64 sub-buckets per power of
 * two and the middle of a bucket reported, so a percentile is within 1/128
 * (0.8%) of the true value. Values from 2^44 ns (about 5 hours) up share
 * the last bucket; max_ns stays exact. */
#define BENCH_HIST_SUB     64
#define BENCH_HIST_BUCKETS (44 * BENCH_HIST_SUB)
struct bench_hist {
	uint64_t count;
	uint64_t max_ns;
	uint64_t n[BENCH_HIST_BUCKETS];
};

void bench_hist_add(struct bench_hist *h, uint64_t ns);
void bench_hist_merge(struct bench_hist *into, const struct bench_hist *from);
/* Value at quantile q in [0, 1] (0 when empty). */
uint64_t bench_hist_quantile(const struct bench_hist *h, double q);
/* Writes the cumulative distribution, one line per non-empty bucket:
 * "latency_ms fraction_at_or_below". Returns 0, or -1 on a write error. */
int bench_hist_write_cdf(const struct bench_hist *h, FILE *f);

/* Parses an unsigned number with an optional k/m/g suffix (powers of
 * 1024). Returns false on garbage. */
bool bench_parse_u64(const char *s, uint64_t *out);

/* Removes `dir` and everything below it (no symlinks followed). */
void bench_rm_rf(const char *dir);

/* ---- the disk itself (store_bench.c) --------------------------------------------------- */

/* In `dir`: 200 writes of 4 KiB each followed by fdatasync (p50, p99 of one
 * write + sync), then `seq_mib` MiB in 1 MiB writes and one fdatasync (the
 * sequential bandwidth). Uses a file `disk-probe` that it removes. Returns
 * 0, or -1 with errno set. */
struct bench_disk {
	double fsync_p50_us, fsync_p99_us, seq_mb_per_s;
};
int bench_disk_figures(const char *dir, uint64_t seq_mib, struct bench_disk *out);

/* ---- the append load (load.c) ----------------------------------------------------------- */

/* `clients` load generators, each with `inflight` request slots of `batch`
 * entries of `payload_bytes` each, on the groups in `groups` (all reached
 * through the same `peers`). Client k serves group k mod n_groups when
 * clients >= n_groups, else groups k, k + clients, k + 2 x clients, ...;
 * one dl_client per (client, group), its slots spread round-robin over its
 * groups (so inflight must be at least ceil(n_groups / clients)).
 *
 * Closed loop (rate_rps 0): every answer submits the slot's next request;
 * latency runs from submission to the commit acknowledgement.
 * Open loop (rate_rps > 0): request i of client k is due at
 * start + (i x clients + k) / rate_rps, so `rate_rps` requests/s arrive in
 * total whatever the answers do; a due request waits for a free slot and its
 * latency runs from when it was due, so queueing in the client counts
 * (no coordinated omission). */
struct bench_load_cfg {
	const char *peers;
	const char *const *groups;
	uint32_t n_groups;
	uint32_t clients;
	uint32_t inflight;
	uint32_t batch;
	uint32_t payload_bytes;
	double rate_rps;
	uint32_t timeout_ms; /* per request, redirects and retries included */
	/* Mutual TLS with this client certificate, key and CA (all three or
	 * none: plaintext). */
	const char *tls_cert, *tls_key, *tls_ca;
};

/* What the load measured: successful requests and their entries, and their
 * latencies, while measuring was on; failed requests (and submissions)
 * over the whole load, warm-up included. */
struct bench_load_result {
	uint64_t requests;
	uint64_t entries;
	uint64_t errors;
	char first_error[256]; /* "" when errors is 0 */
	struct bench_hist hist;
};

struct bench_load;

/* DL_EINVAL with the reason when cfg's shape is out of range or leaves a
 * group without load; else 0. bench_load_start() checks the same. */
int bench_load_check(const struct bench_load_cfg *cfg, struct dl_errctx *err);
/* Opens the clients and starts the load. Returns 0 with *out set, or an
 * error (DL_EINVAL for a shape that leaves a group without load, a
 * dl_client_open() error, DL_ENOMEM) with the detail in err. */
int bench_load_start(const struct bench_load_cfg *cfg, struct bench_load **out,
                     struct dl_errctx *err);
/* Turns the measured window on or off (answers arriving while it is on are
 * counted). */
void bench_load_measure(struct bench_load *l, bool on);
/* Counts so far (for a progress line). */
void bench_load_counts(struct bench_load *l, uint64_t *requests, uint64_t *entries,
                       uint64_t *errors);
/* Merges every client's figures into *out (fully overwritten). */
void bench_load_result(struct bench_load *l, struct bench_load_result *out);
/* Stops issuing, waits (bounded by the request timeout) for the requests in
 * flight, closes the clients and frees. NULL-safe. */
void bench_load_stop(struct bench_load *l);

/* ---- a 3-node cluster on loopback (cluster.c) ------------------------------------------- */

#define BENCH_NODES 3

/* Loaded groups are g0..g{groups-1}, idle ones i0..i{idle_groups-1}; every
 * group has members n0, n1, n2 on nodes 0, 1, 2, and group k's preferred
 * leader is n{k mod 3}, so leaders (and the load) are spread over the nodes.
 * Heartbeat 200 ms, election timeout 1000 ms, as in examples/. */
struct bench_cluster_cfg {
	const char *actors_path; /* the dledger-actors binary */
	const char *tmp_parent;  /* where the fresh directory is made */
	uint32_t groups;
	uint32_t idle_groups;
	bool flush_async;
	bool store_memory;
	bool keep; /* leave the directory in place on stop */
	uint32_t heartbeat_ms, election_ms; /* 0: 200 and 1000 */
	/* scripts/make-certs.sh: the nodes run with mutual TLS, with
	 * certificates it makes in DIR/certs for this cluster; NULL:
	 * plaintext. */
	const char *make_certs;
};

struct bench_cluster {
	struct bench_cluster_cfg cfg;
	char dir[4096];
	char peers[256];
	char **group_names; /* the loaded groups' names */
	uint16_t port[BENCH_NODES];
	uint16_t metrics_port[BENCH_NODES];
	pid_t pid[BENCH_NODES];  /* 0: not running (never started or reaped) */
	int status[BENCH_NODES]; /* wait status of a reaped node */
	/* With TLS (cfg.make_certs): a client's certificate, key and the CA,
	 * for the load; "" without. */
	char tls_cert[4200], tls_key[4200], tls_ca[4200];
};

/* Makes the directory, writes the configs and starts the nodes (their output
 * goes to DIR/nodeK.log; a node gets SIGTERM should the bench die). Returns 0,
 * or an error with the detail in err; on error whatever was started is
 * stopped again. */
int bench_cluster_start(const struct bench_cluster_cfg *cfg, struct bench_cluster *c,
                        struct dl_errctx *err);
/* Waits, at most timeout_ms, until every group (loaded and idle) has a
 * leader that all three nodes agree on, and every loaded group is led by its
 * preferred leader (so the load lands where intended; an idle group may
 * still move). When only the preferred leaders are missing at the end it
 * says so on stderr and returns 0. DL_ETIMEDOUT names a group without a
 * leader; DL_ECLOSED means a node exited or *interrupted was set. With
 * `progress`, a line on stderr tells how far the elections are. */
int bench_cluster_wait_leaders(struct bench_cluster *c, uint32_t timeout_ms,
                               const _Atomic bool *interrupted, bool progress,
                               struct dl_errctx *err);
/* Reaps nodes that exited; false (with which one in err) if any did. */
bool bench_cluster_alive(struct bench_cluster *c, struct dl_errctx *err);
/* Prints the last lines of every node's log to stderr (after a failure). */
void bench_cluster_print_logs(const struct bench_cluster *c);
/* SIGTERM to every node still running, SIGKILL after 10 s, reaps them all,
 * removes the directory unless keep. Safe on a cluster never started and
 * when called twice. Returns false if a node had to be killed or exited
 * with an error. */
bool bench_cluster_stop(struct bench_cluster *c);

/* ---- observing a node (cluster.c) -------------------------------------------------------- */

/* CPU seconds (user + system) of a process from /proc/PID/stat; -1 when
 * unreadable. */
double bench_proc_cpu_s(pid_t pid);
/* Peak and current resident memory (VmHWM, VmRSS) in bytes from
 * /proc/PID/status; false when unreadable. */
bool bench_proc_mem(pid_t pid, uint64_t *hwm_bytes, uint64_t *rss_bytes);
/* Bytes allocated on disk below `dir` (st_blocks); 0 when unreadable. */
uint64_t bench_disk_usage(const char *dir);

/* The node counters the cluster benchmark reads from /metrics. */
enum bench_metric {
	BENCH_M_FRAMES_SENT,
	BENCH_M_MESSAGES_SENT,
	BENCH_M_FSYNCS,
	BENCH_M_COUNT,
};
/* One HTTP/1.0 GET of http://host:port/metrics (bounded: 2 s per read or
 * write, 64 MiB of text). Returns 0 with out[] filled (a metric absent from
 * the text reads 0), or DL_EIO / DL_ETIMEDOUT / DL_EPROTO with the detail in
 * err. */
int bench_scrape(const char *host, uint16_t port, double out[BENCH_M_COUNT], struct dl_errctx *err);

/* ---- subcommands ------------------------------------------------------------------------- */

int bench_store_main(int argc, char **argv);
int bench_crc_main(int argc, char **argv);
int bench_append_main(int argc, char **argv);
int bench_cluster_main(int argc, char **argv);

#endif
