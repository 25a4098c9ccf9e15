/* uring DIR ops|skip: file operations through io_uring (liburing), never
 * through the syscalls that name paths. Prints "NAME PATH -> ok|ENAME" per
 * request, from its completion.
 *   ops:  openat DIR/a, openat DIR/missing, openat(dirfd(DIR), "a2"),
 *         openat2 DIR/b, statx DIR/c, statx DIR/nostat, mkdirat DIR/newdir,
 *         renameat DIR/r1 -> DIR/r2, unlinkat DIR/u
 *   more: linkat DIR/l1 -> DIR/l2, symlinkat "target" at DIR/sl, connect
 *         to DIR/s.sock (bound and listening) and to DIR/none.sock
 *   async:  openat DIR/a and statx DIR/c with IOSQE_ASYNC (always run by
 *           an io-wq worker thread, not the submitter)
 *   sqpoll: openat DIR/a and statx DIR/c on a ring with IORING_SETUP_SQPOLL
 *           (submitted by the kernel's polling thread, no io_uring_enter)
 *   direct: openat DIR/a into the ring's fixed file table (no descriptor
 *           in the process's table ever names it)
 *   skip:   statx DIR/s with IOSQE_CQE_SKIP_SUCCESS (no completion when it
 *           succeeds), linked to a NOP whose completion is waited for. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static struct io_uring ring;
static char paths[16][4096];
static struct statx stx;

static const char *at(int i, const char *dir, const char *name)
{
    snprintf(paths[i], sizeof(paths[i]), "%s/%s", dir, name);
    return paths[i];
}

/* Submits the prepared request and prints its completion. */
static int run(const char *name, const char *path)
{
    struct io_uring_cqe *cqe;
    if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) != 0) {
        fprintf(stderr, "uring: submit/wait failed\n");
        return -1;
    }
    int res = cqe->res;
    io_uring_cqe_seen(&ring, cqe);
    if (res < 0)
        printf("%s %s -> %s\n", name, path, strerrorname_np(-res));
    else
        printf("%s %s -> ok\n", name, path);
    if (res > 2 && (!strcmp(name, "openat") || !strcmp(name, "openat2")))
        close(res);
    return res;
}

/* openat DIR/a and statx DIR/c with FLAGS on each request. */
static void two(const char *d, unsigned flags)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    io_uring_prep_openat(sqe, AT_FDCWD, at(0, d, "a"), O_RDONLY | O_CLOEXEC, 0);
    io_uring_sqe_set_flags(sqe, flags);
    run("openat", paths[0]);
    sqe = io_uring_get_sqe(&ring);
    io_uring_prep_statx(sqe, AT_FDCWD, at(1, d, "c"), 0, STATX_BASIC_STATS, &stx);
    io_uring_sqe_set_flags(sqe, flags);
    run("statx", paths[1]);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    struct io_uring_params params = {0};
    if (!strcmp(argv[2], "sqpoll")) {
        params.flags = IORING_SETUP_SQPOLL;
        params.sq_thread_idle = 2000;
    }
    if (io_uring_queue_init_params(8, &ring, &params) != 0)
        return 2;
    const char *d = argv[1];
    struct io_uring_sqe *sqe;
    if (!strcmp(argv[2], "async")) {
        two(d, IOSQE_ASYNC);
    } else if (!strcmp(argv[2], "sqpoll")) {
        two(d, 0);
    } else if (!strcmp(argv[2], "direct")) {
        if (io_uring_register_files_sparse(&ring, 4) != 0)
            return 1;
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_openat_direct(sqe, AT_FDCWD, at(0, d, "a"), O_RDONLY, 0, 0);
        /* The result is 0 (the slot), not a descriptor: nothing to close. */
        struct io_uring_cqe *cqe;
        if (io_uring_submit(&ring) != 1 || io_uring_wait_cqe(&ring, &cqe) != 0)
            return 1;
        printf("openat_direct %s -> %s\n", paths[0], cqe->res == 0 ? "ok" : strerrorname_np(-cqe->res));
        io_uring_cqe_seen(&ring, cqe);
    } else if (!strcmp(argv[2], "more")) {
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_linkat(sqe, AT_FDCWD, at(0, d, "l1"), AT_FDCWD, at(1, d, "l2"), 0);
        run("linkat", paths[0]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_symlinkat(sqe, "target", AT_FDCWD, at(2, d, "sl"));
        run("symlinkat", paths[2]);
        static struct sockaddr_un sa[2];
        const char *names[2] = {"s.sock", "none.sock"};
        for (int k = 0; k < 2; k++) {
            sa[k].sun_family = AF_UNIX;
            snprintf(sa[k].sun_path, sizeof(sa[k].sun_path), "%s/%s", d, names[k]);
        }
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (bind(l, (struct sockaddr *)&sa[0], sizeof(sa[0])) != 0 || listen(l, 4) != 0)
            return 1;
        for (int k = 0; k < 2; k++) {
            int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sqe = io_uring_get_sqe(&ring);
            io_uring_prep_connect(sqe, c, (struct sockaddr *)&sa[k], sizeof(sa[k]));
            run("connect", sa[k].sun_path);
            close(c);
        }
    } else if (!strcmp(argv[2], "ops")) {
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_openat(sqe, AT_FDCWD, at(0, d, "a"), O_RDONLY | O_CLOEXEC, 0);
        run("openat", paths[0]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_openat(sqe, AT_FDCWD, at(1, d, "missing"), O_RDONLY | O_CLOEXEC, 0);
        run("openat", paths[1]);
        int dfd = open(d, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_openat(sqe, dfd, "a2", O_RDONLY | O_CLOEXEC, 0);
        run("openat", "a2");
        struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_openat2(sqe, AT_FDCWD, at(2, d, "b"), &how);
        run("openat2", paths[2]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_statx(sqe, AT_FDCWD, at(3, d, "c"), 0, STATX_BASIC_STATS, &stx);
        run("statx", paths[3]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_statx(sqe, AT_FDCWD, at(4, d, "nostat"), 0, STATX_BASIC_STATS, &stx);
        run("statx", paths[4]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_mkdirat(sqe, AT_FDCWD, at(5, d, "newdir"), 0755);
        run("mkdirat", paths[5]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_renameat(sqe, AT_FDCWD, at(6, d, "r1"), AT_FDCWD, at(7, d, "r2"), 0);
        run("renameat", paths[6]);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_unlinkat(sqe, AT_FDCWD, at(8, d, "u"), 0);
        run("unlinkat", paths[8]);
    } else if (!strcmp(argv[2], "skip")) {
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_statx(sqe, AT_FDCWD, at(0, d, "s"), 0, STATX_BASIC_STATS, &stx);
        /* Linked: the NOP starts only once the statx is done. */
        io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS | IOSQE_IO_LINK);
        io_uring_sqe_set_data64(sqe, 1);
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_nop(sqe);
        io_uring_sqe_set_data64(sqe, 2);
        struct io_uring_cqe *cqe;
        if (io_uring_submit(&ring) != 2 || io_uring_wait_cqe(&ring, &cqe) != 0)
            return 1;
        /* Only the NOP completes: the statx succeeded silently. */
        printf("first completion: %s\n", cqe->user_data == 2 && cqe->res == 0 ? "nop" : "?");
        io_uring_cqe_seen(&ring, cqe);
        if (stx.stx_mask == 0)
            return 1;
        printf("statx %s -> ok (no completion)\n", paths[0]);
    } else {
        return 2;
    }
    io_uring_queue_exit(&ring);
    return 0;
}
