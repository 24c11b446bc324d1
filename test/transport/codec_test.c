/*
 * codec_test.c - the wire codec (transport/codec.h, docs/PROTOCOL.md).
 *
 * Round trips of every message type with edge values, frames of several
 * messages, the frame size limit, and a decoder fed truncated, hand-broken,
 * random and mutated frames: it must return an error or a sound decode,
 * never crash or read outside the frame (this suite runs under ASan+UBSan,
 * and every frame handed to the decoder sits in a buffer of its exact size).
 */
#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_err.h"
#include "transport/codec.h"

/* ---- helpers ---------------------------------------------------------------- */

static const struct tp_addr addr_g0 = {"g0", "n1", "n0", 0};

/* A log to read outbound entries from: entries[i] is at first_index + i. */
struct mlog {
	uint64_t first_index;
	uint32_t n;
	const struct raft_entry *entries;
	bool fail;
	uint64_t fail_index;
	uint32_t reads;
};

static int mlog_read(void *ctx, uint64_t index, struct raft_entry *out)
{
	struct mlog *l = ctx;
	l->reads++;
	if (l->fail && index == l->fail_index)
		return DL_EIO;
	if (index < l->first_index || index - l->first_index >= l->n)
		return DL_ENOTFOUND;
	*out = l->entries[index - l->first_index];
	return 0;
}

/* n entries with body i of size sizes(i), filled with a pattern; one
 * allocation holding both, freed with free(). */
static struct raft_entry *make_entries(uint32_t n, uint32_t (*size_of)(uint32_t), uint64_t term0)
{
	size_t total = 0;
	for (uint32_t i = 0; i < n; i++)
		total += size_of(i);
	struct raft_entry *e = malloc(sizeof(*e) * (n ? n : 1) + total);
	cr_assert_not_null(e);
	uint8_t *data = (uint8_t *)(e + (n ? n : 1));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t len = size_of(i);
		for (uint32_t j = 0; j < len; j++)
			data[j] = (uint8_t)(i * 31 + j * 7 + 1);
		e[i].term = term0 + i / 3;
		e[i].type = i % 5 == 0 ? RAFT_ENTRY_NOOP : RAFT_ENTRY_NORMAL;
		e[i].data = len ? data : NULL;
		e[i].len = len;
		data += len;
	}
	return e;
}

static void assert_entries_equal(const struct raft_entry *got, const struct raft_entry *want,
                                 uint32_t n, bool with_term)
{
	for (uint32_t i = 0; i < n; i++) {
		if (with_term) {
			cr_assert_eq(got[i].term, want[i].term, "entry %u term", i);
			cr_assert_eq(got[i].type, want[i].type, "entry %u type", i);
		}
		cr_assert_eq(got[i].len, want[i].len, "entry %u len", i);
		if (want[i].len)
			cr_assert(memcmp(got[i].data, want[i].data, want[i].len) == 0,
			          "entry %u data", i);
	}
}

/* Copies the frame into a buffer of its exact size (ASan sees any read
 * past it) and decodes its only message's header. */
static uint8_t *single(const struct tp_fb *fb, struct tp_hdr *h)
{
	uint8_t *buf = malloc(fb->len);
	cr_assert_not_null(buf);
	memcpy(buf, fb->buf, fb->len);
	size_t off;
	cr_assert_eq(tp_frame_begin(buf, fb->len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, fb->len, &off, h), 0);
	cr_assert_eq(off, fb->len, "one message fills the frame");
	struct tp_hdr end;
	cr_assert_eq(tp_frame_next(buf, fb->len, &off, &end), DL_ENOTFOUND);
	return buf;
}

static void raft_roundtrip(const struct raft_message *m, struct mlog *log, struct raft_message *out,
                           struct raft_entry *entries, uint32_t max, uint8_t **frame)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, m, log ? mlog_read : NULL, log), 0);
	cr_assert_eq(fb.n_msgs, 1);
	struct tp_hdr h;
	*frame = single(&fb, &h);
	cr_assert_eq(h.type, m->type);
	cr_assert_str_eq(h.group, "g0");
	cr_assert_str_eq(h.target, "n1");
	cr_assert_str_eq(h.sender, "n0");
	out->from = 7;
	out->to = 8;
	cr_assert_eq(tp_decode_raft(&h, out, entries, max), 0);
	cr_assert_eq(out->from, 7, "from is the caller's");
	cr_assert_eq(out->to, 8);
	cr_assert_eq(out->type, m->type);
	cr_assert_eq(out->term, m->term);
	tp_fb_free(&fb);
}

static void assert_raft_fields_equal(const struct raft_message *a, const struct raft_message *b)
{
	cr_assert_eq(a->incarnation, b->incarnation);
	cr_assert_eq(a->voter, b->voter);
	cr_assert_eq(a->peer_voter_inc, b->peer_voter_inc);
	switch (a->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		cr_assert_eq(a->vote.last_index, b->vote.last_index);
		cr_assert_eq(a->vote.last_term, b->vote.last_term);
		cr_assert_eq(a->vote.transfer, b->vote.transfer);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP: cr_assert_eq(a->vote_resp.granted, b->vote_resp.granted); break;
	case RAFT_MSG_APPEND:
		cr_assert_eq(a->append.prev_index, b->append.prev_index);
		cr_assert_eq(a->append.prev_term, b->append.prev_term);
		cr_assert_eq(a->append.commit, b->append.commit);
		cr_assert_eq(a->append.n_entries, b->append.n_entries);
		break;
	case RAFT_MSG_APPEND_RESP:
		cr_assert_eq(a->append_resp.reject, b->append_resp.reject);
		cr_assert_eq(a->append_resp.match_index, b->append_resp.match_index);
		cr_assert_eq(a->append_resp.last_index, b->append_resp.last_index);
		cr_assert_eq(a->append_resp.rejected_index, b->append_resp.rejected_index);
		cr_assert_eq(a->append_resp.hint_index, b->append_resp.hint_index);
		cr_assert_eq(a->append_resp.hint_term, b->append_resp.hint_term);
		break;
	case RAFT_MSG_HEARTBEAT: cr_assert_eq(a->heartbeat.commit, b->heartbeat.commit); break;
	case RAFT_MSG_HEARTBEAT_RESP:
		cr_assert_eq(a->heartbeat_resp.match_index, b->heartbeat_resp.match_index);
		cr_assert_eq(a->heartbeat_resp.want_lead, b->heartbeat_resp.want_lead);
		break;
	case RAFT_MSG_TIMEOUT_NOW: break;
	default: cr_assert_fail("type %u", a->type);
	}
}

/* Every field of every non-append type set to v (bools to flag). */
static struct raft_message raft_filled(uint8_t type, uint64_t v, bool flag)
{
	struct raft_message m;
	memset(&m, 0, sizeof(m));
	m.type = type;
	m.term = v;
	m.incarnation = v ^ 0x1234567890ull;
	m.voter = flag;
	m.peer_voter_inc = flag ? v : 0;
	switch (type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		m.vote.last_index = v;
		m.vote.last_term = v;
		m.vote.transfer = flag;
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP: m.vote_resp.granted = flag; break;
	case RAFT_MSG_APPEND:
		m.append.prev_index = v;
		m.append.prev_term = v;
		m.append.commit = v;
		break;
	case RAFT_MSG_APPEND_RESP:
		m.append_resp.reject = flag;
		m.append_resp.match_index = v;
		m.append_resp.last_index = v;
		m.append_resp.rejected_index = v;
		m.append_resp.hint_index = v;
		m.append_resp.hint_term = v;
		break;
	case RAFT_MSG_HEARTBEAT: m.heartbeat.commit = v; break;
	case RAFT_MSG_HEARTBEAT_RESP:
		m.heartbeat_resp.match_index = v;
		m.heartbeat_resp.want_lead = flag;
		break;
	default: break;
	}
	return m;
}

/* ---- a decoder that walks a whole frame and checks what it gets ------------- */

struct walk {
	uint32_t msgs;   /* headers read */
	uint32_t bodies; /* bodies decoded whole */
	uint32_t errors; /* any non-zero return but the clean end */
};

static bool view_inside(const uint8_t *buf, size_t len, const void *p, uint32_t n)
{
	if (n == 0)
		return true;
	const uint8_t *q = p;
	return q >= buf && q <= buf + len && (size_t)(buf + len - q) >= n;
}

static bool cstr_name_ok(const char *s, bool may_be_empty)
{
	size_t n = strlen(s);
	return (n == 0 && may_be_empty) || tp_name_is_valid(s, n);
}

static int walk_body(const uint8_t *buf, size_t len, const struct tp_hdr *h)
{
	static struct raft_entry entries[256];
	static struct tp_group_meta g;
	int rc = DL_EINVAL;
	uint32_t n = 0;
	if (h->type >= TP_RAFT_MIN && h->type <= TP_RAFT_MAX) {
		struct raft_message m;
		rc = tp_decode_raft(h, &m, entries, 256);
		if (rc == 0 && m.type == RAFT_MSG_APPEND) {
			n = m.append.n_entries;
			cr_assert(n <= 256);
			cr_assert(m.append.prev_index <= UINT64_MAX - n);
		}
	} else if (h->type == TP_APPEND) {
		rc = tp_decode_append(h, entries, 256, &n);
	} else if (h->type == TP_APPEND_RESP) {
		struct tp_append_resp r;
		rc = tp_decode_append_resp(h, &r);
	} else if (h->type == TP_GET || h->type == TP_FETCH) {
		struct tp_get gt;
		rc = tp_decode_get(h, &gt);
		cr_assert(rc != 0 || gt.to >= gt.index);
		cr_assert(rc != 0 || h->type == TP_GET || (gt.to == gt.index && gt.max_bytes == 0));
	} else if (h->type == TP_GET_RESP || h->type == TP_FETCH_RESP) {
		struct tp_get_resp r;
		rc = tp_decode_get_resp(h, &r, entries, 256);
		n = rc == 0 ? r.n : 0;
		cr_assert(rc != 0 || h->type == TP_GET_RESP || n == (r.code == 0 ? 1u : 0u));
	} else if (h->type == TP_METADATA) {
		rc = tp_decode_metadata(h);
	} else if (h->type == TP_METADATA_RESP) {
		size_t cursor = 0;
		uint32_t groups = 0;
		while ((rc = tp_decode_metadata_resp(h, &cursor, &g)) == 0) {
			cr_assert(cstr_name_ok(g.group, false) && cstr_name_ok(g.self, false));
			cr_assert(g.n_members <= RAFT_MAX_MEMBERS);
			cr_assert(++groups <= h->body_len);
		}
		if (rc == DL_ENOTFOUND)
			rc = 0;
	} else if (h->type == TP_ERROR) {
		struct tp_error e;
		rc = tp_decode_error(h, &e);
		cr_assert(rc != 0 || strlen(e.message) < sizeof(e.message));
	}
	cr_assert(rc == 0 || rc == DL_EPROTO || rc == DL_ETOOBIG, "rc %d", rc);
	for (uint32_t i = 0; rc == 0 && i < n; i++)
		cr_assert(view_inside(buf, len, entries[i].data, entries[i].len));
	return rc;
}

static struct walk walk_frame(const uint8_t *buf, size_t len)
{
	struct walk w = {0};
	size_t off;
	int rc = tp_frame_begin(buf, len, &off);
	if (rc != 0) {
		cr_assert(rc == DL_EPROTO || rc == DL_EINVAL);
		w.errors++;
		return w;
	}
	for (uint32_t guard = 0;; guard++) {
		cr_assert(guard <= len, "more messages than bytes");
		struct tp_hdr h;
		size_t before = off;
		rc = tp_frame_next(buf, len, &off, &h);
		if (rc == DL_ENOTFOUND)
			break;
		cr_assert(off <= len);
		if (rc != 0) {
			cr_assert_eq(rc, DL_EPROTO);
			w.errors++;
			if (off == before)
				break; /* the rest is unreadable */
			continue;      /* an unknown type, skipped */
		}
		w.msgs++;
		cr_assert(off > before);
		cr_assert(view_inside(buf, len, h.body, h.body_len));
		cr_assert(h.body + h.body_len == buf + off);
		cr_assert(cstr_name_ok(h.target, true) && cstr_name_ok(h.sender, true));
		if (walk_body(buf, len, &h) == 0)
			w.bodies++;
		else
			w.errors++;
	}
	return w;
}

static struct walk walk_copy(const uint8_t *src, size_t len)
{
	uint8_t *buf = malloc(len ? len : 1);
	cr_assert_not_null(buf);
	if (len)
		memcpy(buf, src, len);
	struct walk w = walk_frame(len ? buf : NULL, len);
	free(buf);
	return w;
}

static uint32_t size_128(uint32_t i)
{
	(void)i;
	return 128;
}

static uint32_t size_varied(uint32_t i)
{
	return (i * 37) % 300;
}

static uint32_t size_small(uint32_t i)
{
	return i % 4;
}

/* A frame with one message of every type. */
static void build_mixed_frame(struct tp_fb *fb, struct raft_entry *ents, uint32_t n_ents)
{
	struct mlog log = {.first_index = 11, .n = n_ents, .entries = ents};
	for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++) {
		struct raft_message m = raft_filled(t, 1000 + t, t % 2);
		if (t == RAFT_MSG_APPEND) {
			m.append.prev_index = 10;
			m.append.n_entries = n_ents;
		}
		cr_assert_eq(tp_fb_add_raft(fb, &addr_g0, &m, mlog_read, &log), 0);
	}
	struct tp_addr ca = {"g0", "n0", "", 99};
	cr_assert_eq(tp_fb_add_append(fb, &ca, ents, n_ents), 0);
	struct tp_append_resp ar = {0, 5, 2, 3};
	cr_assert_eq(tp_fb_add_append_resp(fb, &ca, &ar), 0);
	struct tp_get g = {3, 9, 4096};
	cr_assert_eq(tp_fb_add_get(fb, &ca, &g), 0);
	uint32_t added;
	cr_assert_eq(tp_fb_add_get_resp(fb, &ca, 0, 11, n_ents, 0, mlog_read, &log, &added), 0);
	cr_assert_eq(tp_fb_add_fetch(fb, &addr_g0, 12), 0);
	cr_assert_eq(tp_fb_add_fetch_resp(fb, &addr_g0, 0, 12, mlog_read, &log), 0);
	struct tp_addr all = {"", "", "", 5};
	cr_assert_eq(tp_fb_add_metadata(fb, &all), 0);
	struct tp_group_meta gm[2];
	memset(gm, 0, sizeof(gm));
	strcpy(gm[0].group, "g0");
	strcpy(gm[0].self, "n0");
	strcpy(gm[0].leader, "n1");
	strcpy(gm[0].leader_addr, "127.0.0.1:20911");
	gm[0].n_members = 2;
	strcpy(gm[0].members[0].id, "n0");
	strcpy(gm[0].members[1].id, "n1");
	strcpy(gm[0].members[1].addr, "127.0.0.1:20911");
	strcpy(gm[1].group, "g1");
	strcpy(gm[1].self, "a0");
	cr_assert_eq(tp_fb_add_metadata_resp(fb, &all, gm, 2), 0);
	struct tp_error e = {DL_ENOTLEADER, "not leader", "n1", "127.0.0.1:20911"};
	cr_assert_eq(tp_fb_add_error(fb, &ca, &e), 0);
}

/* xorshift64*: seeded, so that a failure replays. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

/* ---- raft round trips ------------------------------------------------------- */

Test(codec_raft, every_raft_type_survives_a_round_trip_with_zero_fields)
{
	for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++) {
		struct raft_message m = raft_filled(t, 0, false), out;
		uint8_t *frame;
		raft_roundtrip(&m, NULL, &out, NULL, 0, &frame);
		assert_raft_fields_equal(&m, &out);
		free(frame);
	}
}

Test(codec_raft, every_raft_type_survives_a_round_trip_with_max_fields)
{
	for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++) {
		struct raft_message m = raft_filled(t, UINT64_MAX, true), out;
		uint8_t *frame;
		raft_roundtrip(&m, NULL, &out, NULL, 0, &frame);
		assert_raft_fields_equal(&m, &out);
		free(frame);
	}
}

Test(codec_raft, every_raft_type_survives_a_round_trip_with_mixed_widths)
{
	const uint64_t values[] = {
	        1, 127, 128, 255, 256, 65535, 65536, UINT32_MAX, (uint64_t)UINT32_MAX + 1};
	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++) {
			struct raft_message m = raft_filled(t, values[i], i % 2), out;
			uint8_t *frame;
			raft_roundtrip(&m, NULL, &out, NULL, 0, &frame);
			assert_raft_fields_equal(&m, &out);
			free(frame);
		}
	}
}

Test(codec_raft, append_without_entries_survives_a_round_trip)
{
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, UINT64_MAX, false), out;
	struct raft_entry e[1];
	uint8_t *frame;
	raft_roundtrip(&m, NULL, &out, e, 1, &frame);
	assert_raft_fields_equal(&m, &out);
	cr_assert_eq(out.append.n_entries, 0);
	free(frame);
}

Test(codec_raft, append_reads_its_range_from_the_log_and_decodes_views)
{
	const uint32_t n = 1000;
	struct raft_entry *ents = make_entries(n, size_varied, UINT64_MAX - 400);
	struct mlog log = {.first_index = 101, .n = n, .entries = ents};
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 7, false), out;
	m.append.prev_index = 100;
	m.append.n_entries = n;
	struct raft_entry *got = calloc(n, sizeof(*got));
	uint8_t *frame;
	raft_roundtrip(&m, &log, &out, got, n, &frame);
	assert_raft_fields_equal(&m, &out);
	cr_assert_eq(log.reads, n, "each entry read once");
	cr_assert_eq(out.append.entries, got);
	assert_entries_equal(got, ents, n, true);
	free(frame);
	free(got);
	free(ents);
}

static uint32_t size_big(uint32_t i)
{
	return i == 1 ? 3u << 20 : (uint32_t)i; /* 0 B, 3 MiB, 2 B */
}

Test(codec_raft, append_with_empty_and_large_bodies_survives_a_round_trip)
{
	struct raft_entry *ents = make_entries(3, size_big, 1);
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 3, false), out;
	m.append.prev_index = UINT64_MAX - 3; /* the last index is UINT64_MAX */
	m.append.n_entries = 3;
	m.append.entries = ents; /* no reader: taken from the message */
	struct raft_entry got[3];
	uint8_t *frame;
	raft_roundtrip(&m, NULL, &out, got, 3, &frame);
	assert_raft_fields_equal(&m, &out);
	assert_entries_equal(got, ents, 3, true);
	free(frame);
	free(ents);
}

static uint32_t size_widths(uint32_t i)
{
	static const uint32_t sizes[] = {0, 1, 255, 256, 65535, 65536};
	return sizes[i % 6];
}

/* The entry writer bypasses msgpack-c's packer for speed: its bytes must be
 * the packer's, header and all. */
Test(codec_raft, an_append_frame_is_byte_for_byte_what_msgpack_c_packs)
{
	static const uint64_t terms[] = {0,     127,        128,         255,           256,
					 65535, 65536,      UINT32_MAX, (uint64_t)UINT32_MAX + 1,
					 UINT64_MAX, 1, 2};
	const uint32_t n = 12;
	struct raft_entry *ents = make_entries(n, size_widths, 0);
	for (uint32_t i = 0; i < n; i++)
		ents[i].term = terms[i];
	struct mlog log = {.first_index = 300, .n = n, .entries = ents};
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 70000, false);
	m.append.prev_index = 299;
	m.append.n_entries = n;
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr a = {"g0", "n1", "n0", 1234567};
	cr_assert_eq(tp_fb_add_raft(&fb, &a, &m, mlog_read, &log), 0);

	msgpack_sbuffer body, want;
	msgpack_packer pk;
	msgpack_sbuffer_init(&body);
	msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
	msgpack_pack_array(&pk, 8);
	msgpack_pack_uint64(&pk, m.term);
	msgpack_pack_uint64(&pk, m.append.prev_index);
	msgpack_pack_uint64(&pk, m.append.prev_term);
	msgpack_pack_uint64(&pk, m.append.commit);
	msgpack_pack_array(&pk, n);
	for (uint32_t i = 0; i < n; i++) {
		msgpack_pack_array(&pk, 3);
		msgpack_pack_uint64(&pk, ents[i].term);
		msgpack_pack_uint64(&pk, ents[i].type);
		msgpack_pack_bin_with_body(&pk, ents[i].data, ents[i].len);
	}
	msgpack_pack_uint64(&pk, m.incarnation);
	if (m.voter)
		msgpack_pack_true(&pk);
	else
		msgpack_pack_false(&pk);
	msgpack_pack_uint64(&pk, m.peer_voter_inc);
	msgpack_sbuffer_init(&want);
	msgpack_packer_init(&pk, &want, msgpack_sbuffer_write);
	msgpack_pack_uint64(&pk, TP_VERSION);
	msgpack_pack_array(&pk, 6);
	msgpack_pack_uint64(&pk, RAFT_MSG_APPEND);
	msgpack_pack_str_with_body(&pk, "g0", 2);
	msgpack_pack_str_with_body(&pk, "n1", 2);
	msgpack_pack_str_with_body(&pk, "n0", 2);
	msgpack_pack_uint64(&pk, 1234567);
	/* body_len: always the 5-byte uint32 form, patched after the body */
	uint8_t len32[5] = {0xce, (uint8_t)(body.size >> 24), (uint8_t)(body.size >> 16),
			    (uint8_t)(body.size >> 8), (uint8_t)body.size};
	msgpack_sbuffer_write(&want, (const char *)len32, 5);
	msgpack_sbuffer_write(&want, body.data, body.size);

	cr_assert_eq(fb.len, want.size);
	cr_assert(memcmp(fb.buf, want.data, want.size) == 0);
	msgpack_sbuffer_destroy(&body);
	msgpack_sbuffer_destroy(&want);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_raft, append_past_the_last_index_is_refused_by_both_sides)
{
	struct raft_entry e = {1, "x", 1, RAFT_ENTRY_NORMAL};
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 3, false);
	m.append.prev_index = UINT64_MAX;
	m.append.n_entries = 1;
	m.append.entries = &e;
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, NULL, NULL), DL_EINVAL);
	cr_assert_eq(fb.len, 0);
	/* Hand-made: prev_index UINT64_MAX with one entry. */
	static const uint8_t body[] = {0x98, 0x03, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	                               0xff, 0xff, 0x00, 0x00, 0x91, 0x93, 0x01, 0x00, 0xc4,
	                               0x01, 'x',  0x00, 0xc2, 0x00};
	struct tp_hdr h = {.type = RAFT_MSG_APPEND, .body = body, .body_len = sizeof(body)};
	struct raft_message out;
	struct raft_entry got[1];
	cr_assert_eq(tp_decode_raft(&h, &out, got, 1), DL_EPROTO);
	/* same with no entries: fine */
	uint8_t b2[sizeof(body)];
	memcpy(b2, body, 14);
	b2[13] = 0x90;
	memcpy(b2 + 14, "\x00\xc2\x00", 3);
	h.body = b2;
	h.body_len = 17;
	cr_assert_eq(tp_decode_raft(&h, &out, got, 1), 0);
	cr_assert_eq(out.append.prev_index, UINT64_MAX);
	tp_fb_free(&fb);
}

Test(codec_raft, append_with_more_entries_than_the_caller_holds_is_too_big)
{
	struct raft_entry *ents = make_entries(5, size_small, 1);
	struct mlog log = {.first_index = 1, .n = 5, .entries = ents};
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 1, false), out;
	m.append.prev_index = 0;
	m.append.n_entries = 5;
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), 0);
	struct tp_hdr h;
	uint8_t *frame = single(&fb, &h);
	struct raft_entry got[5];
	cr_assert_eq(tp_decode_raft(&h, &out, got, 4), DL_ETOOBIG);
	cr_assert_eq(tp_decode_raft(&h, &out, got, 5), 0);
	free(frame);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_raft, a_failing_entry_reader_leaves_the_frame_unchanged)
{
	struct raft_entry *ents = make_entries(10, size_128, 1);
	struct mlog log = {
	        .first_index = 1, .n = 10, .entries = ents, .fail = true, .fail_index = 7};
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct raft_message hb = raft_filled(RAFT_MSG_HEARTBEAT, 4, false);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &hb, NULL, NULL), 0);
	size_t len = fb.len;
	uint8_t *copy = malloc(len);
	memcpy(copy, fb.buf, len);
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 1, false);
	m.append.prev_index = 0;
	m.append.n_entries = 10;
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), DL_EIO);
	cr_assert_eq(fb.len, len);
	cr_assert_eq(fb.n_msgs, 1);
	cr_assert(memcmp(copy, fb.buf, len) == 0);
	log.fail = false;
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), 0);
	cr_assert_eq(fb.n_msgs, 2);
	free(copy);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_raft, a_non_raft_header_is_refused_by_the_raft_decoder)
{
	struct tp_hdr h = {.type = TP_GET, .body = (const uint8_t *)"\x90", .body_len = 1};
	struct raft_message m;
	cr_assert_eq(tp_decode_raft(&h, &m, NULL, 0), DL_EINVAL);
	struct raft_message bad = raft_filled(0, 1, false);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &bad, NULL, NULL), DL_EINVAL);
	bad.type = TP_APPEND;
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &bad, NULL, NULL), DL_EINVAL);
	cr_assert_eq(fb.len, 0);
	tp_fb_free(&fb);
}

/* ---- client round trips ----------------------------------------------------- */

Test(codec_client, append_request_survives_a_round_trip_with_empty_and_large_bodies)
{
	const uint32_t n = 300;
	struct raft_entry *ents = make_entries(n, size_varied, 9);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr a = {"orders.eu-1", "n0", "", UINT64_MAX};
	cr_assert_eq(tp_fb_add_append(&fb, &a, ents, n), 0);
	cr_assert_eq(tp_fb_add_append(&fb, &a, NULL, 0), 0);
	uint8_t *buf = malloc(fb.len);
	memcpy(buf, fb.buf, fb.len);
	size_t off;
	struct tp_hdr h;
	cr_assert_eq(tp_frame_begin(buf, fb.len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_eq(h.type, TP_APPEND);
	cr_assert_str_eq(h.group, "orders.eu-1");
	cr_assert_str_eq(h.sender, "");
	cr_assert_eq(h.request_id, UINT64_MAX);
	struct raft_entry *got = calloc(n, sizeof(*got));
	uint32_t got_n;
	cr_assert_eq(tp_decode_append(&h, got, n, &got_n), 0);
	cr_assert_eq(got_n, n);
	assert_entries_equal(got, ents, n, false);
	cr_assert_eq(got[1].term, 0, "client entries carry no term");
	cr_assert_eq(tp_decode_append(&h, got, n - 1, &got_n), DL_ETOOBIG);
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_eq(tp_decode_append(&h, got, n, &got_n), 0);
	cr_assert_eq(got_n, 0);
	free(got);
	free(buf);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_client, append_response_survives_a_round_trip)
{
	const struct tp_append_resp cases[] = {
	        {0, 1, 1, 1},
	        {0, UINT64_MAX - 9, UINT64_MAX, 10},
	        {DL_ENOTLEADER, 0, 0, 0},
	};
	for (size_t i = 0; i < 3; i++) {
		struct tp_fb fb;
		tp_fb_init(&fb, 0);
		cr_assert_eq(tp_fb_add_append_resp(&fb, &addr_g0, &cases[i]), 0);
		struct tp_hdr h;
		uint8_t *buf = single(&fb, &h);
		struct tp_append_resp r;
		cr_assert_eq(tp_decode_append_resp(&h, &r), 0);
		cr_assert_eq(r.code, cases[i].code);
		cr_assert_eq(r.first_index, cases[i].first_index);
		cr_assert_eq(r.term, cases[i].term);
		cr_assert_eq(r.n, cases[i].n);
		free(buf);
		tp_fb_free(&fb);
	}
}

Test(codec_client, get_request_survives_a_round_trip_and_refuses_an_empty_range)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_get g = {UINT64_MAX, UINT64_MAX, UINT32_MAX};
	cr_assert_eq(tp_fb_add_get(&fb, &addr_g0, &g), 0);
	struct tp_hdr h;
	uint8_t *buf = single(&fb, &h);
	struct tp_get out;
	cr_assert_eq(tp_decode_get(&h, &out), 0);
	cr_assert_eq(out.index, UINT64_MAX);
	cr_assert_eq(out.to, UINT64_MAX);
	cr_assert_eq(out.max_bytes, UINT32_MAX);
	free(buf);
	struct tp_get bad = {5, 4, 0};
	cr_assert_eq(tp_fb_add_get(&fb, &addr_g0, &bad), DL_EINVAL);
	static const uint8_t body[] = {0x93, 0x05, 0x04, 0x00};
	struct tp_hdr hb = {.type = TP_GET, .body = body, .body_len = sizeof(body)};
	cr_assert_eq(tp_decode_get(&hb, &out), DL_EPROTO);
	tp_fb_free(&fb);
}

/* wait_ms, GET's optional fourth field: sent only when set, so that a
 * request from a client that leaves it unset is the three-field GET of
 * older nodes; FETCH never carries it. */
Test(codec_client, get_wait_ms_is_an_optional_fourth_field)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_get g = {.index = 7, .to = 9, .max_bytes = 100, .has_wait = true, .wait_ms = 2500};
	cr_assert_eq(tp_fb_add_get(&fb, &addr_g0, &g), 0);
	struct tp_hdr h;
	uint8_t *buf = single(&fb, &h);
	cr_assert_eq(h.body[0], 0x94, "four fields");
	struct tp_get out;
	cr_assert_eq(tp_decode_get(&h, &out), 0);
	cr_assert(out.index == 7 && out.to == 9 && out.max_bytes == 100);
	cr_assert(out.has_wait && out.wait_ms == 2500);
	free(buf);
	tp_fb_reset(&fb);
	g.has_wait = false;
	cr_assert_eq(tp_fb_add_get(&fb, &addr_g0, &g), 0);
	buf = single(&fb, &h);
	cr_assert_eq(h.body[0], 0x93, "three fields, as older clients send");
	cr_assert_eq(tp_decode_get(&h, &out), 0);
	cr_assert(!out.has_wait && out.wait_ms == 0);
	free(buf);
	/* [1, 1, 0, 5] is a GET with a wait, never a FETCH; five fields and a
	 * wait past 2^32-1 are refused. */
	static const uint8_t four[] = {0x94, 0x01, 0x01, 0x00, 0x05};
	struct tp_hdr hg = {.type = TP_GET, .body = four, .body_len = sizeof(four)};
	cr_assert_eq(tp_decode_get(&hg, &out), 0);
	cr_assert(out.has_wait && out.wait_ms == 5);
	struct tp_hdr hf = {.type = TP_FETCH, .body = four, .body_len = sizeof(four)};
	cr_assert_eq(tp_decode_get(&hf, &out), DL_EPROTO);
	static const uint8_t five[] = {0x95, 0x01, 0x01, 0x00, 0x05, 0x00};
	struct tp_hdr h5 = {.type = TP_GET, .body = five, .body_len = sizeof(five)};
	cr_assert_eq(tp_decode_get(&h5, &out), DL_EPROTO);
	static const uint8_t big[] = {0x94, 0x01, 0x01, 0x00, 0xcf, 0, 0, 0, 1, 0, 0, 0, 0};
	struct tp_hdr hbig = {.type = TP_GET, .body = big, .body_len = sizeof(big)};
	cr_assert_eq(tp_decode_get(&hbig, &out), DL_EPROTO);
	tp_fb_free(&fb);
}

/* The repair messages (docs/PROTOCOL.md, "Repair messages"): FETCH asks for
 * one entry, FETCH_RESP brings exactly that one, or a code and none. */
Test(codec_client, fetch_and_its_answer_survive_a_round_trip_and_hold_one_entry)
{
	struct raft_entry *ents = make_entries(3, size_varied, 4);
	struct mlog log = {.first_index = 40, .n = 3, .entries = ents};
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	cr_assert_eq(tp_fb_add_fetch(&fb, &addr_g0, 41), 0);
	struct tp_hdr h;
	uint8_t *buf = single(&fb, &h);
	cr_assert_eq(h.type, TP_FETCH);
	struct tp_get g;
	cr_assert_eq(tp_decode_get(&h, &g), 0);
	cr_assert(g.index == 41 && g.to == 41 && g.max_bytes == 0);
	free(buf);
	tp_fb_reset(&fb);
	cr_assert_eq(tp_fb_add_fetch_resp(&fb, &addr_g0, 0, 41, mlog_read, &log), 0);
	buf = single(&fb, &h);
	cr_assert_eq(h.type, TP_FETCH_RESP);
	struct tp_get_resp r;
	struct raft_entry out[2];
	cr_assert_eq(tp_decode_get_resp(&h, &r, out, 2), 0);
	cr_assert(r.code == 0 && r.first_index == 41 && r.n == 1);
	cr_assert(out[0].term == ents[1].term && out[0].len == ents[1].len &&
		  memcmp(out[0].data, ents[1].data, out[0].len) == 0);
	free(buf);
	tp_fb_reset(&fb);
	cr_assert_eq(tp_fb_add_fetch_resp(&fb, &addr_g0, DL_ECORRUPT, 41, NULL, NULL), 0);
	buf = single(&fb, &h);
	cr_assert_eq(tp_decode_get_resp(&h, &r, out, 2), 0);
	cr_assert(r.code == DL_ECORRUPT && r.n == 0);
	free(buf);
	/* A fetch of a range, a cap, or an answer of two entries or of an
	 * entry with a code: malformed. */
	static const uint8_t range[] = {0x93, 0x05, 0x06, 0x00}, cap[] = {0x93, 0x05, 0x05, 0x01};
	struct tp_hdr hb = {.type = TP_FETCH, .body = range, .body_len = sizeof(range)};
	cr_assert_eq(tp_decode_get(&hb, &g), DL_EPROTO);
	hb.body = cap;
	cr_assert_eq(tp_decode_get(&hb, &g), DL_EPROTO);
	uint32_t added;
	tp_fb_reset(&fb);
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, 0, 40, 2, 0, mlog_read, &log, &added), 0);
	buf = single(&fb, &h);
	h.type = TP_FETCH_RESP;
	cr_assert_eq(tp_decode_get_resp(&h, &r, out, 2), DL_EPROTO);
	free(buf);
	tp_fb_reset(&fb);
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, DL_ECORRUPT, 40, 1, 0, mlog_read, &log, &added), 0);
	buf = single(&fb, &h);
	h.type = TP_FETCH_RESP;
	cr_assert_eq(tp_decode_get_resp(&h, &r, out, 2), DL_EPROTO);
	free(buf);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_client, get_response_carries_entries_up_to_its_byte_cap)
{
	const uint32_t n = 64;
	struct raft_entry *ents = make_entries(n, size_128, 2);
	struct mlog log = {.first_index = 50, .n = n, .entries = ents};
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	uint32_t added;
	/* No cap: all of them. */
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, 0, 50, n, 0, mlog_read, &log, &added), 0);
	cr_assert_eq(added, n);
	/* A cap of 1000 bytes of body: a few. */
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, 0, 50, n, 1000, mlog_read, &log, &added), 0);
	cr_assert(added > 1 && added < 8, "added %u", added);
	uint32_t capped = added;
	/* A cap below one entry: still one. */
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, 0, 50, n, 1, mlog_read, &log, &added), 0);
	cr_assert_eq(added, 1);
	/* An error reply with no entries. */
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, DL_ECOMPACTED, 50, 0, 0, NULL, NULL, &added),
	             0);
	cr_assert_eq(added, 0);

	uint8_t *buf = malloc(fb.len);
	memcpy(buf, fb.buf, fb.len);
	size_t off;
	cr_assert_eq(tp_frame_begin(buf, fb.len, &off), 0);
	const uint32_t want_n[] = {n, capped, 1, 0};
	struct raft_entry got[64];
	for (int i = 0; i < 4; i++) {
		struct tp_hdr h;
		struct tp_get_resp r;
		cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
		if (i == 1)
			cr_assert(h.body_len <= 1000, "body %u", h.body_len);
		cr_assert_eq(tp_decode_get_resp(&h, &r, got, 64), 0);
		cr_assert_eq(r.n, want_n[i]);
		cr_assert_eq(r.first_index, 50);
		cr_assert_eq(r.code, i == 3 ? DL_ECOMPACTED : 0);
		assert_entries_equal(got, ents, r.n, true);
	}
	free(buf);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_client, get_response_stops_at_the_frame_limit_after_the_first_entry)
{
	const uint32_t n = 64;
	struct raft_entry *ents = make_entries(n, size_128, 2);
	struct mlog log = {.first_index = 1, .n = n, .entries = ents};
	struct tp_fb fb;
	tp_fb_init(&fb, 2000);
	uint32_t added;
	cr_assert_eq(tp_fb_add_get_resp(&fb, &addr_g0, 0, 1, n, 0, mlog_read, &log, &added), 0);
	cr_assert(added > 1 && added < 16, "added %u", added);
	cr_assert(fb.len <= 2000);
	struct tp_hdr h;
	uint8_t *buf = single(&fb, &h);
	struct tp_get_resp r;
	struct raft_entry got[64];
	cr_assert_eq(tp_decode_get_resp(&h, &r, got, 64), 0);
	cr_assert_eq(r.n, added);
	free(buf);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_client, metadata_request_for_one_group_or_all_survives_a_round_trip)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr one = {"g7", "", "", 1}, all = {"", "", "", 2};
	cr_assert_eq(tp_fb_add_metadata(&fb, &one), 0);
	cr_assert_eq(tp_fb_add_metadata(&fb, &all), 0);
	uint8_t *buf = malloc(fb.len);
	memcpy(buf, fb.buf, fb.len);
	size_t off;
	struct tp_hdr h;
	cr_assert_eq(tp_frame_begin(buf, fb.len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_str_eq(h.group, "g7");
	cr_assert_eq(tp_decode_metadata(&h), 0);
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_str_eq(h.group, "");
	cr_assert_eq(h.request_id, 2);
	cr_assert_eq(tp_decode_metadata(&h), 0);
	free(buf);
	/* But a raft message needs a group. */
	struct tp_addr none = {"", "n1", "n0", 0};
	struct raft_message m = raft_filled(RAFT_MSG_HEARTBEAT, 1, false);
	cr_assert_eq(tp_fb_add_raft(&fb, &none, &m, NULL, NULL), DL_EINVAL);
	tp_fb_free(&fb);
}

static void fill_group(struct tp_group_meta *g, int k, uint32_t n_members)
{
	memset(g, 0, sizeof(*g));
	snprintf(g->group, sizeof(g->group), "group-%d", k);
	snprintf(g->self, sizeof(g->self), "n%d", k % 3);
	if (k % 2 == 0) {
		snprintf(g->leader, sizeof(g->leader), "n%d", (k + 1) % 3);
		snprintf(g->leader_addr, sizeof(g->leader_addr), "10.0.0.%d:20911", k);
	}
	g->role = (uint8_t)(k % 4);
	g->term = UINT64_MAX - (uint64_t)k;
	g->first_index = 1;
	g->last_index = 1000u * (uint64_t)k;
	g->commit_index = 999u * (uint64_t)k;
	g->durable_index = 998u * (uint64_t)k;
	g->n_members = n_members;
	for (uint32_t i = 0; i < n_members; i++) {
		snprintf(g->members[i].id, sizeof(g->members[i].id), "member_%u", i);
		snprintf(g->members[i].addr, sizeof(g->members[i].addr), "host-%u.example:%u", i,
		         20000 + i);
		g->members[i].role = (uint8_t)(i % 4);
		g->members[i].match_index = i * 1000000007ull;
	}
}

Test(codec_client, metadata_response_with_several_groups_survives_a_round_trip)
{
	struct tp_group_meta groups[4];
	fill_group(&groups[0], 0, 3);
	fill_group(&groups[1], 1, RAFT_MAX_MEMBERS);
	fill_group(&groups[2], 2, 0);
	fill_group(&groups[3], 3, 1);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr all = {"", "", "n0", 3};
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, groups, 4), 0);
	struct tp_hdr h;
	uint8_t *buf = single(&fb, &h);
	size_t cursor = 0;
	struct tp_group_meta g;
	for (int k = 0; k < 4; k++) {
		cr_assert_eq(tp_decode_metadata_resp(&h, &cursor, &g), 0, "group %d", k);
		const struct tp_group_meta *w = &groups[k];
		cr_assert_str_eq(g.group, w->group);
		cr_assert_str_eq(g.self, w->self);
		cr_assert_str_eq(g.leader, w->leader);
		cr_assert_str_eq(g.leader_addr, w->leader_addr);
		cr_assert_eq(g.role, w->role);
		cr_assert_eq(g.term, w->term);
		cr_assert_eq(g.first_index, w->first_index);
		cr_assert_eq(g.last_index, w->last_index);
		cr_assert_eq(g.commit_index, w->commit_index);
		cr_assert_eq(g.durable_index, w->durable_index);
		cr_assert_eq(g.n_members, w->n_members);
		for (uint32_t i = 0; i < w->n_members; i++) {
			cr_assert_str_eq(g.members[i].id, w->members[i].id);
			cr_assert_str_eq(g.members[i].addr, w->members[i].addr);
			cr_assert_eq(g.members[i].role, w->members[i].role);
			cr_assert_eq(g.members[i].match_index, w->members[i].match_index);
		}
	}
	cr_assert_eq(tp_decode_metadata_resp(&h, &cursor, &g), DL_ENOTFOUND);
	cr_assert_eq(tp_decode_metadata_resp(&h, &cursor, &g), DL_ENOTFOUND);
	free(buf);

	/* No groups at all: done at once. */
	tp_fb_reset(&fb);
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, NULL, 0), 0);
	buf = single(&fb, &h);
	cursor = 0;
	cr_assert_eq(tp_decode_metadata_resp(&h, &cursor, &g), DL_ENOTFOUND);
	free(buf);

	/* Too many members, or a bad name, are refused before anything is written. */
	groups[0].n_members = RAFT_MAX_MEMBERS + 1;
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, groups, 1), DL_EINVAL);
	groups[0].n_members = 1;
	strcpy(groups[0].members[0].id, "bad id");
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, groups, 1), DL_EINVAL);
	cr_assert_eq(fb.n_msgs, 1);
	tp_fb_free(&fb);
}

Test(codec_client, error_with_leader_survives_a_round_trip)
{
	struct tp_error e = {.code = DL_ENOTLEADER};
	memset(e.message, 'm', sizeof(e.message) - 1); /* the longest message */
	strcpy(e.leader, "n2");
	strcpy(e.leader_addr, "192.168.1.20:20913");
	struct tp_error none = {DL_EPROTO, "", "", ""};
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct tp_addr a = {"g0", "", "n0", 77};
	cr_assert_eq(tp_fb_add_error(&fb, &a, &e), 0);
	cr_assert_eq(tp_fb_add_error(&fb, &a, &none), 0);
	uint8_t *buf = malloc(fb.len);
	memcpy(buf, fb.buf, fb.len);
	size_t off;
	struct tp_hdr h;
	struct tp_error out;
	cr_assert_eq(tp_frame_begin(buf, fb.len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_eq(h.request_id, 77);
	cr_assert_eq(tp_decode_error(&h, &out), 0);
	cr_assert_eq(out.code, DL_ENOTLEADER);
	cr_assert_str_eq(out.message, e.message);
	cr_assert_str_eq(out.leader, "n2");
	cr_assert_str_eq(out.leader_addr, "192.168.1.20:20913");
	cr_assert_eq(tp_frame_next(buf, fb.len, &off, &h), 0);
	cr_assert_eq(tp_decode_error(&h, &out), 0);
	cr_assert_eq(out.code, DL_EPROTO);
	cr_assert_str_eq(out.leader, "");
	free(buf);
	struct tp_error neg = {-1, "", "", ""};
	cr_assert_eq(tp_fb_add_error(&fb, &a, &neg), DL_EINVAL);
	tp_fb_free(&fb);
}

/* ---- frames ----------------------------------------------------------------- */

Test(codec_frame, several_messages_in_one_frame_come_out_in_order)
{
	struct raft_entry *ents = make_entries(8, size_varied, 1);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	build_mixed_frame(&fb, ents, 8);
	const uint8_t want[] = {1,
	                        2,
	                        3,
	                        4,
	                        5,
	                        6,
	                        7,
	                        8,
	                        9,
	                        TP_APPEND,
	                        TP_APPEND_RESP,
	                        TP_GET,
	                        TP_GET_RESP,
	                        TP_FETCH,
	                        TP_FETCH_RESP,
	                        TP_METADATA,
	                        TP_METADATA_RESP,
	                        TP_ERROR};
	cr_assert_eq(fb.n_msgs, sizeof(want));
	size_t len;
	uint8_t *frame = tp_fb_take(&fb, &len);
	cr_assert_eq(fb.buf, NULL);
	cr_assert_eq(fb.len, 0);
	size_t off;
	cr_assert_eq(tp_frame_begin(frame, len, &off), 0);
	for (size_t i = 0; i < sizeof(want); i++) {
		struct tp_hdr h;
		cr_assert_eq(tp_frame_next(frame, len, &off, &h), 0, "message %zu", i);
		cr_assert_eq(h.type, want[i], "message %zu is %s", i, tp_type_name(h.type));
	}
	struct tp_hdr h;
	cr_assert_eq(tp_frame_next(frame, len, &off, &h), DL_ENOTFOUND);
	struct walk w = walk_copy(frame, len);
	cr_assert_eq(w.msgs, sizeof(want));
	cr_assert_eq(w.bodies, sizeof(want));
	cr_assert_eq(w.errors, 0);
	free(frame);
	free(ents);
}

Test(codec_frame, a_message_over_max_bytes_leaves_the_frame_unchanged)
{
	struct raft_entry *ents = make_entries(4, size_128, 1);
	struct mlog log = {.first_index = 1, .n = 4, .entries = ents};
	struct tp_fb fb;
	tp_fb_init(&fb, 400);
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 1, false);
	m.append.prev_index = 0;
	m.append.n_entries = 4;
	/* The first message does not fit: nothing at all, not even the version. */
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), DL_ETOOBIG);
	cr_assert_eq(fb.len, 0);
	cr_assert_eq(fb.n_msgs, 0);
	size_t len;
	cr_assert_eq(tp_fb_take(&fb, &len), NULL);
	cr_assert_eq(len, 0);
	/* Two fit (about 160 bytes each); the third would pass 400 bytes. */
	m.append.n_entries = 1;
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), 0);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), 0);
	size_t before = fb.len;
	uint8_t copy[400];
	memcpy(copy, fb.buf, before);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, &log), DL_ETOOBIG);
	cr_assert_eq(fb.len, before);
	cr_assert_eq(fb.n_msgs, 2);
	cr_assert(memcmp(copy, fb.buf, before) == 0);
	/* A smaller message still goes in after the refusal. */
	struct raft_message hb = raft_filled(RAFT_MSG_HEARTBEAT, 1, false);
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &hb, NULL, NULL), 0);
	cr_assert(fb.len <= 400);
	struct walk w = walk_copy(fb.buf, fb.len);
	cr_assert_eq(w.bodies, 3);
	cr_assert_eq(w.errors, 0);
	/* reset keeps the buffer, empties the frame. */
	uint8_t *keep = fb.buf;
	tp_fb_reset(&fb);
	cr_assert_eq(fb.len, 0);
	cr_assert_eq(fb.buf, keep);
	tp_fb_free(&fb);
	tp_fb_free(&fb); /* twice is fine */
	free(ents);
}

Test(codec_frame, an_unknown_or_missing_version_is_refused)
{
	static const uint8_t v2[] = {0x02}, v1[] = {0x01}, str[] = {0xa1, 'x'}, neg[] = {0xff},
	                     wide[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 1};
	size_t off = 99;
	cr_assert_eq(tp_frame_begin(v2, 1, &off), DL_EINVAL);
	cr_assert_eq(tp_frame_begin(str, 2, &off), DL_EPROTO);
	cr_assert_eq(tp_frame_begin(neg, 1, &off), DL_EPROTO);
	cr_assert_eq(tp_frame_begin(NULL, 0, &off), DL_EPROTO);
	cr_assert_eq(tp_frame_begin(wide, 8, &off), DL_EPROTO);
	cr_assert_eq(tp_frame_begin(wide, 9, &off), 0);
	cr_assert_eq(off, 9);
	cr_assert_eq(tp_frame_begin(v1, 1, &off), 0);
	cr_assert_eq(off, 1);
	struct tp_hdr h;
	cr_assert_eq(tp_frame_next(v1, 1, &off, &h), DL_ENOTFOUND, "an empty frame");
}

/* version 1, then a header of type `type` with body [0] */
static size_t frame_with_type(uint8_t *buf, uint8_t type_marker, uint8_t type_byte)
{
	size_t n = 0;
	buf[n++] = 0x01;
	buf[n++] = 0x96;
	buf[n++] = type_marker;
	if (type_marker == 0xcd) {
		buf[n++] = 0x01;
	}
	if (type_marker != type_byte)
		buf[n++] = type_byte;
	memcpy(buf + n, "\xa2g0\xa2n1\xa2n0\x07\x02\x91\x00", 13);
	return n + 13;
}

Test(codec_frame, an_unknown_type_is_reported_and_skipped_with_its_header)
{
	uint8_t buf[64];
	size_t len = frame_with_type(buf, 0xcc, 12); /* 12: among peer types, unused */
	/* and then a sound TIMEOUT_NOW */
	memcpy(buf + len, "\x96\x09\xa2g0\xa2n1\xa2n0\x00\x05\x94\x05\x00\xc2\x00", 18);
	len += 18;
	size_t off;
	struct tp_hdr h;
	cr_assert_eq(tp_frame_begin(buf, len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, len, &off, &h), DL_EPROTO);
	cr_assert_eq(h.type, 12);
	cr_assert_str_eq(h.group, "g0");
	cr_assert_str_eq(h.sender, "n0");
	cr_assert_eq(h.request_id, 7);
	cr_assert_str_eq(tp_type_name(h.type), "unknown");
	cr_assert_eq(tp_frame_next(buf, len, &off, &h), 0);
	cr_assert_eq(h.type, RAFT_MSG_TIMEOUT_NOW);
	struct raft_message m;
	cr_assert_eq(tp_decode_raft(&h, &m, NULL, 0), 0);
	cr_assert_eq(m.term, 5);
	cr_assert_eq(tp_frame_next(buf, len, &off, &h), DL_ENOTFOUND);

	/* Type 0 and a type past a byte: reported as 0, still skipped. */
	len = frame_with_type(buf, 0x00, 0x00);
	cr_assert_eq(tp_frame_begin(buf, len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, len, &off, &h), DL_EPROTO);
	cr_assert_eq(h.type, 0);
	cr_assert_eq(off, len);
	len = frame_with_type(buf, 0xcd, 0x05); /* 0x0105 */
	cr_assert_eq(tp_frame_begin(buf, len, &off), 0);
	cr_assert_eq(tp_frame_next(buf, len, &off, &h), DL_EPROTO);
	cr_assert_eq(h.type, 0);
	cr_assert_eq(off, len);
}

Test(codec_frame, type_names_are_known_for_every_type)
{
	cr_assert_str_eq(tp_type_name(RAFT_MSG_APPEND), "append");
	cr_assert_str_eq(tp_type_name(TP_APPEND), "client_append");
	cr_assert_str_eq(tp_type_name(TP_ERROR), "error");
	cr_assert_str_eq(tp_type_name(0), "unknown");
	cr_assert_str_eq(tp_type_name(TP_METADATA_RESP + 1), "unknown");
	cr_assert_str_eq(tp_type_name(255), "unknown");
	for (uint8_t t = TP_RAFT_MIN; t <= TP_RAFT_MAX; t++)
		cr_assert_str_neq(tp_type_name(t), "unknown");
	cr_assert_str_eq(tp_type_name(TP_FETCH), "fetch");
	cr_assert_str_eq(tp_type_name(TP_FETCH_RESP), "fetch_resp");
	cr_assert_str_eq(tp_type_name(TP_FETCH_RESP + 1), "unknown");
}

/* ---- names ------------------------------------------------------------------ */

Test(codec_names, valid_names_are_1_to_64_bytes_of_the_safe_set)
{
	char max[TP_NAME_MAX + 1];
	memset(max, 'a', sizeof(max));
	cr_assert(tp_name_is_valid("g0", 2));
	cr_assert(tp_name_is_valid("A-z_0.9", 7));
	cr_assert(tp_name_is_valid(max, TP_NAME_MAX));
	cr_assert_not(tp_name_is_valid(max, TP_NAME_MAX + 1));
	cr_assert_not(tp_name_is_valid("", 0));
	cr_assert_not(tp_name_is_valid(NULL, 0));
	cr_assert_not(tp_name_is_valid("a b", 3));
	cr_assert_not(tp_name_is_valid("a/b", 3));
	cr_assert_not(tp_name_is_valid("a\0b", 3));
	cr_assert_not(tp_name_is_valid("\xc3\xa9", 2));
}

/* A frame with one TIMEOUT_NOW whose group, target and sender are raw
 * msgpack strings as given. */
static size_t frame_with_names(uint8_t *buf, const char *group, size_t glen, const char *target,
                               size_t tlen)
{
	size_t n = 0;
	buf[n++] = 0x01;
	buf[n++] = 0x96;
	buf[n++] = 0x09;
	buf[n++] = 0xd9; /* str8 */
	buf[n++] = (uint8_t)glen;
	memcpy(buf + n, group, glen);
	n += glen;
	buf[n++] = (uint8_t)(0xa0 | tlen);
	memcpy(buf + n, target, tlen);
	n += tlen;
	buf[n++] = 0xa0; /* sender "" */
	buf[n++] = 0x00;
	buf[n++] = 0x02;
	buf[n++] = 0x91;
	buf[n++] = 0x01;
	return n;
}

Test(codec_names, the_decoder_refuses_invalid_names_in_the_header)
{
	uint8_t buf[128];
	char long_name[TP_NAME_MAX + 1];
	memset(long_name, 'x', sizeof(long_name));
	struct {
		const char *g;
		size_t glen;
		const char *t;
		size_t tlen;
		int rc;
	} cases[] = {
	        {"g0", 2, "n1", 2, 0},
	        {long_name, TP_NAME_MAX, "", 0, 0},
	        {long_name, TP_NAME_MAX + 1, "n1", 2, DL_EPROTO},
	        {"", 0, "n1", 2, DL_EPROTO}, /* a raft message needs its group */
	        {"g 0", 3, "n1", 2, DL_EPROTO},
	        {"g0", 2, "n\n", 2, DL_EPROTO},
	        {"g\0", 2, "n1", 2, DL_EPROTO},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len =
		        frame_with_names(buf, cases[i].g, cases[i].glen, cases[i].t, cases[i].tlen);
		size_t off;
		struct tp_hdr h;
		cr_assert_eq(tp_frame_begin(buf, len, &off), 0);
		size_t before = off;
		cr_assert_eq(tp_frame_next(buf, len, &off, &h), cases[i].rc, "case %zu", i);
		if (cases[i].rc != 0) {
			cr_assert_eq(off, before, "case %zu", i);
			cr_assert_eq(h.type, RAFT_MSG_TIMEOUT_NOW, "type readable, case %zu", i);
		}
	}
}

Test(codec_names, the_encoder_refuses_names_the_decoder_would_refuse)
{
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct raft_message m = raft_filled(RAFT_MSG_HEARTBEAT, 1, false);
	char long_name[TP_NAME_MAX + 2];
	memset(long_name, 'x', sizeof(long_name) - 1);
	long_name[TP_NAME_MAX + 1] = '\0';
	const struct tp_addr bad[] = {
	        {"g 0", "n1", "n0", 0},     {"g0", "n/1", "n0", 0}, {"g0", "n1", "n0\t", 0},
	        {long_name, "n1", "n0", 0}, {"g0", NULL, "n0", 0},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(tp_fb_add_raft(&fb, &bad[i], &m, NULL, NULL), DL_EINVAL, "case %zu",
		             i);
	long_name[TP_NAME_MAX] = '\0';
	struct tp_addr ok = {long_name, "", "", 0};
	cr_assert_eq(tp_fb_add_raft(&fb, &ok, &m, NULL, NULL), 0);
	struct tp_error e = {DL_ENOTLEADER, "x", "n 1", ""};
	cr_assert_eq(tp_fb_add_error(&fb, &addr_g0, &e), DL_EINVAL);
	struct tp_error e2 = {DL_ENOTLEADER, "x", "n1", "has space:1"};
	cr_assert_eq(tp_fb_add_error(&fb, &addr_g0, &e2), DL_EINVAL);
	/* a group's stop reason with a control byte (rd_text refuses it) */
	struct tp_group_meta g;
	memset(&g, 0, sizeof(g));
	strcpy(g.group, "g0");
	strcpy(g.self, "n0");
	strcpy(g.stopped, "disk\nfull");
	struct tp_addr all = {"", "", "", 0};
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, &g, 1), DL_EINVAL);
	strcpy(g.stopped, "disk full");
	cr_assert_eq(tp_fb_add_metadata_resp(&fb, &all, &g, 1), 0);
	cr_assert_eq(fb.n_msgs, 2);
	tp_fb_free(&fb);
}

/* ---- hand-broken bodies ----------------------------------------------------- */

static int decode_raft_body(uint8_t type, const uint8_t *body, size_t len)
{
	uint8_t *copy = malloc(len ? len : 1);
	if (len)
		memcpy(copy, body, len);
	struct tp_hdr h = {.type = type, .body = copy, .body_len = (uint32_t)len};
	struct raft_message m;
	struct raft_entry e[4];
	int rc = tp_decode_raft(&h, &m, e, 4);
	free(copy);
	return rc;
}

#define RAFT_BODY(type, ...)                                                                       \
	decode_raft_body(type, (const uint8_t[]){__VA_ARGS__},                                     \
	                 sizeof((const uint8_t[]){__VA_ARGS__}))

Test(codec_bodies, wrongly_typed_fields_are_protocol_errors)
{
	/* sound, for reference */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0x01, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), 0);
	/* a bool given as a uint */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0x01, 0x02, 0x03, 0x00, 0x00, 0xc2, 0x00), DL_EPROTO);
	/* a term given as a string, as nil, as a float, as a negative int */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xa1, '1', 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xc0, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xca, 0, 0, 0, 0, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xff, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xd0, 0x80, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	/* a signed format holding a non-negative value is a uint */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0xd0, 0x7f, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), 0);
	/* wrong arity, a map instead of an array, a trailing byte, nothing */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x96, 0x01, 0x02, 0x03, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x98, 0x01, 0x02, 0x03, 0xc2, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x84, 0x01, 0x02, 0x03, 0xc2, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_VOTE, 0x97, 0x01, 0x02, 0x03, 0xc2, 0x00, 0x00, 0xc2, 0x00), DL_EPROTO);
	cr_assert_eq(decode_raft_body(RAFT_MSG_VOTE, NULL, 0), DL_EPROTO);
	/* two values where one is expected */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_TIMEOUT_NOW, 0x94, 0x01, 0x91, 0x01, 0x00, 0xc2, 0x00), DL_EPROTO);
	/* entry data as a str instead of bin; entry type unknown; entry not an array */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x91, 0x93, 1, 0, 0xc4, 1, 'x', 0x00, 0xc2, 0x00),
	             0);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x91, 0x93, 1, 0, 0xa1, 'x', 0x00, 0xc2, 0x00),
	             DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x91, 0x93, 1, 2, 0xc4, 1, 'x', 0x00, 0xc2, 0x00),
	             DL_EPROTO);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x91, 0xc4, 1, 'x', 0x00, 0xc2, 0x00), DL_EPROTO);
	/* a bin longer than the body */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x91, 0x93, 1, 0, 0xc6, 0xff,
	                       0xff, 0xff, 0xff, 'x', 0x00, 0xc2, 0x00),
	             DL_EPROTO);
	/* APPEND_RESP with reject as uint */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND_RESP, 0x9a, 1, 0xc3, 1, 1, 1, 1, 1, 0x00, 0xc2, 0x00), 0);
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND_RESP, 0x9a, 1, 1, 1, 1, 1, 1, 1, 0x00, 0xc2, 0x00), DL_EPROTO);
}

Test(codec_bodies, oversized_entry_counts_are_too_big_before_anything_is_read)
{
	/* array32 claiming 4 billion entries, then nothing */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff, 0x00, 0xc2, 0x00),
	             DL_ETOOBIG);
	/* five entries for a caller holding four */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x95, 0x00, 0xc2, 0x00), DL_ETOOBIG);
	/* four claimed, none there */
	cr_assert_eq(RAFT_BODY(RAFT_MSG_APPEND, 0x98, 1, 0, 0, 0, 0x94, 0x00, 0xc2, 0x00), DL_EPROTO);
	/* past TP_MAX_ENTRIES even for a caller with room for more */
	uint32_t cap = TP_MAX_ENTRIES + 1;
	struct raft_entry *e = calloc(cap, sizeof(*e));
	static const uint8_t body[] = {0x91, 0xdd, 0x00, 0x01, 0x00, 0x01};
	struct tp_hdr h = {.type = TP_APPEND, .body = body, .body_len = sizeof(body)};
	uint32_t n = 99;
	cr_assert_eq(tp_decode_append(&h, e, cap, &n), DL_ETOOBIG);
	cr_assert_eq(n, 0);
	/* metadata with too many members */
	static const uint8_t meta[] = {0x91, 0x9b, 0xa1, 'g', 0xa1, 'n',  0xa0, 0xa0, 0,
	                               0,    0,    0,    0,   0,    0xdc, 0x00, 0x0a};
	struct tp_hdr hm = {.type = TP_METADATA_RESP, .body = meta, .body_len = sizeof(meta)};
	struct tp_group_meta g;
	size_t cursor = 0;
	cr_assert_eq(tp_decode_metadata_resp(&hm, &cursor, &g), DL_EPROTO);
	free(e);
	/* encoder side: more than TP_MAX_ENTRIES */
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	struct raft_message m = raft_filled(RAFT_MSG_APPEND, 1, false);
	m.append.n_entries = TP_MAX_ENTRIES + 1;
	cr_assert_eq(tp_fb_add_raft(&fb, &addr_g0, &m, mlog_read, NULL), DL_ETOOBIG);
	cr_assert_eq(tp_fb_add_append(&fb, &addr_g0, NULL, TP_MAX_ENTRIES + 1), DL_ETOOBIG);
	tp_fb_free(&fb);
}

Test(codec_bodies, a_header_whose_body_runs_past_the_frame_is_refused)
{
	/* body_len 3 with 2 bytes left */
	static const uint8_t f[] = {0x01, 0x96, 0x09, 0xa2, 'g',  '0',
	                            0xa0, 0xa0, 0x00, 0x03, 0x91, 0x01};
	size_t off;
	struct tp_hdr h;
	cr_assert_eq(tp_frame_begin(f, sizeof(f), &off), 0);
	cr_assert_eq(tp_frame_next(f, sizeof(f), &off, &h), DL_EPROTO);
	cr_assert_eq(off, 1);
	cr_assert_eq(h.type, RAFT_MSG_TIMEOUT_NOW);
	/* body_len past uint32 */
	static const uint8_t g[] = {0x01, 0x96, 0x09, 0xa2, 'g', '0', 0xa0, 0xa0, 0x00, 0xcf,
	                            0,    0,    0,    1,    0,   0,   0,    2,    0x91, 0x01};
	cr_assert_eq(tp_frame_begin(g, sizeof(g), &off), 0);
	cr_assert_eq(tp_frame_next(g, sizeof(g), &off, &h), DL_EPROTO);
	/* a header of 5 fields */
	static const uint8_t k[] = {0x01, 0x95, 0x09, 0xa2, 'g', '0', 0xa0, 0xa0, 0x00};
	cr_assert_eq(tp_frame_begin(k, sizeof(k), &off), 0);
	cr_assert_eq(tp_frame_next(k, sizeof(k), &off, &h), DL_EPROTO);
}

Test(codec_bodies, error_messages_with_nul_or_too_long_are_refused)
{
	uint8_t body[300] = {0x94, 0x0a, 0xd9, 3, 'a', 0, 'b', 0xa0, 0xa0};
	struct tp_hdr h = {.type = TP_ERROR, .body = body, .body_len = 9};
	struct tp_error e;
	cr_assert_eq(tp_decode_error(&h, &e), DL_EPROTO);
	body[5] = 'x';
	cr_assert_eq(tp_decode_error(&h, &e), 0);
	cr_assert_str_eq(e.message, "axb");
	/* 256 bytes of message do not fit in message[256] */
	size_t n = 0;
	body[n++] = 0x94;
	body[n++] = 0x0a;
	body[n++] = 0xda;
	body[n++] = 0x01;
	body[n++] = 0x00;
	memset(body + n, 'm', 256);
	n += 256;
	body[n++] = 0xa0;
	body[n++] = 0xa0;
	h.body_len = (uint32_t)n;
	cr_assert_eq(tp_decode_error(&h, &e), DL_EPROTO);
}

/* ---- truncation, random frames, mutations ----------------------------------- */

Test(codec_fuzz, every_prefix_of_a_valid_frame_decodes_or_fails_cleanly)
{
	struct raft_entry *ents = make_entries(6, size_varied, 3);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	build_mixed_frame(&fb, ents, 6);
	struct walk full = walk_copy(fb.buf, fb.len);
	cr_assert_eq(full.errors, 0);
	uint32_t errors = 0, cut_clean = 0;
	for (size_t len = 0; len < fb.len; len++) {
		struct walk w = walk_copy(fb.buf, len);
		cr_assert(w.bodies < full.bodies, "prefix %zu decoded everything", len);
		errors += w.errors;
		if (w.errors == 0)
			cut_clean++; /* the prefix ends between two messages */
	}
	cr_assert(errors > 0);
	cr_assert(cut_clean <= full.msgs, "clean cuts %u", cut_clean);
	tp_fb_free(&fb);
	free(ents);
}

/* One random msgpack token (or a broken one) at p; returns its size. The
 * markers are those the decoder reads, and a few it must refuse. */
static size_t rnd_token(uint8_t *p, size_t cap, uint64_t *s)
{
	static const uint8_t markers[] = {0x00, 0x7f, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3,
					  0xc2, 0xc3, 0xc0, 0x90, 0x93, 0x9f, 0xdc, 0xdd,
					  0xa0, 0xa2, 0xbf, 0xd9, 0xda, 0xdb, 0xc4, 0xc5,
					  0xc6, 0xe0, 0xff, 0xca, 0x80};
	if (cap < 10)
		return 0;
	uint64_t r = rnd(s);
	if (r % 2 == 0) { /* mostly what bodies hold: small uints and bools */
		p[0] = (uint8_t)((r >> 8) % 4 == 0 ? 0xc2 + (r >> 16) % 2 : (r >> 16) % 100);
		return 1;
	}
	uint8_t m = markers[(r >> 1) % sizeof(markers)];
	size_t n = 0;
	p[n++] = m;
	size_t extra = 0, payload = 0;
	switch (m) {
	case 0xcc: case 0xd0: case 0xc4: case 0xd9: extra = 1; break;
	case 0xcd: case 0xdc: case 0xc5: case 0xda: extra = 2; break;
	case 0xce: case 0xdd: case 0xc6: case 0xdb: case 0xca: extra = 4; break;
	case 0xcf: case 0xd3: extra = 8; break;
	case 0xa2: payload = 2; break;
	case 0xbf: payload = 31; break;
	default: break;
	}
	/* Lengths and counts: mostly small, sometimes huge. */
	uint64_t v = (r >> 8) % 8 == 0 ? rnd(s) : (r >> 16) % 24;
	for (size_t i = 0; i < extra; i++)
		p[n++] = (uint8_t)(v >> (8 * (extra - 1 - i)));
	if ((m >= 0xc4 && m <= 0xc6) || (m >= 0xd9 && m <= 0xdb))
		payload = (size_t)(v < 24 ? v : 0);
	for (size_t i = 0; i < payload && n < cap; i++)
		p[n++] = (uint8_t)('a' + (rnd(s) % 26));
	return n;
}

/* version, then 1..4 messages: a well-formed header (usually) with a known
 * type, then a body of random tokens, usually opened by an array. */
static size_t rnd_frame(uint8_t *buf, size_t cap, uint64_t *s)
{
	static const uint8_t types[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, TP_APPEND, TP_APPEND_RESP,
					TP_GET, TP_GET_RESP, TP_METADATA, TP_METADATA_RESP,
					TP_ERROR, TP_FETCH, TP_FETCH_RESP, 0, 12, 40};
	size_t n = 0;
	buf[n++] = 0x01;
	int msgs = 1 + (int)(rnd(s) % 4);
	for (int k = 0; k < msgs && cap - n > 64; k++) {
		uint8_t type = types[rnd(s) % sizeof(types)];
		size_t hdr = n;
		buf[n++] = 0x96;
		buf[n++] = type;
		if (type == TP_METADATA || type == TP_METADATA_RESP) {
			buf[n++] = 0xa0; /* all groups */
		} else {
			memcpy(buf + n, "\xa2g0", 3);
			n += 3;
		}
		memcpy(buf + n, "\xa2n1\xa0\x05\xce", 6); /* target, sender, id, body_len */
		n += 6;
		size_t len_at = n;
		n += 4;
		size_t body = n, want = rnd(s) % 2 ? rnd(s) % 8 : rnd(s) % 96;
		if (rnd(s) % 4 != 0)
			buf[n++] = (uint8_t)(0x90 | (rnd(s) % 8));
		while (n - body < want) {
			size_t t = rnd_token(buf + n, cap - n - 8, s);
			if (t == 0)
				break;
			n += t;
		}
		size_t len = n - body;
		if (rnd(s) % 8 == 0)
			len += rnd(s) % 4; /* a body_len that lies */
		buf[len_at] = (uint8_t)(len >> 24);
		buf[len_at + 1] = (uint8_t)(len >> 16);
		buf[len_at + 2] = (uint8_t)(len >> 8);
		buf[len_at + 3] = (uint8_t)len;
		if (rnd(s) % 16 == 0)
			buf[hdr + rnd(s) % (body - hdr)] = (uint8_t)rnd(s); /* a broken header */
	}
	return n;
}

Test(codec_fuzz, thousands_of_random_frames_never_break_the_decoder)
{
	uint64_t seed = 0x5eed1234abcdULL;
	uint8_t buf[1024];
	uint32_t errors = 0, msgs = 0, bodies = 0;
	for (int i = 0; i < 40000; i++) {
		size_t len;
		if (i % 4 == 0) {
			/* plain random bytes */
			len = rnd(&seed) % 256;
			for (size_t j = 0; j < len; j++)
				buf[j] = (uint8_t)(rnd(&seed) >> 24);
			if (len > 0 && i % 8 == 0)
				buf[0] = 0x01;
		} else {
			len = rnd_frame(buf, sizeof(buf), &seed);
		}
		struct walk w = walk_copy(buf, len);
		errors += w.errors;
		msgs += w.msgs;
		bodies += w.bodies;
	}
	cr_assert(errors > 20000, "errors %u", errors);
	cr_assert(msgs > 20000, "headers %u", msgs);
	cr_assert(bodies > 0, "some random bodies are sound");
	fprintf(stderr, "random frames: %u errors, %u headers read, %u bodies decoded\n", errors,
		msgs, bodies);
}

static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *seed)
{
	int ops = 1 + (int)(rnd(seed) % 4);
	for (int k = 0; k < ops; k++) {
		uint64_t r = rnd(seed);
		size_t at = len ? (size_t)(r >> 8) % len : 0;
		switch (r % 4) {
		case 0: /* bit flip */
			if (len)
				buf[at] ^= (uint8_t)(1u << ((r >> 40) % 8));
			break;
		case 1: /* insert a byte */
			if (len < cap) {
				memmove(buf + at + 1, buf + at, len - at);
				buf[at] = (uint8_t)(r >> 48);
				len++;
			}
			break;
		case 2: /* delete a byte */
			if (len) {
				memmove(buf + at, buf + at + 1, len - at - 1);
				len--;
			}
			break;
		default: /* overwrite with a marker that changes a length */
			if (len) {
				static const uint8_t m[] = {0xdd, 0xdc, 0xc6, 0xdb, 0xcf,
				                            0xce, 0xff, 0x00, 0x9f, 0xbf};
				buf[at] = m[(r >> 32) % sizeof(m)];
			}
			break;
		}
	}
	return len;
}

Test(codec_fuzz, thousands_of_mutated_valid_frames_never_break_the_decoder)
{
	struct raft_entry *ents = make_entries(5, size_small, 1);
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	build_mixed_frame(&fb, ents, 5);
	size_t cap = fb.len + 16;
	uint8_t *buf = malloc(cap);
	uint64_t seed = 0xc0dec0dec0deULL;
	uint32_t errors = 0, bodies = 0, clean = 0;
	for (int i = 0; i < 30000; i++) {
		memcpy(buf, fb.buf, fb.len);
		size_t len = mutate(buf, fb.len, cap, &seed);
		struct walk w = walk_copy(buf, len);
		errors += w.errors;
		bodies += w.bodies;
		clean += w.errors == 0;
	}
	cr_assert(errors > 10000, "errors %u", errors);
	cr_assert(bodies > 30000, "bodies %u", bodies);
	fprintf(stderr, "mutated frames: %u errors, %u bodies decoded, %u frames without error\n",
	        errors, bodies, clean);
	free(buf);
	tp_fb_free(&fb);
	free(ents);
}

Test(codec_fuzz, mutated_single_messages_of_each_type_never_break_their_decoder)
{
	struct raft_entry *ents = make_entries(3, size_small, 1);
	struct tp_fb whole;
	tp_fb_init(&whole, 0);
	build_mixed_frame(&whole, ents, 3);
	/* Cut the mixed frame into one-message frames. */
	size_t off, start;
	cr_assert_eq(tp_frame_begin(whole.buf, whole.len, &off), 0);
	uint64_t seed = 42;
	uint32_t errors = 0;
	struct tp_hdr h;
	uint8_t buf[1024];
	for (start = off; tp_frame_next(whole.buf, whole.len, &off, &h) == 0; start = off) {
		size_t n = 1 + off - start;
		cr_assert(n + 16 <= sizeof(buf));
		for (int i = 0; i < 3000; i++) {
			buf[0] = 0x01;
			memcpy(buf + 1, whole.buf + start, n - 1);
			size_t len = mutate(buf + 1, n - 1, sizeof(buf) - 1, &seed) + 1;
			errors += walk_copy(buf, len).errors;
		}
	}
	cr_assert(errors > 1000, "errors %u", errors);
	tp_fb_free(&whole);
	free(ents);
}
