#ifndef MERIDIAN_CSPAWN_H
#define MERIDIAN_CSPAWN_H

#include <sys/types.h>

/// Starts `path` with `argv` and `envp` (NULL-terminated) in a child process and returns its pid,
/// or -errno when the child could not be started (fork failed, or exec failed in the child: the
/// child reports its errno through a close-on-exec pipe before it exits).
///
/// In the child, before exec, only async-signal-safe calls are made:
/// - every signal back to its default action and an empty signal mask (a parent's blocked SIGTERM
///   must not make the child deaf to it);
/// - with `die_with_parent`, PR_SET_PDEATHSIG=SIGKILL (Linux): the child is killed when the thread
///   that forked it ends, and the caller forks from a thread that lives as long as its process; a
///   parent that died before this call is noticed and the child exits at once;
/// - with `new_process_group`, its own process group;
/// - `stdin_fd`, `stdout_fd`, `stderr_fd` (open in the parent) become 0, 1 and 2; every other
///   descriptor is closed, so no socket or file of the parent lives on in the child;
/// - `cwd` (may be NULL) becomes its working directory.
pid_t meridian_spawn(const char *path, char *const argv[], char *const envp[],
                     int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd,
                     int new_process_group, int die_with_parent);

#endif
