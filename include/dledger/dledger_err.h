/*
 * dledger_err.h - the one error enum of libdledger (installed; included by
 * dledger.h). The library's own code uses the same list (common/dl_err.h),
 * so a code means the same thing in the embedding API, in the C client and
 * on the wire. 0 is success; dl_strerror() gives the text of a code.
 */
#ifndef DLEDGER_DLEDGER_ERR_H
#define DLEDGER_DLEDGER_ERR_H

#ifndef DL_API
#define DL_API __attribute__((visibility("default")))
#endif

/* Codes and texts come from this single X-macro list so they never drift
 * apart. New codes go at the end: the numbers travel on the wire. */
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

#ifdef __cplusplus
extern "C" {
#endif

/* Text of a code; "unknown error" for codes out of range. Never NULL; the
 * string is static. */
DL_API const char *dl_strerror(int code);

#ifdef __cplusplus
}
#endif

#endif
