/* raw_loop: the baseline supervisor, the least a user-notification supervisor can do.
 *
 *   raw_loop [--mode blocking|epoll|asio] N -- CMD [ARG...]
 *
 * Forks N copies of CMD. Each child installs its own filter (getppid -> SECCOMP_RET_USER_NOTIF,
 * everything else allowed) with SECCOMP_FILTER_FLAG_NEW_LISTENER, passes the listener to the
 * parent over a socketpair (SCM_RIGHTS) and execs CMD. The parent serves each listener with a
 * thread of its own: SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP when the kernel has it (>= 6.6), then
 * blocking SECCOMP_IOCTL_NOTIF_RECV and SEND answering EPERM, nothing else (no poll, no epoll,
 * no ID_VALID, no policy). One thread per listener is the simplest raw design; with many
 * listeners it leaves the scheduling to the kernel.
 *
 * --mode (default blocking) is for profiling only: `epoll` waits in epoll_wait (level-triggered)
 * before each RECV; `asio` copies the shape of sysvisor's loop on Asio 1.74 (epoll_ctl MOD of an
 * edge-triggered registration, epoll_wait, poll(0), RECV, SEND), one epoll set per thread;
 * `one-thread` serves every listener from a single thread and epoll set.
 *
 * Exits when every child has exited: 0 when all exited 0. Prints "raw_loop sync_wakeup=0|1"
 * on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Debian 12's headers predate these (kernel 6.6). */
#ifndef SECCOMP_IOCTL_NOTIF_SET_FLAGS
#define SECCOMP_IOCTL_NOTIF_SET_FLAGS SECCOMP_IOW(4, __u64)
#endif
#ifndef SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP
#define SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP (1UL << 0)
#endif

static int sync_wakeup = 1;

static void die(const char* what) {
  fprintf(stderr, "raw_loop: %s: %s\n", what, strerror(errno));
  exit(1);
}
enum Mode { kBlocking, kEpoll, kAsio, kOneThread };
static enum Mode mode = kBlocking;

/* The waiting that --mode adds before RECV; 0 when a notification should be pending. */
static int wait_readable(int ep, int fd) {
  struct epoll_event ev = {.events = EPOLLIN};
  if (mode == kBlocking) return 0;
  if (mode == kAsio) {
    ev.events = EPOLLIN | EPOLLPRI | EPOLLERR | EPOLLHUP | EPOLLET;
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) != 0) return -1;
  }
  if (epoll_wait(ep, &ev, 1, -1) != 1) return -1;
  if (mode == kAsio) {
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1 || !(p.revents & POLLIN)) return -1;
  }
  return 0;
}

static void* serve(void* arg) {
  const int fd = (int)(long)arg;
  struct seccomp_notif req;
  struct seccomp_notif_resp resp;
  int ep = -1;
  if (mode != kBlocking) {
    struct epoll_event ev = {.events = EPOLLIN | (mode == kAsio ? EPOLLET : 0)};
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll");
  }
  for (;;) {
    if (wait_readable(ep, fd) != 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    memset(&req, 0, sizeof(req)); /* the kernel refuses a buffer that is not zeroed */
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      return NULL;
    }
    memset(&resp, 0, sizeof(resp));
    resp.id = req.id;
    resp.error = -EPERM;
    /* ENOENT: the caller is gone; nothing to do. */
    (void)ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
  }
}

/* --mode one-thread: a single thread serves every listener from one level-triggered epoll set,
 * the shape of a single-threaded event loop without anything else of a supervisor. */
static int shared_ep = -1;

static void* serve_all(void* arg) {
  (void)arg;
  struct epoll_event evs[256];
  struct seccomp_notif req;
  struct seccomp_notif_resp resp;
  for (;;) {
    const int n = epoll_wait(shared_ep, evs, 256, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return NULL;
    }
    for (int i = 0; i < n; ++i) {
      const int fd = evs[i].data.fd;
      if (!(evs[i].events & EPOLLIN)) {
        /* Every task of that filter is gone: RECV would block forever. */
        epoll_ctl(shared_ep, EPOLL_CTL_DEL, fd, NULL);
        close(fd);
        continue;
      }
      memset(&req, 0, sizeof(req));
      if (ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, &req) != 0) continue;
      memset(&resp, 0, sizeof(resp));
      resp.id = req.id;
      resp.error = -EPERM;
      (void)ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, &resp);
    }
  }
}

/* In the child: filter, hand the listener over, exec. */
static void child(int sock, char** cmd) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
  const int listener =
      (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
  if (listener < 0) die("seccomp");
  char byte = 'L';
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  memset(&u, 0, sizeof(u));
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &listener, sizeof(int));
  if (sendmsg(sock, &msg, 0) != 1) die("sendmsg");
  close(listener);
  close(sock);
  execvp(cmd[0], cmd);
  die(cmd[0]);
}

static int receive_fd(int sock) {
  char byte;
  struct iovec iov = {&byte, 1};
  union {
    char buf[CMSG_SPACE(sizeof(int))];
    struct cmsghdr align;
  } u;
  struct msghdr msg = {
      .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf)};
  if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1) return -1;
  struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
  if (c == NULL || c->cmsg_type != SCM_RIGHTS) return -1;
  int fd;
  memcpy(&fd, CMSG_DATA(c), sizeof(int));
  return fd;
}

int main(int argc, char** argv) {
  if (argc > 2 && strcmp(argv[1], "--mode") == 0) {
    if (strcmp(argv[2], "epoll") == 0) {
      mode = kEpoll;
    } else if (strcmp(argv[2], "asio") == 0) {
      mode = kAsio;
    } else if (strcmp(argv[2], "one-thread") == 0) {
      mode = kOneThread;
    } else if (strcmp(argv[2], "blocking") != 0) {
      fprintf(stderr, "raw_loop: --mode blocking|epoll|asio|one-thread\n");
      return 2;
    }
    argc -= 2;
    argv += 2;
  }
  if (argc < 4 || strcmp(argv[2], "--") != 0) {
    fprintf(stderr, "usage: raw_loop [--mode blocking|epoll|asio|one-thread] N -- CMD [ARG...]\n");
    return 2;
  }
  const long n = strtol(argv[1], NULL, 10);
  if (n < 1 || n > 4096) {
    fprintf(stderr, "raw_loop: N must be 1..4096\n");
    return 2;
  }
  char** cmd = argv + 3;
  int sync_reported = 0;
  if (mode == kOneThread) {
    shared_ep = epoll_create1(EPOLL_CLOEXEC);
    pthread_t t;
    if (shared_ep < 0 || pthread_create(&t, NULL, serve_all, NULL) != 0) die("start the serving thread");
    pthread_detach(t);
  }
  for (long i = 0; i < n; ++i) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) die("socketpair");
    const pid_t pid = fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      close(sv[0]);
      child(sv[1], cmd);
    }
    close(sv[1]);
    const int fd = receive_fd(sv[0]);
    close(sv[0]);
    if (fd < 0) {
      fprintf(stderr, "raw_loop: child %d sent no listener\n", (int)pid);
      continue; /* it exited; waitpid below reports it */
    }
    if (ioctl(fd, SECCOMP_IOCTL_NOTIF_SET_FLAGS, SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) != 0) sync_wakeup = 0;
    if (!sync_reported) {
      fprintf(stderr, "raw_loop sync_wakeup=%d\n", sync_wakeup);
      sync_reported = 1;
    }
    if (mode == kOneThread) {
      struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
      if (epoll_ctl(shared_ep, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl");
      continue;
    }
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &attr, serve, (void*)(long)fd) != 0) die("pthread_create");
    pthread_attr_destroy(&attr);
  }
  int failed = 0;
  for (;;) {
    int status = 0;
    const pid_t pid = wait(&status);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break; /* ECHILD: all done */
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  }
  return failed;
}
