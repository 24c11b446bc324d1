#include "common/dl_log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int log_level = DL_LOG_INFO;

void dl_log_set_level(enum dl_log_level level)
{
	atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int dl_log_level_parse(const char *s)
{
	static const char *const names[] = {"debug", "info", "warn", "error"};
	for (int i = 0; i < 4; i++)
		if (strcmp(s, names[i]) == 0)
			return i;
	return -1;
}

void dl_log(enum dl_log_level level, const char *group, const char *id, const char *fmt, ...)
{
	if ((int)level < atomic_load_explicit(&log_level, memory_order_relaxed))
		return;
	static const char *const names[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
	char line[1024];
	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	int w = snprintf(line + n, sizeof(line) - n, ".%03ldZ %s ", (long)(tv.tv_usec / 1000),
			 names[level & 3]);
	n += w > 0 ? (size_t)w : 0;
	if (group != NULL && n < sizeof(line)) {
		w = snprintf(line + n, sizeof(line) - n, "%s/%s ", group, id ? id : "-");
		n += w > 0 ? (size_t)w : 0;
	}
	if (n < sizeof(line)) {
		va_list ap;
		va_start(ap, fmt);
		w = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
		va_end(ap);
		n += w > 0 ? (size_t)w : 0;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t rc = write(STDERR_FILENO, line, n);
	(void)rc;
}
