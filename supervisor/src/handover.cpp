#include "sysvisor/handover.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <array>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <new>

namespace sysvisor::handover {
namespace {

constexpr std::array<char, 8> kMagic{'S', 'V', 'S', 'T', 'A', 'T', 'E', '1'};
constexpr std::size_t kMapSize = 8192;         // header and journal, mapped
constexpr std::uint64_t kBodyArea = 1U << 20;  // each of the two record areas
constexpr std::uint64_t kBodyOffset[2] = {kBodyArea, 2 * kBodyArea};

std::uint64_t fnv1a(const std::string& bytes) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : bytes) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ULL;
  }
  return h;
}

}  // namespace

// The header of the record: written with one pwrite after the body it describes, so a daemon
// killed mid-write leaves the previous record in force.
struct RecordHeader {
  std::uint32_t version;
  std::uint32_t area;  // 0 or 1
  std::uint64_t length;
  std::uint64_t hash;  // FNV-1a of the body: a torn or stray write is seen
};

struct StateFile::Slot {
  std::atomic<std::uint64_t> id;      // 0: free; published after `n` is written
  std::atomic<std::uint64_t> acting;  // 1: the emulation began to act
  seccomp_notif n;
};

struct StateFile::Layout {
  std::array<char, 8> magic;
  std::uint32_t slots;
  std::uint32_t slot_size;
  RecordHeader record;  // at offsetof(Layout, record), written by pwrite only
  std::array<char, 128 - 16 - sizeof(RecordHeader)> pad;
};
static_assert(sizeof(StateFile::Layout) == 128);
static_assert(128 + kJournalSlots * 96 <= kMapSize);

StateFile::Slot* StateFile::slots() const noexcept {
  return reinterpret_cast<Slot*>(static_cast<char*>(map_) + sizeof(Layout));
}

Result<StateFile> StateFile::create() {
  static_assert(sizeof(Slot) == 96);
  UniqueFd fd(::memfd_create("sysvisor-state", MFD_CLOEXEC));
  if (!fd) return sys_error("memfd_create for a container's state");
  if (::ftruncate(fd.get(), kMapSize) != 0) return sys_error("size the state memfd");
  Layout head{};
  head.magic = kMagic;
  head.slots = kJournalSlots;
  head.slot_size = sizeof(Slot);
  if (::pwrite(fd.get(), &head, sizeof head, 0) != static_cast<ssize_t>(sizeof head))
    return sys_error("write the state memfd's header");
  return adopt(std::move(fd));
}

Result<StateFile> StateFile::adopt(UniqueFd fd) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("stat the state memfd");
  if (!S_ISREG(st.st_mode) || st.st_size < static_cast<off_t>(kMapSize))
    return plain_error("the state fd is not a state memfd (too small or not a file)");
  Layout head{};
  if (::pread(fd.get(), &head, sizeof head, 0) != static_cast<ssize_t>(sizeof head))
    return sys_error("read the state memfd's header");
  if (head.magic != kMagic || head.slots != kJournalSlots || head.slot_size != sizeof(Slot))
    return plain_error("the state fd is not a state memfd of this format (magic, slots)");
  void* map = ::mmap(nullptr, kMapSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (map == MAP_FAILED) return sys_error("map the state memfd");
  // Emulation helpers are forks that join a container's namespaces as the caller: they get no
  // copy of the journal to write into.
  if (::madvise(map, kMapSize, MADV_DONTFORK) != 0) {
    const int err = errno;
    ::munmap(map, kMapSize);
    errno = err;
    return sys_error("madvise(MADV_DONTFORK) the state memfd's map");
  }
  StateFile f;
  f.fd_ = std::move(fd);
  f.map_ = map;
  f.next_body_ = head.record.length == 0 ? 0 : (head.record.area + 1) % 2;
  return f;
}

StateFile::StateFile(StateFile&& o) noexcept
    : fd_(std::move(o.fd_)), map_(std::exchange(o.map_, nullptr)), next_body_(o.next_body_) {}

StateFile& StateFile::operator=(StateFile&& o) noexcept {
  if (this != &o) {
    if (map_ != nullptr) ::munmap(map_, kMapSize);
    fd_ = std::move(o.fd_);
    map_ = std::exchange(o.map_, nullptr);
    next_body_ = o.next_body_;
  }
  return *this;
}

StateFile::~StateFile() {
  if (map_ != nullptr) ::munmap(map_, kMapSize);
}

void StateFile::received(const seccomp_notif& n) noexcept {
  if (n.id == 0 || map_ == nullptr) return;  // 0 marks a free slot (one id in 2^64)
  Slot* s = slots();
  for (std::size_t i = 0; i < kJournalSlots; ++i) {
    if (s[i].id.load(std::memory_order_relaxed) != 0) continue;
    // Only the receiver thread takes slots: a free one stays free until we publish.
    std::memcpy(&s[i].n, &n, sizeof n);
    s[i].acting.store(0, std::memory_order_relaxed);
    s[i].id.store(n.id, std::memory_order_release);
    return;
  }
  static std::atomic<bool> warned{false};
  if (!warned.exchange(true))
    spdlog::warn("state journal full: a call received now is not kept across a crash of the daemon");
}

void StateFile::answered(std::uint64_t id) noexcept {
  if (id == 0 || map_ == nullptr) return;
  Slot* s = slots();
  for (std::size_t i = 0; i < kJournalSlots; ++i) {
    std::uint64_t expected = id;
    if (s[i].id.compare_exchange_strong(expected, 0, std::memory_order_acq_rel)) return;
  }
}

void StateFile::acting(std::uint64_t id) noexcept {
  if (id == 0 || map_ == nullptr) return;
  Slot* s = slots();
  for (std::size_t i = 0; i < kJournalSlots; ++i) {
    if (s[i].id.load(std::memory_order_acquire) == id) {
      s[i].acting.store(1, std::memory_order_release);
      return;
    }
  }
}

std::vector<StateFile::Unanswered> StateFile::unanswered() const {
  std::vector<Unanswered> out;
  if (map_ == nullptr) return out;
  Slot* s = slots();
  for (std::size_t i = 0; i < kJournalSlots; ++i) {
    const std::uint64_t id = s[i].id.load(std::memory_order_acquire);
    if (id == 0 || s[i].n.id != id) continue;  // free, or caught between the copy and the store
    out.push_back({s[i].n, s[i].acting.load(std::memory_order_acquire) != 0});
  }
  return out;
}

Result<void> StateFile::write(const state::v1::Session& record) {
  std::string body;
  if (!record.SerializeToString(&body)) return plain_error("serialize a container's state");
  if (body.size() > kBodyArea) return plain_error("a container's state is larger than 1 MiB");
  const std::uint32_t area = next_body_;
  if (::pwrite(fd_.get(), body.data(), body.size(), static_cast<off_t>(kBodyOffset[area])) !=
      static_cast<ssize_t>(body.size())) {
    return sys_error("write a container's state");
  }
  const RecordHeader head{kRecordVersion, area, body.size(), fnv1a(body)};
  if (::pwrite(fd_.get(), &head, sizeof head, offsetof(Layout, record)) != static_cast<ssize_t>(sizeof head))
    return sys_error("write a container's state header");
  next_body_ = (area + 1) % 2;
  return {};
}

std::expected<StateFile::Read, std::string> StateFile::read() const {
  RecordHeader head{};
  if (::pread(fd_.get(), &head, sizeof head, offsetof(Layout, record)) != static_cast<ssize_t>(sizeof head))
    return std::unexpected(std::string("read the header: ") + std::strerror(errno));
  if (head.length == 0) return std::unexpected("no record was written");
  if (head.area > 1 || head.length > kBodyArea) return std::unexpected("the header is damaged");
  std::string body(head.length, '\0');
  if (::pread(fd_.get(), body.data(), body.size(), static_cast<off_t>(kBodyOffset[head.area])) !=
      static_cast<ssize_t>(body.size())) {
    return std::unexpected("the record is cut short");
  }
  if (fnv1a(body) != head.hash) return std::unexpected("the record does not match its header (torn write)");
  Read r;
  r.version = head.version;
  if (!r.record.ParseFromString(body)) return std::unexpected("the record does not parse");
  return r;
}

std::string listener_name(std::string_view session_id) {
  return "sysvisor.l." + std::string(session_id);
}
std::string state_name(std::string_view session_id) {
  return "sysvisor.s." + std::string(session_id);
}
std::string pidfd_name(std::string_view session_id) {
  return "sysvisor.p." + std::string(session_id);
}

bool take(Inherited& into, std::string_view name, int fd) {
  // Only the names this file writes: a socket unit's default fd name ("sysvisor.socket") is
  // systemd's, for the socket-activation code.
  if (name != kMountNamespaceName && !name.starts_with("sysvisor.l.") && !name.starts_with("sysvisor.s.") &&
      !name.starts_with("sysvisor.p.")) {
    return false;
  }
  if (name == kMountNamespaceName && !into.mntns) {
    into.mntns.reset(fd);
    return true;
  }
  const auto kind = name.substr(9, 2);
  const std::string_view id = name.size() > 11 ? name.substr(11) : std::string_view{};
  const bool valid_id = !id.empty() && id.size() <= 32 && id[0] == 's' &&
                        id.find_first_not_of("0123456789", 1) == std::string_view::npos && id.size() > 1;
  if (valid_id && (kind == "l." || kind == "s." || kind == "p.")) {
    StoredSession& s = into.sessions[std::string(id)];
    UniqueFd& slot = kind == "l." ? s.listener : kind == "s." ? s.state : s.pidfd;
    if (!slot) {
      slot.reset(fd);
      return true;
    }
  }
  into.problems.push_back("inherited fd " + std::to_string(fd) + " named `" + std::string(name) +
                          "` is not understood (twice, or not a name this version writes): closed");
  ::close(fd);
  return true;
}

FdStore::FdStore() {
  const char* sock = std::getenv("NOTIFY_SOCKET");
  enabled_ = sock != nullptr && *sock != '\0';
}

void FdStore::store(int fd, const std::string& name) {
  if (!enabled_ || fd < 0) return;
  const std::string msg = "FDSTORE=1\nFDNAME=" + name;
  const int r = sd_pid_notify_with_fds(0, 0, msg.c_str(), &fd, 1);
  if (r <= 0 && !warned_) {
    warned_ = true;
    spdlog::error(
        "systemd's file descriptor store did not take `{}`: {}; containers will not outlive a "
        "restart of the daemon (FileDescriptorStoreMax= in the unit?)",
        name, r < 0 ? std::strerror(-r) : "NOTIFY_SOCKET unusable");
  }
}

void FdStore::remove(const std::string& name) {
  if (!enabled_) return;
  const std::string msg = "FDSTOREREMOVE=1\nFDNAME=" + name;
  (void)sd_notify(0, msg.c_str());
}

void FdStore::store_session(const std::string& session_id, int listener, int state, int pidfd) {
  store(listener, listener_name(session_id));
  store(state, state_name(session_id));
  store(pidfd, pidfd_name(session_id));
}

void FdStore::remove_session(const std::string& session_id) {
  remove(listener_name(session_id));
  remove(state_name(session_id));
  remove(pidfd_name(session_id));
}

std::string own_binary() {
  std::array<char, 4096> buf{};
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  std::string path(buf.data(), static_cast<std::size_t>(n));
  constexpr std::string_view kDeleted = " (deleted)";
  if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
  return path;
}

SysError exec_with_fds(const std::string& binary, const std::vector<std::string>& argv,
                       const std::vector<std::pair<std::string, int>>& fds) {
  // The fds keep their numbers: only their O_CLOEXEC goes, so a failed exec undoes nothing but
  // that. The new binary finds them by SYSVISOR_HANDOVER (names and numbers) for its pid.
  std::string list;
  std::vector<int> opened;
  auto undo = [&opened] {
    for (const int fd : opened) ::fcntl(fd, F_SETFD, FD_CLOEXEC);
  };
  for (const auto& [name, fd] : fds) {
    if (::fcntl(fd, F_SETFD, 0) != 0) {
      const int err = errno;
      undo();
      return SysError{err, "hand fd " + std::to_string(fd) + " (" + name + ") to the new binary"};
    }
    opened.push_back(fd);
    list += (list.empty() ? "" : ":") + name + "=" + std::to_string(fd);
  }
  std::vector<std::string> env_strings;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view var(*e);
    if (var.starts_with(kHandoverEnv) && var.size() > kHandoverEnv.size() &&
        (var[kHandoverEnv.size()] == '=' || var.substr(kHandoverEnv.size()).starts_with("_PID=")))
      continue;
    env_strings.emplace_back(var);
  }
  env_strings.push_back(std::string(kHandoverEnv) + "_PID=" + std::to_string(::getpid()));
  env_strings.push_back(std::string(kHandoverEnv) + "=" + list);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> args = argv;
  std::vector<char*> argp;
  for (auto& s : args) argp.push_back(s.data());
  argp.push_back(nullptr);
  // The daemon's signals stay blocked across execve (the mask and pending signals survive it):
  // until the new binary has its handlers, their default action would end it, and every
  // container with it (a second SIGUSR2, logrotate's SIGHUP). It unblocks them (daemon_signals).
  sigset_t held = daemon_signals();
  sigset_t before;
  ::pthread_sigmask(SIG_BLOCK, &held, &before);
  ::execve(binary.c_str(), argp.data(), envp.data());
  const int err = errno;
  ::pthread_sigmask(SIG_SETMASK, &before, nullptr);
  undo();
  return SysError{err, "execve `" + binary + "`"};
}

sigset_t daemon_signals() noexcept {
  sigset_t set;
  ::sigemptyset(&set);
  for (const int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR2}) ::sigaddset(&set, sig);
  return set;
}

std::vector<std::pair<std::string, int>> handed_over() {
  std::vector<std::pair<std::string, int>> out;
  const char* pid = std::getenv("SYSVISOR_HANDOVER_PID");
  const char* list = std::getenv("SYSVISOR_HANDOVER");
  const bool ours = pid != nullptr && list != nullptr && std::to_string(::getpid()) == pid;
  if (ours) {
    std::string_view rest(list);
    while (!rest.empty()) {
      const auto end = rest.find(':');
      const std::string_view item = rest.substr(0, end);
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
      const auto eq = item.rfind('=');
      if (eq == std::string_view::npos) continue;
      const std::string number(item.substr(eq + 1));
      char* tail = nullptr;
      const long fd = std::strtol(number.c_str(), &tail, 10);
      if (tail == number.c_str() || *tail != '\0' || fd < 3 || fd > 1 << 24) continue;
      if (::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC) != 0) continue;  // not open
      out.emplace_back(std::string(item.substr(0, eq)), static_cast<int>(fd));
    }
  }
  ::unsetenv("SYSVISOR_HANDOVER");
  ::unsetenv("SYSVISOR_HANDOVER_PID");
  return out;
}

}  // namespace sysvisor::handover
