/* attach_target DIR: a small service to attach to. Sets up, then creates
 * DIR/ready and runs until killed:
 *   - the main thread: cwd DIR/main_cwd, DIR/held_main open;
 *   - a second thread with its own cwd (unshare(CLONE_FS)), DIR/thread_cwd,
 *     which opens the relative name "rel" there every 50 ms;
 *   - a child process: cwd DIR/child_cwd, DIR/held_child open (it dies
 *     with its parent). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static volatile int thread_ready;

static void in(const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s/%s", dir, name);
}

static void nap(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000 * 1000};
    nanosleep(&ts, NULL);
}

static void *worker(void *unused)
{
    (void)unused;
    char p[4096];
    in("thread_cwd", p, sizeof(p));
    if (unshare(CLONE_FS) != 0 || chdir(p) != 0)
        exit(1);
    thread_ready = 1;
    for (;;) {
        int fd = open("rel", O_RDONLY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        nap(50);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    dir = argv[1];
    char p[4096];
    pid_t child = fork();
    if (child == 0) {
        /* ends with the test's kill of its parent */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        in("child_cwd", p, sizeof(p));
        if (chdir(p) != 0)
            _exit(1);
        in("held_child", p, sizeof(p));
        if (open(p, O_RDONLY) < 0)
            _exit(1);
        in("child_ready", p, sizeof(p));
        close(open(p, O_WRONLY | O_CREAT, 0644));
        for (;;)
            pause();
    }
    in("main_cwd", p, sizeof(p));
    if (chdir(p) != 0)
        return 1;
    in("held_main", p, sizeof(p));
    if (open(p, O_RDONLY) < 0)
        return 1;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    in("child_ready", p, sizeof(p));
    while (!thread_ready || access(p, F_OK) != 0)
        nap(10);
    in("ready", p, sizeof(p));
    close(open(p, O_WRONLY | O_CREAT, 0644));
    for (;;)
        pause();
}
