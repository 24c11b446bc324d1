/*
 * ctl.h - shared by the files of dledger-ctl only:
 *   ctl_common.c   messages, exit codes, the options every subcommand takes,
 *                  opening the C client
 *   ctl_data.c     append, get, metadata (the C client, client/client.h)
 *   ctl_control.c  add-group, remove-group, transfer-leader, reload, and
 *                  the control options and call (control/ctl_client.h)
 *   ctl_status.c   status: the table renderer and --json
 *   dledger-ctl.c  main: the table of subcommands and the dispatch
 * Each uses only ctl_common.c (and ctl_control.c's call and options, for
 * ctl_status.c).
 */
#ifndef DLEDGER_CMD_CTL_H
#define DLEDGER_CMD_CTL_H

#include <getopt.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "client/client.h"
#include "control/ctl_client.h"

#define EXIT_OP    1
#define EXIT_USAGE 2

#define CTL_TEXT_MAX 128 /* a name or path in a control reply */

/* The subcommand running, for messages ("dledger-ctl: append: ..."). */
extern const char *g_cmd;

/* "dledger-ctl: CMD: ..." on stderr, after flushing stdout. */
void fail_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same, then a pointer to --help; returns EXIT_USAGE. */
int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints err (or rc's text); returns EXIT_OP. */
int op_error(int rc, const struct dl_errctx *err);

/* ---- common options (ctl_common.c) ---- */

struct common {
	const char *peers;
	const char *group;
	const char *member;
	uint32_t timeout_ms;
	uint32_t max_hops;
	uint32_t get_wait_ms; /* dl_client_opts.get_wait_ms (0: the member's default) */
	const char *tls_cert, *tls_key, *tls_ca; /* all three or none */
	bool json;
	bool help;
};

enum opt_id {
	OPT_PEERS = 1000,
	OPT_GROUP,
	OPT_MEMBER,
	OPT_TIMEOUT,
	OPT_HOPS,
	OPT_JSON,
	OPT_DATA,
	OPT_FILE,
	OPT_INDEX,
	OPT_TO,
	OPT_LINES,
	OPT_WAIT,
	OPT_BATCH,
	OPT_INFLIGHT,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CA,
	OPT_HELP,
};

bool parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out);
bool parse_u32(const char *s, uint32_t min, uint32_t max, uint32_t *out);

/* getopt_long over `opts`; each option not shared goes to `own`. Returns 0,
 * or EXIT_USAGE. */
typedef int (*own_opt_fn)(void *ctx, int id, const char *arg);
int parse_opts(int argc, char **argv, const struct option *opts, struct common *co,
	       own_opt_fn own, void *ctx);
/* The client of co's peers (group may be NULL); 0, or an exit status
 * after the message. */
int open_client(const struct common *co, const char *group, uint32_t inflight,
		struct dl_client **c);

#define COMMON_OPTS                                                            \
	{"peers", required_argument, NULL, OPT_PEERS},                         \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                     \
	{"tls-cert", required_argument, NULL, OPT_TLS_CERT},                   \
	{"tls-key", required_argument, NULL, OPT_TLS_KEY},                     \
	{"tls-ca", required_argument, NULL, OPT_TLS_CA},                       \
	{"help", no_argument, NULL, OPT_HELP}

#define TLS_USAGE                                                                        \
	"  --tls-cert FILE  with --tls-key and --tls-ca: mutual TLS (tls+tcp://) with this\n" \
	"                   client certificate (PEM; scripts/make-certs.sh makes one)\n"     \
	"  --tls-key FILE   its private key (PEM)\n"                                          \
	"  --tls-ca FILE    the cluster's CA certificate (PEM)\n"

/* ---- control subcommands (ctl_control.c) ---- */

#define SET_MAX 48 /* --set KEY=VALUE per add-group */

enum ctl_opt_id {
	OPT_CONTROL = 1100,
	OPT_ID,
	OPT_PREFERRED,
	OPT_SET,
	OPT_DELETE_DATA,
	OPT_TO_ID,
};

struct ctl_args {
	const char *control;
	const char *id;
	const char *preferred;
	const char *to;
	const char *peers; /* add-group: COMMON_OPTS takes --peers into common */
	bool delete_data;
	uint32_t n_set;
	const char *set[SET_MAX];
};

#define CTL_OPTS                                                               \
	{"control", required_argument, NULL, OPT_CONTROL},                     \
	{"timeout", required_argument, NULL, OPT_TIMEOUT},                     \
	{"help", no_argument, NULL, OPT_HELP}

/* Parses the options, checks --control, prints help. Returns 0 to go on,
 * -1 after --help, or an exit status. */
int ctl_parse(int argc, char **argv, const struct option *opts, const char *usage,
	      struct common *co, struct ctl_args *a);
/* One request to the control socket at `path` (control/ctl_client.h); an
 * error is printed. Returns 0 or EXIT_OP; free `r` with ctl_reply_free(). */
int ctl_call(const char *path, const msgpack_sbuffer *sb, uint32_t timeout_ms,
	     struct ctl_reply *r);

/* ---- the subcommands: argc/argv from the subcommand's name on ---- */

int cmd_append(int argc, char **argv);
int cmd_get(int argc, char **argv);
int cmd_metadata(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_add_group(int argc, char **argv);
int cmd_remove_group(int argc, char **argv);
int cmd_transfer_leader(int argc, char **argv);
int cmd_reload(int argc, char **argv);

#endif
