#include "sysvisor/trusted_files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <vector>

namespace sysvisor::trusted {
namespace {

std::string quoted(const std::filesystem::path& p) {
  return "`" + p.string() + "`";
}

// The status of `path`, following symbolic links; or the error, naming it.
std::expected<struct stat, std::string> status_of(const std::filesystem::path& path, std::string_view what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    return std::unexpected(fmt::format("{} {}: {}", what, quoted(path), std::strerror(errno)));
  }
  return st;
}

std::expected<void, std::string> check_one(const std::filesystem::path& path, const struct stat& st,
                                           std::string_view what, bool sticky_ok) {
  const std::string why = untrusted_reason(st, sticky_ok);
  if (why.empty()) return {};
  return std::unexpected(
      fmt::format("{} {} {}: a user could change what root reads there; make it owned "
                  "by root and writable only by root (chown root; chmod go-w)",
                  what, quoted(path), why));
}

std::expected<void, std::string> check_parent(const std::filesystem::path& path, std::string_view what) {
  std::filesystem::path parent = path.parent_path();
  if (parent.empty()) parent = ".";
  const std::string label = fmt::format("the directory of the {}", what);
  auto st = status_of(parent, label);
  if (!st) return std::unexpected(st.error());
  return check_one(parent, *st, label, false);
}

}  // namespace

std::string untrusted_reason(const struct stat& st, bool sticky_ok) {
  if (st.st_uid != 0) return fmt::format("is owned by uid {}, not root", st.st_uid);
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 &&
      !(sticky_ok && S_ISDIR(st.st_mode) && (st.st_mode & S_ISVTX))) {
    return fmt::format("is writable by {} (mode {:04o})", (st.st_mode & S_IWOTH) ? "others" : "its group",
                       st.st_mode & 07777);
  }
  return {};
}

std::expected<UniqueFd, std::string> make_runtime_dir(const std::filesystem::path& dir) {
  const auto fail = [&](const std::string& what) {
    return std::unexpected(fmt::format("runtime dir {}: {}", quoted(dir), what));
  };
  if (!dir.is_absolute()) return fail("is not an absolute path");
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::weakly_canonical(dir, ec);
  if (ec) return fail("resolve: " + ec.message());
  UniqueFd at(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!at) return fail(std::string("open /: ") + std::strerror(errno));
  std::filesystem::path sofar = "/";
  std::vector<std::string> parts;
  for (const auto& part : real.relative_path()) {
    if (!part.empty()) parts.push_back(part.string());
  }
  for (std::size_t i = 0; i <= parts.size(); ++i) {
    const bool last = i == parts.size();
    if (i > 0) {
      const std::string& name = parts[i - 1];
      sofar /= name;
      UniqueFd next(::openat(at.get(), name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!next && errno == ENOENT) {
        // Made by root in a directory only root may write: nobody can swap it in between.
        if (::mkdirat(at.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
          return fail(fmt::format("create {}: {}", quoted(sofar), std::strerror(errno)));
        }
        UniqueFd made(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!made) return fail(fmt::format("open {}: {}", quoted(sofar), std::strerror(errno)));
        struct stat st {};
        if (::fstat(made.get(), &st) == 0 && st.st_uid == 0 && ::fchmod(made.get(), 0755) != 0) {
          return fail(fmt::format("chmod {}: {}", quoted(sofar), std::strerror(errno)));
        }
        next = std::move(made);
      }
      if (!next) {
        const int err = errno;
        return fail(fmt::format("{} {}", quoted(sofar),
                                err == ELOOP || err == ENOTDIR
                                    ? std::string("is not a directory (a symbolic link or a file)")
                                    : std::string(std::strerror(err))));
      }
      at = std::move(next);
    }
    struct stat st {};
    if (::fstat(at.get(), &st) != 0)
      return fail(fmt::format("stat {}: {}", quoted(sofar), std::strerror(errno)));
    if (const std::string why = untrusted_reason(st, !last); !why.empty()) {
      return fail(
          fmt::format("{} {}: a user could replace the daemon's sockets; use a directory only root "
                      "can write, such as /run/sysvisor",
                      quoted(sofar), why));
    }
  }
  return at;
}

std::expected<void, std::string> check_file(const std::filesystem::path& file, std::string_view what) {
  if (auto ok = check_parent(file, what); !ok) return ok;
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(file, ec);
  if (ec) return std::unexpected(fmt::format("{} {}: {}", what, quoted(file), ec.message()));
  auto st = status_of(real, what);
  if (!st) return std::unexpected(st.error());
  if (auto ok = check_one(file, *st, what, false); !ok) return ok;
  if (real != std::filesystem::absolute(file).lexically_normal()) return check_parent(real, what);
  return {};
}

std::expected<void, std::string> check_dir(const std::filesystem::path& dir, std::string_view what) {
  std::error_code ec;
  const std::filesystem::path real = std::filesystem::canonical(dir, ec);
  if (ec) return std::unexpected(fmt::format("{} {}: {}", what, quoted(dir), ec.message()));
  auto st = status_of(real, what);
  if (!st) return std::unexpected(st.error());
  return check_one(dir, *st, what, false);
}

}  // namespace sysvisor::trusted
