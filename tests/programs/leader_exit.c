/* leader_exit DIR N: the thread-group leader calls pthread_exit at once;
 * another thread waits until the leader is a zombie, then opens DIR/fNN for
 * NN in 0..N, forks a child that opens DIR/child, and exits. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *dir;
static int n;
static pid_t leader;

static int leader_gone(void)
{
    char p[64], buf[512];
    snprintf(p, sizeof(p), "/proc/%d/task/%d/stat", leader, leader);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 1;
    ssize_t len = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (len <= 0)
        return 1;
    buf[len] = 0;
    char *s = strrchr(buf, ')');
    return s && (s[2] == 'Z' || s[2] == 'X');
}

static void open_one(const char *name)
{
    char p[4096];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        perror(p);
        exit(1);
    }
    close(fd);
}

static void *worker(void *unused)
{
    (void)unused;
    struct timespec ts = {0, 10 * 1000 * 1000};
    while (!leader_gone())
        nanosleep(&ts, NULL);
    char name[32];
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof(name), "f%02d", i);
        open_one(name);
    }
    pid_t c = fork();
    if (c == 0) {
        open_one("child");
        _exit(0);
    }
    int st;
    waitpid(c, &st, 0);
    printf("worker done\n");
    fflush(stdout);
    exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    dir = argv[1];
    n = atoi(argv[2]);
    leader = getpid();
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_exit(NULL);
}
