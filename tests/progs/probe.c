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
 *   probe call NR ARG...                             syscall(NR, ARG...); ARG is a number
 *                                                    (strtoull base 0, so 0x.. and -1 work) or
 *                                                    s:TEXT, a pointer to that string; prints
 *                                                    "ok", "ok RESULT" when positive, or errno
 *   probe call32 NR ARG...                           the same through int $0x80 (i386 numbers)
 *   probe race PATH_A PATH_B N                       mknod(BUF, S_IFCHR|0666, 1:3) N times while
 *                                                    a second thread keeps rewriting BUF between
 *                                                    PATH_A and PATH_B (same length); prints
 *                                                    "done"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

static const char *errname(int e) {
  switch (e) {
    case 0: return "ok";
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EACCES: return "EACCES";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EFAULT: return "EFAULT";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case EBADF: return "EBADF";
    case ENOSYS: return "ENOSYS";
    case ELOOP: return "ELOOP";
    case EROFS: return "EROFS";
    case EINVAL: return "EINVAL";
    case EBUSY: return "EBUSY";
    default: {
      static char buf[32];
      snprintf(buf, sizeof buf, "E%d", e);
      return buf;
    }
  }
}

static mode_t type_of(const char *t) {
  switch (t[0]) {
    case 'c': return S_IFCHR;
    case 'b': return S_IFBLK;
    case 'p': return S_IFIFO;
    default: return S_IFREG;
  }
}

static int finish(long rc) {
  int e = rc < 0 ? errno : 0;
  printf("%s\n", errname(e));
  return e == 0 ? 0 : 1;
}

struct thread_args {
  const char *path;
  mode_t mode;
  dev_t dev;
  int err;
};

static void *thread_main(void *p) {
  struct thread_args *a = p;
  a->err = mknod(a->path, a->mode, a->dev) == 0 ? 0 : errno;
  return NULL;
}

static int run(int argc, char **argv);

/* Numbers as they are, strings copied below 4 GiB so that the i386 ABI can take them too. */
static unsigned long arg_value(const char *a) {
  if (strncmp(a, "s:", 2) == 0) {
    char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 0;
    strncpy(low, a + 2, 4095);
    return (unsigned long)low;
  }
  return strtoull(a, NULL, 0);
}

static int finish_value(long rc) {
  if (rc < 0) return finish(-1);
  if (rc == 0) printf("ok\n");
  else printf("ok %ld\n", rc);
  return 0;
}

struct race_args {
  char *buf;
  const char *a;
  const char *b;
  volatile int stop;
};

static void *race_main(void *p) {
  struct race_args *r = p;
  size_t n = strlen(r->a) + 1;
  while (!r->stop) {
    memcpy(r->buf, r->b, n);
    memcpy(r->buf, r->a, n);
  }
  return NULL;
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

static int run(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: see the comment at the top of probe.c\n");
    return 2;
  }
  const char *op = argv[1];
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
    char *low = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    if (low == MAP_FAILED) return 2;
    strncpy(low, argv[2], 4095);
    unsigned mode = type_of(argv[3]) | 0666;
    unsigned dev = (unsigned)makedev(atoi(argv[4]), atoi(argv[5]));
    long rc;
    __asm__ volatile("int $0x80" : "=a"(rc) : "a"(14 /* i386 mknod */), "b"(low), "c"(mode), "d"(dev) : "memory");
    if (rc < 0) {
      errno = (int)-rc;
      return finish(-1);
    }
    return finish(0);
  }
  if (strcmp(op, "badptr") == 0) {
    return finish(syscall(SYS_mknod, (const char *)8, S_IFCHR | 0666, makedev(1, 3)));
  }
  if (strcmp(op, "longpath") == 0) {
    char *p = malloc(5001);
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
  if (strcmp(op, "stat") == 0 && argc >= 3) {
    struct stat st;
    if (lstat(argv[2], &st) != 0) return finish(-1);
    const char *t = S_ISCHR(st.st_mode) ? "c" : S_ISBLK(st.st_mode) ? "b" : S_ISREG(st.st_mode) ? "f" : "o";
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
  fprintf(stderr, "probe: bad arguments\n");
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  return run(argc, argv);
}
