/*
 * dl_err.h - the one error enum of the library.
 *
 * Codes and messages come from a single X-macro list so they never drift
 * apart. 0 is success. Functions that can fail return a code and, where the
 * detail matters (file, offset, key, peer), fill a caller's `struct dl_errctx`.
 */
#ifndef DLEDGER_DL_ERR_H
#define DLEDGER_DL_ERR_H

#include <stddef.h>

#define DL_ERR_ITEMS(X)                                                        \
	X(DL_OK, "ok")                                                         \
	X(DL_EINVAL, "invalid argument")                                       \
	X(DL_ENOMEM, "out of memory")                                          \
	X(DL_EIO, "input/output error")                                        \
	X(DL_ECORRUPT, "corrupt data")                                         \
	X(DL_ENOSPC, "disk full")                                              \
	X(DL_ENOTFOUND, "not found")                                           \
	X(DL_ECOMPACTED, "entry compacted")                                    \
	X(DL_ERANGE, "index out of range")                                     \
	X(DL_EEXIST, "already exists")                                         \
	X(DL_ENOTLEADER, "not leader")                                         \
	X(DL_EBUSY, "busy")                                                    \
	X(DL_ETIMEDOUT, "timed out")                                           \
	X(DL_ECLOSED, "closed")                                                \
	X(DL_ETOOBIG, "too big")                                               \
	X(DL_EPROTO, "protocol error")                                         \
	X(DL_ECONFIG, "configuration error")                                   \
	X(DL_ENOTCOMMITTED, "entry not committed")

enum dl_err {
#define DL_ERR_ENUM(code, text) code,
	DL_ERR_ITEMS(DL_ERR_ENUM)
#undef DL_ERR_ENUM
	DL_ERR_COUNT
};

/* Text of a code; "unknown error" for codes out of range. Never NULL. */
const char *dl_strerror(int code);

/* Optional detail for an error: a message naming the file, offset, key or
 * peer involved. */
struct dl_errctx {
	char msg[256];
};

/* printf-style fill of ctx->msg (ctx may be NULL). Returns `code`. */
int dl_errf(struct dl_errctx *ctx, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* An invariant of our own code, checked in every build: a failure is a bug
 * here, never bad input (bad input is always an error return), and going on
 * could persist or send garbage. Prints file, line and expression, then
 * aborts. (raft/ depends on nothing and has its own; storage/ has one with
 * a hook for its crash tests.) */
_Noreturn void dl_assert_fail(const char *file, int line, const char *expr);
#define DL_ASSERT(x) ((x) ? (void)0 : dl_assert_fail(__FILE__, __LINE__, #x))

#endif
