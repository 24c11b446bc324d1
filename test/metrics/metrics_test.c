/*
 * Metrics of a running node: one `dledger-actors` process with a one-member
 * group and metricsAddress set, scraped over HTTP. The text must pass
 * `promtool check metrics` (Debian package prometheus), and the append and
 * commit counters must move when the C client appends.
 * Usage: metrics_test PATH/TO/dledger-actors
 *
 * The node started is stopped (SIGTERM, then SIGKILL after a bound) before
 * the program exits; every wait is bounded in time.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client/client.h"
#include "common/dl_time.h"
#include "test/lib/tt.h"
#include "test/lib/tt_net.h"
#include "test/lib/tt_proc.h"

TT_MAIN_STATE;

#define MAX_SCRAPE_BYTES (8u << 20)
#define APPENDS          50

static const char *actors_bin;
static char dir[64];
static pid_t node_pid;

static void sleep_ms(unsigned ms)
{
	usleep(ms * 1000u);
}
static uint64_t now_ms(void)
{
	return dl_now_ns() / 1000000u;
}

static void kill_node(void)
{
	if (node_pid != 0)
		kill(node_pid, SIGKILL);
}

/* SIGTERM, bounded wait, SIGKILL; returns the wait status. */
static int stop_node(void)
{
	int status = tt_stop_pid(node_pid, SIGTERM);
	node_pid = 0;
	return status;
}

/* GET `path` from 127.0.0.1:port over HTTP/1.0. Returns the status code
 * (0 when the node does not answer) and the body in *body (malloc'd). */
static int http_get(uint16_t port, const char *path, char **body)
{
	*body = NULL;
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	tt_assert(fd >= 0);
	struct timeval tv = {.tv_sec = 5};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons(port),
	                         .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		close(fd);
		return 0;
	}
	char req[256];
	int n = snprintf(req, sizeof(req),
	                 "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
	tt_assert(write(fd, req, (size_t)n) == n);
	size_t cap = 64 * 1024, len = 0;
	char *buf = malloc(cap + 1);
	tt_assert(buf != NULL);
	for (;;) {
		if (len == cap) {
			tt_assert(cap < MAX_SCRAPE_BYTES, "scrape over %u bytes", MAX_SCRAPE_BYTES);
			cap *= 2;
			buf = realloc(buf, cap + 1);
			tt_assert(buf != NULL);
		}
		ssize_t r = read(fd, buf + len, cap - len);
		if (r <= 0)
			break; /* EOF, or the 5 s timeout: judged by Content-Length below */
		len += (size_t)r;
		buf[len] = '\0';
		char *hdr_end = strstr(buf, "\r\n\r\n");
		const char *cl = hdr_end ? strcasestr(buf, "\r\nContent-Length:") : NULL;
		if (cl != NULL && cl < hdr_end &&
		    len >= (size_t)(hdr_end + 4 - buf) + strtoul(cl + 17, NULL, 10))
			break;
	}
	close(fd);
	buf[len] = '\0';
	int status = 0;
	char *hdr_end = strstr(buf, "\r\n\r\n");
	tt_assert(sscanf(buf, "HTTP/1.%*d %d", &status) == 1 && hdr_end != NULL,
	          "bad HTTP response: %.200s", buf);
	memmove(buf, hdr_end + 4, strlen(hdr_end + 4) + 1);
	*body = buf;
	return status;
}

/* The value of the sample whose line starts with `series` (a name plus
 * labels, exactly as printed) followed by a space; -1 if absent. */
static double sample(const char *text, const char *series)
{
	size_t n = strlen(series);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, series, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return -1;
}

static void promtool_accepts(const char *text)
{
	tt_assert(system("command -v promtool >/dev/null 2>&1") == 0,
	          "promtool not found: install the Debian package prometheus (./run deps)");
	char path[128], cmd[300];
	snprintf(path, sizeof(path), "%s/scrape.txt", dir);
	FILE *f = fopen(path, "w");
	tt_assert(f != NULL);
	fputs(text, f);
	fclose(f);
	snprintf(cmd, sizeof(cmd), "promtool check metrics < %s", path);
	int rc = system(cmd);
	tt_assert(rc == 0, "promtool check metrics objects to %s (status %d)", path, rc);
}

#define M "{group=\"g0\",id=\"n0\"}"

static void scrape_passes_promtool_and_counters_move(void)
{
	snprintf(dir, sizeof(dir), "/tmp/dl-metrics-XXXXXX");
	tt_assert(mkdtemp(dir) != NULL);
	uint16_t port = tt_port(), mport = tt_port();
	char peers[64], conf[128], logf[128], text[512];
	snprintf(peers, sizeof(peers), "n0-127.0.0.1:%u", port);
	snprintf(conf, sizeof(conf), "%s/node.yaml", dir);
	snprintf(logf, sizeof(logf), "%s/node.log", dir);
	snprintf(text, sizeof(text),
	         "storeBaseDir: %s/data\nheartBeatTimeIntervalMs: 50\nelectionTimeoutMs: 200\n"
	         "mappedFileSizeForEntryData: 4194304\nmetricsAddress: 127.0.0.1:%u\n"
	         "DLedgerConfigs:\n  - DLedgerConfig:\n      group: g0\n      id: n0\n"
	         "      peers: %s\n",
	         dir, mport, peers);
	FILE *f = fopen(conf, "w");
	tt_assert(f != NULL);
	fputs(text, f);
	fclose(f);

	node_pid = tt_spawn_node(actors_bin, conf, logf);
	tt_assert(node_pid > 0);

	/* Up and leading: the scrape says role 3 (bounded: 10 s). */
	char *body = NULL;
	uint64_t t0 = now_ms();
	for (;;) {
		free(body);
		int st = http_get(mport, "/metrics", &body);
		if (st == 200 && sample(body, "dledger_member_role" M) == 3)
			break;
		tt_assert(now_ms() - t0 < 10000,
		          "no leading member in the scrape within 10 s "
		          "(status %d; log %s)",
		          st, logf);
		sleep_ms(50);
	}
	promtool_accepts(body);
	tt_assert(sample(body, "dledger_members") == 1);
	tt_assert(sample(body, "dledger_leaders") == 1);
	tt_assert(sample(body, "dledger_process_resident_memory_bytes") > 0);
	tt_assert(sample(body, "dledger_process_threads") >= 2);
	double appended0 = sample(body, "dledger_member_appended_entries_total" M);
	double commit0 = sample(body, "dledger_member_commit_index" M);
	double bytes0 = sample(body, "dledger_member_committed_bytes_total" M);
	double lat0 = sample(body, "dledger_commit_latency_seconds_count");
	tt_assert(appended0 >= 0 && commit0 >= 0 && bytes0 >= 0 && lat0 >= 0);
	free(body);

	struct dl_client *cl;
	struct dl_errctx err = {{0}};
	tt_assert(dl_client_open(peers, "g0", NULL, &cl, &err) == 0, "%s", err.msg);
	for (int i = 0; i < APPENDS; i++) {
		char e[32];
		int n = snprintf(e, sizeof(e), "entry-%04d", i);
		int rc = dl_client_append(cl, e, (size_t)n, NULL, NULL, &err);
		tt_assert(rc == 0, "append %d: %s %s", i, dl_strerror(rc), err.msg);
	}
	dl_client_close(cl);

	/* The acknowledgements come after commit; the status is published by
	 * the actor a little later (bounded: 5 s). */
	t0 = now_ms();
	for (body = NULL;;) {
		free(body);
		tt_assert(http_get(mport, "/metrics", &body) == 200);
		if (sample(body, "dledger_member_commit_index" M) >= commit0 + APPENDS &&
		    sample(body, "dledger_member_appended_entries_total" M) >= appended0 + APPENDS)
			break;
		tt_assert(now_ms() - t0 < 5000, "counters did not move within 5 s:\n%s", body);
		sleep_ms(50);
	}
	promtool_accepts(body);
	tt_assert(sample(body, "dledger_member_committed_bytes_total" M) >= bytes0 + APPENDS * 10);
	tt_assert(sample(body, "dledger_member_last_index" M) >= commit0 + APPENDS);
	tt_assert(sample(body, "dledger_member_durable_index" M) >= commit0 + APPENDS);
	tt_assert(sample(body, "dledger_commit_latency_seconds_count") >= lat0 + APPENDS);
	tt_assert(sample(body, "dledger_commit_latency_seconds_bucket{le=\"+Inf\"}") ==
	          sample(body, "dledger_commit_latency_seconds_count"));
	tt_assert(sample(body, "dledger_fsyncs_total") > 0);
	tt_assert(sample(body, "dledger_fsync_duration_seconds_count") > 0);
	tt_assert(sample(body, "dledger_flush_passes_total") > 0);
	free(body);

	tt_assert(http_get(mport, "/nothing-here", &body) == 404);
	free(body);

	int status = stop_node();
	tt_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "node exit status %d", status);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	tt_assert(system(cmd) == 0);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: metrics_test PATH/TO/dledger-actors\n");
		return 2;
	}
	actors_bin = argv[1];
	signal(SIGPIPE, SIG_IGN);
	atexit(kill_node);
	static const struct tt_test tests[] = {
	        TT_T(scrape_passes_promtool_and_counters_move),
	};
	return tt_run("metrics", tests, TT_COUNT(tests));
}
