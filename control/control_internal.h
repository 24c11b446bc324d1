/*
 * control_internal.h - shared by control.c and state.c only.
 */
#ifndef DLEDGER_CONTROL_INTERNAL_H
#define DLEDGER_CONTROL_INTERNAL_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

#include "control/control.h"

/* Stays on in release builds: a broken record list would persist wrongly. */
#define CTL_ASSERT(x)                                                                     \
	do {                                                                              \
		if (!(x)) {                                                               \
			fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__, __LINE__, #x); \
			abort();                                                          \
		}                                                                         \
	} while (0)

/* One group of groups.yaml: its keys as given ("group" and "id" among them).
 * Owns every string. */
struct ctl_rec {
	uint32_t n_kv;
	char *key[CTL_MAX_KV];
	char *val[CTL_MAX_KV];
};

struct ctl_state {
	struct ctl_rec *removed; /* dropped from the config file's groups */
	size_t n_removed;
	struct ctl_rec *added; /* then added; at most one per group */
	size_t n_added;
};

void ctl_rec_free(struct ctl_rec *r);
const char *ctl_rec_get(const struct ctl_rec *r, const char *key);
/* Copies key[0..klen) and val[0..vlen). DL_ETOOBIG past CTL_MAX_KV. */
int ctl_rec_add(struct ctl_rec *r, const char *key, size_t klen, const char *val, size_t vlen);

/* A missing file is an empty state. DL_ECONFIG names the file and line. */
int ctl_state_load(const char *path, struct ctl_state *st, struct dl_errctx *err);
/* Atomically: temp file, fsync, rename, fsync of the directory. */
int ctl_state_save(const char *path, const struct ctl_state *st, struct dl_errctx *err);
void ctl_state_free(struct ctl_state *st);

/* Takes ownership of `*r` on success (replaces an earlier record of the
 * group). */
int ctl_state_note_added(struct ctl_state *st, struct ctl_rec *r);
/* Drops the group's added record and records the removal. */
int ctl_state_note_removed(struct ctl_state *st, const char *group, const char *id);

#endif
