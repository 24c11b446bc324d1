/*
 * ctl_client.c - the client side of a node's control socket (ctl_client.h).
 * Runs on the caller's thread; owns nothing between calls.
 */
#include "control/ctl_client.h"

#include <nng/protocol/reqrep0/req.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "control/ctl_pack.h"

#define CTL_URL_MAX 160 /* "ipc://" and a control socket path */

void ctl_request_begin(msgpack_sbuffer *sb, msgpack_packer *pk, uint32_t n_more, const char *op)
{
	DL_ASSERT(sb != NULL && pk != NULL && op != NULL);
	msgpack_sbuffer_init(sb);
	msgpack_packer_init(pk, sb, msgpack_sbuffer_write);
	msgpack_pack_map(pk, 1 + n_more);
	ctl_pack_kstr(pk, "op", op);
	DL_ASSERT(sb->size > 0);
}

uint64_t ctl_reply_u64(const msgpack_object *map, const char *key)
{
	const msgpack_object *v = ctl_map_get(map, key);
	return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

const char *ctl_reply_str(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
	DL_ASSERT(buf != NULL && cap > 0);
	const msgpack_object *v = ctl_map_get(map, key);
	buf[0] = '\0';
	if (v != NULL && v->type == MSGPACK_OBJECT_STR)
		snprintf(buf, cap, "%.*s", (int)v->via.str.size, v->via.str.ptr);
	return buf;
}

void ctl_reply_free(struct ctl_reply *r)
{
	if (r == NULL)
		return;
	msgpack_unpacked_destroy(&r->u);
	if (r->m != NULL)
		nng_msg_free(r->m);
	r->m = NULL;
	r->map = NULL;
}

static int nng_code(int rv) { return rv == NNG_ETIMEDOUT ? DL_ETIMEDOUT : DL_EIO; }

/* Sends req and receives the reply into *out. Returns 0 or nng's error. */
static int exchange(nng_socket s, const void *req, size_t len, nng_msg **out)
{
	nng_msg *m = NULL;
	int rv = nng_msg_alloc(&m, 0);
	if (rv == 0 && (rv = nng_msg_append(m, req, len)) == 0 && (rv = nng_sendmsg(s, m, 0)) == 0)
		m = NULL; /* sent: nng owns it */
	if (m != NULL)
		nng_msg_free(m);
	if (rv == 0)
		rv = nng_recvmsg(s, out, 0);
	return rv;
}

/* The reply in r->m decoded; DL_OK when it says "ok". */
static int decode_reply(const char *path, struct ctl_reply *r, struct dl_errctx *err)
{
	size_t off = 0;
	const void *body = nng_msg_body(r->m);
	size_t len = nng_msg_len(r->m);
	if (!ctl_mp_bounded(body, len) ||
	    msgpack_unpack_next(&r->u, body, len, &off) != MSGPACK_UNPACK_SUCCESS)
		return dl_errf(err, DL_EPROTO, "control socket %s: undecodable reply", path);
	r->map = &r->u.data;
	const msgpack_object *ok = ctl_map_get(r->map, "ok");
	if (ok != NULL && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean)
		return DL_OK;
	char e[sizeof(err->msg)];
	uint64_t code = ctl_reply_u64(r->map, "code");
	int rc = code > 0 && code <= INT32_MAX ? (int)code : DL_EPROTO;
	return dl_errf(err, rc, "%s", ctl_reply_str(r->map, "error", e, sizeof(e)));
}

int ctl_client_call(const char *path, const void *req, size_t len, uint32_t timeout_ms,
		    struct ctl_reply *r, struct dl_errctx *err)
{
	DL_ASSERT(path != NULL && r != NULL && (req != NULL || len == 0));
	memset(r, 0, sizeof(*r));
	msgpack_unpacked_init(&r->u);
	char url[CTL_URL_MAX];
	snprintf(url, sizeof(url), "ipc://%s", path);
	nng_socket s;
	int rv = nng_req0_open(&s);
	if (rv != 0)
		return dl_errf(err, DL_EIO, "%s", nng_strerror(rv));
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, (nng_duration)timeout_ms);
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, (nng_duration)timeout_ms);
	int rc = DL_OK;
	rv = nng_dial(s, url, NULL, 0);
	if (rv != 0)
		rc = dl_errf(err, nng_code(rv), "cannot reach a node at control socket %s: %s", path,
			     nng_strerror(rv));
	else if ((rv = exchange(s, req, len, &r->m)) != 0)
		rc = dl_errf(err, nng_code(rv), "control socket %s: %s", path, nng_strerror(rv));
	else
		rc = decode_reply(path, r, err);
	nng_close(s);
	DL_ASSERT(rc != DL_OK || r->map != NULL);
	return rc;
}
