/* int80 OPEN STAT: a 64-bit program making ia32 syscalls through int 0x80:
 * open(OPEN) (ia32 nr 5), stat64(STAT) (nr 195) and write(1, STAT) (nr 4,
 * which is stat on x86_64). Arguments must be 32-bit pointers, so they are
 * copied into MAP_32BIT memory first. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static long int80(long nr, long a, long b, long c)
{
    long r;
    __asm__ volatile("int $0x80"
                     : "=a"(r)
                     : "a"(nr), "b"(a), "c"(b), "d"(c)
                     : "memory", "r8", "r9", "r10", "r11");
    return r;
}

static void say(const char *what, const char *arg, long r)
{
    if (r < 0)
        printf("%s %s -> %s\n", what, arg, strerrorname_np((int)-r));
    else
        printf("%s %s -> ok\n", what, arg);
    fflush(stdout);
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 2;
    char *low = mmap(NULL, 16384, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT,
                     -1, 0);
    if (low == MAP_FAILED)
        return 1;
    char *open_path = low, *stat_path = low + 4096, *statbuf = low + 8192;
    strncpy(open_path, argv[1], 4095);
    strncpy(stat_path, argv[2], 4095);
    long fd = int80(5, (long)open_path, 0 /* O_RDONLY */, 0);
    say("open", argv[1], fd);
    if (fd >= 0)
        int80(6, fd, 0, 0); /* close */
    say("stat64", argv[2], int80(195, (long)stat_path, (long)statbuf, 0));
    long w = int80(4, 1, (long)stat_path, (long)strlen(stat_path));
    printf("\n");
    say("write", "1", w);
    return 0;
}
