/* fsops: runs the file syscalls named on its command line, in order, each
 * through syscall(2) so the syscall the kernel sees is exactly the one named
 * (no libc substitution), and prints one line per call: "NAME ARG -> ok" or
 * "-> ENAME". Built for x86_64 and, with -m32, for ia32, where the same
 * commands go through the ia32 table.
 *
 * Usage: fsops CMD ARGS... [CMD ARGS...]...   (see the table in main) */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/fanotify.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_getxattrat
#define SYS_getxattrat 464
#endif
#ifndef SYS_listxattrat
#define SYS_listxattrat 465
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef AT_EXECVE_CHECK
#define AT_EXECVE_CHECK 0x10000
#endif
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef MOVE_MOUNT_F_EMPTY_PATH
#define MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif

static char statbuf[512];
extern char **environ;

static void report(const char *cmd, const char *arg, long r)
{
    if (r < 0)
        printf("%s %s -> %s\n", cmd, arg, strerrorname_np(errno));
    else
        printf("%s %s -> ok\n", cmd, arg);
    fflush(stdout);
}

/* A socket address for PATH, or for an abstract name when ABSTRACT. */
static socklen_t unix_addr(struct sockaddr_un *sa, const char *name, int abstract)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    size_t n = strlen(name);
    if (n + 2 > sizeof(sa->sun_path))
        n = sizeof(sa->sun_path) - 2;
    memcpy(sa->sun_path + (abstract ? 1 : 0), name, n);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (abstract ? 1 : 0));
}

static long do_bind(const char *name, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = unix_addr(&sa, name, abstract);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    long r = bind(s, (struct sockaddr *)&sa, len);
    if (r == 0)
        r = listen(s, 4); /* kept open so a later connect succeeds */
    return r;
}

static long do_connect(const char *name, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = unix_addr(&sa, name, abstract);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    if (s < 0)
        return -1;
    long r = connect(s, (struct sockaddr *)&sa, len);
    close(s);
    return r;
}

static long closing(long fd)
{
    if (fd >= 0)
        close((int)fd);
    return fd;
}

/* name_to_handle_at on PATH, then open_by_handle_at with a descriptor of
 * MOUNTDIR (any file on the same filesystem). */
static long by_handle(const char *path, const char *mountdir)
{
    struct file_handle *fh = malloc(sizeof(*fh) + MAX_HANDLE_SZ);
    int mount_id;
    fh->handle_bytes = MAX_HANDLE_SZ;
    long r = syscall(SYS_name_to_handle_at, AT_FDCWD, path, fh, &mount_id, 0);
    report("name_to_handle_at", path, r);
    if (r < 0)
        return r;
    int mfd = open(mountdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mfd < 0)
        return -1;
    if (getenv("FSOPS_DROP_CACHES")) {
        /* Free the file's dentry: the kernel then makes one cut off from
         * its parents when it opens the handle. */
        sync();
        int d = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
        if (d < 0 || write(d, "2", 1) != 1)
            return -1;
        close(d);
    }
    r = closing(syscall(SYS_open_by_handle_at, mfd, fh, O_RDONLY));
    close(mfd);
    return r;
}

/* A child made with CLONE_PARENT (so it is its caller's sibling, not its
 * child) opens PATH, then creates PATH.done for its caller to see. */
static long clone_parent_open(const char *path)
{
    char done[4096];
    snprintf(done, sizeof(done), "%s.done", path);
    long pid = syscall(SYS_clone, CLONE_PARENT, 0, NULL, NULL, 0);
    if (pid == 0) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        close(open(done, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        _exit(fd >= 0 ? 0 : 1);
    }
    if (pid < 0)
        return pid;
    struct timespec ts = {0, 10 * 1000 * 1000};
    while (access(done, F_OK) != 0)
        nanosleep(&ts, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc;) {
        const char *c = argv[i];
        const char *a = i + 1 < argc ? argv[i + 1] : "";
        const char *b = i + 2 < argc ? argv[i + 2] : "";
        int used = 2; /* the command and one argument */
        long r;
        errno = 0;
        if (!strcmp(c, "open"))
            r = closing(syscall(SYS_open, a, O_RDONLY | O_CLOEXEC));
        else if (!strcmp(c, "openat"))
            r = closing(syscall(SYS_openat, AT_FDCWD, a, O_RDONLY | O_CLOEXEC));
        else if (!strcmp(c, "create"))
            r = closing(syscall(SYS_openat, AT_FDCWD, a, O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
        else if (!strcmp(c, "stat"))
#ifdef SYS_stat64
            r = syscall(SYS_stat64, a, statbuf);
#else
            r = syscall(SYS_stat, a, statbuf);
#endif
        else if (!strcmp(c, "write"))
            r = syscall(SYS_write, 1, a, strlen(a));
        else if (!strcmp(c, "access"))
            r = syscall(SYS_access, a, F_OK);
        else if (!strcmp(c, "readlink"))
            r = syscall(SYS_readlink, a, statbuf, sizeof(statbuf));
        else if (!strcmp(c, "chdir"))
            r = syscall(SYS_chdir, a);
        else if (!strcmp(c, "chroot"))
            r = syscall(SYS_chroot, a);
        else if (!strcmp(c, "openat2_in_root")) {
            /* openat2(open(A), B, RESOLVE_IN_ROOT) */
            struct open_how how = {.flags = O_RDONLY | O_CLOEXEC, .resolve = RESOLVE_IN_ROOT};
            int d = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
            r = closing(syscall(SYS_openat2, d, b, &how, sizeof(how)));
            close(d);
            used = 3;
        } else if (!strcmp(c, "getxattr")) {
            r = syscall(SYS_getxattr, a, b, statbuf, sizeof(statbuf));
            used = 3;
        } else if (!strcmp(c, "lgetxattr")) {
            r = syscall(SYS_lgetxattr, a, b, statbuf, sizeof(statbuf));
            used = 3;
        } else if (!strcmp(c, "getxattrat")) {
            /* getxattrat DIR REL NAME: REL relative to a descriptor of DIR */
            struct {
                unsigned long long value;
                unsigned size, flags;
            } xa = {(unsigned long)statbuf, sizeof(statbuf), 0};
            const char *name = i + 3 < argc ? argv[i + 3] : "";
            int d = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
            r = syscall(SYS_getxattrat, d, b, 0, name, &xa, sizeof(xa));
            close(d);
            a = b;
            used = 4;
        } else if (!strcmp(c, "listxattrat")) {
            /* listxattrat DIR REL */
            int d = open(a, O_PATH | O_DIRECTORY | O_CLOEXEC);
            r = syscall(SYS_listxattrat, d, b, 0, statbuf, sizeof(statbuf));
            close(d);
            a = b;
            used = 3;
        } else if (!strcmp(c, "listxattr"))
            r = syscall(SYS_listxattr, a, statbuf, sizeof(statbuf));
        else if (!strcmp(c, "statfs"))
            r = syscall(SYS_statfs, a, statbuf);
        else if (!strcmp(c, "inotify")) {
            int fd = inotify_init1(IN_CLOEXEC);
            r = syscall(SYS_inotify_add_watch, fd, a, IN_MODIFY);
        } else if (!strcmp(c, "fanotify")) {
            int fd = fanotify_init(FAN_CLASS_NOTIF | FAN_CLOEXEC, O_RDONLY);
            if (fd < 0)
                r = fd;
            else
                r = syscall(SYS_fanotify_mark, fd, FAN_MARK_ADD, (unsigned long long)FAN_OPEN,
                            AT_FDCWD, a);
        } else if (!strcmp(c, "bind"))
            r = do_bind(a, 0);
        else if (!strcmp(c, "connect"))
            r = do_connect(a, 0);
        else if (!strcmp(c, "bind_abstract"))
            r = do_bind(a, 1);
        else if (!strcmp(c, "connect_abstract"))
            r = do_connect(a, 1);
        else if (!strcmp(c, "link")) {
            r = syscall(SYS_link, a, b);
            used = 3;
        } else if (!strcmp(c, "rename")) {
            r = syscall(SYS_rename, a, b);
            used = 3;
        } else if (!strcmp(c, "mkdir"))
            r = syscall(SYS_mkdir, a, 0755);
        else if (!strcmp(c, "rmdir"))
            r = syscall(SYS_rmdir, a);
        else if (!strcmp(c, "unlink"))
            r = syscall(SYS_unlink, a);
        else if (!strcmp(c, "symlink")) {
            /* symlink CONTENT LINKPATH */
            r = syscall(SYS_symlink, a, b);
            used = 3;
        } else if (!strcmp(c, "mkfifo"))
            r = syscall(SYS_mknod, a, S_IFIFO | 0644, 0);
        else if (!strcmp(c, "truncate"))
            r = syscall(SYS_truncate, a, 3);
        else if (!strcmp(c, "utimensat"))
            r = syscall(SYS_utimensat, AT_FDCWD, a, NULL, 0);
        else if (!strcmp(c, "utimes"))
            r = syscall(SYS_utimes, a, NULL);
        else if (!strcmp(c, "creat"))
            r = closing(syscall(SYS_creat, a, 0644));
        else if (!strcmp(c, "chmod"))
            r = syscall(SYS_chmod, a, 0600);
        else if (!strcmp(c, "fchmodat"))
            r = syscall(SYS_fchmodat, AT_FDCWD, a, 0640);
        else if (!strcmp(c, "chown"))
            r = syscall(SYS_chown, a, 0, 0);
        else if (!strcmp(c, "lchown"))
            r = syscall(SYS_lchown, a, 0, 0);
        else if (!strcmp(c, "fchownat"))
            r = syscall(SYS_fchownat, AT_FDCWD, a, 0, 0, 0);
        else if (!strcmp(c, "mount_bind")) {
            /* mount_bind SOURCE TARGET */
            r = syscall(SYS_mount, a, b, NULL, MS_BIND, NULL);
            used = 3;
        } else if (!strcmp(c, "mount_tmpfs"))
            r = syscall(SYS_mount, "none", a, "tmpfs", 0, NULL);
        else if (!strcmp(c, "umount"))
            r = syscall(SYS_umount2, a, 0);
        else if (!strcmp(c, "move_mount")) {
            /* move_mount SOURCE TARGET: a detached copy of SOURCE attached
             * at TARGET with the new mount API */
            int fd = syscall(SYS_open_tree, AT_FDCWD, a, OPEN_TREE_CLONE | O_CLOEXEC);
            r = fd < 0 ? fd
                       : syscall(SYS_move_mount, fd, "", AT_FDCWD, b, MOVE_MOUNT_F_EMPTY_PATH);
            if (fd >= 0)
                close(fd);
            used = 3;
        } else if (!strcmp(c, "fsopen")) {
            /* fsopen FSTYPE: a filesystem context, configured no further */
            int fd = syscall(SYS_fsopen, a, 0);
            r = fd < 0 ? fd : close(fd);
        } else if (!strcmp(c, "chdir_n")) {
            /* chdir_n NAME N: chdir(NAME) N times (deep trees, each step
             * relative) */
            int n = atoi(b);
            r = 0;
            for (int k = 0; k < n && r == 0; k++)
                r = syscall(SYS_chdir, a);
            used = 3;
#ifdef SYS_socketcall
        } else if (!strcmp(c, "socketcall_bind")) {
            /* ia32: bind through the socketcall multiplexer, whose
             * arguments are an array in memory */
            struct sockaddr_un sa;
            socklen_t len = unix_addr(&sa, a, 0);
            long s = syscall(SYS_socketcall, 1 /* SYS_SOCKET */,
                             (unsigned long[]){AF_UNIX, SOCK_STREAM, 0});
            r = s < 0 ? s
                      : syscall(SYS_socketcall, 2 /* SYS_BIND */,
                                (unsigned long[]){s, (unsigned long)&sa, len});
#endif
        } else if (!strcmp(c, "wait")) {
            /* wait FILE: until someone else (the test) creates FILE */
            struct timespec ts = {0, 10 * 1000 * 1000};
            while (access(a, F_OK) != 0)
                nanosleep(&ts, NULL);
            r = 0;
        } else if (!strcmp(c, "clone_parent_open"))
            r = clone_parent_open(a);
        else if (!strcmp(c, "exec")) {
            char *args[] = {(char *)a, NULL};
            fflush(stdout);
            r = syscall(SYS_execve, a, args, environ);
        } else if (!strcmp(c, "pivot_root")) {
            r = syscall(SYS_pivot_root, a, b);
            used = 3;
        } else if (!strcmp(c, "by_handle")) {
            /* by_handle PATH MOUNTDIR */
            r = by_handle(a, b);
            c = "open_by_handle_at";
            used = 3;
        } else if (!strcmp(c, "open_tree"))
            r = closing(syscall(SYS_open_tree, AT_FDCWD, a, 0));
        else if (!strcmp(c, "open_tree_clone"))
            r = closing(syscall(SYS_open_tree, AT_FDCWD, a, OPEN_TREE_CLONE));
        else if (!strcmp(c, "execveat")) {
            /* execveat DIR NAME: the descriptor stays open across the exec
             * (a script's interpreter opens it through /dev/fd). */
            char *args[] = {(char *)b, NULL};
            int d = open(a, O_RDONLY | O_DIRECTORY);
            fflush(stdout);
            r = syscall(SYS_execveat, d, b, args, environ, 0);
            used = 3;
        } else if (!strcmp(c, "execveat_devfd")) {
            /* execveat_devfd DIR NAME: execveat(fd of ".",
             * "/dev/fd/<fd of DIR>/NAME"), an absolute path the kernel
             * takes as given, whatever the dirfd */
            char *args[] = {(char *)b, NULL};
            char p[64];
            int here = open(".", O_RDONLY | O_DIRECTORY);
            int d = open(a, O_RDONLY | O_DIRECTORY);
            snprintf(p, sizeof p, "/dev/fd/%d/%s", d, b);
            fflush(stdout);
            r = here < 0 || d < 0 ? -1 : syscall(SYS_execveat, here, p, args, environ, 0);
            used = 3;
        } else if (!strcmp(c, "exec_check")) {
            /* exec_check PATH: execveat(AT_EXECVE_CHECK), which runs
             * nothing (Linux 6.14+) */
            char *args[] = {(char *)a, NULL};
            r = syscall(SYS_execveat, AT_FDCWD, a, args, environ, AT_EXECVE_CHECK);
        } else if (!strcmp(c, "exec_fd")) {
            /* exec_fd PATH: execveat of an open descriptor (AT_EMPTY_PATH),
             * for a file that cannot be run */
            char *args[] = {(char *)a, NULL};
            int fd = open(a, O_RDONLY | O_CLOEXEC);
            r = fd < 0 ? fd : syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
        } else if (!strcmp(c, "acct"))
            r = syscall(SYS_acct, a);
        else if (!strcmp(c, "swapon"))
            r = syscall(SYS_swapon, a, 0);
        else if (!strcmp(c, "swapoff"))
            r = syscall(SYS_swapoff, a);
        else if (!strcmp(c, "uselib")) {
#ifdef SYS_uselib
            r = syscall(SYS_uselib, a);
#else
            errno = ENOSYS;
            r = -1;
#endif
        } else if (!strcmp(c, "quotactl")) {
            /* Q_GETQUOTA of user quotas (QCMD(0x800007, 0)), a block
             * device's path. */
            char dq[256];
            r = syscall(SYS_quotactl, 0x800007 << 8, a, 0, dq);
        } else if (!strcmp(c, "mount_setattr")) {
            /* struct mount_attr, all zero: changes nothing. */
            unsigned long long attr[4] = {0};
            r = syscall(SYS_mount_setattr, AT_FDCWD, a, 0, attr, sizeof(attr));
        } else if (!strcmp(c, "fexecve")) {
            char *args[] = {(char *)a, NULL};
            int fd = open(a, O_RDONLY);
            fflush(stdout);
            r = fd < 0 ? -1 : fexecve(fd, args, environ);
        } else {
            fprintf(stderr, "fsops: unknown command %s\n", c);
            return 2;
        }
        report(c, used > 1 ? a : "", r);
        i += used;
    }
    return 0;
}
