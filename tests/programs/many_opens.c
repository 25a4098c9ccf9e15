/* many_opens DIR COUNT: opens, then stats, COUNT distinct long names
 * in DIR that do not exist, so a trace holds more records than the
 * collector keeps in memory (it spills sorted runs to disk). Prints the
 * number of calls that did not fail with ENOENT (0 expected). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void name(char *buf, size_t len, const char *dir, long i) {
    /* ~200 bytes: the padding makes records big, the number distinct. */
    snprintf(buf, len, "%s/%0190ld", dir, i);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: many_opens DIR COUNT\n");
        return 2;
    }
    long count = atol(argv[2]);
    long unexpected = 0;
    char buf[512];
    struct stat st;
    for (long i = 0; i < count; i++) {
        name(buf, sizeof buf, argv[1], i);
        int fd = open(buf, O_RDONLY);
        if (fd >= 0 || errno != ENOENT) {
            unexpected++;
            if (fd >= 0)
                close(fd);
        }
    }
    for (long i = 0; i < count; i++) {
        name(buf, sizeof buf, argv[1], i);
        if (stat(buf, &st) == 0 || errno != ENOENT)
            unexpected++;
    }
    printf("%ld\n", unexpected);
    return 0;
}
