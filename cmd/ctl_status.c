/*
 * ctl_status.c - dledger-ctl status: one row per member of a node, from its
 * control socket's status reply, or the reply as JSON (--json).
 */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "cmd/ctl.h"
#include "control/ctl_pack.h"

static const char status_usage[] =
	"Usage: dledger-ctl status --control SOCK [--json]\n"
	"\n"
	"One row per member hosted by the node: group, member id, role (lead, foll,\n"
	"cand, pre), term, leader, first/last/committed/durable index, client appends\n"
	"pending, and for a leader each follower's lag in entries (id:lag). Names longer\n"
	"than their column end in '~'; --json has them whole, with match indexes.\n";

static json_t *mp_to_json(const msgpack_object *o)
{
	switch (o->type) {
	case MSGPACK_OBJECT_BOOLEAN: return json_boolean(o->via.boolean);
	case MSGPACK_OBJECT_POSITIVE_INTEGER: return json_integer((json_int_t)o->via.u64);
	case MSGPACK_OBJECT_NEGATIVE_INTEGER: return json_integer((json_int_t)o->via.i64);
	case MSGPACK_OBJECT_STR: return json_stringn(o->via.str.ptr, o->via.str.size);
	case MSGPACK_OBJECT_ARRAY: {
		json_t *a = json_array();
		for (uint32_t i = 0; i < o->via.array.size; i++)
			json_array_append_new(a, mp_to_json(&o->via.array.ptr[i]));
		return a;
	}
	case MSGPACK_OBJECT_MAP: {
		json_t *m = json_object();
		for (uint32_t i = 0; i < o->via.map.size; i++) {
			const msgpack_object *k = &o->via.map.ptr[i].key;
			if (k->type != MSGPACK_OBJECT_STR)
				continue;
			char key[128];
			snprintf(key, sizeof(key), "%.*s", (int)k->via.str.size, k->via.str.ptr);
			json_object_set_new(m, key, mp_to_json(&o->via.map.ptr[i].val));
		}
		return m;
	}
	default: return json_null();
	}
}

/* `s` in at most `width` bytes: longer ones are cut and end in '~'. */
static const char *abbrev(const char *s, size_t width, char *buf, size_t cap)
{
	size_t n = strlen(s);
	if (n <= width || width + 1 > cap)
		return s;
	memcpy(buf, s, width - 1);
	buf[width - 1] = '~';
	buf[width] = '\0';
	return buf;
}

static void status_row(const msgpack_object *m)
{
	char group[CTL_TEXT_MAX], id[CTL_TEXT_MAX], role[128], leader[CTL_TEXT_MAX];
	char note[160] = "";
	char b1[16], b2[16], b3[16], lag[256] = "";
	ctl_reply_str(m, "group", group, sizeof(group));
	ctl_reply_str(m, "id", id, sizeof(id));
	ctl_reply_str(m, "role", role, sizeof(role));
	ctl_reply_str(m, "leader", leader, sizeof(leader));
	const msgpack_object *f = ctl_map_get(m, "followers");
	size_t n = 0;
	for (uint32_t i = 0; f && f->type == MSGPACK_OBJECT_ARRAY && i < f->via.array.size; i++) {
		char fid[CTL_TEXT_MAX], b4[16];
		ctl_reply_str(&f->via.array.ptr[i], "id", fid, sizeof(fid));
		n += (size_t)snprintf(lag + n, n < sizeof(lag) ? sizeof(lag) - n : 0, "%s%s:%" PRIu64,
				      n ? " " : "", abbrev(fid, 5, b4, sizeof(b4)),
				      ctl_reply_u64(&f->via.array.ptr[i], "lag"));
		if (n >= sizeof(lag))
			break;
	}
	uint64_t damaged = ctl_reply_u64(m, "damaged_index");
	size_t k = strlen(lag);
	if (damaged != 0 && k + 1 < sizeof(lag))
		snprintf(lag + k, sizeof(lag) - k, "%sdamaged:%" PRIu64, k ? " " : "", damaged);
	const msgpack_object *failed = ctl_map_get(m, "failed");
	const msgpack_object *voter = ctl_map_get(m, "voter");
	if (failed && failed->type == MSGPACK_OBJECT_BOOLEAN && failed->via.boolean) {
		snprintf(note, sizeof(note), "  [%s]", role); /* "stopped: disk full" */
		snprintf(role, sizeof(role), "STOP");
	} else if (voter && voter->type == MSGPACK_OBJECT_BOOLEAN && !voter->via.boolean) {
		snprintf(note, sizeof(note), "  [not a voter yet]");
	}
	if (strcmp(role, "STOP") == 0)
		;
	else if (role[0] == 'p')
		snprintf(role, sizeof(role), "pre");
	else
		role[4] = '\0'; /* lead, foll, cand */
	printf("%-8s %-5s %-4s %4" PRIu64 " %-5s %6" PRIu64 " %7" PRIu64 " %7" PRIu64 " %7" PRIu64
	       " %4" PRIu64 " %s%s\n",
	       abbrev(group, 8, b1, sizeof(b1)), abbrev(id, 5, b2, sizeof(b2)), role,
	       ctl_reply_u64(m, "term"), abbrev(leader[0] ? leader : "-", 5, b3, sizeof(b3)),
	       ctl_reply_u64(m, "first"), ctl_reply_u64(m, "last"), ctl_reply_u64(m, "committed"), ctl_reply_u64(m, "durable"),
	       ctl_reply_u64(m, "pending"), lag, note);
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {
		CTL_OPTS,
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0},
	};
	struct common co = {0};
	struct ctl_args a = {0};
	int rc = ctl_parse(argc, argv, opts, status_usage, &co, &a);
	if (rc != 0)
		return rc < 0 ? 0 : rc;
	msgpack_sbuffer sb;
	msgpack_packer pk;
	ctl_request_begin(&sb, &pk, 0, "status");
	struct ctl_reply u;
	rc = ctl_call(a.control, &sb, co.timeout_ms, &u);
	const msgpack_object *ms = rc == 0 ? ctl_map_get(u.map, "members") : NULL;
	uint32_t n = ms && ms->type == MSGPACK_OBJECT_ARRAY ? ms->via.array.size : 0;
	if (rc == 0 && co.json) {
		json_t *j = mp_to_json(u.map);
		json_object_del(j, "ok");
		if (json_dumpf(j, stdout, JSON_INDENT(2) | JSON_SORT_KEYS) != 0)
			rc = EXIT_OP;
		putchar('\n');
		json_decref(j);
	} else if (rc == 0) {
		printf("%-8s %-5s %-4s %4s %-5s %6s %7s %7s %7s %4s %s\n", "GROUP", "ID", "ROLE",
		       "TERM", "LEADR", "FIRST", "LAST", "COMMIT", "DURABLE", "PEND", "LAG");
		for (uint32_t i = 0; i < n; i++)
			status_row(&ms->via.array.ptr[i]);
		printf("%u members, %" PRIu64 " leading on this node\n", n,
		       ctl_reply_u64(u.map, "leaders"));
	}
	if (fflush(stdout) != 0)
		rc = EXIT_OP;
	ctl_reply_free(&u);
	msgpack_sbuffer_destroy(&sb);
	return rc;
}
