/* soak_files DIR WORKERS RATE: WORKERS child processes each create,
 * write, close, reopen, read, close and unlink distinct files in DIR,
 * RATE files a second in all, until the parent gets SIGTERM; the parent
 * then stops them and prints the number of files they created. The
 * workload of `cargo xtask soak`. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_term(int sig) {
    (void)sig;
    stop = 1;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

/* Returns the number of files made, or -1 on an error. */
static long work(const char *dir, int id, double rate) {
    char path[4096], buf[16];
    double start = now();
    long n = 0;
    while (!stop) {
        snprintf(path, sizeof path, "%s/w%d-%ld", dir, id, n);
        int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
        if (fd < 0 || write(fd, "soak\n", 5) != 5 || close(fd) != 0) {
            perror(path);
            return -1;
        }
        fd = open(path, O_RDONLY);
        if (fd < 0 || read(fd, buf, sizeof buf) != 5 || close(fd) != 0 || unlink(path) != 0) {
            perror(path);
            return -1;
        }
        n++;
        /* File n is due at n / rate seconds: sleep off any lead. */
        double lead = n / rate - (now() - start);
        if (lead > 0.001) {
            struct timespec t = {(time_t)lead, (long)((lead - (time_t)lead) * 1e9)};
            nanosleep(&t, NULL);
        }
    }
    return n;
}

int main(int argc, char **argv) {
    if (argc != 4 || atoi(argv[2]) < 1 || atof(argv[3]) <= 0) {
        fprintf(stderr, "usage: soak_files DIR WORKERS RATE\n");
        return 2;
    }
    int workers = atoi(argv[2]);
    double rate = atof(argv[3]) / workers;
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    pid_t pids[64];
    int fds[64];
    if (workers > 64) workers = 64;
    for (int i = 0; i < workers; i++) {
        int p[2];
        if (pipe(p) != 0) return 1;
        pids[i] = fork();
        if (pids[i] < 0) return 1;
        if (pids[i] == 0) {
            close(p[0]);
            long n = work(argv[1], i, rate);
            if (write(p[1], &n, sizeof n) != sizeof n) return 1;
            return n < 0;
        }
        close(p[1]);
        fds[i] = p[0];
    }
    while (!stop) sleep(1); /* a signal cuts the sleep short */
    long total = 0;
    int failed = 0;
    for (int i = 0; i < workers; i++) {
        long n = -1;
        kill(pids[i], SIGTERM);
        if (read(fds[i], &n, sizeof n) != sizeof n || n < 0) failed = 1;
        else total += n;
        waitpid(pids[i], NULL, 0);
    }
    printf("%ld\n", total);
    return failed;
}
