/*
 * request.c - decoding and checking a control request (a msgpack map with
 * "op" and that op's fields, docs/OPERATIONS.md "Control socket"), on its
 * own: no node, no config, so the control fuzz target (test/fuzz/) can
 * feed this layer alone. Bad input gets an error, never an assert; the
 * server counts it (bad_requests).
 */
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "control/control_internal.h"
#include "control/ctl_pack.h"

/* The string at `key` into buf (NUL-terminated); false if absent, not a
 * string, empty or too long. */
static bool mp_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
	const msgpack_object *v = ctl_map_get(map, key);
	if (v == NULL || v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
	    v->via.str.size >= cap || memchr(v->via.str.ptr, '\0', v->via.str.size) != NULL)
		return false;
	memcpy(buf, v->via.str.ptr, v->via.str.size);
	buf[v->via.str.size] = '\0';
	return true;
}

/* The keys of an add-group request ("keys": map of string to string). */
static int rec_of_request(const msgpack_object *req, struct ctl_rec *r, struct dl_errctx *err)
{
	const msgpack_object *keys = ctl_map_get(req, "keys");
	if (keys == NULL || keys->type != MSGPACK_OBJECT_MAP)
		return dl_errf(err, DL_EPROTO, "add-group: 'keys' is missing or not a map");
	for (uint32_t i = 0; i < keys->via.map.size; i++) {
		const msgpack_object *k = &keys->via.map.ptr[i].key, *v = &keys->via.map.ptr[i].val;
		if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
			return dl_errf(err, DL_EPROTO, "add-group: keys and values must be strings");
		if (memchr(k->via.str.ptr, '\0', k->via.str.size) ||
		    memchr(v->via.str.ptr, '\0', v->via.str.size))
			return dl_errf(err, DL_EPROTO, "add-group: NUL in a key or value");
		/* groups.yaml records them, and YAML holds Unicode text only */
		if (!ctl_utf8_valid(k->via.str.ptr, k->via.str.size) ||
		    !ctl_utf8_valid(v->via.str.ptr, v->via.str.size))
			return dl_errf(err, DL_EPROTO, "add-group: a key or value is not UTF-8");
		int rc = ctl_rec_add(r, k->via.str.ptr, k->via.str.size, v->via.str.ptr,
				     v->via.str.size);
		if (rc != DL_OK)
			return dl_errf(err, rc, "add-group: more than %d keys", CTL_MAX_KV);
	}
	return DL_OK;
}

static int decode_op(const msgpack_object *map, struct ctl_req *r, struct dl_errctx *err)
{
	char op[32];
	if (!mp_str(map, "op", op, sizeof(op)))
		return dl_errf(err, DL_EPROTO, "malformed request: expected a msgpack map with 'op'");
	static const struct {
		const char *name;
		enum ctl_op op;
	} ops[] = {
		{"status", CTL_OP_STATUS},
		{"add-group", CTL_OP_ADD},
		{"remove-group", CTL_OP_REMOVE},
		{"transfer-leader", CTL_OP_TRANSFER},
		{"reload", CTL_OP_RELOAD},
	};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		if (strcmp(op, ops[i].name) == 0) {
			r->op = ops[i].op;
			return DL_OK;
		}
	}
	return dl_errf(err, DL_EPROTO, "unknown op '%s'", op);
}

/* The fields of r->op. */
static int decode_fields(const msgpack_object *map, struct ctl_req *r, struct dl_errctx *err)
{
	const msgpack_object *v;
	switch (r->op) {
	case CTL_OP_ADD:
		return rec_of_request(map, &r->rec, err);
	case CTL_OP_REMOVE:
		if (!mp_str(map, "group", r->group, sizeof(r->group)) ||
		    !mp_str(map, "id", r->id, sizeof(r->id)))
			return dl_errf(err, DL_EPROTO,
				       "remove-group: 'group' and 'id' are required strings");
		v = ctl_map_get(map, "delete_data");
		r->delete_data = v != NULL && v->type == MSGPACK_OBJECT_BOOLEAN && v->via.boolean;
		return DL_OK;
	case CTL_OP_TRANSFER:
		if (!mp_str(map, "group", r->group, sizeof(r->group)) ||
		    !mp_str(map, "to", r->to, sizeof(r->to)))
			return dl_errf(err, DL_EPROTO,
				       "transfer-leader: 'group' and 'to' are required");
		v = ctl_map_get(map, "timeout_ms");
		r->timeout_ms = v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 5000;
		if (r->timeout_ms > CTL_MAX_WAIT_MS)
			r->timeout_ms = CTL_MAX_WAIT_MS;
		return DL_OK;
	case CTL_OP_STATUS:
	case CTL_OP_RELOAD:
		return DL_OK;
	}
	return dl_errf(err, DL_EPROTO, "unknown op");
}

int ctl_req_decode(const void *buf, size_t len, struct ctl_req *out, struct dl_errctx *err)
{
	DL_ASSERT(out != NULL && (buf != NULL || len == 0));
	memset(out, 0, sizeof(*out));
	if (len > CTL_MAX_REQUEST_BYTES)
		return dl_errf(err, DL_ETOOBIG, "request larger than %u bytes",
			       CTL_MAX_REQUEST_BYTES);
	msgpack_unpacked u;
	msgpack_unpacked_init(&u);
	size_t off = 0;
	int rc = DL_OK;
	if (!ctl_mp_bounded(buf, len) ||
	    msgpack_unpack_next(&u, buf, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
	    u.data.type != MSGPACK_OBJECT_MAP)
		rc = dl_errf(err, DL_EPROTO, "malformed request: expected a msgpack map with 'op'");
	if (rc == DL_OK)
		rc = decode_op(&u.data, out, err);
	if (rc == DL_OK)
		rc = decode_fields(&u.data, out, err);
	msgpack_unpacked_destroy(&u); /* the request keeps copies only */
	if (rc != DL_OK)
		ctl_req_free(out);
	return rc;
}

void ctl_req_free(struct ctl_req *r)
{
	if (r == NULL)
		return;
	ctl_rec_free(&r->rec);
	memset(r, 0, sizeof(*r));
}
