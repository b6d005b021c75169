// Helpers for the integration tests: real processes, real namespaces, real kernel.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace sysvisor::it {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv, capturing stdout and stderr; killed after `timeout`.
Outcome run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

// A directory removed (after lazy-unmounting what is below it) at destruction.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// A busybox root filesystem with the probe in /bin, owned by host uid/gid `owner`.
void make_rootfs(const fs::path& dir, uid_t owner);

// A `sysvisor serve` child process.
class Daemon {
 public:
  // `extra`: more `serve` arguments (e.g. --config FILE).
  Daemon(const fs::path& runtime_dir, const fs::path& policies_dir, const fs::path& audit_log,
         const fs::path& log, const std::vector<std::string>& extra = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // SIGTERM (clean) or SIGKILL; returns the exit status as run() reports it.
  int stop(int sig);

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

// `sysvisor-agent run` of `/bin/sh -c script` in `rootfs` under `policy`; a timeout is a failure.
Outcome run_container(const fs::path& runtime_dir, const std::string& policy, const fs::path& rootfs,
                      const std::string& script, const std::string& id = "",
                      const std::vector<std::string>& options = {});

// The audit lines of one container.
[[nodiscard]] std::vector<std::string> audit_lines(const fs::path& audit_log, const std::string& container);

[[nodiscard]] std::string read_file(const fs::path& p);
[[nodiscard]] std::vector<std::string> lines(const std::string& text);
[[nodiscard]] fs::path bin_dir();     // build/bin
[[nodiscard]] fs::path source_dir();  // the repository

}  // namespace sysvisor::it
