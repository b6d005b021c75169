/* probe: a small static program run inside test containers. It makes one call the way a
 * test needs it made and prints "ok" or the errno's name, so tests assert on the kernel's
 * (or the supervisor's) exact answer rather than on a shell's wording.
 *
 *   probe mknod PATH c|b|p|f MAJ MIN [MODE_OCTAL]   mknod(2)
 *   probe mknodat DIR NAME c|b MAJ MIN               mknodat(2) relative to an open dirfd
 *   probe badfd NAME c|b MAJ MIN                      mknodat(2) with a dirfd that is not open
 *   probe thread PATH c|b MAJ MIN                     mknod(2) from a second thread
 *   probe int80 PATH c|b MAJ MIN                      mknod through the i386 ABI (int $0x80)
 *   probe badptr                                      mknod(2) with an unmapped path pointer
 *   probe longpath                                    mknod(2) with a path of 5000 bytes
 *   probe umask OCTAL -- probe ...                   run the rest with that umask
 *   probe as UID GID KEEP_MKNOD(0|1) -- probe ...    run the rest as UID/GID (in the container),
 *                                                    keeping only CAP_MKNOD if asked
 *   probe stat PATH                                  prints "TYPE MAJ:MIN UID GID MODE"
 *   probe mknod-many PREFIX N                        mknod(PREFIX0 .. PREFIX{N-1}, c 1:3) until
 *                                                    one fails; prints "COUNT ok" or "COUNT ERRNO"
 *   probe mknod-copy DIR N                           N times: mknod DIR/n c 1:3, bind-mount it on
 *                                                    a new file DIR/kI, umount and unlink DIR/n;
 *                                                    prints "COUNT ok" or "COUNT ERRNO" (mknod's)
 *   probe call NR ARG...                             syscall(NR, ARG...); ARG is a number
 *                                                    (strtoull base 0, so 0x.. and -1 work) or
 *                                                    s:TEXT, a pointer to that string; prints
 *                                                    "ok", "ok RESULT" when positive, or errno
 *   probe call32 NR ARG...                           the same through int $0x80 (i386 numbers)
 *   probe race PATH_A PATH_B N                       mknod(BUF, S_IFCHR|0666, 1:3) N times while
 *                                                    a second thread keeps rewriting BUF between
 *                                                    PATH_A and PATH_B (same length); prints
 *                                                    "done"
 *   probe sched POLICY PRIO [PID]                    sched_setscheduler(PID or 0, POLICY, PRIO);
 *                                                    POLICY: other fifo rr batch idle deadline
 *   probe setattr POLICY PRIO NICE [PID]             sched_setattr with a struct sched_attr
 *   probe getsched [PID]                             prints "POLICY PRIO NICE" (numbers)
 *   probe nice N [PID]                               setpriority(PRIO_PROCESS, PID or 0, N)
 *   probe nice-user N                                setpriority(PRIO_USER, 0, N): the caller's uid
 *   probe sched-badptr                               sched_setscheduler / sched_setattr with an
 *                                                    unmapped pointer: two results
 *   probe sched-race LOW HIGH N                      sched_setscheduler(0, FIFO, P) N times while
 *                                                    a thread flips P between LOW and HIGH; prints
 *                                                    the highest priority the task ever had
 *   probe sysinfo                                    prints "TOTALRAM FREERAM PROCS UPTIME" in bytes
 *   probe sysinfo32                                  the same through int $0x80 (compat layout)
 *   probe sysinfo-raw                                prints the struct as the kernel filled it:
 *                                                    "TOTAL FREE SHARED BUFFER SWAP FREESWAP PROCS
 *                                                    UPTIME MEM_UNIT" (memory in mem_unit units)
 *   probe sysinfo-badptr                             sysinfo((void *)8)
 *   probe mknod-mapped FILE                          mknod(P, S_IFCHR|0666, 1:3) where P points
 *                                                    into a fresh shared mapping of FILE
 *   probe sysinfo-mapped FILE                        sysinfo(P), P into a fresh private mapping
 *                                                    of FILE (the page is not touched before)
 *   probe setxattr PATH NAME VALUE [l|f]             setxattr / lsetxattr / fsetxattr
 *   probe getxattr PATH NAME [l|f|- [SIZE]]          getxattr / lgetxattr / fgetxattr with a
 *   probe getxattr-ro PATH NAME                      getxattr into a read-only page: the errno and
 *                                                    what the page then holds ("(zero)": nothing)
 *                                                    buffer of SIZE (default 4095): prints the
 *                                                    value (SIZE 0: the length), or the errno
 *   probe listxattr PATH [l|f|- [SIZE]]              listxattr / llistxattr / flistxattr: the
 *                                                    names sorted, joined by ',' ("-" for none;
 *                                                    SIZE 0: the length), or the errno
 *   probe xattr-read-badptr PATH NAME                getxattr, then listxattr, into (void *)8
 *   probe getxattr-race PATH NAME_A NAME_B N SECRET  getxattr(PATH, BUF) N times while a thread
 *                                                    rewrites BUF between NAME_A and NAME_B;
 *                                                    prints "leaked K": values equal to SECRET
 *   probe removexattr PATH NAME [l|f]                removexattr / lremovexattr / fremovexattr
 *   probe xattr-badptr PATH                          setxattr with an unmapped name, then value
 *   probe xattr-longname PATH                        a name of 300 bytes
 *   probe xattr-race PATH NAME_A NAME_B N            setxattr(PATH, BUF, "y") N times while a
 *                                                    thread rewrites BUF between NAME_A and NAME_B
 *   probe mount SRC TGT TYPE [FLAGS [DATA]]          mount(2); SRC/TYPE "-" for NULL; FLAGS
 *                                                    a number or names joined by ','
 *   probe umount TGT [FLAGS]                         umount2(2)
 *   probe mount-badptr                               mount with unmapped source/target/type
 *   probe cycle DIR IMG STOP                         until the file STOP exists: mknod DIR/n
 *                                                    c 1:3, umount and unlink it, mount IMG (ext4; "-":
 *                                                    none) on DIR/m and umount it, acct(NULL)
 *                                                    (expected EXDEV: a policy's deny); prints
 *                                                    "N ok", or at the first other answer
 *                                                    "N CALL ERRNO" and exits 1
 *   probe mount-race SRC TGT_A TGT_B TYPE N          mount(SRC, BUF, TYPE) N times while a
 *                                                    thread rewrites BUF between TGT_A and TGT_B;
 *                                                    each success is unmounted at TGT_A only
 *   probe mount-data-race SRC TGT TYPE N OPT_A OPT_B mount(SRC, TGT, TYPE, 0, BUF) N times while
 *                                                    a thread rewrites BUF between OPT_A and
 *                                                    OPT_B; prints "mounted M leaked K": K
 *                                                    mounts whose options show OPT_B
 *   probe mount-root-race SRC TGT TYPE JAIL N        mount(SRC, TGT, TYPE) N times while a
 *                                                    thread flips the root between / and JAIL
 *                                                    (fchdir + chroot "."); prints how many
 *                                                    mounts succeeded
 *   probe mount-cwd-race SRC NAME TYPE DIR_A DIR_B N mount(SRC, NAME, TYPE) N times while a
 *                                                    thread flips the cwd between DIR_A and
 *                                                    DIR_B; each success is unmounted at
 *                                                    DIR_A/NAME only; prints "done"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

static const char* errname(int e) {
  switch (e) {
    case 0:
      return "ok";
    case EPERM:
      return "EPERM";
    case ENOENT:
      return "ENOENT";
    case EACCES:
      return "EACCES";
    case EEXIST:
      return "EEXIST";
    case ENOTDIR:
      return "ENOTDIR";
    case EFAULT:
      return "EFAULT";
    case ENAMETOOLONG:
      return "ENAMETOOLONG";
    case EBADF:
      return "EBADF";
    case ENOSYS:
      return "ENOSYS";
    case ELOOP:
      return "ELOOP";
    case EROFS:
      return "EROFS";
    case EINVAL:
      return "EINVAL";
    case EBUSY:
      return "EBUSY";
    case ESRCH:
      return "ESRCH";
    case ENODATA:
      return "ENODATA";
    case ERANGE:
      return "ERANGE";
    case E2BIG:
      return "E2BIG";
    case ENODEV:
      return "ENODEV";
    case ENOTBLK:
      return "ENOTBLK";
    case ENOTSUP:
      return "ENOTSUP";
    case ENOSPC:
      return "ENOSPC";
    case EINTR:
      return "EINTR";
    default: {
      static char buf[32];
      snprintf(buf, sizeof buf, "E%d", e);
      return buf;
    }
  }
}

static mode_t type_of(const char* t) {
  switch (t[0]) {
    case 'c':
      return S_IFCHR;
    case 'b':
      return S_IFBLK;
    case 'p':
      return S_IFIFO;
    default:
      return S_IFREG;
  }
}

static int finish(long rc) {
  int e = rc < 0 ? errno : 0;
  printf("%s\n", errname(e));
  return e == 0 ? 0 : 1;
}

struct thread_args {
  const char* path;
  mode_t mode;
  dev_t dev;
  int err;
};

static void* thread_main(void* p) {
  struct thread_args* a = p;
  a->err = mknod(a->path, a->mode, a->dev) == 0 ? 0 : errno;
  return NULL;
}

static int run(int argc, char** argv);

/* Numbers as they are, strings copied below 4 GiB so that the i386 ABI can take them too. */
static unsigned long arg_value(const char* a) {
  if (strncmp(a, "s:", 2) == 0) {
    char* low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 0;
    strncpy(low, a + 2, 4095);
    return (unsigned long)low;
  }
  return strtoull(a, NULL, 0);
}

static int finish_value(long rc) {
  if (rc < 0) return finish(-1);
  if (rc == 0)
    printf("ok\n");
  else
    printf("ok %ld\n", rc);
  return 0;
}

struct race_args {
  char* buf;
  const char* a;
  const char* b;
  volatile int stop;
};

static void* race_main(void* p) {
  struct race_args* r = p;
  size_t n = strlen(r->a) + 1;
  while (!r->stop) {
    memcpy(r->buf, r->b, n);
    memcpy(r->buf, r->a, n);
  }
  return NULL;
}

static int sched_policy_of(const char* name) {
  if (strcmp(name, "fifo") == 0) return SCHED_FIFO;
  if (strcmp(name, "rr") == 0) return SCHED_RR;
  if (strcmp(name, "batch") == 0) return SCHED_BATCH;
  if (strcmp(name, "idle") == 0) return SCHED_IDLE;
  if (strcmp(name, "deadline") == 0) return 6;
  if (strcmp(name, "other") == 0) return SCHED_OTHER;
  return atoi(name);
}

struct probe_sched_attr {
  unsigned size, sched_policy;
  unsigned long long sched_flags;
  int sched_nice;
  unsigned sched_priority;
  unsigned long long sched_runtime, sched_deadline, sched_period;
};

struct prio_race {
  volatile int* prio;
  int low, high;
  volatile int stop;
};

static void* prio_race_main(void* p) {
  struct prio_race* r = p;
  /* Each value holds for a while, so that the supervisor's reads see both. */
  while (!r->stop) {
    *r->prio = r->high;
    for (volatile int i = 0; i < 2000; ++i) {
    }
    *r->prio = r->low;
    for (volatile int i = 0; i < 2000; ++i) {
    }
  }
  return NULL;
}

struct root_race {
  int outer, inner;
  volatile int stop;
};

static void* root_race_main(void* p) {
  struct root_race* r = p;
  while (!r->stop) {
    if (fchdir(r->inner) == 0 && chroot(".") != 0) break;
    if (fchdir(r->outer) == 0 && chroot(".") != 0) break;
  }
  return NULL;
}

static void* cwd_race_main(void* p) {
  struct root_race* r = p;
  while (!r->stop) {
    if (fchdir(r->inner) != 0 || fchdir(r->outer) != 0) break;
  }
  return NULL;
}

static unsigned long mount_flags(const char* text) {
  static const struct {
    const char* name;
    unsigned long flag;
  } names[] = {
      {"ro", MS_RDONLY}, {"nosuid", MS_NOSUID},  {"nodev", MS_NODEV},     {"noexec", MS_NOEXEC},
      {"bind", MS_BIND}, {"rec", MS_REC},        {"remount", MS_REMOUNT}, {"private", MS_PRIVATE},
      {"move", MS_MOVE}, {"detach", MNT_DETACH}, {"force", MNT_FORCE},    {"nofollow", UMOUNT_NOFOLLOW},
  };
  if (text[0] >= '0' && text[0] <= '9') return strtoul(text, NULL, 0);
  unsigned long out = 0;
  char buf[256];
  strncpy(buf, text, sizeof buf - 1);
  buf[sizeof buf - 1] = 0;
  for (char* tok = strtok(buf, ","); tok; tok = strtok(NULL, ","))
    for (size_t i = 0; i < sizeof names / sizeof names[0]; ++i)
      if (strcmp(tok, names[i].name) == 0) out |= names[i].flag;
  return out;
}

static const char* null_if_dash(const char* s) {
  return strcmp(s, "-") == 0 ? NULL : s;
}

static int drop_to(uid_t uid, gid_t gid, int keep_mknod) {
  if (prctl(PR_SET_KEEPCAPS, 1) != 0) return -1;
  if (setgroups(0, NULL) != 0) return -1;
  if (setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) return -1;
  struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
  struct __user_cap_data_struct data[2];
  memset(data, 0, sizeof data);
  if (keep_mknod) {
    data[0].effective = data[0].permitted = 1u << CAP_MKNOD;
  }
  return (int)syscall(SYS_capset, &hdr, data);
}

static int run(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: see the comment at the top of probe.c\n");
    return 2;
  }
  const char* op = argv[1];
  if (strcmp(op, "mknod") == 0 && argc >= 6) {
    mode_t mode = argc >= 7 ? (mode_t)strtoul(argv[6], NULL, 8) : 0666;
    return finish(mknod(argv[2], type_of(argv[3]) | mode, makedev(atoi(argv[4]), atoi(argv[5]))));
  }
  if (strcmp(op, "mknodat") == 0 && argc >= 7) {
    int dfd = open(argv[2], O_PATH | O_DIRECTORY);
    if (dfd < 0) return finish(-1);
    return finish(mknodat(dfd, argv[3], type_of(argv[4]) | 0666, makedev(atoi(argv[5]), atoi(argv[6]))));
  }
  if (strcmp(op, "badfd") == 0 && argc >= 6) {
    return finish(mknodat(977, argv[2], type_of(argv[3]) | 0666, makedev(atoi(argv[4]), atoi(argv[5]))));
  }
  if (strcmp(op, "thread") == 0 && argc >= 6) {
    struct thread_args a = {argv[2], type_of(argv[3]) | 0666, makedev(atoi(argv[4]), atoi(argv[5])), 0};
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, &a) != 0) return 2;
    pthread_join(t, NULL);
    errno = a.err;
    return finish(a.err == 0 ? 0 : -1);
  }
  if (strcmp(op, "int80") == 0 && argc >= 6) {
    /* The i386 ABI takes 32-bit pointers: put the path below 4 GiB. */
    char* low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 2;
    strncpy(low, argv[2], 4095);
    unsigned mode = type_of(argv[3]) | 0666;
    unsigned dev = (unsigned)makedev(atoi(argv[4]), atoi(argv[5]));
    long rc;
    __asm__ volatile("int $0x80"
                     : "=a"(rc)
                     : "a"(14 /* i386 mknod */), "b"(low), "c"(mode), "d"(dev)
                     : "memory");
    if (rc < 0) {
      errno = (int)-rc;
      return finish(-1);
    }
    return finish(0);
  }
  if (strcmp(op, "badptr") == 0) {
    return finish(syscall(SYS_mknod, (const char*)8, S_IFCHR | 0666, makedev(1, 3)));
  }
  if (strcmp(op, "longpath") == 0) {
    char* p = malloc(5001);
    memset(p, 'a', 5000);
    p[0] = '/';
    p[5000] = 0;
    return finish(mknod(p, S_IFCHR | 0666, makedev(1, 3)));
  }
  if (strcmp(op, "umask") == 0 && argc >= 5 && strcmp(argv[3], "--") == 0) {
    umask((mode_t)strtoul(argv[2], NULL, 8));
    return run(argc - 4, argv + 4);
  }
  if (strcmp(op, "as") == 0 && argc >= 7 && strcmp(argv[5], "--") == 0) {
    if (drop_to((uid_t)atoi(argv[2]), (gid_t)atoi(argv[3]), atoi(argv[4])) != 0) {
      perror("probe as");
      return 2;
    }
    return run(argc - 6, argv + 6);
  }
  if (strcmp(op, "mknod-many") == 0 && argc >= 4) {
    const int n = atoi(argv[3]);
    int made = 0;
    int err = 0;
    char path[4096];
    for (; made < n; ++made) {
      snprintf(path, sizeof path, "%s%d", argv[2], made);
      if (mknod(path, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        err = errno;
        break;
      }
    }
    printf("%d %s\n", made, errname(err));
    return 0;
  }
  if (strcmp(op, "mknod-copy") == 0 && argc >= 4) {
    const int n = atoi(argv[3]);
    int made = 0;
    int err = 0;
    char node[4096];
    char copy[4096];
    snprintf(node, sizeof node, "%s/n", argv[2]);
    for (; made < n; ++made) {
      if (mknod(node, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        err = errno;
        break;
      }
      snprintf(copy, sizeof copy, "%s/k%d", argv[2], made);
      int fd = open(copy, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
      if (fd < 0 || close(fd) != 0 || mount(node, copy, NULL, MS_BIND, NULL) != 0 || umount2(node, 0) != 0 ||
          unlink(node) != 0) {
        perror("probe mknod-copy");
        return 2;
      }
    }
    printf("%d %s\n", made, errname(err));
    return 0;
  }
  if (strcmp(op, "stat") == 0 && argc >= 3) {
    struct stat st;
    if (lstat(argv[2], &st) != 0) return finish(-1);
    const char* t = S_ISCHR(st.st_mode) ? "c" : S_ISBLK(st.st_mode) ? "b" : S_ISREG(st.st_mode) ? "f" : "o";
    printf("%s %u:%u %u %u %o\n", t, major(st.st_rdev), minor(st.st_rdev), st.st_uid, st.st_gid,
           (unsigned)(st.st_mode & 07777));
    return 0;
  }
  if ((strcmp(op, "call") == 0 || strcmp(op, "call32") == 0) && argc >= 3) {
    unsigned long a[6] = {0, 0, 0, 0, 0, 0};
    for (int i = 3; i < argc && i < 9; ++i) a[i - 3] = arg_value(argv[i]);
    long nr = strtol(argv[2], NULL, 0);
    if (op[4] == 0) return finish_value(syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]));
    long rc;
    __asm__ volatile("int $0x80"
                     : "=a"(rc)
                     : "a"(nr), "b"(a[0]), "c"(a[1]), "d"(a[2]), "S"(a[3]), "D"(a[4])
                     : "memory");
    if (rc < 0) {
      errno = (int)-rc;
      return finish(-1);
    }
    return finish_value(rc);
  }
  if (strcmp(op, "race") == 0 && argc >= 5 && strlen(argv[2]) == strlen(argv[3])) {
    struct race_args r = {malloc(strlen(argv[2]) + 1), argv[2], argv[3], 0};
    strcpy(r.buf, argv[2]);
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) return 2;
    for (int i = 0, n = atoi(argv[4]); i < n; ++i) mknod(r.buf, S_IFCHR | 0666, makedev(1, 3));
    r.stop = 1;
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
  }
  if (strcmp(op, "sched") == 0 && argc >= 4) {
    struct sched_param sp = {.sched_priority = atoi(argv[3])};
    pid_t pid = argc >= 5 ? atoi(argv[4]) : 0;
    return finish(syscall(SYS_sched_setscheduler, pid, sched_policy_of(argv[2]), &sp));
  }
  if (strcmp(op, "setattr") == 0 && argc >= 5) {
    struct probe_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = (unsigned)sched_policy_of(argv[2]);
    a.sched_priority = (unsigned)atoi(argv[3]);
    a.sched_nice = atoi(argv[4]);
    pid_t pid = argc >= 6 ? atoi(argv[5]) : 0;
    return finish(syscall(SYS_sched_setattr, pid, &a, 0));
  }
  if (strcmp(op, "getsched") == 0) {
    pid_t pid = argc >= 3 ? atoi(argv[2]) : 0;
    struct sched_param sp;
    int pol = sched_getscheduler(pid);
    if (pol < 0 || sched_getparam(pid, &sp) != 0) return finish(-1);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, (id_t)pid);
    printf("%d %d %d\n", pol & ~0x40000000, sp.sched_priority, nice);
    return 0;
  }
  if (strcmp(op, "nice") == 0 && argc >= 3) {
    pid_t pid = argc >= 4 ? atoi(argv[3]) : 0;
    return finish(setpriority(PRIO_PROCESS, (id_t)pid, atoi(argv[2])));
  }
  if (strcmp(op, "nice-user") == 0 && argc >= 3) {
    return finish(setpriority(PRIO_USER, 0, atoi(argv[2])));
  }
  if (strcmp(op, "sched-badptr") == 0) {
    int a = finish(syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, (void*)8));
    int b = finish(syscall(SYS_sched_setattr, 0, (void*)8, 0));
    return a | b;
  }
  if (strcmp(op, "sched-race") == 0 && argc >= 5) {
    static volatile int prio;
    struct prio_race r = {&prio, atoi(argv[2]), atoi(argv[3]), 0};
    prio = r.low;
    pthread_t t;
    if (pthread_create(&t, NULL, prio_race_main, &r) != 0) return 2;
    int highest = 0;
    for (int i = 0, n = atoi(argv[4]); i < n; ++i) {
      syscall(SYS_sched_setscheduler, 0, SCHED_FIFO, (void*)&prio);
      struct sched_param sp;
      if (sched_getparam(0, &sp) == 0 && sp.sched_priority > highest) highest = sp.sched_priority;
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("%d\n", highest);
    return 0;
  }
  if (strcmp(op, "sysinfo") == 0) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) return finish(-1);
    printf("%llu %llu %u %ld\n", (unsigned long long)si.totalram * si.mem_unit,
           (unsigned long long)si.freeram * si.mem_unit, (unsigned)si.procs, si.uptime);
    return 0;
  }
  if (strcmp(op, "sysinfo-raw") == 0) {
    struct sysinfo si;
    if (sysinfo(&si) != 0) return finish(-1);
    printf("%lu %lu %lu %lu %lu %lu %u %ld %u\n", si.totalram, si.freeram, si.sharedram, si.bufferram,
           si.totalswap, si.freeswap, (unsigned)si.procs, si.uptime, si.mem_unit);
    return 0;
  }
  if (strcmp(op, "sysinfo32") == 0) {
    unsigned* low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 2;
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(116 /* i386 sysinfo */), "b"(low) : "memory");
    if (rc < 0) {
      errno = (int)-rc;
      return finish(-1);
    }
    /* compat_sysinfo: uptime, loads[3], totalram, freeram, ..., procs at byte 40, mem_unit at 52 */
    unsigned short procs;
    memcpy(&procs, (char*)low + 40, sizeof procs);
    printf("%llu %llu %u %d\n", (unsigned long long)low[4] * low[13], (unsigned long long)low[5] * low[13],
           (unsigned)procs, (int)low[0]);
    return 0;
  }
  if ((strcmp(op, "mknod-mapped") == 0 || strcmp(op, "sysinfo-mapped") == 0) && argc >= 3) {
    const int fd = open(argv[2], O_RDONLY);
    if (fd < 0) return finish(-1);
    const int is_mknod = op[0] == 'm';
    void* page = mmap(NULL, 4096, is_mknod ? PROT_READ : PROT_READ | PROT_WRITE,
                      is_mknod ? MAP_SHARED : MAP_PRIVATE, fd, 0);
    if (page == MAP_FAILED) return finish(-1);
    if (is_mknod) return finish(mknod((const char*)page, S_IFCHR | 0666, makedev(1, 3)));
    return finish(syscall(SYS_sysinfo, page));
  }
  if (strcmp(op, "sysinfo-badptr") == 0) {
    return finish(syscall(SYS_sysinfo, (void*)8));
  }
  if (strcmp(op, "setxattr") == 0 && argc >= 5) {
    const char* how = argc >= 6 ? argv[5] : "";
    size_t len = strlen(argv[4]);
    if (how[0] == 'l') return finish(lsetxattr(argv[2], argv[3], argv[4], len, 0));
    if (how[0] == 'f') {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) return finish(-1);
      return finish(fsetxattr(fd, argv[3], argv[4], len, 0));
    }
    return finish(setxattr(argv[2], argv[3], argv[4], len, 0));
  }
  if (strcmp(op, "getxattr-ro") == 0 && argc >= 4) {
    char* page = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return 2;
    const long n = syscall(SYS_getxattr, argv[2], argv[3], page, 64);
    const int e = n < 0 ? errno : 0;
    printf("%s page=%s\n", errname(e), page[0] ? page : "(zero)");
    return 0;
  }
  if (strcmp(op, "getxattr") == 0 && argc >= 4) {
    static char buf[70000];
    const char* how = argc >= 5 ? argv[4] : "-";
    size_t size = argc >= 6 ? strtoul(argv[5], NULL, 0) : 4095;
    if (size > sizeof buf - 1) size = sizeof buf - 1;
    ssize_t n;
    if (how[0] == 'l') {
      n = lgetxattr(argv[2], argv[3], buf, size);
    } else if (how[0] == 'f') {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) return finish(-1);
      n = fgetxattr(fd, argv[3], buf, size);
    } else {
      n = getxattr(argv[2], argv[3], buf, size);
    }
    if (n < 0) return finish(-1);
    if (size == 0) {
      printf("%ld\n", (long)n);
      return 0;
    }
    buf[n] = 0;
    printf("%s\n", buf);
    return 0;
  }
  if (strcmp(op, "listxattr") == 0 && argc >= 3) {
    static char buf[70000];
    const char* how = argc >= 4 ? argv[3] : "-";
    size_t size = argc >= 5 ? strtoul(argv[4], NULL, 0) : sizeof buf;
    if (size > sizeof buf) size = sizeof buf;
    ssize_t n;
    if (how[0] == 'l') {
      n = llistxattr(argv[2], buf, size);
    } else if (how[0] == 'f') {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) return finish(-1);
      n = flistxattr(fd, buf, size);
    } else {
      n = listxattr(argv[2], buf, size);
    }
    if (n < 0) return finish(-1);
    if (size == 0) {
      printf("%ld\n", (long)n);
      return 0;
    }
    /* The names, sorted (a few: insertion sort on pointers). */
    const char* names[512];
    int count = 0;
    for (ssize_t at = 0; at < n && count < 512; at += (ssize_t)strlen(buf + at) + 1) {
      int i = count++;
      while (i > 0 && strcmp(names[i - 1], buf + at) > 0) {
        names[i] = names[i - 1];
        --i;
      }
      names[i] = buf + at;
    }
    if (count == 0) printf("-");
    for (int i = 0; i < count; ++i) printf("%s%s", i ? "," : "", names[i]);
    printf("\n");
    return 0;
  }
  if (strcmp(op, "xattr-read-badptr") == 0 && argc >= 4) {
    int a = finish(syscall(SYS_getxattr, argv[2], argv[3], (void*)8, 64));
    int b = finish(syscall(SYS_listxattr, argv[2], (void*)8, 4096));
    return a | b;
  }
  if (strcmp(op, "getxattr-race") == 0 && argc >= 7 && strlen(argv[3]) == strlen(argv[4])) {
    struct race_args r = {malloc(strlen(argv[3]) + 1), argv[3], argv[4], 0};
    strcpy(r.buf, argv[3]);
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) return 2;
    int leaked = 0;
    char value[256];
    for (int i = 0, n = atoi(argv[5]); i < n; ++i) {
      ssize_t got = getxattr(argv[2], r.buf, value, sizeof value - 1);
      if (got < 0) continue;
      value[got] = 0;
      if (strcmp(value, argv[6]) == 0) ++leaked;
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("leaked %d\n", leaked);
    return 0;
  }
  if (strcmp(op, "removexattr") == 0 && argc >= 4) {
    const char* how = argc >= 5 ? argv[4] : "";
    if (how[0] == 'l') return finish(lremovexattr(argv[2], argv[3]));
    if (how[0] == 'f') {
      int fd = open(argv[2], O_RDONLY);
      if (fd < 0) return finish(-1);
      return finish(fremovexattr(fd, argv[3]));
    }
    return finish(removexattr(argv[2], argv[3]));
  }
  if (strcmp(op, "xattr-badptr") == 0 && argc >= 3) {
    int a = finish(syscall(SYS_setxattr, argv[2], (void*)8, "v", 1, 0));
    int b = finish(syscall(SYS_setxattr, argv[2], "trusted.overlay.opaque", (void*)8, 1, 0));
    int c = finish(syscall(SYS_setxattr, (void*)8, "trusted.overlay.opaque", "y", 1, 0));
    return a | b | c;
  }
  if (strcmp(op, "xattr-longname") == 0 && argc >= 3) {
    char name[301];
    memcpy(name, "trusted.", 8);
    memset(name + 8, 'a', sizeof name - 9);
    name[300] = 0;
    return finish(setxattr(argv[2], name, "y", 1, 0));
  }
  if (strcmp(op, "xattr-race") == 0 && argc >= 6 && strlen(argv[3]) == strlen(argv[4])) {
    struct race_args r = {malloc(strlen(argv[3]) + 1), argv[3], argv[4], 0};
    strcpy(r.buf, argv[3]);
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) return 2;
    for (int i = 0, n = atoi(argv[5]); i < n; ++i) setxattr(argv[2], r.buf, "y", 1, 0);
    r.stop = 1;
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
  }
  if (strcmp(op, "mount") == 0 && argc >= 5) {
    unsigned long flags = argc >= 6 ? mount_flags(argv[5]) : 0;
    const char* data = argc >= 7 ? argv[6] : NULL;
    return finish(mount(null_if_dash(argv[2]), argv[3], null_if_dash(argv[4]), flags, data));
  }
  if (strcmp(op, "umount") == 0 && argc >= 3) {
    return finish(umount2(argv[2], argc >= 4 ? (int)mount_flags(argv[3]) : 0));
  }
  if (strcmp(op, "cycle") == 0 && argc >= 5) {
    char node[4096];
    char mnt[4096];
    snprintf(node, sizeof node, "%s/n", argv[2]);
    snprintf(mnt, sizeof mnt, "%s/m", argv[2]);
    mkdir(mnt, 0755);
    const int image = strcmp(argv[3], "-") != 0;
    long n = 0;
    const char* failed = NULL;
    while (failed == NULL && access(argv[4], F_OK) != 0) {
      if (mknod(node, S_IFCHR | 0666, makedev(1, 3)) != 0) {
        failed = "mknod";
      } else if (umount2(node, 0) != 0) {
        failed = "umount2 (node)";
      } else if (unlink(node) != 0) {
        failed = "unlink";
      } else if (image && mount(argv[3], mnt, "ext4", 0, NULL) != 0) {
        failed = "mount";
      } else if (image && umount2(mnt, 0) != 0) {
        failed = "umount2";
      } else if ((errno = 0, syscall(SYS_acct, NULL)) != -1 || errno != EXDEV) {
        failed = "acct";
      } else {
        ++n;
      }
    }
    if (failed != NULL) {
      printf("%ld %s %s\n", n, failed, errname(errno));
      return 1;
    }
    printf("%ld ok\n", n);
    return 0;
  }
  if (strcmp(op, "mount-badptr") == 0) {
    int a = finish(syscall(SYS_mount, (void*)8, "/mnt", "ext4", 0, NULL));
    int b = finish(syscall(SYS_mount, "/dev/x", (void*)8, "ext4", 0, NULL));
    int c = finish(syscall(SYS_mount, "/dev/x", "/mnt", (void*)8, 0, NULL));
    int d = finish(syscall(SYS_umount2, (void*)8, 0));
    return a | b | c | d;
  }
  if (strcmp(op, "mount-race") == 0 && argc >= 7 && strlen(argv[3]) == strlen(argv[4])) {
    struct race_args r = {malloc(strlen(argv[3]) + 1), argv[3], argv[4], 0};
    strcpy(r.buf, argv[3]);
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) return 2;
    for (int i = 0, n = atoi(argv[6]); i < n; ++i) {
      /* Only TGT_A is unmounted: a mount that lands on TGT_B stays, for the test to see. */
      if (mount(argv[2], r.buf, argv[5], 0, NULL) == 0) umount2(argv[3], MNT_DETACH);
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
  }
  if (strcmp(op, "mount-data-race") == 0 && argc >= 8 && strlen(argv[6]) == strlen(argv[7])) {
    struct race_args r = {malloc(strlen(argv[6]) + 1), argv[6], argv[7], 0};
    strcpy(r.buf, argv[6]);
    pthread_t t;
    if (pthread_create(&t, NULL, race_main, &r) != 0) return 2;
    int leaked = 0;
    int mounted = 0;
    for (int i = 0, n = atoi(argv[5]); i < n; ++i) {
      if (mount(argv[2], argv[3], argv[4], 0, r.buf) != 0) continue;
      ++mounted;
      FILE* f = fopen("/proc/self/mountinfo", "r");
      char line[4096];
      while (f && fgets(line, sizeof line, f)) {
        if (strstr(line, argv[3]) && strstr(line, argv[7])) ++leaked;
      }
      if (f) fclose(f);
      umount2(argv[3], MNT_DETACH);
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("mounted %d leaked %d\n", mounted, leaked);
    return 0;
  }
  if (strcmp(op, "mount-root-race") == 0 && argc >= 7) {
    struct root_race r = {open("/", O_PATH | O_DIRECTORY), open(argv[5], O_PATH | O_DIRECTORY), 0};
    if (r.outer < 0 || r.inner < 0) return finish(-1);
    pthread_t t;
    if (pthread_create(&t, NULL, root_race_main, &r) != 0) return 2;
    int won = 0;
    for (int i = 0, n = atoi(argv[6]); i < n; ++i) {
      if (mount(argv[2], argv[3], argv[4], 0, NULL) == 0) ++won;
    }
    r.stop = 1;
    pthread_join(t, NULL);
    if (fchdir(r.outer) != 0 || chroot(".") != 0) return finish(-1);
    printf("%d\n", won);
    return 0;
  }
  if (strcmp(op, "mount-cwd-race") == 0 && argc >= 8) {
    struct root_race r = {open(argv[5], O_PATH | O_DIRECTORY), open(argv[6], O_PATH | O_DIRECTORY), 0};
    if (r.outer < 0 || r.inner < 0) return finish(-1);
    char at_a[4096];
    snprintf(at_a, sizeof at_a, "%s/%s", argv[5], argv[3]);
    pthread_t t;
    if (pthread_create(&t, NULL, cwd_race_main, &r) != 0) return 2;
    for (int i = 0, n = atoi(argv[7]); i < n; ++i) {
      if (mount(argv[2], argv[3], argv[4], 0, NULL) == 0) umount2(at_a, MNT_DETACH);
    }
    r.stop = 1;
    pthread_join(t, NULL);
    printf("done\n");
    return 0;
  }
  fprintf(stderr, "probe: bad arguments\n");
  return 2;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  return run(argc, argv);
}
