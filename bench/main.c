/*
 * dledger-bench - benchmarks, one subcommand each:
 *   store   append load on N stores sharing one flush thread
 *   crc     CRC32C (ISA-L) against zlib's CRC32 on 128 B and 4 KiB
 *   append  closed-loop appends to a running group (client/client.h)
 *   cluster the cluster benchmark (cluster_bench.c); also what runs when
 *           the first argument is an option: `dledger-bench --spawn ...`
 */
#include <stdio.h>
#include <string.h>

#include "bench/bench.h"

struct subcommand {
	const char *name;
	const char *help;
	int (*main)(int argc, char **argv);
};

static const struct subcommand commands[] = {
        {"store", "append load on N stores sharing one flush thread", bench_store_main},
        {"crc", "CRC32C (ISA-L) and CRC32 (zlib) speed on 128 B and 4 KiB", bench_crc_main},
        {"append", "closed-loop appends to a running group through the C client",
         bench_append_main},
        {"cluster", "a 3-node cluster under load: throughput, latency, node CPU/memory, CSV",
         bench_cluster_main},
};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: dledger-bench <subcommand> [options]   (--help on each)\n"
	        "       dledger-bench --spawn|--peers ... [options]  (the cluster benchmark)\n\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\n`dledger-bench cluster --help` documents the cluster benchmark.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		usage(argc < 2 ? stderr : stdout);
		return argc < 2 ? 2 : 0;
	}
	/* Options without a subcommand: the cluster benchmark, the main job.
	 * Like every subcommand it reads its options from argv[1] on. */
	if (strncmp(argv[1], "--", 2) == 0)
		return bench_cluster_main(argc, argv);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(argv[1], commands[i].name) == 0)
			return commands[i].main(argc - 1, argv + 1);
	fprintf(stderr, "dledger-bench: unknown subcommand '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
