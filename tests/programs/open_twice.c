/* open_twice DIR N MARKER: opens DIR/fNNNN for i in 0..N while the tracer's
 * reader is stalled (so the ring buffer overflows), creates MARKER (which
 * lets the reader go on), waits for it to drain the buffer, then opens the
 * same N files again, 16 at a time with a pause between, so the repeats
 * fit even when the reader is slow (a loaded machine). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int open_all(const char *dir, int n, int pace)
{
    char p[4096];
    int ok = 0;
    for (int i = 0; i < n; i++) {
        snprintf(p, sizeof(p), "%s/f%04d", dir, i);
        int fd = open(p, O_RDONLY | O_CLOEXEC);
        if (fd >= 0) {
            ok++;
            close(fd);
        }
        if (pace && i % 16 == 15) {
            struct timespec ts = {0, 5 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    return ok;
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int n = atoi(argv[2]);
    int first = open_all(argv[1], n, 0);
    int fd = open(argv[3], O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return 1;
    close(fd);
    sleep(2);
    int second = open_all(argv[1], n, 1);
    printf("%d %d\n", first, second);
    return first == n && second == n ? 0 : 1;
}
