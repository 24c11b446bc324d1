/*
 * store_bench.c - `dledger-bench store`: append load on N stores that
 * share one flush thread, as a node's members would.
 *
 * Threads: `threads` appender threads, each owning a fixed subset of the
 * stores (a store is used by one thread, its owner); the flush thread runs
 * the durability callback, which records latencies and wakes the owner.
 * Each store keeps at most `window` bytes appended but not yet durable
 * (the in-flight bound a Raft leader's client window would give).
 *
 * Also measures, in the same directory and run, the disk's own figures:
 * the latency of a 4 KiB write + fdatasync and the sequential write
 * bandwidth (1 MiB writes, one fdatasync at the end).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "storage/storage.h"

#define RING 8192u /* batches in flight per store, at most */

struct bthread;

struct bstore {
	struct sto *s;
	struct bthread *owner;
	uint64_t last;            /* appender */
	_Atomic uint64_t durable; /* callback writes, appender reads */
	struct {
		uint64_t index, t_ns;
	} ring[RING]; /* appender pushes at head, callback pops at tail */
	_Atomic uint64_t head, tail;
	struct bench_hist hist; /* callback only, read after the flusher stops */
	_Atomic int error;
};

struct bthread {
	pthread_t th;
	struct bstore **stores;
	size_t n;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_bool waiting;
	int rc;
};

struct opts {
	uint32_t stores, threads, payload, batch, duration_s;
	uint64_t window, segment, disk_mb;
	enum sto_flush_mode mode;
	enum sto_type type;
	const char *dir;
	bool disk_figures;
};

static atomic_bool stop_flag;
static struct opts o;
static const uint8_t *payload_buf;

static uint64_t entry_disk_bytes(void)
{
	return ((48u + o.payload + 7u) & ~7u) + 32u;
}

/* Flush thread: cheap, as the contract asks. */
static void on_durable(void *ctx, const struct sto_durable *d)
{
	struct bstore *b = ctx;
	uint64_t now = bench_now_ns();
	if (d->error != 0)
		atomic_store(&b->error, d->error);
	/* seq_cst store, paired with the seq_cst load of `durable` after the
	 * owner sets `waiting` (see wait_for_room). */
	atomic_store(&b->durable, d->index);
	uint64_t tail = atomic_load_explicit(&b->tail, memory_order_relaxed);
	/* acquire: the ring slots below head were written before it. */
	uint64_t head = atomic_load_explicit(&b->head, memory_order_acquire);
	while (tail < head && b->ring[tail % RING].index <= d->index) {
		bench_hist_add(&b->hist, now - b->ring[tail % RING].t_ns);
		tail++;
	}
	/* release: the appender may reuse the slots below tail. */
	atomic_store_explicit(&b->tail, tail, memory_order_release);
	struct bthread *t = b->owner;
	if (atomic_load(&t->waiting)) {
		pthread_mutex_lock(&t->mu);
		pthread_cond_signal(&t->cv);
		pthread_mutex_unlock(&t->mu);
	}
}

static bool has_room(struct bstore *b)
{
	uint64_t dur = atomic_load(&b->durable);
	uint64_t tail = atomic_load_explicit(&b->tail, memory_order_acquire);
	uint64_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
	return (b->last - dur) * entry_disk_bytes() < o.window && head - tail < RING;
}

static void wait_for_room(struct bthread *t)
{
	pthread_mutex_lock(&t->mu);
	atomic_store(&t->waiting, true);
	bool room = atomic_load(&stop_flag);
	for (size_t i = 0; i < t->n && !room; i++)
		room = has_room(t->stores[i]);
	if (!room) {
		/* Bounded wait: a lost signal would only cost 100 ms. */
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&t->cv, &t->mu, &ts);
	}
	atomic_store(&t->waiting, false);
	pthread_mutex_unlock(&t->mu);
}

static void *appender(void *arg)
{
	struct bthread *t = arg;
	struct sto_entry *batch = calloc(o.batch, sizeof(*batch));
	if (batch == NULL) {
		t->rc = 1;
		return NULL;
	}
	for (uint32_t i = 0; i < o.batch; i++)
		batch[i] = (struct sto_entry){.term = 1, .data = payload_buf, .len = o.payload};
	while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
		bool did = false;
		for (size_t i = 0; i < t->n; i++) {
			struct bstore *b = t->stores[i];
			if (!has_room(b))
				continue;
			/* The batch's slot is published before the append, so the
			 * callback that reports it always finds it: latency runs
			 * from the call to the report. */
			uint64_t head = atomic_load_explicit(&b->head, memory_order_relaxed);
			b->ring[head % RING].index = b->last + o.batch;
			b->ring[head % RING].t_ns = bench_now_ns();
			/* release: the slot is written before the callback sees it */
			atomic_store_explicit(&b->head, head + 1, memory_order_release);
			struct dl_errctx err;
			int rc = sto_append(b->s, b->last + 1, batch, o.batch, &err);
			if (rc != DL_OK) {
				fprintf(stderr, "append: %s: %s\n", dl_strerror(rc), err.msg);
				t->rc = 1;
				atomic_store(&stop_flag, true);
				break;
			}
			b->last += o.batch;
			did = true;
		}
		if (!did)
			wait_for_room(t);
	}
	free(batch);
	return NULL;
}

/* ----------------------------------------------------- the disk itself */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

int bench_disk_figures(const char *dir, uint64_t seq_mib, struct bench_disk *out)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/disk-probe", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return -1;
	static uint8_t page[4096];
	memset(page, 0x5a, sizeof(page));
	enum { N = 200 };
	uint64_t lat[N];
	for (int i = 0; i < N; i++) {
		uint64_t t0 = bench_now_ns();
		if (pwrite(fd, page, sizeof(page), (off_t)i * 4096) != (ssize_t)sizeof(page) ||
		    fdatasync(fd) != 0) {
			close(fd);
			unlink(path);
			return -1;
		}
		lat[i] = bench_now_ns() - t0;
	}
	qsort(lat, N, sizeof(lat[0]), cmp_u64);
	out->fsync_p50_us = (double)lat[N / 2] / 1e3;
	out->fsync_p99_us = (double)lat[N * 99 / 100] / 1e3;
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	int rc = buf == NULL || ftruncate(fd, 0) != 0 || fdatasync(fd) != 0 ? -1 : 0;
	if (buf != NULL)
		memset(buf, 0xa5, chunk);
	uint64_t t0 = bench_now_ns();
	for (uint64_t done = 0; done < seq_mib && rc == 0; done++)
		if (write(fd, buf, chunk) != (ssize_t)chunk)
			rc = -1;
	if (rc == 0 && fdatasync(fd) != 0)
		rc = -1;
	double secs = (double)(bench_now_ns() - t0) / 1e9;
	out->seq_mb_per_s = (double)(seq_mib << 20) / secs / 1e6;
	int saved = errno;
	free(buf);
	close(fd);
	unlink(path);
	errno = saved;
	return rc;
}

/* ------------------------------------------------------------ plumbing */

static void usage(FILE *out)
{
	fprintf(out, "usage: dledger-bench store --stores N --payload B --duration S\n"
	             "                           [--flush-mode sync|async] [--type mmap|memory]\n"
	             "                           [--threads T] [--batch K] [--window BYTES]\n"
	             "                           [--segment BYTES] [--dir DIR] [--disk-mb M]\n"
	             "                           [--no-disk-figures]\n"
	             "  N stores share one flush thread; T appender threads (default min(N, 16))\n"
	             "  append batches of K entries of B bytes (default: 32 KiB a batch), each\n"
	             "  store keeping at most BYTES (1m) appended but not yet durable.\n"
	             "  Prints entries/s, MB/s, durable latency p50/p99, and the disk's own\n"
	             "  fdatasync latency (4 KiB) and sequential write bandwidth (M MiB, 1024).\n");
}

static int parse(int argc, char **argv)
{
	o = (struct opts){.stores = 16,
	                  .payload = 128,
	                  .duration_s = 10,
	                  .window = 1u << 20,
	                  .segment = 1ull << 30,
	                  .disk_mb = 1024,
	                  .mode = STO_FLUSH_SYNC,
	                  .type = STO_TYPE_MMAP,
	                  .disk_figures = true};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x = 0;
		bool num = v != NULL && bench_parse_u64(v, &x);
		if (strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--no-disk-figures") == 0) {
			o.disk_figures = false;
			continue;
		} else if (v == NULL) {
			fprintf(stderr, "%s needs a value\n", a);
			return -1;
		} else if (strcmp(a, "--flush-mode") == 0 && strcmp(v, "sync") == 0) {
			o.mode = STO_FLUSH_SYNC;
		} else if (strcmp(a, "--flush-mode") == 0 && strcmp(v, "async") == 0) {
			o.mode = STO_FLUSH_ASYNC;
		} else if (strcmp(a, "--type") == 0 && strcmp(v, "mmap") == 0) {
			o.type = STO_TYPE_MMAP;
		} else if (strcmp(a, "--type") == 0 && strcmp(v, "memory") == 0) {
			o.type = STO_TYPE_MEMORY;
		} else if (strcmp(a, "--dir") == 0) {
			o.dir = v;
		} else if (num && x > 0 && strcmp(a, "--stores") == 0 && x <= 4096) {
			o.stores = (uint32_t)x;
		} else if (num && x > 0 && strcmp(a, "--threads") == 0 && x <= 256) {
			o.threads = (uint32_t)x;
		} else if (num && strcmp(a, "--payload") == 0 && x <= (64u << 20)) {
			o.payload = (uint32_t)x;
		} else if (num && x > 0 && strcmp(a, "--batch") == 0 && x <= 65536) {
			o.batch = (uint32_t)x;
		} else if (num && x > 0 && strcmp(a, "--duration") == 0 && x <= 3600) {
			o.duration_s = (uint32_t)x;
		} else if (num && x > 0 && strcmp(a, "--window") == 0) {
			o.window = x;
		} else if (num && strcmp(a, "--segment") == 0) {
			o.segment = x;
		} else if (num && x > 0 && strcmp(a, "--disk-mb") == 0) {
			o.disk_mb = x;
		} else {
			fprintf(stderr, "bad option or value: %s %s\n", a, v);
			return -1;
		}
		i++;
	}
	if (o.threads == 0)
		o.threads = o.stores < 16 ? o.stores : 16;
	if (o.threads > o.stores)
		o.threads = o.stores;
	if (o.batch == 0) {
		uint32_t k = (32u << 10) / (o.payload ? o.payload : 1);
		o.batch = k == 0 ? 1 : k > 4096 ? 4096 : k;
	}
	return 0;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t sum_durable(struct bstore *bs)
{
	uint64_t sum = 0;
	for (uint32_t i = 0; i < o.stores; i++)
		sum += atomic_load(&bs[i].durable);
	return sum;
}

static void report(struct bstore *bs, struct sto_flusher *fl, uint64_t entries, double secs,
                   double cpu, double seq_mbs)
{
	struct bench_hist all;
	memset(&all, 0, sizeof(all));
	for (uint32_t i = 0; i < o.stores; i++)
		bench_hist_merge(&all, &bs[i].hist);
	double eps = (double)entries / secs;
	double mbs = eps * o.payload / 1e6;
	printf("store: %u %s stores, flushMode %s, payload %u B, batch %u, window %" PRIu64
	       " B/store, %u appender threads, %.1f s measured\n",
	       o.stores, o.type == STO_TYPE_MMAP ? "mmap" : "memory",
	       o.mode == STO_FLUSH_SYNC ? "sync" : "async", o.payload, o.batch, o.window, o.threads,
	       secs);
	if (o.type == STO_TYPE_MMAP)
		printf("  entries/s %.0f   MB/s %.1f (payload), %.1f (on disk, with headers and "
		       "index)\n",
		       eps, mbs, eps * (double)entry_disk_bytes() / 1e6);
	else
		printf("  entries/s %.0f   MB/s %.1f (payload)\n", eps, mbs);
	printf("  durable latency p50 %.2f ms   p99 %.2f ms   max %.2f ms   (%" PRIu64
	       " batches)\n",
	       (double)bench_hist_quantile(&all, 0.50) / 1e6,
	       (double)bench_hist_quantile(&all, 0.99) / 1e6, (double)all.max_ns / 1e6, all.count);
	if (fl != NULL) {
		struct sto_flusher_stats st;
		sto_flusher_get_stats(fl, &st);
		printf("  flusher: %" PRIu64 " passes, %" PRIu64 " fdatasync calls, up to %" PRIu64
		       " stores in one pass\n",
		       st.passes, st.file_syncs, st.max_stores_in_pass);
	}
	printf("  cpu %.2f s (%.0f%% of one core)\n", cpu, 100.0 * cpu / secs);
	if (seq_mbs > 0)
		printf("  payload MB/s is %.0f%% of the disk's sequential write bandwidth\n",
		       100.0 * mbs / seq_mbs);
}

static int open_stores(struct bstore *bs, struct sto_flusher *fl, const char *dir,
                       struct bthread *ths)
{
	for (uint32_t i = 0; i < o.stores; i++) {
		struct sto_config cfg;
		sto_config_defaults(&cfg);
		char group[32];
		snprintf(group, sizeof(group), "g%u", i);
		cfg.type = o.type;
		cfg.base_dir = dir;
		cfg.group = group;
		cfg.self_id = "n0";
		cfg.segment_bytes = o.segment;
		cfg.flush_mode = o.mode;
		cfg.memory_max_bytes = 64ull << 30;
		cfg.on_durable = on_durable;
		cfg.on_durable_ctx = &bs[i];
		cfg.disk_full_ratio = 1.0; /* measure, do not refuse */
		bs[i].owner = &ths[i % o.threads];
		struct dl_errctx err;
		int rc = sto_open(&cfg, fl, &bs[i].s, &err);
		if (rc != DL_OK) {
			fprintf(stderr, "open store %u: %s: %s\n", i, dl_strerror(rc), err.msg);
			return -1;
		}
	}
	return 0;
}

int bench_store_main(int argc, char **argv)
{
	if (parse(argc, argv) != 0) {
		usage(stderr);
		return 2;
	}
	char tmpl[] = "/tmp/dledger-bench-XXXXXX";
	char dir[4096];
	bool made = o.dir == NULL;
	if (made) {
		if (mkdtemp(tmpl) == NULL) {
			perror("mkdtemp");
			return 1;
		}
		snprintf(dir, sizeof(dir), "%s", tmpl);
	} else {
		snprintf(dir, sizeof(dir), "%s", o.dir);
	}
	struct bench_disk disk = {0};
	if (o.disk_figures && o.type == STO_TYPE_MMAP) {
		if (bench_disk_figures(dir, o.disk_mb, &disk) != 0) {
			fprintf(stderr, "disk figures in %s: %s\n", dir, strerror(errno));
			return 1;
		}
		printf("disk (%s): fdatasync of a 4 KiB write p50 %.0f us p99 %.0f us; sequential "
		       "write %.0f MB/s (%" PRIu64 " MiB in 1 MiB writes + fdatasync)\n",
		       dir, disk.fsync_p50_us, disk.fsync_p99_us, disk.seq_mb_per_s, o.disk_mb);
	}
	uint8_t *payload = malloc(o.payload ? o.payload : 1);
	struct bstore *bs = calloc(o.stores, sizeof(*bs));
	struct bthread *ths = calloc(o.threads, sizeof(*ths));
	if (payload == NULL || bs == NULL || ths == NULL)
		return 1;
	for (uint32_t i = 0; i < o.payload; i++)
		payload[i] = (uint8_t)(i * 2654435761u >> 24);
	payload_buf = payload;
	struct sto_flusher_config fcfg;
	sto_flusher_config_defaults(&fcfg);
	struct sto_flusher *fl;
	struct dl_errctx err;
	if (sto_flusher_start(&fcfg, &fl, &err) != DL_OK) {
		fprintf(stderr, "flusher: %s\n", err.msg);
		return 1;
	}
	for (uint32_t t = 0; t < o.threads; t++) {
		pthread_mutex_init(&ths[t].mu, NULL);
		pthread_cond_init(&ths[t].cv, NULL);
		ths[t].stores = calloc(o.stores / o.threads + 1, sizeof(*ths[t].stores));
	}
	int rc = open_stores(bs, fl, dir, ths);
	for (uint32_t i = 0; rc == 0 && i < o.stores; i++)
		ths[i % o.threads].stores[ths[i % o.threads].n++] = &bs[i];
	uint64_t t_start = bench_now_ns();
	for (uint32_t t = 0; rc == 0 && t < o.threads; t++)
		pthread_create(&ths[t].th, NULL, appender, &ths[t]);
	/* Warm up for a fifth of the run (at most a second), then measure. */
	double warm = o.duration_s / 5.0 > 1.0 ? 1.0 : o.duration_s / 5.0;
	struct timespec ts = {.tv_sec = (time_t)warm,
	                      .tv_nsec = (long)((warm - (time_t)warm) * 1e9)};
	uint64_t d0 = 0, d1 = 0, t0 = 0, t1 = 0;
	double c0 = 0, c1 = 0;
	if (rc == 0) {
		nanosleep(&ts, NULL);
		d0 = sum_durable(bs);
		t0 = bench_now_ns();
		c0 = cpu_seconds();
		struct timespec run = {.tv_sec = (time_t)o.duration_s};
		nanosleep(&run, NULL);
		d1 = sum_durable(bs);
		t1 = bench_now_ns();
		c1 = cpu_seconds();
	}
	atomic_store(&stop_flag, true);
	for (uint32_t t = 0; rc == 0 && t < o.threads; t++) {
		pthread_mutex_lock(&ths[t].mu);
		pthread_cond_signal(&ths[t].cv);
		pthread_mutex_unlock(&ths[t].mu);
		pthread_join(ths[t].th, NULL);
		rc |= ths[t].rc;
	}
	(void)t_start;
	for (uint32_t i = 0; i < o.stores; i++) {
		if (atomic_load(&bs[i].error) != 0)
			rc = 1;
		sto_close(bs[i].s);
	}
	if (rc == 0)
		report(bs, fl, d1 - d0, (double)(t1 - t0) / 1e9, c1 - c0, disk.seq_mb_per_s);
	sto_flusher_stop(fl);
	for (uint32_t t = 0; t < o.threads; t++)
		free(ths[t].stores);
	free(ths);
	free(bs);
	free(payload);
	if (made)
		bench_rm_rf(dir);
	return rc == 0 ? 0 : 1;
}
