/*
 * dl_log.h - one line per event, to stderr by default:
 *   2026-11-25T17:01:02.123Z INFO  g0/n0 role leader term 3
 * Thread-safe (one write(2) per line). The sink can be replaced (tests).
 */
#ifndef DLEDGER_DL_LOG_H
#define DLEDGER_DL_LOG_H

enum dl_log_level { DL_LOG_DEBUG = 0, DL_LOG_INFO, DL_LOG_WARN, DL_LOG_ERROR };

/* Lines below `level` are dropped. Default DL_LOG_INFO. */
void dl_log_set_level(enum dl_log_level level);
/* Parses "debug", "info", "warn", "error"; -1 if none. */
int dl_log_level_parse(const char *s);

/* `group`/`id` may be NULL for node-wide events. */
void dl_log(enum dl_log_level level, const char *group, const char *id, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
