/*
 * codec.c - frames of msgpack messages (transport/codec.h, docs/PROTOCOL.md).
 *
 * Encoding packs with msgpack-c's packer straight into the frame's growing
 * buffer; entries (the hot path) go through a small writer of the same bytes.
 * An entry body is copied once, from the store into the frame. The header's
 * body_len is written as a fixed 5-byte uint32 (0xce + 4 bytes) and patched
 * once the body is packed; a GET_RESP entry count likewise (array32).
 *
 * Decoding does not use msgpack_unpack_next(): a small reader here takes
 * exactly the msgpack subset that docs/PROTOCOL.md allows. It allocates
 * nothing (msgpack-c's unpacker sizes its zone from counts the peer sends),
 * every read is checked against the end of the body, and each decoder checks
 * that the body is exactly one value of the expected shape.
 *
 * Pure functions, no threads, no global state.
 */
#include "transport/codec.h"

#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_err.h"

#define TP_CODE_MAX 255     /* error codes travel as uint <= 255 */
#define TP_FB_MIN_CAP 4096u /* first allocation of a frame buffer */

/* ---- names and types ----------------------------------------------------- */

bool tp_name_is_valid(const char *s, size_t len)
{
	if (s == NULL || len == 0 || len > TP_NAME_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
		if (!ok)
			return false;
	}
	return true;
}

/* "host:port": 1..TP_ADDR_MAX bytes of printable ASCII, no space. */
static bool addr_is_valid(const char *s, size_t len)
{
	if (len == 0 || len > TP_ADDR_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f)
			return false;
	}
	return true;
}

static bool type_is_known(uint8_t type)
{
	return (type >= TP_RAFT_MIN && type <= TP_RAFT_MAX) || type == TP_FETCH ||
	       type == TP_FETCH_RESP ||
	       (type >= TP_APPEND && type <= TP_METADATA_RESP) || type == TP_ERROR;
}

/* The group may be empty only where a message is about the node, not one
 * group: a metadata request for all groups, its reply, a node-level error,
 * and a type we do not know (so that it can still be answered). */
static bool group_may_be_empty(uint8_t type)
{
	return type == TP_METADATA || type == TP_METADATA_RESP || type == TP_ERROR ||
	       !type_is_known(type);
}

const char *tp_type_name(uint8_t type)
{
	if (type <= RAFT_MSG_TYPE_MAX)
		return raft_msg_type_name(type); /* "unknown" for 0 */
	static const char *const names[TP_TYPE_MAX + 1] = {
		[TP_FETCH] = "fetch",
		[TP_FETCH_RESP] = "fetch_resp",
		[TP_APPEND] = "client_append",
		[TP_APPEND_RESP] = "client_append_resp",
		[TP_GET] = "client_get",
		[TP_GET_RESP] = "client_get_resp",
		[TP_METADATA] = "metadata",
		[TP_METADATA_RESP] = "metadata_resp",
		[TP_ERROR] = "error",
	};
	if (type > TP_TYPE_MAX || names[type] == NULL)
		return "unknown";
	return names[type];
}

/* ---- reader: the msgpack subset of docs/PROTOCOL.md ---------------------- */

struct rd {
	const uint8_t *p;
	size_t len;
	size_t off; /* <= len */
};

static bool rd_has(const struct rd *r, size_t n)
{
	return r->len - r->off >= n;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
	uint64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = (v << 8) | p[i];
	return v;
}

/* Reads the marker byte and, for the formats with a length or value after
 * it, that many big-endian bytes. */
static int rd_marker(struct rd *r, uint8_t *b)
{
	if (!rd_has(r, 1))
		return DL_EPROTO;
	*b = r->p[r->off++];
	return 0;
}

static int rd_be(struct rd *r, size_t n, uint64_t *v)
{
	if (!rd_has(r, n))
		return DL_EPROTO;
	*v = load_be(r->p + r->off, n);
	r->off += n;
	return 0;
}

/* uint: positive fixint, uint 8..64 in any width, or int 8..64 holding a
 * non-negative value (some encoders pick signed formats). */
static int rd_uint(struct rd *r, uint64_t *v)
{
	uint8_t b;
	if (rd_marker(r, &b) != 0)
		return DL_EPROTO;
	if (b <= 0x7f) {
		*v = b;
		return 0;
	}
	size_t n;
	bool is_signed = b >= 0xd0;
	switch (b) {
	case 0xcc: case 0xd0: n = 1; break;
	case 0xcd: case 0xd1: n = 2; break;
	case 0xce: case 0xd2: n = 4; break;
	case 0xcf: case 0xd3: n = 8; break;
	default: return DL_EPROTO;
	}
	if (rd_be(r, n, v) != 0)
		return DL_EPROTO;
	if (is_signed && (*v >> (8 * n - 1)) != 0)
		return DL_EPROTO; /* negative */
	return 0;
}

static int rd_uint_max(struct rd *r, uint64_t max, uint64_t *v)
{
	if (rd_uint(r, v) != 0 || *v > max)
		return DL_EPROTO;
	return 0;
}

static int rd_bool(struct rd *r, bool *v)
{
	uint8_t b;
	if (rd_marker(r, &b) != 0 || (b != 0xc2 && b != 0xc3))
		return DL_EPROTO;
	*v = b == 0xc3;
	return 0;
}

static int rd_array(struct rd *r, uint32_t *n)
{
	uint8_t b;
	uint64_t v;
	if (rd_marker(r, &b) != 0)
		return DL_EPROTO;
	if (b >= 0x90 && b <= 0x9f) {
		*n = b & 0x0fu;
		return 0;
	}
	if ((b != 0xdc && b != 0xdd) || rd_be(r, b == 0xdc ? 2 : 4, &v) != 0)
		return DL_EPROTO;
	*n = (uint32_t)v;
	return 0;
}

static int rd_array_n(struct rd *r, uint32_t want)
{
	uint32_t n;
	if (rd_array(r, &n) != 0 || n != want)
		return DL_EPROTO;
	return 0;
}

/* str (fix, 8, 16, 32) when is_bin is false, bin (8, 16, 32) when true;
 * *s points into the buffer, the whole payload checked to be inside it. */
static int rd_raw(struct rd *r, bool is_bin, const uint8_t **s, uint32_t *n)
{
	uint8_t b;
	uint64_t v;
	size_t w;
	if (rd_marker(r, &b) != 0)
		return DL_EPROTO;
	if (!is_bin && b >= 0xa0 && b <= 0xbf) {
		v = b & 0x1fu;
	} else {
		switch (b) {
		case 0xd9: case 0xc4: w = 1; break;
		case 0xda: case 0xc5: w = 2; break;
		case 0xdb: case 0xc6: w = 4; break;
		default: return DL_EPROTO;
		}
		if ((b >= 0xc4 && b <= 0xc6) != is_bin || rd_be(r, w, &v) != 0)
			return DL_EPROTO;
	}
	if (!rd_has(r, (size_t)v))
		return DL_EPROTO;
	*s = r->p + r->off;
	*n = (uint32_t)v;
	r->off += (size_t)v;
	return 0;
}

/* A name into out[TP_NAME_MAX + 1]; "" accepted when may_be_empty. */
static int rd_name(struct rd *r, bool may_be_empty, char *out)
{
	const uint8_t *s;
	uint32_t n;
	if (rd_raw(r, false, &s, &n) != 0)
		return DL_EPROTO;
	if (!(n == 0 && may_be_empty) && !tp_name_is_valid((const char *)s, n))
		return DL_EPROTO;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* An address into out[TP_ADDR_MAX + 1]; "" accepted (unknown). */
static int rd_addr(struct rd *r, char *out)
{
	const uint8_t *s;
	uint32_t n;
	if (rd_raw(r, false, &s, &n) != 0)
		return DL_EPROTO;
	if (n != 0 && !addr_is_valid((const char *)s, n))
		return DL_EPROTO;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* A short free text (a reason): a str that fits `cap` with its NUL and
 * holds no NUL or control byte. */
static int rd_text(struct rd *r, char *out, size_t cap)
{
	const uint8_t *s;
	uint32_t n;
	if (rd_raw(r, false, &s, &n) != 0 || n >= cap)
		return DL_EPROTO;
	for (uint32_t i = 0; i < n; i++)
		if (s[i] < 0x20 || s[i] == 0x7f)
			return DL_EPROTO;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

static int rd_end(const struct rd *r)
{
	return r->off == r->len ? 0 : DL_EPROTO;
}

static void rd_body(struct rd *r, const struct tp_hdr *h)
{
	DL_ASSERT(h->body != NULL || h->body_len == 0);
	r->p = h->body;
	r->len = h->body_len;
	r->off = 0;
}

/* An entries array: [[term, type, data:bin], ...] (with_term) or
 * [data:bin, ...] (client append). Data are views into the body. */
static int rd_entries(struct rd *r, bool with_term, struct raft_entry *entries,
		      uint32_t max_entries, uint32_t *n_out)
{
	uint32_t n;
	if (rd_array(r, &n) != 0)
		return DL_EPROTO;
	if (n > max_entries || n > TP_MAX_ENTRIES)
		return DL_ETOOBIG;
	DL_ASSERT(entries != NULL || n == 0);
	for (uint32_t i = 0; i < n; i++) {
		struct raft_entry *e = &entries[i];
		uint64_t term = 0, type = RAFT_ENTRY_NORMAL;
		const uint8_t *data;
		uint32_t len;
		if (with_term && (rd_array_n(r, 3) != 0 || rd_uint(r, &term) != 0 ||
				  rd_uint_max(r, RAFT_ENTRY_NOOP, &type) != 0))
			return DL_EPROTO;
		if (rd_raw(r, true, &data, &len) != 0)
			return DL_EPROTO;
		e->term = term;
		e->type = (uint8_t)type;
		e->data = data;
		e->len = len;
	}
	*n_out = n;
	return 0;
}

/* ---- frame and header ---------------------------------------------------- */

int tp_frame_begin(const uint8_t *buf, size_t len, size_t *off)
{
	DL_ASSERT(off != NULL);
	DL_ASSERT(buf != NULL || len == 0);
	struct rd r = {buf, len, 0};
	uint64_t version;
	if (rd_uint(&r, &version) != 0)
		return DL_EPROTO;
	if (version != TP_VERSION)
		return DL_EINVAL;
	*off = r.off;
	return 0;
}

int tp_frame_next(const uint8_t *buf, size_t len, size_t *off, struct tp_hdr *h)
{
	DL_ASSERT(off != NULL && h != NULL);
	DL_ASSERT(buf != NULL || len == 0);
	DL_ASSERT(*off <= len);
	h->type = 0;
	h->group[0] = h->target[0] = h->sender[0] = '\0';
	h->request_id = 0;
	h->body_len = 0;
	h->body = NULL;
	if (*off == len)
		return DL_ENOTFOUND;

	struct rd r = {buf, len, *off};
	uint64_t type, body_len;
	if (rd_array_n(&r, 6) != 0 || rd_uint(&r, &type) != 0)
		return DL_EPROTO;
	h->type = type <= UINT8_MAX ? (uint8_t)type : 0; /* 0: no such type */
	if (rd_name(&r, group_may_be_empty(h->type), h->group) != 0 ||
	    rd_name(&r, true, h->target) != 0 || rd_name(&r, true, h->sender) != 0 ||
	    rd_uint(&r, &h->request_id) != 0 || rd_uint_max(&r, UINT32_MAX, &body_len) != 0 ||
	    !rd_has(&r, (size_t)body_len))
		return DL_EPROTO;
	h->body_len = (uint32_t)body_len;
	h->body = buf + r.off;
	/* An unknown type with a sound header is skipped whole, so the caller
	 * can answer it (h is filled) and read on. */
	*off = r.off + (size_t)body_len;
	DL_ASSERT(*off <= len);
	return type_is_known(h->type) ? 0 : DL_EPROTO;
}

/* ---- body decoders ------------------------------------------------------- */

/* Every Raft message ends with the sender's incarnation and voter flag and
 * the recipient's incarnation that the sender counts as a voter
 * (raft/raft.h, "Voters"). */
#define RAFT_COMMON_FIELDS 3u

static int rd_raft_common(struct rd *r, struct raft_message *m)
{
	return rd_uint(r, &m->incarnation) || rd_bool(r, &m->voter) ||
	       rd_uint(r, &m->peer_voter_inc);
}

static int rd_raft_append(struct rd *r, struct raft_message *m, struct raft_entry *entries,
			  uint32_t max_entries)
{
	uint32_t n = 0;
	if (rd_array_n(r, 5 + RAFT_COMMON_FIELDS) != 0 || rd_uint(r, &m->term) != 0 ||
	    rd_uint(r, &m->append.prev_index) != 0 || rd_uint(r, &m->append.prev_term) != 0 ||
	    rd_uint(r, &m->append.commit) != 0)
		return DL_EPROTO;
	int rc = rd_entries(r, true, entries, max_entries, &n);
	if (rc != 0)
		return rc;
	if (rd_raft_common(r, m) != 0)
		return DL_EPROTO;
	if (m->append.prev_index > UINT64_MAX - n)
		return DL_EPROTO; /* the last index would not fit */
	m->append.n_entries = n;
	m->append.entries = entries;
	return 0;
}

static int rd_raft_body(struct rd *r, struct raft_message *m, struct raft_entry *entries,
			uint32_t max_entries)
{
	bool bad;
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		bad = rd_array_n(r, 4 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term) ||
		      rd_uint(r, &m->vote.last_index) || rd_uint(r, &m->vote.last_term) ||
		      rd_bool(r, &m->vote.transfer);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		bad = rd_array_n(r, 2 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term) ||
		      rd_bool(r, &m->vote_resp.granted);
		break;
	case RAFT_MSG_APPEND:
		return rd_raft_append(r, m, entries, max_entries);
	case RAFT_MSG_APPEND_RESP:
		bad = rd_array_n(r, 7 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term) ||
		      rd_bool(r, &m->append_resp.reject) ||
		      rd_uint(r, &m->append_resp.match_index) ||
		      rd_uint(r, &m->append_resp.last_index) ||
		      rd_uint(r, &m->append_resp.rejected_index) ||
		      rd_uint(r, &m->append_resp.hint_index) ||
		      rd_uint(r, &m->append_resp.hint_term);
		break;
	case RAFT_MSG_HEARTBEAT:
		bad = rd_array_n(r, 2 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term) ||
		      rd_uint(r, &m->heartbeat.commit);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		bad = rd_array_n(r, 3 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term) ||
		      rd_uint(r, &m->heartbeat_resp.match_index) ||
		      rd_bool(r, &m->heartbeat_resp.want_lead);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		bad = rd_array_n(r, 1 + RAFT_COMMON_FIELDS) || rd_uint(r, &m->term);
		break;
	default:
		return DL_EINVAL;
	}
	return bad || rd_raft_common(r, m) ? DL_EPROTO : 0;
}

int tp_decode_raft(const struct tp_hdr *h, struct raft_message *m, struct raft_entry *entries,
		   uint32_t max_entries)
{
	DL_ASSERT(h != NULL && m != NULL);
	DL_ASSERT(entries != NULL || max_entries == 0);
	if (h->type < TP_RAFT_MIN || h->type > TP_RAFT_MAX)
		return DL_EINVAL;
	raft_id from = m->from, to = m->to; /* the caller's to fill */
	memset(m, 0, sizeof(*m));
	m->from = from;
	m->to = to;
	m->type = h->type;
	struct rd r;
	rd_body(&r, h);
	int rc = rd_raft_body(&r, m, entries, max_entries);
	return rc != 0 ? rc : rd_end(&r);
}

int tp_decode_append(const struct tp_hdr *h, struct raft_entry *entries, uint32_t max_entries,
		     uint32_t *n)
{
	DL_ASSERT(h != NULL && n != NULL);
	DL_ASSERT(entries != NULL || max_entries == 0);
	if (h->type != TP_APPEND)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	*n = 0;
	if (rd_array_n(&r, 1) != 0)
		return DL_EPROTO;
	int rc = rd_entries(&r, false, entries, max_entries, n);
	if (rc == 0)
		rc = rd_end(&r);
	if (rc != 0)
		*n = 0;
	return rc;
}

int tp_decode_append_resp(const struct tp_hdr *h, struct tp_append_resp *out)
{
	DL_ASSERT(h != NULL && out != NULL);
	if (h->type != TP_APPEND_RESP)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	uint64_t code, n;
	memset(out, 0, sizeof(*out));
	if (rd_array_n(&r, 4) != 0 || rd_uint_max(&r, TP_CODE_MAX, &code) != 0 ||
	    rd_uint(&r, &out->first_index) != 0 || rd_uint(&r, &out->term) != 0 ||
	    rd_uint_max(&r, TP_MAX_ENTRIES, &n) != 0 || rd_end(&r) != 0)
		return DL_EPROTO;
	if (n > 0 && out->first_index > UINT64_MAX - (n - 1))
		return DL_EPROTO;
	out->code = (int)code;
	out->n = (uint32_t)n;
	return 0;
}

int tp_decode_get(const struct tp_hdr *h, struct tp_get *g)
{
	DL_ASSERT(h != NULL && g != NULL);
	if (h->type != TP_GET && h->type != TP_FETCH)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	uint64_t max_bytes, wait_ms = 0;
	uint32_t n;
	memset(g, 0, sizeof(*g));
	/* FETCH has three fields; GET a fourth, wait_ms, that older clients
	 * leave out. */
	if (rd_array(&r, &n) != 0 || (n != 3 && (n != 4 || h->type != TP_GET)))
		return DL_EPROTO;
	if (rd_uint(&r, &g->index) != 0 || rd_uint(&r, &g->to) != 0 ||
	    rd_uint_max(&r, UINT32_MAX, &max_bytes) != 0 ||
	    (n == 4 && rd_uint_max(&r, UINT32_MAX, &wait_ms) != 0) || rd_end(&r) != 0 ||
	    g->to < g->index)
		return DL_EPROTO;
	if (h->type == TP_FETCH && (g->to != g->index || max_bytes != 0))
		return DL_EPROTO;
	g->max_bytes = (uint32_t)max_bytes;
	g->has_wait = n == 4;
	g->wait_ms = (uint32_t)wait_ms;
	return 0;
}

int tp_decode_get_resp(const struct tp_hdr *h, struct tp_get_resp *out,
		       struct raft_entry *entries, uint32_t max_entries)
{
	DL_ASSERT(h != NULL && out != NULL);
	DL_ASSERT(entries != NULL || max_entries == 0);
	if (h->type != TP_GET_RESP && h->type != TP_FETCH_RESP)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	uint64_t code;
	memset(out, 0, sizeof(*out));
	if (rd_array_n(&r, 3) != 0 || rd_uint_max(&r, TP_CODE_MAX, &code) != 0 ||
	    rd_uint(&r, &out->first_index) != 0)
		return DL_EPROTO;
	uint32_t n = 0;
	int rc = rd_entries(&r, true, entries, max_entries, &n);
	if (rc != 0)
		return rc;
	if (rd_end(&r) != 0 || (n > 0 && out->first_index > UINT64_MAX - (n - 1)))
		return DL_EPROTO;
	if (h->type == TP_FETCH_RESP && (code == 0 ? n != 1 : n != 0))
		return DL_EPROTO;
	out->code = (int)code;
	out->n = n;
	return 0;
}

int tp_decode_metadata(const struct tp_hdr *h)
{
	DL_ASSERT(h != NULL);
	if (h->type != TP_METADATA)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	return rd_array_n(&r, 0) != 0 ? DL_EPROTO : rd_end(&r);
}

static int rd_member(struct rd *r, struct tp_member_meta *mm)
{
	uint64_t role;
	if (rd_array_n(r, 4) != 0 || rd_name(r, false, mm->id) != 0 || rd_addr(r, mm->addr) != 0 ||
	    rd_uint_max(r, RAFT_LEADER, &role) != 0 || rd_uint(r, &mm->match_index) != 0)
		return DL_EPROTO;
	mm->role = (uint8_t)role;
	return 0;
}

/* [group, self, leader, leader_addr, role, term, first_index, last_index,
 *  commit_index, durable_index, [member, ...], voter, stopped] */
static int rd_group(struct rd *r, struct tp_group_meta *g)
{
	uint64_t role;
	uint32_t n;
	if (rd_array_n(r, 13) != 0 || rd_name(r, false, g->group) != 0 ||
	    rd_name(r, false, g->self) != 0 || rd_name(r, true, g->leader) != 0 ||
	    rd_addr(r, g->leader_addr) != 0 || rd_uint_max(r, RAFT_LEADER, &role) != 0 ||
	    rd_uint(r, &g->term) != 0 || rd_uint(r, &g->first_index) != 0 ||
	    rd_uint(r, &g->last_index) != 0 || rd_uint(r, &g->commit_index) != 0 ||
	    rd_uint(r, &g->durable_index) != 0 || rd_array(r, &n) != 0 || n > RAFT_MAX_MEMBERS)
		return DL_EPROTO;
	g->role = (uint8_t)role;
	g->n_members = n;
	for (uint32_t i = 0; i < n; i++) {
		if (rd_member(r, &g->members[i]) != 0)
			return DL_EPROTO;
	}
	if (rd_bool(r, &g->voter) != 0 || rd_text(r, g->stopped, sizeof(g->stopped)) != 0)
		return DL_EPROTO;
	return 0;
}

int tp_decode_metadata_resp(const struct tp_hdr *h, size_t *cursor, struct tp_group_meta *g)
{
	DL_ASSERT(h != NULL && cursor != NULL && g != NULL);
	if (h->type != TP_METADATA_RESP)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	if (*cursor == 0) {
		/* First call: check the whole body once, so that the later
		 * calls only walk what is known to be sound. */
		uint32_t n;
		if (rd_array(&r, &n) != 0)
			return DL_EPROTO;
		size_t first = r.off;
		for (uint32_t i = 0; i < n; i++) {
			if (rd_group(&r, g) != 0)
				return DL_EPROTO;
		}
		if (rd_end(&r) != 0)
			return DL_EPROTO;
		*cursor = n == 0 ? r.len : first;
		DL_ASSERT(*cursor > 0);
		r.off = first;
	} else {
		if (*cursor > r.len)
			return DL_EINVAL;
		r.off = *cursor;
	}
	if (r.off == r.len)
		return DL_ENOTFOUND;
	memset(g, 0, sizeof(*g));
	if (rd_group(&r, g) != 0)
		return DL_EPROTO;
	*cursor = r.off;
	return 0;
}

int tp_decode_error(const struct tp_hdr *h, struct tp_error *e)
{
	DL_ASSERT(h != NULL && e != NULL);
	if (h->type != TP_ERROR)
		return DL_EINVAL;
	struct rd r;
	rd_body(&r, h);
	uint64_t code;
	const uint8_t *msg;
	uint32_t msg_len;
	memset(e, 0, sizeof(*e));
	if (rd_array_n(&r, 4) != 0 || rd_uint_max(&r, TP_CODE_MAX, &code) != 0 ||
	    rd_raw(&r, false, &msg, &msg_len) != 0 || msg_len >= sizeof(e->message) ||
	    memchr(msg, '\0', msg_len) != NULL || rd_name(&r, true, e->leader) != 0 ||
	    rd_addr(&r, e->leader_addr) != 0 || rd_end(&r) != 0)
		return DL_EPROTO;
	e->code = (int)code;
	memcpy(e->message, msg, msg_len);
	e->message[msg_len] = '\0';
	return 0;
}

/* ---- frame buffer ---------------------------------------------------------- */

void tp_fb_init(struct tp_fb *fb, size_t max_bytes)
{
	DL_ASSERT(fb != NULL);
	memset(fb, 0, sizeof(*fb));
	fb->max_bytes = max_bytes != 0 ? max_bytes : TP_DEFAULT_MAX_FRAME_BYTES;
}

void tp_fb_reset(struct tp_fb *fb)
{
	DL_ASSERT(fb != NULL);
	fb->len = 0;
	fb->n_msgs = 0;
}

void tp_fb_free(struct tp_fb *fb)
{
	if (fb == NULL)
		return;
	free(fb->buf);
	fb->buf = NULL;
	fb->len = fb->cap = 0;
	fb->n_msgs = 0;
}

uint8_t *tp_fb_take(struct tp_fb *fb, size_t *len)
{
	DL_ASSERT(fb != NULL && len != NULL);
	uint8_t *buf = fb->buf;
	*len = fb->len;
	if (fb->len == 0) {
		free(buf);
		buf = NULL;
	}
	fb->buf = NULL;
	fb->len = fb->cap = 0;
	fb->n_msgs = 0;
	return buf;
}

/* ---- encoder --------------------------------------------------------------- */

/* One message being added. Once err is set every write fails and the
 * message is rolled back to `start` at enc_end(). */
struct enc {
	struct tp_fb *fb;
	msgpack_packer pk;
	int err;
	size_t start;   /* fb->len before the message (before the version too) */
	size_t len_at;  /* the 4 bytes of body_len */
	size_t body_at; /* first byte of the body */
};

/* Room for n more bytes, within max_bytes. */
static bool enc_room(struct enc *e, size_t n)
{
	struct tp_fb *fb = e->fb;
	if (e->err != 0)
		return false;
	if (n > fb->max_bytes - fb->len) {
		e->err = DL_ETOOBIG;
		return false;
	}
	if (n <= fb->cap - fb->len)
		return true;
	size_t need = fb->len + n;
	size_t cap = fb->cap != 0 ? fb->cap : TP_FB_MIN_CAP;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > fb->max_bytes)
		cap = fb->max_bytes; /* >= need, checked above */
	uint8_t *p = realloc(fb->buf, cap);
	if (p == NULL) {
		e->err = DL_ENOMEM;
		return false;
	}
	fb->buf = p;
	fb->cap = cap;
	return true;
}

/* The packer's write callback: called once per marker and once per str/bin
 * payload, so the small sizes msgpack emits get inlined copies. */
static int enc_write(void *data, const char *buf, size_t n)
{
	struct enc *e = data;
	struct tp_fb *fb = e->fb;
	bool fast = e->err == 0 && n <= fb->cap - fb->len && n <= fb->max_bytes - fb->len;
	if (__builtin_expect(!fast, 0) && !enc_room(e, n))
		return -1;
	if (n == 0)
		return 0;
	uint8_t *dst = fb->buf + fb->len;
	switch (n) {
	case 1: dst[0] = (uint8_t)buf[0]; break;
	case 2: memcpy(dst, buf, 2); break;
	case 3: memcpy(dst, buf, 3); break;
	case 5: memcpy(dst, buf, 5); break;
	case 9: memcpy(dst, buf, 9); break;
	default: memcpy(dst, buf, n); break;
	}
	fb->len += n;
	return 0;
}

static void enc_uint(struct enc *e, uint64_t v)
{
	msgpack_pack_uint64(&e->pk, v);
}

static void enc_bool(struct enc *e, bool v)
{
	if (v)
		msgpack_pack_true(&e->pk);
	else
		msgpack_pack_false(&e->pk);
}

static void enc_str(struct enc *e, const char *s, size_t n)
{
	msgpack_pack_str(&e->pk, n);
	msgpack_pack_str_body(&e->pk, s, n);
}

static void enc_bin(struct enc *e, const void *p, size_t n)
{
	msgpack_pack_bin(&e->pk, n);
	msgpack_pack_bin_body(&e->pk, p, n);
}

/* A 0xce/0xdd marker and 4 bytes to patch later; returns their offset. */
static size_t enc_reserve32(struct enc *e, uint8_t marker)
{
	static const uint8_t zero[4];
	enc_write(e, (const char *)&marker, 1);
	size_t at = e->fb->len;
	enc_write(e, (const char *)zero, sizeof(zero));
	return at;
}

static void enc_patch32(struct enc *e, size_t at, uint32_t v)
{
	DL_ASSERT(at + 4 <= e->fb->len);
	uint8_t *p = e->fb->buf + at;
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* strnlen within the bound of a struct field; SIZE_MAX when unterminated. */
static size_t field_len(const char *s, size_t size)
{
	size_t n = strnlen(s, size);
	return n < size ? n : SIZE_MAX;
}

static bool name_ok(const char *s, bool may_be_empty)
{
	if (s == NULL)
		return false;
	size_t n = strnlen(s, TP_NAME_MAX + 1);
	return (n == 0 && may_be_empty) || tp_name_is_valid(s, n);
}

static bool addr_ok(const char *s, size_t size)
{
	size_t n = field_len(s, size);
	return n == 0 || (n != SIZE_MAX && addr_is_valid(s, n));
}

static int enc_begin(struct enc *e, struct tp_fb *fb, const struct tp_addr *a, uint8_t type)
{
	DL_ASSERT(fb != NULL && a != NULL);
	DL_ASSERT(fb->len <= fb->max_bytes && fb->len <= fb->cap);
	if (!name_ok(a->group, group_may_be_empty(type)) || !name_ok(a->target, true) ||
	    !name_ok(a->sender, true))
		return DL_EINVAL;
	e->fb = fb;
	e->err = 0;
	e->start = fb->len;
	msgpack_packer_init(&e->pk, e, enc_write);
	if (fb->len == 0)
		enc_uint(e, TP_VERSION);
	msgpack_pack_array(&e->pk, 6);
	enc_uint(e, type);
	enc_str(e, a->group, strlen(a->group));
	enc_str(e, a->target, strlen(a->target));
	enc_str(e, a->sender, strlen(a->sender));
	enc_uint(e, a->request_id);
	e->len_at = enc_reserve32(e, 0xce);
	e->body_at = fb->len;
	return 0;
}

/* Patches body_len, or rolls the frame back to where it was. */
static int enc_end(struct enc *e)
{
	struct tp_fb *fb = e->fb;
	if (e->err == 0 && fb->len - e->body_at > UINT32_MAX)
		e->err = DL_ETOOBIG;
	if (e->err != 0) {
		fb->len = e->start;
		return e->err;
	}
	enc_patch32(e, e->len_at, (uint32_t)(fb->len - e->body_at));
	fb->n_msgs++;
	DL_ASSERT(fb->len <= fb->max_bytes);
	return 0;
}

/* Entries are the hot path (APPEND, GET_RESP): each is written with one
 * room check instead of five packer calls, in the very bytes msgpack-c
 * packs (smallest uint, bin 8/16/32; a test compares the two). */
static size_t uint_size(uint64_t v)
{
	return v <= 0x7f ? 1 : v <= 0xff ? 2 : v <= 0xffff ? 3 : v <= 0xffffffffu ? 5 : 9;
}

static uint8_t *put_be(uint8_t *p, uint8_t marker, uint64_t v, size_t n)
{
	*p++ = marker;
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
	return p + n;
}

static uint8_t *put_uint(uint8_t *p, uint64_t v)
{
	switch (uint_size(v)) {
	case 1: *p = (uint8_t)v; return p + 1;
	case 2: return put_be(p, 0xcc, v, 1);
	case 3: return put_be(p, 0xcd, v, 2);
	case 5: return put_be(p, 0xce, v, 4);
	default: return put_be(p, 0xcf, v, 8);
	}
}

/* Encoded size of enc_entry(ent): fixarray, term, type, bin header, data. */
static size_t entry_size(const struct raft_entry *ent)
{
	size_t bin = ent->len <= 0xff ? 2 : ent->len <= 0xffff ? 3 : 5;
	return 1 + uint_size(ent->term) + uint_size(ent->type) + bin + ent->len;
}

/* [term, type, data:bin] */
static void enc_entry(struct enc *e, const struct raft_entry *ent)
{
	size_t size = entry_size(ent);
	if (!enc_room(e, size))
		return;
	uint8_t *start = e->fb->buf + e->fb->len, *p = start;
	*p++ = 0x93;
	p = put_uint(p, ent->term);
	p = put_uint(p, ent->type);
	if (ent->len <= 0xff)
		p = put_be(p, 0xc4, ent->len, 1);
	else if (ent->len <= 0xffff)
		p = put_be(p, 0xc5, ent->len, 2);
	else
		p = put_be(p, 0xc6, ent->len, 4);
	if (ent->len != 0)
		memcpy(p, ent->data, ent->len);
	DL_ASSERT((size_t)(p - start) + ent->len == size);
	e->fb->len += size;
}

/* Reads one entry for an outbound message; sets e->err on failure. */
static bool enc_read_entry(struct enc *e, tp_entry_reader read, void *ctx, uint64_t index,
			   struct raft_entry *out)
{
	memset(out, 0, sizeof(*out));
	int rc = read(ctx, index, out);
	if (rc == 0 && out->data == NULL && out->len != 0)
		rc = DL_EINVAL;
	if (rc == 0 && out->type > RAFT_ENTRY_NOOP)
		rc = DL_EINVAL;
	if (rc != 0 && e->err == 0)
		e->err = rc;
	return rc == 0;
}

static void enc_raft_append(struct enc *e, const struct raft_message *m, tp_entry_reader read,
			    void *ctx)
{
	uint32_t n = m->append.n_entries;
	msgpack_pack_array(&e->pk, 5 + RAFT_COMMON_FIELDS);
	enc_uint(e, m->term);
	enc_uint(e, m->append.prev_index);
	enc_uint(e, m->append.prev_term);
	enc_uint(e, m->append.commit);
	msgpack_pack_array(&e->pk, n);
	for (uint32_t i = 0; i < n && e->err == 0; i++) {
		struct raft_entry ent;
		if (read == NULL) {
			ent = m->append.entries[i];
			if ((ent.data == NULL && ent.len != 0) || ent.type > RAFT_ENTRY_NOOP) {
				e->err = DL_EINVAL;
				break;
			}
		} else if (!enc_read_entry(e, read, ctx, m->append.prev_index + 1 + i, &ent)) {
			break;
		}
		enc_entry(e, &ent);
	}
}

static void enc_raft_common(struct enc *e, const struct raft_message *m)
{
	enc_uint(e, m->incarnation);
	enc_bool(e, m->voter);
	enc_uint(e, m->peer_voter_inc);
}

static void enc_raft_body(struct enc *e, const struct raft_message *m, tp_entry_reader read,
			  void *ctx)
{
	msgpack_packer *pk = &e->pk;
	switch (m->type) {
	case RAFT_MSG_PREVOTE:
	case RAFT_MSG_VOTE:
		msgpack_pack_array(pk, 4 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		enc_uint(e, m->vote.last_index);
		enc_uint(e, m->vote.last_term);
		enc_bool(e, m->vote.transfer);
		break;
	case RAFT_MSG_PREVOTE_RESP:
	case RAFT_MSG_VOTE_RESP:
		msgpack_pack_array(pk, 2 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		enc_bool(e, m->vote_resp.granted);
		break;
	case RAFT_MSG_APPEND:
		enc_raft_append(e, m, read, ctx);
		break;
	case RAFT_MSG_APPEND_RESP:
		msgpack_pack_array(pk, 7 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		enc_bool(e, m->append_resp.reject);
		enc_uint(e, m->append_resp.match_index);
		enc_uint(e, m->append_resp.last_index);
		enc_uint(e, m->append_resp.rejected_index);
		enc_uint(e, m->append_resp.hint_index);
		enc_uint(e, m->append_resp.hint_term);
		break;
	case RAFT_MSG_HEARTBEAT:
		msgpack_pack_array(pk, 2 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		enc_uint(e, m->heartbeat.commit);
		break;
	case RAFT_MSG_HEARTBEAT_RESP:
		msgpack_pack_array(pk, 3 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		enc_uint(e, m->heartbeat_resp.match_index);
		enc_bool(e, m->heartbeat_resp.want_lead);
		break;
	case RAFT_MSG_TIMEOUT_NOW:
		msgpack_pack_array(pk, 1 + RAFT_COMMON_FIELDS);
		enc_uint(e, m->term);
		break;
	default:
		DL_ASSERT(false && "raft message type checked by the caller");
	}
}

int tp_fb_add_raft(struct tp_fb *fb, const struct tp_addr *a, const struct raft_message *m,
		   tp_entry_reader read, void *read_ctx)
{
	DL_ASSERT(m != NULL);
	if (m->type < TP_RAFT_MIN || m->type > TP_RAFT_MAX)
		return DL_EINVAL;
	if (m->type == RAFT_MSG_APPEND) {
		uint32_t n = m->append.n_entries;
		if (n > TP_MAX_ENTRIES)
			return DL_ETOOBIG;
		if (n > 0 && ((read == NULL && m->append.entries == NULL) ||
			      m->append.prev_index > UINT64_MAX - n))
			return DL_EINVAL;
	}
	struct enc e;
	int rc = enc_begin(&e, fb, a, m->type);
	if (rc != 0)
		return rc;
	enc_raft_body(&e, m, read, read_ctx);
	enc_raft_common(&e, m);
	return enc_end(&e);
}

int tp_fb_add_append(struct tp_fb *fb, const struct tp_addr *a, const struct raft_entry *entries,
		     uint32_t n)
{
	if (n > TP_MAX_ENTRIES)
		return DL_ETOOBIG;
	if (n > 0 && entries == NULL)
		return DL_EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		if (entries[i].data == NULL && entries[i].len != 0)
			return DL_EINVAL;
	}
	struct enc e;
	int rc = enc_begin(&e, fb, a, TP_APPEND);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, 1);
	msgpack_pack_array(&e.pk, n);
	for (uint32_t i = 0; i < n && e.err == 0; i++)
		enc_bin(&e, entries[i].data, entries[i].len);
	return enc_end(&e);
}

static bool code_ok(int code)
{
	return code >= 0 && code <= TP_CODE_MAX;
}

int tp_fb_add_append_resp(struct tp_fb *fb, const struct tp_addr *a,
			  const struct tp_append_resp *r)
{
	DL_ASSERT(r != NULL);
	if (!code_ok(r->code) || r->n > TP_MAX_ENTRIES ||
	    (r->n > 0 && r->first_index > UINT64_MAX - (r->n - 1)))
		return DL_EINVAL;
	struct enc e;
	int rc = enc_begin(&e, fb, a, TP_APPEND_RESP);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, 4);
	enc_uint(&e, (uint64_t)r->code);
	enc_uint(&e, r->first_index);
	enc_uint(&e, r->term);
	enc_uint(&e, r->n);
	return enc_end(&e);
}

static int add_get(struct tp_fb *fb, const struct tp_addr *a, uint8_t type, const struct tp_get *g)
{
	DL_ASSERT(g != NULL);
	if (g->to < g->index)
		return DL_EINVAL;
	struct enc e;
	int rc = enc_begin(&e, fb, a, type);
	if (rc != 0)
		return rc;
	bool wait = type == TP_GET && g->has_wait;
	msgpack_pack_array(&e.pk, wait ? 4 : 3);
	enc_uint(&e, g->index);
	enc_uint(&e, g->to);
	enc_uint(&e, g->max_bytes);
	if (wait)
		enc_uint(&e, g->wait_ms);
	return enc_end(&e);
}

int tp_fb_add_get(struct tp_fb *fb, const struct tp_addr *a, const struct tp_get *g)
{
	return add_get(fb, a, TP_GET, g);
}

int tp_fb_add_fetch(struct tp_fb *fb, const struct tp_addr *a, uint64_t index)
{
	struct tp_get g = {.index = index, .to = index};
	return add_get(fb, a, TP_FETCH, &g);
}

static int add_get_resp(struct tp_fb *fb, const struct tp_addr *a, uint8_t type, int code,
			uint64_t first_index, uint32_t n, uint32_t max_bytes, tp_entry_reader read,
			void *read_ctx, uint32_t *n_added);

int tp_fb_add_get_resp(struct tp_fb *fb, const struct tp_addr *a, int code, uint64_t first_index,
		       uint32_t n, uint32_t max_bytes, tp_entry_reader read, void *read_ctx,
		       uint32_t *n_added)
{
	return add_get_resp(fb, a, TP_GET_RESP, code, first_index, n, max_bytes, read, read_ctx,
			    n_added);
}

int tp_fb_add_fetch_resp(struct tp_fb *fb, const struct tp_addr *a, int code, uint64_t index,
			 tp_entry_reader read, void *read_ctx)
{
	uint32_t added;
	int rc = add_get_resp(fb, a, TP_FETCH_RESP, code, index, code == 0 ? 1 : 0, 0, read,
			      read_ctx, &added);
	return rc == 0 && code == 0 && added != 1 ? DL_EIO : rc;
}

static int add_get_resp(struct tp_fb *fb, const struct tp_addr *a, uint8_t type, int code,
			uint64_t first_index, uint32_t n, uint32_t max_bytes, tp_entry_reader read,
			void *read_ctx, uint32_t *n_added)
{
	DL_ASSERT(n_added != NULL);
	*n_added = 0;
	if (!code_ok(code) || (n > 0 && (read == NULL || first_index > UINT64_MAX - (n - 1))))
		return DL_EINVAL;
	if (n > TP_MAX_ENTRIES)
		n = TP_MAX_ENTRIES; /* the rest goes in a later reply */
	struct enc e;
	int rc = enc_begin(&e, fb, a, type);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, 3);
	enc_uint(&e, (uint64_t)code);
	enc_uint(&e, first_index);
	/* The count is known only once the entries that fit are in. */
	size_t count_at = enc_reserve32(&e, 0xdd);
	uint32_t added = 0;
	for (uint32_t i = 0; i < n && e.err == 0; i++) {
		struct raft_entry ent;
		if (!enc_read_entry(&e, read, read_ctx, first_index + i, &ent))
			break;
		size_t size = entry_size(&ent);
		size_t body = fb->len - e.body_at;
		bool over_cap = max_bytes != 0 && (body >= max_bytes || size > max_bytes - body);
		bool over_frame = size > fb->max_bytes - fb->len;
		if (added > 0 && (over_cap || over_frame))
			break; /* the first always goes; the others while they fit */
		enc_entry(&e, &ent);
		added++;
	}
	if (e.err == 0)
		enc_patch32(&e, count_at, added);
	rc = enc_end(&e);
	if (rc == 0)
		*n_added = added;
	return rc;
}

int tp_fb_add_metadata(struct tp_fb *fb, const struct tp_addr *a)
{
	struct enc e;
	int rc = enc_begin(&e, fb, a, TP_METADATA);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, 0);
	return enc_end(&e);
}

/* A reason as the encoder sends it (its first TP_REASON_MAX bytes) holds
 * no control byte, which the decoder refuses (rd_text). */
static bool reason_ok(const char *s)
{
	for (size_t i = 0; i < TP_REASON_MAX && s[i] != '\0'; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return false;
	return true;
}

static bool group_meta_ok(const struct tp_group_meta *g)
{
	if (!name_ok(g->group, false) || !name_ok(g->self, false) || !name_ok(g->leader, true) ||
	    !addr_ok(g->leader_addr, sizeof(g->leader_addr)) || g->role > RAFT_LEADER ||
	    g->n_members > RAFT_MAX_MEMBERS || !reason_ok(g->stopped))
		return false;
	for (uint32_t i = 0; i < g->n_members; i++) {
		const struct tp_member_meta *mm = &g->members[i];
		if (!name_ok(mm->id, false) || !addr_ok(mm->addr, sizeof(mm->addr)) ||
		    mm->role > RAFT_LEADER)
			return false;
	}
	return true;
}

static void enc_group_meta(struct enc *e, const struct tp_group_meta *g)
{
	msgpack_pack_array(&e->pk, 13);
	enc_str(e, g->group, strlen(g->group));
	enc_str(e, g->self, strlen(g->self));
	enc_str(e, g->leader, strlen(g->leader));
	enc_str(e, g->leader_addr, strlen(g->leader_addr));
	enc_uint(e, g->role);
	enc_uint(e, g->term);
	enc_uint(e, g->first_index);
	enc_uint(e, g->last_index);
	enc_uint(e, g->commit_index);
	enc_uint(e, g->durable_index);
	msgpack_pack_array(&e->pk, g->n_members);
	for (uint32_t i = 0; i < g->n_members; i++) {
		const struct tp_member_meta *mm = &g->members[i];
		msgpack_pack_array(&e->pk, 4);
		enc_str(e, mm->id, strlen(mm->id));
		enc_str(e, mm->addr, strlen(mm->addr));
		enc_uint(e, mm->role);
		enc_uint(e, mm->match_index);
	}
	enc_bool(e, g->voter);
	enc_str(e, g->stopped, strnlen(g->stopped, TP_REASON_MAX));
}

int tp_fb_add_metadata_resp(struct tp_fb *fb, const struct tp_addr *a,
			    const struct tp_group_meta *groups, uint32_t n)
{
	if (n > 0 && groups == NULL)
		return DL_EINVAL;
	for (uint32_t i = 0; i < n; i++) {
		if (!group_meta_ok(&groups[i]))
			return DL_EINVAL;
	}
	struct enc e;
	int rc = enc_begin(&e, fb, a, TP_METADATA_RESP);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, n);
	for (uint32_t i = 0; i < n && e.err == 0; i++)
		enc_group_meta(&e, &groups[i]);
	return enc_end(&e);
}

int tp_fb_add_error(struct tp_fb *fb, const struct tp_addr *a, const struct tp_error *err)
{
	DL_ASSERT(err != NULL);
	size_t msg_len = field_len(err->message, sizeof(err->message));
	if (!code_ok(err->code) || msg_len == SIZE_MAX || !name_ok(err->leader, true) ||
	    !addr_ok(err->leader_addr, sizeof(err->leader_addr)))
		return DL_EINVAL;
	struct enc e;
	int rc = enc_begin(&e, fb, a, TP_ERROR);
	if (rc != 0)
		return rc;
	msgpack_pack_array(&e.pk, 4);
	enc_uint(&e, (uint64_t)err->code);
	enc_str(&e, err->message, msg_len);
	enc_str(&e, err->leader, strlen(err->leader));
	enc_str(&e, err->leader_addr, strlen(err->leader_addr));
	return enc_end(&e);
}
