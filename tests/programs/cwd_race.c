/* cwd_race DIR1 DIR2 N: threads share one cwd (CLONE_FS, as pthreads do).
 * A second thread flips it between DIR1 and DIR2 while the main thread
 * opens the relative name "only1" (which exists in DIR1 only) N times.
 * Prints how many opens succeeded and failed. */
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *dirs[2];
static atomic_int stop;

static void *flipper(void *unused)
{
    (void)unused;
    for (unsigned i = 0; !atomic_load(&stop); i++)
        if (chdir(dirs[i & 1]) != 0)
            exit(1);
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    dirs[0] = argv[1];
    dirs[1] = argv[2];
    int n = atoi(argv[3]), ok = 0, failed = 0;
    pthread_t t;
    if (chdir(dirs[1]) != 0 || pthread_create(&t, NULL, flipper, NULL) != 0)
        return 1;
    for (int i = 0; i < n; i++) {
        int fd = open("only1", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ok++;
            close(fd);
        } else {
            failed++;
        }
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("ok %d failed %d\n", ok, failed);
    return 0;
}
