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

/* The codes (DL_ERR_ITEMS, enum dl_err) and dl_strerror() are the installed
 * header's: one list for the library, its embedding API and the wire. */
#include "dledger/dledger_err.h"

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
