/* Datagrams sent to AF_UNIX paths without connect: the kernel looks the
 * address up on every send, as connect would.
 *
 *   sends DIR plain    sendto, sendmsg, sendmmsg (both messages to one
 *                      address buffer), a send on a connected socket, an
 *                      abstract address and a missing path
 *   sends DIR mixed    sendmmsg whose second message names another path
 *   sends DIR socketcall   (ia32) sendto and sendmsg through socketcall
 *
 * Each step prints "NAME -> ok" or "NAME -> ERRNO". */
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

static char dir[4096];

static socklen_t addr(struct sockaddr_un *sa, const char *name, int abstract)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (abstract)
        snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "%s", name);
    else
        snprintf(sa->sun_path, sizeof(sa->sun_path), "%.80s/%.20s", dir, name);
    size_t n = abstract ? 1 + strlen(sa->sun_path + 1) : strlen(sa->sun_path);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
}

/* A datagram socket bound at DIR/name, to receive. */
static int server(const char *name)
{
    struct sockaddr_un sa;
    socklen_t len = addr(&sa, name, 0);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, len) != 0)
        return -1;
    return s;
}

static void report(const char *what, long r)
{
    if (r < 0)
        printf("%s -> %s\n", what, strerrorname_np(errno));
    else
        printf("%s -> ok\n", what);
    fflush(stdout);
}

static long send_to(int c, const char *name, int abstract)
{
    struct sockaddr_un sa;
    socklen_t len = addr(&sa, name, abstract);
    return sendto(c, "x", 1, 0, (struct sockaddr *)&sa, len);
}

static long send_msg(int c, const char *name)
{
    struct sockaddr_un sa;
    struct iovec iov = {"x", 1};
    struct msghdr m = {0};
    m.msg_name = &sa;
    m.msg_namelen = addr(&sa, name, 0);
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    return sendmsg(c, &m, 0);
}

/* Two messages: to `first`, then to `second` (the same buffer when the
 * names are the same). */
static long send_mmsg(int c, const char *first, const char *second)
{
    struct sockaddr_un a, b;
    struct iovec iov = {"x", 1};
    struct mmsghdr m[2];
    memset(m, 0, sizeof(m));
    m[0].msg_hdr.msg_name = &a;
    m[0].msg_hdr.msg_namelen = addr(&a, first, 0);
    if (strcmp(first, second) == 0) {
        m[1].msg_hdr.msg_name = &a;
        m[1].msg_hdr.msg_namelen = m[0].msg_hdr.msg_namelen;
    } else {
        m[1].msg_hdr.msg_name = &b;
        m[1].msg_hdr.msg_namelen = addr(&b, second, 0);
    }
    for (int i = 0; i < 2; i++) {
        m[i].msg_hdr.msg_iov = &iov;
        m[i].msg_hdr.msg_iovlen = 1;
    }
    long r = sendmmsg(c, m, 2, 0);
    return r == 2 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: sends DIR plain|mixed|socketcall\n");
        return 2;
    }
    if (strlen(argv[1]) > 80) {
        fprintf(stderr, "sends: %s: too long for a socket address\n", argv[1]);
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s", argv[1]);
    const char *mode = argv[2];
    int c = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (c < 0) {
        perror("socket");
        return 1;
    }
    if (!strcmp(mode, "plain")) {
        report("server", server("to.sock") < 0 || server("msg.sock") < 0 ||
                                 server("mmsg.sock") < 0 || server("conn.sock") < 0
                             ? -1
                             : 0);
        report("sendto", send_to(c, "to.sock", 0));
        report("sendmsg", send_msg(c, "msg.sock"));
        report("sendmmsg", send_mmsg(c, "mmsg.sock", "mmsg.sock"));
        report("sendto_missing", send_to(c, "missing.sock", 0));
        report("sendto_abstract", send_to(c, "trace-sends-abstract", 1));
        /* Connected: send() is sendto with no address. */
        struct sockaddr_un sa;
        socklen_t len = addr(&sa, "conn.sock", 0);
        int k = socket(AF_UNIX, SOCK_DGRAM, 0);
        long r = connect(k, (struct sockaddr *)&sa, len);
        for (int i = 0; r == 0 && i < 3; i++)
            r = send(k, "x", 1, 0);
        report("send_connected", r);
    } else if (!strcmp(mode, "mixed")) {
        report("server", server("a.sock") < 0 || server("b.sock") < 0 ? -1 : 0);
        report("sendmmsg", send_mmsg(c, "a.sock", "b.sock"));
    } else if (!strcmp(mode, "socketcall")) {
#ifdef SYS_socketcall
        report("server", server("to.sock") < 0 || server("msg.sock") < 0 ? -1 : 0);
        struct sockaddr_un sa;
        socklen_t len = addr(&sa, "to.sock", 0);
        unsigned long to[6] = {c, (unsigned long)"x", 1, 0, (unsigned long)&sa, len};
        report("socketcall_sendto", syscall(SYS_socketcall, 11 /* SYS_SENDTO */, to));
        struct sockaddr_un sb;
        struct iovec iov = {"x", 1};
        struct msghdr m = {0};
        m.msg_name = &sb;
        m.msg_namelen = addr(&sb, "msg.sock", 0);
        m.msg_iov = &iov;
        m.msg_iovlen = 1;
        unsigned long msg[3] = {c, (unsigned long)&m, 0};
        report("socketcall_sendmsg", syscall(SYS_socketcall, 16 /* SYS_SENDMSG */, msg));
#else
        fprintf(stderr, "no socketcall here\n");
        return 2;
#endif
    } else {
        fprintf(stderr, "unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
