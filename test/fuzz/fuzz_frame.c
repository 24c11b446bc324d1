/*
 * fuzz_frame.c - libFuzzer target: the wire decoder (transport/codec.h).
 *
 * Feeds: the input as one frame, as nng hands it to the router: its version
 * (tp_frame_begin), every header (tp_frame_next), and each body to the
 * decoder of its type (tp_decode_raft, _append, _append_resp, _get for GET
 * and FETCH, _get_resp for GET_RESP and FETCH_RESP, _metadata,
 * _metadata_resp with its cursor loop, _error).
 *
 * Asserts: every return is 0 or a documented error; the offset only moves
 * forward and stays in the frame; a body and every entry view lie inside
 * the input (libFuzzer's buffer is the input's exact size, so ASan sees any
 * read past it); names are valid; counts stay within their bounds (entries,
 * members, messages per frame, groups per reply). And a round trip: what
 * the decoder accepts, the encoder of the same type must take (with the
 * same header) and turn into a message that decodes to the same values.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "common/dl_err.h"
#include "test/fuzz/fuzz.h"
#include "transport/codec.h"

#define MAX_ENTRIES 256
#define MAX_GROUPS  16 /* groups of a METADATA_RESP that are encoded again */

static struct raft_entry entries[MAX_ENTRIES], entries2[MAX_ENTRIES];
static struct tp_group_meta groups[MAX_GROUPS], group2;

static bool view_inside(const uint8_t *buf, size_t len, const void *p, size_t n)
{
	if (n == 0)
		return true;
	const uint8_t *q = p;
	return q >= buf && q <= buf + len && (size_t)(buf + len - q) >= n;
}

static bool cstr_name_ok(const char *s, bool may_be_empty)
{
	size_t n = strnlen(s, TP_NAME_MAX + 1);
	return (n == 0 && may_be_empty) || tp_name_is_valid(s, n);
}

static bool type_known(uint8_t t)
{
	return (t >= TP_RAFT_MIN && t <= TP_RAFT_MAX) || t == TP_FETCH || t == TP_FETCH_RESP ||
	       (t >= TP_APPEND && t <= TP_METADATA_RESP) || t == TP_ERROR;
}

/* ---- the round trip --------------------------------------------------------------- */

/* The only message of a frame just built; the frame's bytes stay in fb. */
static void reread(const struct tp_fb *fb, const struct tp_hdr *h, struct tp_hdr *h2)
{
	size_t off;
	FZ_CHECK(fb->n_msgs == 1);
	FZ_CHECK(tp_frame_begin(fb->buf, fb->len, &off) == 0);
	FZ_CHECK(tp_frame_next(fb->buf, fb->len, &off, h2) == 0);
	FZ_CHECK(off == fb->len);
	FZ_CHECK(h2->type == h->type && h2->request_id == h->request_id);
	FZ_CHECK(strcmp(h2->group, h->group) == 0 && strcmp(h2->target, h->target) == 0 &&
	         strcmp(h2->sender, h->sender) == 0);
}

static bool entries_equal(const struct raft_entry *a, const struct raft_entry *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (a[i].term != b[i].term || a[i].type != b[i].type || a[i].len != b[i].len ||
		    (a[i].len != 0 && memcmp(a[i].data, b[i].data, a[i].len) != 0))
			return false;
	return true;
}

/* tp_entry_reader over `entries`, index first_index + i at entries[i]. */
struct ents {
	uint64_t first_index;
	uint32_t n;
};

static int read_ents(void *ctx, uint64_t index, struct raft_entry *out)
{
	const struct ents *e = ctx;
	FZ_CHECK(index >= e->first_index && index - e->first_index < e->n);
	*out = entries[index - e->first_index];
	return 0;
}

static void raft_again(const struct tp_hdr *h, const struct tp_addr *a,
                       const struct raft_message *m, struct tp_fb *fb)
{
	FZ_CHECK(tp_fb_add_raft(fb, a, m, NULL, NULL) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	struct raft_message m2 = {.from = m->from, .to = m->to}, x = *m;
	FZ_CHECK(tp_decode_raft(&h2, &m2, entries2, MAX_ENTRIES) == 0);
	if (m->type == RAFT_MSG_APPEND) {
		FZ_CHECK(m2.append.n_entries == m->append.n_entries);
		FZ_CHECK(entries_equal(entries, entries2, m->append.n_entries));
		x.append.entries = m2.append.entries;
	}
	FZ_CHECK(memcmp(&x, &m2, sizeof(x)) == 0);
}

/* ---- one body ------------------------------------------------------------------ */

static int raft_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb, uint32_t *n)
{
	struct raft_message m = {.from = 1, .to = 2};
	int rc = tp_decode_raft(h, &m, entries, MAX_ENTRIES);
	if (rc != 0)
		return rc;
	FZ_CHECK(m.type == h->type && m.from == 1 && m.to == 2);
	if (m.type == RAFT_MSG_APPEND) {
		*n = m.append.n_entries;
		FZ_CHECK(*n <= MAX_ENTRIES);
		FZ_CHECK(*n == 0 || m.append.entries == entries);
		FZ_CHECK(m.append.prev_index <= UINT64_MAX - *n);
	}
	raft_again(h, a, &m, fb);
	return 0;
}

static int append_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb,
                       uint32_t *n)
{
	int rc = tp_decode_append(h, entries, MAX_ENTRIES, n);
	if (rc != 0) {
		FZ_CHECK(*n == 0);
		return rc;
	}
	FZ_CHECK(*n <= MAX_ENTRIES);
	FZ_CHECK(tp_fb_add_append(fb, a, entries, *n) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	uint32_t n2;
	FZ_CHECK(tp_decode_append(&h2, entries2, MAX_ENTRIES, &n2) == 0 && n2 == *n);
	for (uint32_t i = 0; i < *n; i++)
		FZ_CHECK(entries2[i].len == entries[i].len &&
		         (entries[i].len == 0 ||
		          memcmp(entries2[i].data, entries[i].data, entries[i].len) == 0));
	return 0;
}

static int append_resp_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb)
{
	struct tp_append_resp r, r2;
	int rc = tp_decode_append_resp(h, &r);
	if (rc != 0)
		return rc;
	FZ_CHECK(r.code >= 0 && r.code <= 255 && r.n <= TP_MAX_ENTRIES);
	FZ_CHECK(r.n == 0 || r.first_index <= UINT64_MAX - (r.n - 1));
	FZ_CHECK(tp_fb_add_append_resp(fb, a, &r) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	FZ_CHECK(tp_decode_append_resp(&h2, &r2) == 0 && memcmp(&r, &r2, sizeof(r)) == 0);
	return 0;
}

static int get_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb)
{
	struct tp_get g, g2;
	int rc = tp_decode_get(h, &g);
	if (rc != 0)
		return rc;
	FZ_CHECK(g.to >= g.index);
	if (h->type == TP_FETCH) {
		FZ_CHECK(g.to == g.index && g.max_bytes == 0);
		FZ_CHECK(tp_fb_add_fetch(fb, a, g.index) == 0);
	} else {
		FZ_CHECK(tp_fb_add_get(fb, a, &g) == 0);
	}
	struct tp_hdr h2;
	reread(fb, h, &h2);
	FZ_CHECK(tp_decode_get(&h2, &g2) == 0 && memcmp(&g, &g2, sizeof(g)) == 0);
	return 0;
}

static int get_resp_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb,
                         uint32_t *n)
{
	struct tp_get_resp r, r2;
	int rc = tp_decode_get_resp(h, &r, entries, MAX_ENTRIES);
	if (rc != 0)
		return rc;
	*n = r.n;
	FZ_CHECK(r.code >= 0 && r.code <= 255 && r.n <= MAX_ENTRIES);
	FZ_CHECK(r.n == 0 || r.first_index <= UINT64_MAX - (r.n - 1));
	struct ents ctx = {r.first_index, r.n};
	if (h->type == TP_FETCH_RESP) {
		FZ_CHECK(r.n == (r.code == 0 ? 1u : 0u));
		FZ_CHECK(tp_fb_add_fetch_resp(fb, a, r.code, r.first_index, read_ents, &ctx) == 0);
	} else {
		uint32_t added;
		FZ_CHECK(tp_fb_add_get_resp(fb, a, r.code, r.first_index, r.n, 0, read_ents, &ctx,
		                            &added) == 0);
		FZ_CHECK(added == r.n);
	}
	struct tp_hdr h2;
	reread(fb, h, &h2);
	FZ_CHECK(tp_decode_get_resp(&h2, &r2, entries2, MAX_ENTRIES) == 0);
	FZ_CHECK(memcmp(&r, &r2, sizeof(r)) == 0 && entries_equal(entries, entries2, r.n));
	return 0;
}

static int metadata_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb)
{
	int rc = tp_decode_metadata(h);
	if (rc != 0)
		return rc;
	FZ_CHECK(tp_fb_add_metadata(fb, a) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	FZ_CHECK(tp_decode_metadata(&h2) == 0);
	return 0;
}

static bool group_sound(const struct tp_group_meta *g)
{
	if (!cstr_name_ok(g->group, false) || !cstr_name_ok(g->self, false) ||
	    !cstr_name_ok(g->leader, true) || g->n_members > RAFT_MAX_MEMBERS ||
	    g->role > RAFT_LEADER || strnlen(g->stopped, sizeof(g->stopped)) >= sizeof(g->stopped))
		return false;
	for (uint32_t i = 0; i < g->n_members; i++)
		if (!cstr_name_ok(g->members[i].id, false) || g->members[i].role > RAFT_LEADER)
			return false;
	return true;
}

static int metadata_resp_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb)
{
	size_t cursor = 0, last = 0;
	uint32_t n = 0;
	int rc;
	while ((rc = tp_decode_metadata_resp(h, &cursor, &group2)) == 0) {
		FZ_CHECK(group_sound(&group2));
		FZ_CHECK(cursor > last && cursor <= h->body_len);
		last = cursor;
		FZ_CHECK(++n <= h->body_len); /* a group takes bytes */
		if (n <= MAX_GROUPS)
			groups[n - 1] = group2;
	}
	if (rc != DL_ENOTFOUND)
		return rc;
	if (n > MAX_GROUPS)
		return 0;
	FZ_CHECK(tp_fb_add_metadata_resp(fb, a, groups, n) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	cursor = 0;
	for (uint32_t i = 0; i < n; i++) {
		FZ_CHECK(tp_decode_metadata_resp(&h2, &cursor, &group2) == 0);
		FZ_CHECK(memcmp(&group2, &groups[i], sizeof(group2)) == 0);
	}
	FZ_CHECK(tp_decode_metadata_resp(&h2, &cursor, &group2) == DL_ENOTFOUND);
	return 0;
}

static int error_body(const struct tp_hdr *h, const struct tp_addr *a, struct tp_fb *fb)
{
	struct tp_error e, e2;
	int rc = tp_decode_error(h, &e);
	if (rc != 0)
		return rc;
	FZ_CHECK(e.code >= 0 && e.code <= 255);
	FZ_CHECK(strnlen(e.message, sizeof(e.message)) < sizeof(e.message));
	FZ_CHECK(cstr_name_ok(e.leader, true));
	FZ_CHECK(tp_fb_add_error(fb, a, &e) == 0);
	struct tp_hdr h2;
	reread(fb, h, &h2);
	FZ_CHECK(tp_decode_error(&h2, &e2) == 0 && memcmp(&e, &e2, sizeof(e)) == 0);
	return 0;
}

static int body(const uint8_t *buf, size_t len, const struct tp_hdr *h)
{
	struct tp_addr a = {h->group, h->target, h->sender, h->request_id};
	struct tp_fb fb;
	tp_fb_init(&fb, 0);
	uint32_t n = 0;
	int rc = DL_EINVAL;
	if (h->type >= TP_RAFT_MIN && h->type <= TP_RAFT_MAX)
		rc = raft_body(h, &a, &fb, &n);
	else if (h->type == TP_APPEND)
		rc = append_body(h, &a, &fb, &n);
	else if (h->type == TP_APPEND_RESP)
		rc = append_resp_body(h, &a, &fb);
	else if (h->type == TP_GET || h->type == TP_FETCH)
		rc = get_body(h, &a, &fb);
	else if (h->type == TP_GET_RESP || h->type == TP_FETCH_RESP)
		rc = get_resp_body(h, &a, &fb, &n);
	else if (h->type == TP_METADATA)
		rc = metadata_body(h, &a, &fb);
	else if (h->type == TP_METADATA_RESP)
		rc = metadata_resp_body(h, &a, &fb);
	else if (h->type == TP_ERROR)
		rc = error_body(h, &a, &fb);
	tp_fb_free(&fb);
	FZ_CHECK(rc == 0 || rc == DL_EPROTO || rc == DL_ETOOBIG);
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		FZ_CHECK(view_inside(h->body, h->body_len, entries[i].data, entries[i].len));
		FZ_CHECK(view_inside(buf, len, entries[i].data, entries[i].len));
		FZ_CHECK(entries[i].type <= RAFT_ENTRY_NOOP);
	}
	return rc;
}

/* ---- the frame ---------------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t off = 0;
	int rc = tp_frame_begin(data, size, &off);
	if (rc != 0) {
		FZ_CHECK(rc == DL_EPROTO || rc == DL_EINVAL);
		return 0;
	}
	FZ_CHECK(off > 0 && off <= size);
	for (size_t msgs = 0;; msgs++) {
		FZ_CHECK(msgs <= size); /* a message takes bytes */
		struct tp_hdr h;
		size_t before = off;
		rc = tp_frame_next(data, size, &off, &h);
		if (rc == DL_ENOTFOUND) {
			FZ_CHECK(off == size);
			break;
		}
		FZ_CHECK(off <= size);
		if (rc != 0) {
			FZ_CHECK(rc == DL_EPROTO);
			if (off == before)
				break; /* the rest is unreadable */
			/* an unknown type whose header is sound: skipped whole */
			FZ_CHECK(off > before && !type_known(h.type));
			FZ_CHECK(h.body + h.body_len == data + off);
			continue;
		}
		FZ_CHECK(off > before && type_known(h.type));
		FZ_CHECK(view_inside(data, size, h.body, h.body_len));
		FZ_CHECK(h.body + h.body_len == data + off);
		FZ_CHECK(cstr_name_ok(h.group, true) && cstr_name_ok(h.target, true) &&
		         cstr_name_ok(h.sender, true));
		FZ_CHECK(h.group[0] != '\0' || h.type == TP_METADATA ||
		         h.type == TP_METADATA_RESP || h.type == TP_ERROR);
		(void)body(data, size, &h);
	}
	return 0;
}
