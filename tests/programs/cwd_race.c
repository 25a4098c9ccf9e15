/* cwd_race DIR1 DIR2 N: threads share one cwd (CLONE_FS, as pthreads do).
 * A second thread flips it between DIR1 and DIR2 while the main thread
 * opens the relative name "only1" (which exists in DIR1 only) at least N
 * times, and on until both outcomes were seen (the flipper may not be
 * scheduled at all during N fast opens on a loaded machine).
 * Prints how many opens succeeded and failed. */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const char *dirs[2];
static atomic_int stop, flips;

static void *flipper(void *unused)
{
    (void)unused;
    for (unsigned i = 0; !atomic_load(&stop); i++) {
        if (chdir(dirs[i & 1]) != 0)
            exit(1);
        atomic_fetch_add(&flips, 1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    dirs[0] = argv[1];
    dirs[1] = argv[2];
    long n = atol(argv[3]), cap = n * 1000, ok = 0, failed = 0;
    pthread_t t;
    if (chdir(dirs[1]) != 0 || pthread_create(&t, NULL, flipper, NULL) != 0)
        return 1;
    // Start racing only once the flipper really runs.
    while (atomic_load(&flips) < 2)
        sched_yield();
    for (long i = 0; i < cap && (i < n || ok == 0 || failed == 0); i++) {
        int fd = open("only1", O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ok++;
            close(fd);
        } else {
            failed++;
        }
        // Give the flipper a chance on a single free core.
        if ((i & 255) == 255)
            sched_yield();
    }
    atomic_store(&stop, 1);
    pthread_join(t, NULL);
    printf("ok %ld failed %ld\n", ok, failed);
    return 0;
}
