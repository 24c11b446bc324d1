/*
 * base.c - the actor's basics, used by every other file: member names, rate-limited
 * log lines, reads of the store and the damage they find, the decode buffer.
 * See rt_internal.h for who owns what.
 */
#include "runtime/rt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_log.h"
#include "common/dl_mem.h"

raft_id rt_member_rid(const struct rt_actor *a, const char *id)
{
	for (uint32_t i = 0; i < a->cfg.n_peers; i++)
		if (strcmp(a->members[i].p.id, id) == 0)
			return i + 1;
	return 0;
}

const char *rt_rid_name(const struct rt_actor *a, raft_id id)
{
	return id >= 1 && id <= a->cfg.n_peers ? a->members[id - 1].p.id : "";
}

bool rt_log_term_at(void *ctx, uint64_t index, uint64_t *term)
{
	struct rt_actor *a = ctx;
	return sto_term_at(a->store, index, term);
}

uint32_t rt_log_entry_bytes(void *ctx, uint64_t index)
{
	struct rt_actor *a = ctx;
	return sto_entry_bytes(a->store, index);
}

/* ---- damaged entries ----------------------------------------------------------------
 * A store read that finds damage (DL_ECORRUPT: a bad checksum, a header that
 * disagrees with its index record) fails with a message naming the file,
 * the byte offset and the index. The actor logs it at ERROR, rate-limited
 * (a follower's retries would repeat it many times a second), records the
 * lowest damaged index in its status (damaged_index), and answers a client
 * `get` that meets it with the message. A leader that cannot send a damaged
 * entry hands leadership to a follower that holds it (rt_maybe_hand_off).
 */

/* Whether to write a line about `key` now: a new subject at most once a
 * second, the same one again after 30 s; a line not written is counted and
 * the next one written tells how many were skipped. */
bool rt_log_due(struct rt_ratelog *l, uint64_t key, uint64_t now_ns)
{
	bool fresh = !l->used || key != l->key;
	uint64_t since = now_ns - l->last_ns;
	if (l->used && since < (fresh ? RT_LOG_GAP_NS : RT_LOG_REPEAT_NS)) {
		l->skipped++;
		return false;
	}
	l->used = true;
	l->key = key;
	l->last_ns = now_ns;
	return true;
}

/* " (N more ... since the last such line)" when lines were skipped, else "". */
const char *rt_log_skipped(struct rt_ratelog *l, const char *what, char *buf, size_t cap)
{
	buf[0] = '\0';
	if (l->skipped > 0)
		snprintf(buf, cap, " (%llu more %s since the last such line)",
			 (unsigned long long)l->skipped, what);
	l->skipped = 0;
	return buf;
}

static void note_damage(struct rt_actor *a, uint64_t index)
{
	DL_ASSERT(index > 0);
	a->dirty = true;
	if (a->damaged_index == 0 || index < a->damaged_index)
		a->damaged_index = index;
	if (!rt_log_due(&a->damage_log, index, dl_now_ns()))
		return;
	char more[80];
	dl_log(DL_LOG_ERROR, a->cfg.group, a->cfg.self_id, "damaged entry %llu: %s%s",
	       (unsigned long long)index, a->read_err.msg,
	       rt_log_skipped(&a->damage_log, "damaged reads", more, sizeof(more)));
}

/* Reads an entry: a view into the map, or a copy into the actor's scratch
 * buffer, valid until the next read (the codec uses one entry at a time).
 * On failure a->read_err says why (file, offset, index). */
int rt_read_view(struct rt_actor *a, uint64_t index, struct sto_view *v)
{
	int rc = sto_read(a->store, index, a->scratch, a->scratch_cap, v, &a->read_err);
	if (rc == DL_ETOOBIG) {
		uint8_t *buf = realloc(a->scratch, v->len);
		if (buf == NULL) {
			rc = dl_errf(&a->read_err, DL_ENOMEM, "entry %llu: a buffer of %u bytes",
				     (unsigned long long)index, v->len);
		} else {
			a->scratch = buf;
			a->scratch_cap = v->len;
			rc = sto_read(a->store, index, a->scratch, a->scratch_cap, v, &a->read_err);
		}
	}
	if (rc != 0) {
		a->read_err_index = index;
		if (rc == DL_ECORRUPT)
			note_damage(a, index);
	}
	return rc;
}

int rt_read_entry(void *ctx, uint64_t index, struct raft_entry *out)
{
	struct rt_actor *a = ctx;
	struct sto_view v;
	int rc = rt_read_view(a, index, &v);
	if (rc != 0)
		return rc;
	out->term = v.term;
	out->data = v.data;
	out->len = v.len;
	out->type = v.type;
	return 0;
}

/* What status, metadata and metrics show for a stopped member. */
const char *rt_fail_reason(int rc)
{
	switch (rc) {
	case DL_ENOSPC: return "disk full";
	case DL_ECORRUPT: return "damaged data";
	case DL_EIO: return "I/O error";
	default: return dl_strerror(rc);
	}
}

bool rt_entries_reserve(struct raft_entry **arr, size_t *cap, size_t n)
{
	if (n <= *cap)
		return true;
	struct raft_entry *e = dl_grow(*arr, cap, n, sizeof(*e));
	if (e == NULL)
		return false;
	*arr = e;
	return true;
}

/* The address of an answer to the request `h`. */
struct tp_addr rt_reply_addr(const struct rt_actor *a, const struct tp_hdr *h)
{
	return (struct tp_addr){.group = a->cfg.group, .target = "", .sender = a->cfg.self_id,
				.request_id = h->request_id};
}
