/*
 * ctl_control.c - the control subcommands of dledger-ctl that change a
 * node: add-group, remove-group, transfer-leader, reload; and what they
 * share with status: the control options and one call to the node's
 * control socket (control/ctl_client.h; docs/OPERATIONS.md "Control
 * socket").
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cmd/ctl.h"
#include "control/ctl_pack.h"

static int ctl_opt(void *ctx, int id, const char *arg)
{
	struct ctl_args *a = ctx;
	switch (id) {
	case OPT_CONTROL: a->control = arg; return 0;
	case OPT_ID: a->id = arg; return 0;
	case OPT_PREFERRED: a->preferred = arg; return 0;
	case OPT_TO_ID: a->to = arg; return 0;
	case OPT_DELETE_DATA: a->delete_data = true; return 0;
	case OPT_SET:
		if (strchr(arg, '=') == NULL || arg[0] == '=')
			return usage_error("--set: expected KEY=VALUE, got '%s'", arg);
		if (a->n_set == SET_MAX)
			return usage_error("--set: at most %d", SET_MAX);
		a->set[a->n_set++] = arg;
		return 0;
	default: return usage_error("unexpected option");
	}
}

/* Sends the request in `sb` to the node at `path` and waits (bounded) for
 * the reply into `r` (free it with ctl_reply_free() whatever this returns).
 * An error, or an error reply, is printed. Returns 0 or EXIT_OP. */
int ctl_call(const char *path, const msgpack_sbuffer *sb, uint32_t timeout_ms,
	     struct ctl_reply *r)
{
	struct dl_errctx err = {{0}};
	if (ctl_client_call(path, sb->data, sb->size, timeout_ms, r, &err) == DL_OK)
		return 0;
	fail_msg("%s", err.msg);
	return EXIT_OP;
}

/* Parses the options, checks --control, prints help. Returns 0 to go on,
 * -1 after --help, or an exit status. */
int ctl_parse(int argc, char **argv, const struct option *opts, const char *usage,
	      struct common *co, struct ctl_args *a)
{
	int rc = parse_opts(argc, argv, opts, co, ctl_opt, a);
	if (rc != 0)
		return rc;
	if (co->help) {
		fputs(usage, stdout);
		return -1;
	}
	if (a->control == NULL)
		return usage_error("--control is required");
	if (co->timeout_ms == 0)
		co->timeout_ms = 5000;
	return 0;
}

static const char add_group_usage[] =
	"Usage: dledger-ctl add-group --control SOCK --group G --id ID --peers PEERS\n"
	"                             [--preferred-leader ID] [--set KEY=VALUE ...]\n"
	"\n"
	"Starts a member of group G on the node at SOCK and records it in the node's\n"
	"groups.yaml, so it comes back after a restart. Only a group the node does not\n"
	"host may be added: a new one, or one removed earlier (it resumes from its data).\n"
	"\n"
	"  --control SOCK          the node's control socket (controlSocket)\n"
	"  --group G, --id ID      the group, and this node's member id in it\n"
	"  --peers PEERS           every member: id-host:port;id-host:port;...\n"
	"  --preferred-leader ID   preferredLeaderId\n"
	"  --set KEY=VALUE         any per-group configuration key (repeatable)\n"
	"  --timeout MS            wait for the node's answer (default 5000)\n";

int cmd_add_group(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"id", required_argument, NULL, OPT_ID},
		{"peers", required_argument, NULL, OPT_PEERS},
		{"preferred-leader", required_argument, NULL, OPT_PREFERRED},
		{"set", required_argument, NULL, OPT_SET},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, add_group_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.id == NULL || co.peers == NULL)
		return usage_error("--group, --id and --peers are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 1, "add-group");
	ctl_pack_str(&pk, "keys");
	msgpack_pack_map(&pk, 3 + (a.preferred != NULL) + a.n_set);
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "id", a.id);
	ctl_pack_kstr(&pk, "peers", co.peers);
	if (a.preferred != NULL)
		ctl_pack_kstr(&pk, "preferredLeaderId", a.preferred);
	for (uint32_t i = 0; i < a.n_set; i++) {
		const char *eq = strchr(a.set[i], '=');
		msgpack_pack_str(&pk, (size_t)(eq - a.set[i]));
		msgpack_pack_str_body(&pk, a.set[i], (size_t)(eq - a.set[i]));
		ctl_pack_str(&pk, eq + 1);
	}
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	if (rc == 0) {
		const msgpack_object *r = ctl_map_get(u.map, "resumed");
		printf("added group %s member %s%s\n", co.group, a.id,
		       r && r->type == MSGPACK_OBJECT_BOOLEAN && r->via.boolean
			       ? " (resumed from its data)"
			       : "");
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char remove_group_usage[] =
	"Usage: dledger-ctl remove-group --control SOCK --group G --id ID [--delete-data]\n"
	"\n"
	"Stops this node's member ID of group G (its pending requests are answered or\n"
	"failed first) and records the removal in the node's groups.yaml. Its data stays\n"
	"on disk, so add-group can bring it back later, unless --delete-data.\n"
	"\n"
	"  --control SOCK   the node's control socket\n"
	"  --timeout MS     wait for the node's answer (default 5000)\n";

int cmd_remove_group(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"id", required_argument, NULL, OPT_ID},
		{"delete-data", no_argument, NULL, OPT_DELETE_DATA},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, remove_group_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.id == NULL)
		return usage_error("--group and --id are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 3, "remove-group");
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "id", a.id);
	ctl_pack_str(&pk, "delete_data");
	if (a.delete_data)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	if (rc == 0) {
		char data[4096];
		ctl_reply_str(u.map, "data", data, sizeof(data));
		printf("removed group %s member %s (data %s%s)\n", co.group, a.id,
		       a.delete_data ? "" : "kept in ", data);
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char transfer_usage[] =
	"Usage: dledger-ctl transfer-leader --control SOCK --group G --to ID [--timeout MS]\n"
	"\n"
	"Asks this node's member of group G, which must lead, to hand leadership to\n"
	"member ID, and waits until ID leads or the timeout (default 5000 ms) passes.\n";

int cmd_transfer_leader(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"group", required_argument, NULL, OPT_GROUP},
		{"to", required_argument, NULL, OPT_TO_ID},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, transfer_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	if (co.group == NULL || a.to == NULL)
		return usage_error("--group and --to are required");
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 3, "transfer-leader");
	ctl_pack_kstr(&pk, "group", co.group);
	ctl_pack_kstr(&pk, "to", a.to);
	ctl_pack_str(&pk, "timeout_ms");
	msgpack_pack_uint32(&pk, co.timeout_ms);
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms + 2000, &u);
	if (rc == 0)
		printf("%s: %s leads (term %" PRIu64 ", after %" PRIu64 " ms)\n", co.group, a.to,
		       ctl_reply_u64(u.map, "term"), ctl_reply_u64(u.map, "elapsed_ms"));
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}

static const char reload_usage[] =
	"Usage: dledger-ctl reload --control SOCK [--timeout MS]\n"
	"\n"
	"Makes the node re-read its config file (as SIGHUP does): groups.yaml still\n"
	"applies on top; members that appeared start, those that disappeared stop\n"
	"(their data stays); changed keys of a running member and node-wide keys are\n"
	"listed, not applied. An invalid file changes nothing; the error names it.\n"
	"Exit status 1 also when a new member could not be started.\n";

int cmd_reload(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, reload_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 0, "reload");
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms + 30000, &u);
	if (rc == 0) {
		const msgpack_object *rep = ctl_map_get(u.map, "report");
		const msgpack_object *failed = ctl_map_get(u.map, "failed");
		if (rep != NULL && rep->type == MSGPACK_OBJECT_STR)
			printf("%.*s\n", (int)rep->via.str.size, rep->via.str.ptr);
		if (failed != NULL && failed->type == MSGPACK_OBJECT_ARRAY && failed->via.array.size)
			rc = EXIT_OP;
	}
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}
