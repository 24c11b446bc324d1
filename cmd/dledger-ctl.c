/*
 * dledger-ctl - the command-line client: append, get, metadata (data
 * subcommands, on the C client of client/client.h), and status, add-group,
 * remove-group, transfer-leader (control subcommands: one msgpack request
 * to a node's control socket, docs/OPERATIONS.md "Control socket"), and
 * reload.
 *
 * Exit status: 0 success, 1 the operation failed (one line on stderr:
 * "dledger-ctl: append: not leader after 3 hops (last tried n1 at ...)"),
 * 2 usage error.
 *
 * Files (cmd/ctl.h): this one has main and the table of subcommands;
 * ctl_data.c, ctl_control.c and ctl_status.c the subcommands.
 */
#include <stdio.h>
#include <string.h>

#include "cmd/ctl.h"

#ifndef DLEDGER_VERSION
#define DLEDGER_VERSION "dev"
#endif

/* ---- the table ------------------------------------------------------------------------ */

struct subcmd {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static const struct subcmd subcmds[] = {
	{"append", "append entries to a group, print INDEX TERM per entry", cmd_append},
	{"get", "write committed entries' bodies to stdout", cmd_get},
	{"metadata", "show groups and members as their nodes know them", cmd_metadata},
	{"status", "show the members of a node (control socket)", cmd_status},
	{"add-group", "start a member of a group on a node at run time", cmd_add_group},
	{"remove-group", "stop a member of a group on a node at run time", cmd_remove_group},
	{"transfer-leader", "hand a group's leadership to another member", cmd_transfer_leader},
	{"reload", "re-read a node's config file and apply the group changes", cmd_reload},
};

static void main_usage(FILE *f)
{
	fprintf(f, "Usage: dledger-ctl COMMAND [options]   (dledger-ctl COMMAND --help)\n\n"
		   "Commands:\n");
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
		fprintf(f, "  %-16s %s\n", subcmds[i].name, subcmds[i].summary);
	fprintf(f, "\nExit status: 0 success, 1 the operation failed, 2 usage error.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		main_usage(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
		if (strcmp(name, "help") == 0 && argc > 2) {
			char *help_argv[] = {argv[2], "--help", NULL};
			for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++)
				if (strcmp(subcmds[i].name, argv[2]) == 0) {
					g_cmd = subcmds[i].name;
					return subcmds[i].run(2, help_argv);
				}
		}
		main_usage(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0) {
		printf("dledger-ctl %s\n", DLEDGER_VERSION);
		return 0;
	}
	for (size_t i = 0; i < sizeof(subcmds) / sizeof(subcmds[0]); i++) {
		if (strcmp(subcmds[i].name, name) == 0) {
			g_cmd = subcmds[i].name;
			return subcmds[i].run(argc - 1, argv + 1);
		}
	}
	fprintf(stderr, "dledger-ctl: unknown command '%s'\n", name);
	main_usage(stderr);
	return EXIT_USAGE;
}
