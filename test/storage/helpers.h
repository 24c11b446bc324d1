/*
 * helpers.h - what the storage suites share: temporary directories, store
 * configs with small segments, deterministic entry bodies, and checks that
 * a store holds exactly the expected log.
 */
#ifndef DLEDGER_TEST_STORAGE_HELPERS_H
#define DLEDGER_TEST_STORAGE_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/storage.h"

/* A fresh directory under /tmp (mkdtemp); th_rmdir() removes it. */
void th_mkdtemp(char *out, size_t n);
void th_rmdir(const char *dir);
void th_copy_tree(const char *from, const char *to);
/* A suite's .init/.fini: th_dir is a fresh directory for each test,
 * removed afterwards even when the test fails. */
extern char th_dir[256];
void th_setup(void);
void th_teardown(void);

/* Defaults for tests: small segments, no flusher callbacks. */
void th_config(struct sto_config *cfg, enum sto_type type, const char *base_dir);
struct sto *th_open(const struct sto_config *cfg, struct sto_flusher *fl);
/* Opens, expecting failure with `code`; copies the message into msg. */
int th_open_fails(const struct sto_config *cfg, char *msg, size_t n);

/* Body of entry `index` (deterministic; length len_of(index, max)). */
uint32_t th_len(uint64_t index, uint32_t max_len);
void th_body(uint64_t index, uint64_t term, uint8_t *out, uint32_t len);

/* Appends entries first..last, term given by term_of[index] (or `term` when
 * term_of is NULL), bodies from th_body with lengths th_len(i, max_len). */
void th_append_range(struct sto *s, uint64_t first, uint64_t last, uint64_t term, uint32_t max_len);
/* Checks entries first..last read back with term `term` and th_body. */
void th_check_range(struct sto *s, uint64_t first, uint64_t last, uint64_t term, uint32_t max_len);

/* Path of the data segment starting at log offset `base`. */
void th_seg_path(const char *base_dir, uint64_t base, char *out, size_t n);
void th_idx_path(const char *base_dir, uint64_t base, char *out, size_t n);
uint64_t th_file_size(const char *path);
void th_flip_bit(const char *path, uint64_t off, int bit);

#define TH_GROUP "g0"
#define TH_SELF  "n1"

#endif
