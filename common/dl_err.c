#include "common/dl_err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const dl_err_text[] = {
#define DL_ERR_TEXT(code, text) [code] = text,
	DL_ERR_ITEMS(DL_ERR_TEXT)
#undef DL_ERR_TEXT
};

const char *dl_strerror(int code)
{
	if (code < 0 || code >= DL_ERR_COUNT)
		return "unknown error";
	return dl_err_text[code];
}

int dl_errf(struct dl_errctx *ctx, int code, const char *fmt, ...)
{
	if (ctx == NULL)
		return code;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx->msg, sizeof(ctx->msg), fmt, ap);
	va_end(ap);
	return code;
}

void dl_assert_fail(const char *file, int line, const char *expr)
{
	fprintf(stderr, "%s:%d: assertion failed: %s\n", file, line, expr);
	abort();
}
