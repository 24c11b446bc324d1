/* record_test.c - the entry header and index record catch damage. */
#include <criterion/criterion.h>
#include <string.h>

#include "storage/sto_internal.h"

Test(record, crc32c_gives_the_standard_check_value)
{
	cr_assert_eq(sto_crc32c("123456789", 9), 0xe3069283u);
	cr_assert_eq(sto_crc32c("", 0), 0);
}

static void sample(uint8_t out[STO_HDR_BYTES], struct sto_hdr *h)
{
	*h = (struct sto_hdr){.magic = STO_ENTRY_MAGIC,
	                      .version = STO_FORMAT_VERSION,
	                      .type = 1,
	                      .total_bytes = sto_entry_total(13),
	                      .body_bytes = 13,
	                      .index = 42,
	                      .term = 7,
	                      .pos = 4096,
	                      .body_crc = 0x12345678u};
	sto_hdr_encode(out, h);
}

Test(record, a_header_round_trips_little_endian)
{
	uint8_t b[STO_HDR_BYTES];
	struct sto_hdr h, g;
	sample(b, &h);
	cr_assert_eq(sto_hdr_check(b, &g), STO_HDR_OK);
	cr_assert_eq(g.index, 42);
	cr_assert_eq(g.term, 7);
	cr_assert_eq(g.pos, 4096);
	cr_assert_eq(g.total_bytes, 64);
	cr_assert_eq(b[0], 'D');
	cr_assert_eq(b[3], '1');
	cr_assert_eq(b[16], 42, "index is little-endian at offset 16");
}

Test(record, every_single_bit_flip_in_a_header_is_caught)
{
	uint8_t b[STO_HDR_BYTES];
	struct sto_hdr h, g;
	sample(b, &h);
	for (unsigned bit = 0; bit < STO_HDR_BYTES * 8; bit++) {
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_neq(sto_hdr_check(b, &g), STO_HDR_OK, "bit %u", bit);
		b[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

Test(record, an_index_record_knows_its_own_index)
{
	uint8_t b[STO_IDX_BYTES];
	struct sto_idx r = {.pos = 123456, .term = 9, .body_bytes = 77, .type = 1}, g;
	sto_idx_encode(b, 5, &r);
	cr_assert(sto_idx_decode(b, 5, &g));
	cr_assert_eq(g.pos, 123456);
	cr_assert_eq(g.term, 9);
	cr_assert_eq(g.body_bytes, 77);
	cr_assert_not(sto_idx_decode(b, 6, &g), "a record read at the wrong place is refused");
	memset(b, 0, sizeof(b));
	cr_assert_not(sto_idx_decode(b, 0, &g), "a zero record is not valid");
}

Test(record, sizes_round_up_to_eight_bytes)
{
	cr_assert_eq(sto_entry_total(0), 48);
	cr_assert_eq(sto_entry_total(1), 56);
	cr_assert_eq(sto_entry_total(8), 56);
	cr_assert_eq(sto_entry_total(128), 176);
	cr_assert_eq(sto_entry_total(4096), 4144);
}
