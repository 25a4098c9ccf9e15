/* thread_exec TIDFILE SCRIPT: a thread that is not the group leader writes
 * its thread id to TIDFILE and then runs `sh -c SCRIPT` by execve. The
 * kernel ends the other threads and gives the exec'ing thread the leader's
 * pid, so the thread id in TIDFILE is free afterwards. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char **args;
extern char **environ;

static void *worker(void *unused)
{
    (void)unused;
    char buf[32];
    int len = snprintf(buf, sizeof(buf), "%d\n", gettid());
    int fd = open(args[1], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, buf, len) != len)
        return NULL;
    close(fd);
    char *sh[] = {"sh", "-c", args[2], NULL};
    execve("/bin/sh", sh, environ);
    perror("execve");
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    args = argv;
    pthread_t t;
    if (pthread_create(&t, NULL, worker, NULL) != 0)
        return 1;
    pthread_join(t, NULL); /* never returns when the exec works */
    return 1;
}
