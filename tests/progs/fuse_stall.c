/* A FUSE file system whose one file can be opened and mapped but never read: every READ is
 * held without an answer, so a page fault on a mapping of the file waits for as long as this
 * process lives. Killing it aborts the connection and the waiting reads fail (EIO).
 * It speaks the /dev/fuse protocol directly (no libfuse): INIT, LOOKUP, GETATTR, OPEN,
 * FLUSH, RELEASE; anything else ENOSYS.
 *
 *   fuse_stall MOUNTPOINT     mounts (allow_other), prints "ready" once INIT is answered and
 *                             "read" for each READ it holds; serves until killed
 * The file is MOUNTPOINT/file, 16 KiB, mode 0644. Needs root (mount(2)).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

enum { kFileIno = 2, kFileSize = 16384 };

static int dev_fd = -1;

static void reply(uint64_t unique, int err, const void* body, size_t size) {
  struct fuse_out_header out = {
      .len = (uint32_t)(sizeof out + (err == 0 ? size : 0)), .error = -err, .unique = unique};
  struct iovec iov[2] = {{&out, sizeof out}, {(void*)body, err == 0 ? size : 0}};
  if (writev(dev_fd, iov, err == 0 && size > 0 ? 2 : 1) < 0 && errno != ENOENT) perror("fuse_stall: writev");
}

static void fill_attr(struct fuse_attr* a, uint64_t ino) {
  memset(a, 0, sizeof *a);
  a->ino = ino;
  if (ino == FUSE_ROOT_ID) {
    a->mode = S_IFDIR | 0755;
    a->nlink = 2;
  } else {
    a->mode = S_IFREG | 0644;
    a->nlink = 1;
    a->size = kFileSize;
    a->blocks = kFileSize / 512;
  }
  a->blksize = 4096;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: fuse_stall MOUNTPOINT\n");
    return 2;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  dev_fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
  if (dev_fd < 0) {
    perror("fuse_stall: open /dev/fuse");
    return 1;
  }
  char opts[128];
  snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", dev_fd);
  if (mount("fuse_stall", argv[1], "fuse", MS_NOSUID | MS_NODEV, opts) != 0) {
    perror("fuse_stall: mount");
    return 1;
  }
  static char buf[1 << 20];
  for (;;) {
    const ssize_t n = read(dev_fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR || errno == ENOENT) continue;
      if (errno == ENODEV) return 0; /* unmounted */
      perror("fuse_stall: read");
      return 1;
    }
    if ((size_t)n < sizeof(struct fuse_in_header)) continue;
    const struct fuse_in_header* in = (const struct fuse_in_header*)buf;
    const char* arg = buf + sizeof *in;
    switch (in->opcode) {
      case FUSE_INIT: {
        const struct fuse_init_in* init = (const struct fuse_init_in*)arg;
        struct fuse_init_out out;
        memset(&out, 0, sizeof out);
        out.major = FUSE_KERNEL_VERSION;
        out.minor = FUSE_KERNEL_MINOR_VERSION;
        out.max_readahead = init->max_readahead;
        out.max_write = 4096;
        out.time_gran = 1;
        reply(in->unique, 0, &out, sizeof out);
        printf("ready\n");
        break;
      }
      case FUSE_LOOKUP: {
        if (in->nodeid != FUSE_ROOT_ID || strcmp(arg, "file") != 0) {
          reply(in->unique, ENOENT, NULL, 0);
          break;
        }
        struct fuse_entry_out out;
        memset(&out, 0, sizeof out);
        out.nodeid = kFileIno;
        out.generation = 1;
        out.entry_valid = 3600;
        out.attr_valid = 3600;
        fill_attr(&out.attr, kFileIno);
        reply(in->unique, 0, &out, sizeof out);
        break;
      }
      case FUSE_GETATTR: {
        struct fuse_attr_out out;
        memset(&out, 0, sizeof out);
        out.attr_valid = 3600;
        fill_attr(&out.attr, in->nodeid);
        reply(in->unique, 0, &out, sizeof out);
        break;
      }
      case FUSE_OPEN: {
        struct fuse_open_out out;
        memset(&out, 0, sizeof out);
        out.fh = 1;
        /* Without it a second open invalidates the page cache and waits on the page a held
         * READ keeps locked: the opener, not the daemon, would be stuck. */
        out.open_flags = FOPEN_KEEP_CACHE;
        reply(in->unique, 0, &out, sizeof out);
        break;
      }
      case FUSE_READ:
        printf("read\n"); /* held: never answered */
        break;
      case FUSE_FLUSH:
      case FUSE_RELEASE:
        reply(in->unique, 0, NULL, 0);
        break;
      case FUSE_FORGET:
      case FUSE_BATCH_FORGET:
      case FUSE_INTERRUPT:
        break; /* no answer expected (an interrupted READ stays held) */
      default:
        reply(in->unique, ENOSYS, NULL, 0);
        break;
    }
  }
}
