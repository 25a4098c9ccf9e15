/* base_swap MODE A B NAME: one thread makes a lookup of the relative NAME
 * whose string sits on a userfaultfd page, so the kernel stalls copying it
 * in, after the syscall's entry and before the lookup starts; meanwhile
 * the main thread changes what the lookup starts from, from A to B:
 *   cwd-stat    newfstatat(AT_FDCWD, NAME) while the shared cwd moves (chdir)
 *   dirfd-stat  newfstatat(dirfd, NAME) while another file is dup2'd under dirfd
 *   cwd-exec    execve(NAME) while the shared cwd moves
 *   fd-exec     execveat(fd, "", AT_EMPTY_PATH) of A/NAME while B/NAME is
 *               dup2'd under fd (the empty name is on the page)
 * Prints the lookup's result (an exec that works prints nothing more). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *mode, *name;
static char *page;
static int dirfd_ = -1;

static void *lookup(void *unused)
{
    (void)unused;
    struct stat st;
    long r;
    char *argv[] = {(char *)name, NULL};
    char *envp[] = {NULL};
    if (!strcmp(mode, "cwd-stat"))
        r = syscall(SYS_newfstatat, AT_FDCWD, page, &st, 0);
    else if (!strcmp(mode, "dirfd-stat"))
        r = syscall(SYS_newfstatat, dirfd_, page, &st, 0);
    else if (!strcmp(mode, "cwd-exec"))
        r = syscall(SYS_execve, page, argv, envp);
    else
        r = syscall(SYS_execveat, dirfd_, page, argv, envp, AT_EMPTY_PATH);
    printf("%s -> %ld\n", mode, r);
    fflush(stdout);
    return NULL;
}

static int die(const char *what)
{
    perror(what);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 5)
        return 2;
    mode = argv[1];
    const char *a = argv[2], *b = argv[3];
    name = argv[4];
    int by_fd = !strncmp(mode, "dirfd", 5) || !strcmp(mode, "fd-exec");
    char pa[4096], pb[4096];
    snprintf(pa, sizeof pa, "%s/%s", a, name);
    snprintf(pb, sizeof pb, "%s/%s", b, name);
    int fa = -1, fb = -1;
    if (!strcmp(mode, "fd-exec")) {
        fa = open(pa, O_RDONLY);
        fb = open(pb, O_RDONLY);
    } else if (by_fd) {
        fa = open(a, O_RDONLY | O_DIRECTORY);
        fb = open(b, O_RDONLY | O_DIRECTORY);
    } else if (chdir(a) != 0) {
        return die("chdir A");
    }
    if (by_fd && (fa < 0 || fb < 0))
        return die("open");
    dirfd_ = fa;

    long psz = sysconf(_SC_PAGESIZE);
    int uffd = syscall(SYS_userfaultfd, O_CLOEXEC);
    if (uffd < 0)
        return die("userfaultfd");
    struct uffdio_api api = {.api = UFFD_API};
    if (ioctl(uffd, UFFDIO_API, &api) != 0)
        return die("UFFDIO_API");
    page = mmap(NULL, psz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED)
        return die("mmap");
    struct uffdio_register reg = {
        .range = {(unsigned long)page, psz},
        .mode = UFFDIO_REGISTER_MODE_MISSING,
    };
    if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0)
        return die("UFFDIO_REGISTER");

    pthread_t t;
    if (pthread_create(&t, NULL, lookup, NULL) != 0)
        return die("pthread_create");
    /* The kernel is copying the name in: the syscall has entered. */
    struct pollfd p = {uffd, POLLIN, 0};
    struct uffd_msg m;
    if (poll(&p, 1, -1) != 1 || read(uffd, &m, sizeof m) != sizeof m)
        return die("uffd wait");
    if (by_fd ? dup2(fb, fa) < 0 : chdir(b) != 0)
        return die("swap");
    char *src = aligned_alloc(psz, psz);
    if (!src)
        return die("aligned_alloc");
    memset(src, 0, psz);
    if (strcmp(mode, "fd-exec") != 0)
        snprintf(src, psz, "%s", name);
    struct uffdio_copy cp = {
        .dst = (unsigned long)page, .src = (unsigned long)src, .len = psz};
    if (ioctl(uffd, UFFDIO_COPY, &cp) != 0)
        return die("UFFDIO_COPY");
    pthread_join(t, NULL);
    return 0;
}
