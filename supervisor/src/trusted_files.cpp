#include "sysvisor/trusted_files.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <system_error>
#include <vector>

namespace sysvisor::trusted {
namespace {

std::string quoted(const std::filesystem::path& p) {
  return "`" + p.string() + "`";
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

namespace {

enum class Want { Directory, File };

// Opens `path` the way root may trust it: from / down, one component at a time, never
// following a link without checking it. Every directory passed through is root's and writable
// by nobody else (a root-owned sticky one, such as /tmp, may be passed through, not end the
// path); a symbolic link is followed only when root owns it (it sits in such a directory, so
// only root could have made it); the object reached is root's and writable by nobody else.
// Nothing on the path can then be swapped by another user, so reading it later by name reads
// what was checked. With `create`, missing directories are made 0755 whatever the umask.
std::expected<UniqueFd, std::string> open_trusted(const std::filesystem::path& path, Want want, bool create,
                                                  std::string_view what) {
  const auto fail = [&](const std::string& why) {
    return std::unexpected(fmt::format("{} {}: {}", what, quoted(path), why));
  };
  std::error_code ec;
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  if (ec) return fail("resolve: " + ec.message());
  std::deque<std::string> todo;
  for (const auto& part : absolute.relative_path()) {
    if (!part.empty()) todo.push_back(part.string());
  }
  UniqueFd at(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!at) return fail(std::string("open /: ") + std::strerror(errno));
  std::filesystem::path where = "/";
  struct stat st {};
  if (::fstat(at.get(), &st) != 0) return fail(std::string("stat /: ") + std::strerror(errno));
  int links = 0;
  while (!todo.empty()) {
    if (const std::string why = untrusted_reason(st, true); !why.empty()) {
      return fail(fmt::format("{} {}", quoted(where), why));
    }
    const std::string name = std::move(todo.front());
    todo.pop_front();
    if (name == ".") continue;
    if (name == "..") {
      // Its parent was walked through (every walk starts at /), so it is trusted already.
      at.reset(::openat(at.get(), "..", O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!at || ::fstat(at.get(), &st) != 0) return fail(std::string("open ..: ") + std::strerror(errno));
      where = where.parent_path();
      continue;
    }
    const std::filesystem::path next_where = where / name;
    if (::fstatat(at.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT || !create || want != Want::Directory) {
        return fail(fmt::format("{}: {}", quoted(next_where), std::strerror(errno)));
      }
      // Made by root in a directory only root may write: nobody can swap it in between.
      if (::mkdirat(at.get(), name.c_str(), 0755) != 0 && errno != EEXIST) {
        return fail(fmt::format("create {}: {}", quoted(next_where), std::strerror(errno)));
      }
      const UniqueFd made(::openat(at.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!made || ::fstat(made.get(), &st) != 0) {
        return fail(fmt::format("open {}: {}", quoted(next_where), std::strerror(errno)));
      }
      if (st.st_uid == 0 && ::fchmod(made.get(), 0755) != 0) {
        return fail(fmt::format("chmod {}: {}", quoted(next_where), std::strerror(errno)));
      }
    }
    if (S_ISLNK(st.st_mode)) {
      if (st.st_uid != 0) {
        return fail(
            fmt::format("{} is a symbolic link owned by uid {}, not root: a user could point it "
                        "elsewhere at any time",
                        quoted(next_where), st.st_uid));
      }
      if (++links > 40) return fail("too many symbolic links");
      std::array<char, 4096> target{};
      const ssize_t n = ::readlinkat(at.get(), name.c_str(), target.data(), target.size() - 1);
      if (n <= 0) return fail(fmt::format("read the link {}: {}", quoted(next_where), std::strerror(errno)));
      const std::filesystem::path to(std::string(target.data(), static_cast<std::size_t>(n)));
      std::vector<std::string> parts;
      for (const auto& part : to.relative_path()) {
        if (!part.empty()) parts.push_back(part.string());
      }
      todo.insert(todo.begin(), parts.begin(), parts.end());
      if (to.is_absolute()) {
        at.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
        if (!at || ::fstat(at.get(), &st) != 0) return fail(std::string("open /: ") + std::strerror(errno));
        where = "/";
      } else if (::fstat(at.get(), &st) != 0) {
        return fail(std::string("stat: ") + std::strerror(errno));
      }
      continue;
    }
    const bool last = todo.empty();
    const bool dir = !last || want == Want::Directory;
    UniqueFd next(
        ::openat(at.get(), name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC | (dir ? O_DIRECTORY : 0)));
    struct stat opened {};
    if (!next || ::fstat(next.get(), &opened) != 0) {
      return fail(fmt::format("{}: {}", quoted(next_where),
                              errno == ENOTDIR ? std::string("is not a directory") : std::strerror(errno)));
    }
    if (opened.st_ino != st.st_ino || opened.st_dev != st.st_dev) {
      // A mount point: the mounted directory is what counts.
      st = opened;
    }
    at = std::move(next);
    where = next_where;
  }
  const bool last_ok = want == Want::Directory ? S_ISDIR(st.st_mode) : S_ISREG(st.st_mode);
  if (!last_ok) {
    return fail(want == Want::Directory ? "is not a directory" : "is not a regular file");
  }
  if (const std::string why = untrusted_reason(st, false); !why.empty()) {
    // "policy file `/x` is writable by others", or, through links, what it resolved to.
    const bool named_is_it = where == absolute.lexically_normal();
    return std::unexpected(
        fmt::format("{} {}{} {}: a user could change what root {} there; make it owned by "
                    "root and writable only by root (chown root; chmod go-w)",
                    what, quoted(path), named_is_it ? std::string() : " -> " + quoted(where), why,
                    want == Want::Directory && create ? "keeps" : "reads"));
  }
  return at;
}

}  // namespace

std::expected<UniqueFd, std::string> make_runtime_dir(const std::filesystem::path& dir) {
  if (!dir.is_absolute()) return std::unexpected("runtime dir " + quoted(dir) + ": is not an absolute path");
  return open_trusted(dir, Want::Directory, true, "runtime dir");
}

std::expected<void, std::string> check_file(const std::filesystem::path& file, std::string_view what) {
  auto opened = open_trusted(file, Want::File, false, what);
  if (!opened) return std::unexpected(opened.error());
  return {};
}

std::expected<void, std::string> check_dir(const std::filesystem::path& dir, std::string_view what) {
  auto opened = open_trusted(dir, Want::Directory, false, what);
  if (!opened) return std::unexpected(opened.error());
  return {};
}

}  // namespace sysvisor::trusted
