/* memfd_exec: copies /usr/bin/true into a memfd and runs it with fexecve:
 * a program that has no path at all. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>
extern char **environ;
int main(void) {
    int src = open("/usr/bin/true", O_RDONLY);
    struct stat st;
    if (src < 0 || fstat(src, &st) != 0) {
        perror("/usr/bin/true");
        return 1;
    }
    int m = memfd_create("payload", MFD_CLOEXEC);
    if (m < 0 || sendfile(m, src, NULL, st.st_size) != st.st_size) {
        perror("memfd");
        return 1;
    }
    char *args[] = {"payload", NULL};
    fexecve(m, args, environ);
    perror("fexecve");
    return 1;
}
