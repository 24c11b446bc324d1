/*
 * dledger_log.h - libdledger's log line (installed; included by dledger.h).
 * One line per event, written to stderr with one write(2), so lines of
 * many threads never mix:
 *   2026-11-25T17:01:02.123Z INFO  g0/n0 role leader term 3
 * The library logs with it; an application may log its own lines the same
 * way. Thread-safe.
 */
#ifndef DLEDGER_DLEDGER_LOG_H
#define DLEDGER_DLEDGER_LOG_H

#ifndef DL_API
#define DL_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum dl_log_level { DL_LOG_DEBUG = 0, DL_LOG_INFO, DL_LOG_WARN, DL_LOG_ERROR };

/* Lines below `level` are dropped, process-wide. Default DL_LOG_INFO; a
 * node opened from a configuration sets its logLevel. */
DL_API void dl_log_set_level(enum dl_log_level level);

/* `group`/`id` may be NULL for node-wide events. A line is cut at 1 KiB. */
DL_API void dl_log(enum dl_log_level level, const char *group, const char *id, const char *fmt,
		   ...) __attribute__((format(printf, 4, 5)));

#ifdef __cplusplus
}
#endif

#endif
