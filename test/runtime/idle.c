/*
 * idle: N idle groups on three in-process nodes; reports the CPU the whole
 * process used per node over a quiet period (getrusage), and the transport's
 * frames/messages ratio; then what an idle member costs: resident memory
 * (VmRSS, RssAnon, RssFile of /proc/self/status before the nodes start and
 * after the quiet period), disk (allocated blocks, st_blocks * 512, of the
 * files under each member's store directory: segments are sparse and
 * preallocated, so st_size says nothing), threads and mappings (lines of
 * /proc/self/maps). Usage: idle GROUPS SECONDS [HEARTBEAT_MS]
 * IDLE_MALLOC_STATS=1 in the environment also prints glibc's malloc_stats().
 */
#include <arpa/inet.h>
#include <ftw.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "test/lib/tt_net.h"
#include "common/dl_log.h"
#include "common/dl_time.h"
#include "runtime/runtime.h"

static uint16_t free_port(void)
{
	uint16_t port = tt_free_port();
	if (port == 0)
		exit(2);
	return port;
}

static double cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---- what the process holds -------------------------------------------- */

struct proc_mem {
	long rss_kib, anon_kib, file_kib, shmem_kib; /* /proc/self/status */
	long threads;
	long maps; /* lines of /proc/self/maps */
};

static long status_field(const char *buf, const char *key)
{
	const char *p = strstr(buf, key);
	return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

static void proc_mem_read(struct proc_mem *m)
{
	memset(m, 0, sizeof(*m));
	char buf[8192];
	FILE *f = fopen("/proc/self/status", "r");
	if (f != NULL) {
		size_t n = fread(buf, 1, sizeof(buf) - 1, f);
		buf[n] = '\0';
		fclose(f);
		m->rss_kib = status_field(buf, "\nVmRSS:");
		m->anon_kib = status_field(buf, "\nRssAnon:");
		m->file_kib = status_field(buf, "\nRssFile:");
		m->shmem_kib = status_field(buf, "\nRssShmem:");
		m->threads = status_field(buf, "\nThreads:");
	}
	f = fopen("/proc/self/maps", "r");
	if (f != NULL) {
		int c;
		while ((c = getc(f)) != EOF)
			m->maps += c == '\n';
		fclose(f);
	}
}

/* ---- what the stores hold on disk -------------------------------------- */

static uint64_t walk_bytes, walk_dir_bytes, walk_files;

static int walk_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)path;
	(void)ftw;
	if (type == FTW_F) {
		walk_bytes += (uint64_t)sb->st_blocks * 512u;
		walk_files++;
	} else if (type == FTW_D) {
		walk_dir_bytes += (uint64_t)sb->st_blocks * 512u;
	}
	return 0;
}

struct disk_use {
	uint64_t bytes;     /* allocated blocks of the files of every member */
	uint64_t dir_bytes; /* ... of the directories (member, data, index) */
	uint64_t files;
	uint64_t max_bytes; /* the largest member's files */
	char max_name[64];
};

static void disk_read(const char *dir, uint32_t groups, struct disk_use *d)
{
	memset(d, 0, sizeof(*d));
	char path[512];
	for (uint32_t g = 0; g < groups; g++)
		for (uint32_t k = 0; k < 3; k++) {
			snprintf(path, sizeof(path), "%s/g%u/n%u", dir, g, k);
			walk_bytes = walk_dir_bytes = walk_files = 0;
			if (nftw(path, walk_one, 16, FTW_PHYS) != 0)
				continue;
			d->bytes += walk_bytes;
			d->dir_bytes += walk_dir_bytes;
			d->files += walk_files;
			if (walk_bytes > d->max_bytes) {
				d->max_bytes = walk_bytes;
				snprintf(d->max_name, sizeof(d->max_name), "g%u/n%u", g, k);
			}
		}
}

int main(int argc, char **argv)
{
	uint32_t groups = argc > 1 ? (uint32_t)atoi(argv[1]) : 1024;
	uint32_t secs = argc > 2 ? (uint32_t)atoi(argv[2]) : 10;
	uint32_t hb = argc > 3 ? (uint32_t)atoi(argv[3]) : 2000;
	dl_log_set_level(DL_LOG_WARN);
	char dir[] = "/tmp/dl-idle-XXXXXX";
	if (!mkdtemp(dir))
		return 2;
	char addr[3][32];
	for (int k = 0; k < 3; k++)
		snprintf(addr[k], sizeof(addr[k]), "127.0.0.1:%u", free_port());
	struct rt_node *node[3];
	struct proc_mem m0, m_nodes, m_settled, m1;
	proc_mem_read(&m0);
	/* The nodes first, then the members: what the nodes cost without
	 * members (endpoint, nng's threads, flush threads) is measured apart. */
	for (uint32_t k = 0; k < 3; k++) {
		struct rt_node_config nc;
		rt_node_config_defaults(&nc);
		snprintf(nc.listen_addr, sizeof(nc.listen_addr), "%s", addr[k]);
		struct dl_errctx err = {{0}};
		if (rt_node_start(&nc, &node[k], &err) != 0) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
	}
	proc_mem_read(&m_nodes);
	for (uint32_t k = 0; k < 3; k++) {
		struct dl_errctx err = {{0}};
		for (uint32_t g = 0; g < groups; g++) {
			struct rt_member_config mc;
			rt_member_config_defaults(&mc);
			snprintf(mc.group, sizeof(mc.group), "g%u", g);
			snprintf(mc.self_id, sizeof(mc.self_id), "n%u", k);
			mc.n_peers = 3;
			for (uint32_t i = 0; i < 3; i++) {
				snprintf(mc.peers[i].id, sizeof(mc.peers[i].id), "n%u", i);
				snprintf(mc.peers[i].addr, sizeof(mc.peers[i].addr), "%s", addr[i]);
			}
			snprintf(mc.preferred_id, sizeof(mc.preferred_id), "n%u", g % 3);
			mc.heartbeat_ms = hb;
			mc.election_ms = 3 * hb;
			mc.store.base_dir = dir;
			mc.store.segment_bytes = 1u << 20;
			mc.store.index_segment_bytes = 1u << 16;
			if (rt_node_add(node[k], &mc, &err) != 0) {
				fprintf(stderr, "%s\n", err.msg);
				return 1;
			}
		}
	}
	/* Wait for leaders everywhere (bounded). */
	struct rt_member_status *st = calloc(groups, sizeof(*st));
	uint64_t deadline = dl_now_ns() + 120ull * 1000000000ull;
	uint32_t led = 0;
	while (dl_now_ns() < deadline) {
		led = 0;
		for (uint32_t k = 0; k < 3; k++) {
			uint32_t n = rt_node_status(node[k], st, groups, NULL);
			for (uint32_t i = 0; i < n; i++)
				led += st[i].role == RAFT_LEADER && strcmp(st[i].leader, st[i].preferred) == 0;
		}
		if (led == groups)
			break;
		usleep(100000);
	}
	printf("idle: %u groups x 3 nodes, heartbeat %u ms: %u/%u groups led by their preferred member\n",
	       groups, hb, led, groups);
	sleep(5); /* let transfers, catch-up and preallocation settle */
	proc_mem_read(&m_settled);
	struct rt_node_stats s0[3], s1[3];
	for (int k = 0; k < 3; k++)
		rt_node_stats(node[k], &s0[k]);
	double c0 = cpu_s();
	uint64_t t0 = dl_now_ns();
	sleep(secs);
	double c1 = cpu_s();
	double wall = (double)(dl_now_ns() - t0) / 1e9;
	uint64_t frames = 0, msgs = 0;
	for (int k = 0; k < 3; k++) {
		rt_node_stats(node[k], &s1[k]);
		frames += s1[k].frames_out - s0[k].frames_out;
		msgs += s1[k].msgs_out - s0[k].msgs_out;
	}
	double per_node = (c1 - c0) / wall / 3 * 100;
	printf("idle: cpu %.3f s in %.1f s for 3 nodes = %.2f%% of one core per node; %llu messages in %llu frames (%.1f per frame)\n",
	       c1 - c0, wall, per_node, (unsigned long long)msgs, (unsigned long long)frames,
	       frames ? (double)msgs / (double)frames : 0.0);
	/* After the quiet period, so that reading /proc and walking the
	 * stores does not count as the nodes' CPU. */
	proc_mem_read(&m1);
	struct disk_use d;
	disk_read(dir, groups, &d);
	double members = 3.0 * groups;
	printf("idle: per member (%u): rss %ld -> %ld KiB = %.1f KiB (anon %.1f, file %.1f, shmem %.1f; "
	       "%.1f KiB without the 3 bare nodes' %ld KiB; %+ld KiB over the quiet period); disk %.1f KiB "
	       "in %.1f files (+%.1f KiB of directories), largest %s %.1f KiB; %.2f threads, %.2f mappings "
	       "(process: %ld threads, %ld mappings)\n",
	       3 * groups, m0.rss_kib, m1.rss_kib, (double)(m1.rss_kib - m0.rss_kib) / members,
	       (double)(m1.anon_kib - m0.anon_kib) / members,
	       (double)(m1.file_kib - m0.file_kib) / members,
	       (double)(m1.shmem_kib - m0.shmem_kib) / members,
	       (double)(m1.rss_kib - m_nodes.rss_kib) / members, m_nodes.rss_kib - m0.rss_kib,
	       m1.rss_kib - m_settled.rss_kib, (double)d.bytes / 1024.0 / members,
	       (double)d.files / members, (double)d.dir_bytes / 1024.0 / members,
	       d.max_name[0] ? d.max_name : "-", (double)d.max_bytes / 1024.0,
	       (double)(m1.threads - m0.threads) / members, (double)(m1.maps - m0.maps) / members,
	       m1.threads, m1.maps);
	if (getenv("IDLE_MALLOC_STATS") != NULL)
		malloc_stats();
	for (int k = 0; k < 3; k++)
		rt_node_stop(node[k]);
	char cmd[64];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		return 1;
	free(st);
	return 0;
}
