/*
 * make_seeds.c - writes the generated part of the fuzz targets' seed
 * corpora (test/fuzz/README.md): frames made by the encoder
 * (transport/codec.h), control requests as dledger-ctl packs them, and
 * damage programs for the recovery target. The YAML seeds of the config
 * target are files of their own (copied from examples/ and hand-written).
 *
 * Usage: make-fuzz-seeds DIR   (writes DIR/frame, DIR/control,
 * DIR/recovery, which must exist). Deterministic: running it again writes
 * the same bytes, so the committed seeds can be regenerated and diffed.
 */
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_err.h"
#include "control/ctl_pack.h"
#include "transport/codec.h"

static const char *out_dir;

static void put(const char *target, const char *name, const void *p, size_t n)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s/%s", out_dir, target, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		perror(path);
		exit(1);
	}
}

static void must(int rc, const char *what)
{
	if (rc != 0) {
		fprintf(stderr, "make-fuzz-seeds: %s: %s\n", what, dl_strerror(rc));
		exit(1);
	}
}

/* ---- frames ---------------------------------------------------------------------- */

static const struct tp_addr peer = {"g0", "n1", "n0", 0};
static const struct tp_addr client = {"g0", "n0", "", 42};

static const struct raft_entry ents[] = {
        {.term = 3, .data = "", .len = 0, .type = RAFT_ENTRY_NOOP},
        {.term = 3, .data = "hello", .len = 5, .type = RAFT_ENTRY_NORMAL},
        {.term = 4, .data = "world, a slightly longer entry", .len = 30, .type = RAFT_ENTRY_NORMAL},
};

static int read_ents(void *ctx, uint64_t index, struct raft_entry *out)
{
	(void)ctx;
	if (index < 10 || index >= 13)
		return DL_ENOTFOUND;
	*out = ents[index - 10];
	return 0;
}

static void put_frame(struct tp_fb *fb, const char *name)
{
	put("frame", name, fb->buf, fb->len);
	tp_fb_reset(fb);
}

static struct raft_message raft_msg(uint8_t type)
{
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	m.term = 4;
	m.incarnation = 0x0123456789abcdefull;
	m.voter = true;
	m.peer_voter_inc = 77;
	switch (type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		m.vote.last_index = 12;
		m.vote.last_term = 3;
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP: m.vote_resp.granted = true; break;
	case RAFT_MSG_APPEND:
		m.append.prev_index = 9;
		m.append.prev_term = 2;
		m.append.commit = 9;
		m.append.n_entries = 3;
		break;
	case RAFT_MSG_APPEND_RESP:
		m.append_resp.reject = true;
		m.append_resp.match_index = 9;
		m.append_resp.last_index = 12;
		m.append_resp.rejected_index = 11;
		m.append_resp.hint_index = 10;
		m.append_resp.hint_term = 3;
		break;
	case RAFT_MSG_HEARTBEAT: m.heartbeat.commit = 12; break;
	case RAFT_MSG_HEARTBEAT_RESP:
		m.heartbeat_resp.match_index = 12;
		m.heartbeat_resp.want_lead = true;
		break;
	default: break;
	}
	return m;
}

static void group_meta(struct tp_group_meta *g, const char *group, const char *self)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->group, sizeof(g->group), "%s", group);
	snprintf(g->self, sizeof(g->self), "%s", self);
	snprintf(g->leader, sizeof(g->leader), "n1");
	snprintf(g->leader_addr, sizeof(g->leader_addr), "127.0.0.1:10001");
	g->role = RAFT_FOLLOWER;
	g->term = 4;
	g->first_index = 1;
	g->last_index = 12;
	g->commit_index = 11;
	g->durable_index = 12;
	g->voter = true;
	g->n_members = 3;
	for (uint32_t i = 0; i < 3; i++) {
		snprintf(g->members[i].id, sizeof(g->members[i].id), "n%u", i);
		snprintf(g->members[i].addr, sizeof(g->members[i].addr), "127.0.0.1:1000%u", i);
		g->members[i].role = i == 1 ? RAFT_LEADER : RAFT_FOLLOWER;
		g->members[i].match_index = 10 + i;
	}
}

static void add_each_client_type(struct tp_fb *fb)
{
	uint32_t added;
	struct tp_append_resp ar = {0, 10, 4, 3};
	struct tp_get g = {10, 12, 65536};
	struct tp_group_meta gm[2];
	group_meta(&gm[0], "g0", "n0");
	group_meta(&gm[1], "g1", "a0");
	snprintf(gm[1].stopped, sizeof(gm[1].stopped), "disk full");
	struct tp_error e = {DL_ENOTLEADER, "not leader", "n1", "127.0.0.1:10001"};
	struct tp_addr all = {"", "", "", 43};
	must(tp_fb_add_append(fb, &client, ents, 3), "append");
	must(tp_fb_add_append_resp(fb, &client, &ar), "append_resp");
	must(tp_fb_add_get(fb, &client, &g), "get");
	must(tp_fb_add_get_resp(fb, &client, 0, 10, 3, 0, read_ents, NULL, &added), "get_resp");
	must(tp_fb_add_fetch(fb, &peer, 11), "fetch");
	must(tp_fb_add_fetch_resp(fb, &peer, 0, 11, read_ents, NULL), "fetch_resp");
	must(tp_fb_add_metadata(fb, &all), "metadata");
	must(tp_fb_add_metadata_resp(fb, &all, gm, 2), "metadata_resp");
	must(tp_fb_add_error(fb, &client, &e), "error");
}

static void frames(void)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	static const char *const raft_names[] = {
	        NULL,
	        "raft-prevote",
	        "raft-prevote-resp",
	        "raft-vote",
	        "raft-vote-resp",
	        "raft-append",
	        "raft-append-resp",
	        "raft-heartbeat",
	        "raft-heartbeat-resp",
	        "raft-timeout-now",
	};
	for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++) {
		struct raft_message m = raft_msg(t);
		must(tp_fb_add_raft(&fb, &peer, &m, read_ents, NULL), "raft");
		char name[64];
		snprintf(name, sizeof(name), "%s",
		         t < sizeof(raft_names) / sizeof(raft_names[0]) && raft_names[t]
		                 ? raft_names[t]
		                 : "raft-other");
		put_frame(&fb, name);
	}
	add_each_client_type(&fb);
	put_frame(&fb, "client-every-type");
	/* The router's usual frame: heartbeats of several groups at once. */
	for (int i = 0; i < 4; i++) {
		char group[8];
		snprintf(group, sizeof(group), "g%d", i);
		struct tp_addr a = {group, "n1", "n0", 0};
		struct raft_message m = raft_msg(RAFT_MSG_HEARTBEAT);
		must(tp_fb_add_raft(&fb, &a, &m, NULL, NULL), "heartbeat");
	}
	put_frame(&fb, "heartbeats-of-four-groups");
	struct raft_message m = raft_msg(RAFT_MSG_APPEND);
	must(tp_fb_add_raft(&fb, &peer, &m, read_ents, NULL), "append");
	struct tp_error e = {DL_EPROTO, "bad frame", "", ""};
	struct tp_addr node = {"", "", "", 0};
	must(tp_fb_add_error(&fb, &node, &e), "error");
	put_frame(&fb, "append-and-node-error");
	tp_fb_free(&fb);
}

/* ---- control requests ---------------------------------------------------------------- */

static msgpack_sbuffer sb;
static msgpack_packer pk;

static void req_begin(const char *op, uint32_t n_more)
{
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_map(&pk, 1 + n_more);
	ctl_pack_kstr(&pk, "op", op);
}

static void req_put(const char *name)
{
	put("control", name, sb.data, sb.size);
}

static void add_group(const char *name, const char *const *kv, uint32_t n)
{
	req_begin("add-group", 1);
	ctl_pack_str(&pk, "keys");
	msgpack_pack_map(&pk, n);
	for (uint32_t i = 0; i < n; i++)
		ctl_pack_kstr(&pk, kv[2 * i], kv[2 * i + 1]);
	req_put(name);
}

static void control(void)
{
	msgpack_sbuffer_init(&sb);
	msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
	req_begin("status", 0);
	req_put("status");
	req_begin("reload", 0);
	req_put("reload");
	req_begin("remove-group", 3);
	ctl_pack_kstr(&pk, "group", "g1");
	ctl_pack_kstr(&pk, "id", "n0");
	ctl_pack_str(&pk, "delete_data");
	msgpack_pack_true(&pk);
	req_put("remove-group");
	req_begin("transfer-leader", 3);
	ctl_pack_kstr(&pk, "group", "g0");
	ctl_pack_kstr(&pk, "to", "n1");
	ctl_pack_str(&pk, "timeout_ms");
	msgpack_pack_uint64(&pk, 5000);
	req_put("transfer-leader");
	static const char *const minimal[] = {
	        "group", "g1",    "id",
	        "n0",    "peers", "n0-127.0.0.1:10000;n1-127.0.0.1:10001;n2-127.0.0.1:10002",
	};
	add_group("add-group", minimal, 3);
	static const char *const full[] = {
	        "group",
	        "g2",
	        "id",
	        "n0",
	        "peers",
	        "n0-127.0.0.1:10000;n1-[::1]:10001;n2-host-2.example:10002",
	        "preferredLeaderId",
	        "n1",
	        "storeType",
	        "memory",
	        "storeBaseDir",
	        "/tmp/dledger-g2",
	        "heartBeatTimeIntervalMs",
	        "100",
	        "electionTimeoutMs",
	        "1000",
	        "mappedFileSizeForEntryData",
	        "64m",
	        "flushMode",
	        "async",
	        "diskSpaceRatioToForceClean",
	        "0.8",
	        "diskFullRatio",
	        "0.9",
	};
	add_group("add-group-every-kind-of-key", full, sizeof(full) / sizeof(full[0]) / 2);
	static const char *const fixed[] = {
	        "group",
	        "g3",
	        "id",
	        "n0",
	        "peers",
	        "n0-127.0.0.1:10000;n1-127.0.0.1:10001",
	        "enableLeaderElector",
	        "false",
	        "leaderId",
	        "n1",
	};
	add_group("add-group-fixed-leader", fixed, sizeof(fixed) / sizeof(fixed[0]) / 2);
	/* Every character that groups.yaml must escape to read back the same
	 * (control_internal.h: state.c, put_quoted). */
	static const char *const odd[] = {
	        "group",
	        "g4",
	        "id",
	        "n0",
	        "peers",
	        "n0-127.0.0.1:10000;n1-127.0.0.1:10001",
	        "storeBaseDir",
	        "/tmp/a \"quoted\" \\ tab\t\x7f nel\xc2\x85 ls\xe2\x80\xa8 "
	        "bom\xef\xbb\xbf \xc3\xa9t\xc3\xa9 \xf0\x9f\xa6\x8a",
	};
	add_group("add-group-odd-characters-in-a-path", odd, 4);
	static const char *const clash[] = {
	        "group", "g0", "id", "n0", "peers", "n0-127.0.0.1:10000",
	};
	add_group("add-group-already-there", clash, 3);
	req_begin("compact", 0);
	req_put("unknown-op");
	msgpack_sbuffer_clear(&sb);
	msgpack_pack_array(&pk, 1);
	ctl_pack_str(&pk, "status");
	req_put("not-a-map");
	msgpack_sbuffer_destroy(&sb);
}

/* ---- recovery damage programs (fuzz_recovery.c, "Input") ------------------------------ */

static void recovery(void)
{
	static const struct {
		const char *name;
		size_t n;
		uint8_t bytes[32];
	} progs[] = {
	        {"intact-tail", 1, {0}},
	        {"intact-verify-all", 1, {1}},
	        {"repair-from-120", 2, {2, 120}},
	        {"repair-from-the-first", 2, {2, 1}},
	        /* op 0 patch: file 2 (the first data segment), offset 100, 3 bytes */
	        {"patch-first-segment", 9, {0, 0, 2, 100, 0, 2, 0xde, 0xad, 0xbe}},
	        /* op 1 truncate: the last data segment (selector 7) at 2000 */
	        {"truncate-a-segment", 5, {0, 1, 7, 0xd0, 0x07}},
	        /* op 2 entry: data file 3, header 2, term field (24), 1 byte = 9 */
	        {"sealed-entry-with-a-higher-term", 7, {0, 2, 1, 2, 24, 0, 9}},
	        /* op 2 entry: index field (16) */
	        {"sealed-entry-with-a-wrong-index", 7, {0, 2, 3, 1, 16, 0, 77}},
	        /* op 3 record: index file, record 50, position field, 2 bytes */
	        {"sealed-index-record-moved", 9, {0, 3, 0, 50, 0, 0, 1, 0x10, 0x20}},
	        /* op 4 state: term (8), 1 byte */
	        {"sealed-state-term", 6, {0, 4, 0, 8, 0, 0xff}},
	        /* op 5 checkpoint: slot 1, commit (16) = 200 */
	        {"sealed-checkpoint-past-the-log", 7, {0, 5, 0, 1, 16, 0, 200}},
	        /* op 6 delete: the first index file (selector 8) */
	        {"index-file-deleted", 3, {0, 6, 8}},
	        /* op 7 create: a data segment at 40 * 4096 (a gap), 4096 bytes of file 2 */
	        {"segment-after-a-gap", 8, {0, 7, 0, 0, 40, 0x00, 0x10, 2}},
	        /* op 7 create: state.tmp left over */
	        {"leftover-state-tmp", 8, {0, 7, 0, 2, 0, 48, 0, 0}},
	};
	for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++)
		put("recovery", progs[i].name, progs[i].bytes, progs[i].n);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: make-fuzz-seeds DIR\n");
		return 2;
	}
	out_dir = argv[1];
	frames();
	control();
	recovery();
	return 0;
}
