#define _GNU_SOURCE
#include "cspawn.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

static void close_range_fallback(unsigned lowest, unsigned highest) {
#if defined(__linux__) && defined(SYS_close_range)
    if (syscall(SYS_close_range, lowest, highest, 0) == 0) return;
#endif
    struct rlimit rl;
    unsigned max = 65536;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1048576) max = (unsigned)rl.rlim_cur;
    for (unsigned fd = lowest; fd <= highest && fd < max; fd++) close((int)fd);
}

/// Closes every descriptor from `lowest` up, except `keep`.
static void close_all_from(int lowest, int keep) {
    if (keep > lowest) close_range_fallback((unsigned)lowest, (unsigned)keep - 1);
    close_range_fallback((unsigned)(keep >= lowest ? keep + 1 : lowest), ~0U);
}

static void fail(int report, int err) {
    ssize_t ignored = write(report, &err, sizeof err);
    (void)ignored;
    _exit(127);
}

pid_t meridian_spawn(const char *path, char *const argv[], char *const envp[],
                     int stdin_fd, int stdout_fd, int stderr_fd, const char *cwd,
                     int new_process_group, int die_with_parent) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) return -errno;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int err = errno;
        close(report[0]);
        close(report[1]);
        return -err;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        for (int s = 1; s < NSIG; s++) {
            if (s == SIGKILL || s == SIGSTOP) continue;
            if (sigaction(s, &dfl, NULL) != 0) {
#if defined(__linux__) && defined(SYS_rt_sigaction)
                // glibc keeps its internal signals (32, 33) from sigaction; an ignored one would
                // stay ignored across exec. The kernel's own call resets it: an all-zero action is
                // SIG_DFL with no flags and an empty mask.
                unsigned long kernel_action[4] = {0, 0, 0, 0};
                syscall(SYS_rt_sigaction, s, kernel_action, NULL, sizeof(unsigned long));
#endif
            }
        }
        sigprocmask(SIG_SETMASK, &none, NULL);
#ifdef __linux__
        if (die_with_parent) {
            if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(report[1], errno);
            if (getppid() != parent) _exit(127);
        }
#else
        (void)die_with_parent;
        (void)parent;
#endif
        if (new_process_group && setpgid(0, 0) != 0) fail(report[1], errno);
        // The report pipe is above the standard descriptors (the parent holds 0–2 open), and
        // close-on-exec: exec closes it, which tells the parent the child started.
        int r = report[1];
        if (r <= 2) {
            r = fcntl(r, F_DUPFD_CLOEXEC, 3);
            if (r < 0) _exit(127);
        }
        int fds[3] = {stdin_fd, stdout_fd, stderr_fd};
        // A standard descriptor that another one will overwrite before it is used moves away first.
        for (int i = 0; i < 3; i++) {
            if (fds[i] >= 0 && fds[i] <= 2 && fds[i] != i) {
                int moved = fcntl(fds[i], F_DUPFD, 3);
                if (moved < 0) fail(r, errno);
                int old = fds[i];
                for (int j = i; j < 3; j++) if (fds[j] == old) fds[j] = moved;
            }
        }
        for (int i = 0; i < 3; i++) {
            if (fds[i] < 0) continue;
            if (fds[i] == i) {
                int flags = fcntl(i, F_GETFD);
                if (flags >= 0) fcntl(i, F_SETFD, flags & ~FD_CLOEXEC);
            } else if (dup2(fds[i], i) < 0) {
                fail(r, errno);
            }
        }
        close_all_from(3, r);
        if (cwd != NULL && chdir(cwd) != 0) fail(r, errno);
        execve(path, argv, envp);
        fail(r, errno);
    }
    close(report[1]);
    int err = 0;
    ssize_t n;
    do {
        n = read(report[0], &err, sizeof err);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof err) {
        int status;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
        return -err;
    }
    return pid;
}
