/* send_loop MODE N: N sends on a connected AF_UNIX datagram socketpair,
 * each followed by a recv, to measure what recording sends costs
 * (docs/performance.md). MODE: send (sendto with no address), sendmsg (no
 * msg_name), or write (not a send: the baseline). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int sv[2];
    char buf[8];
    if (argc != 3 || socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) != 0) {
        fprintf(stderr, "usage: send_loop send|sendmsg|write N\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    struct iovec iov = {"x", 1};
    struct msghdr m = {0};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    for (long i = 0; i < n; i++) {
        long r;
        if (!strcmp(mode, "send"))
            r = send(sv[0], "x", 1, 0);
        else if (!strcmp(mode, "sendmsg"))
            r = sendmsg(sv[0], &m, 0);
        else
            r = write(sv[0], "x", 1);
        if (r != 1 || recv(sv[1], buf, sizeof(buf), 0) != 1) {
            perror("send_loop");
            return 1;
        }
    }
    return 0;
}
