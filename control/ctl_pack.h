/*
 * ctl_pack.h - packing the strings of the control protocol (msgpack maps
 * of string keys) and finding a key in a received map, shared by the
 * node's control server and dledger-ctl.
 */
#ifndef DLEDGER_CTL_PACK_H
#define DLEDGER_CTL_PACK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>
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

/* Big-endian n bytes at p. */
static inline uint64_t ctl_mp_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

/* Whether buf[0..len) is exactly one msgpack value in which no array or
 * map declares more elements than bytes are left. Check this before
 * msgpack_unpack_next(): it allocates room for the elements a header
 * declares before it reads them, so five bytes (a map of 2^32 - 1 pairs)
 * would ask it for 200 GB. Every element takes at least one byte, so a
 * sound value passes, and what is unpacked then takes at most a few dozen
 * bytes per byte of input. One pass, no recursion. */
static inline bool ctl_mp_bounded(const void *buf, size_t len)
{
	const uint8_t *p = buf;
	size_t off = 0;
	uint64_t pending = 1; /* values still to read */
	while (pending > 0) {
		if (off >= len)
			return false;
		uint8_t b = p[off++];
		pending--;
		uint64_t skip = 0, elems = 0; /* payload bytes; elements it declares */
		size_t w = 0;                 /* bytes of a length or count that follow */
		if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
			; /* fixint, nil, bool */
		else if (b <= 0x8f)
			elems = 2u * (b & 0x0fu); /* fixmap */
		else if (b <= 0x9f)
			elems = b & 0x0fu; /* fixarray */
		else if (b <= 0xbf)
			skip = b & 0x1fu; /* fixstr */
		else if (b >= 0xc4 && b <= 0xc6)
			w = (size_t)1 << (b - 0xc4); /* bin 8/16/32 */
		else if (b >= 0xc7 && b <= 0xc9)
			w = (size_t)1 << (b - 0xc7), skip = 1; /* ext 8/16/32: and a type byte */
		else if (b == 0xca || b == 0xcb)
			skip = b == 0xca ? 4 : 8; /* float */
		else if (b >= 0xcc && b <= 0xd3)
			skip = (uint64_t)1 << ((b - 0xcc) & 3); /* uint, int 8..64 */
		else if (b >= 0xd4 && b <= 0xd8)
			skip = 1 + ((uint64_t)1 << (b - 0xd4)); /* fixext: type and data */
		else if (b >= 0xd9 && b <= 0xdb)
			w = (size_t)1 << (b - 0xd9); /* str 8/16/32 */
		else if (b == 0xdc || b == 0xdd)
			w = b == 0xdc ? 2 : 4; /* array 16/32 */
		else if (b == 0xde || b == 0xdf)
			w = b == 0xde ? 2 : 4; /* map 16/32 */
		else
			return false; /* 0xc1: never used */
		if (w > 0) {
			if (len - off < w)
				return false;
			uint64_t n = ctl_mp_be(p + off, w);
			off += w;
			if (b >= 0xdc)
				elems = b >= 0xde ? 2 * n : n;
			else
				skip += n;
		}
		if (skip > len - off)
			return false;
		off += (size_t)skip;
		pending += elems;
		if (pending > len - off)
			return false;
	}
	return off == len;
}

#endif
