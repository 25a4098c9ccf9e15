/* chdir_stat BASE N EVERY: for i in 0..N, chdir(BASE/dNNN), stat("x")
 * (which is there) and stat("y") (which is not),
 * writing 2 to /proc/sys/vm/drop_caches every EVERY directories so the
 * dentries of the directories already visited are freed and their memory
 * reused for the next ones. Each stat is a distinct file reached by the
 * same relative name. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void drop_caches(void)
{
    int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, "2\n", 2) != 2) {
        perror("drop_caches");
        exit(1);
    }
    close(fd);
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    int n = atoi(argv[2]), every = atoi(argv[3]);
    char dir[4096];
    struct stat st;
    int found = 0;
    for (int i = 0; i < n; i++) {
        snprintf(dir, sizeof(dir), "%s/d%03d", argv[1], i);
        if (chdir(dir) != 0) {
            perror(dir);
            return 1;
        }
        if (syscall(SYS_newfstatat, AT_FDCWD, "x", &st, 0) == 0)
            found++;
        if (syscall(SYS_newfstatat, AT_FDCWD, "y", &st, 0) == 0)
            found++;
        /* back out so nothing keeps the directory's dentry pinned */
        if (chdir("/") != 0)
            return 1;
        if (every > 0 && i % every == every - 1)
            drop_caches();
    }
    printf("found %d\n", found);
    return 0;
}
