// Call literals and expectations of decision cases (docs/policy-tools.md), and the conversion
// of a literal into the policy::Call the supervisor would decode from the trapped call.
#include <fcntl.h>
#include <linux/sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>
#include <string_view>
#include <utility>

#include "sysvisor/syscalls.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor::tools {
namespace {

using policy::Action;

struct Constant {
  std::string_view name;
  std::int64_t value;
};

// The symbolic constants a call literal may use. Values are those of x86_64 Linux.
constexpr std::array kConstants{
    Constant{"AT_FDCWD", AT_FDCWD},
    Constant{"AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW},
    Constant{"AT_REMOVEDIR", AT_REMOVEDIR},
    Constant{"AT_SYMLINK_FOLLOW", AT_SYMLINK_FOLLOW},
    Constant{"AT_EMPTY_PATH", AT_EMPTY_PATH},
    Constant{"S_IFMT", S_IFMT},
    Constant{"S_IFSOCK", S_IFSOCK},
    Constant{"S_IFLNK", S_IFLNK},
    Constant{"S_IFREG", S_IFREG},
    Constant{"S_IFBLK", S_IFBLK},
    Constant{"S_IFDIR", S_IFDIR},
    Constant{"S_IFCHR", S_IFCHR},
    Constant{"S_IFIFO", S_IFIFO},
    Constant{"S_ISUID", S_ISUID},
    Constant{"S_ISGID", S_ISGID},
    Constant{"S_ISVTX", S_ISVTX},
    Constant{"MS_RDONLY", MS_RDONLY},
    Constant{"MS_NOSUID", MS_NOSUID},
    Constant{"MS_NODEV", MS_NODEV},
    Constant{"MS_NOEXEC", MS_NOEXEC},
    Constant{"MS_SYNCHRONOUS", MS_SYNCHRONOUS},
    Constant{"MS_REMOUNT", MS_REMOUNT},
    Constant{"MS_MANDLOCK", MS_MANDLOCK},
    Constant{"MS_DIRSYNC", MS_DIRSYNC},
    Constant{"MS_NOSYMFOLLOW", 256},
    Constant{"MS_NOATIME", MS_NOATIME},
    Constant{"MS_NODIRATIME", MS_NODIRATIME},
    Constant{"MS_BIND", MS_BIND},
    Constant{"MS_MOVE", MS_MOVE},
    Constant{"MS_REC", MS_REC},
    Constant{"MS_SILENT", MS_SILENT},
    Constant{"MS_POSIXACL", MS_POSIXACL},
    Constant{"MS_UNBINDABLE", MS_UNBINDABLE},
    Constant{"MS_PRIVATE", MS_PRIVATE},
    Constant{"MS_SLAVE", MS_SLAVE},
    Constant{"MS_SHARED", MS_SHARED},
    Constant{"MS_RELATIME", MS_RELATIME},
    Constant{"MS_KERNMOUNT", MS_KERNMOUNT},
    Constant{"MS_I_VERSION", MS_I_VERSION},
    Constant{"MS_STRICTATIME", MS_STRICTATIME},
    Constant{"MS_LAZYTIME", MS_LAZYTIME},
    Constant{"MNT_FORCE", MNT_FORCE},
    Constant{"MNT_DETACH", MNT_DETACH},
    Constant{"MNT_EXPIRE", MNT_EXPIRE},
    Constant{"UMOUNT_NOFOLLOW", UMOUNT_NOFOLLOW},
    Constant{"SCHED_OTHER", SCHED_OTHER},
    Constant{"SCHED_NORMAL", SCHED_NORMAL},
    Constant{"SCHED_FIFO", SCHED_FIFO},
    Constant{"SCHED_RR", SCHED_RR},
    Constant{"SCHED_BATCH", SCHED_BATCH},
    Constant{"SCHED_IDLE", SCHED_IDLE},
    Constant{"SCHED_DEADLINE", SCHED_DEADLINE},
    Constant{"SCHED_RESET_ON_FORK", SCHED_RESET_ON_FORK},
    Constant{"PRIO_PROCESS", PRIO_PROCESS},
    Constant{"PRIO_PGRP", PRIO_PGRP},
    Constant{"PRIO_USER", PRIO_USER},
    Constant{"XATTR_CREATE", XATTR_CREATE},
    Constant{"XATTR_REPLACE", XATTR_REPLACE},
    Constant{"O_RDONLY", O_RDONLY},
    Constant{"O_WRONLY", O_WRONLY},
    Constant{"O_RDWR", O_RDWR},
    Constant{"O_CREAT", O_CREAT},
    Constant{"O_EXCL", O_EXCL},
    Constant{"O_NOCTTY", O_NOCTTY},
    Constant{"O_TRUNC", O_TRUNC},
    Constant{"O_APPEND", O_APPEND},
    Constant{"O_NONBLOCK", O_NONBLOCK},
    Constant{"O_DSYNC", O_DSYNC},
    Constant{"O_SYNC", O_SYNC},
    Constant{"O_DIRECTORY", O_DIRECTORY},
    Constant{"O_NOFOLLOW", O_NOFOLLOW},
    Constant{"O_CLOEXEC", O_CLOEXEC},
    Constant{"O_PATH", O_PATH},
    Constant{"O_TMPFILE", O_TMPFILE},
    Constant{"O_NOATIME", O_NOATIME},
    Constant{"O_DIRECT", O_DIRECT},
    Constant{"O_LARGEFILE", O_LARGEFILE},
};

std::unexpected<LiteralError> fail(std::string message, std::size_t offset) {
  return std::unexpected(LiteralError{std::move(message), static_cast<int>(offset) + 1});
}

bool ident_start(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_';
}
bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  std::expected<CallLiteral, LiteralError> call() {
    CallLiteral out;
    skip_ws();
    const std::size_t name_at = i_;
    out.name = ident();
    if (out.name.empty()) return fail("expected a syscall name, like mknod(...)", i_);
    const auto nr = policy::syscall_from_name(out.name);
    if (!nr)
      return fail("unknown syscall `" + out.name + "`" + policy::did_you_mean_syscall(out.name), name_at);
    out.nr = *nr;
    skip_ws();
    if (!eat('(')) return fail("expected `(` after `" + out.name + "`", i_);
    skip_ws();
    if (!eat(')')) {
      while (true) {
        skip_ws();
        auto a = arg();
        if (!a) return std::unexpected(a.error());
        out.args.push_back(std::move(*a));
        if (out.args.size() > 6) return fail("a syscall has at most 6 arguments", out.args.back().column - 1);
        skip_ws();
        if (eat(')')) break;
        if (!eat(',')) return fail("expected `,` or `)`", i_);
      }
    }
    skip_ws();
    if (i_ != s_.size()) return fail("unexpected text after the call", i_);
    return out;
  }

 private:
  std::expected<LiteralArg, LiteralError> arg() {
    LiteralArg a;
    a.column = static_cast<int>(i_) + 1;
    if (at_end()) return fail("expected an argument", i_);
    if (s_[i_] == '"') {
      a.kind = LiteralArg::Kind::String;
      auto str = string();
      if (!str) return std::unexpected(str.error());
      a.text = std::move(*str);
      return a;
    }
    if (s_[i_] == '{') {
      a.kind = LiteralArg::Kind::Struct;
      ++i_;
      skip_ws();
      if (eat('}')) return a;
      while (true) {
        skip_ws();
        const std::size_t at = i_;
        std::string field = ident();
        if (field.empty()) return fail("expected a field name, like {sched_priority=50}", i_);
        if (a.fields.contains(field)) return fail("field `" + field + "` given twice", at);
        skip_ws();
        if (!eat('=')) return fail("expected `=` after `" + field + "`", i_);
        skip_ws();
        auto v = expression(false);
        if (!v) return std::unexpected(v.error());
        a.fields[field] = static_cast<std::int64_t>(*v);
        skip_ws();
        if (eat('}')) break;
        if (!eat(',')) return fail("expected `,` or `}`", i_);
      }
      return a;
    }
    if (s_.substr(i_).starts_with("NULL") && (i_ + 4 == s_.size() || !ident_char(s_[i_ + 4]))) {
      a.kind = LiteralArg::Kind::Null;
      i_ += 4;
      return a;
    }
    auto v = expression(true);
    if (!v) return std::unexpected(v.error());
    a.value = *v;
    return a;
  }

  // term ('|' term)*
  std::expected<std::uint64_t, LiteralError> expression(bool allow_dev) {
    std::uint64_t value = 0;
    while (true) {
      skip_ws();
      auto t = term(allow_dev);
      if (!t) return t;
      value |= *t;
      skip_ws();
      if (!eat('|')) return value;
    }
  }

  // -?number (':' number)? | CONSTANT
  std::expected<std::uint64_t, LiteralError> term(bool allow_dev) {
    if (at_end()) return fail("expected a number or a constant", i_);
    const std::size_t at = i_;
    if (ident_start(s_[i_])) {
      const std::string name = ident();
      for (const auto& c : kConstants) {
        if (c.name == name) return static_cast<std::uint64_t>(c.value);
      }
      if (name == "NULL") return fail("NULL cannot be combined with `|`", at);
      std::vector<std::string_view> names;
      for (const auto& c : kConstants) names.emplace_back(c.name);
      return fail("unknown constant `" + name + "`" + policy::did_you_mean(name, names), at);
    }
    const bool negative = eat('-');
    auto n = number();
    if (!n) return n;
    if (!at_end() && s_[i_] == ':') {
      if (negative || !allow_dev) return fail("a device `major:minor` is not allowed here", at);
      ++i_;
      auto minor = number();
      if (!minor) return minor;
      if (*n > 0xfff) return fail("major " + std::to_string(*n) + " is out of range (0-4095)", at);
      if (*minor > 0xfffff)
        return fail("minor " + std::to_string(*minor) + " is out of range (0-1048575)", at);
      return encode_dev(static_cast<std::uint32_t>(*n), static_cast<std::uint32_t>(*minor));
    }
    if (negative) {
      if (*n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) + 1) {
        return fail("number out of range", at);
      }
      return ~*n + 1;  // two's complement, as the register holds it
    }
    return *n;
  }

  // Decimal, 0x hexadecimal, leading-0 octal.
  std::expected<std::uint64_t, LiteralError> number() {
    const std::size_t at = i_;
    int base = 10;
    if (s_.substr(i_).starts_with("0x") || s_.substr(i_).starts_with("0X")) {
      base = 16;
      i_ += 2;
    } else if (i_ + 1 < s_.size() && s_[i_] == '0' &&
               std::isdigit(static_cast<unsigned char>(s_[i_ + 1])) != 0) {
      base = 8;
      ++i_;
    }
    std::size_t end = i_;
    while (end < s_.size() && std::isxdigit(static_cast<unsigned char>(s_[end])) != 0) ++end;
    if (end == i_) return fail(base == 16 ? "expected hexadecimal digits after 0x" : "expected a number", at);
    std::uint64_t value = 0;
    const auto r = std::from_chars(s_.data() + i_, s_.data() + end, value, base);
    if (r.ec == std::errc::result_out_of_range) return fail("number out of range", at);
    if (r.ec != std::errc() || r.ptr != s_.data() + end) {
      return fail(std::string("bad ") +
                      (base == 8    ? "octal"
                       : base == 16 ? "hexadecimal"
                                    : "decimal") +
                      " number",
                  at);
    }
    i_ = end;
    if (!at_end() && ident_char(s_[i_])) return fail("bad number", at);
    return value;
  }

  std::expected<std::string, LiteralError> string() {
    const std::size_t at = i_;
    ++i_;  // the opening quote
    std::string out;
    while (true) {
      if (at_end()) return fail("unterminated string", at);
      const char c = s_[i_++];
      if (c == '"') return out;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (at_end()) return fail("unterminated string", at);
      const std::size_t esc = i_ - 1;
      const char e = s_[i_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '\\':
          out += '\\';
          break;
        case '"':
          out += '"';
          break;
        case '\'':
          out += '\'';
          break;
        case '?':
          out += '?';
          break;
        case 'x': {
          std::size_t end = i_;
          while (end < s_.size() && end < i_ + 2 && std::isxdigit(static_cast<unsigned char>(s_[end])) != 0)
            ++end;
          if (end == i_) return fail("expected hexadecimal digits after \\x", esc);
          unsigned v = 0;
          std::from_chars(s_.data() + i_, s_.data() + end, v, 16);
          out += static_cast<char>(v);
          i_ = end;
          break;
        }
        default: {
          if (e < '0' || e > '7') return fail(std::string("unknown escape \\") + e, esc);
          std::size_t end = i_ - 1;
          while (end < s_.size() && end < i_ + 2 && s_[end] >= '0' && s_[end] <= '7') ++end;
          unsigned v = 0;
          std::from_chars(s_.data() + i_ - 1, s_.data() + end, v, 8);
          if (v > 0xff) return fail("octal escape out of range", esc);
          out += static_cast<char>(v);
          i_ = end;
        }
      }
    }
  }

  std::string ident() {
    if (at_end() || !ident_start(s_[i_])) return {};
    const std::size_t start = i_;
    while (!at_end() && ident_char(s_[i_])) ++i_;
    return std::string(s_.substr(start, i_ - start));
  }

  void skip_ws() {
    while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t')) ++i_;
  }
  bool eat(char c) {
    if (at_end() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  [[nodiscard]] bool at_end() const { return i_ >= s_.size(); }

  std::string_view s_;
  std::size_t i_ = 0;
};

// Fake user-space addresses for string and struct arguments: distinct per argument, never 0.
constexpr std::uint64_t kFakePointerBase = 0x7ffc00001000;
constexpr std::uint64_t kFakePointerStride = 0x1000;

class Decoder {
 public:
  Decoder(const CallLiteral& literal, const CallContext& context) : lit_(literal), ctx_(context) {}

  std::expected<policy::Call, LiteralError> run() {
    call_.nr = lit_.nr;
    for (std::size_t i = 0; i < lit_.args.size(); ++i) {
      const auto& a = lit_.args[i];
      switch (a.kind) {
        case LiteralArg::Kind::Integer:
          call_.args[i] = a.value;
          break;
        case LiteralArg::Kind::Null:
          call_.args[i] = 0;
          break;
        case LiteralArg::Kind::String:
        case LiteralArg::Kind::Struct:
          call_.args[i] = kFakePointerBase + kFakePointerStride * i;
          break;
      }
    }
    const policy::SyscallInfo* info = policy::syscall_info(lit_.nr);
    if (info == nullptr) return call_;
    for (const auto& slot : info->paths) {
      if (slot.path == policy::kNoArg) continue;
      auto p = path(slot);
      if (!p) return std::unexpected(p.error());
      call_.paths.push_back(std::move(*p));
    }
    const std::string_view name = lit_.name;
    std::expected<void, LiteralError> ok;
    switch (info->family) {
      case policy::Family::None:
      case policy::Family::Sysinfo:  // nothing to match: sysinfo(2) only has an out-pointer
        break;
      case policy::Family::Mknod:
        ok = mknod(name == "mknod" ? 1 : 2);
        break;
      case policy::Family::Mount:
        ok = mount();
        break;
      case policy::Family::Umount:
        ok = umount();
        break;
      case policy::Family::Xattr:
        ok = xattr(name);
        break;
      case policy::Family::Sched:
        ok = sched(name);
        break;
    }
    if (!ok) return std::unexpected(ok.error());
    return call_;
  }

 private:
  std::unexpected<LiteralError> missing(std::size_t index) const {
    return std::unexpected(LiteralError{lit_.name + " needs argument " + std::to_string(index + 1) +
                                            " (it has " + std::to_string(lit_.args.size()) + ")",
                                        0});
  }
  std::unexpected<LiteralError> at(std::size_t index, std::string message) const {
    return std::unexpected(LiteralError{std::move(message), lit_.args[index].column});
  }

  std::expected<const LiteralArg*, LiteralError> need(std::size_t index) const {
    if (index >= lit_.args.size()) return missing(index);
    return &lit_.args[index];
  }

  // A string argument; NULL gives nullopt.
  std::expected<std::optional<std::string>, LiteralError> string_arg(std::size_t index) const {
    auto a = need(index);
    if (!a) return std::unexpected(a.error());
    if ((*a)->kind == LiteralArg::Kind::Null) return std::optional<std::string>();
    if ((*a)->kind != LiteralArg::Kind::String)
      return at(index, "argument " + std::to_string(index + 1) + " must be a string");
    return std::optional<std::string>((*a)->text);
  }

  std::expected<std::string, LiteralError> fd_dir(std::size_t index) const {
    const int fd = static_cast<int>(static_cast<std::int32_t>(call_.args[index] & 0xffffffffU));
    const auto it = ctx_.fds.find(fd);
    if (it == ctx_.fds.end()) {
      return at(index, "fd " + std::to_string(fd) + " is not in the case's `fds` (e.g. fds: {" +
                           std::to_string(fd) + ": /some/dir})");
    }
    return normalize_path("/", it->second);
  }

  std::expected<std::string, LiteralError> path(const policy::PathArg& slot) const {
    if (slot.path == policy::kPathIsFd) {
      auto a = need(static_cast<std::size_t>(slot.dirfd));
      if (!a) return std::unexpected(a.error());
      return fd_dir(static_cast<std::size_t>(slot.dirfd));
    }
    const auto index = static_cast<std::size_t>(slot.path);
    auto s = string_arg(index);
    if (!s) return std::unexpected(s.error());
    if (!*s) return at(index, "a path argument cannot be NULL");
    const std::string& p = **s;
    if (p.empty()) return at(index, "an empty path: the supervisor answers ENOENT without a decision");
    if (p.front() == '/') return normalize_path("/", p);
    if (slot.dirfd >= 0) {
      const auto dirfd = static_cast<std::size_t>(slot.dirfd);
      auto a = need(dirfd);
      if (!a) return std::unexpected(a.error());
      if ((*a)->kind != LiteralArg::Kind::Integer)
        return at(dirfd, "a directory fd must be a number or AT_FDCWD");
      if (static_cast<std::int32_t>(call_.args[dirfd] & 0xffffffffU) != AT_FDCWD) {
        auto dir = fd_dir(dirfd);
        if (!dir) return dir;
        return normalize_path(*dir, p);
      }
    }
    return normalize_path(normalize_path("/", ctx_.cwd), p);
  }

  std::expected<void, LiteralError> mknod(std::size_t mode_index) {
    for (std::size_t i : {mode_index, mode_index + 1}) {
      auto a = need(i);
      if (!a) return std::unexpected(a.error());
      if ((*a)->kind != LiteralArg::Kind::Integer)
        return at(i, "argument " + std::to_string(i + 1) + " must be a number");
    }
    const auto mode = static_cast<std::uint32_t>(call_.args[mode_index] & 0xffffU);  // umode_t
    const auto dev = static_cast<std::uint32_t>(call_.args[mode_index + 1] & 0xffffffffU);
    if ((mode & S_IFMT) == S_IFCHR) call_.type = policy::FileType::Char;
    if ((mode & S_IFMT) == S_IFBLK) call_.type = policy::FileType::Block;
    // The kernel's new_decode_dev.
    call_.major = (dev & 0xfff00U) >> 8;
    call_.minor = (dev & 0xffU) | ((dev >> 12) & 0xfff00U);
    return {};
  }

  std::expected<void, LiteralError> mount() {
    auto source = string_arg(0);
    if (!source) return std::unexpected(source.error());
    call_.source = *source;
    auto target = string_arg(1);
    if (!target) return std::unexpected(target.error());
    if (*target) call_.target = normalize_path(normalize_path("/", ctx_.cwd), **target);
    auto fstype = string_arg(2);
    if (!fstype) return std::unexpected(fstype.error());
    call_.fstype = *fstype;
    auto flags = need(3);
    if (!flags) return std::unexpected(flags.error());
    call_.flags = call_.args[3];
    return {};
  }

  std::expected<void, LiteralError> umount() {
    auto target = string_arg(0);
    if (!target) return std::unexpected(target.error());
    if (*target) call_.target = normalize_path(normalize_path("/", ctx_.cwd), **target);
    if (lit_.name == "umount2") {
      auto flags = need(1);
      if (!flags) return std::unexpected(flags.error());
      call_.flags = call_.args[1] & 0xffffffffU;  // an int in the kernel
    } else {
      call_.flags = 0;
    }
    return {};
  }

  std::expected<void, LiteralError> xattr(std::string_view name) {
    const bool has_name = name.find("listxattr") == std::string_view::npos;
    if (has_name) {
      auto n = string_arg(1);
      if (!n) return std::unexpected(n.error());
      if (*n) call_.xattr_name = **n;
    }
    std::optional<std::size_t> size_index;
    if (name.find("setxattr") != std::string_view::npos || name.find("getxattr") != std::string_view::npos)
      size_index = 3;
    if (!has_name) size_index = 2;
    if (size_index) {
      auto s = need(*size_index);
      if (!s) return std::unexpected(s.error());
      call_.value_size = call_.args[*size_index];
    }
    return {};
  }

  std::expected<std::int64_t, LiteralError> field(std::size_t index,
                                                  std::initializer_list<std::string_view> names,
                                                  bool required) const {
    const auto& fields = lit_.args[index].fields;
    for (auto n : names) {
      if (auto it = fields.find(std::string(n)); it != fields.end()) return it->second;
    }
    if (required) return at(index, "the struct needs `" + std::string(*names.begin()) + "`");
    return std::numeric_limits<std::int64_t>::min();
  }

  std::expected<void, LiteralError> check_fields(std::size_t index,
                                                 std::initializer_list<std::string_view> allowed) const {
    for (const auto& [k, v] : lit_.args[index].fields) {
      bool known = false;
      for (auto n : allowed) known = known || n == k;
      if (!known) {
        std::string list;
        for (auto n : allowed) list += (list.empty() ? "" : ", ") + std::string(n);
        const std::vector<std::string_view> names(allowed);
        return at(index, "unknown field `" + k + "`" + policy::did_you_mean(k, names) +
                             " (this struct has: " + list + ")");
      }
    }
    return {};
  }

  std::expected<void, LiteralError> sched(std::string_view name) {
    constexpr std::uint64_t kResetOnFork = SCHED_RESET_ON_FORK;
    auto struct_arg = [&](std::size_t index) -> std::expected<bool, LiteralError> {
      auto a = need(index);
      if (!a) return std::unexpected(a.error());
      if ((*a)->kind == LiteralArg::Kind::Null) return false;
      if ((*a)->kind != LiteralArg::Kind::Struct) {
        return at(index, "argument " + std::to_string(index + 1) +
                             " must be a struct literal like {sched_priority=50}");
      }
      return true;
    };
    if (name == "setpriority") {
      auto a = need(2);
      if (!a) return std::unexpected(a.error());
      call_.nice = static_cast<std::int32_t>(call_.args[2] & 0xffffffffU);
      return {};
    }
    if (name == "sched_setscheduler" || name == "sched_setparam") {
      std::size_t param = 1;
      if (name == "sched_setscheduler") {
        auto p = need(1);
        if (!p) return std::unexpected(p.error());
        call_.sched_policy = static_cast<int>(call_.args[1] & ~kResetOnFork & 0xffffffffU);
        param = 2;
      }
      auto s = struct_arg(param);
      if (!s) return std::unexpected(s.error());
      if (*s) {
        if (auto ok = check_fields(param, {"sched_priority", "priority"}); !ok) return ok;
        auto prio = field(param, {"sched_priority", "priority"}, true);
        if (!prio) return std::unexpected(prio.error());
        call_.priority = *prio;
      }
      return {};
    }
    if (name == "sched_setattr") {
      auto s = struct_arg(1);
      if (!s) return std::unexpected(s.error());
      if (!*s) return {};
      if (auto ok = check_fields(1, {"policy", "sched_policy", "priority", "sched_priority", "nice",
                                     "sched_nice", "flags", "sched_flags"});
          !ok) {
        return ok;
      }
      auto pol = field(1, {"policy", "sched_policy"}, false);
      auto prio = field(1, {"priority", "sched_priority"}, false);
      auto nice = field(1, {"nice", "sched_nice"}, false);
      constexpr auto kAbsent = std::numeric_limits<std::int64_t>::min();
      // Absent fields are zero in the struct the caller passes.
      call_.sched_policy = static_cast<int>(*pol == kAbsent ? 0 : *pol);
      call_.priority = *prio == kAbsent ? 0 : *prio;
      call_.nice = *nice == kAbsent ? 0 : *nice;
      return {};
    }
    return {};
  }

  const CallLiteral& lit_;
  const CallContext& ctx_;
  policy::Call call_;
};

}  // namespace

std::uint64_t encode_dev(std::uint32_t major, std::uint32_t minor) {
  return (minor & 0xffU) | (static_cast<std::uint64_t>(major & 0xfffU) << 8) |
         (static_cast<std::uint64_t>(minor & ~0xffU) << 12);
}

std::expected<CallLiteral, LiteralError> parse_call(std::string_view text) {
  return Parser(text).call();
}

std::expected<policy::Call, LiteralError> call_from_literal(const CallLiteral& literal,
                                                            const CallContext& context) {
  if (context.cwd.empty() || context.cwd.front() != '/') {
    return std::unexpected(LiteralError{"cwd must be an absolute path", 0});
  }
  return Decoder(literal, context).run();
}

std::expected<Expectation, LiteralError> parse_expectation(std::string_view text) {
  std::vector<std::pair<std::string, std::size_t>> words;
  for (std::size_t i = 0; i < text.size();) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
    const std::size_t start = i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) == 0) ++i;
    if (i > start) words.emplace_back(std::string(text.substr(start, i - start)), start);
  }
  if (words.empty())
    return fail("expected an outcome: allow, emulate, deny ERRNO, return VALUE, kill or kill-container", 0);
  // ACTION [ERRNO | VALUE] from words[next]; next moves past it.
  std::size_t next = 0;
  const auto verdict = [&]() -> std::expected<Verdict, LiteralError> {
    Verdict v;
    const auto& [verb, verb_at] = words[next++];
    if (verb == "allow") {
      v.action = Action::Allow;
    } else if (verb == "emulate") {
      v.action = Action::Emulate;
    } else if (verb == "kill") {
      v.action = Action::Kill;
    } else if (verb == "kill-container") {
      v.action = Action::KillContainer;
    } else if (verb == "deny") {
      v.action = Action::Deny;
      if (next >= words.size())
        return fail("`deny` needs an errno name, like deny EPERM", verb_at + verb.size());
      const auto& [name, name_at] = words[next++];
      const auto err = policy::errno_from_name(name);
      if (!err) return fail("unknown errno `" + name + "`" + policy::did_you_mean_errno(name), name_at);
      v.err = *err;
    } else if (verb == "return") {
      v.action = Action::Return;
      if (next >= words.size()) return fail("`return` needs a value, like return 0", verb_at + verb.size());
      const auto& [number, number_at] = words[next++];
      std::int64_t value = 0;
      const auto r = std::from_chars(number.data(), number.data() + number.size(), value, 10);
      if (r.ec != std::errc() || r.ptr != number.data() + number.size())
        return fail("bad return value `" + number + "`", number_at);
      v.value = value;
    } else {
      constexpr std::array<std::string_view, 6> kVerbs{"allow",  "emulate", "deny",
                                                       "return", "kill",    "kill-container"};
      return fail("unknown outcome `" + verb + "`" + policy::did_you_mean(verb, kVerbs) +
                      " (allow, emulate, deny ERRNO, return VALUE, kill, kill-container)",
                  verb_at);
    }
    return v;
  };
  const auto first = verdict();
  if (!first) return std::unexpected(first.error());
  Expectation e;
  e.action = first->action;
  e.err = first->err;
  e.value = first->value;
  if (next < words.size() && (words[next].first == "audited" || words[next].first == "unaudited")) {
    e.audit = words[next].first == "audited";
    ++next;
  }
  if (next < words.size() && words[next].first == "would") {
    const std::size_t would_end = words[next].second + words[next].first.size();
    if (++next >= words.size())
      return fail("`would` needs what the rules decided, like would deny EPERM", would_end);
    const auto would = verdict();
    if (!would) return std::unexpected(would.error());
    e.would = *would;
  }
  if (next < words.size() && words[next].first == "rule") {
    const std::size_t rule_end = words[next].second + words[next].first.size();
    if (++next >= words.size())
      return fail("`rule` needs the deciding rule's name (or none), like rule other-devices", rule_end);
    // The rest is the name: an unnamed rule is "rule N", two words.
    e.rule = std::string(text.substr(words[next].second));
    while (!e.rule->empty() && std::isspace(static_cast<unsigned char>(e.rule->back())) != 0)
      e.rule->pop_back();
    next = words.size();
  }
  if (next < words.size()) {
    const char* expected = e.would   ? "`rule`"
                           : e.audit ? "`would` or `rule`"
                                     : "`audited`, `unaudited`, `would` or `rule`";
    return fail(std::string("expected ") + expected + ", not `" + words[next].first + "`",
                words[next].second);
  }
  return e;
}

std::string to_string(const Verdict& v) {
  std::string out = policy::to_string(v.action);
  if (v.action == Action::Deny) out += std::string(" ") + policy::errno_name(v.err);
  if (v.action == Action::Return) out += " " + std::to_string(v.value);
  return out;
}

std::string to_string(const Expectation& e) {
  std::string out = to_string(Verdict{e.action, e.err, e.value});
  if (e.audit) out += *e.audit ? " audited" : " unaudited";
  if (e.would) out += " would " + to_string(*e.would);
  if (e.rule) out += " rule " + *e.rule;
  return out;
}

}  // namespace sysvisor::tools
