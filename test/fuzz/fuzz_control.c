/*
 * fuzz_control.c - libFuzzer target: the control socket's requests
 * (control/control_internal.h).
 *
 * Feeds: the input as one request on the control socket, to
 * ctl_req_decode(), the layer of the server that decodes and checks a
 * request before it touches the node: the msgpack map, "op", and each op's
 * fields. The ops themselves need a running node (rt_node_*) and are not
 * run; for an add-group, what the server does with the keys before it
 * starts the member is: ctl_group_of_rec() against a fixed config of one
 * group (g0, member n0 at 127.0.0.1:10000), ctl_member_config(),
 * cfg_add_group(), and recording the keys in groups.yaml (ctl_state_save()
 * in a scratch directory), which the node reads at its next start
 * (ctl_state_load()).
 *
 * Asserts: ctl_mp_bounded() (the check before msgpack-c unpacks) passes
 * every value that msgpack-c packs; decode returns DL_OK, DL_EPROTO or DL_ETOOBIG, a failure leaves
 * the request empty and says why; a decoded request has a known op and
 * bounded, NUL-free fields; an add-group's group is DL_OK, DL_ECONFIG or
 * DL_ENOMEM, and a good one fits the config; and what groups.yaml records
 * reads back as the same keys, which make the same group again (else the
 * node could not start again after an add-group it acknowledged).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control_internal.h"
#include "control/ctl_pack.h"
#include "test/fuzz/fuzz.h"

static const char base_yaml[] =
        "storeBaseDir: /tmp/dledger-fuzz-control\n"
        "DLedgerConfigs:\n"
        "  - group: g0\n"
        "    id: n0\n"
        "    peers: n0-127.0.0.1:10000;n1-127.0.0.1:10001;n2-127.0.0.1:10002\n";

static struct cfg base;
static char state_path[512];

static void setup(void)
{
	if (base.source != NULL)
		return;
	struct dl_errctx err = {{0}};
	int rc = cfg_load_buffer("base.yaml", base_yaml, sizeof(base_yaml) - 1, &base, &err);
	if (rc != DL_OK) {
		fprintf(stderr, "base config: %s\n", err.msg);
		abort();
	}
	snprintf(state_path, sizeof(state_path), "%s/%s", fz_scratch_dir(), CTL_STATE_FILE);
}

static bool field_ok(const char *s, size_t cap, bool may_be_empty)
{
	size_t n = strnlen(s, cap);
	return n < cap && (n > 0 || may_be_empty);
}

static bool rec_equal(const struct ctl_rec *a, const struct ctl_rec *b)
{
	if (a->n_kv != b->n_kv)
		return false;
	for (uint32_t i = 0; i < a->n_kv; i++)
		if (strcmp(a->key[i], b->key[i]) != 0 || strcmp(a->val[i], b->val[i]) != 0)
			return false;
	return true;
}

/* groups.yaml as op_add leaves it, read back as the next start reads it. */
static void record_and_reload(struct ctl_rec *rec)
{
	struct ctl_rec saved = {0};
	for (uint32_t i = 0; i < rec->n_kv; i++)
		FZ_CHECK(ctl_rec_add(&saved, rec->key[i], strlen(rec->key[i]), rec->val[i],
		                     strlen(rec->val[i])) == DL_OK);
	struct ctl_state st = {0}, back;
	struct dl_errctx err = {{0}};
	FZ_CHECK(ctl_state_note_added(&st, rec) == DL_OK);
	FZ_CHECK(ctl_state_save(state_path, &st, &err) == DL_OK);
	int rc = ctl_state_load(state_path, &back, &err);
	if (rc != DL_OK)
		fprintf(stderr, "groups.yaml does not load back: %s\n", err.msg);
	FZ_CHECK(rc == DL_OK);
	FZ_CHECK(back.n_added == 1 && back.n_removed == 0);
	FZ_CHECK(rec_equal(&back.added[0], &saved));
	struct cfg_group g;
	rc = ctl_group_of_rec(&base, &back.added[0], &g, &err);
	if (rc != DL_OK)
		fprintf(stderr, "groups.yaml's group is refused at the next start: %s\n", err.msg);
	FZ_CHECK(rc == DL_OK);
	cfg_group_free(&g);
	ctl_state_free(&back);
	ctl_state_free(&st);
	ctl_rec_free(&saved);
}

static void add_group(struct ctl_req *req)
{
	struct cfg_group g;
	struct dl_errctx err = {{0}};
	int rc = ctl_group_of_rec(&base, &req->rec, &g, &err);
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "add-group: %s: %s\n", dl_strerror(rc),
		        rc == DL_OK ? "ok" : err.msg);
	if (rc != DL_OK) {
		FZ_CHECK(rc == DL_ECONFIG || rc == DL_ENOMEM);
		FZ_CHECK(g.group == NULL && g.self_id == NULL && g.peers.n_members == 0);
		FZ_CHECK(err.msg[0] != '\0');
		return;
	}
	FZ_CHECK(ctl_cfg_find(&base, g.group) < 0);
	FZ_CHECK(g.self_index < g.peers.n_members);
	struct rt_member_config mc;
	ctl_member_config(&base, &g, &mc);
	FZ_CHECK(strcmp(mc.group, g.group) == 0 && strcmp(mc.self_id, g.self_id) == 0);
	FZ_CHECK(mc.n_peers == g.peers.n_members);
	size_t n = base.n_groups;
	FZ_CHECK(cfg_add_group(&base, &g, &err) == DL_OK);
	FZ_CHECK(base.n_groups == n + 1);
	ctl_cfg_drop(&base, n); /* the next input sees the same config */
	record_and_reload(&req->rec);
}

/* ctl_mp_bounded() refuses no sound value: what msgpack-c unpacks from an
 * input it passed, packed again, passes too. */
static void bounded_takes_sound_values(const uint8_t *data, size_t size)
{
	if (!ctl_mp_bounded(data, size))
		return;
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	if (msgpack_unpack_next(&u, (const char *)data, size, &off) == MSGPACK_UNPACK_SUCCESS) {
		FZ_CHECK(off == size);
		msgpack_sbuffer sb;
		msgpack_sbuffer_init(&sb);
		msgpack_packer pk;
		msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
		FZ_CHECK(msgpack_pack_object(&pk, u.data) == 0);
		FZ_CHECK(ctl_mp_bounded(sb.data, sb.size));
		msgpack_sbuffer_destroy(&sb);
	}
	msgpack_unpacked_destroy(&u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct ctl_req empty;
	setup();
	bounded_takes_sound_values(data, size);
	struct ctl_req req;
	struct dl_errctx err = {{0}};
	int rc = ctl_req_decode(data, size, &req, &err);
	if (getenv("FUZZ_VERBOSE") != NULL) /* replaying one input: what it got */
		fprintf(stderr, "%s: %s\n", dl_strerror(rc), rc == DL_OK ? "decoded" : err.msg);
	if (rc != DL_OK) {
		FZ_CHECK(rc == DL_EPROTO || rc == DL_ETOOBIG);
		FZ_CHECK(memcmp(&req, &empty, sizeof(req)) == 0);
		FZ_CHECK(err.msg[0] != '\0');
		return 0;
	}
	switch (req.op) {
	case CTL_OP_STATUS:
	case CTL_OP_RELOAD: break;
	case CTL_OP_REMOVE:
		FZ_CHECK(field_ok(req.group, sizeof(req.group), false));
		FZ_CHECK(field_ok(req.id, sizeof(req.id), false));
		break;
	case CTL_OP_TRANSFER:
		FZ_CHECK(field_ok(req.group, sizeof(req.group), false));
		FZ_CHECK(field_ok(req.to, sizeof(req.to), false));
		FZ_CHECK(req.timeout_ms <= CTL_MAX_WAIT_MS);
		break;
	case CTL_OP_ADD:
		FZ_CHECK(req.rec.n_kv <= CTL_MAX_KV);
		add_group(&req);
		break;
	default: FZ_CHECK(!"a known op");
	}
	ctl_req_free(&req);
	FZ_CHECK(memcmp(&req, &empty, sizeof(req)) == 0);
	return 0;
}
