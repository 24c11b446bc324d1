/*
 * tt_proc.h - node processes for the multi-process tests: start a
 * dledger-actors on a config with its output in a log file, and stop one
 * with a signal and a bounded wait.
 */
#ifndef DLEDGER_TEST_TT_PROC_H
#define DLEDGER_TEST_TT_PROC_H

#include <fcntl.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Runs `bin --config conf`, stdout and stderr appended to `logf`. Returns
 * the child's pid, or -1 when fork failed. */
static inline pid_t tt_spawn_node(const char *bin, const char *conf, const char *logf)
{
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);
		if (fd >= 0) {
			dup2(fd, 1);
			dup2(fd, 2);
		}
		execl(bin, bin, "--config", conf, (char *)NULL);
		_exit(127);
	}
	return pid;
}

/* Sends `sig` to `pid` and waits for it to exit: at most 10 s, then
 * SIGKILL. Returns its wait status (-1 if it could not be had). */
static inline int tt_stop_pid(pid_t pid, int sig)
{
	kill(pid, sig);
	int status = -1;
	for (int i = 0; i < 1000; i++) {
		if (waitpid(pid, &status, WNOHANG) == pid)
			return status;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	if (waitpid(pid, &status, 0) != pid)
		status = -1;
	return status;
}

#endif
