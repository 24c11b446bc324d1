/*
 * crc_bench.c - `dledger-bench crc`: the measurement behind the checksum
 * choice in docs/STORAGE.md. Times ISA-L's crc32_iscsi (CRC32C) and zlib's
 * crc32 (CRC32) on 128 B and 4 KiB buffers, single thread.
 */
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "bench/bench.h"

static volatile uint32_t sink;

static double measure(int which, unsigned char *buf, int len, double seconds)
{
	uint64_t iters = 0, t0 = bench_now_ns(), t;
	uint64_t budget = (uint64_t)(seconds * 1e9);
	uint32_t acc = 0;
	do {
		for (int k = 0; k < 1024; k++) {
			buf[k & 63] ^= (unsigned char)k; /* defeat hoisting */
			if (which == 0)
				acc ^= ~crc32_iscsi(buf, len, 0xffffffffu);
			else
				acc ^= (uint32_t)crc32(0L, buf, (uInt)len);
		}
		iters += 1024;
		t = bench_now_ns();
	} while (t - t0 < budget);
	sink = acc;
	return (double)(t - t0) / (double)iters;
}

int bench_crc_main(int argc, char **argv)
{
	double seconds = 0.5;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
			seconds = atof(argv[++i]);
		} else {
			printf("usage: dledger-bench crc [--seconds S]   (S per measurement, "
			       "0.5)\n");
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	unsigned char check[] = "123456789";
	printf("check values: crc32c(\"123456789\") = %08x (want e3069283), "
	       "crc32 = %08lx (want cbf43926)\n",
	       ~crc32_iscsi(check, 9, 0xffffffffu), crc32(0L, check, 9));
	unsigned char *buf = malloc(4096);
	if (buf == NULL)
		return 1;
	for (int i = 0; i < 4096; i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	const int sizes[] = {128, 4096};
	const char *names[] = {"ISA-L crc32_iscsi (CRC32C)", "zlib crc32 (CRC32)"};
	printf("%-28s %8s %10s %10s\n", "function", "bytes", "ns/call", "GB/s");
	for (int w = 0; w < 2; w++)
		for (int s = 0; s < 2; s++) {
			double ns = measure(w, buf, sizes[s], seconds);
			printf("%-28s %8d %10.1f %10.2f\n", names[w], sizes[s], ns, sizes[s] / ns);
		}
	free(buf);
	return 0;
}
