/*
 * mem_store.c - the memory store (DLedger's DLedgerMemoryStore): the same
 * ops table over an array of malloc'd bodies. Nothing survives close; the
 * state and checkpoint live in memory only. Used by tests and benchmarks.
 *
 * Threads: the owner thread makes every call; durability reports go
 * through the flush thread like the mmap store's (with no file to sync),
 * so callers see the same sequence of callbacks.
 *
 * Bounds: bodies total at most memory_max_bytes (DL_ENOSPC beyond).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "common/dl_mem.h"
#include "storage/sto_internal.h"

struct ment {
	uint64_t term;
	uint8_t *data;
	uint32_t len;
	uint8_t type;
};

struct mem {
	struct sto base;
	struct ment *ents; /* ents[head .. head + n) hold first .. first + n - 1 */
	size_t cap, head, n;
	uint64_t first;
	uint64_t bytes;
	uint64_t last_term;
};

static struct mem *MM(struct sto *s)
{
	return (struct mem *)s;
}
static const struct mem *CMM(const struct sto *s)
{
	return (const struct mem *)s;
}

static uint64_t last_of(const struct mem *m)
{
	return m->first + m->n - 1;
}

static const struct ment *ent(const struct mem *m, uint64_t index)
{
	STO_ASSERT(index >= m->first && index <= last_of(m));
	return &m->ents[m->head + (index - m->first)];
}

static int reserve(struct mem *m, size_t more, struct dl_errctx *err)
{
	if (m->head + m->n + more <= m->cap)
		return DL_OK;
	if (m->head > 0) { /* slide the live part to the front first */
		memmove(m->ents, m->ents + m->head, m->n * sizeof(*m->ents));
		m->head = 0;
		if (m->n + more <= m->cap)
			return DL_OK;
	}
	struct ment *e = dl_grow(m->ents, &m->cap, m->n + more, sizeof(*e));
	if (e == NULL)
		return dl_errf(err, DL_ENOMEM, "memory store of %zu entries", m->n + more);
	m->ents = e;
	return DL_OK;
}

static void drop_tail(struct mem *m, size_t keep)
{
	while (m->n > keep) {
		struct ment *e = &m->ents[m->head + --m->n];
		m->bytes -= e->len;
		free(e->data);
	}
	m->last_term = m->n > 0 ? m->ents[m->head + m->n - 1].term : m->last_term;
}

static int check_room(struct mem *m, const struct sto_entry *e, uint32_t n, struct dl_errctx *err)
{
	uint64_t bytes = 0;
	for (uint32_t i = 0; i < n; i++)
		bytes += e[i].len;
	if (m->bytes + bytes <= m->base.cfg.memory_max_bytes)
		return DL_OK;
	atomic_fetch_add_explicit(&m->base.n_enospc, 1, memory_order_relaxed);
	return dl_errf(err, DL_ENOSPC,
	               "memory store full: %" PRIu64 " + %" PRIu64
	               " bytes over memory_max_bytes %" PRIu64,
	               m->bytes, bytes, m->base.cfg.memory_max_bytes);
}

static int mem_append(struct sto *s, uint64_t first_index, const struct sto_entry *e, uint32_t n,
                      struct dl_errctx *err)
{
	struct mem *m = MM(s);
	int rc = sto_check_batch(s, last_of(m), m->last_term, first_index, e, n,
	                         s->cfg.max_entry_bytes, err);
	if (rc == DL_OK)
		rc = check_room(m, e, n, err);
	if (rc == DL_OK)
		rc = reserve(m, n, err);
	if (rc != DL_OK)
		return rc;
	size_t keep = m->n;
	uint64_t keep_term = m->last_term;
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *d = malloc(e[i].len ? e[i].len : 1);
		if (d == NULL) {
			drop_tail(m, keep);
			m->last_term = keep_term;
			return dl_errf(err, DL_ENOMEM, "entry of %u bytes", e[i].len);
		}
		if (e[i].len > 0)
			memcpy(d, e[i].data, e[i].len);
		m->ents[m->head + m->n++] = (struct ment){
		        .term = e[i].term, .data = d, .len = e[i].len, .type = e[i].type};
		m->bytes += e[i].len;
		m->last_term = e[i].term;
	}
	sto_lock(s);
	sto_publish_and_unlock(s, true, last_of(m), m->last_term);
	atomic_fetch_add_explicit(&s->n_appended, n, memory_order_relaxed);
	return DL_OK;
}

static int mem_read(struct sto *s, uint64_t index, void *buf, uint32_t cap, struct sto_view *out,
                    struct dl_errctx *err)
{
	(void)buf;
	(void)cap;
	const struct mem *m = MM(s);
	memset(out, 0, sizeof(*out));
	if (index > last_of(m))
		return dl_errf(err, DL_ERANGE, "entry %" PRIu64 " is past the last (%" PRIu64 ")",
		               index, last_of(m));
	if (index < m->first || index == 0)
		return dl_errf(err, DL_ECOMPACTED,
		               "entry %" PRIu64 " is before the first (%" PRIu64 ")", index,
		               m->first);
	const struct ment *e = ent(m, index);
	out->data = e->data;
	out->len = e->len;
	out->term = e->term;
	out->type = e->type;
	return DL_OK;
}

static uint64_t mem_first_index(const struct sto *s)
{
	return CMM(s)->first;
}

static uint64_t mem_last_index(const struct sto *s)
{
	return last_of(CMM(s));
}

static bool mem_term_at(struct sto *s, uint64_t index, uint64_t *term)
{
	const struct mem *m = MM(s);
	if (index == 0) {
		*term = 0;
		return true;
	}
	if (index < m->first || index > last_of(m))
		return false;
	*term = ent(m, index)->term;
	return true;
}

static uint32_t mem_entry_bytes(struct sto *s, uint64_t index)
{
	const struct mem *m = MM(s);
	if (index == 0 || index < m->first || index > last_of(m))
		return 0;
	return ent(m, index)->len;
}

static int mem_truncate_after(struct sto *s, uint64_t index, struct dl_errctx *err)
{
	struct mem *m = MM(s);
	if (index >= last_of(m))
		return DL_OK;
	int rc = sto_check_truncate(s, index, m->first, err);
	if (rc != DL_OK)
		return rc;
	uint64_t term = index >= m->first ? ent(m, index)->term : 0;
	drop_tail(m, (size_t)(index + 1 - m->first));
	m->last_term = term;
	sto_lock(s);
	sto_note_truncate(s, index, term);
	sto_publish_and_unlock(s, false, 0, 0);
	return DL_OK;
}

/* Drops entries below `upto`, keeping entry upto and the last one. */
static int mem_drop_prefix(struct sto *s, uint64_t upto, struct dl_errctx *err)
{
	(void)err;
	struct mem *m = MM(s);
	uint64_t stop = upto < last_of(m) ? upto : last_of(m);
	while (m->n > 1 && m->first < stop) {
		struct ment *e = &m->ents[m->head++];
		m->bytes -= e->len;
		free(e->data);
		m->n--;
		m->first++;
	}
	return DL_OK;
}

static int mem_clean(struct sto *s, uint64_t allowed, struct sto_clean_result *res,
                     struct dl_errctx *err)
{
	(void)allowed;
	(void)err;
	memset(res, 0, sizeof(*res)); /* no files, no ages, no disk */
	res->first_index = MM(s)->first;
	return DL_OK;
}

static int mem_persist_state(struct sto *s, uint64_t term, uint32_t vote, bool voter)
{
	(void)s;
	(void)term;
	(void)vote;
	(void)voter;
	return 0;
}

static void mem_write_checkpoint(struct sto *s, uint64_t commit)
{
	(void)s;
	(void)commit;
}

static int mem_sync(struct sto *s, struct dl_errctx *err)
{
	return sto_common_sync(s, last_of(MM(s)), err);
}

static void mem_get_info(const struct sto *s, struct sto_info *info)
{
	const struct mem *m = CMM(s);
	sto_common_info(s, info);
	info->first_index = m->first;
	info->last_index = last_of(m);
	info->last_term = m->last_term;
}

static void mem_free(struct mem *m)
{
	drop_tail(m, 0);
	free(m->ents);
	sto_common_fini(&m->base);
	free(m);
}

static void mem_close(struct sto *s)
{
	if (s == NULL)
		return;
	sto_detach(s);
	mem_free(MM(s));
}

static const struct sto_ops mem_ops = {
        .append = mem_append,
        .read = mem_read,
        .first_index = mem_first_index,
        .last_index = mem_last_index,
        .term_at = mem_term_at,
        .entry_bytes = mem_entry_bytes,
        .truncate_after = mem_truncate_after,
        .drop_prefix = mem_drop_prefix,
        .durable = sto_common_durable,
        .set_commit = sto_common_set_commit,
        .save_state = sto_common_save_state,
        .get_state = sto_common_get_state,
        .recovered_commit = sto_common_recovered_commit,
        .sync = mem_sync,
        .clean = mem_clean,
        .get_info = mem_get_info,
        .close = mem_close,
};

static const struct sto_impl mem_impl = {
        .persist_state = mem_persist_state,
        .write_checkpoint = mem_write_checkpoint,
};

int sto_mem_open(const struct sto_config *cfg, struct sto_flusher *fl, struct sto **out,
                 struct dl_errctx *err)
{
	*out = NULL;
	struct mem *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return dl_errf(err, DL_ENOMEM, "memory store");
	int rc = sto_common_init(&m->base, &mem_ops, &mem_impl, cfg, err);
	if (rc != DL_OK) {
		free(m->base.base_dir);
		free(m->base.dir);
		free(m);
		return rc;
	}
	m->first = 1;
	/* Nothing survives a restart: every open makes the store afresh. */
	m->base.incarnation = sto_new_incarnation();
	m->base.made_afresh = true;
	rc = sto_attach(&m->base, fl, err);
	if (rc != DL_OK) {
		mem_free(m);
		return rc;
	}
	*out = &m->base;
	return DL_OK;
}
