/*
 * ctl_pack.h - packing the strings of the control protocol (msgpack maps
 * of string keys), shared by the node's control server and dledger-ctl.
 */
#ifndef DLEDGER_CTL_PACK_H
#define DLEDGER_CTL_PACK_H

#include <msgpack.h>
#include <string.h>

static inline void ctl_pack_str(msgpack_packer *pk, const char *s)
{
	size_t n = strlen(s);
	msgpack_pack_str(pk, n);
	msgpack_pack_str_body(pk, s, n);
}

/* A key and its string value. */
static inline void ctl_pack_kstr(msgpack_packer *pk, const char *k, const char *v)
{
	ctl_pack_str(pk, k);
	ctl_pack_str(pk, v);
}

#endif
