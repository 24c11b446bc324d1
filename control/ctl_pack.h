/*
 * ctl_pack.h - packing the strings of the control protocol (msgpack maps
 * of string keys) and finding a key in a received map, shared by the
 * node's control server and dledger-ctl.
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

/* The value of string key `key` in `map`; NULL when `map` is NULL or not a
 * map, or has no such key. */
static inline const msgpack_object *ctl_map_get(const msgpack_object *map, const char *key)
{
	if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
		return NULL;
	size_t klen = strlen(key);
	for (uint32_t i = 0; i < map->via.map.size; i++) {
		const msgpack_object *k = &map->via.map.ptr[i].key;
		if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
		    memcmp(k->via.str.ptr, key, klen) == 0)
			return &map->via.map.ptr[i].val;
	}
	return NULL;
}

#endif
