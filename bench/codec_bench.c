/*
 * codec-bench - encode+decode speed of the wire codec (transport/codec.h).
 *
 * One iteration encodes a Raft APPEND of N entries of S bytes (read through
 * a tp_entry_reader, as the runtime does) into a reused frame buffer, then
 * decodes the frame header and the body (entries as views). Prints
 * messages/s and entry MB/s. Single-threaded.
 *
 *   codec-bench [entries=64] [entry_bytes=128] [seconds=2]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/dl_err.h"
#include "transport/codec.h"

struct bench_log {
	uint8_t *data;
	uint32_t entry_bytes;
};

static int bench_read(void *ctx, uint64_t index, struct raft_entry *out)
{
	const struct bench_log *l = ctx;
	out->term = 3;
	out->type = RAFT_ENTRY_NORMAL;
	out->data = l->data + (index % 64);
	out->len = l->entry_bytes;
	return 0;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static unsigned long arg(int argc, char **argv, int i, unsigned long def)
{
	return argc > i ? strtoul(argv[i], NULL, 10) : def;
}

int main(int argc, char **argv)
{
	uint32_t n = (uint32_t)arg(argc, argv, 1, 64);
	uint32_t size = (uint32_t)arg(argc, argv, 2, 128);
	double seconds = (double)arg(argc, argv, 3, 2);
	if (n == 0 || n > TP_MAX_ENTRIES || seconds <= 0) {
		fprintf(stderr, "usage: codec-bench [entries 1..%u] [entry_bytes] [seconds]\n",
			TP_MAX_ENTRIES);
		return 2;
	}
	struct bench_log log = {malloc(size + 64u), size};
	struct raft_entry *entries = calloc(n, sizeof(*entries));
	if (log.data == NULL || entries == NULL)
		return 1;
	for (uint32_t i = 0; i < size + 64u; i++)
		log.data[i] = (uint8_t)(i * 13);

	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	const struct tp_addr a = {"g0", "n1", "n0", 0};
	struct raft_message m = {.type = RAFT_MSG_APPEND, .term = 3};
	m.append.prev_term = 3;
	m.append.n_entries = n;

	uint64_t iters = 0, check = 0;
	size_t frame_bytes = 0;
	double start = now_s(), elapsed = 0;
	while (elapsed < seconds) {
		for (int k = 0; k < 1000; k++) {
			m.append.prev_index = iters * n;
			m.append.commit = m.append.prev_index;
			tp_fb_reset(&fb);
			if (tp_fb_add_raft(&fb, &a, &m, bench_read, &log) != 0)
				return 1;
			size_t off;
			struct tp_hdr h;
			struct raft_message out;
			if (tp_frame_begin(fb.buf, fb.len, &off) != 0 ||
			    tp_frame_next(fb.buf, fb.len, &off, &h) != 0 ||
			    tp_decode_raft(&h, &out, entries, n) != 0 || out.append.n_entries != n)
				return 1;
			check += out.append.prev_index + entries[n - 1].len;
			frame_bytes = fb.len;
			iters++;
		}
		elapsed = now_s() - start;
	}
	double msgs = (double)iters / elapsed;
	printf("codec-bench: APPEND of %u x %u B entries (frame %zu B): %.0f msgs/s encode+decode, "
	       "%.2f us/msg, %.0f MB/s of entries (check %llu)\n",
	       n, size, frame_bytes, msgs, 1e6 / msgs, msgs * n * size / 1e6,
	       (unsigned long long)(check & 0xff));
	tp_fb_free(&fb);
	free(entries);
	free(log.data);
	return 0;
}
