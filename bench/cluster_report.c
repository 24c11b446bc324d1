/*
 * cluster_report.c - what the cluster benchmark writes: a text report per
 * run and a table of all runs (stdout), one CSV row per run with every
 * parameter and figure, a latency CDF file per run next to the CSV, and the
 * gnuplot script and PNGs of --plot. Main thread only.
 *
 * The CSV's columns are csv_cols[]; a row is built field by field and
 * checked against that count, so header and rows cannot drift apart. A
 * figure that could not be had is an empty field.
 */
#include <errno.h>
#include <inttypes.h>
#include <libgen.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/cluster_bench.h"

#define GNUPLOT_WAIT_MS 60000

static double per_s(uint64_t n, double secs)
{
	return secs > 0 ? (double)n / secs : 0;
}

static double q_ms(const struct cb_result *r, double q)
{
	return (double)bench_hist_quantile(&r->load.hist, q) / 1e6;
}

static double mb_per_s(const struct cb_result *r)
{
	return per_s(r->load.entries, r->secs) * r->row.payload / 1e6;
}

static bool loaded(const struct cb_result *r)
{
	return r->row.groups > 0 && r->secs > 0;
}

/* ---- text ---------------------------------------------------------------------------------- */

static void print_nodes(const struct cb_result *r)
{
	printf("  nodes     cpu");
	for (unsigned k = 0; k < BENCH_NODES; k++)
		if (r->cpu_s[k] >= 0)
			printf(" %.2f s (%.0f%%)", r->cpu_s[k], 100 * r->cpu_s[k] / r->secs);
		else
			printf(" -");
	printf("   peak RSS");
	for (unsigned k = 0; k < BENCH_NODES; k++)
		if (r->peak_rss_mb[k] >= 0)
			printf(" %.1f", r->peak_rss_mb[k]);
		else
			printf(" -");
	printf(" MiB   bench cpu %.2f s (%.0f%%)\n", r->bench_cpu_s,
	       100 * r->bench_cpu_s / r->secs);
	if (r->frames_per_s >= 0)
		printf("  sent      %.0f frames/s  %.0f messages/s, %.0f fsyncs/s (all nodes)",
		       r->frames_per_s, r->messages_per_s, r->fsyncs_per_s);
	if (r->store_disk_mb >= 0)
		printf("   store disk %.1f MB", r->store_disk_mb);
	if (r->frames_per_s >= 0 || r->store_disk_mb >= 0)
		printf("\n");
}

void cb_print_run(const struct cb_result *r, const struct cb_calib *cal, unsigned n, unsigned of)
{
	const struct cb_row *w = &r->row;
	printf("[%u/%u] %s: ", n, of, w->label);
	if (r->spawned)
		printf("groups %u (+%u idle), flush %s, store %s", w->groups, w->idle_groups,
		       r->flush_async ? "async" : "sync", r->store_memory ? "memory" : "mmap");
	else
		printf("a running cluster");
	if (w->groups > 0)
		printf("; %u B x %u a request, clients %u x %u in flight, %s", w->payload, w->batch,
		       w->clients, w->inflight, w->rate_rps ? "open loop" : "closed loop");
	if (w->rate_rps > 0)
		printf(" at %" PRIu64 " requests/s", w->rate_rps);
	printf("; %.1f s measured after %u s\n", r->secs, r->warmup_s);
	if (w->groups > 0) {
		printf("  committed %.0f entries/s  %.0f requests/s  %.2f MB/s  errors %" PRIu64
		       "\n",
		       per_s(r->load.entries, r->secs), per_s(r->load.requests, r->secs),
		       mb_per_s(r), r->load.errors);
		printf("  latency   p50 %.3f ms  p99 %.3f ms  p99.9 %.3f ms  max %.3f ms\n",
		       q_ms(r, 0.5), q_ms(r, 0.99), q_ms(r, 0.999),
		       (double)r->load.hist.max_ns / 1e6);
	}
	print_nodes(r);
	if (w->groups > 0 && cal->done)
		printf("  vs disk   p50 = %.2f x fdatasync p50   MB/s = %.1f%% of sequential\n",
		       q_ms(r, 0.5) * 1e3 / cal->d.fsync_p50_us,
		       100 * mb_per_s(r) / cal->d.seq_mb_per_s);
	if (r->load.errors > 0)
		printf("  first error: %s\n", r->load.first_error);
	fflush(stdout);
}

void cb_print_table(const struct cb_result *rs, unsigned n, const struct cb_calib *cal)
{
	printf("\n%-17s %5s %5s %5s %5s %6s %7s %10s %9s %7s %7s %7s %7s %8s %-17s %9s %9s %6s\n",
	       "label", "grp", "idle", "B", "batch", "flight", "rate", "entries/s", "req/s", "MB/s",
	       "p50ms", "p99ms", "p999ms", "maxms", "cpu% n0/n1/n2", "frames/s", "msgs/s",
	       "errors");
	for (unsigned i = 0; i < n; i++) {
		const struct cb_result *r = &rs[i];
		const struct cb_row *w = &r->row;
		if (r->secs <= 0)
			continue;
		char cpu[32];
		int c = 0;
		for (unsigned k = 0; k < BENCH_NODES; k++)
			c += snprintf(cpu + c, sizeof(cpu) - (size_t)c, "%s%.0f", k ? "/" : "",
			              r->cpu_s[k] >= 0 ? 100 * r->cpu_s[k] / r->secs : -1.0);
		char rate[24] = "-";
		if (w->rate_rps > 0)
			snprintf(rate, sizeof(rate), "%" PRIu64, w->rate_rps);
		printf("%-17s %5u %5u %5u %5u %6u %7s %10.0f %9.0f %7.2f ", w->label, w->groups,
		       w->idle_groups, w->payload, w->batch, w->clients * w->inflight, rate,
		       per_s(r->load.entries, r->secs), per_s(r->load.requests, r->secs),
		       mb_per_s(r));
		if (w->groups > 0)
			printf("%7.3f %7.3f %7.3f %8.3f ", q_ms(r, 0.5), q_ms(r, 0.99),
			       q_ms(r, 0.999), (double)r->load.hist.max_ns / 1e6);
		else
			printf("%7s %7s %7s %8s ", "-", "-", "-", "-");
		printf("%-17s %9.0f %9.0f %6" PRIu64 "\n", cpu, r->frames_per_s, r->messages_per_s,
		       r->load.errors);
	}
	if (cal->done)
		printf("disk: fdatasync p50 %.0f us, p99 %.0f us; sequential %.0f MB/s\n",
		       cal->d.fsync_p50_us, cal->d.fsync_p99_us, cal->d.seq_mb_per_s);
	fflush(stdout);
}

/* Node CPU (all three) per committed entry, in microseconds; -1 if unknown. */
static double cpu_us_per_entry(const struct cb_result *r)
{
	double cpu = 0;
	for (unsigned k = 0; k < BENCH_NODES; k++) {
		if (r->cpu_s[k] < 0)
			return -1;
		cpu += r->cpu_s[k];
	}
	return r->load.entries > 0 ? cpu * 1e6 / (double)r->load.entries : -1;
}

static double pct(double a, double b)
{
	return a > 0 ? 100.0 * (b - a) / a : 0;
}

void cb_print_tls_cost(const struct cb_result *rs, unsigned n)
{
	printf("\nWhat TLS costs (each TLS row against the plaintext row before it):\n");
	printf("%-10s %21s %21s %21s %23s\n", "shape", "entries/s", "p50 ms", "p99 ms",
	       "node CPU us/entry");
	for (unsigned i = 1; i < n; i++) {
		const struct cb_result *p = &rs[i - 1], *t = &rs[i];
		if (!t->row.tls || p->row.tls || p->secs <= 0 || t->secs <= 0 ||
		    p->row.groups != t->row.groups || p->row.clients != t->row.clients ||
		    p->row.inflight != t->row.inflight || p->row.batch != t->row.batch)
			continue;
		double pe = per_s(p->load.entries, p->secs), te = per_s(t->load.entries, t->secs);
		double pc = cpu_us_per_entry(p), tc = cpu_us_per_entry(t);
		printf("%-10s %8.0f -> %6.0f %+4.0f%% %6.3f -> %6.3f %+4.0f%% %6.3f -> %6.3f %+4.0f%% "
		       "%7.1f -> %7.1f %+4.0f%%\n",
		       p->row.label, pe, te, pct(pe, te), q_ms(p, 0.5), q_ms(t, 0.5),
		       pct(q_ms(p, 0.5), q_ms(t, 0.5)), q_ms(p, 0.99), q_ms(t, 0.99),
		       pct(q_ms(p, 0.99), q_ms(t, 0.99)), pc, tc, pct(pc, tc));
	}
	fflush(stdout);
}

/* ---- CSV ----------------------------------------------------------------------------------- */

static const char *const csv_cols[] = {
        "time",
        "label",
        "target",
        "flush_mode",
        "store_type",
        "groups",
        "idle_groups",
        "heartbeat_ms",
        "payload_bytes",
        "clients",
        "inflight_per_client",
        "inflight_total",
        "batch",
        "rate_rps",
        "duration_s",
        "warmup_s",
        "measured_s",
        "requests",
        "entries",
        "errors",
        "requests_per_s",
        "entries_per_s",
        "payload_mb_per_s",
        "p50_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "node0_cpu_s",
        "node1_cpu_s",
        "node2_cpu_s",
        "node0_peak_rss_mb",
        "node1_peak_rss_mb",
        "node2_peak_rss_mb",
        "node0_rss_mb",
        "node1_rss_mb",
        "node2_rss_mb",
        "bench_cpu_s",
        "frames_per_s",
        "messages_per_s",
        "fsyncs_per_s",
        "store_disk_mb",
        "disk_fsync_p50_us",
        "disk_fsync_p99_us",
        "disk_seq_mb_per_s",
        "p50_over_fsync_p50",
        "mb_per_s_over_seq",
        "cdf_file",
        "first_error",
};
#define N_COLS (sizeof(csv_cols) / sizeof(csv_cols[0]))

struct fields {
	char s[4096];
	size_t len;
	unsigned n;
};

__attribute__((format(printf, 2, 3))) static void field(struct fields *f, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	if (f->n > 0 && f->len < sizeof(f->s) - 1)
		f->s[f->len++] = ',';
	int k = vsnprintf(f->s + f->len, sizeof(f->s) - f->len, fmt, ap);
	va_end(ap);
	if (k > 0)
		f->len += (size_t)k < sizeof(f->s) - f->len ? (size_t)k : sizeof(f->s) - 1 - f->len;
	f->n++;
}

/* A figure; empty when it could not be had (negative). */
static void fig(struct fields *f, double v, int decimals)
{
	if (v < 0)
		field(f, "%s", "");
	else
		field(f, "%.*f", decimals, v);
}

/* Quoted, "" for a quote (RFC 4180): an error text may hold commas. */
static void text(struct fields *f, const char *s)
{
	char q[600];
	size_t n = 0;
	q[n++] = '"';
	for (; *s && n < sizeof(q) - 3; s++) {
		if (*s == '"')
			q[n++] = '"';
		q[n++] = *s == '\n' ? ' ' : *s;
	}
	q[n++] = '"';
	q[n] = '\0';
	field(f, "%s", q);
}

static void header(char *out, size_t cap)
{
	size_t len = 0;
	for (size_t i = 0; i < N_COLS; i++)
		len += (size_t)snprintf(out + len, cap - len, "%s%s", i ? "," : "", csv_cols[i]);
	DL_ASSERT(len < cap);
}

static void params(struct fields *f, const struct cb_result *r)
{
	const struct cb_row *w = &r->row;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
	field(f, "%s", when);
	field(f, "%s", w->label);
	field(f, "%s", r->spawned ? "spawn" : "peers");
	/* A running cluster's flush mode and store are not known here. */
	field(f, "%s", !r->spawned ? "" : r->flush_async ? "async" : "sync");
	field(f, "%s", !r->spawned ? "" : r->store_memory ? "memory" : "mmap");
	field(f, "%u", w->groups);
	field(f, "%u", w->idle_groups);
	if (w->heartbeat_ms > 0)
		field(f, "%u", w->heartbeat_ms);
	else
		field(f, "%s", "");
	field(f, "%u", w->payload);
	field(f, "%u", w->clients);
	field(f, "%u", w->inflight);
	field(f, "%u", w->clients * w->inflight);
	field(f, "%u", w->batch);
	field(f, "%" PRIu64, w->rate_rps);
	field(f, "%u", r->duration_s);
	field(f, "%u", r->warmup_s);
	field(f, "%.3f", r->secs);
}

static void load_figures(struct fields *f, const struct cb_result *r)
{
	bool l = r->row.groups > 0;
	field(f, "%" PRIu64, r->load.requests);
	field(f, "%" PRIu64, r->load.entries);
	field(f, "%" PRIu64, r->load.errors);
	field(f, "%.1f", per_s(r->load.requests, r->secs));
	field(f, "%.1f", per_s(r->load.entries, r->secs));
	field(f, "%.3f", mb_per_s(r));
	fig(f, l ? q_ms(r, 0.5) : -1, 4);
	fig(f, l ? q_ms(r, 0.99) : -1, 4);
	fig(f, l ? q_ms(r, 0.999) : -1, 4);
	fig(f, l ? (double)r->load.hist.max_ns / 1e6 : -1, 4);
}

static void node_figures(struct fields *f, const struct cb_result *r, const struct cb_calib *cal)
{
	for (unsigned k = 0; k < BENCH_NODES; k++)
		fig(f, r->cpu_s[k], 3);
	for (unsigned k = 0; k < BENCH_NODES; k++)
		fig(f, r->peak_rss_mb[k], 2);
	for (unsigned k = 0; k < BENCH_NODES; k++)
		fig(f, r->rss_mb[k], 2);
	fig(f, r->bench_cpu_s, 3);
	fig(f, r->frames_per_s, 1);
	fig(f, r->messages_per_s, 1);
	fig(f, r->fsyncs_per_s, 1);
	fig(f, r->store_disk_mb, 2);
	bool l = r->row.groups > 0;
	fig(f, cal->done ? cal->d.fsync_p50_us : -1, 1);
	fig(f, cal->done ? cal->d.fsync_p99_us : -1, 1);
	fig(f, cal->done ? cal->d.seq_mb_per_s : -1, 1);
	fig(f, cal->done && l ? q_ms(r, 0.5) * 1e3 / cal->d.fsync_p50_us : -1, 3);
	fig(f, cal->done && l ? mb_per_s(r) / cal->d.seq_mb_per_s : -1, 4);
}

static int mkdir_p(const char *dir)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s", dir);
	for (char *s = p + 1; *s; s++) {
		if (*s != '/')
			continue;
		*s = '\0';
		if (mkdir(p, 0755) != 0 && errno != EEXIST)
			return -1;
		*s = '/';
	}
	return mkdir(p, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

int cb_csv_check(const char *path)
{
	char dir[4096], want[2048], line[2048] = "";
	snprintf(dir, sizeof(dir), "%s", path);
	if (mkdir_p(dirname(dir)) != 0) {
		fprintf(stderr, "dledger-bench: --csv %s: cannot make its directory: %s\n", path,
		        strerror(errno));
		return 1;
	}
	header(want, sizeof(want));
	FILE *f = fopen(path, "a+");
	if (f == NULL) {
		fprintf(stderr, "dledger-bench: --csv %s: %s\n", path, strerror(errno));
		return 1;
	}
	int rc = 0;
	if (fseek(f, 0, SEEK_END) == 0 && ftell(f) == 0) {
		rc = fprintf(f, "%s\n", want) < 0 ? 1 : 0;
	} else {
		rewind(f);
		if (fgets(line, sizeof(line), f) == NULL || strcspn(line, "\r\n") != strlen(want) ||
		    strncmp(line, want, strlen(want)) != 0) {
			fprintf(stderr,
			        "dledger-bench: --csv %s holds other columns (another "
			        "version's?): give a new file\n",
			        path);
			rc = 1;
		}
	}
	if (fclose(f) != 0 && rc == 0) {
		fprintf(stderr, "dledger-bench: --csv %s: %s\n", path, strerror(errno));
		rc = 1;
	}
	return rc;
}

/* Data rows in the CSV so far. */
static unsigned csv_rows(const char *path)
{
	FILE *f = fopen(path, "r");
	unsigned lines = 0;
	int ch;
	while (f != NULL && (ch = getc(f)) != EOF)
		lines += ch == '\n';
	if (f != NULL)
		fclose(f);
	return lines > 0 ? lines - 1 : 0;
}

/* STEM: the CSV's path without a ".csv" ending. */
static void stem_of(const char *csv, char *out, size_t cap)
{
	size_t n = strlen(csv);
	if (n > 4 && strcmp(csv + n - 4, ".csv") == 0)
		n -= 4;
	snprintf(out, cap, "%.*s", (int)n, csv);
}

static int write_cdf(const char *csv, struct cb_result *r)
{
	char stem[4096], path[4400];
	stem_of(csv, stem, sizeof(stem));
	snprintf(path, sizeof(path), "%s-run%03u-%s.cdf", stem, csv_rows(csv) + 1, r->row.label);
	FILE *f = fopen(path, "w");
	int rc = f == NULL ? -1 : 0;
	if (rc == 0) {
		fprintf(f, "# %s: latency_ms fraction_at_or_below (%" PRIu64 " requests)\n",
		        r->row.label, r->load.hist.count);
		rc = bench_hist_write_cdf(&r->load.hist, f);
		rc = fclose(f) != 0 ? -1 : rc;
	}
	if (rc != 0) {
		fprintf(stderr, "dledger-bench: %s: %s\n", path, strerror(errno));
		return 1;
	}
	snprintf(r->cdf_file, sizeof(r->cdf_file), "%s", basename(path));
	return 0;
}

int cb_csv_append(const char *path, struct cb_result *r, const struct cb_calib *cal)
{
	if (r->row.groups > 0 && write_cdf(path, r) != 0)
		return 1;
	struct fields f = {.n = 0};
	params(&f, r);
	load_figures(&f, r);
	node_figures(&f, r, cal);
	field(&f, "%s", r->cdf_file);
	text(&f, r->load.first_error);
	DL_ASSERT(f.n == N_COLS && f.len < sizeof(f.s) - 1);
	FILE *out = fopen(path, "a");
	int rc = out == NULL || fprintf(out, "%s\n", f.s) < 0 ? 1 : 0;
	if (out != NULL && fclose(out) != 0)
		rc = 1;
	if (rc != 0)
		fprintf(stderr, "dledger-bench: --csv %s: %s\n", path, strerror(errno));
	return rc;
}

/* ---- plots --------------------------------------------------------------------------------- */

bool cb_have_gnuplot(void)
{
	const char *path = getenv("PATH");
	char buf[4096];
	snprintf(buf, sizeof(buf), "%s", path != NULL ? path : "/usr/bin:/bin");
	for (char *save, *d = strtok_r(buf, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
		char exe[4200];
		snprintf(exe, sizeof(exe), "%s/gnuplot", d);
		if (access(exe, X_OK) == 0)
			return true;
	}
	return false;
}

/* Runs with the same series on one line: same entry size, batch, groups
 * and loop. */
static bool same_series(const struct cb_result *a, const struct cb_result *b)
{
	return a->row.payload == b->row.payload && a->row.batch == b->row.batch &&
	       a->row.groups == b->row.groups && a->row.idle_groups == b->row.idle_groups &&
	       (a->row.rate_rps > 0) == (b->row.rate_rps > 0);
}

static void throughput_plot(FILE *f, const char *stem_base, const struct cb_result *rs, unsigned n)
{
	fprintf(f,
	        "set output '%s-throughput.png'\n"
	        "set title 'dledger-bench: committed entries/s against requests in flight'\n"
	        "set logscale xy\n"
	        "set xlabel 'requests in flight (clients x in flight per client)'\n"
	        "set ylabel 'committed entries/s'\n"
	        "set grid\n"
	        "set key left top\n",
	        stem_base);
	bool *done = calloc(n, sizeof(*done));
	DL_ASSERT(done != NULL);
	char plot[8192] = "plot";
	size_t len = strlen(plot);
	unsigned series = 0;
	for (unsigned i = 0; i < n; i++) {
		if (done[i] || !loaded(&rs[i]))
			continue;
		fprintf(f, "$s%u << EOD\n", series);
		for (unsigned j = i; j < n; j++) {
			if (done[j] || !loaded(&rs[j]) || !same_series(&rs[i], &rs[j]))
				continue;
			done[j] = true;
			fprintf(f, "%u %.1f %s\n", rs[j].row.clients * rs[j].row.inflight,
			        per_s(rs[j].load.entries, rs[j].secs), rs[j].row.label);
		}
		fprintf(f, "EOD\n");
		const struct cb_row *w = &rs[i].row;
		/* The line, then each point's run label above it. */
		len += (size_t)snprintf(plot + len, sizeof(plot) - len,
		                        "%s $s%u using 1:2 with linespoints title "
		                        "'%u B x %u, %u group%s + %u idle%s', "
		                        "$s%u using 1:2:3 with labels offset 0,1 font ',8' notitle",
		                        series ? "," : "", series, w->payload, w->batch, w->groups,
		                        w->groups == 1 ? "" : "s", w->idle_groups,
		                        w->rate_rps ? ", open loop" : "", series);
		DL_ASSERT(len < sizeof(plot));
		series++;
	}
	free(done);
	fprintf(f, "%s\nunset logscale\nunset label\n", plot);
}

static void cdf_plot(FILE *f, const char *stem_base, const struct cb_result *rs, unsigned n)
{
	fprintf(f,
	        "set output '%s-latency-cdf.png'\n"
	        "set title 'dledger-bench: latency CDF of each run'\n"
	        "set logscale x\n"
	        "set xlabel 'latency (ms)'\n"
	        "set ylabel 'fraction of requests at or below'\n"
	        "set yrange [0:1]\n"
	        "set grid\n"
	        "set key right bottom\n"
	        "plot",
	        stem_base);
	unsigned k = 0;
	for (unsigned i = 0; i < n; i++) {
		if (!loaded(&rs[i]) || rs[i].cdf_file[0] == '\0')
			continue;
		/* gnuplot cycles through 8 colours: a new dash pattern each round. */
		fprintf(f, "%s '%s' using 1:2 with lines lw 2 dt %u title '%s'", k ? "," : "",
		        rs[i].cdf_file, k / 8 + 1, rs[i].row.label);
		k++;
	}
	fprintf(f, "\n");
}

/* Runs gnuplot on `script` in `dir`, at most GNUPLOT_WAIT_MS. */
static int run_gnuplot(const char *dir, const char *script)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		if (chdir(dir) != 0)
			_exit(126);
		execlp("gnuplot", "gnuplot", script, (char *)NULL);
		_exit(127);
	}
	int st = 0;
	for (unsigned ms = 0; waitpid(pid, &st, WNOHANG) != pid; ms += 50) {
		if (ms >= GNUPLOT_WAIT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &st, 0);
			return -1;
		}
		struct timespec ts = {.tv_nsec = 50000000L};
		nanosleep(&ts, NULL);
	}
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int cb_plot(const char *csv_path, const struct cb_result *rs, unsigned n)
{
	if (!cb_have_gnuplot()) {
		fprintf(stderr,
		        "dledger-bench: --plot: gnuplot is not installed (Debian package "
		        "gnuplot-nox); the CSV %s is written, the plots are not\n",
		        csv_path);
		return 1;
	}
	char stem[4096], d[4096], b[4096], script[4400];
	stem_of(csv_path, stem, sizeof(stem));
	snprintf(d, sizeof(d), "%s", stem);
	snprintf(b, sizeof(b), "%s", stem);
	const char *dir = dirname(d), *base = basename(b);
	snprintf(script, sizeof(script), "%s.gp", stem);
	FILE *f = fopen(script, "w");
	if (f == NULL) {
		fprintf(stderr, "dledger-bench: %s: %s\n", script, strerror(errno));
		return 1;
	}
	fprintf(f,
	        "# written by dledger-bench --plot; run again with: cd %s && gnuplot %s.gp\n"
	        "set terminal pngcairo size 1200,750 noenhanced\n",
	        dir, base);
	throughput_plot(f, base, rs, n);
	cdf_plot(f, base, rs, n);
	if (fclose(f) != 0) {
		fprintf(stderr, "dledger-bench: %s: %s\n", script, strerror(errno));
		return 1;
	}
	snprintf(script, sizeof(script), "%s.gp", base);
	int rc = run_gnuplot(dir, script);
	if (rc != 0) {
		fprintf(stderr, "dledger-bench: gnuplot %s/%s failed (%d)\n", dir, script, rc);
		return 1;
	}
	printf("plots: %s-throughput.png, %s-latency-cdf.png\n", stem, stem);
	return 0;
}
