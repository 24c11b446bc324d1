/*
 * record.c - the on-disk entry record: its header and its index record
 * (docs/STORAGE.md), and CRC32C from ISA-L. No state, any thread.
 */
#include <isa-l/crc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "storage/sto_internal.h"

void (*sto_assert_handler)(const char *file, int line, const char *expr);

_Noreturn void sto_assert_fail(const char *file, int line, const char *expr)
{
	if (sto_assert_handler != NULL)
		sto_assert_handler(file, line, expr);
	fprintf(stderr, "%s:%d: storage assertion failed: %s\n", file, line, expr);
	abort();
}

/* CRC32C (Castagnoli, the iSCSI polynomial): ISA-L's crc32_iscsi neither
 * inverts on entry nor on exit, so the standard form (check value
 * 0xe3069283 for "123456789") is ~crc32_iscsi(p, n, ~0). */
uint32_t sto_crc32c(const void *p, size_t n)
{
	STO_ASSERT(n <= (size_t)INT32_MAX);
	return ~crc32_iscsi((unsigned char *)(uintptr_t)p, (int)n, 0xffffffffu);
}

const char *sto_hdr_bad_text(int why)
{
	switch (why) {
	case STO_HDR_OK: return "ok";
	case STO_HDR_MAGIC: return "bad magic";
	case STO_HDR_VERSION: return "unknown format version";
	case STO_HDR_CRC: return "header checksum mismatch";
	case STO_HDR_SIZE: return "inconsistent sizes";
	default: return "?";
	}
}

void sto_hdr_encode(uint8_t out[STO_HDR_BYTES], struct sto_hdr *h)
{
	STO_ASSERT(h->total_bytes == sto_entry_total(h->body_bytes));
	sto_put32(out + 0, h->magic);
	out[4] = h->version;
	out[5] = h->type;
	out[6] = (uint8_t)h->flags;
	out[7] = (uint8_t)(h->flags >> 8);
	sto_put32(out + 8, h->total_bytes);
	sto_put32(out + 12, h->body_bytes);
	sto_put64(out + 16, h->index);
	sto_put64(out + 24, h->term);
	sto_put64(out + 32, h->pos);
	sto_put32(out + 40, h->body_crc);
	h->hdr_crc = sto_crc32c(out, 44);
	sto_put32(out + 44, h->hdr_crc);
}

void sto_hdr_decode(const uint8_t in[STO_HDR_BYTES], struct sto_hdr *h)
{
	h->magic = sto_get32(in + 0);
	h->version = in[4];
	h->type = in[5];
	h->flags = (uint16_t)(in[6] | (in[7] << 8));
	h->total_bytes = sto_get32(in + 8);
	h->body_bytes = sto_get32(in + 12);
	h->index = sto_get64(in + 16);
	h->term = sto_get64(in + 24);
	h->pos = sto_get64(in + 32);
	h->body_crc = sto_get32(in + 40);
	h->hdr_crc = sto_get32(in + 44);
}

int sto_hdr_check(const uint8_t in[STO_HDR_BYTES], struct sto_hdr *h)
{
	sto_hdr_decode(in, h);
	if (h->magic != STO_ENTRY_MAGIC)
		return STO_HDR_MAGIC;
	if (h->version != STO_FORMAT_VERSION)
		return STO_HDR_VERSION;
	if (h->hdr_crc != sto_crc32c(in, 44))
		return STO_HDR_CRC;
	if (h->body_bytes > UINT32_MAX - 2 * STO_HDR_BYTES ||
	    h->total_bytes != sto_entry_total(h->body_bytes))
		return STO_HDR_SIZE;
	if ((h->flags & STO_FLAG_SEG_END) && h->body_bytes != 0)
		return STO_HDR_SIZE;
	return STO_HDR_OK;
}

/* Index record: pos u64 @0, term u64 @8, body_bytes u32 @16, type u8 @20,
 * zero u8[3] @21, low 32 bits of the index @24, CRC32C of bytes 0..27 @28. */
void sto_idx_encode(uint8_t out[STO_IDX_BYTES], uint64_t index, const struct sto_idx *r)
{
	sto_put64(out + 0, r->pos);
	sto_put64(out + 8, r->term);
	sto_put32(out + 16, r->body_bytes);
	out[20] = r->type;
	out[21] = out[22] = out[23] = 0;
	sto_put32(out + 24, (uint32_t)index);
	sto_put32(out + 28, sto_crc32c(out, 28));
}

bool sto_idx_decode(const uint8_t in[STO_IDX_BYTES], uint64_t index, struct sto_idx *r)
{
	if (sto_get32(in + 28) != sto_crc32c(in, 28))
		return false;
	if (sto_get32(in + 24) != (uint32_t)index)
		return false;
	r->pos = sto_get64(in + 0);
	r->term = sto_get64(in + 8);
	r->body_bytes = sto_get32(in + 16);
	r->type = in[20];
	return true;
}
