/* workload: the benchmark's side inside a container (or under the raw loop, or alone). Static,
 * like tests/progs/probe.c, so it runs in a busybox root. Every op prints one line of
 * `key=value` pairs on stdout that bench/bench.py parses; times are CLOCK_MONOTONIC ns.
 *
 *   workload [--nop-filter] OP ...
 *     --nop-filter                 first install a one-rule seccomp filter that traps nothing
 *                                  (kexec_load -> EPERM, everything else ALLOW), the cheapest
 *                                  filter a process can carry (scenario 5's baseline)
 *   deny N                         N getppid() calls, each timed; the bench policies deny it
 *                                  with EPERM. Prints n, median_ns, p99_ns, mean_ns, bad (calls
 *                                  that did not fail with EPERM)
 *   flood START_NS END_NS          sleeps until START, then getppid() as fast as it can until
 *                                  END; prints calls, late (1 when it started after START)
 *   flood sync DURATION_NS         prints "ready", reads START as 20 digits and a newline from
 *                                  stdin (exactly 21 bytes, so one pipe can feed many), then as
 *                                  above until START + DURATION
 *   quiet START_NS GAP_US          sleeps until START, then one timed getppid() every GAP_US
 *                                  until stdin is readable or closed; prints the latency stats
 *   mknod-cycle N PATH [UID GID]   N x { mknod(PATH, S_IFCHR|0666, 1:3); [chown(PATH, UID, GID);]
 *                                  unlink(PATH) }, each cycle timed. When unlink fails with
 *                                  EBUSY (a device node bind-mounted onto a placeholder),
 *                                  umount2(PATH, MNT_DETACH) then unlink: counted as `umounted`.
 *                                  Also prints the median of the mknod call alone
 *   mount-cycle N SRC TGT          prints "started" first, then N x { mount(SRC, TGT, ext4);
 *                                  umount2(TGT, 0) }, each cycle timed
 *   untrapped N                    N x { getpid(); read(/dev/zero, 1 byte) }, timed per batch of
 *                                  1000; prints the median and p99 ns per iteration
 *   handoff                        prints its start time (exec_ns), taken first thing in main
 *   reexec                         prints the time (before_ns), then execs itself with `handoff`:
 *                                  what execve alone costs a minimal static process
 *   idle                           prints "ready" (one write); then for each byte read on stdin
 *                                  one trapped getppid(), printing "answered" (EPERM, as the
 *                                  bench policies answer) or "bad errno=N" (one write each);
 *                                  at the end of stdin (/dev/null: at once) it sleeps until killed
 *   sched-flood PROCS              PROCS processes each call sched_setscheduler(999999, FIFO 1)
 *                                  as fast as they can (a pid no container has: an emulated
 *                                  call that ends in ESRCH, a slow call for the supervisor);
 *                                  prints "ready" once they run, stops when stdin is readable or
 *                                  closed, then prints calls
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t) {
  struct timespec ts = {(time_t)(t / 1000000000ULL), (long)(t % 1000000000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

static void die(const char* what) {
  fprintf(stderr, "workload: %s: %s\n", what, strerror(errno));
  exit(1);
}

static uint64_t* alloc_samples(size_t n) {
  uint64_t* s = malloc((n ? n : 1) * sizeof(*s));
  if (s == NULL) die("malloc");
  return s;
}

static int cmp_u64(const void* a, const void* b) {
  const uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b;
  return x < y ? -1 : x > y;
}

/* Sorts the samples and prints n, median, p99, mean. */
static void print_stats(const char* op, uint64_t* s, size_t n, const char* extra) {
  uint64_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum += s[i];
  qsort(s, n, sizeof(*s), cmp_u64);
  const uint64_t median = n ? s[n / 2] : 0;
  const uint64_t p99 = n ? s[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1] : 0;
  printf("%s n=%zu median_ns=%llu p99_ns=%llu mean_ns=%llu max_ns=%llu%s\n", op, n,
         (unsigned long long)median, (unsigned long long)p99, (unsigned long long)(n ? sum / n : 0),
         (unsigned long long)(n ? s[n - 1] : 0), extra);
  fflush(stdout);
}

/* The trapped call: getppid has no arguments, so nothing but the round trip is measured. */
static int trapped_call(void) {
  errno = 0;
  const long rc = syscall(SYS_getppid);
  return rc == -1 && errno == EPERM;
}

static int op_deny(long n) {
  uint64_t* s = alloc_samples((size_t)n);
  long bad = 0;
  for (long i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    const int denied = trapped_call();
    s[i] = now_ns() - t0;
    bad += !denied;
  }
  char extra[64];
  snprintf(extra, sizeof(extra), " bad=%ld", bad);
  print_stats("deny", s, (size_t)n, extra);
  return 0;
}

static int op_flood(uint64_t start, uint64_t end) {
  const int late = now_ns() > start;
  sleep_until(start);
  unsigned long long calls = 0;
  long bad = 0;
  for (;;) {
    for (int i = 0; i < 64; ++i) bad += !trapped_call();
    calls += 64;
    if (now_ns() >= end) break;
  }
  printf("flood calls=%llu late=%d bad=%ld\n", calls, late, bad);
  fflush(stdout);
  return 0;
}

static int stdin_says_stop(void) {
  struct pollfd p = {0, POLLIN, 0};
  return poll(&p, 1, 0) != 0; /* readable, hung up, or an error: stop */
}

static int op_quiet(uint64_t start, long gap_us) {
  size_t cap = 1 << 16, n = 0;
  uint64_t* s = alloc_samples(cap);
  long bad = 0;
  sleep_until(start);
  const struct timespec gap = {gap_us / 1000000, (gap_us % 1000000) * 1000};
  while (!stdin_says_stop()) {
    const uint64_t t0 = now_ns();
    bad += !trapped_call();
    const uint64_t dt = now_ns() - t0;
    if (n == cap) {
      cap *= 2;
      s = realloc(s, cap * sizeof(*s));
      if (s == NULL) die("realloc");
    }
    s[n++] = dt;
    nanosleep(&gap, NULL);
  }
  char extra[64];
  snprintf(extra, sizeof(extra), " bad=%ld", bad);
  print_stats("quiet", s, n, extra);
  return 0;
}

static int op_mknod_cycle(long n, const char* path, int do_chown, uid_t uid, gid_t gid) {
  uint64_t* s = alloc_samples((size_t)n);
  uint64_t* mk = alloc_samples((size_t)n); /* the mknod alone */
  long unlinked = 0, umounted = 0;
  for (long i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) != 0) die("mknod");
    mk[i] = now_ns() - t0;
    if (do_chown && chown(path, uid, gid) != 0) die("chown");
    if (unlink(path) == 0) {
      ++unlinked;
    } else if (errno == EBUSY) {
      if (umount2(path, MNT_DETACH) != 0) die("umount2 after EBUSY");
      if (unlink(path) != 0) die("unlink after umount2");
      ++umounted;
    } else {
      die("unlink");
    }
    s[i] = now_ns() - t0;
  }
  qsort(mk, (size_t)n, sizeof(*mk), cmp_u64);
  char extra[160];
  snprintf(extra, sizeof(extra), " unlinked=%ld umounted=%ld mknod_median_ns=%llu", unlinked, umounted,
           (unsigned long long)(n ? mk[n / 2] : 0));
  print_stats("mknod-cycle", s, (size_t)n, extra);
  return 0;
}

static int op_mount_cycle(long n, const char* src, const char* tgt) {
  uint64_t* s = alloc_samples((size_t)n);
  printf("started\n");
  fflush(stdout);
  for (long i = 0; i < n; ++i) {
    const uint64_t t0 = now_ns();
    if (mount(src, tgt, "ext4", 0, NULL) != 0) die("mount");
    if (umount2(tgt, 0) != 0) die("umount2");
    s[i] = now_ns() - t0;
  }
  print_stats("mount-cycle", s, (size_t)n, "");
  return 0;
}

static int op_untrapped(long n) {
  enum { kBatch = 1000 };
  const int fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open /dev/zero");
  const long batches = n / kBatch > 0 ? n / kBatch : 1;
  uint64_t* s = alloc_samples((size_t)batches);
  char c;
  for (long b = 0; b < batches; ++b) {
    const uint64_t t0 = now_ns();
    for (int i = 0; i < kBatch; ++i) {
      (void)syscall(SYS_getpid);
      if (read(fd, &c, 1) != 1) die("read /dev/zero");
    }
    s[b] = (now_ns() - t0) / kBatch;
  }
  print_stats("untrapped", s, (size_t)batches, "");
  return 0;
}

static int op_idle(void) {
  /* One write of less than PIPE_BUF: many idle workloads can share one pipe. */
  static const char ready[] = "ready\n";
  if (write(1, ready, sizeof(ready) - 1) < 0) die("write");
  /* A poke (scenario 8): one trapped call, proof that a supervisor answers this container. */
  char c;
  while (read(0, &c, 1) == 1) {
    char line[32];
    int len;
    if (trapped_call()) {
      len = snprintf(line, sizeof line, "answered\n");
    } else {
      len = snprintf(line, sizeof line, "bad errno=%d\n", errno);
    }
    if (write(1, line, (size_t)len) < 0) die("write");
  }
  for (;;) pause();
  return 0; /* not reached */
}

static int op_sched_flood(long procs) {
  if (procs < 1 || procs > 64) die("sched-flood: 1 to 64 processes");
  /* [0]: stop; [1 + i]: calls of process i */
  volatile long* shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) die("mmap");
  pid_t kids[64];
  for (long i = 0; i < procs; ++i) {
    kids[i] = fork();
    if (kids[i] < 0) die("fork");
    if (kids[i] == 0) {
      const struct { int priority; } param = {1};
      while (!shared[0]) {
        (void)syscall(SYS_sched_setscheduler, 999999, 1 /* SCHED_FIFO */, &param);
        ++shared[1 + i];
      }
      _exit(0);
    }
  }
  static const char ready[] = "ready\n";
  if (write(1, ready, sizeof(ready) - 1) < 0) die("write");
  char c;
  (void)!read(0, &c, 1); /* "stop", or EOF */
  shared[0] = 1;
  long calls = 0;
  for (long i = 0; i < procs; ++i) {
    waitpid(kids[i], NULL, 0);
    calls += shared[1 + i];
  }
  printf("sched-flood calls=%ld procs=%ld\n", calls, procs);
  return 0;
}

static void install_nop_filter(void) {
  struct sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_kexec_load, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(code) / sizeof(code[0]), code};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("PR_SET_NO_NEW_PRIVS");
  if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) die("seccomp");
}

static long num(const char* s) {
  char* end = NULL;
  errno = 0;
  const long long v = strtoll(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    fprintf(stderr, "workload: `%s` is not a non-negative number\n", s);
    exit(2);
  }
  return (long)v;
}

static uint64_t num64(const char* s) {
  char* end = NULL;
  errno = 0;
  const unsigned long long v = strtoull(s, &end, 0);
  if (errno != 0 || end == s || *end != '\0') {
    fprintf(stderr, "workload: `%s` is not a number\n", s);
    exit(2);
  }
  return (uint64_t)v;
}

int main(int argc, char** argv) {
  const uint64_t started = now_ns();
  int a = 1;
  if (a < argc && strcmp(argv[a], "--nop-filter") == 0) {
    install_nop_filter();
    ++a;
  }
  if (a >= argc) {
    fprintf(stderr,
            "usage: workload [--nop-filter] "
            "deny|flood|quiet|mknod-cycle|mount-cycle|untrapped|handoff|reexec|idle "
            "...\n");
    return 2;
  }
  const char* op = argv[a];
  const int left = argc - a - 1;
  char** arg = argv + a + 1;
  if (strcmp(op, "deny") == 0 && left == 1) return op_deny(num(arg[0]));
  if (strcmp(op, "flood") == 0 && left == 2 && strcmp(arg[0], "sync") == 0) {
    const uint64_t duration = num64(arg[1]);
    static const char ready[] = "ready\n";
    if (write(1, ready, sizeof(ready) - 1) < 0) die("write");
    char rec[22] = {0};
    size_t got = 0;
    while (got < 21) {
      const ssize_t r = read(0, rec + got, 21 - got);
      if (r <= 0) die("read the start time");
      got += (size_t)r;
    }
    rec[20] = '\0';
    const uint64_t start = num64(rec);
    return op_flood(start, start + duration);
  }
  if (strcmp(op, "flood") == 0 && left == 2) return op_flood(num64(arg[0]), num64(arg[1]));
  if (strcmp(op, "quiet") == 0 && left == 2) return op_quiet(num64(arg[0]), num(arg[1]));
  if (strcmp(op, "mknod-cycle") == 0 && left == 2) return op_mknod_cycle(num(arg[0]), arg[1], 0, 0, 0);
  if (strcmp(op, "mknod-cycle") == 0 && left == 4)
    return op_mknod_cycle(num(arg[0]), arg[1], 1, (uid_t)num(arg[2]), (gid_t)num(arg[3]));
  if (strcmp(op, "mount-cycle") == 0 && left == 3) return op_mount_cycle(num(arg[0]), arg[1], arg[2]);
  if (strcmp(op, "untrapped") == 0 && left == 1) return op_untrapped(num(arg[0]));
  if (strcmp(op, "handoff") == 0 && left == 0) {
    printf("handoff exec_ns=%llu\n", (unsigned long long)started);
    return 0;
  }
  if (strcmp(op, "reexec") == 0 && left == 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    printf("reexec before_ns=%llu\n",
           (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec);
    fflush(stdout);
    execl("/proc/self/exe", "workload", "handoff", (char*)NULL);
    die("exec itself");
  }
  if (strcmp(op, "idle") == 0 && left == 0) return op_idle();
  if (strcmp(op, "sched-flood") == 0 && left == 1) return op_sched_flood(num(arg[0]));
  fprintf(stderr, "workload: unknown op or wrong number of arguments: %s\n", op);
  return 2;
}
