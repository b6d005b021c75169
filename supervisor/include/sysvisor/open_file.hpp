// Opening a file as the caller, deciding on the path it resolves to, and handing the
// descriptor over (open, openat, openat2, creat; supervisor/src/open.cpp). Used by the
// dispatcher when a policy emulates one of these calls: its `path` rules then see the file
// the kernel would open, symlinks followed inside the caller's root.
#pragma once

#include <linux/openat2.h>
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "sysvisor/error.hpp"
#include "sysvisor/helper.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::emul::open_file {

struct Request {
  int flags = 0;              // the caller's, as the kernel takes them
  mode_t mode = 0;            // with O_CREAT or O_TMPFILE
  std::uint64_t resolve = 0;  // openat2's RESOLVE_*
};

// open, openat, creat: the flags and mode from the registers (the numbers name the calls).
[[nodiscard]] Result<Request> request_of(const policy::Call& call, int nr_open, int nr_openat, int nr_creat);
// openat2: from the copied struct open_how; EINVAL as the kernel for bits it refuses.
[[nodiscard]] Result<Request> request_of_openat2(const open_how& how);

struct Params;

// One call's helper: resolve(), then open() when the decision says so. The destructor kills
// and reaps the helper.
class Opener {
 public:
  struct Where {
    int err = 0;       // the lookup failed: the kernel's errno for the caller
    std::string path;  // else: the file (or, to be made, its directory + "/" + name), as the caller sees it
  };
  struct Got {
    int err = 0;  // the open failed: the kernel's errno
    UniqueFd fd;
  };
  // `req`: the caller's root, cwd or dirfd, namespaces and credentials (mknod::prepare).
  [[nodiscard]] static Result<Opener> start(const mknod::Request& req, const std::string& path,
                                            const Request& request);
  [[nodiscard]] Result<Where> resolve(std::chrono::steady_clock::time_point deadline);
  [[nodiscard]] Result<Got> open(std::chrono::steady_clock::time_point deadline);

  Opener() = default;
  Opener(Opener&&) noexcept;
  Opener& operator=(Opener&&) noexcept;
  Opener(const Opener&) = delete;
  Opener& operator=(const Opener&) = delete;
  ~Opener();

 private:
  std::unique_ptr<Params> params_;
  UniqueFd sock_;
  int root_ = -1;  // the caller's root fd (in the mknod::Request, which outlives us)
  helper::Running run_;
};

}  // namespace sysvisor::emul::open_file
